"""Decode a local recording into what :mod:`device.features` consumes -- bounded and fast.

:func:`load_clip` returns ``F`` RGB frames and a centred window of 16 kHz mono audio;
:func:`extract_features` adds the log-mel. Training (fleet) and the box run this same code, so
the model sees the same preprocessing everywhere.

What is sampled
---------------
* **Frames**: the frame *displayed* at each time ``start + (i + 0.5) * duration / F`` (the last
  frame whose pts is <= the target; if the stream starts after a target, its first frame),
  scaled so the shorter display side is ``S`` (swscale bilinear, which widens its kernel with
  the scale factor, so a 1080p frame is averaged down rather than point-sampled) and
  centre-cropped to ``S x S``. The choice is exact, i.e. independent of the GOP layout.
* **Audio**: ``cfg.audio_samples`` samples at ``cfg.sample_rate``, mono (FFmpeg's
  ``AudioResampler`` downmix: each stereo channel weighted 1/sqrt(2)), centred on the middle of
  the clip, zero where the clip has no audio (too short: flag ``audio_padded``).

No-audio policy
---------------
A clip without an audio stream is still a valid item: its audio is **silence** (all zeros,
whose log-mel is the constant ``log(log_offset)`` and whose normalised log-mel is all zeros) and
``flags`` contains ``no_audio``. If the stream exists but nothing in it decodes, the same
silence is used with flags ``no_audio`` and ``audio_unreadable``. Training may drop or
down-weight flagged clips; the box still ranks them. A missing *video* stream, by contrast, is
an error (:class:`~device.errors.MediaError`): the content model needs frames.

Speed
-----
Decoding every frame of a 720p clip costs more than the whole budget, so for each target we
find (by a cheap seek + one demuxed packet, no decoding) the keyframe at or before it, seek
there only when it lies beyond what the decoder has already passed, and decode forward. Frames
that cannot be the answer -- non-reference frames more than ``margin`` before the next target --
are skipped inside the decoder (``skip_frame='NONREF'``), which keeps the choice exact. Only the
chosen frames are converted to RGB. Audio is decoded from a seek shortly before its window.

Bounds
------
A bad file never hangs: ``av.open`` gets an I/O timeout, and decoding stops with a
:class:`MediaError` after ``time_limit`` seconds of wall time or :data:`MAX_PACKETS` demuxed
packets. Every failure is a ``MediaError("<path>: <reason>")``.

PyAV (the ``media`` extra) is imported inside the functions, so ``import device`` works without
it.
"""

from __future__ import annotations

import bisect
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import MediaError
from device.features import FeatureConfig, log_mel

#: Default wall-time budget of one decode, seconds.
TIME_LIMIT = 10.0
#: Seconds PyAV may wait to open the input, and then for each read.
OPEN_TIMEOUT = (5.0, 5.0)
#: At most this many packets are demuxed (video and audio together) for one clip.
MAX_PACKETS = 20000
#: A decode with more broken packets than this is refused as corrupt.
MAX_DECODE_ERRORS = 25
#: Audio decoding starts this many seconds before its window (decoder warm-up after a seek).
AUDIO_PREROLL = 0.5
#: The same for configs that resample in batches ("keyframe" sampling): an AAC or MP3 decoder
#: is warm after one or two frames (<= 50 ms); the rest of the old half second was decoded
#: only to be thrown away.
AUDIO_PREROLL_BATCH = 0.1
#: The batched audio path resamples this many decoded frames per call (~16k samples of AAC or
#: MP3): the same output as one call over the whole window (the resampler streams), but its
#: buffers stay small -- one 4-second call spent a third of its time faulting in fresh pages.
AUDIO_CHUNK_FRAMES = 16
#: Decoder threading: slices only, never frame threads. Frame threading delays every output by
#: one frame per thread, refills after each seek, and needs idle cores -- which a box playing
#: TV while it extracts features in the background does not have. On this 2-CPU machine under
#: load, "SLICE" beat "FRAME"/"AUTO" by 5-25 % on H.264 and VP8 (bench/media_features.py).
DECODER_THREAD_TYPE = "SLICE"


