"""From a catalog and its watch logs to a device bundle, in small named steps.

``tvrec bundle build`` (:func:`build_bundle`) and ``tvrec export``
(:func:`export.package.export_bundle`) are two conductors over the same steps:

==========================  ======================================================================
step                        what it does
==========================  ======================================================================
:func:`read_step`           items + log (+ content vectors) from files (:mod:`models.readers`)
:func:`interaction_matrix`  the log as a profiles x items matrix of interaction strengths
:func:`learn_step`          the item-item CF table over the warm items (:func:`default_model`),
                            popularity
:func:`embed_step`          the warm items' CF embeddings (PureSVD, :func:`models.coldstart.cf_targets`)
:func:`content_step`        content features per item: vectors from any source + metadata
:func:`place_cold_step`     cold items into CF space, by a map learned on warm items
:func:`write_step`          the verified bundle directory (:func:`device.bundle.write_bundle`)
:func:`sign_step`           the fleet's signature over the manifest
==========================  ======================================================================

Content vectors come in through one seam: anything that returns a
:class:`models.readers.ItemVectors` (ids + vectors) -- a file (:func:`read_item_vectors`), clips
embedded by a content model (:func:`media_vectors`), or a fleet-side teacher -- is passed to
:func:`content_step` in ``vector_sources``.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import scipy.sparse as sp

#: Release value stored for items whose release is unknown (oldest: never "newest first").
UNKNOWN_RELEASE = 0


# --------------------------------------------------------------------------- plain data


@dataclass
class Learned:
    """The CF table over all catalog rows (cold rows empty) and what it cost.

    Attributes
    ----------
    neighbours : np.ndarray of int32, shape (N, K)
    weights : np.ndarray of float32, shape (N, K)
    popularity : np.ndarray of float32, shape (N,)
        ``log1p`` of each item's interactions; 0 for cold items.
    model : models.cowatch.ItemItemModel
        The fitted model over the warm columns.
    fit_seconds : float
    """

    neighbours: np.ndarray
    weights: np.ndarray
    popularity: np.ndarray
    model: Any
    fit_seconds: float


@dataclass
class Content:
    """Content features per item (vectors from every source, then metadata).

    Attributes
    ----------
    features : np.ndarray of float32, shape (N, F)
    has : np.ndarray of bool, shape (N,)
        Items whose features say something (a vector, or at least one genre).
    sources : list of str
        What the features hold, e.g. ``["vectors.npz (64-d, 1500 items)", "metadata"]``.
    """

    features: np.ndarray
    has: np.ndarray
    sources: list = field(default_factory=list)


def peak_rss_mb() -> float:
    """This process's peak resident set so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --------------------------------------------------------------------------- steps


def read_step(items_path, interactions_path):
    """Read the catalog and its log; log rows for unknown items are dropped and counted.

    Returns
    -------
    (models.readers.Items, models.readers.Log)
    """
    from models.readers import read_items, read_log

    items = read_items(items_path)
    return items, read_log(interactions_path, items)


def interaction_matrix(log, items) -> tuple[sp.csr_matrix, np.ndarray]:
    """The log as a profiles x items matrix (:func:`models.readers.log_matrix`)."""
    from models.readers import log_matrix

    return log_matrix(log, items)


def learn_step(X: sp.csr_matrix, warm: np.ndarray, k: int) -> Learned:
    """Fit the shipped item-item model on the warm columns; cold rows get no neighbours.

    Parameters
    ----------
    X : scipy.sparse matrix, shape (n_profiles, N)
    warm : np.ndarray of bool, shape (N,)
    k : int
        Neighbours per item (the bundle's K).
    """
    from device.cf import PAD
    from models.cowatch import default_model

    X = sp.csr_matrix(X)
    warm_rows = np.flatnonzero(warm)
    n = X.shape[1]
    t0 = time.perf_counter()
    model = default_model(len(warm_rows), K=k).fit(X[:, warm_rows])
    fit_seconds = time.perf_counter() - t0
    local = model.to_table([str(i) for i in warm_rows])
    neighbours = np.full((n, local.k), PAD, np.int32)
    weights = np.zeros((n, local.k), np.float32)
    neighbours[warm_rows] = np.where(local.neighbours >= 0,
                                     warm_rows[np.maximum(local.neighbours, 0)], PAD)
    weights[warm_rows] = local.weights
    counts = np.asarray((X > 0).sum(axis=0)).ravel().astype(np.float64)
    popularity = np.where(warm, np.log1p(counts), 0.0).astype(np.float32)
    return Learned(neighbours, weights, popularity, model, fit_seconds)


