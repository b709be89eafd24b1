"""Float vs int8 content model cost, as a ratio, on whatever CPU runs this (aarch64 under qemu in
``make arm-check``).

Run:  python bench/arm_models.py [--runs 15] [--json bench/results/arm_emulated.json]
Device imports only (numpy + ``device.runtime``), so it runs in the aarch64 sysroot of
``deploy/arm_check.sh`` as well as on the host.

Times ``invoke()`` of ``demo/float.tflite`` and the shipped ``demo/bundle/content_model.tflite``
with one interpreter thread, with the default XNNPACK delegate and with the plain built-in
kernels, on the same deterministic inputs (the float model's values, quantised by each int8
input's own scale; kernel cost does not depend on the values, but realistic ones keep the int8
LSTM's saturation paths honest). Each figure is the median of ``--runs`` invokes after
``--warmup``; the rounds of the four variants are interleaved, so a slow spell of a shared
machine hits all of them alike.

Under ``qemu-aarch64`` the absolute times are *emulation* times (QEMU's TCG translates every
aarch64 instruction to several x86 ones; SIMD NEON is emulated lane by lane), so only the
**ratio** int8/float is reported as a finding -- and labelled ``emulated``: it says which
variant executes fewer aarch64 instructions in LiteRT's ARM kernels, not the box's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from device.runtime import backend_name, load_interpreter  # noqa: E402

MODELS = {"float": ROOT / "demo" / "float.tflite",
          "int8": ROOT / "demo" / "bundle" / "content_model.tflite"}


def emulator() -> str | None:
    """The emulator this process runs under, or None for a native run.

    QEMU 10 fakes an ARM ``/proc/cpuinfo`` for the CPU model it emulates, so the process cannot
    tell by itself; ``deploy/arm_check.sh``'s wrapper says so in ``TVREC_EMULATOR`` (e.g.
    ``qemu-aarch64 10.0.2 -cpu cortex-a53``). Older QEMUs showed the host's x86 cpuinfo.
    """
    if os.environ.get("TVREC_EMULATOR"):
        return os.environ["TVREC_EMULATOR"]
    if platform.machine() == "aarch64":
        try:
            text = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return None
        if "GenuineIntel" in text or "AuthenticAMD" in text:
            return "qemu-user (x86 host cpuinfo)"
    return None


def cpu_name() -> str:
    """What runs the kernels: the emulated CPU model, else the machine's model name."""
    emu = emulator() or ""
    if " -cpu " in emu:
        return emu.split(" -cpu ", 1)[1].split()[0]
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _inputs(interp, rng: np.random.Generator) -> list[tuple[int, np.ndarray]]:
    """Deterministic normalised inputs in each tensor's dtype (quantised for int8 inputs)."""
    out = []
    for d in interp.get_input_details():
        shape = [int(s) for s in d["shape"]]
        # Both models take normalised features: frames in [-1, 1], log-mel ~ N(0, 1).
        x = (rng.uniform(-1, 1, shape) if len(shape) == 5 else rng.standard_normal(shape))
        dtype = np.dtype(d["dtype"])
        scale, zp = d.get("quantization", (0.0, 0))
        if dtype.kind == "i" and scale:
            info = np.iinfo(dtype)
            x = np.clip(np.rint(x / scale + zp), info.min, info.max)
        out.append((d["index"], np.ascontiguousarray(x, dtype=dtype)))
    return out


def measure(runs: int, warmup: int) -> list[dict]:
    variants = []
    for name, path in MODELS.items():
        for xnn in (True, False):
            it = load_interpreter(path, num_threads=1, use_xnnpack=xnn)
            it.allocate_tensors()
            # same seed for both models: the int8 inputs are the float inputs, quantised
            for index, x in _inputs(it, np.random.default_rng(0)):
                it.set_tensor(index, x)
            for _ in range(warmup):
                it.invoke()
            variants.append({"model": name, "xnnpack": xnn, "path": str(path.relative_to(ROOT)),
                             "size_bytes": path.stat().st_size, "interp": it, "times": []})
    for _ in range(runs):  # interleaved rounds
        for v in variants:
            t0 = time.perf_counter()
            v["interp"].invoke()
            v["times"].append((time.perf_counter() - t0) * 1000.0)
    rows = []
    for v in variants:
        t = np.asarray(v.pop("times"))
        v.pop("interp")
        rows.append({**v, "median_ms": float(np.median(t)), "p10_ms": float(np.percentile(t, 10)),
                     "p90_ms": float(np.percentile(t, 90))})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=15, help="timed invokes per variant (median)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--json", type=Path, help="write the result here")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    rows = measure(args.runs, args.warmup)
    by = {(r["model"], r["xnnpack"]): r["median_ms"] for r in rows}
    ratios = {("xnnpack" if x else "builtin"): by[("int8", x)] / by[("float", x)]
              for x in (True, False)}
    emu, cpu = emulator(), cpu_name()
    label = f"{cpu}, emulated ({emu})" if emu else f"{cpu}, native {platform.machine()}"
    run = {
        "cpu": cpu,
        "emulated": emu is not None,
        "emulator": emu,
        "label": label,
        "int8_over_float": {k: round(v, 3) for k, v in ratios.items()},
        "rows": rows,
        "machine": {"machine": platform.machine(), "python": platform.python_version(),
                    "numpy": np.__version__, "backend": backend_name(),
                    "cpus": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()]},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(f"content model, 1 thread, {label}; median of {args.runs} invokes")
    print(f"{'model':6s} {'delegate':9s} {'size':>9s} {'median ms':>10s} {'p10':>8s} {'p90':>8s}")
    for r in rows:
        print(f"{r['model']:6s} {'XNNPACK' if r['xnnpack'] else 'built-in':9s} "
              f"{r['size_bytes']:9,d} {r['median_ms']:10.2f} {r['p10_ms']:8.2f} {r['p90_ms']:8.2f}")
    for k, v in ratios.items():
        print(f"int8 / float ({k}{', emulated' if emu else ''}): {v:.2f}x")
    if args.json:
        # One file, one entry per CPU: arm-check deletes it, then runs once per emulated core.
        result = {"benchmark": "arm_models", "runs": {}}
        if args.json.is_file():
            old = json.loads(args.json.read_text())
            if old.get("benchmark") == "arm_models":
                result = old
        result.update({
            "note": ("under emulation the times are QEMU's (TCG translates each aarch64 "
                     "instruction, NEON lane by lane), not a box's; only the int8/float ratio "
                     "per CPU model is a finding, and it is labelled emulated"),
            "statistic": f"median of {args.runs} invokes after {args.warmup} warm-up, 1 thread, "
                         "the four variants interleaved",
        })
        result["runs"][cpu] = run
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
