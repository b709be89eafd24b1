"""Cold start: what the content model learns to predict, and how well it ranks new programmes.

Targets
-------
:func:`cf_targets` turns the warm items' viewing logs into one unit vector per item -- its
*collaborative representation* -- which the fusion model (``models/fusion.py``) learns to
predict from the clip alone. The default (``method="svd"``, PureSVD) is a truncated SVD of the
degree-normalised interaction matrix ``D_u^-1/2 X D_i^-1/2 ~ U S V^T``: item ``i`` gets
``v_i = V_i sqrt(S)`` (L2-normalised), so ``sum_{i in history} c_i v_i . v_j`` is a rank-D
co-watch score and a profile's completion-weighted sum of history vectors is the natural query
for a cold item's vector. ``method="ease"`` factorises the learned weights of the shipped
item-item model instead (top-D eigenpairs of ``(B + B^T) / 2`` of
:func:`models.cowatch.default_model`). Chosen on the *training* logs only (per-profile 80/20
hold-out of warm interactions, rank held-out items by ``query . v_j``, D=32, demo catalog):
NDCG@20 0.549 for "svd" vs 0.500 for "ease" (EASE itself 0.570, genre histogram 0.268).

Evaluation protocol (``interactions_future.csv``, never used for training)
---------------------------------------------------------------------------
*Cold start*: candidates are the cold items (released after the log cut-off, no training
events). For every profile with training history and at least one cold item in its future
logs, rank all cold items; relevance = the cold items it watched in the future. Metrics at
k=20 with :mod:`models.evaluate` (binary NDCG, recall). Rankers, all from information that
exists at the cut-off:

* ``content``: profile query = completion-weighted sum of the CF targets of its history items;
  cold item = its content embedding; score = dot product (the headline);
* ``content_c2c``: the same with the *content* embeddings of the history items (what a box
  without CF targets could do);
* ``genre``: the profile's completion-weighted genre histogram . the item's genre mixture
  (catalog metadata; the declared profile tastes in ``catalog.json`` are simulator truth and
  are **not** used);
* ``popularity``: a cold item has no popularity yet, so its prior is the warm popularity of its
  genres: ``sum_g mix_jg * pop_g`` with ``pop_g`` = training events per unit of genre weight
  among warm items (same ranking for every profile; ties by newest release);
* ``random``: mean over 20 seeded shuffles.

*Hybrid (whole catalog)*: candidates are all items the profile has not watched in training;
relevance = its future items among them. ``cf`` scores warm items with the learned item-item
weights (``x_u B``, what ``device.cf`` computes) and cannot reach cold items; ``hybrid`` gives
each cold item the similarity-weighted mean CF score of its ``knn`` nearest warm items in the
embedding space (content embedding of the cold item vs the warm items' CF targets), which
puts cold items on the warm items' score scale with no tuned mixing weight.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from models.evaluate import ndcg_at_k, recall_at_k

K_EVAL = 20


# --------------------------------------------------------------------------- data


def interaction_matrix(cat, weight: str = "completion") -> sp.csr_matrix:
    """Profiles x items (all catalog items; cold columns are empty) from the training logs.

    ``weight="completion"``: the largest completion of the profile on the item, 0 if its
    latest event is a dislike (a dislike is not evidence of co-watching); ``"binary"``: 1 per
    watched pair.
    """
    tr = cat.train
    n_p, n_i = len(cat.profile_ids), cat.n_items
    if len(tr) == 0:
        return sp.csr_matrix((n_p, n_i))
    if weight == "binary":
        vals = np.ones(len(tr))
    elif weight == "completion":
        vals = np.asarray(tr["completion"], dtype=np.float64)
    else:
        raise ValueError(f"weight must be 'completion' or 'binary', got {weight!r}")
    key = tr["profile"].astype(np.int64) * n_i + tr["item"]
    order = np.lexsort((tr["timestamp"], key))
    key_s, vals_s = key[order], vals[order]
    liked_s = tr["liked"][order]
    first = np.r_[True, key_s[1:] != key_s[:-1]]
    starts = np.flatnonzero(first)
    agg = np.maximum.reduceat(vals_s, starts)
    last = np.r_[starts[1:], len(key_s)] - 1
    agg = np.where(liked_s[last] < 0, 0.0, agg)
    uk = key_s[starts]
    X = sp.csr_matrix((agg, (uk // n_i, uk % n_i)), shape=(n_p, n_i))
    X.eliminate_zeros()
    return X


def seen_matrix(cat) -> sp.csr_matrix:
    """Profiles x items, 1 where the profile has any training event on the item."""
    tr = cat.train
    M = sp.csr_matrix((np.ones(len(tr)), (tr["profile"], tr["item"])),
                      shape=(len(cat.profile_ids), cat.n_items))
    M.data[:] = 1.0
    return M


def future_sets(cat, items_mask: np.ndarray | None = None) -> list[set]:
    """Per profile, the set of item indices it watched after the cut-off (optionally masked)."""
    out: list[set] = [set() for _ in range(len(cat.profile_ids))]
    fu = cat.future
    for u, i in zip(fu["profile"].tolist(), fu["item"].tolist()):
        if items_mask is None or items_mask[i]:
            out[u].add(i)
    return out


# --------------------------------------------------------------------------- targets


def cf_targets(X_warm: sp.spmatrix, dim: int, method: str = "svd", seed: int = 0
               ) -> tuple[np.ndarray, dict[str, Any]]:
    """Unit-norm D-dim collaborative representations of the warm items.

    Parameters
    ----------
    X_warm : scipy.sparse matrix, shape (n_profiles, n_warm)
        Training interactions on warm items (see :func:`interaction_matrix`).
    dim : int
        D.
    method : {"ease", "svd"}
        ``"ease"``: top-D eigenvectors of the symmetrised learned EASE weights, scaled by
        ``sqrt(eigenvalue)``; ``"svd"``: right singular vectors of
        ``D_u^-1/2 X D_i^-1/2`` scaled by ``sqrt(singular value)``.
    seed : int
        Seed of the EASE lambda selection.

    Returns
    -------
    targets : np.ndarray of float32, shape (n_warm, D)
        Rows with no signal (items nobody watched) are zero.
    info : dict
        ``model`` (the fitted item-item model, ``"ease"`` only), ``spectrum``, ``explained``.
    """
    X = sp.csr_matrix(X_warm, dtype=np.float64)
    n = X.shape[1]
    if dim >= n:
        raise ValueError(f"target dimension {dim} must be smaller than the number of warm items {n}")
    info: dict[str, Any] = {"method": method}
    if method == "ease":
        from models.cowatch import EASEModel

        model = EASEModel(seed=seed).fit(X)
        B = model.similarity.toarray()
        A = 0.5 * (B + B.T)
        lam, Q = np.linalg.eigh(A)
        top = np.argsort(-lam, kind="stable")[:dim]
        lam_d = np.maximum(lam[top], 0.0)
        V = Q[:, top] * np.sqrt(lam_d)
        pos = np.maximum(lam, 0.0)
        info.update(model=model, spectrum=lam_d.tolist(),
                    explained=float(lam_d.sum() / max(pos.sum(), 1e-12)), lambda_=model.lambda_used_)
    elif method == "svd":
        from scipy.sparse.linalg import svds

        du = np.asarray(X.sum(axis=1)).ravel()
        di = np.asarray(X.sum(axis=0)).ravel()
        Xn = sp.diags(1.0 / np.sqrt(np.maximum(du, 1e-12))) @ X @ sp.diags(1.0 / np.sqrt(np.maximum(di, 1e-12)))
        v0 = np.random.default_rng(seed).standard_normal(min(Xn.shape))
        _, s, Vt = svds(Xn, k=dim, v0=v0)
        order = np.argsort(-s, kind="stable")
        V = Vt[order].T * np.sqrt(s[order])
        info.update(spectrum=s[order].tolist())
    else:
        raise ValueError(f"method must be 'ease' or 'svd', got {method!r}")
    # Eigen/singular vectors have arbitrary signs: fix them so the targets are reproducible.
    signs = np.sign(V[np.argmax(np.abs(V), axis=0), np.arange(V.shape[1])])
    V = V * np.where(signs == 0, 1.0, signs)
    norms = np.linalg.norm(V, axis=1, keepdims=True)
    V = np.where(norms > 1e-12, V / np.maximum(norms, 1e-12), 0.0)
    return V.astype(np.float32), info


# --------------------------------------------------------------------------- ranking helpers


def _rank(scores: np.ndarray, candidates: np.ndarray, tiebreak: np.ndarray, k: int) -> list[int]:
    """Top-k of ``candidates`` (item indices) by score, ties by ``tiebreak`` then index."""
    s = scores[candidates]
    order = np.lexsort((candidates, -tiebreak[candidates], -s))
    return candidates[order[:k]].tolist()


def _metrics(recs: list[list[int]], rel: list[set], k: int, prefix: str = "") -> dict[str, float]:
    return {f"{prefix}ndcg@{k}": ndcg_at_k(recs, rel, k), f"{prefix}recall@{k}": recall_at_k(recs, rel, k)}


def genre_popularity(cat, X: sp.csr_matrix) -> np.ndarray:
    """Each item's genre-popularity prior ``sum_g mix_jg * pop_g`` (warm training events only)."""
    G = cat.genre_matrix.astype(np.float64)
    warm = ~cat.cold
    events = np.asarray((X > 0).sum(axis=0)).ravel()
    per_genre = (events[warm, None] * G[warm]).sum(0) / np.maximum(G[warm].sum(0), 1e-12)
    return G @ per_genre


