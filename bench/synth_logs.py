"""Synthetic watch logs with the shape of real ones, for the CF benchmarks (not a product).

Zipf item popularity, lognormal history lengths, and taste structure: items belong to taste
clusters; each user leans on one to three clusters (Dirichlet weights) and draws most events
there by popularity, the rest from the whole catalog. Timestamps increase along each history.
Nothing here is tuned to a model: the parameters are round numbers of the shapes seen in
MovieLens and IPTV logs (Zipf exponent ~1, a long tail of users with short histories).
"""

from __future__ import annotations

import numpy as np


def synth_log(n_items: int, n_users: int, n_events: int, *, seed: int = 0,
              zipf: float = 1.0, taste: float = 0.8, n_clusters: int | None = None):
    """``(users, items, timestamps)`` arrays of distinct (user, item) events.

    Parameters
    ----------
    n_items, n_users, n_events : int
        Catalog size, users, and the target number of events (distinct pairs; slightly fewer
        come out where a user draws the same item twice).
    zipf : float
        Popularity exponent: item of rank r is drawn with weight ``r ** -zipf``.
    taste : float
        Share of a user's events drawn from the user's own clusters.
    n_clusters : int, optional
        Taste clusters (default ``~sqrt(n_items) / 2``).
    """
    rng = np.random.default_rng(seed)
    k = n_clusters or max(2, int(np.sqrt(n_items) / 2))
    pop = 1.0 / np.arange(1, n_items + 1) ** zipf
    items_by_rank = rng.permutation(n_items)
    cluster = rng.integers(0, k, n_items)  # cluster of each rank
    lens = rng.lognormal(0.0, 1.0, n_users)
    lens = np.maximum(1, np.round(lens * n_events / lens.sum())).astype(np.int64)
    lens = np.minimum(lens, n_items // 2)
    # per cluster: its ranks and the cumulative popularity inside it
    members = [np.flatnonzero(cluster == c) for c in range(k)]
    cum = [np.cumsum(pop[m]) / pop[m].sum() for m in members]
    glob = np.cumsum(pop) / pop.sum()
    users = np.repeat(np.arange(n_users), lens)
    n = len(users)
    own = rng.random(n) < taste
    ranks = np.searchsorted(glob, rng.random(n))  # global draws
    n_fav = rng.integers(1, 4, n_users)
    favs = rng.integers(0, k, (n_users, 3))
    weights = rng.dirichlet(np.ones(3), n_users)
    weights[np.arange(3)[None, :] >= n_fav[:, None]] = 0
    weights /= weights.sum(1, keepdims=True)
    pick = (rng.random(n)[:, None] > np.cumsum(weights, 1)[users]).sum(1)
    pick = np.minimum(pick, 2)
    cl = favs[users, pick]
    for c in range(k):
        sel = own & (cl == c)
        if sel.any() and len(members[c]):
            ranks[sel] = members[c][np.minimum(np.searchsorted(cum[c], rng.random(sel.sum())),
                                               len(members[c]) - 1)]
    items = items_by_rank[np.minimum(ranks, n_items - 1)]
    ts = np.arange(n, dtype=np.float64) - np.repeat(np.cumsum(lens) - lens, lens)
    ts += np.repeat(rng.integers(0, 10**6, n_users), lens)
    pair = users.astype(np.int64) * n_items + items
    _, first = np.unique(pair, return_index=True)
    first = np.sort(first)
    return users[first], items[first], ts[first]
