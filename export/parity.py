"""Parity of the shipped model with the trained one: Keras float vs float TFLite vs int8 TFLite.

For each variant, on items the quantiser never saw (held-out warm items and the cold items):
mean and worst cosine to the Keras float embeddings, cold-start NDCG@20 with the embeddings that
variant produces, file size, and host latency (LiteRT, one thread, with and without XNNPACK).

The op profile explains the latency: each branch (the video CNN, the audio LSTM) is converted on
its own, float and int8, and timed the same way, so the cost of each op family shows up as a
difference between variants. (LiteRT's Python API has no per-op timer; branch models are the
honest substitute and need no extra tool.)
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from device.content import unit  # noqa: E402
from device.features import FeatureConfig  # noqa: E402


def embed_tflite(tflite_bytes: bytes, frames_norm: np.ndarray, logmel_norm: np.ndarray,
                 *, use_xnnpack: bool = True) -> np.ndarray:
    """Unit embeddings ``[N, D]`` from a TFLite model, one clip at a time (batch 1)."""
    from device.runtime import TFLiteModel

    from device.content import _input_slots

    model = TFLiteModel(tflite_bytes, num_threads=1, use_xnnpack=use_xnnpack)
    fa, la = _input_slots(model.input_details)
    out = []
    for f, lm in zip(frames_norm, logmel_norm):
        x: list = [None, None]
        x[fa], x[la] = f[None], lm[None]
        out.append(model.run(x)[0].reshape(-1))
    return unit(np.stack(out)) if out else np.zeros((0, 0), np.float32)


def latency_ms(tflite_bytes: bytes, inputs: list[np.ndarray] | None = None, *, use_xnnpack: bool,
               repeats: int = 30, warmup: int = 3) -> dict[str, float]:
    """Median and p90 of ``invoke()`` (1 thread) on zero-filled or given inputs."""
    from device.runtime import load_interpreter

    it = load_interpreter(tflite_bytes, 1, use_xnnpack)
    it.allocate_tensors()
    for n, d in enumerate(it.get_input_details()):
        x = np.zeros(d["shape"], d["dtype"]) if inputs is None else inputs[n]
        it.set_tensor(d["index"], x.astype(d["dtype"]))
    for _ in range(warmup):
        it.invoke()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        it.invoke()
        times.append((time.perf_counter() - t0) * 1000.0)
    return {"p50": float(np.median(times)), "p90": float(np.percentile(times, 90))}


def cosine_stats(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Row-wise cosine between two embedding sets."""
    cos = np.sum(unit(a) * unit(b), axis=1)
    return {"mean_cosine": float(cos.mean()), "min_cosine": float(cos.min()),
            "p05_cosine": float(np.percentile(cos, 5)), "values": cos.astype(float).tolist()}


def branch_models(model, cfg: FeatureConfig):
    """Keras sub-models of the fusion model: the video tower and the audio LSTM, sharing weights."""
    import tf_keras as keras

    inputs = {t.name.split(":")[0]: t for t in model.inputs}
    video = keras.Model(inputs["frames"], model.get_layer("video_frame_mean").output,
                        name="video_branch")
    audio = keras.Model(inputs["logmel"], model.get_layer("audio_lstm").output, name="audio_branch")
    return {"video_cnn": video, "audio_lstm": audio}


def branch_profile(model, cfg: FeatureConfig, frames_norm: np.ndarray, logmel_norm: np.ndarray,
                   repeats: int = 30) -> dict[str, Any]:
    """Float vs int8 latency of each branch alone, with and without XNNPACK (1 thread)."""
    from export.quantize import convert_float, convert_int8, inspect_tflite

    out: dict[str, Any] = {}
    for name, sub in branch_models(model, cfg).items():
        fl = convert_float(sub, cfg)
        q8 = convert_int8(sub, cfg, frames_norm, logmel_norm)
        out[name] = {
            "ops_int8": inspect_tflite(q8).ops,
            "float_ms": latency_ms(fl, use_xnnpack=True, repeats=repeats)["p50"],
            "float_no_xnnpack_ms": latency_ms(fl, use_xnnpack=False, repeats=repeats)["p50"],
            "int8_ms": latency_ms(q8, use_xnnpack=True, repeats=repeats)["p50"],
            "int8_no_xnnpack_ms": latency_ms(q8, use_xnnpack=False, repeats=repeats)["p50"],
        }
    return out


def plot_parity(report: dict[str, Any], path) -> None:
    """Cosine histogram (float TFLite and int8 vs Keras) and latency bars, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, entry in report["variants"].items():
        vals = entry.get("cosine_values")
        if vals and name != "keras_float":
            ax1.hist(vals, bins=40, alpha=0.6, label=f"{name} (mean {np.mean(vals):.4f})")
    ax1.set_xlabel("cosine to Keras float embedding (held-out items)")
    ax1.set_ylabel("items")
    ax1.legend(fontsize=8)
    ax1.set_title("Parity")

    names = [n for n in report["variants"] if "latency_ms" in report["variants"][n]]
    xs = np.arange(len(names))
    with_x = [report["variants"][n]["latency_ms"]["xnnpack"] for n in names]
    without = [report["variants"][n]["latency_ms"]["no_xnnpack"] for n in names]
    ax2.bar(xs - 0.2, with_x, 0.4, label="XNNPACK")
    ax2.bar(xs + 0.2, without, 0.4, label="no XNNPACK")
    ax2.set_xticks(xs, names, fontsize=8)
    ax2.set_ylabel("ms per clip (p50, 1 thread, host)")
    ax2.set_title("Latency")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def int8_branch_embedders(model, cfg: FeatureConfig, frames_norm: np.ndarray, logmel_norm: np.ndarray):
    """The video and audio branches of ``model`` converted to full int8 on their own (calibrated
    on the given normalised features, as the shipped model is), as callables that map a batch
    of normalised inputs to dequantised branch features.

    This is how distillation is scored "on the int8 student" (``models.train_pipeline.train_catalog``
    with teachers): the branch features live inside the shipped int8 model, and converting each
    branch alone is the same calibration and the same kernels.
    """
    from device.runtime import TFLiteModel
    from export.quantize import convert_int8
    from models.fusion import branch_embedders

    out = {}
    for name, sub in branch_embedders(model).items():
        runner = TFLiteModel(convert_int8(sub, cfg, frames_norm, logmel_norm), num_threads=1)

        def run(x: np.ndarray, runner=runner) -> np.ndarray:
            rows = [runner.run([np.asarray(v, np.float32)[None]])[0].reshape(-1) for v in x]
            return np.stack(rows).astype(np.float32) if rows else np.zeros((0, 0), np.float32)

        out[name] = run
    return out
