"""From a trained model and its catalog to a versioned device bundle, with proof of parity.

``tvrec export --model DIR --catalog DIR --out DIR`` runs :func:`export_bundle`:

1. load the trained fusion model (``tvrec train`` output) and the catalog's cached features;
2. convert: float TFLite, int8 by post-training quantisation (PTQ), int8 by quantisation-aware
   fine-tuning (QAT) -- see :mod:`export.quantize`;
3. parity on items the quantiser never saw (validation warm items and all cold items): cosine to
   the Keras embeddings, cold-start NDCG@20 with each variant's embeddings, size, latency, and a
   per-branch profile (:mod:`export.parity`); choose the int8 variant by the numbers;
4. package with the steps ``tvrec bundle build`` shares (:mod:`export.pipeline`: learn the CF
   table, write ``OUT/bundle/``, sign), then ``OUT/bundle.tar.gz``; write
   ``OUT/float.tflite`` (to re-check parity independently), ``OUT/report.json`` and
   ``OUT/parity.png``.

What the bundle's item embeddings hold: for a **warm** item its collaborative representation
(the CF target the content model was trained to predict), for a **cold** item the int8 model's
embedding of its clip -- exactly what the box computes for a recording. Both live in one space,
so "New for you" ranks cold items against a profile's history, as the cold-start evaluation does.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import json  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

#: Keep cold-start NDCG within this relative drop of the float model (issue target: 3%).
MAX_NDCG_DROP = 0.03
#: Mean cosine (int8 vs Keras float) an int8 variant must reach to be shippable.
MIN_MEAN_COSINE = 0.98
#: Clips used to calibrate int8 ranges (warm training items only).
CALIBRATION_ITEMS = 128


def _model_dir(path: Path) -> tuple[Path, Path]:
    """Accept the ``tvrec train`` output folder or its ``model/`` subfolder."""
    path = Path(path)
    if (path / "model" / "config.json").is_file():
        return path / "model", path
    if (path / "config.json").is_file():
        return path, path.parent
    from device.errors import DataFormatError

    raise DataFormatError(f"{path}: not a trained model (no model/config.json; run `tvrec train`)")


def neighbour_table_for(cat, X, k: int):
    """The shipped CF table over *all* catalog rows: learned on warm items, cold rows empty
    (:func:`export.pipeline.learn_step`, as a :class:`device.cf.NeighbourTable`)."""
    from device.cf import NeighbourTable
    from export.pipeline import learn_step

    learned = learn_step(X, ~np.asarray(cat.cold, bool), k)
    return NeighbourTable(np.asarray([str(i) for i in cat.item_ids], dtype=object),
                          learned.neighbours, learned.weights, learned.popularity), learned.model


def quantize_rows(emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row symmetric int8 (:func:`export.pipeline.quantize_rows`)."""
    from export.pipeline import quantize_rows as q

    return q(emb)


@dataclass
class _Trained:
    """What :func:`load_step` reads: the Keras model, its catalog, features and CF targets."""

    model: Any
    cfg: Any
    fcfg: Any
    model_dir: Path
    cat: Any
    frames: np.ndarray
    logmel: np.ndarray
    X: Any
    targets: np.ndarray
    train_idx: np.ndarray
    held_out: np.ndarray
    calib: np.ndarray


