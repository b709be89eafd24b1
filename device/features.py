"""The one definition of media preprocessing, shared by training (fleet) and the box.

Everything the content model sees goes through here: :func:`log_mel` turns a mono 16 kHz
waveform into a ``[T, M]`` log-mel matrix, :func:`normalize_logmel` and :func:`normalize_frames`
turn stored features into model inputs. The parameters live in one frozen :class:`FeatureConfig`
that every bundle manifest records (``to_dict()`` / ``from_dict()``, ``fingerprint()``), so a
model is never fed features computed differently from the ones it was trained on.

numpy only (this module ships to the box). Decoding media files lives in :mod:`device.media`.

Conventions (checked against librosa in ``tests/test_features.py``):

* frames are taken with no centre padding: frame ``t`` covers samples ``[t*hop, t*hop + n_fft)``,
  so exactly ``T`` frames need ``audio_samples = n_fft + (T-1)*hop`` samples;
* periodic Hann window, power spectrum ``|rfft|**2`` (no scaling);
* Slaney mel scale (linear below 1 kHz, logarithmic above) with Slaney area normalisation
  (each triangle is scaled by ``2 / bandwidth``), i.e. librosa's defaults ``htk=False,
  norm='slaney'``; ``mel_scale='htk'`` selects the HTK formula (still area-normalised);
* ``log(mel + log_offset)`` with the natural log.
"""

from __future__ import annotations

import dataclasses
import json
from importlib import import_module
from dataclasses import dataclass
from typing import Any

import numpy as np

_MEL_SCALES = ("slaney", "htk")
FRAME_SAMPLINGS = ("keyframe", "exact")
#: Fields added after configs were first recorded, with the value that reproduces what configs
#: without them meant: read for a missing key, and not written when the value is this one.
LEGACY: dict[str, Any] = {"frame_sampling": "exact"}


@dataclass(frozen=True)
class FeatureConfig:
    """Every parameter of media -> features. Frozen: a config is a value recorded in manifests.

    Defaults, and why (a small LSTM over audio frames plus a few video keyframes on a TV box):

    * ``sample_rate=16000``: speech and most of the timbre of music are below 8 kHz; 16 kHz
      halves the FFT work of 32 kHz and matches common audio-tagging front ends.
    * ``n_fft=1024`` (64 ms) and ``hop=512`` (32 ms): a power-of-two FFT whose 15.6 Hz bin spacing
      resolves even the narrowest low mel band (~146 Hz wide, ~9 bins, so no empty filters),
      and 50 % Hann overlap, which sums to a constant (COLA), so every sample weighs the same --
      no event falls between frames. 31 frames/s keeps beat- and syllable-rate dynamics.
    * ``n_frames=128`` (T): 128 LSTM steps cover ``1024 + 127*512 = 66048`` samples = 4.13 s of
      audio, enough to tell speech, music, crowd and action scenes apart, while the per-clip LSTM
      cost stays tiny (128 steps of a 40-dim input).
    * ``n_mels=40``, ``fmin=20``, ``fmax=8000``: 40 bands is the classic compact speech/music
      front end (a small LSTM input); 20 Hz drops DC and sub-audible rumble; 8 kHz = Nyquist.
    * ``log_offset=1e-6``: floors the log near -75 dBFS noise, so silence and dither map to a
      finite constant instead of ``-inf`` and quiet hiss does not dominate.
    * ``norm_std_floor=0.5``: see :func:`normalize_logmel`.
    * ``frames=8``, ``size=96``: eight 96x96 RGB frames evenly spaced over the clip -- enough for
      a small conv tower to see the scene types of a programme at a few ms per frame on the box.
    * ``frame_sampling="keyframe"``: which picture stands for each of the ``frames`` times (see
      :mod:`device.media`). ``"keyframe"``: the keyframe nearest the time if one lies within
      its slot (``duration / frames`` wide), else the exact picture -- one intra frame decoded
      per slot, so the cost does not grow with the recording's length (broadcast GOPs are
      0.5-2 s; a programme's slot is minutes). ``"exact"``: the picture displayed at the time,
      decoded forward from the keyframe before it -- a GOP of decoding per frame. Manifests
      written before this field existed mean ``"exact"`` (:meth:`from_dict`), and an
      ``"exact"`` config is written without the field, so their fingerprints are unchanged.
    """

    frames: int = 8
    size: int = 96
    sample_rate: int = 16000
    n_fft: int = 1024
    hop: int = 512
    n_mels: int = 40
    fmin: float = 20.0
    fmax: float = 8000.0
    log_offset: float = 1e-6
    n_frames: int = 128
    mel_scale: str = "slaney"
    norm_std_floor: float = 0.5
    frame_sampling: str = "keyframe"

    def __post_init__(self) -> None:
        for name in ("frames", "size", "sample_rate", "n_fft", "hop", "n_mels", "n_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"FeatureConfig.{name} must be a positive int, got {value!r}")
        if not 0.0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(
                f"FeatureConfig needs 0 <= fmin < fmax <= sample_rate/2, got fmin={self.fmin}, "
                f"fmax={self.fmax}, sample_rate={self.sample_rate}"
            )
        if not self.log_offset > 0:
            raise ValueError(f"FeatureConfig.log_offset must be > 0, got {self.log_offset!r}")
        if not self.norm_std_floor > 0:
            raise ValueError(f"FeatureConfig.norm_std_floor must be > 0, got {self.norm_std_floor!r}")
        if self.frame_sampling not in FRAME_SAMPLINGS:
            raise ValueError(f"FeatureConfig.frame_sampling must be one of {FRAME_SAMPLINGS}, "
                             f"got {self.frame_sampling!r}")
        if self.mel_scale not in _MEL_SCALES:
            raise ValueError(f"FeatureConfig.mel_scale must be one of {_MEL_SCALES}, got {self.mel_scale!r}")

    @property
    def audio_samples(self) -> int:
        """Samples of audio that yield exactly ``n_frames`` frames (no centre padding)."""
        return self.n_fft + (self.n_frames - 1) * self.hop

    @property
    def audio_seconds(self) -> float:
        """Length of the audio window in seconds."""
        return self.audio_samples / self.sample_rate

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field (what a bundle manifest records); fields at
        their legacy value (:data:`LEGACY`) are left out, so configs that existed before those
        fields keep their fingerprints."""
        d = dataclasses.asdict(self)
        for name, old in LEGACY.items():
            if d[name] == old:
                del d[name]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureConfig:
        """Inverse of :meth:`to_dict`. Unknown keys are refused: they mean a newer preprocessing.

        Missing keys take today's defaults, so a manifest written before a field existed still
        loads -- but only if that default reproduces the old behaviour, which adding a field must
        guarantee.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"FeatureConfig: unknown field(s) {unknown}")
        kwargs = {**LEGACY, **data}  # a field the manifest lacks: the behaviour it was written with
        # JSON has one number type: give float fields floats so equality and fingerprint hold.
        for f in dataclasses.fields(cls):
            if f.name in kwargs and f.type in ("float", float) and isinstance(kwargs[f.name], int):
                kwargs[f.name] = float(kwargs[f.name])
        return cls(**kwargs)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): the input of :meth:`fingerprint`."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def fingerprint(self) -> str:
        """sha256 hex digest of :meth:`to_json`; equal configs give equal fingerprints."""
        return sha256(self.to_json().encode("utf-8")).hexdigest()


