"""The deterministic demo TV catalog: items, media, synthetic households and their viewing logs.

``generate_catalog(out_dir, n_items=600, seed=0, n_profiles=400)`` writes::

    out_dir/
      catalog.json               manifest (written last, atomically: no manifest = incomplete)
      interactions.csv           training logs: before the log cut-off, warm items only
      interactions_future.csv    after the cut-off, warm and cold items (cold-start evaluation)
      interactions_dayparts.csv, interactions_future_dayparts.csv
                                 the same viewing at the hours the households' daypart habits
                                 put it (see "Daypart habits"); time-of-day evaluation
      latent.json                the simulator's hidden truth (style vectors, popularity, series,
                                 profile style centres) for diagnostics -- never a feature
      media/p0001.mp4 ...        H.264 + AAC clips, 6-10 s, 160x120 @ 12 fps, mono 16 kHz
      posters/p0001.png ...      160x240 portrait cards

How co-watching is tied to content
----------------------------------
Every item has a genre mixture and a hidden 4-d style vector ``z`` in [-1, 1]; both are drawn
per *show* (a series or a one-off) and perturbed per episode, and both drive the clip
(:mod:`models.synth_media`: genre = look and sound, ``z`` = hue, pace, pitch, brightness). Each
profile has a genre taste ``taste_u`` (Dirichlet on 1-3 genres) and a preferred style
``c_u`` (a point in the same 4-d style space). A profile picks its next programme with
probability proportional to ::

    pop_i ** POP_EXP * (taste_u . g_i) ** TASTE_SHARPNESS
        * (STYLE_FLOOR + exp(-|z_i - c_u|^2 / (2 STYLE_WIDTH^2)))      # content similarity
        * recency(t - release_i) * 0.1 ** (times already watched) * (SERIES_BOOST if binging)

and, with probability ``explore_u`` (4-12 %), by popularity and recency alone (noise). Only
items released by then are eligible. The style term is a narrow kernel around ``c_u`` (a wide
one barely localises in 4-d), so viewers of one item tend to watch items that look and sound
*near* it: co-watching is local in content space, also across different shows of one genre,
which is what a content model that embeds clips can learn and then use for cold items.
Completion and like/dislike rise with the same match (genre taste, style damped by half).

Time: logs span ``DAYS`` days from ``START_TS``; the log cut-off is day ``CUTOFF_DAY``. Items
are ordered by release; the last ``COLD_FRACTION`` of them are released after the cut-off
(``cold``), so they have no training events.

Daypart habits
--------------
In ``interactions.csv`` the hour of a viewing is drawn from one prime-time curve for everyone,
whatever is watched: no time structure. Households are not like that (cartoons at breakfast
and after school, news in the morning and evening, drama and sci-fi in prime time and late).
:func:`daypart_habits` gives every household, per genre, a habitual hour (from the genre's
typical dayparts) and a habit strength; :func:`with_daypart_times` moves each viewing, on its
own day, to an hour drawn from ``(1 - strength) * prime-time curve + strength * habit``. Both
use their own seeded streams (``default_rng([seed, 6])``, ``default_rng([seed, 7, u])``), so
every other generated field and stream is exactly what it was; the re-timed logs are written
beside the originals (same rows, other timestamps).

Maturity ratings
----------------
Every programme has a maturity rating (minimum viewer age in years, the ``maturity`` field of
``catalog.json``; kids profiles see nothing above their limit, unrated items are hidden from
them). :func:`maturity_ratings` draws one rating per *show* (all its episodes share it) from the
show's primary genre, with the odds of :data:`MATURITY_BY_GENRE` -- cartoons are rated 0, nature,
cooking and sports mostly 0 (some 7), music 7 or 12, news 12, drama 12 or 16, sci-fi 12, 16 or
18 -- from its own stream ``default_rng([seed, 8])``, so every other generated field and stream
is exactly what it was before ratings existed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from device.errors import DataFormatError
from models.synth_media import FPS, GENRES, HEIGHT, POSTER_SIZE, SAMPLE_RATE, WIDTH

SCHEMA = 1
STYLE_DIM = 4
START_TS = 1_704_067_200  # 2024-01-01 00:00:00 UTC
DAYS = 120
CUTOFF_DAY = 96  # 80 % of the log window is training
COLD_FRACTION = 0.2
DAY = 86_400

# Simulator constants (see the module docstring).
POP_EXP = 1.0
TASTE_SHARPNESS = 2.0
STYLE_WIDTH = 0.5
STYLE_FLOOR = 0.005
SERIES_BOOST = 2.5
RECENCY_BOOST, RECENCY_DAYS = 2.0, 5.0
REWATCH_FACTOR = 0.1

CSV_HEADER = "profile_id,item_id,timestamp,completion,liked"

# Maturity rating (minimum age, years) of a show by its primary genre: (ratings, probabilities).
# Loosely after broadcasters' practice: children's animation for all; factual, cookery and sport
# mostly for all; news and most drama not for young children; sci-fi up to adults only.
MATURITY_BY_GENRE = {
    "cartoons": ((0,), (1.0,)),
    "nature": ((0, 7), (0.7, 0.3)),
    "cooking": ((0, 7), (0.8, 0.2)),
    "sports": ((0, 7), (0.8, 0.2)),
    "music": ((7, 12), (0.6, 0.4)),
    "news": ((12,), (1.0,)),
    "drama": ((12, 16), (0.6, 0.4)),
    "scifi": ((12, 16, 18), (0.5, 0.4, 0.1)),
}

# How common each genre is among shows (news and drama are staples of linear TV).
GENRE_PRIOR = np.array([0.15, 0.13, 0.12, 0.11, 0.12, 0.15, 0.10, 0.12])

# Programme length options in minutes, per primary genre (series, then one-offs such as films).
_DURATIONS = {
    "news": ([20, 30, 30, 45, 60], [60]),
    "sports": ([60, 90, 105, 120], [90, 120]),
    "cartoons": ([20, 22, 25, 30], [75, 90]),
    "nature": ([45, 50, 60], [60, 90]),
    "music": ([30, 45, 60], [60, 90, 120]),
    "drama": ([45, 50, 60], [90, 105, 120]),
    "cooking": ([25, 30, 45], [45, 60]),
    "scifi": ([45, 50, 60], [95, 110, 120]),
}
# Days between episodes.
_CADENCE = {"news": 1.0, "sports": 3.5}

_WORDS = {
    "news": (["Evening", "Morning", "Midday", "Late", "Weekend", "World", "Regional", "Business", "Sunrise"],
             ["News", "Report", "Bulletin", "Headlines", "Briefing", "Newsdesk"],
             ["Roundup", "Tonight", "Live", "Today", "Update", "Extra"]),
    "sports": (["Premier", "Champions", "Sunday", "Grand", "Super", "Classic", "Pro"],
               ["Football", "Tennis", "Rugby", "Cycling", "Athletics", "Basketball", "Hockey"],
               ["Highlights", "Live", "Tonight", "Showdown", "Review", "Cup Final"]),
    "cartoons": (["The Amazing", "Little", "Captain", "Super", "Happy", "Silly", "Tiny"],
                 ["Robots", "Penguins", "Dragons", "Bunnies", "Monsters", "Pirates", "Rockets"],
                 ["Adventures", "Club", "Show", "Squad", "& Friends", "Island"]),
    "nature": (["Coastal", "Wild", "Hidden", "Frozen", "Ancient", "Secret", "Living"],
               ["Wildlife", "Forests", "Oceans", "Rivers", "Savanna", "Mountains", "Wetlands"],
               ["", "of the North", "Uncovered", "Diaries", "Revealed", "in Motion"]),
    "music": (["Midnight", "Summer", "Acoustic", "Electric", "Classic", "Velvet"],
              ["Arena", "Sessions", "Jazz", "Beats", "Symphony", "Grooves", "Rock"],
              ["", "Festival", "Unplugged", "Countdown", "Hour"]),
    "drama": (["The", "Silent", "Broken", "Last", "Crimson", "Hidden", "Quiet"],
              ["Harbour", "Inheritance", "Verdict", "Letters", "Orchard", "Witness", "Station"],
              ["", "Street", "House", "Affair", "Years"]),
    "cooking": (["Kitchen", "Home", "Street Food", "Family", "Weekend", "Rustic"],
                ["Heroes", "Feasts", "Bakes", "Suppers", "Flavours", "Grill"],
                ["Live", "Challenge", "Masterclass", "Express", "Journeys", ""]),
    "scifi": (["Star", "Quantum", "Dark", "Orbit", "Nova", "Void", "Neon"],
              ["Frontier", "Protocol", "Horizon", "Colony", "Drift", "Signal", "Odyssey"],
              ["", "Zero", "Rising", "2199", "Chronicles"]),
}

# Relative viewing probability per hour of day (prime time peaks at 20-21 h).
_HOUR_WEIGHTS = np.array([2, 1, 0.5, 0.3, 0.3, 0.5, 1.5, 3, 3, 2, 2, 2.5,
                          3, 2.5, 2, 2.5, 3.5, 5, 7, 9, 10, 9, 6, 3.5])
_HOUR_P = _HOUR_WEIGHTS / _HOUR_WEIGHTS.sum()

INTERACTION_DTYPE = np.dtype([
    ("profile", np.int32),    # index into Catalog.profile_ids
    ("item", np.int32),       # index into Catalog.items
    ("timestamp", np.int64),  # unix seconds
    ("completion", np.float32),
    ("liked", np.int8),       # -1 dislike, 0 none, 1 like
])


# --------------------------------------------------------------------------- data classes


@dataclass(frozen=True)
class Item:
    """One programme of the catalog (one entry of ``catalog.json["items"]``)."""

    id: str
    title: str
    genres: dict
    primary_genre: str
    duration_s: int
    release: int
    release_ts: int
    cold: bool
    media: str | None
    poster: str | None
    maturity: int = -1  # minimum viewer age in years; -1 unrated (catalogs written before it)


@dataclass
class Catalog:
    """A loaded demo catalog: items, profiles and the two interaction logs.

    Attributes
    ----------
    root : str
        Folder the catalog was loaded from; ``media``/``poster`` paths are relative to it.
    genres : list of str
        Column order of :attr:`genre_matrix` and :attr:`taste`.
    items : list of Item
    item_ids : np.ndarray of str, shape (n_items,)
    genre_matrix : np.ndarray of float32, shape (n_items, n_genres)
        Genre mixture of each item (rows sum to 1).
    primary : np.ndarray of int, shape (n_items,)
        Index of each item's primary genre.
    duration_s, release, release_ts : np.ndarray of int64
    cold : np.ndarray of bool
        Released after :attr:`log_cutoff_ts`; no rows in :attr:`train`.
    profile_ids : np.ndarray of str
    taste : np.ndarray of float32, shape (n_profiles, n_genres)
    train, future : np.ndarray of :data:`INTERACTION_DTYPE`
        ``interactions.csv`` and ``interactions_future.csv`` with ids resolved to indices.
    """

    root: str
    seed: int
    genres: list
    log_cutoff_ts: int
    items: list
    item_ids: np.ndarray
    genre_matrix: np.ndarray
    primary: np.ndarray
    duration_s: np.ndarray
    release: np.ndarray
    release_ts: np.ndarray
    cold: np.ndarray
    profile_ids: np.ndarray
    taste: np.ndarray
    train: np.ndarray
    future: np.ndarray
    manifest: dict = field(repr=False, default_factory=dict)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def item_index(self, item_id: str) -> int:
        """Index of ``item_id`` in :attr:`items` (KeyError if unknown)."""
        return self._item_pos[item_id]

    def media_path(self, i: int) -> str | None:
        """Absolute path of item ``i``'s clip, or None if generated with ``--no-media``."""
        rel = self.items[i].media
        return None if rel is None else os.path.join(self.root, rel)

    def poster_path(self, i: int) -> str | None:
        rel = self.items[i].poster
        return None if rel is None else os.path.join(self.root, rel)

    def __post_init__(self) -> None:
        self._item_pos = {iid: k for k, iid in enumerate(self.item_ids.tolist())}


