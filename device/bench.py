"""The engine against a TV-box profile's budgets: ``tvrec-device bench`` and ``tvrec bench device``.

Both commands run :func:`run_bench` and print :func:`format_table`; the JSON is the same. What
is measured, each in a fresh process pinned to one core, with one BLAS thread and one
interpreter thread (as the box's service runs):

1. **the engine** (``python -m device.bench engine``): process start, imports, opening the
   bundle and the history database, the first ``home()`` -- together the cold start -- then
   ``repeats`` more ``home()`` calls (wall and CPU time) and the process's peak resident set
   (``VmHWM``). A history of ``history`` events is written first.
2. **the embedding job** (``python -m device.bench embed``): a real recording (``media``;
   default a generated 10 s 1280x720 H.264 + AAC clip with a keyframe every 0.5 s, as
   broadcast recordings have) decoded and embedded ``repeats`` times by the bundle's int8 model, exactly as
   :meth:`device.content.ContentEmbedder.embed_file` does for the box's own recordings and the
   simulator's overlay: ``decode_ms_p50`` (decode + features), ``embed_model_ms_p50`` (the
   model), ``embed_ms_p50`` (their sum, per run). It is its own process, as on the box (a
   background job; :func:`device.content.embed_files_isolated`), so FFmpeg never counts against
   the engine's memory.

``method`` says what happened: ``measured`` on an ARM machine (no factor: the figures are the
box's), ``estimated`` elsewhere (times x the profile's per-workload factors,
:mod:`device.budget`); ``machine`` names the CPU either way.

``enforce=True`` runs both processes in a cgroup (:mod:`device.cgroup`) with the profile's
memory budget (``memory_mb`` overrides it) and a CPU quota of 1/``factors.cpu`` of one core,
pinned to one core; the result then has ``enforced`` (what was set), ``oom_killed``,
``enforcement`` (throttled periods, peak charged memory) and ``degraded`` (the engine's
low-memory mode, see :mod:`device.engine`). Without cgroups it says so in one line and runs
unenforced. After the run the history database is checked: every event written before is still
there (``history_intact``), whatever the limit did.
"""

from __future__ import annotations

# Only what the measured processes need at start: the rest is imported where used, so that
# the engine's cold start counts the engine's imports and not the benchmark's.
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from device.commandline import write_json_report
from device.errors import TvrecError

__all__ = ["format_table", "generate_clip", "generate_recording", "machine_info", "run_bench"]

#: Wall-time limit of one decode in the embedding job: a shared host under load stretches
#: wall time far past the box's own 10 s limit (device.media.TIME_LIMIT) for the same work.
BENCH_TIME_LIMIT = 300.0
#: ARM userlands: a run there is the box's own measurement.
ARM_MACHINES = ("aarch64", "arm64", "armv7l", "armv8l", "armv6l", "arm")
#: ARM "CPU part" numbers in /proc/cpuinfo (implementer 0x41, Arm Ltd.).
ARM_PARTS = {"0xc07": "Cortex-A7", "0xc09": "Cortex-A9", "0xc0f": "Cortex-A15",
             "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55",
             "0xd07": "Cortex-A57", "0xd08": "Cortex-A72", "0xd09": "Cortex-A73",
             "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76", "0xd0d": "Cortex-A77",
             "0xd41": "Cortex-A78", "0xd46": "Cortex-A510", "0xd47": "Cortex-A710"}


# --------------------------------------------------------------------------- the machine


