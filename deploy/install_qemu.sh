#!/usr/bin/env bash
# qemu-user >= 10 from bookworm-backports (bookworm's own qemu 7.2 segfaults inside LiteRT's
# aarch64 kernels). Idempotent: does nothing when qemu-aarch64 10.x or newer is already there.
set -euo pipefail
recent() { command -v qemu-aarch64 >/dev/null && qemu-aarch64 --version | head -n1 | grep -Eq 'version (1[0-9]|[2-9][0-9])\.'; }
if recent; then
  echo "qemu: $(qemu-aarch64 --version | head -n1)"
  exit 0
fi
if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
  echo "qemu: need qemu-user >= 10 (Debian: apt-get install -t bookworm-backports qemu-user, as root)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! grep -rqs '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo 'deb http://deb.debian.org/debian bookworm-backports main' \
    >/etc/apt/sources.list.d/bookworm-backports.list
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-user >/dev/null
recent || { echo "qemu: installed $(qemu-aarch64 --version | head -n1), not >= 10" >&2; exit 1; }
echo "qemu: installed $(qemu-aarch64 --version | head -n1)"
