"""device.media on real clips, synthetic clips written with PyAV, bad inputs, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av", reason="PyAV (media extra) is needed to decode media")

from device.errors import MediaError  # noqa: E402
from device.features import FeatureConfig, mel_center_frequencies, normalize_logmel  # noqa: E402
from device.media import extract_features, load_audio, load_clip  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[2] / "shared/data"
VIDEO = DATA / "media/video"
AUDIO = DATA / "media/audio"
TVREC = Path(sys.executable).parent / "tvrec"
# The picture-at-each-time definition ("exact", what every bundle before frame_sampling means);
# the default "keyframe" sampling is tested in tests/test_media_keyframes.py.
CFG = FeatureConfig(frame_sampling="exact")
KNOWN_FLAGS = {"no_audio", "audio_unreadable", "audio_padded", "frames_repeated", "decode_errors"}

# Durations from shared/data/README.md.
REAL_CLIPS = {
    "archery.mp4": 10.0,
    "big_buck_bunny_0_30.webm": 30.0,
    "big_buck_bunny_432_433.webm": 1.0,
    "chaplin.mp4": 9.6,
    "doc_example2.mp4": 2.0,
    "doc_example3.mp4": 2.0,
    "fire2.mp4": 2.4,
    "smpte-2997.mp4": 10.0,
}


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data absent: {path} (tests read real media from ../shared/data)")
    return path


# --------------------------------------------------------------------------- synthetic clips


def write_clip(path: Path, *, size=(320, 240), fps=25, seconds=5.0, picture=None, tone_hz=440.0,
               audio=True, gop=None, codec="libx264", audio_codec="aac", audio_rate=48000) -> Path:
    """Write a small clip with PyAV; ``picture(i) -> uint8 [H, W, 3]`` draws frame ``i``."""
    w, h = size
    n = int(round(seconds * fps))
    container = av.open(str(path), "w")
    vs = container.add_stream(codec, rate=fps, options={"preset": "ultrafast"} if codec == "libx264" else {})
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    if gop is not None:
        vs.codec_context.gop_size = gop
    if codec == "libx264":
        # Keep B-frames (default) so reordering and non-reference skipping are exercised.
        vs.codec_context.options = {"preset": "ultrafast", "bf": "3", "sc_threshold": "0",
                                    **({"g": str(gop)} if gop else {})}
    aus = None
    if audio:
        aus = container.add_stream(audio_codec, rate=audio_rate)
        aus.layout = "stereo"
    spf = audio_rate // fps  # audio samples per video frame, muxed interleaved
    for i in range(n):
        img = picture(i) if picture else np.zeros((h, w, 3), np.uint8)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
        frame.pts = i
        frame.time_base = Fraction(1, fps)
        for pkt in vs.encode(frame):
            container.mux(pkt)
        if aus is not None:
            t = (np.arange(spf) + i * spf) / audio_rate
            x = (0.3 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)
            af = av.AudioFrame.from_ndarray(np.stack([x, x]), format="fltp", layout="stereo")
            af.sample_rate = audio_rate
            af.pts = i * spf
            for pkt in aus.encode(af):
                container.mux(pkt)
    for stream in (vs, aus):
        if stream is not None:
            for pkt in stream.encode(None):
                container.mux(pkt)
    container.close()
    return path


def _left_red(i: int, w: int = 320, h: int = 240) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = (255, 0, 0)
    return img


BITS = 8


def _index_picture(i: int, size: int = 192) -> np.ndarray:
    """Frame ``i`` drawn as 8 vertical black/white stripes (its index in binary, MSB left)."""
    img = np.zeros((size, size, 3), np.uint8)
    step = size // BITS
    for b in range(BITS):
        if (i >> (BITS - 1 - b)) & 1:
            img[:, b * step : (b + 1) * step] = 255
    return img


def _read_index(frame: np.ndarray) -> int:
    step = frame.shape[1] // BITS
    value = 0
    for b in range(BITS):
        stripe = frame[:, b * step + step // 4 : (b + 1) * step - step // 4]
        value = (value << 1) | int(stripe.mean() > 127)
    return value


@pytest.fixture(scope="module")
def demo_clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("media") / "demo.mp4", picture=_left_red, seconds=5.0)


# --------------------------------------------------------------------------- real clips


@pytest.mark.parametrize("name", sorted(REAL_CLIPS))
def test_every_real_clip_decodes(name):
    path = _need(VIDEO / name)
    frames, logmel, info = extract_features(path, CFG)
    assert frames.shape == (CFG.frames, CFG.size, CFG.size, 3) and frames.dtype == np.uint8
    assert logmel.shape == (CFG.n_frames, CFG.n_mels) and logmel.dtype == np.float32
    assert np.isfinite(logmel).all()
    assert info["duration"] == pytest.approx(REAL_CLIPS[name], abs=0.1)
    assert set(info["flags"]) <= KNOWN_FLAGS
    assert "no_audio" not in info["flags"] and "frames_repeated" not in info["flags"]
    # Short clips cannot fill the 4.1 s audio window; the others must.
    assert ("audio_padded" in info["flags"]) == (REAL_CLIPS[name] < CFG.audio_seconds)
    # Real pictures: every frame has structure, and the clip is not one frame repeated.
    assert all(float(f.std()) > 5.0 for f in frames)
    assert len({f.tobytes() for f in frames}) == CFG.frames
    # Frames sit at (i + 0.5) * duration / F, to within a frame (VFR clips: two).
    times = np.array(info["frame_times"])
    targets = (np.arange(CFG.frames) + 0.5) * info["duration"] / CFG.frames
    fps = info["fps"] or 10.0
    assert np.all(times <= targets + 1e-3) and np.all(targets - times <= 2.0 / fps + 1e-3)
    # The audio is real signal, not the log floor.
    assert float(logmel.max()) > np.log(CFG.log_offset) + 5


def test_real_audio_files():
    wav = _need(AUDIO / "pyaudioanalysis/speech_music_sample.wav")
    clip = load_audio(wav, CFG)
    assert clip.audio.shape == (CFG.audio_samples,) and clip.audio.dtype == np.float32
    assert clip.flags == () and clip.duration == pytest.approx(7.0, abs=0.05)
    assert 0.05 < float(np.abs(clip.audio).max()) <= 1.0
    # An 8 kHz digit of 0.6 s: resampled to 16 kHz, centred, padded both sides.
    digit = load_audio(_need(AUDIO / "fsdd/0_jackson_0.wav"), CFG)
    assert digit.flags == ("audio_padded",) and digit.info["audio_rate"] == 8000
    live = np.flatnonzero(digit.audio)
    assert live.size > 0.5 * digit.duration * CFG.sample_rate
    mid = (live[0] + live[-1]) / 2
    assert abs(mid - CFG.audio_samples / 2) < 0.01 * CFG.sample_rate


# --------------------------------------------------------------------------- synthetic clips


def test_demo_like_clip_colours_and_tone(demo_clip):
    clip = load_clip(demo_clip, CFG)
    assert clip.flags == ()
    assert clip.duration == pytest.approx(5.0, abs=0.05)
    # 320x240 -> 128x96 -> centre crop 96x96 keeps columns 16..111: red left of column 48.
    left, right = clip.frames[:, :, 4:40].astype(int), clip.frames[:, :, 56:92].astype(int)
    assert (left[..., 0] > 200).all() and (left[..., 1:] < 60).all(), "left half red"
    assert (right < 40).all(), "right half black"
    logmel = extract_features(demo_clip, CFG)[1]
    band_440 = int(np.argmin(np.abs(mel_center_frequencies(CFG) - 440.0)))
    assert np.all(logmel.argmax(axis=1) == band_440)
    assert np.all(normalize_logmel(logmel, CFG).argmax(axis=1) == band_440)


@pytest.mark.parametrize("gop", [12, 300])
def test_frame_at_each_target_time_is_exact(tmp_path, gop):
    # Frame i shows i in binary; at 25 fps over 10 s, target (k + 0.5) * 10 / 8 s shows frame
    # floor(target * 25) whatever the GOP: with seeks (gop 12) or one long GOP (300).
    path = write_clip(tmp_path / f"index_g{gop}.mp4", size=(192, 192), seconds=10.0,
                      picture=_index_picture, audio=False, gop=gop)
    clip = load_clip(path, CFG)
    got = [_read_index(f) for f in clip.frames]
    want = [int(np.floor((k + 0.5) * 10.0 / CFG.frames * 25)) for k in range(CFG.frames)]
    assert got == want
    assert clip.flags == ("no_audio",)


def test_webm_vp8_opus_and_fewer_frames_than_targets(tmp_path):
    # Three frames at 5 fps (0.6 s) cannot fill eight targets: repeated and flagged.
    path = write_clip(tmp_path / "short.webm", size=(160, 120), fps=5, seconds=0.6,
                      picture=lambda i: np.full((120, 160, 3), 60 * (i + 1), np.uint8),
                      codec="libvpx", audio_codec="libopus", audio_rate=48000)
    clip = load_clip(path, CFG)
    assert "frames_repeated" in clip.flags and "audio_padded" in clip.flags
    levels = [int(round(f.mean() / 60)) for f in clip.frames]
    assert levels == sorted(levels) and set(levels) == {1, 2, 3}


def test_video_without_audio_gets_silence_and_a_flag(tmp_path):
    path = write_clip(tmp_path / "silent.mp4", picture=_left_red, seconds=2.0, audio=False)
    frames, logmel, info = extract_features(path, CFG)
    assert info["flags"] == ["no_audio"]
    assert frames.shape == (CFG.frames, CFG.size, CFG.size, 3)
    np.testing.assert_allclose(logmel, np.log(CFG.log_offset), rtol=1e-6)
    assert np.all(normalize_logmel(logmel, CFG) == 0.0)
    assert np.all(load_clip(path, CFG).audio == 0.0)


def test_downscale_averages_and_keeps_display_aspect():
    from device.media import _square_rgb

    # 2-px stripes at 1080p average to flat grey at 96x96 (no aliasing/moire).
    img = np.zeros((1080, 1920, 3), np.uint8)
    img[:, (np.arange(1920) // 2) % 2 == 0] = 255
    frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
    out = _square_rgb(frame, 96, None)
    assert out.shape == (96, 96, 3) and abs(float(out.mean()) - 127.5) < 3 and float(out.std()) < 6
    # Anamorphic PAL: 720x576 stored at SAR 64:45 is 1024x576 on screen. A 320x180 stored box
    # is 455x180 displayed, so after scaling it must be ~2.53 times wider than tall.
    img = np.zeros((576, 720, 3), np.uint8)
    img[198:378, 200:520] = 255
    frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
    mask = _square_rgb(frame, 96, Fraction(64, 45))[..., 0] > 127
    width, height = int(mask.any(axis=0).sum()), int(mask.any(axis=1).sum())
    assert width / height == pytest.approx(320 * 64 / 45 / 180, rel=0.08)
    mask = _square_rgb(frame, 96, None)[..., 0] > 127  # square pixels: 320/180
    assert mask.any(axis=0).sum() / mask.any(axis=1).sum() == pytest.approx(320 / 180, rel=0.08)


# --------------------------------------------------------------------------- bad inputs


def _raises_with_path(path: Path, match: str, fn=load_clip) -> None:
    with pytest.raises(MediaError, match=match) as err:
        fn(path, CFG)
    assert str(err.value).startswith(str(path)), str(err.value)
    assert "\n" not in str(err.value)


def test_missing_empty_random_and_folder(tmp_path):
    _raises_with_path(tmp_path / "nope.mp4", "no such file")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    _raises_with_path(empty, "empty file")
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    _raises_with_path(noise, "not a readable media file")
    _raises_with_path(tmp_path, "not a regular file")
    _raises_with_path(tmp_path / "nope.wav", "no such file", fn=load_audio)


@pytest.mark.parametrize("name", ["smpte-2997.mp4", "archery.mp4", "big_buck_bunny_0_30.webm"])
def test_truncated_real_clip(tmp_path, name):
    # smpte and the webm open (index first) and stop early; archery's index is at the end.
    data = _need(VIDEO / name).read_bytes()
    cut = tmp_path / f"cut_{name}"
    cut.write_bytes(data[: int(len(data) * 0.3)])
    _raises_with_path(cut, "truncated|not a readable")


@pytest.mark.parametrize("seed", range(6))
def test_corrupted_bytes_never_crash_or_hang(tmp_path, seed):
    # Random byte damage (scattered, a zeroed block, or in the header): either a clip of the
    # right shapes or a MediaError naming the file -- never another exception. 500 such files
    # were fuzzed during development; these six keep the property checked.
    names = sorted(REAL_CLIPS)
    src = _need(VIDEO / names[seed % len(names)])
    rng = np.random.default_rng(seed)
    data = bytearray(src.read_bytes())
    if seed % 3 == 0:
        for i in rng.integers(0, len(data), 200):
            data[i] = int(rng.integers(0, 256))
    elif seed % 3 == 1:
        at = int(rng.integers(0, len(data) - 20000))
        data[at : at + 20000] = bytes(20000)
    else:
        for i in rng.integers(0, min(len(data), 4000), 20):
            data[i] = int(rng.integers(0, 256))
    bad = tmp_path / f"damaged{src.suffix}"
    bad.write_bytes(bytes(data))
    try:
        clip = load_clip(bad, CFG, time_limit=5.0)
    except MediaError as err:
        assert str(err).startswith(str(bad))
    else:
        assert clip.frames.shape == (CFG.frames, CFG.size, CFG.size, 3)
        assert clip.audio.shape == (CFG.audio_samples,) and np.isfinite(clip.audio).all()


def test_audio_only_file_has_no_video_stream(tmp_path):
    wav = _need(AUDIO / "fsdd/0_jackson_0.wav")
    _raises_with_path(wav, r"no video stream \(streams: audio\)")
    with pytest.raises(MediaError, match="no audio stream"):
        load_audio(write_clip(tmp_path / "v.mp4", seconds=0.5, audio=False), CFG)


def test_zero_length_video_stream(tmp_path):
    # A Matroska file whose video track has no packets (audio only in practice).
    path = tmp_path / "zero.mkv"
    c = av.open(str(path), "w")
    vs = c.add_stream("libx264", rate=25)
    vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
    aus = c.add_stream("aac", rate=48000)
    aus.layout = "mono"
    for i in range(20):
        af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        af.sample_rate, af.pts = 48000, i * 1024
        for pkt in aus.encode(af):
            c.mux(pkt)
    for pkt in aus.encode(None):
        c.mux(pkt)
    c.close()
    _raises_with_path(path, "zero-length video")


def test_decoding_is_bounded_in_time():
    path = _need(VIDEO / "big_buck_bunny_0_30.webm")
    with pytest.raises(MediaError, match="longer than 0 s"):
        load_clip(path, CFG, time_limit=0.0)


# --------------------------------------------------------------------------- CLI


def _tvrec(*args: str) -> subprocess.CompletedProcess:
    if not TVREC.exists():
        pytest.skip(f"console script not installed: {TVREC}")
    return subprocess.run([str(TVREC), *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_cli_features_writes_npz_and_json(tmp_path, demo_clip):
    out = tmp_path / "f.npz"
    r = _tvrec("features", str(demo_clip), "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["frames"]["shape"] == [CFG.frames, CFG.size, CFG.size, 3]
    assert summary["logmel"]["shape"] == [CFG.n_frames, CFG.n_mels]
    assert summary["flags"] == [] and summary["duration"] == pytest.approx(5.0, abs=0.05)
    with np.load(out) as z:
        assert z["frames"].dtype == np.uint8 and z["frames"].shape == (CFG.frames, CFG.size, CFG.size, 3)
        assert z["logmel"].dtype == np.float32 and z["logmel"].shape == (CFG.n_frames, CFG.n_mels)
        assert FeatureConfig.from_dict(json.loads(str(z["config"]))) == FeatureConfig()
        np.testing.assert_array_equal(z["frames"], load_clip(demo_clip, FeatureConfig()).frames)


def test_cli_features_bad_file_is_one_line(tmp_path):
    bad = tmp_path / "broken clip.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(3000))
    r = _tvrec("features", str(bad), "--out", str(tmp_path / "x.npz"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "broken clip.mp4" in lines[0], r.stderr
    assert not (tmp_path / "x.npz").exists()