@dataclass(frozen=True)
class Clip:
    """What a recording contributes to the content model, before feature extraction.

    Attributes
    ----------
    frames : np.ndarray
        uint8 ``[F, S, S, 3]`` RGB.
    audio : np.ndarray
        float32 ``[cfg.audio_samples]`` mono at ``cfg.sample_rate``.
    duration : float
        Seconds of video.
    flags : tuple of str
        Sorted subset of ``no_audio``, ``audio_unreadable``, ``audio_padded``,
        ``frames_repeated``, ``decode_errors``.
    frame_times : tuple of float
        Presentation time (s, from the video start) of each chosen frame.
    info : dict
        Stream facts: width, height, fps, video_codec, audio_codec, audio_rate.
    """

    frames: np.ndarray
    audio: np.ndarray
    duration: float
    flags: tuple[str, ...]
    frame_times: tuple[float, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AudioClip:
    """The audio window of an audio-only file (same policy as :attr:`Clip.audio`)."""

    audio: np.ndarray
    duration: float
    flags: tuple[str, ...]
    info: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- public API


def load_clip(path: str | Path, cfg: FeatureConfig | None = None, *, time_limit: float = TIME_LIMIT) -> Clip:
    """Decode ``cfg.frames`` frames and the centred audio window of a video file.

    Parameters
    ----------
    path : str or Path
        A local media file with a video stream (any container/codec FFmpeg decodes).
    cfg : FeatureConfig, optional
        Defaults to ``FeatureConfig()``.
    time_limit : float
        Wall-time budget in seconds; exceeding it raises :class:`MediaError`.

    Raises
    ------
    MediaError
        Missing, empty, unreadable, truncated or corrupt file; no video stream; zero-length
        video; no decodable frame; budget exceeded. The message starts with the path.
    """
    cfg = cfg or FeatureConfig()
    p = _check_file(path)
    budget = _Budget(p, time.monotonic() + time_limit, time_limit)
    with _damage_is_media_error(p), _open(p) as container:
        vstream = _video_stream(container, p)
        astream, has_audio = _audio_stream(container)
        start, duration = _video_span(container, vstream, p)
        fps = _fps(vstream)
        centre = start + duration / 2.0
        try:
            frames, frame_times, vflags = _read_frames(container, vstream, p, cfg, start, duration,
                                                       fps, budget, seekable=True)
            audio, aflags = _read_audio_or_silence(container, astream, p, cfg, centre, budget,
                                                   seekable=True, has_audio=has_audio)
        except _SeekFailed:
            # The demuxer cannot seek (damaged index, some streamed formats): read each part
            # once, front to back, from a freshly opened file.
            with _open(p) as again:
                frames, frame_times, vflags = _read_frames(
                    again, again.streams[vstream.index], p, cfg, start, duration, fps, budget,
                    seekable=False)
            with _open(p) as again:
                a2 = again.streams[astream.index] if astream is not None else None
                audio, aflags = _read_audio_or_silence(again, a2, p, cfg, centre, budget, seekable=False,
                                                       has_audio=has_audio)
        info = {
            "width": int(vstream.codec_context.width),
            "height": int(vstream.codec_context.height),
            "fps": round(float(fps), 3) if fps else None,
            "video_codec": vstream.codec_context.name,
            "audio_codec": astream.codec_context.name if astream is not None else None,
            "audio_rate": int(astream.codec_context.sample_rate) if astream is not None else None,
            "frame_sampling": cfg.frame_sampling,
            # demuxed packets, seeks' probes included: the work, independent of the load
            "packets_read": budget.packets,
        }
    return Clip(
        frames=frames,
        audio=audio,
        duration=duration,
        flags=tuple(sorted(set(vflags) | set(aflags))),
        frame_times=tuple(round(t - start, 6) for t in frame_times),
        info=info,
    )


def load_audio(path: str | Path, cfg: FeatureConfig | None = None, *, time_limit: float = TIME_LIMIT) -> AudioClip:
    """Decode the centred ``cfg.audio_samples`` window of a file's first audio stream.

    For audio-only files (wav, mp3, ...); video streams are ignored. Raises
    :class:`MediaError` (path first) when the file is unusable or has no audio stream.
    """
    cfg = cfg or FeatureConfig()
    p = _check_file(path)
    budget = _Budget(p, time.monotonic() + time_limit, time_limit)
    with _damage_is_media_error(p), _open(p) as container:
        astream, has_audio = _audio_stream(container)
        if astream is None:
            raise MediaError(f"{p}: {'no decoder for the audio stream' if has_audio else 'no audio stream'}")
        start, duration = _stream_span(container, astream)
        if duration is None or duration <= 0:
            raise MediaError(f"{p}: zero-length or unknown-length audio")
        try:
            audio, covered, errors = _read_audio_window(container, astream, p, cfg,
                                                        start + duration / 2.0, budget, seekable=True)
        except _SeekFailed:
            with _open(p) as again:
                audio, covered, errors = _read_audio_window(again, again.streams[astream.index], p, cfg,
                                                            start + duration / 2.0, budget, seekable=False)
        flags = _audio_flags(cfg, covered, errors)
        if "audio_unreadable" in flags:
            raise MediaError(f"{p}: no decodable audio")
        info = {
            "audio_codec": astream.codec_context.name,
            "audio_rate": int(astream.codec_context.sample_rate),
        }
    return AudioClip(audio=audio, duration=duration, flags=flags, info=info)


def extract_features(
    path: str | Path, cfg: FeatureConfig | None = None, *, time_limit: float = TIME_LIMIT
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Media file -> ``(frames uint8 [F,S,S,3], logmel float32 [T,M], info)``.

    ``info`` holds ``path``, ``duration``, ``flags``, ``frame_times``, the stream facts of
    :attr:`Clip.info` and the config's ``fingerprint``. The model consumes
    ``normalize_frames(frames)`` and ``normalize_logmel(logmel, cfg)``.
    """
    cfg = cfg or FeatureConfig()
    clip = load_clip(path, cfg, time_limit=time_limit)
    logmel = log_mel(clip.audio, cfg)
    info = {
        "path": str(path),
        "duration": round(clip.duration, 6),
        "flags": list(clip.flags),
        "frame_times": list(clip.frame_times),
        **clip.info,
        "feature_fingerprint": cfg.fingerprint(),
    }
    return clip.frames, logmel, info


# --------------------------------------------------------------------------- opening


def _check_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise MediaError(f"{p}: no such file")
    if not p.is_file():
        # FIFOs and devices would block in open(2), directories are not media.
        raise MediaError(f"{p}: not a regular file")
    if p.stat().st_size == 0:
        raise MediaError(f"{p}: empty file (0 bytes)")
    return p


def _reason(err: BaseException) -> str:
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return text.rstrip(".")


def _open(p: Path):
    import av

    try:
        # Metadata is not used; undecodable tags in a damaged header must not fail the open.
        return av.open(str(p), mode="r", timeout=OPEN_TIMEOUT, metadata_errors="replace")
    except av.error.FFmpegError as err:
        raise MediaError(f"{p}: not a readable media file ({_reason(err)})") from None
    except (OSError, ValueError) as err:
        raise MediaError(f"{p}: cannot read ({_reason(err)})") from None


@contextmanager
def _damage_is_media_error(p: Path):
    """Any FFmpeg error not handled closer to its source means damaged data: MediaError."""
    import av

    try:
        yield
    except av.error.FFmpegError as err:
        raise MediaError(f"{p}: damaged or unsupported media ({_reason(err)})") from None


def _video_stream(container, p: Path):
    import av

    candidates = [
        s for s in container.streams.video
        # Cover art in audio files shows up as a one-picture "video" stream: not video.
        if not (s.disposition & av.stream.Disposition.attached_pic)
    ]
    if not candidates:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise MediaError(f"{p}: no video stream (streams: {', '.join(kinds)})")
    decodable = [s for s in candidates if s.codec_context is not None]
    if not decodable:
        raise MediaError(f"{p}: no decoder for the video stream (unknown or damaged codec id)")
    return max(decodable, key=lambda s: (s.codec_context.width or 0) * (s.codec_context.height or 0))


def _audio_stream(container):
    """(first decodable audio stream or None, whether an audio stream exists at all)."""
    streams = list(container.streams.audio)
    decodable = [s for s in streams if s.codec_context is not None]
    return (decodable[0] if decodable else None), bool(streams)


def _stream_span(container, stream) -> tuple[float, float | None]:
    """(start seconds, duration seconds or None) of a stream, from its own or the container's."""
    tb = stream.time_base
    start = float(stream.start_time * tb) if stream.start_time is not None and tb else 0.0
    if stream.duration is not None and tb and stream.duration > 0:
        return start, float(stream.duration * tb)
    if container.duration is not None and container.duration > 0:
        c_start = (container.start_time or 0) / 1_000_000
        return start, container.duration / 1_000_000 - max(0.0, start - c_start)
    return start, None


def _video_span(container, vstream, p: Path) -> tuple[float, float]:
    start, duration = _stream_span(container, vstream)
    if duration is None:
        raise MediaError(f"{p}: unknown video duration (container has no length)")
    if not duration > 0 or not math.isfinite(duration):
        raise MediaError(f"{p}: zero-length video")
    return start, duration


def _fps(vstream) -> Fraction | None:
    for rate in (vstream.average_rate, vstream.guessed_rate, vstream.base_rate):
        if rate and rate > 0:
            return Fraction(rate)
    return None


# --------------------------------------------------------------------------- video


def _targets(cfg: FeatureConfig, start: float, duration: float) -> list[float]:
    return [start + (i + 0.5) * duration / cfg.frames for i in range(cfg.frames)]


def _read_frames(container, vstream, p: Path, cfg: FeatureConfig, start: float, duration: float,
                 fps: Fraction | None, budget: _Budget, *, seekable: bool,
                 targets_s: list[float] | None = None):
    """Exact frame-at-time sampling with keyframe seeks; see the module docstring.

    ``seekable=False``: ``container`` is freshly opened and is read once from the start.
    ``targets_s``: these times (seconds, ascending) instead of the config's.
    """
    if cfg.frame_sampling == "keyframe" and seekable and targets_s is None:
        return _read_keyframes(container, vstream, p, cfg, start, duration, fps, budget)
    import av

    tb = vstream.time_base
    targets_s = _targets(cfg, start, duration) if targets_s is None else list(targets_s)
    n = len(targets_s)
    targets = [int(math.floor(t / tb)) for t in targets_s]  # in stream ticks
    frame_dur = float(1 / fps) if fps else 0.5
    # A non-reference frame this far before the next target cannot be the frame displayed at
    # it (at least two decoded frames lie in between), so the decoder may skip it.
    margin = int(max(0.2, 2.5 * frame_dur) / tb)
    # After the last packet, a target at most this far past the last frame is still "shown"
    # by it (frame durations, rounding of the declared length).
    tolerance = max(0.25, 3 * frame_dur)
    # Audio packets are read along (and dropped) only to learn where the file's data ends: a
    # video that stops early in a file whose audio runs to the end is short, not truncated.
    others = [s for s in container.streams.audio]
    data_end = -math.inf
    video_packets = 0

    cc = vstream.codec_context
    _set_threads(cc)
    keys = _probe_keyframes(container, vstream, targets, budget) if seekable else [None] * n

    chosen: list[Any] = [None] * n
    j = 0  # next target without a frame
    prev = None  # last decoded frame (pts <= targets[j] while it is pending)
    gop_key: int | None = None  # pts of the last keyframe packet fed to the decoder
    skip_mode = "DEFAULT"
    decode_errors = 0
    packets = None
    eof_reason = None

    def take(frame) -> None:
        nonlocal j, prev
        pts = _frame_pts(frame, prev, tb, frame_dur)
        frame.pts = pts
        while j < n and targets[j] < pts:
            chosen[j] = prev if prev is not None else frame
            j += 1
        prev = frame

    while j < n:
        want_key = keys[j]
        if packets is None or (want_key is not None and (gop_key is None or want_key > gop_key)):
            # The frame at targets[j] sits in a GOP the decoder has not reached: jump there.
            if seekable:
                _seek(container, vstream, want_key)
                cc.flush_buffers()
                # The seek lands on that keyframe (probed), so the decoder is in its GOP now.
                gop_key = want_key
            packets = container.demux(vstream, *others)
        try:
            pkt = next(packets)
        except StopIteration:
            eof_reason = "end of stream"
            break
        except av.error.FFmpegError as err:  # damaged container structure: data ends here
            eof_reason = _reason(err)
            break
        budget.tick()
        if pkt.size == 0 or pkt.pts is None and pkt.dts is None:
            continue  # PyAV's end-of-stream marker / empty packet
        if pkt.stream_index != vstream.index:
            ts = pkt.pts if pkt.pts is not None else pkt.dts
            data_end = max(data_end, float((ts + (pkt.duration or 0)) * pkt.time_base))
            continue
        data_end = max(data_end, float((pkt.pts if pkt.pts is not None else pkt.dts) * tb))
        video_packets += 1
        if pkt.is_keyframe and pkt.pts is not None:
            gop_key = pkt.pts if gop_key is None else max(gop_key, pkt.pts)
        mode = "DEFAULT" if pkt.is_keyframe else _skip_mode(pkt.pts, targets, margin)
        if mode != skip_mode:
            cc.skip_frame = mode
            skip_mode = mode
        try:
            for frame in vstream.decode(pkt):
                take(frame)
        except av.error.FFmpegError:
            decode_errors += 1
            if decode_errors > MAX_DECODE_ERRORS:
                raise MediaError(f"{p}: corrupt video data ({decode_errors} undecodable packets)") from None

    if j < n:
        # Out of packets: drain the decoder, then the remaining targets take the last frame if
        # it is close enough.
        try:
            cc.skip_frame = "DEFAULT"
            for frame in vstream.decode(None):
                take(frame)
        except av.error.FFmpegError:
            decode_errors += 1
        if prev is None and video_packets == 0:
            raise MediaError(f"{p}: zero-length video (the video stream has no packets)")
        if prev is None:
            raise MediaError(f"{p}: no decodable video frame ({eof_reason})")
        last_t = float(prev.pts * tb)
        reaches_end = data_end >= start + duration - max(0.5, 3 * frame_dur)
        for k in range(j, n):
            if targets_s[k] - last_t > tolerance and not reaches_end:
                raise MediaError(
                    f"{p}: truncated or damaged: data ends at {max(data_end, last_t) - start:.2f} s "
                    f"of {duration:.2f} s ({eof_reason})"
                )
            chosen[k] = prev

    flags = []
    if decode_errors:
        flags.append("decode_errors")
    distinct = {id(f) for f in chosen}
    if len(distinct) < n:
        flags.append("frames_repeated")
    rgb: dict[int, np.ndarray] = {}
    out = np.empty((n, cfg.size, cfg.size, 3), dtype=np.uint8)
    sar = cc.sample_aspect_ratio
    scaler = _Scaler()
    for i, frame in enumerate(chosen):
        key = id(frame)
        if key not in rgb:
            rgb[key] = scaler.square_rgb(frame, cfg.size, sar)
        out[i] = rgb[key]
    times = [float(f.pts * tb) for f in chosen]
    return out, times, flags


def _set_threads(cc) -> None:
    try:
        cc.thread_type = DECODER_THREAD_TYPE
    except RuntimeError:
        pass  # already open (set by the caller's first pass): it keeps its setting


def _read_keyframes(container, vstream, p: Path, cfg: FeatureConfig, start: float,
                    duration: float, fps: Fraction | None, budget: _Budget):
    """``frame_sampling="keyframe"``: per slot, the keyframe nearest its centre time, decoded
    alone; slots without a keyframe (sparse keyframes, short clips) take the exact picture at
    their time (:func:`_read_frames`). Work: ``F`` seeks, the packets (not frames) up to the
    next keyframe after each time, and ``F`` intra frames -- independent of the duration."""
    import av

    tb = vstream.time_base
    n = cfg.frames
    targets_s = _targets(cfg, start, duration)
    half = duration / (2 * n)
    cc = vstream.codec_context
    _set_threads(cc)
    keys: list[int | None] = []
    packets: dict[int, Any] = {}
    for t in targets_s:
        k, pkt = _nearest_keyframe(container, vstream, t, half, budget)
        keys.append(k)
        if k is not None:
            packets.setdefault(k, pkt)
    # Each keyframe goes to RGB as soon as it is decoded: its picture buffer then returns to the
    # decoder's pool for the next one (eight held frames meant eight fresh, zeroed 720p buffers).
    rgb: dict[int, np.ndarray] = {}
    scaler = _Scaler()
    for k in sorted(packets):
        frame = _decode_keyframe(vstream, packets[k])
        if frame is not None:
            rgb[k] = scaler.square_rgb(frame, cfg.size, cc.sample_aspect_ratio)
            del frame
    rest = [i for i in range(n) if keys[i] is None or keys[i] not in rgb]
    out = np.empty((n, cfg.size, cfg.size, 3), dtype=np.uint8)
    times: list[float] = [0.0] * n
    flags: set[str] = set()
    if rest:
        fr, ft, ff = _read_frames(container, vstream, p, cfg, start, duration, fps, budget,
                                  seekable=True, targets_s=[targets_s[i] for i in rest])
        for j, i in enumerate(rest):
            out[i], times[i] = fr[j], ft[j]
        flags |= set(ff) - {"frames_repeated"}
    for i, k in enumerate(keys):
        if k is not None and k in rgb:
            out[i], times[i] = rgb[k], float(k * tb)
    if len({out[i].tobytes() for i in range(n)}) < n and len({*keys} - {None}) + len(rest) < n:
        flags.add("frames_repeated")
    return out, times, sorted(flags)


def _video_packets_from(container, vstream, target: int, budget: _Budget):
    """The video packets (with a pts) from the keyframe a backward seek to ``target`` (stream
    ticks) lands on, onwards -- demuxed, not decoded; ends at the end of the stream.

    The one seek + demux scan of the keyframe paths (:func:`_nearest_keyframe`,
    :func:`_probe_keyframes`). Raises ``av.error.FFmpegError`` when the demuxer refuses; the
    caller decides what that means."""
    container.seek(target, stream=vstream, backward=True, any_frame=False)
    for pkt in container.demux(vstream):
        budget.tick()
        if pkt.size == 0:
            return  # PyAV's end-of-stream marker
        if pkt.pts is not None:
            yield pkt


def _nearest_keyframe(container, vstream, t: float, half: float, budget: _Budget):
    """``(pts, packet)`` of the keyframe nearest ``t`` seconds within ``half`` seconds of it, or
    ``(None, None)``.

    One backward seek to ``t`` (lands on the keyframe at or before it, as the index says), then
    packets are read -- not decoded -- up to the first keyframe after ``t`` or ``t + half``. The
    keyframe's packet is kept, so decoding it needs no second seek."""
    import av

    tb = vstream.time_base
    target = int(math.floor(t / tb))
    lo, hi = target - int(half / tb), target + int(half / tb)
    before = after = None
    try:
        for pkt in _video_packets_from(container, vstream, target, budget):
            if pkt.is_keyframe:
                if pkt.pts <= target:
                    before = pkt
                else:
                    after = pkt
                    break
            if pkt.pts > hi and before is not None:
                break
            if pkt.pts > hi + int(half / tb) + int(10 / tb):
                break  # no keyframe near: leave it to the exact path
    except av.error.FFmpegError:
        return None, None
    best = None
    for k in (before, after):
        if k is not None and lo <= k.pts <= hi and (best is None or abs(k.pts - target) < abs(best.pts - target)):
            best = k
    return (int(best.pts), best) if best is not None else (None, None)


def _decode_keyframe(vstream, pkt):
    """The picture of one keyframe packet, decoded on its own (from a flushed decoder that skips
    every non-key frame), or None. Intra-coded: the same pixels as when decoded in its GOP."""
    import av

    cc = vstream.codec_context
    try:
        cc.flush_buffers()
        cc.skip_frame = "NONKEY"
        # A decoder with B-frame reordering holds the picture back until it is drained.
        frames = vstream.decode(pkt) or vstream.decode(None)
        frame = frames[0] if frames else None
    except av.error.FFmpegError:
        frame = None
    cc.skip_frame = "DEFAULT"
    cc.flush_buffers()
    if frame is not None:
        frame.pts = int(pkt.pts)
    return frame


class _SeekFailed(Exception):
    """The demuxer refused a seek; the caller re-reads the file without seeking."""


class _Budget:
    """Counts demuxed packets and checks the wall clock; raises MediaError when exhausted."""

    def __init__(self, p: Path, deadline: float, time_limit: float) -> None:
        self.p, self.deadline, self.time_limit, self.packets = p, deadline, time_limit, 0

    def tick(self) -> None:
        self.packets += 1
        if self.packets > MAX_PACKETS:
            raise MediaError(f"{self.p}: gave up after {MAX_PACKETS} packets (keyframes too sparse?)")
        if (self.packets & 15) == 0 and time.monotonic() > self.deadline:
            raise MediaError(f"{self.p}: decoding took longer than {self.time_limit:g} s")


def _seek(container, stream, pts: int | None) -> None:
    """Seek to the keyframe at/before ``pts`` (None: the start); :class:`_SeekFailed` if refused."""
    import av

    try:
        if pts is not None:
            container.seek(pts, stream=stream, backward=True, any_frame=False)
            return
    except av.error.FFmpegError:
        pass
    try:
        container.seek(0)  # global start; lands on the first keyframe
    except av.error.FFmpegError:
        raise _SeekFailed from None


def _probe_keyframes(container, vstream, targets: list[int], budget: _Budget) -> list[int | None]:
    """For each target, the pts of the keyframe a backward seek lands on (None: use the start).

    A seek plus one demuxed packet per target -- no decoding. A landing that is not a keyframe
    or lies after the target (imprecise demuxer index) falls back to the previous answer, or the
    start of the file, so decoding always begins on a keyframe at or before the target.
    """
    import av

    keys: list[int | None] = []
    last: int | None = None
    for target in targets:
        key = None
        try:
            for pkt in _video_packets_from(container, vstream, target, budget):
                if pkt.is_keyframe and pkt.pts <= target:
                    key = int(pkt.pts)
                break
        except av.error.FFmpegError:
            key = None
        if key is None or (last is not None and key < last):
            key = last
        keys.append(key)
        last = key
    return keys


def _skip_mode(pts: int | None, targets: list[int], margin: int) -> str:
    if pts is None:
        return "DEFAULT"
    k = bisect.bisect_left(targets, pts)  # next target at or after this frame
    if k < len(targets) and targets[k] - pts <= margin:
        return "DEFAULT"
    # Too early for the next target, or past the last one (then it only has to close it).
    return "NONREF"


def _frame_pts(frame, prev, tb, frame_dur: float) -> int:
    if frame.pts is not None:
        return int(frame.pts)
    if frame.dts is not None:
        return int(frame.dts)
    if prev is not None:
        return int(prev.pts + max(1, round(frame_dur / tb)))
    return 0


class _Scaler:
    """:meth:`square_rgb` with one swscale context for a clip's frames (``frame.reformat`` makes
    a new one per frame; same parameters, same pixels)."""

    def __init__(self) -> None:
        from av.video.reformatter import VideoReformatter

        self._reformatter = VideoReformatter()

    def square_rgb(self, frame, size: int, sar) -> np.ndarray:
        """Scale so the shorter *display* side is ``size`` (honours anamorphic SAR), centre-crop."""
        w, h = frame.width, frame.height
        aspect = float(sar) if sar and sar > 0 else 1.0
        disp_w = w * aspect
        if disp_w >= h:
            out_h, out_w = size, max(size, int(round(disp_w * size / h)))
        else:
            out_w, out_h = size, max(size, int(round(h * size / disp_w)))
        # One swscale thread: spinning up a thread pool for a 96-px output costs more than it
        # saves (and competes with the decoder on a busy box).
        rgb = self._reformatter.reformat(frame, width=out_w, height=out_h, format="rgb24",
                                         interpolation="BILINEAR", threads=1).to_ndarray()
        y0, x0 = (out_h - size) // 2, (out_w - size) // 2
        return rgb[y0 : y0 + size, x0 : x0 + size]


def _square_rgb(frame, size: int, sar) -> np.ndarray:
    """One frame through a fresh :class:`_Scaler`."""
    return _Scaler().square_rgb(frame, size, sar)


# --------------------------------------------------------------------------- audio


def _read_audio_or_silence(container, astream, p: Path, cfg: FeatureConfig, centre: float,
                           budget: _Budget, *, seekable: bool,
                           has_audio: bool = True) -> tuple[np.ndarray, tuple[str, ...]]:
    if astream is None:
        flags = ("audio_unreadable", "no_audio") if has_audio else ("no_audio",)
        return np.zeros(cfg.audio_samples, dtype=np.float32), flags
    audio, covered, errors = _read_audio_window(container, astream, p, cfg, centre, budget,
                                                seekable=seekable)
    return audio, _audio_flags(cfg, covered, errors)


def _audio_flags(cfg: FeatureConfig, covered: int, errors: int) -> tuple[str, ...]:
    if covered == 0:
        return ("audio_unreadable", "no_audio") if errors else ("audio_padded",)
    # A few ms short at an edge is resampler/priming jitter, not missing audio.
    if cfg.audio_samples - covered > cfg.sample_rate // 100:
        return ("audio_padded",)
    return ()


def _read_audio_window(container, astream, p: Path, cfg: FeatureConfig, centre: float,
                       budget: _Budget, *, seekable: bool) -> tuple[np.ndarray, int, int]:
    """Resampled mono audio of the window centred on ``centre`` (s); (audio, covered, errors).

    Decoding starts :data:`AUDIO_PREROLL` s before the window (a seek on the audio stream);
    if that lands after the window start (a demuxer without an audio index), it restarts from
    the beginning of the file. The window is placed by the first resampled pts, so its
    sub-sample phase (and with 1 ms time bases, as in WebM, up to +-1 ms) depends on where
    decoding starts -- fixed for a given file, so features are reproducible; against a decode
    from the very start the log-mel differs by <= 0.1 nats (median 0.002) on the real clips. ``seekable=False``: ``container`` is fresh, read from the start.
    """
    import av

    sr = cfg.sample_rate
    want = cfg.audio_samples
    win_start = centre - want / (2.0 * sr)
    out = np.zeros(want, dtype=np.float32)
    filled = np.zeros(want, dtype=bool)
    errors = 0
    # frame_sampling="keyframe" configs (newer than "exact") also resample in batches of
    # AUDIO_CHUNK_FRAMES decoded frames: the resampler (a filter graph in PyAV) has a fixed cost
    # per call. Same filter, same signal; "exact" keeps its per-frame path and preroll so that
    # old bundles get bit-identical features.
    batch = cfg.frame_sampling != "exact"
    preroll = AUDIO_PREROLL_BATCH if batch else AUDIO_PREROLL
    win_end = win_start + want / sr + 0.05  # + the resampler's filter delay

    for attempt in ("seek", "start"):
        out[:] = 0.0
        filled[:] = False
        seek_to = win_start - preroll if attempt == "seek" else None
        if not seekable:
            attempt = "start"  # fresh container: already at the start
        else:
            try:
                if seek_to is None or seek_to <= 0:
                    attempt = "start"
                    container.seek(0)
                else:
                    container.seek(int(seek_to / astream.time_base), stream=astream, backward=True)
            except av.error.FFmpegError:
                if attempt == "start":
                    raise _SeekFailed from None
                continue
            astream.codec_context.flush_buffers()
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
        pending: list = []
        first_time: float | None = None
        done = False
        full = False  # the window is filled (place() said so)
        produced: int | None = None

        def place(frames) -> bool:
            nonlocal produced
            for fr in frames:
                data = fr.to_ndarray().reshape(-1)
                # The resampler's output is one continuous signal: anchor it once on the first
                # output pts (in 1/sr) and then count samples. Per-frame pts from coarse time
                # bases (1 ms in WebM) would leave holes or overlaps of a few samples.
                if produced is None:
                    produced = int(fr.pts) if fr.pts is not None else 0
                pos = produced
                produced = pos + data.shape[0]
                a = pos - int(round(win_start * sr))
                lo, hi = max(a, 0), min(a + data.shape[0], want)
                if lo < hi:
                    out[lo:hi] = data[lo - a : hi - a]
                    filled[lo:hi] = True
                if a + data.shape[0] >= want:
                    return True
            return False

        try:
            for pkt in container.demux(astream):
                budget.tick()
                if pkt.size == 0:
                    continue
                try:
                    decoded = astream.decode(pkt)
                except av.error.FFmpegError:
                    errors += 1
                    if errors > MAX_DECODE_ERRORS:
                        break
                    continue
                for frame in decoded:
                    if frame.pts is None and first_time is None:
                        frame.pts = 0
                    # == float(pts * time_base) (int / int rounds correctly), without Fractions
                    tb = frame.time_base
                    t = frame.pts * tb.numerator / tb.denominator if frame.pts is not None else None
                    if first_time is None and t is not None:
                        first_time = t
                    if batch:
                        pending.append(frame)
                        if len(pending) >= AUDIO_CHUNK_FRAMES:
                            full = any(place(resampler.resample(f)) for f in _joined(pending))
                            pending.clear()
                            if full:
                                done = True
                                break
                        if t is not None and t + frame.samples / frame.sample_rate >= win_end:
                            done = True
                            break
                    elif place(resampler.resample(frame)):
                        done = True
                        break
                if done:
                    break
            if batch:
                if not full:
                    full = any(place(resampler.resample(f)) for f in _joined(pending))
                pending.clear()
                done = full
            if not done:
                place(resampler.resample(None))
        except av.error.FFmpegError:
            errors += 1  # damaged data: keep what decoded
        except ValueError:
            errors += 1  # the stream changed layout/rate mid-way; keep what we have
        if attempt == "seek" and first_time is not None and first_time > win_start + 0.01 and win_start > 0:
            continue  # the seek overshot the window: decode again from the start
        break
    return out, int(filled.sum()), errors


def _joined(frames: list) -> list:
    """Decoded audio frames as one frame (a list of one), or as they are where their format,
    layout or rate changes (the resampler then takes them one by one)."""
    import av

    if len(frames) < 2:
        return frames
    f0 = frames[0]
    key = (f0.format.name, f0.layout.name, f0.sample_rate)
    if any((f.format.name, f.layout.name, f.sample_rate) != key for f in frames):
        return frames
    # FFmpeg's audio FIFO copies the samples in C: the same frame as concatenating
    # ``to_ndarray()`` of each, at a fifth of the cost.
    fifo = av.AudioFifo()
    pts, time_base = f0.pts, f0.time_base
    for f in frames:
        f.pts = None  # the FIFO checks pts continuity, which coarse time bases break
        fifo.write(f)
    big = fifo.read()
    big.sample_rate = key[2]
    big.pts, big.time_base = pts, time_base
    return [big]
