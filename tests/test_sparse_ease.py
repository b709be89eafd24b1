"""The sparse learner: each step against brute-force dense numpy, the whole fit against a dense
re-implementation on the same supports, the history cap by hand, and no N x N array anywhere."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from models import gram_kernel as gk
from models import sparse_ease as se
from models.cowatch import HISTORY_CAP, SparseEASEModel, cap_histories, default_model


def random_log(seed, n_users=40, n_items=25, density=0.2):
    rng = np.random.default_rng(seed)
    pop = rng.random(n_items) ** 2  # uneven popularity, so candidate lists differ in length
    X = (rng.random((n_users, n_items)) < density * pop / pop.mean()).astype(float)
    return sp.csr_matrix(X)


def brute_candidates(Gd, C, shrink):
    """Top-C cosine-with-shrinkage neighbours, written the obvious way."""
    c = np.diag(Gd)
    out = []
    for i in range(len(Gd)):
        cand = [(-Gd[i, j] / (np.sqrt(c[i] * c[j]) + shrink), j)
                for j in range(len(Gd)) if j != i and Gd[i, j] > 0]
        out.append(sorted(j for _, j in sorted(cand)[:C]))
    return out


def brute_fit(X, K, C, shrink, lam, dropout):
    """The pipeline with dense numpy: candidates (own list + lists that name the item), ridge
    with dropout penalty, top-K positive per row, re-solve on the kept support."""
    Xd = (X.toarray() > 0).astype(float)
    Gd = Xd.T @ Xd
    n = len(Gd)
    c = np.diag(Gd)
    own = brute_candidates(Gd, C, shrink)
    score = lambda a, j: Gd[a, j] / (np.sqrt(c[a] * c[j]) + shrink)  # noqa: E731
    support = []
    for j in range(n):
        listing = sorted((-score(a, j), a) for a in range(n) if j in own[a])[:C]
        support.append(sorted(set(own[j]) | {a for _, a in listing}))

    def ridge(S, j):
        return np.linalg.solve(Gd[np.ix_(S, S)] + np.diag(lam + dropout * c[S]), Gd[S, j])

    W1 = np.zeros((n, n))
    for j, S in enumerate(support):
        if S:
            W1[S, j] = ridge(S, j)
    keep = np.zeros((n, n), bool)
    R = W1.astype(np.float32)  # ranked at the bundle's precision: rounding noise cannot break ties
    for i in range(n):  # row i: K largest positive weights, ties by smaller column
        order = sorted((-R[i, j], j) for j in range(n) if R[i, j] > 0)[:K]
        keep[i, [j for _, j in order]] = True
    W = np.zeros((n, n))
    for j in range(n):
        S = np.flatnonzero(keep[:, j])
        if len(S):
            W[S, j] = ridge(S, j)
    return W


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), K=st.integers(1, 6), C=st.integers(6, 12),
       lam=st.floats(0.5, 50.0), dropout=st.sampled_from([0.0, 0.5]))
def test_sparse_fit_equals_brute_force_dense_solve_on_the_same_supports(seed, K, C, lam, dropout):
    X = random_log(seed)
    W, used = se.fit_sparse_ease(X, K=K, lam=lam, n_candidates=C, shrink=3.0, dropout=dropout)
    assert used == lam
    np.testing.assert_allclose(W.toarray(), brute_fit(X, K, C, 3.0, lam, dropout),
                               rtol=1e-9, atol=1e-12)
    assert np.diff(W.indptr).max(initial=0) <= K
    assert W.diagonal().sum() == 0


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_candidates_and_blocks_match_dense(seed):
    X = random_log(seed, n_items=30)
    G = se.gram_matrix(X)
    Gd = (X.toarray() > 0).astype(float).T @ (X.toarray() > 0).astype(float)
    np.testing.assert_array_equal(G.toarray(), Gd)
    c = G.diagonal().astype(float)
    rows = np.arange(30)[::-1]  # any subset, any order
    sup = se.candidate_support(G[rows], rows, c, 7, 2.0)
    want = brute_candidates(Gd, 7, 2.0)
    for r, s in zip(rows, sup):
        assert list(s[s >= 0]) == want[r] and np.all(s[len(want[r]):] == -1)
    blocks, rhs = se.gram_blocks(G, rows, sup)
    for t, (j, s) in enumerate(zip(rows, sup)):
        S = s[s >= 0]
        np.testing.assert_array_equal(blocks[t][: len(S), : len(S)], Gd[np.ix_(S, S)])
        np.testing.assert_array_equal(rhs[t][: len(S)], Gd[S, j])
        assert not blocks[t][len(S):].any() and not rhs[t][len(S):].any()


def test_solves_do_not_depend_on_batching():
    X = random_log(3, n_users=80, n_items=40)
    G = se.gram_matrix(X)
    items = np.arange(40)
    sup = se.candidate_support(G, items, G.diagonal().astype(float), 10)
    a = se.solve_supports(G, items, sup, 4.0, batch=1)
    b = se.solve_supports(G, items, sup, 4.0, batch=17)
    np.testing.assert_array_equal(a, b)  # each system is solved at its own width
    c = np.concatenate([se.solve_supports(G, items[:13], sup[:13], 4.0),
                        se.solve_supports(G, items[13:], sup[13:], 4.0)])
    np.testing.assert_array_equal(a, c)


needs_numba = pytest.mark.skipif(not gk.AVAILABLE, reason="numba not installed")


@needs_numba
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), K=st.integers(1, 8), C=st.integers(2, 12),
       density=st.floats(0.05, 0.5), shrink=st.sampled_from([0.0, 3.0]))
def test_compiled_path_equals_numpy_reference(seed, K, C, density, shrink):
    """Every step, then the whole fit: the kernels give the reference's exact supports and
    bit-identical weights (the blocks are the same integers, each system solved at its width)."""
    X = random_log(seed, n_users=50, n_items=35, density=density)
    G = se.gram_matrix(X)
    c = G.diagonal().astype(float)
    rows = np.random.default_rng(seed).permutation(35)
    f1, s1 = se.candidate_support(G[rows], rows, c, C, shrink, True, compiled=True)
    f0, s0 = se.candidate_support(G[rows], rows, c, C, shrink, True, compiled=False)
    np.testing.assert_array_equal(f1, f0)
    np.testing.assert_array_equal(s1, s0)
    items = np.arange(35)
    fwd, sc = se.candidate_support(G, items, c, C, shrink, True)
    r1 = se.reverse_candidates(items, fwd, sc, C, compiled=True)
    np.testing.assert_array_equal(r1, se.reverse_candidates(items, fwd, sc, C, compiled=False))
    u1 = se.union_supports(fwd, r1, compiled=True)
    np.testing.assert_array_equal(u1, se.union_supports(fwd, r1, compiled=False))
    w1 = se.solve_supports(G, items, u1, 5.0, compiled=True)
    np.testing.assert_array_equal(w1, se.solve_supports(G, items, u1, 5.0, compiled=False))
    np.testing.assert_array_equal(se.pruned_supports(items, u1, w1, K, compiled=True),
                                  se.pruned_supports(items, u1, w1, K, compiled=False))
    valid = u1 >= 0
    tg = np.broadcast_to(items[:, None], u1.shape)[valid]
    np.testing.assert_array_equal(se.keep_top_k(u1[valid], tg, w1[valid], K, compiled=True),
                                  se.keep_top_k(u1[valid], tg, w1[valid], K, compiled=False))
    a, _ = se.fit_sparse_ease(X, K, 5.0, C, shrink, compiled=True)
    b, _ = se.fit_sparse_ease(X, K, 5.0, C, shrink, compiled=False)
    assert (a != b).nnz == 0 and a.nnz == b.nnz


@needs_numba
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), m=st.integers(1, 20), scan=st.sampled_from([0.0, 1.0, 8.0, 1e9]))
def test_block_kernel_equals_scipy_lookups_whether_it_scans_or_gallops(seed, m, scan):
    X = random_log(seed, n_users=60, n_items=30, density=0.4)
    G = se.gram_matrix(X)
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 30, 12)
    sup = np.array([rng.permutation(np.setdiff1d(np.arange(30), [t]))[:m] for t in targets])
    B = np.empty((12, m, m))
    R = np.empty((12, m))
    gk.gram_blocks_csr(G.indptr.astype(np.int64), G.indices, G.data, targets, sup, 0, 12, B, R,
                       scan)
    blocks, rhs = se.gram_blocks(G, targets, sup)
    np.testing.assert_array_equal(B, blocks)
    np.testing.assert_array_equal(R, rhs)


def test_pruning_treats_weights_equal_at_float32_as_ties():
    """Two weights a few ulps apart (the same regression solved in another blocking) tie at the
    shipped precision, so the smaller target is kept, on every engine; a real gap is not a tie."""
    w = 0.012345678
    sup = np.array([[7], [7], [7]])
    targets = np.array([3, 1, 2])
    weights = np.array([[w], [np.nextafter(w, 0)], [w * (1 - 1e-5)]])
    for compiled in ([False, True] if gk.AVAILABLE else [False]):
        kept = se.pruned_supports(targets, sup, weights, K=1, compiled=compiled)
        assert kept[:, 0].tolist() == [-1, 7, -1]  # item 7 keeps target 1 (tie with 3; 2 is lower)


def test_union_supports_by_hand_sorted_or_not():
    a = np.array([[1, 4, 9, -1], [-1, -1, -1, -1]])
    b = np.array([[0, 4, -1], [2, 3, -1]])
    want = [[0, 1, 4, 9], [2, 3, -1, -1]]
    for compiled in ([False, True] if gk.AVAILABLE else [False]):
        assert se.union_supports(a, b, compiled=compiled).tolist() == want
        # unsorted rows take the sorting path: same answer
        assert se.union_supports(a[:, ::-1], b, compiled=compiled).tolist() == want


def test_solves_do_not_depend_on_threads():
    X = random_log(5, n_users=80, n_items=40)
    G = se.gram_matrix(X)
    items = np.arange(40)
    sup = se.candidate_support(G, items, G.diagonal().astype(float), 10)
    a = se.solve_supports(G, items, sup, 4.0, threads=1, batch=3)
    b = se.solve_supports(G, items, sup, 4.0, threads=2, batch=5)
    np.testing.assert_array_equal(a, b)


def test_keep_top_k_by_hand():
    rows = np.array([0, 0, 0, 0, 1, 1, 2])
    targets = np.array([5, 3, 4, 9, 1, 2, 7])
    weights = np.array([0.5, 0.5, 0.9, -1.0, 0.0, 0.2, -0.1])
    keep = se.keep_top_k(rows, targets, weights, K=2)
    # row 0: 0.9 (->4) then the 0.5 tie goes to the smaller target 3; row 1: only 0.2 is > 0
    assert list(keep) == [False, True, True, False, False, True, False]


def test_no_dense_n_by_n_array_on_a_huge_sparse_catalog():
    """A million items (a dense float64 N x N would be 8 TB) with few interactions: the fit is
    small, because memory follows the Gram's non-zeros."""
    rng = np.random.default_rng(0)
    n_items, n_users = 1_000_000, 300
    users = np.repeat(np.arange(n_users), 8)
    items = rng.choice(2_000, len(users)) * 500  # 2,000 active items spread over the catalog
    X = sp.csr_matrix((np.ones(len(users)), (users, items)), shape=(n_users, n_items))
    tracemalloc.start()
    model = SparseEASEModel(K=16).fit(X)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 200 * 2**20  # the N-long count arrays are 8 MB each; an N x N is 8e12 bytes
    S = model.similarity
    assert S.shape == (n_items, n_items) and S.nnz > 0
    assert np.diff(S.indptr).max() <= 16
    assert set(S.nonzero()[0]) <= set(items)