# --------------------------------------------------------------------------- cold start


def evaluate_cold_start(
    cat,
    embeddings: np.ndarray,
    targets: np.ndarray,
    X: sp.csr_matrix,
    *,
    k: int = K_EVAL,
    seed: int = 0,
    n_random: int = 20,
) -> dict[str, Any]:
    """Rank the cold items for every eligible profile with each ranker; metrics at ``k``.

    Parameters
    ----------
    cat : models.catalog.Catalog
    embeddings : np.ndarray, shape (n_items, D)
        Content embedding of every catalog item.
    targets : np.ndarray, shape (n_items, D)
        CF target of every warm item (rows of cold items are ignored).
    X : scipy.sparse matrix, shape (n_profiles, n_items)
        Training interactions (:func:`interaction_matrix`).

    Returns
    -------
    dict
        ``ndcg@k`` / ``recall@k`` of the content ranker (the headline) and
        ``<ranker>_ndcg@k`` / ``<ranker>_recall@k`` for ``content_c2c``, ``genre``,
        ``popularity`` and ``random``; ``profiles``, ``cold_items``, ``relevant_per_profile``.
    """
    cold = np.flatnonzero(cat.cold)
    X = sp.csr_matrix(X)
    rel_all = future_sets(cat, cat.cold)
    has_hist = np.diff(X.indptr) > 0
    users = [u for u in range(X.shape[0]) if has_hist[u] and rel_all[u]]
    rel = [rel_all[u] for u in users]
    Xu = X[users]
    warm_t = np.where(cat.cold[:, None], 0.0, targets).astype(np.float64)
    E = np.asarray(embeddings, dtype=np.float64)
    G = cat.genre_matrix.astype(np.float64)
    newest = cat.release_ts.astype(np.float64)
    zeros = np.zeros(cat.n_items)

    scorers = {
        "content": (Xu @ warm_t) @ E.T,
        "content_c2c": (Xu @ np.where(cat.cold[:, None], 0.0, E)) @ E.T,
        "genre": (Xu @ G) @ G.T,
    }
    out: dict[str, Any] = {}
    for name, S in scorers.items():
        recs = [_rank(S[r], cold, newest, k) for r in range(len(users))]
        out.update(_metrics(recs, rel, k, "" if name == "content" else f"{name}_"))
    pop = genre_popularity(cat, X)
    pop_recs = _rank(pop, cold, newest, k)
    out.update(_metrics([pop_recs] * len(users), rel, k, "popularity_"))
    rng = np.random.default_rng(seed)
    rand = {f"random_ndcg@{k}": 0.0, f"random_recall@{k}": 0.0}
    for _ in range(n_random):
        recs = [_rank(rng.random(cat.n_items), cold, zeros, k) for _ in users]
        for key, v in _metrics(recs, rel, k, "random_").items():
            rand[key] += v / n_random
    out.update(rand)
    out.update(profiles=len(users), cold_items=int(len(cold)),
               relevant_per_profile=float(np.mean([len(r) for r in rel])) if rel else 0.0, k=k)
    return out


