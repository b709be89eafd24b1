"""Item-based collaborative filtering on the box: score a profile from its watch history.

The fleet learns an item-item neighbour table (``models/cowatch.py``) and ships it in the bundle
as two arrays: ``neighbours[i, :]`` are the items that watching item ``i`` recommends and
``weights[i, :]`` how strongly. On the box a profile's score for item ``j`` is

    score(j) = sum over history items i of  affinity(i) * weight(i -> j)

where ``affinity`` comes from the history (completion-weighted, time-decayed, likes boosted,
dislikes negative; see ``device/history.py``). This is one gather of ``H x K`` neighbours and a
``bincount`` -- a few hundred microseconds for 1,000 history events, whatever the catalog size,
and it works on memory-mapped arrays without loading them.

Each recommendation also carries the history item that contributed most to its score, which the
home screen shows as "Because you watched X".
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

#: Padding value in ``NeighbourTable.neighbours`` for rows with fewer than K neighbours.
PAD = -1


@dataclass(frozen=True)
class NeighbourTable:
    """The item-item model as plain arrays (what a bundle stores).

    Attributes
    ----------
    item_ids : np.ndarray of str, shape (N,)
        External item id of each row.
    neighbours : np.ndarray of int32, shape (N, K)
        Row indices of each item's neighbours, ``PAD`` (-1) where a row has fewer than K.
    weights : np.ndarray of float32, shape (N, K)
        Weight of each neighbour; 0 at padding.
    popularity : np.ndarray of float32, shape (N,)
        Fallback score for a profile with no usable history (higher is more popular).
    """

    item_ids: np.ndarray
    neighbours: np.ndarray
    weights: np.ndarray
    popularity: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        if self.neighbours.ndim != 2 or self.neighbours.shape != self.weights.shape:
            raise ValueError(
                f"neighbours {self.neighbours.shape} and weights {self.weights.shape} "
                "must be the same 2-D shape"
            )
        if self.neighbours.shape[0] != n or len(self.popularity) != n:
            raise ValueError(
                f"{n} item ids but {self.neighbours.shape[0]} neighbour rows and "
                f"{len(self.popularity)} popularity values"
            )

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def k(self) -> int:
        return self.neighbours.shape[1]


@dataclass(frozen=True)
class Recommendation:
    """One recommended item.

    ``because`` is the history item that contributed most to ``score`` (None for popularity).
    """

    item_id: str
    score: float
    because: str | None


class ItemIndex:
    """Maps external item ids to table rows. Unknown ids map to -1 (ignored, never fatal).

    When the ids are sorted (bundles write them so) lookups are a binary search over the
    (possibly memory-mapped) id array itself: no per-item Python objects, which for a
    100k-item catalog saves ~13 MB and the time to build a dict. Otherwise a dict is built.
    A large memory-mapped id column is never touched through its mapping (which would make
    all of it resident, see :func:`gather_rows`): it is scanned once by pread, keeping every
    :attr:`SAMPLE`-th id in memory, and a lookup reads one block of ids.
    """

    #: One id in this many is kept in memory for a large memory-mapped id column.
    SAMPLE = 64

    def __init__(self, item_ids: Sequence[str]):
        self._paged = isinstance(item_ids, np.memmap) and item_ids.dtype.kind == "U" \
            and item_ids.ndim == 1 and _pread_source(item_ids) is not None
        if self._paged:
            self.item_ids = item_ids
            self._sorted, self._keys = self._scan(item_ids)
        else:
            ids = np.asarray(item_ids)
            if ids.dtype.kind != "U":
                ids = ids.astype(str)
            self.item_ids = ids
            self._sorted = bool(len(ids) < 2 or np.all(ids[1:] > ids[:-1]))
        if self._sorted:
            self._row = None
        else:
            self._row = {str(item): row for row, item in enumerate(np.asarray(self.item_ids))}
        # Ids looked up recently (the history, the shown cards: the same few hundred on every
        # home screen) -> row. A string binary search costs ~1 us per id, a dict hit ~0.05.
        self._memo: dict[str, int] = {}

    #: Bound of the memo of recent lookups (a few hundred KB at most).
    MEMO_MAX = 4096

    def rows(self, ids: Iterable[str]) -> np.ndarray:
        if self._row is not None:
            get = self._row.get
            return np.fromiter((get(str(i), -1) for i in ids), dtype=np.int64)
        want = [str(i) for i in ids]
        memo = self._memo
        out = np.fromiter((memo.get(w, -2) for w in want), dtype=np.int64, count=len(want))
        miss = np.flatnonzero(out == -2)
        if len(miss):
            missing = [want[i] for i in miss.tolist()]
            found = self._search(missing)
            out[miss] = found
            if len(memo) + len(missing) > self.MEMO_MAX:
                memo.clear()
            if len(missing) <= self.MEMO_MAX:
                memo.update(zip(missing, found.tolist()))
        return out

    def _search(self, want: list[str]) -> np.ndarray:
        want_arr = np.asarray(want, dtype=str)  # its own width: no truncation
        if len(want_arr) == 0 or len(self.item_ids) == 0:
            return np.full(len(want_arr), -1, dtype=np.int64)
        if self._paged:
            return self._search_paged(want_arr)
        pos = np.minimum(np.searchsorted(self.item_ids, want_arr), len(self.item_ids) - 1)
        return np.where(self.item_ids[pos] == want_arr, pos, -1).astype(np.int64)

    def _scan(self, ids: np.ndarray) -> tuple[bool, np.ndarray]:
        """(sorted?, every SAMPLE-th id), reading the column in blocks by pread."""
        step = self.SAMPLE * max(1, (256 << 10) // (self.SAMPLE * ids.itemsize))
        keys, ok, last = [], True, None
        for lo in range(0, len(ids), step):
            block = read_range(ids, lo, min(len(ids), lo + step))
            ok = ok and bool(np.all(block[1:] > block[:-1])) and (last is None or block[0] > last)
            last = block[-1]
            keys.append(block[:: self.SAMPLE].copy())
        return ok, (np.concatenate(keys) if keys else ids[:0].copy())

    def _search_paged(self, want: np.ndarray) -> np.ndarray:
        out = np.full(len(want), -1, dtype=np.int64)
        block = np.searchsorted(self._keys, want, side="right") - 1  # keys[b] <= w < keys[b+1]
        groups: dict[int, list[int]] = {}
        for i, b in enumerate(block.tolist()):
            if b >= 0:
                groups.setdefault(b, []).append(i)
        n = len(self.item_ids)
        for b, at in groups.items():
            lo = b * self.SAMPLE
            ids = read_range(self.item_ids, lo, min(n, lo + self.SAMPLE))
            w = want[at]
            pos = np.minimum(np.searchsorted(ids, w), len(ids) - 1)
            out[at] = np.where(ids[pos] == w, lo + pos, -1)
        return out

    def __contains__(self, item_id: object) -> bool:
        return bool(self.rows([str(item_id)])[0] >= 0)

    def __len__(self) -> int:
        return len(self.item_ids)


_FDS: dict[str, int] = {}
#: Below this size a column is cheaper to read through the mapping (all of it is resident in
#: a few faults anyway); above it, rows are read with pread (see gather_rows). The kernel maps
#: page-cache folios of up to 2 MB whole on one fault (measured: one title read of a 100k-item
#: bundle made 2 MB of the column resident), so the cut is at 1 MB.
PREAD_MIN_BYTES = 1 << 20
#: Rows of each large table kept after a pread (the history's rows, read by every home()).
ROW_CACHE_ROWS = 2048
_ROWS: dict[Any, dict[int, Any]] = {}
#: Rows read per pread when many rows of a table are gathered at once (see gather_rows).
_STREAM_BYTES = 256 << 10


def _identity(st: os.stat_result) -> tuple:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def refresh_file(name: Any) -> None:
    """Forget the open descriptor and cached rows of ``name`` if the file is no longer the one
    they came from (rewritten or replaced). Bundles call it whenever they map a file."""
    fd = _FDS.get(name)
    if fd is None:
        return
    try:
        same = _identity(os.stat(name)) == _identity(os.fstat(fd))
    except OSError:
        same = False
    if not same:
        # The old descriptor is left open: another thread may be reading through it.
        _FDS.pop(name, None)
        _ROWS.pop(name, None)
        _ROWS.pop((name, "scalars"), None)


def _pread_source(arr: np.ndarray) -> tuple[int, int] | None:
    """``(fd, row_bytes)`` when ``arr`` is a large C-contiguous memmap worth reading by pread."""
    name = getattr(arr, "filename", None)
    if not (isinstance(arr, np.memmap) and name and arr.ndim >= 1 and arr.flags.c_contiguous
            and arr.base is not None and arr.nbytes > PREAD_MIN_BYTES
            and hasattr(os, "preadv")):
        return None
    fd = _FDS.get(name)
    if fd is None:
        fd = _FDS[name] = os.open(name, os.O_RDONLY)
    return fd, arr.itemsize * math.prod(arr.shape[1:])


def read_row(arr: np.ndarray, row: int) -> Any:
    """``arr[row]`` (a scalar for a 1-D column), read with one ``pread`` for a large memmap
    (see :func:`gather_rows`)."""
    src = _pread_source(arr)
    if src is None or not 0 <= row < arr.shape[0]:
        return arr[row]
    if arr.ndim == 1:  # ids and titles of the cards on screen: the same ones call after call
        cache = _ROWS.setdefault((arr.filename, "scalars"), {})
        value = cache.get(row)
        if value is not None:
            return value
    fd, row_bytes = src
    data = os.pread(fd, row_bytes, arr.offset + row * row_bytes)
    if len(data) != row_bytes:
        return arr[row]  # file changed under us: fall back to the mapping
    out = np.frombuffer(data, dtype=arr.dtype).reshape(arr.shape[1:])
    if arr.ndim > 1:
        return out
    if len(cache) >= ROW_CACHE_ROWS:
        cache.clear()
    cache[row] = value = out[()]
    return value


def _distinct(x: np.ndarray) -> np.ndarray:
    """Sorted distinct values (``np.unique`` imports ``numpy.ma``: ~25 ms and 1-2 MB)."""
    x = np.sort(x)
    return x[np.concatenate(([True], x[1:] != x[:-1]))] if len(x) else x


def read_range(arr: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """``arr[lo:hi]`` as a new array, read with one ``pread`` for a large memmap."""
    src = _pread_source(arr)
    if src is None:
        return np.array(arr[lo:hi])
    fd, row_bytes = src
    out = np.empty((max(0, hi - lo),) + arr.shape[1:], dtype=arr.dtype)
    n = out.nbytes
    if n and os.preadv(fd, [out.view(np.uint8).reshape(-1)], arr.offset + lo * row_bytes) != n:
        return np.array(arr[lo:hi])  # file changed under us: fall back to the mapping
    return out


def gather_rows(arr: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``arr[rows]`` as a new array; for a large memory-mapped table, read with ``pread``.

    Faulting a few hundred scattered rows in through the mapping makes the kernel map the
    pages around each one too (fault-around, whole large folios), so at 100k items a single
    profile's score added ~48 MB of file pages to the process's resident set. Reading the rows
    with ``pread`` touches only the page cache: the same bytes, none of them resident in the
    process. Few rows are read one ``pread`` each; many (e.g. every cold item) by streaming
    the file through a small buffer, in order.
    """
    rows = np.asarray(rows, dtype=np.int64)
    src = _pread_source(arr)
    if src is None:
        return np.asarray(arr[rows])
    fd, row_bytes = src
    out = np.empty((len(rows),) + arr.shape[1:], dtype=arr.dtype)
    if len(rows) == 0:
        return out
    if ((rows < 0) | (rows >= arr.shape[0])).any():
        raise IndexError(f"row index out of range for {arr.shape[0]} rows")
    view = out.view(np.uint8).reshape(len(rows), row_bytes)
    chunk = max(1, _STREAM_BYTES // row_bytes)
    blocks = _distinct(rows // chunk)
    if len(rows) > ROW_CACHE_ROWS // 2 and len(rows) > 16 * len(blocks):  # dense: stream
        buf = np.empty(chunk * row_bytes, dtype=np.uint8)
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        bounds = np.searchsorted(srt, np.append(blocks, blocks[-1] + 1) * chunk)
        for b, lo, hi in zip(blocks.tolist(), bounds[:-1].tolist(), bounds[1:].tolist()):
            first = b * chunk
            n = min(chunk, arr.shape[0] - first) * row_bytes
            if os.preadv(fd, [buf[:n]], arr.offset + first * row_bytes) != n:
                return np.asarray(arr[rows])
            block = buf[:n].reshape(-1, row_bytes)
            view[order[lo:hi]] = block[srt[lo:hi] - first]
        return out
    # Few rows: one pread each, remembered (bundles are immutable; the same history rows are
    # read on every home screen).
    cache = _ROWS.setdefault(arr.filename, {})
    parts = []
    for r in rows.tolist():
        data = cache.get(r)
        if data is None:
            data = os.pread(fd, row_bytes, arr.offset + r * row_bytes)
            if len(data) != row_bytes:
                return np.asarray(arr[rows])  # file changed under us: fall back to the mapping
            if len(cache) >= ROW_CACHE_ROWS:
                cache.clear()
            cache[r] = data
        parts.append(data)
    view[:] = np.frombuffer(b"".join(parts), dtype=np.uint8).reshape(len(rows), row_bytes)
    return out


def score_rows(
    table: NeighbourTable, rows: np.ndarray, affinity: np.ndarray
) -> np.ndarray:
    """Score every item of the table for one profile.

    Parameters
    ----------
    table : NeighbourTable
    rows : np.ndarray of int, shape (H,)
        Table rows of the history items; negative entries (unknown items) are ignored.
    affinity : np.ndarray of float, shape (H,)
        Affinity of each history item.

    Returns
    -------
    np.ndarray of float32, shape (N,)
        ``scores[j] = sum_i affinity[i] * weight(i -> j)``.
    """
    rows = np.asarray(rows)
    affinity = np.asarray(affinity, dtype=np.float32)
    known = rows >= 0
    rows, affinity = rows[known], affinity[known]
    if len(rows) == 0:
        return np.zeros(table.n_items, dtype=np.float32)
    nb = gather_rows(table.neighbours, rows)
    contrib = gather_rows(table.weights, rows) * affinity[:, None]
    return _scores(nb, contrib, table.n_items)


def _scores(nb: np.ndarray, contrib: np.ndarray, n: int) -> np.ndarray:
    """Sum contributions per target; padding (-1) goes to an extra bin that is dropped."""
    nb = np.where(nb < 0, n, nb).ravel()
    return np.bincount(nb, weights=contrib.ravel(), minlength=n + 1)[:n].astype(np.float32)


def recommend(
    table: NeighbourTable,
    history_ids: Sequence[str],
    affinity: Sequence[float],
    *,
    n: int = 20,
    exclude: Iterable[str] = (),
    index: ItemIndex | None = None,
    candidates: np.ndarray | None = None,
    history_rows: np.ndarray | None = None,
    exclude_rows: np.ndarray | None = None,
) -> list[Recommendation]:
    """Top-``n`` items for a profile, each with the history item that contributed most.

    Parameters
    ----------
    table : NeighbourTable
    history_ids, affinity : sequences of equal length
        The profile's history items and their affinity (``History.affinities``). Items unknown
        to the table are ignored. Negative affinity (a dislike) pushes that item's neighbours
        down.
    n : int
        How many to return.
    exclude : iterable of str
        Items never to return (e.g. finished or disliked ones). History items with negative
        affinity are always excluded.
    index : ItemIndex, optional
        Reuse a prebuilt id -> row map (building one costs O(N)); built if omitted.
    candidates : np.ndarray of bool, shape (N,), optional
        Only these rows may be returned (e.g. warm catalog items).
    history_rows : np.ndarray of int, optional
        ``index.rows(history_ids)``, when the caller already has it (-1 for unknown items).
    exclude_rows : np.ndarray of int, optional
        More items never to return, as table rows (negative entries are ignored).

    Returns
    -------
    list of Recommendation
        Sorted by score, descending; ties broken by popularity, then row order. A profile with
        no usable history gets the most popular items (``because=None``).
    """
    index = index or ItemIndex(table.item_ids)
    rows = index.rows(history_ids) if history_rows is None else np.asarray(history_rows, np.int64)
    aff = np.asarray(affinity, dtype=np.float32)
    if len(aff) != len(rows):
        raise ValueError(f"{len(rows)} history items but {len(aff)} affinities")

    allowed = np.ones(table.n_items, dtype=bool) if candidates is None else candidates.copy()
    ex_rows = index.rows(exclude)
    allowed[ex_rows[ex_rows >= 0]] = False
    if exclude_rows is not None:
        ex_rows = np.asarray(exclude_rows, dtype=np.int64)
        allowed[ex_rows[ex_rows >= 0]] = False
    disliked = rows[(aff < 0) & (rows >= 0)]
    allowed[disliked] = False

    positive = (rows >= 0) & (aff > 0)
    if not positive.any():
        return _popular(table, allowed, n)

    # Read the history's neighbour rows once: scoring and the "because" item both need them.
    known = rows >= 0
    nb = gather_rows(table.neighbours, rows[known])
    contrib = gather_rows(table.weights, rows[known]) * aff[known][:, None]
    scores = _scores(nb, contrib, table.n_items)
    # Only items some history item actually points to are CF recommendations.
    # Rank only those (at most H x K rows), not the whole catalog.
    cand = np.flatnonzero(allowed & (scores > 0))
    k = min(n, len(cand))
    if k == 0:
        return _popular(table, allowed, n)
    top = cand[_top_k(scores[cand], k, np.asarray(table.popularity)[cand])]
    names = [str(h) for h, k in zip(history_ids, known.tolist()) if k]
    because = _top_contributors(table, names, nb, contrib, top)
    recs = [
        Recommendation(str(read_row(table.item_ids, r)), float(scores[r]), because[j])
        for j, r in enumerate(top)
    ]
    if len(recs) < n:  # top up with popular items so a row is never short
        taken = allowed.copy()
        taken[top] = False
        recs += _popular(table, taken, n - len(recs))
    return recs


def _top_k(scores: np.ndarray, k: int, tiebreak: np.ndarray) -> np.ndarray:
    """Positions of the k largest scores, descending, ties by ``tiebreak`` then by position."""
    if k < len(scores):
        part = np.argpartition(-scores, k - 1)[:k]
        # Items tied with the k-th score may have been cut arbitrarily: include them all.
        kth = scores[part].min()
        part = np.flatnonzero(scores >= kth)
    else:
        part = np.arange(len(scores))
    order = np.lexsort((part, -np.asarray(tiebreak)[part], -scores[part]))
    return part[order][:k]


def _popular(table: NeighbourTable, allowed: np.ndarray, n: int) -> list[Recommendation]:
    pop = np.where(allowed, np.asarray(table.popularity, dtype=np.float64), -np.inf)
    k = min(n, int(allowed.sum()))
    if k <= 0:
        return []
    top = _top_k(pop, k, np.zeros(len(pop)))
    return [Recommendation(str(read_row(table.item_ids, r)), float(pop[r]), None) for r in top]


def _top_contributors(
    table: NeighbourTable, names: Sequence[str], nb: np.ndarray, contrib: np.ndarray,
    targets: np.ndarray,
) -> list[str | None]:
    """For each target row, the history item whose ``affinity * weight`` into it is largest.

    ``nb`` and ``contrib`` are the (H, K) neighbour ids and contributions of the history items
    ``names`` (their ids, which the caller has: no read of the id column).
    """
    wanted = np.full(table.n_items + 1, -1, dtype=np.int64)
    wanted[targets] = np.arange(len(targets))
    flat_nb = nb.ravel()
    slot = wanted[np.where(flat_nb < 0, table.n_items, flat_nb)]  # position in targets or -1
    hit = np.flatnonzero(slot >= 0)  # flat (h, k) positions, row-major
    sel_slot, sel_contrib = slot[hit], contrib.ravel()[hit]
    # Per target: the largest contribution, and of the history items giving it the first
    # (a per-group max and min instead of sorting every hit).
    best = np.full(len(targets), -np.inf)
    np.maximum.at(best, sel_slot, sel_contrib)
    top = sel_contrib == best[sel_slot]
    first = np.full(len(targets), len(flat_nb), dtype=np.int64)
    np.minimum.at(first, sel_slot[top], hit[top])
    k = max(1, nb.shape[1]) if nb.ndim == 2 else 1
    best_src = np.where(first < len(flat_nb), first // k, -1)
    return [
        names[s] if s >= 0 and best[j] > 0 else None
        for j, s in enumerate(best_src)
    ]

