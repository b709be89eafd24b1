"""The ``tvrec`` command line.

Every subcommand imports its implementation lazily inside its handler, so ``tvrec --help`` is
instant and works with no extra installed. When a handler needs a package from an extra that is
not installed, the user gets one line naming the extra to install instead of a traceback.

Adding a subcommand: write ``_add_<name>(sub)`` that registers the parser and sets
``func=<handler>``, then call it from :func:`build_parser`. Handlers return an exit code.
"""

from __future__ import annotations

import argparse
import sys

# Which extra provides each third-party top-level module (one place for this fact).
EXTRA_OF_MODULE = {
    "numpy": "device",
    "sqlite_utils": "device",
    "ai_edge_litert": "device",
    "tflite_runtime": "device",
    "av": "media",
    "PySide6": "sim",
    "psutil": "sim",
    "tensorflow": "train",
    "tf_keras": "train",
    "tensorflow_model_optimization": "train",
    "scipy": "train",
    "tqdm": "train",
    "matplotlib": "train",
    "implicit": "dev",
}


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit code 2."""


# --------------------------------------------------------------------------- eval


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate recommenders offline")
    esub = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    cf = esub.add_parser(
        "cf",
        help="fit the default device CF on MovieLens and score it with the device scorer",
        description=(
            "Protocol: every rating is an interaction; per-user random 75/25 split "
            "(numpy default_rng(seed)); rank all items unseen in train; metrics at k."
        ),
    )
    cf.add_argument("--ratings", required=True, help="MovieLens u.data (tab-separated) or ratings.csv")
    cf.add_argument("--k", type=int, default=10, help="cut-off for the ranking metrics (default 10)")
    cf.add_argument("--seed", type=int, default=42, help="seed of the per-user split (default 42)")
    cf.add_argument("--json", metavar="OUT", help="also write the metrics as JSON to OUT")
    cf.set_defaults(func=_run_eval_cf)


def _run_eval_cf(args: argparse.Namespace) -> int:
    import json

    from models.evaluate import evaluate_device_cf
    from models.movielens import load_ratings

    ratings = load_ratings(args.ratings)
    result = evaluate_device_cf(ratings, k=args.k, seed=args.seed)
    text = json.dumps(result, indent=2, sort_keys=True)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return 0


# --------------------------------------------------------------------------- demo


def _add_demo(sub: argparse._SubParsersAction) -> None:
    from pathlib import Path

    default = Path(__file__).resolve().parents[1].parent / "shared/data/ml-100k/u.data"
    p = sub.add_parser("demo", help="print a demo viewer's home-screen rows (the main job)")
    p.add_argument("--ratings", type=Path, default=default, help=f"MovieLens u.data (default {default})")
    p.add_argument("--db", type=Path, help="history database to use (default: a new temporary one)")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from tvrec.terminal_demo import run

    if not args.ratings.is_file():
        raise CommandError(f"{args.ratings}: MovieLens ratings not found (pass --ratings)")
    return run(args.ratings, args.db)


# --------------------------------------------------------------------------- catalog


def _add_catalog(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("catalog", help="the deterministic demo TV catalog (media + viewing logs)")
    csub = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    gen = csub.add_parser(
        "generate",
        help="generate items, MP4 clips, posters, households and their viewing logs",
        description=(
            "Writes DIR/catalog.json (last, atomically), interactions.csv (training logs before "
            "the cut-off, warm items only), interactions_future.csv (after it, incl. cold items), "
            "latent.json (hidden simulator truth, diagnostics only), media/*.mp4, posters/*.png. "
            "Same seed, same files."
        ),
    )
    gen.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    gen.add_argument("--items", type=int, default=600, help="number of programmes (default 600)")
    gen.add_argument("--seed", type=int, default=0, help="seed of everything (default 0)")
    gen.add_argument("--profiles", type=int, default=400, help="number of household profiles (default 400)")
    gen.add_argument("--no-media", action="store_true", help="skip clips and posters (logs only, seconds)")
    gen.add_argument("--workers", type=int, default=None, help="media processes (default: up to 2)")
    gen.set_defaults(func=_run_catalog)
    info = csub.add_parser("info", help="load a generated catalog, validate it and print a summary")
    info.add_argument("dir", metavar="DIR")
    info.set_defaults(func=_run_catalog)


def _run_catalog(args: argparse.Namespace) -> int:
    import os
    import time

    if args.what == "generate":
        if args.items < 2 or args.profiles < 1:
            raise CommandError("--items must be >= 2 and --profiles >= 1")
        if args.workers is not None and args.workers < 1:
            raise CommandError("--workers must be >= 1")
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise CommandError(f"{args.out}: exists and is not a folder")
        from models.catalog import generate_catalog

        t0 = time.perf_counter()
        m = generate_catalog(args.out, n_items=args.items, seed=args.seed, n_profiles=args.profiles,
                             media=not args.no_media, workers=args.workers, progress=True)
        c = m["counts"]
        print(f"{args.out}: {m['n_items']} items ({c['cold_items']} cold), {m['n_profiles']} profiles, "
              f"{c['train_events']} training + {c['future_events']} future events, "
              f"media {'yes' if m['media_format'] else 'no'}, {time.perf_counter() - t0:.1f} s")
        return 0

    from models.catalog import load_catalog

    cat = load_catalog(args.dir)
    n_media = sum(1 for i in range(cat.n_items) if cat.media_path(i) and os.path.isfile(cat.media_path(i)))
    print(f"{args.dir}: schema {cat.manifest['schema']}, seed {cat.seed}, {cat.n_items} items "
          f"({int(cat.cold.sum())} cold), {len(cat.profile_ids)} profiles, {len(cat.train)} training / "
          f"{len(cat.future)} future events, {n_media} clips present")
    return 0


# --------------------------------------------------------------------------- features


def _add_features(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "features",
        help="decode a media file into the content model's features (frames + log-mel)",
        description=(
            "Samples F frames evenly over the clip (shorter side scaled to S, centre-cropped) and "
            "a log-mel window centred in it, with the default FeatureConfig; writes frames (uint8 "
            "[F,S,S,3]), logmel (float32 [T,M], before normalisation) and config (its JSON) to an "
            "npz. A file without audio gets silence and the flag no_audio."
        ),
    )
    p.add_argument("media", metavar="MEDIA_FILE", help="a video file (mp4, webm, mkv, ...)")
    p.add_argument("--out", required=True, metavar="FILE.npz", help="npz to write (replaced atomically)")
    p.add_argument("--json", action="store_true", help="print shapes, duration and flags as JSON")
    p.set_defaults(func=_run_features)


def _run_features(args: argparse.Namespace) -> int:
    import json
    import os

    import numpy as np

    from device.features import FeatureConfig
    from device.media import extract_features

    out = os.path.abspath(args.out)
    if os.path.isdir(out):
        raise CommandError(f"{args.out}: is a folder; pass a file name for --out")
    cfg = FeatureConfig()
    frames, logmel, info = extract_features(args.media, cfg)
    tmp = f"{out}.tmp{os.getpid()}"
    try:
        # A file object, not a name: np.savez would append ".npz" to a name without it.
        with open(tmp, "wb") as fh:
            np.savez(fh, frames=frames, logmel=logmel, config=np.array(cfg.to_json()),
                     flags=np.array(info["flags"], dtype=str))
        os.replace(tmp, out)
    except OSError as err:
        raise CommandError(f"{args.out}: cannot write ({err.strerror or err})") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    if args.json:
        summary = {
            **info,
            "frames": {"shape": list(frames.shape), "dtype": str(frames.dtype)},
            "logmel": {"shape": list(logmel.shape), "dtype": str(logmel.dtype)},
            "out": args.out,
        }
        print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    from tvrec import __version__

    parser = argparse.ArgumentParser(
        prog="tvrec",
        description="On-device recommendations for smart-TV boxes.",
    )
    parser.add_argument("--version", action="version", version=f"tvrec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_eval(sub)
    _add_demo(sub)
    _add_catalog(sub)
    _add_features(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ModuleNotFoundError as err:
        top = (err.name or "").split(".")[0]
        extra = EXTRA_OF_MODULE.get(top)
        if extra is None:
            raise
        print(
            f"tvrec {args.command}: needs the '{extra}' extra (module {top} is not installed); "
            f"install it with: pip install 'tvrec[{extra}]'",
            file=sys.stderr,
        )
        return 3
    except CommandError as err:
        print(f"tvrec {args.command}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # our typed errors: one line, no traceback
        from device.errors import TvrecError

        if isinstance(err, TvrecError):
            print(f"tvrec {args.command}: {err}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
