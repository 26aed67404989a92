#!/bin/bash
# Guest side of KernelNbdSmokeIT: proves the kernel NBD driver works end to end inside the UML
# guest, using qemu-nbd as the (known good) server, before rbdnbd's own kernel attach exists.
# Run by: it-tests/uml/uml-run.sh -m 1G -- it-tests/uml/guest/qemu-nbd-smoke.sh
# Prints one "step NAME ok in N ms" line per step and "QEMU_NBD_SMOKE_PASS" at the end; exits
# non-zero at the first failing step. Scratch lives in the guest-private tmpfs /run.
set -euo pipefail
DEV=${SMOKE_DEV:-/dev/nbd0}
NAME=${DEV#/dev/}
S=/run/qemu-nbd-smoke
IMG=$S/disk.img
MNT=$S/mnt
EXPECT_SECTORS=$((256 * 1024 * 1024 / 512))

[ "${UML_GUEST:-}" = 1 ] || { echo "refusing to run outside the UML guest (this would attach $DEV on the host)"; exit 2; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
T0=$(now_ms); T=$T0; STEP=setup
step() { local t; t=$(now_ms); echo "step $STEP ok in $((t - T)) ms"; STEP=$1; T=$t; }
# shellcheck disable=SC2154
trap 'rc=$?; [ $rc = 0 ] || { echo "step $STEP FAILED (exit $rc)"; mountpoint -q "$MNT" && umount "$MNT"; qemu-nbd -d "$DEV" >/dev/null 2>&1; }' EXIT

mkdir -p "$S" "$MNT"
step create-image
qemu-img create -q -f raw "$IMG" 256M

step connect
[ -b "$DEV" ] || { echo "$DEV missing: is nbd loaded?"; exit 3; }
qemu-nbd -f raw -c "$DEV" "$IMG"
# qemu-nbd -c returns once the device is configured; poll briefly anyway, the size is what counts
for _ in $(seq 50); do [ "$(cat "/sys/block/$NAME/size")" != 0 ] && break; sleep 0.1; done
sectors=$(cat "/sys/block/$NAME/size")
echo "/sys/block/$NAME/size = $sectors (expected $EXPECT_SECTORS)"
[ "$sectors" = "$EXPECT_SECTORS" ]

step mkfs
mkfs.ext4 -q -F "$DEV"

step mount-write
mount "$DEV" "$MNT"
dd if=/dev/urandom of="$S/rand.bin" bs=1M count=32 status=none
cp "$S/rand.bin" "$MNT/rand.bin"
sync
umount "$MNT"

step drop-caches-remount-verify
echo 3 > /proc/sys/vm/drop_caches   # the read-back must come through nbd, not the page cache
mount "$DEV" "$MNT"
want=$(md5sum < "$S/rand.bin"); got=$(md5sum < "$MNT/rand.bin")
echo "md5 written=${want%% *} read-back=${got%% *}"
[ "$want" = "$got" ]
umount "$MNT"

step disconnect
qemu-nbd -d "$DEV"
for _ in $(seq 50); do [ "$(cat "/sys/block/$NAME/size")" = 0 ] && break; sleep 0.1; done
[ "$(cat "/sys/block/$NAME/size")" = 0 ] || { echo "$DEV still has a size after qemu-nbd -d"; exit 4; }

step finish
echo "total $(( $(now_ms) - T0 )) ms"
echo QEMU_NBD_SMOKE_PASS
