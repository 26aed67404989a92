#!/usr/bin/env bash
# bench/export-fio.sh: the same fio jobs against three NBD servers, alternated job by job.
#
#   ours     bin/rbd-nbd serve memory:SIZE --socket S
#   nbdkit   nbdkit -f -U S memory SIZE
#   qemu     qemu-nbd -f raw -x '' -t --socket S FILE   (FILE: a raw file in /dev/shm, tmpfs)
#
# Jobs (fio ioengine=nbd over a Unix socket, thread, time_based, one job each):
#   randread   4k random read,  iodepth 256        (reported as IOPS)
#   randwrite  4k random write, iodepth 256        (IOPS)
#   seqread    1M sequential read,  iodepth 16     (MiB/s)
#   seqwrite   1M sequential write, iodepth 16     (MiB/s)
# For each job, each round runs ours, nbdkit, qemu back to back, so machine noise hits all
# three alike. Every image is written fully once (fio 1M sequential write) before any job, so
# reads hit data. Then a 16-connection run (numjobs=16, 4k randrw, iodepth 32 each) against a
# fresh server of ours records its peak RSS (VmHWM).
#
# Per run: IOPS or MiB/s, p99 completion latency, and the server's CPU seconds (utime+stime of
# the whole process from /proc/PID/stat, sampled after the ramp and after fio ends) per GiB moved
# in the measured window, and its context switches per request (every live thread's, from
# /proc/PID/task/*/status: the hand-offs a request costs). The table shows medians over the
# rounds. Every fio run is bounded by timeout: fio's nbd engine can hang when the server dies under it.
#
# Environment:
#   RUNTIME=10       measured seconds per run       RAMP=2       ramp seconds per run (not measured)
#   ROUNDS=2         rounds per job                 SIZE=1G      image size (all three servers)
#   JOBS="randread randwrite seqread seqwrite"      SERVERS="ours nbdkit qemu"  (empty: none)
#   RSS_IMAGES="file memory"  the 16-connection run on ours, once per image kind ("" to skip):
#                    file   = file:/dev/shm/... (tmpfs; image data is page cache, not in the RSS:
#                             this is the engine's own memory)
#                    memory = memory:SIZE (the image lives in the Java heap, so RSS >= SIZE)
#   RBDNBD_JAVA_OPTS extra JVM options for our server (read by bin/rbd-nbd)
#   SHM=/dev/shm     where the qemu-nbd raw file, the file image and the sockets go
#   JSON_TOOL        python3 or jq (default: python3 when present)
#
# Writes the report to stdout and to bench/results/export-fio-DATE.txt.
set -euo pipefail

here=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
root=$(cd "$here/.." && pwd)
BENCH_NAME=export-fio
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

set_run_defaults
SERVERS=${SERVERS-ours nbdkit qemu}
RSS_IMAGES=${RSS_IMAGES-file memory}
SHM=${SHM:-/dev/shm}

# ---------------------------------------------------------------- dependencies
missing=()
have fio || missing+=("fio (Debian package: fio)")
if have fio && ! fio --enghelp=nbd >/dev/null 2>&1; then
  missing+=("fio's nbd ioengine (this fio was built without libnbd; Debian's fio package has it)")
fi
case " $SERVERS " in *" nbdkit "*) have nbdkit || missing+=("nbdkit (Debian package: nbdkit)") ;; esac
case " $SERVERS " in *" qemu "*) have qemu-nbd || missing+=("qemu-nbd (Debian package: qemu-utils)") ;; esac
have java || missing+=("java 17 (Debian package: openjdk-17-jre-headless)")
have getconf || missing+=("getconf (Debian package: libc-bin)")
json_tool=${JSON_TOOL:-}
if [ -n "$json_tool" ]; then have "$json_tool" || missing+=("$json_tool (JSON_TOOL)")
elif have python3; then json_tool=python3
elif have jq; then json_tool=jq
else missing+=("python3 or jq for fio's JSON output (Debian package: python3-minimal or jq)"); fi
is_built || have mvn || missing+=("mvn, to build the project (Debian package: maven)")
exit_if_missing "${missing[@]}"
[ -d "$SHM" ] && [ -w "$SHM" ] || die "$SHM is not a writable directory (set SHM to a tmpfs)"
check_run_settings

if ! is_built; then
  log "cli/target/lib missing: building (mvn -q -DskipTests package)"
  (cd "$root" && mvn -q -DskipTests package) || die "build failed"
