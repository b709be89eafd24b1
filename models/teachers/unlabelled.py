"""Unlabelled recordings for distillation: media without co-watch logs, seen only by the teachers' term.

The distillation term of :func:`models.fusion.fit_fusion` needs no viewing data -- only the
teachers' embeddings of a clip -- so the student can learn where the teachers put *real*
pictures and sounds from any folder of recordings (a fleet's own recordings, off the box). The
demo catalog's clips are generated colour fields and tones; a student that only ever saw them
learns how the teachers tell those apart, and that does not carry over to real footage.

:func:`generate_unlabelled` writes a stand-in folder for this repository, made from real
material that ships inside installed packages and is disjoint from the clips the distillation is
scored on (``../shared/data/media``):

* **pictures** -- 1-3 shots (slow pans and zooms, wide shots to close-ups) over the photographs that ship
  with scikit-image (``skimage/data``: astronaut, coffee, chelsea, rocket, motorcycle, retina,
  hubble, moon, grass, ...; each file's licence is in scikit-image's ``data/README.txt``),
  scikit-learn's two sample photos and Matplotlib's ``grace_hopper.jpg``, colour-jittered
  (hue, saturation, gain, some grey) so 22 photographs give many different views;
* **sound** -- seeded random music (tempo, key, scale, 1-3 General MIDI instruments, drums in
  some clips) played by TinySoundFont (``tinysoundfont``) with the General MIDI SoundFont that
  ships inside ``pretty_midi`` (``TimGM6mb.sf2``, Tim Brechbill, GPL-2.0: used to make training
  input on the fleet side, never shipped), plus room noise.

Each clip is an H.264/AAC MP4 like the catalog's, so the student's inputs come from the box's own
decode path (:func:`device.media.extract_features`) and the teachers' from theirs, exactly as for
catalog items. The folder's ``unlabelled.json`` records how it was made.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Frame size and rate of the generated clips (4:3; keyframes are resized to the student's
#: 96 px and the picture teacher's 160 px by the normal decode path).
WIDTH, HEIGHT, FPS = 224, 168, 12
SAMPLE_RATE = 16000
#: Clip length: the student's audio window is 4.13 s.
SECONDS = 6.0
#: Photographs below this size (either side) are skipped: tiny test icons, not scenes.
MIN_PHOTO_SIDE = 150
#: Test patterns and drawings in skimage/data that are not photographs.
NOT_PHOTOS = {"chessboard_GRAY.png", "chessboard_RGB.png", "color.png", "phantom.png", "horse.png",
              "logo.png", "microaneurysms.png"}
MEDIA_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".ts", ".wav", ".mp3", ".flac", ".ogg",
                  ".m4a", ".aac", ".opus")


def photo_paths() -> list[Path]:
    """The photographs that ship inside scikit-image, scikit-learn and Matplotlib, at least
    :data:`MIN_PHOTO_SIDE` px on either side (sorted by package; only headers are read)."""
    import importlib.util

    from PIL import Image

    out: list[Path] = []
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("No module named 'skimage'", name="skimage")
    d = Path(spec.origin).parent / "data"
    out += [p for p in sorted(d.iterdir()) if p.suffix.lower() in (".png", ".jpg") and p.name not in NOT_PHOTOS]
    for mod, sub, names in (("sklearn", "datasets/images", ("china.jpg", "flower.jpg")),
                            ("matplotlib", "mpl-data/sample_data", ("grace_hopper.jpg",))):
        s = importlib.util.find_spec(mod)
        if s is not None and s.origin is not None:
            out += [Path(s.origin).parent / sub / n for n in names if (Path(s.origin).parent / sub / n).is_file()]

    def big_enough(p: Path) -> bool:
        with Image.open(p) as im:
            return min(im.size) >= MIN_PHOTO_SIDE

    return [p for p in out if big_enough(p)]


@functools.lru_cache(maxsize=None)
def load_photo(path: str) -> np.ndarray:
    """RGB float32 ``[H, W, 3]`` in [0, 1]; decoded once per process (every clip draws from the
    same 22 photographs)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), np.float32) / 255.0


