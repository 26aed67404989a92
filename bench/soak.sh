#!/usr/bin/env bash
# Soak (issue: one daemon survives any client): inside a User-Mode Linux guest (the host kernel has
# no nbd driver), 16 RBD devices in one rbd-nbd daemon and an RBD export with 64 fio connections,
# 4k randrw for SOAK_SECONDS (30 min) against a one-node Ceph cluster in the guest, with the OSD
# restarted at 1/3 and one device's client blocklisted at 2/3 (bench/guest/soak-guest.sh). Every
# 10 s the resident memory, threads, fds and direct memory of both JVMs are sampled; the table gives
# start, max and final (after the load, idle) against each JVM's bound: its maximum heap + its
# maximum direct memory (as the launcher sized them from the configuration, read back with jcmd)
# + the JVM's own (200 MiB). The faults run beside the sampling, bounded in time; afterwards every
# device and the export must still read back what is written to them.
# env: SOAK_SECONDS (1800), DEVICES (16), CONNECTIONS (64), RATE_IOPS (6 per device job; a quarter, at least 1, per
# export connection), IO_TIMEOUT (0, as ceph-csi maps: the kernel waits out the OSD restart)
set -euo pipefail
here=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
root=$(cd "$here/.." && pwd)
BENCH_NAME=soak
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
is_built || (cd "$root" && mvn -B -q -DskipTests package)
for t in fio python3 ceph rbd ceph-mon ceph-osd jcmd; do   # the UML kernel: uml-run.sh says when it is missing
  have "$t" || { echo "missing $t: run scripts/install-deps.sh test" >&2; exit 2; }
done
mkdir -p "$here/results"
out="$here/results/soak-$(date +%Y%m%d-%H%M%S).txt"
secs=${SOAK_SECONDS:-1800}
"$root/it-tests/uml/uml-run.sh" -m 4G -t $((secs + 2400)) -C "$root" -E "RBDNBD_HOME=$root" \
  -E "SOAK_SECONDS=$secs" -E "DEVICES=${DEVICES:-16}" -E "CONNECTIONS=${CONNECTIONS:-64}" -E "RATE_IOPS=${RATE_IOPS:-6}" \
  -E "IO_TIMEOUT=${IO_TIMEOUT:-0}" \
  -- bash "$here/guest/soak-guest.sh" | tee "$out.raw"
python3 - "$out.raw" <<'PY' | tee "$out"
import sys, collections
JVM_OWN_MIB = 200
bound = {}
s = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = line.split()
    if f[:1] in (["HEALTH"], ["FAULT"], ["FIO"], ["UNHEALTHY"], ["NOTE"], ["PASS"], ["FAIL"], ["GONE"], ["KERNEL"]) or line.startswith("["):
        print(line.rstrip())
    if f[:1] == ["BOUND"] and len(f) == 4:
        bound[f[1]] = (int(f[2]) + int(f[3])) / 1048576 + JVM_OWN_MIB
    if f[:1] == ["SAMPLE"] and len(f) >= 7 and f[3] != "gone":
        t, who = int(f[1]), f[2]
        s[who].append((t, int(f[3]) / 1024, int(f[4]), int(f[5]), int(f[6]) / 1024 if len(f) > 6 and f[6] else float("nan")))
print("%-7s %-8s %10s %10s %10s %10s" % ("who", "", "RSS MiB", "threads", "fds", "direct MiB"))
for who, xs in s.items():
    for name, row in (("start", xs[0]), ("max", tuple(max(x[i] for x in xs) for i in range(5))), ("final", xs[-1])):
        print("%-7s %-8s %10.0f %10d %10d %10.1f" % (who, name, row[1], row[2], row[3], row[4]))
    b = bound.get(who, float("nan"))
    print("%-7s %-8s %s (%.0f MiB: heap + direct + %d)" % (who, "RSS", "under the bound" if max(x[1] for x in xs) < b
                                                             else "OVER THE BOUND", b, JVM_OWN_MIB))
PY
