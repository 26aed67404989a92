#!/usr/bin/env bash
# A throw-away one-node Ceph cluster for the integration tests and benchmarks: 1 mon, 1 mgr and
# 1 OSD whose object store is memstore (data in the OSD's RAM, `memstore page set = true`),
# cephx on, no systemd, every daemon bound to 127.0.0.1 only, every file under DIR.
#
#   scripts/ceph-cluster.sh start DIR           start it, create pool `rbd` (size 1, rbd pool init)
#                                               and image `rbd/test`; progress goes to stderr, and
#                                               the only stdout line is `export CEPH_CONF=DIR/ceph.conf`:
#                                                 eval "$(scripts/ceph-cluster.sh start /tmp/ceph)"
#   scripts/ceph-cluster.sh stop DIR [--purge]  stop it: OSD and mgr first, then the mon; --purge also
#                                               deletes DIR (and kills the OSD at once: its memstore
#                                               would otherwise write all its data to DIR first)
#   scripts/ceph-cluster.sh status DIR          which daemons run, and `ceph -s`; exit 0 when all
#                                               three run, 1 when some do, 3 when none does
#   scripts/ceph-cluster.sh osd-stop DIR        fault tests: stop only the OSD (SIGTERM, so the mon
#                                               marks it down at once and memstore saves its data to
#                                               DIR/osd.0) and wait until osd.0 is down
#   scripts/ceph-cluster.sh osd-start DIR       start the OSD again (its data reloaded) and wait until
#                                               osd.0 is up
#
# Stopping only ever signals the pids recorded under DIR/run, and only after checking that each is
# a ceph-mon, ceph-mgr or ceph-osd started with --conf DIR/ceph.conf (never anything by name).
# `start` wants a new or empty DIR and marks it (.rbdnbd-ceph-cluster); `stop --purge` deletes
# only a DIR so marked. The mon's ports are fixed: a second cluster at the same time needs other
# ports (below), and `start` says so when they are taken.
# Client settings in the conf: an admin socket per rados handle (DIR/run), one shared log
# (DIR/log/client.admin.log), errors to stderr, librbd defaults otherwise. Daemon logs:
# DIR/log/{mon.a,mgr.x,osd.0}.log.
#
# Environment:
#   CEPH_MON_PORT_V2=3300  CEPH_MON_PORT_V1=6789     the mon's msgr2 and legacy ports
#   CEPH_OSD_PORT_MIN=6800 CEPH_OSD_PORT_MAX=7300    where the OSD and mgr bind
#   CEPH_STORE_BYTES=4294967296                      memstore capacity (the OSD's RAM holds the data;
#                                                    it grows to 2-3x what was written)
#   CEPH_IMAGE_SIZE=1G                               size of rbd/test; empty: no image
#   CEPH_WITH_MGR=1                                  0: no mgr (rbd and librbd do not need one; `ceph -s`
#                                                    and `ceph df` do). Saves ~40 s in a UML guest.
#   CEPH_START_TIMEOUT=120                           seconds to wait for the mon, then for osd.0 up
#   CEPH_STOP_TIMEOUT=20                             seconds after SIGTERM before SIGKILL
#
# Needs: ceph-mon ceph-osd ceph-mgr ceph-common (Debian 12: Ceph 16.2.15); `scripts/install-deps.sh
# test` installs them. Starting takes about 6 s on a quiet 2-core machine (10-12 s next to a build),
# most of it the mgr loading its Python modules: `start` returns once the mgr is active.
set -euo pipefail

me=ceph-cluster
self=$(readlink -f "$0")
usage() {
  echo "usage: $0 start DIR | stop DIR [--purge] | status DIR | osd-stop DIR | osd-start DIR" >&2
  exit 2
}
die() { echo "$me: $*" >&2; exit 1; }

