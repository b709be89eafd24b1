"""Synthetic but plausible bundles for scale tests and benchmarks (:func:`synth_bundle`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from device.bundle_format import PathLike, write_bundle
from device.bundle_verify import open_bundle
from device.cf import PAD
from device.errors import BundleError
from device.features import FeatureConfig


_SYNTH_GENRES = ("drama", "comedy", "crime", "documentary", "news", "sport", "kids", "sci-fi",
                 "romance", "thriller", "music", "nature")


def synth_bundle(
    out_dir: PathLike,
    n_items: int,
    *,
    k: int = 64,
    dim: int = 32,
    seed: int = 0,
    model_bytes: bytes | None = None,
    model_io: Mapping[str, Any] | None = None,
    feature_config: FeatureConfig | None = None,
    template: PathLike | None = None,
    cold_fraction: float = 0.05,
    episodic_fraction: float = 0.0,
) -> Path:
    """Write a synthetic but plausible bundle of ``n_items`` items (scale tests, benchmarks).

    * Popularity is power-law (Zipf-like, exponent 0.9) over a random order of the warm items;
      the last ``cold_fraction`` items in release order are cold: popularity 0, no neighbour
      row, and no warm item points to them (exactly what co-watch data gives).
    * Each warm row gets up to ``k`` distinct neighbours, half drawn from the same primary
      genre, half by popularity (co-watch favours popular items); duplicates and self-links are
      dropped, so some rows are padded with -1. Weights are positive, decreasing along the row.
    * Embeddings are unit vectors near their genre's centroid, quantised to int8 with a per-row
      scale (``max|x| / 127``).

    The content model comes from ``model_bytes`` (with ``model_io``; computed with
    :func:`device.runtime.describe_io` if omitted), else from ``template`` (an existing bundle
    whose ``content_model.tflite``, model io and feature config are copied), else the bundle has
    no model (``manifest.model`` null). Deterministic in ``seed`` except ``created``.

    ``episodic_fraction > 0`` adds the TV columns (schema 3): that fraction of the items are
    episodes of series of 6-24 episodes (seasons of up to 12, in release order), and every item
    gets a maturity rating (0, 6, 12, 16 or 18 years; 10 % unrated) -- so Up next, New
    episodes and kids profiles have something to do at scale. The default leaves a bundle
    without those columns, as before.
    """
    out = Path(out_dir)
    if isinstance(n_items, bool) or not isinstance(n_items, int) or n_items < 1:
        raise BundleError(f"{out}: n_items must be a positive int, got {n_items!r}")
    if k < 1 or dim < 1:
        raise BundleError(f"{out}: k and dim must be >= 1")
    if template is not None and model_bytes is None:
        tb = open_bundle(template, verify="full")
        if tb.model_path is None:
            raise BundleError(f"{template}: template bundle has no content model")
        model_bytes = tb.model_path.read_bytes()
        model_io = tb.model_io
        feature_config = feature_config or tb.feature_config
    if model_bytes is not None and model_io is None:
        from device.runtime import describe_io

        model_io = describe_io(model_bytes)

    rng = np.random.default_rng(seed)
    n = n_items
    n_cold = min(int(round(cold_fraction * n)), n - 1)
    n_warm = n - n_cold
    width = len(str(n - 1))
    ids = [f"syn{i:0{width}d}" for i in range(n)]
    n_genres = len(_SYNTH_GENRES)
    genre = rng.integers(0, n_genres, n)
    second = rng.integers(0, n_genres, n)
    has_second = (rng.random(n) < 0.4) & (second != genre)
    genres = [[_SYNTH_GENRES[g]] + ([_SYNTH_GENRES[s]] if h else [])
              for g, s, h in zip(genre.tolist(), second.tolist(), has_second.tolist())]
    titles = [f"Synthetic {_SYNTH_GENRES[g]} {i}" for i, g in enumerate(genre.tolist())]
    minutes = rng.choice(np.array([22, 26, 45, 50, 60, 95, 110, 130], dtype=np.float32), n)
    cold = np.zeros(n, dtype=bool)
    cold[n_warm:] = True

    popularity = np.zeros(n, dtype=np.float32)
    rank = rng.permutation(n_warm)
    popularity[:n_warm] = (1000.0 / (1.0 + rank) ** 0.9).astype(np.float32)

    neighbours = np.full((n, k), PAD, dtype=np.int32)
    weights = np.zeros((n, k), dtype=np.float32)
    if n_warm > 1:
        m = max(2, k + k // 2)
        half = m // 2
        cand = np.empty((n_warm, m), dtype=np.int64)
        wg = genre[:n_warm]
        order = np.argsort(wg, kind="stable")
        # np.intp: on a 32-bit box (armv7l) bincount refuses int64 input
        counts = np.bincount(wg.astype(np.intp), minlength=n_genres)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        offs = (rng.random((n_warm, half)) * counts[wg][:, None]).astype(np.int64)
        cand[:, :half] = order[starts[wg][:, None] + offs]
        p = popularity[:n_warm].astype(np.float64)
        cand[:, half:] = rng.choice(n_warm, size=(n_warm, m - half), p=p / p.sum())
        sentinel = n  # sorts after every real row
        cand[cand == np.arange(n_warm)[:, None]] = sentinel
        cand.sort(axis=1)
        dup = np.zeros_like(cand, dtype=bool)
        dup[:, 1:] = cand[:, 1:] == cand[:, :-1]
        cand[dup] = sentinel
        # Random order among the distinct candidates, then keep the first k.
        keys = np.where(cand == sentinel, 2.0, rng.random(cand.shape))
        pick = np.argsort(keys, axis=1)[:, :min(k, m)]
        chosen = np.take_along_axis(cand, pick, axis=1)
        kk = chosen.shape[1]
        w = np.sort(rng.random((n_warm, kk)).astype(np.float32) ** 2, axis=1)[:, ::-1] * 0.5
        same = genre[np.minimum(chosen, n - 1)] == wg[:, None]
        w = np.where(same, w * 1.5, w)
        valid = chosen != sentinel
        w = np.where(valid, w + 0.01, 0.0).astype(np.float32)
        by_w = np.argsort(-w, axis=1, kind="stable")
        chosen = np.take_along_axis(chosen, by_w, axis=1)
        w = np.take_along_axis(w, by_w, axis=1)
        neighbours[:n_warm, :kk] = np.where(chosen == sentinel, PAD, chosen).astype(np.int32)
        weights[:n_warm, :kk] = w

    centroids = rng.standard_normal((n_genres, dim)).astype(np.float32)
    x = centroids[genre] + rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    scale = np.abs(x).max(axis=1) / 127.0
    q = np.clip(np.rint(x / scale[:, None]), -127, 127).astype(np.int8)

    items: dict[str, Any] = {"ids": ids, "titles": titles, "genres": genres,
                             "durations": minutes * 60.0, "release": np.arange(n, dtype=np.int64),
                             "cold": cold}
    if episodic_fraction > 0:
        items.update(_tv_columns(np.random.default_rng(seed + 1), n, episodic_fraction, genre))
    return write_bundle(
        out,
        items=items,
        neighbours=neighbours, weights=weights, popularity=popularity,
        item_embeddings_int8=q, embedding_scale=scale.astype(np.float32),
        model_bytes=model_bytes, feature_config=feature_config or FeatureConfig(),
        model_io=model_io,
        extra={"synthetic": {"seed": seed, "n_items": n, "k": k, "dim": dim,
                             "cold_fraction": cold_fraction,
                             **({"episodic_fraction": episodic_fraction} if episodic_fraction > 0 else {})}},
    )


def _tv_columns(rng: np.random.Generator, n: int, fraction: float, genre: np.ndarray) -> dict:
    """series / season / episode / maturity columns for :func:`synth_bundle`."""
    series = np.full(n, "", dtype=object)
    season = np.full(n, -1, dtype=np.int32)
    episode = np.full(n, -1, dtype=np.int32)
    rows = np.sort(rng.choice(n, size=min(n, int(round(fraction * n))), replace=False))
    at, k = 0, 0
    while at < len(rows):
        size = int(rng.integers(6, 25))
        group = rows[at : at + size]  # ascending rows: episodes come out in release order
        idx = np.arange(len(group))
        series[group] = f"Synthetic {_SYNTH_GENRES[int(genre[group[0]])]} series {k}"
        season[group] = 1 + idx // 12
        episode[group] = 1 + idx % 12
        at, k = at + size, k + 1
    maturity = rng.choice(np.array([0, 6, 12, 16, 18], dtype=np.int16), n)
    maturity[rng.random(n) < 0.1] = -1
    return {"series": series.tolist(), "season": season, "episode": episode, "maturity": maturity}
