"""device.features: the config, the mel filterbank and log-mel against librosa, normalisation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.features import (
    FeatureConfig,
    hz_to_mel,
    log_mel,
    mel_band_edges,
    mel_center_frequencies,
    mel_filterbank,
    mel_power,
    mel_to_hz,
    normalize_frames,
    normalize_logmel,
)

librosa = pytest.importorskip("librosa", reason="librosa (dev extra) is the independent reference")

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[2] / "shared/data"
CFG = FeatureConfig()


def _librosa_mel_power(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """librosa with the parameters our conventions claim to match, as [T, M]."""
    m = librosa.feature.melspectrogram(
        y=np.asarray(y, dtype=np.float64), sr=cfg.sample_rate, n_fft=cfg.n_fft,
        hop_length=cfg.hop, win_length=cfg.n_fft, window="hann", center=False, power=2.0,
        n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax, htk=cfg.mel_scale == "htk", norm="slaney",
    )
    return m.T


def _sine(freq: float, cfg: FeatureConfig = CFG, amp: float = 0.5) -> np.ndarray:
    t = np.arange(cfg.audio_samples) / cfg.sample_rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# --------------------------------------------------------------------------- config


def test_defaults_and_derived_window():
    assert (CFG.frames, CFG.size, CFG.sample_rate) == (8, 96, 16000)
    assert 64 <= CFG.n_frames <= 128 and 32 <= CFG.n_mels <= 64
    assert CFG.audio_samples == CFG.n_fft + (CFG.n_frames - 1) * CFG.hop == 66048
    assert 4.0 <= CFG.audio_seconds <= 6.0


def test_dict_json_roundtrip_and_fingerprint():
    d = CFG.to_dict()
    assert FeatureConfig.from_dict(d) == CFG
    assert FeatureConfig.from_dict(json.loads(json.dumps(d))) == CFG
    # JSON writers may turn 8000.0 into 8000: still the same config and fingerprint.
    as_ints = {**d, "fmax": 8000, "fmin": 20}
    assert FeatureConfig.from_dict(as_ints).fingerprint() == CFG.fingerprint()
    fp = CFG.fingerprint()
    assert len(fp) == 64 and int(fp, 16) >= 0
    assert FeatureConfig().fingerprint() == fp  # stable across instances
    assert FeatureConfig(n_mels=64).fingerprint() != fp
    assert FeatureConfig(log_offset=1e-5).fingerprint() != fp
    assert json.loads(CFG.to_json()) == d
    with pytest.raises(ValueError, match="unknown field"):
        FeatureConfig.from_dict({**d, "dither": 0.1})
    with pytest.raises(Exception):
        CFG.n_mels = 64  # frozen
    assert {CFG: 1}[FeatureConfig()] == 1  # hashable: usable as a cache key


@pytest.mark.parametrize(
    "kwargs",
    [{"n_mels": 0}, {"hop": -1}, {"frames": 2.5}, {"fmax": 9000.0}, {"fmin": 9000.0},
     {"log_offset": 0.0}, {"mel_scale": "bark"}, {"norm_std_floor": 0.0}, {"n_frames": True}],
)
def test_invalid_config_is_refused(kwargs):
    with pytest.raises(ValueError):
        FeatureConfig(**kwargs)


# --------------------------------------------------------------------------- mel scale & filterbank


@given(st.floats(min_value=0.0, max_value=24000.0, allow_nan=False))
def test_mel_scale_inverts(hz):
    for scale in ("slaney", "htk"):
        assert float(mel_to_hz(hz_to_mel(hz, scale), scale)) == pytest.approx(hz, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("scale", ["slaney", "htk"])
def test_filterbank_equals_librosa(scale):
    cfg = FeatureConfig(mel_scale=scale)
    ref = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin,
                              fmax=cfg.fmax, htk=scale == "htk", norm="slaney", dtype=np.float64)
    ours = mel_filterbank(cfg)
    assert ours.shape == ref.shape == (cfg.n_mels, cfg.n_fft // 2 + 1)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7 * ref.max())


def test_filterbank_hand_checked_properties():
    fb = mel_filterbank(CFG).astype(np.float64)
    centres = mel_center_frequencies(CFG)
    edges = mel_band_edges(CFG)
    df = CFG.sample_rate / CFG.n_fft
    assert (fb >= 0).all()
    assert (fb.max(axis=1) > 0).all(), "no empty band"
    assert np.all(np.diff(centres) > 0)
    assert edges[0] == pytest.approx(CFG.fmin) and edges[-1] == pytest.approx(CFG.fmax)
    # Slaney: evenly spaced centres below 1 kHz (linear part), widening above.
    lin = np.diff(centres[centres < 1000])
    np.testing.assert_allclose(lin, lin[0], rtol=1e-9)
    assert np.diff(centres)[-1] > 5 * lin[0]
    # Each triangle peaks at the FFT bin nearest its centre and has area ~1 (Slaney norm).
    peak_bins = fb.argmax(axis=1)
    assert np.all(np.abs(peak_bins * df - centres) <= df)
    np.testing.assert_allclose(fb.sum(axis=1) * df, 1.0, rtol=0.05)
    # Two neighbouring bands overlap; bands two apart do not.
    assert (fb[:-1] * fb[1:]).sum(axis=1).min() > 0
    assert (fb[:-2] * fb[2:]).sum() == 0


@pytest.mark.parametrize("freq", [440.0, 1000.0, 3000.0])
def test_pure_tone_peaks_in_its_band(freq):
    lm = log_mel(_sine(freq), CFG)
    edges = mel_band_edges(CFG)
    # The band whose centre is nearest the tone; it also contains the tone.
    expected = int(np.argmin(np.abs(mel_center_frequencies(CFG) - freq)))
    assert edges[expected] < freq < edges[expected + 2]
    assert np.all(lm.argmax(axis=1) == expected)
    # Far from the tone only window leakage is left: > 60 dB (13.8 nats) below the peak.
    far = np.abs(mel_center_frequencies(CFG) - freq) > 0.5 * freq
    assert lm[:, expected].mean() - lm[:, far].max() > 13.8


# --------------------------------------------------------------------------- log-mel vs librosa


def _real_window() -> np.ndarray:
    wav = DATA / "media/audio/pyaudioanalysis/speech_music_sample.wav"
    if not wav.is_file():
        pytest.skip(f"shared data absent: {wav}")
    pytest.importorskip("av", reason="PyAV (media extra) decodes the real recording")
    from device.media import load_audio

    return load_audio(wav, CFG).audio


@pytest.mark.parametrize("scale", ["slaney", "htk"])
@pytest.mark.parametrize("signal", ["noise", "chirp", "real"])
def test_mel_power_and_log_mel_match_librosa(signal, scale):
    cfg = FeatureConfig(mel_scale=scale)
    n = cfg.audio_samples
    if signal == "noise":
        y = (0.1 * np.random.default_rng(0).standard_normal(n)).astype(np.float32)
    elif signal == "chirp":
        t = np.arange(n) / cfg.sample_rate
        y = (0.3 * np.sin(2 * np.pi * (50 * t + 900 * t**2))).astype(np.float32)
    else:
        y = _real_window()
    ref = _librosa_mel_power(y, cfg)
    ours = mel_power(y, cfg)
    assert ours.shape == ref.shape == (cfg.n_frames, cfg.n_mels)
    assert ours.dtype == np.float32
    # Relative error of the mel power, element-wise, for every band with real energy.
    mask = ref > 1e-9 * ref.max()
    rel = np.abs(ours[mask] - ref[mask]) / ref[mask]
    assert rel.max() <= 1e-4, rel.max()
    lm = log_mel(y, cfg)
    ref_lm = np.log(ref + cfg.log_offset)
    # 1e-4 relative in power is 1e-4 nats in log; float32 output adds ~1e-6 relative.
    np.testing.assert_allclose(lm, ref_lm, rtol=0, atol=2e-4)


def test_log_mel_shapes_padding_and_silence():
    lm = log_mel(np.zeros(CFG.audio_samples, np.float32), CFG)
    assert lm.shape == (CFG.n_frames, CFG.n_mels) and lm.dtype == np.float32
    np.testing.assert_allclose(lm, np.log(CFG.log_offset), rtol=1e-6)
    # Shorter input is zero-padded at the end; longer is cut: both keep the shape.
    y = _sine(440.0)
    short = log_mel(y[: CFG.audio_samples // 2], CFG)
    assert short.shape == lm.shape
    np.testing.assert_allclose(short[: CFG.n_frames // 4], log_mel(y, CFG)[: CFG.n_frames // 4], atol=1e-5)
    assert log_mel(np.concatenate([y, y]), CFG).shape == lm.shape
    with pytest.raises(ValueError, match="mono"):
        log_mel(np.zeros((2, CFG.audio_samples)), CFG)


# --------------------------------------------------------------------------- normalisation


@settings(max_examples=25, deadline=None)
@given(st.floats(min_value=0.1, max_value=20.0))
def test_normalized_log_mel_ignores_gain(gain):
    y = (0.2 * np.random.default_rng(1).standard_normal(CFG.audio_samples)).astype(np.float32)
    y[::7] += _sine(700.0)[::7]
    a = normalize_logmel(log_mel(y, CFG), CFG)
    b = normalize_logmel(log_mel((gain * y).astype(np.float32), CFG), CFG)
    # Exact up to the log floor (log_offset), negligible at these levels.
    np.testing.assert_allclose(a, b, atol=2e-3)


def test_normalize_logmel_statistics_and_silence():
    x = log_mel(_sine(440.0) + 0.01 * np.random.default_rng(2).standard_normal(CFG.audio_samples), CFG)
    z = normalize_logmel(x, CFG)
    assert z.dtype == np.float32 and z.shape == x.shape
    assert abs(float(z.mean())) < 1e-5 and float(z.std()) == pytest.approx(1.0, rel=1e-4)
    silent = normalize_logmel(log_mel(np.zeros(CFG.audio_samples), CFG), CFG)
    assert np.all(silent == 0.0), "no audio -> the neutral all-zero input"
    # Near-constant input is not blown up to unit variance (std floor).
    flat = np.full_like(x, -5.0)
    flat[0, 0] += 0.01
    assert np.abs(normalize_logmel(flat, CFG)).max() < 0.05


def test_normalize_frames():
    f = np.array([[0, 255], [127, 128]], dtype=np.uint8)
    out = normalize_frames(f)
    assert out.dtype == np.float32 and out.shape == f.shape
    np.testing.assert_allclose(out, [[-1.0, 1.0], [127 / 127.5 - 1, 128 / 127.5 - 1]], atol=1e-7)
    with pytest.raises(ValueError, match="uint8"):
        normalize_frames(f.astype(np.float32))


def test_device_imports_without_the_media_extra():
    # device.media imports PyAV lazily: importing it must not load av (the box may lack it).
    code = "import sys, device, device.features, device.media; sys.exit('av' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
