"""Decoded features of a catalog's clips, cached on disk so training never decodes twice.

``load_or_build_features(catalog_dir, cfg)`` returns ``(item_ids, frames, logmel)`` for every
catalog item in manifest order, decoding through :func:`device.media.extract_features` (the one
preprocessing path the box also runs). The cache is one file per feature configuration::

    catalog_dir/features/<cfg.fingerprint()[:12]>.npz
        item_ids  str     [N]
        keys      str     [N]   "<media path>|<size>|<mtime_ns>" when the item was decoded
        frames    uint8   [N, F, S, S, 3]
        logmel    float32 [N, T, M]   raw log-mel (the model normalises per clip)
        flags     str     [N]   JSON list of device.media flags (no_audio, ...)
        fingerprint str         the full FeatureConfig fingerprint

An item is decoded again only when its media file's path, size or mtime changed (or it is new);
the others are copied from the old file. The file is replaced atomically (write to a temporary
name, ``os.replace``), so a crash or a concurrent reader never sees half a cache.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from device.errors import DataFormatError, MediaError
from device.features import FeatureConfig

#: Below this many items to decode, a worker pool costs more to start than it saves.
MIN_ITEMS_FOR_POOL = 16


def cache_path(catalog_dir: str | os.PathLike, cfg: FeatureConfig) -> Path:
    """Where the features of ``catalog_dir`` under ``cfg`` are stored."""
    return Path(catalog_dir) / "features" / f"{cfg.fingerprint()[:12]}.npz"


def media_key(path: str | os.PathLike) -> str:
    """Identity of a media file's content for the cache: ``path|size|mtime_ns``."""
    st = os.stat(path)
    return f"{os.fspath(path)}|{st.st_size}|{st.st_mtime_ns}"


def catalog_media(catalog_dir: str | os.PathLike) -> list[tuple[str, str]]:
    """``[(item_id, absolute media path)]`` of a catalog, in manifest order.

    Raises
    ------
    DataFormatError
        The manifest is missing/invalid, or an item has no media (generated with ``--no-media``).
    """
    from models.catalog import load_catalog

    cat = load_catalog(catalog_dir)
    out = []
    for k, item in enumerate(cat.items):
        path = cat.media_path(k)
        if path is None:
            raise DataFormatError(
                f"{Path(catalog_dir) / 'catalog.json'}: item {item.id} has no media "
                "(catalog generated without media?)"
            )
        out.append((item.id, os.path.abspath(path)))
    return out


