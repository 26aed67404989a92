#!/usr/bin/env bash
# Installs what building and testing rbdnbd needs on Debian 12, from Debian's packages only.
#   scripts/install-deps.sh build   JDK 17 and Maven
#   scripts/install-deps.sh test    the above, plus the real NBD clients and peers the
#                                   integration tests and benchmarks run against, Ceph
#                                   (a one-node cluster for the RBD tests, librbd, rbd-nbd), and
#                                   a User-Mode Linux kernel that boots on this CPU
# Installs only what is missing; needs root (or sudo) when something is.
set -euo pipefail
what=${1:-build}
here=$(cd "$(dirname "$0")/.." && pwd)

build_pkgs=(openjdk-17-jdk-headless maven)
# NBD clients and peers: nbdinfo/nbdcopy/nbdsh, qemu-img/qemu-io/qemu-nbd (+ rbd block driver),
# nbdkit, fio, the tools the tests use to inspect sparse files, and User-Mode Linux (a kernel
# with the nbd driver, run as a process) with modprobe for the kernel-device tests. Ceph 16.2
# (Debian 12): the daemons of the one-node test cluster (scripts/ceph-cluster.sh), the ceph and
# rbd tools, librbd/librados for our RBD backend, fio's rbd engine and qemu's rbd driver, and
# Ceph's own rbd-nbd to compare with. patchelf: a UML kernel from Debian unstable where Debian 12's
# cannot run (it-tests/uml/uml-kernel.sh); openssl: the TLS tests' certificates.
test_pkgs=(libnbd-bin qemu-utils qemu-block-extra nbdkit fio procps util-linux e2fsprogs python3
  user-mode-linux kmod iproute2 bc patchelf openssl
  ceph-mon ceph-osd ceph-mgr ceph-common librbd1 librados2 rbd-nbd uuid-runtime)

case "$what" in
  build) pkgs=("${build_pkgs[@]}") ;;
  test) pkgs=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
  *) echo "usage: $0 build|test" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q >/dev/null
  $sudo apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}" >/dev/null
fi

# The kernel-device tests' UML kernel: Debian 12's where it boots; on CPUs where it cannot (AMX),
# Debian unstable's, fetched into /var/cache/rbdnbd/uml (see the script). uml-run.sh boots the
# one chosen here. A quick boot of each candidate (~3 s) tells.
if [ "$what" = test ]; then
  $sudo env "RBDNBD_UML_KERNEL=${RBDNBD_UML_KERNEL:-}" "RBDNBD_UML_CACHE=${RBDNBD_UML_CACHE:-}" \
    bash "$here/it-tests/uml/uml-kernel.sh" ensure >/dev/null
fi
