"""The learner as a Spark job (real Spark, local mode): same table as in-process, same cap rule.

One Spark session for the whole module (it costs ~20 s to start here).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyspark")
pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

from device.errors import DataFormatError  # noqa: E402
from models import fleet_spark as fs  # noqa: E402

ML100K = Path(__file__).resolve().parents[2] / "shared/data/ml-100k/u.data"


@pytest.fixture(scope="module")
def spark():
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    s = fs.spark_session("local[2]", app_name="tvrec-tests", driver_memory="2g")
    yield s
    s.stop()


def _events_df(spark, users, items, ts):
    import pandas as pd

    return spark.createDataFrame(pd.DataFrame({
        "profile_id": np.asarray(users).astype(str), "item_id": np.asarray(items).astype(str),
        "timestamp": np.asarray(ts, dtype=np.float64)}))


def _compare(a, b):
    """Share of rows with identical neighbour sets, and the worst relative weight error."""
    same, worst = 0, 0.0
    for r in range(a.neighbours.shape[0]):
        ka, kb = a.neighbours[r] >= 0, b.neighbours[r] >= 0
        da = dict(zip(a.neighbours[r][ka].tolist(), a.weights[r][ka].tolist()))
        db = dict(zip(b.neighbours[r][kb].tolist(), b.weights[r][kb].tolist()))
        if set(da) == set(db):
            same += 1
            for j, w in da.items():
                worst = max(worst, abs(w - db[j]) / max(abs(db[j]), 1e-12))
    return same / a.neighbours.shape[0], worst


@pytest.mark.skipif(not ML100K.is_file(), reason="needs ../shared/data/ml-100k")
def test_ml100k_spark_table_equals_in_process(spark):
    from models.evaluate import random_split
    from models.movielens import load_ratings

    r = load_ratings(ML100K)
    split = random_split(r.users, r.items, seed=42)
    # the training rows of the protocol, with their timestamps
    uidx = {u: n for n, u in enumerate(split.user_ids)}
    iidx = {i: n for n, i in enumerate(split.item_ids)}
    rows = np.array([split.train[uidx[u], iidx[i]] > 0 for u, i in zip(r.users, r.items)])
    users, items, ts = r.users[rows], r.items[rows], r.timestamps[rows]

    # a cap of 200 distinct items cuts the 10% heaviest users: the rule is exercised too
    local, lam = fs.in_process_table(users, items, ts, split.item_ids, history_cap=200)
    res = fs.fit_events(spark, _events_df(spark, users, items, ts), split.item_ids,
                        history_cap=200, progress=False)
    assert res.n_kept < len(users)
    assert res.lambda_ == pytest.approx(lam, rel=0, abs=0)
    assert list(res.table.item_ids) == list(local.item_ids)
    share, worst = _compare(res.table, local)
    assert share >= 0.999, share
    assert worst <= 1e-4, worst
    np.testing.assert_allclose(res.table.popularity, local.popularity, rtol=1e-6)
    # it is a real model: most rows are full, the weights are not all equal
    assert (res.table.neighbours >= 0).sum(axis=1).mean() > 30
    assert res.n_events == len(users) and res.unknown_items == 0
    assert set(res.stage_seconds) >= {"cap", "broadcast", "candidates", "solve", "resolve", "table"}


def test_cap_rule_keeps_the_same_events_in_both_engines(spark):
    from models.cowatch import cap_histories

    rng = np.random.default_rng(3)
    n = 20_000
    users = rng.integers(0, 60, size=n)
    items = rng.integers(0, 400, size=n)
    ts = rng.integers(0, 50, size=n).astype(float)  # many ties in time and repeats of items
    item_ids = np.arange(400).astype(str)  # item code == the item's number
    for cap in (7, 40):
        kept, _, stats = fs.capped_events(spark, _events_df(spark, users, items, ts), item_ids, cap)
        got = {(int(r[0]), int(r[1])) for r in kept.collect()}
        mask = cap_histories(users, items, ts, cap)
        want = set(zip(users[mask].tolist(), items[mask].tolist()))
        assert got == want
        assert stats == {"n_events": n, "unknown_items": 0}
        assert max(np.bincount([u for u, _ in got])) == cap  # the heavy users were cut
    # hand-checked: newest first, ties by the smaller item code, repeats count once
    df = _events_df(spark, ["a", "a", "a", "a", "b", "b"], ["5", "3", "5", "9", "1", "x"],
                    [1.0, 2.0, 3.0, 2.0, 0.0, 9.0])
    kept, _, stats = fs.capped_events(spark, df, [str(k) for k in range(10)], 2)
    assert sorted((r[0], r[1]) for r in kept.collect()) == [("a", 3), ("a", 5), ("b", 1)]
    assert stats == {"n_events": 5, "unknown_items": 1}


def test_gram_block_kernel_equals_scipy():
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    u = rng.integers(0, 300, 4000)
    i = rng.integers(0, 120, 4000)
    X = fs.Interactions(u, i, 300, 120)
    B = sp.csr_matrix((np.ones(4000), (u, i)), shape=(300, 120))
    B.data[:] = 1
    G = (B.T @ B).toarray()
    S = np.array([7, 3, 99, 0, 55])
    np.testing.assert_array_equal(X.gram_block(S), G[np.ix_(S, S)])
    np.testing.assert_array_equal(X.gram_block(S), G[np.ix_(S, S)])  # the scratch is restored


def test_read_log_formats_and_errors(spark, tmp_path):
    watch = tmp_path / "events.csv"
    watch.write_text("profile_id,item_id,timestamp,completion,liked\nh1,a,10,0.5,1\nh1,b,11,1,\n"
                     "h2,a,12,0.9,0\n")
    udata = tmp_path / "u.data"
    udata.write_text("1\t10\t5\t881250949\n2\t10\t3\t881250950\n")
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("userId,movieId,rating,timestamp\n1,10,4.0,964982703\n")
    for path, n in ((watch, 3), (udata, 2), (ratings, 1)):
        df, _ = fs.read_log(spark, str(path))
        rows = df.collect()
        assert len(rows) == n and all(r["timestamp"] > 0 for r in rows)
    df, _ = fs.read_log(spark, str(watch))
    pq = tmp_path / "events.parquet"
    df.select("profile_id", "item_id", "timestamp").write.parquet(str(pq))
    back, _ = fs.read_log(spark, str(pq))
    assert sorted(r["item_id"] for r in back.collect()) == ["a", "a", "b"]

    bad = tmp_path / "bad.csv"
    bad.write_text("profile_id,item_id,timestamp\nh1,a,10\nh2,b,yesterday\n")
    df, src = fs.read_log(spark, str(bad))
    with pytest.raises(DataFormatError, match=r"bad.csv: 1 malformed row.*yesterday"):
        fs.fit_events(spark, df, ["a", "b"], progress=False, source=src)
    other = tmp_path / "other.txt"
    other.write_text("hello world\n")
    with pytest.raises(DataFormatError, match="not a watch log"):
        fs.read_log(spark, str(other))


def test_bundle_build_on_spark_equals_in_process(spark, tmp_path):
    """`tvrec bundle build --engine spark` on a synth-logs catalog: same table, report keys."""
    import json

    from device.bundle import open_bundle
    from tvrec.cli import main

    data = tmp_path / "data"
    assert main(["catalog", "synth-logs", "--items", "400", "--profiles", "300", "--events",
                 "12000", "--seed", "5", "--out", str(data)]) == 0
    # a dislike and a never-started view, which count for neither engine
    with open(data / "events.csv", "a", encoding="utf-8") as fh:
        fh.write("1,7,1767225700,0.0\n")
    reports = {}
    for engine in ("inprocess", "spark"):
        out, rep = tmp_path / engine, tmp_path / f"{engine}.json"
        argv = ["bundle", "build", "--items", str(data / "items.csv"), "--interactions",
                str(data / "events.csv"), "--out", str(out), "--json", str(rep),
                "--engine", engine]
        if engine == "spark":
            argv += ["--spark-master", "local[2]"]
        assert main(argv) == 0
        reports[engine] = json.loads(rep.read_text())
    a = open_bundle(reports["inprocess"]["bundle"], verify="full").table
    b = open_bundle(reports["spark"]["bundle"], verify="full").table
    share, worst = _compare(b, a)
    assert share >= 0.999 and worst <= 1e-4, (share, worst)
    r = reports["spark"]
    assert r["engine"] == "spark" and r["spark_version"].startswith("4.")
    assert {"spark.cap", "spark.solve", "spark.resolve", "learn", "write"} <= set(r["stage_seconds"])
    assert r["n_events"] == 12001 and reports["inprocess"]["engine"] == "inprocess"


def test_eval_cf_on_spark_matches_in_process(spark, tmp_path):
    import json

    from tvrec.cli import main

    rng = np.random.default_rng(7)
    lines = {(int(u), int(i)) for u, i in zip(rng.integers(1, 80, 3000), rng.integers(1, 150, 3000))}
    ratings = tmp_path / "u.data"
    ratings.write_text("".join(f"{u}\t{i}\t4\t{880000000 + n}\n" for n, (u, i) in enumerate(sorted(lines))))
    out = {}
    for engine in ("inprocess", "spark"):
        rep = tmp_path / f"{engine}.json"
        assert main(["eval", "cf", "--ratings", str(ratings), "--engine", engine,
                     "--spark-master", "local[2]", "--json", str(rep)]) == 0
        out[engine] = json.loads(rep.read_text())
    assert out["spark"]["engine"] == "spark" and "spark.solve" in out["spark"]["stage_seconds"]
    for key in ("ndcg@10", "precision@10", "recall@10", "map", "lambda"):
        assert out["spark"][key] == pytest.approx(out["inprocess"][key], rel=1e-9), key