def load_or_build_features(
    catalog_dir: str | os.PathLike,
    cfg: FeatureConfig | None = None,
    *,
    workers: int | None = None,
    progress: bool = True,
    stats: dict[str, Any] | None = None,
    media: Sequence[tuple[str, str]] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features of every item of a catalog, from the cache or decoded (and then cached).

    Parameters
    ----------
    catalog_dir : path
        A folder written by :func:`models.catalog.generate_catalog` (with media), or any folder
        whose clips ``media`` lists (the cache is then kept in that folder).
    cfg : FeatureConfig, optional
        Defaults to ``FeatureConfig()``; part of the cache's name.
    workers : int, optional
        Decoding processes (default: up to 2). 1 decodes in this process.
    progress : bool
        Show a tqdm bar on stderr while decoding.
    media : list of (id, path), optional
        The clips instead of the catalog's (e.g.
        :func:`models.teachers.unlabelled.media_files` of a folder of recordings).
    stats : dict, optional
        Filled with ``decoded`` (items decoded now), ``reused`` (taken from the cache),
        ``path`` (the cache file), ``seconds`` and ``flags`` (item id -> media flags, only for
        items with flags).

    Returns
    -------
    item_ids : np.ndarray of str, shape (N,)
    frames : np.ndarray of uint8, shape (N, F, S, S, 3)
    logmel : np.ndarray of float32, shape (N, T, M)

    Raises
    ------
    MediaError
        Some clips could not be decoded; the message names the items and reasons. The items
        that decoded are cached first, so a retry only decodes the failures.
    """
    cfg = cfg or FeatureConfig()
    t0 = time.perf_counter()
    media = catalog_media(catalog_dir) if media is None else list(media)
    path = cache_path(catalog_dir, cfg)
    old = _read_cache(path, cfg)

    n = len(media)
    F, S, T, M = cfg.frames, cfg.size, cfg.n_frames, cfg.n_mels
    ids = np.array([iid for iid, _ in media], dtype=str)
    keys = [media_key(p) if os.path.exists(p) else f"{p}|missing" for _, p in media]
    frames = np.zeros((n, F, S, S, 3), dtype=np.uint8)
    logmel = np.zeros((n, T, M), dtype=np.float32)
    flags = ["[]"] * n

    todo = []
    old_row = {} if old is None else {k: r for r, k in enumerate(old["keys"].tolist())}
    old_ids = None if old is None else old["item_ids"].tolist()
    for i, ((iid, p), key) in enumerate(zip(media, keys)):
        r = old_row.get(key)
        if r is not None and old_ids[r] == iid:
            frames[i] = old["frames"][r]
            logmel[i] = old["logmel"][r]
            flags[i] = str(old["flags"][r])
        else:
            todo.append(i)

    failures: list[tuple[str, str]] = []
    keep = np.ones(n, dtype=bool)  # rows that hold valid features
    keep[todo] = False
    if todo:
        jobs = [(i, media[i][1], cfg.to_dict()) for i in todo]
        for i, result in _decode_all(jobs, workers, progress):
            if isinstance(result, str):
                failures.append((media[i][0], result))
                continue
            frames[i], logmel[i], flags[i] = result[0], result[1], json.dumps(result[2])
            keep[i] = True

    changed = bool(todo) or old is None or old_ids != ids.tolist()
    if changed:
        # Failed items are left out of the file (with their keys), so they are retried next time.
        _write_cache(path, cfg, ids[keep], np.asarray(keys)[keep], frames[keep], logmel[keep],
                     np.asarray(flags)[keep])
    if stats is not None:
        stats.update(
            decoded=len(todo) - len(failures),
            reused=n - len(todo),
            failed=len(failures),
            path=str(path),
            seconds=time.perf_counter() - t0,
            flags={ids[i]: json.loads(flags[i]) for i in range(n) if flags[i] != "[]"},
        )
    if failures:
        shown = "; ".join(f"item {iid}: {why}" for iid, why in failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        raise MediaError(f"{catalog_dir}: {len(failures)} clip(s) could not be decoded: {shown}{more}")
    return ids, frames, logmel


# --------------------------------------------------------------------------- internals


def _read_cache(path: Path, cfg: FeatureConfig) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None if absent, unreadable or made with another configuration."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in ("item_ids", "keys", "frames", "logmel", "flags", "fingerprint")}
    except (OSError, ValueError, KeyError, EOFError):
        return None  # damaged or foreign: rebuilt from the media
    F, S, T, M = cfg.frames, cfg.size, cfg.n_frames, cfg.n_mels
    n = len(data["item_ids"])
    if (str(data["fingerprint"]) != cfg.fingerprint() or data["frames"].shape != (n, F, S, S, 3)
            or data["logmel"].shape != (n, T, M) or len(data["keys"]) != n or len(data["flags"]) != n):
        return None
    return data


def save_npz_atomic(path: Path, **arrays) -> None:
    """``np.savez(path, **arrays)`` via a temporary file and ``os.replace``: a reader (or a
    crash mid-write) sees the old cache or the new one, never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_cache(path: Path, cfg: FeatureConfig, ids, keys, frames, logmel, flags) -> None:
    save_npz_atomic(path, item_ids=np.asarray(ids, dtype=str), keys=np.asarray(keys, dtype=str),
                    frames=frames, logmel=logmel, flags=np.asarray(flags, dtype=str),
                    fingerprint=np.asarray(cfg.fingerprint()))


def _decode_one(job: tuple[int, str, dict]) -> tuple[int, tuple | str]:
    """Pool worker: ``(row, path, cfg dict) -> (row, (frames, logmel, flags) or error text)``."""
    from device.media import extract_features

    i, p, cfg_dict = job
    try:
        frames, logmel, info = extract_features(p, FeatureConfig.from_dict(cfg_dict))
    except MediaError as err:
        return i, str(err)
    return i, (frames, logmel, list(info["flags"]))


def _decode_all(jobs: Sequence[tuple[int, str, dict]], workers: int | None, progress: bool):
    from tqdm import tqdm

    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    bar = tqdm(total=len(jobs), desc="features", unit="clip", disable=not progress, dynamic_ncols=True)
    try:
        if workers <= 1 or len(jobs) < MIN_ITEMS_FOR_POOL:
            for job in jobs:
                yield _decode_one(job)
                bar.update(1)
        else:
            import multiprocessing as mp

            # spawn: the caller may already run TensorFlow threads, which fork would copy broken.
            with mp.get_context("spawn").Pool(workers) as pool:
                for out in pool.imap_unordered(_decode_one, jobs, chunksize=4):
                    yield out
                    bar.update(1)
    finally:
        bar.close()
