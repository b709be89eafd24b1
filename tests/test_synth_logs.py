"""tvrec catalog synth-logs: seeded, exact sizes, structure, readable by the catalog readers."""

from __future__ import annotations

import hashlib

import numpy as np

from models.synth_logs import generate, n_clusters_for
from tvrec.cli import main


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_same_files_and_readable(tmp_path):
    from models.readers import read_items, read_log

    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((a, 3), (b, 3), (c, 4)):
        assert main(["catalog", "synth-logs", "--items", "500", "--profiles", "120",
                     "--events", "6000", "--seed", str(seed), "--out", str(out)]) == 0
    assert _digest(a) == _digest(b)
    assert _digest(a)["events.csv"] != _digest(c)["events.csv"]
    items = read_items(a / "items.csv")
    log = read_log(a / "events.csv", items)
    assert len(items) == 500 and len(log) == 6000 and log.unknown_items == 0
    assert log.format == "watch-events" and items.format == "csv"
    assert (items.series != "").sum() > 50 and (items.episode > 0).sum() > 50
    assert len(np.unique(log.profiles)) == 120  # everyone watched something
    assert np.all((log.completion > 0) & (log.completion <= 1))


def test_structure_a_model_can_learn():
    log = generate(2000, 400, 40_000, seed=1)
    assert len(log.item) == 40_000
    counts = np.bincount(log.item, minlength=2000)
    top = np.sort(counts)[::-1]
    # power-law popularity: the top 1% of items draw more views than the bottom half
    assert top[:20].sum() > 1.5 * top[-1000:].sum() and top[:20].sum() > 0.15 * len(log.item)
    # taste clusters: a profile's views concentrate on few of the clusters
    k = n_clusters_for(2000)
    share = []
    for p in range(400):
        c = np.bincount(log.cluster[log.item[log.profile == p]], minlength=k)
        if c.sum() >= 20:
            share.append(np.sort(c)[::-1][:3].sum() / c.sum())
    assert np.mean(share) > 0.7 and k > 10
    # bingeing: the next event of a profile is often the next episode of the same series
    same_p = log.profile[1:] == log.profile[:-1]
    nxt = (log.series[log.item[1:]] >= 0) & (log.item[1:] == log.item[:-1] + 1) & (
        log.series[log.item[1:]] == log.series[log.item[:-1]])
    assert nxt[same_p].mean() > 0.1
    # sorted by profile then time
    assert np.all(np.diff(log.profile) >= 0)
    t = log.timestamp
    assert np.all((np.diff(t) >= 0) | ~same_p)