def machine_info(cpuinfo: str | None = None) -> dict[str, Any]:
    """Architecture, CPU model (``/proc/cpuinfo``), cores, and whether this looks emulated
    (an ARM userland under qemu-user on an x86-64 kernel)."""
    import platform

    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    fields: dict[str, list[str]] = {}
    for line in cpuinfo.splitlines():
        k, sep, v = line.partition(":")
        if sep:
            fields.setdefault(k.strip(), []).append(v.strip())
    model = (fields.get("model name") or fields.get("Model") or fields.get("Hardware") or [""])[0]
    parts = sorted({ARM_PARTS.get(p.lower(), f"part {p}") for p in fields.get("CPU part", [])})
    if parts:
        model = " + ".join(parts) + (f" ({model})" if model and model not in parts else "")
    arch = platform.machine()
    kernel_arch = ""
    try:
        kernel_arch = Path("/proc/sys/kernel/arch").read_text().strip()
    except OSError:
        pass
    x86_kernel = kernel_arch.startswith("x86") or any(
        v in cpuinfo for v in ("GenuineIntel", "AuthenticAMD"))
    emulated = arch in ARM_MACHINES and x86_kernel
    mhz = fields.get("cpu MHz") or []
    return {
        "arch": arch,
        "cpu_model": model or "unknown",
        "cores": os.cpu_count(),
        "mhz": round(float(mhz[0])) if mhz and mhz[0].replace(".", "").isdigit() else None,
        "emulated": emulated,
        "kernel_arch": kernel_arch or None,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def method_of(machine: dict[str, Any]) -> str:
    """``measured`` on ARM (the box), ``estimated`` on a development host."""
    return "measured" if machine["arch"] in ARM_MACHINES else "estimated"


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# --------------------------------------------------------------------------- inputs


def prepare_history(bundle_path, db_path, events: int, *, profile_id: str = "viewer",
                    seed: int = 0, now: float | None = None) -> int:
    """A history database with ``events`` viewing events of one profile over warm items;
    returns how many events it holds."""
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
        return len(h.events(profile_id))


def count_events(db_path, profile_id: str = "viewer") -> int:
    """Events of a profile in a history database (opened read-only: a check, not a write)."""
    import sqlite3

    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return int(con.execute("SELECT count(*) FROM events WHERE profile_id = ?",
                               (profile_id,)).fetchone()[0])
    finally:
        con.close()


def generate_clip(path: str | Path, *, seconds: float = 10.0, width: int = 1280, height: int = 720,
                  fps: int = 25, gop_s: float = 2.0, progress: Callable[[float], None] | None = None
                  ) -> Path:
    """Write an H.264 (+ AAC stereo, 48 kHz) test recording with PyAV: moving gradients over a
    fixed texture, a moving block, a 440 Hz tone; a keyframe every ``gop_s`` seconds (a
    broadcast-like GOP). Cheap enough for an hour of 720p (``preset=ultrafast``): its cost is
    encoding, a few ms a frame. Falls back to FFmpeg's native ``mpeg4`` encoder where the PyAV
    build has no libx264."""
    import av
    import numpy as np

    path = Path(path)
    sr = 48000
    container = av.open(str(path), "w")
    try:
        try:
            vs = container.add_stream("libx264", rate=fps)
            opts = {"preset": "ultrafast", "crf": "26", "g": str(int(gop_s * fps)),
                    "keyint_min": str(int(gop_s * fps)), "sc_threshold": "0", "bf": "2"}
        except (av.error.FFmpegError, ValueError, KeyError):
            vs = container.add_stream("mpeg4", rate=fps)
            opts = {"g": str(int(gop_s * fps)), "qscale": "5"}
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.codec_context.gop_size = int(gop_s * fps)
        vs.codec_context.options = opts
        aus = container.add_stream("aac", rate=sr)
        aus.layout = "stereo"
        yy, xx = np.mgrid[0:height, 0:width]
        texture = (np.random.default_rng(0).integers(0, 24, (height, width), dtype=np.uint8) + 100)
        spf = sr // fps
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr)).astype(np.float32)
        n = int(round(seconds * fps))
        img = np.empty((height, width, 3), np.uint8)
        img[..., 2] = texture
        from fractions import Fraction

        for i in range(n):
            img[..., 0] = (xx + 8 * i) % 256
            img[..., 1] = (2 * yy + 3 * i + 40 * ((i // (fps * 5)) % 4)) % 256
            img[..., 2] = texture
            x0 = int((width - 200) * (0.5 + 0.5 * np.sin(i / fps)))
            img[200:400, x0:x0 + 200] = (255, 255, 0)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for pkt in vs.encode(frame):
                container.mux(pkt)
            off = (i * spf) % sr
            x = np.roll(tone, -off)[:spf]
            af = av.AudioFrame.from_ndarray(np.stack([x, x]), format="fltp", layout="stereo")
            af.sample_rate, af.pts = sr, i * spf
            for pkt in aus.encode(af):
                container.mux(pkt)
            if progress is not None and i % (fps * 60) == 0:
                progress(i / n)
        for stream in (vs, aus):
            for pkt in stream.encode(None):
                container.mux(pkt)
    finally:
        container.close()
    return path


def generate_recording(path: str | Path, *, seconds: float = 3600.0, segment_s: float = 10.0,
                       gop_s: float = 0.5, width: int = 1280, height: int = 720,
                       fps: int = 25) -> Path:
    """A long H.264 + AAC recording (default 1 hour of 720p with a broadcast GOP of 0.5 s)
    made in seconds: one :func:`generate_clip` segment, its packets remuxed back to back with
    shifted timestamps (no re-encoding). A valid file with real keyframes, index and audio
    for the whole length; its pictures repeat every segment, which timing does not mind."""
    import av

    path = Path(path)
    seg = path.with_name(path.stem + ".segment.mp4")
    generate_clip(seg, seconds=segment_s, width=width, height=height, fps=fps, gop_s=gop_s)
    try:
        with av.open(str(seg)) as src, av.open(str(path), "w") as out:
            ins = [s for s in src.streams if s.type in ("video", "audio")]
            outs = {s.index: out.add_stream_from_template(s) for s in ins}
            for k in range(int(round(seconds / segment_s))):
                src.seek(0)
                for pkt in src.demux(*ins):
                    if pkt.dts is None or pkt.pts is None:
                        continue
                    tb = pkt.time_base
                    span = int(round(segment_s / tb))
                    if pkt.pts < 0 or pkt.pts >= span:
                        continue  # encoder priming / tail: segments butt without overlap
                    off = k * span
                    pkt.pts, pkt.dts = pkt.pts + off, pkt.dts + off
                    pkt.stream = outs[pkt.stream_index]
                    out.mux(pkt)
    finally:
        seg.unlink(missing_ok=True)
    return path


def _sha256_file(path: Path) -> str:
    from device.features import sha256

    h = sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- measured processes


def _pin(core: int | None) -> None:
    if core is not None and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {core})
        except OSError:
            pass


def _percentile(xs: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(xs, q))


def measure_engine(bundle_path, db_path, *, profile_id: str = "viewer", repeats: int = 50,
                   launched: float | None = None, pin_core: int | None = 0) -> dict:
    """The engine process's figures. Runs in *this* process: call it in a fresh one
    (``python -m device.bench engine``) so that the imports and the peak are the engine's own."""
    t0 = time.perf_counter()
    w0 = time.time()
    _pin(pin_core)
    from device.budget import status_mb
    from device.engine import Engine

    t1 = time.perf_counter()
    engine = Engine(bundle_path, db_path, num_threads=1)
    t2 = time.perf_counter()
    rows = engine.home(profile_id)
    t3 = time.perf_counter()
    cpu_cold = time.process_time()
    times, cpu = [], []
    for _ in range(repeats):
        c = time.thread_time()
        rows = engine.home(profile_id)
        cpu.append((time.thread_time() - c) * 1000.0)
        times.append(engine.timings.home_ms)
    interp = max(0.0, (w0 - launched) * 1000.0) if launched is not None else 0.0
    model = engine.bundle.model_path
    out = {
        "interpreter_ms": interp,  # exec + interpreter start, up to this function
        "import_ms": (t1 - t0) * 1000.0,
        "open_ms": (t2 - t1) * 1000.0,
        "first_home_ms": (t3 - t2) * 1000.0,
        # what the box waits for after starting the service: all of the above
        "cold_start_ms": interp + (t3 - t0) * 1000.0,
        "cold_start_cpu_ms": cpu_cold * 1000.0,
        "home_ms_p50": _percentile(times, 50) if times else None,
        "home_ms_p95": _percentile(times, 95) if times else None,
        # CPU time of the same calls: the wall time on an idle core (a busy neighbour on a
        # shared host shows in wall time only)
        "home_cpu_ms_p50": _percentile(cpu, 50) if cpu else None,
        "home_cpu_ms_p95": _percentile(cpu, 95) if cpu else None,
        "rows": [r.kind for r in rows],
        "degraded": getattr(engine, "degraded", None),
        "history_events": len(engine.history.events(profile_id)),
        "n_items": engine.bundle.n_items,
        "model_bytes": model.stat().st_size if model is not None else None,
        "rss_after_home_mb": status_mb("VmRSS"),
        "rss_peak_mb": status_mb("VmHWM"),
    }
    engine.close()
    return out


def measure_embed(bundle_path, media_path, *, repeats: int = 10, pin_core: int | None = 0,
                  frame_sampling: str | None = None) -> dict:
    """The embedding job's figures: decode + features and the int8 model, per run, on a real
    file -- :meth:`ContentEmbedder.embed_file`, the path the box and the simulator use.
    ``frame_sampling``: decode as a bundle with that sampling would (what-if for old bundles)."""
    _pin(pin_core)
    from dataclasses import replace

    from device.budget import status_mb
    from device.bundle import open_bundle
    from device.content import ContentEmbedder

    bundle = open_bundle(bundle_path, verify="sizes")
    if bundle.model_path is None:
        return {"skipped": f"{bundle_path}: bundle has no content model"}
    cfg = bundle.feature_config
    if frame_sampling and frame_sampling != "bundle":
        cfg = replace(cfg, frame_sampling=frame_sampling)
    embedder = ContentEmbedder(bundle.model_path, cfg, num_threads=1)
    from device.media import extract_features

    # warm-up (codec set-up, page cache, allocations); embed_file's two steps, with a time
    # limit for a benchmark on a loaded host rather than the box's 10 s
    t0 = time.perf_counter()
    frames, logmel, info = extract_features(media_path, embedder.cfg, time_limit=BENCH_TIME_LIMIT)
    embedder.embed_features(frames, logmel)
    first_ms = (time.perf_counter() - t0) * 1000.0
    wall = {"decode": [], "model": [], "total": []}
    cpu = {"decode": [], "model": [], "total": []}
    for _ in range(repeats):
        # embed_file's two steps, timed apart (wall and process CPU, decoder threads included)
        c0, w0 = time.process_time(), time.perf_counter()
        frames, logmel, _ = extract_features(media_path, embedder.cfg, time_limit=BENCH_TIME_LIMIT)
        c1, w1 = time.process_time(), time.perf_counter()
        embedder.embed_features(frames, logmel)
        c2, w2 = time.process_time(), time.perf_counter()
        for d, a, b, c in ((wall, w0, w1, w2), (cpu, c0, c1, c2)):
            d["decode"].append((b - a) * 1000.0)
            d["model"].append((c - b) * 1000.0)
            d["total"].append((c - a) * 1000.0)
    p50 = lambda xs: _percentile(xs, 50)  # noqa: E731
    return {
        "decode_ms_p50": p50(wall["decode"]),
        "embed_model_ms_p50": p50(wall["model"]),
        "embed_ms_p50": p50(wall["total"]),
        "embed_ms_p95": _percentile(wall["total"], 95),
        "decode_cpu_ms_p50": p50(cpu["decode"]),
        "embed_model_cpu_ms_p50": p50(cpu["model"]),
        "embed_cpu_ms_p50": p50(cpu["total"]),
        "embed_first_ms": first_ms,
        "media_info": {**{k: info.get(k) for k in
                          ("duration", "width", "height", "fps", "video_codec", "audio_codec",
                           "flags", "frame_times")},
                       "frame_sampling": embedder.cfg.frame_sampling},
        "interpreter": embedder.model.backend,
        "embed_rss_peak_mb": status_mb("VmHWM"),
    }


def _child(argv: list[str], *, cgroup=None, timeout: float = 900) -> tuple[dict | None, str, int]:
    """Run ``python -m device.bench ...``; (its JSON or None, stderr tail, return code)."""
    import subprocess

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "device.bench", *argv], capture_output=True,
                          text=True, timeout=timeout, env=env,
                          preexec_fn=cgroup.enter_preexec if cgroup is not None else None)
    data = None
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            data = json.loads(line)
            break
    return data, proc.stderr.strip()[-600:], proc.returncode


