"""Metrics on hand-checked cases, the protocol's split, and `tvrec eval cf` end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from device.errors import DataFormatError
from models.evaluate import (
    catalog_coverage,
    f1_at_k,
    intra_list_diversity,
    map_at_k,
    ndcg_at_k,
    precision_at_k,
    random_split,
    recall_at_k,
    temporal_split,
)
from models.movielens import load_ratings

REC = [["a", "b", "c", "d"], ["x", "y", "z", "w"], ["q"]]
REL = [{"b", "d", "e"}, {"x"}, set()]  # the third user has no test items: skipped


def test_metrics_by_hand():
    assert precision_at_k(REC, REL, 4) == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert recall_at_k(REC, REL, 4) == pytest.approx((2 / 3 + 1 / 1) / 2)
    p, r = (2 / 4 + 1 / 4) / 2, (2 / 3 + 1) / 2
    assert f1_at_k(REC, REL, 4) == pytest.approx(2 * p * r / (p + r))
    d = 1 / np.log2(np.arange(2, 6))
    ndcg_1 = (d[1] + d[3]) / (d[0] + d[1] + d[2])  # hits at ranks 2 and 4; 3 relevant
    assert ndcg_at_k(REC, REL, 4) == pytest.approx((ndcg_1 + 1.0) / 2)
    map_1 = (1 / 2 + 2 / 4) / 3
    assert map_at_k(REC, REL, 4) == pytest.approx((map_1 + 1.0) / 2)
    assert catalog_coverage(REC, 20, 2) == pytest.approx(5 / 20)


def test_ndcg_ideal_uses_min_of_k_and_relevant():
    # 5 relevant, k=2, both hits: perfect.
    assert ndcg_at_k([["a", "b"]], [{"a", "b", "c", "d", "e"}], 2) == pytest.approx(1.0)


def test_intra_list_diversity():
    V = np.array([[1, 0], [0, 1], [1, 0]], dtype=float)
    assert intra_list_diversity([[0, 2]], V, 2) == pytest.approx(0.0)
    assert intra_list_diversity([[0, 1]], V, 2) == pytest.approx(1.0)
    assert intra_list_diversity([[0, 1, 2]], V, 3) == pytest.approx(2 / 3)


def test_random_split_is_per_user_and_seeded():
    users = np.repeat(["1", "2", "10"], [4, 8, 1])
    items = np.array([str(i) for i in range(13)])
    s1 = random_split(users, items, seed=7)
    s2 = random_split(users, items, seed=7)
    assert list(s1.user_ids) == ["1", "2", "10"]  # numeric order, not "1","10","2"
    np.testing.assert_array_equal(s1.train.toarray(), s2.train.toarray())
    assert list(np.asarray(s1.train.sum(1)).ravel()) == [3, 6, 1]
    assert list(np.asarray(s1.test.sum(1)).ravel()) == [1, 2, 0]


def test_temporal_split_keeps_the_past_for_training():
    users = np.array(["u"] * 4)
    items = np.array(["a", "b", "c", "d"])
    ts = np.array([40, 10, 30, 20])
    s = temporal_split(users, items, ts)
    train = set(s.item_ids[s.train.indices])
    assert train == {"b", "d", "c"} and set(s.item_ids[s.test.indices]) == {"a"}


def test_loader_reads_both_formats(tmp_path):
    (tmp_path / "u.data").write_text("1\t10\t5\t100\n2\t20\t3\t200\n")
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,10,4.5,100\n")
    r = load_ratings(tmp_path / "u.data")
    assert list(r.users) == ["1", "2"] and list(r.items) == ["10", "20"]
    assert load_ratings(tmp_path / "ratings.csv").ratings[0] == pytest.approx(4.5)


@pytest.mark.parametrize(
    "text, where",
    [
        ("1\t10\t5\t100\n2\t20\t3\n", ":2:"),
        ("userId,movieId,rating,timestamp\n1,10,4,100\n1,11,x,100\n", ":3:"),
        ("garbage\n", ":1:"),
        ("", "empty"),
    ],
)
def test_loader_names_the_bad_line(tmp_path, text, where):
    path = tmp_path / "bad.data"
    path.write_text(text)
    with pytest.raises(DataFormatError) as err:
        load_ratings(path)
    assert str(path) in str(err.value) and where in str(err.value)


def _tvrec(*args):
    return subprocess.run(
        [sys.executable, "-m", "tvrec.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_eval_cf_writes_the_promised_keys(tmp_path):
    rng = np.random.default_rng(0)
    lines = [
        f"{u}\t{i}\t4\t{1000 + n}"
        for n, (u, i) in enumerate(
            {(int(u), int(i)) for u, i in zip(rng.integers(1, 60, 3000), rng.integers(1, 80, 3000))}
        )
    ]
    data = tmp_path / "u.data"
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "m.json"
    proc = _tvrec("eval", "cf", "--ratings", str(data), "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    for key in ("precision@10", "recall@10", "ndcg@10", "map", "coverage", "fit_seconds",
                "recommend_ms_p50", "recommend_ms_p95", "peak_rss_mb", "lambda"):
        assert key in result and np.isfinite(result[key])
    assert 0 <= result["ndcg@10"] <= 1
    assert result["model"] == "SparseEASEModel" and result["neighbours_per_item"] <= 64
    assert 30 < result["peak_rss_mb"] < 2000


def test_cli_eval_cf_refuses_a_fit_that_would_not_fit_and_names_spark(tmp_path):
    """Under a real address-space limit (ulimit -v), a log whose predicted Gram does not fit is
    refused before fitting, in one line naming --engine spark."""
    import resource

    rng = np.random.default_rng(1)
    n_users, per_user, n_items = 500, 800, 30_000
    users = np.repeat(np.arange(1, n_users + 1), per_user)
    items = np.concatenate([rng.choice(n_items, per_user, replace=False) + 1 for _ in range(n_users)])
    data = tmp_path / "u.data"
    data.write_text("".join(f"{u}\t{i}\t4\t{n}\n" for n, (u, i) in enumerate(zip(users, items))))

    def limit():  # 1.5 GB of address space: python + numpy + scipy start, a 6 GB fit cannot
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**29, 3 * 2**29))

    proc = subprocess.run([sys.executable, "-m", "tvrec.cli", "eval", "cf", "--ratings", str(data)],
                          capture_output=True, text=True, timeout=300, preexec_fn=limit,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--engine spark" in lines[0] and "GB" in lines[0]


def test_cli_eval_cf_malformed_file_is_one_line(tmp_path):
    data = tmp_path / "u.data"
    data.write_text("1\t2\t3\t4\n1\t2\n")
    proc = _tvrec("eval", "cf", "--ratings", str(data))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "u.data:2:" in lines[0]