# --------------------------------------------------------------------------- the world


@dataclass
class _World:
    """Everything the simulator draws before any viewing happens (hidden truth included)."""

    item_ids: list
    titles: list
    mixtures: np.ndarray      # (n, G)
    styles: np.ndarray        # (n, STYLE_DIM)
    popularity: np.ndarray    # (n,)
    series: np.ndarray        # (n,) show index
    duration_s: np.ndarray    # (n,)
    release_ts: np.ndarray    # (n,) sorted ascending
    cold: np.ndarray          # (n,)
    clip_seconds: np.ndarray  # (n,)
    cutoff_ts: int
    profile_ids: list
    taste: np.ndarray         # (P, G)
    style_center: np.ndarray  # (P, STYLE_DIM) preferred style c_u
    activity: np.ndarray      # (P,) watches per day
    explore: np.ndarray       # (P,)


def _sparse_mixture(w: np.ndarray, floor: float = 0.05) -> np.ndarray:
    """Drop weights below ``floor``, renormalise, round to 3 decimals summing exactly to 1."""
    w = np.where(w >= floor, w, 0.0)
    w = w / w.sum()
    r = np.round(w, 3)
    r[np.argmax(r)] += round(1.0 - r.sum(), 3)
    return r


def _show_mixture(rng: np.random.Generator, primary: int) -> np.ndarray:
    """One dominant genre, sometimes a clear secondary, a little spill-over elsewhere."""
    G = len(GENRES)
    w = np.zeros(G)
    w[primary] = rng.uniform(0.6, 0.95)
    rest = 1.0 - w[primary]
    others = rng.permutation([g for g in range(G) if g != primary])
    if rng.random() < 0.5:  # a secondary genre (a cooking show with music, a sci-fi drama...)
        sec = rng.uniform(0.7, 1.0) * rest
        w[others[0]] = sec
        rest -= sec
        others = others[1:]
    k = int(rng.integers(1, 3))
    w[others[:k]] += rest * rng.dirichlet(np.ones(k))
    return _sparse_mixture(w)


