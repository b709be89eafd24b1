"""Fit time and peak memory of the default CF learner from 1.7k to 100k items.

Run:  nice .venv/bin/python bench/cf_scale.py [--sizes ml100k,10k,50k,100k] [--dense-reference]
Writes bench/results/cf_scale.json and prints a table.

Each fit runs in its own process (one BLAS thread; the learner's own threads use the cores),
which reports its fit's wall and CPU seconds, the 1-minute load average around it, and its peak resident set
(``VmHWM``: Linux carries ``ru_maxrss`` over fork+exec) before and after the fit, so a row's
memory is that fit's and nothing else's. Logs:

* ``ml100k`` -- MovieLens 100K (1.7k items), the cf-anchors protocol's training part;
* ``10k`` -- a sparse synthetic log shaped like a small real catalog: ~10k items, ~100k ratings,
  Zipf popularity, lognormal history lengths, taste clusters (``bench/synth_logs.py``); with
  ``--dense-reference`` the old default (dense EASE, re-solved top-64) is run on it too;
* ``50k`` -- 50k items, 50k users, ~1M interactions (same generator);
* ``100k`` -- SANSA's anchor size: 100k items, 100k users, 2.25M interactions after the history cap
  (the anchor's log had 1.94M: this one is harder), pure Zipf
  popularity (no taste structure), lognormal history lengths.

For the logs with a held-out part (ml100k, 10k) NDCG@10 of the device scorer on the per-user
random 75/25 split is reported as well. The table shows fit memory following the Gram matrix's
non-zeros (``bytes/nnz`` falls towards the Gram's own 8) while ``items^2`` grows 3,300-fold.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SIZES = {
    "ml100k": None,
    "10k": dict(n_items=10_000, n_users=8_000, n_events=140_000, seed=1),
    "50k": dict(n_items=50_000, n_users=50_000, n_events=1_300_000, seed=2),
    "100k": dict(n_items=100_000, n_users=100_000, n_events=2_600_000, seed=3, taste=0.0),
}


def child(size: str, model: str, ratings: str, evaluate: bool) -> dict:
    """Runs in the spawned process: build the log, fit, report."""
    import numpy as np

    from device.budget import status_mb
    from models.evaluate import capped_random_split, evaluate_table

    if size == "ml100k":
        from models.movielens import load_ratings

        r = load_ratings(ratings)
        users, items, ts = r.users, r.items, r.timestamps
    else:
        from synth_logs import synth_log

        users, items, ts = synth_log(**SIZES[size])
        users, items = users.astype(str), items.astype(str)
    if evaluate:
        split = capped_random_split(users, items, ts, seed=42)
        X = split.train
    else:  # fit on the whole (capped) log: the scale rows measure the learner, not a split
        import scipy.sparse as sp

        from models.cowatch import cap_histories

        _, u = np.unique(users, return_inverse=True)
        ids, i = np.unique(items, return_inverse=True)
        keep = cap_histories(u, i, ts)
        X = sp.csr_matrix((np.ones(int(keep.sum())), (u[keep], i[keep])),
                          shape=(u.max() + 1, len(ids)))
        split = None
    from models.sparse_ease import gram_matrix, predicted_fit_bytes, predicted_gram_nnz

    before = status_mb("VmHWM")
    if model == "sparse":
        from models.cowatch import default_model

        m = default_model(X.shape[1])
    else:
        from models.cowatch import EASEModel

        m = EASEModel(K=64, max_items=10**9)
    load_before = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    m.fit(X)
    fit_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    peak = status_mb("VmHWM")
    out = dict(
        log=size, model=type(m).__name__, n_items=int(X.shape[1]), n_users=int(X.shape[0]),
        interactions=int(X.nnz), fit_seconds=fit_s, fit_cpu_seconds=cpu_s,
        load_avg_before=load_before, load_avg_after=os.getloadavg()[0],
        peak_rss_mb=peak, rss_before_fit_mb=before,
        lambda_=getattr(m, "lambda_used_", None),
        max_row_nnz=int(np.diff(m.similarity.indptr).max()),
        predicted_gram_nnz=predicted_gram_nnz(X), predicted_fit_mb=predicted_fit_bytes(X) / 2**20,
    )
    if split is not None:  # after the peak was read: scoring is not part of the fit
        out["ndcg@10"] = evaluate_table(m.to_table(split.item_ids), split, 10)["ndcg@10"]
    del m
    out["gram_nnz"] = int(gram_matrix(X).nnz)
    return out


def run_one(size, model, ratings, evaluate):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "TVREC_NO_PROGRESS": "1"}
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT / 'bench')!r}); "
            f"import cf_scale; print('RESULT', json.dumps(cf_scale.child({size!r}, {model!r}, "
            f"{ratings!r}, {evaluate!r})))")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=ROOT)
    wall = time.perf_counter() - t0
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            res = json.loads(line[7:])
            res["process_wall_seconds"] = wall
            return res
    return {"log": size, "model": model, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}


def print_table(rows):
    hdr = (f"{'log':8s} {'model':16s} {'items':>8s} {'inter.':>10s} {'Gram nnz':>12s} "
           f"{'items^2':>9s} {'fit s':>8s} {'CPU s':>8s} {'load':>5s} {'peak MB':>8s} {'B/nnz':>6s} "
           f"{'lambda':>7s} {'NDCG@10':>8s}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        if "error" in r:
            print(f"{r['log']:8s} {r['model']:16s} error: {r['error']}")
            continue
        bpn = (r["peak_rss_mb"] - r["rss_before_fit_mb"]) * 2**20 / max(r["gram_nnz"], 1)
        nd = r.get("ndcg@10")
        print(f"{r['log']:8s} {r['model']:16s} {r['n_items']:8,d} {r['interactions']:10,d} "
              f"{r['gram_nnz']:12,d} {r['n_items'] ** 2 / 1e9:8.2f}G {r['fit_seconds']:8.1f} "
              f"{r.get('fit_cpu_seconds', float('nan')):8.1f} {r.get('load_avg_before', float('nan')):5.1f} "
              f"{r['peak_rss_mb']:8.0f} {bpn:6.1f} {r['lambda_'] or float('nan'):7.1f} "
              f"{'' if nd is None else f'{nd:8.4f}'}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="ml100k,10k,50k,100k")
    ap.add_argument("--ratings", default=str(ROOT.parent / "shared/data/ml-100k/u.data"))
    ap.add_argument("--dense-reference", action="store_true",
                    help="also fit the old default (dense EASE, N x N) on ml100k and 10k")
    ap.add_argument("--out", default=str(ROOT / "bench/results/cf_scale.json"))
    args = ap.parse_args(argv)
    rows = []
    for size in args.sizes.split(","):
        evaluate = size in ("ml100k", "10k")
        rows.append(run_one(size, "sparse", args.ratings, evaluate))
        print(json.dumps(rows[-1]), flush=True)
        if args.dense_reference and size in ("ml100k", "10k"):
            rows.append(run_one(size, "dense", args.ratings, evaluate))
            print(json.dumps(rows[-1]), flush=True)
    print()
    print_table(rows)
    result = {
        "machine": {"python": platform.python_version(), "machine": platform.machine(),
                    "cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg()},
        "rows": rows,
        "anchor_sansa_100k": {"fit_seconds": 202, "peak_rss_mb": 3.8 * 1024},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
