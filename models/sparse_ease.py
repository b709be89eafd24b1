"""A learned item-item model (EASE-style ridge regression) that never forms an N x N array.

Dense EASE (Steck 2019) regresses every item's column of the interaction matrix on *all*
other items: one N x N inverse, 4.6 GB and minutes at 10k items. The box keeps only K weights
per item anyway, so we solve the same ridge regression on a small support per item instead:

1. **Candidates.** Each target item ``j`` gets the ``C`` items with the largest
   cosine-with-shrinkage co-watch score ``G[i, j] / (sqrt(G[i, i] G[j, j]) + shrink)``,
   read from the sparse Gram matrix ``G = X^T X`` (:func:`candidate_support`).
2. **Ridge on the candidates.** ``w[S_j, j] = (G[S_j, S_j] + lambda I)^-1 G[S_j, j]``, one
   ``C x C`` solve per item, blocks gathered from the sparse Gram (:func:`solve_supports`).
3. **Prune rows.** The shipped table is indexed by the *watched* item ``i`` (row ``i`` of
   ``W``), so each row keeps its K largest **positive** weights (:func:`keep_top_k`):
   negative weights cannot rank an item up.
4. **Re-solve** each target's regression on exactly the kept support (step 2 again on the
   smaller support): the constrained least-squares optimum for that sparsity pattern, so the
   kept weights absorb what the pruned ones did.

Every row of the result has at most K entries, and peak memory grows with the Gram's
non-zeros (plus ``N x C`` support arrays), never with ``N^2``. The four steps are pure
functions on plain arrays so the Spark job (``models/fleet_spark.py``, branch ``spark``) runs
the very same code inside ``mapInPandas``; see ``/work/coord/NOTES-learner.md`` for the
contract (inputs, determinism and tie-break rules).
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import scipy.sparse as sp

from device.errors import TvrecError

#: Candidate items per target (step 1). 128 candidates then K=64 kept per row measured as
#: good as dense EASE's own support on MovieLens and on synthetic Zipf logs (cf-anchors).
DEFAULT_CANDIDATES = 128
#: Shrinkage of the cosine score used to pick candidates (damps pairs seen by few users).
DEFAULT_SHRINK = 10.0
#: ``lambda = LAMBDA_PER_POPULARITY * (popularity-weighted mean item count)``, see
#: :func:`choose_lambda`.
LAMBDA_PER_POPULARITY = 2.0

PAD = -1  # padding of support arrays


# ------------------------------------------------------------------------------ Gram


def binary_user_items(user_items: sp.spmatrix) -> sp.csr_matrix:
    """A users x items 0/1 matrix (int32, canonical CSR) from any non-negative sparse matrix."""
    X = sp.csr_matrix(user_items)
    X.sum_duplicates()
    X.data = (X.data > 0).astype(np.int32)
    X.eliminate_zeros()
    X = X.astype(np.int32)
    X.sort_indices()
    return X


def gram_matrix(user_items: sp.spmatrix) -> sp.csr_matrix:
    """Co-watch counts ``G = X^T X`` of the binary interactions, diagonal included.

    Parameters
    ----------
    user_items : scipy.sparse matrix, shape (n_users, n_items)
        Interactions; any positive entry counts as one.

    Returns
    -------
    scipy.sparse.csr_matrix of int32, shape (n_items, n_items)
        Symmetric, canonical (sorted column indices, no duplicates). ``G[i, i]`` is the number
        of users of item ``i``; ``G[i, j]`` the number of users of both. Counts are exact
        integers, so any engine that counts the same pairs produces the same matrix.
    """
    X = binary_user_items(user_items)
    G = (X.T.tocsr() @ X).tocsr()
    G.sum_duplicates()
    G.sort_indices()
    return G


def predicted_gram_nnz(user_items: sp.spmatrix) -> int:
    """Predicted stored entries of :func:`gram_matrix` (an estimate, no Gram formed).

    Row ``a`` of the Gram holds the distinct items co-watched with ``a``. Its users bring
    ``t_a = sum_{u in users(a)} n_u`` item draws (one sparse product); if those fell on items in
    proportion to their popularity ``c_b / E`` (``E`` interactions), row ``a`` would hold
    ``f(t_a) = sum_b 1 - exp(-t_a c_b / E)`` distinct items -- never more than ``t_a`` or ``N``.
    ``f`` is evaluated on a log grid of ``t`` and interpolated (``O(N)``). Taste structure
    concentrates co-watching on fewer pairs, so this errs high; it never exceeds the plain
    bound ``sum_u n_u^2``.
    """
    X = binary_user_items(user_items)
    n_u = np.diff(X.indptr).astype(np.float64)
    c = np.asarray(X.sum(axis=0)).ravel().astype(np.float64)
    E = c.sum()
    if E == 0:
        return 0
    t = np.asarray(X.T @ n_u).ravel()  # item draws per row
    w = c[c > 0] / E
    grid = np.unique(np.r_[0.0, np.geomspace(1.0, max(t.max(), 1.0), 200)])
    f = np.array([np.sum(-np.expm1(-g * w)) for g in grid])
    est = np.minimum(np.interp(t, grid, f), t)
    return int(min(est.sum(), (n_u**2).sum()))


#: Peak bytes per Gram entry while fitting, measured by ``bench/cf_scale.py`` (int32 indices and
#: data, with scipy's product and our row chunks alive at once).
BYTES_PER_GRAM_ENTRY = 20


def predicted_fit_bytes(user_items: sp.spmatrix, n_candidates: int = DEFAULT_CANDIDATES) -> int:
    """Predicted peak bytes of :func:`fit_sparse_ease` on ``user_items``.

    The Gram dominates (:data:`BYTES_PER_GRAM_ENTRY` per predicted entry), then the per-item
    support and weight arrays (``N x C``: int32 + two float64), the interactions, and a fixed
    working set for the batched solves.
    """
    X = sp.csr_matrix(user_items)
    n_items = X.shape[1]
    return int(BYTES_PER_GRAM_ENTRY * predicted_gram_nnz(X) + 20 * n_items * n_candidates
               + 24 * X.nnz + 200 * 2**20)


def available_memory_bytes() -> int | None:
    """Memory this process may still use: ``MemAvailable``, lowered by an address-space limit
    (``ulimit -v``) and a cgroup limit (v1 or v2).

    ``None`` where neither can be read (not Linux).
    """
    avail = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:  # an address-space limit (ulimit -v) caps this process too
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            with open("/proc/self/status") as fh:
                size = next(int(x.split()[1]) * 1024 for x in fh if x.startswith("VmSize:"))
            room = max(soft - size, 0)
            avail = room if avail is None else min(avail, room)
    except (ImportError, OSError, StopIteration, ValueError):
        pass
    for limit_f, usage_f in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                             ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                              "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_f) as fh:
                raw = fh.read().strip()
            with open(usage_f) as fh:
                usage = int(fh.read().strip())
        except (OSError, ValueError):
            continue
        if raw.isdigit() and int(raw) < 2**60:  # "max" or a huge number: no limit
            room = max(int(raw) - usage, 0)
            avail = room if avail is None else min(avail, room)
        break
    return avail


class FitMemoryError(TvrecError):
    """The in-process fit would need more memory than this machine has."""


def check_fit_memory(user_items: sp.spmatrix, available: int | None = None) -> int:
    """Refuse, in one line naming ``--engine spark``, a fit predicted not to fit in memory.

    Parameters
    ----------
    user_items : scipy.sparse matrix
        The (capped) interactions that would be fitted.
    available : int, optional
        Bytes available (default :func:`available_memory_bytes`).

    Returns
    -------
    int
        The predicted peak bytes (when they fit).
    """
    need = predicted_fit_bytes(user_items)
    if available is None:
        available = available_memory_bytes()
    if available is not None and need > available:
        raise FitMemoryError(
            f"the in-process learner would need ~{need / 2**30:.1f} GB "
            f"(predicted Gram matrix of {predicted_gram_nnz(user_items):,} co-counts) but "
            f"{available / 2**30:.1f} GB is available; learn on Spark with --engine spark"
        )
    return need


# ------------------------------------------------------------------------ candidates


def candidate_support(
    gram_rows: sp.csr_matrix,
    rows: np.ndarray,
    counts: np.ndarray,
    n_candidates: int = DEFAULT_CANDIDATES,
    shrink: float = DEFAULT_SHRINK,
) -> np.ndarray:
    """Each row item's candidate support: its top cosine-with-shrinkage co-watch neighbours.

    Parameters
    ----------
    gram_rows : scipy.sparse.csr_matrix, shape (len(rows), n_items)
        Rows ``rows`` of the Gram matrix (any subset, any order; entries on the diagonal and
        zeros are ignored).
    rows : np.ndarray of int, shape (len(rows),)
        Global item index of each row of ``gram_rows``.
    counts : np.ndarray, shape (n_items,)
        The Gram's diagonal (users per item), for every item.
    n_candidates : int
        ``C``, candidates kept per item.
    shrink : float
        Shrinkage in ``score = G[i, j] / (sqrt(G[i, i] G[j, j]) + shrink)``.

    Returns
    -------
    np.ndarray of int32, shape (len(rows), C)
        Candidate item indices of each row, **sorted ascending**, padded with ``-1`` at the end.
        The kept set is the ``C`` largest scores (float64, computed exactly as above), ties
        broken by the smaller item index; only pairs with ``G[i, j] > 0`` qualify. A row's
        result depends on that row and ``counts`` only, so any partition of the rows gives
        the same answer.
    """
    G = sp.csr_matrix(gram_rows)
    G.sort_indices()
    rows = np.asarray(rows, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.float64)
    n = G.shape[0]
    out = np.full((n, n_candidates), PAD, dtype=np.int32)
    step = max(1, int(4_000_000 // max(1, G.nnz / max(n, 1))))  # ~4M entries per chunk
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        a, b = G.indptr[lo], G.indptr[hi]
        lens = np.diff(G.indptr[lo : hi + 1])
        local = np.repeat(np.arange(hi - lo), lens)
        cols = G.indices[a:b].astype(np.int64)
        vals = G.data[a:b].astype(np.float64)
        glob = rows[lo:hi][local]
        score = vals / (np.sqrt(counts[glob] * counts[cols]) + shrink)
        ok = (vals > 0) & (cols != glob)
        local, cols, score = local[ok], cols[ok], score[ok]
        order = np.lexsort((cols, -score, local))  # by row, best score first, ties by index
        local, cols = local[order], cols[order]
        starts = np.searchsorted(local, np.arange(hi - lo))
        rank = np.arange(len(local)) - starts[local]
        keep = rank < n_candidates
        local, cols = local[keep], cols[keep]
        # re-sort each row's kept candidates by item index (blocks are built in that order)
        order = np.lexsort((cols, local))
        local, cols = local[order], cols[order]
        pos = np.arange(len(local)) - np.searchsorted(local, np.arange(hi - lo))[local]
        out[lo + local, pos] = cols
    return out


# -------------------------------------------------------------------------- solves


def _lookup(G: sp.csr_matrix, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``G[r[n], c[n]]`` for every n, by binary search in each (sorted) row.

    scipy's ``csr_sample_values`` binary-searches only when asked for more than ``nnz / 10``
    samples and otherwise scans whole rows (slow on popular items' long rows), so small
    requests are padded past that threshold with cheap lookups of entry (0, 0).
    """
    n = len(r)
    need = G.nnz // 10 + 1
    if n < need:
        r = np.concatenate([r, np.zeros(need - n, dtype=r.dtype)])
        c = np.concatenate([c, np.zeros(need - n, dtype=c.dtype)])
    return np.asarray(G[r, c], dtype=np.float64).ravel()[:n]


