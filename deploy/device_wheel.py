"""Build the box's wheel, ``tvrec_device-<version>-py3-none-any.whl``: the ``device`` package only.

Run:  python deploy/device_wheel.py --out dist/device [--isolated]

Stages ``device/*.py``, ``deploy/device-wheel/pyproject.toml`` (version from
``device/_version.py``) and the box guide ``deploy/INSTALL.md`` (the wheel's long description) in a
temporary folder and runs
``pip wheel --no-deps`` on it -- without build isolation by default (the running interpreter
needs ``setuptools>=61`` and ``wheel``; no network), with it when ``--isolated`` is given.
Prints the wheel's path. The wheel is pure Python; its dependencies are the device runtime only
(numpy, sqlite-utils, a TFLite interpreter: ai-edge-litert, or tflite-runtime on armv7l;
``[media]`` adds PyAV); their pins are ``deploy/device-constraints.txt``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def version() -> str:
    text = (ROOT / "device" / "_version.py").read_text(encoding="utf-8")
    m = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    if not m:
        raise SystemExit("device/_version.py has no __version__")
    return m.group(1)


def build(out: Path, *, python: str = sys.executable, isolated: bool = False) -> Path:
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tvrec-device-wheel-") as tmp:
        stage = Path(tmp) / "src"
        (stage / "device").mkdir(parents=True)
        for src in sorted((ROOT / "device").glob("*.py")):
            shutil.copy2(src, stage / "device" / src.name)
        pyproject = (ROOT / "deploy" / "device-wheel" / "pyproject.toml").read_text(encoding="utf-8")
        (stage / "pyproject.toml").write_text(pyproject.replace("@VERSION@", version()),
                                             encoding="utf-8")
        shutil.copy2(ROOT / "deploy" / "INSTALL.md", stage / "README.md")
        wheels = Path(tmp) / "wheels"
        cmd = [python, "-m", "pip", "wheel", "--quiet", "--no-deps", "--disable-pip-version-check",
               "-w", str(wheels), str(stage)]
        if not isolated:
            cmd.insert(4, "--no-build-isolation")
        subprocess.run(cmd, check=True, cwd=tmp)
        (wheel,) = wheels.glob("tvrec_device-*.whl")
        dest = out / wheel.name
        shutil.copy2(wheel, dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the wheel")
    ap.add_argument("--isolated", action="store_true",
                    help="let pip fetch setuptools into an isolated build environment")
    args = ap.parse_args(argv)
    print(build(args.out, isolated=args.isolated))
    return 0


if __name__ == "__main__":
    sys.exit(main())
