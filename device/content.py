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

        t0, c0 = time.perf_counter(), time.process_time()
        frames, logmel, info = extract_features(media_path, self.cfg)
        t1, c1 = time.perf_counter(), time.process_time()
        vec = self.embed_features(frames, logmel)
        t2, c2 = time.perf_counter(), time.process_time()
        # CPU time too: what estimates of a box's time scale (device.budget), since wall time
        # on a shared host includes waiting for a core
        info = {**info, "decode_cpu_ms": (c1 - c0) * 1000.0, "model_cpu_ms": (c2 - c1) * 1000.0}
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


# ------------------------------------------------------------------------------ isolated embedding


def _embed_worker(conn, model_path: str, cfg: FeatureConfig, paths: list[str], num_threads: int) -> None:
    """Child process: embed each file, send one message per file, exit."""
    from device.errors import MediaError

    embedder = ContentEmbedder(model_path, cfg, num_threads=num_threads)
    for path in paths:
        try:
            e = embedder.embed_file(path)
            conn.send(("ok", e.vector, e.info, e.decode_ms, e.model_ms))
        except MediaError as err:
            conn.send(("media_error", str(err)))
    conn.close()


def embed_files_isolated(model_path: str | Path, feature_config: FeatureConfig,
                         paths: list[str | Path], *, num_threads: int = 1,
                         timeout_s: float = 120.0) -> list[Embedded | Exception]:
    """Decode and embed media files in a short-lived child process, one result per file.

    Why: decoding pulls FFmpeg and full-size frame buffers into a process (the engine's peak
    resident set went from ~50 to ~130 MB after embedding eight clips), and a hostile file that
    crashes a decoder would take the engine down with it. On a box this is a background job;
    here the job is a child process whose memory goes back to the system when it exits, so the
    engine process only ever holds what ``home()`` needs.

    Returns, per path and in order, an :class:`Embedded` or a
    :class:`~device.errors.MediaError` (a file that cannot be decoded, or the child dying or
    timing out while on that file; the files after it are reported the same way).
    """
    import multiprocessing as mp

    from device.errors import MediaError

    paths = [str(p) for p in paths]
    if not paths:
        return []
    ctx = mp.get_context("spawn")  # a clean interpreter: nothing of the caller's state copied
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_embed_worker, name="tvrec-embed",
                       args=(child, str(model_path), feature_config, paths, num_threads), daemon=True)
    proc.start()
    child.close()
    out: list[Embedded | Exception] = []
    deadline = time.monotonic() + timeout_s
    try:
        for path in paths:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not parent.poll(remaining):
                why = "timed out" if proc.is_alive() else f"exited with code {proc.exitcode}"
                out.append(MediaError(f"{path}: the embedding process {why} on this file"))
                break
            try:
                msg = parent.recv()
            except EOFError:
                proc.join(1.0)
                out.append(MediaError(f"{path}: the embedding process died on this file "
                                      f"(exit code {proc.exitcode})"))
                break
            if msg[0] == "ok":
                out.append(Embedded(np.asarray(msg[1], np.float32), msg[2], msg[3], msg[4]))
            else:
                out.append(MediaError(msg[1]))
    finally:
        parent.close()
        proc.join(5.0)
        if proc.is_alive():
            proc.kill()
            proc.join()
    for path in paths[len(out):]:
        out.append(MediaError(f"{path}: not embedded (the embedding process stopped before it)"))
    return out