def soundfont_path() -> Path:
    """``TimGM6mb.sf2`` inside the installed ``pretty_midi`` package."""
    import importlib.util

    spec = importlib.util.find_spec("pretty_midi")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("No module named 'pretty_midi'", name="pretty_midi")
    return Path(spec.origin).parent / "TimGM6mb.sf2"


# --------------------------------------------------------------------------- pictures


def _crop_box(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random 4:3 window ``(x0, y0, x1, y1)``, 15-100% as wide as the largest that fits (log-
    uniform: close-ups are as common as wide shots, so one photograph gives many scenes)."""
    fit_w = min(w, h * WIDTH / HEIGHT)
    cw = fit_w * float(np.exp(rng.uniform(np.log(0.15), 0.0)))
    ch = cw * HEIGHT / WIDTH
    x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
    return np.array([x0, y0, x0 + cw, y0 + ch])


def _jitter(rng: np.random.Generator):
    """A per-shot colour change: hue rotation, saturation, gain; sometimes grey."""
    from models.synth_media import _color_matrix

    m = _color_matrix(rng.uniform(-30, 30), rng.uniform(0.7, 1.25))
    sat = 0.0 if rng.random() < 0.15 else rng.uniform(0.6, 1.3)
    return m, sat


def _shot(photo: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` frames of a pan/zoom from one window of the photo to another, ``[n, H, W, 3]``."""
    from PIL import Image

    h, w = photo.shape[:2]
    a, b = _crop_box(rng, h, w), _crop_box(rng, h, w)
    b = a + (b - a) * rng.uniform(0.1, 0.6)  # slow camera moves, as on TV
    flip = rng.random() < 0.5
    m, sat = _jitter(rng)
    img = Image.fromarray((photo * 255).astype(np.uint8))
    out = np.empty((n, HEIGHT, WIDTH, 3), np.float32)
    for k in range(n):
        box = a + (b - a) * (k / max(n - 1, 1))
        f = np.asarray(img.resize((WIDTH, HEIGHT), Image.BILINEAR, box=tuple(box)), np.float32) / 255.0
        out[k] = f[:, ::-1] if flip else f
    grey = out @ np.array([0.299, 0.587, 0.114], np.float32)
    out = grey[..., None] + sat * (out - grey[..., None])
    return np.clip(out @ m.T, 0.0, 1.0)


def render_pictures(photos: list[np.ndarray], rng: np.random.Generator, seconds: float = SECONDS) -> np.ndarray:
    """Frames uint8 RGB ``[T, H, W, 3]``: 1-3 shots of different photographs, cut at random times."""
    n = int(round(seconds * FPS))
    shots = int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
    cuts = np.sort(rng.choice(np.arange(n // 6, n - n // 6), shots - 1, replace=False)) if shots > 1 else []
    bounds = [0, *[int(c) for c in cuts], n]
    which = rng.choice(len(photos), shots, replace=False)
    f = np.concatenate([_shot(photos[int(i)], rng, b - a) for i, a, b in zip(which, bounds[:-1], bounds[1:])])
    return (f * 255.0 + 0.5).astype(np.uint8)


# --------------------------------------------------------------------------- sound

#: Scales as semitone steps from the key's root.
SCALES = ((0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10), (0, 2, 4, 7, 9), (0, 3, 5, 7, 10),
          (0, 2, 3, 5, 7, 9, 10))
DRUM_KICK, DRUM_SNARE, DRUM_HAT = 36, 38, 42


def render_music(rng: np.random.Generator, seconds: float = SECONDS, *, soundfont: Path | None = None) -> np.ndarray:
    """Mono float32 audio at :data:`SAMPLE_RATE`: a seeded random piece on General MIDI instruments.

    1-3 melodic parts (a lead line, chords, a bass line), each on a random GM programme; drums
    (kick, snare, hi-hat) in 60% of clips; tempo 60-180 bpm; a random key and scale; then a
    random level (-32 to -12 dBFS RMS) over faint room noise.
    """
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=SAMPLE_RATE)
    sfid = synth.sfload(os.fspath(soundfont or soundfont_path()))
    beat = 60.0 / rng.uniform(60, 180)
    root = int(rng.integers(48, 60))
    scale = SCALES[int(rng.integers(len(SCALES)))]
    events: list[tuple[float, int, int, int]] = []  # (time, channel, key, velocity; 0 = off)
    parts = int(rng.integers(1, 4))
    for ch, role in enumerate(("lead", "chords", "bass")[:parts]):
        synth.program_select(ch, sfid, 0, int(rng.integers(0, 120)))
        t, deg = 0.0, int(rng.integers(0, len(scale)))
        while t < seconds:
            dur = beat * float(rng.choice([0.5, 1, 1, 2] if role == "lead" else [2, 4]))
            deg = int(np.clip(deg + rng.integers(-2, 3), 0, 2 * len(scale) - 1))
            octave, step = divmod(deg, len(scale))
            key = root + 12 * octave + scale[step] + {"lead": 12, "chords": 0, "bass": -12}[role]
            keys = [key, key + 4, key + 7] if role == "chords" else [key]
            vel = int(rng.integers(60, 120))
            for k in keys:
                events += [(t, ch, k, vel), (t + dur * 0.9, ch, k, 0)]
            t += dur
    if rng.random() < 0.6:
        synth.program_select(9, sfid, 128, 0, is_drums=True)
        pattern = rng.random(8) < 0.5
        for i in range(int(seconds / (beat / 2)) + 1):
            t = i * beat / 2
            hits = [DRUM_HAT] + ([DRUM_KICK] if i % 4 == 0 else []) + ([DRUM_SNARE] if i % 4 == 2 else [])
            if pattern[i % 8]:
                hits.append(DRUM_KICK)
            events += [(t, 9, k, 100) for k in hits] + [(t + 0.1, 9, k, 0) for k in hits]
    events.sort(key=lambda e: (e[0], e[3]))
    n = int(seconds * SAMPLE_RATE)
    out = np.zeros((n, 2), np.float32)
    pos = 0
    for t, ch, key, vel in events + [(seconds, -1, 0, 0)]:
        stop = min(n, int(t * SAMPLE_RATE))
        if stop > pos:
            out[pos:stop] = np.frombuffer(synth.generate(stop - pos), np.float32).reshape(-1, 2)
            pos = stop
        if ch < 0:
            break
        if vel:
            synth.noteon(ch, key, vel)
        else:
            synth.noteoff(ch, key)
    mono = out.mean(1)
    rms = float(np.sqrt(np.mean(mono**2)))
    level = 10 ** (rng.uniform(-32, -12) / 20)
    mono = mono * (level / rms) if rms > 1e-6 else mono
    mono += rng.normal(0, level * 0.02, n).astype(np.float32)
    return np.clip(mono, -1.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------- the folder


@dataclass(frozen=True)
class UnlabelledInfo:
    """What :func:`generate_unlabelled` wrote."""

    path: Path
    clips: int
    photos: int
    seconds: float


def _make_clip(args) -> str:
    from models.synth_media import encode_mp4

    path, seed, photo_files, soundfont = args
    rng = np.random.default_rng(seed)
    frames = render_pictures([load_photo(p) for p in photo_files], rng)
    audio = render_music(rng, soundfont=Path(soundfont))
    encode_mp4(path, frames, audio, fps=FPS, sample_rate=SAMPLE_RATE)
    return path


def generate_unlabelled(out_dir: str | os.PathLike, clips: int = 1200, *, seed: int = 0,
                        workers: int | None = None, progress: bool = True) -> UnlabelledInfo:
    """Write ``clips`` stand-in recordings to ``out_dir/media/`` and ``out_dir/unlabelled.json``.

    Same seed, same pictures and sound; on one machine the same MP4 bytes too (the encoder
    settings are fixed), across machines a pixel may differ by a level (the colour jitter is a
    BLAS matrix product, unlike the catalog's channel sums).
    Clips already present are kept (a re-run only fills in what is missing).
    """
    from models.synth_media import run_jobs

    out = Path(out_dir)
    (out / "media").mkdir(parents=True, exist_ok=True)
    photos = [os.fspath(p) for p in photo_paths()]
    if len(photos) < 2:
        raise ImportError("fewer than two photographs found in scikit-image/scikit-learn/Matplotlib")
    sf2 = os.fspath(soundfont_path())
    seeds = np.random.SeedSequence(seed).generate_state(clips)
    jobs = [(os.fspath(out / "media" / f"u{k:05d}.mp4"), int(seeds[k]), photos, sf2) for k in range(clips)]
    todo = [j for j in jobs if not os.path.exists(j[0])]
    workers = workers or min(2, os.cpu_count() or 1)
    run_jobs(_make_clip, todo, workers if len(todo) >= 8 else 1, progress=progress, desc="unlabelled")
    manifest = {
        "kind": "unlabelled recordings (no co-watch logs): distillation input only",
        "clips": clips, "seed": seed, "seconds": SECONDS, "size": [WIDTH, HEIGHT], "fps": FPS,
        "sample_rate": SAMPLE_RATE,
        "pictures": [Path(p).name for p in photos],
        "sound": "random General MIDI music, TinySoundFont + pretty_midi's TimGM6mb.sf2 (GPL-2.0)",
    }
    tmp = out / "unlabelled.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out / "unlabelled.json")
    return UnlabelledInfo(out, clips, len(photos), SECONDS)


def media_files(folder: str | os.PathLike) -> list[tuple[str, str]]:
    """``[(relative path, absolute path)]`` of every media file under ``folder`` (sorted, recursive;
    cache folders skipped): the unlabelled recordings a distillation run reads."""
    root = Path(folder).resolve()
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES and rel.parts[0] not in ("features", "teachers"):
            out.append((rel.as_posix(), os.fspath(p)))
    return out


def load_recordings(folder: str | os.PathLike, cfg, *, sound_model: str = "MSD_musicnn", workers: int | None = None,
                    progress: bool = True, info: dict | None = None):
    """Student inputs and teacher embeddings of a folder of unlabelled recordings, both cached in
    the folder (``features/``, ``teachers/``).

    Returns
    -------
    inputs : dict
        ``frames`` uint8 ``[U, F, S, S, 3]`` and ``logmel`` float32 ``[U, T, M]`` (raw).
    picture : float32 [U, 1280]
    sound : float32 [U, 200]
        The teachers' embeddings (:func:`models.teachers.cache.load_or_build_teacher_embeddings`).

    ``info["unlabelled"]`` (when given) says what was read, decoded and embedded.
    """
    from typing import Any

    from device.errors import DataFormatError
    from models.feature_cache import load_or_build_features
    from models.teachers.cache import load_or_build_teacher_embeddings

    media = media_files(folder) if Path(folder).is_dir() else []
    if len(media) < 2:
        raise DataFormatError(f"{folder}: no unlabelled recordings (need at least 2 media files)")
    feat: dict[str, Any] = {}
    _, frames, logmel = load_or_build_features(folder, cfg, workers=workers, progress=progress, stats=feat,
                                               media=media)
    teach: dict[str, Any] = {}
    _, pic, snd = load_or_build_teacher_embeddings(folder, cfg, sound_model=sound_model, progress=progress,
                                                   stats=teach, media=media)
    if info is not None:
        info["unlabelled"] = {"path": os.path.abspath(os.fspath(folder)), "clips": len(media),
                              "features": {k: feat[k] for k in ("decoded", "reused", "seconds")},
                              "teachers": {k: teach[k] for k in ("embedded", "reused", "seconds")}}
    return {"frames": frames, "logmel": logmel}, pic, snd
