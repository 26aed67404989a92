#!/bin/bash
# Runs inside the UML guest (it-tests KernelRbdIT): RBD images on /dev/nbdN through rbdnbd's
# librbd backend, against a one-node Ceph cluster started inside this guest (on the guest's own
# loopback: no address outside the guest is used). Prints "PASS kernel-rbd" and exits 0, or says
# what failed and exits 1.
set -uo pipefail
# shellcheck source=it-tests/uml/guest/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ceph_dir=/run/ceph

fail() {
  echo "FAIL kernel-rbd: $*"
  echo "--- daemon logs:"; cat "$log" 2>/dev/null | tail -40
  bash "$RBDNBD_HOME/scripts/ceph-cluster.sh" stop "$ceph_dir" --purge >/dev/null 2>&1
  exit 1
}
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

# rbd resize returns once the kernel has the new size (the update watch applies it before librbd
# acknowledges the change: netlink RECONFIGURE), growing and shrinking, as Ceph's rbd-nbd.sh checks
# /proc/partitions right after rbd resize
blocks() { awk -v d="${dev#/dev/}" '$4 == d { print $3 }' /proc/partitions; }
rbd resize --size 512M rbd/img >/dev/null 2>&1 || fail "rbd resize"
[ "$(blocks)" = 524288 ] || fail "/proc/partitions shows $(blocks) KiB right after rbd resize to 512M"
rbd resize --size 384M --allow-shrink rbd/img >/dev/null 2>&1 || fail "rbd resize --allow-shrink"
[ "$(blocks)" = 393216 ] || fail "/proc/partitions shows $(blocks) KiB right after rbd resize --allow-shrink to 384M"
rbd resize --size 512M rbd/img >/dev/null 2>&1 || fail "rbd resize"
[ "$(sysfs "$dev" size)" = 1048576 ] || fail "sysfs size $(sysfs "$dev" size) after rbd resize to 512M, expected 1048576 sectors"
step "resize (grow, shrink, grow) seen by the kernel when rbd resize returned"

# a snapshot maps read-only with the data of its time; writes to it fail
rbd snap create rbd/img@s1 || fail "rbd snap create"
snapdev=$(map rbd/img@s1) || exit 1
[ "$(blockdev --getro "$snapdev")" = 1 ] || fail "$snapdev (a snapshot) is not read-only"
if dd if=/dev/zero of="$snapdev" bs=4k count=1 oflag=direct status=none 2>/dev/null; then fail "a write to the snapshot succeeded"; fi
[ "$(head -c 16M "$snapdev" | md5sum)" = "$(md5sum < /run/data)" ] || fail "the snapshot's data differs"
"$rbd_nbd" unmap rbd/img@s1 || fail "unmap by image spec"
step "snapshot read-only, unmapped by spec"

# the snapshot by id: `rbd device unmap|detach --snap-id ID SPEC` reach rbd-nbd as SPEC --snap-id ID
sid=$(rbd snap ls --format json rbd/img | python3 -c 'import json,sys; print([s["id"] for s in json.load(sys.stdin) if s["name"] == "s1"][0])') \
  || fail "rbd snap ls"
snapdev=$(map rbd/img --snap-id "$sid") || exit 1
[ "$(head -c 16M "$snapdev" | md5sum)" = "$(md5sum < /run/data)" ] || fail "the snapshot mapped by id has other data"
out=$("$rbd_nbd" unmap rbd/img --snap-id $((sid + 1)) 2>&1) && fail "unmap of a snap id never mapped succeeded"
[ "$out" = "rbd-nbd: rbd/img@{id $((sid + 1))} is not mapped" ] || fail "unmap of a snap id never mapped said: $out"
"$rbd_nbd" unmap rbd/img --snap-id "$sid" || fail "unmap rbd/img --snap-id $sid"
[ -z "$(sysfs "$snapdev" pid)" ] || fail "$snapdev still connected after unmap --snap-id"
step "snapshot mapped and unmapped by id"

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

