"""Learn the item-item neighbour table from interaction logs (fleet side).

One base interface, :class:`ItemItemModel` (``fit``, ``recommend``, ``similar_items``,
``to_table``), and one small class per way of computing item-item weights:

* :class:`CosineModel` -- cosine of co-watch counts with a shrinkage term;
* :class:`JaccardModel` -- Jaccard co-occurrence, as in Microsoft's SAR;
* :class:`BM25Model` -- cosine over BM25-weighted interactions (the weighting implicit uses);
* :class:`SparseEASEModel` -- **the default**: the learned EASE-style ridge regression solved on
  a sparse candidate support per item (``models/sparse_ease.py``), never forming an N x N array;
* :class:`EASEModel` -- dense EASE (Steck, 2019), the closed-form ridge regression of every item
  on all others, sparsified to K neighbours by re-solving on the kept support: the *reference*
  the sparse learner is measured against (it needs an N x N inverse).

Every model produces a sparse ``similarity`` matrix (rows = the watched item, columns = the item
it recommends) with at most K entries per row, and ``to_table`` turns it into the plain arrays the
box scores with (:class:`device.cf.NeighbourTable`). Input is a users x items ``scipy.sparse``
matrix of interaction strengths (1 per interaction in the MovieLens protocol).

Event logs become that matrix through :func:`cap_histories` (each user's ``HISTORY_CAP`` most
recent distinct items), the rule the Spark job applies too.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from device.cf import PAD, NeighbourTable

#: Neighbours kept per item in the shipped table (the bundle's [N, K] arrays).
DEFAULT_K = 64

#: Distinct items kept per user by :func:`cap_histories`. A user with n items adds n^2 pairs to
#: the Gram matrix, so a few very long histories (shared accounts, a box left on a channel) would
#: dominate its size and its counts; 1,000 distinct programmes is more than a year of a heavy
#: household's viewing and caps nobody in MovieLens 100K (the longest history there is 737).
HISTORY_CAP = 1000


def cap_histories(users, items, timestamps, H: int = HISTORY_CAP) -> np.ndarray:
    """Which events survive the history cap: each user's ``H`` most recent distinct items.

    The rule (shared with the Spark job, which must keep exactly the same events):

    1. every (user, item) pair gets the **latest** timestamp of that user's events on that item;
    2. each user's distinct items are ranked by that timestamp, most recent first, ties broken
       by the **smaller item** (items compare as given: integer codes in the learner);
    3. an event is kept iff its (user, item) pair ranks below ``H`` -- all events of a kept
       pair are kept (the learner counts a pair once anyway).

    Parameters
    ----------
    users, items : array-like, shape (n,)
        User and item of each event (any sortable dtype; items are tie-breakers, so use the
        same item codes everywhere).
    timestamps : array-like of numbers, shape (n,)
    H : int
        Distinct items kept per user (>= 1).

    Returns
    -------
    np.ndarray of bool, shape (n,)
    """
    if H < 1:
        raise ValueError(f"H must be >= 1, got {H}")
    users, items = np.asarray(users), np.asarray(items)
    ts = np.asarray(timestamps, dtype=np.float64)
    if not (len(users) == len(items) == len(ts)):
        raise ValueError("users, items and timestamps must have the same length")
    if len(ts) and not np.isfinite(ts).all():
        raise ValueError("timestamps must be finite numbers")
    if len(users) == 0:
        return np.zeros(0, dtype=bool)
    _, u = np.unique(users, return_inverse=True)
    _, i = np.unique(items, return_inverse=True)  # sorted codes: order of i == order of items
    u, i = u.ravel().astype(np.int64), i.ravel().astype(np.int64)
    # 1. one row per (user, item) pair: its latest timestamp
    order = np.lexsort((ts, i, u))
    pu, pi, pt = u[order], i[order], ts[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = (pu[1:] != pu[:-1]) | (pi[1:] != pi[:-1])
    pair_of_sorted = np.concatenate([[0], np.cumsum(last[:-1])])  # pair of each sorted event
    pu, pi, pt = pu[last], pi[last], pt[last]
    # 2. rank each user's pairs: latest first, then smaller item
    rank_order = np.lexsort((pi, -pt, pu))
    ru = pu[rank_order]
    rank = np.arange(len(ru)) - np.searchsorted(ru, ru)
    keep_pair = np.zeros(len(pu), dtype=bool)
    keep_pair[rank_order] = rank < H
    # 3. back to events
    keep = np.zeros(len(users), dtype=bool)
    keep[order] = keep_pair[pair_of_sorted]
    return keep


class ItemItemModel:
    """Base class: an item-item weight matrix with at most ``K`` neighbours per row.

    Parameters
    ----------
    K : int
        Maximum neighbours kept per item.

    Attributes
    ----------
    similarity : scipy.sparse.csr_matrix, shape (n_items, n_items)
        ``similarity[i, j]`` is how much watching ``i`` recommends ``j``; zero diagonal.
    item_counts : np.ndarray, shape (n_items,)
        Interactions per item in the training data (used for popularity).
    """

    def __init__(self, K: int = DEFAULT_K):
        if K < 1:
            raise ValueError(f"K must be >= 1, got {K}")
        self.K = K
        self.similarity: sp.csr_matrix | None = None
        self.item_counts: np.ndarray | None = None

    # -- subclasses implement this -------------------------------------------------------
    def _weights(self, user_items: sp.csr_matrix) -> sp.csr_matrix | np.ndarray:
        """Full (or already sparse) item-item weights; the base class keeps the top K."""
        raise NotImplementedError

    # -- shared API ------------------------------------------------------------------------
    def fit(self, user_items: sp.spmatrix) -> "ItemItemModel":
        """Learn item-item weights from a users x items interaction matrix.

        Parameters
        ----------
        user_items : scipy.sparse matrix, shape (n_users, n_items)
            Interaction strengths (non-negative).

        Returns
        -------
        self
        """
        X = _as_csr(user_items)
        self.item_counts = np.asarray((X > 0).sum(axis=0)).ravel().astype(np.float64)
        W = self._weights(X)
        self.similarity = W if sp.issparse(W) and _max_row_nnz(W) <= self.K else _top_k_rows(W, self.K)
        return self

    def recommend(
        self,
        userid: int | np.ndarray,
        user_items: sp.spmatrix,
        N: int = 10,
        filter_already_liked_items: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-N items for one user or an array of users (implicit-style).

        Returns ``(ids, scores)``, each shape (N,) or (n_users, N).
        """
        self._check_fitted()
        X = _as_csr(user_items)
        users = np.atleast_1d(userid)
        scores = np.asarray((X[users] @ self.similarity).todense(), dtype=np.float64)
        if filter_already_liked_items:
            seen = X[users]
            scores[seen.nonzero()] = -np.inf
        ids = np.argsort(-scores, axis=1, kind="stable")[:, :N]
        out = ids, np.take_along_axis(scores, ids, axis=1)
        return (out[0][0], out[1][0]) if np.isscalar(userid) else out

    def similar_items(self, itemid: int, N: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``N`` strongest neighbours of one item, as ``(ids, weights)``."""
        self._check_fitted()
        row = self.similarity.getrow(itemid)
        order = np.argsort(-row.data, kind="stable")[:N]
        return row.indices[order], row.data[order]

    def to_table(
        self, item_ids: Sequence[str] | None = None, popularity: np.ndarray | None = None
    ) -> NeighbourTable:
        """The model as the plain arrays the box scores with.

        Parameters
        ----------
        item_ids : sequence of str, optional
            External id of each column of the training matrix (default: ``"0".."N-1"``).
        popularity : np.ndarray, optional
            Fallback scores; default ``log1p(item_counts)``.
        """
        self._check_fitted()
        S = self.similarity
        n = S.shape[0]
        neighbours = np.full((n, self.K), PAD, dtype=np.int32)
        weights = np.zeros((n, self.K), dtype=np.float32)
        for i in range(n):
            lo, hi = S.indptr[i], S.indptr[i + 1]
            idx, val = S.indices[lo:hi], S.data[lo:hi]
            order = np.argsort(-val, kind="stable")[: self.K]
            neighbours[i, : len(order)] = idx[order]
            weights[i, : len(order)] = val[order]
        if item_ids is None:
            item_ids = [str(i) for i in range(n)]
        if popularity is None:
            popularity = np.log1p(self.item_counts)
        return NeighbourTable(
            item_ids=np.asarray([str(i) for i in item_ids], dtype=object),
            neighbours=neighbours,
            weights=weights,
            popularity=np.asarray(popularity, dtype=np.float32),
        )

    def _check_fitted(self) -> None:
        if self.similarity is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() first")


class CosineModel(ItemItemModel):
    """Cosine similarity of item co-watch vectors with shrinkage.

    ``w_ij = c_ij / (sqrt(c_i * c_j) + shrink)`` where ``c_ij`` counts users who watched both.
    Shrinkage pulls weights of rarely co-watched pairs towards zero.
    """

    def __init__(self, K: int = DEFAULT_K, shrink: float = 10.0):
        super().__init__(K)
        self.shrink = shrink

    def _weights(self, X: sp.csr_matrix) -> sp.csr_matrix:
        C, c_i, c_j = _cocounts(X)
        C.data = C.data / (np.sqrt(c_i * c_j) + self.shrink)
        return C


class JaccardModel(ItemItemModel):
    """Jaccard co-occurrence, as in SAR: ``w_ij = c_ij / (c_i + c_j - c_ij)``."""

    def _weights(self, X: sp.csr_matrix) -> sp.csr_matrix:
        C, c_i, c_j = _cocounts(X)
        C.data = C.data / (c_i + c_j - C.data)
        return C


class BM25Model(ItemItemModel):
    """Dot product of BM25-weighted interaction vectors (Okapi weighting of users).

    Each interaction is re-weighted as a term in a document (item = document, user = term):
    users who watch everything carry less information (idf), and items with very many viewers
    are length-normalised. ``w_ij = sum_u bm25(u, i) * bm25(u, j)``, as implicit's
    ``BM25Recommender`` (same defaults).
    """

    def __init__(self, K: int = DEFAULT_K, K1: float = 1.2, B: float = 0.75):
        super().__init__(K)
        self.K1, self.B = K1, B

    def _weights(self, X: sp.csr_matrix) -> sp.csr_matrix:
        items_users = _binary(X).T.tocsr().astype(np.float64)  # items x users
        n_items = items_users.shape[0]
        coo = items_users.tocoo()
        idf = np.log(n_items) - np.log1p(np.bincount(coo.col, minlength=items_users.shape[1]))
        row_len = np.asarray(items_users.sum(axis=1)).ravel()
        length_norm = (1.0 - self.B) + self.B * row_len / row_len.mean()
        data = coo.data * (self.K1 + 1.0) / (self.K1 * length_norm[coo.row] + coo.data) * idf[coo.col]
        W = sp.csr_matrix((data, (coo.row, coo.col)), shape=items_users.shape)
        C = (W @ W.T).tocsr()
        C.setdiag(0)
        C.eliminate_zeros()
        return C


class EASEModel(ItemItemModel):
    """EASE (Steck, 2019), sparsified to K neighbours per item by re-solving on the support.

    Dense EASE solves, for every item ``j``, the ridge regression of its column of the
    interaction matrix on all other columns: ``B = I - P / diag(P)`` with
    ``P = (X^T X + lambda I)^-1``. It is the most accurate item-item model on MovieLens, but its
    rows are dense, and the box stores only K weights per item. Keeping each row's K largest
    weights ("naive top-K") throws away the compensation between weights that the regression
    learned, and loses accuracy.

    Instead we (1) pick each row's support: its K largest **positive** weights (the items that
    watching ``i`` predicts; negative weights cannot rank an item up); (2) re-solve, for each
    target ``j``, the same ridge regression restricted to the items that kept ``j`` in their
    support: ``B[S_j, j] = (G[S_j, S_j] + lambda I)^-1 G[S_j, j]``. Step 2 is exactly the
    constrained least-squares optimum for that sparsity pattern, so the kept weights re-absorb
    what the dropped ones did. On MovieLens 100K (cf-anchors protocol, K=64) this recovers most
    of the gap: NDCG@10 0.486 against 0.467 for naive top-64 and 0.490 dense
    (``bench/cf_movielens.py`` measures it).

    Parameters
    ----------
    K : int
        Neighbours per item.
    lambda_ : float or "auto"
        L2 regularisation. ``"auto"`` picks it on a held-out part of the training data from a
        grid scaled by the mean item count (so it follows the data, not a dataset constant).
    sparsify : {"resolve", "topk"}
        ``"resolve"`` as above; ``"topk"`` is the naive baseline kept for comparison (each row's K
        largest weights by magnitude, unchanged).
    max_items : int
        Dense EASE needs an N x N matrix; refuse catalogs larger than this (use a heuristic).
    seed : int
        Seed of the held-out split used by ``lambda_="auto"``.
    """

    #: Grid for ``lambda_="auto"``, as multiples of the mean number of interactions per item.
    LAMBDA_GRID = (1.0, 2.0, 4.0, 8.0, 16.0)

    def __init__(
        self,
        K: int = DEFAULT_K,
        lambda_: float | str = "auto",
        sparsify: str = "resolve",
        max_items: int = 20_000,
        seed: int = 0,
    ):
        super().__init__(K)
        if sparsify not in ("resolve", "topk"):
            raise ValueError(f"sparsify must be 'resolve' or 'topk', got {sparsify!r}")
        if lambda_ != "auto" and not (isinstance(lambda_, (int, float)) and lambda_ > 0):
            raise ValueError(f"lambda_ must be a positive number or 'auto', got {lambda_!r}")
        self.lambda_ = lambda_
        self.sparsify = sparsify
        self.max_items = max_items
        self.seed = seed
        self.lambda_used_: float | None = None

    def _weights(self, X: sp.csr_matrix) -> sp.csr_matrix:
        n = X.shape[1]
        if n > self.max_items:
            raise ValueError(
                f"EASE needs a dense {n} x {n} matrix; catalogs above {self.max_items} items "
                "should use BM25Model or CosineModel"
            )
        lam = self._choose_lambda(X) if self.lambda_ == "auto" else float(self.lambda_)
        self.lambda_used_ = lam
        G = (X.T @ X).toarray().astype(np.float64)
        B = _ease_dense(G, lam)
        if self.sparsify == "topk":  # the cf-anchors baseline: K largest |weights|, as learned
            return sp.csr_matrix(np.where(_largest_support(np.abs(B), self.K), B, 0.0))
        return _resolve_on_support(G, lam, _largest_support(B, self.K))

    def _choose_lambda(self, X: sp.csr_matrix) -> float:
        """Pick lambda on a per-user 80/20 hold-out of ``X`` by NDCG@10 of dense EASE.

        One eigendecomposition of the Gram matrix gives every grid point's inverse cheaply.
        """
        fit, held = _holdout_split(X, 0.2, self.seed)
        G = (fit.T @ fit).toarray().astype(np.float64)
        scale = max(float(np.mean(np.diag(G))), 1.0)
        evals, Q = np.linalg.eigh(G)
        users = np.flatnonzero(np.diff(held.indptr) > 0)
        Xf = fit[users].toarray()
        best, best_lam = -1.0, scale * self.LAMBDA_GRID[0]
        for mult in self.LAMBDA_GRID:
            lam = scale * mult
            P = (Q / (evals + lam)) @ Q.T
            B = -P / np.diag(P)
            np.fill_diagonal(B, 0.0)
            score = _ndcg_at(Xf @ B, Xf, held[users], 10)
            if score > best:
                best, best_lam = score, lam
        return best_lam


class SparseEASEModel(ItemItemModel):
    """EASE-style ridge regression on a sparse candidate support per item: no N x N array.

    Each item's candidates are its ``n_candidates`` best cosine-with-shrinkage co-watch
    neighbours in the sparse Gram matrix, plus the items that list it among theirs; each item's
    column is ridge-regressed on its candidates (ridge + dropout-style penalty); each row keeps its K largest positive weights; and each column is re-solved on
    the kept support (the exact optimum for that pattern). Memory grows with the Gram's
    non-zeros. The steps are the public functions of :mod:`models.sparse_ease`, which the Spark
    job reuses.

    Parameters
    ----------
    K : int
        Neighbours per item in the shipped table (rows of ``similarity`` have <= K entries).
    lambda_ : float or "auto"
        Ridge penalty; ``"auto"`` is :func:`models.sparse_ease.choose_lambda` (half the
        popularity-weighted mean item count).
    n_candidates : int
        Candidate support per item before pruning (default :data:`models.sparse_ease.DEFAULT_CANDIDATES`, 192).
    shrink : float
        Shrinkage of the candidates' cosine score.
    dropout : float
        EDLAE-style penalty per unit of a regressor's count (default 1.0: dropout p = 1/2).
    progress : bool
        tqdm bars on stderr for the per-item solves of large catalogs.
    """

    def __init__(
        self,
        K: int = DEFAULT_K,
        lambda_: float | str = "auto",
        n_candidates: int | None = None,
        shrink: float | None = None,
        dropout: float | None = None,
        progress: bool = False,
    ):
        from models import sparse_ease

        super().__init__(K)
        if lambda_ != "auto" and not (isinstance(lambda_, (int, float)) and lambda_ > 0):
            raise ValueError(f"lambda_ must be a positive number or 'auto', got {lambda_!r}")
        self.lambda_ = lambda_
        self.n_candidates = sparse_ease.DEFAULT_CANDIDATES if n_candidates is None else n_candidates
        if self.n_candidates < K:
            raise ValueError(f"n_candidates ({self.n_candidates}) must be >= K ({K})")
        self.shrink = sparse_ease.DEFAULT_SHRINK if shrink is None else shrink
        self.dropout = sparse_ease.DEFAULT_DROPOUT if dropout is None else dropout
        self.progress = progress
        self.lambda_used_: float | None = None

    def _weights(self, X: sp.csr_matrix) -> sp.csr_matrix:
        from models.sparse_ease import fit_sparse_ease

        W, lam = fit_sparse_ease(
            X, self.K, None if self.lambda_ == "auto" else float(self.lambda_),
            self.n_candidates, self.shrink, self.dropout, self.progress,
        )
        self.lambda_used_ = lam
        return W


def default_model(n_items: int, K: int = DEFAULT_K) -> ItemItemModel:
    """The configuration that ships to the box: the sparse learned model, at every size.

    ``n_items`` is kept for callers that size models by catalog; the sparse learner's memory
    grows with the Gram matrix's non-zeros, not with ``n_items^2``, so one model serves all.
    """
    return SparseEASEModel(K=K, progress=n_items >= 20_000)


# ---------------------------------------------------------------------------- helpers


def _as_csr(m: sp.spmatrix) -> sp.csr_matrix:
    if not sp.issparse(m):
        raise TypeError("user_items must be a scipy.sparse matrix (users x items)")
    m = sp.csr_matrix(m, dtype=np.float64)
    if m.nnz and m.data.min() < 0:
        raise ValueError("interaction strengths must be non-negative")
    return m


def _binary(X: sp.csr_matrix) -> sp.csr_matrix:
    B = X.copy()
    B.data = (B.data > 0).astype(np.float64)
    B.eliminate_zeros()
    return B


def _cocounts(X: sp.csr_matrix) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Co-watch counts ``c_ij`` (zero diagonal) and, aligned with its ``data``, ``c_i``, ``c_j``."""
    B = _binary(X)
    C = (B.T @ B).tocsr().astype(np.float64)
    counts = C.diagonal()
    C.setdiag(0)
    C.eliminate_zeros()
    rows, cols = C.nonzero()  # canonical CSR order, aligned with C.data
    return C, counts[rows], counts[cols]


