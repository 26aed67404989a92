#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every stage:
#   1. unit and TestKit tests of every module (the default `mvn verify`)
#   2. integration tests with real NBD clients, a real kernel (UML) and Ceph (it-tests, -Pit)
#   3. coverage-guided fuzzing of the codec and the handshake, 30 s a target (scripts/fuzz.sh)
# and prints one Surefire-style summary over all of them at the end.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
"$here/scripts/install-deps.sh" test || { echo "test.sh: installing dependencies failed" >&2; exit 1; }

mvn -B -Pit clean verify
rc=$?
"$here/scripts/fuzz.sh" || rc=1

# One summary over every module's reports (Surefire prints one per module).
python3 - <<'PY'
import glob, xml.etree.ElementTree as ET
t = f = e = s = 0
for p in glob.glob("**/target/surefire-reports/TEST-*.xml", recursive=True):
    r = ET.parse(p).getroot()
    t += int(r.get("tests", 0)); f += int(r.get("failures", 0)); e += int(r.get("errors", 0)); s += int(r.get("skipped", 0))
print()
print("All modules: Tests run: %d, Failures: %d, Errors: %d, Skipped: %d" % (t, f, e, s))
print("%d passed, %d failed, %d skipped" % (t - f - e - s, f + e, s))
PY
exit $rc