# --------------------------------------------------------------------------- hybrid


def inherited_scores(cf_scores: np.ndarray, query: np.ndarray, keys: np.ndarray,
                     key_rows: np.ndarray, knn: int) -> np.ndarray:
    """Scores for items that have none: the similarity-weighted mean of their neighbours' scores.

    Parameters
    ----------
    cf_scores : np.ndarray, shape (P, N)
        Scores of every item for P profiles (only ``key_rows`` columns are read).
    query : np.ndarray, shape (Q, D)
        Vectors of the items to score (cold items' content embeddings).
    keys : np.ndarray, shape (W, D)
        Vectors of the items that have scores (warm items' CF targets), rows ``key_rows``.
    knn : int
        Neighbours per query item (positive similarity only).

    Returns
    -------
    np.ndarray, shape (P, Q)
    """
    S = np.asarray(query, np.float64) @ np.asarray(keys, np.float64).T  # (Q, W)
    kk = min(knn, S.shape[1])
    nb = np.argpartition(-S, kk - 1, axis=1)[:, :kk]
    w = np.maximum(np.take_along_axis(S, nb, 1), 0.0)  # (Q, kk)
    w = w / np.maximum(w.sum(1, keepdims=True), 1e-12)
    Wfull = np.zeros((S.shape[0], S.shape[1]))
    np.put_along_axis(Wfull, nb, w, 1)
    return cf_scores[:, key_rows] @ Wfull.T


