"""Synthetic catalogs and watch logs at fleet scale (``tvrec catalog synth-logs``).

A log with structure a model can learn and an evaluation can measure, generated fast enough
for tens of millions of events (vectorised numpy, one ``numpy.random.default_rng(seed)``; the
same arguments give the same files, byte for byte):

* **taste clusters** -- every item belongs to one cluster (its genre); every profile likes two
  or three clusters with Dirichlet weights and draws most of its viewing from them
  (``TASTE_SHARE``), the rest from the whole catalog;
* **power-law popularity** -- each title (a film, or a whole series) has a Zipf weight
  ``rank ** -ZIPF_EXPONENT`` over a random ranking; later episodes of a series are watched less;
* **series bingeing** -- a viewing session that starts on an episode goes on through the next
  episodes of the same series (a geometric number of them, ``BINGE_MEAN`` on average), so
  "next episode" is the strongest co-watch signal, as on a real TV platform;
* **heavy-tailed activity** -- profiles' session counts are lognormal (a few households watch
  a great deal; they are what makes pair generation quadratic without a history cap).

Outputs, in ``DIR``: ``items.csv`` (the generic catalog format of ``models/readers.py``:
``id,title,genres,duration,release,series,season,episode,maturity``), ``events.csv`` (the
watch-event format ``profile_id,item_id,timestamp,completion``, sorted by profile and time) or
``events.parquet``, and ``manifest.json`` (the arguments, the generator's constants, counts).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

#: Share of a profile's sessions drawn from its own taste clusters (the rest: whole catalog).
TASTE_SHARE = 0.85
#: Zipf exponent of title popularity.
ZIPF_EXPONENT = 0.9
#: Share of items that are episodes of a series; series have 4-24 episodes, 10 per season.
EPISODE_SHARE = 0.35
#: Mean length of a binge (episodes watched in a row from the first one drawn).
BINGE_MEAN = 3.0
#: Lognormal sigma of profiles' activity.
ACTIVITY_SIGMA = 1.0
#: The logs span this many days before ``END_TIME``.
SPAN_DAYS = 180
END_TIME = 1_767_225_600  # 2026-01-01T00:00:00Z
GENRES = (
    "drama", "comedy", "crime", "documentary", "kids", "animation", "sci-fi", "romance",
    "thriller", "horror", "sport", "news", "reality", "nature", "history", "music",
    "fantasy", "action", "family", "cooking",
)


@dataclass(frozen=True)
class SynthLog:
    """A generated catalog and log as arrays (item indices are 0-based; ids are ``index + 1``)."""

    cluster: np.ndarray  # [N] taste cluster of each item
    series: np.ndarray  # [N] series number, -1 for films
    episode: np.ndarray  # [N] 1-based episode number within its series, 0 for films
    duration: np.ndarray  # [N] seconds
    release: np.ndarray  # [N] unix seconds
    maturity: np.ndarray  # [N] minimum age
    profile: np.ndarray  # [E] profile index
    item: np.ndarray  # [E] item index
    timestamp: np.ndarray  # [E] unix seconds (int64)
    completion: np.ndarray  # [E] fraction watched, float32

    @property
    def n_items(self) -> int:
        return len(self.cluster)


def n_clusters_for(n_items: int) -> int:
    """Taste clusters for a catalog size: ~sqrt(N)/2, between 2 and 200."""
    return int(max(2, min(200, round(n_items**0.5 / 2))))


def _catalog(rng: np.random.Generator, n: int):
    """Items in index order: films and series (episodes consecutive), clusters, metadata."""
    series = np.full(n, -1, dtype=np.int64)
    episode = np.zeros(n, dtype=np.int64)
    n_episodes = int(EPISODE_SHARE * n)
    lengths = rng.integers(4, 25, size=max(1, n_episodes // 4))
    lengths = lengths[np.cumsum(lengths) <= n_episodes]
    # Series occupy random, non-overlapping runs of consecutive indices.
    n_films = n - int(lengths.sum())
    units = np.concatenate([np.ones(n_films, dtype=np.int64), lengths])  # films then series
    is_series = np.concatenate([np.zeros(n_films, bool), np.ones(len(lengths), bool)])
    perm = rng.permutation(len(units))
    units, is_series = units[perm], is_series[perm]
    starts = np.concatenate([[0], np.cumsum(units)[:-1]])
    unit_of_item = np.repeat(np.arange(len(units)), units)
    pos = np.arange(n) - starts[unit_of_item]
    series_no = np.cumsum(is_series) - 1
    in_series = is_series[unit_of_item]
    series[in_series] = series_no[unit_of_item[in_series]]
    episode[in_series] = pos[in_series] + 1
    k = n_clusters_for(n)
    unit_cluster = rng.integers(0, k, size=len(units))
    cluster = unit_cluster[unit_of_item]
    # Popularity: Zipf over a random ranking of titles; episodes decay within a series.
    rank = rng.permutation(len(units)) + 1
    unit_w = rank.astype(np.float64) ** -ZIPF_EXPONENT
    weight = unit_w[unit_of_item] * np.where(in_series, 0.85**pos, 1.0)
    duration = np.where(in_series, rng.choice([1320, 2700, 3300], size=n),
                        rng.integers(80, 150, size=n) * 60).astype(np.int64)
    release = (END_TIME - rng.integers(0, 20 * 365, size=n) * 86_400).astype(np.int64)
    release = np.where(in_series, release[starts[unit_of_item]] + pos * 7 * 86_400, release)
    maturity = rng.choice(np.array([0, 7, 12, 16, 18]), size=n, p=[0.25, 0.2, 0.25, 0.2, 0.1])
    maturity = maturity[starts[unit_of_item]]  # one rating per series
    series_len = units[unit_of_item]
    return series, episode, cluster, weight, duration, release, maturity, pos, series_len, k


def generate(n_items: int, n_profiles: int, n_events: int, seed: int = 0) -> SynthLog:
    """Generate a catalog of ``n_items`` and exactly ``n_events`` events over ``n_profiles``.

    Every profile gets at least one session when ``n_events >= n_profiles``.
    """
    if n_items < 2 or n_profiles < 1 or n_events < 1:
        raise ValueError("need items >= 2, profiles >= 1, events >= 1")
    rng = np.random.default_rng(seed)
    series, episode, cluster, weight, duration, release, maturity, pos, series_len, k = _catalog(
        rng, n_items)

    # Items grouped by cluster, with the cumulative popularity of that order.
    by_cluster = np.argsort(cluster, kind="stable")
    cum = np.cumsum(weight[by_cluster])
    bounds = np.searchsorted(cluster[by_cluster], np.arange(k + 1))
    lo_mass = np.concatenate([[0.0], cum])[bounds[:-1]]
    hi_mass = np.concatenate([[0.0], cum])[bounds[1:]]
    global_cum = np.cumsum(weight)

    # Profiles: three taste clusters with Dirichlet weights; lognormal activity.
    taste = rng.integers(0, k, size=(n_profiles, 3))
    taste_w = np.cumsum(rng.dirichlet(np.ones(3), size=n_profiles), axis=1)
    activity = rng.lognormal(0.0, ACTIVITY_SIGMA, size=n_profiles)
    activity_cum = np.cumsum(activity) / activity.sum()

    items, profiles, lens_all = [], [], []
    total, batch = 0, max(1024, int(n_events / (1 + EPISODE_SHARE * (BINGE_MEAN - 1))) + 1)
    first = True
    while total < n_events:
        if first and n_events >= n_profiles:  # everyone watches something
            prof = np.concatenate([np.arange(n_profiles), _draw(rng, activity_cum, batch)])
        else:
            prof = _draw(rng, activity_cum, batch)
        first = False
        m = len(prof)
        slot = (rng.random(m)[:, None] > taste_w[prof]).sum(axis=1)
        c = taste[prof, np.minimum(slot, 2)]
        u = rng.random(m)
        idx = np.searchsorted(cum, lo_mass[c] + u * (hi_mass[c] - lo_mass[c]), side="right")
        idx = np.clip(idx, bounds[c], bounds[c + 1] - 1)
        seed_item = by_cluster[idx]
        explore = rng.random(m) >= TASTE_SHARE
        g = np.searchsorted(global_cum, rng.random(int(explore.sum())) * global_cum[-1], side="right")
        seed_item[explore] = np.minimum(g, n_items - 1)
        # Binge: a session on an episode continues through the following episodes.
        remaining = np.where(series[seed_item] >= 0, series_len[seed_item] - pos[seed_item], 1)
        binge = rng.geometric(1.0 / BINGE_MEAN, size=m)
        lens = np.minimum(np.where(series[seed_item] >= 0, binge, 1), remaining)
        items.append(seed_item)
        profiles.append(prof)
        lens_all.append(lens)
        total += int(lens.sum())

    seed_item = np.concatenate(items)
    prof = np.concatenate(profiles)
    lens = np.concatenate(lens_all)
    # Cut to exactly n_events (the last session may be shortened).
    ends = np.cumsum(lens)
    n_sessions = int(np.searchsorted(ends, n_events) + 1)
    seed_item, prof, lens = seed_item[:n_sessions], prof[:n_sessions], lens[:n_sessions].copy()
    lens[-1] -= int(ends[n_sessions - 1] - n_events)
    start = END_TIME - SPAN_DAYS * 86_400 + rng.integers(0, SPAN_DAYS * 86_400, size=n_sessions)
    offs = np.arange(n_events) - np.repeat(np.cumsum(lens) - lens, lens)
    item = np.repeat(seed_item, lens) + offs
    ts = np.repeat(start, lens) + offs * duration[np.repeat(seed_item, lens)]
    profile = np.repeat(prof, lens)
    completion = np.clip(rng.beta(4.0, 1.2, size=n_events), 0.01, 1.0).astype(np.float32)
    order = np.lexsort((item, ts, profile))
    return SynthLog(cluster=cluster, series=series, episode=episode, duration=duration,
                    release=release, maturity=maturity, profile=profile[order],
                    item=item[order], timestamp=ts[order].astype(np.int64),
                    completion=np.round(completion[order], 3))


def _draw(rng: np.random.Generator, cum: np.ndarray, m: int) -> np.ndarray:
    return np.minimum(np.searchsorted(cum, rng.random(m), side="right"), len(cum) - 1)


# ------------------------------------------------------------------------------ files


def item_ids(n: int) -> np.ndarray:
    """The catalog's own ids of the synthetic items: ``"1" .. "N"`` (as MovieLens ids)."""
    return np.arange(1, n + 1).astype(str)


