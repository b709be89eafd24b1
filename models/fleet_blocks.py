"""What each Spark task of the fleet job runs on its block of items: plain numpy in and out.

The algorithm's steps are the in-process learner's own public functions
(:mod:`models.sparse_ease`: ``candidate_support``, ``reverse_candidates``, ``union_supports``,
``solve_systems``, ``keep_top_k``, ``shipped_weights``); what is the Spark job's own is where
the Gram entries come from: each task computes them from the broadcast binary interaction
matrix (:class:`Interactions`) instead of reading a whole Gram CSR. No Spark import here, so
benchmarks and tests run these functions in one process (``bench/fleet_scale.py
--cpu-only``). The job itself: :mod:`models.fleet_spark`.
"""

from __future__ import annotations

import numpy as np

from device.cf import PAD, NeighbourTable
# one BLAS thread wherever systems are solved: the learner's rule, so both engines round alike
from models.sparse_ease import DEFAULT_CANDIDATES, DEFAULT_DROPOUT, DEFAULT_SHRINK, one_blas_thread  # noqa: F401

#: Items per applyInPandas call in the candidate and solve stages (numpy sees whole blocks).
ITEMS_PER_BLOCK = 512


class Interactions:
    """The binary users x items matrix both ways (CSC: item -> users; CSR: user -> items).

    What the executors get by broadcast: 2 x 4 bytes per kept event, plus the pointers. From it
    a task computes any block of Gram rows (:meth:`gram_rows`) and any dense Gram block
    (:meth:`gram_block`) without a shuffle.
    """

    def __init__(self, users: np.ndarray, items: np.ndarray, n_users: int, n_items: int):
        import scipy.sparse as sp

        X = sp.csc_matrix((np.ones(len(users), dtype=np.float32), (users, items)),
                          shape=(n_users, n_items))
        X.sum_duplicates()
        self.indptr = X.indptr.astype(np.int64)
        self.indices = X.indices.astype(np.int32)
        R = X.tocsr()
        self.r_indptr = R.indptr.astype(np.int64)
        self.r_indices = R.indices.astype(np.int32)
        self.n_users, self.n_items = n_users, n_items
        self._scratch = {}

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_scratch"}

    def __setstate__(self, s):
        self.__dict__.update(s)
        self._scratch = {}

    @property
    def counts(self) -> np.ndarray:
        """``G[i, i]``: kept events per item."""
        return np.diff(self.indptr).astype(np.float64)

    def _csr(self):
        if "csr" not in self._scratch:
            import scipy.sparse as sp

            ones = np.ones(len(self.r_indices), dtype=np.int32)
            self._scratch["csr"] = sp.csr_matrix((ones, self.r_indices, self.r_indptr),
                                                 shape=(self.n_users, self.n_items))
        return self._scratch["csr"]

    def gram_rows(self, lo: int, hi: int):
        """Gram rows ``lo..hi-1`` as CSR ``(hi - lo) x n_items``: ``X[:, lo:hi]^T X``.

        The CSC columns of the block read as CSR rows, times the CSR matrix: exact counts.
        """
        import scipy.sparse as sp

        a, b = self.indptr[lo], self.indptr[hi]
        XtB = sp.csr_matrix((np.ones(b - a, dtype=np.int32), self.indices[a:b],
                             self.indptr[lo:hi + 1] - a), shape=(hi - lo, self.n_users))
        G = (XtB @ self._csr()).tocsr()
        G.sort_indices()
        return G

    def gram_block(self, S: np.ndarray) -> np.ndarray:
        """Dense ``G[S, S]`` (co-counts, diagonal = item counts) for distinct items ``S``."""
        S = np.asarray(S, dtype=np.int64)
        if _block_counts is not None:
            if "head" not in self._scratch:
                self._scratch["head"] = np.full(self.n_users, -1, dtype=np.int64)
            out = np.zeros((len(S), len(S)), dtype=np.float64)
            _block_counts(self.indptr, self.indices, S, self._scratch["head"], out)
            return out
        import scipy.sparse as sp

        X = sp.csc_matrix((np.ones(len(self.indices), np.float32), self.indices, self.indptr),
                          shape=(self.n_users, self.n_items))
        Xs = X[:, S]
        return (Xs.T @ Xs).toarray().astype(np.float64)


