"""The demo catalog generator: real files in tmp_path, decoded with PyAV, loaded back."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import numpy as np
import pytest

av = pytest.importorskip("av", reason="the 'media' extra (PyAV) is not installed")
pytest.importorskip("PIL", reason="Pillow (via matplotlib, 'train' extra) is not installed")
pytest.importorskip("tqdm", reason="tqdm ('train' extra) is not installed")

from device.errors import DataFormatError  # noqa: E402
from models.catalog import CSV_HEADER, generate_catalog, load_catalog  # noqa: E402
from models.synth_media import GENRES, make_item_media  # noqa: E402


def _sha(path) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """24 items with media, 30 profiles, rendered by a pool of 2 processes."""
    out = tmp_path_factory.mktemp("small")
    generate_catalog(out, n_items=24, seed=0, n_profiles=30, media=True, workers=2, progress=False)
    return out


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    """A logs-only catalog big enough for statistics (300 items, 250 profiles)."""
    out = tmp_path_factory.mktemp("medium")
    generate_catalog(out, n_items=300, seed=3, n_profiles=250, media=False, progress=False)
    return out


@pytest.fixture(scope="module")
def default_logs(tmp_path_factory):
    """The default-size logs (600 items, 400 profiles) without media: about a second."""
    out = tmp_path_factory.mktemp("default")
    generate_catalog(out, n_items=600, seed=0, n_profiles=400, media=False, progress=False)
    return out


def test_manifest_has_every_field(small):
    m = json.loads((small / "catalog.json").read_text())
    assert m["schema"] == 1 and m["seed"] == 0 and m["n_items"] == 24
    assert m["genres"] == list(GENRES)
    assert isinstance(m["log_cutoff_ts"], int)
    assert len(m["items"]) == 24 and len(m["profiles"]) == 30
    for k, it in enumerate(m["items"]):
        assert it["id"] == f"p{k + 1:04d}"
        assert set(it) >= {"id", "title", "genres", "primary_genre", "duration_s", "release", "cold",
                           "media", "poster"}
        assert it["title"].strip()
        assert abs(sum(it["genres"].values()) - 1.0) < 1e-6
        assert it["primary_genre"] == max(it["genres"], key=it["genres"].get)
        assert max(it["genres"].values()) >= 0.5  # one dominant genre
        assert 20 * 60 <= it["duration_s"] <= 120 * 60
        assert it["release"] == k + 1
        assert it["media"] == f"media/{it['id']}.mp4" and (small / it["media"]).is_file()
        assert it["poster"] == f"posters/{it['id']}.png" and (small / it["poster"]).is_file()
    assert len({it["title"] for it in m["items"]}) == 24
    for p in m["profiles"]:
        assert set(p["taste"]) == set(GENRES) and abs(sum(p["taste"].values()) - 1.0) < 1e-6
    # nothing temporary left behind
    assert not [f for f in os.listdir(small) if f.endswith(".tmp")]
    assert not [f for f in os.listdir(small / "media") if f.endswith(".tmp")]


def test_every_clip_is_h264_plus_aac_of_6_to_10_seconds(small):
    from PIL import Image

    cat = load_catalog(small)
    for i in range(cat.n_items):
        with av.open(cat.media_path(i)) as c:
            assert len(c.streams.video) == 1 and len(c.streams.audio) == 1
            v, a = c.streams.video[0], c.streams.audio[0]
            assert v.codec_context.name == "h264" and a.codec_context.name == "aac"
            assert a.channels == 1 and a.sample_rate == 16000
            assert (v.width, v.height) == (160, 120)
            seconds = float(v.duration * v.time_base)
            assert 6.0 <= seconds <= 10.0
            assert abs(float(a.duration * a.time_base) - seconds) < 0.2
            frame = next(c.decode(video=0)).to_ndarray(format="rgb24")
            assert frame.shape == (120, 160, 3) and frame.std() > 5  # not a blank picture
        with Image.open(cat.poster_path(i)) as im:
            assert im.format == "PNG" and im.size == (160, 240)


def test_same_seed_same_files_even_serial_vs_pool(small, tmp_path):
    generate_catalog(tmp_path, n_items=24, seed=0, n_profiles=30, media=True, workers=1, progress=False)
    for name in ("catalog.json", "interactions.csv", "interactions_future.csv", "latent.json"):
        assert (tmp_path / name).read_bytes() == (small / name).read_bytes(), name
    # libx264 with fixed settings on one thread, AAC and PNG are byte-reproducible
    for name in sorted(os.listdir(small / "media")):
        assert _sha(tmp_path / "media" / name) == _sha(small / "media" / name), name
    for name in sorted(os.listdir(small / "posters")):
        assert _sha(tmp_path / "posters" / name) == _sha(small / "posters" / name), name


def test_another_seed_gives_another_catalog(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    generate_catalog(a, n_items=24, seed=0, n_profiles=30, media=False, progress=False)
    generate_catalog(b, n_items=24, seed=1, n_profiles=30, media=False, progress=False)
    assert (a / "interactions.csv").read_bytes() != (b / "interactions.csv").read_bytes()
    items_a = json.loads((a / "catalog.json").read_text())["items"]
    assert items_a != json.loads((b / "catalog.json").read_text())["items"]


@pytest.mark.parametrize("which", ["small", "medium"])
def test_cold_items_only_in_the_future_logs(which, request):
    cat = load_catalog(request.getfixturevalue(which))
    n = cat.n_items
    assert cat.cold.sum() == round(0.2 * n)
    # cold = the last items by release order, released after the cut-off
    assert not cat.cold[: n - cat.cold.sum()].any() and cat.cold[n - cat.cold.sum():].all()
    assert (cat.release_ts[cat.cold] > cat.log_cutoff_ts).all()
    assert (cat.release_ts[~cat.cold] < cat.log_cutoff_ts).all()
    assert not cat.cold[cat.train["item"]].any()
    assert (cat.train["timestamp"] < cat.log_cutoff_ts).all()
    assert (cat.future["timestamp"] >= cat.log_cutoff_ts).all()
    watched_cold = set(cat.future["item"][cat.cold[cat.future["item"]]].tolist())
    assert watched_cold, "no cold item was watched after the cut-off"
    # nobody watches a programme before it is released
    for log in (cat.train, cat.future):
        assert (log["timestamp"] >= cat.release_ts[log["item"]]).all()
    # the raw CSV agrees: no cold id anywhere in the training file
    cold_ids = set(cat.item_ids[cat.cold].tolist())
    with open(os.path.join(cat.root, "interactions.csv"), encoding="utf-8") as fh:
        train_ids = {line.split(",")[1] for line in fh.read().splitlines()[1:]}
    assert not cold_ids & train_ids
    if which == "medium":
        assert len(watched_cold) >= 0.8 * cat.cold.sum()


def test_cowatch_follows_genre_taste(medium):
    cat = load_catalog(medium)
    logs = np.concatenate([cat.train, cat.future])
    primary = cat.primary[logs["item"]]
    top = np.argmax(cat.taste, axis=1)
    shares = [np.mean(primary[logs["profile"] == u] == top[u])
              for u in range(len(cat.profile_ids)) if (logs["profile"] == u).any()]
    base = np.bincount(primary, minlength=len(GENRES)) / len(primary)
    expected = np.mean(base[top])  # share if viewers ignored their taste
    assert np.mean(shares) > 3.0 * expected, (np.mean(shares), expected)
    # completion is higher when the programme matches the profile's top genre
    in_top = primary == top[logs["profile"]]
    assert logs["completion"][in_top].mean() > logs["completion"][~in_top].mean() + 0.1
    assert set(np.unique(logs["liked"]).tolist()) <= {-1, 0, 1}
    assert 0.0 <= logs["completion"].min() and logs["completion"].max() <= 1.0


def test_cowatch_follows_hidden_style_beyond_genre_and_series(default_logs):
    """Viewers pick programmes near their preferred style, so the items co-watched most with an
    item look and sound like it (style z), even among other shows of the same genre."""
    cat = load_catalog(default_logs)
    latent = json.loads((default_logs / "latent.json").read_text())
    z = np.array([latent["items"][i]["style"] for i in cat.item_ids])
    series = np.array([latent["items"][i]["series"] for i in cat.item_ids])
    center = np.array([latent["profiles"][p]["style_center"] for p in cat.profile_ids])
    watched = np.linalg.norm(z[cat.train["item"]] - center[cat.train["profile"]], axis=1)
    anything = np.linalg.norm(z[None, :, :] - center[:, None, :], axis=2)
    assert watched.mean() < 0.85 * anything.mean()

    B = np.zeros((len(cat.profile_ids), cat.n_items))
    B[cat.train["profile"], cat.train["item"]] = 1.0
    C = B.T @ B
    cos = C / np.sqrt(np.outer(np.diag(C), np.diag(C)) + 1e-9)
    top_d, all_d = [], []
    for i in np.flatnonzero(~cat.cold):
        cand = (cat.primary == cat.primary[i]) & (series != series[i]) & ~cat.cold
        cand[i] = False
        idx = np.flatnonzero(cand)
        if len(idx) < 5 or cos[i, idx].max() == 0:
            continue
        top3 = idx[np.argsort(-cos[i, idx], kind="stable")[:3]]
        top_d.append(np.linalg.norm(z[top3] - z[i], axis=1).mean())
        all_d.append(np.linalg.norm(z[idx] - z[i], axis=1).mean())
    assert len(top_d) > 300
    assert np.mean(top_d) < 0.8 * np.mean(all_d), (np.mean(top_d), np.mean(all_d))


def _decode(path):
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24").astype(np.float64) for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    return np.stack(frames), audio


def test_pictures_and_sound_carry_signal(tmp_path):
    rng = np.random.default_rng(0)

    def clip(name, mixture, style, seed):
        path = tmp_path / f"{name}.mp4"
        make_item_media((str(path), str(tmp_path / f"{name}.png"), mixture, style, 6.0, seed, name))
        return _decode(path)

    def greenness(frames):
        mid = frames[len(frames) // 2]
        return mid[..., 1].mean() - 0.5 * (mid[..., 0].mean() + mid[..., 2].mean())

    one_hot = {g: np.eye(len(GENRES))[k] for k, g in enumerate(GENRES)}
    sports = [greenness(clip(f"s{k}", one_hot["sports"], rng.uniform(-1, 1, 4), k)[0]) for k in range(3)]
    news = [greenness(clip(f"n{k}", one_hot["news"], rng.uniform(-1, 1, 4), 10 + k)[0]) for k in range(3)]
    assert min(sports) > max(news) + 10, (sports, news)

    # the hidden style is audible: z[2] (pitch) moves the spectral centroid of a drama pad
    def centroid(audio):
        spec = np.abs(np.fft.rfft(audio))
        freqs = np.fft.rfftfreq(len(audio), 1 / 16000)
        return (spec * freqs).sum() / spec.sum()

    low = centroid(clip("low", one_hot["drama"], [0, 0, -1, 0], 5)[1])
    high = centroid(clip("high", one_hot["drama"], [0, 0, 1, 0], 5)[1])
    assert high > 1.5 * low, (low, high)
    # and a mixture shows both genres: half sports is greener than pure news
    mixed = 0.5 * one_hot["sports"] + 0.5 * one_hot["news"]
    assert greenness(clip("mix", mixed, [0, 0, 0, 0], 7)[0]) > max(news)


@pytest.fixture()
def logs_only(tmp_path):
    out = tmp_path / "cat"
    generate_catalog(out, n_items=20, seed=2, n_profiles=15, media=False, progress=False)
    return out


def _set_line(path, lineno, text):
    lines = path.read_text().splitlines()
    lines[lineno - 1] = text
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("u0001,p0001,1704100000", "expected 5 fields"),
        ("u0001,p0001,17041x0000,0.5,0", "timestamp must be an integer"),
        ("u0001,p0001,1704100000,1.5,0", "outside 0..1"),
        ("u0001,p0001,1704100000,0.5,2", "liked must be"),
        ("u9999,p0001,1704100000,0.5,0", "unknown profile 'u9999'"),
        ("u0001,nope,1704100000,0.5,0", "unknown item 'nope'"),
    ],
)
def test_loader_names_file_and_line_of_a_bad_row(logs_only, bad, reason):
    path = logs_only / "interactions.csv"
    _set_line(path, 7, bad)
    with pytest.raises(DataFormatError, match=rf"interactions\.csv:7: .*{reason}"):
        load_catalog(logs_only)


def test_loader_refuses_a_broken_split_and_bad_manifests(logs_only):
    cat = load_catalog(logs_only)
    cold_id = cat.item_ids[cat.cold][0]
    path = logs_only / "interactions.csv"
    original = path.read_text()
    line4 = original.splitlines()[3].split(",")
    _set_line(path, 4, ",".join([line4[0], cold_id] + line4[2:]))
    with pytest.raises(DataFormatError, match=r"interactions\.csv:4: .*breaks the split"):
        load_catalog(logs_only)
    path.write_text(original)

    fut = logs_only / "interactions_future.csv"
    _set_line(fut, 1, "who,what,when")
    with pytest.raises(DataFormatError, match=r"interactions_future\.csv:1: expected header"):
        load_catalog(logs_only)
    _set_line(fut, 1, CSV_HEADER)

    manifest = logs_only / "catalog.json"
    good = manifest.read_text()
    manifest.write_text(good.replace('"schema": 1', '"schema": 7'))
    with pytest.raises(DataFormatError, match="schema 7 is not supported"):
        load_catalog(logs_only)
    m = json.loads(good)
    del m["items"][3]["duration_s"]
    manifest.write_text(json.dumps(m, indent=1))
    with pytest.raises(DataFormatError, match=r"item #4 \(p0004\): missing field 'duration_s'"):
        load_catalog(logs_only)
    manifest.write_text(good[:-40])
    with pytest.raises(DataFormatError, match=r"catalog\.json:\d+: not valid JSON"):
        load_catalog(logs_only)
    manifest.unlink()
    with pytest.raises(DataFormatError, match="generation did not finish"):
        load_catalog(logs_only)


def test_a_failed_regeneration_leaves_no_manifest(logs_only):
    """catalog.json goes first and comes back last: a run that dies half-way leaves none."""
    assert (logs_only / "catalog.json").exists()
    (logs_only / "interactions.csv.tmp").mkdir()  # the log cannot be written: a real I/O failure
    with pytest.raises(OSError):
        generate_catalog(logs_only, n_items=20, seed=2, n_profiles=15, media=False, progress=False)
    assert not (logs_only / "catalog.json").exists()
    with pytest.raises(DataFormatError, match="generation did not finish"):
        load_catalog(logs_only)


def test_cli_generate_and_info(tmp_path, capsys):
    from tvrec.cli import main

    out = tmp_path / "cli"
    argv = ["catalog", "generate", "--out", str(out), "--items", "12", "--profiles", "10", "--no-media"]
    assert main(argv) == 0
    assert "12 items" in capsys.readouterr().out
    assert main(["catalog", "info", str(out)]) == 0
    assert "12 items" in capsys.readouterr().out
    shutil.rmtree(out)
    assert main(["catalog", "info", str(out)]) == 2
    assert "catalog.json" in capsys.readouterr().err
    assert main(["catalog", "generate", "--out", str(out), "--items", "1"]) == 2


def _rows(path):
    lines = path.read_text().splitlines()
    assert lines[0] == "profile_id,item_id,timestamp,completion,liked"
    return [line.split(",") for line in lines[1:]]


def test_daypart_logs_are_the_same_viewing_at_habitual_hours(default_logs):
    """interactions_dayparts.csv: the same rows (profile, item, completion, liked, day) as
    interactions.csv, other hours; and only they show genre-by-hour habits."""
    from device.context import habit_strength

    manifest = json.loads((default_logs / "catalog.json").read_text())
    genre = {it["id"]: manifest["genres"].index(it["primary_genre"]) for it in manifest["items"]}
    for plain, timed in (("interactions.csv", "interactions_dayparts.csv"),
                         ("interactions_future.csv", "interactions_future_dayparts.csv")):
        a, b = _rows(default_logs / plain), _rows(default_logs / timed)
        key = lambda r: (r[0], r[1], r[3], r[4], int(r[2]) // 86400)  # noqa: E731
        assert sorted(map(key, a)) == sorted(map(key, b))
        assert [r[2] for r in a] != [r[2] for r in b]

    def earned(rows):
        by = {}
        for p, i, t, *_ in rows:
            by.setdefault(p, []).append((float(t), genre[i]))
        s = [habit_strength(*map(np.array, zip(*sorted(v, reverse=True)))) for v in by.values()]
        return np.mean(np.array(s) > 0)
    assert earned(_rows(default_logs / "interactions_dayparts.csv")) > 0.4
    assert earned(_rows(default_logs / "interactions.csv")) < 0.1
