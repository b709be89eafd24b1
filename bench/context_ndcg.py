"""Time of day as context: NDCG@10 of the box's Top-picks ranking with and without the
time-of-day weights (:mod:`device.context`), side by side in one run, on three logs:

- the demo catalog's logs **with daypart habits** (``interactions*_dayparts.csv``: households
  watch genres at habitual hours) -- where context should help;
- the same demo logs **without time structure** (``interactions*.csv``: one prime-time curve
  for every viewing, whatever is watched) -- where context must not hurt;
- MovieLens 100K -- whose timestamps are **rating times, not viewing times** (people rate many
  films in one sitting): no gain can be claimed from it either way.

Protocol, the same for all three: per user, the earliest 75% of rows (by time) are the history,
the rest is held out and grouped into sessions (same user, same day, same daypart: night,
morning, afternoon, prime time); each session is one ranking at the time of its first row.
The ranker is ``device.cf.recommend`` over an item-item table learned from everyone's history
(the shipped default learner), each history item weighted by recency (30-day half-life, as the
box does) and, in the context arm, by ``device.context.context_weights`` at the session's time.
Relevant: the session's items not already in the history. A paired bootstrap over sessions
gives a 95% interval for the ratio.

    .venv/bin/python bench/context_ndcg.py [--json bench/results/context_ndcg.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device.cf import ItemIndex, recommend  # noqa: E402
from device.context import DAYPARTS, context_weights, habit_strength  # noqa: E402

HALF_LIFE_DAYS = 30.0
K = 10


def daypart_index(ts: np.ndarray) -> np.ndarray:
    hour = (ts % 86400) // 3600
    out = np.zeros(len(ts), dtype=np.int64)
    for n, (_, lo, hi) in enumerate(DAYPARTS):
        out[(hour >= lo) & (hour < hi)] = n % 4  # the two "night" spans are one daypart
    return out


def evaluate(users, items, ts, genre_of: dict, label: str) -> dict:
    from models.cowatch import default_model

    users, items, ts = np.asarray(users).astype(str), np.asarray(items).astype(str), \
        np.asarray(ts, dtype=np.float64)
    order = np.lexsort((np.arange(len(ts)), ts, users))
    users, items, ts = users[order], items[order], ts[order]
    bounds = np.flatnonzero(users[1:] != users[:-1]) + 1
    train = np.zeros(len(ts), dtype=bool)
    for rows in np.split(np.arange(len(ts)), bounds):
        train[rows[: int(round(0.75 * len(rows)))]] = True
    item_ids = np.unique(items[train])
    col = {i: n for n, i in enumerate(item_ids.tolist())}
    user_ids, u = np.unique(users, return_inverse=True)
    tr = np.flatnonzero(train)
    X = sp.csr_matrix((np.ones(len(tr)), (u[tr], [col[i] for i in items[tr]])),
                      shape=(len(user_ids), len(item_ids)))
    X.data[:] = 1.0
    t0 = time.perf_counter()
    table = default_model(len(item_ids)).fit(X).to_table(item_ids)
    fit_s = time.perf_counter() - t0
    index = ItemIndex(table.item_ids)

    free, ctx, strengths = [], [], []
    for rows in np.split(np.arange(len(ts)), bounds):
        hist = rows[train[rows]]
        test = rows[~train[rows]]
        if not len(hist) or not len(test):
            continue
        latest: dict[str, float] = {}
        for r in hist.tolist():
            latest[items[r]] = ts[r]
        h_ids = list(latest)
        h_ts = np.array([latest[i] for i in h_ids])
        recent = np.argsort(-h_ts, kind="stable")
        codes = np.array([genre_of.get(h_ids[i], -1) for i in recent.tolist()])
        strength = habit_strength(h_ts[recent], codes)  # what the box earns for this history
        strengths.append(strength)
        day = (ts[test] // 86400).astype(np.int64)
        part = daypart_index(ts[test])
        keys = day * 4 + part
        for key in np.unique(keys).tolist():
            sess = test[keys == key]
            relevant = {items[r] for r in sess.tolist() if items[r] in col} - set(h_ids)
            if not relevant:
                continue
            now = float(ts[sess[0]])
            recency = 0.5 ** (np.maximum(now - h_ts, 0) / 86400 / HALF_LIFE_DAYS)
            weights = context_weights(h_ts, now, strength=strength)
            for arm, w in ((free, recency), (ctx, recency * weights)):
                recs = recommend(table, h_ids, w, n=K, exclude=h_ids, index=index)
                gains = [1.0 / np.log2(n + 2) for n, r in enumerate(recs) if r.item_id in relevant]
                ideal = sum(1.0 / np.log2(n + 2) for n in range(min(K, len(relevant))))
                arm.append(sum(gains) / ideal)
    free, ctx = np.array(free), np.array(ctx)
    rng = np.random.default_rng(0)
    boots = []
    for _ in range(1000):
        pick = rng.integers(0, len(free), len(free))
        boots.append(ctx[pick].mean() / max(free[pick].mean(), 1e-12))
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"log": label, "sessions": int(len(free)), "users": int(len(user_ids)),
            "items": int(len(item_ids)), "ndcg@10_without_context": float(free.mean()),
            "ndcg@10_with_context": float(ctx.mean()), "ratio": float(ctx.mean() / free.mean()),
            "ratio_95ci": [float(lo), float(hi)], "fit_s": fit_s,
            "profiles_with_context": float(np.mean(np.array(strengths) > 0)),
            "mean_strength": float(np.mean(strengths))}


def demo_logs(seed: int = 0):
    """The demo catalog's logs (600 programmes, 400 households), generated without media."""
    from models.catalog import generate_catalog

    out = Path(tempfile.mkdtemp(prefix="tvrec-context-"))
    manifest = generate_catalog(out, media=False, progress=False, seed=seed)
    genres = {g: n for n, g in enumerate(manifest["genres"])}
    genre_of = {it["id"]: genres[it["primary_genre"]] for it in manifest["items"]}

    def read(*names):
        rows = [line.split(",") for name in names
                for line in (out / name).read_text().splitlines()[1:]]
        return ([r[0] for r in rows], [r[1] for r in rows], [float(r[2]) for r in rows], genre_of)
    return (read("interactions_dayparts.csv", "interactions_future_dayparts.csv"),
            read("interactions.csv", "interactions_future.csv"))


