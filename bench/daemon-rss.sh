#!/usr/bin/env bash
# Daemon memory (issue: the rbd-nbd daemon): resident memory of the one daemon with 1 and with 16
# idle file-backed devices, then under fio load (4k random and 1M sequential on 4 of them), inside
# a User-Mode Linux guest (the host kernel has no nbd driver), with the launcher's default JVM
# options. Target: under 150 MiB + 8 MiB per device.
# env: DEVICES (16), SETTLE (10 s before an idle sample), RUNTIME (20 s per load), RBDNBD_JAVA_OPTS
set -euo pipefail
here=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
root=$(cd "$here/.." && pwd)
BENCH_NAME=daemon-rss
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
is_built || (cd "$root" && mvn -B -q -DskipTests package)
for t in fio python3; do   # the UML kernel: uml-run.sh says when it is missing
  have "$t" || { echo "missing $t: run scripts/install-deps.sh test" >&2; exit 2; }
done
mkdir -p "$here/results"
out="$here/results/daemon-rss-$(date +%Y%m%d-%H%M%S).txt"
"$root/it-tests/uml/uml-run.sh" -m 3G -t 1800 -C "$root" -E "RBDNBD_HOME=$root" \
  -E "DEVICES=${DEVICES:-16}" -E "SETTLE=${SETTLE:-10}" -E "RUNTIME=${RUNTIME:-20}" \
  -E "RBDNBD_JAVA_OPTS=${RBDNBD_JAVA_OPTS:-}" \
  -- bash "$here/guest/daemon-rss-guest.sh" | tee "$out.raw"
python3 - "$out.raw" <<'PY' | tee "$out"
import sys
print("%-10s %7s %12s %12s %12s  %s" % ("phase", "devices", "VmRSS MiB", "VmHWM MiB", "target MiB", "met"))
ok = True
for line in open(sys.argv[1]):
    f = line.split()
    if f[:1] == ["RESULT"]:
        phase, n, rss, hwm = f[1], int(f[2]), int(f[3]) / 1024, int(f[4]) / 1024
        target = 150 + 8 * n
        print("%-10s %7d %12.0f %12.0f %12d  %s" % (phase, n, rss, hwm, target, "yes" if rss < target else "NO"))
PY
