"""Replay a real household on the box: seed a profile's history from one user's rows of a log.

``tvrec sim --viewer-from-log LOG --user ID`` and ``tvrec recommend --viewer-from-log LOG
--user ID`` use it to show what the box would have shown that household: the user's **earliest
75%** of rows (by time) become the profile's history, the rest is what they went on to watch.

Logs, told apart by their first line (not the file name):

- MovieLens ``u.data``: ``user<TAB>item<TAB>rating<TAB>timestamp``, no header;
- MovieLens ``ratings.csv``: header ``userId,movieId,rating,timestamp``;
- a watch-event CSV: header ``profile_id,item_id,timestamp[,completion,liked]``.

A rating becomes a finished viewing (a rating is given after watching; MovieLens timestamps
are *rating* times), liked at 4 stars or more, disliked at 2 or fewer. A watch event becomes a
position at its completion (finished past the thresholds of :class:`device.history.WatchThresholds`)
and its like/dislike. Rows of items the bundle does not know are skipped and counted.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

from device.errors import DataFormatError

#: The share of a user's rows (earliest first) that seeds the profile.
SEED_FRACTION = 0.75


def _format(first: str, path: Path) -> str:
    head = [c.strip().lower() for c in first.strip().split(",")]
    if head[:2] == ["userid", "movieid"]:
        return "ratings_csv"
    if head[:3] == ["profile_id", "item_id", "timestamp"]:
        return "watch_csv"
    if len(first.rstrip("\n").split("\t")) == 4:
        return "u_data"
    raise DataFormatError(f"{path}: line 1: not a log this box can replay (expected MovieLens "
                          "u.data or ratings.csv, or a profile_id,item_id,timestamp CSV)")


def read_user_rows(path: str | os.PathLike, user: str) -> list[dict[str, Any]]:
    """One user's rows of a log, oldest first: dicts with ``item_id``, ``timestamp`` and
    ``rating`` or ``completion``/``liked``. Raises ``DataFormatError`` (file, line, reason)."""
    path = Path(path)
    try:
        fh = open(path, encoding="utf-8", newline="")
    except OSError as e:
        raise DataFormatError(f"{path}: cannot read the log ({e.strerror})") from None
    rows: list[dict[str, Any]] = []
    with fh:
        first = fh.readline()
        kind = _format(first, path)
        reader = csv.reader(fh, delimiter="\t" if kind == "u_data" else ",")
        if kind == "u_data":  # no header: the first line is data
            reader = iter([first.rstrip("\n").split("\t")] + list(reader))
            start = 1
        else:
            start = 2
        for n, fields in enumerate(reader, start=start):
            if not fields or fields[0].strip() != user:
                continue
            try:
                if kind == "watch_csv":
                    row = {"item_id": fields[1].strip(), "timestamp": float(fields[2])}
                    if len(fields) > 3 and fields[3].strip():
                        row["completion"] = float(fields[3])
                    if len(fields) > 4 and fields[4].strip():
                        row["liked"] = int(float(fields[4]))
                else:
                    row = {"item_id": fields[1].strip(), "rating": float(fields[2]),
                           "timestamp": float(fields[3])}
            except (IndexError, ValueError):
                raise DataFormatError(f"{path}: line {n}: expected "
                                      f"{'profile_id,item_id,timestamp' if kind == 'watch_csv' else 'user, item, rating, timestamp'}"
                                      f", got {','.join(fields)!r}") from None
            if not math.isfinite(row["timestamp"]) or row["timestamp"] < 0:
                raise DataFormatError(f"{path}: line {n}: timestamp {fields[2 if kind == 'watch_csv' else 3]!r} "
                                      "is not a time")
            rows.append(row)
    rows.sort(key=lambda r: r["timestamp"])
    return rows


def seed_profile(engine, path: str | os.PathLike, user: str, profile: str | None = None,
                 fraction: float = SEED_FRACTION) -> dict[str, Any]:
    """Seed ``profile`` (default ``"user-<ID>"``) with ``user``'s earliest ``fraction`` of rows.

    A profile that already has events is left as it is (replaying twice changes nothing).
    Returns ``{"profile", "user", "rows", "seeded", "skipped_unknown", "held_out", "already"}``.
    Raises ``DataFormatError`` when the log has no row for ``user``.
    """
    rows = read_user_rows(path, user)
    if not rows:
        raise DataFormatError(f"{path}: no rows for user {user!r}")
    profile = profile or f"user-{user}"
    engine.add_profile(profile, f"User {user} (replayed)")
    report = {"profile": profile, "user": user, "rows": len(rows), "seeded": 0,
              "skipped_unknown": 0, "held_out": 0, "already": False}
    if engine.history.events(profile, limit=1):
        report["already"] = True
        return report
    n_seed = max(1, math.ceil(fraction * len(rows)))
    report["held_out"] = len(rows) - n_seed
    events = []
    th = engine.history.thresholds
    for row in rows[:n_seed]:
        item = row["item_id"]
        if engine._row(item) < 0 and not engine.history.has_item(item):
            report["skipped_unknown"] += 1
            continue
        engine._ensure_item(item)
        d = engine.card(item).duration
        t = row["timestamp"]
        if "rating" in row:
            events.append((item, "finish", None, t))
            if row["rating"] >= 4:
                events.append((item, "like", None, t))
            elif row["rating"] <= 2:
                events.append((item, "dislike", None, t))
        else:
            c = min(max(row.get("completion", 1.0), 0.0), 1.0)
            pos = c * d
            kind = "finish" if pos >= th.finished_s(d) else "stop"
            events.append((item, "play", 0.0, t))
            events.append((item, kind, None if kind == "finish" else pos, t + 1))
            if row.get("liked", 0) > 0:
                events.append((item, "like", None, t + 1))
            elif row.get("liked", 0) < 0:
                events.append((item, "dislike", None, t + 1))
        report["seeded"] += 1
    engine.history.record_many(
        {"profile_id": profile, "item_id": i, "kind": k, "position": pos, "timestamp": t}
        for i, k, pos, t in events)
    return report