# --------------------------------------------------------------------------- the benchmark


def run_bench(bundle_path, hardware: str = "entry", *, history: int = 1000, repeats: int = 50,
              embed_repeats: int | None = None, media: str | Path | None = None,
              enforce: bool = False, memory_mb: float | None = None, factors=None,
              frame_sampling: str | None = None,
              log: Callable[[str], None] | None = None) -> dict:
    """Measure the engine and the embedding job against a hardware profile (module docstring).

    ``media=None`` generates the default clip (skipped, with a reason, without PyAV);
    ``factors`` (a :class:`device.budget.Factors`) replaces the profile's published ones.
    ``frame_sampling`` ("keyframe" / "exact"): the embedding job decodes with that sampling
    instead of the bundle's (``media_info.frame_sampling`` says which ran).
    ``log`` gets one-line notices (e.g. why enforcement is off).
    """
    import tempfile

    from device.budget import profile, verdicts, with_factors
    from device.bundle import open_bundle

    log = log or (lambda m: print(m, file=sys.stderr))
    hw = profile(hardware)
    if factors is not None:
        hw = with_factors(hw, factors)
    bundle = open_bundle(bundle_path, verify="sizes")  # a bad bundle: BundleError, one line
    machine = machine_info()
    method = method_of(machine)
    load_start = _loadavg()
    limit_mb = float(memory_mb if memory_mb is not None else hw.budgets.engine_rss_mb)
    cgroups: dict[str, Any] = {}
    enforced = None
    if enforce:
        from device.cgroup import Cgroup, CgroupUnavailable

        try:
            for job, mb in (("engine", limit_mb),
                            ("embed", float(memory_mb if memory_mb is not None
                                            else hw.budgets.embed_rss_mb))):
                cgroups[job] = Cgroup.create(f"bench-{job}", memory_mb=mb,
                                             cpu_quota=min(1.0, 1.0 / hw.factors.cpu), cpu=0)
            enforced = {**cgroups["engine"].describe(),
                        "embed_memory_limit_mb": cgroups["embed"].memory_mb}
        except CgroupUnavailable as why:
            for cg in cgroups.values():
                cg.remove()
            cgroups = {}
            log(f"--enforce: no cgroup available ({why}); running unenforced")
    result: dict[str, Any] = {
        "method": method,
        "machine": machine,
        "estimated_from": None if method == "measured" else
        f"{machine['arch']} host ({machine['cpu_model']}), times x the profile's factors",
        "hardware": hw.name,
        "profile": hw.to_dict(),
        "factors": hw.factors.to_dict() if method == "estimated" else None,
        "bundle": str(bundle_path),
        "bundle_fingerprint": _bundle_fingerprint(bundle),
        "enforced": enforced,
        "history": history,
        "repeats": repeats,
        "frame_sampling": frame_sampling or "bundle",  # what the embedding job was told
    }
    try:
        with tempfile.TemporaryDirectory(prefix="tvrec-bench-") as tmp:
            db = Path(tmp) / "history.db"
            written = prepare_history(bundle_path, db, history)
            launched = time.time()
            m, err, rc = _child(["engine", str(bundle_path), str(db), str(repeats), repr(launched)],
                                cgroup=cgroups.get("engine"))
            eng_stats = cgroups["engine"].stats() if "engine" in cgroups else None
            oom = rc == -9 or bool(eng_stats and eng_stats.get("oom_kills"))
            if m is None and not oom:
                from device.errors import TvrecError

                raise TvrecError(f"the engine benchmark process failed (exit {rc}): "
                                 f"{err.splitlines()[-1] if err else 'no output'}")
            result.update(m or {"engine_failed": f"killed by the kernel (exit {rc}) under "
                                                 f"{limit_mb:g} MB"})
            result["history_intact"] = count_events(db) == written
            result["history_events_written"] = written
            # the embedding job
            emb = None
            media_path, media_note = _media(media, Path(tmp), log)
            if media_path is not None and bundle.model_path is not None:
                e, err, rc_e = _child(["embed", str(bundle_path), str(media_path),
                                       str(embed_repeats or max(5, min(repeats, 20))),
                                       frame_sampling or "bundle"],
                                      cgroup=cgroups.get("embed"))
                emb_stats = cgroups["embed"].stats() if "embed" in cgroups else None
                emb_oom = rc_e == -9 or bool(emb_stats and emb_stats.get("oom_kills"))
                if e is None and not emb_oom:
                    raise _media_failure(media_path, err, rc_e)
                emb = e or {"embed_failed": f"killed by the kernel (exit {rc_e})"}
                emb["media"] = str(media) if media is not None else f"generated: {media_note}"
                emb["media_sha256"] = _sha256_file(media_path)
                result["embed_oom_killed"] = emb_oom
                if emb_stats is not None:
                    result["enforcement_embed"] = emb_stats
            else:
                emb = {"embed_skipped": media_note or "bundle has no content model"}
            result.update(emb)
    finally:
        for cg in cgroups.values():
            cg.remove()
    result["oom_killed"] = bool(oom or result.get("embed_oom_killed"))
    if eng_stats is not None:
        result["enforcement"] = eng_stats
    result["loadavg"] = {"start": load_start, "end": _loadavg()}
    if "engine_failed" in result:
        result["verdicts"], result["all_within_budget"] = [], False
        return result
    # What the box figure is made from: on the box its wall times (whatever else it runs is
    # real); on a shared host the CPU times -- what the same work costs on a core of its own --
    # times the factors (wall times there include waiting for the CPU behind other jobs).
    basis = "wall" if method == "measured" else "cpu"
    result["time_basis"] = basis
    pick = (lambda w, c: result.get(w)) if basis == "wall" else (lambda w, c: result.get(c))
    v = verdicts(hw, rss_peak_mb=result["rss_peak_mb"],
                 cold_start_ms=pick("cold_start_ms", "cold_start_cpu_ms"),
                 home_ms_p95=pick("home_ms_p95", "home_cpu_ms_p95"),
                 embed_ms_p50=pick("embed_ms_p50", "embed_cpu_ms_p50"),
                 model_bytes=result["model_bytes"],
                 decode_ms_p50=pick("decode_ms_p50", "decode_cpu_ms_p50"),
                 embed_model_ms_p50=pick("embed_model_ms_p50", "embed_model_cpu_ms_p50"),
                 embed_rss_peak_mb=result.get("embed_rss_peak_mb"),
                 measured=method == "measured")
    result["verdicts"] = [x.to_dict() for x in v]
    result["all_within_budget"] = all(x.ok for x in v) and not result["oom_killed"]
    return result


