#!/bin/sh
# PID 1 of the UML guest started by uml-run.sh (which copies this file into the run directory and
# passes that directory as UMLRUN_DIR on the kernel command line). It sets up the guest-private
# mounts, makes modprobe work, loads nbd, runs cmd.sh, records the status, and powers off.
# Everything it reports goes into files of the run directory, which the host reads afterwards.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
R=$UMLRUN_DIR
date +%s%N > "$R/t.init"
# shellcheck disable=SC1091
. "$R/params"   # KVER MODDIR LOAD_NBD WORKDIR MODPROBE

power_off() {
  # `poweroff -f` / sysrq-o stop the kernel at once, without the sync a normal shutdown does.
  # Files written with write(2) through hostfs already reached the host, but anything still dirty
  # in the guest's page cache (mmap'ed writes to hostfs files, the rename of rc) would be lost,
  # so sync first. Only the hostfs root (sync -f): a global sync would also flush filesystems
  # the test left mounted on /dev/nbdX, and with a hung NBD server that waits forever, turning a
  # clear failure into a timeout.
  sync -f "$R"
  echo o > /proc/sysrq-trigger   # needs no binary (systemctl, sysvinit) inside the guest
  sleep 10
  poweroff -f                    # not reached in practice
}
fail() {
  echo "$*" >> "$R/setup.log"
  echo "$*" > "$R/setup-failed"
  dmesg > "$R/dmesg.log" 2>/dev/null
  power_off
}

{
  mount -t proc proc /proc
  mount -t sysfs sysfs /sys
  mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev   # the kernel usually mounts it already
  mkdir -p /dev/pts /dev/shm
  mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
  mount -t tmpfs -o mode=1777 tmpfs /dev/shm
  # devtmpfs has no /dev/fd and friends; bash process substitution and many scripts need them.
  ln -sf /proc/self/fd /dev/fd; ln -sf /proc/self/fd/0 /dev/stdin
  ln -sf /proc/self/fd/1 /dev/stdout; ln -sf /proc/self/fd/2 /dev/stderr
  mount -t tmpfs -o mode=755 tmpfs /run
  mkdir /run/lock && chmod 1777 /run/lock
  mkdir -p /run/uml-run/bin "/run/uml-run/modroot/lib/modules"
  ln -s "$MODDIR" "/run/uml-run/modroot/lib/modules/$KVER"
  printf '#!/bin/sh\nexec %s -d /run/uml-run/modroot "$@"\n' "$MODPROBE" > /run/uml-run/bin/modprobe
  chmod 755 /run/uml-run/bin/modprobe
  echo /run/uml-run/bin/modprobe > /proc/sys/kernel/modprobe
  hostname uml-guest
  # Loopback only: tests keep their servers on the guest's own 127.0.0.1 (no other network).
  if command -v ip >/dev/null; then ip link set lo up; else echo "no ip (iproute2): loopback stays down"; fi
} >> "$R/setup.log" 2>&1 || true
[ -e /proc/self ] || fail "cannot mount /proc"
[ -d /run/uml-run/bin ] || fail "cannot set up the private /run"
if [ -n "$LOAD_NBD" ]; then
  /run/uml-run/bin/modprobe nbd nbds_max=16 >> "$R/setup.log" 2>&1 || fail "modprobe nbd nbds_max=16 failed"
  [ -b /dev/nbd0 ] || fail "nbd loaded but /dev/nbd0 did not appear"
fi
cd "$WORKDIR" || fail "cannot enter work directory $WORKDIR"

dmesg 2>/dev/null | wc -l > "$R/dmesg.start"   # the host shows only later kernel messages on failure
date +%s%N > "$R/t.cmd"
/bin/bash "$R/cmd.sh" > "$R/output.log" 2>&1 < /dev/null
rc=$?
date +%s%N > "$R/t.end"
dmesg > "$R/dmesg.log" 2>/dev/null
echo "$rc" > "$R/rc.tmp"
sync -f "$R"
mv "$R/rc.tmp" "$R/rc"   # rc appears complete or not at all
power_off
