#!/usr/bin/env bash
# bench/rbd-fio.sh: one RBD image of one throw-away cluster, read and written by fio through
#
#   librbd     fio --ioengine=rbd on the image: librbd inside fio, no server and no NBD in the
#              path. The limit a server can approach.
#   qemu-nbd   qemu-nbd -f raw -x '' -t --cache=none --aio=threads --socket S rbd:rbd/IMAGE,
#              fio --ioengine=nbd on S. The peer.
#   ours       bin/rbd-nbd serve rbd/IMAGE --socket S (CEPH_CONF in its environment),
#              fio --ioengine=nbd on S. If it does not start, the report says so and the peers
#              are still measured.
#
# The cluster: scripts/ceph-cluster.sh in a temporary directory (1 mon, 1 mgr, 1 memstore OSD,
# 127.0.0.1), started here and stopped (purged) at the end, also on errors and Ctrl-C. The image
# (SIZE) is written fully once (fio rbd, 1M sequential writes) before any job, so reads hit data.
#
# Jobs (thread, time_based, norandommap, one job, size=SIZE, ramp_time=RAMP not measured):
#   randread   4k random read,  iodepth 256        randwrite  4k random write, iodepth 256
#   seqread    1M sequential read,  iodepth 16     seqwrite   1M sequential write, iodepth 16
# For each job, each round runs librbd, qemu-nbd and ours back to back, so machine noise hits all
# three alike. Each run starts its server afresh and stops it after (so only one client has the
# image open at a time: no exclusive-lock hand-overs inside a measurement).
#
# Per run: IOPS, MiB/s, p99 completion latency, and the server's CPU-seconds per 100k I/Os:
# utime+stime of the whole serving process (every thread, from /proc/PID/stat) from the end of the
# ramp until fio has ended, over the I/Os fio completed in the measured window. For librbd the
# serving process is fio itself (librbd's threads live in it), so there it is fio's CPU. The
# report has the medians over the rounds and the ratios ours/librbd and ours/qemu-nbd.
#
# librbd's cache is the same for all three: RBD_CACHE (default false) goes into the [client]
# section of the conf every client reads, and qemu-nbd gets --cache=none (qemu turns rbd_cache off)
# or, with RBD_CACHE=true, --cache=writeback (qemu turns it on). The report shows what each
# client really used (its admin socket).
#
# Environment:
#   RUNTIME=10   measured seconds per run         RAMP=2      ramp seconds per run (not measured)
#   ROUNDS=2     rounds per job (medians)         SIZE=1G     image size
#   JOBS="randread randwrite seqread seqwrite"    SERVERS="librbd qemu-nbd ours"
#   RBD_CACHE=false   librbd cache (rbd_cache) for every client: false or true
#   RBDNBD_JAVA_OPTS  extra JVM options for ours (read by bin/rbd-nbd)
#   CEPH_*            passed on to scripts/ceph-cluster.sh (ports, memstore size; see its header)
#
# Writes the report (markdown) to stdout and to bench/results/rbd-fio-DATE.md. A failed run is
# listed and left out of the medians, the script goes on and exits 1 at the end, and the logs of
# that invocation (servers, fio, the cluster's) are kept in bench/results/rbd-fio-DATE-logs/.
set -euo pipefail

here=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
root=$(cd "$here/.." && pwd)
BENCH_NAME=rbd-fio
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

set_run_defaults
SERVERS=${SERVERS-librbd qemu-nbd ours}
RBD_CACHE=${RBD_CACHE:-false}
IMAGE=bench
json_tool=python3   # fio_extract's parser (no JSON_TOOL knob here: python3 is needed anyway)

has_server() { case " $SERVERS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# ---------------------------------------------------------------- dependencies and settings
check_run_settings
case "$RBD_CACHE" in true) qemu_cache=writeback ;; false) qemu_cache=none ;; *) die "RBD_CACHE must be true or false" ;; esac
for s in $SERVERS; do
  case "$s" in librbd | qemu-nbd | ours) ;; *) die "unknown server '$s' (SERVERS takes librbd qemu-nbd ours)" ;; esac
