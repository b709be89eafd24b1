"""The engine's own process: the real :class:`device.engine.Engine`, as the box would run it.

The simulator never runs recommendations on its UI thread, and it does not run them in its own
process either: the box runs the engine as a service beside the launcher, so the simulator does
the same. That keeps the budget overlay honest -- the memory it shows is the engine process's
resident set (numpy, SQLite, LiteRT and the bundle), not Qt's -- and a slow ``home()`` can never
freeze the screen.

This module imports :mod:`device` only (never PySide6): it is what the child process loads.
The protocol is a pipe of plain tuples; see :func:`serve`.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from device.budget import status_mb
from device.content import embed_files_isolated
from device.engine import Engine
from device.errors import TvrecError

#: Demo viewers created in a new database: one with a viewing past, one brand new, and a kids
#: profile that sees nothing rated above 7 (on a catalog without ratings: nothing at all, as
#: unrated programmes are hidden from kids).
DEMO_PROFILES = (("alex", "Alex", None), ("sam", "Sam", None), ("kids", "Kids", 7))
#: Video files the simulator adds as the box's own recordings.
MEDIA_SUFFIXES = {".mp4", ".mkv", ".webm", ".mov", ".avi", ".ts", ".m4v"}


def demo_picks(bundle, n_same: int = 3, n_other: int = 2) -> tuple[list[str], list[str]]:
    """Warm items for a demo viewer's past, most popular first: ``n_same`` of the most popular
    item's primary genre and ``n_other`` of other genres (so every row of the home screen has
    something to show). The simulator's seed and ``tvrec demo`` both watch these."""
    pop = np.asarray(bundle.table.popularity)
    warm = np.flatnonzero(~np.asarray(bundle.items.cold, dtype=bool))
    by_pop = warm[np.argsort(-pop[warm], kind="stable")]
    genre = lambda r: (bundle.items.genres[r] or [""])[0]  # noqa: E731
    top = genre(by_pop[0])
    same = [str(bundle.items.ids[r]) for r in by_pop if genre(r) == top][:n_same]
    other = [str(bundle.items.ids[r]) for r in by_pop if genre(r) != top][:n_other]
    return same, other