def test_default_model_is_the_sparse_learner_at_every_size():
    for n in (10, 1_700, 100_000, 10_000_000):
        assert isinstance(default_model(n), SparseEASEModel)


def test_choose_lambda_is_scale_free_in_catalog_size():
    counts = np.array([10.0, 10.0, 0.0, 30.0])
    lam = se.choose_lambda(counts)
    assert lam == pytest.approx(0.5 * (100 + 100 + 900) / 50)
    # adding never-watched items changes nothing; the rule reads the interactions' items
    assert se.choose_lambda(np.r_[counts, np.zeros(10_000)]) == pytest.approx(lam)


def test_history_cap_by_hand():
    #          events:  0   1   2   3   4   5   6   7
    users = np.array(["a", "a", "a", "a", "a", "b", "b", "a"])
    items = np.array([5, 3, 5, 7, 9, 5, 3, 3])
    ts = np.array([10, 20, 30, 30, 5, 1, 1, 1])
    # user a: latest per item 5->30, 7->30, 3->20, 9->5; 5 and 7 tie at 30, smaller item first
    assert list(cap_histories(users, items, ts, H=2)) == [1, 0, 1, 1, 0, 1, 1, 0]
    # H=1 keeps a's item 5 (every event of it) and b's item 3 (tie at t=1, smaller item)
    assert list(cap_histories(users, items, ts, H=1)) == [1, 0, 1, 0, 0, 0, 1, 0]
    assert cap_histories(users, items, ts).all() and HISTORY_CAP >= 1000
    with pytest.raises(ValueError, match="finite"):
        cap_histories(users, items, np.r_[ts[:-1], np.nan])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), H=st.integers(1, 6))
def test_history_cap_keeps_each_users_h_latest_distinct_items(seed, H):
    rng = np.random.default_rng(seed)
    n = 60
    users, items, ts = rng.integers(0, 4, n), rng.integers(0, 12, n), rng.integers(0, 8, n)
    keep = cap_histories(users, items, ts, H)
    for u in np.unique(users):
        mine = users == u
        latest = {i: ts[mine & (items == i)].max() for i in np.unique(items[mine])}
        want = sorted(latest, key=lambda i: (-latest[i], i))[:H]
        assert set(items[mine & keep]) == set(want)
        assert np.all(keep[mine] == np.isin(items[mine], want))


def test_predicted_gram_nnz_is_close_on_unstructured_logs_and_never_above_the_pair_bound():
    for seed in range(5):
        X = random_log(seed, n_users=60, n_items=50)
        real, pred = se.gram_matrix(X).nnz, se.predicted_gram_nnz(X)
        assert 0.8 * real <= pred <= 1.25 * real
        assert pred <= (np.diff(X.indptr).astype(float) ** 2).sum()
