#!/bin/bash
# Runs inside the UML guest (it-tests KernelDeviceIT): rbdnbd's own kernel attach on a real nbd
# driver. Usage: kernel-device.sh SCENARIO; prints "PASS SCENARIO" and exits 0, or says what
# failed and exits 1. Images live in the guest's /run (tmpfs: fast, and du shows punched holes).
set -uo pipefail
# shellcheck source=it-tests/uml/guest/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
scenario=${1:?scenario}

fail() { echo "FAIL $scenario: $*"; echo "--- daemon logs:"; cat "$log" 2>/dev/null | tail -40; exit 1; }
allocated_kib() { du -k "$1" | cut -f1; }

case $scenario in
filesystem)
  # map, mkfs.ext4, mount, write and verify 64 MiB, drop caches and verify again, unmap, check the file
  img=/run/fs.img
  dev=$(map "file:$img" --size 512M) || exit 1
  [ "$(sysfs "$dev" size)" = 1048576 ] || fail "sysfs size $(sysfs "$dev" size), expected 1048576 sectors"
  "$rbd_nbd" list-mapped | grep -q "file:$img .*$dev" || fail "list-mapped does not show $dev"
  "$rbd_nbd" list-mapped --format json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert [x["device"] for x in d] == [sys.argv[1]] and d[0]["image"] == sys.argv[2], d' "$dev" "file:$img" \
    || fail "list-mapped --format json does not show $dev"
  "$rbd_nbd" list-mapped --format xml --pretty-format | python3 -c 'import sys, xml.etree.ElementTree as E; d=E.fromstring(sys.stdin.read()); assert [x.findtext("device") for x in d] == [sys.argv[1]], E.tostring(d)' "$dev" \
    || fail "list-mapped --format xml does not show $dev"
  mkfs.ext4 -q -F "$dev" || fail mkfs
  mkdir -p /run/mnt && mount "$dev" /run/mnt || fail mount
  dd if=/dev/urandom of=/run/data.bin bs=1M count=64 status=none
  cp /run/data.bin /run/mnt/data.bin && sync || fail "write 64 MiB"
  cmp /run/data.bin /run/mnt/data.bin || fail "verify after write"
  umount /run/mnt && echo 3 > /proc/sys/vm/drop_caches
  mount "$dev" /run/mnt && cmp /run/data.bin /run/mnt/data.bin || fail "verify after dropping caches"
  umount /run/mnt
  dev_md5=$(md5sum < "$dev")
  "$rbd_nbd" unmap "$dev" || fail unmap
  [ -z "$(sysfs "$dev" pid)" ] || fail "$dev still connected after unmap"
  [ "$(md5sum < "$img")" = "$dev_md5" ] || fail "backing file differs from what the device held"
  e2fsck -fn "$img" >/run/fsck.txt 2>&1 || { cat /run/fsck.txt; fail "the backing file's filesystem is not clean"; }
  debugfs -R "cat /data.bin" "$img" 2>/dev/null | cmp - /run/data.bin || fail "data.bin read from the backing file differs"
  ;;
direct-io)
  # dd oflag=direct patterns, fio libaio crc32c at iodepth 256, blkdiscard holes
  img=/run/dio.img
  dev=$(map "file:$img" --size 256M) || exit 1
  for bs in 512 4096 65536 1048576; do
    head -c $((bs * 8)) /dev/urandom > /run/pat
    dd if=/run/pat of="$dev" bs=$bs seek=3 oflag=direct status=none || fail "dd write bs=$bs"
    dd if="$dev" of=/run/back bs=$bs skip=3 count=8 iflag=direct status=none || fail "dd read bs=$bs"
    cmp /run/pat /run/back || fail "pattern at bs=$bs"
  done
  fio --name=verify --filename="$dev" --ioengine=libaio --direct=1 --rw=randwrite --bs=4k --iodepth=256 \
      --size=128M --verify=crc32c --do_verify=1 --verify_fatal=1 --randrepeat=0 --output=/run/fio.txt \
      || { cat /run/fio.txt; fail "fio libaio verify"; }
  grep -q "err= 0" /run/fio.txt || { cat /run/fio.txt; fail "fio reported errors"; }
  dd if=/dev/urandom of="$dev" bs=1M count=64 oflag=direct status=none
  before=$(allocated_kib "$img")
  blkdiscard -o 0 -l $((64 << 20)) "$dev" || fail blkdiscard
  after=$(allocated_kib "$img")
  echo "allocated before discard ${before} KiB, after ${after} KiB"
  [ $((before - after)) -ge $((60 * 1024)) ] || fail "discard freed only $((before - after)) KiB of 64 MiB"
  [ "$(dd if="$dev" bs=1M count=64 iflag=direct status=none | tr -d '\0' | wc -c)" = 0 ] || fail "discarded range not zero"
  "$rbd_nbd" unmap "$dev" || fail unmap
  ;;
