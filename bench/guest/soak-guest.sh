#!/bin/bash
# Runs inside the UML guest (bench/soak.sh): DEVICES RBD images mapped by one rbd-nbd daemon and
# one RBD image exported by `rbd-nbd serve` to CONNECTIONS fio NBD connections, under mixed fio
# load (4k randrw 70/30) for SOAK_SECONDS, against a one-node Ceph cluster in this guest. At a
# third of the time the OSD is stopped (memstore saving its objects) and started again after 10 s;
# at two thirds the client of one
# device is blocklisted (the device reopens its image). Every 10 s, for the daemon and the export
# server: "SAMPLE t who VmRSS_KiB threads fds direct_KiB" (direct: NMT's "Other", where direct
# ByteBuffers live). Both run with the launcher's own JVM options (what an operator gets).
set -uo pipefail
[ "${UML_GUEST:-}" = 1 ] || { echo "refusing to run outside the UML guest (this would map devices on the host)" >&2; exit 2; }
: "${RBDNBD_HOME:?RBDNBD_HOME must name the project root}"
rbd_nbd="$RBDNBD_HOME/bin/rbd-nbd"
log=/run/rbd-nbd-log/rbd-nbd.log
nmt="-XX:NativeMemoryTracking=summary"
DEVICES=${DEVICES:-16}
CONNECTIONS=${CONNECTIONS:-64}
SOAK_SECONDS=${SOAK_SECONDS:-1800}
# ceph-csi maps with io-timeout=0 so that the kernel waits out a Ceph outage instead of failing
# the device: this one-OSD cluster blocks every request while its OSD restarts (measured: ~100 s
# under load, memstore saving and reloading its objects), and with the kernel's default 30 s every
# device was torn down by the kernel (Ceph's rbd-nbd exits the same way).
IO_TIMEOUT=${IO_TIMEOUT:-0}
ceph_dir=/run/ceph

fail() { echo "FAIL soak: $*"; tail -30 "$log" 2>/dev/null; tail -20 /run/serve.log 2>/dev/null; exit 1; }
status() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
direct_kib() { # NMT "Other" committed, KiB
  jcmd "$1" VM.native_memory summary 2>/dev/null | sed -n 's/^-  *Other (reserved=[0-9]*KB, committed=\([0-9]*\)KB)/\1/p' | head -1
}
sample() { # t who pid
  if [ ! -e "/proc/$3" ]; then # the first time: why (the process's last lines and the kernel's)
    echo "SAMPLE $1 $2 gone"
    [ -e "/run/gone-$2" ] && return
    touch "/run/gone-$2"
    echo "GONE $2: its log's last lines, then the kernel's"
    tail -25 "$([ "$2" = daemon ] && echo "$log" || echo /run/serve.log)" 2>/dev/null | sed 's/^/GONE   /'
    dmesg | tail -15 | sed 's/^/GONE   /'
    return
  fi
  echo "SAMPLE $1 $2 $(status "$3" VmRSS) $(status "$3" Threads) $(ls "/proc/$3/fd" | wc -l) $(direct_kib "$3")"
}
t0=$(date +%s)
step() { echo "[$(( $(date +%s) - t0 ))s] $*"; }

ip link set lo up || fail "no loopback"
eval "$(CEPH_WITH_MGR=0 CEPH_STORE_BYTES=$((2 << 30)) CEPH_IMAGE_SIZE= bash "$RBDNBD_HOME/scripts/ceph-cluster.sh" start "$ceph_dir")" \
  || fail "the Ceph cluster did not start"
for i in $(seq 0 $((DEVICES - 1))); do rbd create --size 32M "rbd/dev$i" || fail "rbd create dev$i"; done
rbd create --size 256M rbd/export || fail "rbd create export"
step "cluster up, images created"

