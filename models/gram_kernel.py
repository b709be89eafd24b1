"""Compiled kernels (numba) of the sparse learner's steps, on plain arrays.

Each kernel computes exactly what the numpy reference in :mod:`models.sparse_ease` computes
(same integers, same float64 scores, same tie-breaks), only without the sorts and fancy-index
lookups that dominate the reference at 100k items. They are serial, release the GIL
(``nogil``) and write into caller-owned slices, so callers parallelise them with plain threads
over disjoint chunks (:func:`parallel_chunks`); the Spark executors can call them on their own
partitions the same way. Without numba, :data:`AVAILABLE` is False and the callers use the
numpy reference, which gives identical results.

Kernels (all indices ``int64`` or ``int32``, supports ``-1``-padded at the end):

* :func:`candidates_csr` -- each row's ``C`` best cosine-with-shrinkage neighbours in a CSR
  Gram (``models.sparse_ease.candidate_support``);
* :func:`top_by_group` -- per group, the ``k`` largest scores (ties: smaller member), the
  selection behind ``reverse_candidates`` and ``keep_top_k``;
* :func:`gram_blocks_csr` -- the ridge systems ``G[S, S]`` and ``G[S, j]`` of equal-width
  supports, by galloping intersection of each support row of the CSR Gram with the sorted
  support, upper triangle only (``models.sparse_ease.gram_blocks``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

try:  # numba is in the `train` and `fleet` extras; without it the numpy reference runs
    from numba import njit

    AVAILABLE = os.environ.get("TVREC_NO_NUMBA") != "1"
except ImportError:  # pragma: no cover - exercised where numba is not installed
    njit = None
    AVAILABLE = False


def n_threads() -> int:
    """Cores this process may use (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def parallel_chunks(fn, bounds, threads: int | None = None) -> list:
    """``[fn(lo, hi) for lo, hi in bounds]``, run on ``threads`` threads (default: the cores).

    ``fn`` must write only to its own chunk (the compiled kernels release the GIL).
    """
    threads = n_threads() if threads is None else threads
    if threads <= 1 or len(bounds) <= 1:
        return [fn(lo, hi) for lo, hi in bounds]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda b: fn(*b), bounds))


def balanced_bounds(cost: np.ndarray, n_chunks: int) -> list[tuple[int, int]]:
    """Split ``range(len(cost))`` into at most ``n_chunks`` contiguous chunks of similar cost."""
    n = len(cost)
    if n == 0:
        return []
    cum = np.cumsum(np.asarray(cost, dtype=np.float64) + 1.0)
    cuts = np.searchsorted(cum, cum[-1] * np.arange(1, n_chunks) / n_chunks)
    edges = np.unique(np.r_[0, cuts, n])
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


#: :func:`gram_blocks_csr` scans a Gram row against the support map when the row is at most
#: this many times longer than the support items left, else gallops (measured at 50k items).
SCAN_FACTOR = 8

