"""Opening a device bundle, verified: the manifest's keys and types, every listed file's size
and sha256, the ``.npy`` headers against the manifest. The three levels (``"full"``,
``"sizes"``, ``"none"``) are described in :mod:`device.bundle_format`."""

from __future__ import annotations

import json
import mmap
import os
from pathlib import Path
from typing import Any

import numpy as np

from device.bundle_format import (
    _NAME_RE, _PER_ROW, _SHA256_RE, _TFLITE_MAGIC, EMBEDDING_SCALES, EMBEDDINGS, FORMAT,
    ITEM_COLD, ITEM_DURATIONS, ITEM_GENRES, ITEM_IDS, ITEM_RELEASE, ITEM_TITLES, MANIFEST,
    MODEL, NEIGHBOURS, OPTIONAL_COLUMNS, POPULARITY, SUPPORTED_SCHEMA_VERSIONS, WEIGHTS, Bundle,
    BundleItems,
    PathLike, VerifyLevel, _check_io, _parse_iso, _reason, _sha256_file)
from device.cf import NeighbourTable, refresh_file
from device.errors import BundleError
from device.features import FeatureConfig


def _level(verify: VerifyLevel) -> str:
    if verify is True or verify == "full":
        return "full"
    if verify == "sizes":
        return "sizes"
    if verify is False or verify == "none":
        return "none"
    raise ValueError(f"verify must be True, False, 'full', 'sizes' or 'none', got {verify!r}")


def _read_manifest(path: Path, label: str) -> dict[str, Any]:
    mpath = path / MANIFEST
    try:
        raw = mpath.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{label}: {MANIFEST} is missing (not a bundle, or an unfinished "
                          "write)") from None
    except OSError as err:
        raise BundleError(f"{label}: {MANIFEST} cannot be read ({_reason(err)})") from None
    try:
        manifest = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise BundleError(f"{label}: {MANIFEST} is not valid JSON ({_reason(err)})") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{label}: {MANIFEST} is not a JSON object")
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{label}: {MANIFEST} format is {manifest.get('format')!r}, "
                          f"expected {FORMAT!r}")
    version = manifest.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS or isinstance(version, bool):
        raise BundleError(f"{label}: {MANIFEST} schema_version {version!r} is not supported "
                          f"(this tvrec reads {list(SUPPORTED_SCHEMA_VERSIONS)})")
    return manifest


def _check_manifest(manifest: dict[str, Any], label: str) -> dict[str, dict[str, Any]]:
    """Types of every manifest key; returns the validated ``files`` map."""
    def bad(why: str) -> BundleError:
        return BundleError(f"{label}: {MANIFEST} {why}")

    for key in ("n_items", "k", "embedding_dim"):
        v = manifest.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise bad(f"{key} must be a positive int, got {v!r}")
    created = manifest.get("created")
    try:
        _parse_iso(created)
    except (TypeError, ValueError, AttributeError):
        raise bad(f"created {created!r} is not an ISO 8601 time with a zone") from None
    if not isinstance(manifest.get("tvrec_version"), str):
        raise bad("tvrec_version must be a string")
    scale = manifest.get("embedding_scale")
    if scale != _PER_ROW and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                              or not np.isfinite(scale) or scale < 0):
        raise bad(f"embedding_scale must be a number >= 0 or {_PER_ROW!r}, got {scale!r}")
    if not isinstance(manifest.get("feature_config"), dict):
        raise bad("feature_config must be an object")
    model = manifest.get("model", "missing")
    if model is not None:
        if not isinstance(model, dict) or model.get("file") != MODEL:
            raise bad(f"model must be null or {{'file': {MODEL!r}, 'io': ...}}")
        why = _check_io(model.get("io"))
        if why:
            raise bad(f"model.io {why}")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise bad("files must be an object")
    for name, entry in files.items():
        if not _NAME_RE.match(name) or name == MANIFEST:
            raise bad(f"files lists {name!r}, not a plain file name of the bundle")
        if (not isinstance(entry, dict) or not isinstance(entry.get("bytes"), int)
                or isinstance(entry.get("bytes"), bool) or entry["bytes"] < 0
                or not isinstance(entry.get("sha256"), str)
                or not _SHA256_RE.match(entry["sha256"])):
            raise bad(f"files entry of {name} needs 'bytes' (int) and 'sha256' (64 hex digits)")
    genres = manifest.get("genres")
    if not isinstance(genres, list) or not all(isinstance(g, str) for g in genres):
        raise bad("genres must be a list of genre names")
    if not isinstance(manifest.get("cold_start", {}), dict):
        raise bad("cold_start must be an object")
    required = [ITEM_IDS, ITEM_TITLES, ITEM_GENRES, ITEM_DURATIONS, ITEM_RELEASE, ITEM_COLD, NEIGHBOURS,
                WEIGHTS, POPULARITY, EMBEDDINGS]
    if scale == _PER_ROW:
        required.append(EMBEDDING_SCALES)
    if model is not None:
        required.append(MODEL)
    for name in required:
        if name not in files:
            raise bad(f"files does not list {name}")
    return files


def _check_files(path: Path, files: dict[str, dict[str, Any]], level: str, label: str) -> None:
    if level == "none":
        return
    for name, entry in files.items():
        try:
            st = os.stat(path / name)
        except FileNotFoundError:
            raise BundleError(f"{label}: {name} is missing") from None
        except OSError as err:
            raise BundleError(f"{label}: {name} cannot be read ({_reason(err)})") from None
        if not os.path.isfile(path / name):
            raise BundleError(f"{label}: {name} is not a regular file")
        if st.st_size != entry["bytes"]:
            raise BundleError(f"{label}: {name} has {st.st_size} bytes, the manifest says "
                              f"{entry['bytes']} (truncated or replaced)")
    if level == "full":
        for name, entry in files.items():
            try:
                digest = _sha256_file(path / name)
            except OSError as err:
                raise BundleError(f"{label}: {name} cannot be read ({_reason(err)})") from None
            if digest != entry["sha256"]:
                raise BundleError(f"{label}: {name} sha256 mismatch (modified or damaged)")