def evaluate_hybrid(
    cat,
    similarity: sp.spmatrix,
    embeddings: np.ndarray,
    targets: np.ndarray,
    X: sp.csr_matrix,
    *,
    k: int = K_EVAL,
    knn: int = 20,
) -> dict[str, Any]:
    """Whole-catalog ranking: CF alone vs CF for warm items + content-inherited scores for cold.

    Parameters
    ----------
    similarity : scipy.sparse matrix, shape (n_warm, n_warm)
        The learned item-item weights over the warm items (in catalog order of the warm items).
    embeddings, targets : np.ndarray, shape (n_items, D)
    X : scipy.sparse matrix, shape (n_profiles, n_items)
    """
    warm = np.flatnonzero(~cat.cold)
    cold = np.flatnonzero(cat.cold)
    X = sp.csr_matrix(X)
    seen = seen_matrix(cat)
    fut = future_sets(cat)
    has_hist = np.diff(X.indptr) > 0
    users, rel = [], []
    for u in range(X.shape[0]):
        seen_u = set(seen.indices[seen.indptr[u] : seen.indptr[u + 1]].tolist())
        r = fut[u] - seen_u
        if has_hist[u] and r:
            users.append(u)
            rel.append(r)
    Xw = X[users][:, warm]
    cf = np.full((len(users), cat.n_items), -np.inf)
    cf[:, warm] = np.asarray((Xw @ sp.csr_matrix(similarity)).todense())
    pop = np.asarray((X > 0).sum(axis=0), dtype=np.float64).ravel()
    hyb = cf.copy()
    hyb[:, cold] = inherited_scores(cf, embeddings[cold], targets[warm], warm, knn)

    out: dict[str, Any] = {}
    rel_cold = [r & set(cold.tolist()) for r in rel]
    for name, S in (("cf", cf), ("hybrid", hyb)):
        recs = []
        for row, u in enumerate(users):
            cand = np.setdiff1d(np.arange(cat.n_items), seen.indices[seen.indptr[u] : seen.indptr[u + 1]])
            recs.append(_rank(S[row], cand, pop, k))
        out.update(_metrics(recs, rel, k, f"{name}_"))
        out[f"{name}_cold_share@{k}"] = float(np.mean([np.mean(cat.cold[r]) for r in recs]))
        # how much of the future (cold) demand the list reaches
        out[f"{name}_cold_recall@{k}"] = recall_at_k(recs, rel_cold, k)
    out.update(profiles=len(users), knn=knn, k=k,
               future_cold_share=float(np.mean([np.mean(cat.cold[list(r)]) for r in rel])))
    return out