lifecycle)
  # resize reaches the kernel; read-only refuses writes; two devices; a busy device and bad
  # devices are refused with one line; unmap by image
  a=$(map file:/run/a.img --size 64M) || exit 1
  truncate -s 32M /run/b.img
  b=$(map file:/run/b.img --read-only) || exit 1
  [ "$a" != "$b" ] || fail "two maps got the same device"
  [ "$(sysfs "$b" ro)" = 1 ] || fail "read-only device not ro in sysfs"
  if dd if=/dev/zero of="$b" bs=4k count=1 oflag=direct status=none 2>/dev/null; then fail "write to a read-only map succeeded"; fi
  dd if="$b" of=/dev/null bs=4k count=16 iflag=direct status=none || fail "read from the read-only map"
  truncate -s 128M /run/a.img
  for _ in $(seq 50); do [ "$(sysfs "$a" size)" = 262144 ] && break; sleep 0.1; done
  [ "$(sysfs "$a" size)" = 262144 ] || fail "size after growing the image: $(sysfs "$a" size) sectors"
  dd if=/dev/urandom of="$a" bs=1M seek=100 count=1 oflag=direct status=none || fail "write into the grown part"
  out=$("$rbd_nbd" map file:/run/a.img --device "$b" 2>&1) && fail "mapping a busy device succeeded"
  echo "busy: $out"; [[ $out == *busy* ]] || fail "busy device message: $out"
  out=$("$rbd_nbd" map file:/run/a.img --device /dev/null 2>&1) && fail "mapping /dev/null succeeded"
  echo "not nbd: $out"; [[ $out == *"/dev/nbdN"* ]] || fail "non-nbd device message: $out"
  out=$("$rbd_nbd" map file:/run/missing.img 2>&1) && fail "mapping a missing image succeeded"
  echo "missing: $out"; [[ $out == *missing.img*ENOENT* ]] || fail "missing image message: $out"
  [ "$(ls /sys/block/ | grep -c nbd)" -gt 0 ] && [ -z "$(ls /run/rbd-nbd-log 2>/dev/null | head -0)" ]
  connected=$(for d in /sys/block/nbd*; do [ -e "$d/pid" ] && echo "$d"; done | wc -l)
  [ "$connected" = 2 ] || fail "$connected devices connected after the refused maps, expected 2"
  # one daemon serves both, and each device has a process of its own standing for it, as with
  # Ceph's rbd-nbd: its pid is the device's id in list-mapped, and `ps -C rbd-nbd` lists it
  ids=$("$rbd_nbd" list-mapped --format json | python3 -c 'import json,sys; print(" ".join(sorted({str(x["id"]) for x in json.load(sys.stdin)})))')
  daemon=$(daemon_pid)
  [ "$(wc -w <<< "$ids")" = 2 ] || fail "list-mapped ids '$ids': expected one per device"
  for id in $ids; do
    [ "$(cat "/proc/$id/comm" 2>/dev/null)" = rbd-nbd ] || fail "the process $id of a device is not named rbd-nbd"
    ps -C rbd-nbd -o pid= | grep -qw "$id" || fail "ps -C rbd-nbd does not list $id"
    [ "$id" != "$daemon" ] || fail "a device's id is the daemon's pid"
    echo "device process $id: $(awk '$1 == "VmRSS:" { print $2 " " $3 }' "/proc/$id/status") resident"
  done
  tr '\0' ' ' < "/proc/$daemon/cmdline" | grep -q rbd-nbd || fail "the daemon's command line lacks rbd-nbd"
  a_id=$(device_pid "$a")
  "$rbd_nbd" stats "$a" | grep -q "file:/run/a.img" || fail "stats $a does not name its image"
  # unmap --force fails one device's I/O at once; the other device carries on
  (while dd if=/dev/urandom of="$a" bs=1M count=32 oflag=direct status=none; do :; done 2>/run/force.err; echo "rc=$?" >> /run/force.err) &
  writer=$!
  sleep 2
  dd if=/dev/urandom of=/run/bdata bs=1M count=8 status=none
  "$rbd_nbd" unmap --force "$a" || fail "unmap --force"
  t0=$(date +%s%N)
  wait $writer; t1=$(date +%s%N)
  echo "forced unmap: writer ended $(( (t1 - t0) / 1000000 )) ms later: $(tr '\n' ' ' < /run/force.err)"
  [ $(( (t1 - t0) / 1000000 )) -le 5000 ] || fail "the writer went on $(( (t1 - t0) / 1000000 )) ms after unmap --force"
  [ -z "$(sysfs "$a" pid)" ] || fail "$a still connected after unmap --force"
  [ ! -e "/proc/$a_id" ] || fail "the process $a_id of $a outlived its unmap"
  "$rbd_nbd" list-mapped | grep -qw "^$a_id" && fail "list-mapped still shows $a_id after unmap"
  dd if="$b" of=/dev/null bs=1M count=16 iflag=direct status=none || fail "$b broke when $a was forced off"
  "$rbd_nbd" unmap file:/run/b.img || fail "unmap by image"
  # the daemon exits with its last device
  for _ in $(seq 100); do [ -e "/proc/$daemon" ] || break; sleep 0.1; done
  [ ! -e "/proc/$daemon" ] || fail "the daemon (pid $daemon) still runs 10 s after its last device was unmapped"
  # SIGTERM to one device's process unmaps that device alone (as to Ceph's per-device process)
  c=$(RBDNBD_JAVA_OPTS="$RBDNBD_JAVA_OPTS -Drbdnbd.kernel.netlink=off" map file:/run/a.img) || exit 1
  d=$(map file:/run/b.img --read-only) || exit 1
  truncate -s 16M /run/e.img
  e=$(map file:/run/e.img) || exit 1
  e_id=$(device_pid "$e")
  kill -TERM "$e_id"
  for _ in $(seq 100); do [ -z "$(sysfs "$e" pid)" ] && break; sleep 0.1; done
  [ -z "$(sysfs "$e" pid)" ] || fail "$e still connected 10 s after SIGTERM to its process $e_id"
  [ -n "$(sysfs "$c" pid)" ] && [ -n "$(sysfs "$d" pid)" ] || fail "SIGTERM to $e's process disconnected another device"
  [ "$("$rbd_nbd" list-mapped --format json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" = 2 ] \
    || fail "list-mapped after SIGTERM to $e's process: $("$rbd_nbd" list-mapped)"
  # -f (Ceph's foreground map): map stays while the device is mapped; SIGTERM to it unmaps the
  # device and it exits 0. -d: the same, with the device's lines on map's stderr
  "$rbd_nbd" map -f file:/run/e.img > /run/fg.out 2>/run/fg.err &
  fg=$!
  for _ in $(seq 600); do [ -s /run/fg.out ] && break; sleep 0.1; done
  f=$(cat /run/fg.out)
  [ -n "$f" ] && [ -n "$(sysfs "$f" pid)" ] || fail "map -f: no device connected ($f): $(cat /run/fg.err)"
  sleep 1; kill -0 $fg 2>/dev/null || fail "map -f ended while $f is mapped"
  kill -TERM $fg; wait $fg || fail "map -f exited non-zero after SIGTERM: $(cat /run/fg.err)"
  [ -z "$(sysfs "$f" pid)" ] || fail "map -f: $f still connected after SIGTERM to map"
  "$rbd_nbd" -d map file:/run/e.img > /run/fg.out 2>/run/fg.err &
  fg=$!
  for _ in $(seq 600); do [ -s /run/fg.out ] && break; sleep 0.1; done
  f=$(cat /run/fg.out)
  [ -n "$f" ] || fail "map -d printed no device: $(cat /run/fg.err)"
  "$rbd_nbd" unmap "$f" || fail "unmap $f (map -d)"
  wait $fg || fail "map -d exited non-zero after its device was unmapped: $(cat /run/fg.err)"
  grep -q "file:/run/e.img mapped to $f" /run/fg.err || fail "map -d: the device's lines are not on its stderr: $(cat /run/fg.err)"
  [ -n "$(sysfs "$c" pid)" ] && [ -n "$(sysfs "$d" pid)" ] || fail "map -f/-d disturbed the other devices"
  # SIGTERM to the daemon: drain, disconnect, exit (as Ceph's rbd-nbd does in ioctl mode)
  pid=$(daemon_pid)
  dd if=/dev/urandom of="$c" bs=64k count=64 oflag=direct status=none || fail "write before SIGTERM"
  kill -TERM "$pid"
  for _ in $(seq 100); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
  [ ! -e "/proc/$pid" ] || fail "daemon still running 10 s after SIGTERM"
  [ -z "$(sysfs "$c" pid)" ] || fail "$c still connected after SIGTERM"
  [ -z "$(sysfs "$d" pid)" ] || fail "$d still connected after SIGTERM"
  grep -q "$c unmapped" "$log" || fail "no clean unmap logged after SIGTERM"
  [ -z "$("$rbd_nbd" list-mapped)" ] || fail "list-mapped not empty after unmap"
  [ "$("$rbd_nbd" list-mapped --format json)" = "[]" ] || fail "list-mapped --format json not [] after unmap"
  # read-only does not stick to the device: a read-write map of the device a read-only map had
  # writes (the block device's own flag outlives a mapping), with netlink and with the ioctls
  for nl in on off; do
    opts="$RBDNBD_JAVA_OPTS -Drbdnbd.kernel.netlink=$nl"
    # ... and --log-file (as ceph-csi passes it) gets that device's own lines, and no other's
    e=$(RBDNBD_JAVA_OPTS=$opts map file:/run/b.img --read-only --device /dev/nbd3 --log-file /run/ro-$nl.log) || exit 1
    [ "$(sysfs "$e" ro)" = 1 ] || fail "netlink=$nl: read-only map of $e not ro"
    "$rbd_nbd" unmap "$e" || fail "unmap $e"
    grep -q "file:/run/b.img mapped to $e" /run/ro-$nl.log && grep -q "$e unmapped" /run/ro-$nl.log \
      || { cat /run/ro-$nl.log; fail "netlink=$nl: --log-file lacks the device's map and unmap lines"; }
    e=$(RBDNBD_JAVA_OPTS=$opts map file:/run/a.img --device /dev/nbd3) || exit 1
    grep -q "file:/run/a.img" /run/ro-$nl.log && { cat /run/ro-$nl.log; fail "another device's lines in /run/ro-$nl.log"; }
    pid=$(daemon_pid)
    [ "$(sysfs "$e" ro)" = 0 ] || fail "netlink=$nl: $e still ro when mapped read-write after a read-only map"
    dd if=/dev/zero of="$e" bs=4k count=1 oflag=direct status=none || fail "netlink=$nl: no write to $e after a read-only map of it"
    "$rbd_nbd" unmap "$e" || fail "unmap $e"
    for _ in $(seq 100); do [ -e "/proc/$pid" ] || break; sleep 0.1; done # the next round starts its own daemon
  done
  ;;
