"""frame_sampling="keyframe" (the default): which pictures it takes, that its work does not grow
with the recording's length, that old configs keep meaning "exact", and that damage is still
one MediaError."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av", reason="PyAV (media extra) is needed to decode media")

from device.bundle import open_bundle  # noqa: E402
from device.errors import MediaError  # noqa: E402
from device.features import FeatureConfig, log_mel  # noqa: E402
from device.media import extract_features, load_clip  # noqa: E402
from tests.test_media import REAL_CLIPS, VIDEO, _index_picture, _need, _read_index, write_clip  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KEY = FeatureConfig()
EXACT = dataclasses.replace(KEY, frame_sampling="exact")


def test_default_is_keyframe_and_old_configs_mean_exact():
    assert KEY.frame_sampling == "keyframe"
    old = {k: v for k, v in KEY.to_dict().items() if k != "frame_sampling"}
    assert FeatureConfig.from_dict(old).frame_sampling == "exact"  # a manifest without the field
    assert "frame_sampling" not in EXACT.to_dict()  # so its fingerprint is the one it always had
    assert FeatureConfig.from_dict(KEY.to_dict()) == KEY
    assert KEY.fingerprint() != EXACT.fingerprint()
    with pytest.raises(ValueError, match="frame_sampling"):
        FeatureConfig(frame_sampling="nearest")
    # The shipped demo bundle predates the field: it opens (fingerprint unchanged) as "exact".
    manifest = json.loads((ROOT / "demo/bundle/manifest.json").read_text())
    if "frame_sampling" not in manifest["feature_config"]:
        assert open_bundle(ROOT / "demo/bundle", verify="sizes").feature_config.frame_sampling == "exact"


def test_broadcast_gop_takes_the_keyframe_nearest_each_slot(tmp_path):
    # Frame i shows i in binary; 25 fps, 10 s, a keyframe every 12 frames (0.48 s). Slot k's
    # time is (k + 0.5) * 1.25 s; its picture must be the keyframe (a multiple of 12) nearest
    # that time -- never a frame in between.
    path = write_clip(tmp_path / "g12.mp4", size=(192, 192), seconds=10.0,
                      picture=_index_picture, audio=False, gop=12)
    clip = load_clip(path, KEY)
    got = [_read_index(f) for f in clip.frames]
    targets = [(k + 0.5) * 10.0 / KEY.frames * 25 for k in range(KEY.frames)]
    want = [int(min(range(0, 250, 12), key=lambda key: (abs(key - t), key))) for t in targets]
    assert got == want
    assert clip.frame_times == pytest.approx([w / 25 for w in want], abs=1e-6)
    assert clip.flags == ("no_audio",)


def test_slots_without_a_keyframe_take_the_exact_picture(tmp_path):
    # One keyframe for the whole clip (gop 300): slot 0 holds it (frame 0); the other slots
    # have none within half a slot and take the picture displayed at their time.
    path = write_clip(tmp_path / "g300.mp4", size=(192, 192), seconds=10.0,
                      picture=_index_picture, audio=False, gop=300)
    got = [_read_index(f) for f in load_clip(path, KEY).frames]
    exact = [int(np.floor((k + 0.5) * 10.0 / KEY.frames * 25)) for k in range(KEY.frames)]
    assert got[0] == 0 and got[1:] == exact[1:]
    assert [_read_index(f) for f in load_clip(path, EXACT).frames] == exact


def test_work_does_not_grow_with_the_duration(tmp_path):
    # The same picture and GOP, 20 s and 200 s long: keyframe sampling reads about as many
    # packets for either (a GOP per slot); exact sampling too -- but it decodes them all.
    pic = lambda i: np.full((96, 128, 3), (i * 7) % 256, np.uint8)  # noqa: E731
    short = write_clip(tmp_path / "s.mp4", size=(128, 96), seconds=20.0, picture=pic, gop=12)
    long = write_clip(tmp_path / "l.mp4", size=(128, 96), seconds=200.0, picture=pic, gop=12)
    n_short = load_clip(short, KEY).info["packets_read"]
    n_long = load_clip(long, KEY).info["packets_read"]
    assert n_long <= 1.3 * n_short, (n_short, n_long)
    assert load_clip(long, KEY).info["frame_sampling"] == "keyframe"


@pytest.mark.parametrize("name", sorted(REAL_CLIPS))
def test_real_clips_keep_distinct_frames_and_the_same_audio(name):
    path = _need(VIDEO / name)
    frames, logmel, info = extract_features(path, KEY)
    e_frames, e_logmel, e_info = extract_features(path, EXACT)
    assert frames.shape == e_frames.shape and logmel.shape == e_logmel.shape
    assert info["flags"] == e_info["flags"]
    assert len({f.tobytes() for f in frames}) == KEY.frames  # sparse keyframes: exact fallback
    times = np.array(info["frame_times"])
    slot = info["duration"] / KEY.frames
    targets = (np.arange(KEY.frames) + 0.5) * slot
    assert np.all(np.abs(times - targets) <= slot / 2 + 1e-3)
    # One resampler call instead of one per frame, and a shorter preroll: the same signal up
    # to the window's sub-sample phase (<= 0.1 nats of log-mel, as documented in device.media).
    assert float(np.abs(logmel - e_logmel).max()) <= 0.1
    assert float(np.median(np.abs(logmel - e_logmel))) <= 0.01


def test_log_mel_of_the_window_is_the_features_definition(tmp_path):
    path = write_clip(tmp_path / "tone.mp4", seconds=6.0, gop=12, tone_hz=440.0)
    clip = load_clip(path, KEY)
    frames, logmel, _ = extract_features(path, KEY)
    np.testing.assert_array_equal(logmel, log_mel(clip.audio, KEY))


@pytest.mark.parametrize("name", ["smpte-2997.mp4", "big_buck_bunny_0_30.webm"])
def test_truncated_real_clip_is_one_media_error(tmp_path, name):
    data = _need(VIDEO / name).read_bytes()
    cut = tmp_path / f"cut_{name}"
    cut.write_bytes(data[: int(len(data) * 0.3)])
    with pytest.raises(MediaError, match="truncated|not a readable|damaged") as err:
        load_clip(cut, KEY)
    assert str(err.value).startswith(str(cut)) and "\n" not in str(err.value)


@pytest.mark.parametrize("seed", range(4))
def test_corrupted_bytes_never_crash_or_hang(tmp_path, seed):
    names = sorted(REAL_CLIPS)
    src = _need(VIDEO / names[(seed * 3) % len(names)])
    rng = np.random.default_rng(100 + seed)
    data = bytearray(src.read_bytes())
    for i in rng.integers(0, len(data), 300):
        data[i] = int(rng.integers(0, 256))
    bad = tmp_path / f"damaged{src.suffix}"
    bad.write_bytes(bytes(data))
    try:
        clip = load_clip(bad, KEY, time_limit=5.0)
    except MediaError as err:
        assert str(err).startswith(str(bad))
    else:
        assert clip.frames.shape == (KEY.frames, KEY.size, KEY.size, 3)
        assert np.isfinite(clip.audio).all()
