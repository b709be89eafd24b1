"""The sparse learner: each step against brute-force dense numpy, the whole fit against a dense
re-implementation on the same supports, the history cap by hand, and no N x N array anywhere."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

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


def brute_fit(X, K, C, shrink, lam):
    """Steps 1-4 with dense numpy: candidates, ridge, top-K positive per row, re-solve."""
    Xd = (X.toarray() > 0).astype(float)
    Gd = Xd.T @ Xd
    n = len(Gd)
    W1 = np.zeros((n, n))
    for j, S in enumerate(brute_candidates(Gd, C, shrink)):
        if S:
            W1[S, j] = np.linalg.solve(Gd[np.ix_(S, S)] + lam * np.eye(len(S)), Gd[S, j])
    keep = np.zeros((n, n), bool)
    for i in range(n):  # row i: K largest positive weights, ties by smaller column
        order = sorted((-W1[i, j], j) for j in range(n) if W1[i, j] > 0)[:K]
        keep[i, [j for _, j in order]] = True
    W = np.zeros((n, n))
    for j in range(n):
        S = np.flatnonzero(keep[:, j])
        if len(S):
            W[S, j] = np.linalg.solve(Gd[np.ix_(S, S)] + lam * np.eye(len(S)), Gd[S, j])
    return W


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), K=st.integers(1, 6), C=st.integers(6, 12),
       lam=st.floats(0.5, 50.0))
def test_sparse_fit_equals_brute_force_dense_solve_on_the_same_supports(seed, K, C, lam):
    X = random_log(seed)
    W, used = se.fit_sparse_ease(X, K=K, lam=lam, n_candidates=C, shrink=3.0)
    assert used == lam
    np.testing.assert_allclose(W.toarray(), brute_fit(X, K, C, 3.0, lam), rtol=1e-9, atol=1e-12)
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
    assert lam == pytest.approx(se.LAMBDA_PER_POPULARITY * (100 + 100 + 900) / 50)
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


def test_predicted_gram_nnz_bounds_the_real_one():
    for seed in range(5):
        X = random_log(seed, n_users=60, n_items=50)
        assert se.gram_matrix(X).nnz <= se.predicted_gram_nnz(X)
