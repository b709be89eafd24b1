"""From a trained model and its catalog to a versioned device bundle, with proof of parity.

``tvrec export --model DIR --catalog DIR --out DIR`` runs :func:`export_bundle`:

1. load the trained fusion model (``tvrec train`` output) and the catalog's cached features;
2. convert: float TFLite, int8 by post-training quantisation (PTQ), int8 by quantisation-aware
   fine-tuning (QAT) -- see :mod:`export.quantize`;
3. parity on items the quantiser never saw (validation warm items and all cold items): cosine to
   the Keras embeddings, cold-start NDCG@20 with each variant's embeddings, size, latency, and a
   per-branch profile (:mod:`export.parity`); choose the int8 variant by the numbers;
4. package ``OUT/bundle/`` (:func:`device.bundle.write_bundle`) and ``OUT/bundle.tar.gz``, write
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
    """The shipped CF table over *all* catalog rows: learned on warm items, cold rows empty."""
    from device.cf import PAD, NeighbourTable
    from models.cowatch import default_model

    warm = np.flatnonzero(~cat.cold)
    model = default_model(len(warm), K=k).fit(X[:, warm])
    local = model.to_table([str(i) for i in cat.item_ids[warm]])
    n = cat.n_items
    neighbours = np.full((n, local.k), PAD, np.int32)
    weights = np.zeros((n, local.k), np.float32)
    mapped = np.where(local.neighbours >= 0, warm[np.maximum(local.neighbours, 0)], PAD)
    neighbours[warm] = mapped
    weights[warm] = local.weights
    counts = np.asarray((X > 0).sum(axis=0)).ravel().astype(np.float64)
    popularity = np.log1p(counts).astype(np.float32)
    popularity[cat.cold] = 0.0
    return NeighbourTable(np.asarray([str(i) for i in cat.item_ids], dtype=object), neighbours,
                          weights, popularity), model


def quantize_rows(emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row symmetric int8: ``emb ~= q * scale[:, None]``."""
    emb = np.asarray(emb, np.float32)
    peak = np.abs(emb).max(axis=1)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.round(emb / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def export_bundle(model_path, catalog_dir, out_dir, *, qat_epochs: int = 3, seed: int = 0,
                  k: int = 64, progress: bool = True, profile_branches: bool = True) -> dict[str, Any]:
    """Convert, prove parity, package. Returns the report (also ``OUT/report.json``)."""
    from device.bundle import pack_bundle, write_bundle
    from device.runtime import TFLiteModel
    from export.parity import branch_profile, cosine_stats, embed_tflite, latency_ms, plot_parity
    from export.quantize import (annotate_for_qat, convert_float, convert_int8, fine_tune_qat,
                                 inspect_tflite, min_runtime_version, strip_strings)
    from models.catalog import load_catalog
    from models.coldstart import evaluate_cold_start, interaction_matrix
    from models.feature_cache import load_or_build_features
    from models.fusion import configure_tensorflow, embed, load_model, model_inputs, split_warm

    t_start = time.perf_counter()
    model_dir, train_dir = _model_dir(Path(model_path))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    configure_tensorflow(seed)
    model, cfg, fcfg = load_model(model_dir)
    cat = load_catalog(catalog_dir)
    ids, frames, logmel = load_or_build_features(catalog_dir, cfg, progress=progress)
    if ids.tolist() != cat.item_ids.tolist():
        from device.errors import DataFormatError

        raise DataFormatError(f"{catalog_dir}: features do not match the catalog's items")

    # ---- targets and the items no quantiser may see
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

    x_all = model_inputs(frames, logmel, cfg)
    fr_all, lm_all = x_all["frames"], x_all["logmel"]

    # ---- the variants
    keras_emb = embed(model, frames, logmel, cfg)
    float_bytes = convert_float(model, cfg)
    ptq_bytes = convert_int8(model, cfg, fr_all[calib], lm_all[calib])
    ptq_pt_bytes = convert_int8(model, cfg, fr_all[calib], lm_all[calib], per_channel=False)
    qat_model = annotate_for_qat(model)
    qat_hist = fine_tune_qat(qat_model, fr_all[train_idx], lm_all[train_idx], targets[train_idx],
                             epochs=qat_epochs, seed=seed, progress=progress)
    qat_bytes = convert_int8(qat_model, cfg, fr_all[calib], lm_all[calib])
    variants = {"keras_float": None, "float_tflite": float_bytes, "int8_ptq": ptq_bytes,
                "int8_ptq_per_tensor": ptq_pt_bytes, "int8_qat": qat_bytes}
    # What ships is stripped of names (float too, so sizes compare like with like); the
    # converter's min_runtime_version metadata goes with the strings, so read it first.
    runtime_version = {n: min_runtime_version(b) for n, b in variants.items() if b is not None}
    variants = {n: (None if b is None else strip_strings(b)) for n, b in variants.items()}
    float_bytes = variants["float_tflite"]
    int8_names = ("int8_ptq", "int8_ptq_per_tensor", "int8_qat")

    report_variants: dict[str, Any] = {}
    embeddings: dict[str, np.ndarray] = {}
    for name, blob in variants.items():
        emb = keras_emb if blob is None else embed_tflite(blob, fr_all, lm_all)
        embeddings[name] = emb
        cold = evaluate_cold_start(cat, emb, targets, X, seed=seed)
        entry: dict[str, Any] = {"cold_start_ndcg@20": cold["ndcg@20"],
                                 "cold_start_recall@20": cold["recall@20"]}
        if blob is not None:
            stats = cosine_stats(emb[held_out], keras_emb[held_out])
            entry.update(mean_cosine=stats["mean_cosine"], min_cosine=stats["min_cosine"],
                         p05_cosine=stats["p05_cosine"], cosine_values=stats["values"],
                         size_bytes=len(blob), tflite=inspect_tflite(blob).to_dict(),
                         min_runtime_version=runtime_version[name])
            entry["latency_ms"] = {
                "xnnpack": latency_ms(blob, use_xnnpack=True)["p50"],
                "no_xnnpack": latency_ms(blob, use_xnnpack=False)["p50"],
            }
        report_variants[name] = entry

    # ---- choose the int8 variant by the numbers: the smallest file among those that keep
    # parity (mean cosine) and cold-start quality (NDCG drop); ties to the better NDCG.
    float_ndcg = report_variants["keras_float"]["cold_start_ndcg@20"]

    def good(n: str) -> bool:
        v = report_variants[n]
        return (v["mean_cosine"] >= MIN_MEAN_COSINE
                and float_ndcg - v["cold_start_ndcg@20"] <= MAX_NDCG_DROP * float_ndcg)

    candidates = [n for n in int8_names if good(n)]
    if candidates:
        chosen = min(candidates, key=lambda n: (report_variants[n]["size_bytes"],
                                                -report_variants[n]["cold_start_ndcg@20"]))
        why = (f"smallest int8 variant with mean cosine >= {MIN_MEAN_COSINE} and cold-start "
               f"NDCG@20 within {MAX_NDCG_DROP:.0%} of float")
    else:
        chosen = max(int8_names, key=lambda n: report_variants[n]["mean_cosine"])
        why = "no variant kept parity and NDCG; shipped the one closest to float"
    int8_bytes = variants[chosen]
    int8 = report_variants[chosen]

    profile = branch_profile(model, cfg, fr_all[calib], lm_all[calib]) if profile_branches else None

    # ---- the bundle
    table, cf_model = neighbour_table_for(cat, X, k)
    item_emb = np.where(cat.cold[:, None], embeddings[chosen], targets).astype(np.float32)
    q, scale = quantize_rows(item_emb)
    items = {
        "ids": [str(i) for i in cat.item_ids],
        "titles": [it.title for it in cat.items],
        "genres": [sorted(it.genres, key=lambda g: -it.genres[g]) for it in cat.items],
        "durations": cat.duration_s.astype(np.float32),
        "release": cat.release.astype(np.int64),
        "cold": cat.cold.astype(bool),
    }
    io = TFLiteModel(int8_bytes).io_spec()
    bundle_dir = write_bundle(
        out / "bundle", items=items, neighbours=table.neighbours, weights=table.weights,
        popularity=table.popularity, item_embeddings_int8=q, embedding_scale=scale,
        model_bytes=int8_bytes, feature_config=cfg, model_io=io,
        extra={"int8_variant": chosen, "min_runtime_version": int8["min_runtime_version"], "embeddings": "warm rows: CF targets; cold rows: int8 "
               "content model", "catalog_seed": cat.seed, "cf_model": type(cf_model).__name__},
    )
    archive = pack_bundle(bundle_dir, out / "bundle.tar.gz")
    (out / "float.tflite").write_bytes(float_bytes)

    report: dict[str, Any] = {
        "model": str(model_dir),
        "catalog": str(Path(catalog_dir).resolve()),
        "held_out_items": int(len(held_out)),
        "calibration_items": int(len(calib)),
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
    }
    plot_parity(report, out / "parity.png")
    report["plots"] = ["parity.png"]
    report["seconds"] = time.perf_counter() - t_start
    tmp = out / "report.json.tmp"
    tmp.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out / "report.json")
    return report
