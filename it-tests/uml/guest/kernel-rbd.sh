#!/bin/bash
# Runs inside the UML guest (it-tests KernelRbdIT): RBD images on /dev/nbdN through rbdnbd's
# librbd backend, against a one-node Ceph cluster started inside this guest (on the guest's own
# loopback: no address outside the guest is used). Prints "PASS kernel-rbd" and exits 0, or says
# what failed and exits 1.
set -uo pipefail
[ "${UML_GUEST:-}" = 1 ] || { echo "refusing to run outside the UML guest (this would map devices on the host)" >&2; exit 2; }
: "${RBDNBD_HOME:?RBDNBD_HOME must name the project root}"
rbd_nbd="$RBDNBD_HOME/bin/rbd-nbd"
log=/run/rbd-nbd-log/rbd-nbd.log
export RBDNBD_JAVA_OPTS="${RBDNBD_JAVA_OPTS:--Xms16m -Xmx96m -XX:+UseSerialGC -XX:TieredStopAtLevel=1}"
export RBDNBD_JAVA_OPTS="$RBDNBD_JAVA_OPTS -Drbdnbd.daemon.log-file=$log"
ceph_dir=/run/ceph

fail() {
  echo "FAIL kernel-rbd: $*"
  echo "--- daemon logs:"; cat "$log" 2>/dev/null | tail -40
  bash "$RBDNBD_HOME/scripts/ceph-cluster.sh" stop "$ceph_dir" --purge >/dev/null 2>&1
  exit 1
}
sysfs() { cat "/sys/block/${1#/dev/}/$2" 2>/dev/null; }
map() { "$rbd_nbd" map "$@" || { fail "map $*" >&2; }; } # in $(...): callers add || exit 1
t0=$(date +%s)
step() { echo "[$(( $(date +%s) - t0 ))s] $*"; }

ip link set lo up || fail "cannot bring up the guest's loopback"
# no mgr: librbd and the rbd tool do without one, and it would take ~40 s to start in the guest
eval "$(CEPH_WITH_MGR=0 CEPH_STORE_BYTES=$((1 << 30)) CEPH_IMAGE_SIZE= bash "$RBDNBD_HOME/scripts/ceph-cluster.sh" start "$ceph_dir")" \
  || fail "the Ceph cluster did not start"
step "cluster up"
rbd create --size 256M rbd/img || fail "rbd create"

# map, write through the kernel, read back past the page cache, list-mapped shows Ceph's columns
dev=$(map rbd/img) || exit 1
step "mapped rbd/img on $dev"
"$rbd_nbd" list-mapped --format json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert [(x["pool"], x["namespace"], x["image"], x["snap"], x["device"]) for x in d] == [("rbd", "", "img", "", sys.argv[1])], d' "$dev" \
  || fail "list-mapped --format json does not show rbd/img on $dev"
dd if=/dev/urandom of=/run/data bs=1M count=16 status=none
dd if=/run/data of="$dev" bs=1M oflag=direct status=none || fail "write 16 MiB"
sync; echo 3 > /proc/sys/vm/drop_caches
[ "$(head -c 16M "$dev" | md5sum)" = "$(md5sum < /run/data)" ] || fail "read back differs from what was written"

# rbd resize reaches the kernel (update watch, then netlink RECONFIGURE)
rbd resize --size 512M rbd/img >/dev/null 2>&1 || fail "rbd resize"
for _ in $(seq 100); do [ "$(sysfs "$dev" size)" = 1048576 ] && break; sleep 0.1; done
[ "$(sysfs "$dev" size)" = 1048576 ] || fail "sysfs size $(sysfs "$dev" size) after rbd resize to 512M, expected 1048576 sectors"
step "resize seen by the kernel"

# a snapshot maps read-only with the data of its time; writes to it fail
rbd snap create rbd/img@s1 || fail "rbd snap create"
snapdev=$(map rbd/img@s1) || exit 1
[ "$(blockdev --getro "$snapdev")" = 1 ] || fail "$snapdev (a snapshot) is not read-only"
if dd if=/dev/zero of="$snapdev" bs=4k count=1 oflag=direct status=none 2>/dev/null; then fail "a write to the snapshot succeeded"; fi
[ "$(head -c 16M "$snapdev" | md5sum)" = "$(md5sum < /run/data)" ] || fail "the snapshot's data differs"
"$rbd_nbd" unmap rbd/img@s1 || fail "unmap by image spec"
step "snapshot read-only, unmapped by spec"

"$rbd_nbd" unmap "$dev" || fail "unmap $dev"
[ -z "$("$rbd_nbd" list-mapped)" ] || fail "list-mapped not empty after the unmaps"
[ "$(rbd export rbd/img - 2>/dev/null | head -c 16M | md5sum)" = "$(md5sum < /run/data)" ] || fail "rbd export differs from what was written through $dev"
step "unmapped; rbd export matches"

# --exclusive: the lock is ours for as long as the device is mapped; --notrim: no discard offered
dev=$(map rbd/img --exclusive --notrim) || exit 1
[ "$(cat "/sys/block/${dev#/dev/}/queue/discard_max_bytes")" = 0 ] || fail "$dev mapped --notrim offers discard"
if blkdiscard -o 0 -l 1M "$dev" 2>/dev/null; then fail "blkdiscard on a --notrim device succeeded"; fi
if timeout 60 rbd bench --io-type write --io-size 4K --io-total 64K rbd/img >/dev/null 2>&1; then
  fail "another client wrote while $dev held the exclusive lock"
fi
"$rbd_nbd" unmap "$dev" || fail "unmap the exclusive device"
timeout 60 rbd bench --io-type write --io-size 4K --io-total 64K rbd/img >/dev/null 2>&1 || fail "writes still refused after unmap"
step "--exclusive kept another writer out until unmap; --notrim offered no discard"

bash "$RBDNBD_HOME/scripts/ceph-cluster.sh" stop "$ceph_dir" --purge || fail "cluster stop"
echo "PASS kernel-rbd"
