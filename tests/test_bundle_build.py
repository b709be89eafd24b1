"""`tvrec bundle build` and `tvrec eval coldstart` on small hand-made catalogs, through the real
Engine, the real bundle verifier and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
REPORT_KEYS = {"n_items", "n_profiles", "n_events", "skipped_lines", "fit_seconds", "peak_rss_mb"}

# 20 programmes: 1-6 drama, 7-12 comedy (watched); 13-20 never watched (cold). 1 and 20 are
# episodes 1 and 2 of "The Harbour". 12 and 19 have no duration, 19 no genre and no release.
DRAMA, COMEDY = range(1, 7), range(7, 13)


def catalog_csv() -> str:
    rows = ["id,title,genres,duration,release,series,season,episode,maturity"]
    for i in range(1, 21):
        genre = "drama" if i in DRAMA or i in (13, 14, 15, 20) else "comedy"
        title = f"Programme {i}"
        series = season = episode = ""
        if i in (1, 20):
            title, series, season, episode = f"The Harbour S1E{1 if i == 1 else 2}", "The Harbour", "1", \
                "1" if i == 1 else "2"
        duration = "" if i in (12, 19) else str(1800 + 60 * i)
        release = f"2024-01-{i:02d}"
        if i == 19:
            genre, release = "", ""
        rows.append(f"{i},{title},{genre},{duration},{release},{series},{season},{episode},"
                    f"{12 if i == 14 else ''}")
    return "\n".join(rows) + "\n"


def log_csv() -> str:
    """Drama fans p1..p6 and comedy fans q1..q6; pk watches the first 7-k of their genre, so
    item j of a genre has 7-j viewers (popularity 6, 5, ..., 1)."""
    rows = ["profile_id,item_id,timestamp,completion,liked"]
    t = 1_704_067_200
    for k in range(1, 7):
        for j in range(1, 8 - k):
            rows.append(f"p{k},{j},{t + 100 * k + j},1.0,0")
            rows.append(f"q{k},{j + 6},{t + 100 * k + j},0.9,0")
    rows.append("p1,999,1704067200,1,0")  # an item the catalog does not have: skipped, counted
    return "\n".join(rows) + "\n"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from export.pipeline import build_bundle

    base = tmp_path_factory.mktemp("build")
    (base / "items.csv").write_text(catalog_csv())
    (base / "log.csv").write_text(log_csv())
    report = build_bundle(base / "items.csv", base / "log.csv", base / "bundle", k=8,
                          progress=False)
    return base, report


def test_report_and_verified_bundle(built):
    from device.bundle import open_bundle

    base, report = built
    assert REPORT_KEYS <= set(report)
    assert report["n_items"] == 20 and report["n_profiles"] == 12
    assert report["n_events"] == 42 and report["skipped_lines"] == 1
    assert report["n_warm"] == 12 and report["n_cold"] == 8
    # every cold item with content is placed; 19 has no genre, no vector: not placed
    assert report["n_cold_placed"] == 7
    b = open_bundle(report["bundle"], verify="full")
    assert b.items.ids.tolist() == [str(i) for i in range(1, 21)]  # the catalog's own ids
    assert list(b.items.titles)[0] == "The Harbour S1E1"
    assert np.asarray(b.items.cold).tolist() == [False] * 12 + [True] * 8
    assert list(b.items.genres[13]) == ["drama"] and list(b.items.genres[18]) == []
    # popularity: log1p of the viewers, 0 for cold items
    np.testing.assert_allclose(np.asarray(b.table.popularity)[:6], np.log1p([6, 5, 4, 3, 2, 1]),
                               rtol=1e-6)
    assert (np.asarray(b.table.popularity)[12:] == 0).all()
    # drama and comedy are never co-watched: no neighbour crosses the genres
    nb = np.asarray(b.table.neighbours)
    for r in range(6):
        assert set(nb[r][nb[r] >= 0].tolist()) <= set(range(6))
    assert (nb[12:] == -1).all()


def test_new_profile_rows_exact(built, tmp_path):
    from device.engine import Engine

    _, report = built
    with Engine(report["bundle"], tmp_path / "h.db") as engine:
        engine.add_profile("guest")
        rows = {r.kind: [c.item_id for c in r.cards] for r in engine.home("guest")}
    # New for you: cold items newest first; 19 has no release date, so it is oldest
    assert rows["new"] == ["20", "18", "17", "16", "15", "14", "13", "19"]
    # Popular now: by viewers, ties in catalog order
    assert rows["popular"] == ["1", "7", "2", "8", "3", "9", "4", "10", "5", "11", "6", "12"]
    assert list(rows) == ["new", "popular"]


def test_drama_viewer_rows(built, tmp_path):
    from device.engine import Engine

    _, report = built
    with Engine(report["bundle"], tmp_path / "h.db") as engine:
        engine.add_profile("fan")
        engine.record("fan", "1", "finish")  # ids are the catalog's strings
        rows = {r.kind: r for r in engine.home("fan")}
        top = [c.item_id for c in rows["top_picks"].cards]
        assert top and set(top) <= {"2", "3", "4", "5", "6"}  # co-watched with 1 only
        # the reason names the show, not the episode (issue 15)
        assert all(c.reason == "Because you watched The Harbour"
                   for c in rows["top_picks"].cards)
        # the next episode of the finished one is Up next in Continue watching (issue 15),
        # so it is not repeated in New for you
        assert [(c.item_id, c.kind) for c in rows["continue"].cards] == [("20", "next")]
        new = [c.item_id for c in rows["new"].cards]
        # the cold dramas first; comedy and the item with no content last
        assert set(new[:3]) == {"13", "14", "15"}
        assert set(new[3:]) == {"16", "17", "18", "19"}
        # no duration in the catalog: the card has the nominal one, and playing it records
        card = engine.card("19")
        assert card.duration > 0 and card.genres == ()
        engine.record("fan", "19", "play", position=0.0)
        engine.record("fan", "19", "progress", position=600.0)
        assert [r.item_id for r in engine.history.continue_watching("fan")] == ["19"]


def test_cli_build_json_and_bad_input(tmp_path):
    (tmp_path / "items.csv").write_text(catalog_csv())
    (tmp_path / "log.csv").write_text(log_csv())
    proc = subprocess.run(
        [sys.executable, "-m", "tvrec.cli", "bundle", "build", "--items", str(tmp_path / "items.csv"),
         "--interactions", str(tmp_path / "log.csv"), "--out", str(tmp_path / "b"), "--k", "4",
         "--json", str(tmp_path / "r.json")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert REPORT_KEYS <= set(json.loads((tmp_path / "r.json").read_text()))
    verify = subprocess.run([sys.executable, "-m", "tvrec.cli", "bundle", "verify",
                             str(tmp_path / "b")], capture_output=True, text=True, cwd=ROOT)
    assert verify.returncode == 0 and "verified full" in verify.stdout

    (tmp_path / "bad.csv").write_text("id,title,duration\n1,A,soon\n")
    proc = subprocess.run(
        [sys.executable, "-m", "tvrec.cli", "bundle", "build", "--items", str(tmp_path / "bad.csv"),
         "--interactions", str(tmp_path / "log.csv"), "--out", str(tmp_path / "b2")],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert f"{tmp_path / 'bad.csv'}:2: duration must be a number" in proc.stderr
    assert not (tmp_path / "b2").exists()


def test_item_vectors_place_cold_items(tmp_path):
    """Vectors that put each cold drama next to the drama items: the map learned on warm items
    carries them into the drama side of CF space."""
    from device.bundle import open_bundle
    from device.content import unit
    from export.pipeline import build_bundle

    (tmp_path / "items.csv").write_text(catalog_csv())
    (tmp_path / "log.csv").write_text(log_csv())
    rng = np.random.default_rng(0)
    ids = [str(i) for i in range(1, 21) if i != 19]
    drama = {str(i) for i in (*DRAMA, 13, 14, 15, 20)}
    vec = np.array([[1.0, 0.0] if i in drama else [0.0, 1.0] for i in ids]) \
        + 0.05 * rng.standard_normal((len(ids), 2))
    np.savez(tmp_path / "v.npz", ids=np.array(ids), vectors=vec)
    report = build_bundle(tmp_path / "items.csv", tmp_path / "log.csv", tmp_path / "b",
                          item_vectors=tmp_path / "v.npz", k=8, progress=False)
    assert report["content"][0].startswith("v.npz (2-d, 19 items")
    b = open_bundle(report["bundle"])
    E = unit(b.embedding(np.arange(20)))
    drama_centre = unit(E[:6].mean(axis=0))
    comedy_centre = unit(E[6:12].mean(axis=0))
    for r in (12, 13, 14):  # items 13-15
        assert E[r] @ drama_centre > E[r] @ comedy_centre
    for r in (15, 16, 17):  # items 16-18
        assert E[r] @ comedy_centre > E[r] @ drama_centre


def clustered(tmp_path, n_items=80, n_profiles=120, seed=0):
    """Four genres; profiles watch mostly one genre: a small case with structure."""
    rng = np.random.default_rng(seed)
    genres = ["drama", "comedy", "news", "sport"]
    g = rng.integers(0, 4, n_items)
    (tmp_path / "items.csv").write_text("id,title,genres\n" + "".join(
        f"{i},T{i},{genres[g[i]]}\n" for i in range(n_items)))
    rows = ["profile_id,item_id,timestamp"]
    for u in range(n_profiles):
        fav = u % 4
        pool = np.flatnonzero(g == fav)
        for i in rng.choice(pool, 8, replace=False).tolist() + rng.choice(n_items, 2).tolist():
            rows.append(f"u{u},{i},{1_700_000_000 + u}")
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "items.csv", tmp_path / "log.csv"


def test_eval_coldstart_keys_and_seed(tmp_path):
    items_path, log_path = clustered(tmp_path)
    out = tmp_path / "cs.json"
    runs = []
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, "-m", "tvrec.cli", "eval", "coldstart", "--items", str(items_path),
             "--interactions", str(log_path), "--seed", "3", "--json", str(out)],
            capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert proc.returncode == 0, proc.stderr
        runs.append(json.loads(out.read_text()))
    r = runs[0]
    assert {"content_ndcg@20", "content_recall@20", "genre_ndcg@20", "random_ndcg@20",
            "n_cold_items", "n_users"} <= set(r)
    assert r == runs[1]  # seeded
    assert r["n_cold_items"] == 16  # 20% of the 80 items with genres and interactions
    assert 0 < r["n_users"] <= 120
    for key in ("content_ndcg@20", "genre_ndcg@20", "random_ndcg@20"):
        assert 0.0 <= r[key] <= 1.0
    # profiles stick to a genre: both genre-aware rankings beat random
    assert r["content_ndcg@20"] > r["random_ndcg@20"] and r["genre_ndcg@20"] > r["random_ndcg@20"]


def test_eval_coldstart_with_vectors(tmp_path):
    from models.coldstart import evaluate_catalog_cold_start
    from models.readers import read_item_vectors, read_items, read_log

    items_path, log_path = clustered(tmp_path)
    items = read_items(items_path)
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "v.npz", ids=items.ids.astype(str),
             vectors=rng.standard_normal((len(items), 4)))
    V, has, _ = read_item_vectors(tmp_path / "v.npz").align(items.ids)
    r = evaluate_catalog_cold_start(items, read_log(log_path, items), vectors=(V, has), seed=0)
    assert r["content"] == "vectors+metadata" and r["n_cold_items"] == 16


def test_catalog_columns_in_the_bundle(built, demo_bundle):
    """Schema 3: series/season/episode/maturity columns and unknown durations, read back
    exactly; a schema 2 bundle still opens, without them."""
    from device.bundle import SCHEMA_VERSION, open_bundle

    _, report = built
    b = open_bundle(report["bundle"], verify="full")
    assert b.manifest["schema_version"] == SCHEMA_VERSION == 3
    it = b.items
    assert str(it.series[0]) == "The Harbour" and str(it.series[19]) == "The Harbour"
    assert [str(s) for s in it.series[1:19]] == [""] * 18
    assert it.season[0] == 1 and it.episode[0] == 1 and it.episode[19] == 2
    assert it.season[5] == -1 and it.episode[5] == -1
    assert it.maturity[13] == 12 and it.maturity[0] == -1
    d = np.asarray(it.durations)
    assert np.isnan(d[11]) and np.isnan(d[18]) and d[0] == 1860.0
    assert it.record(18)["duration"] == 3600.0  # the nominal length the history stores
    assert b.manifest["cold_start"]["reads_genres"] is True
    # The shipped demo was schema 2 until it was rebuilt with ratings (schema 3, maturity only);
    # a schema 2 bundle is the same files without the optional columns and with version 2.
    import shutil

    assert open_bundle(demo_bundle).manifest["schema_version"] == 3
    v2 = Path(report["bundle"]).parent / "schema2"
    shutil.copytree(demo_bundle, v2)
    (v2 / "item_maturity.npy").unlink()
    (v2 / "signature.json").unlink()
    m = json.loads((v2 / "manifest.json").read_text())
    m["schema_version"] = 2
    del m["files"]["item_maturity.npy"]
    (v2 / "manifest.json").write_text(json.dumps(m))
    old = open_bundle(v2, verify="full")
    assert old.manifest["schema_version"] == 2
    assert old.items.series is None and old.items.maturity is None


def test_bundle_format_refuses_bad_catalog_columns(tmp_path):
    from device.bundle import write_bundle
    from device.errors import BundleError
    from device.features import FeatureConfig

    def write(**cols):
        items = {"ids": ["a", "b"], "durations": [60.0, float("nan")], **cols}
        return write_bundle(tmp_path / f"b{len(list(tmp_path.iterdir()))}", items=items,
                            neighbours=np.full((2, 1), -1), weights=np.zeros((2, 1)),
                            popularity=np.zeros(2), item_embeddings_int8=np.zeros((2, 2), np.int8),
                            embedding_scale=1.0, model_bytes=None, feature_config=FeatureConfig(),
                            model_io=None)

    assert write(season=[1, -1], series=["S", ""]).is_dir()
    with pytest.raises(BundleError, match="'season' must hold whole numbers"):
        write(season=[1.5, 2])
    with pytest.raises(BundleError, match="'maturity' must hold whole numbers >= -1"):
        write(maturity=[-3, 0])
    with pytest.raises(BundleError, match="duration"):
        write(durations=[60.0, -1.0])


def test_media_and_model(built, tmp_path, shared_data, demo_bundle):
    """--media/--model: clips named by item id are embedded by the given bundle's int8 model,
    and that model ships in the new bundle."""
    from device.bundle import open_bundle
    from export.pipeline import build_bundle

    base, _ = built
    media = tmp_path / "media"
    media.mkdir()
    for item, clip in (("13", "archery.mp4"), ("16", "chaplin.mp4")):
        (media / f"{item}.mp4").symlink_to(shared_data / "media" / "video" / clip)
    (media / "notes.txt").write_text("not a clip of any item")
    report = build_bundle(base / "items.csv", base / "log.csv", tmp_path / "b", media_dir=media,
                          model_dir=demo_bundle, k=8, progress=False)
    assert report["content"][0].startswith("media (32-d, 2 items")
    b = open_bundle(report["bundle"], verify="full")
    assert b.model_path is not None and b.dim == 32
    assert b.model_path.read_bytes() == (demo_bundle / "content_model.tflite").read_bytes()


def test_simulator_on_a_built_bundle(tmp_path):
    """The simulator on a metadata-only bundle: no media, long titles, many genres, unknown
    durations -- home, details, play and back, headless."""
    import os

    long_title = "The Extraordinarily Long and Winding Chronicle of a Title, Part "
    rows = ["id,title,genres,duration"]
    for i in range(60):
        genres = "|".join(f"genre {g}" for g in range(i % 9))
        rows.append(f'{i},"{long_title}{i}",{genres},{"" if i % 2 else 1800}')
    (tmp_path / "items.csv").write_text("\n".join(rows) + "\n")
    rng = np.random.default_rng(0)
    log = ["profile_id,item_id,timestamp"] + [
        f"u{u},{i},{1_700_000_000 + u}" for u in range(50)
        for i in rng.choice(48, 6, replace=False)]  # items 48-59 stay cold
    (tmp_path / "log.csv").write_text("\n".join(log) + "\n")
    from export.pipeline import build_bundle

    build_bundle(tmp_path / "items.csv", tmp_path / "log.csv", tmp_path / "b", k=8, progress=False)
    out = tmp_path / "home.png"
    proc = subprocess.run(
        [sys.executable, "-m", "tvrec.cli", "sim", "--bundle", str(tmp_path / "b"), "--db",
         str(tmp_path / "h.db"), "--screenshot", str(out), "--resolution", "720p",
         "--script", "down,right,ok,play,wait:1,back,back,down,down,ok,back"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 10_000


def test_signed_build(built, tmp_path):
    """--signing-key: the sign step of the shared pipeline; the box's check accepts it."""
    from device.bundle import check_signature, generate_key
    from export.pipeline import build_bundle

    base, _ = built
    key, pub = generate_key(tmp_path / "fleet.key")
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / pub.name).write_bytes(pub.read_bytes())
    report = build_bundle(base / "items.csv", base / "log.csv", tmp_path / "b", k=8,
                          signing_key=key, progress=False)
    assert report["signature"]["key_id"]
    check_signature(report["bundle"], keys)  # raises if unsigned or forged