export RBDNBD_JAVA_OPTS="$nmt -Drbdnbd.daemon.log-file=$log"
devs=()
for i in $(seq 0 $((DEVICES - 1))); do
  d=$("$rbd_nbd" map --io-timeout "$IO_TIMEOUT" "rbd/dev$i") || fail "map dev$i"
  devs+=("$d")
done
dpid=$(pgrep -f 'io[.]rbdnbd[.]cli[.]Main daemon' | head -1) # the daemon (list-mapped's ids are the devices' processes)
"$rbd_nbd" serve rbd/export --listen 127.0.0.1:10809 > /run/serve.out 2> /run/serve.log &
spid=$!
for _ in $(seq 300); do grep -q '^nbd://' /run/serve.out 2>/dev/null && break; sleep 0.2; done
grep -q '^nbd://' /run/serve.out || fail "serve did not start"
step "$DEVICES devices mapped (daemon $dpid), export served (pid $spid)"
bound() { # who pid: "BOUND who MaxHeapSize MaxDirectMemorySize" (bytes), as the JVM got them
  echo "BOUND $1 $(jcmd "$2" VM.flags -all 2>/dev/null | awk '$2 == "MaxHeapSize" { h = $4 } $2 == "MaxDirectMemorySize" { d = $4 } END { print h, d }')"
}
bound daemon "$dpid"; bound serve "$spid"
sample 0 daemon "$dpid"; sample 0 serve "$spid"

# The load is paced (RATE_IOPS per device job and per export connection): unpaced, 16 + 64 jobs
# saturate the guest's one CPU and starve the Ceph mon and OSD, so the OSD restart and the
# blocklisting never complete (measured: `ceph health` silent for 60 s). What is measured is
# memory, threads and fds under sustained load and faults, not throughput.
rate=${RATE_IOPS:-6}
args=(--ioengine=libaio --direct=1 --rw=randrw --rwmixread=70 --bs=4k --iodepth=8 --time_based --rate_iops="$rate"
      --runtime="$SOAK_SECONDS" --size=32M --continue_on_error=all --group_reporting=0)
for i in "${!devs[@]}"; do args+=(--name="dev$i" --filename="${devs[$i]}"); done
fio "${args[@]}" --output=/run/fio-devices.txt &
fio_dev=$!
fio --name=export --ioengine=nbd --uri=nbd://127.0.0.1:10809/ --rw=randrw --rwmixread=70 --bs=4k --iodepth=4 --rate_iops="$(( rate / 4 > 0 ? rate / 4 : 1 ))" \
    --numjobs="$CONNECTIONS" --time_based --runtime="$SOAK_SECONDS" --size=256M --continue_on_error=all \
    --group_reporting --output=/run/fio-export.txt &
fio_exp=$!