# --------------------------------------------------------------------------- real catalogs
#
# A real catalog has no clips for most items: what places a cold item in CF space is whatever
# content it has -- vectors from a fleet-side model, and its metadata. ``place_cold`` learns one
# linear map from those features to the warm items' CF embeddings (ridge regression, lambda by
# generalised cross-validation: no held-out constant to tune per catalog) and applies it to the
# cold items. ``shipped_scores`` is the box's New-for-you ranking (``device.engine``) written
# for many profiles at once, so ``evaluate_catalog_cold_start`` measures what the bundle does.

#: Quantile bins of release time and duration in the metadata features.
META_BINS = 8
#: Dimension of a bundle's CF item embeddings when no content model fixes it.
EMBEDDING_DIM = 32


def embedding_dim(n_warm: int, n_profiles: int) -> int:
    """:data:`EMBEDDING_DIM`, or less for a catalog too small to carry it (a rank-D
    factorisation needs more than D warm items and profiles)."""
    return max(1, min(EMBEDDING_DIM, n_warm - 1, n_profiles - 1))


def metadata_features(items) -> tuple[np.ndarray, np.ndarray]:
    """Numeric features of every item from its metadata alone.

    Parameters
    ----------
    items : models.readers.Items

    Returns
    -------
    features : np.ndarray of float32, shape (N, F)
        Genre weights (as the engine weighs them, primary first); one-hot quantile bins of
        release time and of log duration, each with an "unknown" column; one-hot maturity
        rating with "unrated". Constant columns are dropped.
    has_content : np.ndarray of bool, shape (N,)
        Items whose metadata says anything about their content (at least one genre).
    """
    cols = [items.genre_matrix()]
    for values in (np.asarray(items.release, np.float64),
                   np.log(np.asarray(items.durations, np.float64))):
        known = np.isfinite(values)
        block = np.zeros((len(values), META_BINS + 1), np.float32)
        block[~known, META_BINS] = 1.0
        if known.any():
            edges = np.quantile(values[known], np.linspace(0, 1, META_BINS + 1)[1:-1])
            block[np.flatnonzero(known), np.searchsorted(edges, values[known], side="right")] = 1.0
        cols.append(block)
    ratings = sorted(set(np.asarray(items.maturity).tolist()))
    block = np.zeros((len(items), len(ratings)), np.float32)
    block[np.arange(len(items)), np.searchsorted(ratings, items.maturity)] = 1.0
    cols.append(block)
    F = np.hstack(cols)
    F = F[:, F.std(axis=0) > 0]
    has = np.array([len(g) > 0 for g in items.genres], dtype=bool)
    return F.astype(np.float32), has


