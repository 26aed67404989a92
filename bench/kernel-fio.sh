#!/usr/bin/env bash
# Kernel-device benchmark (issue: kernel attach): inside a User-Mode Linux guest (the host kernel
# has no nbd driver), fio libaio/direct 4k randread and randwrite at QD256 and 1M sequential at
# QD16 on /dev/nbdN served by rbdnbd, then by qemu-nbd -c on an equal file, alternating, and the
# ratios ours / qemu-nbd. UML runs one vCPU with every syscall a ptrace round trip: absolute
# numbers are far below bare metal; the ratio is what this shows.
# env: RUNTIME (10 s), ROUNDS (1), SIZE_MIB (384: both images live in the guest's tmpfs)
set -euo pipefail
here=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
root=$(cd "$here/.." && pwd)
BENCH_NAME=kernel-fio
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
is_built || (cd "$root" && mvn -B -q -DskipTests package)
for t in fio qemu-nbd python3; do   # the UML kernel: uml-run.sh says when it is missing
  have "$t" || { echo "missing $t: run scripts/install-deps.sh test" >&2; exit 2; }
done
mkdir -p "$here/results"
out="$here/results/kernel-fio-$(date +%Y%m%d-%H%M%S).txt"
"$root/it-tests/uml/uml-run.sh" -m 2G -t 3000 -C "$root" -E "RBDNBD_HOME=$root" \
  -E "RUNTIME=${RUNTIME:-10}" -E "ROUNDS=${ROUNDS:-1}" -E "SIZE_MIB=${SIZE_MIB:-384}" \
  -- bash "$here/guest/kernel-fio-guest.sh" | tee "$out.raw"
python3 - "$out.raw" <<'PY' | tee "$out"
import sys, statistics, collections
runs = collections.defaultdict(list); p99 = collections.defaultdict(list); units = {}
for line in open(sys.argv[1]):
    f = line.split()
    if f[:1] == ["RESULT"]:
        runs[(f[2], f[1])].append(float(f[3])); units[f[2]] = f[4]; p99[(f[2], f[1])].append(float(f[5]))
print("%-20s %-9s %12s %9s" % ("job", "server", "value", "p99 ms"))
for job in sorted({j for j, _ in runs}):
    for s in ("ours", "qemu-nbd"):
        if (job, s) in runs:
            print("%-20s %-9s %8.0f %-5s %7.2f" % (job, s, statistics.median(runs[(job, s)]), units[job], statistics.median(p99[(job, s)])))
    if (job, "ours") in runs and (job, "qemu-nbd") in runs:
        print("%-20s ours/qemu-nbd = %.2f (target >= 1.00)" % (job, statistics.median(runs[(job, "ours")]) / statistics.median(runs[(job, "qemu-nbd")])))
PY