def _advise_random(arr: np.ndarray) -> None:
    """Tell the kernel that rows are read at random. Scoring touches a few hundred scattered
    rows; with the default read-ahead each page fault pulls in ~128 KB around it, which at
    100k items made the engine's resident set grow by ~50 MB of pages it never reads."""
    mm = getattr(arr, "_mmap", None)
    if mm is not None and hasattr(mm, "madvise") and hasattr(mmap, "MADV_RANDOM"):
        try:
            mm.madvise(mmap.MADV_RANDOM)
        except OSError:
            pass  # advice only


def _load_npy(path: Path, name: str, label: str, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
    try:
        arr = np.load(path / name, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise BundleError(f"{label}: {name} is missing") from None
    except (OSError, ValueError, EOFError) as err:
        raise BundleError(f"{label}: {name} is not a valid .npy array ({_reason(err)})") from None
    ok_dtype = arr.dtype.kind == "U" if dtype == "U" else arr.dtype == np.dtype(dtype)
    _advise_random(arr)
    refresh_file(getattr(arr, "filename", None))  # pread state of an older file by this name
    shape_ok = len(arr.shape) == len(shape) and all(
        want in (-1, got) for want, got in zip(shape, arr.shape))
    if not ok_dtype or not shape_ok:
        want = "str" if dtype == "U" else np.dtype(dtype).name
        raise BundleError(f"{label}: {name} is {arr.dtype} {list(arr.shape)}, expected "
                          f"{want} {list(shape)} (from the manifest)")
    return arr


def _open(path: Path, level: str, label: str) -> Bundle:
    if not path.is_dir():
        raise BundleError(f"{label}: not a bundle folder (missing or not a directory)")
    manifest = _read_manifest(path, label)
    files = _check_manifest(manifest, label)
    _check_files(path, files, level, label)

    n, k, d = manifest["n_items"], manifest["k"], manifest["embedding_dim"]
    try:
        cfg = FeatureConfig.from_dict(manifest["feature_config"])
    except (TypeError, ValueError) as err:
        raise BundleError(f"{label}: {MANIFEST} feature_config is invalid "
                          f"({_reason(err)})") from None
    fp = manifest.get("feature_fingerprint")
    if fp is not None and fp != cfg.fingerprint():
        raise BundleError(f"{label}: {MANIFEST} feature_fingerprint does not match "
                          "feature_config")

    ids = _load_npy(path, ITEM_IDS, label, "U", (n,))
    titles = _load_npy(path, ITEM_TITLES, label, "U", (n,))
    genre_codes = _load_npy(path, ITEM_GENRES, label, np.int16, (n, -1))
    vocab = manifest["genres"]
    if genre_codes.size and (int(genre_codes.max()) >= len(vocab) or int(genre_codes.min()) < -1):
        raise BundleError(f"{label}: {ITEM_GENRES} has codes outside the {len(vocab)} genres of "
                          f"{MANIFEST}")
    durations = _load_npy(path, ITEM_DURATIONS, label, np.float32, (n,))
    release = _load_npy(path, ITEM_RELEASE, label, np.int64, (n,))
    cold = _load_npy(path, ITEM_COLD, label, np.bool_, (n,))
    neighbours = _load_npy(path, NEIGHBOURS, label, np.int32, (n, k))
    weights = _load_npy(path, WEIGHTS, label, np.float32, (n, k))
    popularity = _load_npy(path, POPULARITY, label, np.float32, (n,))
    embeddings = _load_npy(path, EMBEDDINGS, label, np.int8, (n, d))
    if manifest["embedding_scale"] == _PER_ROW:
        scale: Any = _load_npy(path, EMBEDDING_SCALES, label, np.float32, (n,))
    else:
        scale = float(manifest["embedding_scale"])

    model_path = None
    if manifest["model"] is not None:
        model_path = path / MODEL
        try:
            with open(model_path, "rb") as fh:
                head = fh.read(8)
        except OSError as err:
            raise BundleError(f"{label}: {MODEL} cannot be read ({_reason(err)})") from None
        if head[4:8] != _TFLITE_MAGIC:
            raise BundleError(f"{label}: {MODEL} is not a TFLite flatbuffer")

    optional = {name: _load_npy(path, fname, label, dtype, (n,))
                for name, (fname, dtype, _none) in OPTIONAL_COLUMNS.items()
                if fname in manifest["files"]}
    items = BundleItems(path, ids, durations, release, cold, label, titles, genre_codes, vocab,
                        optional)
    table = NeighbourTable(item_ids=ids, neighbours=neighbours, weights=weights,
                           popularity=popularity)
    return Bundle(path=path, manifest=manifest, feature_config=cfg, items=items, table=table,
                  embeddings=embeddings, embedding_scale=scale, model_path=model_path,
                  verified=level)


def open_bundle(path: PathLike, *, verify: VerifyLevel = True) -> Bundle:
    """Open a bundle folder, verified.

    Parameters
    ----------
    path : path
        The bundle folder (or a ``current`` link to one).
    verify : True/"full", "sizes" or False/"none"
        How much to check; see the module docstring. Default full (sha256 of every file).

    Returns
    -------
    Bundle
        With the arrays memory-mapped (nothing large is read).

    Raises
    ------
    BundleError
        ``"<path>: <reason naming the file>"`` for the first problem found.
    """
    level = _level(verify)
    p = Path(path)
    return _open(p.resolve() if p.exists() else p, level, str(path))