kill)
  # kill -9 of the daemon mid-write: the writer gets EIO within the io-timeout (ioctl and netlink
  # without re-attach), and a netlink device with a re-attach timeout carries a mounted
  # filesystem across a new daemon's attach
  for mode in off on; do
    truncate -s 64M /run/k.img
    dev=$(RBDNBD_JAVA_OPTS="$RBDNBD_JAVA_OPTS -Drbdnbd.kernel.netlink=$mode" map file:/run/k.img --io-timeout 5 --reattach-timeout 0) || exit 1
    (dd if=/dev/zero of="$dev" bs=4k count=1000000 oflag=direct 2>/run/dd.err; echo "rc=$?" >> /run/dd.err) &
    writer=$!
    sleep 2
    kill -9 "$(sysfs "$dev" pid)"; t0=$(date +%s%N)
    wait $writer; t1=$(date +%s%N)
    ms=$(( (t1 - t0) / 1000000 ))
    echo "netlink=$mode: writer ended ${ms} ms after kill -9: $(tr '\n' ' ' < /run/dd.err)"
    grep -q "rc=1" /run/dd.err || fail "writer did not fail"
    grep -qi "error" /run/dd.err || fail "writer saw no I/O error"
    [ $ms -le 15000 ] || fail "writer hung ${ms} ms, io-timeout is 5 s"
    [ -z "$(sysfs "$dev" pid)" ] || "$rbd_nbd" unmap "$dev" || fail "unmap of the orphaned device"
  done
  truncate -s 128M /run/r.img
  out=$(map file:/run/r.img --show-cookie --reattach-timeout 120 --io-timeout 0) || exit 1
  dev=${out%% *}; cookie=${out#* }
  [ -n "$cookie" ] && [ "$cookie" != "$dev" ] || fail "no cookie in '$out'"
  mkfs.ext4 -q -F "$dev" && mkdir -p /run/mnt && mount "$dev" /run/mnt || fail "mkfs/mount"
  dd if=/dev/urandom of=/run/data.bin bs=1M count=16 status=none
  kill -9 "$(sysfs "$dev" pid)"; sleep 1
  (cp /run/data.bin /run/mnt/data.bin && sync && echo done > /run/writer.txt) &
  writer=$!
  sleep 2
  [ ! -e /run/writer.txt ] || fail "the writer finished while no daemon served the device"
  "$rbd_nbd" attach --device "$dev" --cookie "$cookie" file:/run/r.img || fail attach
  wait $writer || fail "the writer failed across the re-attach"
  umount /run/mnt && echo 3 > /proc/sys/vm/drop_caches
  mount "$dev" /run/mnt && cmp /run/data.bin /run/mnt/data.bin || fail "data after re-attach"
  umount /run/mnt
  "$rbd_nbd" unmap "$dev" || fail unmap
  ;;
*) echo "unknown scenario $scenario" >&2; exit 2 ;;
esac
echo "PASS $scenario"