# one daemon, two images, each listed with the pid of its own process in every format; a busy
# device is refused
rbd create --size 64M rbd/img2 || fail "rbd create img2"
dev=$(map rbd/img --show-cookie) || exit 1
cookie=${dev#* }; dev=${dev%% *}
dev2=$(map rbd/img2) || exit 1
out=$("$rbd_nbd" map rbd/img2 --device "$dev" 2>&1) && fail "mapping the busy $dev succeeded"
[[ $out == *busy* ]] || fail "busy device message: $out"
"$rbd_nbd" list-mapped > /run/plain.txt
pid=$(daemon_pid)
id1=$(device_pid "$dev"); id2=$(device_pid "$dev2")
[ -n "$id1" ] && [ -n "$id2" ] && [ "$id1" != "$id2" ] && [ "$id1" != "$pid" ] || fail "device ids '$id1' '$id2' (daemon $pid)"
[ "$(head -1 /run/plain.txt | tr -s ' ')" = "id pool namespace image snap device cookie " ] || fail "list-mapped header: $(head -1 /run/plain.txt)"
grep -Eq "^$id1 +rbd +img +- +$dev +$cookie *\$" /run/plain.txt || { cat /run/plain.txt; fail "list-mapped plain: no row for rbd/img on $dev"; }
grep -Eq "^$id2 +rbd +img2 +- +$dev2 " /run/plain.txt || { cat /run/plain.txt; fail "list-mapped plain: no row for rbd/img2 on $dev2"; }
tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q rbd-nbd || fail "the daemon's command line lacks rbd-nbd"
"$rbd_nbd" list-mapped --format xml | python3 -c 'import sys, xml.etree.ElementTree as E; d=E.fromstring(sys.stdin.read()); assert sorted((x.findtext("image"), x.findtext("id")) for x in d) == sorted([("img", sys.argv[1]), ("img2", sys.argv[2])]), E.tostring(d)' "$id1" "$id2" \
  || fail "list-mapped --format xml"
"$rbd_nbd" stats "$dev2" | grep -q "rbd/img2" || fail "stats $dev2 does not name rbd/img2"
step "two images in one daemon (pid $pid); busy device refused; list-mapped plain, xml; stats"

# `rbd device map -t nbd` runs the rbd-nbd next to the rbd binary: ours, linked there
mkdir -p /run/rbdbin && cp /usr/bin/rbd /run/rbdbin/rbd && ln -sf "$rbd_nbd" /run/rbdbin/rbd-nbd
dev3=$(/run/rbdbin/rbd device map -t nbd -o notrim,read-only rbd/img2@q0 2>&1) && fail "rbd device map of a missing snapshot succeeded: $dev3"
rbd snap create rbd/img2@q0 || fail "rbd snap create rbd/img2@q0"
dev3=$(/run/rbdbin/rbd device map -t nbd -o notrim rbd/img2@q0) || fail "rbd device map -t nbd"
[ "$(blockdev --getro "$dev3")" = 1 ] || fail "$dev3 (a snapshot, via rbd device map) is not read-only"
/run/rbdbin/rbd device list -t nbd | grep -q "img2 .*q0 .*$dev3" || fail "rbd device list -t nbd: $(/run/rbdbin/rbd device list -t nbd 2>&1)"
/run/rbdbin/rbd device unmap -t nbd "$dev3" || fail "rbd device unmap -t nbd"
step "rbd device map/list/unmap -t nbd drive our rbd-nbd"

# quiesce: a snapshot runs the hook (a script without #!) around it; a failing hook fails the snapshot
"$rbd_nbd" unmap "$dev2" || fail "unmap $dev2"
printf 'echo "$1 $2" >> /run/hook.log\n[ ! -e /run/hook.fail ]\n' > /run/hook.sh && chmod +x /run/hook.sh
out=$("$rbd_nbd" map rbd/img2 --no_such_option 1 2>&1) && fail "a map with an unknown Ceph option succeeded"
[[ $out == *no_such_option* ]] || fail "unknown Ceph option message: $out"
dev2=$(map rbd/img2 --quiesce --quiesce-hook /run/hook.sh --rbd_cache true) || exit 1
rbd snap create rbd/img2@q1 >/run/snap.out 2>&1 || { cat /run/snap.out; fail "rbd snap create with a quiesce hook"; }
for _ in $(seq 100); do [ "$(wc -l < /run/hook.log)" -ge 2 ] && break; sleep 0.1; done # unquiesce follows the snapshot
[ "$(cat /run/hook.log)" = "$(printf '%s quiesce\n%s unquiesce' "$dev2" "$dev2")" ] || fail "hook calls: $(cat /run/hook.log)"
touch /run/hook.fail
if rbd snap create rbd/img2@q2 >/run/snap.out 2>&1; then fail "rbd snap create succeeded though the quiesce hook failed"; fi
rm -f /run/hook.fail
step "quiesce hook ran around rbd snap create; a failing hook failed it"

# detach leaves the netlink device to the kernel; attach with the cookie serves it again
dd if=/dev/urandom of=/run/data2 bs=1M count=4 status=none
dd if=/run/data2 of="$dev" bs=1M oflag=direct status=none || fail "write before detach"
"$rbd_nbd" detach "$dev" || fail "detach $dev"
[ -e "/sys/block/${dev#/dev/}/pid" ] || fail "$dev gone after detach (the kernel should hold it)"
"$rbd_nbd" list-mapped | grep -q "$dev " && fail "$dev still listed after detach"
"$rbd_nbd" attach --device "$dev" --cookie "$cookie" rbd/img || fail "attach $dev"
[ "$(head -c 4M "$dev" | md5sum)" = "$(md5sum < /run/data2)" ] || fail "data after detach and attach"
"$rbd_nbd" unmap rbd/img || fail "unmap rbd/img after attach"
"$rbd_nbd" unmap "$dev2" || fail "unmap $dev2"
for _ in $(seq 100); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
[ ! -e "/proc/$pid" ] || fail "the daemon still runs without devices"
step "detach then attach kept the data; the daemon exited with its last device"

# ceph-csi's own command lines (NodeStage, a restart of the node plugin, NodeUnstage twice), with
# no ceph.conf: the monitors, the user and its key reach the image's client from the command line
key=/run/csi.keyfile; ceph auth print-key client.admin > "$key" || fail "ceph auth print-key"
mon=$(sed -n 's/^mon host = //p' "$CEPH_CONF"); csi_log=/run/rbd-nbd-vol1.log
rbd create --size 64M rbd/csi || fail "rbd create rbd/csi"
csi() { env -u CEPH_CONF "$@"; }
dev=$(csi /run/rbdbin/rbd --id admin -m "$mon" --keyfile="$key" --log-file "$csi_log" device map rbd/csi --device-type nbd \
        --options try-netlink --options reattach-timeout=300 --options io-timeout=0 --options cookie=vol1) \
  || fail "ceph-csi's rbd device map"
dd if=/run/data2 of="$dev" bs=1M oflag=direct status=none || fail "write $dev (ceph-csi's map)"
csi /run/rbdbin/rbd device list --format=json --device-type nbd > /run/csi-list.json || fail "rbd device list --format=json"
python3 - "$dev" "$(device_pid "$dev")" /run/csi-list.json <<'PY' || fail "ceph-csi's parse of rbd device list: $(cat /run/csi-list.json)"
import json, sys
dev, pid, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = [x for x in json.load(open(path)) if x["image"] == "csi"]
assert len(rows) == 1 and type(rows[0]["id"]) is int and rows[0]["id"] == pid, rows  # ceph-csi: ID int64
assert (rows[0]["pool"], rows[0]["device"]) == ("rbd", dev), rows
PY
grep -q "rbd/csi mapped to $dev" "$csi_log" || { cat "$csi_log"; fail "ceph-csi's --log-file lacks the map line"; }
pid=$(daemon_pid); kill -9 "$pid"   # the node plugin's container restarts: its processes die
for _ in $(seq 100); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
[ -e "/sys/block/${dev#/dev/}" ] && [ "$(cat "/sys/block/${dev#/dev/}/size")" != 0 ] || fail "$dev not held for attach after kill -9"
csi "$rbd_nbd" --id admin -m "$mon" --keyfile="$key" --log-file "$csi_log" attach rbd/csi --device "$dev" --try-netlink \
  --reattach-timeout=300 --io-timeout=0 --cookie=vol1 || fail "ceph-csi's rbd-nbd attach after kill -9"
[ "$(head -c 4M "$dev" | md5sum)" = "$(md5sum < /run/data2)" ] || fail "data after ceph-csi's attach"
[ "$(grep -c "rbd/csi mapped to $dev" "$csi_log")" = 2 ] || { cat "$csi_log"; fail "ceph-csi's --log-file lacks the attach line"; }
csi /run/rbdbin/rbd unmap --device-type nbd rbd/csi || fail "ceph-csi's rbd unmap"
out=$(csi /run/rbdbin/rbd unmap --device-type nbd rbd/csi 2>&1) && fail "a second unmap of rbd/csi succeeded"
[[ $out == *"rbd-nbd: rbd/csi is not mapped"* ]] || fail "ceph-csi's 'already unmapped' test fails on: $out"
for _ in $(seq 100); do [ -n "$(daemon_pid)" ] || break; sleep 0.1; done
step "ceph-csi's map, device list (numeric id), attach after kill -9 and unmap twice"

# SIGTERM unmaps the daemon's ioctl devices (as killing Ceph's rbd-nbd does)
dev=$(RBDNBD_JAVA_OPTS="$RBDNBD_JAVA_OPTS -Drbdnbd.kernel.netlink=off" map rbd/img) || exit 1
dev2=$(map rbd/img2 --read-only) || exit 1
pid=$(daemon_pid)
kill -TERM "$pid"
for _ in $(seq 200); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
[ ! -e "/proc/$pid" ] || fail "the daemon still runs 20 s after SIGTERM"
[ -z "$(sysfs "$dev" pid)" ] && [ -z "$(sysfs "$dev2" pid)" ] || fail "devices still connected after SIGTERM"
[ "$(rbd export rbd/img - 2>/dev/null | head -c 4M | md5sum)" = "$(md5sum < /run/data2)" ] || fail "data after SIGTERM"
step "SIGTERM unmapped both ioctl devices"

# devices listed in the configuration are mapped when the daemon starts (as under systemd)
cat > /run/rbd-nbd.conf <<CONF
rbdnbd.daemon.devices = [ { image = "rbd/img2", device = "/dev/nbd5", read-only = true } ]
CONF
RBDNBD_JAVA_OPTS="$RBDNBD_JAVA_OPTS -Dconfig.file=/run/rbd-nbd.conf" "$rbd_nbd" daemon 2>>"$log" &
daemon=$!
for _ in $(seq 600); do [ -n "$(sysfs nbd5 pid)" ] && break; sleep 0.1; done
"$rbd_nbd" list-mapped | grep -Eq "^[0-9]+ +rbd +img2 +- +/dev/nbd5 " || fail "the configured device is not mapped: $("$rbd_nbd" list-mapped)"
echo 'rbdnbd.engine.iodeph = 3' > /run/bad.conf
out=$(RBDNBD_JAVA_OPTS="$RBDNBD_JAVA_OPTS -Dconfig.file=/run/bad.conf" "$rbd_nbd" daemon 2>&1) && fail "a daemon with a broken config started"
[[ $out == *bad.conf*iodeph* ]] || fail "broken config message: $out"
kill -TERM $daemon; wait $daemon || fail "the foreground daemon exited non-zero on SIGTERM"
[ -n "$(sysfs nbd5 pid)" ] || fail "/dev/nbd5 (netlink) was not held for re-attach after SIGTERM"
step "configured device mapped at start; a broken config refused with file and key; SIGTERM detached it"

# a restarted daemon (systemd's Restart=) attaches its configured device again: no new device
RBDNBD_JAVA_OPTS="$RBDNBD_JAVA_OPTS -Dconfig.file=/run/rbd-nbd.conf" "$rbd_nbd" daemon 2>>"$log" &
daemon=$!
for _ in $(seq 600); do "$rbd_nbd" list-mapped 2>/dev/null | grep -q "/dev/nbd5 " && break; sleep 0.1; done
"$rbd_nbd" list-mapped | grep -Eq "^[0-9]+ +rbd +img2 +- +/dev/nbd5 " || fail "the restarted daemon does not serve /dev/nbd5"
grep -q "attaching rbd/img2 to it again" "$log" || fail "the restarted daemon mapped /dev/nbd5 anew instead of attaching"
dd if=/dev/nbd5 of=/dev/null bs=1M count=4 iflag=direct status=none || fail "read /dev/nbd5 after the re-attach"
"$rbd_nbd" unmap /dev/nbd5 || fail "unmap /dev/nbd5"
kill -TERM $daemon; wait $daemon || fail "the foreground daemon exited non-zero on SIGTERM"
step "a restarted daemon attached its configured device again"

bash "$RBDNBD_HOME/scripts/ceph-cluster.sh" stop "$ceph_dir" --purge || fail "cluster stop"
echo "PASS kernel-rbd"