def sha256(data: bytes = b""):
    """A sha256 hash object, from CPython's built-in implementation when there is one.

    Same digests as ``hashlib.sha256``; ``hashlib`` itself maps OpenSSL's libcrypto (~3 MB
    resident) into the process, which the box's engine would pay just to fingerprint a
    200-byte feature config when it opens a bundle.
    """
    for name in ("_sha2", "_sha256"):  # CPython >= 3.12, 3.11
        try:
            return import_module(name).sha256(data)
        except (ImportError, AttributeError):
            continue
    import hashlib

    return hashlib.sha256(data)


# --------------------------------------------------------------------------- mel scale

_F_SP = 200.0 / 3  # Slaney: Hz per mel below 1 kHz
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP  # 15
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray | float, scale: str = "slaney") -> np.ndarray:
    """Frequency in Hz -> mel (``scale`` 'slaney': linear below 1 kHz, log above; or 'htk')."""
    hz = np.asarray(hz, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + hz / 700.0)
    lin = hz / _F_SP
    log = _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(hz >= _MIN_LOG_HZ, log, lin)


def mel_to_hz(mel: np.ndarray | float, scale: str = "slaney") -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    lin = _F_SP * mel
    log = _MIN_LOG_HZ * np.exp(_LOGSTEP * (np.maximum(mel, _MIN_LOG_MEL) - _MIN_LOG_MEL))
    return np.where(mel >= _MIN_LOG_MEL, log, lin)


def mel_band_edges(cfg: FeatureConfig) -> np.ndarray:
    """``n_mels + 2`` frequencies in Hz, evenly spaced in mel from fmin to fmax.

    Band ``m`` rises from ``edges[m]``, peaks at ``edges[m+1]`` (its centre) and falls to zero at
    ``edges[m+2]``.
    """
    lo, hi = hz_to_mel(cfg.fmin, cfg.mel_scale), hz_to_mel(cfg.fmax, cfg.mel_scale)
    return mel_to_hz(np.linspace(lo, hi, cfg.n_mels + 2), cfg.mel_scale)


def mel_center_frequencies(cfg: FeatureConfig) -> np.ndarray:
    """Centre frequency in Hz of each of the ``n_mels`` bands, ascending."""
    return mel_band_edges(cfg)[1:-1]


