"""Playing a programme on an accelerated clock, and the watch events that playing produces.

A 45-minute episode cannot take 45 minutes in a simulator, so the player's clock runs faster
(by default any programme plays through in :data:`PLAY_THROUGH_S` seconds of wall time; a short
recording plays in real time). What playing writes to the history is what a real player on the
box writes: ``play`` with the start position, ``progress`` every tenth of the programme,
``stop`` with the position when the viewer stops, ``finish`` when the end is reached.

:class:`Playback` is plain Python (the events come back as a list for the caller to record), and
:class:`FrameSource` decodes a real video file with PyAV when the programme has one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: Wall-clock seconds in which a programme plays from start to end at the default speed.
PLAY_THROUGH_S = 30.0
#: A progress event every this fraction of the programme.
PROGRESS_EVERY = 0.1
#: One press of left/right seeks by this fraction of the programme.
SEEK_FRACTION = 0.1


@dataclass
class Playback:
    """Position and state of one playing programme.

    Parameters
    ----------
    duration : float
        Programme length, seconds.
    position : float
        Where playing starts (a resume point), seconds.
    play_through_s : float
        Wall seconds for the whole programme (the accelerated clock); never slower than real time.
    """

    duration: float
    position: float = 0.0
    play_through_s: float = PLAY_THROUGH_S
    playing: bool = True
    finished: bool = False
    stopped: bool = False
    _next_progress: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.duration = max(float(self.duration), 1e-3)
        self.position = min(max(float(self.position), 0.0), self.duration)
        self._next_progress = self._progress_mark_after(self.position)

    @property
    def speed(self) -> float:
        """Programme seconds per wall second."""
        return max(1.0, self.duration / max(self.play_through_s, 1e-3))

    @property
    def fraction(self) -> float:
        return self.position / self.duration

    def _progress_mark_after(self, position: float) -> float:
        step = PROGRESS_EVERY * self.duration
        return (int(position / step) + 1) * step

    def start(self) -> list[tuple[str, float | None]]:
        """The event that opening the player writes."""
        return [("play", self.position)]

    def advance(self, wall_seconds: float) -> list[tuple[str, float | None]]:
        """Move the clock on; returns the events crossed (progress marks, finish)."""
        if not self.playing or self.finished or self.stopped:
            return []
        return self._move_to(self.position + wall_seconds * self.speed)

    def seek(self, steps: int) -> list[tuple[str, float | None]]:
        """Jump by ``steps`` x :data:`SEEK_FRACTION` of the programme (negative: back)."""
        if self.finished or self.stopped:
            return []
        target = self.position + steps * SEEK_FRACTION * self.duration
        if target < self.position:
            self.position = max(0.0, target)
            self._next_progress = self._progress_mark_after(self.position)
            return [("progress", self.position)]
        return self._move_to(target)

    def toggle(self) -> None:
        if not (self.finished or self.stopped):
            self.playing = not self.playing

    def stop(self) -> list[tuple[str, float | None]]:
        """The viewer leaves the player: a stop event at the position (none after the end)."""
        if self.finished or self.stopped:
            return []
        self.stopped = True
        self.playing = False
        return [("stop", self.position)]

    def _move_to(self, target: float) -> list[tuple[str, float | None]]:
        events: list[tuple[str, float | None]] = []
        if target >= self.duration:
            self.position = self.duration
            self.finished = True
            self.playing = False
            return [("finish", self.duration)]
        if target >= self._next_progress:
            events.append(("progress", target))
            self._next_progress = self._progress_mark_after(target)
        self.position = target
        return events


class FrameSource:
    """Frames of a real video file, decoded with PyAV and scaled for the screen.

    ``frame_at(t)`` returns an RGB ``numpy`` array (H, W, 3) for time ``t`` seconds, decoding
    forward from the last frame and seeking only when asked to go back or far ahead. Any decode
    problem closes the source; ``frame_at`` then returns ``None`` and the player shows the
    poster instead -- a damaged recording must not take the screen down.
    """

    def __init__(self, path: str | Path, width: int = 960):
        import av  # the simulator's media extra; imported here so the rest works without it

        self.path = Path(path)
        self.width = width
        self._container = av.open(str(self.path))
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self._frames = None
        self._last = None
        self._last_t = -1.0
        self.error: str | None = None

    def _decoder(self):
        if self._frames is None:
            self._frames = self._container.decode(self._stream)
        return self._frames

    def frame_at(self, t: float):
        if self.error is not None:
            return self._last
        try:
            if t < self._last_t - 0.5 or t > self._last_t + 5.0:
                self._container.seek(int(max(t, 0.0) / self._stream.time_base), stream=self._stream,
                                     backward=True, any_frame=False)
                self._frames = None
                self._last_t = -1.0
            for frame in self._decoder():
                ft = float(frame.pts * self._stream.time_base) if frame.pts is not None else self._last_t
                height = int(round(frame.height * self.width / frame.width / 2)) * 2
                self._last = frame.to_ndarray(format="rgb24", width=self.width, height=height)
                self._last_t = ft
                if ft >= t:
                    break
        except Exception as e:  # noqa: BLE001 -- any FFmpeg error means: stop decoding this file
            self.error = f"{self.path.name}: {e}"
            self.close()
        return self._last

    def close(self) -> None:
        try:
            self._container.close()
        except Exception:  # noqa: BLE001
            pass