[ $# -ge 2 ] || usage
cmd=$1
DIR=$2
PURGE=
case "$cmd" in
  start | status | osd-stop | osd-start) [ $# -eq 2 ] || usage ;;
  stop)
    [ $# -le 3 ] || usage
    if [ $# -eq 3 ]; then [ "$3" = --purge ] || usage; PURGE=1; fi ;;
  *) usage ;;
esac
[ -n "$DIR" ] || usage

P2=${CEPH_MON_PORT_V2:-3300}
P1=${CEPH_MON_PORT_V1:-6789}
PMIN=${CEPH_OSD_PORT_MIN:-6800}
PMAX=${CEPH_OSD_PORT_MAX:-7300}
STORE_BYTES=${CEPH_STORE_BYTES:-4294967296}
IMAGE_SIZE=${CEPH_IMAGE_SIZE-1G}
START_TIMEOUT=${CEPH_START_TIMEOUT:-120}
STOP_TIMEOUT=${CEPH_STOP_TIMEOUT:-20}
for v in "$P2" "$P1" "$PMIN" "$PMAX" "$STORE_BYTES" "$START_TIMEOUT" "$STOP_TIMEOUT"; do
  case "$v" in '' | *[!0-9]*) die "ports, CEPH_STORE_BYTES and the timeouts must be whole numbers (got '$v')" ;; esac
done

# Every ceph command here gets --conf explicitly; a caller's CEPH_ARGS or CEPH_CONF (another
# cluster) must not leak into the tools that have no --conf (ceph-authtool, monmaptool).
unset CEPH_ARGS
export CEPH_CONF=/dev/null

MARK=.rbdnbd-ceph-cluster   # marks DIR as made by this script: stop --purge deletes only such a DIR
DAEMONS=(mon.a mgr.x osd.0)
NO_MGR=.no-mgr              # in DIR when it was started with CEPH_WITH_MGR=0

# ---------------------------------------------------------------- helpers
t0=$(date +%s%N)
ts() { local now; now=$(date +%s%N); printf '%s: [%6.2fs] %s\n' "$me" "$(( (now - t0) / 1000000 ))e-3" "$*" >&2; }

conf() { echo "$DIR/ceph.conf"; }

# The ceph CLI, bounded: it retries forever when no mon answers.
c() { timeout -k 5 60 ceph --conf "$(conf)" --connect-timeout 30 "$@"; }

alive() { # pid: running (a zombie counts as gone; daemons are re-parented to init, which may reap late)
  local st
  st=$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# Prints the pid of daemon NAME if it is alive and really ours: a ceph daemon binary whose command
# line carries this DIR's ceph.conf (guards against a reused pid). Quiet when there is none.
ours() { # name
  local f="$DIR/run/$1.pid" pid exe
  [ -f "$f" ] || return 1
  pid=$(tr -dc 0-9 <"$f")
  [ -n "$pid" ] && alive "$pid" || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  [ -n "$exe" ] || exe=$(cat "/proc/$pid/comm" 2>/dev/null || true)
  case "$exe" in
    */ceph-mon | */ceph-mgr | */ceph-osd | ceph-mon | ceph-mgr | ceph-osd) ;;
    *) echo "$me: $1: pid $pid (from $f) is '$exe', not a ceph daemon: left alone" >&2; return 1 ;;
  esac
  if ! tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF "$(conf)"; then
    echo "$me: $1: pid $pid is a ceph daemon of another cluster (not --conf $(conf)): left alone" >&2
    return 1
  fi
  echo "$pid"
}

# Signals the named daemons together, waits for all of them, SIGKILLs what outlives STOP_TIMEOUT.
stop_group() { # signal name...
  local sig=$1 n p pids=() names=() i deadline
  shift
  for n in "$@"; do
    if p=$(ours "$n"); then
      kill -"$sig" "$p" 2>/dev/null && { pids+=("$p"); names+=("$n"); }
    fi
  done
  deadline=$(( $(date +%s) + STOP_TIMEOUT ))
  for i in "${!pids[@]}"; do
    p=${pids[$i]}
    while alive "$p" && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.05; done
    if alive "$p"; then
      echo "$me: ${names[$i]} (pid $p) still alive ${STOP_TIMEOUT}s after SIG$sig: SIGKILL" >&2
      kill -KILL "$p" 2>/dev/null || true
      for ((n = 0; n < 100; n++)); do alive "$p" || break; sleep 0.05; done
    fi
    rm -f "$DIR/run/${names[$i]}.pid"
  done
}

