#!/bin/bash
# Runs inside the UML guest (bench/daemon-rss.sh): the rbd-nbd daemon's resident memory with 1
# and with 16 idle devices, then under fio load on 4 of the 16, with the launcher's own JVM
# options (what an operator gets). Prints "RESULT <phase> <devices> <VmRSS KiB> <VmHWM KiB>".
set -uo pipefail
[ "${UML_GUEST:-}" = 1 ] || { echo "refusing to run outside the UML guest (this would map devices on the host)" >&2; exit 2; }
: "${RBDNBD_HOME:?RBDNBD_HOME must name the project root}"
rbd_nbd="$RBDNBD_HOME/bin/rbd-nbd"
log=/run/rbd-nbd-log/rbd-nbd.log
export RBDNBD_JAVA_OPTS="${RBDNBD_JAVA_OPTS:-} -Drbdnbd.daemon.log-file=$log"
DEVICES=${DEVICES:-16}
SETTLE=${SETTLE:-10}
RUNTIME=${RUNTIME:-20}

fail() { echo "FAIL daemon-rss: $*"; tail -30 "$log" 2>/dev/null; exit 1; }
status() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
report() { echo "RESULT $1 $2 $(status "$pid" VmRSS) $(status "$pid" VmHWM)"; }

for i in $(seq 0 $((DEVICES - 1))); do truncate -s 256M "/run/img$i"; done
devs=()
devs+=("$("$rbd_nbd" map file:/run/img0)") || fail "map 0"
pid=$(pgrep -f 'io[.]rbdnbd[.]cli[.]Main daemon' | head -1) # the daemon (list-mapped's ids are the devices' processes)
dd if="${devs[0]}" of=/dev/null bs=1M count=16 iflag=direct status=none || fail "read ${devs[0]}"
sleep "$SETTLE"; report idle 1
for i in $(seq 1 $((DEVICES - 1))); do
  devs+=("$("$rbd_nbd" map "file:/run/img$i")") || fail "map $i"
  dd if="${devs[$i]}" of=/dev/null bs=1M count=16 iflag=direct status=none || fail "read ${devs[$i]}"
done
sleep "$SETTLE"; report idle "$DEVICES"
files=$(IFS=:; echo "${devs[*]:0:4}")
fio --name=load --filename="$files" --ioengine=libaio --direct=1 --rw=randrw --bs=4k --iodepth=128 --numjobs=4 \
    --time_based --runtime="$RUNTIME" --size=256M --group_reporting --output=/run/fio-rss.txt &
fio_pid=$!
sleep $((RUNTIME / 2)); report load-4k "$DEVICES"
wait $fio_pid || { cat /run/fio-rss.txt; fail fio; }
fio --name=seq --filename="$files" --ioengine=libaio --direct=1 --rw=write --bs=1M --iodepth=16 --numjobs=4 \
    --time_based --runtime="$RUNTIME" --size=256M --group_reporting --output=/run/fio-rss2.txt &
fio_pid=$!
sleep $((RUNTIME / 2)); report load-1M "$DEVICES"
wait $fio_pid || { cat /run/fio-rss2.txt; fail fio; }
for d in "${devs[@]}"; do "$rbd_nbd" unmap "$d" || fail "unmap $d"; done
echo "PASS daemon-rss"
