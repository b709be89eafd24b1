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
peak memory, cold start (process start, imports, open bundle + database, first home screen),
one ``home()``, embedding one recording (decode + features + model) and that job's peak
memory, and the content model's file size.

Measured or estimated
---------------------
On an ARM box (``tvrec-device bench`` run there) every figure is **measured** and judged as it
is: no factor. On a development host the times are **estimated**: host time x a
*per-workload* factor of the profile (:class:`Factors`), because the three kinds of work the
engine does scale differently from an x86-64 core to a small ARM core:

``cpu`` -- cold start and ``home()``: the interpreter, small numpy operations, SQLite. Scalar,
branchy integer code; scaled by single-thread 7-zip (LZMA) MIPS, the closest public proxy with
results for every one of these cores (sbc-bench by T. Kaiser, github.com/ThomasKaiser/sbc-bench,
results list; 7-cpu.com for desktop cores):

* Cortex-A53 @ 1.4 GHz ~= 1,050 MIPS single-threaded (e.g. Raspberry Pi 3B+, Amlogic S905
  boxes); a 2017 desktop core (Skylake/Zen 1 class at ~4 GHz) ~= 4,450 -> 4.2x; the entry
  profile's A53 at 1.5 GHz scales with its clock: 4,450 / (1,050 x 1.5/1.4) = **4.0x**.
* Cortex-A55 @ 1.8 GHz (Amlogic S905X3/X4, Rockchip RK3566): ~10 % more work per clock than the
  A53 in the same lists, ~1,480 MIPS -> **3.0x**.
* Cortex-A73 @ 2.0 GHz (Amlogic S922X, HiSilicon Kirin 960): out of order, ~1,000 MIPS per GHz
  -> ~2,000 MIPS -> **2.2x**.

``decode`` -- FFmpeg decoding, scaling and the log-mel FFT: SIMD-bound. FFmpeg's hand-written
kernels are 128-bit NEON on ARM and up to 256-bit AVX2 on x86-64, so per clock the vector work
is up to twice the host's: the ``cpu`` factor x 1.5 (half the benefit of double width, the rest
is entropy decoding, which is scalar).

``int8`` -- the LiteRT/XNNPACK int8 model: A53 and A73 (ARMv8.0) have no dot-product
instructions and XNNPACK falls back to widening multiply-accumulates, ~1/4 the MACs per
instruction of ``SDOT`` and ~1/2 of AVX2's ``vpmaddubsw`` path: ``cpu`` x 2. The A55 has
``SDOT`` (ARMv8.2 dotprod), which XNNPACK's int8 GEMMs use: ``cpu`` x 1.2.

The decode and int8 multipliers are engineering estimates from instruction widths, not
measurements; the host behind the figures is not a 2017 desktop either. Replace them with
measured ones: run ``tvrec-device bench`` on a real box, ``tvrec bench device`` on the host with
the same bundle and media, and ``tvrec bench calibrate --box BOX.json --host HOST.json --out
FACTORS.json`` (:func:`calibrate`); ``tvrec bench device --factors FACTORS.json`` then uses them.
Memory and model size are never scaled: they are the same on the box up to allocator
differences.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

#: The kinds of work a time figure is made of (see the module docstring).
WORKLOADS = ("cpu", "decode", "int8")


@dataclass(frozen=True)
class Budgets:
    """What the recommender may cost on one class of box."""

    engine_rss_mb: float  # whole engine process, peak
    cold_start_ms: float  # process start + imports + open bundle and database + first home()
    home_ms: float  # one home() call, p95 (on the box)
    embed_ms: float  # decode + features + embed one recording, p50 (on the box)
    model_bytes: int  # content_model.tflite
    embed_rss_mb: float = math.inf  # the embedding job's own process, peak


@dataclass(frozen=True)
class Factors:
    """Box time / host time, per kind of work (module docstring); ``source`` says where from."""

    cpu: float
    decode: float
    int8: float
    source: str = "published single-thread benchmarks (device/budget.py)"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Factors:
        return cls(float(d["cpu"]), float(d["decode"]), float(d["int8"]),
                   str(d.get("source", "calibrated")))


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    ram_mb: int
    cpu: str
    cores: int
    ghz: float
    factors: Factors
    budgets: Budgets

    @property
    def slowdown(self) -> float:
        """The ``cpu`` factor (what a single "est. x" label quotes)."""
        return self.factors.cpu

    def to_dict(self) -> dict:
        d = asdict(self)
        d["slowdown"] = self.slowdown
        return d


