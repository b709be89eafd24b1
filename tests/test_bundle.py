"""Device bundles: round trip, tamper and half-write refusal, atomic install and rollback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from device.bundle import (
    install_bundle,
    open_bundle,
    pack_bundle,
    rollback,
    current_bundle,
    synth_bundle,
    unpack_bundle,
    write_bundle,
)
from device.errors import BundleError
from device.features import FeatureConfig

ROOT = Path(__file__).resolve().parents[1]


def small_bundle(path: Path, n: int = 6, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    nb = np.array([[(i + 1) % n, (i + 2) % n] for i in range(n)], dtype=np.int32)
    emb = rng.normal(size=(n, 4)).astype(np.float32)
    q = np.clip(np.round(emb / 0.02), -127, 127).astype(np.int8)
    return write_bundle(
        path,
        items={"ids": [f"i{k}" for k in range(n)], "titles": [f"Show {k}" for k in range(n)],
               "genres": [["news"]] * n, "durations": [600.0] * n, "release": list(range(n)),
               "cold": [False] * (n - 1) + [True]},
        neighbours=nb, weights=rng.random((n, 2)).astype(np.float32),
        popularity=np.arange(n, dtype=np.float32), item_embeddings_int8=q, embedding_scale=0.02,
        model_bytes=None, model_io=None, feature_config=FeatureConfig(),
    )


def test_round_trip(tmp_path):
    b = open_bundle(small_bundle(tmp_path / "b"))
    assert b.n_items == 6 and b.k == 2 and b.dim == 4 and b.verified == "full"
    assert list(b.items.ids) == [f"i{k}" for k in range(6)]
    assert b.items.titles[2] == "Show 2" and bool(b.items.cold[5])
    assert isinstance(b.table.neighbours, np.memmap)
    np.testing.assert_array_equal(b.table.neighbours[0], [1, 2])
    assert b.embedding(0).dtype == np.float32
    assert b.feature_config == FeatureConfig()


@pytest.mark.parametrize("name", ["manifest.json", "neighbours.npy", "weights.npy",
                                  "item_embeddings.npy", "item_ids.npy", "item_meta.json"])
def test_tampering_with_any_file_is_refused(tmp_path, name):
    path = small_bundle(tmp_path / "b")
    target = path / name
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(BundleError) as err:
        open_bundle(path)
    assert str(path) in str(err.value)


def test_truncated_or_missing_file_is_refused(tmp_path):
    path = small_bundle(tmp_path / "b")
    w = path / "weights.npy"
    w.write_bytes(w.read_bytes()[:40])
    with pytest.raises(BundleError, match="weights.npy"):
        open_bundle(path, verify="sizes")
    (path / "popularity.npy").unlink()
    with pytest.raises(BundleError, match="popularity.npy"):
        open_bundle(path)


def test_bad_manifest_and_schema(tmp_path):
    path = small_bundle(tmp_path / "b")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="schema"):
        open_bundle(path)
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="manifest.json"):
        open_bundle(path)
    with pytest.raises(BundleError):
        open_bundle(tmp_path / "nowhere")


def test_half_written_bundle_never_appears_under_its_name(tmp_path, monkeypatch):
    """A crash (power cut) at the last step of writing leaves nothing under the final name."""
    import device.bundle as bundle_mod

    def crash(src, dst):
        raise OSError("simulated power cut")

    monkeypatch.setattr(bundle_mod.os, "rename", crash)
    with pytest.raises(BundleError, match="power cut"):
        small_bundle(tmp_path / "b")
    monkeypatch.undo()
    assert not (tmp_path / "b").exists()
    assert list(tmp_path.iterdir()) == [], "the staging folder is removed"


def test_install_is_atomic_and_a_bad_bundle_keeps_the_old_one(tmp_path):
    root = tmp_path / "bundles"
    first = install_bundle(small_bundle(tmp_path / "v1", seed=1), root)
    assert current_bundle(root).path == first.resolve()
    tampered = small_bundle(tmp_path / "v2", seed=2)
    (tampered / "weights.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(BundleError):
        install_bundle(tampered, root)
    assert current_bundle(root).path == first.resolve()  # still serving, still verifies
    second = install_bundle(small_bundle(tmp_path / "v3", seed=3), root)
    assert current_bundle(root).path == second.resolve()
    assert rollback(root).resolve() == first.resolve()
    assert current_bundle(root).path == first.resolve()


def test_archive_round_trip_and_truncated_archive(tmp_path):
    path = small_bundle(tmp_path / "b")
    archive = pack_bundle(path, tmp_path / "b.tar.gz")
    out = unpack_bundle(archive, tmp_path / "unpacked")
    assert open_bundle(out).n_items == 6
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(BundleError):
        install_bundle(cut, tmp_path / "root")


def test_synthetic_10k_bundle_is_memory_mapped(tmp_path, demo_bundle):
    path = synth_bundle(tmp_path / "s", 10_000, template=demo_bundle)
    b = open_bundle(path, verify="sizes")
    assert b.n_items == 10_000 and b.model_path is not None
    assert isinstance(b.table.neighbours, np.memmap) and isinstance(b.embeddings, np.memmap)
    assert (np.asarray(b.table.neighbours) < 10_000).all()


def test_cli_verify_exit_codes(tmp_path, demo_bundle):
    ok = subprocess.run([sys.executable, "-m", "tvrec.cli", "bundle", "verify", str(demo_bundle)],
                        capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0 and "verified full" in ok.stdout
    bad = tmp_path / "bad"
    shutil.copytree(demo_bundle, bad)
    data = bytearray((bad / "content_model.tflite").read_bytes())
    data[100] ^= 1
    (bad / "content_model.tflite").write_bytes(bytes(data))
    proc = subprocess.run([sys.executable, "-m", "tvrec.cli", "bundle", "verify", str(bad)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "content_model.tflite" in lines[0]