def _title(rng: np.random.Generator, genre: str, used: set) -> str:
    pre, core, post = _WORDS[genre]
    for _ in range(30):
        words = [pre[rng.integers(len(pre))], core[rng.integers(len(core))], post[rng.integers(len(post))]]
        t = " ".join(w for w in words if w)
        if t not in used:
            used.add(t)
            return t
    k = 2
    while f"{t} {k}" in used:
        k += 1
    used.add(f"{t} {k}")
    return f"{t} {k}"


def build_world(n_items: int, n_profiles: int, seed: int) -> _World:
    """Draw items (grouped in shows), release times and profiles. Deterministic in ``seed``."""
    if n_items < 2:
        raise ValueError(f"need at least 2 items, got {n_items}")
    if n_profiles < 1:
        raise ValueError(f"need at least 1 profile, got {n_profiles}")
    G = len(GENRES)
    rng = np.random.default_rng([seed, 1])

    # ---- shows and their episodes, with provisional release days
    used_titles: set = set()
    rows = []  # (provisional_day, show, episode, title, mixture, style, pop, duration_min)
    show = 0
    while len(rows) < n_items:
        gi = int(rng.choice(G, p=GENRE_PRIOR / GENRE_PRIOR.sum()))
        genre = GENRES[gi]
        single = rng.random() < 0.35
        n_ep = 1 if single else int(min(n_items - len(rows), 2 + rng.poisson(4 if gi < 2 else 3)))
        mix = _show_mixture(rng, gi)
        z = rng.uniform(-0.9, 0.9, STYLE_DIM)
        pop = rng.lognormal(0.0, 0.8)
        series_opts, single_opts = _DURATIONS[genre]
        opts = single_opts if single else series_opts
        minutes = int(opts[rng.integers(len(opts))])
        stem = _title(rng, genre, used_titles)
        cadence = _CADENCE.get(genre, 7.0)
        if rng.random() < 0.35:  # back catalogue: first episode before the logs start
            start = rng.uniform(-200.0, -5.0)
        else:
            start = rng.uniform(0.0, DAYS)
        for e in range(n_ep):
            day = start + e * cadence + rng.uniform(0.0, 0.2 * cadence)
            emix = _sparse_mixture(rng.dirichlet(mix * 120.0 + 0.02))
            if emix.max() < 0.5:  # an episode keeps its show's dominant genre
                emix = mix
            ez = np.clip(z + rng.normal(0.0, 0.12, STYLE_DIM), -1.0, 1.0)
            epop = pop * rng.lognormal(0.0, 0.3)
            title = stem if n_ep == 1 else f"{stem} #{e + 1}"
            rows.append((day, show, e, title, emix, ez, epop, minutes))
        show += 1
    rows = rows[:n_items]
    # at least one programme exists before the logs start, so the first viewers have a choice
    if min(r[0] for r in rows) >= 0.0:
        k = int(np.argmin([r[0] for r in rows]))
        rows[k] = (-1.0,) + rows[k][1:]

    order = sorted(range(n_items), key=lambda k: (rows[k][0], k))
    rows = [rows[k] for k in order]
    days = np.array([r[0] for r in rows])

    # ---- warp release days so that exactly the last COLD_FRACTION are after the cut-off
    n_cold = min(max(1, int(round(COLD_FRACTION * n_items))), n_items - 1)
    n_warm = n_items - n_cold
    rel = days.copy()
    warm_pos = (np.arange(n_items) < n_warm) & (days >= 0)
    if warm_pos.any():
        hi = days[warm_pos].max()
        rel[warm_pos] = days[warm_pos] / max(hi, 1e-9) * (CUTOFF_DAY - 1.0)
    cd = days[n_warm:]
    span = cd.max() - cd.min()
    frac = (cd - cd.min()) / span if span > 0 else np.linspace(0.0, 1.0, len(cd))
    rel[n_warm:] = CUTOFF_DAY + 0.5 + frac * (DAYS - CUTOFF_DAY - 6.5)
    release_ts = START_TS + np.round(rel * DAY).astype(np.int64)
    release_ts = np.maximum.accumulate(release_ts)  # ties from rounding stay ordered
    cutoff_ts = START_TS + CUTOFF_DAY * DAY

    width = max(4, len(str(n_items)))
    item_ids = [f"p{k + 1:0{width}d}" for k in range(n_items)]
    mixtures = np.stack([r[4] for r in rows])
    minutes = np.array([r[7] for r in rows])
    # a little per-episode variation around the slot length, in whole minutes
    dur_jitter = rng.integers(-2, 1, n_items) * (minutes >= 45)  # stays within 20-120 min
    clip_seconds = np.round(rng.uniform(6.0, 10.0, n_items) * FPS) / FPS

    # ---- profiles (households)
    prng = np.random.default_rng([seed, 2])
    taste = np.zeros((n_profiles, G))
    for u in range(n_profiles):
        k = int(prng.choice([1, 2, 3], p=[0.3, 0.45, 0.25]))
        chosen = prng.choice(G, size=k, replace=False, p=GENRE_PRIOR / GENRE_PRIOR.sum())
        t = np.zeros(G)
        t[chosen] = prng.dirichlet(np.full(k, 2.0))
        t = 0.88 * t + 0.12 * prng.dirichlet(np.full(G, 0.7))
        t = np.round(t / t.sum(), 3)
        t[np.argmax(t)] += round(1.0 - t.sum(), 3)
        taste[u] = t
    style_center = prng.uniform(-0.9, 0.9, (n_profiles, STYLE_DIM))
    activity = np.clip(prng.lognormal(np.log(0.55), 0.5, n_profiles), 0.08, 3.0)
    explore = prng.uniform(0.04, 0.12, n_profiles)

    return _World(
        item_ids=item_ids,
        titles=[r[3] for r in rows],
        mixtures=mixtures,
        styles=np.stack([r[5] for r in rows]),
        popularity=np.array([r[6] for r in rows]),
        series=np.array([r[1] for r in rows]),
        duration_s=(minutes + dur_jitter) * 60,
        release_ts=release_ts,
        cold=np.arange(n_items) >= n_warm,
        clip_seconds=clip_seconds,
        cutoff_ts=int(cutoff_ts),
        profile_ids=[f"u{u + 1:0{max(4, len(str(n_profiles)))}d}" for u in range(n_profiles)],
        taste=taste,
        style_center=style_center,
        activity=activity,
        explore=explore,
    )


