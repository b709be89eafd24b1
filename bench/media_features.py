"""Decode + features (``device.media.extract_features``) per clip: median wall time of N runs.

Run:  .venv/bin/python bench/media_features.py [--runs 10] [--data ../shared/data]
Writes bench/results/media_features.json and prints a table.

Clips: every real clip in ``../shared/data/media/video`` and two generated 10 s 1280x720 H.264
(+AAC) clips written with PyAV into a temp folder: one with a keyframe every 2 s (a typical
broadcast/streaming GOP) and one with a single keyframe (x264's default keyint of 250 frames
covers the whole clip: the worst case for seeking). Budget: <= 150 ms for the 720p clip.

For context each row also times the naive approach -- decoding every video frame (no RGB
conversion, no audio) -- in the same run, interleaved, and quotes the ratio. The machine is
shared: the load average at start and end is recorded with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import av  # noqa: E402

from device.features import FeatureConfig  # noqa: E402
from device.media import DECODER_THREAD_TYPE, extract_features  # noqa: E402


def generate_720p(path: Path, *, gop: int, seconds: int = 10, fps: int = 25) -> Path:
    """A 10 s 1280x720 H.264 (crf 23) + AAC clip with motion, texture and a 440 Hz tone."""
    w, h, sr = 1280, 720, 48000
    container = av.open(str(path), "w")
    vs = container.add_stream("libx264", rate=fps)
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    vs.codec_context.gop_size = gop
    vs.codec_context.options = {"preset": "veryfast", "crf": "23", "g": str(gop)}
    aus = container.add_stream("aac", rate=sr)
    aus.layout = "stereo"
    yy, xx = np.mgrid[0:h, 0:w]
    texture = np.random.default_rng(0).integers(0, 24, (h, w), dtype=np.uint8)
    spf = sr // fps
    for i in range(seconds * fps):
        img = np.empty((h, w, 3), np.uint8)
        img[..., 0] = (xx + 8 * i) % 256
        img[..., 1] = (2 * yy + 3 * i) % 256
        img[..., 2] = texture + 100
        x0 = int((w - 200) * (0.5 + 0.5 * np.sin(i / fps)))
        img[200:400, x0 : x0 + 200] = (255, 255, 0)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts, frame.time_base = i, Fraction(1, fps)
        for pkt in vs.encode(frame):
            container.mux(pkt)
        t = (np.arange(spf) + i * spf) / sr
        x = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        af = av.AudioFrame.from_ndarray(np.stack([x, x]), format="fltp", layout="stereo")
        af.sample_rate, af.pts = sr, i * spf
        for pkt in aus.encode(af):
            container.mux(pkt)
    for stream in (vs, aus):
        for pkt in stream.encode(None):
            container.mux(pkt)
    container.close()
    return path


def decode_every_frame(path: Path) -> int:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        v.thread_type = DECODER_THREAD_TYPE  # same decoder settings: compares the work done
        return sum(1 for _ in c.decode(v))


def describe(path: Path) -> dict:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        keys = sum(1 for p in c.demux(v) if p.size and p.is_keyframe)
        return {"codec": v.codec_context.name, "width": v.codec_context.width,
                "height": v.codec_context.height, "keyframes": keys}


def bench_clip(path: Path, cfg: FeatureConfig, runs: int) -> dict:
    extract_features(path, cfg)  # warm-up: page cache, codec init
    decode_every_frame(path)
    ours, naive = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        _, _, info = extract_features(path, cfg)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        n_frames = decode_every_frame(path)
        naive.append(time.perf_counter() - t0)
    med, med_naive = float(np.median(ours)), float(np.median(naive))
    return {
        "clip": path.name,
        **describe(path),
        "duration_s": info["duration"],
        "video_frames": n_frames,
        "flags": info["flags"],
        "median_ms": round(med * 1000, 1),
        "min_ms": round(min(ours) * 1000, 1),
        "max_ms": round(max(ours) * 1000, 1),
        "decode_every_frame_median_ms": round(med_naive * 1000, 1),
        "ratio_vs_decode_every_frame": round(med / med_naive, 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/data")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/media_features.json")
    args = ap.parse_args(argv)
    cfg = FeatureConfig()
    load_start = os.getloadavg()
    video_dir = args.data / "media/video"
    real = sorted(p for p in video_dir.glob("*") if p.suffix in {".mp4", ".webm", ".mkv"}) if video_dir.is_dir() else []
    if not real:
        print(f"note: no real clips under {video_dir}; benchmarking generated clips only", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tvrec-bench-") as tmp:
        print("generating 10 s 720p H.264 clips ...", file=sys.stderr)
        generated = [
            generate_720p(Path(tmp) / "gen_720p_10s_gop2s.mp4", gop=50),
            generate_720p(Path(tmp) / "gen_720p_10s_1key.mp4", gop=250),
        ]
        for path in generated + real:
            rows.append(bench_clip(path, cfg, args.runs))
            r = rows[-1]
            print(f"  {r['clip']}: {r['median_ms']} ms", file=sys.stderr)
    load_end = os.getloadavg()

    header = f"{'clip':34} {'codec':5} {'size':>9} {'dur s':>5} {'keys':>4} {'median ms':>9} {'min ms':>7} {'all-frames ms':>13} {'ratio':>5}"
    print(header)
    print("-" * len(header))
    for r in rows:
        size = f"{r['width']}x{r['height']}"
        print(f"{r['clip']:34} {r['codec']:5} {size:>9} {r['duration_s']:5.1f} {r['keyframes']:4d} "
              f"{r['median_ms']:9.1f} {r['min_ms']:7.1f} {r['decode_every_frame_median_ms']:13.1f} "
              f"{r['ratio_vs_decode_every_frame']:5.2f}")
    print(f"load average at start {load_start[0]:.2f}, at end {load_end[0]:.2f} ({os.cpu_count()} CPUs)")

    result = {
        "what": "device.media.extract_features (decode F frames + audio window + log-mel), median of runs",
        "runs": args.runs,
        "feature_config": cfg.to_dict(),
        "feature_fingerprint": cfg.fingerprint(),
        "budget_ms_720p_10s": 150,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "pyav": av.__version__,
            "ffmpeg": av.library_versions.get("libavcodec"),
            "loadavg_start": [round(x, 2) for x in load_start],
            "loadavg_end": [round(x, 2) for x in load_end],
        },
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
