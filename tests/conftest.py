"""Shared fixtures: where the real data lives, and the repository root."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real MovieLens, video and audio); skip with a reason if absent."""
    if not SHARED.is_dir():
        pytest.skip(f"shared real data not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def ml100k(shared_data: Path) -> Path:
    path = shared_data / "ml-100k" / "u.data"
    if not path.is_file():
        pytest.skip(f"MovieLens 100K not found at {path}")
    return path


@pytest.fixture(scope="session")
def demo_bundle() -> Path:
    """The demo bundle shipped in the repository (what `make demo` runs on)."""
    path = ROOT / "demo" / "bundle"
    assert (path / "manifest.json").is_file(), f"the shipped demo bundle is missing at {path}"
    return path
