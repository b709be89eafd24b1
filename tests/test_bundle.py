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
                                  "item_embeddings.npy", "item_ids.npy", "item_titles.npy",
                                  "item_genres.npy"])
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
    import device.bundle_format as bundle_mod

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
    first = install_bundle(small_bundle(tmp_path / "v1", seed=1), root, allow_unsigned=True)
    assert current_bundle(root).path == first.resolve()
    tampered = small_bundle(tmp_path / "v2", seed=2)
    (tampered / "weights.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(BundleError):
        install_bundle(tampered, root, allow_unsigned=True)
    assert current_bundle(root).path == first.resolve()  # still serving, still verifies
    second = install_bundle(small_bundle(tmp_path / "v3", seed=3), root, allow_unsigned=True)
    assert current_bundle(root).path == second.resolve()
    assert rollback(root).resolve() == first.resolve()
    assert current_bundle(root).path == first.resolve()


def test_archive_round_trip_and_truncated_archive(tmp_path):
    path = small_bundle(tmp_path / "b")
    archive = pack_bundle(path, tmp_path / "b.tar.gz")
    assert archive.stat().st_mode & 0o777 == 0o644  # readable by the box's service user
    out = unpack_bundle(archive, tmp_path / "unpacked")
    assert open_bundle(out).n_items == 6
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(BundleError):
        install_bundle(cut, tmp_path / "root", allow_unsigned=True)


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


# --------------------------------------------------------------------------- every file, by name


@pytest.fixture(scope="module")
def full_bundle(tmp_path_factory, demo_bundle) -> Path:
    """A small bundle with every kind of file: model, per-row scales, item metadata."""
    return synth_bundle(tmp_path_factory.mktemp("full") / "b", 300, k=16, dim=8,
                        template=demo_bundle)


ALL_FILES = ["item_ids.npy", "item_titles.npy", "item_genres.npy", "item_durations.npy",
             "item_release.npy",
             "item_cold.npy", "neighbours.npy", "weights.npy", "popularity.npy",
             "item_embeddings.npy", "item_embedding_scales.npy", "content_model.tflite"]


def test_full_bundle_lists_exactly_the_layout(full_bundle):
    manifest = json.loads((full_bundle / "manifest.json").read_text())
    assert sorted(manifest["files"]) == sorted(ALL_FILES)
    assert sorted(p.name for p in full_bundle.iterdir()) == sorted(ALL_FILES + ["manifest.json"])
    for key in ("schema_version", "created", "tvrec_version", "feature_config", "n_items", "k",
                "embedding_dim", "model", "files"):
        assert key in manifest
    assert manifest["created"].endswith("Z") and manifest["model"]["io"]["inputs"]


@pytest.mark.parametrize("name", ALL_FILES)
def test_one_flipped_byte_is_refused_naming_the_file(tmp_path, full_bundle, name):
    path = tmp_path / "b"
    shutil.copytree(full_bundle, path)
    data = bytearray((path / name).read_bytes())
    data[-1] ^= 0x01  # the last byte: array data, JSON text or flatbuffer
    (path / name).write_bytes(bytes(data))
    with pytest.raises(BundleError) as err:
        open_bundle(path)
    assert str(err.value).startswith(f"{path}: {name} sha256 mismatch"), err.value
    if name == "item_genres.npy":  # codes are range-checked: damage shows even without hashes
        with pytest.raises(BundleError, match=name):
            open_bundle(path, verify="sizes")
    else:
        open_bundle(path, verify="sizes")  # same size: only the hash can tell


@pytest.mark.parametrize("name", ALL_FILES)
def test_truncated_or_missing_file_is_named_at_every_level(tmp_path, full_bundle, name):
    path = tmp_path / "b"
    shutil.copytree(full_bundle, path)
    (path / name).write_bytes((path / name).read_bytes()[:-3])
    for level in ("full", "sizes"):
        with pytest.raises(BundleError, match=f"{name} has .* bytes, the manifest says"):
            open_bundle(path, verify=level)
    (path / name).unlink()
    with pytest.raises(BundleError, match=f"{name} is missing"):
        open_bundle(path)


def test_garbage_manifests(tmp_path, full_bundle):
    path = tmp_path / "b"
    shutil.copytree(full_bundle, path)
    good = (path / "manifest.json").read_text()
    (path / "manifest.json").write_text(good + "\ngarbage")
    with pytest.raises(BundleError, match="manifest.json is not valid JSON"):
        open_bundle(path)
    (path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(BundleError, match="not a JSON object"):
        open_bundle(path)
    m = json.loads(good)
    m["files"]["../outside"] = m["files"]["weights.npy"]
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="not a plain file name"):
        open_bundle(path)
    m = json.loads(good)
    del m["files"]["popularity.npy"]
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="files does not list popularity.npy"):
        open_bundle(path)
    m = json.loads(good)
    m["feature_config"]["n_mels"] = -1
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="feature_config is invalid"):
        open_bundle(path)
    m = json.loads(good)
    m["feature_config"]["n_mels"] = 64  # valid config, but not the one fingerprinted
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="feature_fingerprint"):
        open_bundle(path)
    (path / "manifest.json").unlink()
    with pytest.raises(BundleError, match="manifest.json is missing"):
        open_bundle(path)