done
missing=()
have fio || missing+=("fio (Debian package: fio)")
if have fio; then
  fio --enghelp=rbd >/dev/null 2>&1 || missing+=("fio's rbd ioengine (Debian's fio package has it)")
  if has_server qemu-nbd || has_server ours; then
    fio --enghelp=nbd >/dev/null 2>&1 || missing+=("fio's nbd ioengine (Debian's fio package has it)")
  fi
fi
if has_server qemu-nbd; then
  have qemu-nbd || missing+=("qemu-nbd (Debian package: qemu-utils)")
  compgen -G "/usr/lib/*/qemu/block-rbd.so" >/dev/null || compgen -G "/usr/lib/qemu/block-rbd.so" >/dev/null \
    || missing+=("qemu's rbd block driver (Debian package: qemu-block-extra)")
fi
for t in ceph rbd ceph-mon ceph-osd ceph-mgr; do
  have "$t" || missing+=("$t (Ceph: scripts/install-deps.sh test)")
done
have python3 || missing+=("python3, for fio's JSON output (Debian package: python3-minimal)")
have getconf || missing+=("getconf (Debian package: libc-bin)")
if has_server ours; then have java || missing+=("java 17 (Debian package: openjdk-17-jre-headless)"); fi
exit_if_missing "${missing[@]}"
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- bookkeeping and cleanup
mkdir -p "$here/results"
stamp=$(date +%Y%m%d-%H%M%S)
report="$here/results/rbd-fio-$stamp.md"
keep="$here/results/rbd-fio-$stamp-logs"   # only made when something failed
work=$(mktemp -d /tmp/rbdnbd-rbd-fio.XXXXXX)
cdir="$work/ceph"                           # short: admin socket paths must fit 107 bytes
spid=          # server in this run, if any
fio_pid=       # fio wrapper in flight, if any
failed=0
ours_broken=   # set when ours did not start: its remaining runs are skipped

keep_logs() {
  mkdir -p "$keep"
  find "$work" -maxdepth 1 -type f \( -name '*.log' -o -name '*.out' -o -name '*.json' \) -exec cp {} "$keep/" \;
  if [ -d "$cdir/log" ]; then cp -r "$cdir/log" "$keep/ceph-log" 2>/dev/null || true; fi
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  kill_fio
  if [ -n "$spid" ]; then stop_server "$spid" cleanup || true; fi
  if [ "$rc" -ne 0 ] || [ "$failed" -ne 0 ]; then
    keep_logs
    echo "rbd-fio: logs of this run kept in $keep" >&2
  fi
  if [ -f "$cdir/ceph.conf" ]; then
    "$root/scripts/ceph-cluster.sh" stop "$cdir" --purge || echo "rbd-fio: stopping the cluster in $cdir failed" >&2
  fi
  rm -rf "$work"
  exit "$rc"
}
trap_exit cleanup

# Stops the server of a run (stop_pid: SIGTERM, SIGKILL after 30 s) and forgets it; a status other
# than 0 or 143 (killed by that SIGTERM) is worth a warning.
stop_server() { # pid name
  local pid=$1 name=$2
  stop_pid "$pid" "$name"
  spid=
  [ "$stop_status" -eq 0 ] || [ "$stop_status" -eq 143 ] || log "  warning: $name (pid $pid) exited with status $stop_status after SIGTERM"
}

# A client that died with the image open keeps its exclusive lock until its watch times out
# (~30 s); the next client's writes would stall inside its measurement. Wait for that here.
wait_image_idle() {
  local i out
  for ((i = 0; i < 120; i++)); do
    out=$(timeout 30 rbd status "rbd/$IMAGE" 2>&1 || true)
    case "$out" in *"Watchers: none"*) return 0 ;; esac
    [ "$i" -eq 0 ] && log "  waiting for the image's last client to go away: $(echo "$out" | tr '\n' ' ')"
    sleep 0.5
  done
  log "  warning: rbd/$IMAGE still has watchers after 60 s"
}

