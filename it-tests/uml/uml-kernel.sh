#!/usr/bin/env bash
# uml-kernel.sh - which User-Mode Linux kernel the kernel-device tests and benches boot.
#
# usage: uml-kernel.sh ensure   find a UML kernel (and its nbd.ko) that boots on this host, fetching
#                               one when Debian 12's does not; record it; print "KERNEL MODULES".
#                               Run by scripts/install-deps.sh test (as root).
#        uml-kernel.sh show     print the recorded "KERNEL MODULES" (uml-run.sh's default), or
#                               Debian's "/usr/bin/linux.uml /usr/lib/uml/modules" when none is.
# environment:
#   RBDNBD_UML_CACHE    where a fetched kernel and the record live (default /var/cache/rbdnbd/uml)
#   RBDNBD_UML_KERNEL   auto (default): Debian 12's kernel where it boots, else Debian unstable's;
#                       debian: only Debian 12's; unstable: Debian unstable's even where 12's boots
#
# Why a second kernel: on CPUs with AMX (amx_tile in /proc/cpuinfo) Debian 12's user-mode-linux
# (6.1), and Debian 13's (6.12) too, panic at their first process ("userspace - ptrace set fp regs
# failed, errno = 14"): the host's PTRACE_SETREGSET NT_X86_XSTATE wants the whole XSAVE area (~11 KB
# with AMX) and those kernels pass a smaller fixed buffer. Newer UML kernels size it from the host.
# Debian unstable's user-mode-linux has one, but it needs a newer glibc (>= 2.38) than Debian 12's
# (2.36). So its .deb and unstable's libc6 are downloaded through a private apt sources list and
# lists directory (the system's apt sources and installed packages stay untouched), unpacked with
# dpkg-deb under the cache, and the kernel's ELF interpreter and rpath pointed at the unpacked libc
# with patchelf. (Running it as `ld-linux.so linux.uml` does not work: UML computes its memory
# layout from where it was loaded and refuses to start.) A cached kernel is used again as long as
# it boots.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${RBDNBD_UML_CACHE:-/var/cache/rbdnbd/uml}
RECORD=$CACHE/selected
DEBIAN_KERNEL=/usr/bin/linux.uml
DEBIAN_MODULES=/usr/lib/uml/modules
WANT=${RBDNBD_UML_KERNEL:-auto}

say() { echo "uml-kernel: $*" >&2; }

show() {
  if [ -s "$RECORD" ]; then cat "$RECORD"; else echo "$DEBIAN_KERNEL $DEBIAN_MODULES"; fi
}

# boots KERNEL MODULES: 0 when a guest boots with nbd loaded and runs a command. Uses the test
# harness itself, so "boots" means what the tests need; its summary line goes to stderr.
boots() {
  local log rc=0
  log=$(mktemp)
  UML_RUN_KERNEL=$1 UML_RUN_MODULES=$2 UML_RUN_TMPDIR=${TMPDIR:-/tmp} \
    bash "$here/uml-run.sh" -m 256M -t 120 -- true >/dev/null 2>"$log" || rc=$?
  if [ "$rc" -ne 0 ]; then
    say "$1 does not boot here:"; grep '^uml-run: ' "$log" | sed 's/^/  /' >&2
  fi
  rm -f "$log"
  return "$rc"
}

record() { # KERNEL MODULES
  mkdir -p "$CACHE"
  echo "$1 $2" > "$RECORD.tmp" && mv "$RECORD.tmp" "$RECORD"
  say "using $1 ($("$1" --version)), modules under $2"
  echo "$1 $2"
}

# The Debian mirror this machine's apt already uses (deb822 or one-line format).
mirror() {
  local uri
  uri=$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $1; exit}')
  [ -n "$uri" ] || uri=$(awk '$1 == "deb" {print ($2 ~ /^\[/ ? $3 : $2); exit}' /etc/apt/sources.list 2>/dev/null)
  [ -n "$uri" ] || { say "no Debian mirror in /etc/apt/sources.list{,.d}: cannot fetch Debian unstable's kernel"; return 1; }
  echo "$uri"
}

# Fetches Debian unstable's user-mode-linux and libc6 into $CACHE/unstable (replacing what is there).
fetch_unstable() {
  command -v patchelf >/dev/null || { say "patchelf is missing: run scripts/install-deps.sh test"; return 1; }
  local dir=$CACHE/unstable uri
  uri=$(mirror)
  rm -rf "$dir"
  mkdir -p "$dir/apt/lists/partial" "$dir/apt/archives/partial" "$dir/debs" "$dir/root"
  echo "deb $uri sid main" > "$dir/apt/sources.list"
  local apt=(apt-get -q -o Dir::Etc::SourceList="$dir/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
             -o Dir::State::Lists="$dir/apt/lists" -o Dir::Cache::Archives="$dir/apt/archives"
             -o APT::Sandbox::User=root)
  say "fetching Debian unstable's user-mode-linux and libc6 from $uri (private sources list under $dir/apt)"
  "${apt[@]}" update >/dev/null || { say "apt-get update of the private unstable list failed"; return 1; }
  (cd "$dir/debs" && "${apt[@]}" download user-mode-linux libc6 >/dev/null) ||
    { say "apt-get download user-mode-linux libc6 (unstable) failed"; return 1; }
  local deb
  for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" "$dir/root"; done
  local lib=$dir/root/usr/lib/x86_64-linux-gnu
  [ -x "$dir/root/usr/bin/linux.uml" ] && [ -e "$lib/ld-linux-x86-64.so.2" ] ||
    { say "the unstable packages did not contain linux.uml and ld-linux-x86-64.so.2"; return 1; }
  cp "$dir/root/usr/bin/linux.uml" "$dir/linux.uml"
  patchelf --set-interpreter "$lib/ld-linux-x86-64.so.2" --set-rpath "$lib" "$dir/linux.uml"
  (cd "$dir/debs" && ls ./*.deb) | sed 's,^\./,,' > "$dir/packages"
  sed 's/^/  /' "$dir/packages" >&2
  rm -rf "$dir/apt" "$dir/debs"   # 60 MB of package lists and archives, no longer needed
}

ensure() {
  case $WANT in auto | debian | unstable) ;; *) say "RBDNBD_UML_KERNEL must be auto, debian or unstable, not '$WANT'"; exit 2 ;; esac
  if [ "$WANT" != unstable ]; then
    if [ -x "$DEBIAN_KERNEL" ] && boots "$DEBIAN_KERNEL" "$DEBIAN_MODULES"; then
      record "$DEBIAN_KERNEL" "$DEBIAN_MODULES"; return
    fi
    if [ "$WANT" = debian ]; then
      say "Debian 12's UML kernel ($DEBIAN_KERNEL) does not boot on this host (RBDNBD_UML_KERNEL=debian)"; exit 1
    fi
  fi
  local k=$CACHE/unstable/linux.uml m=$CACHE/unstable/root/usr/lib/uml/modules
  if [ -x "$k" ] && boots "$k" "$m"; then record "$k" "$m"; return; fi
  fetch_unstable || exit 1
  boots "$k" "$m" || { say "Debian unstable's UML kernel ($k) does not boot on this host either"; exit 1; }
  record "$k" "$m"
}

case ${1:-} in
  ensure) ensure ;;
  show) show ;;
  *) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
esac
