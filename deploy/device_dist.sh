#!/usr/bin/env bash
# `make device-dist`: what a TV box gets, in dist/device/
#
#   tvrec_device-<version>-py3-none-any.whl   the `device` package + `tvrec-device` command;
#                                             depends on numpy, sqlite-utils and a TFLite
#                                             interpreter (ai-edge-litert; tflite-runtime on armv7l)
#   constraints.txt                           the pinned versions of every dependency
#                                             (deploy/device-constraints.txt)
#   demo-bundle.tar.gz                        the demo bundle, packed by device.bundle (verified)
#   INSTALL.md, tvrec-engine.service          the box guide (deploy/INSTALL.md) and the systemd unit
#   SHA256SUMS
#
# Then proves it, the way a box would see it: from a scratch folder outside the source tree (no
# checkout on sys.path, no PYTHONPATH), a brand-new venv gets
# `pip install -c constraints.txt 'dist/device/*.whl[media]'` (dependencies from the index),
# must hold exactly the pinned distributions at their pinned versions (`pip check` clean), no
# TensorFlow or PySide6, must import `device` from its own site-packages, installs the bundle
# archive with `tvrec-device install`, prints a profile's rows, records an event with
# `tvrec-device record` and runs one `tvrec-device serve --once`.
# Environment: PYTHON (default python3), DIST (default dist/device).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
dist=${DIST:-dist/device}
work=.cache/device-dist
mkdir -p "$work"

# A small build environment (setuptools + wheel), made once.
if [[ ! -f $work/build/.ok ]]; then
  rm -rf "$work/build"
  "$PYTHON" -m venv "$work/build"
  "$work/build/bin/python" -m pip install --quiet --disable-pip-version-check 'setuptools>=68' wheel 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  touch "$work/build/.ok"
fi
rm -rf "$dist"
mkdir -p "$dist"
wheel=$("$work/build/bin/python" deploy/device_wheel.py --out "$dist")
echo "built $wheel"

cp deploy/device-constraints.txt "$dist/constraints.txt"
cp deploy/INSTALL.md "$dist/INSTALL.md"
cp deploy/tvrec-engine.service "$dist/"
# The demo bundle is signed with the DEMO key (demo/keys/README.md); a box trusts *.pub files.
mkdir -p "$dist/keys" && cp demo/keys/demo-fleet.key.pub "$dist/keys/"

# A fresh venv every time: the check is "installs from nothing but the wheel, the pins and the
# index". Everything below runs in a scratch folder with absolute paths: run from the checkout,
# python's sys.path[0] would be the source tree (its device/ and a stale tvrec.egg-info).
box=$(mktemp -d)
trap 'rm -rf "$box"' EXIT
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
wheel=$(abs "$wheel"); distabs=$(abs "$dist"); repo=$PWD
rm -rf "$work/verify"
"$PYTHON" -m venv "$work/verify"
vpy=$(abs "$work/verify/bin/python")
cd "$box"
unset PYTHONPATH
"$vpy" -m pip install --quiet --disable-pip-version-check -c "$distabs/constraints.txt" \
  "$wheel[media]" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
"$vpy" -m pip check --disable-pip-version-check
"$vpy" - "$distabs/constraints.txt" <<'PY'
import importlib.metadata as md, os, sys
from pip._vendor.packaging.requirements import Requirement
from pip._vendor.packaging.utils import canonicalize_name

pins = {}
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.split("#", 1)[0].strip()
    if line:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate():
            pins[canonicalize_name(req.name)] = str(req.specifier).lstrip("=")
installed = {canonicalize_name(d.metadata["Name"]): d.version for d in md.distributions()}
installed = {n: v for n, v in installed.items() if n not in {"pip", "setuptools", "tvrec-device"}}
unpinned = sorted(set(installed) - set(pins))
moved = sorted(f"{n} {installed[n]} (pinned {pins[n]})" for n in installed
               if n in pins and installed[n] != pins[n])
heavy = [n for n in installed if n.split("-")[0] in {"tensorflow", "pyside6", "tf", "keras", "torch", "scipy"}]
import device, device.engine  # noqa: F401  -- the box's entry point imports with the device deps alone
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {"tensorflow", "PySide6", "models", "export", "simulator"})
where = os.path.dirname(device.__file__)
print(f"fresh venv: {len(installed)} distributions, all at the pinned versions "
      f"({', '.join(f'{n}=={v}' for n, v in sorted(installed.items()))})")
print(f"fresh venv: `import device.engine` from {where}; no TensorFlow, no PySide6")
problems = []
if unpinned:
    problems.append(f"not pinned in constraints.txt: {unpinned}")
if moved:
    problems.append(f"installed at other versions than pinned: {moved}")
if heavy or loaded:
    problems.append(f"the device wheel pulled {heavy} / imported {loaded}")
if not where.startswith(sys.prefix):
    problems.append(f"device imported from {where}, not from the venv {sys.prefix}")
if problems:
    sys.exit("; ".join(problems))
PY

# The bundle archive, packed (and fully verified) by the shipped code itself.
"$vpy" -c "import sys; from device.bundle import pack_bundle; print('packed', pack_bundle(sys.argv[1], sys.argv[2]))" \
  "$repo/demo/bundle" "$distabs/demo-bundle.tar.gz"

# The box's first boot, in the scratch folder: install the (signed) bundle, show rows, record an
# event as a launcher would, refresh once.
tv=$(dirname "$vpy")/tvrec-device
"$tv" --version
"$tv" install "$distabs/demo-bundle.tar.gz" --bundles "$box/bundles" --trusted-keys "$distabs/keys"
rows=$("$tv" recommend --bundles "$box/bundles" --db "$box/history.db" --profile living-room 2>/dev/null)
head -n 4 <<<"$rows"
item=$("$tv" recommend --bundles "$box/bundles" --db "$box/history.db" --profile living-room --json \
  | "$vpy" -c "import json, sys; print(json.load(sys.stdin)['rows'][0]['cards'][0]['item_id'])")
"$tv" record --db "$box/history.db" --profile living-room --item "$item" --event finish
"$tv" serve --once --bundles "$box/bundles" --db "$box/history.db" --out "$box/rows" 2>/dev/null
cd "$repo"
(cd "$dist" && find . -type f ! -name SHA256SUMS | sort | xargs sha256sum -- >SHA256SUMS)
echo "dist: $dist"
ls -l "$dist"
