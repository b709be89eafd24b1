"""Read MovieLens ratings (``u.data`` or ``ratings.csv``) into plain arrays.

Both formats become an :class:`Interactions`: parallel arrays of user ids, item ids and
timestamps. Every rating counts as one interaction (the protocol in
``../shared/notes/cf-anchors.md``); the rating value is kept for callers that want it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from device.errors import DataFormatError


@dataclass(frozen=True)
class Interactions:
    """User-item interactions as parallel arrays (one row per event).

    Attributes
    ----------
    users, items : np.ndarray of str
        Raw ids as they appear in the file.
    timestamps : np.ndarray of float64
        Unix seconds.
    ratings : np.ndarray of float32
        Explicit rating if the source had one (1.0 otherwise).
    """

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    ratings: np.ndarray

    def __len__(self) -> int:
        return len(self.users)


def load_ratings(path: str | os.PathLike) -> Interactions:
    """Load MovieLens ``u.data`` (tab-separated, no header) or ``ratings.csv``.

    ``ratings.csv`` is recognised by its header ``userId,movieId,rating,timestamp``.

    Raises
    ------
    DataFormatError
        If the file is missing, empty, or a line does not have four fields with a numeric
        rating and timestamp; the message names the file and the line number.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError as err:
        raise DataFormatError(f"{path}: cannot read ratings ({err.strerror or err})") from err
    if not lines:
        raise DataFormatError(f"{path}: empty ratings file")

    first = lines[0].strip().lower().replace(" ", "")
    if first.startswith("userid,movieid,rating,timestamp"):
        sep, start = ",", 1
    elif "\t" in lines[0]:
        sep, start = "\t", 0
    else:
        raise DataFormatError(
            f"{path}:1: not MovieLens ratings (want u.data tab-separated fields or a "
            "ratings.csv header userId,movieId,rating,timestamp)"
        )

    users, items, ratings, stamps = [], [], [], []
    for lineno in range(start, len(lines)):
        line = lines[lineno]
        if not line.strip():
            continue
        fields = line.split(sep)
        if len(fields) != 4:
            raise DataFormatError(
                f"{path}:{lineno + 1}: expected 4 fields (user, item, rating, timestamp), "
                f"got {len(fields)}: {line[:60]!r}"
            )
        user, item, rating, stamp = (f.strip() for f in fields)
        if not user or not item:
            raise DataFormatError(f"{path}:{lineno + 1}: empty user or item id")
        try:
            r, t = float(rating), float(stamp)
        except ValueError:
            raise DataFormatError(
                f"{path}:{lineno + 1}: rating and timestamp must be numbers: {line[:60]!r}"
            ) from None
        if not (np.isfinite(r) and np.isfinite(t)):
            raise DataFormatError(f"{path}:{lineno + 1}: rating/timestamp not finite")
        users.append(user)
        items.append(item)
        ratings.append(r)
        stamps.append(t)
    if not users:
        raise DataFormatError(f"{path}: no ratings found")
    return Interactions(
        users=np.asarray(users, dtype=object),
        items=np.asarray(items, dtype=object),
        timestamps=np.asarray(stamps, dtype=np.float64),
        ratings=np.asarray(ratings, dtype=np.float32),
    )