def _bundle_fingerprint(bundle) -> str | None:
    from device.features import sha256

    try:
        return sha256((Path(bundle.path) / "manifest.json").read_bytes()).hexdigest()
    except OSError:
        return None


def _media(media, tmp: Path, log) -> tuple[Path | None, str]:
    from device.errors import MediaError

    if media is not None:
        p = Path(media)
        if not p.is_file():
            raise MediaError(f"{p}: no such file (--media)")
        return p, ""
    try:
        import av  # noqa: F401
    except ImportError:
        return None, "PyAV not installed (pip install 'tvrec-device[media]'): no embedding measured"
    # A broadcast-like recording: DVB and ATSC streams carry a keyframe every ~0.5 s.
    path = tmp / "bench-720p-10s.mp4"
    generate_clip(path, gop_s=0.5)
    return path, "10 s 1280x720 H.264 + AAC, 0.5 s GOP (device.bench.generate_clip)"


def _media_failure(path, err: str, rc: int):
    from device.errors import MediaError

    last = err.splitlines()[-1] if err else f"exit {rc}"
    return MediaError(f"{path}: the embedding benchmark failed: {last}")


# --------------------------------------------------------------------------- the table


def format_table(r: dict) -> str:
    """The printed report: measured vs estimated per figure, the factor used, host load, CPU."""
    m = r["machine"]
    est = r["method"] == "estimated"
    lines = [f"{r.get('n_items', 0):,} items, {r.get('history_events', 0):,} history events; "
             f"hardware {r['hardware']} ({r['profile']['cpu']} @ {r['profile']['ghz']} GHz, "
             f"{r['profile']['ram_mb']} MB)",
             f"method: {r['method']} on {m['arch']} ({m['cpu_model']}, {m['cores']} cores"
             f"{', EMULATED' if m.get('emulated') else ''})"
             + (f"; factors from {r['factors']['source']}" if est else "; no factor")]
    if r.get("enforced"):
        e = r["enforced"]
        s = r.get("enforcement", {})
        lines.append(f"enforced: {e['cgroup']}  memory {e['memory_limit_mb']:g} MB, cpu quota "
                     f"{e['cpu_quota']:g} core, pinned to cpu {e['cpu']}; oom kills "
                     f"{s.get('oom_kills')}, throttled {s.get('cpu_throttled_periods')}/"
                     f"{s.get('cpu_periods')} periods ({s.get('cpu_throttled_ms', 0):.0f} ms)")
    if r.get("engine_failed"):
        lines.append(f"engine: {r['engine_failed']}; history intact: {r.get('history_intact')}")
        return "\n".join(lines)
    head = (f"{'figure':15s} {('host ' + r.get('time_basis', '')).strip():>10s} {'factor':>7s} "
            f"{'box (est.)' if est else 'box':>11s} {'budget':>10s}  verdict")
    lines += [head, "-" * len(head)]
    for v in r["verdicts"]:
        box = f"{v['box_estimate']:11.1f}" if v["estimated"] else f"{'=':>11s}"
        fac = f"x{v['factor']:.2g}" if v["estimated"] else ""
        lines.append(f"{v['name']:15s} {v['host']:10.1f} {fac:>7s} {box} {v['budget']:10.1f}  "
                     f"{'ok' if v['ok'] else 'OVER'}")
    lines.append(f"cold start {r['cold_start_ms']:.0f} ms wall = interpreter {r['interpreter_ms']:.0f} + imports {r['import_ms']:.0f} "
                 f"+ open {r['open_ms']:.0f} + first home() {r['first_home_ms']:.0f} ms "
                 f"(CPU {r['cold_start_cpu_ms']:.0f} ms)")
    lines.append(f"home() p50 {r['home_ms_p50']:.2f} ms wall, {r['home_cpu_ms_p50']:.2f} ms CPU; "
                 f"rows: {', '.join(r['rows'])}" + (f"; DEGRADED: {r['degraded']}" if r.get("degraded") else ""))
    if "decode_ms_p50" in r:
        lines.append(f"embed p50 {r['embed_ms_p50']:.1f} ms wall = decode+features "
                     f"{r['decode_ms_p50']:.1f} + model {r['embed_model_ms_p50']:.1f}; CPU "
                     f"{r['decode_cpu_ms_p50']:.1f} + {r['embed_model_cpu_ms_p50']:.1f} ms "
                     f"({r['media_info']['frame_sampling']} sampling); {r['media']}")
    elif r.get("embed_skipped") or r.get("embed_failed"):
        lines.append(f"embed: {r.get('embed_skipped') or r.get('embed_failed')}")
    la = r["loadavg"]
    lines.append(f"host load average {la['start'][0] if la['start'] else '?'} -> "
                 f"{la['end'][0] if la['end'] else '?'} ({m['cores']} CPUs); history intact: "
                 f"{r.get('history_intact')}; oom killed: {r['oom_killed']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


class BenchArgumentError(TvrecError):
    """A bench flag out of range (one line, exit 2)."""


def add_arguments(p, *, bundles: bool = False, default_bundle: str | None = None) -> None:
    """The bench's flags, the same for ``tvrec-device bench`` (``bundles=True``: a bundle store
    or a folder) and ``tvrec bench device``."""
    from device.budget import PROFILES

    if bundles:
        g = p.add_mutually_exclusive_group(required=True)
        g.add_argument("--bundles", help="bundle store; its 'current' link is followed")
        g.add_argument("--bundle", help="a bundle folder (instead of a store)")
    else:
        p.add_argument("--bundle", default=default_bundle, help="bundle folder (default: the demo bundle)")
    p.add_argument("--hardware", choices=list(PROFILES), default=None,
                   help="TV-box class whose budgets judge the figures (default entry)")
    p.add_argument("--profile", dest="hardware_old", choices=list(PROFILES), default=None,
                   help="old spelling of --hardware (deprecated)")
    p.add_argument("--history", type=int, default=1000, help="history events of the measured viewer")
    p.add_argument("--repeats", type=int, default=50, help="home() calls measured (default 50)")
    p.add_argument("--media", metavar="FILE",
                   help="recording to decode and embed (default: a generated 10 s 720p H.264 clip)")
    p.add_argument("--enforce", action="store_true",
                   help="run under a cgroup: the profile's memory budget, a CPU quota, one core")
    p.add_argument("--memory-mb", type=float, metavar="MB",
                   help="with --enforce: this memory limit instead of the profile's budget")
    p.add_argument("--frame-sampling", choices=["bundle", "keyframe", "exact"], default="bundle",
                   help="decode the recording as the bundle says (default), or as a bundle "
                        "exported with this sampling would")
    p.add_argument("--factors", metavar="FACTORS.json",
                   help="estimate with these factors (from `tvrec bench calibrate --out`)")
    p.add_argument("--json", metavar="OUT", help="also write the result as JSON to OUT")


def hardware_of(args, warn: Callable[[str], None]) -> str:
    """--hardware, or the deprecated --profile with a warning."""
    if args.hardware_old is not None:
        warn("warning: --profile (the hardware class) is now --hardware; --profile will go")
        if args.hardware is None:
            return args.hardware_old
    return args.hardware or "entry"


def check_args(args) -> None:
    """Refuse what cannot be measured (one line each)."""
    if args.repeats < 1:
        raise BenchArgumentError(f"--repeats must be at least 1, got {args.repeats}")
    if args.history < 0:
        raise BenchArgumentError(f"--history must be 0 or more, got {args.history}")
    if args.memory_mb is not None and not args.memory_mb > 0:
        raise BenchArgumentError(f"--memory-mb must be > 0, got {args.memory_mb:g}")
    if args.memory_mb is not None and not args.enforce:
        raise BenchArgumentError("--memory-mb needs --enforce")
    if args.json and os.path.isdir(args.json):
        raise BenchArgumentError(f"--json {args.json}: is a folder; pass a file name")


def run_cli(args, bundle_path, *, prog: str) -> int:
    """What both commands do with their parsed flags: measure, print the table, write JSON."""
    warn = lambda m: print(f"{prog}: {m}", file=sys.stderr)  # noqa: E731
    hardware = hardware_of(args, warn)
    check_args(args)
    factors = None
    if args.factors:
        from device.budget import load_factors

        try:
            factors = load_factors(args.factors)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise BenchArgumentError(f"--factors {args.factors}: not a factors file ({err})") from None
    r = run_bench(bundle_path, hardware, history=args.history, repeats=args.repeats,
                  media=args.media, enforce=args.enforce, memory_mb=args.memory_mb,
                  factors=factors, frame_sampling=args.frame_sampling, log=warn)
    print(format_table(r))
    if args.json:
        write_json_report(args.json, r)
        print(f"wrote {args.json}")
    return 0


def _main(argv: list[str]) -> int:  # the measured processes
    if argv[0] == "engine":
        print(json.dumps(measure_engine(argv[1], argv[2], repeats=int(argv[3]),
                                        launched=float(argv[4]))))
    elif argv[0] == "embed":
        print(json.dumps(measure_embed(argv[1], argv[2], repeats=int(argv[3]),
                                       frame_sampling=argv[4] if len(argv) > 4 else None)))
    else:
        print(f"usage: python -m device.bench engine|embed ...", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