def simulate_viewing(world: _World, seed: int) -> np.ndarray:
    """Simulate every profile's viewing over ``DAYS`` days; rows of :data:`INTERACTION_DTYPE`.

    Each profile uses its own generator (``default_rng([seed, 3, u])``), so results do not
    depend on the order profiles are simulated in.
    """
    n = len(world.item_ids)
    rel = world.release_ts.astype(np.float64)
    pop = world.popularity ** POP_EXP
    series = world.series
    out = []
    for u in range(len(world.profile_ids)):
        rng = np.random.default_rng([seed, 3, u])
        aff = world.mixtures @ world.taste[u]                     # taste . genre mixture
        d2 = ((world.styles - world.style_center[u]) ** 2).sum(axis=1)
        style = STYLE_FLOOR + np.exp(-d2 / (2.0 * STYLE_WIDTH ** 2))  # content similarity
        base = pop * aff ** TASTE_SHARPNESS * style
        # how well the programme suits the viewer (drives completion and likes); the style term
        # is damped so a perfect genre match on a far-off style still often gets finished
        match = np.log(aff + 0.02) + 0.5 * np.log(style)
        score = (match - match.mean()) / (match.std() + 1e-9)     # per-profile standardised match

        n_watch = int(rng.poisson(world.activity[u] * DAYS))
        day = rng.integers(0, DAYS, n_watch)
        hour = rng.choice(24, size=n_watch, p=_HOUR_P)
        ts = np.sort(START_TS + day * DAY + hour * 3600 + rng.integers(0, 3600, n_watch))
        explore_draw = rng.random(n_watch)
        pick_draw = rng.random(n_watch)
        counts = np.zeros(n)
        seen_series = np.zeros(series.max() + 1, dtype=bool)
        for j in range(n_watch):
            t = float(ts[j])
            avail = rel <= t
            if not avail.any():
                continue
            age_days = np.where(avail, (t - rel) / DAY, np.inf)
            boost = (1.0 + RECENCY_BOOST * np.exp(-age_days / RECENCY_DAYS)) * REWATCH_FACTOR ** counts
            if explore_draw[j] < world.explore[u]:
                w = pop * boost
            else:
                w = base * boost * np.where(seen_series[series] & (counts == 0), SERIES_BOOST, 1.0)
            w = np.where(avail, w, 0.0)
            total = w.sum()
            if total <= 0:
                continue
            i = int(np.searchsorted(np.cumsum(w), pick_draw[j] * total, side="right"))
            i = min(i, n - 1)
            counts[i] += 1
            seen_series[series[i]] = True
            s = score[i]
            if rng.random() < 1.0 / (1.0 + np.exp(1.6 - 1.2 * s)):  # finished it
                completion = rng.uniform(0.93, 1.0)
            else:
                completion = 0.9 * rng.beta(1.3, 2.6)
            liked = 0
            r = rng.random()
            if completion >= 0.9 and r < 0.14 / (1.0 + np.exp(1.0 - 1.5 * s)):
                liked = 1
            elif completion < 0.3 and r < 0.5 / (1.0 + np.exp(1.5 * s)):
                liked = -1
            out.append((u, i, int(ts[j]), round(float(completion), 3), liked))
    arr = np.array(out, dtype=INTERACTION_DTYPE)
    return arr[np.lexsort((arr["item"], arr["profile"], arr["timestamp"]))]


