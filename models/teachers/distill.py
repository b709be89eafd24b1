"""Distillation targets and how close a student gets to its teachers.

* :class:`Projection` -- PCA of a teacher's embeddings (fit on the training items only) to the
  width of the student branch it teaches: "the teacher's embedding in the model's space".
  The student branch is trained to reproduce the teacher's *pairwise similarities* in that
  space (:func:`models.fusion.fit_fusion`, similarity-preserving distillation), not its
  coordinates: a 48-unit LSTM cannot hold 200 musicnn dimensions, but it can keep which clips
  sound alike.
* :func:`similarity_spearman` -- Spearman's rho between two embeddings' pairwise cosine
  similarities over the same set of clips (each set centred on its own mean first: the
  branch features are non-negative, so raw cosines all sit near 1 and rank by norm).
* :func:`real_media` -- the real clips of ``../shared/data/media`` the figures are reported on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.teachers.cache import AUDIO_SUFFIXES

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".ts")


@dataclass(frozen=True)
class Projection:
    """``x -> unit((x - mean) @ components.T)``."""

    mean: np.ndarray
    components: np.ndarray  # [dim, d_teacher]
    explained: float

    @classmethod
    def fit(cls, x: np.ndarray, dim: int) -> "Projection":
        x = np.asarray(x, np.float64)
        mean = x.mean(0)
        _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
        dim = min(dim, len(s))
        var = s**2
        return cls(mean.astype(np.float32), vt[:dim].astype(np.float32),
                   float(var[:dim].sum() / max(var.sum(), 1e-12)))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, np.float32) - self.mean) @ self.components.T
        return (z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def centred_cosine(x: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity ``[N, N]`` of rows after subtracting their mean."""
    z = np.asarray(x, np.float64)
    z = z - z.mean(0)
    z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    return z @ z.T


def similarity_spearman(student: np.ndarray, teacher: np.ndarray) -> float:
    """Spearman's rho between the upper-triangle pairwise similarities of two embeddings of the
    same N items (N >= 3)."""
    from scipy.stats import spearmanr

    n = len(student)
    if n != len(teacher) or n < 3:
        raise ValueError(f"need the same N >= 3 items in both embeddings, got {n} and {len(teacher)}")
    iu = np.triu_indices(n, 1)
    rho = spearmanr(centred_cosine(student)[iu], centred_cosine(teacher)[iu]).statistic
    return float(rho) if np.isfinite(rho) else 0.0


def real_media(root: str | os.PathLike) -> dict[str, list[Path]]:
    """``{"video": [...], "audio": [...]}`` media files under ``root`` (sorted, recursive). The
    audio set is every audio-only file plus the video files (their sound track)."""
    root = Path(root)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    video = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
    audio = [p for p in files if p.suffix.lower() in AUDIO_SUFFIXES]
    return {"video": video, "audio": video + audio}


def real_clip_inputs(files: dict[str, list[Path]], cfg) -> dict[str, np.ndarray]:
    """Normalised student inputs of the real clips: ``video_frames`` ``[Nv, F, S, S, 3]`` and
    ``audio_logmel`` ``[Na, T, M]`` (the box's own decode and feature path)."""
    from device.features import log_mel, normalize_frames, normalize_logmel
    from device.media import extract_features, load_audio

    from models.teachers.cache import is_audio_only

    frames = [extract_features(p, cfg)[0] for p in files["video"]]
    logmel = []
    for p in files["audio"]:
        lm = log_mel(load_audio(p, cfg).audio, cfg) if is_audio_only(p) else extract_features(p, cfg)[1]
        logmel.append(normalize_logmel(lm, cfg))
    return {"video_frames": normalize_frames(np.stack(frames)), "audio_logmel": np.stack(logmel)}