# The faults run beside the sampling, each bounded: a hung Ceph command must show in the samples,
# not stop them.
faults() {
  local from; from=$(date +%s)
  sleep $((SOAK_SECONDS / 3))
  # SIGTERM makes memstore save every object before the OSD exits (minutes under this load on
  # the guest's hostfs): the stop waits for it, or the restart would come back without the images
  CEPH_STOP_TIMEOUT=900 timeout 1000 bash "$RBDNBD_HOME/scripts/ceph-cluster.sh" osd-stop "$ceph_dir" >/run/osd-stop.log 2>&1 \
    || { echo "FAULT osd-stop failed: $(tail -2 /run/osd-stop.log | tr '\n' ' ')"
         # an OSD gone before its stop: why (its log's end, the kernel's OOM lines); its objects are lost
         tail -15 "$ceph_dir/log/osd.0.log" 2>/dev/null | sed 's/^/FAULT   osd.0.log: /'
         tail -10 "$ceph_dir/log/osd.0.out" 2>/dev/null | sed 's/^/FAULT   osd.0.out: /'
         dmesg | grep -iE 'out of memory|oom|killed process|segfault' | tail -5 | sed 's/^/FAULT   kernel: /'; }
  step "OSD stopped"; sleep 10
  timeout 300 bash "$RBDNBD_HOME/scripts/ceph-cluster.sh" osd-start "$ceph_dir" >/run/osd-start.log 2>&1 \
    || echo "FAULT osd-start failed: $(tail -2 /run/osd-start.log | tr '\n' ' ')"
  step "OSD started again: $(timeout 60 ceph health 2>&1)"
  while (( $(date +%s) - from < 2 * SOAK_SECONDS / 3 )); do sleep 5; done # 2/3 however long the OSD took
  local addr
  addr=$(timeout 60 rbd status --format json rbd/dev0 | python3 -c 'import json,sys; print(json.load(sys.stdin)["watchers"][0]["address"])') \
    || { echo "FAULT rbd status rbd/dev0 did not answer in 60 s"; return; }
  echo "$addr" > /run/blocklisted
  timeout 60 ceph osd blocklist add "$addr" >/dev/null 2>&1 || { echo "FAULT blocklist $addr failed"; return; }
  step "client of rbd/dev0 ($addr) blocklisted"
}
faults &
faults_pid=$!
start=$(date +%s)
while kill -0 "$fio_dev" 2>/dev/null || kill -0 "$fio_exp" 2>/dev/null; do
  t=$(( $(date +%s) - start ))
  sample "$t" daemon "$dpid"; sample "$t" serve "$spid"
  if (( t > SOAK_SECONDS + 300 )); then # with io-timeout 0 a device whose image is gone holds fio forever
    echo "FAULT fio still running $((t - SOAK_SECONDS)) s after the soak's end: device I/O held (image lost?)"
    dmesg | tail -10 | sed 's/^/FAULT   kernel: /'
    fail "fio did not end: the devices' I/O never completed"
  fi
  sleep 10
done
wait "$fio_dev"; wait "$fio_exp"
t=$(( $(date +%s) - start ))
sample "$t" daemon "$dpid"; sample "$t" serve "$spid"
echo "KERNEL $(dmesg | grep -c 'Possible stuck request') 'stuck request' lines (held past 30 s), $(dmesg | grep -c 'timed out') 'timed out' lines"
grep -q "reopened" "$log" && step "rbd/dev0 reopened after the blocklisting" || echo "NOTE no reopen logged"
for f in /run/fio-devices.txt /run/fio-export.txt; do
  echo "FIO $(basename "$f") $(grep -E '^ +(read|write):' "$f" | head -2 | tr -s ' ' | tr '\n' ' ')"
done
# Every device and the export still serve after the faults: 1 MiB written and read back on each
healthy=0
for d in "${devs[@]}"; do
  head -c 1048576 /dev/urandom > /run/probe
  dd if=/run/probe of="$d" bs=1M oflag=direct status=none 2>/dev/null \
    && cmp -s /run/probe <(dd if="$d" bs=1M count=1 iflag=direct status=none 2>/dev/null) \
    && healthy=$((healthy + 1)) || echo "UNHEALTHY $d"
done
echo "HEALTH devices $healthy/${#devs[@]} write+read back 1 MiB"
echo "HEALTH export $(timeout 60 nbdinfo --size nbd://127.0.0.1:10809/ 2>&1) bytes (nbdinfo)"
# The load is over: let the daemon and the server settle, then the idle state (leaks show here)
sleep 20
sample "$((t + 20))" daemon "$dpid"; sample "$((t + 20))" serve "$spid"
kill "$faults_pid" 2>/dev/null; wait "$faults_pid" 2>/dev/null
[ -s /run/blocklisted ] && timeout 60 ceph osd blocklist rm "$(cat /run/blocklisted)" >/dev/null 2>&1
kill -TERM "$spid"; wait "$spid"
for d in "${devs[@]}"; do "$rbd_nbd" unmap "$d" || fail "unmap $d"; done
bash "$RBDNBD_HOME/scripts/ceph-cluster.sh" stop "$ceph_dir" --purge >/dev/null 2>&1
echo "PASS soak"
