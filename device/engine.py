"""The home screen, decided on the box: rows of programmes, each with a reason.

::

    from device.engine import Engine

    engine = Engine("bundles/current", "history.db")
    engine.add_profile("alice")
    engine.record("alice", "p0042", "finish")
    for row in engine.home("alice"):
        print(row.title, [card.title for card in row.cards])

Rows, in order (empty ones are left out), after Android TV's Watch Next types:

1. **Continue watching** (``continue``) -- programmes started and not finished (CONTINUE: cards
   with ``kind="continue"`` and their progress) and, when an episode was finished, the next
   episode of its series (NEXT: ``kind="next"``, "Up next"), most recent first. When a
   programme counts as started or finished is one setting, :class:`device.history.WatchThresholds`.
2. **My list** (``my_list``) -- what the viewer added (WATCHLIST), newest first.
3. **New episodes** (``new_episode``) -- episodes of series the profile follows (has watched
   an episode of) that arrived after the ones it watched and are new to the catalog (NEW).
4. **Top picks for you** -- item-based CF over the whole history (``device.cf``), each history
   item weighted by how close the time it was watched is to now (:mod:`device.context`).
5. **Because you watched <show>** -- CF from one strong history item; up to two such rows.
6. **New for you** -- cold catalog items (no co-watch data yet) and the viewer's own recordings,
   ranked by content similarity (the int8 model's embeddings) to what the profile watched.
7. **Popular now** -- the fallback, and the first row of a new profile.

No programme appears twice on a screen; history items are never recommended again; a disliked
or *not interested* item never returns and its closest neighbours are pushed away; each row
caps how many cards share a primary genre so a row is never one genre wall. A kids profile
(``add_profile(..., kids_max_maturity=7)``) sees nothing rated above its age in any row or in
More like this; **unrated items are hidden from kids profiles** unless the bundle's manifest
sets ``extra.unrated_maturity`` (the age the catalog vouches for its unrated items). Everything is
recomputed from SQLite on each call, so a finish or a like changes the very next ``home()``.

Series, season and episode come from the bundle's catalog columns when it has them; the title
(``"Show #3"``, ``"Show S1E3"``...) is only the fallback.

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
from device.context import STRENGTH, context_weights, habit_strength, local_offset_s
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
_SEASON_EPISODE = re.compile(r"(?:S(\d+)\s*E)?(\d+)\)?\s*$", re.IGNORECASE)


def series_of(title: str) -> str:
    """The series a title belongs to: the title without its episode marker, case-folded.

    >>> series_of("Super Cycling Cup Final #7"), series_of("Heat")
    ('super cycling cup final', 'heat')
    """
    return _EPISODE.sub("", title).strip().casefold()


#: Below this many MB of headroom under its memory limit, home() serves the degraded screen
#: (Continue watching, Popular now): the personal rows' first call needs up to ~8 MB at 100k
#: items (CF scores, content matrix); twice that keeps the kernel's OOM killer away.
LOW_MEMORY_MB = 16.0


def episode_of(title: str) -> tuple[int, int] | None:
    """(season, episode) from a title's episode marker, None for a title without one; season 1
    when the marker has none.

    >>> episode_of("Super Cycling Cup Final #7"), episode_of("Void Odyssey S02E05"), episode_of("Heat")
    ((1, 7), (2, 5), None)
    """
    marker = _EPISODE.search(title)
    if marker is None:
        return None
    m = _SEASON_EPISODE.search(marker.group(1))
    return (int(m.group(1) or 1), int(m.group(2))) if m else None


def show_title(title: str) -> str:
    """The show a title belongs to, as shown ("Because you watched" + the show, not the
    episode): the title without its episode marker."""
    return _EPISODE.sub("", title).strip() or title


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
    #: What the card is: "item" (a recommendation), "continue" (resume it), "next" (the next
    #: episode of a series just finished), "new_episode", "my_list".
    kind: str = "item"
    #: The episode marker to show on the poster ("E3", "S2 E5"), "" for a one-off.
    episode: str = ""


@dataclass(frozen=True)
class Row:
    """A titled row of cards. ``kind`` is one of continue, my_list, new_episode, top_picks,
    because, new, popular."""

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
    kind: str = "item"


@dataclass
class _Filter:
    """What one profile may be shown: not the items it is not interested in, and (a kids
    profile) nothing above its rating. ``allowed`` is a mask over bundle rows (None: all)."""

    blocked: frozenset = frozenset()
    max_maturity: int | None = None
    allowed: np.ndarray | None = None
    local_maturity: dict = field(default_factory=dict)


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
    utc_offset_s : float, optional
        The box's time zone for the time-of-day context (default: the system's).
    """

    def __init__(
        self,
        bundle: Bundle | str | os.PathLike,
        db: History | str | os.PathLike,
        *,
        row_length: int = ROW_LENGTH,
        num_threads: int = 1,
        clock: Callable[[], float] = time.time,
        utc_offset_s: float | None = None,
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
        self.degraded: str | None = None  # why the last home() was degraded (low memory)
        self._memory_limit: float | None | bool = False  # not looked up yet
        self._cold_reads_genres = bool((self.bundle.manifest.get("cold_start") or {})
                                       .get("reads_genres", False))
        self.utc_offset_s = local_offset_s() if utc_offset_s is None else float(utc_offset_s)
        self._episode_cache: dict[str, tuple | None] = {}
        self._siblings_cache: dict[str, list[tuple[int, int, int]]] = {}
        self._maturity_masks: dict[tuple, tuple[Any, np.ndarray]] = {}
        self._habit_cache: dict[str, tuple[tuple, float]] = {}
        #: How much time of day may weigh at most (0 turns it off: the bench's control arm).
        self.context_strength = STRENGTH
        self.timings = Timings(open_ms=(time.perf_counter() - t0) * 1000.0)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        self.history.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ profiles and events

    def add_profile(self, profile_id: str, display_name: str | None = None, *,
                    kids_max_maturity: int | None = None):
        """Add a profile (idempotent); ``kids_max_maturity`` makes it a kids profile that sees
        nothing rated above that age (and nothing unrated, see the module docstring)."""
        return self.history.add_profile(profile_id, display_name,
                                        kids_max_maturity=kids_max_maturity)

    # ------------------------------------------------------------------ card actions

    def remove_from_continue(self, profile_id: str, item_id: str) -> None:
        """The card leaves Continue watching (an Up next card too) until the programme is
        played again; the resume point stays in the history."""
        self._ensure_item(item_id)
        self.history.set_flag(profile_id, item_id, "hidden_continue")

    def not_interested(self, profile_id: str, item_id: str) -> None:
        """The item never returns in any row or More like this; like a dislike, its closest
        neighbours are pushed down."""
        self._ensure_item(item_id)
        self.history.set_flag(profile_id, item_id, "not_interested")

    def add_to_list(self, profile_id: str, item_id: str) -> None:
        """Put the item on the profile's My list (the ``my_list`` row)."""
        self._ensure_item(item_id)
        self.history.set_flag(profile_id, item_id, "my_list")

    def remove_from_list(self, profile_id: str, item_id: str) -> None:
        self.history.set_flag(profile_id, item_id, "my_list", on=False)

    def mark_watched(self, profile_id: str, item_id: str) -> int | None:
        """Record the programme as watched to the end (a ``finish`` event): it leaves Continue
        watching, and an episode brings its successor Up next."""
        return self.record(profile_id, item_id, "finish")

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
             progress: float | None = None, kind: str = "item") -> Card:
        """A card for any known item (catalog or local). Raises ``UnknownItemError``."""
        row = self._row(item_id)
        if row >= 0:
            # A catalog may not know a duration (NaN, bundle schema 3): the card, playback and
            # the history take the nominal length (read per card: no pass over the column).
            duration = float(self._durations[row])
            return Card(item_id, self.items.titles[row], self._catalog_genres(row),
                        duration if duration > 0 else UNKNOWN_DURATION_S, reason, score,
                        progress, "catalog", kind, self._episode_label(item_id))
        item = self.history.item(item_id)  # raises UnknownItemError
        return Card(item.id, item.title, tuple(item.genres), float(item.duration), reason, score,
                    progress, item.source, kind, "")

    def _catalog_genres(self, row: int) -> tuple[str, ...]:
        vocab = self._bundle_genres
        return tuple(vocab[c] for c in self._codes[row].tolist() if c >= 0)

    def _pick(self, item_id: str, reason: str, score: float = 0.0, *,
              progress: float | None = None, because: str | None = None,
              kind: str = "item") -> _Pick:
        """A candidate card; raises ``UnknownItemError`` like :meth:`card`."""
        row = self._row(item_id)
        genres = self._catalog_genres(row) if row >= 0 \
            else self.history.item(item_id).genres  # raises UnknownItemError
        return _Pick(item_id, genres[0] if genres else "", reason, score, progress, because,
                     kind)

    def _title(self, item_id: str) -> str:
        row = self._row(item_id)
        if row >= 0:
            return self.items.titles[row]
        try:
            return self.history.item(item_id).title or item_id
        except UnknownItemError:
            return item_id

    # ------------------------------------------------------------------ the home screen

    def home(self, profile_id: str, now: float | None = None) -> list[Row]:
        """The profile's home-screen rows (see the module docstring) at time ``now`` (seconds
        since the epoch; default: the clock), which sets the time-of-day context. Raises
        ``UnknownProfileError`` for an unknown profile.

        Low memory: with less than :data:`LOW_MEMORY_MB` between the process's resident set and
        its memory limit (its cgroup's, or ``TVREC_MEMORY_LIMIT_MB``), or when numpy runs out of
        memory while ranking, the screen is *degraded*: no CF rows and no New for you -- Continue
        watching, Popular now and the SQLite-only rows -- and :attr:`degraded` says why (None
        otherwise). Nothing is written, so no history is at risk."""
        self.degraded = self._memory_short()
        if self.degraded is None:
            try:
                return self._home(profile_id, now, personal=True)
            except MemoryError:
                self.degraded = "out of memory while ranking (MemoryError)"
        return self._home(profile_id, now, personal=False)

    def _memory_short(self) -> str | None:
        from device.cgroup import memory_limit_mb, memory_headroom_mb

        if self._memory_limit is False:
            self._memory_limit = memory_limit_mb()
        if self._memory_limit is None:
            return None
        free = memory_headroom_mb(self._memory_limit)
        if free is not None and free < LOW_MEMORY_MB:
            return f"low memory: {free:.0f} MB free under a {self._memory_limit:.0f} MB limit"
        return None

    def _home(self, profile_id: str, now: float | None = None, *, personal: bool = True) -> list[Row]:
        t0 = time.perf_counter()
        now = float(self.clock() if now is None else now)
        profile = self.history.profile(profile_id)  # UnknownProfileError
        aff = self.history.affinities(profile_id, now=now)
        resume = self.history.continue_watching(profile_id, limit=self.row_length)
        flt = self._filter(profile_id, profile.kids_max_maturity)
        history_ids = [str(i) for i in aff.item_ids]
        affinity = np.asarray(aff.affinity, dtype=np.float64).copy()
        # Not interested = a dislike for the ranker: never shown, its neighbours pushed down.
        if flt.blocked:
            in_history = set(history_ids)
            affinity[[i for i, h in enumerate(history_ids) if h in flt.blocked]] = -1.0
            extra = [b for b in flt.blocked if b not in in_history]
            history_ids += extra
            affinity = np.concatenate([affinity, -np.ones(len(extra))])
        last_ts = np.concatenate([aff.last_ts, np.full(len(history_ids) - len(aff), now)])
        positive = affinity > 0
        # Time of day: each history item's affinity weighted by how near its viewing time is,
        # as strongly as this profile's history shows habits (device.context.habit_strength).
        in_context = affinity.copy()
        h_rows = self._index.rows(history_ids)
        if positive.any():
            strength = self._habit(profile_id, last_ts[positive], h_rows[positive])
            if strength > 0:
                in_context[positive] *= context_weights(last_ts[positive], now,
                                                        self.utc_offset_s, strength)
        shown: set[str] = set()
        never = set(history_ids)  # watched or disliked: not recommended again
        rows: list[Row] = []

        titles: dict[str, str] = {}  # "because" titles of this screen

        self._prefetch_meta(history_ids, h_rows)
        self._add_row(rows, shown, titles, "continue", "Continue watching",
                      self._continue_picks(profile_id, resume, aff, history_ids), min_len=1,
                      flt=flt)

        mine = [self._pick(i, "On your list", kind="my_list")
                for i in self.history.flags(profile_id, "my_list")]
        self._add_row(rows, shown, titles, "my_list", "My list", mine, min_len=1, flt=flt)

        self._add_row(rows, shown, titles, "new_episode", "New episodes",
                      self._new_episodes(aff, history_ids, h_rows, shown), min_len=1, flt=flt)

        # History rows (looked up once, above): "never" (the history) is excluded by row below.
        candidates = self._warm if flt.allowed is None else self._warm & flt.allowed
        if positive.any() and personal:
            pool = recommend(self.table, history_ids, in_context, n=3 * self.row_length,
                             exclude=shown, index=self._index, candidates=candidates,
                             history_rows=h_rows, exclude_rows=h_rows)
            picks = [self._pick(r.item_id, "Because you watched {}", r.score, because=r.because)
                     for r in pool if r.because is not None]
            self._add_row(rows, shown, titles, "top_picks", "Top picks for you",
                          self._diverse(picks), flt=flt)

            for anchor in self._anchors(aff, history_ids, flt):
                pool = recommend(self.table, [anchor], [1.0], n=3 * self.row_length,
                                 exclude=shown, index=self._index, candidates=candidates,
                                 history_rows=np.array([self._row(anchor)]), exclude_rows=h_rows)
                title = self._show(anchor)
                picks = [self._pick(r.item_id, f"Because you watched {title}", r.score)
                         for r in pool if r.because is not None]
                self._add_row(rows, shown, titles, "because", f"Because you watched {title}",
                              self._diverse(picks), flt=flt)

        if personal:
            picks = self._new_for_you(history_ids, in_context, never | shown,
                                      np.concatenate([h_rows, self._index.rows(shown)]), flt)
            self._add_row(rows, shown, titles, "new", "New for you", self._diverse(picks), flt=flt)

        picks = [self._pick(i, "Popular now", s) for i, s in self._popular(never | shown, flt)]
        self._add_row(rows, shown, titles, "popular", "Popular now", self._diverse(picks), flt=flt)

        self.timings.home_ms = (time.perf_counter() - t0) * 1000.0
        return rows

    def _habit(self, profile_id: str, ts: np.ndarray, rows: np.ndarray) -> float:
        """The profile's earned context strength, recomputed only when its history moved."""
        key = (len(ts), float(ts.max()), float(ts.sum()))
        hit = self._habit_cache.get(profile_id)
        if hit is not None and hit[0] == key:
            return hit[1]
        order = np.argsort(-ts, kind="stable")
        codes = np.where(rows[order] >= 0, self._codes[np.maximum(rows[order], 0), 0], -1)
        value = habit_strength(ts[order], codes, self.utc_offset_s, self.context_strength)
        if len(self._habit_cache) >= 64:
            self._habit_cache.clear()
        self._habit_cache[profile_id] = (key, value)
        return value

    # ------------------------------------------------------------------ who may see what

    def _filter(self, profile_id: str, max_maturity: int | None) -> _Filter:
        blocked = frozenset(self.history.flags(profile_id, "not_interested"))
        if max_maturity is None:
            return _Filter(blocked)
        told = self.history.maturities()
        allowed = self._maturity_mask(max_maturity, told)
        return _Filter(blocked, max_maturity, allowed, told)

    def _maturity_mask(self, max_maturity: int, told: dict[str, int]) -> np.ndarray:
        """Bundle rows a profile limited to ``max_maturity`` may see: rated at most that, by
        the bundle's column or (for items it leaves unrated) the rating the launcher synced
        into the history; unrated ones only if the manifest vouches (``unrated_maturity``)."""
        key = (max_maturity, len(told), hash(frozenset(told.items())) if len(told) < 4096 else
               id(told))
        hit = self._maturity_masks.get(max_maturity)
        if hit is not None and hit[0] == key:
            return hit[1]
        rating = self._bundle_maturity().copy()
        if told:
            ids = list(told)
            rows = self._index.rows(ids)
            ok = rows >= 0
            vals = np.array([told[i] for i in ids], dtype=np.int64)
            unrated_rows = ok & (rating[np.maximum(rows, 0)] < 0)
            rating[rows[unrated_rows]] = vals[unrated_rows]
        m = self.bundle.manifest
        unrated = (m.get("extra") or {}).get("unrated_maturity", m.get("unrated_maturity"))
        if isinstance(unrated, int) and not isinstance(unrated, bool) and unrated >= 0:
            rating = np.where(rating < 0, unrated, rating)
        mask = (rating >= 0) & (rating <= max_maturity)
        self._maturity_masks[max_maturity] = (key, mask)
        return mask

    def _bundle_maturity(self) -> np.ndarray:
        """The bundle's maturity column (minimum age, -1 unrated); all unrated without one."""
        col = getattr(self.items, "maturity", None)
        if col is None:
            return np.full(self.bundle.n_items, -1, dtype=np.int64)
        return np.asarray(col, dtype=np.int64)

    def _may_show(self, item_id: str, flt: _Filter | None) -> bool:
        if flt is None:
            return True
        if item_id in flt.blocked:
            return False
        if flt.max_maturity is None:
            return True
        row = self._row(item_id)
        if row >= 0:
            return bool(flt.allowed[row])
        rating = flt.local_maturity.get(item_id)  # a recording: its EPG rating, if synced
        return rating is not None and rating <= flt.max_maturity

    # ------------------------------------------------------------------ series and episodes

    def _meta(self, item_id: str) -> tuple[str, int, int] | None:
        """(series key, season, episode) of an item, None for a one-off: the bundle's catalog
        columns (``items.series/season/episode``) when it has them, else the title's marker."""
        hit = self._episode_cache.get(item_id, False)
        if hit is not False:
            return hit
        out = None
        row = self._row(item_id)
        series = getattr(self.items, "series", None) if row >= 0 else None
        if series is not None:
            name = str(series[row] or "")
            ep = getattr(self.items, "episode", None)
            season = getattr(self.items, "season", None)
            e = int(ep[row]) if ep is not None else -1
            if name and e >= 0:
                sn = int(season[row]) if season is not None and int(season[row]) >= 0 else 1
                out = (name.casefold(), sn, e)
        else:
            title = self._title(item_id)
            se = episode_of(title)
            if se is not None:
                out = (series_of(title), se[0], se[1])
        if len(self._episode_cache) >= 8192:
            self._episode_cache.clear()
        self._episode_cache[item_id] = out
        return out

    def _prefetch_meta(self, ids: list[str], rows: np.ndarray) -> None:
        """Fill the episode cache for many history items at once: their rows are known and
        their titles are read in one gather (not one index lookup and one pread each)."""
        todo = [n for n, i in enumerate(ids) if i not in self._episode_cache and rows[n] >= 0]
        if not todo or getattr(self.items, "series", None) is not None:
            return
        titles = gather_rows(self.items._titles, rows[todo]).tolist()
        if len(self._episode_cache) + len(todo) >= 8192:
            self._episode_cache.clear()
        for n, title in zip(todo, titles):
            title = str(title)
            se = episode_of(title)
            self._episode_cache[ids[n]] = None if se is None else (series_of(title), se[0], se[1])

    def _siblings(self, key: str) -> list[tuple[int, int, int]]:
        """(season, episode, bundle row) of every episode of the series ``key``, in order."""
        hit = self._siblings_cache.get(key)
        if hit is None:
            self._find_siblings({key})
            hit = self._siblings_cache[key]
        return hit

    def _find_siblings(self, keys: set[str]) -> None:
        """:meth:`_siblings` of every series in ``keys`` not cached yet, found by *one* scan of
        the catalog column (or of the titles), in blocks, vectorised: each block is lower-cased
        once for all the series (a history follows hundreds; one scan per series cost seconds
        at 100k items), a prefix test first for titles, the regex only on the matches."""
        todo = sorted(k for k in keys if k not in self._siblings_cache)
        if not todo:
            return
        found: dict[str, list[tuple[int, int, int]]] = {k: [] for k in todo}
        series = getattr(self.items, "series", None)
        n = self.bundle.n_items
        wanted = set(todo)
        season = getattr(self.items, "season", None)
        episode = getattr(self.items, "episode", None)
        for lo in range(0, n, 16384):
            hi = min(n, lo + 16384)
            if series is not None:
                # str.lower per name, as np.char.lower does, without its array copies; most
                # names are "" (one-offs) or not followed: a set lookup each
                hits = [(r, key) for r, name in enumerate(series[lo:hi].tolist(), lo)
                        if name and (key := name.lower()) in wanted]
                if not hits or episode is None:
                    continue
                rows = np.fromiter((r for r, _ in hits), dtype=np.int64, count=len(hits))
                eps = np.asarray(episode[rows]).tolist()
                sns = np.asarray(season[rows]).tolist() if season is not None else [1] * len(hits)
                for (r, key), e, sn in zip(hits, eps, sns):
                    if e >= 0:  # what _meta(item) says for this row: (season or 1, episode)
                        found[key].append((sn if sn >= 0 else 1, e, r))
                continue
            titles = np.char.lower(np.asarray(self.items._titles[lo:hi]))
            for key in todo:
                for r in (np.flatnonzero(np.char.startswith(titles, key)) + lo).tolist():
                    title = str(read_row(self.items._titles, r))
                    se = episode_of(title)
                    if se is not None and series_of(title) == key:
                        found[key].append((se[0], se[1], r))
        if len(self._siblings_cache) + len(todo) > max(256, len(todo)):
            self._siblings_cache.clear()
        for key, out in found.items():
            out.sort()
            self._siblings_cache[key] = out

    def _episode_label(self, item_id: str) -> str:
        m = self._meta(item_id)
        if m is None:
            return ""
        return f"E{m[2]}" if m[1] == 1 else f"S{m[1]} E{m[2]}"

    def _show(self, item_id: str) -> str:
        """The show's name for reasons and row titles ("Because you watched" + the show)."""
        series = getattr(self.items, "series", None)
        row = self._row(item_id)
        if series is not None and row >= 0 and str(series[row] or ""):
            return str(series[row])
        return show_title(self._title(item_id))

    def _continue_picks(self, profile_id: str, resume, aff, history_ids: list[str]) -> list[_Pick]:
        """Resume points and Up next cards, most recent first. Up next: for each series whose
        most recent activity is a finished episode, the next episode not finished yet (not
        one being resumed: that one is a resume card already)."""
        dated = [(r.last_ts, self._pick(r.item_id, f"Resume at {r.completion:.0%}",
                                        progress=r.completion, kind="continue"))
                 for r in resume]
        resuming = {r.item_id for r in resume}
        hidden = self.history.flags(profile_id, "hidden_continue")  # removed Up next cards
        finished = {history_ids[i] for i in np.flatnonzero(aff.finished).tolist()}
        # the latest activity per series, over the history's episodes (newest first)
        latest: dict[str, int] = {}
        for i in np.argsort(-aff.last_ts, kind="stable").tolist():
            m = self._meta(history_ids[i])
            if m is not None and m[0] not in latest:
                latest[m[0]] = i
        # every series of the history in one catalog scan: Up next needs the finished ones,
        # New episodes (next) the started ones
        self._find_siblings(set(latest))
        for key, i in latest.items():
            item = history_ids[i]
            if item not in finished:
                continue
            _, season, episode = self._meta(item)
            for sn, ep, r in self._siblings(key):
                if (sn, ep) <= (season, episode):
                    continue
                nxt = str(read_row(self.items.ids, r))
                if nxt in finished:
                    continue
                if nxt not in resuming and nxt not in hidden:
                    dated.append((float(aff.last_ts[i]), self._pick(
                        nxt, f"Up next: {self._episode_label(nxt)}", kind="next")))
                break
        dated.sort(key=lambda d: -d[0])
        return [p for _, p in dated]

    def _new_episodes(self, aff, history_ids: list[str], h_rows: np.ndarray,
                      shown: set[str]) -> list[_Pick]:
        """Episodes of followed series (one of its episodes started) that are new: released
        after the latest episode the profile watched, new to the catalog (no co-watch data
        yet: cold), not watched, not on screen already (the Up next card)."""
        started = np.asarray(aff.completion) > 0
        followed: dict[str, int] = {}  # series -> newest release watched
        release = np.asarray(self.items.release)
        for i in np.flatnonzero(started[:len(h_rows)] & (h_rows[:len(started)] >= 0)).tolist():
            m = self._meta(history_ids[i])
            row = int(h_rows[i])
            if m is not None:
                followed[m[0]] = max(followed.get(m[0], -1), int(release[row]))
        history = set(history_ids)
        out = []
        self._find_siblings(set(followed))
        for key, newest in followed.items():
            for _, _, r in self._siblings(key):
                if self._warm[r] or int(release[r]) <= newest:
                    continue
                item = str(read_row(self.items.ids, r))
                if item not in history and item not in shown:
                    out.append((-int(release[r]), item))
        out.sort()
        return [self._pick(item, f"New episode of {self._show(item)}", kind="new_episode")
                for _, item in out]

    def _popular(self, exclude: set[str], flt: _Filter | None = None) -> list[tuple[str, float]]:
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
        allowed = flt.allowed if flt is not None else None
        for item, score in self._popular_head:
            if item not in exclude and (allowed is None or allowed[self._row(item)]):
                out.append((item, score))
                if len(out) == want:
                    return out
        if self._popular_order is None:
            warm = np.flatnonzero(self._warm)
            self._popular_order = warm[np.argsort(-np.asarray(pop)[warm], kind="stable")]
        rest = self._popular_order[len(self._popular_head):]
        if allowed is not None:
            rest = rest[allowed[rest]]
        for r in rest.tolist():
            item = str(read_row(ids, r))
            if item not in exclude:
                out.append((item, float(pop[r])))
                if len(out) == want:
                    break
        return out

    def _add_row(self, rows: list[Row], shown: set[str], titles: dict[str, str], kind: str,
                 title: str, picks: Sequence[_Pick], min_len: int = MIN_ROW,
                 flt: _Filter | None = None) -> None:
        # The profile's filter is applied here, at the one door every row goes through.
        picks = [p for p in picks if p.item_id not in shown and self._may_show(p.item_id, flt)]
        picks = picks[: self.row_length]
        if len(picks) >= min_len:
            cards = []
            for p in picks:
                reason = p.reason
                if p.because is not None:
                    if p.because not in titles:
                        titles[p.because] = self._show(p.because)
                    reason = reason.format(titles[p.because])
                cards.append(self.card(p.item_id, reason, p.score, p.progress, p.kind))
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
            m = self._meta(item_id)
            key = self._series_cache[item_id] = m[0] if m is not None \
                else series_of(self._title(item_id))
        return key

    def _anchors(self, aff, history_ids: list[str], flt: _Filter | None = None) -> list[str]:
        """Up to BECAUSE_ROWS history items that deserve their own row: warm catalog items the
        profile liked, finished or mostly watched, strongest (recency-weighted) first, one per
        show (the rows are titled by the show)."""
        order = np.argsort(-aff.affinity, kind="stable")
        out: list[str] = []
        shows: set[str] = set()
        for i in order:
            if aff.affinity[i] <= 0 or aff.completion[i] < 0.5:
                continue
            row = self._row(history_ids[i])
            if row >= 0 and self._warm[row] and self._may_show(history_ids[i], flt) \
                    and self._series(history_ids[i]) not in shows:  # one row per show
                out.append(history_ids[i])
                shows.add(self._series(history_ids[i]))
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
                     exclude_rows: np.ndarray, flt: _Filter | None = None) -> list[_Pick]:
        """``exclude_rows``: the bundle rows of ``exclude``; the history's come first."""
        cold_ids, cold_emb = self._cold_matrix()
        h_ids, h_emb, h_w, local = self._history_embeddings(
            history_ids, affinity, exclude_rows[:len(history_ids)])
        cand_ids, cand_emb = cold_ids, cold_emb
        if len(local.item_ids):
            cand_ids = cold_ids + [str(i) for i in local.item_ids]
            cand_emb = np.vstack([cold_emb, unit(local.embeddings)])
        keep = self._not_excluded(cand_ids, exclude, exclude_rows)
        if flt is not None and flt.allowed is not None:
            n_cold = len(cold_ids)
            keep[:n_cold] &= flt.allowed[self._cold_rows]
            for j in range(n_cold, len(cand_ids)):
                keep[j] = keep[j] and self._may_show(cand_ids[j], flt)
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

    # ------------------------------------------------------------------ listings

    def listing(self, profile_id: str, genre: str | None = None, n: int = 48) -> list[Card]:
        """A browse listing for a profile (a genre page, or everything), most popular first:
        what a launcher shows under "Sports" or "All programmes". The profile's filter holds
        here too: nothing it is not interested in, nothing above a kids profile's rating."""
        flt = self._filter(profile_id, self.history.profile(profile_id).kids_max_maturity)
        pop = np.asarray(self.table.popularity)
        rows = np.arange(self.bundle.n_items)
        if flt.allowed is not None:
            rows = rows[flt.allowed]
        if genre is not None:
            code = self._genre_vocab.get(genre)
            if code is None or code >= len(self._bundle_genres):
                return []
            rows = rows[(self._codes[rows] == code).any(axis=1)]
        out = []
        for r in rows[np.argsort(-pop[rows], kind="stable")].tolist():
            item = str(read_row(self.items.ids, r))
            if item not in flt.blocked:
                out.append(self.card(item, genre.title() if genre else "In the catalog",
                                     float(pop[r])))
                if len(out) == n:
                    break
        return out

    # ------------------------------------------------------------------ details page

    def similar(self, item_id: str, n: int = ROW_LENGTH, profile_id: str | None = None) -> list[Card]:
        """Programmes like ``item_id`` for its details page: co-watch neighbours first (warm
        items), then content neighbours (any item with an embedding). With ``profile_id``,
        what that profile may not see (not interested; above a kids profile's rating) is left
        out. Raises UnknownItemError (and UnknownProfileError)."""
        self.card(item_id)  # unknown -> UnknownItemError
        flt = None
        if profile_id is not None:
            flt = self._filter(profile_id, self.history.profile(profile_id).kids_max_maturity)
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
                if other not in seen and self._may_show(other, flt) \
                        and self._series_room(per_series, other):
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
        if flt is not None and flt.allowed is not None:  # a kids profile: rated rows only
            sims[:n_cat][~flt.allowed] = -np.inf
        k = min(len(sims), 8 * (n - len(out)) + len(seen) + (len(flt.blocked) if flt else 0))
        # descending, ties in catalog-then-local order (what a stable sort gives)
        for r in _top_k(sims, k, np.zeros(len(sims))).tolist() if k > 0 else []:
            if not np.isfinite(sims[r]):
                break
            other = str(read_row(self.items.ids, r)) if r < n_cat \
                else str(local.item_ids[r - n_cat])
            if other not in seen and self._may_show(other, flt) \
                    and self._series_room(per_series, other):
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
