"""Teacher embeddings of a catalog's clips, cached on disk like the feature cache.

``load_or_build_teacher_embeddings(catalog_dir, cfg)`` returns ``(item_ids, picture, sound)``:
the picture teacher's embedding of each item's keyframes (the same frame times the student
sees, decoded at :data:`TEACHER_FRAME_SIZE` px) and the sound teacher's embedding of its audio
window (the student's window). One file per (feature config, teacher pair)::

    catalog_dir/teachers/<hash>.npz
        item_ids str [N]; keys str [N] ("<media path>|<size>|<mtime_ns>", as the feature cache)
        picture float32 [N, 1280]; sound float32 [N, 200]; teachers str (JSON: names, config)

Items are embedded again only when their media changed; the file is replaced atomically.
Text embeddings are cached per text (:func:`cached_text_embeddings`), keyed by the text's
SHA-256, so a catalog whose metadata did not change is never embedded twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from device.features import FeatureConfig
from models.feature_cache import save_npz_atomic

#: Keyframes are decoded (and the picture teacher run) at this size: half the work of its
#: training size, 224 px, and the demo clips' own height is 120 px. On the real archery clip
#: the ImageNet "bow" is still in the top 5 of every keyframe (tests/test_teachers.py).
TEACHER_FRAME_SIZE = 160
#: Keyframes the picture teacher embeds per programme (every other one of the student's 8)
#: and 3 s patches the sound teacher embeds (the middle one of the student's 4.1 s window):
#: a catalog's teacher pass costs ~1 s per item on 2 shared cores instead of ~3.
TEACHER_KEYFRAMES = 4
TEACHER_PATCHES = 1


def teacher_config(cfg: FeatureConfig) -> FeatureConfig:
    """The student's feature config with keyframes at the teacher's resolution (same frame times
    and audio window)."""
    return dataclasses.replace(cfg, size=TEACHER_FRAME_SIZE)


def media_teachers(picture: str = "efficientnet-lite0", sound: str = "MSD_musicnn"):
    """The two media teachers, loaded once."""
    from models.teachers.picture import PictureTeacher
    from models.teachers.sound import SoundTeacher

    if picture != PictureTeacher.name:
        raise ValueError(f"unknown picture teacher {picture!r}")
    return PictureTeacher(image_size=TEACHER_FRAME_SIZE), SoundTeacher(sound)


def embed_clips(paths: Sequence[str | os.PathLike], cfg: FeatureConfig, teachers, *,
                progress: bool = False, desc: str = "teachers") -> tuple[np.ndarray, np.ndarray]:
    """Picture and sound teacher embeddings of media files (video, or audio-only: picture row 0).

    Returns
    -------
    picture : float32 [N, 1280]
    sound : float32 [N, 200]
    """
    from tqdm import tqdm

    from device.media import load_audio, load_clip

    picture_t, sound_t = teachers
    tcfg = teacher_config(cfg)
    pic = np.zeros((len(paths), picture_t.dim), np.float32)
    snd = np.zeros((len(paths), sound_t.dim), np.float32)
    for i, p in enumerate(tqdm(paths, desc=desc, unit="clip", disable=not progress, dynamic_ncols=True)):
        if is_audio_only(p):
            audio = load_audio(p, tcfg).audio
        else:
            clip = load_clip(p, tcfg)
            step = max(1, len(clip.frames) // TEACHER_KEYFRAMES)
            pic[i] = picture_t.embed(clip.frames[None, ::step][:, :TEACHER_KEYFRAMES])[0]
            audio = clip.audio
        snd[i] = sound_t.embed_audio(audio, tcfg.sample_rate, max_patches=TEACHER_PATCHES)
    return pic, snd


def _embed_job(paths, cfg_dict, sound_model, progress):
    return embed_clips(paths, FeatureConfig.from_dict(cfg_dict), media_teachers(sound=sound_model),
                       progress=progress)


def embed_clips_isolated(paths: Sequence[str | os.PathLike], cfg: FeatureConfig, *, sound_model: str = "MSD_musicnn",
                         progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """:func:`embed_clips` with freshly loaded teachers in a spawned child process.

    musicnn is built with ``tf.compat.v1`` layers, which leave tf-keras in graph (v1) mode for
    the rest of the process; a Keras model built or converted afterwards then fails
    (``_assert_built_as_v1``). The parent that trains and converts the student never loads it.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(_embed_job, [os.fspath(p) for p in paths], cfg.to_dict(), sound_model,
                           progress).result()


AUDIO_SUFFIXES = (".wav", ".mp3", ".flac", ".ogg", ".m4a", ".aac", ".opus")


