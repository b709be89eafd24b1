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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from device.bundle import Bundle, open_bundle
from device.cf import recommend
from device.content import ContentEmbedder, quantize_embedding, unit
from device.errors import BundleError, HistoryError, UnknownItemError
from device.history import History

#: Cards per row, and how many of them may share a primary genre.
ROW_LENGTH = 12
GENRE_CAP = 0.5
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
        self._embedder: ContentEmbedder | None = None
        self._row_cache: dict[str, int] = {}
        self._genre_vocab: dict[str, int] = {}
        self._popular_order: np.ndarray | None = None
        self._cold_genre: tuple[int, np.ndarray] | None = None
        self._cold_rows: np.ndarray | None = None
        self._cold_ids: list[str] = []
        self._cold_emb: np.ndarray | None = None
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
            return Card(item_id, self.items.titles[row], tuple(self.items.genres[row]),
                        float(self.items.durations[row]), reason, score, progress, "catalog")
        item = self.history.item(item_id)  # raises UnknownItemError
        return Card(item.id, item.title, tuple(item.genres), float(item.duration), reason, score,
                    progress, item.source)

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

        cards = [self.card(r.item_id, f"Resume at {r.completion:.0%}", progress=r.completion)
                 for r in resume]
        self._add_row(rows, shown, "continue", "Continue watching", cards, min_len=1)

        if positive.any():
            pool = recommend(self.table, history_ids, aff.affinity, n=3 * self.row_length,
                             exclude=never | shown, index=self._index, candidates=self._warm)
            cards = [self.card(r.item_id, f"Because you watched {self._title(r.because)}", r.score)
                     for r in pool if r.because is not None]
            self._add_row(rows, shown, "top_picks", "Top picks for you", self._diverse(cards))

            for anchor in self._anchors(aff, history_ids):
                pool = recommend(self.table, [anchor], [1.0], n=3 * self.row_length,
                                 exclude=never | shown, index=self._index, candidates=self._warm)
                title = self._title(anchor)
                cards = [self.card(r.item_id, f"Because you watched {title}", r.score)
                         for r in pool if r.because is not None]
                self._add_row(rows, shown, "because", f"Because you watched {title}",
                              self._diverse(cards))

        cards = self._new_for_you(history_ids, aff.affinity, never | shown)
        self._add_row(rows, shown, "new", "New for you", self._diverse(cards))

        cards = [self.card(i, "Popular now", s) for i, s in self._popular(never | shown)]
        self._add_row(rows, shown, "popular", "Popular now", self._diverse(cards))

        self.timings.home_ms = (time.perf_counter() - t0) * 1000.0
        return rows

    def _popular(self, exclude: set[str]) -> list[tuple[str, float]]:
        """The most popular warm items not in ``exclude``. Popularity is fixed per bundle, so
        its order is sorted once and walked (O(row) per call instead of O(catalog))."""
        if self._popular_order is None:
            warm = np.flatnonzero(self._warm)
            pop = np.asarray(self.table.popularity)[warm]
            self._popular_order = warm[np.argsort(-pop, kind="stable")]
        out = []
        ids, pop = self.items.ids, self.table.popularity
        for r in self._popular_order:
            item = str(ids[r])
            if item not in exclude:
                out.append((item, float(pop[r])))
                if len(out) == 3 * self.row_length:
                    break
        return out

    def _add_row(self, rows: list[Row], shown: set[str], kind: str, title: str,
                 cards: Sequence[Card], min_len: int = MIN_ROW) -> None:
        cards = [c for c in cards if c.item_id not in shown][: self.row_length]
        if len(cards) >= min_len:
            rows.append(Row(kind, title, tuple(cards)))
            shown.update(c.item_id for c in cards)

    def _diverse(self, cards: Sequence[Card]) -> list[Card]:
        """Greedy genre cap: at most GENRE_CAP of a row may share a primary genre; cards over
        the cap move to the end rather than vanish (a short catalog still fills the row)."""
        cap = max(1, math.ceil(GENRE_CAP * self.row_length))
        counts: dict[str, int] = {}
        kept, later = [], []
        for c in cards:
            g = c.genres[0] if c.genres else ""
            if counts.get(g, 0) < cap:
                counts[g] = counts.get(g, 0) + 1
                kept.append(c)
            else:
                later.append(c)
        return kept + later

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
            self._cold_ids = [str(i) for i in np.asarray(self.items.ids)[self._cold_rows]]
            self._cold_emb = unit(self.bundle.embedding(self._cold_rows))
        return self._cold_ids, self._cold_emb

    def _history_embeddings(self, history_ids: list[str], affinity: np.ndarray):
        """Embeddings of the history items that have one (catalog rows or local items)."""
        local = self.history.local_items()
        local_row = {str(i): n for n, i in enumerate(local.item_ids)}
        rows = self._index.rows(history_ids)
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

    def _new_for_you(self, history_ids: list[str], affinity: np.ndarray, exclude: set[str]) -> list[Card]:
        cold_ids, cold_emb = self._cold_matrix()
        h_ids, h_emb, h_w, local = self._history_embeddings(history_ids, affinity)
        cand_ids, cand_emb = cold_ids, cold_emb
        if len(local.item_ids):
            cand_ids = cold_ids + [str(i) for i in local.item_ids]
            cand_emb = np.vstack([cold_emb, unit(local.embeddings)])
        keep = np.fromiter((c not in exclude for c in cand_ids), dtype=bool, count=len(cand_ids))
        if not keep.any():
            return []
        idx = np.flatnonzero(keep)
        n_out = 3 * self.row_length

        pos = h_w > 0
        if not pos.any():  # a new profile: newest first
            release = np.asarray([self._release(cand_ids[i]) for i in idx], dtype=np.float64)
            order = idx[np.argsort(-release, kind="stable")[:n_out]]
            return [self.card(cand_ids[i], "New") for i in order]

        # Each history item votes for similar new items with its affinity; dislikes vote
        # against at half weight. Summing votes = one dot product with a profile vector.
        w_pos = h_w[pos] / h_w[pos].sum()
        query = h_emb[pos].T @ w_pos + 0.5 * (h_emb[~pos].T @ h_w[~pos])
        content = cand_emb[idx] @ query
        # Catalog metadata is a second, independent signal: how much of the profile's viewing
        # (affinity-weighted) is in the new item's genres. Both are standardised over the
        # candidates and added, so neither needs a tuned scale; recordings have no genres and
        # rank on content alone.
        genre = self._genre_match(cand_ids, history_ids, affinity)[idx]
        scores = _standardise(content) + _standardise(genre)
        top = np.argsort(-scores, kind="stable")[:n_out]
        # The reason: the liked history item that voted most for each shown card.
        votes = (cand_emb[idx[top]] @ h_emb[pos].T) * w_pos[None, :]
        src = np.asarray(h_ids, dtype=object)[pos][np.argmax(votes, axis=1)]
        return [self.card(cand_ids[idx[t]], f"New, like {self._title(src[j])}", float(scores[t]))
                for j, t in enumerate(top)]

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
        rows = [self._genre_weights(self._genres(i)) for i in ids]
        for w in rows:
            for g in w:
                self._genre_vocab.setdefault(g, len(self._genre_vocab))
        out = np.zeros((len(ids), len(self._genre_vocab)))
        for n, w in enumerate(rows):
            for g, v in w.items():
                out[n, self._genre_vocab[g]] = v
        return out

    def _genre_match(self, cand_ids: list[str], history_ids: list[str], affinity) -> np.ndarray:
        """How much of the profile's positive affinity lies in each candidate's genres (NaN for
        a candidate without genres, e.g. a recording: no evidence either way)."""
        pos = [(h, float(a)) for h, a in zip(history_ids, affinity) if a > 0]
        profile = self._genre_matrix([h for h, _ in pos]).T @ np.array([a for _, a in pos]) \
            if pos else np.zeros(0)
        if self._cold_genre is None or self._cold_genre[0] != len(self._cold_ids):
            # the cold catalog never changes: its genre matrix is built once
            self._cold_genre = (len(self._cold_ids), self._genre_matrix(self._cold_ids))
        n_cold = len(self._cold_ids)
        parts = [self._cold_genre[1]]
        if len(cand_ids) > n_cold:  # local recordings after the cold items
            parts.append(self._genre_matrix(cand_ids[n_cold:]))
        width = len(self._genre_vocab)
        G = np.vstack([np.pad(p, ((0, 0), (0, width - p.shape[1]))) for p in parts])
        prof = np.pad(profile, (0, width - len(profile)))
        total = prof.sum() or 1.0
        out = G @ prof / total
        out[G.sum(axis=1) == 0] = np.nan
        return out

    def _release(self, item_id: str) -> float:
        row = self._row(item_id)
        if row >= 0:
            return float(self.items.release[row])
        return math.inf  # a recording made on the box is the newest thing there is

    # ------------------------------------------------------------------ details page

    def similar(self, item_id: str, n: int = ROW_LENGTH) -> list[Card]:
        """Programmes like ``item_id`` for its details page: co-watch neighbours first (warm
        items), then content neighbours (any item with an embedding). Raises UnknownItemError."""
        self.card(item_id)  # unknown -> UnknownItemError
        out: list[Card] = []
        seen = {item_id}
        row = self._row(item_id)
        if row >= 0:
            nb = np.asarray(self.table.neighbours[row])
            w = np.asarray(self.table.weights[row])
            for j in np.argsort(-w, kind="stable"):
                if nb[j] < 0 or w[j] <= 0:
                    continue
                other = str(self.items.ids[nb[j]])
                if other not in seen:
                    out.append(self.card(other, "Viewers also watched", float(w[j])))
                    seen.add(other)
                if len(out) >= n:
                    return out
        # Content neighbours over the whole catalog plus local items.
        h_ids, h_emb, _, local = self._history_embeddings([item_id], np.ones(1))
        if not h_ids:
            return out
        q = h_emb[0]
        all_emb = unit(self.bundle.embedding(slice(None)))
        sims = all_emb @ q
        cand = [(float(s), str(self.items.ids[r])) for r, s in enumerate(sims)]
        if len(local.item_ids):
            cand += [(float(s), str(i)) for s, i in zip(unit(local.embeddings) @ q, local.item_ids)]
        for s, other in sorted(cand, key=lambda t: -t[0]):
            if other not in seen:
                out.append(self.card(other, "Similar in look and sound", s))
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

    def add_local_item(self, media_path: str | os.PathLike, metadata: dict | None = None) -> Card:
        """Embed a recording made on the box and store it; it then appears in content rows.

        ``metadata`` may hold ``id``, ``title``, ``genres``. A file that cannot be decoded
        raises :class:`~device.errors.MediaError` and nothing is stored.
        """
        metadata = dict(metadata or {})
        path = Path(media_path)
        emb = self.embedder.embed_file(path)  # MediaError before anything is written
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
