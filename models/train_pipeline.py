"""The training pipeline of a catalog: features -> CF targets -> the fusion model -> evaluation -> files.

:func:`train_catalog` is what ``tvrec train`` runs; the model and its optimisation live in
:mod:`models.fusion` (:func:`~models.fusion.fit_fusion`), the teachers in :mod:`models.teachers`.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import dataclasses  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from device.features import FeatureConfig  # noqa: E402
from models.fusion import (  # noqa: E402
    DEFAULT_DIM, FusionConfig, TrainConfig, branch_params, embed, fit_fusion, load_model, model_inputs, save_model,
)


def split_warm(warm_idx: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of warm item rows into (train, validation), both sorted."""
    rng = np.random.default_rng([seed, 15])
    perm = rng.permutation(warm_idx)
    n_val = int(round(val_fraction * len(perm)))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def train_catalog(
    catalog_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    epochs: int | None = None,
    seed: int = 0,
    dim: int = DEFAULT_DIM,
    cfg: FeatureConfig | None = None,
    fcfg: FusionConfig | None = None,
    tcfg: TrainConfig | None = None,
    target_method: str = "svd",
    workers: int | None = None,
    progress: bool = True,
    plots: bool = True,
    teachers: bool = False,
    real_media_dir: str | os.PathLike | None = None,
    int8_branches=None,
    sound_model: str = "MSD_musicnn",
    baseline_dir: str | os.PathLike | None = None,
    unlabelled_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Features -> CF targets -> training -> embeddings of every item -> evaluation -> files.

    With ``teachers``, the fleet-side picture and sound teachers (:mod:`models.teachers`) embed
    every clip (cached in ``catalog_dir/teachers/``), their embeddings are projected by PCA to
    the widths of the video and audio branches (fit on training items), and the model is trained
    to reproduce their pairwise similarities together with the co-watch target. A second
    student is trained the same way without teachers, and ``report["distillation"]`` compares
    the two (:func:`models.teachers.distill.distillation_report`; on the real clips in
    ``real_media_dir`` and on the held-out demo items; int8 when ``int8_branches`` is given,
    e.g. :func:`export.parity.int8_branch_embedders`). ``baseline_dir``: a plain ``tvrec
    train`` output of the same catalog, seed and configuration to use as that no-teacher
    student instead of training it again (checked; the figures are the same, the run halves).
    ``unlabelled_dir``: with ``teachers``, a folder of recordings without viewing logs
    (:func:`models.teachers.unlabelled.generate_unlabelled`, or a fleet's own) that the
    distillation term also trains on (:func:`fit_fusion`'s ``unlabelled``); their features and
    teacher embeddings are cached in that folder, and the PCA projections are fit on the
    training items and these recordings together.

    Writes to ``out_dir``::

        model/                 weights.h5, embedder.h5, config.json (see :func:`save_model`)
        item_embeddings.npy    float32 [n_items, D], catalog order
        item_ids.json          the ids of those rows
        cf_targets.npy         float32 [n_warm, D]; ids in cf_target_ids.json
        report.json            cold-start and hybrid metrics, params, timings, history
        training_curves.png, embeddings_pca.png

    Returns
    -------
    dict
        The report (also in ``report.json``).
    """
    import time

    from models.catalog import load_catalog
    from models.coldstart import cf_targets, evaluate_cold_start, evaluate_hybrid, interaction_matrix
    from models.cowatch import default_model
    from models.feature_cache import load_or_build_features

    t_start = time.perf_counter()
    cfg = cfg or FeatureConfig()
    fcfg = dataclasses.replace(fcfg or FusionConfig(), dim=dim)
    tcfg = tcfg or TrainConfig()
    if epochs is not None:
        tcfg = dataclasses.replace(tcfg, epochs=int(epochs))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    cat = load_catalog(catalog_dir)
    cache_stats: dict[str, Any] = {}
    ids, frames, logmel = load_or_build_features(catalog_dir, cfg, workers=workers, progress=progress,
                                                 stats=cache_stats)
    if ids.tolist() != cat.item_ids.tolist():  # the manifest changed between the two reads
        from device.errors import DataFormatError

        raise DataFormatError(f"{catalog_dir}: catalog changed while its features were loaded; run again")

    # ---- CF targets of the warm items (training logs only)
    X = interaction_matrix(cat)
    warm = np.flatnonzero(~cat.cold)
    Xw = X[:, warm]
    t_targets = time.perf_counter()
    warm_targets, tinfo = cf_targets(Xw, fcfg.dim, target_method, seed=seed)
    cf_model = default_model(len(warm)).fit(Xw)  # the warm CF, for the hybrid comparison
    targets = np.zeros((cat.n_items, fcfg.dim), np.float32)
    targets[warm] = warm_targets
    has_signal = np.linalg.norm(targets, axis=1) > 0.5
    trainable = warm[has_signal[warm]]
    train_idx, val_idx = split_warm(trainable, tcfg.val_fraction, seed)
    target_seconds = time.perf_counter() - t_targets

    # ---- teachers (fleet side): picture and sound embeddings, projected to the branches' widths
    teacher_targets = None
    teacher_info: dict[str, Any] = {}
    unlabelled = None
    if teachers:
        from models.teachers.cache import load_or_build_teacher_embeddings
        from models.teachers.distill import Projection

        t_ids, pic, snd = load_or_build_teacher_embeddings(catalog_dir, cfg, sound_model=sound_model,
                                                           progress=progress, stats=teacher_info)
        fit_pic, fit_snd = pic[train_idx], snd[train_idx]
        if unlabelled_dir is not None:
            from models.teachers.unlabelled import load_recordings

            unlabelled, u_pic, u_snd = load_recordings(unlabelled_dir, cfg, sound_model=sound_model,
                                                       workers=workers, progress=progress, info=teacher_info)
            fit_pic, fit_snd = np.concatenate([fit_pic, u_pic]), np.concatenate([fit_snd, u_snd])
        proj = {"video": Projection.fit(fit_pic, fcfg.blocks[-1][0]),
                "audio": Projection.fit(fit_snd, fcfg.lstm_units)}
        teacher_targets = {"video": proj["video"](pic), "audio": proj["audio"](snd)}
        if unlabelled_dir is not None:
            unlabelled.update(video=proj["video"](u_pic), audio=proj["audio"](u_snd))
        teacher_info["projection"] = {b: {"dim": int(p.components.shape[0]), "explained_variance": p.explained}
                                      for b, p in proj.items()}

    # ---- training
    model, hist = fit_fusion(frames, logmel, targets, cat.genre_matrix, train_idx, val_idx, cfg, fcfg, tcfg,
                             teachers=teacher_targets, unlabelled=unlabelled,
                             seed=seed, progress=progress)
    fcfg_saved = dataclasses.replace(fcfg, n_genres=0)  # the exported embedder has no genre head
    emb = embed(model, frames, logmel, cfg)

    # ---- evaluation (future logs; never seen by training)
    cold = evaluate_cold_start(cat, emb, targets, X, seed=seed)
    hybrid = evaluate_hybrid(cat, cf_model.similarity, emb, targets, X)
    val_cos = float(np.mean(np.sum(emb[val_idx] * targets[val_idx], axis=1))) if len(val_idx) else None
    tr_cos = float(np.mean(np.sum(emb[train_idx] * targets[train_idx], axis=1)))

    # ---- distillation: the same training without teachers, and how close each gets to them
    distillation = None
    if teachers:
        from models.teachers.distill import distillation_report

        if baseline_dir is not None:
            base, base_hist = _load_baseline(baseline_dir, catalog_dir, seed, tcfg, fcfg_saved)
        else:
            base, base_hist = fit_fusion(frames, logmel, targets, cat.genre_matrix, train_idx, val_idx, cfg,
                                         fcfg, tcfg, teachers=None, seed=seed, progress=progress)
        base_cold = evaluate_cold_start(cat, embed(base, frames, logmel, cfg), targets, X, seed=seed)
        held = np.sort(np.concatenate([val_idx, np.flatnonzero(cat.cold)]))
        rng = np.random.default_rng(seed)
        calib = np.sort(rng.choice(train_idx, min(128, len(train_idx)), replace=False))
        x_held, x_cal = model_inputs(frames[held], logmel[held], cfg), model_inputs(frames[calib], logmel[calib], cfg)
        distillation = distillation_report(
            {"student": model, "no_teacher": base}, cfg, real_dir=real_media_dir,
            held_out={"frames": x_held["frames"], "logmel": x_held["logmel"], "picture": pic[held], "sound": snd[held]},
            calibration={"frames": x_cal["frames"], "logmel": x_cal["logmel"]},
            int8_branches=int8_branches, sound_model=sound_model, progress=progress)
        distillation["no_teacher_cold_start"] = {k: base_cold[k] for k in ("ndcg@20", "recall@20", "genre_ndcg@20")}
        distillation["no_teacher_best_epoch"] = base_hist["best_epoch"]
        distillation["teachers"] = {k: v for k, v in teacher_info.items()}
        distillation["teacher_weight"] = tcfg.teacher_weight
        distillation["real_media"] = os.path.abspath(os.fspath(real_media_dir)) if real_media_dir else None

    # ---- files
    save_model(model, out / "model", cfg, fcfg_saved)
    np.save(out / "item_embeddings.npy", emb)
    (out / "item_ids.json").write_text(json.dumps(cat.item_ids.tolist()) + "\n", encoding="utf-8")
    np.save(out / "cf_targets.npy", warm_targets)
    (out / "cf_target_ids.json").write_text(json.dumps(cat.item_ids[warm].tolist()) + "\n", encoding="utf-8")

    ratio = cold["ndcg@20"] / cold["popularity_ndcg@20"] if cold["popularity_ndcg@20"] > 0 else None
    report: dict[str, Any] = {
        "catalog": os.path.abspath(os.fspath(catalog_dir)),
        "seed": seed,
        "cold_start": cold,
        "hybrid": hybrid,
        "summary": {
            "content_vs_popularity_ndcg": ratio,
            "content_minus_genre_ndcg": cold["ndcg@20"] - cold["genre_ndcg@20"],
            "meets_2x_popularity": bool(ratio is not None and ratio >= 2.0),
            "beats_genre": bool(cold["ndcg@20"] > cold["genre_ndcg@20"]),
        },
        "embedding": {"train_cosine": tr_cos, "val_cosine": val_cos, "train_items": int(len(train_idx)),
                      "val_items": int(len(val_idx)), "dim": fcfg.dim},
        "targets": {"method": target_method, "spectrum": tinfo.get("spectrum"),
                    "cf_model": type(cf_model).__name__,
                    "cf_lambda": getattr(cf_model, "lambda_used_", None)},
        "params": branch_params(model),
        "train_seconds": hist["seconds"],
        "target_seconds": target_seconds,
        "feature_cache": {k: v for k, v in cache_stats.items() if k != "flags"},
        "media_flags": cache_stats.get("flags", {}),
        "history": {k: v for k, v in hist.items() if k != "seconds"},
        "feature_config": cfg.to_dict(),
        "fusion_config": fcfg_saved.to_dict(),
        "train_config": dataclasses.asdict(tcfg),
    }
    if distillation is not None:
        report["distillation"] = distillation
    if plots:
        plot_history(hist, out / "training_curves.png")
        plot_embeddings(emb, cat, out / "embeddings_pca.png")
        report["plots"] = ["training_curves.png", "embeddings_pca.png"]
    report["total_seconds"] = time.perf_counter() - t_start
    tmp = out / "report.json.tmp"
    tmp.write_text(json.dumps(report, indent=1, default=_json_default) + "\n", encoding="utf-8")
    os.replace(tmp, out / "report.json")
    return report


def _load_baseline(baseline_dir, catalog_dir, seed: int, tcfg: TrainConfig, fcfg: FusionConfig):
    """The no-teacher student from a plain ``tvrec train`` folder, refused unless it was trained
    on the same catalog with the same seed, architecture and optimisation settings."""
    from device.errors import DataFormatError

    d = Path(baseline_dir)
    try:
        rep = json.loads((d / "report.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DataFormatError(f"{d / 'report.json'}: not a `tvrec train` report ({err})") from None
    same = {k: v for k, v in dataclasses.asdict(tcfg).items() if k != "teacher_weight"}
    theirs = {k: v for k, v in rep.get("train_config", {}).items() if k != "teacher_weight"}
    problems = [name for name, ok in (
        ("catalog", os.path.realpath(rep.get("catalog", "")) == os.path.realpath(os.fspath(catalog_dir))),
        ("seed", rep.get("seed") == seed), ("train_config", theirs == same),
        ("fusion_config", rep.get("fusion_config") == fcfg.to_dict()),
        ("no teachers", "distillation" not in rep)) if not ok]
    if problems:
        raise DataFormatError(f"{d}: not a no-teacher run of this training ({', '.join(problems)} differ)")
    model, _, _ = load_model(d / "model")
    return model, rep["history"]


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# --------------------------------------------------------------------------- plots


def plot_history(hist: dict[str, Any], path: str | os.PathLike) -> None:
    """Training losses and validation cosine per epoch (best epoch marked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = np.arange(1, len(hist["loss"]) + 1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key in ("loss", "cosine_loss", "nce_loss", "genre_loss", "teacher_loss"):
        if key in hist and (key != "teacher_loss" or any(hist[key])):
            a.plot(ep, hist[key], label=key)
    a.set_xlabel("epoch")
    a.set_title("training losses")
    a.legend(fontsize=8)
    b.plot(ep, hist["val_cosine"], color="C3", label="validation (held-out warm items)")
    if hist.get("best_epoch"):
        b.axvline(hist["best_epoch"], color="grey", ls="--", lw=1, label=f"best epoch {hist['best_epoch']}")
    b.set_xlabel("epoch")
    b.set_title("mean cosine(embedding, CF target)")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_embeddings(emb: np.ndarray, cat, path: str | os.PathLike) -> None:
    """2-D PCA of the item embeddings, coloured by primary genre; cold items as crosses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from models.synth_media import GENRE_COLORS

    Z = emb - emb.mean(0)
    _, s, Vt = np.linalg.svd(Z, full_matrices=False)
    P = Z @ Vt[:2].T
    var = s[:2] ** 2 / max(float((s**2).sum()), 1e-12)
    fig, ax = plt.subplots(figsize=(7, 6))
    for g, name in enumerate(cat.genres):
        col = np.asarray(GENRE_COLORS.get(name, (128, 128, 128))) / 255.0
        for is_cold, marker in ((False, "o"), (True, "x")):
            m = (cat.primary == g) & (cat.cold == is_cold)
            if m.any():
                ax.scatter(P[m, 0], P[m, 1], s=14, color=col, marker=marker, alpha=0.8,
                           label=name if not is_cold else None)
    ax.set_xlabel(f"PC1 ({var[0]:.0%})")
    ax.set_ylabel(f"PC2 ({var[1]:.0%})")
    ax.set_title("content embeddings (o warm, x cold), by primary genre")
    ax.legend(fontsize=8, markerscale=1.5)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