def is_audio_only(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in AUDIO_SUFFIXES


def cache_path(catalog_dir: str | os.PathLike, cfg: FeatureConfig, names: dict[str, str]) -> Path:
    key = json.dumps({"feature": teacher_config(cfg).fingerprint(), **names}, sort_keys=True)
    return Path(catalog_dir) / "teachers" / f"{hashlib.sha256(key.encode()).hexdigest()[:12]}.npz"


def load_or_build_teacher_embeddings(
    catalog_dir: str | os.PathLike,
    cfg: FeatureConfig | None = None,
    *,
    sound_model: str = "MSD_musicnn",
    progress: bool = True,
    stats: dict[str, Any] | None = None,
    media: Sequence[tuple[str, str]] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(item_ids [N], picture [N, 1280], sound [N, 200])`` of every catalog item, cached.

    ``media``: ``[(id, path)]`` clips instead of the catalog's (a folder of unlabelled
    recordings, :func:`models.teachers.unlabelled.media_files`); the cache is kept in
    ``catalog_dir`` all the same."""
    from models.feature_cache import catalog_media, media_key

    cfg = cfg or FeatureConfig()
    t0 = time.perf_counter()
    media = catalog_media(catalog_dir) if media is None else list(media)
    names = {"picture": "efficientnet-lite0", "sound": sound_model}
    path = cache_path(catalog_dir, cfg, names)
    ids = np.array([iid for iid, _ in media], dtype=str)
    keys = [media_key(p) for _, p in media]
    old_rows: dict[str, int] = {}
    old = None
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                old = {k: z[k] for k in ("item_ids", "keys", "picture", "sound")}
            old_rows = {k: r for r, k in enumerate(old["keys"].tolist())}
        except (OSError, ValueError, KeyError, EOFError):
            old = None  # damaged: rebuilt
    todo = [i for i, k in enumerate(keys) if k not in old_rows]
    pic = np.zeros((len(media), 1280), np.float32)
    snd = np.zeros((len(media), 200), np.float32)
    for i, k in enumerate(keys):
        if k in old_rows:
            pic[i], snd[i] = old["picture"][old_rows[k]], old["sound"][old_rows[k]]
    if todo:
        p_new, s_new = embed_clips_isolated([media[i][1] for i in todo], cfg, sound_model=sound_model,
                                            progress=progress)
        pic[todo], snd[todo] = p_new, s_new
        save_npz_atomic(path, item_ids=ids, keys=np.asarray(keys, dtype=str), picture=pic, sound=snd,
                        teachers=np.asarray(json.dumps(names)))
    if stats is not None:
        stats.update(embedded=len(todo), reused=len(media) - len(todo), path=str(path),
                     seconds=time.perf_counter() - t0, **names)
    return ids, pic, snd


def default_cache_dir() -> Path:
    """``$TVREC_CACHE`` or ``$XDG_CACHE_HOME/tvrec`` (``~/.cache/tvrec``)."""
    env = os.environ.get("TVREC_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tvrec"


def cached_text_embeddings(texts: Sequence[str], teacher_name: str | None = None, *,
                           cache_dir: str | os.PathLike | None = None, progress: bool = True,
                           stats: dict[str, Any] | None = None) -> np.ndarray:
    """Text teacher embeddings ``float32 [N, d]`` of ``texts``, cached per text (SHA-256)."""
    from tqdm import tqdm

    from models.teachers.text import DEFAULT_TEXT_TEACHER, text_teacher

    teacher_name = teacher_name or DEFAULT_TEXT_TEACHER
    t0 = time.perf_counter()
    path = Path(cache_dir or default_cache_dir()) / "text" / f"{teacher_name}.npz"
    digests = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
    known: dict[str, np.ndarray] = {}
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                known = dict(zip(z["digests"].tolist(), z["vectors"]))
        except (OSError, ValueError, KeyError, EOFError):
            known = {}
    todo = sorted({d: i for i, d in enumerate(digests) if d not in known}.values())
    if todo:
        teacher = text_teacher(teacher_name)
        step = 256
        for lo in tqdm(range(0, len(todo), step), desc=f"text ({teacher_name})", unit="batch",
                       disable=not progress, dynamic_ncols=True):
            rows = todo[lo : lo + step]
            for r, v in zip(rows, teacher.embed([texts[r] for r in rows])):
                known[digests[r]] = v
        save_npz_atomic(path, digests=np.asarray(list(known), dtype=str),
                        vectors=np.stack(list(known.values())))
    if stats is not None:
        stats.update(embedded=len(todo), reused=len(texts) - len(todo), path=str(path),
                     seconds=time.perf_counter() - t0, teacher=teacher_name)
    if not texts:
        return np.zeros((0, 0), np.float32)
    return np.stack([known[d] for d in digests]).astype(np.float32)