# Listening TCP sockets on a port, any address (from /proc: no dependency on ss or netstat).
port_taken() { # port
  local hex
  hex=$(printf '%04X' "$1")
  awk -v h=":$hex" 'FNR > 1 && $4 == "0A" && substr($2, length($2) - 4) == h { found = 1 } END { exit !found }' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

osd_state() { # prints up|down|? for osd.0
  local line
  line=$(c osd dump 2>/dev/null | grep '^osd\.0 ' || true)
  case "$line" in "osd.0 up"*) echo up ;; "osd.0 down"*) echo down ;; *) echo '?' ;; esac
}

wait_osd() { # up|down timeout-seconds
  local want=$1 deadline=$(( $(date +%s) + $2 ))
  while [ "$(osd_state)" != "$want" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

# Runs a command with its output kept back, shown only when it fails.
quiet() {
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  [ "$rc" -eq 0 ] || { echo "$me: \`$*\` failed (status $rc): $out" >&2; return "$rc"; }
}

log_tails() {
  local f
  for f in "$DIR"/log/*.log "$DIR"/log/*.out; do
    [ -s "$f" ] || continue
    echo "--- $f (last lines) ---" >&2
    tail -n 8 "$f" >&2
  done
}

start_osd_daemon() {
  ceph-osd --conf "$(conf)" -i 0 >>"$DIR/log/osd.0.out" 2>&1 \
    || { log_tails; die "ceph-osd -i 0 failed to start (see $DIR/log/osd.0.log)"; }
}

# ---------------------------------------------------------------- stop / status / osd-*
if [ "$cmd" != start ]; then
  if [ ! -d "$DIR" ]; then
    [ "$cmd" = stop ] && exit 0
    die "$DIR does not exist"
  fi
  DIR=$(cd "$DIR" && pwd)
fi

case "$cmd" in
  stop)
    if [ -n "$PURGE" ] && [ ! -f "$DIR/$MARK" ] && [ -n "$(ls -A "$DIR")" ]; then
      die "$DIR was not made by $0 (no $MARK): not purging it"
    fi
    # OSD and mgr before the mon: a stopping OSD asks the mon to mark it down and waits up to
    # 5 s (osd_mon_shutdown_timeout) for an answer that never comes once the mon is gone.
    if [ -n "$PURGE" ]; then
      stop_group KILL osd.0   # nothing to keep: skip memstore's save of every object to DIR
      stop_group TERM mgr.x
    else
      stop_group TERM osd.0 mgr.x
    fi
    stop_group TERM mon.a
    rm -f "$DIR/.ready"
    if [ -n "$PURGE" ]; then rm -rf "$DIR"; fi
    exit 0 ;;

  status)
    running=0
    [ -e "$DIR/$NO_MGR" ] && DAEMONS=(mon.a osd.0)
    for n in "${DAEMONS[@]}"; do
      if p=$(ours "$n"); then echo "$n running (pid $p)"; running=$((running + 1)); else echo "$n not running"; fi
    done
    echo "CEPH_CONF=$(conf)"
    if ours mon.a >/dev/null; then c -s || true; fi
    [ "$running" -eq ${#DAEMONS[@]} ] && exit 0
    [ "$running" -gt 0 ] && exit 1
    exit 3 ;;

  osd-stop)
    ours mon.a >/dev/null || die "the mon of $DIR is not running"
    p=$(ours osd.0) || die "osd.0 of $DIR is not running"
    stop_group TERM osd.0
    wait_osd down 30 || die "osd.0 (pid $p) has exited but the mon still shows it up after 30 s"
    ts "osd.0 stopped and down"
    exit 0 ;;

  osd-start)
    ours mon.a >/dev/null || die "the mon of $DIR is not running"
    if ours osd.0 >/dev/null; then
      ts "osd.0 already running"
    else
      start_osd_daemon
    fi
    wait_osd up "$START_TIMEOUT" || { log_tails; die "osd.0 not up within ${START_TIMEOUT}s (see $DIR/log/osd.0.log)"; }
    ts "osd.0 up"
    exit 0 ;;
esac

# ---------------------------------------------------------------- start
missing=()
for prog in ceph-mon:ceph-mon ceph-osd:ceph-osd ceph-mgr:ceph-mgr ceph:ceph-common ceph-authtool:ceph-common \
    rbd:ceph-common monmaptool:ceph-base timeout:coreutils; do
  command -v "${prog%%:*}" >/dev/null 2>&1 || missing+=("${prog%%:*} (Debian package ${prog#*:})")
done
if [ ${#missing[@]} -gt 0 ]; then
  printf '%s: missing: %s\n' "$me" "${missing[@]}" >&2
  die "Ceph is not installed: run scripts/install-deps.sh test"
fi

if [ -d "$DIR" ]; then
  DIR=$(cd "$DIR" && pwd)
  if [ -e "$DIR/ceph.conf" ]; then
    for n in "${DAEMONS[@]}"; do
      if ours "$n" >/dev/null; then die "a cluster is already running in $DIR: $0 stop $DIR [--purge] first"; fi
    done
    die "$DIR holds a stopped cluster: $0 stop $DIR --purge first"
  fi
  if [ -n "$(ls -A "$DIR")" ] && [ ! -f "$DIR/$MARK" ]; then
    die "$DIR is not empty: give a new or empty directory"
  fi
elif [ -e "$DIR" ]; then
  die "$DIR exists and is not a directory"
fi
for p in "$P2" "$P1"; do
  if port_taken "$p"; then
    die "port $p on this machine is already in use (another cluster still running? \`$0 status DIR\` / \`stop DIR\` it, or set CEPH_MON_PORT_V2 and CEPH_MON_PORT_V1)"
  fi
done
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
# Unix socket paths (admin sockets) are limited to 107 bytes.
[ ${#DIR} -le 60 ] || echo "$me: warning: $DIR is long; admin sockets under it may not bind (limit 107 bytes)" >&2

on_fail() {
  local rc=$?
  trap - ERR
  echo "$me: start FAILED (status $rc)" >&2
  log_tails
  CEPH_STOP_TIMEOUT=5 "$self" stop "$DIR" >&2 || true
  echo "$me: daemons stopped; files left in $DIR ($0 stop $DIR --purge removes them)" >&2
  exit "$rc"
}
trap on_fail ERR
set -E

touch "$DIR/$MARK"
mkdir -p "$DIR"/{run,log,mon.a,mgr.x,osd.0}
FSID=$(cat /proc/sys/kernel/random/uuid)
CONF=$(conf)

cat >"$CONF" <<EOF
# Written by rbdnbd's scripts/ceph-cluster.sh: a throw-away one-node cluster on 127.0.0.1.
[global]
fsid = $FSID
mon host = [v2:127.0.0.1:$P2,v1:127.0.0.1:$P1]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
public network = 127.0.0.0/8
cluster network = 127.0.0.0/8
ms bind ipv4 = true
ms bind ipv6 = false
ms bind port min = $PMIN
ms bind port max = $PMAX
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
run dir = $DIR/run
pid file = $DIR/run/\$name.pid
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
log to stderr = false
err to stderr = true
mon cluster log file = $DIR/log/cluster.log
chdir = ""
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
mon data avail warn = 2
mon data avail crit = 1
mon max pg per osd = 1000

# Every client (rbd, ceph, fio, qemu, rbd-nbd...; \$cctid: each rados handle of a process) gets
# its own admin socket; they share the log DIR/log/client.admin.log. The admin keyring goes here
# only: a global "keyring =" breaks the mon.
[client]
keyring = $DIR/\$name.keyring
admin socket = $DIR/run/\$name.\$pid.\$cctid.asok
pid file = ""

[mon]
mon data = $DIR/\$name
mon compact on start = false
# Map changes (pool create, application enable, OSD boot) wait for this batching interval
# (default 1 s); 0.1 halves the start-up time.
paxos propose interval = 0.1

[mgr]
mgr data = $DIR/\$name
mgr initial modules = iostat

[osd]
osd data = $DIR/\$name
osd objectstore = memstore
memstore device bytes = $STORE_BYTES
memstore page set = true
# SIGTERM unmounts the store, so memstore writes its objects to osd data and reloads them on the
# next start (osd-stop / osd-start keep the data). The default fast shutdown exits without that,
# and the restarted OSD comes back with the empty store of its mkfs: stale PGs, hung clients.
osd fast shutdown = false
osd class load list = *
osd class default list = *
osd crush update on start = true
EOF
ceph-authtool --create-keyring "$DIR/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool --create-keyring "$DIR/client.admin.keyring" --gen-key -n client.admin \
  --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
ceph-authtool "$DIR/mon.keyring" --import-keyring "$DIR/client.admin.keyring" >/dev/null
export CEPH_CONF=$CONF   # for any tool that looks only at the environment
monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$P2,v1:127.0.0.1:$P1]" "$DIR/monmap" >/dev/null
ceph-mon --conf "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/mon.keyring" >"$DIR/log/mon.a.mkfs.out" 2>&1
ceph-mon --conf "$CONF" -i a >>"$DIR/log/mon.a.out" 2>&1
ts "mon.a started (pid $(cat "$DIR/run/mon.a.pid" 2>/dev/null || echo '?'))"

deadline=$(( $(date +%s) + START_TIMEOUT ))
until timeout -k 2 10 ceph --conf "$CONF" --connect-timeout 5 mon stat >/dev/null 2>&1; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "$me: the mon does not answer after ${START_TIMEOUT}s" >&2; false
  fi
  sleep 0.3
done
ts "mon.a answers"

if [ "${CEPH_WITH_MGR:-1}" = 1 ]; then
  quiet c auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' -o "$DIR/mgr.x/keyring"
  ceph-mgr --conf "$CONF" -i x >>"$DIR/log/mgr.x.out" 2>&1
  ts "mgr.x started"
else
  touch "$DIR/$NO_MGR"
fi

OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
OSD_SECRET=$(ceph-authtool --gen-print-key)
OSD_ID=$(echo "{\"cephx_secret\": \"$OSD_SECRET\"}" | c osd new "$OSD_UUID" -i -)
if [ "$OSD_ID" != 0 ]; then echo "$me: expected osd id 0, the mon gave '$OSD_ID'" >&2; false; fi
ceph-authtool --create-keyring "$DIR/osd.0/keyring" --name osd.0 --add-key "$OSD_SECRET" >/dev/null
ceph-osd --conf "$CONF" -i 0 --mkfs --osd-uuid "$OSD_UUID" >"$DIR/log/osd.0.mkfs.out" 2>&1
start_osd_daemon
ts "osd.0 started (pid $(cat "$DIR/run/osd.0.pid" 2>/dev/null || echo '?'))"
if ! wait_osd up "$START_TIMEOUT"; then echo "$me: osd.0 not up after ${START_TIMEOUT}s" >&2; false; fi
ts "osd.0 up"

quiet c osd pool create rbd 8 8
size=$(c osd pool get rbd size)          # "size: 1" (osd pool default size); force it if overridden
[ "$size" = "size: 1" ] || c osd pool set rbd size 1 --yes-i-really-mean-it >/dev/null
timeout -k 5 120 rbd --conf "$CONF" pool init rbd
ts "pool rbd initialised"
if [ -n "$IMAGE_SIZE" ]; then
  timeout -k 5 120 rbd --conf "$CONF" create --size "$IMAGE_SIZE" rbd/test
  ts "image rbd/test ($IMAGE_SIZE) created"
fi
# The mgr loads its Python modules for a few seconds; rbd does not need it, but `ceph -s`,
# `ceph df` and `ceph pg stat` do, and it creates its own pool once active: wait for that.
if [ ! -e "$DIR/$NO_MGR" ]; then
  deadline=$(( $(date +%s) + START_TIMEOUT ))
  until c mgr stat 2>/dev/null | grep -q '"available": true'; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "$me: the mgr is not active after ${START_TIMEOUT}s" >&2; false
    fi
    sleep 0.5
  done
  ts "mgr.x active"
fi
touch "$DIR/.ready"
trap - ERR
ts "ready"
echo "export CEPH_CONF=$CONF"
