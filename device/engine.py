"""The home screen, decided on the box: rows of programmes, each with a reason.

::

    from device.engine import Engine

    engine = Engine("bundles/current", "history.db")
    engine.add_profile("alice")
    engine.record("alice", "p0042", "finish")
    for row in engine.home("alice"):
        print(row.title, [card.title for card in row.cards])

Rows, in order (empty ones are left out):

1. **Continue watching** -- started, not finished, most recent first (from the history).
2. **Top picks for you** -- item-based CF over the whole history (``device.cf``).
3. **Because you watched <title>** -- CF from one strong history item; up to two such rows.
4. **New for you** -- cold catalog items (no co-watch data yet) and the viewer's own recordings,
   ranked by content similarity (the int8 model's embeddings) to what the profile watched.
5. **Popular now** -- the fallback, and the first row of a new profile.

No programme appears twice on a screen; history items are never recommended again; a disliked
item and its closest neighbours are pushed away; each row caps how many cards share a primary
genre so a row is never one genre wall. Everything is recomputed from SQLite on each call, so a
finish or a like changes the very next ``home()``.

One ``Engine`` per thread (it owns a SQLite connection); other threads or processes may write
events to the same database file at the same time.
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from device.bundle import Bundle, open_bundle
from device.bundle_format import UNKNOWN_DURATION_S
from device.cf import _top_k, gather_rows, read_row, recommend
from device.content import ContentEmbedder, Embedded, quantize_embedding, unit
from device.errors import BundleError, HistoryError, UnknownItemError
from device.history import History

#: Cards per row, and how many of them may share a primary genre.
ROW_LENGTH = 12
GENRE_CAP = 0.5
#: Episodes of one series a row may hold (a row of ten episodes of one show is one choice,
#: not ten). Over the cap, cards move to the end of the row's candidates, as for genres.
SERIES_CAP = 2
#: What makes a title an episode: a trailing "#7", "(7)", "S1E7", "S01 E07", "Ep. 7", "Episode 7".
_EPISODE = re.compile(r"\s*(#\s*\d+|\(\d+\)|S\d+\s*E\d+|Ep(isode)?\.?\s*\d+)\s*$", re.IGNORECASE)


def series_of(title: str) -> str:
    """The series a title belongs to: the title without its episode marker, case-folded.

    >>> series_of("Super Cycling Cup Final #7"), series_of("Heat")
    ('super cycling cup final', 'heat')
    """
    return _EPISODE.sub("", title).strip().casefold()


#: At most this many "Because you watched" rows.
BECAUSE_ROWS = 2
#: A row with fewer cards than this is not worth a line on the screen.
MIN_ROW = 3


@dataclass(frozen=True)
class Card:
    """One programme on the screen."""

    item_id: str
    title: str
    genres: tuple[str, ...]
    duration: float
    reason: str
    score: float = 0.0
    progress: float | None = None  # completion, for Continue watching
    source: str = "catalog"  # or "local"


@dataclass(frozen=True)
class Row:
    """A titled row of cards. ``kind`` is one of continue, top_picks, because, new, popular."""

    kind: str
    title: str
    cards: tuple[Card, ...]


@dataclass(frozen=True)
class _Pick:
    """A card before its title is read. Rows rank and de-duplicate three times the cards they
    show, and at 100k items reading a title is a pread: only the cards shown are built.

    ``reason`` is the text, or, with ``because``, a template whose ``{}`` becomes that item's
    title."""

    item_id: str
    primary: str  # primary genre ("" for none): what the genre cap counts
    reason: str
    score: float = 0.0
    progress: float | None = None
    because: str | None = None


@dataclass
class Timings:
    """What the last calls cost (the simulator's budget overlay reads these)."""

    open_ms: float = 0.0
    home_ms: float = math.nan
    embed_ms: float = math.nan
    extra: dict = field(default_factory=dict)


def _standardise(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit spread; NaN (no evidence) becomes 0, the average."""
    x = np.asarray(x, dtype=np.float64)
    ok = np.isfinite(x)
    if not ok.any():
        return np.zeros_like(x)
    sd = x[ok].std()
    z = (x - x[ok].mean()) / sd if sd > 0 else np.zeros_like(x)
    return np.where(ok, z, 0.0)


class Engine:
    """Offline recommendations for one box: a bundle, a history database, a content model.

    Parameters
    ----------
    bundle : Bundle or path
        An opened bundle, or its directory (opened with size checks; ``install_bundle`` does
        the full sha256 verification once, when a bundle arrives).
    db : History or path
        The watch-history database (created if missing).
    row_length : int
        Cards per row.
    num_threads : int
        Interpreter threads for the content model (loaded on first use).
    clock : callable
        Seconds since the epoch (tests pass a fixed clock).
    """

    def __init__(
        self,
        bundle: Bundle | str | os.PathLike,
        db: History | str | os.PathLike,
        *,
        row_length: int = ROW_LENGTH,
        num_threads: int = 1,
        clock: Callable[[], float] = time.time,
    ):
        t0 = time.perf_counter()
        self.bundle = bundle if isinstance(bundle, Bundle) else open_bundle(bundle, verify="sizes")
        self.history = db if isinstance(db, History) else History(db, clock=clock)
        self.row_length = row_length
        self.num_threads = num_threads
        self.clock = clock
        self.items = self.bundle.items
        self.table = self.bundle.table
        self._index = self.items.index
        self._warm = ~np.asarray(self.items.cold, dtype=bool)
        # Plain ndarray views of small columns: np.memmap's per-item indexing costs ~2 us.
        self._durations = np.asarray(self.items.durations)
        self._codes = np.asarray(self.items.genre_codes)
        self._bundle_genres = list(self.items.genre_vocab)
        self._embedder: ContentEmbedder | None = None
        self._row_cache: dict[str, int] = {}
        self._series_cache: dict[str, str] = {}
        # The bundle's genres first, in its code order; genres of local items are appended.
        self._genre_vocab: dict[str, int] = {g: i for i, g in enumerate(self._bundle_genres)}
        self._popular_order: np.ndarray | None = None
        self._popular_head: list[tuple[str, float]] = []
        self._cold_genre: tuple[np.ndarray, np.ndarray] | None = None
        self._cold_rows: np.ndarray | None = None
        self._cold_ids: list[str] = []
        self._cold_emb: np.ndarray | None = None
        self._cold_reads_genres = bool((self.bundle.manifest.get("cold_start") or {})
                                       .get("reads_genres", False))
        self.timings = Timings(open_ms=(time.perf_counter() - t0) * 1000.0)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        self.history.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ profiles and events

    def add_profile(self, profile_id: str, display_name: str | None = None):
        return self.history.add_profile(profile_id, display_name)

    def record(self, profile_id: str, item_id: str, kind: str, *, position: float | None = None,
               timestamp: float | None = None) -> int | None:
        """Record a viewing event (see :meth:`History.record`).

        Catalog items enter the history database on their first event, so opening a
        100k-item bundle never has to copy its item table into SQLite.
        """
        self._ensure_item(item_id)
        return self.history.record(profile_id, item_id, kind, position=position,
                                   timestamp=timestamp)

    def _ensure_item(self, item_id: str) -> None:
        if self.history.has_item(item_id):
            return
        row = self._row(item_id)
        if row < 0:
            raise UnknownItemError(f"item {item_id!r}: not in the bundle nor among local items")
        self.history.upsert_items([self.items.record(row)])

    # ------------------------------------------------------------------ item facts

    def _row(self, item_id: str) -> int:
        """Bundle row of an item id (-1 if not in the bundle), memoised: the same few hundred
        ids (history, shown cards) are looked up on every home()."""
        row = self._row_cache.get(item_id)
        if row is None:
            if len(self._row_cache) >= 8192:
                self._row_cache.clear()
            row = self._row_cache[item_id] = int(self._index.rows([item_id])[0])
        return row

    def card(self, item_id: str, reason: str = "", score: float = 0.0,
             progress: float | None = None) -> Card:
        """A card for any known item (catalog or local). Raises ``UnknownItemError``."""
        row = self._row(item_id)
        if row >= 0:
            # A catalog may not know a duration (NaN, bundle schema 3): the card, playback and
            # the history take the nominal length (read per card: no pass over the column).
            duration = float(self._durations[row])
            return Card(item_id, self.items.titles[row], self._catalog_genres(row),
                        duration if duration > 0 else UNKNOWN_DURATION_S, reason, score,
                        progress, "catalog")
        item = self.history.item(item_id)  # raises UnknownItemError
        return Card(item.id, item.title, tuple(item.genres), float(item.duration), reason, score,
                    progress, item.source)

    def _catalog_genres(self, row: int) -> tuple[str, ...]:
        vocab = self._bundle_genres
        return tuple(vocab[c] for c in self._codes[row].tolist() if c >= 0)

    def _pick(self, item_id: str, reason: str, score: float = 0.0, *,
              progress: float | None = None, because: str | None = None) -> _Pick:
        """A candidate card; raises ``UnknownItemError`` like :meth:`card`."""
        row = self._row(item_id)
        genres = self._catalog_genres(row) if row >= 0 \
            else self.history.item(item_id).genres  # raises UnknownItemError
        return _Pick(item_id, genres[0] if genres else "", reason, score, progress, because)

    def _title(self, item_id: str) -> str:
        try:
            return self.card(item_id).title
        except UnknownItemError:
            return item_id

    # ------------------------------------------------------------------ the home screen

    def home(self, profile_id: str) -> list[Row]:
        """The profile's home-screen rows (see the module docstring). Raises
        ``UnknownProfileError`` for an unknown profile."""
        t0 = time.perf_counter()
        aff = self.history.affinities(profile_id, now=self.clock())
        resume = self.history.continue_watching(profile_id, limit=self.row_length)
        history_ids = [str(i) for i in aff.item_ids]
        positive = aff.affinity > 0
        shown: set[str] = set()
        never = set(history_ids)  # watched or disliked: not recommended again
        rows: list[Row] = []

        titles: dict[str, str] = {}  # "because" titles of this screen

        picks = [self._pick(r.item_id, f"Resume at {r.completion:.0%}", progress=r.completion)
                 for r in resume]
        self._add_row(rows, shown, titles, "continue", "Continue watching", picks, min_len=1)

        # History rows, looked up once: "never" (the history) is excluded by row below.
        h_rows = self._index.rows(history_ids)
        if positive.any():
            pool = recommend(self.table, history_ids, aff.affinity, n=3 * self.row_length,
                             exclude=shown, index=self._index, candidates=self._warm,
                             history_rows=h_rows, exclude_rows=h_rows)
            picks = [self._pick(r.item_id, "Because you watched {}", r.score, because=r.because)
                     for r in pool if r.because is not None]
            self._add_row(rows, shown, titles, "top_picks", "Top picks for you",
                          self._diverse(picks))

            for anchor in self._anchors(aff, history_ids):
                pool = recommend(self.table, [anchor], [1.0], n=3 * self.row_length,
                                 exclude=shown, index=self._index, candidates=self._warm,
                                 history_rows=np.array([self._row(anchor)]), exclude_rows=h_rows)
                title = self._title(anchor)
                picks = [self._pick(r.item_id, f"Because you watched {title}", r.score)
                         for r in pool if r.because is not None]
                self._add_row(rows, shown, titles, "because", f"Because you watched {title}",
                              self._diverse(picks))

        picks = self._new_for_you(history_ids, aff.affinity, never | shown,
                                  np.concatenate([h_rows, self._index.rows(shown)]))
        self._add_row(rows, shown, titles, "new", "New for you", self._diverse(picks))

        picks = [self._pick(i, "Popular now", s) for i, s in self._popular(never | shown)]
        self._add_row(rows, shown, titles, "popular", "Popular now", self._diverse(picks))

        self.timings.home_ms = (time.perf_counter() - t0) * 1000.0
        return rows

    def _popular(self, exclude: set[str]) -> list[tuple[str, float]]:
        """The most popular warm items not in ``exclude``. Popularity is fixed per bundle, so
        its order is sorted once and walked (O(row) per call instead of O(catalog))."""
        want = 3 * self.row_length
        ids, pop = self.items.ids, self.table.popularity
        if not self._popular_head:
            # The head almost every call walks, as str, found by a partial sort (ties by row,
            # as the stable sort of the whole order gives); the rest is sorted if ever needed.
            warm = np.flatnonzero(self._warm)
            wpop = np.asarray(pop)[warm]
            head = warm[_top_k(wpop, min(1024, len(warm)), np.zeros(len(warm)))]
            self._popular_head = list(zip(gather_rows(ids, head).tolist(),
                                          np.asarray(pop)[head].astype(float).tolist()))
        out = []
        for item, score in self._popular_head:
            if item not in exclude:
                out.append((item, score))
                if len(out) == want:
                    return out
        if self._popular_order is None:
            warm = np.flatnonzero(self._warm)
            self._popular_order = warm[np.argsort(-np.asarray(pop)[warm], kind="stable")]
        for r in self._popular_order[len(self._popular_head):].tolist():
            item = str(read_row(ids, r))
            if item not in exclude:
                out.append((item, float(pop[r])))
                if len(out) == want:
                    break
        return out

    def _add_row(self, rows: list[Row], shown: set[str], titles: dict[str, str], kind: str,
                 title: str, picks: Sequence[_Pick], min_len: int = MIN_ROW) -> None:
        picks = [p for p in picks if p.item_id not in shown][: self.row_length]
        if len(picks) >= min_len:
            cards = []
            for p in picks:
                reason = p.reason
                if p.because is not None:
                    if p.because not in titles:
                        titles[p.because] = self._title(p.because)
                    reason = reason.format(titles[p.because])
                cards.append(self.card(p.item_id, reason, p.score, p.progress))
            rows.append(Row(kind, title, tuple(cards)))
            shown.update(c.item_id for c in cards)

    def _diverse(self, cards: Sequence[_Pick]) -> list[_Pick]:
        """Greedy caps: at most GENRE_CAP of a row may share a primary genre and at most
        SERIES_CAP cards may be episodes of one series; cards over a cap move to the end rather
        than vanish (a short catalog still fills the row). Titles (a pread each at 100k items)
        are read only until the row is full."""
        cap = max(1, math.ceil(GENRE_CAP * self.row_length))
        counts: dict[str, int] = {}
        per_series: dict[str, int] = {}
        kept, later = [], []
        for n, c in enumerate(cards):
            if len(kept) == self.row_length:
                return kept + later + list(cards[n:])
            g = c.primary
            if counts.get(g, 0) >= cap or not self._series_room(per_series, c.item_id):
                later.append(c)
                continue
            counts[g] = counts.get(g, 0) + 1
            kept.append(c)
        return kept + later

    def _series_room(self, per_series: dict[str, int], item_id: str) -> bool:
        """Whether ``item_id``'s series is under SERIES_CAP in ``per_series``; counts it if so."""
        key = self._series(item_id)
        if per_series.get(key, 0) >= SERIES_CAP:
            return False
        per_series[key] = per_series.get(key, 0) + 1
        return True

    def _series(self, item_id: str) -> str:
        key = self._series_cache.get(item_id)
        if key is None:
            if len(self._series_cache) >= 8192:
                self._series_cache.clear()
            key = self._series_cache[item_id] = series_of(self._title(item_id))
        return key

    def _anchors(self, aff, history_ids: list[str]) -> list[str]:
        """Up to BECAUSE_ROWS history items that deserve their own row: warm catalog items the
        profile liked, finished or mostly watched, strongest (recency-weighted) first."""
        order = np.argsort(-aff.affinity, kind="stable")
        out = []
        for i in order:
            if aff.affinity[i] <= 0 or aff.completion[i] < 0.5:
                continue
            row = self._row(history_ids[i])
            if row >= 0 and self._warm[row]:
                out.append(history_ids[i])
            if len(out) == BECAUSE_ROWS:
                break
        return out

    # ------------------------------------------------------------------ content-based rows

    def _cold_matrix(self) -> tuple[list[str], np.ndarray]:
        """Ids and unit embeddings of the cold catalog items (computed once, kept)."""
        if self._cold_rows is None:
            self._cold_rows = np.flatnonzero(~self._warm)
            # read by pread, not through the mapping: see device.cf.gather_rows
            self._cold_ids = gather_rows(self.items.ids, self._cold_rows).tolist()
            self._cold_emb = unit(self.bundle.embedding(self._cold_rows))
        return self._cold_ids, self._cold_emb

    def _history_embeddings(self, history_ids: list[str], affinity: np.ndarray,
                            rows: np.ndarray | None = None):
        """Embeddings of the history items that have one (catalog rows or local items)."""
        local = self.history.local_items()
        local_row = {str(i): n for n, i in enumerate(local.item_ids)}
        rows = self._index.rows(history_ids) if rows is None else rows
        emb = np.zeros((len(history_ids), self.bundle.dim), np.float32)
        known = rows >= 0
        if known.any():
            emb[known] = self.bundle.embedding(rows[known])
        for n in np.flatnonzero(~known):
            if history_ids[n] in local_row:
                emb[n] = local.embeddings[local_row[history_ids[n]]]
                known[n] = True
        ids = [h for h, k in zip(history_ids, known) if k]
        return ids, unit(emb[known]), np.asarray(affinity, np.float64)[known], local

    def _new_for_you(self, history_ids: list[str], affinity: np.ndarray, exclude: set[str],
                     exclude_rows: np.ndarray) -> list[_Pick]:
        """``exclude_rows``: the bundle rows of ``exclude``; the history's come first."""
        cold_ids, cold_emb = self._cold_matrix()
        h_ids, h_emb, h_w, local = self._history_embeddings(
            history_ids, affinity, exclude_rows[:len(history_ids)])
        cand_ids, cand_emb = cold_ids, cold_emb
        if len(local.item_ids):
            cand_ids = cold_ids + [str(i) for i in local.item_ids]
            cand_emb = np.vstack([cold_emb, unit(local.embeddings)])
        keep = self._not_excluded(cand_ids, exclude, exclude_rows)
        if not keep.any():
            return []
        idx = np.flatnonzero(keep)
        n_out = 3 * self.row_length

        pos = h_w > 0
        if not pos.any():  # a new profile: newest first
            n_cold = len(self._cold_ids)
            release = np.full(len(idx), math.inf)  # a recording is the newest thing there is
            cat = idx < n_cold
            release[cat] = np.asarray(self.items.release)[self._cold_rows[idx[cat]]]
            order = idx[np.argsort(-release, kind="stable")[:n_out]]
            return [self._pick(cand_ids[i], "New") for i in order]

        # Each history item votes for similar new items with its affinity; dislikes vote
        # against at half weight. Summing votes = one dot product with a profile vector.
        w_pos = h_w[pos] / h_w[pos].sum()
        query = h_emb[pos].T @ w_pos + 0.5 * (h_emb[~pos].T @ h_w[~pos])
        content = cand_emb[idx] @ query
        # Catalog metadata is a second, independent signal: how much of the profile's viewing
        # (affinity-weighted) is in the new item's genres. Both are standardised over the
        # candidates and added, so neither needs a tuned scale; recordings have no genres and
        # rank on content alone. A bundle whose cold embeddings were placed from the genres
        # already (``tvrec bundle build``: manifest ``cold_start.reads_genres``) is ranked on
        # content alone too: adding the genres again counts the same evidence twice (ML-100K
        # held-out items: NDCG@20 0.25 on content alone, 0.16 with the genre term added).
        scores = _standardise(content)
        if not self._cold_reads_genres:
            scores = scores + _standardise(self._genre_match(cand_ids, history_ids, affinity)[idx])
        top = _top_k(scores, min(n_out, len(scores)), np.zeros(len(scores)))  # = stable sort
        # The reason: the liked history item that voted most for each shown card.
        votes = (cand_emb[idx[top]] @ h_emb[pos].T) * w_pos[None, :]
        src = np.asarray(h_ids, dtype=object)[pos][np.argmax(votes, axis=1)]
        return [self._pick(cand_ids[idx[t]], "New, like {}", float(scores[t]), because=src[j])
                for j, t in enumerate(top)]

    def _not_excluded(self, cand_ids: list[str], exclude: set[str],
                      exclude_rows: np.ndarray) -> np.ndarray:
        """``[c not in exclude for c in cand_ids]`` for the cold items (then local ones), found
        through the excluded items' rows rather than thousands of set lookups."""
        n_cold = len(self._cold_ids)
        keep = np.ones(len(cand_ids), dtype=bool)
        ex = exclude_rows[exclude_rows >= 0]
        if len(ex) and n_cold:
            at = np.minimum(np.searchsorted(self._cold_rows, ex), n_cold - 1)
            keep[at[self._cold_rows[at] == ex]] = False
        for j in range(n_cold, len(cand_ids)):
            keep[j] = cand_ids[j] not in exclude
        return keep

    def _genres(self, item_id: str) -> list[str]:
        row = self._row(item_id)
        if row >= 0:
            return list(self.items.genres[row])
        try:
            return list(self.history.item(item_id).genres)
        except UnknownItemError:
            return []

    @staticmethod
    def _genre_weights(gs: Sequence[str]) -> dict[str, float]:
        """Genre lists are ordered by weight (primary first): position k of n counts n - k, so
        a sports/music programme is mostly sports."""
        n = len(gs)
        return {g: (n - k) / (n * (n + 1) / 2) for k, g in enumerate(gs)}

    def _genre_matrix(self, ids: list[str]) -> np.ndarray:
        """[len(ids), n_genres] genre weights over the engine's genre vocabulary."""
        rows = self._index.rows(ids)
        out = np.zeros((len(ids), len(self._bundle_genres)))
        cat = np.flatnonzero(rows >= 0)
        if len(cat):
            codes = self._codes[rows[cat]]
            valid = codes >= 0
            n = valid.sum(axis=1, keepdims=True)
            k = np.cumsum(valid, axis=1) - 1  # position among the item's genres
            w = (n - k) / np.maximum(n * (n + 1) / 2, 1)
            r, c = np.nonzero(valid)
            out[cat[r], codes[r, c]] = w[r, c]
        others = [(n, self._genre_weights(self._genres(ids[n])))
                  for n in np.flatnonzero(rows < 0).tolist()]
        for _, w in others:  # local recordings: their genres may be new to the vocabulary
            for g in w:
                self._genre_vocab.setdefault(g, len(self._genre_vocab))
        if len(self._genre_vocab) > out.shape[1]:
            out = np.pad(out, ((0, 0), (0, len(self._genre_vocab) - out.shape[1])))
        for n, w in others:
            for g, v in w.items():
                out[n, self._genre_vocab[g]] = v
        return out

    def _genre_match(self, cand_ids: list[str], history_ids: list[str], affinity) -> np.ndarray:
        """How much of the profile's positive affinity lies in each candidate's genres (NaN for
        a candidate without genres, e.g. a recording: no evidence either way)."""
        a = np.asarray(affinity, dtype=np.float64)
        pos = np.flatnonzero(a > 0)
        profile = self._genre_matrix([history_ids[i] for i in pos.tolist()]).T @ a[pos]
        if self._cold_genre is None:
            # the cold catalog never changes: its genre matrix is built once
            G = self._genre_matrix(self._cold_ids)
            self._cold_genre = (G, G.sum(axis=1) == 0)
        n_cold = len(self._cold_ids)
        parts = [self._cold_genre[0]]
        if len(cand_ids) > n_cold:  # local recordings after the cold items
            parts.append(self._genre_matrix(cand_ids[n_cold:]))
        width = len(self._genre_vocab)
        prof = np.pad(profile, (0, width - len(profile)))
        total = prof.sum() or 1.0
        out = np.concatenate([np.pad(p, ((0, 0), (0, width - p.shape[1]))) @ prof
                              for p in parts]) / total
        none = self._cold_genre[1]
        if len(parts) > 1:
            none = np.concatenate([none, parts[1].sum(axis=1) == 0])
        out[none] = np.nan
        return out

    # ------------------------------------------------------------------ details page

    def similar(self, item_id: str, n: int = ROW_LENGTH) -> list[Card]:
        """Programmes like ``item_id`` for its details page: co-watch neighbours first (warm
        items), then content neighbours (any item with an embedding). Raises UnknownItemError."""
        self.card(item_id)  # unknown -> UnknownItemError
        out: list[Card] = []
        seen = {item_id}
        # At most SERIES_CAP episodes of any one series, the item's own included: an episode's
        # co-watch neighbours are mostly its siblings, and "more like this" should be more
        # than the rest of the same show.
        per_series: dict[str, int] = {}
        row = self._row(item_id)
        if row >= 0:
            nb = np.asarray(self.table.neighbours[row])
            w = np.asarray(self.table.weights[row])
            for j in np.argsort(-w, kind="stable"):
                if nb[j] < 0 or w[j] <= 0:
                    continue
                other = str(read_row(self.items.ids, int(nb[j])))
                if other not in seen and self._series_room(per_series, other):
                    out.append(self.card(other, "Viewers also watched", float(w[j])))
                    seen.add(other)
                if len(out) >= n:
                    return out
        # Content neighbours over the whole catalog plus local items.
        h_ids, h_emb, _, local = self._history_embeddings([item_id], np.ones(1))
        if not h_ids:
            return out
        q = h_emb[0]
        # In blocks, read by pread, ranked with a partial sort: the whole catalog as float32
        # plus a Python list of (score, id) cost ~20 MB at 100k items.
        n_cat = self.bundle.n_items
        sims = np.empty(n_cat, dtype=np.float32)
        for lo in range(0, n_cat, 8192):
            hi = min(n_cat, lo + 8192)
            sims[lo:hi] = unit(self.bundle.embedding(np.arange(lo, hi))) @ q
        if len(local.item_ids):
            sims = np.concatenate([sims, unit(local.embeddings) @ q])
        # Candidates skipped: those already seen, and episodes over the series cap (a few per
        # series shown); 8x the cards still needed covers that without sorting everything.
        k = min(len(sims), 8 * (n - len(out)) + len(seen))
        # descending, ties in catalog-then-local order (what a stable sort gives)
        for r in _top_k(sims, k, np.zeros(len(sims))).tolist() if k > 0 else []:
            other = str(read_row(self.items.ids, r)) if r < n_cat \
                else str(local.item_ids[r - n_cat])
            if other not in seen and self._series_room(per_series, other):
                out.append(self.card(other, "Similar in look and sound", float(sims[r])))
                seen.add(other)
            if len(out) >= n:
                break
        return out

    # ------------------------------------------------------------------ local content

    @property
    def embedder(self) -> ContentEmbedder:
        """The content model, loaded on first use (keeps cold start and memory low)."""
        if self._embedder is None:
            if self.bundle.model_path is None:
                raise BundleError(f"{self.bundle.path}: bundle has no content model")
            self._embedder = ContentEmbedder(self.bundle.model_path, self.bundle.feature_config,
                                             num_threads=self.num_threads)
        return self._embedder

    def add_local_item(self, media_path: str | os.PathLike, metadata: dict | None = None, *,
                       embedded: Embedded | None = None) -> Card:
        """Embed a recording made on the box and store it; it then appears in content rows.

        ``metadata`` may hold ``id``, ``title``, ``genres``. A file that cannot be decoded
        raises :class:`~device.errors.MediaError` and nothing is stored. ``embedded``: the
        file's embedding made elsewhere with this bundle's model (e.g. by
        :func:`device.content.embed_files_isolated`, which keeps decoding out of this process).
        """
        metadata = dict(metadata or {})
        path = Path(media_path)
        # MediaError before anything is written
        emb = embedded if embedded is not None else self.embedder.embed_file(path)
        if emb.vector.shape != (self.bundle.dim,):
            raise HistoryError(f"{path}: embedding of size {emb.vector.size}, the bundle's "
                               f"model gives {self.bundle.dim}")
        self.timings.embed_ms = emb.decode_ms + emb.model_ms
        self.timings.extra = {"decode_ms": emb.decode_ms, "model_ms": emb.model_ms}
        q, scale = quantize_embedding(emb.vector)
        item_id = str(metadata.get("id") or f"local:{path.stem}")
        if self._row(item_id) >= 0:
            raise HistoryError(f"item {item_id!r}: a catalog item already has this id")
        duration = float(emb.info.get("duration") or 0.0) or 1.0
        self.history.add_local_item(
            item_id, str(metadata.get("title") or path.stem), duration, str(path.resolve()),
            embedding=q, embedding_scale=scale, genres=tuple(metadata.get("genres", ())),
        )
        return self.card(item_id, "Recorded on this box")