# rbd_cache as the client with this pid sees it (its admin socket), or "?".
client_rbd_cache() { # pid
  local asok i
  for ((i = 0; i < 50; i++)); do
    asok=$(compgen -G "$cdir/run/client.admin.$1.*.asok" | head -n 1 || true)
    [ -n "$asok" ] && [ -S "$asok" ] && break
    sleep 0.1
  done
  [ -n "$asok" ] || { echo '?'; return 0; }
  timeout 20 ceph --admin-daemon "$asok" config get rbd_cache 2>/dev/null \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["rbd_cache"])' 2>/dev/null || echo '?'
}

# Starts the server of a run; sets spid and uri. Returns 1 when ours did not start.
start_server() { # name n
  local name=$1 n=$2 sock="$work/$1.sock" rc=0 why
  rm -f "$sock"
  case "$name" in
    qemu-nbd)
      qemu-nbd -f raw -x '' -t --cache="$qemu_cache" --aio=threads --socket "$sock" \
        "rbd:rbd/$IMAGE:conf=$CEPH_CONF" >"$work/qemu-nbd-$n.log" 2>&1 &
      spid=$!
      wait_listening "$spid" "$sock" || rc=$?
      case "$rc" in
        0) ;;
        1) cat "$work/qemu-nbd-$n.log" >&2; spid=; die "qemu-nbd exited during start-up" ;;
        *) die "qemu-nbd did not listen on $sock within 60 s" ;;
      esac ;;
    ours)
      "$root/bin/rbd-nbd" serve "rbd/$IMAGE" --socket "$sock" >"$work/ours-$n.out" 2>"$work/ours-$n.log" &
      spid=$!
      wait_listening "$spid" "$sock" "$work/ours-$n.out" || rc=$?
      case "$rc" in
        0) ;;
        1) wait "$spid" 2>/dev/null || true; spid= ;;
        *) stop_server "$spid" ours ;;
      esac
      if [ -z "$spid" ]; then
        mkdir -p "$keep"
        cat "$work/ours-$n.out" "$work/ours-$n.log" >"$keep/ours-start-failed.log" 2>/dev/null || true
        log "ours: failed to start, see $keep/ours-start-failed.log"
        tail -n 5 "$keep/ours-start-failed.log" | sed 's/^/    ours: /' >&2 || true
        why=$(grep -m1 -iE 'error|exception|usage|unknown|invalid|cannot|failed' "$keep/ours-start-failed.log" || true)
        [ -n "$why" ] || why=$(grep -v '^[[:space:]]*$' "$keep/ours-start-failed.log" | tail -n 1 || true)
        ours_broken="failed to start (see bench/results/$(basename "$keep")/ours-start-failed.log): $(cut -c1-160 <<<"${why:-no output}")"
        failed=1
        wait_image_idle
        return 1
      fi ;;
  esac
  uri="nbd+unix:///?socket=$sock"
}

raw="$work/raw.tsv"      # job server round iops bw_bytes p99_ns ios server_cpu_s fio_cpu_s (measured window)
fails="$work/fails.tsv"  # job server round why
: >"$raw"
: >"$fails"

run_failed() { # job server round why
  failed=1
  log "  $1 round $3 $2 FAILED: $4"
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$fails"
}

# fio in a wrapper shell that reports fio's pid and, once fio has ended, the CPU it used
# (bash `times`: children's user and system seconds), bounded by timeout.
start_fio() { # tag args...
  local tag=$1
  shift
  # shellcheck disable=SC2016 # the wrapper's own $@, $! and $? are meant
  FIO_PIDFILE="$work/$tag.fiopid" FIO_TIMES="$work/$tag.times" \
    timeout -k 5 $((RAMP + RUNTIME + 90)) bash -c \
      'fio "$@" & echo $! >"$FIO_PIDFILE"; wait $!; rc=$?; times >"$FIO_TIMES"; exit $rc' fio-wrapper "$@" \
      >"$work/$tag.fio.out" 2>&1 &
  fio_pid=$!
}

times_seconds() { # file from `times` -> children's user+sys seconds
  awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] } printf "%.3f", t }' "$1"
}