def write_items_csv(log: SynthLog, path: str) -> None:
    """The catalog in the generic CSV format (``id,title,genres,duration,release,...``)."""
    import csv
    import time

    n = log.n_items
    series_no = log.series
    season = np.where(series_no >= 0, (log.episode - 1) // 10 + 1, 0)
    ep_in_season = np.where(series_no >= 0, (log.episode - 1) % 10 + 1, 0)
    g = len(GENRES)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["id", "title", "genres", "duration", "release", "series", "season", "episode",
                    "maturity"])
        for i in range(n):
            c = int(log.cluster[i])
            genres = GENRES[c % g] if c < g else f"{GENRES[c % g]}|{GENRES[(c // g) % g]}"
            release = time.strftime("%Y-%m-%d", time.gmtime(int(log.release[i])))
            if series_no[i] >= 0:
                s = int(series_no[i])
                title = f"Series {s + 1} S{season[i]}E{ep_in_season[i]}"
                row = [i + 1, title, genres, int(log.duration[i]), release, f"s{s + 1}",
                       int(season[i]), int(ep_in_season[i]), int(log.maturity[i])]
            else:
                row = [i + 1, f"Film {i + 1}", genres, int(log.duration[i]), release, "", "", "",
                       int(log.maturity[i])]
            w.writerow(row)