def embedding_dim(X: sp.spmatrix, warm: np.ndarray) -> int:
    """The embedding dimension for this log (:func:`models.coldstart.embedding_dim`)."""
    from models.coldstart import embedding_dim as rule

    return rule(int(np.count_nonzero(warm)), X.shape[0])


def embed_step(X: sp.csr_matrix, warm: np.ndarray, dim: int,
               seed: int = 0) -> np.ndarray:
    """CF embeddings of the warm items (unit rows; cold rows zero): PureSVD of the warm log,
    the space the cold-start map and the box's "New for you" compare items in. A log too small
    for rank ``dim`` (see :func:`embedding_dim`) gets a lower rank, zero-padded to ``dim``."""
    from models.coldstart import cf_targets

    warm_rows = np.flatnonzero(warm)
    E = np.zeros((X.shape[1], dim), np.float32)
    rank = min(dim, embedding_dim(X, warm))
    if len(warm_rows) < 2 or rank < 1:
        raise ValueError(f"{len(warm_rows)} items with interactions: too few to learn CF embeddings")
    E[warm_rows, :rank], _ = cf_targets(sp.csr_matrix(X)[:, warm_rows], rank, seed=seed)
    return E


def content_step(items, vector_sources: Sequence[Any] = ()) -> Content:
    """Content features of every item: each source's vectors (aligned by id, zero where an
    item has none), then :func:`models.coldstart.metadata_features`.

    Parameters
    ----------
    items : models.readers.Items
    vector_sources : sequence of models.readers.ItemVectors
    """
    from models.coldstart import metadata_features

    parts, has, sources = [], np.zeros(len(items), bool), []
    for src in vector_sources:
        V, have, unknown = src.align(items.ids)
        parts.append(V)
        has |= have
        sources.append(f"{Path(src.path).name or 'vectors'} ({src.dim}-d, {int(have.sum())} items"
                       + (f", {unknown} unknown ids ignored" if unknown else "") + ")")
    meta, has_meta = metadata_features(items)
    parts.append(meta)
    sources.append("metadata")
    return Content(np.hstack(parts).astype(np.float32), has | has_meta, sources)


def place_cold_step(E: np.ndarray, warm: np.ndarray, content: Content, items
                    ) -> tuple[np.ndarray, dict[str, Any]]:
    """Cold items into CF space (:func:`models.coldstart.place_cold`): the bundle's item
    embeddings, warm rows CF, cold rows placed (zero where an item has no content)."""
    from models.coldstart import place_cold

    reads_genres = any(len(g) for g in items.genres)  # metadata features hold the genres
    return place_cold(E, warm, content.features, content.has, series=items.series,
                      reads_genres=reads_genres)


def media_vectors(items, media_dir, model_dir, *, progress: bool = True):
    """Clips named by item id (``MEDIA/<id>.<ext>``) embedded by a content model.

    ``model_dir`` is a bundle (or a ``tvrec export`` output folder holding ``bundle/``) whose
    ``content_model.tflite`` and feature config are used. Returns the
    :class:`models.readers.ItemVectors` of the items that have a decodable clip, and the model
    as ``(bytes, io, feature_config)`` for the bundle.
    """
    from device.bundle import open_bundle
    from device.content import ContentEmbedder
    from device.errors import BundleError, MediaError
    from models.readers import ItemVectors

    root = Path(model_dir)
    if (root / "bundle" / "manifest.json").is_file():
        root = root / "bundle"
    src = open_bundle(root, verify="sizes")
    if src.model_path is None:
        raise BundleError(f"{model_dir}: has no content model (content_model.tflite)")
    files = {}
    media = Path(media_dir)
    if not media.is_dir():
        raise BundleError(f"--media {media_dir}: not a folder")
    for f in sorted(media.iterdir()):
        if f.is_file() and f.stem in items.index:
            files.setdefault(f.stem, f)
    embedder = ContentEmbedder(src.model_path, src.feature_config)
    ids, vecs, failed = [], [], 0
    from tqdm import tqdm

    for iid, f in tqdm(list(files.items()), desc="media", unit="clip", disable=not progress):
        try:
            vecs.append(embedder.embed_file(f).vector)
            ids.append(iid)
        except MediaError:
            failed += 1
    vectors = ItemVectors(np.asarray(ids, dtype=object),
                          np.asarray(vecs, np.float32).reshape(len(ids), src.dim),
                          str(media), extra={"failed": failed})
    return vectors, (src.model_path.read_bytes(), src.model_io, src.feature_config)


