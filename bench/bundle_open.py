"""Opening a device bundle: open + verify time and memory, for synthetic 10k and 100k items.

Run:  .venv/bin/python bench/bundle_open.py [--runs 5] [--sizes 10000 100000]
Writes bench/results/bundle_open.json and prints a table.

For each catalog size a synthetic bundle (``synth_bundle``, K=64, D=32, the demo bundle's model
as template when present) is written to a temp folder, then ``open_bundle`` is timed with
``verify="full"`` (sha256 of every file), ``"sizes"`` and ``False``:

* **warm**: files in the page cache (the usual case after an install, or a reopen);
* **cold**: each file's pages evicted first with ``posix_fadvise(DONTNEED)`` (only our own
  files; no global cache drop), which is the boot case -- but on this machine's SSD, not a
  box's eMMC, so read it as a lower bound.

Each figure is the median of ``--runs`` runs. Memory: each level is opened once in a fresh
subprocess; recorded are the RSS delta (psutil) of the open and then of scoring a 50-item
history (``device.cf.score_rows``), each as total RSS and its anonymous part (``rss - shared``).
The ``[N, K]`` arrays are memory-mapped, never loaded: scoring maps only the pages of the rows
it reads -- in 64 KB "fault-around" blocks when the file is in the page cache, which shows up
as file-backed RSS (shared, reclaimable), not anonymous memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device.bundle import open_bundle, synth_bundle  # noqa: E402

LEVELS = ("full", "sizes", "none")

_CHILD = r"""
import json, sys, numpy as np, psutil
sys.path.insert(0, sys.argv[3])
proc = psutil.Process()
from device.bundle import open_bundle
from device.cf import score_rows
rng = np.random.default_rng(0)
rng.choice(10, 2, replace=False)  # first-use allocations of numpy's random, outside the deltas
def mem():
    m = proc.memory_info()
    return np.array([m.rss, m.rss - m.shared]) / 2**20  # total, anonymous (not file-backed)
m0 = mem()
b = open_bundle(sys.argv[1], verify=sys.argv[2])
m1 = mem()
rows = rng.choice(np.flatnonzero(~np.asarray(b.items.cold)), 50, replace=False)
scores = score_rows(b.table, rows, np.ones(50, np.float32))
m2 = mem()
print(json.dumps({"rss_open_mb": m1[0] - m0[0], "anon_open_mb": m1[1] - m0[1],
                  "rss_score_mb": m2[0] - m1[0], "anon_score_mb": m2[1] - m1[1]}))
"""


def evict(path: Path) -> None:
    """Drop this bundle's pages from the page cache (only these files)."""
    for f in path.iterdir():
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def time_open(path: Path, level: str, runs: int, cold: bool) -> float:
    verify = False if level == "none" else level
    times = []
    for _ in range(runs):
        if cold:
            evict(path)
        t0 = time.perf_counter()
        b = open_bundle(path, verify=verify)
        times.append(time.perf_counter() - t0)
        del b
    return statistics.median(times) * 1000.0


def rss(path: Path, level: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path), level, str(ROOT)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "bundle_open.json")
    args = ap.parse_args()

    template = ROOT / "demo" / "bundle"
    template = template if (template / "manifest.json").is_file() else None
    load0 = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            path = Path(tmp) / f"b{n}"
            t0 = time.perf_counter()
            synth_bundle(path, n, k=64, dim=32, seed=0, template=template)
            synth_s = time.perf_counter() - t0
            size_mb = sum(f.stat().st_size for f in path.iterdir()) / 2**20
            for level in LEVELS:
                warm = time_open(path, level, args.runs, cold=False)
                cold = time_open(path, level, args.runs, cold=True)
                mem = rss(path, level)
                rows.append({"n_items": n, "bundle_mb": round(size_mb, 2), "verify": level,
                             "open_warm_ms": round(warm, 2), "open_cold_ms": round(cold, 2),
                             **{key: round(v, 2) for key, v in mem.items()},
                             "synth_s": round(synth_s, 2)})

    head = (f"{'items':>7} {'MB':>6} {'verify':>6} {'warm ms':>8} {'cold ms':>8} "
            f"{'open: RSS / anon MB':>20} {'score: RSS / anon MB':>21}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['n_items']:>7} {r['bundle_mb']:>6.1f} {r['verify']:>6} {r['open_warm_ms']:>8.1f} "
              f"{r['open_cold_ms']:>8.1f} {r['rss_open_mb']:>12.2f} / {r['anon_open_mb']:>5.2f} "
              f"{r['rss_score_mb']:>13.2f} / {r['anon_score_mb']:>5.2f}")
    result = {
        "benchmark": "bundle_open",
        "runs": args.runs,
        "statistic": "median",
        "k": 64, "dim": 32,
        "template_model": template is not None,
        "machine": {"python": platform.python_version(), "machine": platform.machine(),
                    "cpus": os.cpu_count(), "loadavg_start": load0,
                    "loadavg_end": os.getloadavg()},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
