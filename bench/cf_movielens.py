"""Item-based CF on MovieLens 100K, side by side in one run, plus the device scorer's cost.

Run:  .venv/bin/python bench/cf_movielens.py [--ratings ../shared/data/ml-100k/u.data]
Writes bench/results/cf_movielens.json and prints a table.

Protocol: ../shared/notes/cf-anchors.md (per-user random 75/25, seed 42, all unseen items
ranked, k=10). Every project model is scored by the device scorer (``device.cf.recommend``)
from its shipped [N, K] neighbour table; implicit's recommenders use their own ``recommend``.
A second table repeats the project's models on a per-user temporal split (train on each user's
earliest 75%), closer to how a box is used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one BLAS thread, as in cf-anchors
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device.cf import PAD, ItemIndex, NeighbourTable, recommend  # noqa: E402
from models.cowatch import (  # noqa: E402
    BM25Model,
    CosineModel,
    EASEModel,
    JaccardModel,
    default_model,
)
from models.evaluate import evaluate_table, random_split, ranking_metrics, temporal_split  # noqa: E402
from models.movielens import load_ratings  # noqa: E402


def project_models():
    return {
        "popularity (device fallback)": None,
        "cosine, shrink 10, K=64": CosineModel(K=64, shrink=10.0),
        "jaccard (SAR), K=64": JaccardModel(K=64),
        "bm25, K=64": BM25Model(K=64),
        "EASE naive top-64 (lambda 300)": EASEModel(K=64, lambda_=300.0, sparsify="topk"),
        "EASE dense (K=all, lambda 300)": EASEModel(K=10_000, lambda_=300.0, sparsify="topk"),
        "EASE dense support re-solved top-64 (old default)": EASEModel(K=64),
        "sparse EASE, no N x N, top-64 [DEFAULT]": None,  # filled by default_model
    }


def run_project(split, k):
    rows = {}
    for name, model in project_models().items():
        if name.endswith("[DEFAULT]"):
            model = default_model(len(split.item_ids))
        t0 = time.perf_counter()
        if model is None:  # popularity: a table with no neighbours
            counts = np.asarray(split.train.sum(0)).ravel()
            n = len(counts)
            table = NeighbourTable(
                split.item_ids,
                np.full((n, 1), PAD, np.int32),
                np.zeros((n, 1), np.float32),
                np.log1p(counts).astype(np.float32),
            )
        else:
            model.fit(split.train)
            table = model.to_table(split.item_ids)
        fit_s = time.perf_counter() - t0
        m = evaluate_table(table, split, k)
        m["fit_seconds"] = fit_s
        m["neighbours_per_item"] = int(table.k)
        if getattr(model, "lambda_used_", None):
            m["lambda"] = model.lambda_used_
        rows[name] = m
    return rows


def run_implicit(split, k):
    try:
        from implicit.nearest_neighbours import (
            BM25Recommender,
            CosineRecommender,
            TFIDFRecommender,
        )
    except ImportError:
        return {"implicit": {"error": "implicit not installed (pip install 'tvrec[dev]')"}}
    import implicit

    X = split.train.tocsr().astype(np.float32)
    test = split.test
    relevant = [
        set(test.indices[test.indptr[u]: test.indptr[u + 1]]) for u in range(test.shape[0])
    ]
    users = np.arange(X.shape[0])
    rows = {}
    for name, model in {
        f"implicit {implicit.__version__} Cosine K=20": CosineRecommender(K=20),
        f"implicit {implicit.__version__} BM25 K=200": BM25Recommender(K=200),
        f"implicit {implicit.__version__} TFIDF K=100": TFIDFRecommender(K=100),
    }.items():
        t0 = time.perf_counter()
        model.fit(X, show_progress=False)
        ids, _ = model.recommend(users, X[users], N=k, filter_already_liked_items=True)
        elapsed = time.perf_counter() - t0
        m = ranking_metrics([list(r) for r in ids], relevant, k, X.shape[1])
        m["fit_plus_recommend_all_seconds"] = elapsed
        rows[name] = m
    return rows


def device_scorer_cost(n_items=10_000, k=64, history=1_000, repeats=300, seed=0):
    """p50/p95 of scoring one profile with `history` events over an n_items x k table."""
    rng = np.random.default_rng(seed)
    table = NeighbourTable(
        np.array([f"item{i:06d}" for i in range(n_items)], dtype=object),
        rng.integers(0, n_items, (n_items, k)).astype(np.int32),
        rng.random((n_items, k)).astype(np.float32),
        rng.random(n_items).astype(np.float32),
    )
    index = ItemIndex(table.item_ids)
    hist = list(table.item_ids[rng.choice(n_items, history, replace=False)])
    aff = rng.uniform(0.1, 2.0, history)
    finished = hist[: history // 2]
    recommend(table, hist, aff, n=20, exclude=finished, index=index)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        recommend(table, hist, aff, n=20, exclude=finished, index=index)
        times.append((time.perf_counter() - t0) * 1000)
    tracemalloc.start()
    recommend(table, hist, aff, n=20, exclude=finished, index=index)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "n_items": n_items,
        "k": k,
        "history_events": history,
        "recommend_ms_p50": float(np.percentile(times, 50)),
        "recommend_ms_p95": float(np.percentile(times, 95)),
        "peak_alloc_mb_per_call": peak / 2**20,
        "table_mb": (table.neighbours.nbytes + table.weights.nbytes) / 2**20,
    }


def print_table(title, rows, k):
    print(f"\n{title}")
    hdr = f"{'model':52s} {'P@'+str(k):>7s} {'R@'+str(k):>7s} {'NDCG@'+str(k):>8s} {'MAP':>7s} {'cov':>6s} {'fit s':>7s}"
    print(hdr)
    print("-" * len(hdr))
    for name, m in rows.items():
        if "error" in m:
            print(f"{name:52s} {m['error']}")
            continue
        fit = m.get("fit_seconds", m.get("fit_plus_recommend_all_seconds", float("nan")))
        print(
            f"{name:52s} {m[f'precision@{k}']:7.3f} {m[f'recall@{k}']:7.3f} "
            f"{m[f'ndcg@{k}']:8.3f} {m['map']:7.3f} {m['coverage']:6.3f} {fit:7.2f}"
        )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ratings", default=str(ROOT.parent / "shared/data/ml-100k/u.data"))
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--out", default=str(ROOT / "bench/results/cf_movielens.json"))
    ap.add_argument("--quick", action="store_true", help="random split only, no implicit")
    args = ap.parse_args(argv)

    r = load_ratings(args.ratings)
    split = random_split(r.users, r.items, seed=42)
    random_rows = run_project(split, args.k)
    if not args.quick:
        random_rows.update(run_implicit(split, args.k))
    tsplit = temporal_split(r.users, r.items, r.timestamps)
    temporal_rows = {} if args.quick else run_project(tsplit, args.k)
    cost = device_scorer_cost()

    print_table("MovieLens 100K, per-user random 75/25 (cf-anchors protocol)", random_rows, args.k)
    print_table("MovieLens 100K, per-user temporal 75/25", temporal_rows, args.k)
    print(
        f"\nDevice scorer, {cost['n_items']:,} items x K={cost['k']}, "
        f"{cost['history_events']:,} history events: p50 {cost['recommend_ms_p50']:.3f} ms, "
        f"p95 {cost['recommend_ms_p95']:.3f} ms, peak alloc {cost['peak_alloc_mb_per_call']:.1f} MB "
        f"per call (table {cost['table_mb']:.1f} MB)"
    )
    result = {
        "ratings": args.ratings,
        "k": args.k,
        "machine": {"python": platform.python_version(), "machine": platform.machine(),
                    "cpus": os.cpu_count()},
        "random_split": random_rows,
        "temporal_split": temporal_rows,
        "device_scorer": cost,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