def _max_row_nnz(S: sp.csr_matrix) -> int:
    return int(np.diff(S.indptr).max()) if S.shape[0] else 0


def _top_k_rows(W: sp.spmatrix | np.ndarray, K: int) -> sp.csr_matrix:
    """Keep each row's K largest entries (ties by column), drop non-positive-by-absence zeros."""
    if sp.issparse(W):
        W = W.tocsr()
        rows, cols, vals = [], [], []
        for i in range(W.shape[0]):
            lo, hi = W.indptr[i], W.indptr[i + 1]
            idx, val = W.indices[lo:hi], W.data[lo:hi]
            keep = np.lexsort((idx, -val))[:K]
            rows.append(np.full(len(keep), i))
            cols.append(idx[keep])
            vals.append(val[keep])
        r, c, v = (np.concatenate(a) if a else np.array([]) for a in (rows, cols, vals))
        return sp.csr_matrix((v, (r, c)), shape=W.shape)
    W = np.array(W, dtype=np.float64, copy=True)
    np.fill_diagonal(W, -np.inf)
    n = W.shape[0]
    k = min(K, n - 1)
    idx = np.argpartition(-W, k - 1, axis=1)[:, :k] if k > 0 else np.zeros((n, 0), int)
    vals = np.take_along_axis(W, idx, axis=1)
    finite = np.isfinite(vals) & (vals != 0)
    r = np.repeat(np.arange(n), k).reshape(n, k)
    return sp.csr_matrix((vals[finite], (r[finite], idx[finite])), shape=W.shape)


