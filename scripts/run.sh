#!/usr/bin/env bash
# The main job on the embedded default: builds rbdnbd if needed and serves a sparse file image
# over NBD on a Unix socket until Ctrl-C / SIGTERM. Any NBD client can then use it, e.g.
#   nbdinfo --map 'nbd+unix:///?socket=/tmp/rbdnbd.sock'
#   qemu-img convert -p -O raw 'nbd+unix:///?socket=/tmp/rbdnbd.sock' copy.raw
# Environment: RBDNBD_IMAGE (default /var/tmp/rbdnbd.img), RBDNBD_SIZE (1G, used when the file
# is created), RBDNBD_SOCKET (/tmp/rbdnbd.sock).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/install-deps.sh" build
if [ ! -d "$here/cli/target/lib" ]; then
  (cd "$here" && mvn -B -q -DskipTests package)
fi
exec "$here/bin/rbd-nbd" serve "file:${RBDNBD_IMAGE:-/var/tmp/rbdnbd.img}" --size "${RBDNBD_SIZE:-1G}" \
  --socket "${RBDNBD_SOCKET:-/tmp/rbdnbd.sock}"
