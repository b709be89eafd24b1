"""Fleet learning at scale: the in-process learner against the Spark job, side by side.

For each log size (100k items; 1M / 5M / 20M events from ``tvrec catalog synth-logs``'s
generator), each engine runs in its own child process and the parent samples that process
tree (driver, JVM, Python workers) every 0.2 s:

* wall time of the fit (reading the training log included; the Spark session's start shown
  separately), and the Spark job's own stage times;
* peak memory: the largest sum of RSS over the tree seen at one sample, and the sum of each
  process's own peak (``VmHWM``; an upper bound, peaks need not coincide);
* shuffle bytes (Spark's status REST API: shuffle write summed over the stages);
* NDCG@10 on a held-out split (each profile's last 20% of events, profiles with >= 5), for
  the learned tables, BM25 (K = 64, the shipped heuristic) and popularity, scored with the
  device scorer on a seeded sample of held-out profiles.

Writes ``bench/results/fleet_scale.json`` and ``fleet_scale.png``; prints a table.

    nice .venv/bin/python bench/fleet_scale.py                        # 1M, 5M, 20M
    .venv/bin/python bench/fleet_scale.py --events 200000 --engines local,spark   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"


# ------------------------------------------------------------------------------ data


def make_point(work: Path, n_items: int, n_events: int, seed: int) -> dict:
    """Synthetic log -> train.parquet (+ held-out arrays), reused when already there."""
    d = work / f"{n_items}-{n_events}-{seed}"
    meta = d / "split.json"
    if meta.is_file():
        return json.loads(meta.read_text())
    import pyarrow as pa
    import pyarrow.parquet as pq

    from models.synth_logs import generate, item_ids

    d.mkdir(parents=True, exist_ok=True)
    n_profiles = max(1000, n_events // 20)
    t0 = time.perf_counter()
    log = generate(n_items, n_profiles, n_events, seed)
    gen_s = time.perf_counter() - t0
    # per profile (the log is sorted by profile, time): the last 20% held out, >= 5 events
    p = log.profile
    start = np.concatenate([[0], np.flatnonzero(np.diff(p)) + 1])
    length = np.diff(np.concatenate([start, [len(p)]]))
    rank = np.arange(len(p)) - np.repeat(start, length)
    n = np.repeat(length, length)
    held = (n >= 5) & (rank >= n - np.maximum(1, np.round(0.2 * n)).astype(int))
    ids = item_ids(n_items)
    train = pa.table({"profile_id": pa.array((p[~held] + 1).astype(str)),
                      "item_id": pa.array(ids[log.item[~held]]),
                      "timestamp": pa.array(log.timestamp[~held].astype(np.float64))})
    pq.write_table(train, d / "train.parquet", row_group_size=1_000_000)
    np.savez(d / "held.npz", profile=p[held], item=log.item[held],
             train_profile=p[~held], train_item=log.item[~held])
    info = {"dir": str(d), "n_items": n_items, "n_events": n_events, "n_profiles": n_profiles,
            "n_train": int((~held).sum()), "n_held": int(held.sum()), "seed": seed,
            "generate_seconds": round(gen_s, 1)}
    meta.write_text(json.dumps(info))
    return info


# ---------------------------------------------------------------------------- worker


def worker(args) -> None:
    """Child process: fit one engine on train.parquet, save the table and a result JSON."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from models import fleet_spark as fs
    from models.synth_logs import item_ids

    ids = item_ids(args.n_items)
    out: dict = {"engine": args.worker}
    t0 = time.perf_counter()
    if args.worker == "spark":
        spark = fs.spark_session(args.master, driver_memory=args.driver_memory)
        out["session_seconds"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        res = fs.fit_log(spark, args.train, ids, progress=True)
        out["fit_seconds"] = time.perf_counter() - t1
        out.update(res.report())
        out["shuffle_bytes"] = fs.shuffle_bytes(spark)
        table = res.table
        spark.stop()
    else:
        import pyarrow.parquet as pq

        tab = pq.read_table(args.train)
        users = tab["profile_id"].to_numpy()
        items = tab["item_id"].to_numpy()
        ts = tab["timestamp"].to_numpy()
        del tab
        out["read_seconds"] = time.perf_counter() - t0
        table, lam = fs.in_process_table(users, items, ts, ids)
        out["fit_seconds"] = time.perf_counter() - t0
        out["lambda"] = lam
    out["wall_seconds"] = time.perf_counter() - t0
    np.savez(args.table_out, neighbours=table.neighbours, weights=table.weights,
             popularity=table.popularity)
    Path(args.result_out).write_text(json.dumps(out, default=float))


def _tree_sample(pid: int, peaks: dict, cpu: dict) -> int:
    """RSS of the tree now; updates each process's ``VmHWM`` and CPU seconds seen so far."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for pr in procs:
        try:
            with open(f"/proc/{pr.pid}/status") as fh:
                st = dict(line.split(":", 1) for line in fh if ":" in line)
            rss = int(st["VmRSS"].split()[0]) * 1024
            hwm = int(st["VmHWM"].split()[0]) * 1024
            t = pr.cpu_times()
        except (OSError, KeyError, ValueError, psutil.Error):
            continue
        total += rss
        peaks[pr.pid] = max(peaks.get(pr.pid, 0), hwm)
        cpu[pr.pid] = t.user + t.system
    return total


def run_engine(engine: str, point: dict, args) -> dict:
    """One engine's fit in a child process tree, sampled every 0.2 s, in its own cgroup.

    Figures: wall time; CPU seconds (user + sys) of every process of the tree (the last sample
    of each, plus the root's exact rusage); the largest RSS sum at one sample, the sum of each
    process's ``VmHWM``, and the cgroup's peak charge (``memory.max_usage_in_bytes``: RSS plus
    the page cache the run touched) under a ``--memory-limit-mb`` limit.
    """
    from device.cgroup import Cgroup, CgroupUnavailable

    d = Path(point["dir"])
    table_out, result_out = d / f"table-{engine}.npz", d / f"result-{engine}.json"
    cmd = [sys.executable, __file__, "--worker", engine, "--train", str(d / "train.parquet"),
           "--n-items", str(point["n_items"]), "--table-out", str(table_out),
           "--result-out", str(result_out), "--master", args.master,
           "--driver-memory", args.driver_memory]
    if args.reuse and result_out.is_file() and table_out.is_file():  # an earlier run's figures
        res = json.loads(result_out.read_text())
        z = np.load(table_out)
        res["_table"] = (z["neighbours"], z["weights"], z["popularity"])
        return res
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", TVREC_NO_PROGRESS="1")
    try:
        cg = Cgroup.create(f"fleet-{engine}-{point['n_events']}", memory_mb=args.memory_limit_mb,
                           cpu_quota=float(os.cpu_count() or 2), cpu=None)
    except CgroupUnavailable as why:
        print(f"   (no cgroup: {why}; peak from samples only)", flush=True)
        cg = None
    t0 = time.perf_counter()
    load0 = os.getloadavg()
    proc = subprocess.Popen(cmd, env=env, preexec_fn=cg.enter_preexec if cg else None)
    peaks: dict = {}
    cpu: dict = {}
    best = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            best[0] = max(best[0], _tree_sample(proc.pid, peaks, cpu))
            stop.wait(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    stop.set()
    th.join()
    if cg:  # the JVM's last processes may outlive the root by a moment
        for _ in range(100):
            if not any((d / "cgroup.procs").read_text().strip() for d in cg.dirs.values()):
                break
            time.sleep(0.1)
    cg_stats = cg.stats() if cg else {}
    if cg:
        cg.remove()
    if proc.returncode != 0:
        raise SystemExit(f"{engine} worker failed (exit {proc.returncode}; cgroup {cg_stats})")
    res = json.loads(result_out.read_text())
    res["process_wall_seconds"] = time.perf_counter() - t0
    cpu[proc.pid] = ru.ru_utime + ru.ru_stime  # the root exactly (its own, waited-for children)
    res["cpu_seconds"] = sum(cpu.values())
    res["peak_tree_rss_mb"] = best[0] / 2**20
    res["sum_vmhwm_mb"] = sum(peaks.values()) / 2**20
    res["cgroup_peak_mb"] = cg_stats.get("memory_peak_mb")
    res["cgroup_oom_kills"] = cg_stats.get("oom_kills")
    res["loadavg_before"] = load0
    res["loadavg_after"] = os.getloadavg()
    result_out.write_text(json.dumps(res, default=float))
    z = np.load(table_out)
    res["_table"] = (z["neighbours"], z["weights"], z["popularity"])
    return res


# ------------------------------------------------------------------------------ eval


def bm25_table(train_profile, train_item, n_items: int, K: int = 64):
    """BM25 K=64 as models.cowatch.BM25Model computes it, in row blocks (bounded memory)."""
    import scipy.sparse as sp

    from models.cowatch import BM25Model
    from models.sparse_ease import keep_top_k

    m = BM25Model(K=K)
    _, u = np.unique(train_profile, return_inverse=True)
    X = sp.csr_matrix((np.ones(len(u)), (u, train_item)), shape=(u.max() + 1, n_items))
    X.data[:] = 1.0
    items_users = X.T.tocsr()
    coo = items_users.tocoo()
    idf = np.log(n_items) - np.log1p(np.bincount(coo.col, minlength=items_users.shape[1]))
    row_len = np.asarray(items_users.sum(axis=1)).ravel()
    length_norm = (1.0 - m.B) + m.B * row_len / max(row_len.mean(), 1e-12)
    data = coo.data * (m.K1 + 1.0) / (m.K1 * length_norm[coo.row] + coo.data) * idf[coo.col]
    W = sp.csr_matrix((data, (coo.row, coo.col)), shape=items_users.shape)
    WT = W.T.tocsr()
    nb = np.full((n_items, K), -1, dtype=np.int32)
    wt = np.zeros((n_items, K), dtype=np.float32)
    for lo in range(0, n_items, 2048):
        C = (W[lo:min(n_items, lo + 2048)] @ WT).tocoo()
        s, d, v = C.row.astype(np.int64) + lo, C.col.astype(np.int64), C.data
        off = s != d
        s, d, v = s[off], d[off], v[off]
        keep = keep_top_k(s, d, v, K)
        s, d, v = s[keep], d[keep], v[keep]
        order = np.lexsort((d, -v, s))
        s, d, v = s[order], d[order], v[order]
        rank = np.arange(len(s)) - np.searchsorted(s, s)
        nb[s, rank], wt[s, rank] = d, v
    return nb, wt


def ndcg_tables(point: dict, tables: dict, n_users: int, seed: int = 0) -> dict:
    """NDCG@10 of each table (device scorer) on a seeded sample of held-out profiles."""
    from device.cf import ItemIndex, NeighbourTable, recommend
    from models.evaluate import ndcg_at_k
    from models.synth_logs import item_ids

    z = np.load(Path(point["dir"]) / "held.npz")
    ids = item_ids(point["n_items"])
    tp, ti = z["train_profile"], z["train_item"]
    hp, hi = z["profile"], z["item"]
    users = np.unique(hp)
    rng = np.random.default_rng(seed)
    users = np.sort(rng.choice(users, size=min(n_users, len(users)), replace=False))
    t_order = np.argsort(tp, kind="stable")
    tp_s, ti_s = tp[t_order], ti[t_order]
    h_order = np.argsort(hp, kind="stable")
    hp_s, hi_s = hp[h_order], hi[h_order]
    out = {}
    for name, (nb, wt, pop) in tables.items():
        table = NeighbourTable(item_ids=ids.astype(object), neighbours=nb, weights=wt,
                               popularity=pop)
        index = ItemIndex(table.item_ids)  # once per table (building one is O(N))
        recs, rel = [], []
        for u in users:
            a, b = np.searchsorted(tp_s, [u, u + 1])
            hist = np.unique(ti_s[a:b])
            c, e = np.searchsorted(hp_s, [u, u + 1])
            truth = set(ids[np.setdiff1d(hi_s[c:e], hist)])
            if not truth:
                continue
            if name == "popularity":
                order = np.argsort(-pop, kind="stable")
                seen = set(hist.tolist())
                recs.append([ids[j] for j in order[: 10 + len(seen)] if j not in seen][:10])
            else:
                r = recommend(table, ids[hist], np.ones(len(hist)), n=10, index=index,
                              history_rows=hist, exclude_rows=hist)
                recs.append([x.item_id for x in r])
            rel.append(truth)
        out[name] = ndcg_at_k(recs, rel, 10)
    out["eval_users"] = len(rel)
    return out


# ------------------------------------------------------------------- CPU per stage


def stage_cpu(point: dict, n_blocks: int = 12, seed: int = 0) -> dict:
    """CPU seconds of the job's per-block stages, on a seeded sample of item blocks.

    Wall time on a machine shared by many busy processes measures the others; the CPU time
    of this process (``time.process_time``) does not. The Spark job runs exactly these
    functions in its tasks, so ``cpu per block x blocks / executor cores`` is its solve time
    on a cluster (plus scheduling), and the driver's cap/collect figures size the driver.
    """
    import pyarrow.parquet as pq

    from models import fleet_spark as fs
    from models.cowatch import HISTORY_CAP, cap_histories
    from models.sparse_ease import choose_lambda, keep_top_k
    from models.synth_logs import item_ids

    ids = item_ids(point["n_items"])
    N = len(ids)
    tab = pq.read_table(Path(point["dir"]) / "train.parquet")
    c0 = time.process_time()
    import pandas as pd

    u, _ = pd.factorize(tab["profile_id"].to_numpy())
    i = pd.Index(ids).get_indexer(tab["item_id"].to_numpy())
    ts = tab["timestamp"].to_numpy()
    keep = cap_histories(u, i, ts, HISTORY_CAP)
    cap_cpu = time.process_time() - c0
    c0 = time.process_time()
    X = fs.Interactions(u[keep], i[keep], int(u.max()) + 1, N)
    matrix_cpu = time.process_time() - c0
    lam = choose_lambda(X.counts)
    rng = np.random.default_rng(seed)
    block = fs.ITEMS_PER_BLOCK
    n_all = (N + block - 1) // block
    picks = np.sort(rng.choice(n_all, size=min(n_blocks, n_all), replace=False))
    fs.solve_supports_x(X, np.arange(8), np.arange(1, 9)[:, None], lam)  # compile the kernel
    gram = solve1 = prune = solve2 = 0.0
    nnz = 0
    for b in picks:
        lo, hi = int(b) * block, min(N, (int(b) + 1) * block)
        c0 = time.process_time()
        a, j, _, block_nnz = fs.candidate_block(X, lo, hi)
        c1 = time.process_time()
        # the block's forward candidates stand in for the united supports of the job
        t, sup = fs.driver_supports(a, j, np.zeros(len(a)), fs.DEFAULT_CANDIDATES)
        w = fs.solve_supports_x(X, t, sup, lam)
        c2 = time.process_time()
        # pruning sees whole rows in the job; here the block's own triplets stand in for them
        v = sup >= 0
        tg = np.broadcast_to(t[:, None], sup.shape)
        k = keep_top_k(sup[v], tg[v], w[v], 64)
        c3 = time.process_time()
        fs.resolve_block(X, sup[v][k].astype(np.int64), tg[v][k].astype(np.int64), lam)
        c4 = time.process_time()
        gram, solve1, prune, solve2 = gram + c1 - c0, solve1 + c2 - c1, prune + c3 - c2, solve2 + c4 - c3
        nnz += block_nnz
    f = n_all / len(picks)
    return {"kept_events": int(keep.sum()), "n_profiles": int(u.max()) + 1,
            "broadcast_bytes": int(X.indices.nbytes + X.r_indices.nbytes + X.indptr.nbytes
                                   + X.r_indptr.nbytes),
            "cpu_seconds": {"cap (driver-side twin)": cap_cpu, "matrix": matrix_cpu,
                            "gram+candidates": gram * f, "solve": solve1 * f,
                            "prune": prune * f, "resolve": solve2 * f},
            "gram_nnz_estimate": int(nnz * f / 2), "blocks_sampled": int(len(picks)),
            "lambda": lam}


# ------------------------------------------------------------------------------ main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--events", default="1000000,5000000,20000000")
    ap.add_argument("--engines", default="local,spark")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--driver-memory", default="3g")
    ap.add_argument("--memory-limit-mb", type=float, default=12288,
                    help="cgroup memory limit of each engine's process tree (the target is 8 GB)")
    ap.add_argument("--eval-users", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cpu-only", action="store_true",
                    help="only CPU seconds per stage on sampled blocks (robust to machine load)")
    ap.add_argument("--work", default="/tmp/tvrec-fleet-bench")
    ap.add_argument("--no-reuse", dest="reuse", action="store_false",
                    help="re-run engines whose table and figures are already in --work")
    ap.add_argument("--out", default=str(RESULTS / "fleet_scale.json"))
    ap.add_argument("--merge", action="store_true",
                    help="add this run's points (and engines) to those already in --out")
    ap.add_argument("--plot", default=str(RESULTS / "fleet_scale.png"))
    # worker mode (internal)
    ap.add_argument("--worker", choices=["local", "spark"])
    ap.add_argument("--train")
    ap.add_argument("--n-items", type=int)
    ap.add_argument("--table-out")
    ap.add_argument("--result-out")
    args = ap.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    if args.cpu_only:
        rows = []
        for n_events in [int(x) for x in args.events.split(",")]:
            point = make_point(Path(args.work), args.items, n_events, args.seed)
            c = stage_cpu(point, seed=args.seed)
            rows.append({**point, **c, "loadavg": os.getloadavg()})
            cs = c["cpu_seconds"]
            print(f"{n_events:>11,d} events: kept {c['kept_events']:,}, Gram ~{c['gram_nnz_estimate']:,} "
                  f"pairs, broadcast {c['broadcast_bytes'] / 2**20:.0f} MB; CPU s: "
                  + ", ".join(f"{k} {v:.1f}" for k, v in cs.items())
                  + f"; per M events {sum(cs.values()) / n_events * 1e6:.1f}", flush=True)
        Path(args.out).write_text(json.dumps({"items": args.items, "points": rows,
                                              "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                        time.gmtime())},
                                             indent=1, default=float))
        return 0

    points = []
    for n_events in [int(x) for x in args.events.split(",")]:
        load0 = os.getloadavg()
        point = make_point(Path(args.work), args.items, n_events, args.seed)
        print(f"== {args.items:,} items, {n_events:,} events ({point['n_train']:,} train, "
              f"{point['n_held']:,} held out), load {load0[0]:.1f}", flush=True)
        tables, runs = {}, {}
        for engine in args.engines.split(","):
            r = run_engine(engine, point, args)
            tables[engine] = r.pop("_table")
            runs[engine] = r
            print(f"   {engine}: {r['process_wall_seconds']:.0f} s wall, "
                  f"{r.get('cpu_seconds', float('nan')):.0f} CPU s, peak tree RSS "
                  f"{r['peak_tree_rss_mb']:.0f} MB, cgroup peak {r.get('cgroup_peak_mb')} MB, "
                  f"load {r.get('loadavg_before', [0])[0]:.1f} -> "
                  f"{r.get('loadavg_after', [0])[0]:.1f}", flush=True)
        z = np.load(Path(point["dir"]) / "held.npz")
        t0 = time.perf_counter()
        nb, wt = bm25_table(z["train_profile"], z["train_item"], args.items)
        bm25_s = time.perf_counter() - t0
        pop = np.log1p(np.bincount(z["train_item"], minlength=args.items)).astype(np.float32)
        tables["bm25"] = (nb, wt, pop)
        tables["popularity"] = (nb, wt, pop)
        ndcg = ndcg_tables(point, tables, args.eval_users, args.seed)
        if "local" in runs and "spark" in runs:
            a, b = tables["local"][0], tables["spark"][0]
            same = float(np.mean([set(x[x >= 0]) == set(y[y >= 0]) for x, y in zip(a, b)]))
        else:
            same = None
        points.append({**point, "runs": runs, "ndcg@10": ndcg, "bm25_fit_seconds": bm25_s,
                       "rows_identical_local_vs_spark": same,
                       "loadavg_before": load0, "loadavg_after": os.getloadavg()})
        print(f"   NDCG@10 {json.dumps({k: round(v, 4) for k, v in ndcg.items()})}", flush=True)
        write_results(args, points)  # after every point: a long run's finished points survive
    print_table(json.loads(Path(args.out).read_text()))
    return 0


def write_results(args, points: list) -> None:
    if args.merge and Path(args.out).is_file():  # points of an earlier run, by size
        old = {p["n_events"]: p for p in json.loads(Path(args.out).read_text())["points"]}
        for p in points:
            if p["n_events"] in old:
                q = old[p["n_events"]]
                p = {**q, **p, "runs": {**q["runs"], **p["runs"]},
                     "ndcg@10": {**q["ndcg@10"], **p["ndcg@10"]}}
            old[p["n_events"]] = p
        points = [old[k] for k in sorted(old)]
    result = {"items": args.items, "master": args.master, "driver_memory": args.driver_memory,
              "memory_limit_mb": args.memory_limit_mb, "cores": os.cpu_count(),
              "command": " ".join(sys.argv), "points": points,
              "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1, default=float))
    plot(result, args.plot)


def print_table(result: dict) -> None:
    print(f"\n{'events':>11s} {'engine':>6s} {'wall s':>7s} {'CPU s':>7s} {'CPU s/M':>7s} "
          f"{'tree MB':>8s} {'cgroup MB':>9s} {'shuffle MB':>10s} {'NDCG@10':>8s} {'BM25':>6s} "
          f"{'pop':>6s} {'load':>5s}")
    for p in result["points"]:
        for eng, r in p["runs"].items():
            sh = r.get("shuffle_bytes")
            cg = r.get("cgroup_peak_mb")
            print(f"{p['n_events']:>11,d} {eng:>6s} {r['process_wall_seconds']:7.0f} "
                  f"{r.get('cpu_seconds', float('nan')):7.0f} "
                  f"{r.get('cpu_seconds', float('nan')) / p['n_events'] * 1e6:7.1f} "
                  f"{r['peak_tree_rss_mb']:8.0f} {(cg if cg is not None else float('nan')):9.0f} "
                  f"{(sh / 2**20 if sh is not None else 0):10.1f} "
                  f"{p['ndcg@10'].get(eng, float('nan')):8.4f} {p['ndcg@10']['bm25']:6.4f} "
                  f"{p['ndcg@10']['popularity']:6.4f} "
                  f"{r.get('loadavg_before', p['loadavg_before'])[0]:5.1f}")


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    engines = sorted({e for p in result["points"] for e in p["runs"]})
    for eng in engines:
        pts = [p for p in result["points"] if eng in p["runs"]]
        ev = [p["n_events"] / 1e6 for p in pts]
        c = f"C{engines.index(eng)}"
        a1.plot(ev, [p["runs"][eng]["process_wall_seconds"] / 60 for p in pts], "o-", color=c,
                label=f"{eng} wall")
        a1.plot(ev, [p["runs"][eng].get("cpu_seconds", np.nan) / 60 for p in pts], "s--",
                color=c, label=f"{eng} CPU (user+sys)")
        a2.plot(ev, [(p["runs"][eng].get("cgroup_peak_mb") or np.nan) / 1024 for p in pts],
                "o-", color=c, label=f"{eng} cgroup peak")
    a1.set(xlabel="events (millions)", ylabel="minutes",
           title=f"fit time, {result['items']:,} items, {result['master']}")
    a2.set(xlabel="events (millions)", ylabel="peak memory of the process tree (GB)",
           title="memory (cgroup peak: driver, JVM, Python workers)")
    a2.axhline(8, color="grey", ls=":", label="8 GB target")
    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