def distillation_report(students: dict, cfg, *, real_dir, held_out: dict, calibration: dict,
                        int8_branches=None, sound_model: str = "MSD_musicnn", progress: bool = False) -> dict:
    """Spearman(student, teacher) of each branch's pairwise similarities, per student.

    Parameters
    ----------
    students : dict
        ``{"student": keras embedder, "no_teacher": keras embedder}``.
    real_dir : path or None
        Real media (``../shared/data/media``); skipped (reported as absent) when missing.
    held_out : dict
        Held-out demo items: ``frames``/``logmel`` (normalised student inputs) and
        ``picture``/``sound`` (their teacher embeddings).
    calibration : dict
        ``frames``/``logmel`` normalised inputs to calibrate the int8 branches (training items).
    int8_branches : callable, optional
        ``(model, cfg, frames, logmel) -> {"video": fn, "audio": fn}``
        (:func:`export.parity.int8_branch_embedders`); without it only float figures exist.

    Returns
    -------
    dict
        Per branch ``video``/``audio``: ``spearman_student_teacher`` and ``spearman_no_teacher``
        (int8 when available, else float, on the real clips), ``float`` and ``int8`` breakdowns,
        ``held_out_demo`` the same on the held-out demo items, ``n_real_clips``, ``teacher``.
    """
    from models.fusion import branch_embedders

    from models.teachers.cache import embed_clips_isolated

    real = real_media(real_dir) if real_dir is not None and Path(real_dir).is_dir() else None
    inputs = {"held_out_demo": {"video": held_out["frames"], "audio": held_out["logmel"]}}
    if real and len(real["video"]) >= 3:
        x = real_clip_inputs(real, cfg)
        inputs["real"] = {"video": x["video_frames"], "audio": x["audio_logmel"]}
    # Every student feature first, then the teachers: musicnn's tf.compat.v1 layers leave Keras in
    # graph-building (v1) mode, after which a Keras model can no longer be traced for conversion.
    feats: dict = {}
    for sname, model in students.items():
        runs = {"float": {b: (lambda x, m=m: np.asarray(m(x, training=False)))
                          for b, m in branch_embedders(model).items()}}
        if int8_branches is not None:
            runs["int8"] = int8_branches(model, cfg, calibration["frames"], calibration["logmel"])
        for kind, by_branch in runs.items():
            for set_name, per_branch in inputs.items():
                for branch, x in per_branch.items():
                    run = by_branch[branch]
                    feats[sname, kind, set_name, branch] = np.concatenate(
                        [run(x[lo : lo + 64]) for lo in range(0, len(x), 64)])
    teacher_emb = {"held_out_demo": {"video": held_out["picture"], "audio": held_out["sound"]}}
    if "real" in inputs:
        pic, snd = embed_clips_isolated(real["video"] + real["audio"], cfg, sound_model=sound_model,
                                        progress=progress)
        nv = len(real["video"])
        teacher_emb["real"] = {"video": pic[:nv], "audio": snd[nv:]}
    sets = inputs
    report: dict = {}
    for branch, teacher_name in (("video", "efficientnet-lite0"), ("audio", sound_model)):
        entry: dict = {"teacher": teacher_name, "float": {}, "int8": {}, "held_out_demo": {}}
        for (sname, kind, set_name, b), f in feats.items():
            if b != branch:
                continue
            rho = similarity_spearman(f, teacher_emb[set_name][branch])
            if set_name == "real":
                entry[kind][sname] = rho
            else:
                entry["held_out_demo"][f"{kind}_{sname}"] = rho
        best = "int8" if int8_branches is not None else "float"
        if "real" in sets:
            entry["spearman_student_teacher"] = entry[best]["student"]
            entry["spearman_no_teacher"] = entry[best]["no_teacher"]
            entry["n_real_clips"] = int(len(sets["real"][branch]))
        else:
            entry["spearman_student_teacher"] = entry["held_out_demo"][f"{best}_student"]
            entry["spearman_no_teacher"] = entry["held_out_demo"][f"{best}_no_teacher"]
            entry["n_real_clips"] = 0
        entry["measured_on"] = f"{best}, {'real clips' if 'real' in sets else 'held-out demo items'}"
        entry["n_held_out_items"] = int(len(held_out["frames"]))
        report[branch] = entry
    return report
