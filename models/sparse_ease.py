"""A learned item-item model (EASE-style ridge regression) that never forms an N x N array.

Dense EASE (Steck 2019) regresses every item's column of the interaction matrix on *all*
other items: one N x N inverse, 4.6 GB and minutes at 10k items. The box keeps only K weights
per item anyway, so we solve the same ridge regression on a small support per item instead:

1. **Candidates.** Each item ``j`` lists the ``C`` items with the largest
   cosine-with-shrinkage co-watch score ``G[i, j] / (sqrt(G[i, i] G[j, j]) + shrink)``,
   read from the sparse Gram matrix ``G = X^T X`` (:func:`candidate_support`); its support
   ``S_j`` is that list united with the (at most ``C``) best items that list ``j``
   (:func:`reverse_candidates`, :func:`union_supports`).
2. **Ridge on the candidates.** ``w[S_j, j] = (G[S_j, S_j] + D)^-1 G[S_j, j]`` with
   ``D = diag(lambda + dropout * G[a, a])``: ridge plus an EDLAE-style dropout penalty, one small
   solve per item, blocks gathered from the sparse Gram (:func:`solve_supports`).
3. **Prune rows.** The shipped table is indexed by the *watched* item ``i`` (row ``i`` of
   ``W``), so each row keeps its K largest **positive** weights (:func:`keep_top_k`):
   negative weights cannot rank an item up.
4. **Re-solve** each target's regression on exactly the kept support (step 2 again on the
   smaller support): the constrained least-squares optimum for that sparsity pattern, so the
   kept weights absorb what the pruned ones did.

Every row of the result has at most K entries, and peak memory grows with the Gram's
non-zeros (plus ``N x C`` support arrays), never with ``N^2``. Each step runs as a compiled
kernel (:mod:`models.gram_kernel`, numba, threads over chunks) or as the numpy reference here;
both give the same supports and bit-identical weights, since every system is built from the
same exact integers and solved at its own width on one BLAS thread. The four steps are pure
functions on plain arrays so the Spark job (``models/fleet_spark.py``, branch ``spark``) runs
the very same code inside ``mapInPandas``; see ``/work/coord/NOTES-learner.md`` for the
contract (inputs, determinism and tie-break rules).
"""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import scipy.sparse as sp

from device.errors import TvrecError
from models import gram_kernel as gk

#: Candidate items per target (step 1). More candidates approach dense EASE's solution (whose
#: support is every item) at a cost growing with C^2..C^3 per item, so C is the largest that keeps
#: the 100k-item anchor well inside its budget: C = 192 fits it in ~100 s and 2 GB (SANSA: 202 s,
#: 3.8 GB) and scored at least as well as 128 on both logs measured side by side (ML-100K NDCG@10
#: 0.4901 vs 0.4896; the sparse 10k synthetic log 0.2433 vs 0.2426; 256: 0.4908 / 0.2427).
DEFAULT_CANDIDATES = 192
#: Shrinkage of the cosine score used to pick candidates (damps pairs seen by few users).
DEFAULT_SHRINK = 0.0
#: ``lambda = LAMBDA_PER_POPULARITY * (popularity-weighted mean item count)``, see
#: :func:`choose_lambda`.
LAMBDA_PER_POPULARITY = 0.5
#: Dropout-style penalty (EDLAE, Steck 2020): regressor ``a`` is penalised by
#: ``lambda + DEFAULT_DROPOUT * G[a, a]``; 1.0 is input dropout with p = 1/2 (``p / (1 - p)``).
DEFAULT_DROPOUT = 1.0

PAD = -1  # padding of support arrays