def load_step(model_path, catalog_dir, *, seed: int, progress: bool) -> _Trained:
    """The trained model, the catalog's features and logs, the CF targets, and the split:
    validation warm items + cold items are held out (no quantiser sees them), calibration
    clips come from the training items."""
    from models.catalog import load_catalog
    from models.coldstart import interaction_matrix
    from models.feature_cache import load_or_build_features
    from models.fusion import configure_tensorflow, load_model
    from models.train_pipeline import split_warm

    model_dir, train_dir = _model_dir(Path(model_path))
    configure_tensorflow(seed)
    model, cfg, fcfg = load_model(model_dir)
    cat = load_catalog(catalog_dir)
    ids, frames, logmel = load_or_build_features(catalog_dir, cfg, progress=progress)
    if ids.tolist() != cat.item_ids.tolist():
        from device.errors import DataFormatError

        raise DataFormatError(f"{catalog_dir}: features do not match the catalog's items")
    X = interaction_matrix(cat)
    targets = np.zeros((cat.n_items, fcfg.dim), np.float32)
    t_ids = json.loads((train_dir / "cf_target_ids.json").read_text(encoding="utf-8"))
    rows = np.array([cat.item_index(i) for i in t_ids], dtype=np.int64)
    targets[rows] = np.load(train_dir / "cf_targets.npy")
    warm = np.flatnonzero(~cat.cold)
    trainable = warm[np.linalg.norm(targets[warm], axis=1) > 0.5]
    train_rep = json.loads((train_dir / "report.json").read_text(encoding="utf-8"))
    val_fraction = train_rep.get("train_config", {}).get("val_fraction", 0.15)
    train_idx, val_idx = split_warm(trainable, val_fraction, train_rep.get("seed", seed))
    held_out = np.sort(np.concatenate([val_idx, np.flatnonzero(cat.cold)]))
    rng = np.random.default_rng(seed)
    calib = np.sort(rng.choice(train_idx, min(CALIBRATION_ITEMS, len(train_idx)), replace=False))
    return _Trained(model, cfg, fcfg, model_dir, cat, frames, logmel, X, targets, train_idx,
                    held_out, calib)


def convert_step(t: _Trained, *, qat_epochs: int, seed: int, progress: bool
                 ) -> tuple[dict[str, bytes | None], dict[str, str], Any]:
    """The variants: float TFLite, int8 PTQ per channel and per tensor, int8 QAT. Returns the
    stripped flatbuffers (None for the Keras reference), each one's minimum runtime version
    (read before stripping: the metadata goes with the strings) and the QAT history."""
    from export.quantize import (annotate_for_qat, convert_float, convert_int8, fine_tune_qat,
                                 min_runtime_version, strip_strings)
    from models.fusion import model_inputs

    x_all = model_inputs(t.frames, t.logmel, t.cfg)
    fr, lm = x_all["frames"][t.calib], x_all["logmel"][t.calib]
    float_bytes = convert_float(t.model, t.cfg)
    ptq_bytes = convert_int8(t.model, t.cfg, fr, lm)
    ptq_pt_bytes = convert_int8(t.model, t.cfg, fr, lm, per_channel=False)
    qat_model = annotate_for_qat(t.model)
    qat_hist = fine_tune_qat(qat_model, x_all["frames"][t.train_idx], x_all["logmel"][t.train_idx],
                             t.targets[t.train_idx], epochs=qat_epochs, seed=seed,
                             progress=progress)
    qat_bytes = convert_int8(qat_model, t.cfg, fr, lm)
    variants = {"keras_float": None, "float_tflite": float_bytes, "int8_ptq": ptq_bytes,
                "int8_ptq_per_tensor": ptq_pt_bytes, "int8_qat": qat_bytes}
    # What ships is stripped of names (float too, so sizes compare like with like).
    runtime_version = {n: min_runtime_version(b) for n, b in variants.items() if b is not None}
    variants = {n: (None if b is None else strip_strings(b)) for n, b in variants.items()}
    return variants, runtime_version, qat_hist


