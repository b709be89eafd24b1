"""What forgetting a profile costs: ``History.clear`` with ``secure_delete`` and a truncating
WAL checkpoint (what the box does), against a plain DELETE (leaves the rows readable in free
pages and in the WAL) and a DELETE + VACUUM (rewrites the whole file), side by side in one run.

For each variant: a history of ``--profiles`` profiles x ``--events`` events each, one profile
cleared; reported: median time of the clear (``--repeats`` fresh databases), the file's size,
and whether any of the cleared profile's bytes (a distinctive position value) are still in the
database file or its WAL. Also the cost ``secure_delete`` adds to ordinary writes (recording
events), since the pragma is on for the connection's whole life.

    .venv/bin/python bench/privacy_clear.py [--json bench/results/privacy_clear.json]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device.history import History  # noqa: E402

MARKER = 4321.98765


def build(path: Path, profiles: int, events: int) -> None:
    with History(path, clock=lambda: 1.8e9) as h:
        h.upsert_items([{"id": f"m{i}", "title": f"T{i}", "duration": 9000.0} for i in range(500)])
        for p in range(profiles):
            h.add_profile(f"p{p}")
            pos = MARKER if p == 0 else 1000.0 + p
            h.record_many({"profile_id": f"p{p}", "item_id": f"m{(p * 7 + i) % 500}",
                           "kind": "progress", "position": pos, "timestamp": 1.7e9 + i}
                          for i in range(events))


def leftover(path: Path) -> bool:
    raw = path.read_bytes()
    wal = path.with_name(path.name + "-wal")
    if wal.exists():
        raw += wal.read_bytes()
    return struct.pack(">d", MARKER) in raw


def run(variant: str, tmp: Path, profiles: int, events: int) -> dict:
    path = tmp / f"{variant}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    build(path, profiles, events)
    if variant == "box: secure_delete + checkpoint":
        with History(path) as h:
            t0 = time.perf_counter()
            h.clear("p0")
            ms = (time.perf_counter() - t0) * 1000
    else:
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA secure_delete = OFF")
        t0 = time.perf_counter()
        with conn:
            conn.execute("DELETE FROM events WHERE profile_id = 'p0'")
            conn.execute("DELETE FROM item_flags WHERE profile_id = 'p0'")
        if variant == "DELETE + VACUUM":
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        ms = (time.perf_counter() - t0) * 1000
        conn.close()
    return {"ms": ms, "db_bytes": path.stat().st_size, "recoverable": leftover(path)}


def write_cost(tmp: Path, secure: bool, n: int = 2000) -> float:
    path = tmp / f"w{int(secure)}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    with History(path) as h:
        if not secure:
            h._conn.execute("PRAGMA secure_delete = OFF")
        h.upsert_items([{"id": "m", "title": "T", "duration": 9000.0}])
        h.add_profile("p")
        t0 = time.perf_counter()
        for i in range(n):
            h.record("p", "m", "progress", position=float(i), timestamp=1.7e9 + i)
        return (time.perf_counter() - t0) * 1e6 / n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profiles", type=int, default=6)
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=str(ROOT / "bench/results/privacy_clear.json"))
    args = ap.parse_args(argv)
    variants = ["plain DELETE", "box: secure_delete + checkpoint", "DELETE + VACUUM"]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = {v: [] for v in variants}
        for _ in range(args.repeats):  # interleaved: the variants see the same machine load
            for v in variants:
                runs[v].append(run(v, Path(tmp), args.profiles, args.events))
        for v in variants:
            out[v] = {"clear_ms_median": float(np.median([r["ms"] for r in runs[v]])),
                      "db_bytes": runs[v][-1]["db_bytes"],
                      "recoverable": any(r["recoverable"] for r in runs[v])}
        w = {s: [write_cost(Path(tmp), s) for _ in range(args.repeats)] for s in (False, True)}
    out["record_us_median"] = {"secure_delete off": float(np.median(w[False])),
                               "secure_delete on": float(np.median(w[True]))}
    print(f"clearing 1 of {args.profiles} profiles x {args.events:,} events (median of {args.repeats})")
    print(f"{'variant':34s} {'clear ms':>9s} {'file MB':>8s}  cleared rows readable?")
    for v in variants:
        r = out[v]
        print(f"{v:34s} {r['clear_ms_median']:9.1f} {r['db_bytes'] / 1e6:8.2f}  "
              f"{'YES' if r['recoverable'] else 'no'}")
    rc = out["record_us_median"]
    print(f"record(): {rc['secure_delete off']:.0f} us off, {rc['secure_delete on']:.0f} us on")
    out.update({"profiles": args.profiles, "events_per_profile": args.events})
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