def _use_compiled(compiled: bool | None) -> bool:
    """Whether to run the compiled kernels (:mod:`models.gram_kernel`): ``None`` = when numba
    is installed (and ``TVREC_NO_NUMBA`` is not 1). Both paths give identical results."""
    if compiled is None:
        return gk.AVAILABLE
    if compiled and not gk.AVAILABLE:
        raise RuntimeError("the compiled kernels need numba (the `train` extra)")
    return bool(compiled)


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
    return_scores: bool = False,
    *,
    compiled: bool | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
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
    scores : np.ndarray of float64, shape (len(rows), C)
        With ``return_scores``: each candidate's score (0 at padding).

    Other Parameters
    ----------------
    compiled : bool, optional
        Run the compiled kernel (:func:`models.gram_kernel.candidates_csr`, threads over row
        chunks) or the numpy reference; default: the kernel when numba is installed. Same
        result either way.
    """
    G = sp.csr_matrix(gram_rows)
    G.sort_indices()
    rows = np.asarray(rows, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.float64)
    n = G.shape[0]
    if _use_compiled(compiled):
        indptr = G.indptr.astype(np.int64)
        out = _candidates_in_place(G, indptr[:-1], indptr[1:], rows, counts, n_candidates,
                                   shrink)
        return out if return_scores else out[0]
    out = np.full((n, n_candidates), PAD, dtype=np.int32)
    out_scores = np.zeros((n, n_candidates)) if return_scores else None
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
        local, cols, score = local[order], cols[order], score[order]
        starts = np.searchsorted(local, np.arange(hi - lo))
        rank = np.arange(len(local)) - starts[local]
        keep = rank < n_candidates
        local, cols, score = local[keep], cols[keep], score[keep]
        # re-sort each row's kept candidates by item index (blocks are built in that order)
        order = np.lexsort((cols, local))
        local, cols, score = local[order], cols[order], score[order]
        pos = np.arange(len(local)) - np.searchsorted(local, np.arange(hi - lo))[local]
        out[lo + local, pos] = cols
        if return_scores:
            out_scores[lo + local, pos] = score
    return (out, out_scores) if return_scores else out


def _candidates_in_place(G, starts, ends, rows, counts, n_candidates, shrink):
    """:func:`candidate_support` by the compiled kernel, reading rows ``starts..ends`` of
    ``G``'s arrays in place; threads over chunks of similar Gram length."""
    n = len(rows)
    out = np.empty((n, n_candidates), dtype=np.int32)
    out_scores = np.empty((n, n_candidates))
    bounds = gk.balanced_bounds(ends - starts, 8 * gk.n_threads())
    gk.parallel_chunks(lambda lo, hi: gk.candidates_csr(
        starts, ends, G.indices, G.data, rows, counts, float(shrink), lo, hi, out, out_scores),
        bounds)
    return out, out_scores


def reverse_candidates(
    rows: np.ndarray, supports: np.ndarray, scores: np.ndarray, cap: int,
    targets: np.ndarray | None = None, *, compiled: bool | None = None,
) -> np.ndarray:
    """For each target ``j``: the ``cap`` best items ``a`` that have ``j`` among *their* candidates.

    Cosine candidates are symmetric in score but not in rank: a rare item lists a popular one
    among its best, while the popular one's own list is full of other popular items. Without
    this step the pair (rare -> popular) would never be solved, and rare items' rows of the
    table would stay short.

    Parameters
    ----------
    rows : np.ndarray of int, shape (R,)
        Items whose candidate lists are given (all items with candidates, for a full answer).
    supports, scores : np.ndarray, shape (R, C)
        :func:`candidate_support` with ``return_scores=True``.
    cap : int
        Reverse candidates kept per target: best score first, ties by the smaller item
        (:func:`keep_top_k` with ``j`` as the row).
    targets : np.ndarray of int, optional
        Sorted distinct items to answer for (default ``rows``, which must then be sorted);
        listings of other items are ignored.

    Returns
    -------
    np.ndarray of int32, shape (len(targets), cap)
        Sorted ascending, ``-1`` padded at the end.
    """
    targets = np.asarray(rows if targets is None else targets, dtype=np.int64)
    supports = np.asarray(supports)
    valid = supports >= 0
    a = np.broadcast_to(np.asarray(rows, dtype=np.int64)[:, None], supports.shape)[valid]
    j = supports[valid].astype(np.int64)
    sc = np.asarray(scores, dtype=np.float64)[valid]
    pos_t = np.searchsorted(targets, j)
    ok = (pos_t < len(targets)) & (targets[np.minimum(pos_t, len(targets) - 1)] == j)
    a, j, sc, pos_t = a[ok], j[ok], sc[ok], pos_t[ok]
    if _use_compiled(compiled):
        out = np.empty((len(targets), cap), dtype=np.int32)
        gk.top_by_group(pos_t, a, sc, len(targets), cap, True, out)
        return out
    keep = keep_top_k(j, a, sc, cap, compiled=False)
    t, a = pos_t[keep], a[keep]
    order = np.lexsort((a, t))
    t, a = t[order], a[order]
    pos = np.arange(len(t)) - np.searchsorted(t, t)
    out = np.full((len(targets), cap), PAD, dtype=np.int32)
    out[t, pos] = a
    return out