def _ridge_gcv(A: np.ndarray, Y: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, float]:
    """Ridge ``min |A W - Y|^2 + lam |W|^2`` with ``lam`` minimising the GCV score."""
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    UtY = U.T @ Y
    n = A.shape[0]
    best, best_lam = np.inf, float(grid[0])
    resid0 = float((Y * Y).sum() - (UtY * UtY).sum())  # part of Y outside A's column space
    for lam in grid:
        f = s * s / (s * s + lam)
        r = resid0 + float((((1 - f)[:, None] * UtY) ** 2).sum())
        gcv = r / max(n - f.sum(), 1e-9) ** 2
        if gcv < best:
            best, best_lam = gcv, float(lam)
    W = Vt.T @ ((s / (s * s + best_lam))[:, None] * UtY)
    return W, best_lam


def place_cold(cf_embeddings: np.ndarray, warm: np.ndarray, features: np.ndarray,
               has_features: np.ndarray, *, series: np.ndarray | None = None,
               reads_genres: bool = True) -> tuple[np.ndarray, dict[str, Any]]:
    """Place cold items in CF space from their content features (a map learned on warm items).

    Parameters
    ----------
    cf_embeddings : np.ndarray, shape (N, D)
        CF embedding of every item (rows of cold items are ignored).
    warm : np.ndarray of bool, shape (N,)
    features : np.ndarray, shape (N, F)
        Content features (vectors and/or :func:`metadata_features`), standardised here.
    has_features : np.ndarray of bool, shape (N,)
        Items whose features carry content; the others stay at zero (no placement).
    series : np.ndarray of str, shape (N,), optional
        Series name per item (``""`` none): a cold episode of a series with warm episodes is
        placed at their mean direction -- co-watch of a show's episodes is its strongest signal.
    reads_genres : bool
        Whether ``features`` include the genres (recorded in ``info`` for the bundle manifest:
        the box then does not add its genre match on top).

    Returns
    -------
    embeddings : np.ndarray of float32, shape (N, D)
        ``cf_embeddings`` for warm rows, unit-norm placements for cold rows with features or a
        warm series, zero otherwise.
    info : dict
        ``lambda``, ``n_fit`` (warm items the map was fitted on), ``placed``, ``by_series``,
        ``reads_genres``.
    """
    E = np.asarray(cf_embeddings, np.float64)
    warm = np.asarray(warm, bool)
    out = np.where(warm[:, None], E, 0.0)
    F = np.asarray(features, np.float64)
    fit = warm & has_features & (np.linalg.norm(E, axis=1) > 0)
    info: dict[str, Any] = {"lambda": None, "n_fit": int(fit.sum()), "placed": 0, "by_series": 0,
                            "reads_genres": bool(reads_genres)}
    cold_f = ~warm & has_features
    if F.shape[1] and fit.sum() >= 2 and cold_f.any():
        mu, sd = F[fit].mean(0), F[fit].std(0)
        Z = (F - mu) / np.where(sd > 0, sd, 1.0)
        A = np.hstack([Z, np.ones((len(Z), 1))])
        Y = E[fit] / np.linalg.norm(E[fit], axis=1, keepdims=True)
        grid = A.shape[0] * np.logspace(-4, 1, 26)
        W, lam = _ridge_gcv(A[fit], Y, grid)
        out[cold_f] = A[cold_f] @ W
        info.update({"lambda": lam, "placed": int(cold_f.sum())})
    if series is not None:
        series = np.asarray(series, dtype=object)
        sums: dict[str, np.ndarray] = {}
        for r in np.flatnonzero(warm & (series != "")):
            e = E[r] / max(np.linalg.norm(E[r]), 1e-12)
            sums[series[r]] = sums.get(series[r], 0.0) + e
        for r in np.flatnonzero(~warm & (series != "")):
            if series[r] in sums:
                out[r] = sums[series[r]]
                info["by_series"] += 1
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    cold_rows = ~warm
    out[cold_rows] = np.where(norms[cold_rows] > 0, out[cold_rows] / np.maximum(norms[cold_rows], 1e-12), 0.0)
    return out.astype(np.float32), info