class EngineService:
    """What the simulator may ask of the engine: one method per request, plain data back."""

    def __init__(self, bundle: str, db: str, num_threads: int = 1):
        t0 = time.perf_counter()
        self.engine = Engine(bundle, db, num_threads=num_threads)
        self.open_ms = (time.perf_counter() - t0) * 1000.0
        self.cold_start_ms: float | None = None  # open + first home(), as the box sees it
        self.model_bytes = (os.path.getsize(self.engine.bundle.model_path)
                            if self.engine.bundle.model_path else None)

    # -------------------------------------------------------------- screens

    def home(self, profile: str, now: float | None = None):
        rows = self.engine.home(profile, now)
        if self.cold_start_ms is None:
            self.cold_start_ms = self.open_ms + self.engine.timings.home_ms
        return rows

    def similar(self, item_id: str, n: int = 12, profile: str | None = None):
        return self.engine.similar(item_id, n, profile)

    def media_path(self, item_id: str) -> str | None:
        """The recording's file for local items (None for catalog items: no media on the box)."""
        if not self.engine.history.has_item(item_id):
            return None
        path = self.engine.history.item(item_id).media_path
        return path if path and Path(path).exists() else None

    def resume_position(self, profile: str, item_id: str) -> float:
        for r in self.engine.history.continue_watching(profile, limit=100):
            if r.item_id == item_id:
                return float(r.position)
        return 0.0

    # -------------------------------------------------------------- history

    def record(self, profile: str, item_id: str, kind: str, position: float | None = None):
        return self.engine.record(profile, item_id, kind, position=position)

    def card_action(self, profile: str, item_id: str, action: str):
        """One of the card menu's actions (the Engine methods of the same names)."""
        if action not in CARD_ACTIONS:
            raise ValueError(f"unknown card action {action!r}")
        return getattr(self.engine, action)(profile, item_id)

    def card_state(self, profile: str, item_id: str) -> dict[str, Any]:
        """What the card menu needs to label its lines."""
        h = self.engine.history
        return {"on_list": item_id in h.flags(profile, "my_list"),
                "resume_at": self.resume_position(profile, item_id)}

    def profiles(self) -> list[tuple[str, str, bool, int | None]]:
        """(id, name, history paused, kids maximum rating or None) per profile."""
        return [(p.id, p.display_name, p.history_paused, p.kids_max_maturity)
                for p in self.engine.history.profiles()]

    def add_profile(self, profile: str, name: str | None = None, kids_max_maturity=None):
        self.engine.add_profile(profile, name, kids_max_maturity=kids_max_maturity)
        return self.profiles()

    def seed_from_log(self, path: str, user: str, profile: str | None = None):
        """Replay a real household: ``user``'s earliest 75% of ``path``'s rows into a profile
        (see :func:`device.replay.seed_profile`); returns (profile, report)."""
        from device.replay import seed_profile

        report = seed_profile(self.engine, path, user, profile)
        return report["profile"], report

    def set_paused(self, profile: str, paused: bool) -> bool:
        (self.engine.history.pause if paused else self.engine.history.resume)(profile)
        return self.engine.history.is_paused(profile)

    def clear(self, profile: str) -> int:
        return self.engine.history.clear(profile)

    def seed_demo(self) -> list[tuple[str, str, bool]]:
        """In a database without profiles: Alex, who has watched a few popular shows of one
        genre (so every row appears), and Sam, who is new (Popular now only)."""
        if self.engine.history.profiles():
            return self.profiles()
        for pid, name, kids in DEMO_PROFILES:
            self.engine.add_profile(pid, name, kids_max_maturity=kids)
        same, other = demo_picks(self.engine.bundle)
        for item in same[:2]:
            self.engine.record("alex", item, "play", position=0.0)
            self.engine.record("alex", item, "finish")
        if same:
            self.engine.record("alex", same[0], "like")
        if len(same) > 2:
            d = self.engine.card(same[2]).duration
            self.engine.record("alex", same[2], "play", position=0.0)
            self.engine.record("alex", same[2], "stop", position=0.4 * d)
        if other:
            d = self.engine.card(other[0]).duration
            self.engine.record("alex", other[0], "play", position=0.0)
            self.engine.record("alex", other[0], "stop", position=0.3 * d)
        return self.profiles()

    # -------------------------------------------------------------- local content

    def add_media_dir(self, folder: str) -> dict[str, Any]:
        """Embed every video in ``folder`` not already on the box; a file that cannot be decoded
        is reported by name and skipped (nothing stored for it).

        Decoding runs in a short-lived child (:func:`device.content.embed_files_isolated`), as
        a box would run it as a background job: FFmpeg and its frame buffers never enter the
        engine process, whose memory the overlay judges."""
        added, skipped, errors = [], [], []
        todo = []
        for path in sorted(Path(folder).iterdir()):
            if path.suffix.lower() not in MEDIA_SUFFIXES or not path.is_file():
                continue
            item_id = f"local:{path.stem}"
            if self.engine.history.has_item(item_id):
                skipped.append(item_id)
            else:
                todo.append(path)
        if todo:
            b = self.engine.bundle
            results = embed_files_isolated(b.model_path, b.feature_config, todo,
                                           num_threads=self.engine.num_threads)
            for path, res in zip(todo, results):
                if isinstance(res, Exception):
                    errors.append(str(res))
                    continue
                try:
                    card = self.engine.add_local_item(
                        path, {"id": f"local:{path.stem}", "title": _title_of(path)}, embedded=res)
                    added.append(card.item_id)
                except TvrecError as e:
                    errors.append(str(e))
        return {"added": added, "skipped": skipped, "errors": errors}

    # -------------------------------------------------------------- budget

    def stats(self) -> dict[str, Any]:
        t = self.engine.timings
        return {
            "home_ms": t.home_ms,
            "embed_ms": t.embed_ms,
            "open_ms": self.open_ms,
            "cold_start_ms": self.cold_start_ms,
            "rss_mb": status_mb("VmRSS"),
            # VmHWM, not ru_maxrss: this is a child of the (big) Qt process (status_mb).
            "rss_peak_mb": status_mb("VmHWM"),
            "model_bytes": self.model_bytes,
            "n_items": self.engine.bundle.n_items,
            "pid": os.getpid(),
        }

    def loaded_modules(self, prefixes: list[str]) -> list[str]:
        """Which of these top-level modules the engine process has imported (tests use it)."""
        return sorted({m.split(".")[0] for m in sys.modules} & set(prefixes))


def _title_of(path: Path) -> str:
    return path.stem.replace("_", " ").replace("-", " ").strip().title() or path.name


#: What a card menu may ask of the engine (Engine methods taking a profile and an item).
CARD_ACTIONS = ("remove_from_continue", "not_interested", "add_to_list", "remove_from_list",
                "mark_watched")

#: The requests a client may make (anything else is refused by name).
METHODS = {name for name in dir(EngineService) if not name.startswith("_")}


def serve(conn, bundle: str, db: str, num_threads: int = 1) -> None:
    """The child process's loop: ``(request_id, method, args)`` in, ``(request_id, result,
    error, stats)`` out; ``None`` ends it. Errors travel as ``(type name, message)``."""
    try:
        service = EngineService(bundle, db, num_threads)
    except TvrecError as e:
        conn.send(("ready", None, (type(e).__name__, str(e)), None))
        return
    conn.send(("ready", None, None, service.stats()))
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            break
        if msg is None:
            break
        req_id, method, args = msg
        result, error = None, None
        try:
            if method not in METHODS:
                raise AttributeError(f"the engine has no request {method!r}")
            result = getattr(service, method)(*args)
        except TvrecError as e:
            error = (type(e).__name__, str(e))
        except Exception as e:  # a bug: report it, keep serving
            error = (type(e).__name__, f"{type(e).__name__}: {e}")
        conn.send((req_id, result, error, service.stats()))
    service.engine.close()
