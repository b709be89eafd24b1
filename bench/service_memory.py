"""Resident memory of the box's service, `tvrec-device serve`, as systemd runs it.

Run:  python bench/service_memory.py [--items 100000] [--refreshes 5] [--json OUT]

For the demo bundle and a synthetic bundle of ``--items`` items (``tvrec bundle synth``, cached
in .cache/bench/), starts ``python -m device.service serve`` in its own process with the unit's
environment (``OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1``) on a history database holding a new
viewer and a viewer with 40 events, lets it refresh ``--refreshes`` times (events recorded by
this process, as a launcher would, plus ``SIGHUP``), and reads the service's own
``/proc/PID/status``: ``VmHWM`` (its peak resident set; ``ru_maxrss`` would carry this parent's
over fork+exec) and ``VmRSS``. deploy/tvrec-engine.service's memory figures and caps come from
this run (tests/test_deploy.py checks they agree with bench/results/service_memory.json).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _status(pid: int) -> dict[str, float]:
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0]) / 1024.0  # kB -> MB
    return out


def _wait_index(path: Path, after: float, proc: subprocess.Popen, timeout: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            index = json.loads(path.read_text())
            if index["generated"] > after:
                return index
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.05)
    raise SystemExit(f"no refresh of {path} within {timeout} s")


def measure(bundle: Path, refreshes: int) -> dict:
    from device.bundle import open_bundle
    from device.history import History

    items = open_bundle(bundle).items
    with tempfile.TemporaryDirectory(prefix="tvrec-service-mem-") as tmp:
        db, out = Path(tmp) / "history.db", Path(tmp) / "rows"
        n = len(items.ids)
        picks = [items.record(r) for r in range(0, n, max(1, n // 41))[:41]]
        with History(db) as h:
            h.add_profile("new-viewer")
            h.add_profile("viewer")
            h.upsert_items(picks)
            for i, it in enumerate(picks[:40]):
                kind = "finish" if i % 3 else "progress"
                h.record("viewer", it["id"], kind, position=it["duration"] * 0.5,
                         timestamp=time.time() - 3600 * (40 - i))
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
               "PYTHONUNBUFFERED": "1"}
        env.pop("PYTHONPATH", None)
        t0 = time.time()
        proc = subprocess.Popen([sys.executable, "-m", "device.service", "serve", "--bundle",
                                 str(bundle), "--db", str(db), "--out", str(out), "--poll", "0.1"],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        try:
            index = _wait_index(out / "index.json", t0, proc)
            first = _status(proc.pid)
            refresh_ms = [index["refresh_ms"]]
            for i in range(refreshes - 1):
                before = index["generated"]
                if i % 2 == 0:  # a launcher records an event: the database changed
                    with History(db) as h:
                        h.record("viewer", picks[40]["id"], "progress",
                                 position=picks[40]["duration"] * (0.1 + 0.1 * i))
                else:
                    proc.send_signal(signal.SIGHUP)
                index = _wait_index(out / "index.json", before, proc)
                refresh_ms.append(index["refresh_ms"])
            last = _status(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    return {"bundle": bundle.name if bundle.name != "bundle" else "demo", "items": n,
            "profiles": 2, "refreshes": refreshes,
            "vmhwm_first_refresh_mb": round(first["VmHWM"], 1),
            "vmhwm_mb": round(last["VmHWM"], 1), "vmrss_mb": round(last["VmRSS"], 1),
            "refresh_ms_p50": round(sorted(refresh_ms)[len(refresh_ms) // 2], 1),
            "exit_code": proc.returncode}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=100_000, help="synthetic bundle size")
    ap.add_argument("--refreshes", type=int, default=5)
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "service_memory.json")
    args = ap.parse_args(argv)

    synth = ROOT / ".cache" / "bench" / f"synth{args.items // 1000}k"
    if not (synth / "manifest.json").is_file():
        synth.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "tvrec.cli", "bundle", "synth", "--items",
                        str(args.items), "--out", str(synth)], check=True, cwd=ROOT)
    runs = [measure(ROOT / "demo" / "bundle", args.refreshes), measure(synth, args.refreshes)]
    runs[1]["bundle"] = f"synth {args.items:,} items"
    print(f"{'bundle':24s} {'items':>8s} {'VmHWM 1st':>10s} {'VmHWM':>8s} {'VmRSS':>8s} "
          f"{'refresh p50':>12s}")
    for r in runs:
        print(f"{r['bundle']:24s} {r['items']:8d} {r['vmhwm_first_refresh_mb']:8.1f}MB "
              f"{r['vmhwm_mb']:6.1f}MB {r['vmrss_mb']:6.1f}MB {r['refresh_ms_p50']:10.1f}ms")
    import platform

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "what": "VmHWM/VmRSS of `tvrec-device serve` (OPENBLAS_NUM_THREADS=1), after N refreshes",
        "machine": platform.machine(), "python": platform.python_version(),
        "command": "python bench/service_memory.py", "runs": runs}, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0 if all(r["exit_code"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
