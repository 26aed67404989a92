#!/bin/bash
# Guest side of bench/kernel-fio.sh (runs inside the UML guest): the same fio jobs (libaio,
# direct) on a /dev/nbdN served by rbdnbd (bin/rbd-nbd map) and by qemu-nbd -c, alternating,
# each on a raw file in the guest's /run (tmpfs: qemu-nbd runs with its default writeback cache,
# since tmpfs has no O_DIRECT). Prints one "RESULT server job value unit p99ms" line per run.
set -uo pipefail
[ "${UML_GUEST:-}" = 1 ] || { echo "refusing to run outside the UML guest" >&2; exit 2; }
: "${RBDNBD_HOME:?}" "${RUNTIME:=10}" "${ROUNDS:=1}" "${SIZE_MIB:=384}"
log=/run/rbd-nbd-log/rbd-nbd.log
export RBDNBD_JAVA_OPTS="${RBDNBD_JAVA_OPTS:--Xms64m -Xmx192m -XX:+UseSerialGC -Drbdnbd.engine.heap-base=32m -Drbdnbd.kernel.max-devices=8 -Drbdnbd.kernel.max-in-flight-bytes=64m}"
export RBDNBD_JAVA_OPTS="$RBDNBD_JAVA_OPTS -Drbdnbd.daemon.log-file=$log"
jobs=("randread 4k 256" "randwrite 4k 256" "read 1M 16" "write 1M 16")

attach() { # server -> device
  case $1 in
    ours) "$RBDNBD_HOME/bin/rbd-nbd" map file:/run/ours.img ;;
    qemu-nbd) qemu-nbd -f raw -c /dev/nbd8 /run/qemu.img && sleep 1 && echo /dev/nbd8 ;;
  esac
}
detach() {
  case $1 in
    ours) "$RBDNBD_HOME/bin/rbd-nbd" unmap "$2" ;;
    qemu-nbd) qemu-nbd -d "$2" >/dev/null ;;
  esac
}
# both images and the fill buffer must fit the guest tmpfs (half the guest RAM)
truncate -s "${SIZE_MIB}M" /run/ours.img /run/qemu.img
for server in ours qemu-nbd; do
  dev=$(attach $server) || { echo "cannot attach $server"; cat "$log" 2>/dev/null; exit 1; }
  dd if=/dev/urandom of=/run/fill bs=1M count=64 status=none
  for i in $(seq 0 64 $(( SIZE_MIB - 64 ))); do dd if=/run/fill of="$dev" bs=1M seek=$i oflag=direct status=none; done
  detach $server "$dev"
done
for round in $(seq "$ROUNDS"); do
  for j in "${jobs[@]}"; do
    set -- $j
    for server in ours qemu-nbd; do
      dev=$(attach $server) || exit 1
      fio --name=b --filename="$dev" --ioengine=libaio --direct=1 --rw="$1" --bs="$2" --iodepth="$3" \
          --runtime="$RUNTIME" --ramp_time=2 --time_based --output-format=json --output=/run/fio.json >/dev/null 2>&1
      python3 - "$server" "$1-$2-qd$3" <<'PY'
import json, sys
j = json.load(open("/run/fio.json"))["jobs"][0]
k = "read" if j["read"]["io_bytes"] > 0 else "write"
r = j[k]
val, unit = (r["iops"], "IOPS") if "4k" in sys.argv[2] else (r["bw_bytes"] / 1048576, "MiB/s")
p99 = r["clat_ns"]["percentile"]["99.000000"] / 1e6
print("RESULT %s %s %.0f %s %.2f" % (sys.argv[1], sys.argv[2], val, unit, p99))
PY
      detach $server "$dev"
    done
  done
done
