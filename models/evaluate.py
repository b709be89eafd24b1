"""Offline evaluation of recommenders: metrics, splits, and the device-CF protocol.

Metrics follow ``../shared/notes/cf-anchors.md`` (the Microsoft Recommenders MovieLens table):
binary relevance, cut-off ``k``; ``precision = hits / k``; ``recall = hits / |relevant|``;
NDCG with ideal DCG over ``min(k, |relevant|)``; MAP sums ``hits_so_far / rank`` over hits and
divides by ``|relevant|``. Users with no relevant (test) items are skipped.

Everything takes plain arrays: ``recommended`` is a list of ranked item lists (any hashable ids),
``relevant`` a list of sets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np
import scipy.sparse as sp

# ------------------------------------------------------------------------------ metrics


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def precision_at_k(recommended: Sequence[Sequence[Hashable]], relevant: Sequence[set], k: int) -> float:
    """Mean ``hits@k / k`` over users with at least one relevant item."""
    vals = [sum(r in rel for r in rec[:k]) / k for rec, rel in zip(recommended, relevant) if rel]
    return float(np.mean(vals)) if vals else 0.0


def recall_at_k(recommended: Sequence[Sequence[Hashable]], relevant: Sequence[set], k: int) -> float:
    """Mean ``hits@k / |relevant|``."""
    vals = [sum(r in rel for r in rec[:k]) / len(rel) for rec, rel in zip(recommended, relevant) if rel]
    return float(np.mean(vals)) if vals else 0.0


def f1_at_k(recommended: Sequence[Sequence[Hashable]], relevant: Sequence[set], k: int) -> float:
    """Harmonic mean of the mean precision@k and mean recall@k (as Microsoft Recommenders)."""
    p, r = precision_at_k(recommended, relevant, k), recall_at_k(recommended, relevant, k)
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def ndcg_at_k(recommended: Sequence[Sequence[Hashable]], relevant: Sequence[set], k: int) -> float:
    """Mean binary NDCG@k; ideal DCG over ``min(k, |relevant|)`` positions."""
    disc = _discounts(k)
    vals = []
    for rec, rel in zip(recommended, relevant):
        if not rel:
            continue
        dcg = sum(disc[i] for i, r in enumerate(rec[:k]) if r in rel)
        vals.append(dcg / disc[: min(k, len(rel))].sum())
    return float(np.mean(vals)) if vals else 0.0


def map_at_k(recommended: Sequence[Sequence[Hashable]], relevant: Sequence[set], k: int) -> float:
    """Mean average precision: ``sum over hits of (hits so far / rank) / |relevant|``."""
    vals = []
    for rec, rel in zip(recommended, relevant):
        if not rel:
            continue
        hits, total = 0, 0.0
        for rank, r in enumerate(rec[:k], start=1):
            if r in rel:
                hits += 1
                total += hits / rank
        vals.append(total / len(rel))
    return float(np.mean(vals)) if vals else 0.0


def catalog_coverage(recommended: Sequence[Sequence[Hashable]], n_items: int, k: int) -> float:
    """Fraction of the catalog that appears in at least one user's top-k."""
    shown = {r for rec in recommended for r in rec[:k]}
    return len(shown) / n_items if n_items else 0.0


def intra_list_diversity(
    recommended: Sequence[Sequence[int]], item_vectors: np.ndarray, k: int
) -> float:
    """Mean pairwise cosine distance (1 - cos) between items of each top-k list.

    ``recommended`` holds row indices into ``item_vectors`` (e.g. genre vectors or content
    embeddings). Lists with fewer than two items are skipped.
    """
    V = np.asarray(item_vectors, dtype=np.float64)
    norms = np.linalg.norm(V, axis=1, keepdims=True)
    V = V / np.where(norms > 0, norms, 1.0)
    vals = []
    for rec in recommended:
        idx = np.asarray(rec[:k], dtype=np.int64)
        if len(idx) < 2:
            continue
        S = V[idx] @ V[idx].T
        iu = np.triu_indices(len(idx), 1)
        vals.append(float(np.mean(1.0 - S[iu])))
    return float(np.mean(vals)) if vals else 0.0