run_job() { # job server round n
  local job=$1 server=$2 round=$3 n=$4 rw bs bpi qd dir tag engine=() json fpid f0 c0='' c1 cpu fio_cpu
  read -r rw bs bpi qd dir <<<"$(job_spec "$job")"
  tag="$job-$server-$round"
  json="$work/$tag.json"
  if [ "$server" = ours ] && [ -n "$ours_broken" ]; then
    printf '%s\t%s\t%s\t%s\n' "$job" "$server" "$round" "skipped (ours did not start or build)" >>"$fails"
    return 0
  fi
  case "$server" in
    librbd) engine=(--ioengine=rbd --clientname=admin --pool=rbd --rbdname="$IMAGE") ;;
    *)
      if ! start_server "$server" "$n"; then
        printf '%s\t%s\t%s\t%s\n' "$job" "$server" "$round" "ours $ours_broken" >>"$fails"
        failed=1
        return 0
      fi
      engine=(--ioengine=nbd --uri="$uri") ;;
  esac
  start_fio "$tag" --name="$job" "${engine[@]}" --thread --rw="$rw" --bs="$bs" --iodepth="$qd" --numjobs=1 \
    --size="$SIZE" --norandommap --time_based --runtime="$RUNTIME" --ramp_time="$RAMP" \
    --output-format=json --output="$json"
  sleep "$RAMP"
  # CPU at the end of the ramp: fio's, and the server's (for librbd the server is fio)
  fpid=$(cat "$work/$tag.fiopid" 2>/dev/null || true)
  f0=$(cpu_ticks "${fpid:-0}")
  if [ -n "$spid" ]; then c0=$(cpu_ticks "$spid"); fi
  if ! wait "$fio_pid"; then
    fio_pid=
    tail -n 3 "$work/$tag.fio.out" | sed 's/^/    fio: /' >&2
    local why="fio failed"
    if [ -n "$spid" ]; then
      if ! kill -0 "$spid" 2>/dev/null; then why="$server exited during the run"; fi
      stop_server "$spid" "$server"
    fi
    run_failed "$job" "$server" "$round" "$why: $(grep -m1 -iE 'error|fail' "$work/$tag.fio.out" | cut -c1-160 || true)"
    wait_image_idle
    return 0
  fi
  fio_pid=
  # fio has ended: `times` in its wrapper has all the CPU it used; less what it had used by the ramp's end
  fio_cpu=$(awk -v t="$(times_seconds "$work/$tag.times")" -v c="${f0:-0}" -v hz="$CLK_TCK" \
    'BEGIN { printf "%.3f", t - c / hz }')
  if [ "$server" = librbd ]; then
    cpu=$fio_cpu
  else
    c1=$(cpu_ticks "$spid")
    cpu=$(awk -v a="${c0:-0}" -v b="${c1:-0}" -v hz="$CLK_TCK" 'BEGIN { printf "%.3f", (b - a) / hz }')
    stop_server "$spid" "$server"
  fi
  wait_image_idle
  local iops bw p99 io ios
  read -r iops bw p99 io <<<"$(fio_extract "$json" "$dir")"
  ios=$(awk -v b="$io" -v s="$bpi" 'BEGIN { printf "%.0f", b / s }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$job" "$server" "$round" "$iops" "$bw" "$p99" "$ios" "$cpu" "$fio_cpu" >>"$raw"
  awk -v j="$job" -v s="$server" -v r="$round" -v iops="$iops" -v bw="$bw" -v p99="$p99" -v ios="$ios" -v cpu="$cpu" 'BEGIN {
    printf "  %-9s round %d %-8s %8.0f IOPS %8.1f MiB/s  p99 %8.3f ms  %s CPU-s/100k I/O\n", j, r, s, iops, bw / 1048576,
      p99 / 1e6, (ios > 0 ? sprintf("%.2f", cpu / (ios / 100000)) : "-") }' >&2
}

