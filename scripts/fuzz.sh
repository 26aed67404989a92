#!/usr/bin/env bash
# Coverage-guided fuzzing (Jazzer) of the NBD request framing, the option parsers and the server
# handshake: each @FuzzTest for its maxDuration (30 s), one Maven run per target (Jazzer fuzzes one
# test per JVM). New inputs that widen coverage are merged into the corpus kept in the repo
# (engine/src/test/resources/.../*FuzzTestInputs/, replayed by every build); a crash fails the run
# and Jazzer writes its reproducer there too, to be committed with the fix.
#   scripts/fuzz.sh            all targets
#   scripts/fuzz.sh CLASS      one target, e.g. RequestDecoderFuzzTest
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
targets=("${@:-RequestDecoderFuzzTest OptionCodecFuzzTest HandshakeFuzzTest}")
rc=0
for t in ${targets[*]}; do
  echo "fuzz: $t"
  JAZZER_FUZZ=1 mvn -B -q -pl engine -am test -Dtest="$t" -Dsurefire.failIfNoSpecifiedTests=false || rc=1
done
# Merge what the fuzzer kept (engine/.cifuzz-corpus/CLASS/METHOD) into the repo's corpus.
for d in engine/.cifuzz-corpus/*/*/; do
  [ -d "$d" ] || continue
  cls=$(basename "$(dirname "$d")"); method=$(basename "$d")
  dest=engine/src/test/resources/${cls%.*}; dest=${dest//.//}/${cls##*.}Inputs/$method
  mkdir -p "$dest" && cp -n "$d"* "$dest"/ 2>/dev/null
done
exit $rc