def _make_block_counts():
    """A compiled kernel for Gram blocks (numba), or None (then scipy does it, ~5x slower).

    Per block: link every (user, position) of the items' user lists into per-user chains
    (``head``: one slot per user, restored to -1 after), then add each touched user's pairs.
    Cost: the items' counts plus the sum over users of (items of S they watched)^2.
    """
    try:
        from numba import njit
    except ImportError:
        return None

    @njit(cache=True, nogil=True)
    def block_counts(indptr, indices, S, head, out):  # pragma: no cover - compiled
        m = len(S)
        L = 0
        for p in range(m):
            L += indptr[S[p] + 1] - indptr[S[p]]
        pos = np.empty(L, np.int32)
        nxt = np.empty(L, np.int64)
        touched = np.empty(L, np.int64)
        nt = 0
        k = 0
        for p in range(m):
            a = S[p]
            for e in range(indptr[a], indptr[a + 1]):
                u = indices[e]
                if head[u] == -1:
                    touched[nt] = u
                    nt += 1
                pos[k] = p
                nxt[k] = head[u]
                head[u] = k
                k += 1
        for q in range(nt):
            u = touched[q]
            x = head[u]
            while x != -1:
                px = pos[x]
                out[px, px] += 1.0
                y = nxt[x]
                while y != -1:
                    py = pos[y]
                    out[px, py] += 1.0
                    out[py, px] += 1.0
                    y = nxt[y]
                x = nxt[x]
            head[u] = -1

    return block_counts


_block_counts = _make_block_counts()