if njit is not None:

    @njit(cache=True, nogil=True)
    def _select(idx, sc, n, k, positive, out_idx, out_sc):  # pragma: no cover - compiled
        """The ``k`` largest of ``sc[:n]`` (ties: earlier entry), in entry order.

        ``idx[:n]`` ascending, so "earlier" is "smaller index". With ``positive`` only
        scores > 0 qualify. Returns how many were written to ``out_idx`` / ``out_sc``.
        """
        m = 0
        if positive:  # drop non-positive entries first (they would rank last anyway)
            for e in range(n):
                if sc[e] > 0:
                    idx[m] = idx[e]
                    sc[m] = sc[e]
                    m += 1
            n = m
        if n <= k:
            for e in range(n):
                out_idx[e] = idx[e]
                out_sc[e] = sc[e]
            return n
        neg = np.empty(n, np.float64)
        for e in range(n):
            neg[e] = -sc[e]
        thr = -np.partition(neg, k - 1)[k - 1]  # the k-th largest score
        above = 0
        for e in range(n):
            if sc[e] > thr:
                above += 1
        ties = k - above
        m = 0
        for e in range(n):
            s = sc[e]
            if s > thr or (s == thr and ties > 0):
                if s == thr:
                    ties -= 1
                out_idx[m] = idx[e]
                out_sc[m] = s
                m += 1
        return m

    @njit(cache=True, nogil=True)
    def candidates_csr(starts, ends, indices, data, rows, counts, shrink, lo, hi,
                       out_sup, out_sc):  # pragma: no cover - compiled
        """Rows ``lo..hi-1`` of a CSR Gram (row ``r`` is item ``rows[r]``, its entries
        ``indices/data[starts[r]:ends[r]]``, so any subset of a Gram's rows is read in place):
        candidates.

        Writes ``out_sup[r]`` (item indices ascending, ``-1`` padded) and ``out_sc[r]`` (their
        scores ``G / (sqrt(c_i c_j) + shrink)``, 0 at padding) for the ``C = out_sup.shape[1]``
        best, ties by the smaller item; only ``G > 0`` off the diagonal qualifies.
        """
        C = out_sup.shape[1]
        width = 0
        for r in range(lo, hi):
            width = max(width, ends[r] - starts[r])
        idx = np.empty(width, np.int64)
        sc = np.empty(width, np.float64)
        for r in range(lo, hi):
            i = rows[r]
            ci = counts[i]
            n = 0
            for e in range(starts[r], ends[r]):
                j = indices[e]
                v = np.float64(data[e])
                if v > 0 and j != i:
                    idx[n] = j
                    sc[n] = v / (np.sqrt(ci * counts[j]) + shrink)
                    n += 1
            m = _select(idx, sc, n, C, False, out_sup[r], out_sc[r])
            for e in range(m, C):
                out_sup[r, e] = -1
                out_sc[r, e] = 0.0

    @njit(cache=True, nogil=True)
    def top_by_group(group, member, score, n_groups, k, positive, out):  # pragma: no cover
        """Mask of each group's ``k`` largest scores, ties by the smaller member.

        ``group`` (in ``0..n_groups-1``) / ``member`` / ``score`` are triplets in any order (no
        duplicate pairs); with ``positive`` only scores > 0 are kept. The rule of
        ``keep_top_k(group, member, score, k)``. If ``out`` has ``n_groups`` rows, row ``g``
        also receives group ``g``'s kept members, ascending, ``-1`` padded.
        """
        n = len(group)
        cnt = np.zeros(n_groups + 1, np.int64)
        for e in range(n):
            cnt[group[e] + 1] += 1
        for g in range(n_groups):
            cnt[g + 1] += cnt[g]
        # entries of each group by member ascending: stable counting sort of a member sort
        ordered = True
        for e in range(1, n):
            if member[e] < member[e - 1]:
                ordered = False
                break
        by_member = np.arange(n) if ordered else np.argsort(member, kind="mergesort")
        fill = cnt[:-1].copy()
        slot = np.empty(n, np.int64)
        for q in range(n):
            e = by_member[q]
            g = group[e]
            slot[fill[g]] = e
            fill[g] += 1
        keep = np.zeros(n, np.bool_)
        width = 0
        for g in range(n_groups):
            width = max(width, cnt[g + 1] - cnt[g])
        idx = np.empty(width, np.int64)
        sc = np.empty(width, np.float64)
        oi = np.empty(width, np.int64)
        osc = np.empty(width, np.float64)
        for g in range(n_groups):
            a, b = cnt[g], cnt[g + 1]
            for q in range(a, b):
                idx[q - a] = q  # position in `slot`: ascending member within the group
                sc[q - a] = score[slot[q]]
            m = _select(idx, sc, b - a, k, positive, oi, osc)
            for q in range(m):
                keep[slot[oi[q]]] = True
            if out.shape[0] == n_groups:
                for q in range(m):
                    out[g, q] = member[slot[oi[q]]]
                for q in range(m, out.shape[1]):
                    out[g, q] = -1
        return keep

    @njit(cache=True, nogil=True)
    def compact_rows(sup, keep, out):  # pragma: no cover - compiled
        """``out[r]``: the kept entries of ``sup[r]`` in their order, ``-1`` padded; returns
        the widest row's length."""
        width = 0
        for r in range(sup.shape[0]):
            n = 0
            for e in range(sup.shape[1]):
                if keep[r, e]:
                    out[r, n] = sup[r, e]
                    n += 1
            width = max(width, n)
            for e in range(n, out.shape[1]):
                out[r, e] = -1
        return width

    @njit(cache=True, nogil=True, inline="always")
    def _gallop(arr, lo, hi, x):  # pragma: no cover - compiled
        """First position in ``arr[lo:hi]`` (sorted) holding a value >= x (``hi`` if none)."""
        step = 1
        while lo + step < hi and arr[lo + step] < x:
            step *= 2
        a = lo + step // 2 if step > 1 else lo
        b = min(lo + step, hi)
        # invariant: arr[a - 1] < x (or a == lo), answer in [a, b]
        while a < b:
            mid = (a + b) // 2
            if arr[mid] < x:
                a = mid + 1
            else:
                b = mid
        return a

    @njit(cache=True, nogil=True, inline="always")
    def _put(blk, rhs, op, oq, m, v):  # pragma: no cover - compiled
        if op == m:
            if oq != m:
                rhs[oq] = v
        elif oq == m:
            rhs[op] = v
        else:
            blk[op, oq] = v
            blk[oq, op] = v

    def gram_blocks_csr(indptr, indices, data, targets, supports, lo, hi, out_blocks, out_rhs,
                        scan=SCAN_FACTOR, pos=None):
        """Systems ``lo..hi-1`` of equal-width supports from a canonical square CSR Gram.

        ``supports`` (T, m): distinct items per target, any order, never the target, no
        padding. Writes ``out_blocks[t] = G[S, S]`` and ``out_rhs[t] = G[S, j]`` (float64 of
        the exact counts). Per target, the support and the target are sorted once and their
        positions marked in an items-long map; each sorted item's Gram row is then read from
        that item on (upper triangle) up to the largest key: scanned against the map when it
        is at most ``scan`` times longer than the keys left, else galloped through key by key
        (popular items' long rows). Cost per row ~ min(row, keys * log(row / keys)).

        ``pos``: optional int32 scratch of one entry per item, all -1 (left so on return), to
        reuse across calls of one thread instead of allocating an items-long map per call.
        """
        if pos is None:
            pos = np.full(len(indptr) - 1, -1, np.int32)
        _gram_blocks(indptr, indices, data, targets, supports, lo, hi, out_blocks, out_rhs,
                     float(scan), pos)

    @njit(cache=True, nogil=True)
    def _gram_blocks(indptr, indices, data, targets, supports, lo, hi, out_blocks, out_rhs,
                     scan, pos):  # pragma: no cover - compiled
        m = supports.shape[1]
        keys = np.empty(m + 1, np.int64)
        for t in range(lo, hi):
            j = targets[t]
            for p in range(m):
                keys[p] = supports[t, p]
            keys[m] = j
            order = np.argsort(keys, kind="mergesort")
            sk = keys[order]
            top = sk[m]
            blk = out_blocks[t]
            rhs = out_rhs[t]
            for p in range(m):
                for q in range(m):
                    blk[p, q] = 0.0
                rhs[p] = 0.0
            for p in range(m + 1):
                pos[sk[p]] = order[p]
            for p in range(m + 1):
                a = sk[p]
                op = order[p]
                r1 = indptr[a + 1]
                nq = m + 1 - p
                r0 = _gallop(indices, indptr[a], r1, a)  # entries >= a: the upper triangle
                if r1 - r0 <= scan * nq:  # scan the row against the map
                    for e in range(r0, r1):
                        b = indices[e]
                        if b > top:
                            break
                        oq = pos[b]
                        if oq >= 0:
                            _put(blk, rhs, op, oq, m, np.float64(data[e]))
                else:  # walk the keys, gallop in the row
                    e = r0
                    for q in range(p, m + 1):
                        b = sk[q]
                        e = _gallop(indices, e, r1, b)
                        if e >= r1:
                            break
                        if indices[e] == b:
                            _put(blk, rhs, op, order[q], m, np.float64(data[e]))
            for p in range(m + 1):
                pos[sk[p]] = -1

    @njit(cache=True, nogil=True)
    def union_sorted(a, b, out):  # pragma: no cover - compiled
        """Row-wise sorted union of two ``-1``-padded ascending supports into ``out``."""
        for r in range(a.shape[0]):
            i = 0
            k = 0
            n = 0
            na = a.shape[1]
            nb = b.shape[1]
            while True:
                x = a[r, i] if i < na else -1
                y = b[r, k] if k < nb else -1
                if x < 0 and y < 0:
                    break
                if y < 0 or (x >= 0 and x < y):
                    v = x
                    i += 1
                elif x < 0 or y < x:
                    v = y
                    k += 1
                else:
                    v = x
                    i += 1
                    k += 1
                out[r, n] = v
                n += 1
            for e in range(n, out.shape[1]):
                out[r, e] = -1