def _standardise_rows(S: np.ndarray) -> np.ndarray:
    """Each row to zero mean and unit spread over finite entries; NaN -> 0 (the engine's
    ``_standardise``, per profile)."""
    ok = np.isfinite(S)
    cnt = np.maximum(ok.sum(1, keepdims=True), 1)
    Z = np.where(ok, S, 0.0)
    mean = Z.sum(1, keepdims=True) / cnt
    var = (np.where(ok, (S - mean) ** 2, 0.0)).sum(1, keepdims=True) / cnt
    sd = np.sqrt(var)
    out = np.where(sd > 0, (Z - mean) / np.where(sd > 0, sd, 1.0), 0.0)
    return np.where(ok, out, 0.0)


def shipped_scores(A: sp.csr_matrix, embeddings: np.ndarray, genre_weights: np.ndarray,
                   candidates: np.ndarray, *, genre_term: bool = True) -> np.ndarray:
    """New-for-you scores the box computes (``device.engine.Engine._new_for_you``), for many
    profiles: ``standardise(unit(e_c) . sum_h w_h unit(e_h))``, plus ``standardise(genre
    match)`` when ``genre_term`` -- which the engine leaves out for a bundle whose cold
    embeddings were placed from the genres already (manifest ``cold_start.reads_genres``).

    Parameters
    ----------
    A : scipy.sparse matrix, shape (P, N)
        Positive affinities of each profile's history items.
    embeddings : np.ndarray, shape (N, D)
        Bundle embeddings (warm: CF, cold: placed).
    genre_weights : np.ndarray, shape (N, G)
        Genre weights as the engine computes them (rows of items without genres are zero).
    candidates : np.ndarray of int
        Item rows to score.

    Returns
    -------
    np.ndarray, shape (P, len(candidates))
    """
    A = sp.csr_matrix(A, dtype=np.float64)
    E = np.asarray(embeddings, np.float64)
    U = E / np.where(np.linalg.norm(E, axis=1, keepdims=True) > 0,
                     np.linalg.norm(E, axis=1, keepdims=True), 1.0)
    tot = np.asarray(A.sum(axis=1)).ravel()
    W = sp.diags(1.0 / np.where(tot > 0, tot, 1.0)) @ A
    content = (W @ U) @ U[candidates].T
    if not genre_term:
        return _standardise_rows(content)
    G = np.asarray(genre_weights, np.float64)
    prof = A @ G
    total = prof.sum(axis=1, keepdims=True)
    genre = (prof @ G[candidates].T) / np.where(total > 0, total, 1.0)
    genre[:, G[candidates].sum(axis=1) == 0] = np.nan
    return _standardise_rows(content) + _standardise_rows(genre)


def _ranked(S: np.ndarray, candidates: np.ndarray, k: int) -> list[list[int]]:
    """Top-k candidate rows per profile (ties by candidate order, as a stable sort)."""
    order = np.argsort(-S, axis=1, kind="stable")[:, :k]
    return [candidates[o].tolist() for o in order]