def _ease_dense(G: np.ndarray, lam: float) -> np.ndarray:
    P = np.linalg.inv(G + lam * np.eye(G.shape[0]))
    B = -P / np.diag(P)
    np.fill_diagonal(B, 0.0)
    return B


def _largest_support(B: np.ndarray, K: int) -> np.ndarray:
    """Boolean mask: each row's K largest strictly positive off-diagonal entries."""
    W = np.where(B > 0, B, -np.inf)
    np.fill_diagonal(W, -np.inf)
    n = W.shape[0]
    k = min(K, n - 1)
    mask = np.zeros(W.shape, dtype=bool)
    if k <= 0:
        return mask
    idx = np.argpartition(-W, k - 1, axis=1)[:, :k]
    ok = np.isfinite(np.take_along_axis(W, idx, axis=1))
    rows = np.repeat(np.arange(n), k).reshape(n, k)
    mask[rows[ok], idx[ok]] = True
    return mask


def _resolve_on_support(G: np.ndarray, lam: float, support: np.ndarray) -> sp.csr_matrix:
    """Ridge-regress each column j on the rows that keep it: exact optimum for that pattern."""
    n = G.shape[0]
    rows, cols, vals = [], [], []
    for j in range(n):
        S = np.flatnonzero(support[:, j])
        if len(S) == 0:
            continue
        A = G[np.ix_(S, S)]
        A[np.diag_indices_from(A)] += lam
        b = scipy.linalg.solve(A, G[S, j], assume_a="pos", check_finite=False)
        rows.append(S)
        cols.append(np.full(len(S), j))
        vals.append(b)
    if not rows:
        return sp.csr_matrix((n, n))
    W = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )
    W.eliminate_zeros()
    return W


