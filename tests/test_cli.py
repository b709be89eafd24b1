"""The `tvrec` command line: lazy imports, missing extras named, the demo runs end to end."""

from __future__ import annotations

import subprocess
import sys

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args, **kw):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, **kw)


def test_help_imports_nothing_heavy():
    code = (
        "import sys; from tvrec.cli import build_parser; build_parser().format_help(); "
        "heavy = [m for m in ('numpy', 'scipy', 'tensorflow', 'PySide6', 'av') if m in sys.modules]; "
        "print(heavy)"
    )
    proc = _run("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_missing_extra_is_named():
    # Block scipy (the `train` extra) and run a command that needs it.
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'scipy' or name.startswith('scipy.'):\n"
        "            raise ModuleNotFoundError(f\"No module named '{name}'\", name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from tvrec.cli import main\n"
        "sys.exit(main(['eval', 'cf', '--ratings', sys.argv[1]]))\n"
    )
    proc = _run("-c", code, str(ROOT / "pyproject.toml"))
    assert proc.returncode == 3
    assert "'train' extra" in proc.stderr and "pip install 'tvrec[train]'" in proc.stderr


def test_demo_prints_rows_with_reasons(ml100k, tmp_path):
    proc = _run("-m", "tvrec.cli", "demo", "--movielens", str(ml100k), "--db", str(tmp_path / "h.db"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for heading in ("Continue watching", "Top picks for you", "Because you watched", "Popular now"):
        assert heading in out
    assert "Empire Strikes Back" in out.split("Top picks")[0]  # 40% in: resumable
    assert "<- Star Wars (1977)" in out  # a reason names a history item
    assert (tmp_path / "h.db").stat().st_size > 0