# ---------------------------------------------------------------- the cluster and the image
if has_server ours && { [ ! -d "$root/cli/target/lib" ] || [ ! -d "$root/cli/target/classes" ]; }; then
  log "cli/target/lib missing: building (mvn -q -DskipTests package)"
  if ! (cd "$root" && mvn -q -DskipTests package >"$work/build.log" 2>&1); then
    ours_broken="not built (mvn -q -DskipTests package failed; see the kept build.log)"
    failed=1
    log "ours: $ours_broken"
  fi
fi

log "starting the cluster in $cdir"
t0=$(date +%s%N)
cluster_out=$(CEPH_IMAGE_SIZE='' "$root/scripts/ceph-cluster.sh" start "$cdir" 2>"$work/ceph-cluster.log") || {
  cat "$work/ceph-cluster.log" >&2; failed=1; die "the cluster did not start"; }
cluster_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
case "$cluster_out" in *"export CEPH_CONF="*) ;; *) die "ceph-cluster.sh printed no CEPH_CONF line" ;; esac
log "cluster up in $(awk -v m="$cluster_ms" 'BEGIN { printf "%.1f", m / 1000 }') s"

# Every client (fio, qemu-nbd, ours, rbd) reads this copy, with the cache setting of this run.
sed "/^\[client\]/a rbd cache = $RBD_CACHE" "$cdir/ceph.conf" >"$work/ceph.conf"
export CEPH_CONF="$work/ceph.conf"
rbd create --size "$SIZE" "rbd/$IMAGE"
t0=$(date +%s%N)
fio --name=prefill --ioengine=rbd --clientname=admin --pool=rbd --rbdname="$IMAGE" --thread --rw=write --bs=1M \
  --iodepth=16 --size="$SIZE" --output="$work/prefill.out" >"$work/prefill.fio.out" 2>&1 \
  || { cat "$work/prefill.fio.out" "$work/prefill.out" >&2; failed=1; die "prefill failed"; }
log "prefilled rbd/$IMAGE ($SIZE) in $(awk -v m="$(( ($(date +%s%N) - t0) / 1000000 ))" 'BEGIN { printf "%.1f", m / 1000 }') s"

# What librbd cache each client really runs with (unmeasured start of each server).
declare -A cache_seen
cache_seen[librbd]=$(CEPH_CONF=$CEPH_CONF ceph-conf --name client.admin --lookup rbd_cache 2>/dev/null || echo '?')
for s in qemu-nbd ours; do
  has_server "$s" || continue
  [ "$s" = ours ] && [ -n "$ours_broken" ] && continue
  if start_server "$s" check; then
    cache_seen[$s]=$(client_rbd_cache "$spid")
    stop_server "$spid" "$s"
    wait_image_idle
  fi
done

other=$(pgrep -d ' ' -x 'ceph-osd|ceph-mon|ceph-mgr' || true)
mine=" $(cat "$cdir"/run/*.pid 2>/dev/null | tr '\n' ' ') "
others=()
for p in $other; do [[ $mine == *" $p "* ]] || others+=("$p"); done

# ---------------------------------------------------------------- the runs
started=$(date +%s)
log "$(run_count) runs of ${RAMP}+${RUNTIME} s; report: $report"
run_rounds
elapsed=$(( $(date +%s) - started ))