def ranking_metrics(
    recommended: Sequence[Sequence[Hashable]], relevant: Sequence[set], k: int, n_items: int
) -> dict[str, float]:
    """All ranking metrics at ``k`` in one dict (keys like ``ndcg@10``)."""
    return {
        f"precision@{k}": precision_at_k(recommended, relevant, k),
        f"recall@{k}": recall_at_k(recommended, relevant, k),
        f"f1@{k}": f1_at_k(recommended, relevant, k),
        f"ndcg@{k}": ndcg_at_k(recommended, relevant, k),
        "map": map_at_k(recommended, relevant, k),
        "coverage": catalog_coverage(recommended, n_items, k),
    }


# ------------------------------------------------------------------------------- splits


@dataclass(frozen=True)
class Split:
    """A train/test split of interactions as users x items matrices over a shared index."""

    train: sp.csr_matrix
    test: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray


def _ordered_ids(ids: np.ndarray) -> np.ndarray:
    """Unique ids, numerically ordered when they are all integers (MovieLens), else sorted."""
    uniq = np.unique(ids.astype(str))
    try:
        return uniq[np.argsort(uniq.astype(np.int64), kind="stable")]
    except ValueError:
        return uniq


def _index(users: np.ndarray, items: np.ndarray):
    """Ordered unique ids and each row's position in them."""
    user_ids, item_ids = _ordered_ids(users), _ordered_ids(items)
    urow = {x: n for n, x in enumerate(user_ids)}
    irow = {x: n for n, x in enumerate(item_ids)}
    u = np.fromiter((urow[x] for x in users.astype(str)), dtype=np.int64, count=len(users))
    i = np.fromiter((irow[x] for x in items.astype(str)), dtype=np.int64, count=len(items))
    return user_ids, item_ids, u, i


def _matrices(u, i, train_mask, n_users, n_items) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    def build(mask):
        m = sp.csr_matrix(
            (np.ones(int(mask.sum())), (u[mask], i[mask])), shape=(n_users, n_items)
        )
        m.data[:] = 1.0  # repeated interactions count once
        return m

    return build(train_mask), build(~train_mask)


def random_split(users, items, *, train_fraction: float = 0.75, seed: int = 42) -> Split:
    """Per-user random split (the cf-anchors protocol).

    Users are visited in ascending id order (numeric when ids are integers); each user's rows,
    in input order, are permuted with one ``numpy.random.default_rng(seed)`` and the first
    ``round(train_fraction * n)`` go to train.
    """
    users, items = np.asarray(users), np.asarray(items)
    user_ids, item_ids, u, i = _index(users, items)
    train_mask = _random_train_mask(u, train_fraction, seed)
    train, test = _matrices(u, i, train_mask, len(user_ids), len(item_ids))
    return Split(train, test, user_ids, item_ids)


def _random_train_mask(u: np.ndarray, train_fraction: float, seed: int) -> np.ndarray:
    order = np.argsort(u, kind="stable")
    bounds = np.flatnonzero(np.diff(u[order])) + 1
    rng = np.random.default_rng(seed)
    train_mask = np.zeros(len(u), dtype=bool)
    for rows in np.split(order, bounds):
        perm = rng.permutation(rows)
        train_mask[perm[: int(round(train_fraction * len(rows)))]] = True
    return train_mask


def temporal_split(users, items, timestamps, *, train_fraction: float = 0.75) -> Split:
    """Per-user temporal split: each user's earliest ``round(train_fraction * n)`` rows train.

    Closer to how a box is used (predict what is watched next from what was watched before).
    Ties in time keep input order.
    """
    users, items = np.asarray(users), np.asarray(items)
    ts = np.asarray(timestamps, dtype=np.float64)
    user_ids, item_ids, u, i = _index(users, items)
    order = np.lexsort((np.arange(len(u)), ts, u))
    bounds = np.flatnonzero(np.diff(u[order])) + 1
    train_mask = np.zeros(len(u), dtype=bool)
    for rows in np.split(order, bounds):
        train_mask[rows[: int(round(train_fraction * len(rows)))]] = True
    train, test = _matrices(u, i, train_mask, len(user_ids), len(item_ids))
    return Split(train, test, user_ids, item_ids)


# ------------------------------------------------------------------ device-CF protocol


