#!/usr/bin/env bash
# uml-run.sh - run one command inside a throwaway User-Mode Linux (UML) guest that has the kernel
# NBD driver loaded, so integration tests can use real /dev/nbdX devices on a host whose own
# kernel has no nbd driver (and no modules at all).
#
# usage: uml-run.sh [options] [--] COMMAND [ARG...]
#   -m MEM       guest RAM, e.g. 512M or 2G (default 1G)
#   -t SECS      wall-clock limit for the whole run, boot included (default 600)
#   -C DIR       working directory of COMMAND (default: the current directory). It must be a host
#                path the guest sees, i.e. not under /run, /dev, /proc or /sys (see below).
#   -e NAME      pass the host's variable NAME into the guest (repeatable)
#   -E NAME=VAL  set NAME=VAL in the guest (repeatable)
#   -T DIR       host directory for the run directory (default $UML_RUN_TMPDIR, else /tmp)
#   -N           do not load nbd
#   -h           this help
# environment:
#   UML_RUN_KEEP=1   keep the run directory (console.log, output.log, dmesg.log, ...) for debugging
#   UML_RUN_TMPDIR   default for -T
#   UML_RUN_KERNEL   the UML kernel (default: the one scripts/install-deps.sh test chose for this host,
#                    `uml-kernel.sh show`: Debian 12's /usr/bin/linux.uml where it boots, else
#                    Debian unstable's under /var/cache/rbdnbd/uml)
#   UML_RUN_MEMDIR   host directory for the file backing guest RAM (default: /dev/shm if suitable)
#   UML_RUN_MODULES  where the kernel's modules are (default: those of the chosen kernel)
#
# COMMAND runs as the guest's root, with stdin from /dev/null, stdout and stderr merged and
# streamed to this script's stdout. Its environment is only: PATH (with a guest-side modprobe
# first), JAVA_HOME, LANG, LC_ALL, TZ, HOME, TMPDIR (those set on the host), UML_GUEST=1,
# UML_RUN_DIR, and what -e/-E add.
#
# exit status: COMMAND's own status when it ran; otherwise
#   2 usage error            120 this kernel cannot run on this CPU (too old for its XSAVE size, AMX)
#   121 UML not installed (kernel, its modules or modprobe missing)
#   122 guest setup failed   123 this host cannot run UML at all (ptrace forbidden, no usable tmpfs)
#   124 timeout              125 the guest died without reporting a status
# COMMAND may itself exit with one of those numbers, so the last line on stderr is always a
# summary to parse instead:
#   uml-run: status=ok|usage|not-installed|kernel-incompatible|setup-failed|unsupported-host|timeout|guest-died
#            exit=N kernel_ms=N boot_ms=N cmd_ms=N total_ms=N kernel=PATH version=VER
#            (one line; timings -1 when unknown, version ? when unknown, blanks in PATH as %20)
#   kernel_ms: start to guest init; boot_ms: start to COMMAND (mounts, modprobe nbd included);
#   cmd_ms: COMMAND alone; total_ms: the whole script; kernel, version: the UML kernel booted.
# preceded, for unsupported-host and kernel-incompatible, by a line "uml-run: STATUS: REASON".
#
# How the guest is built, and why:
# - Root filesystem = the host's own "/" through hostfs (UML's filesystem that forwards every
#   file operation to the host as ordinary syscalls). No disk image to build or keep in sync:
#   the guest runs the host's java, qemu-nbd, mkfs.ext4 and the freshly built classes at the
#   very same paths, and results come back simply by writing files (the run directory, the
#   test's work directory). Consequence: writes in the guest land on the host, with the
#   permissions of the host user running this script.
# - /proc, /sys, /dev (devtmpfs), /dev/pts, /dev/shm and /run are the guest's own. /run in
#   particular is a guest-private tmpfs: the host's /run holds its live daemons' sockets, pid
#   files and locks, which the guest must neither see nor disturb (tools would think systemd
#   runs, lock files would collide), and a tmpfs in guest RAM is the right place for scratch
#   disk images: no per-I/O round trip through hostfs, nothing left behind on the host.
#   qemu-nbd -c needs /run/lock, created here. Because of that privacy the run directory and
#   every path exchanged with the guest must live elsewhere (the default /tmp is hostfs).
# - The Debian kernel ships nbd.ko etc. under /usr/lib/uml/modules/VER, not /lib/modules, so
#   a guest-side modprobe wrapper (-d onto a small tree in /run) is installed both as the
#   kernel's module loader (/proc/sys/kernel/modprobe, for autoloading) and first on PATH.
# - A JVM in the guest must be small (-Xmx64m..256m, explicit -XX:MaxDirectMemorySize, no
#   AlwaysPreTouch). The UML kernel is an ordinary host process: each guest syscall is a ptrace
#   round trip and each first touch of a user-space page is a host signal plus a host mmap. On
#   this kind of machine that is ~40 ms per newly touched MiB (java -Xms256m -XX:+AlwaysPreTouch
#   -version: 12 s, plain -Xmx64m: ~1.3 s). A small heap keeps the JVM recycling pages it already
#   has. JVM ergonomics also size the heap from guest RAM (-m), and see one CPU.
# - The guest has one CPU and loopback networking only. Its /tmp is the host's /tmp.
# shellcheck disable=SC2317  # (functions only called from traps)
set -u
exec </dev/null   # surefire may hand us a closed or never-ending stdin; nothing here reads it

