# bench/lib.sh: shell helpers shared by the benchmark scripts (export-fio.sh, rbd-fio.sh,
# kernel-fio.sh). Sourced, never run: a script sets BENCH_NAME (the prefix of its messages),
# `here` (bench/) and `root` (the checkout), then does `. "$here/lib.sh"`. Only functions and the
# AWK_REPORT_LIB text are defined here; sourcing runs nothing but the check that BENCH_NAME is set.
#
# Globals the helpers read or set: RUNTIME RAMP ROUNDS SIZE JOBS SERVERS (the run settings),
# fio_pid (the fio run in flight, for kill_fio), json_tool (python3 or jq, for fio_extract;
# python3 when unset), stop_status (set by stop_pid), run_job (called by run_rounds).
#
# shellcheck shell=bash disable=SC2034,SC2154 # globals set here for, or by, the sourcing script

: "${BENCH_NAME:?set BENCH_NAME before sourcing bench/lib.sh}"

# Prints the message, prefixed with the script's name, to stderr and exits 1.
die() { echo "$BENCH_NAME: $*" >&2; exit 1; }

# True when the command (or executable path) exists.
have() { command -v "$1" >/dev/null 2>&1; }

# Prints a progress line, with the time of day, to stderr.
log() { echo "[$(date +%T)] $*" >&2; }

# Names each missing dependency given (one line each) and exits 2; returns when none is given.
exit_if_missing() { # description...
  local d
  [ $# -gt 0 ] || return 0
  for d in "$@"; do printf '%s: missing dependency: %s\n' "$BENCH_NAME" "$d" >&2; done
  exit 2
}

# Sets the run settings the fio benchmarks share to their defaults where the environment has none.
set_run_defaults() {
  RUNTIME=${RUNTIME:-10}
  RAMP=${RAMP:-2}
  ROUNDS=${ROUNDS:-2}
  SIZE=${SIZE:-1G}
  JOBS=${JOBS-randread randwrite seqread seqwrite}
}

# Dies unless RUNTIME, RAMP and ROUNDS are whole numbers and RUNTIME and ROUNDS at least 1.
check_run_settings() {
  case "$RUNTIME$RAMP$ROUNDS" in *[!0-9]*) die "RUNTIME, RAMP and ROUNDS must be whole numbers" ;; esac
  if [ "$ROUNDS" -lt 1 ] || [ "$RUNTIME" -lt 1 ]; then die "RUNTIME and ROUNDS must be at least 1"; fi
}

# True when cli/target holds a build (classes and dependency jars) that bin/rbd-nbd can run.
is_built() { [ -d "$root/cli/target/lib" ] && [ -d "$root/cli/target/classes" ]; }