def _holdout_split(X: sp.csr_matrix, frac: float, seed: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Per-user random split of a users x items matrix into (fit, held-out)."""
    rng = np.random.default_rng(seed)
    X = X.tocsr()
    held_mask = np.zeros(X.nnz, dtype=bool)
    for u in range(X.shape[0]):
        lo, hi = X.indptr[u], X.indptr[u + 1]
        n_held = int(round(frac * (hi - lo)))
        if n_held and hi - lo > 1:
            held_mask[lo + rng.permutation(hi - lo)[:n_held]] = True
    coo = X.tocoo()
    fit = sp.csr_matrix((coo.data[~held_mask], (coo.row[~held_mask], coo.col[~held_mask])), shape=X.shape)
    held = sp.csr_matrix((coo.data[held_mask], (coo.row[held_mask], coo.col[held_mask])), shape=X.shape)
    return fit, held


def _ndcg_at(scores: np.ndarray, seen: np.ndarray, held: sp.csr_matrix, k: int) -> float:
    """Mean binary NDCG@k of dense scores against held-out items, excluding seen ones."""
    scores = np.where(seen > 0, -np.inf, scores)
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), 1), 1)
    truth = held.toarray() > 0
    hits = np.take_along_axis(truth, top, 1)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    n_true = truth.sum(1)
    idcg = np.cumsum(disc)[np.minimum(n_true, k) - 1]
    return float(((hits * disc).sum(1) / idcg).mean())