fi

CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- bookkeeping and cleanup
work=$(mktemp -d "$SHM/rbdnbd-bench.XXXXXX")
pids=()       # every server we started
fio_pid=      # the fio run in progress, if any
declare -A server_pid server_uri

cleanup() {
  local rc=$? pid i
  trap - EXIT INT TERM
  kill_fio
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "export-fio: server $pid ignored SIGTERM for 10 s, killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  if [ "$rc" -ne 0 ] && [ -n "${stamp:-}" ]; then # keep the servers' logs and fio's output
    local keep="$here/results/export-fio-$stamp-failed"
    mkdir -p "$keep"
    find "$work" -maxdepth 1 -type f \( -name '*.log' -o -name '*.out' -o -name '*.json' -o -name '*.txt' \
      -o -name '*.tsv' \) -exec cp {} "$keep/" \;
    echo "export-fio: failed; server logs and fio output kept in $keep" >&2
  fi
  rm -rf "$work"
  exit "$rc"
}
trap_exit cleanup

# Stops one server we started; for ours, checks that SIGTERM gives exit status 0.
stop_server() { # pid name
  local pid=$1 name=$2 p keep=()
  stop_pid "$pid" "$name"
  for p in "${pids[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  pids=("${keep[@]}")
  [ "$stop_status" -eq 0 ] || log "warning: $name (pid $pid) exited with status $stop_status after SIGTERM"
}

# Waits until the server listens on its socket (and, for ours, printed its URI); dies if it does not.
wait_ready() { # pid sock name [stdout-file]
  local pid=$1 sock=$2 name=$3 rc=0
  wait_listening "$pid" "$sock" "${4:-}" || rc=$?
  case "$rc" in
    0) ;;
    1) cat "$work/$name.log" >&2 2>/dev/null; die "$name exited during start-up" ;;
    *) die "$name did not listen on $sock within 60 s" ;;
  esac
}

start_server() { # name -> sets server_pid[name], server_uri[name]
  local name=$1 sock="$work/$1.sock" pid
  case "$name" in
    ours)
      "$root/bin/rbd-nbd" serve "memory:$SIZE" --socket "$sock" >"$work/ours.out" 2>"$work/ours.log" &
      pid=$!; pids+=("$pid")
      wait_ready "$pid" "$sock" ours "$work/ours.out" ;;
    nbdkit)
      nbdkit -f -U "$sock" memory "$SIZE" >"$work/nbdkit.log" 2>&1 &
      pid=$!; pids+=("$pid")
      wait_ready "$pid" "$sock" nbdkit ;;
    qemu)
      truncate -s "$SIZE" "$work/qemu.img"
      qemu-nbd -f raw -x '' -t --socket "$sock" "$work/qemu.img" >"$work/qemu.log" 2>&1 &
      pid=$!; pids+=("$pid")
      wait_ready "$pid" "$sock" qemu ;;
    *) die "unknown server '$name' (SERVERS takes ours, nbdkit, qemu)" ;;
  esac
  server_pid[$name]=$pid
  server_uri[$name]="nbd+unix:///?socket=$sock"
}

raw="$work/raw.tsv"   # job server round iops bw_bytes p99_ns io_bytes cpu_ticks ctx_switches
fails="$work/fails.tsv"  # job server round why
: >"$raw"
: >"$fails"

# A run whose fio failed: recorded (the table says so), the server's log kept, and a server that
# died restarted and prefilled again, so the other runs still happen. The script exits 1 at the end.
run_failed() { # job server round spid
  local job=$1 server=$2 round=$3 spid=$4 why status=0
  tail -n 3 "$work/fio.out" | sed 's/^/    fio: /' >&2
  if kill -0 "$spid" 2>/dev/null; then
    why="fio failed, server still up: $(grep -m1 -E 'error|Error' "$work/fio.out" | cut -c1-160)"
  else
    wait "$spid" 2>/dev/null || status=$?
    why="server exited (status $status): $(grep -m1 -E 'Error|Exception|FATAL|fatal' "$work/$server.log" 2>/dev/null | cut -c1-200)"
    cp "$work/$server.log" "$work/$server-died-$job-$round.log" 2>/dev/null || true
  fi
  log "  $job round $round $server FAILED: $why"
  printf '%s\t%s\t%s\t%s\n' "$job" "$server" "$round" "$why" >>"$fails"
  if ! kill -0 "$spid" 2>/dev/null; then
    log "  restarting $server"
    start_server "$server"
    prefill "$server"
  fi
}

