#!/usr/bin/env bash
# `make device-dist`: what a TV box gets, in dist/device/
#
#   tvrec_device-<version>-py3-none-any.whl   the `device` package + `tvrec-device` command;
#                                             depends on numpy, sqlite-utils, ai-edge-litert only
#   demo-bundle.tar.gz                        the demo bundle, packed by device.bundle (verified)
#   INSTALL.md, tvrec-engine.service          the install/run guide and the systemd unit
#   SHA256SUMS
#
# Then proves it: a brand-new venv gets `pip install dist/device/*.whl` (dependencies from the
# index), must not contain TensorFlow or PySide6, imports device.engine, installs the bundle
# archive into a bundle store with `tvrec-device install`, prints a profile's rows and runs one
# `tvrec-device serve --once`. Environment: PYTHON (default python3), DIST (default dist/device).
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

# A fresh venv every time: the check is "installs from nothing but the wheel and the index".
rm -rf "$work/verify"
"$PYTHON" -m venv "$work/verify"
vpy=$work/verify/bin/python
"$vpy" -m pip install --quiet --disable-pip-version-check "$wheel" 2>&1 \
  | { grep -v "is ignored: it is neither a file nor a directory" || true; }
"$vpy" - <<'PY'
import importlib.metadata as md, sys
names = sorted(d.metadata["Name"].lower() for d in md.distributions())
heavy = [n for n in names if n.split("-")[0] in {"tensorflow", "pyside6", "tf", "keras", "torch", "scipy"}]
import device.engine  # noqa: F401  -- the box's entry point imports with the device deps alone
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {"tensorflow", "PySide6", "models", "export", "simulator"})
print(f"fresh venv: {len(names)} distributions ({', '.join(names)})")
if heavy or loaded:
    sys.exit(f"the device wheel pulled {heavy} / imported {loaded}")
print("fresh venv: `import device.engine` ok; no TensorFlow, no PySide6")
PY
(cd "$work" && verify/bin/python -c "import device, os; print('imports from', os.path.dirname(device.__file__))")

# The bundle archive, packed (and fully verified) by the shipped code itself.
"$vpy" -c "import sys; from device.bundle import pack_bundle; print('packed', pack_bundle(sys.argv[1], sys.argv[2]))" \
  demo/bundle "$dist/demo-bundle.tar.gz"

cp deploy/README.md "$dist/INSTALL.md"
# The demo bundle is signed with the DEMO key (demo/keys/README.md); a box trusts *.pub files.
mkdir -p "$dist/keys" && cp demo/keys/demo-fleet.key.pub "$dist/keys/"
cp deploy/tvrec-engine.service "$dist/"

# The box's first boot, in a scratch folder: install the bundle, show rows, refresh once.
box=$(mktemp -d)
trap 'rm -rf "$box"' EXIT
tv=$work/verify/bin/tvrec-device
"$tv" install "$dist/demo-bundle.tar.gz" --bundles "$box/bundles" --trusted-keys "$dist/keys"
rows=$("$tv" recommend --bundles "$box/bundles" --db "$box/history.db" --profile living-room 2>/dev/null)
head -n 4 <<<"$rows"
"$tv" serve --once --bundles "$box/bundles" --db "$box/history.db" --out "$box/rows" 2>/dev/null
(cd "$dist" && find . -type f ! -name SHA256SUMS | sort | xargs sha256sum -- >SHA256SUMS)
echo "dist: $dist"
ls -l "$dist"