def gram_blocks(
    gram: sp.csr_matrix, targets: np.ndarray, supports: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The ridge systems of a batch of targets: ``G[S_j, S_j]`` and ``G[S_j, j]``.

    Parameters
    ----------
    gram : scipy.sparse.csr_matrix, shape (n_items, n_items)
        Canonical symmetric Gram matrix (:func:`gram_matrix`).
    targets : np.ndarray of int, shape (T,)
    supports : np.ndarray of int, shape (T, S)
        Support of each target, ``-1`` padded (any order).

    Returns
    -------
    blocks : np.ndarray of float64, shape (T, S, S)
        Padding rows/columns are zero.
    rhs : np.ndarray of float64, shape (T, S)
    """
    supports = np.asarray(supports, dtype=np.int64)
    T, S = supports.shape
    valid = supports >= 0
    sup = np.where(valid, supports, 0)
    iu, ju = np.triu_indices(S)
    r, c = sup[:, iu], sup[:, ju]
    # query the shorter of the two rows (the Gram is symmetric): fewer cache misses
    lens = np.diff(gram.indptr)
    swap = lens[r] > lens[c]
    r, c = np.where(swap, c, r), np.where(swap, r, c)
    tgt = np.broadcast_to(np.asarray(targets, dtype=np.int64)[:, None], sup.shape)
    vals = _lookup(gram, np.concatenate([r.ravel(), sup.ravel()]),
                   np.concatenate([c.ravel(), tgt.ravel()]))
    upper = vals[: r.size].reshape(T, len(iu))
    blocks = np.zeros((T, S, S))
    blocks[:, iu, ju] = upper
    blocks[:, ju, iu] = upper
    rhs = vals[r.size :].reshape(T, S)
    mask = valid[:, :, None] & valid[:, None, :]
    blocks *= mask
    rhs *= valid
    return blocks, rhs


def solve_supports(
    gram: sp.csr_matrix,
    targets: np.ndarray,
    supports: np.ndarray,
    lam: float,
    *,
    batch: int | None = None,
    progress: str | None = None,
) -> np.ndarray:
    """Ridge-regress each target's column on its support: ``(G[S,S] + lam I)^-1 G[S, j]``.

    Parameters
    ----------
    gram : scipy.sparse.csr_matrix, shape (n_items, n_items)
        Canonical symmetric Gram matrix (:func:`gram_matrix`).
    targets : np.ndarray of int, shape (T,)
        Target items ``j``.
    supports : np.ndarray of int, shape (T, S)
        ``-1``-padded support of each target (must not contain the target itself).
    lam : float
        Ridge penalty, > 0.
    batch : int, optional
        Targets per batched solve (default: enough to make the Gram lookups binary searches).
    progress : str, optional
        Label of a tqdm bar on stderr (none by default).

    Returns
    -------
    np.ndarray of float64, shape (T, S)
        ``weights[t, s]`` is ``W[supports[t, s], targets[t]]``; 0 at padding. Each system is
        solved on its own (LAPACK ``gesv`` through ``numpy.linalg.solve``), so the result does
        not depend on how targets are batched or partitioned.
    """
    supports = np.asarray(supports, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    T, S = supports.shape
    out = np.zeros((T, S))
    if T == 0 or S == 0:
        return out
    if batch is None:  # >= nnz/10 lookups per call keeps scipy on its binary-search path
        per = S * (S + 1) // 2 + S
        batch = int(min(4096, max(64, math.ceil((gram.nnz / 10 + 1) / per))))
        batch = max(1, min(batch, (64 * 2**20) // (8 * S * S)))  # <= 64 MB of blocks
    bar = _bar(T, progress)
    eye = np.eye(S)
    for lo in range(0, T, batch):
        hi = min(T, lo + batch)
        blocks, rhs = gram_blocks(gram, targets[lo:hi], supports[lo:hi])
        out[lo:hi] = solve_systems(blocks, rhs, supports[lo:hi] >= 0, lam, eye)
        if bar is not None:
            bar.update(hi - lo)
    if bar is not None:
        bar.close()
    return out


def solve_systems(blocks: np.ndarray, rhs: np.ndarray, valid: np.ndarray, lam: float,
                  eye: np.ndarray | None = None) -> np.ndarray:
    """Solve the batched ridge systems ``(blocks + lam I) w = rhs``; 0 where not ``valid``.

    The solving half of :func:`solve_supports`, for engines that build the blocks themselves
    (the Spark job builds them from a broadcast interaction matrix). ``blocks`` (T, S, S) and
    ``rhs`` (T, S) must be zero at padding (as :func:`gram_blocks` returns them): padding rows
    then read ``lam * w = 0``. ``blocks`` is modified in place.
    """
    blocks += lam * (np.eye(blocks.shape[-1]) if eye is None else eye)
    return np.linalg.solve(blocks, rhs[:, :, None])[:, :, 0] * valid


# --------------------------------------------------------------------------- pruning


def keep_top_k(rows: np.ndarray, targets: np.ndarray, weights: np.ndarray, K: int) -> np.ndarray:
    """Mask of each row's ``K`` largest strictly positive weights (ties: smaller target first).

    Parameters
    ----------
    rows, targets, weights : np.ndarray, shape (n,)
        Triplets ``W[rows[n], targets[n]] = weights[n]`` (no duplicates). Any subset that holds
        *all* triplets of the rows it contains gives the same mask for them.
    K : int

    Returns
    -------
    np.ndarray of bool, shape (n,)
    """
    rows = np.asarray(rows, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float64)
    order = np.lexsort((targets, -weights, rows))
    r = rows[order]
    first = np.searchsorted(r, r)  # r is sorted: index of each row's first entry
    rank = np.arange(len(r)) - first
    keep = np.zeros(len(rows), dtype=bool)
    keep[order] = (rank < K) & (weights[order] > 0)
    return keep


def pruned_supports(targets: np.ndarray, supports: np.ndarray, weights: np.ndarray, K: int) -> np.ndarray:
    """Step 3 for all targets at once: each target's support restricted to the kept pairs.

    Returns a ``-1``-padded int32 array of shape (T, S2), rows sorted ascending, with
    ``S2 <= S`` the longest kept support.
    """
    supports = np.asarray(supports)
    T, S = supports.shape
    valid = supports >= 0
    tgt = np.broadcast_to(np.asarray(targets)[:, None], supports.shape)
    keep = np.zeros(supports.shape, dtype=bool)
    keep[valid] = keep_top_k(supports[valid], tgt[valid], weights[valid], K)
    return _compact(np.where(keep, supports, PAD))


def _compact(supports: np.ndarray) -> np.ndarray:
    """Rows sorted ascending with ``-1`` at the end, trimmed to the longest row."""
    big = np.iinfo(np.int64).max
    s = np.sort(np.where(supports >= 0, supports.astype(np.int64), big), axis=1)
    width = int((s != big).sum(axis=1).max()) if s.size else 0
    s = s[:, :width]
    return np.where(s == big, PAD, s).astype(np.int32)


# ---------------------------------------------------------------------------- lambda


def choose_lambda(item_counts: np.ndarray) -> float:
    """The ridge penalty from item counts alone: ``2 * sum(c^2) / sum(c)``.

    ``sum(c^2) / sum(c)`` is the mean count of the item behind a random interaction (the
    popularity-weighted mean item count): the typical diagonal of the Gram blocks the
    regressions actually see. ``lambda`` on that scale shrinks a regressor seen by that many
    users by about a third, and far less-seen ones strongly, whatever the catalog's size or
    sparsity. Computable from the item counts, which a Spark driver collects in one pass.

    Parameters
    ----------
    item_counts : np.ndarray, shape (n_items,)
        Users per item (the Gram diagonal), after the history cap.
    """
    c = np.asarray(item_counts, dtype=np.float64)
    total = c.sum()
    if total <= 0:
        return 1.0
    return float(max(LAMBDA_PER_POPULARITY * (c**2).sum() / total, 1.0))


# ----------------------------------------------------------------------------- model


def fit_sparse_ease(
    user_items: sp.spmatrix,
    K: int,
    lam: float | None = None,
    n_candidates: int = DEFAULT_CANDIDATES,
    shrink: float = DEFAULT_SHRINK,
    resolve: bool = True,
    progress: bool = False,
) -> tuple[sp.csr_matrix, float]:
    """Steps 1-4 in process. Returns ``(W, lambda)``, ``W`` with at most K entries per row."""
    G = gram_matrix(user_items)
    n = G.shape[0]
    counts = G.diagonal().astype(np.float64)
    if lam is None:
        lam = choose_lambda(counts)
    # only items co-watched with another item can have candidates (rows with > 1 entry)
    items = np.flatnonzero(np.diff(G.indptr) > (counts > 0))
    step = max(1, int(len(items) * 4e6 // max(G.nnz, 1)))  # row chunks of ~4M Gram entries
    sup = np.concatenate(
        [candidate_support(G[items[lo:lo + step]], items[lo:lo + step], counts, n_candidates,
                           shrink) for lo in range(0, len(items), step)]
        or [np.zeros((0, n_candidates), np.int32)]
    )
    has = (sup[:, 0] >= 0) if sup.shape[1] else np.zeros(len(items), bool)
    targets, sup = items[has], sup[has]
    w = solve_supports(G, targets, sup, lam, progress="ridge on candidates" if progress else None)
    if resolve:
        sup = pruned_supports(targets, sup, w, K)
        w = solve_supports(G, targets, sup, lam, progress="re-solve on kept" if progress else None)
    else:  # candidates' weights pruned per row, not re-solved (for comparison)
        keep_sup = pruned_supports(targets, sup, w, K)
        w = _reindex(sup, w, keep_sup)
        sup = keep_sup
    del G
    valid = sup >= 0
    tgt = np.broadcast_to(targets[:, None], sup.shape)
    W = sp.csr_matrix((w[valid], (sup[valid].astype(np.int64), tgt[valid])), shape=(n, n))
    W.eliminate_zeros()
    return W, float(lam)


def _reindex(sup: np.ndarray, w: np.ndarray, new_sup: np.ndarray) -> np.ndarray:
    """Weights of ``new_sup``'s entries (a subset of ``sup`` per row), read from ``w``."""
    out = np.zeros(new_sup.shape)
    for t in range(len(sup)):
        m = {int(i): x for i, x in zip(sup[t], w[t]) if i >= 0}
        out[t] = [m.get(int(i), 0.0) for i in new_sup[t]]
    return out


def _bar(total: int, label: str | None):
    if label is None or total < 1000:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=label, unit="item", leave=False, file=sys.stderr,
                dynamic_ncols=True, disable=os.environ.get("TVREC_NO_PROGRESS") == "1")