def write_events(log: SynthLog, path: str, fmt: str = "csv", chunk: int = 1_000_000) -> None:
    """The log as ``profile_id,item_id,timestamp,completion`` (CSV or Parquet)."""
    prof = log.profile + 1
    item = log.item + 1
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({
            "profile_id": pa.array(prof.astype(str)),
            "item_id": pa.array(item.astype(str)),
            "timestamp": pa.array(log.timestamp),
            "completion": pa.array(log.completion),
        })
        pq.write_table(table, path, row_group_size=chunk)
        return
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("profile_id,item_id,timestamp,completion\n")
        for lo in range(0, len(prof), chunk):
            hi = min(lo + chunk, len(prof))
            # Integer columns formatted by numpy in one go; completion as 3 decimals.
            comp = np.char.mod("%.3f", log.completion[lo:hi].astype(np.float64))
            cols = [prof[lo:hi].astype(str), item[lo:hi].astype(str),
                    log.timestamp[lo:hi].astype(str), comp]
            lines = cols[0].astype(object) + "," + cols[1] + "," + cols[2] + "," + comp
            fh.write("\n".join(lines.tolist()))
            fh.write("\n")


def synth_logs(out: str, n_items: int, n_profiles: int, n_events: int, seed: int = 0,
               fmt: str = "csv") -> dict:
    """Generate and write ``items.csv``, ``events.csv`` (or ``.parquet``), ``manifest.json``."""
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"format must be csv or parquet, got {fmt!r}")
    os.makedirs(out, exist_ok=True)
    log = generate(n_items, n_profiles, n_events, seed)
    write_items_csv(log, os.path.join(out, "items.csv"))
    events = os.path.join(out, f"events.{fmt}")
    write_events(log, events, fmt)
    manifest = {
        "generator": "tvrec catalog synth-logs",
        "seed": seed,
        "n_items": int(n_items),
        "n_profiles_requested": int(n_profiles),
        "n_profiles": int(len(np.unique(log.profile))),
        "n_events": int(len(log.item)),
        "n_clusters": n_clusters_for(n_items),
        "n_series": int(log.series.max() + 1) if (log.series >= 0).any() else 0,
        "items": "items.csv",
        "events": os.path.basename(events),
        "constants": {
            "taste_share": TASTE_SHARE, "zipf_exponent": ZIPF_EXPONENT,
            "episode_share": EPISODE_SHARE, "binge_mean": BINGE_MEAN,
            "activity_sigma": ACTIVITY_SIGMA, "span_days": SPAN_DAYS, "end_time": END_TIME,
        },
    }
    with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=1)
    return manifest