def test_array_of_the_wrong_shape_is_refused_even_with_matching_hashes(tmp_path):
    """A producer bug (consistent hashes, inconsistent shapes) is caught by the shape check."""
    import hashlib

    path = small_bundle(tmp_path / "b")
    np.save(path / "neighbours.npy", np.zeros((6, 3), dtype=np.int32))
    m = json.loads((path / "manifest.json").read_text())
    data = (path / "neighbours.npy").read_bytes()
    m["files"]["neighbours.npy"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match=r"neighbours.npy is int32 \[6, 3\], expected int32 \[6, 2\]"):
        open_bundle(path)


def test_write_refuses_bad_inputs(tmp_path):
    base = dict(items={"ids": ["a", "b"], "durations": [60.0, 60.0]},
                neighbours=np.array([[1], [0]]), weights=np.ones((2, 1), np.float32),
                popularity=np.ones(2, np.float32), item_embeddings_int8=np.zeros((2, 3), np.int8),
                embedding_scale=0.1, model_bytes=None, model_io=None,
                feature_config=FeatureConfig())
    write_bundle(tmp_path / "ok", **base)
    cases = [
        ({"neighbours": np.array([[2], [0]])}, "outside"),
        ({"items": {"ids": ["a", "a"], "durations": [60.0, 60.0]}}, "duplicate item id 'a'"),
        ({"items": {"ids": ["a", "b"], "durations": [60.0, 0.0]}}, "duration"),
        ({"neighbours": np.array([[-1], [0]])}, "0 where neighbours is padding"),
        ({"weights": np.full((2, 1), np.nan, np.float32)}, "non-finite"),
        ({"item_embeddings_int8": np.zeros((2, 3), np.float32)}, "int8"),
        ({"model_bytes": b"not a model at all"}, "not a TFLite flatbuffer"),
        ({"extra": {"x": object()}}, "extra is not JSON-able"),
    ]
    for i, (change, match) in enumerate(cases):
        with pytest.raises(BundleError, match=match):
            write_bundle(tmp_path / f"bad{i}", **{**base, **change})
        assert not (tmp_path / f"bad{i}").exists()
    with pytest.raises(BundleError, match="already exists"):
        write_bundle(tmp_path / "ok", **base)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok"], "no temporary folders left"


