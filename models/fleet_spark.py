"""Fleet learning on Apache Spark: the device's neighbour table from a whole fleet's watch logs.

The in-process learner (:mod:`models.sparse_ease`, ``SparseEASEModel``) split into Spark stages
so that it runs where a platform's logs already live (local mode on a laptop or in CI; a
standalone, YARN or Kubernetes cluster in production). Every step of the algorithm is the
learner's own public function, called by the executors on their blocks of items, so the two
engines give the same table by construction (bit for bit on ML-100K, a CI test):

1. **read** the log (watch-event CSV, MovieLens ``ratings.csv`` / ``u.data``, or Parquet with
   the same columns; any Hadoop path: ``s3a://``, ``gs://``, ``abfss://``, ``hdfs://`` or local);
2. **cap** each profile's history with the in-process rule (``models.cowatch.cap_histories``:
   distinct items, the most recent ``H`` kept) -- a Spark window keeping exactly its events;
3. **broadcast** the binary profiles x items matrix (CSC + CSR: 4 bytes per kept event each
   way) to the executors; λ by the learner's ``choose_lambda`` from the item counts;
4. **candidates**: per block of 512 items, its Gram rows ``X[:, block]^T X`` computed from the
   broadcast matrix (the distributed co-count table, never gathered whole) and the learner's
   ``candidate_support``; the driver unites forward and reverse candidates with the learner's
   ``reverse_candidates`` / ``union_supports`` (N x C integers);
5. **solve**: each item's ridge regression on its support, the learner's ``solve_systems`` on
   blocks ``G[S, S]`` built by a compiled kernel from the broadcast matrix (joining a Gram block
   per item would shuffle ~|S|^2 rows per item: 1.6 billion at 100k items, |S| = 128); then
   each row's K best positive weights at the shipped precision (``keep_top_k`` on
   ``shipped_weights``, grouped by row: one shuffle);
6. **resolve** each target on the rows that kept it (grouped by target: one shuffle), and the
   **table**: the bundle's ``[N, K]`` arrays (:class:`device.cf.NeighbourTable`) on the driver.

Usage (library)::

    from models.fleet_spark import spark_session, fit_log
    spark = spark_session("local[2]")
    result = fit_log(spark, "s3a://logs/events/*.parquet", item_ids)
    result.table          # NeighbourTable: neighbours/weights [N, K], popularity, item_ids
    result.stage_seconds  # {"read": ..., "cap": ..., "broadcast": ..., "candidates": ..., ...}

Usage (cluster)::

    spark-submit --master yarn models/fleet_spark.py --log s3a://logs/events/ \\
        --items s3a://logs/items.csv --out /data/bundle-table

which writes ``table.npz`` (+ ``report.json``); ``tvrec bundle build ... --engine spark
--spark-master URL`` runs the same job and writes a whole bundle.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

if __name__ == "__main__":  # spark-submit runs this file as a script: the repository on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from device.cf import NeighbourTable  # noqa: E402
from device.errors import DataFormatError  # noqa: E402
from models.cowatch import DEFAULT_K, HISTORY_CAP  # noqa: E402
from models.fleet_blocks import (  # noqa: E402,F401 -- the per-block steps, re-exported
    ITEMS_PER_BLOCK, Interactions, candidate_block, driver_supports, one_blas_thread,
    resolve_block, solve_supports_x, table_from_weights)
from models.sparse_ease import (  # noqa: E402
    DEFAULT_CANDIDATES, choose_lambda, shipped_weights)

# ---------------------------------------------------------------------------- session


def spark_session(master: str = "local[*]", app_name: str = "tvrec-fleet",
                  driver_memory: str | None = None, conf: dict | None = None):
    """Start (or reuse) a Spark session set up for the job.

    The executors' Python is this interpreter (``PYSPARK_PYTHON``), with one BLAS thread each
    (``spark.executorEnv.OPENBLAS_NUM_THREADS=1``: a 128x128 solve takes 0.18 ms with one
    thread and 2.9 ms with OpenBLAS's default pool fighting the other executors).
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if master.startswith("local"):  # local mode talks to itself only: bind to the loopback
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    b = (SparkSession.builder.master(master).appName(app_name)
         .config("spark.executorEnv.OPENBLAS_NUM_THREADS", "1")
         .config("spark.executorEnv.OMP_NUM_THREADS", "1")
         .config("spark.executorEnv.PYSPARK_PYTHON", os.environ["PYSPARK_PYTHON"])
         .config("spark.sql.execution.arrow.pyspark.enabled", "true")
         .config("spark.sql.adaptive.enabled", "true")
         .config("spark.ui.showConsoleProgress", "false")
         .config("spark.sql.session.timeZone", "UTC")
         .config("spark.driver.maxResultSize", "4g"))
    if master.startswith("local"):
        b = b.config("spark.sql.shuffle.partitions", "8")
        b = b.config("spark.driver.memory", driver_memory or "3g")
    elif driver_memory:
        b = b.config("spark.driver.memory", driver_memory)
    for k, v in (conf or {}).items():
        b = b.config(k, v)
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


# ---------------------------------------------------------------------------- read


def _first_line(spark, path: str) -> str:
    rows = spark.read.text(path).limit(1).collect()
    if not rows:
        raise DataFormatError(f"{path}: empty log")
    return rows[0][0]


def read_log(spark, path: str):
    """The log as a DataFrame ``profile_id string, item_id string, timestamp double``.

    Formats are told apart from the content (the header or the field separator), as the
    in-process readers do: the watch-event CSV ``profile_id,item_id,timestamp[,completion,
    liked]``, MovieLens ``ratings.csv`` (``userId,movieId,rating,timestamp``), ML-100K
    ``u.data`` (tab-separated, no header), or Parquet (``*.parquet`` files or folders) with
    either pair of column names. Rows with an empty id or a non-numeric timestamp are a
    :class:`DataFormatError` naming the file, the count and the first such row.
    """
    from pyspark.sql import functions as F

    if path.rstrip("/").endswith(".parquet") or _is_parquet_dir(spark, path):
        df = spark.read.parquet(path)
        cols = {c.lower(): c for c in df.columns}
        if {"profile_id", "item_id", "timestamp"} <= set(cols):
            p, i = cols["profile_id"], cols["item_id"]
        elif {"userid", "movieid", "timestamp"} <= set(cols):
            p, i = cols["userid"], cols["movieid"]
        else:
            raise DataFormatError(f"{path}: Parquet log needs columns profile_id,item_id,timestamp "
                                  f"(or userId,movieId,timestamp); has {','.join(df.columns)}")
        raw = df.select(F.col(p).cast("string").alias("profile_id"),
                        F.col(i).cast("string").alias("item_id"),
                        F.col(cols["timestamp"]).cast("string").alias("ts_raw"),
                        *[F.col(cols[c]).cast("string").alias(c)
                          for c in ("completion", "liked") if c in cols])
    else:
        head = _first_line(spark, path)
        low = head.strip().lower().replace(" ", "")
        if low.startswith("profile_id,item_id,timestamp"):
            df = spark.read.option("header", True).option("inferSchema", False).csv(path)
            raw = df.select(F.col("profile_id"), F.col("item_id"), F.col("timestamp").alias("ts_raw"),
                            *[F.col(c) for c in ("completion", "liked") if c in df.columns])
        elif low.startswith("userid,movieid,rating,timestamp"):
            df = spark.read.option("header", True).option("inferSchema", False).csv(path)
            c = df.columns
            raw = df.select(F.col(c[0]).alias("profile_id"), F.col(c[1]).alias("item_id"),
                            F.col(c[3]).alias("ts_raw"))
        elif "\t" in head and len(head.split("\t")) == 4:
            df = spark.read.option("sep", "\t").option("header", False).csv(path)
            raw = df.select(F.col("_c0").alias("profile_id"), F.col("_c1").alias("item_id"),
                            F.col("_c3").alias("ts_raw"))
        else:
            raise DataFormatError(
                f"{path}:1: not a watch log (want a header profile_id,item_id,timestamp[,...], "
                f"userId,movieId,rating,timestamp, or tab-separated u.data): {head[:60]!r}")
    # unix seconds, or ISO 8601 (read in UTC, as the in-process reader does)
    ts = F.coalesce(F.expr("try_cast(ts_raw AS DOUBLE)"),
                    F.expr("cast(try_to_timestamp(ts_raw) AS DOUBLE)"))
    opt = {c: (F.expr(f"try_cast(nullif(trim({c}), '') AS DOUBLE)") if c in raw.columns else None)
           for c in ("completion", "liked")}
    out = raw.select(
        F.trim("profile_id").alias("profile_id"), F.trim("item_id").alias("item_id"),
        ts.alias("timestamp"), "ts_raw",
        # empty cell -> the reader's default (completion 1, liked 0); garbage -> NaN (malformed)
        (F.when(F.col("completion").isNull() | (F.trim("completion") == ""), 1.0)
         .otherwise(F.coalesce(opt["completion"], F.lit(float("nan"))))
         if opt["completion"] is not None else F.lit(1.0)).alias("completion"),
        (F.when(F.col("liked").isNull() | (F.trim("liked") == ""), 0.0)
         .otherwise(F.coalesce(opt["liked"], F.lit(float("nan"))))
         if opt["liked"] is not None else F.lit(0.0)).alias("liked"))
    return out, path


def _is_parquet_dir(spark, path: str) -> bool:
    try:
        jvm = spark.sparkContext._jvm
        hpath = jvm.org.apache.hadoop.fs.Path(path)
        fs = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
        if not fs.getFileStatus(hpath).isDirectory():
            return False
        names = [s.getPath().getName() for s in fs.listStatus(hpath)]
        return any(n.endswith(".parquet") for n in names)
    except Exception:  # noqa: BLE001 -- not there / not a dir: the text reader will say so
        return False


def _raise_bad_rows(bad, n: int, path: str) -> None:
    r = bad.limit(1).collect()[0].asDict()
    raise DataFormatError(
        f"{path}: {n} malformed row(s) (empty id, timestamp not a number or ISO time, completion "
        f"outside 0..1 or liked not -1/0/1), first: profile_id={r['profile_id']!r} "
        f"item_id={r['item_id']!r} timestamp={r.get('ts_raw', r['timestamp'])!r}")


# ---------------------------------------------------------------------------- result


@dataclass
class FleetResult:
    """What the Spark job learned, with the figures a report needs."""

    table: NeighbourTable
    lambda_: float
    n_events: int
    n_kept: int
    n_profiles: int
    unknown_items: int
    gram_nnz: int
    spark_version: str
    stage_seconds: dict = field(default_factory=dict)
    history_cap: int | None = None

    def report(self) -> dict:
        return {
            "engine": "spark",
            "spark_version": self.spark_version,
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
            "lambda": self.lambda_,
            "n_events": self.n_events,
            "n_kept_events": self.n_kept,
            "n_profiles": self.n_profiles,
            "unknown_items": self.unknown_items,
            "gram_nnz": self.gram_nnz,
            "history_cap": self.history_cap,
        }


# ------------------------------------------------------------------------- Spark job

class _Stages:
    """Wall time per named stage, with one progress line each on stderr."""

    def __init__(self, progress: bool):
        self.seconds: dict[str, float] = {}
        self.progress = progress
        self._t = time.perf_counter()

    def done(self, name: str, what: str = "") -> None:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._t
        self._t = now
        if self.progress:
            print(f"[spark] {name:<11s} {self.seconds[name]:7.1f} s  {what}", file=sys.stderr,
                  flush=True)


def ordered_item_ids(ids) -> np.ndarray:
    """Unique ids in the evaluation's order (numeric when all are integers)."""
    from models.evaluate import _ordered_ids

    return _ordered_ids(np.asarray(ids))


def capped_events(spark, events, item_ids, history_cap: int | None = HISTORY_CAP,
                  source: str = "log"):
    """The kept events: ``(profile_id, i)`` after the history cap, and the counts on the way.

    Returns ``(kept DataFrame[profile_id, i], stats dict)``; stats has ``n_events`` (rows for
    catalog items), ``unknown_items`` (rows for items not in ``item_ids``).
    """
    import pandas as pd
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    index = spark.createDataFrame(pd.DataFrame({
        "item_id": np.asarray(item_ids).astype(str),
        "i": np.arange(len(item_ids), dtype=np.int32)}))
    comp = F.col("completion") if "completion" in events.columns else F.lit(1.0)
    liked = F.col("liked") if "liked" in events.columns else F.lit(0.0)
    bad = (F.col("profile_id").isNull() | (F.col("profile_id") == "") | F.col("item_id").isNull()
           | (F.col("item_id") == "") | F.col("timestamp").isNull() | F.isnan("timestamp")
           | F.isnan(comp) | (comp < 0) | (comp > 1) | ~liked.isin(-1.0, 0.0, 1.0))
    joined = events.join(F.broadcast(index), "item_id", "left")
    # One pass over the log: distinct (profile, item) with its latest time, its largest
    # completion and the like/dislike of its latest event (models.readers.log_matrix), and counts.
    dedup = (joined.groupBy("profile_id", "i")
             .agg(F.max("timestamp").alias("ts"), F.count(F.lit(1)).alias("n"),
                  F.max(comp).alias("strength"), F.max_by(liked, F.col("timestamp")).alias("last"),
                  F.sum(bad.cast("int")).alias("bad")))
    dedup = dedup.persist()
    tot = (dedup.groupBy(F.col("i").isNull().alias("unknown"))
           .agg(F.sum("n").alias("n"), F.sum("bad").alias("bad")).collect())
    stats = {"n_events": 0, "unknown_items": 0}
    n_bad = 0
    for r in tot:
        stats["unknown_items" if r["unknown"] else "n_events"] = int(r["n"])
        n_bad += int(r["bad"] or 0)
    if n_bad:
        dedup.unpersist()
        _raise_bad_rows(events.where(bad), n_bad, source)
    known = dedup.where(F.col("i").isNotNull())
    if history_cap is not None:
        w = Window.partitionBy("profile_id").orderBy(F.desc("ts"), F.asc("i"))
        known = known.withColumn("r", F.row_number().over(w)).where(F.col("r") <= history_cap)
    # after the cap, as in-process: a pair whose latest event is a dislike, or never started
    # (completion 0), is no evidence of co-watching
    known = known.where((F.col("strength") > 0) & (F.col("last") >= 0))
    return known.select("profile_id", "i"), dedup, stats


def fit_events(spark, events, item_ids, *, K: int = DEFAULT_K,
               history_cap: int | None = HISTORY_CAP,
               n_candidates: int = DEFAULT_CANDIDATES, lambda_: float | str = "auto",
               progress: bool = True, stages: _Stages | None = None,
               source: str = "log") -> FleetResult:
    """Learn the neighbour table from a DataFrame ``profile_id, item_id, timestamp``.

    ``item_ids`` fixes the table's rows (the catalog's order); log rows for other items are
    counted in ``unknown_items`` and left out.
    """
    import pandas as pd
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    st = stages or _Stages(progress)
    item_ids = np.asarray(item_ids).astype(str)
    N = len(item_ids)
    sc = spark.sparkContext

    # -- cap: distinct items per profile, the most recent H kept (one pass over the log)
    kept, dedup, stats = capped_events(spark, events, item_ids, history_cap, source)
    kept = kept.select(F.xxhash64("profile_id").alias("u"), F.col("i").cast("int").alias("i"))
    kept = kept.persist(StorageLevel.MEMORY_AND_DISK)
    n_kept = kept.count()
    dedup.unpersist()
    st.done("cap", f"{stats['n_events']:,} events, {n_kept:,} kept")

    # -- broadcast: the compressed interaction matrix, built once on the driver
    pdf = kept.toPandas()
    kept.unpersist()
    u_codes, uniques = pd.factorize(pdf["u"].to_numpy())
    n_users = len(uniques)
    i_arr = pdf["i"].to_numpy().astype(np.int64)
    del pdf, uniques
    X = Interactions(u_codes, i_arr, n_users, N)
    del u_codes, i_arr
    counts = X.counts
    lam = choose_lambda(counts) if lambda_ == "auto" else float(lambda_)
    bX = sc.broadcast(X)
    del X
    st.done("broadcast", f"{n_users:,} profiles, lambda {lam:.1f}")

    # -- gram + candidates: one task per block of target items, no shuffle. Each task
    # computes its Gram rows X[:, block]^T X from the broadcast matrix (the distributed
    # co-count table, never materialised whole) and picks candidates with the learner's
    # candidate_support; a row (-1, block, nnz) carries the block's stored Gram entries.
    block = ITEMS_PER_BLOCK
    n_blocks = (N + block - 1) // block

    def cands(batches):
        for b in batches:
            for blk in b["blk"].to_numpy():
                lo, hi = int(blk) * block, min(N, (int(blk) + 1) * block)
                a, j, s, nnz = candidate_block(bX.value, lo, hi, n_candidates)
                yield pd.DataFrame({"a": np.r_[a, -1].astype(np.int32),
                                    "j": np.r_[j, blk].astype(np.int32),
                                    "s": np.r_[s, float(nnz)]})

    blocks = spark.createDataFrame(pd.DataFrame({"blk": np.arange(n_blocks, dtype=np.int32)}))
    blocks = blocks.repartition(min(n_blocks, max(sc.defaultParallelism * 4, 1)), "blk")
    fwd = blocks.mapInPandas(cands, "a int, j int, s double").toPandas()
    meta = fwd["a"].to_numpy() < 0
    gram_nnz = int(fwd["s"].to_numpy()[meta].sum())  # whole Gram, diagonal included
    n_diag = int((counts > 0).sum())
    fwd = fwd[~meta]
    # the reverse candidates need every item's list: N x C integers, united on the driver with
    # the learner's reverse_candidates / union_supports
    targets, sups = driver_supports(fwd["a"].to_numpy().astype(np.int64),
                                    fwd["j"].to_numpy().astype(np.int64),
                                    fwd["s"].to_numpy(), n_candidates)
    del fwd
    bS = sc.broadcast((targets, sups))
    st.done("candidates", f"{(gram_nnz - n_diag) // 2:,} co-watched pairs, "
            f"{len(targets):,} targets")

    # -- first solves: each target's ridge regression on its support (no shuffle)
    def first(batches):
        for b in batches:
            for blk in b["blk"].to_numpy():
                t_all, s_all = bS.value
                lo, hi = np.searchsorted(t_all, [int(blk) * block, (int(blk) + 1) * block])
                t, sup = t_all[lo:hi], s_all[lo:hi]
                if not len(t):
                    continue
                w = solve_supports_x(bX.value, t, sup, lam)
                valid = sup >= 0
                tgt = np.broadcast_to(t[:, None], sup.shape)
                # the pruning ranks weights at the shipped precision (float32), so that is
                # all the shuffle needs to carry
                yield pd.DataFrame({"src": sup[valid].astype(np.int32),
                                    "dst": tgt[valid].astype(np.int32),
                                    "w": shipped_weights(w[valid]).astype(np.float32)})

    weights1 = blocks.mapInPandas(first, "src int, dst int, w float")

    # -- prune: each row's K best positive weights at the shipped precision, as the learner's
    # pruned_supports ranks them (its keep_top_k on whole rows; one shuffle by row block)
    def prune(pdf):
        from models.sparse_ease import keep_top_k

        r, t = pdf["src"].to_numpy(), pdf["dst"].to_numpy()
        keep = keep_top_k(r, t, shipped_weights(pdf["w"].to_numpy()), K)
        return pd.DataFrame({"src": r[keep], "dst": t[keep]})

    support = (weights1.groupBy((F.col("src") / block).cast("int").alias("b"))
               .applyInPandas(prune, "src int, dst int")).persist(StorageLevel.MEMORY_AND_DISK)
    n_support = support.count()
    st.done("solve", f"{n_support:,} kept")

    # -- re-solve each target on the rows that kept it (one shuffle by target block)
    def resolve(pdf):
        r, t, w = resolve_block(bX.value, pdf["src"].to_numpy().astype(np.int64),
                                pdf["dst"].to_numpy().astype(np.int64), lam)
        return pd.DataFrame({"src": r.astype(np.int32), "dst": t.astype(np.int32), "w": w})

    final = (support.groupBy((F.col("dst") / block).cast("int").alias("b"))
             .applyInPandas(resolve, "src int, dst int, w double"))
    out = final.toPandas()
    support.unpersist()
    st.done("resolve", f"{len(out):,} weights")

    table = table_from_weights(out["src"].to_numpy().astype(np.int64),
                               out["dst"].to_numpy().astype(np.int64),
                               out["w"].to_numpy(), item_ids, counts, K)
    for bc in (bX, bS):
        bc.destroy()
    st.done("table")
    return FleetResult(table=table, lambda_=lam, n_events=stats["n_events"], n_kept=int(n_kept),
                       n_profiles=int(n_users), unknown_items=stats["unknown_items"],
                       gram_nnz=(gram_nnz - n_diag) // 2, spark_version=spark.version,
                       stage_seconds=dict(st.seconds), history_cap=history_cap)


def fit_log(spark, path: str, item_ids=None, *, progress: bool = True, **kw) -> FleetResult:
    """Read a log (any Hadoop path) and learn the table; ``item_ids`` default: the log's items."""
    st = _Stages(progress)
    events, path = read_log(spark, path)
    if item_ids is None:
        item_ids = ordered_item_ids(
            [r[0] for r in events.select("item_id").distinct().collect()])
    st.done("read")
    return fit_events(spark, events, item_ids, progress=progress, stages=st, source=path, **kw)


# ------------------------------------------------------------ the same job, in-process


def in_process_table(users, items, timestamps, item_ids, *, K: int = DEFAULT_K,
                     history_cap: int | None = HISTORY_CAP) -> tuple[NeighbourTable, float]:
    """The in-process learner on the same log, for side-by-side checks and benchmarks.

    ``models.cowatch.cap_histories`` (item codes = positions in ``item_ids``, as the Spark job
    uses), the binary users x items matrix, ``SparseEASEModel(K).fit`` with one BLAS thread
    (as the executors solve, :func:`one_blas_thread`), ``to_table``. Returns ``(table, lambda)``.
    """
    import pandas as pd
    import scipy.sparse as sp

    from models.cowatch import SparseEASEModel, cap_histories

    item_ids = np.asarray(item_ids).astype(str)
    codes = pd.Index(item_ids).get_indexer(np.asarray(items).astype(str))
    ok = codes >= 0
    u, _ = pd.factorize(np.asarray(users)[ok])
    i, ts = codes[ok], np.asarray(timestamps, dtype=np.float64)[ok]
    if history_cap is not None:
        keep = cap_histories(u, i, ts, history_cap)
        u, i = u[keep], i[keep]
    X = sp.csr_matrix((np.ones(len(u)), (u, i)), shape=(int(u.max()) + 1, len(item_ids)))
    X.data[:] = 1.0
    with one_blas_thread():
        model = SparseEASEModel(K=K).fit(X)
    return model.to_table(item_ids), float(model.lambda_used_)


# ------------------------------------------------------------------- tvrec's commands


class SparseEASEOnSpark:
    """What ``tvrec bundle build --engine spark`` reports as its CF model (the Spark run)."""

    def __init__(self, result: FleetResult):
        self.result = result
        self.lambda_used_ = result.lambda_


def pipeline_learn(spark, interactions_path: str, items_path: str, *, progress: bool = True):
    """The ``learn`` step of :func:`export.pipeline.build_bundle`, run as the Spark job.

    The job reads the log itself (any Hadoop path) with the catalog's ids as the table's rows,
    applying the same history cap and the same like/completion rule as the in-process matrix.
    The returned callable keeps the :class:`FleetResult` in ``learn.result`` for the report.
    """
    def learn(X, warm, k):
        from export.pipeline import Learned
        from models.readers import read_items

        ids = read_items(items_path).ids
        t0 = time.perf_counter()
        res = fit_log(spark, interactions_path, ids, K=k, progress=progress)
        learn.result = res
        t = res.table
        pop = np.where(warm, t.popularity, 0.0).astype(np.float32)
        return Learned(t.neighbours, t.weights, pop, SparseEASEOnSpark(res),
                       time.perf_counter() - t0)

    learn.result = None
    return learn


def spark_report(result: FleetResult, report: dict) -> dict:
    """``bundle build`` / ``eval cf`` report keys of a Spark run (engine, version, stages)."""
    report = dict(report)
    report["engine"] = "spark"
    report["spark_version"] = result.spark_version
    stages = dict(report.get("stage_seconds") or {})
    stages.update({f"spark.{k}": round(v, 3) for k, v in result.stage_seconds.items()})
    report["stage_seconds"] = stages
    report["spark"] = result.report()
    return report


def evaluate_device_cf_spark(spark, ratings, *, k: int = 10, seed: int = 42) -> dict:
    """:func:`models.evaluate.evaluate_device_cf` with the table learned by the Spark job.

    Same protocol and split; the job gets the training ratings as events (with their times)
    and, like the in-process protocol, no history cap.
    """
    import pandas as pd

    from models.evaluate import evaluate_table, random_split

    split = random_split(ratings.users, ratings.items, seed=seed)
    uidx = pd.Index(split.user_ids).get_indexer(np.asarray(ratings.users).astype(str))
    iidx = pd.Index(split.item_ids).get_indexer(np.asarray(ratings.items).astype(str))
    train = np.asarray(split.train[uidx, iidx]).ravel() > 0
    events = spark.createDataFrame(pd.DataFrame({
        "profile_id": np.asarray(ratings.users).astype(str)[train],
        "item_id": np.asarray(ratings.items).astype(str)[train],
        "timestamp": np.asarray(ratings.timestamps, dtype=np.float64)[train]}))
    t0 = time.perf_counter()
    res = fit_events(spark, events, split.item_ids, history_cap=None)
    fit_seconds = time.perf_counter() - t0
    out = evaluate_table(res.table, split, k)
    out.update(model="SparseEASEModel", neighbours_per_item=res.table.k, fit_seconds=fit_seconds,
               k=k, seed=seed, users=int(split.train.shape[0]), items=int(split.train.shape[1]),
               **{"lambda": res.lambda_})
    return spark_report(res, out)


# ---------------------------------------------------------------- spark-submit entry


def _read_item_ids(spark, path: str) -> np.ndarray:
    """Item ids of a catalog CSV (``id`` or ``movieId`` column), any Hadoop path."""
    df = spark.read.option("header", True).csv(path)
    cols = {c.lower(): c for c in df.columns}
    col = cols.get("id") or cols.get("movieid") or cols.get("item_id")
    if col is None:
        raise DataFormatError(f"{path}: catalog CSV needs an id column (id, movieId or item_id)")
    ids = df.select(col).toPandas()[col].astype(str).str.strip().to_numpy()
    if len(set(ids)) != len(ids):
        raise DataFormatError(f"{path}: duplicate item ids")
    return ids  # file order, as the catalog reader keeps it


def main(argv: list[str] | None = None) -> int:
    """``spark-submit models/fleet_spark.py --log PATH [--items PATH] --out DIR``."""
    import argparse

    ap = argparse.ArgumentParser(
        prog="fleet_spark", description="Learn the device's neighbour table on Spark; writes "
        "DIR/table.npz (item_ids, neighbours, weights, popularity) and DIR/report.json.")
    ap.add_argument("--log", required=True, help="watch log: CSV or Parquet, any Hadoop path "
                    "(s3a://, gs://, abfss://, hdfs://, local)")
    ap.add_argument("--items", help="catalog CSV (id column) fixing the table's rows; default: "
                    "the log's items")
    ap.add_argument("--out", required=True, help="local folder for table.npz and report.json")
    ap.add_argument("--k", type=int, default=DEFAULT_K)
    ap.add_argument("--history-cap", type=int, default=HISTORY_CAP)
    ap.add_argument("--master", help="only outside spark-submit (e.g. local[4])")
    args = ap.parse_args(argv)
    try:
        spark = spark_session(args.master) if args.master else _submitted_session()
        ids = _read_item_ids(spark, args.items) if args.items else None
        res = fit_log(spark, args.log, ids, K=args.k, history_cap=args.history_cap)
    except DataFormatError as err:
        print(f"fleet_spark: {err}", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    t = res.table
    np.savez(os.path.join(args.out, "table.npz"), item_ids=t.item_ids.astype(str),
             neighbours=t.neighbours, weights=t.weights, popularity=t.popularity)
    rep = res.report()
    rep["shuffle_bytes"] = shuffle_bytes(spark)
    with open(os.path.join(args.out, "report.json"), "w", encoding="utf-8") as fh:
        json.dump(rep, fh, indent=1)
    print(json.dumps(rep, indent=1))
    return 0


def _submitted_session():
    """The session spark-submit configured (master, memory, ...), with the job's settings."""
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.appName("tvrec-fleet")
             .config("spark.executorEnv.OPENBLAS_NUM_THREADS", "1")
             .config("spark.sql.execution.arrow.pyspark.enabled", "true")
             .config("spark.sql.session.timeZone", "UTC").getOrCreate())
    spark.sparkContext.setLogLevel("WARN")
    return spark


def shuffle_bytes(spark) -> int | None:
    """Shuffle bytes written by this application so far (Spark's status REST API)."""
    import urllib.request

    sc = spark.sparkContext
    url = sc.uiWebUrl
    if not url:
        return None
    try:
        with urllib.request.urlopen(
                f"{url}/api/v1/applications/{sc.applicationId}/stages", timeout=10) as r:
            stages = json.load(r)
    except OSError:
        return None
    return int(sum(s.get("shuffleWriteBytes", 0) for s in stages))


def fits_in_memory_learn(available: int | None = None):
    """The in-process ``learn`` step, refusing (one line, naming ``--engine spark``) a log whose
    predicted Gram does not fit this machine's memory, instead of swapping or being killed."""
    from export.pipeline import learn_step

    def learn(X, warm, k):
        from models.sparse_ease import check_fit_memory

        check_fit_memory(X[:, np.flatnonzero(warm)], available)
        with one_blas_thread():  # as the Spark executors solve: same weights, bit for bit
            return learn_step(X, warm, k)

    return learn


if __name__ == "__main__":
    # executors import the same modules: install tvrec[fleet] on them or ship --py-files (README)
    sys.exit(main())
