"""Hardware profiles of TV boxes and the budgets the engine must fit in (one place for them).

Three classes of box, after Android TV's own memory classes (a 1 GB box is "low-RAM"):

========  ======  ==========================  =====================================
profile   RAM     CPU                         typical box
========  ======  ==========================  =====================================
entry     1 GB    4x Cortex-A53 @ 1.5 GHz     cheapest streaming sticks, 720p UI
mid       2 GB    4x Cortex-A55 @ 1.8 GHz     mainstream 4K boxes
high      4 GB    4x Cortex-A73 @ 2.0 GHz     premium boxes, operator set-top boxes
========  ======  ==========================  =====================================

Each profile has budgets for what the recommender may cost on that box: the engine process's
peak memory, cold start (open bundle + database + first home screen), one ``home()``, embedding
one recording (decode + model), and the content model's file size.

Host figures and ARM estimates
------------------------------
Benchmarks run on the development host (x86-64). Time budgets are judged on an **estimate** of
the box's time: host time x ``slowdown``, a per-profile factor for single-core throughput of
that core relative to a ~3 GHz x86-64 core running the same numpy / LiteRT code (an in-order
A53 at 1.5 GHz does roughly a sixth of the work per second; the A55 about a fifth; the
out-of-order A73 at 2 GHz about a third -- from published single-thread benchmark ratios, not
measured here). Every estimate is labelled as such in reports. Memory and model size are not
scaled: they are the same on the box up to allocator differences.

The measured process
--------------------
:func:`bench_device` runs the engine in a fresh process (``python -m device.budget``) pinned
to one core, with ``OPENBLAS_NUM_THREADS=1`` and ``OMP_NUM_THREADS=1`` set as the box's
service environment sets them (one BLAS thread: the engine's matrix work is small, and each
extra OpenBLAS thread costs a stack and buffers). That one process opens the bundle, runs
``home()``, then loads the content model and embeds, so ``rss_peak_mb`` (``ru_maxrss``) is the
whole engine process's peak with both. Its model inputs are made without ``numpy.random``,
which the engine never imports (it would add hashlib and OpenSSL's libcrypto, ~4 MB).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Budgets:
    """What the recommender may cost on one class of box."""

    engine_rss_mb: float  # whole engine process, peak
    cold_start_ms: float  # open bundle + database, first home() (on the box)
    home_ms: float  # one home() call, p95 (on the box)
    embed_ms: float  # decode + embed one recording, p50 (on the box)
    model_bytes: int  # content_model.tflite


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    ram_mb: int
    cpu: str
    cores: int
    ghz: float
    slowdown: float  # estimated box time / host time, single core (see module docstring)
    budgets: Budgets

    def to_dict(self) -> dict:
        return asdict(self)


PROFILES: dict[str, HardwareProfile] = {
    "entry": HardwareProfile(
        "entry", 1024, "Cortex-A53", 4, 1.5, 6.0,
        Budgets(engine_rss_mb=96, cold_start_ms=2000, home_ms=120, embed_ms=250,
                model_bytes=1_000_000),
    ),
    "mid": HardwareProfile(
        "mid", 2048, "Cortex-A55", 4, 1.8, 5.0,
        Budgets(engine_rss_mb=160, cold_start_ms=1500, home_ms=80, embed_ms=150,
                model_bytes=2_000_000),
    ),
    "high": HardwareProfile(
        "high", 4096, "Cortex-A73", 4, 2.0, 3.0,
        Budgets(engine_rss_mb=256, cold_start_ms=1000, home_ms=50, embed_ms=100,
                model_bytes=4_000_000),
    ),
}


def profile(name: str) -> HardwareProfile:
    """The named profile; ``ValueError`` listing the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown hardware profile {name!r}; known: {', '.join(PROFILES)}") from None


@dataclass(frozen=True)
class Verdict:
    """One measured figure against its budget."""

    name: str
    host: float  # measured on the host
    box_estimate: float  # what the box would take (= host for memory and size)
    budget: float
    estimated: bool  # True where box_estimate is host x slowdown

    @property
    def ok(self) -> bool:
        return self.box_estimate <= self.budget

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d


