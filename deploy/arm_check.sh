#!/usr/bin/env bash
# `make arm-check` / `make armhf-check`: the device code on 64-bit (aarch64) or 32-bit (armv7l,
# Debian armhf) ARM, under qemu-user emulation, on an x86-64 host.
#
#   deploy/arm_check.sh [aarch64|armv7l]      (default aarch64)
#
#   1. qemu-user >= 10 (deploy/install_qemu.sh; one package gives qemu-aarch64 and qemu-arm)
#   2. a Debian bookworm sysroot of that architecture with CPython 3.11 (deploy/build_sysroot.sh);
#      armv7l adds Debian's python3-numpy, python3-nacl, python3-cffi (no armv7 wheels on PyPI)
#   3. wheels of the device runtime + pytest in a site-packages folder
#      (aarch64: deploy/arm-requirements.txt; armv7l: deploy/armhf-requirements.txt, with
#      tflite-runtime 2.14 as the interpreter since ai-edge-litert has no armv7 wheels), pinned by
#      deploy/device-constraints.txt -- the same pins the box's wheel ships with
#   4. under `qemu-aarch64 -cpu cortex-a53` (the entry box's core) or `qemu-arm -cpu cortex-a7`
#      (TVREC_ARM_CPU picks another) with `-L SYSROOT SYSROOT/usr/bin/python3.11`:
#      platform.machine(), the device test subset, deploy/arm_smoke.py (device imports, a real
#      clip decoded and embedded, compared with the host), `tvrec-device recommend` on the demo
#      bundle, and (aarch64 only by default) bench/arm_models.py (float vs int8 ratio, written to
#      bench/results/arm_emulated.json)
#
# Steps 1-3 are cached under $ARM_CACHE (default .cache/arm for aarch64, .cache/armhf for armv7l)
# and keyed by what they were built from; a second run only runs step 4. Environment: ARM_CACHE,
# PYTHON (host python3 for pip), ARM_PYTEST_ARGS (extra pytest arguments), ARM_BENCH_CPUS,
# ARM_BENCH_RUNS (default 15), HOST_PY (a host python with the device extras, for the clip
# cross-check).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
PYTHON=${PYTHON:-python3}
arch=${1:-aarch64}
# Per architecture: Debian's name, the qemu binary, the default core, the wheel requirements,
# extra sysroot roots, packages installed without their dependencies (provided by the sysroot),
# the cache folder, the cores the float-vs-int8 bench runs on, the interpreter package expected.
case $arch in
  aarch64)
    deb_arch=arm64; qemu=qemu-aarch64; cpu_default=cortex-a53; target=arm-check
    reqs=deploy/arm-requirements.txt; extra_roots=(); nodeps=()
    cache_default=.cache/arm; bench_default="cortex-a53 cortex-a55"; backend=ai_edge_litert ;;
  armv7l)
    # Cortex-A7 (ARMv7-A, NEON-VFPv4): the core of entry 32-bit boxes and sticks; 32-bit
    # userlands on A53/A55 SoCs run the same AArch32 code. PyPI has no armv7 wheels of numpy,
    # PyNaCl or cffi: they are Debian's python3-numpy, python3-nacl and python3-cffi in the
    # sysroot, as on a box; tflite-runtime's only dependency is numpy, so it is installed --no-deps.
    deb_arch=armhf; qemu=qemu-arm; cpu_default=cortex-a7; target=armhf-check
    reqs=deploy/armhf-requirements.txt; extra_roots=(python3-numpy python3-nacl python3-cffi)
    nodeps=(tflite-runtime)
    cache_default=.cache/armhf; bench_default=""; backend=tflite_runtime ;;
  *) echo "usage: deploy/arm_check.sh [aarch64|armv7l]" >&2; exit 2 ;;