def solve_supports_x(X: Interactions, targets: np.ndarray, supports: np.ndarray, lam: float,
                     dropout: float = DEFAULT_DROPOUT, batch: int = 256) -> np.ndarray:
    """:func:`models.sparse_ease.solve_supports` with the blocks built from ``X``.

    Same inputs (``-1``-padded supports per target, valid entries first) and output
    (``weights[t, s] = W[supports[t, s], targets[t]]``, 0 at padding). As in the learner, each
    system is solved at its own width ``m`` (never padded to its batch's widest), with the
    learner's own :func:`~models.sparse_ease.solve_systems` -- one LAPACK ``gesv`` per
    system, on one BLAS thread -- and the blocks hold the same exact integers as the learner's
    Gram lookups; so a system's weights depend on the system only, not on how targets are
    partitioned into tasks.
    """
    from models.sparse_ease import solve_systems

    supports = np.asarray(supports, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    T, S = supports.shape
    m_all = (supports >= 0).sum(axis=1)
    out = np.zeros((T, S))
    with one_blas_thread():
        for m in np.unique(m_all[m_all > 0]):
            rows = np.flatnonzero(m_all == m)
            for lo in range(0, len(rows), batch):
                rr = rows[lo:lo + batch]
                blocks = np.empty((len(rr), m, m))
                rhs = np.empty((len(rr), m))
                for n, r in enumerate(rr):
                    G = X.gram_block(np.concatenate([[targets[r]], supports[r, :m]]))
                    blocks[n] = G[1:, 1:]
                    rhs[n] = G[1:, 0]
                out[rr, :m] = solve_systems(blocks, rhs, np.ones((len(rr), m), bool), lam,
                                            dropout)
    return out


def candidate_block(X: Interactions, lo: int, hi: int,
                    n_candidates: int = DEFAULT_CANDIDATES, shrink: float = DEFAULT_SHRINK):
    """Targets ``lo..hi-1``: their Gram rows -> forward candidates with their scores.

    Returns triplets ``(item, candidate, score)`` (the learner's
    :func:`~models.sparse_ease.candidate_support` on the block's rows) and the block's stored
    Gram entries, diagonal included (summed over blocks: the whole Gram's ``nnz``).
    """
    from models.sparse_ease import candidate_support

    G = X.gram_rows(lo, hi)
    items = np.arange(lo, hi)
    sup, sc = candidate_support(G, items, X.counts, n_candidates, shrink, return_scores=True)
    valid = sup >= 0
    a = np.broadcast_to(items[:, None], sup.shape)[valid]
    return a.astype(np.int64), sup[valid].astype(np.int64), sc[valid], int(G.nnz)


def driver_supports(a: np.ndarray, j: np.ndarray, score: np.ndarray, n_candidates: int):
    """Forward candidates united with the reverse ones, as the in-process learner does.

    ``(a, j, score)``: every item's forward candidates (long form). Returns ``(targets,
    supports)`` (``-1``-padded), the input of the first ridge solves.
    """
    from models.sparse_ease import reverse_candidates, union_supports

    order = np.lexsort((j, a))
    a, j, score = a[order], j[order], score[order]
    items, start, n = np.unique(a, return_index=True, return_counts=True)
    pos = np.arange(len(a)) - np.repeat(start, n)
    row = np.repeat(np.arange(len(items)), n)
    fwd = np.full((len(items), n_candidates), -1, dtype=np.int32)
    sc = np.zeros((len(items), n_candidates))
    fwd[row, pos] = j
    sc[row, pos] = score
    rev = reverse_candidates(items, fwd, sc, n_candidates)
    sup = union_supports(fwd, rev)
    has = (sup[:, 0] >= 0) if sup.shape[1] else np.zeros(len(items), bool)
    return items[has], sup[has]


def resolve_block(X: Interactions, rows: np.ndarray, targets: np.ndarray, lam: float,
                  dropout: float = DEFAULT_DROPOUT):
    """Re-solve each target on the rows that kept it: triplets in, triplets out.

    Each target's support is its kept rows in ascending order, as
    :func:`~models.sparse_ease.pruned_supports` lays them out.
    """
    order = np.lexsort((rows, targets))
    rows, targets = rows[order], targets[order]
    uniq, start, n = np.unique(targets, return_index=True, return_counts=True)
    sup = np.full((len(uniq), int(n.max()) if len(n) else 0), PAD, dtype=np.int64)
    pos = np.arange(len(rows)) - np.repeat(start, n)
    sup[np.repeat(np.arange(len(uniq)), n), pos] = rows
    w = solve_supports_x(X, uniq, sup, lam, dropout=dropout)
    valid = sup >= 0
    tgt = np.broadcast_to(uniq[:, None], sup.shape)
    return sup[valid], tgt[valid], w[valid]


def table_from_weights(src, dst, w, item_ids, counts, K: int) -> NeighbourTable:
    """The bundle's arrays: per row its weights sorted descending (ties by smaller id)."""
    n = len(item_ids)
    neighbours = np.full((n, K), PAD, dtype=np.int32)
    weights = np.zeros((n, K), dtype=np.float32)
    keep = w != 0
    src, dst, w = src[keep], dst[keep], w[keep]
    order = np.lexsort((dst, -w, src))
    src, dst, w = src[order], dst[order], w[order]
    start = np.searchsorted(src, np.arange(n))
    rank = np.arange(len(src)) - start[src]
    ok = rank < K
    neighbours[src[ok], rank[ok]] = dst[ok]
    weights[src[ok], rank[ok]] = w[ok]
    return NeighbourTable(item_ids=np.asarray([str(i) for i in item_ids], dtype=object),
                          neighbours=neighbours, weights=weights,
                          popularity=np.log1p(np.asarray(counts, dtype=np.float64)).astype(np.float32))
