#!/usr/bin/env bash
# Build (once) a Debian bookworm library root for `qemu-aarch64 -L` / `qemu-arm -L`: CPython 3.11
# and the shared libraries it and the device wheels load, unpacked with `dpkg -x` (no maintainer
# scripts, no dpkg database).
# Usage: deploy/build_sysroot.sh CACHE_DIR [DEB_ARCH [EXTRA_ROOT...]]  -> CACHE_DIR/sysroot
#   DEB_ARCH: arm64 (default) or armhf; EXTRA_ROOTs: Debian packages the wheels cannot provide
#   for that architecture (armhf: python3-numpy, since numpy has no armv7 wheels on PyPI).
#
# Idempotent: the .debs are kept in CACHE_DIR/debs; a finished sysroot carries a stamp with its
# roots and the exact name=version list it was unpacked from, and is reused while the roots are
# unchanged (ARM_REFRESH=1: re-resolve, rebuild if any version moved).
set -euo pipefail
cache=${1:?usage: build_sysroot.sh CACHE_DIR [DEB_ARCH [EXTRA_ROOT...]]}
arch=${2:-arm64}
shift $(( $# > 1 ? 2 : 1 ))
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$cache/debs"
cache=$(cd "$cache" && pwd)
sysroot=$cache/sysroot
stamp=$sysroot/.tvrec-sysroot

export DEBIAN_FRONTEND=noninteractive
# Roots: the interpreter, its stdlib, and what the wheels' native code needs from the system
# (LiteRT links libstdc++/libgcc_s; numpy and av bundle their own libraries).
roots="python3.11-minimal libpython3.11-stdlib libstdc++6 libgcc-s1 libsqlite3-0 libssl3 libffi8 zlib1g libexpat1${*:+ $*}"
# A finished sysroot is reused while its roots are unchanged: no apt call at all (the second run
# stays fast and offline). ARM_REFRESH=1 re-resolves against the current archive and rebuilds
# only if a package version changed.
if [[ -f $stamp && ${ARM_REFRESH:-0} != 1 ]] && [[ $(head -n1 "$stamp") == "roots: $roots" ]]; then
  echo "sysroot: cached ($(( $(wc -l <"$stamp") - 1 )) packages) at $sysroot"
  exit 0
fi
# $arch package lists: needed once per machine; `apt-get update` only if $arch is new or no
# $arch list has been fetched yet (keeps the second run offline-fast).
if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
  dpkg --add-architecture "$arch"
  apt-get update -qq
elif ! apt-cache policy "python3.11-minimal:$arch" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
  apt-get update -qq
fi

mapfile -t pkgs < <(python3 "$here/resolve_debs.py" --arch "$arch" $roots)
# Pin exact versions (one apt-cache call), so the stamp records what was unpacked.
want=$(apt-cache policy "${pkgs[@]}" | awk '
  /^[^ ].*:$/ { name = substr($0, 1, length($0) - 1) }
  /^  Candidate:/ { print name "=" $2 }' | sort)
[[ $(wc -l <<<"$want") == "${#pkgs[@]}" ]] || { echo "sysroot: no candidate for some of: ${pkgs[*]}" >&2; exit 1; }
if [[ -f $stamp ]] && [[ $(cat "$stamp") == "roots: $roots"$'\n'"$want" ]]; then
  echo "sysroot: up to date ($(wc -l <<<"$want") packages) at $sysroot"
  exit 0
fi

echo "sysroot: downloading $(wc -l <<<"$want") $arch/all packages"
(cd "$cache/debs" && apt-get download -qq -o APT::Sandbox::User=root $want)
rm -rf "$sysroot.tmp"
mkdir -p "$sysroot.tmp"
while read -r spec; do
  name=${spec%%=*}; name=${name%%:*}; ver=${spec#*=}
  # apt-get download names files NAME_VERSION_ARCH.deb with ':' in the version escaped as %3a
  deb=$(ls "$cache/debs/${name}_${ver//:/%3a}_"*.deb | head -n1)
  dpkg -x "$deb" "$sysroot.tmp"
done <<<"$want"
# BLAS and LAPACK (Debian's numpy links libblas.so.3 / liblapack.so.3) sit in blas/ and lapack/
# subfolders; the maintainer scripts' update-alternatives, never run here, would link them into
# the library folder. Do that link ourselves.
for lib in "$sysroot.tmp"/usr/lib/*-linux-gnu*/{blas,lapack}/lib*.so.3; do
  [[ -e $lib ]] || continue
  link=$(dirname "$(dirname "$lib")")/$(basename "$lib")
  [[ -e $link ]] || ln -s "$(basename "$(dirname "$lib")")/$(basename "$lib")" "$link"
done
# ld.so looks in /etc/ld.so.cache first; with -L an absent sysroot cache falls back to the host's
# x86-64 one. Give the sysroot its own (ldconfig reads the ELF headers, any architecture).
mkdir -p "$sysroot.tmp/etc"
ldconfig -r "$sysroot.tmp" 2>/dev/null || true
printf 'roots: %s\n%s\n' "$roots" "$want" >"$sysroot.tmp/.tvrec-sysroot"
rm -rf "$sysroot"
mv "$sysroot.tmp" "$sysroot"
echo "sysroot: built at $sysroot ($(du -sh "$sysroot" | cut -f1))"
