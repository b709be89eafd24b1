"""The UI side of the engine process: asynchronous requests, answers delivered on the Qt thread.

::

    client = EngineClient("demo/bundle", "history.db")
    client.call("home", "alex", on_result=show_rows, on_error=show_toast)

Requests go, in order, to one engine process (:mod:`simulator.engine_process`) through a pipe;
a plain Python thread waits for each answer and hands it to the Qt thread through a queued
signal. The UI thread never waits on the engine.
"""

from __future__ import annotations

import atexit
import itertools
import multiprocessing as mp
import os
import queue
import threading
from typing import Any, Callable

import shiboken6
from PySide6.QtCore import QObject, Signal

from device import errors as device_errors
from simulator import engine_process


class EngineUnavailableError(device_errors.TvrecError):
    """The engine process could not start or has stopped."""


def _error_from(kind: str, message: str) -> Exception:
    cls = getattr(device_errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        return cls(message)
    return EngineUnavailableError(message) if kind == "EngineUnavailableError" else RuntimeError(message)


class EngineClient(QObject):
    """Requests to the engine process; answers arrive as callbacks on the Qt thread.

    Signals
    -------
    answered((request_id, result, error, stats))
        Every answer, as one tuple (the overlay listens for ``stats``). One tuple, not four
        arguments: PySide6 on Python 3.11 miscounts references when ``None`` travels as an
        ``object`` signal argument across threads, which crashed the interpreter at exit.
    ready(stats)
        The engine process has opened the bundle and the database.

    ``enforce``: a hardware profile name; the engine process then runs in a cgroup with that
    profile's memory budget and CPU quota (:func:`simulator.engine_process.serve`).
    """

    answered = Signal(object)
    ready = Signal(object)

    def __init__(self, bundle: str, db: str, *, num_threads: int = 1, parent: QObject | None = None,
                 enforce: str | None = None):
        super().__init__(parent)
        self.stats: dict[str, Any] = {}
        self.error: Exception | None = None
        self._callbacks: dict[int, tuple[Callable | None, Callable | None]] = {}
        self._ids = itertools.count(1)
        self._requests: queue.Queue = queue.Queue()
        self._pending = 0
        self._closed = False
        # The box runs its engine with one BLAS thread (see device/budget.py); the spawned
        # child inherits the environment, and numpy reads it when first imported there.
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
            os.environ.setdefault(var, "1")
        ctx = mp.get_context("spawn")  # a clean process: no Qt state forked into the engine
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=engine_process.serve,
                                   args=(child, str(bundle), str(db), num_threads, enforce),
                                   name="tvrec-engine", daemon=False)
        # Not a daemon: the engine starts its own short-lived children (isolated embedding),
        # which daemonic processes may not. It still ends with the UI: close() at exit, and if
        # the UI dies the pipe closes and the engine's recv() ends its loop.
        self.process.start()
        atexit.register(self.close)
        child.close()
        self.answered.connect(self._dispatch)
        self._thread = threading.Thread(target=self._pump, name="tvrec-engine-pump", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ API

    @property
    def busy(self) -> bool:
        """Whether a request is still waiting for its answer."""
        return self._pending > 0

    def call(self, method: str, *args: Any, on_result: Callable[[Any], None] | None = None,
             on_error: Callable[[Exception], None] | None = None,
             owner: QObject | None = None) -> int:
        """Queue a request; returns its id. ``on_result``/``on_error`` run on the Qt thread,
        unless ``owner`` (the widget that asked) has been destroyed by the time the answer
        arrives: a closed screen must not be painted into."""
        req_id = next(self._ids)
        self._callbacks[req_id] = (on_result, on_error, owner)
        self._pending += 1
        if self._closed:
            self.answered.emit((req_id, None, ("EngineUnavailableError", "the engine has stopped"), {}))
        else:
            self._requests.put((req_id, method, args))
        return req_id

    def close(self, timeout: float = 5.0) -> None:
        """Stop the engine process (it closes its database cleanly)."""
        if self._closed:
            return
        self._closed = True
        self._requests.put(None)
        self._thread.join(timeout)
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout)

    # ------------------------------------------------------------------ the pump thread

    def _pump(self) -> None:
        try:
            tag, _, error, stats = self._conn.recv()
        except (EOFError, OSError):
            tag, error, stats = "ready", ("EngineUnavailableError", "the engine process died"), None
        if error is not None:
            self.error = _error_from(*error)
            self._closed = True
        self.answered.emit((0, None, error, stats or {}))
        while True:
            msg = self._requests.get()
            if msg is None:
                try:
                    self._conn.send(None)
                except (OSError, BrokenPipeError):
                    pass
                return
            req_id = msg[0]
            if self.error is not None:
                self.answered.emit((req_id, None, ("EngineUnavailableError", str(self.error)), {}))
                continue
            try:
                self._conn.send(msg)
                _, result, error, stats = self._conn.recv()
            except (EOFError, OSError, BrokenPipeError):
                self.error = EngineUnavailableError("the engine process stopped unexpectedly")
                self.answered.emit((req_id, None, ("EngineUnavailableError", str(self.error)), {}))
                continue
            self.answered.emit((req_id, result, error, stats))

    def _dispatch(self, answer: tuple) -> None:
        req_id, result, error, stats = answer
        if stats:
            self.stats = dict(stats)
        if req_id == 0:  # the engine's hello
            self.ready.emit(self.stats)
            return
        on_result, on_error, owner = self._callbacks.pop(req_id, (None, None, None))
        self._pending -= 1
        if owner is not None and not shiboken6.isValid(owner):
            return
        if error is not None:
            exc = _error_from(*error)
            if on_error is not None:
                on_error(exc)
        elif on_result is not None:
            on_result(result)