esac
constraints=deploy/device-constraints.txt
mkdir -p "${ARM_CACHE:-$cache_default}"
cache=$(cd "${ARM_CACHE:-$cache_default}" && pwd)
sysroot=$cache/sysroot
site=$cache/site
t_start=$(date +%s)
declare -a timings=()
step() {  # step NAME COMMAND...: run, time, remember
  local name=$1; shift
  local t0; t0=$(date +%s)
  echo "== $name"
  "$@"
  timings+=("$(printf '%-22s %4ss' "$name" $(( $(date +%s) - t0 )))")
}

# ---------------------------------------------------------------- 3. site-packages
# pip does not widen a --platform tag to older glibc levels, so every manylinux level the
# sysroot's glibc (2.36) accepts is listed.
platforms=(--platform "manylinux2014_$arch")
for v in $(seq 17 36); do platforms+=(--platform "manylinux_2_${v}_$arch"); done
build_site() {
  local key
  key=$( (cat "$reqs" "$constraints"; echo "${platforms[*]} nodeps: ${nodeps[*]}") | sha256sum | cut -c1-16)
  if [[ -f $site/.tvrec-site && $(cat "$site/.tvrec-site") == "$key" ]]; then
    echo "site-packages: cached at $site"
    return
  fi
  if [[ ! -x $cache/hostpy/bin/python ]]; then
    "$PYTHON" -m venv "$cache/hostpy"
  fi
  rm -rf "$site.tmp"
  local pip=("$cache/hostpy/bin/python" -m pip install --quiet --disable-pip-version-check
             --target "$site.tmp" "${platforms[@]}" --python-version 3.11 --implementation cp
             --abi cp311 --only-binary=:all: -c "$constraints")
  "${pip[@]}" -r "$reqs" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  if (( ${#nodeps[@]} )); then
    "${pip[@]}" --no-deps "${nodeps[@]}" 2>&1 \
      | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  fi
  echo "$key" >"$site.tmp/.tvrec-site"
  rm -rf "$site"
  mv "$site.tmp" "$site"
  echo "site-packages: $(du -sh "$site" | cut -f1) at $site"
}

# ---------------------------------------------------------------- the emulated interpreter
# Without binfmt_misc (containers, CI) the kernel cannot exec an ARM ELF, so tests that start
# `sys.executable` in a subprocess would fail. A host shell wrapper re-enters qemu, and a
# sitecustomize (only on this run's PYTHONPATH, not in the sysroot) makes it sys.executable.
wrappers() {
  mkdir -p "$cache/bin" "$cache/shim"
  local version; version=$($qemu --version | head -n1 | awk '{print $3}')
  cat >"$cache/bin/python3" <<WRAP
#!/bin/sh
# generated by deploy/arm_check.sh: CPython 3.11 for $arch under qemu-user $version
cpu=\${TVREC_ARM_CPU:-$cpu_default}
export TVREC_EMULATOR="$qemu $version -cpu \$cpu"
exec $qemu -cpu "\$cpu" -L "$sysroot" "$sysroot/usr/bin/python3.11" "\$@"
WRAP
  chmod +x "$cache/bin/python3"
  # Emulation runs a test 20-50x slower than the host: hypothesis keeps its examples but drops its
  # wall-clock checks (per-example deadline, "input generation is slow").
  cat >"$cache/shim/tvrec_emulated.py" <<'PLUGIN'
"""pytest plugin for arm-check / armhf-check only: hypothesis without wall-clock health checks."""
from hypothesis import HealthCheck, settings

settings.register_profile("emulated", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("emulated")
PLUGIN
  cat >"$cache/shim/sitecustomize.py" <<'SHIM'
import os
import sys

# arm-check / armhf-check only: child interpreters are started through the qemu wrapper (see arm_check.sh).
if os.environ.get("TVREC_ARM_PYTHON"):
    sys.executable = os.environ["TVREC_ARM_PYTHON"]
SHIM
}
export TVREC_ARM_PYTHON=$cache/bin/python3 TVREC_ARM_ARCH=$arch TVREC_ARM_BACKEND=$backend
export PYTHONPATH=$cache/shim:$repo:$site
export QT_QPA_PLATFORM=offscreen
arm() { "$cache/bin/python3" "$@"; }

# ---------------------------------------------------------------- 4. checks under emulation
check_machine() {
  arm - <<'PY'
import platform, sys
# the stdlib C extensions the device code and its wheels load, from the sysroot's libraries
import bz2, ctypes, hashlib, json, lzma, sqlite3, ssl, uuid, zlib, xml.parsers.expat  # noqa
import os
import numpy, sqlite_utils
from device.runtime import backend_name
machine, want = platform.machine(), os.environ["TVREC_ARM_ARCH"]
backend, want_backend = backend_name(), os.environ["TVREC_ARM_BACKEND"]
print(f"platform.machine() = {machine}; Python {platform.python_version()} at {sys.executable}")
print(f"numpy {numpy.__version__} ({os.path.dirname(numpy.__file__)}), SQLite "
      f"{sqlite3.sqlite_version}, interpreter {backend}")
if machine != want:
    sys.exit(f"expected {want}, got {machine}")
if backend != want_backend:
    sys.exit(f"expected the {want_backend} interpreter on {want}, got {backend}")
import nacl.signing  # noqa: F401  -- bundle signatures (tvrec-device install)
# The box's pins (markers evaluated here, natively on this architecture) hold for every pinned
# distribution this interpreter sees: the wheels and the sysroot's Debian packages alike.
import importlib.metadata as md
from packaging.requirements import Requirement
seen, wrong = [], []
for line in open("deploy/device-constraints.txt", encoding="utf-8"):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate():
        continue
    try:
        version = md.version(req.name)
    except md.PackageNotFoundError:
        continue
    seen.append(f"{req.name} {version}")
    if not req.specifier.contains(version):
        wrong.append(f"{req.name} {version} (pinned {req.specifier})")
print(f"pins: {len(seen)} pinned distributions present, {len(wrong)} off their pin")
if wrong:
    sys.exit(f"not at the box's pins (deploy/device-constraints.txt): {', '.join(wrong)}")
PY
}

# Device tests: everything that imports only device/ (TensorFlow-backed ones skip by themselves;
# test_features.py skips as a whole: its reference, librosa, is a dev extra with numba).
# Left out, on purpose: tests/test_media.py and the two engine tests that decode real clips --
# device/media.py gives a decode 10 s of wall time, a box-speed contract that emulation (~20x
# slower) cannot meet. deploy/arm_smoke.py covers them: the device-import rule, and one real clip
# through PyAV + log-mel + the int8 model with the budget lifted, compared with the host.
ARM_TESTS=(tests/test_history.py tests/test_cf.py tests/test_bundle.py tests/test_bundle_sign.py tests/test_runtime.py
           tests/test_engine.py tests/test_features.py tests/test_service.py)
# test_cli_synth_install_rollback starts seven interpreters (~15 s each emulated) for what
# test_install_store_layout_idempotence_and_rollback checks in-process.
ARM_DESELECT=(--deselect tests/test_engine.py::test_local_recordings_join_the_content_rows
              --deselect tests/test_engine.py::test_isolated_embedding_matches_in_process_and_reports_bad_files
              --deselect tests/test_bundle.py::test_cli_synth_install_rollback
              --deselect tests/test_bundle_sign.py::test_cli_keygen_sign_verify_install
              --deselect tests/test_engine.py::test_device_imports_no_fleet_code_and_opens_no_socket)
if [[ $arch == armv7l ]]; then
  # tflite-runtime's armv7l build puts the process in flush-to-zero mode once it is loaded (probably
  # built with fast-math; measured: a subnormal survives x * 1.0 before the import, not after);
  # hypothesis then refuses to draw floats ("can't represent subnormal
  # floats"). The engine's invariants are checked on aarch64 and the host.
  ARM_DESELECT+=(--deselect tests/test_engine.py::test_screen_invariants_on_random_histories)
fi
device_tests() {
  mkdir -p "$cache/logs"
  local rc=0
  arm -m pytest -p no:cacheprovider -p tvrec_emulated -q -ra --durations=5 "${ARM_TESTS[@]}" "${ARM_DESELECT[@]}" \
    ${ARM_PYTEST_ARGS:-} >"$cache/logs/pytest.log" 2>&1 || rc=$?
  grep -E "^(SKIPPED|FAILED|ERROR)|passed|failed|[0-9.]+s (call|setup)" "$cache/logs/pytest.log" || true
  [[ $rc == 0 ]] || { echo "device tests failed under $arch (log: $cache/logs/pytest.log)"; tail -n 40 "$cache/logs/pytest.log"; return 1; }
}

CLIP=${ARM_CLIP:-../shared/data/media/video/archery.mp4}
smoke() {
  local args=(--clip "$CLIP" --out "$cache/clip_$arch.npz" --min-cosine 0.999)
  # The same clip embedded natively on the host, when a host Python with the device extras is
  # around (HOST_PY; `make arm-check` passes .venv/bin/python if it exists).
  if [[ -f $CLIP && -n ${HOST_PY:-} && -x ${HOST_PY:-} ]] &&
     env -u PYTHONPATH "$HOST_PY" deploy/arm_smoke.py --clip "$CLIP" --out "$cache/clip_host.npz" \
       >/dev/null 2>&1; then
    args+=(--compare "$cache/clip_host.npz")
    # armv7l runs tflite-runtime, the host LiteRT: the host re-embeds its own frames and log-mel
    # with tflite-runtime too (TFLITE_PY, default .venv-tflite's python, which `make test`
    # creates), so the check compares one interpreter package across the two architectures.
    if [[ $backend != ai_edge_litert ]]; then
      local tpy=${TFLITE_PY:-$repo/.venv-tflite/bin/python}
      env -u PYTHONPATH "$tpy" deploy/arm_smoke.py --reembed "$cache/clip_host.npz" >/dev/null 2>&1 ||
        { echo "no host $backend at $tpy (TFLITE_PY; make test creates .venv-tflite)"; return 1; }
    fi
  else
    echo "(no host Python with the device extras: HOST_PY unset or unusable; no cross-check)"
  fi
  arm deploy/arm_smoke.py "${args[@]}" 2>&1 | grep -v "^INFO: Created"
  return "${PIPESTATUS[0]}"
}

# The box's own command (the device wheel's console script is device.service:main).
recommend() {
  local db; db=$(mktemp -d)/x.db
  arm -m device.service recommend --bundle demo/bundle --db "$db" --profile demo 2>&1 \
    | grep -v "^INFO: Created"
  rm -rf "$(dirname "$db")"
}

# The entry box's core (Cortex-A53, ARMv8.0: NEON, no dot product) and the mid box's
# (Cortex-A55, ARMv8.2 with SDOT/UDOT): XNNPACK picks different int8 kernels for the two.
# QEMU has no A73 model; the high box's A73 is ARMv8.0 like the A53, so it runs the A53's kernels.
# armv7l skips it by default (ARM_BENCH_CPUS=cortex-a7 runs it): CI stays lean.
BENCH_CPUS=${ARM_BENCH_CPUS-$bench_default}
bench() {
  rm -f bench/results/arm_emulated.json  # one run's figures, never a mix of runs
  for cpu in $BENCH_CPUS; do
    TVREC_ARM_CPU=$cpu arm bench/arm_models.py --runs "${ARM_BENCH_RUNS:-15}" \
      --json bench/results/arm_emulated.json 2>&1 | grep -v "^INFO: Created"
  done
}

step "qemu" deploy/install_qemu.sh
step "sysroot" deploy/build_sysroot.sh "$cache" "$deb_arch" "${extra_roots[@]}"
step "site-packages" build_site
wrappers
step "platform" check_machine
step "device tests" device_tests
step "imports + media" smoke
step "tvrec-device recommend" recommend
[[ -z $BENCH_CPUS ]] || step "float vs int8 bench" bench
echo "== $target timings ($arch)"
printf '%s\n' "${timings[@]}"
printf '%-22s %4ss\n' "total" $(( $(date +%s) - t_start ))
