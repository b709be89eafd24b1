#!/usr/bin/env bash
# Build (once) an aarch64 Debian bookworm library root for `qemu-aarch64 -L`: CPython 3.11 and
# the shared libraries it and the device wheels load, unpacked with `dpkg -x` (no maintainer
# scripts, no dpkg database). Usage: deploy/build_sysroot.sh CACHE_DIR  -> CACHE_DIR/sysroot
#
# Idempotent: the .debs are kept in CACHE_DIR/debs and the sysroot is rebuilt only when the
# resolved package list (name=version) changes; a finished sysroot carries a stamp holding it.
set -euo pipefail
cache=${1:?usage: build_sysroot.sh CACHE_DIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$cache/debs"
cache=$(cd "$cache" && pwd)
sysroot=$cache/sysroot
stamp=$sysroot/.tvrec-sysroot

export DEBIAN_FRONTEND=noninteractive
# arm64 package lists: needed once per machine; `apt-get update` only if arm64 is new or no
# arm64 list has been fetched yet (keeps the second run offline-fast).
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
  apt-get update -qq
elif ! apt-cache policy python3.11-minimal:arm64 2>/dev/null | grep -q 'Candidate: [0-9]'; then
  apt-get update -qq
fi

# Roots: the interpreter, its stdlib, and what the wheels' native code needs from the system
# (LiteRT links libstdc++/libgcc_s; numpy and av bundle their own libraries).
roots="python3.11-minimal libpython3.11-stdlib libstdc++6 libgcc-s1 libsqlite3-0 libssl3 libffi8 zlib1g libexpat1"
mapfile -t pkgs < <(python3 "$here/resolve_debs.py" $roots)
# Pin exact versions, so the stamp changes when Debian ships an update.
want=$(for p in "${pkgs[@]}"; do
  printf '%s=%s\n' "$p" "$(apt-cache policy "$p" | awk '/Candidate:/ {print $2}')"
done | sort)

if [[ -f $stamp ]] && [[ $(cat "$stamp") == "$want" ]]; then
  echo "sysroot: cached ($(wc -l <<<"$want") packages) at $sysroot"
  exit 0
fi

echo "sysroot: downloading $(wc -l <<<"$want") arm64/all packages"
(cd "$cache/debs" && apt-get download -qq $want)
rm -rf "$sysroot.tmp"
mkdir -p "$sysroot.tmp"
while read -r spec; do
  name=${spec%%=*}; name=${name%%:*}; ver=${spec#*=}
  # apt-get download names files NAME_VERSION_ARCH.deb with ':' in the version escaped as %3a
  deb=$(ls "$cache/debs/${name}_${ver//:/%3a}_"*.deb | head -n1)
  dpkg -x "$deb" "$sysroot.tmp"
done <<<"$want"
# ld.so looks in /etc/ld.so.cache first; with -L an absent sysroot cache falls back to the host's
# x86-64 one. Give the sysroot its own (ldconfig reads the ELF headers, any architecture).
mkdir -p "$sysroot.tmp/etc"
ldconfig -r "$sysroot.tmp" 2>/dev/null || true
printf '%s\n' "$want" >"$sysroot.tmp/.tvrec-sysroot"
rm -rf "$sysroot"
mv "$sysroot.tmp" "$sysroot"
echo "sysroot: built at $sysroot ($(du -sh "$sysroot" | cut -f1))"