def union_supports(*supports: np.ndarray, compiled: bool | None = None) -> np.ndarray:
    """Row-wise sorted union of ``-1``-padded supports of equal length, ``-1`` padded.

    Two supports whose rows are already strictly ascending (as :func:`candidate_support` and
    :func:`reverse_candidates` return them) are merged by a compiled kernel when available.
    """
    if len(supports) == 2 and _use_compiled(compiled) and all(map(_ascending, supports)):
        a, b = (np.asarray(x, dtype=np.int64) for x in supports)
        out = np.empty((a.shape[0], a.shape[1] + b.shape[1]), dtype=np.int64)
        gk.union_sorted(a, b, out)
        width = int((out >= 0).sum(axis=1).max()) if out.size else 0
        return np.ascontiguousarray(out[:, :width]).astype(np.int32)
    s = np.sort(np.concatenate([np.asarray(x, dtype=np.int64) for x in supports], axis=1), axis=1)
    dup = np.zeros(s.shape, dtype=bool)
    dup[:, 1:] = s[:, 1:] == s[:, :-1]
    return _compact(np.where(dup, PAD, s))


def _ascending(s: np.ndarray) -> bool:
    """Rows strictly ascending, then ``-1`` padding only."""
    s = np.asarray(s)
    if s.ndim != 2 or s.shape[1] < 2:
        return s.ndim == 2
    v = s >= 0
    ok = (s[:, 1:] > s[:, :-1]) | ~v[:, 1:]
    return bool(ok.all() and not (v[:, 1:] & ~v[:, :-1]).any())


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
    dropout: float = DEFAULT_DROPOUT,
    batch: int | None = None,
    progress: str | None = None,
    compiled: bool | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """Ridge-regress each target's column on its support (see :func:`solve_systems`).

    ``w = (G[S,S] + diag(lam + dropout * G[a,a] for a in S))^-1 G[S, j]``.

    Parameters
    ----------
    gram : scipy.sparse.csr_matrix, shape (n_items, n_items)
        Canonical symmetric Gram matrix (:func:`gram_matrix`).
    targets : np.ndarray of int, shape (T,)
        Target items ``j``.
    supports : np.ndarray of int, shape (T, S)
        Support of each target, valid entries first and ``-1`` padding at the end (as
        :func:`candidate_support` and :func:`pruned_supports` return them); never the target.
    lam : float
        Ridge penalty, > 0.
    dropout : float
        Dropout-style penalty per unit of a regressor's count (:data:`DEFAULT_DROPOUT`).
    batch : int, optional
        Targets per batched solve (default: up to ~32 MB of blocks per batch).
    progress : str, optional
        Label of a tqdm bar on stderr (none by default).
    compiled : bool, optional
        Build the blocks with :func:`models.gram_kernel.gram_blocks_csr` (galloping row
        intersections) or with :func:`gram_blocks` (scipy lookups); default: the kernel when
        numba is installed. The blocks are the same exact integers, so the weights are
        identical.
    threads : int, optional
        Threads solving batches side by side (default: the cores this process may use).

    Returns
    -------
    np.ndarray of float64, shape (T, S)
        ``weights[t, s]`` is ``W[supports[t, s], targets[t]]``; 0 at padding. Each system is
        solved on its own (LAPACK ``gesv`` through ``numpy.linalg.solve``), so the result does
        not depend on how targets are batched, partitioned or threaded: a system of width
        ``m`` is always solved as an ``m x m`` system.
    """
    supports = np.asarray(supports, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    T, S = supports.shape
    out = np.zeros((T, S))
    if T == 0 or S == 0:
        return out
    # Each system is solved at its own width m (supports are left-packed, -1 at the end):
    # targets are grouped by m and solved in batches of at most ~32 MB of blocks (or `batch`),
    # on one thread per core (the block kernel and LAPACK both release the GIL).
    fast = _use_compiled(compiled)
    width = (supports >= 0).sum(axis=1)
    order = np.argsort(width, kind="stable")
    ws = width[order]
    jobs = []
    for m in np.unique(ws):
        m = int(m)
        lo, hi = np.searchsorted(ws, m, "left"), np.searchsorted(ws, m, "right")
        if m == 0:
            continue
        size = batch or max(1, min(4096, (32 * 2**20) // (8 * m * m)))
        jobs += [(m, order[a:min(a + size, hi)]) for a in range(lo, hi, size)]
    bar = _bar(T, progress)
    if fast:
        indptr = gram.indptr.astype(np.int64)
        scratch = threading.local()  # one items-long support map per thread, reused

    def run(k, _):
        m, idx = jobs[k]
        sup = supports[idx, :m]
        if fast:
            if not hasattr(scratch, "pos"):
                scratch.pos = np.full(gram.shape[0], -1, np.int32)
            blocks = np.empty((len(idx), m, m))
            rhs = np.empty((len(idx), m))
            gk.gram_blocks_csr(indptr, gram.indices, gram.data, targets[idx], sup, 0,
                               len(idx), blocks, rhs, pos=scratch.pos)
        else:
            blocks, rhs = gram_blocks(gram, targets[idx], sup)
        out[idx, :m] = solve_systems(blocks, rhs, np.ones((len(idx), m), bool), lam, dropout)
        if bar is not None:
            bar.update(len(idx))

    with one_blas_thread():  # threads over batches, never inside LAPACK: machine-independent
        gk.parallel_chunks(run, [(k, k + 1) for k in range(len(jobs))], threads)
    if bar is not None:
        bar.close()
    return out


def one_blas_thread():
    """Context in which BLAS/LAPACK run on one thread (``threadpoolctl``; a no-op without it).

    OpenBLAS's multi-threaded LU rounds differently from its single-threaded one, so the solves
    run single-threaded wherever they run (the Spark executors set ``OPENBLAS_NUM_THREADS=1``);
    the cores are used by solving different batches side by side instead.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with the dev/fleet stacks
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1, "blas")


def solve_systems(blocks: np.ndarray, rhs: np.ndarray, valid: np.ndarray, lam: float,
                  dropout: float = DEFAULT_DROPOUT) -> np.ndarray:
    """Solve the batched ridge systems; 0 where not ``valid``.

    ``(blocks + diag(lam + dropout * diag(blocks))) w = rhs`` per target: a ridge penalty
    ``lam`` plus a dropout-style penalty proportional to each regressor's own count (EDLAE:
    dropping each input with probability p adds ``p / (1 - p) * G[a, a]``), which shrinks
    popular regressors as much, relatively, as rare ones. The solving half of
    :func:`solve_supports`, for engines that build the blocks themselves (the Spark job builds
    them from a broadcast interaction matrix). ``blocks`` (T, S, S) and ``rhs`` (T, S) must be
    zero at padding (as :func:`gram_blocks` returns them): padding rows then read
    ``lam * w = 0``. ``blocks`` is modified in place.

    :func:`solve_supports` calls this on systems of exactly their own width ``m`` (no padding),
    on one BLAS thread (:func:`one_blas_thread`): an engine that does the same gets
    bit-identical weights, however it partitions the targets.
    """
    d = np.arange(blocks.shape[-1])
    blocks[:, d, d] += lam + dropout * blocks[:, d, d]
    return np.linalg.solve(blocks, rhs[:, :, None])[:, :, 0] * valid


# --------------------------------------------------------------------------- pruning


def keep_top_k(rows: np.ndarray, targets: np.ndarray, weights: np.ndarray, K: int, *,
               compiled: bool | None = None) -> np.ndarray:
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
    if len(rows) and _use_compiled(compiled) and rows.min() >= 0:
        ids, grp = np.unique(rows, return_inverse=True)
        return gk.top_by_group(grp.ravel().astype(np.int64), targets, weights, len(ids), K, True,
                               np.zeros((0, 0), np.int32))
    order = np.lexsort((targets, -weights, rows))
    r = rows[order]
    first = np.searchsorted(r, r)  # r is sorted: index of each row's first entry
    rank = np.arange(len(r)) - first
    keep = np.zeros(len(rows), dtype=bool)
    keep[order] = (rank < K) & (weights[order] > 0)
    return keep


def pruned_supports(targets: np.ndarray, supports: np.ndarray, weights: np.ndarray, K: int, *,
                    compiled: bool | None = None) -> np.ndarray:
    """Step 3 for all targets at once: each target's support restricted to the kept pairs.

    Each row keeps its ``K`` largest positive weights **at the shipped precision**
    (:func:`shipped_weights`: float32, as the bundle stores them), ties by the smaller target.
    Weights equal in exact arithmetic (items with identical co-watch patterns: common in the
    long tail) come out of LAPACK a few ulps apart, in an order that depends on the solve's
    size and blocking; ranking them in float64 would let that noise pick the kept neighbour,
    differently on every engine. Returns a ``-1``-padded int32 array of shape (T, S2), rows
    sorted ascending, with ``S2 <= S`` the longest kept support.
    """
    supports = np.asarray(supports)
    T, S = supports.shape
    valid = supports >= 0
    tgt = np.broadcast_to(np.asarray(targets)[:, None], supports.shape)
    keep = np.zeros(supports.shape, dtype=bool)
    weights = shipped_weights(weights)
    fast = _use_compiled(compiled)
    if fast:  # the kernel groups by item directly (items are indices < n_items)
        s_v = supports[valid].astype(np.int64)
        if len(s_v):
            keep[valid] = gk.top_by_group(s_v, tgt[valid].astype(np.int64), weights[valid],
                                          int(s_v.max()) + 1, K, True,
                                          np.zeros((0, 0), np.int32))
        if _ascending(supports):  # kept entries stay in order: compact without sorting
            out = np.empty(supports.shape, dtype=np.int32)
            width = gk.compact_rows(supports, keep, out)
            return np.ascontiguousarray(out[:, :width])
    else:
        keep[valid] = keep_top_k(supports[valid], tgt[valid], weights[valid], K, compiled=False)
    return _compact(np.where(keep, supports, PAD))


def shipped_weights(weights: np.ndarray) -> np.ndarray:
    """``weights`` rounded to float32 (the precision of the bundle's table), as float64.

    The ranking key of :func:`pruned_supports`; engines that prune with :func:`keep_top_k`
    themselves pass ``shipped_weights(w)`` so that rounding noise of their solves cannot break
    exact ties differently.
    """
    return np.asarray(weights, dtype=np.float64).astype(np.float32).astype(np.float64)


def _compact(supports: np.ndarray) -> np.ndarray:
    """Rows sorted ascending with ``-1`` at the end, trimmed to the longest row."""
    big = np.iinfo(np.int64).max
    s = np.sort(np.where(supports >= 0, supports.astype(np.int64), big), axis=1)
    width = int((s != big).sum(axis=1).max()) if s.size else 0
    s = s[:, :width]
    return np.where(s == big, PAD, s).astype(np.int32)


# ---------------------------------------------------------------------------- lambda


def choose_lambda(item_counts: np.ndarray) -> float:
    """The ridge penalty from item counts alone: ``0.5 * sum(c^2) / sum(c)``.

    ``cbar = sum(c^2) / sum(c)`` is the mean count of the item behind a random interaction
    (the popularity-weighted mean item count): the typical diagonal of the Gram blocks the
    regressions actually see. With the dropout penalty ``c_a`` the total penalty of
    regressor ``a`` is ``cbar / 2 + c_a``: a rarely seen regressor is shrunk towards zero on the
    scale of the typical item, a popular one by the dropout share -- the same shape on a dense
    or a sparse catalog, since ``cbar`` follows where the interactions are, not the long tail's mean
    (which sets the scale far too low on sparse catalogs). Computable from the item counts,
    which a Spark driver collects in one pass.

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
    dropout: float = DEFAULT_DROPOUT,
    progress: bool = False,
    *,
    compiled: bool | None = None,
) -> tuple[sp.csr_matrix, float]:
    """The whole pipeline in process. Returns ``(W, lambda)``; rows of ``W`` have <= K entries.

    ``W[i, j]`` is how much watching ``i`` recommends ``j`` (zero diagonal). ``compiled``
    chooses the compiled kernels or the numpy reference (default: the kernels when numba is
    installed); both give the same supports and the same weights.
    """
    fast = _use_compiled(compiled)
    G = gram_matrix(user_items)
    n = G.shape[0]
    counts = G.diagonal().astype(np.float64)
    if lam is None:
        lam = choose_lambda(counts)
    # only items co-watched with another item can have candidates (rows with > 1 entry)
    items = np.flatnonzero(np.diff(G.indptr) > (counts > 0))
    if fast:  # the kernel reads the rows in place (no row-sliced copy of the Gram)
        indptr = G.indptr.astype(np.int64)
        fwd, scores = _candidates_in_place(G, indptr[items], indptr[items + 1], items, counts,
                                           n_candidates, shrink)
    else:
        step = max(1, int(len(items) * 4e6 // max(G.nnz, 1)))  # row chunks of ~4M entries
        parts = [candidate_support(G[items[lo:lo + step]], items[lo:lo + step], counts,
                                   n_candidates, shrink, return_scores=True, compiled=False)
                 for lo in range(0, len(items), step)]
        fwd = np.concatenate([p[0] for p in parts] or [np.zeros((0, n_candidates), np.int32)])
        scores = np.concatenate([p[1] for p in parts] or [np.zeros((0, n_candidates))])
        del parts
    rev = reverse_candidates(items, fwd, scores, n_candidates, compiled=fast)  # items sorted
    del scores
    sup = union_supports(fwd, rev, compiled=fast)
    del fwd, rev
    has = (sup[:, 0] >= 0) if sup.shape[1] else np.zeros(len(items), bool)
    targets, sup = items[has], sup[has]
    w = solve_supports(G, targets, sup, lam, dropout=dropout, compiled=fast,
                       progress="ridge on candidates" if progress else None)
    sup = pruned_supports(targets, sup, w, K, compiled=fast)
    w = solve_supports(G, targets, sup, lam, dropout=dropout, compiled=fast,
                       progress="re-solve on kept" if progress else None)
    del G
    valid = sup >= 0
    tgt = np.broadcast_to(targets[:, None], sup.shape)
    W = sp.csr_matrix((w[valid], (sup[valid].astype(np.int64), tgt[valid])), shape=(n, n))
    W.eliminate_zeros()
    return W, float(lam)


def _bar(total: int, label: str | None):
    if label is None or total < 1000:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=label, unit="item", leave=False, file=sys.stderr,
                dynamic_ncols=True, disable=os.environ.get("TVREC_NO_PROGRESS") == "1")
