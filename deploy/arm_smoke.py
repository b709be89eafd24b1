"""What arm-check and armhf-check prove beyond the test subset, in one emulated ARM process
(device imports only).

Run:  python deploy/arm_smoke.py --clip CLIP [--out EMB.npz] [--compare HOST.npz] [--min-cosine C]

1. Every ``device`` module imports with TensorFlow, PySide6, ``models``, ``export`` and
   ``simulator`` blocked and sockets disabled (the rule of tests/test_engine.py), and the engine
   computes a home screen on the demo bundle.
2. A real recording goes the box's whole media path -- PyAV decode, keyframes, log-mel, the int8
   content model -- with the decode budget lifted to 300 s: ``device/media.py`` enforces 10 s of
   wall time, a box-speed contract that emulation (~20x slower) cannot meet, so
   tests/test_media.py is not run under qemu. Frames, log-mel and embedding are saved with
   ``--out``; with ``--compare`` they are checked against the same clip processed on another
   machine (the host): whether aarch64 ffmpeg, numpy and LiteRT give the box the same features
   and the same vector (the embedding's cosine must be >= ``--min-cosine``, default 0.999:
   the armv7 box runs tflite-runtime 2.14's kernels, the host LiteRT's).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FLEET = {"tensorflow", "tf_keras", "keras", "PySide6", "models", "export", "simulator"}


class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FLEET:
            raise ImportError(f"device must not import {name}")


def _no_net(*a, **k):
    raise OSError("device must not open network sockets")


def embed_clip(clip: Path):
    import numpy as np

    from device.bundle import open_bundle
    from device.content import ContentEmbedder
    from device.media import extract_features

    bundle = open_bundle(ROOT / "demo" / "bundle")
    emb = ContentEmbedder(bundle.model_path, bundle.feature_config)
    t0 = time.perf_counter()
    frames, logmel, info = extract_features(clip, bundle.feature_config, time_limit=300.0)
    t1 = time.perf_counter()
    vec = emb.embed_features(frames, logmel)
    t2 = time.perf_counter()
    return (np.asarray(vec, np.float32), frames, logmel, info, (t1 - t0) * 1e3,
            (t2 - t1) * 1e3)


def reembed(npz: Path) -> int:
    import numpy as np

    from device.bundle import open_bundle
    from device.content import ContentEmbedder

    bundle = open_bundle(ROOT / "demo" / "bundle")
    emb = ContentEmbedder(bundle.model_path, bundle.feature_config)
    data = dict(np.load(npz))
    data[f"vector_{emb.model.backend}"] = np.asarray(
        emb.embed_features(data["frames"], data["logmel"]), np.float32)
    np.savez(npz, **data)
    print(f"re-embedded {npz.name} with {emb.model.backend}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clip", type=Path, help="a real recording (skipped when absent)")
    ap.add_argument("--out", type=Path, help="save the clip's embedding here (.npz)")
    ap.add_argument("--compare", type=Path, help="an embedding of the same clip from elsewhere")
    ap.add_argument("--min-cosine", type=float, default=0.999,
                    help="least cosine with --compare's embedding by the same interpreter "
                    "package (default 0.999)")
    ap.add_argument("--reembed", type=Path, metavar="NPZ",
                    help="only embed NPZ's frames and log-mel with this machine's interpreter "
                    "and add the vector to NPZ as vector_<backend> (the host, for a box whose "
                    "interpreter package differs from the host's)")
    args = ap.parse_args(argv)
    if args.reembed:
        return reembed(args.reembed)

    sys.meta_path.insert(0, _Block())
    socket.socket = _no_net  # type: ignore[misc]
    socket.create_connection = _no_net  # type: ignore[assignment]
    import device

    names = sorted(m.name for m in pkgutil.iter_modules(device.__path__))
    for name in names:
        importlib.import_module(f"device.{name}")
    from device.engine import Engine

    with tempfile.TemporaryDirectory() as tmp, Engine(ROOT / "demo" / "bundle", Path(tmp) / "h.db") as eng:
        eng.add_profile("a")
        rows = eng.home("a")
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in FLEET)
    print(f"device imports: {len(names)} modules ({', '.join(names)}), no fleet module "
          f"({heavy or 'none'} loaded), no socket; home(): {len(rows)} rows")
    if heavy:
        return 1

    if args.clip is None or not args.clip.is_file():
        print(f"media: skipped (no clip at {args.clip})")
        return 0
    import numpy as np

    vec, frames, logmel, info, decode_ms, model_ms = embed_clip(args.clip)
    print(f"media: {args.clip.name}: decode + features {decode_ms:.0f} ms, int8 model "
          f"{model_ms:.0f} ms, flags {info.get('flags')}, |v| = {np.linalg.norm(vec):.4f}")
    from device.runtime import backend_name

    backend = backend_name()
    if args.out:
        np.savez(args.out, vector=vec, frames=frames, logmel=logmel, **{f"vector_{backend}": vec})
    if args.compare:
        ref = np.load(args.compare)

        def cosine(other):
            return float(vec @ other / (np.linalg.norm(vec) * np.linalg.norm(other)))

        dframes = np.abs(frames.astype(np.int16) - ref["frames"].astype(np.int16))
        dmel = float(np.max(np.abs(logmel - ref["logmel"])))
        print(f"media: against {args.compare.name} (the same clip, decoded and embedded "
              f"elsewhere): frames differ in {np.count_nonzero(dframes)} of {dframes.size} "
              f"values (max {int(dframes.max())}), log-mel max |diff| {dmel:.2e}")
        # The same interpreter package on both machines: whether this architecture's build
        # gives the box the same vector. Against the host's default interpreter (LiteRT with
        # XNNPACK) the int8 kernels themselves differ (XNNPACK vs the built-in ones).
        key = f"vector_{backend}"
        if key not in ref.files:
            print(f"media: no {key} in {args.compare.name} (re-embed it with --reembed)",
                  file=sys.stderr)
            return 1
        same, default = cosine(ref[key]), cosine(ref["vector"])
        print(f"media: int8 embedding cosine {same:.5f} with the host's {backend}; "
              f"{default:.5f} with the host's default interpreter")
        if same < args.min_cosine or default < 0.99:
            print(f"media: the box would embed this recording differently (cosine {same:.5f} "
                  f"< {args.min_cosine}, or {default:.5f} < 0.99)", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