run_job() { # job server round
  local job=$1 server=$2 round=$3 rw bs bsb qd dir
  read -r rw bs bsb qd dir <<<"$(job_spec "$job")"
  local json="$work/$job-$server-$round.json" spid=${server_pid[$server]}
  timeout -k 5 $(( RAMP + RUNTIME + 60 )) fio --name="$job" --ioengine=nbd --uri="${server_uri[$server]}" --thread \
      --rw="$rw" --bs="$bs" --iodepth="$qd" --numjobs=1 --size="$SIZE" --norandommap \
      --time_based --runtime="$RUNTIME" --ramp_time="$RAMP" \
      --output-format=json --output="$json" >"$work/fio.out" 2>&1 &
  local fpid=$!
  fio_pid=$fpid
  sleep "$RAMP"
  local c0 c1 x0 x1 s0 s1
  c0=$(cpu_ticks "$spid"); x0=$(ctx_switches "$spid"); s0=$(date +%s.%N)
  # context switches end half a second before fio does: a server's per-connection threads (nbdkit's)
  # end with the connection and take their counts with them
  sleep "$(awk -v r="$RUNTIME" 'BEGIN { print r - 0.5 }')"
  x1=$(ctx_switches "$spid"); s1=$(date +%s.%N)
  if ! wait "$fpid"; then fio_pid=; run_failed "$job" "$server" "$round" "$spid"; return 0; fi
  fio_pid=
  c1=$(cpu_ticks "$spid")
  local iops bw p99 io
  read -r iops bw p99 io <<<"$(fio_extract "$json" "$dir")"
  local ctx # per request: the switches over the window, by the requests fio's rate makes in it
  ctx=$(awk -v x="$((x1 - x0))" -v bw="$bw" -v bsb="$bsb" -v s0="$s0" -v s1="$s1" \
      'BEGIN { n = bw / bsb * (s1 - s0); printf "%.2f", (n > 0 ? x / n : 0) }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$job" "$server" "$round" "$iops" "$bw" "$p99" "$io" "$((c1 - c0))" \
      "$ctx" >>"$raw"
  awk -v j="$job" -v s="$server" -v r="$round" -v iops="$iops" -v bw="$bw" -v p99="$p99" -v io="$io" \
      -v t="$((c1 - c0))" -v hz="$CLK_TCK" -v ctx="$ctx" 'BEGIN {
    thr = (j ~ /^rand/) ? sprintf("%.0f IOPS", iops) : sprintf("%.0f MiB/s", bw / 1048576)
    cpu = io > 0 ? sprintf("%.2f", (t / hz) / (io / 1073741824)) : "-"
    printf "  %-9s round %d %-6s %14s  p99 %8.3f ms  %s CPU-s/GiB  %s ctx sw/IO\n", j, r, s, thr, p99 / 1e6, cpu, ctx }' >&2
}

prefill() { # server
  local server=$1 t0 t1
  t0=$(date +%s.%N)
  if ! fio --name=prefill --ioengine=nbd --uri="${server_uri[$server]}" --thread --rw=write --bs=1M \
      --iodepth=16 --size="$SIZE" --output="$work/prefill-$server.txt" >"$work/fio.out" 2>&1; then
    cat "$work/fio.out" "$work/prefill-$server.txt" >&2; die "prefill of $server failed"
  fi
  t1=$(date +%s.%N)
  log "prefilled $server ($SIZE) in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s"
}