def bundle_items(items, warm: np.ndarray) -> dict[str, Any]:
    """The bundle's item columns from a catalog (ids are the catalog's own, as strings)."""
    release = np.asarray(items.release, np.float64)
    return {
        "ids": [str(i) for i in items.ids],
        "titles": [str(t) for t in items.titles],
        "genres": [list(g) for g in items.genres],
        "durations": np.asarray(items.durations, np.float32),
        "release": np.where(np.isfinite(release), release, UNKNOWN_RELEASE).astype(np.int64),
        "cold": ~np.asarray(warm, bool),
        "series": [str(s) for s in items.series],
        "season": np.asarray(items.season, np.int32),
        "episode": np.asarray(items.episode, np.int32),
        "maturity": np.asarray(items.maturity, np.int16),
    }


def quantize_rows(emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row symmetric int8: ``emb ~= q * scale[:, None]`` (zero rows: scale 1)."""
    emb = np.asarray(emb, np.float32)
    peak = np.abs(emb).max(axis=1) if emb.size else np.zeros(len(emb), np.float32)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.round(emb / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def write_step(out, items: dict[str, Any], learned: Learned, embeddings: np.ndarray, *,
               model: tuple[bytes, Any, Any] | None = None, extra: dict | None = None,
               cold_start: dict | None = None) -> Path:
    """Write the bundle directory (validated and atomic, :func:`device.bundle.write_bundle`).

    Parameters
    ----------
    items : dict
        Item columns (:func:`bundle_items`).
    model : (bytes, io, FeatureConfig), optional
        The int8 content model for the box; None writes a bundle without one.
    cold_start : dict, optional
        How cold items were placed (manifest ``cold_start``; ``reads_genres`` tells the engine
        the embeddings already read the genres).
    """
    from device.bundle import write_bundle
    from device.features import FeatureConfig

    q, scale = quantize_rows(embeddings)
    model_bytes, io, cfg = model if model is not None else (None, None, FeatureConfig())
    return write_bundle(out, items=items, neighbours=learned.neighbours, weights=learned.weights,
                        popularity=learned.popularity, item_embeddings_int8=q,
                        embedding_scale=scale, model_bytes=model_bytes, feature_config=cfg,
                        model_io=io, extra=extra, cold_start=cold_start)


def sign_step(bundle_dir: Path, signing_key) -> dict[str, Any] | None:
    """Sign the bundle's manifest with the fleet key (``--signing-key``); None without a key.

    The signature scheme lives with the bundle format (``device.bundle``); until it provides
    ``sign_bundle``, asking for a signature is refused rather than silently skipped.
    """
    if signing_key is None:
        return None
    import device.bundle as bundle_format
    from device.errors import BundleError

    sign = getattr(bundle_format, "sign_bundle", None)
    if sign is None:
        raise BundleError(f"{signing_key}: this tvrec cannot sign bundles yet (no "
                          "device.bundle.sign_bundle); build without --signing-key")
    result = sign(bundle_dir, signing_key)
    return result if isinstance(result, dict) else {"key": str(signing_key)}


# --------------------------------------------------------------------------- conductor


def build_bundle(items_path, interactions_path, out_dir, *, item_vectors=None, media_dir=None,
                 model_dir=None, k: int = 64, seed: int = 0, signing_key=None,
                 vector_sources: Sequence[Any] = (), progress: bool = True,
                 learn: Callable[..., Learned] = learn_step) -> dict[str, Any]:
    """``tvrec bundle build``: catalog + log (+ vectors, + clips) to a verified bundle.

    Parameters
    ----------
    items_path, interactions_path : path
        Any format :mod:`models.readers` reads.
    out_dir : path
        The bundle folder to create (must not exist or be empty).
    item_vectors : path, optional
        Content vectors (:func:`models.readers.read_item_vectors`).
    media_dir, model_dir : path, optional
        Clips named by item id and the bundle whose content model embeds them (both or
        neither); the model then ships in the bundle.
    vector_sources : sequence of ItemVectors
        More content vectors (e.g. a text teacher's).
    learn : callable
        The CF learning step (``learn(X, warm, k) -> Learned``): in-process by default.

    Returns
    -------
    dict
        The report: ``n_items``, ``n_profiles``, ``n_events``, ``skipped_lines``,
        ``unknown_items``, ``n_warm``, ``n_cold``, ``n_cold_placed``, ``fit_seconds``,
        ``peak_rss_mb``, ``stage_seconds``, ``content``, ``bundle``, ``signature``.
    """
    from models.readers import read_item_vectors

    if (media_dir is None) != (model_dir is None):
        from device.errors import BundleError

        raise BundleError("--media and --model go together (clips and the model that embeds them)")
    stages: dict[str, float] = {}

    def timed(name: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        value = fn(*args, **kw)
        stages[name] = round(time.perf_counter() - t0, 3)
        return value

    t_start = time.perf_counter()
    items, log = timed("read", read_step, items_path, interactions_path)
    sources = list(vector_sources)
    if item_vectors is not None:
        sources.append(timed("read_vectors", read_item_vectors, item_vectors))
    model = None
    if media_dir is not None:
        vec, model = timed("embed_media", media_vectors, items, media_dir, model_dir,
                           progress=progress)
        sources.append(vec)
    X, profile_ids = timed("matrix", interaction_matrix, log, items)
    warm = np.diff(sp.csc_matrix(X).indptr) > 0
    if warm.sum() < 2:
        raise ValueError(f"{interactions_path}: only {int(warm.sum())} of the {len(items)} items "
                         "have interactions (dislikes do not count); CF needs at least 2")
    learned = timed("learn", learn, X, warm, k)
    dim = embedding_dim(X, warm) if model is None else int(model[1]["outputs"][0]["shape"][-1])
    E = timed("embed", embed_step, X, warm, dim, seed)
    content = timed("content", content_step, items, sources)
    embeddings, placed = timed("place_cold", place_cold_step, E, warm, content, items)
    extra = {"source": {"items": os.fspath(items_path), "interactions": os.fspath(interactions_path),
                        "items_format": items.format, "log_format": log.format},
             "embeddings": "warm rows: CF (PureSVD of the log); cold rows: placed from "
                           + " + ".join(content.sources),
             "cf_model": type(learned.model).__name__, "seed": seed}
    cold_start = {"placed_from": content.sources, "reads_genres": placed["reads_genres"],
                  "placed": placed["placed"], "by_series": placed["by_series"]}
    bundle_dir = timed("write", write_step, out_dir, bundle_items(items, warm), learned,
                       embeddings, model=model, extra=extra, cold_start=cold_start)
    signature = timed("sign", sign_step, bundle_dir, signing_key)
    cold = ~warm
    return {
        "bundle": str(bundle_dir),
        "n_items": int(len(items)),
        "n_profiles": int(len(profile_ids)),
        "n_events": int(len(log)),
        "skipped_lines": int(log.skipped_lines),
        "unknown_items": int(log.unknown_items),
        "n_warm": int(warm.sum()),
        "n_cold": int(cold.sum()),
        "n_cold_placed": int((np.abs(embeddings[cold]).sum(axis=1) > 0).sum()),
        "placement": placed,
        "content": content.sources,
        "cf_model": type(learned.model).__name__,
        "k": int(learned.neighbours.shape[1]),
        "embedding_dim": int(dim),
        "fit_seconds": round(learned.fit_seconds, 3),
        "stage_seconds": stages,
        "seconds": round(time.perf_counter() - t_start, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "signature": signature,
        "engine": "inprocess",
    }