def verdicts(hw: HardwareProfile, *, rss_peak_mb: float, cold_start_ms: float, home_ms_p95: float,
             embed_ms_p50: float | None, model_bytes: int | None) -> list[Verdict]:
    """Judge host measurements against a profile's budgets (times scaled by its slowdown)."""
    b, s = hw.budgets, hw.slowdown
    out = [
        Verdict("engine_rss_mb", rss_peak_mb, rss_peak_mb, b.engine_rss_mb, False),
        Verdict("cold_start_ms", cold_start_ms, cold_start_ms * s, b.cold_start_ms, True),
        Verdict("home_ms_p95", home_ms_p95, home_ms_p95 * s, b.home_ms, True),
    ]
    if embed_ms_p50 is not None:
        out.append(Verdict("embed_ms_p50", embed_ms_p50, embed_ms_p50 * s, b.embed_ms, True))
    if model_bytes is not None:
        out.append(Verdict("model_bytes", model_bytes, model_bytes, b.model_bytes, False))
    return out


# --------------------------------------------------------------------------- measurement


def prepare_history(bundle_path, db_path, events: int, *, profile_id: str = "viewer",
                    seed: int = 0, now: float | None = None) -> None:
    """A history database with ``events`` viewing events of one profile over warm items."""
    import time

    import numpy as np

    from device.bundle import open_bundle
    from device.history import History

    bundle = open_bundle(bundle_path, verify="sizes")
    rng = np.random.default_rng(seed)
    now = time.time() if now is None else now
    warm = np.flatnonzero(~np.asarray(bundle.items.cold))
    picked = rng.choice(warm, size=min(len(warm), max(1, events // 2)), replace=False)
    with History(db_path, clock=lambda: now) as h:
        h.add_profile(profile_id)
        h.upsert_items([bundle.items.record(int(r)) for r in picked])
        batch = []
        for n in range(events):
            row = int(picked[n % len(picked)])
            dur = float(bundle.items.durations[row])
            kind = ("play", "progress", "finish", "like")[rng.integers(0, 4)]
            pos = float(rng.uniform(0, dur)) if kind in ("play", "progress") else None
            batch.append({"profile_id": profile_id, "item_id": str(bundle.items.ids[row]),
                          "kind": kind, "position": pos,
                          "timestamp": now - 86400 * 90 + n * (86400 * 90 / max(events, 1))})
        h.record_many(batch)
        # The card actions of a lived-in profile (tv, issue 15): a list, a few not-interested
        # items (their neighbours pushed down on every home()), a removed resume point.
        ids = [str(bundle.items.ids[int(r)]) for r in picked[:25]]
        for n, item in enumerate(ids):
            h.set_flag(profile_id, item, ("my_list", "not_interested", "hidden_continue")[n % 3])


def measure_engine(bundle_path, db_path, *, profile_id: str = "viewer", repeats: int = 50,
                   embed_repeats: int = 30, pin_core: int | None = 0) -> dict:
    """Measure the engine in *this* process: run it in a fresh process (``python -m
    device.budget``) so that peak RSS is the engine's alone.

    Pins the process to one core and the interpreter to one thread, as on a loaded box.
    """
    import os
    import resource
    import time

    import numpy as np

    if pin_core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {pin_core})
    t0 = time.perf_counter()
    from device.engine import Engine

    t1 = time.perf_counter()
    engine = Engine(bundle_path, db_path, num_threads=1)
    engine.home(profile_id)
    t2 = time.perf_counter()
    times, cpu = [], []
    for _ in range(repeats):
        c = time.thread_time()
        engine.home(profile_id)
        cpu.append((time.thread_time() - c) * 1000.0)
        times.append(engine.timings.home_ms)
    out = {
        "import_ms": (t1 - t0) * 1000.0,
        "cold_start_ms": (t2 - t1) * 1000.0,
        "home_ms_p50": float(np.percentile(times, 50)),
        "home_ms_p95": float(np.percentile(times, 95)),
        # CPU time of the same calls: what the wall times would be on an idle core (the host
        # is shared, and a busy neighbour shows up in wall time only)
        "home_cpu_ms_p50": float(np.percentile(cpu, 50)),
        "home_cpu_ms_p95": float(np.percentile(cpu, 95)),
        "history_events": len(engine.history.events(profile_id)),
        "n_items": engine.bundle.n_items,
        "rss_after_home_mb": status_mb(),
    }
    model = engine.bundle.model_path
    out["model_bytes"] = model.stat().st_size if model is not None else None
    if model is not None:
        cfg = engine.bundle.feature_config
        frames, logmel = _synthetic_inputs(cfg)
        embedder = engine.embedder
        embedder.embed_features(frames, logmel)  # warm-up (allocation, delegate setup)
        et = []
        for _ in range(embed_repeats):
            s = time.perf_counter()
            embedder.embed_features(frames, logmel)
            et.append((time.perf_counter() - s) * 1000.0)
        out["embed_ms_p50"] = float(np.percentile(et, 50))
        out["interpreter"] = embedder.model.backend
    else:
        out["embed_ms_p50"] = None
    # ru_maxrss is in KiB on Linux: the whole process's peak resident set.
    out["rss_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    engine.close()
    return out


def _synthetic_inputs(cfg) -> tuple:
    """Deterministic noise-like frames and log-mel for timing the model.

    Made with integer hashing rather than ``numpy.random``: importing ``numpy.random`` loads
    ``hashlib`` and OpenSSL's libcrypto (~4 MB resident), which the engine itself never
    imports, so it would inflate the peak RSS this process reports for the engine.
    """
    import numpy as np

    def noise(n: int) -> np.ndarray:  # uniform in [0, 1), a multiplicative hash of the index
        x = (np.arange(n, dtype=np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        x ^= x >> np.uint64(29)
        return (x >> np.uint64(40)).astype(np.float64) / float(1 << 24)

    frames = (noise(cfg.frames * cfg.size * cfg.size * 3) * 256).astype(np.uint8)
    frames = frames.reshape(cfg.frames, cfg.size, cfg.size, 3)
    logmel = (-8 + 4 * (noise(cfg.n_frames * cfg.n_mels) - 0.5)).astype(np.float32)
    return frames, logmel.reshape(cfg.n_frames, cfg.n_mels)


def status_mb(field: str = "VmRSS") -> float:
    """A memory figure of this process from ``/proc/self/status`` in MB (NaN where there is
    none): ``VmRSS`` now, ``VmHWM`` its peak. Prefer ``VmHWM`` to ``ru_maxrss`` in a process
    started by a big one: Linux carries ``ru_maxrss`` over from the parent across fork+exec."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def bench_device(bundle_path, hw_name: str, *, history: int = 1000, repeats: int = 50) -> dict:
    """Prepare a history, measure the engine in its own pinned process, judge the budgets."""
    import json
    import os
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    hw = profile(hw_name)
    with tempfile.TemporaryDirectory(prefix="tvrec-bench-") as tmp:
        db = Path(tmp) / "history.db"
        prepare_history(bundle_path, db, history)
        # One BLAS / OpenMP thread, as the box's service environment sets it: the engine's
        # numpy work is small, and each extra OpenBLAS thread costs a stack and a buffer.
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(
            [sys.executable, "-m", "device.budget", str(bundle_path), str(db), str(repeats)],
            capture_output=True, text=True, timeout=600, env=env,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"engine benchmark process failed: {proc.stderr.strip()[-500:]}")
        m = json.loads(proc.stdout.strip().splitlines()[-1])
    v = verdicts(hw, rss_peak_mb=m["rss_peak_mb"], cold_start_ms=m["cold_start_ms"],
                 home_ms_p95=m["home_ms_p95"], embed_ms_p50=m["embed_ms_p50"],
                 model_bytes=m["model_bytes"])
    return {**m, "profile": hw.to_dict(), "verdicts": [x.to_dict() for x in v],
            "all_within_budget": all(x.ok for x in v),
            "method": "host x86-64, engine in its own process pinned to one core, 1 interpreter "
                      "thread; box times are estimates = host x profile slowdown"}


if __name__ == "__main__":  # the measured process of bench_device
    import json
    import sys

    print(json.dumps(measure_engine(sys.argv[1], sys.argv[2], repeats=int(sys.argv[3]))))
