# Sourced by the scripts that run inside the UML guest (kernel-device.sh, kernel-rbd.sh,
# crash-consistency.sh): the guard, the launcher, the daemon's log, JVM options fit for the guest,
# and the helpers they share. Each script defines its own fail().
[ "${UML_GUEST:-}" = 1 ] || { echo "refusing to run outside the UML guest (this would map devices on the host)" >&2; exit 2; }
: "${RBDNBD_HOME:?RBDNBD_HOME must name the project root}"
rbd_nbd="$RBDNBD_HOME/bin/rbd-nbd"
log=/run/rbd-nbd-log/rbd-nbd.log
# Small, quick-starting JVMs: every newly touched MiB costs the guest ~30-40 ms. A 96 MiB heap
# holds a daemon configured for at most 8 devices with 32 MiB in flight (the daemon refuses a JVM
# smaller than its configuration's bound).
export RBDNBD_JAVA_OPTS="${RBDNBD_JAVA_OPTS:--Xms16m -Xmx96m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:-UsePerfData -Drbdnbd.engine.heap-base=32m -Drbdnbd.kernel.max-devices=8 -Drbdnbd.kernel.max-in-flight-bytes=32m}"
export RBDNBD_JAVA_OPTS="$RBDNBD_JAVA_OPTS -Drbdnbd.daemon.log-file=$log"

sysfs() { cat "/sys/block/${1#/dev/}/$2" 2>/dev/null; }
map() { "$rbd_nbd" map "$@" || { fail "map $*" >&2; }; } # in $(...): callers add || exit 1
# the daemon serving the devices (its command line names the program; the launcher execs java)
daemon_pid() { pgrep -f 'io[.]rbdnbd[.]cli[.]Main daemon' | head -1; }
# the id list-mapped shows for DEVICE: the pid of the process standing for it
device_pid() { "$rbd_nbd" list-mapped --format json | python3 -c 'import json,sys; print(*[x["id"] for x in json.load(sys.stdin) if x["device"] == sys.argv[1]])' "$1"; }