def test_killed_writer_leaves_no_bundle_under_the_final_name(tmp_path):
    """A process killed in the middle of write_bundle (here: after its third file) leaves only
    a temporary folder without a manifest; the final name never exists and is writable later."""
    code = (
        "import os, sys\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from tests.test_bundle import small_bundle\n"
        "real, calls = os.fsync, [0]\n"
        "def fsync(fd):\n"
        "    calls[0] += 1\n"
        "    if calls[0] == 3:\n"
        "        os._exit(9)  # no cleanup, no exception handlers: like a power cut\n"
        "    real(fd)\n"
        "os.fsync = fsync\n"
        "small_bundle(__import__('pathlib').Path(sys.argv[1]))\n"
    )
    target = tmp_path / "b"
    proc = subprocess.run([sys.executable, "-c", code, str(target), str(ROOT)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    assert not target.exists()
    (leftover,) = list(tmp_path.iterdir())
    assert leftover.name.startswith(".b.tmp-")
    with pytest.raises(BundleError, match="manifest.json is missing"):
        open_bundle(leftover)
    assert open_bundle(small_bundle(target)).n_items == 6


# --------------------------------------------------------------------------- install store


def test_install_store_layout_idempotence_and_rollback(tmp_path):
    import os

    root = tmp_path / "root"
    with pytest.raises(BundleError, match="no bundle installed"):
        current_bundle(root)
    v1 = install_bundle(small_bundle(tmp_path / "v1", seed=1), root, allow_unsigned=True)
    with pytest.raises(BundleError, match="no previous bundle"):
        rollback(root)
    assert os.readlink(root / "current") == f"versions/{v1.name}"
    assert install_bundle(tmp_path / "v1", root, allow_unsigned=True) == v1  # same bundle again: nothing changes
    assert not (root / "previous").exists()

    v2 = install_bundle(pack_bundle(small_bundle(tmp_path / "v2", seed=2),
                                    tmp_path / "v2.tar"), root, allow_unsigned=True)
    v3 = install_bundle(small_bundle(tmp_path / "v3", seed=3), root, allow_unsigned=True)
    assert os.readlink(root / "current") == f"versions/{v3.name}"
    assert os.readlink(root / "previous") == f"versions/{v2.name}"
    assert sorted(p.name for p in (root / "versions").iterdir()) == sorted([v2.name, v3.name])

    # A tampered archive is refused; the links do not move and the current bundle still opens.
    bad = small_bundle(tmp_path / "v4", seed=4)
    (bad / "popularity.npy").write_bytes(b"\0" * (bad / "popularity.npy").stat().st_size)
    with pytest.raises(BundleError, match=f"{bad}: popularity.npy sha256 mismatch"):
        install_bundle(bad, root, allow_unsigned=True)
    assert os.readlink(root / "current") == f"versions/{v3.name}"
    assert os.readlink(root / "previous") == f"versions/{v2.name}"
    assert current_bundle(root).path == v3 and not any(
        p.name.startswith(".staging-") for p in root.iterdir())

    assert rollback(root) == v2 and current_bundle(root).path == v2
    assert rollback(root) == v3, "a second rollback rolls forward again"

    # A damaged previous version is not rolled back to.
    (v2 / "weights.npy").write_bytes(b"")
    with pytest.raises(BundleError, match="weights.npy"):
        rollback(root)
    assert current_bundle(root).path == v3


def test_unpack_refuses_links_and_paths(tmp_path):
    import io
    import tarfile

    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        info = tarfile.TarInfo("../escaped")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(BundleError, match="not a plain"):
        unpack_bundle(evil, tmp_path / "out")
    link = tmp_path / "link.tar"
    with tarfile.open(link, "w") as tar:
        info = tarfile.TarInfo("weights.npy")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(BundleError, match="not a regular file"):
        install_bundle(link, tmp_path / "root", allow_unsigned=True)
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "out").exists()
    assert not (tmp_path / "root" / "current").exists()


def test_cli_synth_install_rollback(tmp_path, demo_bundle):
    def tvrec(*args):
        return subprocess.run([sys.executable, "-m", "tvrec.cli", "bundle", *map(str, args)],
                              capture_output=True, text=True, cwd=ROOT)

    root = tmp_path / "root"
    for seed, name in ((0, "a"), (1, "b")):
        p = tvrec("synth", "--items", 500, "--out", tmp_path / name, "--seed", seed,
                  "--template", demo_bundle)
        assert p.returncode == 0, p.stderr
        assert tvrec("install", tmp_path / name, "--root", root, "--allow-unsigned").returncode == 0
    p = tvrec("rollback", "--root", root)
    assert p.returncode == 0 and "rolled back" in p.stdout
    assert open_bundle(root / "current").manifest["extra"]["synthetic"]["seed"] == 0
    p = tvrec("verify", tmp_path / "missing")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert "not a bundle folder" in p.stderr
    p = tvrec("rollback", "--root", tmp_path / "empty")
    assert p.returncode == 2 and "no previous bundle" in p.stderr
    p = tvrec("synth", "--items", 300, "--out", tmp_path / "tv", "--episodic-fraction", 0.5)
    assert p.returncode == 0, p.stderr
    tv = open_bundle(tmp_path / "tv")
    assert tv.manifest["schema_version"] == 3 and tv.items.series is not None
    p = tvrec("synth", "--items", 300, "--out", tmp_path / "bad", "--episodic-fraction", 1.5)
    assert p.returncode == 2 and "--episodic-fraction must be in [0, 1]" in p.stderr


def test_large_columns_read_by_pread_follow_a_bundle_rewritten_in_place(tmp_path):
    """Large columns are read with pread through cached descriptors and rows; reopening a
    bundle whose files were replaced at the same path reads the new files."""
    from device.cf import PREAD_MIN_BYTES, gather_rows

    path = tmp_path / "b"
    synth_bundle(path, 20_000, seed=0)
    old = open_bundle(path, verify="sizes")
    assert old.table.neighbours.nbytes > PREAD_MIN_BYTES
    rows = np.array([5, 7, 19_999])
    before = gather_rows(old.table.neighbours, rows), old.items.titles[5]
    del old
    shutil.rmtree(path)
    synth_bundle(path, 20_000, seed=1)
    new = open_bundle(path, verify="sizes")
    after = gather_rows(new.table.neighbours, rows), new.items.titles[5]
    assert np.array_equal(after[0], np.asarray(new.table.neighbours)[rows])
    assert after[1] == str(np.asarray(new.items._titles)[5])
    assert not np.array_equal(before[0], after[0])