# --------------------------------------------------------------------------- daypart habits

#: Typical hours of each genre (a household's habitual hour is drawn near one of them).
GENRE_HOURS = {
    "news": (7.5, 19.0), "sports": (15.0, 20.5), "cartoons": (7.5, 16.5), "nature": (18.5, 20.0),
    "music": (21.5, 23.5), "drama": (21.0, 22.5), "cooking": (12.5, 18.0), "scifi": (22.0, 23.5),
}
#: Spread of a habit around its hour (von Mises concentration on the 24-h circle: ~1.8 h).
HABIT_KAPPA = 8.0


def maturity_ratings(world: _World, seed: int) -> np.ndarray:
    """Maturity rating (minimum age in years) per item: one per show, drawn from the show's
    primary genre (that of its first episode) with the odds of :data:`MATURITY_BY_GENRE`, from
    ``default_rng([seed, 8])`` only (no other stream moves). Shows are drawn in the order of
    their first episode, so the ratings depend only on the world."""
    rng = np.random.default_rng([seed, 8])
    out = np.full(len(world.item_ids), -1, dtype=np.int64)
    series = np.asarray(world.series)
    _, first = np.unique(series, return_index=True)
    for k in np.sort(first):  # first episode of each show, in item order
        genre = GENRES[int(np.argmax(world.mixtures[k]))]
        ratings, p = MATURITY_BY_GENRE[genre]
        out[series == series[k]] = int(rng.choice(np.array(ratings), p=np.array(p)))
    return out


def daypart_habits(world: _World, seed: int) -> dict[str, np.ndarray]:
    """Each household's habitual hour per genre and how strongly it keeps its habits.

    Returns ``{"hour": (P, G) float hours, "strength": (P,) in [0.3, 0.9]}``; drawn from
    ``default_rng([seed, 6])`` only (no other stream moves)."""
    rng = np.random.default_rng([seed, 6])
    P, G = len(world.profile_ids), len(GENRES)
    hour = np.zeros((P, G))
    for g, name in enumerate(GENRES):
        typical = np.array(GENRE_HOURS[name])
        hour[:, g] = (typical[rng.integers(len(typical), size=P)] + rng.normal(0.0, 0.75, P)) % 24
    return {"hour": hour, "strength": rng.uniform(0.3, 0.9, P)}


def with_daypart_times(rows: np.ndarray, world: _World, habits: dict, seed: int) -> np.ndarray:
    """``rows`` with each timestamp moved, on its own day, to an hour drawn from the household's
    habit for the item's primary genre (see the module docstring). Per profile stream
    ``default_rng([seed, 7, u])``; re-sorted by time like :func:`simulate_viewing`'s output."""
    out = rows.copy()
    primary = np.argmax(world.mixtures, axis=1)
    grid = np.arange(24) + 0.5
    for u in np.unique(rows["profile"]).tolist():
        rng = np.random.default_rng([seed, 7, u])
        sel = np.flatnonzero(rows["profile"] == u)
        g = primary[rows["item"][sel]]
        ang = 2 * np.pi * (grid[None, :] - habits["hour"][u, g][:, None]) / 24.0
        habit = np.exp(HABIT_KAPPA * (np.cos(ang) - 1.0))
        habit /= habit.sum(axis=1, keepdims=True)
        s = habits["strength"][u]
        p = (1.0 - s) * _HOUR_P[None, :] + s * habit
        cum = np.cumsum(p, axis=1)
        hours = (rng.random(len(sel))[:, None] > cum).sum(axis=1).clip(0, 23)
        day = (rows["timestamp"][sel] - START_TS) // DAY
        out["timestamp"][sel] = START_TS + day * DAY + hours * 3600 + rng.integers(0, 3600, len(sel))
    return out[np.lexsort((out["item"], out["profile"], out["timestamp"]))]


