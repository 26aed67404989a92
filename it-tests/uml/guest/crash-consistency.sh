#!/bin/bash
# Runs inside the UML guest (it-tests CrashConsistencyIT): no write acknowledged to the kernel is
# lost when the daemon is SIGKILLed. fio writes a RBD image through /dev/nbdN with crc32c verify
# headers and an fsync every 16 writes (8 MiB/s, so the kill lands mid-run); at a random moment the daemon gets SIGKILL. Odd rounds
# map over netlink with a reattach timeout: the kernel holds the I/O, `attach` with the cookie
# serves the device again and fio carries on to the end. Even rounds map with the ioctls: the
# device fails at once, fio ends with errors, and a fresh map follows. Either way fio's verify
# state (every write it saw acknowledged) is then checked against `rbd export` of the image.
# Against a one-node Ceph cluster inside this guest (its own loopback). Prints
# "PASS crash-consistency ROUNDS rounds" and exits 0, or says what failed and exits 1.
# env: ROUNDS (10)
set -uo pipefail
# shellcheck source=it-tests/uml/guest/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ceph_dir=/run/ceph
rounds=${ROUNDS:-10}
work=/run/crash
size_mib=48

fail() {
  echo "FAIL crash-consistency: $*"
  echo "--- daemon logs:"; tail -40 "$log" 2>/dev/null
  # the whole log of the round that failed (its error lines come before the statistics), the tail of the others
  for f in "$work"/fio-*.log; do
    [ -f "$f" ] || continue
    echo "--- $f"; if [ "$f" = "$work/fio-${round:-}.log" ]; then cat "$f"; else tail -15 "$f"; fi
  done
  echo "--- kernel log:"; dmesg | tail -25
  bash "$RBDNBD_HOME/scripts/ceph-cluster.sh" stop "$ceph_dir" --purge >/dev/null 2>&1
  exit 1
}
t0=$(date +%s)
step() { echo "[$(( $(date +%s) - t0 ))s] $*"; }

# The job: sequential 64 KiB writes, each with a crc32c header (offset, number, seed), an fsync
# every 16; verify_state_save records on exit what completed, so a verify pass checks exactly
# the writes fio saw acknowledged. The verify pass reads FILE with the same job and that state.
fio_job() { # FILE SEED DIRECT extra-args...   (DIRECT 0 for the export file: tmpfs has no O_DIRECT before 6.6)
  local file=$1 seed=$2 direct=$3; shift 3
  fio --name=crash --filename="$file" --rw=write --bs=64k --size=${size_mib}m --ioengine=libaio --direct="$direct" \
    --iodepth=16 --fsync=16 --verify=crc32c --verify_state_save=1 --randseed="$seed" --exitall_on_error=1 "$@"
}

ip link set lo up || fail "cannot bring up the guest's loopback"
eval "$(CEPH_WITH_MGR=0 CEPH_STORE_BYTES=$((1 << 30)) CEPH_IMAGE_SIZE= bash "$RBDNBD_HOME/scripts/ceph-cluster.sh" start "$ceph_dir")" \
  || fail "the Ceph cluster did not start"
rbd create --size "${size_mib}M" rbd/crash || fail "rbd create"
mkdir -p "$work" && cd "$work" || fail "no work directory"
step "cluster up"

verified=0
for round in $(seq "$rounds"); do
  rm -f local-crash-*-verify.state
  if (( round % 2 )); then mode=netlink; else mode=ioctl; fi
  out=$(RBDNBD_JAVA_OPTS="$RBDNBD_JAVA_OPTS -Drbdnbd.kernel.netlink=$([ $mode = netlink ] && echo on || echo off)" \
        "$rbd_nbd" map rbd/crash --show-cookie --reattach-timeout 120) || fail "round $round: map ($mode)"
  dev=${out%% *}; cookie=${out#* }
  pid=$(daemon_pid) # the daemon itself, not the process standing for the device: this is its crash
  [ -n "$pid" ] || fail "round $round: no daemon runs for $dev"
  bytes=$(blockdev --getsize64 "$dev")
  [ "$bytes" = $((size_mib << 20)) ] || { dmesg | tail -20; fail "round $round: map ($mode) returned $dev of $bytes bytes (sysfs size $(cat /sys/block/${dev#/dev/}/size), pid $(cat /sys/block/${dev#/dev/}/pid 2>/dev/null))"; }
  fio_status=
  fio_job "$dev" "$round" 1 --do_verify=0 --rate=8m > "fio-$round.log" 2>&1 &
  fio_pid=$!
  # The kill counts from fio's first completed write: a loaded guest can take over a second to
  # start fio, and an ioctl device killed before fio opens it is "zero sized" to fio (the kernel
  # resets the capacity when NBD_DO_IT ends), which leaves no verify state to check.
  for _ in $(seq 600); do
    (( $(awk '{ print $5 }' "/sys/block/${dev#/dev/}/stat") > 0 )) && break
    kill -0 "$fio_pid" 2>/dev/null || break
    sleep 0.1
  done
  (( $(awk '{ print $5 }' "/sys/block/${dev#/dev/}/stat") > 0 )) \
    || { cat "fio-$round.log"; fail "round $round: fio wrote nothing to $dev in 60 s"; }
  sleep "$(( 1 + RANDOM % 3 )).$(( RANDOM % 10 ))"
  kill -0 "$fio_pid" 2>/dev/null || fail "round $round: fio finished before the kill (make the image larger)"
  kill -KILL "$pid"
  if [ $mode = netlink ]; then
    "$rbd_nbd" attach --device "$dev" --cookie "$cookie" rbd/crash || fail "round $round: attach $dev"
    wait "$fio_pid" || fail "round $round: fio failed although the kernel held its I/O for attach"
    "$rbd_nbd" unmap "$dev" || fail "round $round: unmap $dev"
  else
    wait "$fio_pid"; fio_status=$?
    [ $fio_status = 0 ] && fail "round $round: fio succeeded although the ioctl device died under it"
    for _ in $(seq 50); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
    dev2=$("$rbd_nbd" map rbd/crash) || fail "round $round: fresh map after the kill"
    "$rbd_nbd" unmap "$dev2" || fail "round $round: unmap $dev2"
  fi
  [ -s local-crash-0-verify.state ] || fail "round $round ($mode): fio left no verify state (fio exit status ${fio_status:-0}; files here: $(ls))"
  rbd export rbd/crash "$work/export.img" >/dev/null 2>&1 || fail "round $round: rbd export"
  if ! fio_job "$work/export.img" "$round" 0 --verify_only --verify_state_load=1 > "verify-$round.log" 2>&1; then
    cat "verify-$round.log"
    grep -q "verify failed" "verify-$round.log" \
      && fail "round $round ($mode): a write acknowledged before the kill is not in rbd export"
    fail "round $round ($mode): the verify pass did not run (see its log above)"
  fi
  written=$(grep -o 'io=[0-9.]*[KMG]i\?B' "fio-$round.log" | head -1)
  rm -f "$work/export.img"
  verified=$((verified + 1))
  step "round $round ($mode): killed the daemon under fio (${written:-?} written), verified against rbd export"
done
bash "$RBDNBD_HOME/scripts/ceph-cluster.sh" stop "$ceph_dir" --purge >/dev/null 2>&1
echo "PASS crash-consistency $verified rounds, acknowledged writes lost: 0"
