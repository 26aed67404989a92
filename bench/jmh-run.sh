#!/usr/bin/env bash
# bench/jmh-run.sh: builds the JMH benchmarks of the per-request path (bench/jmh) and runs them.
#
#   bench/jmh-run.sh                      all benchmarks, modest settings (about 2 minutes)
#   bench/jmh-run.sh TransmissionFlow     only benchmarks matching a regex
#   JMH_OPTS="-f 2 -wi 5 -i 10" bench/jmh-run.sh   other JMH settings (replace the defaults)
#   SKIP_BUILD=1 bench/jmh-run.sh         reuse bench/jmh/target/benchmarks.jar
#
# The build is `mvn -q -DskipTests install` at the root (bench/jmh depends on the installed
# rbdnbd-engine), then `mvn -q -f bench/jmh/pom.xml package`. The output, ending with JMH's result
# table, also goes to bench/results/jmh-DATE.txt.
set -euo pipefail

here=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
root=$(cd "$here/.." && pwd)
jar="$here/jmh/target/benchmarks.jar"
JMH_OPTS=${JMH_OPTS:--f 1 -wi 3 -i 5 -w 2s -r 2s}

for tool in java mvn; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    case "$tool" in
      java) echo "jmh-run: missing java 17 (Debian package: openjdk-17-jdk-headless)" >&2 ;;
      mvn) echo "jmh-run: missing mvn (Debian package: maven)" >&2 ;;
    esac
    exit 2
  fi
done

if [ -z "${SKIP_BUILD:-}" ] || [ ! -f "$jar" ]; then
  echo "jmh-run: building (mvn -q -DskipTests install; mvn -q -f bench/jmh/pom.xml package)" >&2
  (cd "$root" && mvn -q -DskipTests install)
  mvn -q -f "$here/jmh/pom.xml" package
fi

mkdir -p "$here/results"
out="$here/results/jmh-$(date +%Y%m%d-%H%M%S).txt"
started=$(date +%s)
{
  echo "rbdnbd JMH benchmarks (bench/jmh-run.sh), $(date -Is)"
  echo "commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$root" diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)'); $(nproc) cores; $(java -version 2>&1 | head -1); JMH_OPTS='$JMH_OPTS'"
  # shellcheck disable=SC2086 # JMH_OPTS is a list of options
  java -jar "$jar" $JMH_OPTS "$@"
  echo "took $(( $(date +%s) - started )) s"
} 2>&1 | tee "$out"
echo "jmh-run: output in $out" >&2