# --------------------------------------------------------------------------- writing


def _write_text_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _csv_text(rows: np.ndarray, world: _World) -> str:
    lines = [CSV_HEADER]
    pids, iids = world.profile_ids, world.item_ids
    for u, i, ts, c, lk in rows.tolist():
        lines.append(f"{pids[u]},{iids[i]},{ts},{c:.3f},{lk}")
    return "\n".join(lines) + "\n"


def _media_jobs(world: _World, out_dir: str, seed: int) -> list:
    jobs = []
    for k, iid in enumerate(world.item_ids):
        jobs.append((
            os.path.join(out_dir, "media", f"{iid}.mp4"),
            os.path.join(out_dir, "posters", f"{iid}.png"),
            world.mixtures[k].tolist(),
            world.styles[k].tolist(),
            float(world.clip_seconds[k]),
            int(np.random.default_rng([seed, 4, k]).integers(2**31)),
            world.titles[k],
        ))
    return jobs


def _render_media(jobs: list, workers: int, progress: bool) -> None:
    from models.synth_media import make_item_media, run_jobs

    run_jobs(make_item_media, jobs, workers, progress=progress, desc="media")


def generate_catalog(
    out_dir: str | os.PathLike,
    n_items: int = 600,
    seed: int = 0,
    n_profiles: int = 400,
    media: bool = True,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Generate the demo catalog into ``out_dir`` (see the module docstring for the layout).

    Parameters
    ----------
    out_dir : path
        Created if needed. A stale ``catalog.json`` is removed first and the new one is written
        last, so a folder without ``catalog.json`` is incomplete.
    n_items, seed, n_profiles : int
        Size and seed; the same arguments give identical manifest and logs (and, with libx264
        on one thread, identical media bytes).
    media : bool
        False skips the MP4 clips and posters (``media``/``poster`` become null): seconds
        instead of a minute or two, for tests and simulations.
    workers : int, optional
        Processes rendering media (default: up to 2). 1 renders in this process.
    progress : bool
        Show tqdm progress bars on stderr.

    Returns
    -------
    dict
        The manifest that was written to ``catalog.json``.
    """
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    manifest_path = os.path.join(out_dir, "catalog.json")
    if os.path.exists(manifest_path):
        os.remove(manifest_path)
    if workers is None:
        workers = min(2, os.cpu_count() or 1)

    world = build_world(n_items, n_profiles, seed)
    logs = simulate_viewing(world, seed)
    train = logs[logs["timestamp"] < world.cutoff_ts]
    future = logs[logs["timestamp"] >= world.cutoff_ts]
    assert not world.cold[train["item"]].any(), "a cold item leaked into the training logs"
    _write_text_atomic(os.path.join(out_dir, "interactions.csv"), _csv_text(train, world))
    _write_text_atomic(os.path.join(out_dir, "interactions_future.csv"), _csv_text(future, world))
    # The same viewing at the households' habitual hours (days unchanged, so the cut-off holds).
    habits = daypart_habits(world, seed)
    for name, part in (("interactions_dayparts.csv", train),
                       ("interactions_future_dayparts.csv", future)):
        _write_text_atomic(os.path.join(out_dir, name),
                           _csv_text(with_daypart_times(part, world, habits, seed), world))

    if media:
        os.makedirs(os.path.join(out_dir, "media"), exist_ok=True)
        os.makedirs(os.path.join(out_dir, "posters"), exist_ok=True)
        _render_media(_media_jobs(world, out_dir, seed), workers, progress)

    latent = {
        "note": "Hidden simulator state for diagnostics only; a recommender must not read it.",
        "style_dim": STYLE_DIM,
        "params": {
            "pop_exp": POP_EXP, "taste_sharpness": TASTE_SHARPNESS,
            "style_width": STYLE_WIDTH, "style_floor": STYLE_FLOOR,
            "series_boost": SERIES_BOOST, "recency_boost": RECENCY_BOOST,
            "recency_days": RECENCY_DAYS, "rewatch_factor": REWATCH_FACTOR,
        },
        "items": {
            iid: {
                "style": [round(float(v), 4) for v in world.styles[k]],
                "popularity": round(float(world.popularity[k]), 4),
                "series": f"s{int(world.series[k]):04d}",
                "clip_seconds": round(float(world.clip_seconds[k]), 4),
            }
            for k, iid in enumerate(world.item_ids)
        },
        "profiles": {
            pid: {
                "style_center": [round(float(v), 4) for v in world.style_center[u]],
                "explore": round(float(world.explore[u]), 4),
            }
            for u, pid in enumerate(world.profile_ids)
        },
    }
    _write_text_atomic(os.path.join(out_dir, "latent.json"), json.dumps(latent, indent=1) + "\n")

    maturity = maturity_ratings(world, seed)
    items = []
    for k, iid in enumerate(world.item_ids):
        mix = {GENRES[g]: round(float(w), 3) for g, w in enumerate(world.mixtures[k]) if w > 0}
        items.append({
            "id": iid,
            "title": world.titles[k],
            "genres": mix,
            "primary_genre": GENRES[int(np.argmax(world.mixtures[k]))],
            "duration_s": int(world.duration_s[k]),
            "release": k + 1,
            "release_ts": int(world.release_ts[k]),
            "cold": bool(world.cold[k]),
            "maturity": int(maturity[k]),
            "media": f"media/{iid}.mp4" if media else None,
            "poster": f"posters/{iid}.png" if media else None,
        })
    manifest = {
        "schema": SCHEMA,
        "seed": int(seed),
        "n_items": int(n_items),
        "n_profiles": int(n_profiles),
        "genres": list(GENRES),
        "log_start_ts": START_TS,
        "log_cutoff_ts": world.cutoff_ts,
        "log_end_ts": START_TS + DAYS * DAY,
        "media_format": None if not media else {
            "container": "mp4", "video_codec": "h264", "width": WIDTH, "height": HEIGHT, "fps": FPS,
            "pix_fmt": "yuv420p", "audio_codec": "aac", "sample_rate": SAMPLE_RATE, "channels": 1,
            "poster_size": list(POSTER_SIZE),
        },
        "items": items,
        "profiles": [
            {"id": pid, "taste": {GENRES[g]: round(float(w), 3) for g, w in enumerate(world.taste[u])},
             "activity": round(float(world.activity[u]), 4)}
            for u, pid in enumerate(world.profile_ids)
        ],
        "counts": {"train_events": int(len(train)), "future_events": int(len(future)),
                   "cold_items": int(world.cold.sum())},
    }
    _write_text_atomic(manifest_path, json.dumps(manifest, indent=1) + "\n")
    return manifest


# --------------------------------------------------------------------------- loading


def _need(obj: dict, key: str, kind, where: str, path: str):
    if not isinstance(obj, dict) or key not in obj:
        raise DataFormatError(f"{path}: {where}: missing field {key!r}")
    value = obj[key]
    # bool is an int subclass in Python: a true/false where a number belongs is still an error
    if kind is not None and (not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool)):
        raise DataFormatError(f"{path}: {where}: field {key!r} has the wrong type ({type(value).__name__})")
    return value


def _maturity(it: dict, iid: str, path: str) -> int:
    """An item's ``maturity`` (minimum age in years, 0-99); -1 when the field is absent."""
    value = it.get("maturity", -1)
    if value == -1:
        return -1
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 99:
        raise DataFormatError(f"{path}: item {iid}: maturity must be a minimum age in years "
                              f"(0-99), got {value!r}")
    return value


def _load_csv(path: str, item_pos: dict, profile_pos: dict) -> np.ndarray:
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as err:
        raise DataFormatError(f"{path}: cannot read interactions ({err.strerror or err})") from err
    except UnicodeDecodeError as err:
        raise DataFormatError(f"{path}: not UTF-8 text ({err.reason})") from err
    if not lines or lines[0].strip() != CSV_HEADER:
        got = lines[0][:60] if lines else "an empty file"
        raise DataFormatError(f"{path}:1: expected header {CSV_HEADER!r}, got {got!r}")
    rows = []
    for lineno in range(1, len(lines)):
        line = lines[lineno]
        if not line.strip():
            continue
        where = f"{path}:{lineno + 1}"
        fields = line.split(",")
        if len(fields) != 5:
            raise DataFormatError(
                f"{where}: expected 5 fields ({CSV_HEADER}), got {len(fields)}: {line[:60]!r}"
            )
        pid, iid, ts_s, comp_s, liked_s = (f.strip() for f in fields)
        if pid not in profile_pos:
            raise DataFormatError(f"{where}: unknown profile {pid!r}")
        if iid not in item_pos:
            raise DataFormatError(f"{where}: unknown item {iid!r}")
        try:
            ts = int(ts_s)
        except ValueError:
            raise DataFormatError(f"{where}: timestamp must be an integer, got {ts_s!r}") from None
        try:
            comp = float(comp_s)
        except ValueError:
            raise DataFormatError(f"{where}: completion must be a number, got {comp_s!r}") from None
        if not 0.0 <= comp <= 1.0:
            raise DataFormatError(f"{where}: completion {comp_s} outside 0..1")
        if liked_s not in ("-1", "0", "1"):
            raise DataFormatError(f"{where}: liked must be -1, 0 or 1, got {liked_s!r}")
        rows.append((profile_pos[pid], item_pos[iid], ts, comp, int(liked_s)))
    return np.array(rows, dtype=INTERACTION_DTYPE)


def load_catalog(root: str | os.PathLike) -> Catalog:
    """Load a catalog folder written by :func:`generate_catalog`.

    Raises
    ------
    DataFormatError
        If ``catalog.json`` is missing (also: generation did not finish), not JSON, of another
        schema or lacks a field; or a CSV line is malformed, names an unknown profile/item, or
        puts an event on the wrong side of the log cut-off. The message names the file and the
        line (or the item/profile).
    """
    root = os.fspath(root)
    path = os.path.join(root, "catalog.json")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise DataFormatError(f"{path}: no catalog manifest (missing or generation did not finish)") from None
    except OSError as err:
        raise DataFormatError(f"{path}: cannot read ({err.strerror or err})") from err
    try:
        m = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(m, dict):
        raise DataFormatError(f"{path}: top level must be an object")
    schema = _need(m, "schema", int, "manifest", path)
    if schema != SCHEMA:
        raise DataFormatError(f"{path}: schema {schema} is not supported (this code reads schema {SCHEMA})")
    genres = _need(m, "genres", list, "manifest", path)
    if not genres or not all(isinstance(g, str) for g in genres) or len(set(genres)) != len(genres):
        raise DataFormatError(f"{path}: 'genres' must be a list of distinct names")
    gpos = {g: k for k, g in enumerate(genres)}
    cutoff = _need(m, "log_cutoff_ts", int, "manifest", path)
    seed = _need(m, "seed", int, "manifest", path)
    raw_items = _need(m, "items", list, "manifest", path)
    raw_profiles = _need(m, "profiles", list, "manifest", path)
    if not raw_items:
        raise DataFormatError(f"{path}: no items")

    items, gm = [], np.zeros((len(raw_items), len(genres)), dtype=np.float32)
    for k, it in enumerate(raw_items):
        where = f"item #{k + 1}" + (f" ({it.get('id')})" if isinstance(it, dict) and "id" in it else "")
        iid = _need(it, "id", str, where, path)
        mix = _need(it, "genres", dict, where, path)
        for g, w in mix.items():
            if g not in gpos:
                raise DataFormatError(f"{path}: item {iid}: unknown genre {g!r}")
            if not isinstance(w, (int, float)) or not 0.0 <= w <= 1.0:
                raise DataFormatError(f"{path}: item {iid}: genre weight {g}={w!r} outside 0..1")
            gm[k, gpos[g]] = w
        if abs(gm[k].sum() - 1.0) > 0.01:
            raise DataFormatError(f"{path}: item {iid}: genre weights sum to {gm[k].sum():.3f}, not 1")
        primary = _need(it, "primary_genre", str, where, path)
        if primary not in gpos:
            raise DataFormatError(f"{path}: item {iid}: unknown primary genre {primary!r}")
        media = it.get("media")
        poster = it.get("poster")
        if not all(v is None or isinstance(v, str) for v in (media, poster)):
            raise DataFormatError(f"{path}: item {iid}: 'media'/'poster' must be a relative path or null")
        items.append(Item(
            id=iid,
            title=_need(it, "title", str, where, path),
            genres=dict(mix),
            primary_genre=primary,
            duration_s=_need(it, "duration_s", int, where, path),
            release=_need(it, "release", int, where, path),
            release_ts=int(it.get("release_ts", 0)),
            cold=_need(it, "cold", bool, where, path),
            media=media,
            poster=poster,
            maturity=_maturity(it, iid, path),
        ))
    item_ids = [it.id for it in items]
    if len(set(item_ids)) != len(item_ids):
        dup = next(i for i in item_ids if item_ids.count(i) > 1)
        raise DataFormatError(f"{path}: item id {dup!r} appears twice")

    taste = np.zeros((len(raw_profiles), len(genres)), dtype=np.float32)
    pids = []
    for u, p in enumerate(raw_profiles):
        where = f"profile #{u + 1}"
        pid = _need(p, "id", str, where, path)
        for g, w in _need(p, "taste", dict, f"profile {pid}", path).items():
            if g not in gpos or not isinstance(w, (int, float)):
                raise DataFormatError(f"{path}: profile {pid}: bad taste entry {g!r}: {w!r}")
            taste[u, gpos[g]] = w
        pids.append(pid)
    if len(set(pids)) != len(pids):
        raise DataFormatError(f"{path}: duplicate profile ids")

    item_pos = {iid: k for k, iid in enumerate(item_ids)}
    profile_pos = {pid: u for u, pid in enumerate(pids)}
    cold = np.array([it.cold for it in items], dtype=bool)
    train_path = os.path.join(root, "interactions.csv")
    future_path = os.path.join(root, "interactions_future.csv")
    train = _load_csv(train_path, item_pos, profile_pos)
    future = _load_csv(future_path, item_pos, profile_pos)
    # the split's promise: training events are before the cut-off and never on cold items
    bad = np.flatnonzero((train["timestamp"] >= cutoff) | cold[train["item"]])
    if len(bad):
        r = train[bad[0]]
        raise DataFormatError(
            f"{train_path}:{_line_of(train_path, int(bad[0]))}: event on item {item_ids[r['item']]} at "
            f"{int(r['timestamp'])} breaks the split (cold item or at/after log_cutoff_ts {cutoff})"
        )
    bad = np.flatnonzero(future["timestamp"] < cutoff)
    if len(bad):
        raise DataFormatError(
            f"{future_path}:{_line_of(future_path, int(bad[0]))}: timestamp before log_cutoff_ts {cutoff}"
        )

    return Catalog(
        root=root,
        seed=seed,
        genres=list(genres),
        log_cutoff_ts=cutoff,
        items=items,
        item_ids=np.array(item_ids),
        genre_matrix=gm,
        primary=np.array([gpos[it.primary_genre] for it in items], dtype=np.int64),
        duration_s=np.array([it.duration_s for it in items], dtype=np.int64),
        release=np.array([it.release for it in items], dtype=np.int64),
        release_ts=np.array([it.release_ts for it in items], dtype=np.int64),
        cold=cold,
        profile_ids=np.array(pids),
        taste=taste,
        train=train,
        future=future,
        manifest=m,
    )


def _line_of(path: str, row: int) -> int:
    """1-based file line of data row ``row`` (skipping blank lines, after the header)."""
    with open(path, encoding="utf-8") as fh:
        seen = -1
        for lineno, line in enumerate(fh, start=1):
            if lineno == 1 or not line.strip():
                continue
            seen += 1
            if seen == row:
                return lineno
    return 0