def recommend_all(table, split: Split, k: int) -> tuple[list[list[str]], np.ndarray]:
    """Top-k for every test user with the device scorer; returns lists and per-user ms."""
    from device.cf import ItemIndex, recommend

    index = ItemIndex(table.item_ids)
    recs, times = [], []
    train = split.train
    for u in range(train.shape[0]):
        hist = split.item_ids[train.indices[train.indptr[u] : train.indptr[u + 1]]]
        t0 = time.perf_counter()
        out = recommend(table, hist, np.ones(len(hist)), n=k, exclude=hist, index=index)
        times.append((time.perf_counter() - t0) * 1000.0)
        recs.append([r.item_id for r in out])
    return recs, np.asarray(times)


def evaluate_table(table, split: Split, k: int = 10) -> dict[str, float]:
    """Ranking metrics of a neighbour table scored by ``device.cf`` on a split."""
    recs, times = recommend_all(table, split, k)
    test = split.test
    relevant = [
        set(split.item_ids[test.indices[test.indptr[u] : test.indptr[u + 1]]])
        for u in range(test.shape[0])
    ]
    out = ranking_metrics(recs, relevant, k, len(split.item_ids))
    out["recommend_ms_p50"] = float(np.percentile(times, 50))
    out["recommend_ms_p95"] = float(np.percentile(times, 95))
    return out


def capped_random_split(users, items, timestamps, *, seed: int = 42, H: int | None = None) -> Split:
    """:func:`random_split`, then the history cap on the training events only.

    The learner never sees test events, so the cap (:func:`models.cowatch.cap_histories`,
    each user's ``H`` most recent distinct items, default ``HISTORY_CAP``) ranks each user's
    training events by their own timestamps. The test part is the protocol's, unchanged.
    """
    from models.cowatch import HISTORY_CAP, cap_histories

    users, items = np.asarray(users), np.asarray(items)
    user_ids, item_ids, u, i = _index(users, items)
    train_mask = _random_train_mask(u, 0.75, seed)
    test_mask = ~train_mask
    rows = np.flatnonzero(train_mask)
    keep = cap_histories(u[rows], i[rows], np.asarray(timestamps)[rows],
                         HISTORY_CAP if H is None else H)
    train_mask = np.zeros(len(u), dtype=bool)
    train_mask[rows[keep]] = True
    train = _matrices(u, i, train_mask, len(user_ids), len(item_ids))[0]
    test = _matrices(u, i, test_mask, len(user_ids), len(item_ids))[0]
    return Split(train, test, user_ids, item_ids)


def evaluate_device_cf(ratings, *, k: int = 10, seed: int = 42, check_memory: bool = True) -> dict:
    """Fit the shipped default CF on the protocol's train part; score it with ``device/cf.py``.

    ``ratings`` is a :class:`models.movielens.Interactions`. Every rating is an interaction
    with affinity 1 (MovieLens has no completion or recency to weight by). Training events go
    through the history cap first. With ``check_memory`` a fit predicted not to fit in this
    machine's memory is refused (:class:`models.sparse_ease.FitMemoryError`, naming
    ``--engine spark``) before it starts. ``peak_rss_mb`` is this process's peak resident set
    (``VmHWM``) after the fit and scoring.
    """
    from device.budget import status_mb
    from models.cowatch import default_model
    from models.sparse_ease import check_fit_memory, predicted_gram_nnz

    split = capped_random_split(ratings.users, ratings.items, ratings.timestamps, seed=seed)
    train = split.train
    if check_memory:
        check_fit_memory(train)
    model = default_model(len(split.item_ids))
    t0 = time.perf_counter()
    model.fit(train)
    fit_seconds = time.perf_counter() - t0
    table = model.to_table(split.item_ids)
    out = evaluate_table(table, split, k)
    out.update(
        model=type(model).__name__,
        neighbours_per_item=table.k,
        fit_seconds=fit_seconds,
        k=k,
        seed=seed,
        users=int(split.train.shape[0]),
        items=int(split.train.shape[1]),
        train_interactions=int(train.nnz),
        predicted_gram_nnz=predicted_gram_nnz(train),
        peak_rss_mb=status_mb("VmHWM"),
    )
    if getattr(model, "lambda_used_", None) is not None:
        out["lambda"] = model.lambda_used_
    return out