def ml100k_genres(u_data: Path) -> dict:
    """MovieLens item -> its first genre flag in ``u.item`` (pipe-separated, latin-1)."""
    out = {}
    item_file = u_data.parent / "u.item"
    if item_file.is_file():
        for line in item_file.read_text(encoding="latin-1").splitlines():
            f = line.split("|")
            flags = [n for n, v in enumerate(f[5:]) if v == "1"]
            out[f[0]] = flags[0] if flags else -1
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ml100k", default=str(ROOT.parent / "shared/data/ml-100k/u.data"))
    ap.add_argument("--json", default=str(ROOT / "bench/results/context_ndcg.json"))
    args = ap.parse_args(argv)
    from tqdm import tqdm

    habits, flat = demo_logs()
    jobs = [("demo logs with daypart habits", habits), ("demo logs without time structure", flat)]
    if Path(args.ml100k).is_file():
        from models.movielens import load_ratings

        r = load_ratings(args.ml100k)
        jobs.append(("MovieLens 100K (rating times)",
                     (r.users, r.items, r.timestamps, ml100k_genres(Path(args.ml100k)))))
    results = [evaluate(*data, label) for label, data in tqdm(jobs, desc="logs", file=sys.stderr)]
    print(f"{'log':36s} {'sessions':>8s} {'NDCG@10 free':>12s} {'with context':>12s} "
          f"{'ratio':>6s}  {'95% CI':14s} profiles with context")
    for r in results:
        print(f"{r['log']:36s} {r['sessions']:8d} {r['ndcg@10_without_context']:12.4f} "
              f"{r['ndcg@10_with_context']:12.4f} {r['ratio']:6.3f}  "
              f"[{r['ratio_95ci'][0]:.3f}, {r['ratio_95ci'][1]:.3f}]  "
              f"{r['profiles_with_context']:.0%}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"k": K, "half_life_days": HALF_LIFE_DAYS,
                                           "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