SELF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MEM=1G; TMO=600; WORKDIR=$PWD; LOAD_NBD=1
BASE=${UML_RUN_TMPDIR:-/tmp}
read -r CHOSEN_KERNEL CHOSEN_MODULES < <(bash "$SELF_DIR/uml-kernel.sh" show)
KERNEL=${UML_RUN_KERNEL:-$CHOSEN_KERNEL}
MODULES=${UML_RUN_MODULES:-$CHOSEN_MODULES}
KVER=''
PASS=(PATH JAVA_HOME LANG LC_ALL TZ HOME TMPDIR); SETS=()
START_US=${EPOCHREALTIME/./}

KERNEL_MS=-1 BOOT_MS=-1 CMD_MS=-1
summary() { # status exit
  local now_us=${EPOCHREALTIME/./}
  echo "uml-run: status=$1 exit=$2 kernel_ms=$KERNEL_MS boot_ms=$BOOT_MS cmd_ms=$CMD_MS" \
    "total_ms=$(( (now_us - START_US) / 1000 )) kernel=${KERNEL// /%20} version=${KVER:-?}" >&2
}
die() { # status exit message...
  local st=$1 code=$2; shift 2
  echo "uml-run: $*" >&2; summary "$st" "$code"; exit "$code"
}
usage() { sed -n '2,/^# How the guest/{/^# How the guest/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2; }

while getopts ":m:t:C:e:E:T:Nh" o; do
  case $o in
    m) MEM=$OPTARG ;;
    t) TMO=$OPTARG ;;
    C) WORKDIR=$OPTARG ;;
    e) PASS+=("$OPTARG") ;;
    E) SETS+=("$OPTARG") ;;
    T) BASE=$OPTARG ;;
    N) LOAD_NBD= ;;
    h) usage; exit 0 ;;
    *) usage; die usage 2 "bad option -$OPTARG" ;;
  esac
done
shift $((OPTIND - 1))
[ "${1:-}" = "--" ] && shift
[ $# -gt 0 ] || { usage; die usage 2 "no command given"; }
[[ $TMO =~ ^[1-9][0-9]*$ ]] || die usage 2 "-t wants whole seconds, got '$TMO'"
[[ $MEM =~ ^([1-9][0-9]*)([KMG])$ ]] || die usage 2 "-m wants a size like 512M or 2G, got '$MEM'"
case ${BASH_REMATCH[2]} in K) MEM_BYTES=$((BASH_REMATCH[1] << 10)) ;; M) MEM_BYTES=$((BASH_REMATCH[1] << 20)) ;;
  G) MEM_BYTES=$((BASH_REMATCH[1] << 30)) ;; esac
