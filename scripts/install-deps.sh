#!/usr/bin/env bash
# Installs what building and testing rbdnbd needs on Debian 12, from Debian's packages only.
#   scripts/install-deps.sh build   JDK 17 and Maven
#   scripts/install-deps.sh test    the above, plus the real NBD clients and peers the
#                                   integration tests and benchmarks run against, and Ceph
#                                   (a one-node cluster for the RBD tests, librbd, rbd-nbd)
# Installs only what is missing; needs root (or sudo) when something is.
set -euo pipefail
what=${1:-build}

build_pkgs=(openjdk-17-jdk-headless maven)
# NBD clients and peers: nbdinfo/nbdcopy/nbdsh, qemu-img/qemu-io/qemu-nbd (+ rbd block driver),
# nbdkit, fio, the tools the tests use to inspect sparse files, and User-Mode Linux (a kernel
# with the nbd driver, run as a process) with modprobe for the kernel-device tests. Ceph 16.2
# (Debian 12): the daemons of the one-node test cluster (scripts/ceph-cluster.sh), the ceph and
# rbd tools, librbd/librados for our RBD backend, fio's rbd engine and qemu's rbd driver, and
# Ceph's own rbd-nbd to compare with.
test_pkgs=(libnbd-bin qemu-utils qemu-block-extra nbdkit fio procps util-linux e2fsprogs python3
  user-mode-linux kmod iproute2 bc
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
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >/dev/null
$sudo apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}" >/dev/null