status_kib() { # pid field -> KiB
  awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

# ---------------------------------------------------------------- the run
mkdir -p "$here/results"
stamp=$(date +%Y%m%d-%H%M%S)
report="$here/results/export-fio-$stamp.txt"
started=$(date +%s)
log "$(run_count) runs of ${RAMP}+${RUNTIME} s (+ prefill and the 16-connection runs); report: $report"

for s in $SERVERS; do start_server "$s"; done
for s in $SERVERS; do prefill "$s"; done

run_rounds

# Peers are done: stop them before the 16-connection runs so they cost no memory or CPU.
for s in $SERVERS; do stop_server "${server_pid[$s]}" "$s"; done

rss_lines=()
for kind in $RSS_IMAGES; do
  sock="$work/rss-$kind.sock"
  case "$kind" in
    file) image="file:$work/rss.img"; label="file:$SHM/... (tmpfs)"; extra=(--size "$SIZE") ;;
    memory) image="memory:$SIZE"; label=$image; extra=() ;;
    *) die "unknown RSS_IMAGES kind '$kind' (file, memory)" ;;
  esac
  "$root/bin/rbd-nbd" serve "$image" "${extra[@]}" --socket "$sock" >"$work/rss-$kind.out" 2>"$work/rss-$kind.log" &
  pid=$!; pids+=("$pid")
  wait_ready "$pid" "$sock" "rss-$kind" "$work/rss-$kind.out"
  idle=$(status_kib "$pid" VmRSS)
  idle_socks=$(find "/proc/$pid/fd" -lname 'socket:*' 2>/dev/null | wc -l)
  json="$work/rss-$kind.json"
  timeout -k 5 $(( RAMP + RUNTIME + 60 )) fio --name=rss --ioengine=nbd --uri="nbd+unix:///?socket=$sock" --thread --rw=randrw --bs=4k \
      --iodepth=32 --numjobs=16 --group_reporting --size="$SIZE" --norandommap \
      --time_based --runtime="$RUNTIME" --ramp_time="$RAMP" \
      --output-format=json --output="$json" >"$work/fio.out" 2>&1 &
  fpid=$!
  fio_pid=$fpid
  sleep "$(( (RAMP + RUNTIME) / 2 ))"
  # connections: sockets the server holds now, less those it held idle (the listening one...)
  conns=$(( $(find "/proc/$pid/fd" -lname 'socket:*' 2>/dev/null | wc -l) - idle_socks ))
  if ! wait "$fpid"; then
    fio_pid=
    tail -n 3 "$work/fio.out" | sed 's/^/    fio: /' >&2
    why=$(grep -m1 -E 'Error|Exception' "$work/rss-$kind.log" 2>/dev/null | cut -c1-200 || true)
    kill -0 "$pid" 2>/dev/null || why="server exited: $why"
    printf '%s\t%s\t%s\t%s\n' "16conn" "ours ($label)" 1 "${why:-fio failed}" >>"$fails"
    log "16-connection run on $image FAILED: ${why:-fio failed}"
    rss_lines+=("$(printf '%-28s %10s' "$label" FAILED)")
    stop_server "$pid" "rss-$kind"
    continue
  fi
  fio_pid=
  hwm=$(status_kib "$pid" VmHWM)
  rss_end=$(status_kib "$pid" VmRSS)
  anon_end=$(status_kib "$pid" RssAnon)
  read -r riops _ _ _ <<<"$(fio_extract "$json" read)"
  read -r wiops _ _ _ <<<"$(fio_extract "$json" write)"
  stop_server "$pid" "rss-$kind"
  rss_lines+=("$(awk -v k="$label" -v h="$hwm" -v i="$idle" -v e="$rss_end" -v a="$anon_end" -v c="$conns" \
    -v r="$riops" -v w="$wiops" \
    'BEGIN { printf "%-28s %10.0f %9.0f %9.0f %9.0f %6d %10.0f", k, h / 1024, i / 1024, e / 1024, a / 1024, c, r + w }')")
  log "16-connection run on $image: VmHWM $((hwm / 1024)) MiB"
done

elapsed=$(( $(date +%s) - started ))

