"""The fusion content model: convertible architecture, unit embeddings, repeatable training."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from device.features import FeatureConfig, normalize_frames  # noqa: E402
from models.fusion import FusionConfig, TrainConfig, branch_params, build_fusion_model, fit_fusion  # noqa: E402

CFG = FeatureConfig()


def test_architecture_shapes_and_budget():
    model = build_fusion_model(CFG)
    assert [tuple(t.shape) for t in model.inputs] == [
        (None, CFG.frames, CFG.size, CFG.size, 3), (None, CFG.n_frames, CFG.n_mels)]
    assert tuple(model.output.shape) == (None, FusionConfig().dim)
    assert not any(type(l).__name__ == "TimeDistributed" for l in model.layers)
    params = branch_params(model)
    assert params["video"] <= 100_000, params
    assert {type(l).__name__ for l in model.layers} >= {"DepthwiseConv2D", "LSTM"}
    rng = np.random.default_rng(0)
    x = {"frames": rng.uniform(-1, 1, (3, CFG.frames, CFG.size, CFG.size, 3)).astype(np.float32),
         "logmel": rng.normal(size=(3, CFG.n_frames, CFG.n_mels)).astype(np.float32)}
    e = np.asarray(model(x, training=False))
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)


def test_training_is_repeatable_and_learns():
    """Two runs with one seed give the same weights; training moves embeddings to targets."""
    rng = np.random.default_rng(1)
    n = 24
    frames = rng.integers(0, 256, (n, CFG.frames, CFG.size, CFG.size, 3), dtype=np.uint8)
    logmel = rng.normal(-6, 2, (n, CFG.n_frames, CFG.n_mels)).astype(np.float32)
    # Targets that content can predict: a function of each clip's mean colour.
    colour = frames.reshape(n, -1, 3).mean(1) / 255.0
    targets = np.concatenate([colour, 1 - colour, np.zeros((n, 26))], axis=1).astype(np.float32)
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    tcfg = TrainConfig(epochs=2, batch_size=8, patience=5, genre_weight=0.0)
    train, val = np.arange(16), np.arange(16, 24)
    runs = []
    for _ in range(2):
        model, hist = fit_fusion(frames, logmel, targets, None, train, val, CFG, FusionConfig(),
                                 tcfg, seed=7, progress=False)
        runs.append(np.concatenate([w.ravel() for w in model.get_weights()]))
        assert hist["epochs_run"] == 2 and np.isfinite(hist["loss"]).all()
    np.testing.assert_allclose(runs[0], runs[1], atol=1e-6)
    assert hist["cosine_loss"][-1] < hist["cosine_loss"][0]


@pytest.mark.slow
def test_real_clips_embed_finite_distinct_and_repeatably(shared_data):
    from device.media import extract_features
    from models.fusion import embed

    clips = sorted((shared_data / "media" / "video").glob("*.mp4"))
    feats = [extract_features(c, CFG)[:2] for c in clips]
    frames = np.stack([f for f, _ in feats])
    logmel = np.stack([lm for _, lm in feats])
    import tf_keras as keras

    keras.utils.set_random_seed(3)
    model = build_fusion_model(CFG)
    a = embed(model, frames, logmel, CFG)
    b = embed(model, frames, logmel, CFG)
    assert np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    gram = a @ a.T
    assert (gram[~np.eye(len(a), dtype=bool)] < 0.9999).all(), "clips embed distinctly"


def test_statistics_paths_build_and_can_be_switched_off():
    names = {layer.name for layer in build_fusion_model(CFG).layers}
    assert {"video_colour", "video_motion", "audio_band_mean", "audio_flux", "fusion_stats_dense",
            "fusion_add"} <= names
    plain = build_fusion_model(CFG, FusionConfig(audio_stats=False, video_stats=False))
    assert not {layer.name for layer in plain.layers} & {"video_colour", "audio_band_mean"}
    x = {"frames": np.zeros((2, CFG.frames, CFG.size, CFG.size, 3), np.float32),
         "logmel": np.zeros((2, CFG.n_frames, CFG.n_mels), np.float32)}
    for model in (build_fusion_model(CFG), plain):
        assert np.asarray(model(x, training=False)).shape == (2, FusionConfig().dim)


@pytest.mark.slow
def test_unlabelled_recordings_feed_only_the_distillation_term():
    """Recordings without co-watch data change training only through the teachers' term: without
    teachers they are ignored (bit-identical weights), with teachers the student learns the
    teacher's similarities on recordings of their kind it never saw."""
    from models.teachers.distill import centred_cosine, similarity_spearman

    rng = np.random.default_rng(2)
    n, u = 16, 48
    frames = rng.integers(0, 256, (n, CFG.frames, CFG.size, CFG.size, 3), dtype=np.uint8)
    logmel = rng.normal(-6, 2, (n, CFG.n_frames, CFG.n_mels)).astype(np.float32)
    targets = rng.normal(size=(n, 32)).astype(np.float32)
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    # Unlabelled clips: flat colour fields. The "picture teacher" sees how far each channel is
    # from mid-grey (an untrained student, reading colour linearly, does not: by symmetry its
    # similarities are uncorrelated with those), the "sound teacher" the loudness. The
    # catalog's teacher rows carry no such structure.
    colour = rng.uniform(0, 1, (u + 12, 3))
    u_frames = np.broadcast_to((colour * 255).astype(np.uint8)[:, None, None, None, :],
                               (u + 12, CFG.frames, CFG.size, CFG.size, 3)).copy()
    level = rng.uniform(-9, -3, u + 12)
    u_logmel = (level[:, None, None] + rng.normal(0, 0.3, (u + 12, CFG.n_frames, CFG.n_mels))).astype(np.float32)
    u_teach = {"video": ((colour - 0.5) ** 2).astype(np.float32),
               "audio": np.stack([level, level**2], 1).astype(np.float32)}
    teachers = {"video": rng.normal(size=(n, 3)).astype(np.float32), "audio": rng.normal(size=(n, 2)).astype(np.float32)}
    unl = {"frames": u_frames[:u], "logmel": u_logmel[:u], "video": u_teach["video"][:u], "audio": u_teach["audio"][:u]}
    tcfg = TrainConfig(epochs=80, batch_size=8, learning_rate=1e-2, patience=100, genre_weight=0.0,
                       teacher_weight=8.0)
    train, val = np.arange(16), np.arange(0)  # no validation items: the last epoch's weights

    def fit(**kw):
        model, _ = fit_fusion(frames, logmel, targets, None, train, val, CFG, FusionConfig(), tcfg, seed=3,
                              progress=False, **kw)
        return model

    def weights(m):
        return np.concatenate([w.ravel() for w in m.get_weights()])

    np.testing.assert_array_equal(weights(fit()), weights(fit(unlabelled=unl)))  # no teachers: ignored
    without, with_unl = fit(teachers=teachers), fit(teachers=teachers, unlabelled=unl)
    from models.fusion import branch_embedders

    held = slice(u, u + 12)  # unlabelled-kind clips neither run trained on
    x, t = normalize_frames(u_frames[held]), u_teach["video"][held]
    got = {}
    for name, m in (("without", without), ("with", with_unl)):
        f = np.asarray(branch_embedders(m)["video"](x, training=False))
        got[name] = (similarity_spearman(f, t), float(np.mean((centred_cosine(f) - centred_cosine(t)) ** 2)))
    assert got["with"][0] > got["without"][0] + 0.1, got  # Spearman to the teacher's similarities
    assert got["with"][1] < 0.75 * got["without"][1], got  # the distillation loss itself
