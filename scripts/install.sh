#!/usr/bin/env bash
# Installs rbd-nbd outside the build tree: scripts/install.sh [PREFIX]   (default /usr/local)
#   PREFIX/bin/rbd-nbd                         the launcher (the same script as bin/rbd-nbd)
#   PREFIX/lib/rbdnbd/*.jar                    the program and everything it needs
#   PREFIX/lib/systemd/system/rbd-nbd.service  the unit, its ExecStart pointing at PREFIX/bin/rbd-nbd
#   PREFIX/share/doc/rbdnbd/rbd-nbd.conf.example  settings to copy to /etc/rbd-nbd/rbd-nbd.conf
# Builds first when the tree is not built. Nothing outside PREFIX is touched: /usr/bin/rbd-nbd
# (Ceph's package) stays; for `rbd device map -t nbd` to run ours, link PREFIX/bin/rbd-nbd next
# to a copy of `rbd` (rbd runs the rbd-nbd beside its own executable, links resolved). Prints
# what it installed.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
prefix=${1:-/usr/local}
[ $# -le 1 ] || { echo "usage: $0 [PREFIX]" >&2; exit 2; }
case $prefix in /*) ;; *) prefix=$(pwd)/$prefix ;; esac

jar=$(ls "$root"/cli/target/rbdnbd-cli-*.jar 2>/dev/null | head -1 || true)
if [ -z "$jar" ] || [ ! -d "$root/cli/target/lib" ]; then
  (cd "$root" && mvn -B -q -DskipTests package)
  jar=$(ls "$root"/cli/target/rbdnbd-cli-*.jar | head -1)
fi

lib=$prefix/lib/rbdnbd
install -d "$prefix/bin" "$lib" "$prefix/lib/systemd/system" "$prefix/share/doc/rbdnbd"
rm -f "$lib"/*.jar # an older version's jars would stay on the class path
install -m 0644 "$jar" "$root"/cli/target/lib/*.jar "$lib/"
install -m 0755 "$root/bin/rbd-nbd" "$prefix/bin/rbd-nbd"
sed "s|^ExecStart=.*|ExecStart=$prefix/bin/rbd-nbd daemon|; s|^# Install: .*|# Installed by scripts/install.sh; enable with: systemctl enable --now $prefix/lib/systemd/system/rbd-nbd.service|" \
  "$root/conf/src/main/resources/systemd/rbd-nbd.service" > "$prefix/lib/systemd/system/rbd-nbd.service"
install -m 0644 "$root/conf/src/main/resources/rbd-nbd.conf" "$prefix/share/doc/rbdnbd/rbd-nbd.conf.example"
echo "installed rbd-nbd ($("$prefix/bin/rbd-nbd" --version)) into $prefix:"
echo "  $prefix/bin/rbd-nbd"
echo "  $lib ($(ls "$lib" | wc -l) jars)"
echo "  $prefix/lib/systemd/system/rbd-nbd.service"
echo "  $prefix/share/doc/rbdnbd/rbd-nbd.conf.example"