_SBC = "sbc-bench 7-zip MIPS (cpu); x1.5 SIMD width (decode); int8 per dot-product support"

PROFILES: dict[str, HardwareProfile] = {
    "entry": HardwareProfile(
        "entry", 1024, "Cortex-A53", 4, 1.5, Factors(4.0, 6.0, 8.0, _SBC),
        Budgets(engine_rss_mb=96, cold_start_ms=2000, home_ms=120, embed_ms=250,
                model_bytes=1_000_000, embed_rss_mb=160),
    ),
    "mid": HardwareProfile(
        "mid", 2048, "Cortex-A55", 4, 1.8, Factors(3.0, 4.5, 3.6, _SBC),
        Budgets(engine_rss_mb=160, cold_start_ms=1500, home_ms=80, embed_ms=150,
                model_bytes=2_000_000, embed_rss_mb=256),
    ),
    "high": HardwareProfile(
        "high", 4096, "Cortex-A73", 4, 2.0, Factors(2.2, 3.3, 4.4, _SBC),
        Budgets(engine_rss_mb=256, cold_start_ms=1000, home_ms=50, embed_ms=100,
                model_bytes=4_000_000, embed_rss_mb=384),
    ),
}


def profile(name: str) -> HardwareProfile:
    """The named profile; ``ValueError`` listing the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown hardware profile {name!r}; known: {', '.join(PROFILES)}") from None


def with_factors(hw: HardwareProfile, factors: Factors) -> HardwareProfile:
    """The same profile estimated with other (e.g. calibrated) factors."""
    return replace(hw, factors=factors)


@dataclass(frozen=True)
class Verdict:
    """One figure against its budget."""

    name: str
    host: float  # measured here (the host, or the box itself)
    box_estimate: float  # what the box takes (= measured on a box, and for memory and size)
    budget: float
    estimated: bool  # True where box_estimate is host x factor
    factor: float = 1.0  # the factor applied (a weighted one for decode + model)

    @property
    def ok(self) -> bool:
        return self.box_estimate <= self.budget

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d


def verdicts(hw: HardwareProfile, *, rss_peak_mb: float, cold_start_ms: float, home_ms_p95: float,
             embed_ms_p50: float | None, model_bytes: int | None,
             decode_ms_p50: float | None = None, embed_model_ms_p50: float | None = None,
             embed_rss_peak_mb: float | None = None, measured: bool = False) -> list[Verdict]:
    """Judge figures against a profile's budgets.

    ``measured=True``: the figures come from the box itself, no factor. Otherwise times are
    scaled by the profile's per-workload factors; decode + model is estimated part by part when
    ``decode_ms_p50`` and ``embed_model_ms_p50`` are given (the bench and the simulator's
    overlay both pass them), else all of it as decoding.
    """
    b, f = hw.budgets, hw.factors
    est = not measured

    def timed(name, value, factor, budget):
        factor = 1.0 if measured else factor
        return Verdict(name, value, value * factor, budget, est, round(factor, 3))

    out = [
        Verdict("engine_rss_mb", rss_peak_mb, rss_peak_mb, b.engine_rss_mb, False),
        timed("cold_start_ms", cold_start_ms, f.cpu, b.cold_start_ms),
        timed("home_ms_p95", home_ms_p95, f.cpu, b.home_ms),
    ]
    if embed_ms_p50 is not None:
        if measured:
            out.append(timed("embed_ms_p50", embed_ms_p50, 1.0, b.embed_ms))
        elif decode_ms_p50 is not None and embed_model_ms_p50 is not None and embed_ms_p50 > 0:
            box = decode_ms_p50 * f.decode + embed_model_ms_p50 * f.int8
            out.append(Verdict("embed_ms_p50", embed_ms_p50, box, b.embed_ms, True,
                               round(box / embed_ms_p50, 3)))
        else:
            out.append(timed("embed_ms_p50", embed_ms_p50, f.decode, b.embed_ms))
    if embed_rss_peak_mb is not None:
        out.append(Verdict("embed_rss_mb", embed_rss_peak_mb, embed_rss_peak_mb,
                           b.embed_rss_mb, False))
    if model_bytes is not None:
        out.append(Verdict("model_bytes", model_bytes, model_bytes, b.model_bytes, False))
    return out


# --------------------------------------------------------------------------- calibration

#: Per workload, (the box run's figure, the host run's figure on a CPU-time basis); the box's
#: wall time is what the factor must predict from the host's CPU time (``time_basis``).
CALIBRATION_FIGURES = {
    "cpu": (("home_ms_p50", "home_cpu_ms_p50"), ("cold_start_ms", "cold_start_cpu_ms")),
    "decode": (("decode_ms_p50", "decode_cpu_ms_p50"),),
    "int8": (("embed_model_ms_p50", "embed_model_cpu_ms_p50"),),
}
_WALL_OF = {c: w for pairs in CALIBRATION_FIGURES.values() for w, c in pairs}


def calibrate(box: dict, host: dict) -> dict:
    """Per-workload factors from a box run (``tvrec-device bench --json``) and a host run
    (``tvrec bench device --json``) of the same bundle and media.

    A factor is what turns the host's figure into the box's: box wall time / host time on the
    host run's ``time_basis`` (CPU time on a shared host), per workload
    (:data:`CALIBRATION_FIGURES`; ``cpu`` is the geometric mean of ``home()`` p50 and cold
    start). A workload without figures on both sides keeps the published factor of the box
    run's hardware profile, and ``sources`` says so. ``ValueError`` (one line) when the runs do
    not compare: not bench results, different bundles, or different media for the media
    factors. A box run that is not on ARM is used as it is, with a ``note``: two host runs
    calibrate one host against the other.
    """
    for name, run in (("box", box), ("host", host)):
        if not isinstance(run, dict) or "method" not in run or "machine" not in run:
            raise ValueError(f"the {name} JSON is not a tvrec bench device result")
    fp_b, fp_h = box.get("bundle_fingerprint"), host.get("bundle_fingerprint")
    if fp_b and fp_h and fp_b != fp_h:
        raise ValueError(f"the two runs used different bundles ({box.get('bundle')} vs "
                         f"{host.get('bundle')}): calibrate needs the same bundle on both")
    same_media = box.get("media_sha256") == host.get("media_sha256")
    hw = profile(box.get("hardware") or host.get("hardware") or "entry")
    published = hw.factors.to_dict()
    host_cpu = host.get("time_basis", "cpu") == "cpu"
    factors: dict = {}
    sources: dict = {}
    for workload, pairs in CALIBRATION_FIGURES.items():
        if workload != "cpu" and not same_media:
            factors[workload], sources[workload] = published[workload], \
                "published (the runs embedded different media)"
            continue
        ratios, used = [], []
        for box_key, host_key in pairs:
            vb = box.get(box_key)
            vh = host.get(host_key if host_cpu else _WALL_OF[host_key])
            if isinstance(vb, (int, float)) and isinstance(vh, (int, float)) and vb > 0 and vh > 0:
                ratios.append(vb / vh)
                used.append(f"{box_key}/{host_key if host_cpu else _WALL_OF[host_key]}")
        if ratios:
            factors[workload] = round(math.exp(sum(map(math.log, ratios)) / len(ratios)), 3)
            sources[workload] = "measured: " + ", ".join(used)
        else:
            factors[workload], sources[workload] = published[workload], \
                "published (no figure on both sides)"
    bm, hm = box.get("machine", {}), host.get("machine", {})
    out = {
        "factors": {**factors, "source": f"calibrated: {bm.get('cpu_model', '?')} "
                                         f"({bm.get('arch', '?')}) vs {hm.get('cpu_model', '?')} "
                                         f"({hm.get('arch', '?')})"},
        "sources": sources,
        "published": published,
        "box": {"machine": bm, "bundle": box.get("bundle"), "hardware": box.get("hardware"),
                "method": box.get("method")},
        "host": {"machine": hm, "bundle": host.get("bundle"), "loadavg": host.get("loadavg")},
    }
    if box.get("method") != "measured":
        out["note"] = (f"the box run is from {bm.get('arch', '?')}, not an ARM box: these factors "
                       "relate two non-box machines")
    if bm.get("emulated"):
        out["note"] = "the box run was emulated (qemu-user): the factors describe the emulator"
    return out


def load_factors(path) -> Factors:
    """Factors from a ``tvrec bench calibrate --out`` file (or a plain factors dict)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return Factors.from_dict(data.get("factors", data))


# --------------------------------------------------------------------------- process memory


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
