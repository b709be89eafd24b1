"""What both command lines (``tvrec``, ``tvrec-device``) share about failing well: every error is
one line on stderr naming the thing and the reason, exit 2, never a traceback.

* :class:`OneLineParser` -- argparse's usage errors as one line (argparse prints the whole usage
  block first; a TV box's journal and a new user both want the reason).
* :func:`oserror_line` -- an ``OSError`` (a file that cannot be read or written) as one line.
* :func:`quiet_broken_pipe` -- ``tvrec recommend ... | head -5``: the reader left, so stop
  without a traceback (and without Python's "Exception ignored" at exit).
* :func:`write_json_report` -- a ``--json`` / ``--out`` report file, or one line naming the flag
  and why it cannot be written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from device.errors import TvrecError

__all__ = ["BROKEN_PIPE_EXIT", "DEFAULT_TRUSTED_KEYS", "OneLineParser", "ReportWriteError",
           "oserror_line", "quiet_broken_pipe", "write_json_report"]

#: Where a box keeps the fleet's trusted public keys (``*.pub``; see :mod:`device.bundle_sign`).
#: Here, not there, so that ``--help`` of either command line imports nothing heavy.
DEFAULT_TRUSTED_KEYS = "/etc/tvrec/keys"

#: 128 + SIGPIPE, what a shell tool killed by the signal reports (`yes | head`).
BROKEN_PIPE_EXIT = 141


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: ``PROG: REASON (see PROG --help)``, exit 2.
    Subparsers made by :meth:`add_subparsers` are of this class too."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: {' '.join(message.split())} (see {self.prog} --help)\n")


def oserror_line(err: OSError) -> str:
    """``<file>: <reason>`` for an OSError (the file named once, the reason without errno)."""
    reason = err.strerror or str(err) or type(err).__name__
    name = err.filename
    return " ".join((f"{name}: {reason}" if name is not None else reason).split())


def quiet_broken_pipe() -> int:
    """Call from an ``except BrokenPipeError``: point stdout at /dev/null so the interpreter's
    final flush cannot fail again, and return the exit code to use."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    return BROKEN_PIPE_EXIT


class ReportWriteError(TvrecError):
    """A report file named on the command line cannot be written (one line, exit 2)."""


def write_json_report(path: str | os.PathLike, data: Any, flag: str = "--json") -> None:
    """Write ``data`` as JSON (2-space indent, sorted keys, final newline) to the file a command's
    ``flag`` named; raises :class:`ReportWriteError` ``"FLAG PATH: cannot write (reason)"``."""
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    except OSError as err:
        raise ReportWriteError(f"{flag} {path}: cannot write ({err.strerror or err})") from None