# Runs the named function on exit; Ctrl-C and SIGTERM exit (130, 143) through it.
trap_exit() { # function
  # shellcheck disable=SC2064 # the name, not a command, is what is expanded now
  trap "$1" EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# Stops the fio run in flight ($fio_pid), if there is one, and reaps it.
kill_fio() {
  if [ -n "${fio_pid:-}" ]; then kill -TERM "$fio_pid" 2>/dev/null || true; wait "$fio_pid" 2>/dev/null || true; fi
}

# utime + stime of the whole process (every thread), in clock ticks; 0 once the process is gone.
cpu_ticks() { # pid
  awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# Context switches (voluntary + involuntary) summed over the process's live threads: per request,
# what its hand-offs between threads cost. A thread that ends between two readings takes its count
# with it, so pools that retire threads mid-run read low.
ctx_switches() { # pid
  cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches:/ { n += $2 } END { print n + 0 }'
}

# Waits up to 60 s until a server listens on its socket (and, given its stdout file, has printed
# its URI with that socket there). Returns 0 when ready, 1 when the process ended, 2 on timeout.
wait_listening() { # pid sock [stdout-file]
  local pid=$1 sock=$2 out=${3:-} i
  for ((i = 0; i < 600; i++)); do
    kill -0 "$pid" 2>/dev/null || return 1
    if [ -S "$sock" ] && { [ -z "$out" ] || grep -qF "socket=$sock" "$out"; }; then return 0; fi
    sleep 0.1
  done
  return 2
}

# SIGTERM, then SIGKILL if the process is still there after 30 s; reaps it and sets stop_status
# to its exit status.
stop_pid() { # pid name
  local pid=$1 name=$2 i
  stop_status=0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    log "  $name (pid $pid) ignored SIGTERM for 30 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || stop_status=$?
}

# fio's JSON output -> "iops bw_bytes p99_ns io_bytes" of jobs[0] in one direction. The JSON is
# read from the first line starting with `{`: fio's nbd engine prints a line before it.
fio_extract() { # json-file read|write
  if [ "${json_tool:-python3}" = python3 ]; then
    python3 - "$1" "$2" <<'EOF'
import json, re, sys
text = open(sys.argv[1]).read()
m = re.search(r'^\{', text, re.M)
if not m:
    sys.exit("no JSON in " + sys.argv[1])
d = json.JSONDecoder().raw_decode(text[m.start():])[0]["jobs"][0][sys.argv[2]]
p99 = d.get("clat_ns", {}).get("percentile", {}).get("99.000000", 0)
print(d["iops"], d["bw_bytes"], p99, d["io_bytes"])
EOF
  else
    sed -n '/^{/,$p' "$1" | jq -r --arg d "$2" \
      '.jobs[0][$d] | "\(.iops) \(.bw_bytes) \(.clat_ns.percentile["99.000000"] // 0) \(.io_bytes)"'
  fi
}

# The fio parameters of a job of JOBS: "rw bs bytes-per-io iodepth direction"; dies on an unknown job.
job_spec() { # job
  case "$1" in
    randread) echo "randread 4k 4096 256 read" ;;
    randwrite) echo "randwrite 4k 4096 256 write" ;;
    seqread) echo "read 1M 1048576 16 read" ;;
    seqwrite) echo "write 1M 1048576 16 write" ;;
    *) die "unknown job '$1' (JOBS takes randread randwrite seqread seqwrite)" ;;
  esac
}

# How many fio runs JOBS, ROUNDS and SERVERS make.
run_count() { echo $(( $(wc -w <<<"$JOBS") * ROUNDS * $(wc -w <<<"$SERVERS") )); }

# Every job of JOBS, ROUNDS times, each round every server of SERVERS back to back (so machine
# noise hits them alike): calls the script's `run_job JOB SERVER ROUND N`, N counting runs from 1.
run_rounds() {
  local job round s n=0
  for job in $JOBS; do
    job_spec "$job" >/dev/null
    for ((round = 1; round <= ROUNDS; round++)); do
      for s in $SERVERS; do n=$((n + 1)); run_job "$job" "$s" "$round" "$n"; done
    done
  done
}

# "commit ID[ (+ uncommitted changes)]; N cores, M GiB": what was measured, on what machine.
checkout_and_machine() {
  echo "commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$root" diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)'); $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
}

# awk functions for the report tables, put before a report's own program:
#   add(key, v)          collects a value under a key
#   median(key)          the median of the values collected under the key
#   job_label(job)       a job's name with its block size and queue depth, e.g. "randread 4k QD256"
#   unique_words(s, A)   splits s at spaces into A[1..n] without repeats; returns n
#   read_fails(file, N)  counts the lines of a fails file (job server round why) into N[job, server]
# shellcheck disable=SC2016 # awk's $-fields, not the shell's
AWK_REPORT_LIB='
    function add(key, v) { val[key, ++cnt[key]] = v }
    function median(key,    n, i, j, v, a) {
      n = cnt[key]
      for (i = 1; i <= n; i++) a[i] = val[key, i]
      for (i = 2; i <= n; i++) { v = a[i]; for (j = i - 1; j >= 1 && a[j] > v; j--) a[j + 1] = a[j]; a[j + 1] = v }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function job_label(job) {
      return job == "randread" ? "randread 4k QD256" : job == "randwrite" ? "randwrite 4k QD256" : \
             job == "seqread" ? "seqread 1M QD16" : job == "seqwrite" ? "seqwrite 1M QD16" : job
    }
    function unique_words(s, A,    n, m, i, W, had) {
      n = split(s, W, " "); m = 0
      for (i = 1; i <= n; i++) if (!(W[i] in had)) { had[W[i]] = 1; A[++m] = W[i] }
      return m
    }
    function read_fails(file, N,    line, F) {
      while ((getline line < file) > 0) { split(line, F, "\t"); N[F[1], F[2]]++ }
    }'