def mel_filterbank(cfg: FeatureConfig) -> np.ndarray:
    """Triangular mel filters, float32 ``[n_mels, n_fft//2 + 1]``, Slaney area-normalised.

    Each row is a triangle over the rfft bin frequencies ``k * sr / n_fft`` peaking at 1 at the
    band centre, then scaled by ``2 / (upper_edge - lower_edge)`` so that every band integrates to
    about one (constant energy per band for white noise).
    """
    return _mel_filterbank64(cfg).astype(np.float32)


def _mel_filterbank64(cfg: FeatureConfig) -> np.ndarray:
    edges = mel_band_edges(cfg)
    freqs = np.arange(cfg.n_fft // 2 + 1, dtype=np.float64) * (cfg.sample_rate / cfg.n_fft)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / (centre - lower)
    falling = (upper - freqs[None, :]) / (upper - centre)
    tri = np.maximum(0.0, np.minimum(rising, falling))
    return tri * (2.0 / (edges[2:] - edges[:-2]))[:, None]


# Filterbanks and windows are tiny but rebuilt per call would dominate log_mel's cost: cache them
# by config (configs are frozen and hashable).
_CACHE: dict[FeatureConfig, tuple[np.ndarray, np.ndarray]] = {}


def _tables(cfg: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    tables = _CACHE.get(cfg)
    if tables is None:
        n = np.arange(cfg.n_fft, dtype=np.float64)
        window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / cfg.n_fft)  # periodic Hann (fftbins=True)
        tables = (window, np.ascontiguousarray(_mel_filterbank64(cfg).T))
        if len(_CACHE) < 16:
            _CACHE[cfg] = tables
    return tables


# --------------------------------------------------------------------------- audio features


def mel_power(audio: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Mel-band power ``[T, n_mels]`` (float32) of a mono waveform, before the log.

    Parameters
    ----------
    audio : np.ndarray
        1-D float waveform at ``cfg.sample_rate``, nominally in [-1, 1]. Shorter than
        ``cfg.audio_samples`` is zero-padded at the end; longer is cut to the first
        ``audio_samples`` samples (callers pick the window, see :func:`device.media.load_clip`).
    cfg : FeatureConfig

    Returns
    -------
    np.ndarray
        float32 ``[cfg.n_frames, cfg.n_mels]``.
    """
    x = np.asarray(audio)
    if x.ndim != 1:
        raise ValueError(f"log_mel expects mono 1-D audio, got shape {x.shape}")
    need = cfg.audio_samples
    x = x.astype(np.float64, copy=False)[:need]
    if x.shape[0] < need:
        x = np.concatenate([x, np.zeros(need - x.shape[0])])
    window, fb_t = _tables(cfg)
    # Strided view of the T overlapping frames, no copy; the window multiply makes the one copy.
    frames = np.lib.stride_tricks.sliding_window_view(x, cfg.n_fft)[:: cfg.hop]
    # float64 through the FFT: the cost is negligible here (T x n_fft) and it keeps
    # low-energy bands accurate relative to loud ones.
    spec = np.fft.rfft(frames * window, axis=1)
    power = spec.real**2 + spec.imag**2
    return (power @ fb_t).astype(np.float32)


def log_mel(audio: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Log-mel spectrogram ``[T, M]`` float32: ``log(mel_power(audio) + cfg.log_offset)``.

    See :func:`mel_power` for the framing; the result is the raw log-mel that is stored in
    feature files. The model consumes :func:`normalize_logmel` of it.
    """
    return np.log(mel_power(audio, cfg).astype(np.float64) + cfg.log_offset).astype(np.float32)


def normalize_logmel(x: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Per-clip standardisation of a log-mel matrix: ``(x - mean) / max(std, norm_std_floor)``.

    One mean and one std over the whole ``[T, M]`` clip (not per band), so the spectral shape
    (bass vs treble) and the dynamics over time are kept while the overall gain -- broadcast
    level, the box's volume path, the 1/sqrt(2) stereo downmix -- is removed: a clip and the same
    clip 20 dB quieter give the same model input (while above the log floor).

    The std floor (natural-log units) keeps near-constant input -- digital silence, a steady
    hum, a clip without audio -- from being blown up to unit variance: pure silence maps to all
    zeros, the neutral input.
    """
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean()
    std = x.std()
    return ((x - mean) / max(std, cfg.norm_std_floor)).astype(np.float32)


def normalize_frames(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB frames -> float32 in [-1, 1] (``x / 127.5 - 1``), same shape.

    Symmetric around zero so int8 quantisation of the conv input loses nothing to an offset.
    """
    f = np.asarray(frames)
    if f.dtype != np.uint8:
        raise ValueError(f"normalize_frames expects uint8 frames, got {f.dtype}")
    return f.astype(np.float32) * np.float32(1.0 / 127.5) - np.float32(1.0)