for v in "${PASS[@]}"; do [[ $v =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die usage 2 "-e wants a variable name, got '$v'"; done
for s in "${SETS[@]+"${SETS[@]}"}"; do [[ $s =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die usage 2 "-E wants NAME=VALUE, got '$s'"; done

# --- is UML installed? (all from Debian: user-mode-linux for the kernel and its modules, kmod for modprobe)
HINT="run scripts/install-deps.sh test (Debian packages user-mode-linux and kmod; where Debian 12's kernel cannot run on the CPU, it fetches Debian unstable's: it-tests/uml/uml-kernel.sh)"
[ -x "$KERNEL" ] || die not-installed 121 "no UML kernel at $KERNEL: $HINT"
KVER=$("$KERNEL" --version 2>/dev/null) || true
if [ -z "$KVER" ] || [ ! -d "$MODULES/$KVER" ]; then
  die not-installed 121 "no modules for UML kernel '$KVER' under $MODULES: $HINT"
fi
MODPROBE=$(PATH=/usr/sbin:/sbin:/usr/bin:/bin command -v modprobe) ||
  { [ -z "$LOAD_NBD" ] || die not-installed 121 "no modprobe on the host (the guest uses it): $HINT"; }

# --- directories the guest must see through hostfs (see the header: /run, /dev, ... are private)
guest_visible() { case $(realpath -m "$1")/ in /run/* | /dev/* | /proc/* | /sys/* | /var/run/*) return 1 ;; esac; }
[ -d "$WORKDIR" ] || die usage 2 "work directory $WORKDIR does not exist"
WORKDIR=$(cd "$WORKDIR" && pwd -P)
guest_visible "$WORKDIR" || die usage 2 "work directory $WORKDIR is hidden inside the guest (private /run, /dev, /proc, /sys)"
mkdir -p "$BASE" || die usage 2 "cannot create $BASE"
BASE=$(cd "$BASE" && pwd -P)
guest_visible "$BASE" || die usage 2 "run directory base $BASE is hidden inside the guest; choose another (-T)"
RUN=$(mktemp -d "$BASE/uml-run.XXXXXXXX") || die usage 2 "cannot create a run directory under $BASE"
# The run directory's path goes on the kernel command line, which splits at blanks.
[[ $RUN =~ ^[A-Za-z0-9_./+-]+$ ]] || { rmdir "$RUN"; die usage 2 "run directory $RUN has characters the kernel command line cannot carry; choose another -T"; }
chmod 755 "$RUN"
UMID=umlrun-$$-${RUN##*.}   # unique per run: names the guest's control dir and finds its host processes
UPID='' TPID=''

# Guest RAM is a sparse file the kernel binary creates (and unlinks) in a host temp directory;
# UML prefers $TMPDIR-style variables over /dev/shm and merely warns when that is not a tmpfs,
# after which every guest page write goes to disk. So choose explicitly: /dev/shm when it is an
# exec-allowed tmpfs with room for all of MEM (Docker's default 64M /dev/shm is not: the guest
# would die of SIGBUS once it touched more), else the run directory base.
pick_memdir() {
  if [ -n "${UML_RUN_MEMDIR:-}" ]; then echo "$UML_RUN_MEMDIR"; return; fi
  if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] && [ -w /dev/shm ] &&
     ! findmnt -n -o OPTIONS --target /dev/shm 2>/dev/null | grep -qw noexec &&
     [ "$(df -P -B1 /dev/shm 2>/dev/null | awk 'NR==2 {print $4}')" -ge "$MEM_BYTES" ] 2>/dev/null; then
    echo /dev/shm
  else
    echo "uml-run: /dev/shm is missing, noexec or smaller than $MEM; guest RAM goes to a file in $BASE (slower)" >&2
    echo "$BASE"
  fi
}
MEMDIR=$(pick_memdir)

# UML maps guest memory into its host processes page range by page range, so a guest process with a
# large, scattered address space (a JVM, an OSD holding memstore objects) needs up to one host
# mapping per guest page; past vm.max_map_count (65530 by default) UML kills that guest process
# ("UML ran out of memory on the host side": the soak's OSD died so at 4-6G). Raise the limit to
# the guest's page count when we may (root), else say what will happen.
need_maps=$(( MEM_BYTES / 4096 + 65536 ))
have_maps=$(cat /proc/sys/vm/max_map_count 2>/dev/null || echo 0)
if (( have_maps < need_maps )); then
  if echo "$need_maps" 2>/dev/null > /proc/sys/vm/max_map_count; then
    echo "uml-run: raised vm.max_map_count from $have_maps to $need_maps (one host mapping per guest page, $MEM)" >&2
  else
    echo "uml-run: vm.max_map_count is $have_maps, under the $need_maps a $MEM guest may need; large guest processes may be killed ('UML ran out of memory on the host side'): sysctl -w vm.max_map_count=$need_maps as root" >&2
  fi
fi

sweep() { # kill whatever is left of this guest: UML's helper processes carry the kernel's command line
  local f   # ("[u]mid" so that grep does not find its own command line)
  # shellcheck disable=SC2013  # (paths /proc/N/cmdline, one per line)
  for f in $(grep -lsaxz -e "[u]mid=$UMID" /proc/[0-9]*/cmdline); do
    f=${f#/proc/}; kill -KILL "${f%/cmdline}" 2>/dev/null
  done
}
cleanup() {
  [ -n "$UPID" ] && kill -KILL -- "-$UPID" 2>/dev/null
  [ -n "$TPID" ] && kill "$TPID" 2>/dev/null
  sweep
  if [ -n "${UML_RUN_KEEP:-}" ]; then echo "uml-run: kept $RUN" >&2; else rm -rf "$RUN"; fi
}
interrupted() {
  trap - TERM INT HUP
  echo "uml-run: interrupted, stopping the guest" >&2
  [ -n "$UPID" ] && { kill -TERM -- "-$UPID" 2>/dev/null; sleep 1; }
  summary interrupted 143; exit 143   # the EXIT trap cleans up
}
trap cleanup EXIT
trap interrupted TERM INT HUP

# --- what the guest runs: parameters for the init script, and the command with its environment
printf 'KVER=%q\nMODDIR=%q\nLOAD_NBD=%q\nWORKDIR=%q\nMODPROBE=%q\n' \
  "$KVER" "$MODULES/$KVER" "$LOAD_NBD" "$WORKDIR" "${MODPROBE:-/usr/sbin/modprobe}" > "$RUN/params"
{ echo '# generated by uml-run.sh; run by bash in the guest'
  # shellcheck disable=SC2016
  echo 'for v in $(compgen -e); do unset "$v"; done'   # drop init's environment (kernel leftovers)
  for v in "${PASS[@]}"; do
    if [ "$v" = PATH ]; then printf 'export PATH=/run/uml-run/bin:%q\n' "${PATH:-/usr/sbin:/usr/bin:/sbin:/bin}"
    elif [ -n "${!v+x}" ]; then printf 'export %s=%q\n' "$v" "${!v}"; fi
  done
  for s in "${SETS[@]+"${SETS[@]}"}"; do printf 'export %s=%q\n' "${s%%=*}" "${s#*=}"; done
  printf 'export UML_GUEST=1 UML_RUN_DIR=%q\n' "$RUN"
  printf 'exec'; printf ' %q' "$@"; printf '\n'
} > "$RUN/cmd.sh"
cp "$SELF_DIR/uml-guest-init.sh" "$RUN/init"
chmod 755 "$RUN/init"
: > "$RUN/output.log"

# --- boot. `timeout` forwards its signals to the kernel process, which then stops its helper
# processes; those live in a process group of UML's own, so leftovers are found by umid (sweep).
# The console (kernel messages, early host-side checks) goes to console.log; the command's
# output comes through output.log, followed live.
# Kernel arguments it does not know are handed to init: UMLRUN_DIR=... arrives as a variable.
ulimit -c 0   # a guest panic aborts the kernel process: no core file the size of guest RAM
env -u TMP -u TEMP TMPDIR="$MEMDIR" timeout -k 5 "$TMO" "$KERNEL" \
  mem="$MEM" umid="$UMID" uml_dir="$RUN/uml" \
  rootfstype=hostfs rootflags=/ rw init="$RUN/init" UMLRUN_DIR="$RUN" \
  quiet con=null con0=null,fd:1 ssl=null \
  > "$RUN/console.log" 2>&1 &
UPID=$!
tail -n +1 -s 0.2 -f --pid="$UPID" "$RUN/output.log" &
TPID=$!
wait "$UPID" 2>/dev/null; URC=$?   # `wait` (not a foreground child): a SIGTERM to us is handled at once;
                                   # 2>/dev/null: no "Aborted" job notice when the kernel panics
wait "$TPID"; TPID=    # tail prints what is left, then ends: its --pid has just been reaped
UPID=

# Guest timestamps (date +%s%N in the guest) are comparable with the host's: UML reads the host clock.
ms_between() { if [ -s "$RUN/$1" ] && [ -s "$RUN/$2" ]; then echo $(( ($(cat "$RUN/$2") - $(cat "$RUN/$1")) / 1000000 )); else echo -1; fi; }
echo "${START_US}000" > "$RUN/t.start"
KERNEL_MS=$(ms_between t.start t.init); BOOT_MS=$(ms_between t.start t.cmd); CMD_MS=$(ms_between t.cmd t.end)

guest_log_tail() { # on failure, show the guest kernel's own view (nbd errors, oopses, OOM kills)
  [ -s "$RUN/dmesg.log" ] || return 0
  local skip; skip=$(cat "$RUN/dmesg.start" 2>/dev/null || echo 0)   # boot messages are noise here
  if [ "$(wc -l < "$RUN/dmesg.log")" -gt "$skip" ]; then
    echo "uml-run: guest kernel messages since the command started (last 40):" >&2
    tail -n +"$((skip + 1))" "$RUN/dmesg.log" | tail -n 40 | sed 's/^/  | /' >&2
  else
    echo "uml-run: no guest kernel messages since the command started" >&2
  fi
}
console_tail() { echo "uml-run: console (tail):" >&2; tail -n 25 "$RUN/console.log" | sed 's/^/  | /' >&2; }

if [ -f "$RUN/rc" ]; then
  RC=$(cat "$RUN/rc")
  [ "$RC" = 0 ] || guest_log_tail
  summary ok "$RC"; exit "$RC"
fi
if [ -f "$RUN/setup-failed" ]; then
  echo "uml-run: guest setup failed: $(cat "$RUN/setup-failed")" >&2
  sed 's/^/  | /' "$RUN/setup.log" >&2 2>/dev/null; guest_log_tail
  summary setup-failed 122; exit 122
fi
# A kernel that is too old for this CPU: it boots, then dies at its first process because the
# host's ptrace wants a larger XSAVE area (AMX) than the kernel passes. Not a test failure and not an
# unsupported host: a newer UML kernel runs here, and install-deps provides one.
if grep -q 'ptrace set fp regs failed' "$RUN/console.log"; then
  echo "uml-run: kernel-incompatible: the UML kernel $KERNEL ($KVER) cannot run on this CPU" \
    "($(grep -m1 -o 'ptrace set fp regs failed.*' "$RUN/console.log"): the host's XSAVE area, e.g. with AMX," \
    "is larger than this kernel passes to ptrace); use a newer UML kernel: scripts/install-deps.sh test" \
    "fetches Debian unstable's into /var/cache/rbdnbd/uml where Debian 12's cannot run, and uml-run.sh" \
    "then uses it (it-tests/uml/uml-kernel.sh; or set UML_RUN_KERNEL and UML_RUN_MODULES)" >&2
  console_tail; summary kernel-incompatible 120; exit 120
fi
# Host-side checks the kernel binary makes before it boots: when these fail, the host (container
# seccomp/ptrace policy, missing or noexec tmpfs) cannot run UML at all; that is not a test failure.
REASON=
if grep -q -E 'check_ptrace|check_sysemu|start_ptraced_child|stop_ptraced_child|PTRACE_OLDSETOPTIONS' "$RUN/console.log"; then
  REASON="ptrace is not permitted here (the UML kernel drives its processes with ptrace; seccomp, yama or a tracer forbids it)"
elif grep -q -E 'must be not mounted noexec|Failed to choose tempdir|open - cannot create' "$RUN/console.log"; then
  REASON="no usable exec-allowed temp directory for guest memory ($(grep -m1 -E 'noexec|tempdir|cannot create' "$RUN/console.log"))"
elif grep -q -E 'mapping mmap stub at' "$RUN/console.log"; then
  REASON="the host refuses UML's memory mappings ($(grep -m1 'mapping mmap stub' "$RUN/console.log"))"
fi
if [ -n "$REASON" ]; then
  echo "uml-run: unsupported-host: $REASON" >&2; console_tail; summary unsupported-host 123; exit 123
fi
if [ "$URC" = 124 ] || [ "$URC" = 137 ]; then
  echo "uml-run: timed out after ${TMO}s (command started: $([ -f "$RUN/t.cmd" ] && echo yes || echo no))" >&2
  console_tail; summary timeout 124; exit 124
fi
echo "uml-run: the guest ended without reporting a status (kernel exit code $URC)" >&2
grep -q 'Bus error - the host' "$RUN/console.log" && echo "uml-run: guest RAM backing in $MEMDIR ran out of space" >&2
grep -m1 -E 'Kernel panic|Out of memory' "$RUN/console.log" | sed 's/^/uml-run: guest: /' >&2
console_tail; guest_log_tail
summary guest-died 125; exit 125