# ---------------------------------------------------------------- the report
{
  echo "# bench/rbd-fio.sh, $(date -Is)"
  echo
  echo "- $(checkout_and_machine)"
  echo "- $(fio --version); $(qemu-nbd --version 2>/dev/null | head -1 | cut -d' ' -f1-2); $(ceph --version | cut -d' ' -f1-3); $(java -version 2>&1 | head -1)"
  echo "- cluster: 1 mon, 1 mgr, 1 memstore OSD (page set) on 127.0.0.1, started in $(awk -v m="$cluster_ms" 'BEGIN { printf "%.1f", m / 1000 }') s; image rbd/$IMAGE $SIZE, prefilled"
  seen=
  for s in $SERVERS; do seen+="${seen:+, }$s ${cache_seen[$s]:-?}"; done
  echo "- RUNTIME=$RUNTIME s RAMP=$RAMP s ROUNDS=$ROUNDS RBD_CACHE=$RBD_CACHE (rbd_cache as each client ran: $seen); took ${elapsed} s"
  if [ ${#others[@]} -gt 0 ]; then
    echo "- note: other Ceph daemons ran on this machine during the runs (pids ${others[*]}): they share the 2 cores"
  fi
  [ -n "$ours_broken" ] && echo "- **ours: $ours_broken**"
  echo
  [ -n "$JOBS" ] && [ -n "$SERVERS" ] && awk -F'\t' -v servers="$SERVERS" -v jobs="$JOBS" -v failfile="$fails" "$AWK_REPORT_LIB"'
    function ratio(a, b) { return (b > 0 && a != "") ? sprintf("%.2f", a / b) : "-" }
    {
      k = $1 SUBSEP $2
      add(k SUBSEP "iops", $4); add(k SUBSEP "mib", $5 / 1048576); add(k SUBSEP "p99", $6 / 1e6)
      add(k SUBSEP "cpu", $7 > 0 ? $8 / ($7 / 100000) : 0)
      seen[k] = 1
    }
    END {
      read_fails(failfile, nfail)
      ns = split(servers, S, " "); nj = unique_words(jobs, J)
      print "| job | server | IOPS | MiB/s | p99 ms | server CPU-s / 100k I/Os |"
      print "|---|---|---:|---:|---:|---:|"
      for (j = 1; j <= nj; j++) {
        job = J[j]
        label = job_label(job)
        for (i = 1; i <= ns; i++) {
          s = S[i]; k = job SUBSEP s
          note = ((job, s) in nfail) ? sprintf(" (%d run(s) failed)", nfail[job, s]) : ""
          if (!(k in seen)) { printf "| %s | %s | - | - | - | -%s |\n", label, s, note; continue }
          iops[k] = median(k SUBSEP "iops"); cpu[k] = median(k SUBSEP "cpu")
          printf "| %s | %s | %.0f | %.1f | %.2f | %.2f%s |\n", label, s, iops[k], median(k SUBSEP "mib"),
                 median(k SUBSEP "p99"), cpu[k], note
        }
      }
      print ""
      print "| job | IOPS ours/librbd | IOPS ours/qemu-nbd | CPU ours/librbd | CPU ours/qemu-nbd |"
      print "|---|---:|---:|---:|---:|"
      for (j = 1; j <= nj; j++) {
        job = J[j]
        o = job SUBSEP "ours"; l = job SUBSEP "librbd"; q = job SUBSEP "qemu-nbd"
        if (!(o in seen)) { printf "| %s | ours: no run | | | |\n", job; continue }
        printf "| %s | %s | %s | %s | %s |\n", job, ratio(iops[o], (l in seen) ? iops[l] : 0),
               ratio(iops[o], (q in seen) ? iops[q] : 0), ratio(cpu[o], (l in seen) ? cpu[l] : 0),
               ratio(cpu[o], (q in seen) ? cpu[q] : 0)
      }
    }' "$raw"
  echo
  echo "Medians over the rounds. IOPS ratios above 1 favour ours; CPU ratios below 1 do. Server CPU: the"
  echo "serving process from the end of the ramp until fio ended (librbd: fio itself, whose threads run"
  echo "librbd; the NBD rows leave out fio's own CPU, which is in the runs below). Both cores are shared"
  echo "by fio, the server and the OSD, so the absolute numbers are low; the comparison is what counts."
  if [ -s "$fails" ]; then
    echo
    echo "Failed or skipped runs (left out of the medians; logs in bench/results/$(basename "$keep")/):"
    echo
    awk -F'\t' '{ printf "- %s %s round %s: %s\n", $1, $2, $3, $4 }' "$fails"
  fi
  echo
  echo "Every run:"
  echo
  echo "| job | server | round | IOPS | bytes/s | p99 ns | I/Os | server CPU s | fio CPU s |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
  awk -F'\t' '{ printf "| %s | %s | %s | %.0f | %.0f | %.0f | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9 }' "$raw"
} | tee "$report"
[ "$failed" -eq 0 ] || exit 1
