"""Content embeddings on the box: media -> features -> int8 model -> a unit vector.

The bundle's ``content_model.tflite`` maps a programme's keyframes and log-mel window into the
space where co-watched items sit close together. The box uses it for what has no watch logs: cold
catalog items (embedded by the fleet, shipped in the bundle) and the viewer's own recordings
(embedded here, stored in the history database).

Inputs go through the same two normalisation functions training used
(:func:`device.features.normalize_frames`, :func:`device.features.normalize_logmel`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.features import FeatureConfig, normalize_frames, normalize_logmel


def quantize_embedding(vec: np.ndarray) -> tuple[np.ndarray, float]:
    """Symmetric int8 quantisation of one vector: ``vec ~= q * scale``."""
    v = np.asarray(vec, dtype=np.float32)
    peak = float(np.max(np.abs(v))) if v.size else 0.0
    scale = peak / 127.0 if peak > 0 else 1.0
    q = np.clip(np.round(v / scale), -127, 127).astype(np.int8)
    return q, scale


def unit(v: np.ndarray, axis: int = -1) -> np.ndarray:
    """L2-normalise along ``axis`` (zero vectors stay zero)."""
    v = np.asarray(v, dtype=np.float32)
    n = np.linalg.norm(v, axis=axis, keepdims=True)
    return v / np.where(n > 0, n, 1.0)


@dataclass(frozen=True)
class Embedded:
    """A content embedding and how it was made."""

    vector: np.ndarray  # float32 [D], unit norm
    info: dict[str, Any]  # media facts and flags (from device.media)
    decode_ms: float
    model_ms: float


class ContentEmbedder:
    """Runs the bundle's content model on features or on a media file.

    Parameters
    ----------
    model_path : path
        The bundle's ``content_model.tflite``.
    feature_config : FeatureConfig
        The bundle's feature configuration (from its manifest).
    num_threads : int
        Interpreter threads (a box's budget is measured with 1).
    """

    def __init__(self, model_path: str | Path, feature_config: FeatureConfig, *, num_threads: int = 1,
                 use_xnnpack: bool = True):
        from device.runtime import TFLiteModel

        self.cfg = feature_config
        self.model = TFLiteModel(model_path, num_threads=num_threads, use_xnnpack=use_xnnpack)
        self._frames_at, self._logmel_at = _input_slots(self.model.input_details)

    def embed_features(self, frames: np.ndarray, logmel: np.ndarray) -> np.ndarray:
        """uint8 frames [F,S,S,3] and log-mel [T,M] -> unit float32 embedding [D]."""
        x: list = [None, None]
        x[self._frames_at] = normalize_frames(frames)[None]
        x[self._logmel_at] = normalize_logmel(logmel, self.cfg)[None]
        (out,) = self.model.run(x)[:1]
        return unit(out.reshape(-1))

    def embed_file(self, media_path: str | Path) -> Embedded:
        """Decode a media file and embed it. Raises :class:`device.errors.MediaError`."""
        from device.media import extract_features

        t0 = time.perf_counter()
        frames, logmel, info = extract_features(media_path, self.cfg)
        t1 = time.perf_counter()
        vec = self.embed_features(frames, logmel)
        t2 = time.perf_counter()
        return Embedded(vec, info, (t1 - t0) * 1000.0, (t2 - t1) * 1000.0)


def _input_slots(details: list[dict]) -> tuple[int, int]:
    """Positions of the frames (5-D) and log-mel (3-D) inputs. By rank, not by name: shipped
    models are stripped of tensor names."""
    ranks = [len(d["shape"]) for d in details]
    if sorted(ranks) != [3, 5]:
        from device.errors import BundleError

        raise BundleError(f"content model inputs have ranks {ranks}; expected frames (5-D) "
                          "and log-mel (3-D)")
    return ranks.index(5), ranks.index(3)