# ---------------------------------------------------------------- the report
{
  echo "rbdnbd export benchmark (bench/export-fio.sh), $(date -Is)"
  checkout_and_machine
  echo "$(fio --version); $(nbdkit --version 2>/dev/null | head -1); $(qemu-nbd --version 2>/dev/null | head -1 | cut -d' ' -f1-2); $(java -version 2>&1 | head -1)"
  echo "RUNTIME=$RUNTIME s RAMP=$RAMP s ROUNDS=$ROUNDS SIZE=$SIZE RBDNBD_JAVA_OPTS='${RBDNBD_JAVA_OPTS:-}'; took ${elapsed} s"
  echo
  [ -n "$JOBS" ] && [ -n "$SERVERS" ] && awk -F'\t' -v hz="$CLK_TCK" -v servers="$SERVERS" -v jobs="$JOBS" -v failfile="$fails" "$AWK_REPORT_LIB"'
    {
      job = $1; s = $2
      thr = (job ~ /^rand/) ? $4 : $5 / 1048576
      add(job SUBSEP s SUBSEP "thr", thr)
      add(job SUBSEP s SUBSEP "p99", $6 / 1e6)
      add(job SUBSEP s SUBSEP "cpu", $7 > 0 ? ($8 / hz) / ($7 / 1073741824) : 0)
      add(job SUBSEP s SUBSEP "ctx", $9)
      seen[job, s] = 1
    }
    END {
      read_fails(failfile, failed)
      ns = split(servers, S, " "); nj = unique_words(jobs, J)
      printf "%-22s %-7s %14s %10s %16s %10s\n", "job", "server", "IOPS or MiB/s", "p99 ms", "server CPU-s/GiB", "ctx sw/IO"
      printf "%-22s %-7s %14s %10s %16s %10s\n", "---", "------", "-------------", "------", "----------------", "---------"
      for (j = 1; j <= nj; j++) {
        job = J[j]
        label = job_label(job)
        unit = (job ~ /^rand/) ? "IOPS" : "MiB/s"
        for (i = 1; i <= ns; i++) {
          s = S[i]
          note = ((job, s) in failed) ? sprintf("  (%d run(s) FAILED)", failed[job, s]) : ""
          if (!((job, s) in seen)) {
            if (note != "") printf "%-22s %-7s %14s%s\n", label, s, "-", note
            continue
          }
          t = median(job SUBSEP s SUBSEP "thr")
          med[job, s] = t
          printf "%-22s %-7s %14s %10.3f %16.2f %10.2f%s\n", label, s, sprintf("%.0f %s", t, unit),
                 median(job SUBSEP s SUBSEP "p99"), median(job SUBSEP s SUBSEP "cpu"), median(job SUBSEP s SUBSEP "ctx"), note
        }
      }
      print ""
      print "ours / best peer (throughput, medians); target from the issue: vs nbdkit memory"
      for (j = 1; j <= nj; j++) {
        job = J[j]
        if (!((job, "ours") in med)) { if ((job, "ours") in failed) printf "  %-10s  ours: every run failed\n", job; continue }
        best = 0; bname = ""
        for (i = 1; i <= ns; i++) {
          s = S[i]
          if (s != "ours" && (job, s) in med && med[job, s] > best) { best = med[job, s]; bname = s }
        }
        line = sprintf("  %-10s", job)
        line = line (best > 0 ? sprintf("  ours/best peer (%s) = %.2f", bname, med[job, "ours"] / best) : "  no peer ran")
        if ((job, "nbdkit") in med && med[job, "nbdkit"] > 0) {
          r = med[job, "ours"] / med[job, "nbdkit"]
          need = (job ~ /^rand/) ? 1.00 : 0.90
          line = line sprintf("   ours/nbdkit = %.2f (target >= %.2f: %s)", r, need, r >= need ? "met" : "NOT met")
        }
        print line
      }
    }' "$raw"
  if [ ${#rss_lines[@]} -gt 0 ]; then
    echo
    echo "ours, 16 connections (numjobs=16, 4k randrw, iodepth 32 each), fresh server per image:"
    printf '%-28s %10s %9s %9s %9s %6s %10s\n' "image" "VmHWM MiB" "idle MiB" "end MiB" "anon MiB" "conns" "IOPS r+w"
    printf '%s\n' "${rss_lines[@]}"
    echo "VmHWM: peak RSS; idle: VmRSS after start-up; end: VmRSS after the run, anon: its RssAnon;"
    echo "conns: NBD connections seen mid-run (fio's nbd engine keeps one more than numjobs open)."
    echo "Target: < 512 MiB RSS. The file image on tmpfs measures the daemon's own memory (its data"
    echo "is page cache); a memory: image keeps its data in the Java heap (up to SIZE)."
  fi
  if [ -s "$fails" ]; then
    echo
    echo "FAILED runs (left out of the medians; server logs kept in bench/results/export-fio-$stamp-failed/):"
    sed 's/^/  /' "$fails"
  fi
  echo
  echo "ctx sw/IO: the server's context switches (voluntary + involuntary, all live threads) per request"
  echo "per run: job server round IOPS bw_bytes/s p99_ns io_bytes server_cpu_ticks ctx_sw_per_IO (CLK_TCK=$CLK_TCK)"
  sed 's/^/  /' "$raw"
} | tee "$report"
if [ -s "$fails" ]; then
  exit 1
fi