def evaluate_catalog_cold_start(items, log, *, vectors=None, seed: int = 0,
                                cold_fraction: float = 0.2, dim: int | None = None,
                                k: int = K_EVAL,
                                n_random: int = 20) -> dict[str, Any]:
    """Cold start on a real catalog: hide a seeded share of the items that have content.

    Protocol: candidates for hiding are the items with content (a vector, or -- without
    vectors -- at least one genre) and at least one interaction; a seeded random
    ``cold_fraction`` of them become cold and all their interactions leave training. CF
    embeddings (:func:`cf_targets`, PureSVD) are learned from the rest, cold items are placed
    by :func:`place_cold` from vectors + metadata, exactly as ``tvrec bundle build`` does, and
    every profile that interacted with a cold item (and has training history) gets all cold
    items ranked; relevance = the cold items it interacted with.

    Parameters
    ----------
    items : models.readers.Items
    log : models.readers.Log
        Read against ``items`` (unknown items dropped).
    vectors : tuple (matrix [N, D'], has [N]) , optional
        Content vectors aligned with ``items`` (e.g. ``ItemVectors.align``).

    Returns
    -------
    dict
        ``content_ndcg@k``, ``content_recall@k`` (the shipped ranking), ``genre_ndcg@k``,
        ``genre_recall@k`` (genre labels alone), ``random_ndcg@k``, ``random_recall@k``;
        with ``vectors`` also ``metadata_ndcg@k``, ``metadata_recall@k``: the shipped ranking
        from metadata alone on the same held-out items, so the vectors' gain is side by side;
        ``n_cold_items``, ``n_users``, ``content`` (what the shipped ranking read), ``lambda``.
    """
    from models.readers import log_matrix

    X, _ = log_matrix(log, items)
    n = len(items)
    meta, has_meta = metadata_features(items)
    if vectors is not None:
        V, has_vec = vectors
        content, features = "vectors+metadata", np.hstack([np.asarray(V, np.float64), meta])
        has_content = np.asarray(has_vec, bool)
    else:
        content, features, has_content = "metadata", meta, has_meta
    watched = np.diff(sp.csc_matrix(X).indptr) > 0
    pool = np.flatnonzero(has_content & watched)
    rng = np.random.default_rng(seed)
    n_cold = int(round(cold_fraction * len(pool)))
    if n_cold < 1 or len(pool) - n_cold < 3:
        raise ValueError(f"{len(pool)} items with content and interactions: too few to hold out "
                         f"{cold_fraction:.0%} and learn CF embeddings from the rest")
    cold = np.zeros(n, bool)
    cold[rng.choice(pool, n_cold, replace=False)] = True
    if dim is None:  # the bundle's rule
        dim = embedding_dim(int((watched & ~cold).sum()), X.shape[0])
    cold_rows = np.flatnonzero(cold)

    train = sp.csr_matrix(X @ sp.diags((~cold).astype(np.float64)))
    train.eliminate_zeros()
    test = sp.csr_matrix(X @ sp.diags(cold.astype(np.float64)))
    test.eliminate_zeros()
    warm = (np.diff(sp.csc_matrix(train).indptr) > 0)
    E = np.zeros((n, dim), np.float32)
    w_rows = np.flatnonzero(warm)
    E[w_rows], _ = cf_targets(train[:, w_rows], dim, seed=seed)
    has_hist = np.diff(train.indptr) > 0
    users = np.flatnonzero(has_hist & (np.diff(test.indptr) > 0))
    rel = [set(test.indices[test.indptr[u]:test.indptr[u + 1]].tolist()) for u in users]
    A = train[users]
    G = items.genre_matrix()

    def shipped(F, has_f, prefix):
        placed, info = place_cold(E, warm, F, has_f, series=items.series)
        # the placement read the genres (metadata features), so the box ranks on content alone
        S = shipped_scores(A, placed, G, cold_rows, genre_term=not info["reads_genres"])
        return _metrics(_ranked(S, cold_rows, k), rel, k, prefix), info

    out: dict[str, Any]
    out, info = shipped(features, has_content | has_meta, "content_")
    if vectors is not None:  # the same split without the vectors: what the vectors add
        out.update(shipped(meta, has_meta, "metadata_")[0])

    labels = (G > 0).astype(np.float64)
    labels /= np.maximum(labels.sum(1, keepdims=True), 1.0)
    Sg = np.asarray(A @ labels) @ labels[cold_rows].T
    out.update(_metrics(_ranked(Sg, cold_rows, k), rel, k, "genre_"))
    rand = {f"random_ndcg@{k}": 0.0, f"random_recall@{k}": 0.0}
    for _ in range(n_random):
        Sr = rng.random((len(users), len(cold_rows)))
        for key, v in _metrics(_ranked(Sr, cold_rows, k), rel, k, "random_").items():
            rand[key] += v / n_random
    out.update(rand)
    out.update({"n_cold_items": int(n_cold), "n_users": int(len(users)), "content": content,
                "lambda": info["lambda"], "seed": seed, "k": k, "dim": dim,
                "cold_fraction": cold_fraction})
    return out