def parity_step(t: _Trained, variants: dict[str, bytes | None], runtime_version: dict[str, str],
                seed: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Each variant's embeddings, cold-start NDCG/recall, and for the TFLite ones cosine to
    Keras on the held-out items, size, ops and latency."""
    from export.parity import cosine_stats, embed_tflite, latency_ms
    from export.quantize import inspect_tflite
    from models.coldstart import evaluate_cold_start
    from models.fusion import embed, model_inputs

    x_all = model_inputs(t.frames, t.logmel, t.cfg)
    keras_emb = embed(t.model, t.frames, t.logmel, t.cfg)
    report: dict[str, Any] = {}
    embeddings: dict[str, np.ndarray] = {}
    for name, blob in variants.items():
        emb = keras_emb if blob is None else embed_tflite(blob, x_all["frames"], x_all["logmel"])
        embeddings[name] = emb
        cold = evaluate_cold_start(t.cat, emb, t.targets, t.X, seed=seed)
        entry: dict[str, Any] = {"cold_start_ndcg@20": cold["ndcg@20"],
                                 "cold_start_recall@20": cold["recall@20"]}
        if blob is not None:
            stats = cosine_stats(emb[t.held_out], keras_emb[t.held_out])
            entry.update(mean_cosine=stats["mean_cosine"], min_cosine=stats["min_cosine"],
                         p05_cosine=stats["p05_cosine"], cosine_values=stats["values"],
                         size_bytes=len(blob), tflite=inspect_tflite(blob).to_dict(),
                         min_runtime_version=runtime_version[name])
            entry["latency_ms"] = {
                "xnnpack": latency_ms(blob, use_xnnpack=True)["p50"],
                "no_xnnpack": latency_ms(blob, use_xnnpack=False)["p50"],
            }
        report[name] = entry
    return report, embeddings


INT8_VARIANTS = ("int8_ptq", "int8_ptq_per_tensor", "int8_qat")


def choose_step(report_variants: dict[str, Any]) -> tuple[str, str]:
    """The int8 variant to ship, by the numbers: the smallest file among those that keep
    parity (mean cosine) and cold-start quality (NDCG drop); ties to the better NDCG."""
    float_ndcg = report_variants["keras_float"]["cold_start_ndcg@20"]

    def good(n: str) -> bool:
        v = report_variants[n]
        return (v["mean_cosine"] >= MIN_MEAN_COSINE
                and float_ndcg - v["cold_start_ndcg@20"] <= MAX_NDCG_DROP * float_ndcg)

    candidates = [n for n in INT8_VARIANTS if good(n)]
    if candidates:
        chosen = min(candidates, key=lambda n: (report_variants[n]["size_bytes"],
                                                -report_variants[n]["cold_start_ndcg@20"]))
        return chosen, (f"smallest int8 variant with mean cosine >= {MIN_MEAN_COSINE} and "
                        f"cold-start NDCG@20 within {MAX_NDCG_DROP:.0%} of float")
    chosen = max(INT8_VARIANTS, key=lambda n: report_variants[n]["mean_cosine"])
    return chosen, "no variant kept parity and NDCG; shipped the one closest to float"


def demo_items(cat) -> dict[str, Any]:
    """The bundle's item columns from a demo catalog."""
    return {
        "ids": [str(i) for i in cat.item_ids],
        "titles": [it.title for it in cat.items],
        "genres": [sorted(it.genres, key=lambda g: -it.genres[g]) for it in cat.items],
        "durations": cat.duration_s.astype(np.float32),
        "release": cat.release.astype(np.int64),
        "cold": cat.cold.astype(bool),
        # minimum viewer age per item (-1 unrated: a catalog generated before ratings existed)
        "maturity": np.array([it.maturity for it in cat.items], np.int16),
    }


def export_bundle(model_path, catalog_dir, out_dir, *, qat_epochs: int = 3, seed: int = 0,
                  k: int = 64, progress: bool = True, profile_branches: bool = True,
                  signing_key=None) -> dict[str, Any]:
    """Convert, prove parity, package: :func:`load_step`, :func:`convert_step`,
    :func:`parity_step`, :func:`choose_step`, then the shared steps of
    :mod:`export.pipeline` (learn, write, sign). Returns the report (also ``OUT/report.json``)."""
    from device.bundle import pack_bundle
    from device.runtime import TFLiteModel
    from export.parity import branch_profile, plot_parity
    from export.pipeline import learn_step, sign_step, write_step
    from models.fusion import model_inputs

    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t = load_step(model_path, catalog_dir, seed=seed, progress=progress)
    cat = t.cat
    variants, runtime_version, qat_hist = convert_step(t, qat_epochs=qat_epochs, seed=seed,
                                                       progress=progress)
    report_variants, embeddings = parity_step(t, variants, runtime_version, seed)
    chosen, why = choose_step(report_variants)
    float_bytes = variants["float_tflite"]
    int8_bytes = variants[chosen]
    int8 = report_variants[chosen]
    float_ndcg = report_variants["keras_float"]["cold_start_ndcg@20"]
    profile = None
    if profile_branches:
        x_all = model_inputs(t.frames, t.logmel, t.cfg)
        profile = branch_profile(t.model, t.cfg, x_all["frames"][t.calib],
                                 x_all["logmel"][t.calib])

    # ---- the bundle: the shared steps. Warm rows hold the CF targets the model was trained
    # to predict, cold rows the shipped int8 model's embedding of their clip.
    learned = learn_step(t.X, ~np.asarray(cat.cold, bool), k)
    item_emb = np.where(cat.cold[:, None], embeddings[chosen], t.targets).astype(np.float32)
    bundle_dir = write_step(
        out / "bundle", demo_items(cat), learned, item_emb,
        model=(int8_bytes, TFLiteModel(int8_bytes).io_spec(), t.cfg),
        extra={"int8_variant": chosen, "min_runtime_version": int8["min_runtime_version"],
               "embeddings": "warm rows: CF targets; cold rows: int8 content model",
               "catalog_seed": cat.seed, "cf_model": type(learned.model).__name__})
    signature = sign_step(bundle_dir, signing_key)
    archive = pack_bundle(bundle_dir, out / "bundle.tar.gz")
    (out / "float.tflite").write_bytes(float_bytes)

    report: dict[str, Any] = {
        "model": str(t.model_dir),
        "catalog": str(Path(catalog_dir).resolve()),
        "held_out_items": int(len(t.held_out)),
        "calibration_items": int(len(t.calib)),
        "int8_variant": {"chosen": chosen, "why": why},
        "parity": {"mean_cosine": int8["mean_cosine"], "min_cosine": int8["min_cosine"],
                   "p05_cosine": int8["p05_cosine"]},
        "size_bytes": {"float_tflite": len(float_bytes), "int8_tflite": len(int8_bytes),
                       "ratio": len(float_bytes) / len(int8_bytes),
                       "bundle_dir": sum(f.stat().st_size for f in bundle_dir.iterdir()),
                       "archive": archive.stat().st_size},
        "cold_start": {"ndcg@20": {"keras": float_ndcg,
                                   "float": report_variants["float_tflite"]["cold_start_ndcg@20"],
                                   "int8": int8["cold_start_ndcg@20"]},
                       "relative_drop": (float_ndcg - int8["cold_start_ndcg@20"]) / float_ndcg
                       if float_ndcg else None},
        "latency_ms": {"float": report_variants["float_tflite"]["latency_ms"]["xnnpack"],
                       "int8": int8["latency_ms"]["xnnpack"],
                       "float_no_xnnpack": report_variants["float_tflite"]["latency_ms"]["no_xnnpack"],
                       "int8_no_xnnpack": int8["latency_ms"]["no_xnnpack"],
                       "note": "host x86-64, LiteRT, 1 thread, p50 of 30 invokes"},
        "min_runtime_version": int8["min_runtime_version"],
        "branch_profile_ms": profile,
        "qat_history": qat_hist,
        "variants": report_variants,
        "targets": {"int8_smaller_3.5x": len(float_bytes) / len(int8_bytes) >= 3.5,
                    "mean_cosine_0.98": int8["mean_cosine"] >= MIN_MEAN_COSINE,
                    "ndcg_drop_3pct": float_ndcg - int8["cold_start_ndcg@20"]
                    <= MAX_NDCG_DROP * float_ndcg},
        "bundle": str(bundle_dir),
        "archive": str(archive),
        "signature": signature,
    }
    plot_parity(report, out / "parity.png")
    report["plots"] = ["parity.png"]
    report["seconds"] = time.perf_counter() - t_start
    tmp = out / "report.json.tmp"
    tmp.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out / "report.json")
    return report
