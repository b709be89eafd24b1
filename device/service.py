"""The box's long-running side: keep every profile's home-screen rows fresh on disk.

``tvrec-device serve`` (or ``python -m device.service serve``) opens the installed bundle
(``BUNDLES/current``) and the watch-history database, computes :meth:`Engine.home` for every
profile and writes each as JSON, atomically, to ``OUT/<profile>.json`` plus ``OUT/index.json``
(the bundle version, the profiles, what the refresh cost). The launcher only reads those files,
so the first screen after a key press never waits for a model or a database.

It refreshes

* when the history changes (the database or its WAL file changed: another process recorded an
  event; checked every ``--poll`` seconds, default 2),
* when a new bundle is installed or rolled back (``current`` points elsewhere: the engine is
  reopened on the new version),
* every ``--interval`` seconds anyway (default 600: recency and "new" age with time),
* on ``SIGHUP``.

``SIGTERM`` / ``SIGINT`` end it cleanly (exit 0). A bundle or database that cannot be opened is
one line on stderr and exit 2, so a service manager's restart policy applies. No sockets, no
threads: the rows are files, written with ``os.replace``.

The same module is the box's small command line (console script ``tvrec-device``)::

    tvrec-device install BUNDLE_DIR_OR_TAR --bundles /var/lib/tvrec/bundles --trusted-keys /etc/tvrec/keys
    tvrec-device recommend --bundles /var/lib/tvrec/bundles --db history.db --profile alice
    tvrec-device serve --bundles /var/lib/tvrec/bundles --db history.db --out /run/tvrec/rows
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from device.errors import TvrecError

__all__ = ["RowWriter", "main", "profile_file", "resolve_bundle"]

INDEX = "index.json"


def resolve_bundle(bundle: str | os.PathLike | None, bundles: str | os.PathLike | None) -> Path:
    """The bundle folder to open: ``bundle`` itself, or the version ``bundles/current`` points
    at (resolved, so a later switch of ``current`` is noticed as a different path)."""
    from device.errors import BundleError

    if bundle is not None:
        return Path(bundle)
    root = Path(bundles)  # type: ignore[arg-type]
    cur = root / "current"
    if not os.path.islink(cur):
        raise BundleError(f"{root}: no bundle installed (no 'current' link); "
                          "install one with `tvrec-device install BUNDLE --bundles ROOT`")
    return cur.resolve()


def profile_file(profile_id: str) -> str:
    """A file name for a profile id: the id itself when it is plain, else percent-encoded (never
    a path, never hidden)."""
    return quote(profile_id, safe="-_") + ".json"


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:  # a full or read-only disk: the last good file stays as it was
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def _rows_json(rows: list) -> list[dict]:
    return [dataclasses.asdict(r) for r in rows]


def print_home(bundle_path, db, profile: str, *, as_json: bool = False) -> None:
    """One profile's home rows on stdout (created if missing): ``tvrec recommend`` and
    ``tvrec-device recommend`` both print through this."""
    from device.engine import Engine

    with Engine(bundle_path, db) as engine:
        if profile not in {p.id for p in engine.history.profiles()}:
            create_profile_noted(engine, profile)
        rows = engine.home(profile)
        if as_json:
            print(json.dumps({"profile": profile, "home_ms": engine.timings.home_ms,
                              "rows": _rows_json(rows)}, indent=1))
            return
        for row in rows:
            print(row.title)
            for card in row.cards:
                print(f"   {card.title:40.40s}  {card.reason}")
            print()
        print(f"({engine.timings.home_ms:.1f} ms)")


def create_profile_noted(engine, profile: str) -> None:
    """Create ``profile`` and say so in one line on stderr: a typo (``--profile alcie``) must
    not silently become a new, empty viewer."""
    others = sorted(p.id for p in engine.history.profiles())
    engine.add_profile(profile)
    known = f"existing: {', '.join(others)}" if others else "the first profile on this box"
    print(f"note: profile {profile!r} did not exist; created it ({known})", file=sys.stderr)


class RowWriter:
    """Home rows of every profile, written to ``out``; reopens the engine when the bundle moves.

    Parameters
    ----------
    db : path
        The watch-history database (created if missing).
    out : path
        Folder for ``<profile>.json`` and ``index.json`` (created if missing).
    bundle, bundles : path
        A bundle folder, or a bundle store whose ``current`` link is followed (one of the two).
    num_threads : int
        Interpreter threads for the content model.
    """

    def __init__(self, db: str | os.PathLike, out: str | os.PathLike, *,
                 bundle: str | os.PathLike | None = None, bundles: str | os.PathLike | None = None,
                 num_threads: int = 1):
        if (bundle is None) == (bundles is None):
            raise ValueError("pass exactly one of bundle= and bundles=")
        self.db = Path(db)
        self.out = Path(out)
        self.bundle_arg, self.bundles_arg = bundle, bundles
        self.num_threads = num_threads
        self.engine = None
        self.bundle_path: Path | None = None
        self._seen: tuple | None = None
        self.out.mkdir(parents=True, exist_ok=True)
        self._open()

    def _open(self) -> None:
        from device.engine import Engine

        path = resolve_bundle(self.bundle_arg, self.bundles_arg)
        engine = Engine(path, self.db, num_threads=self.num_threads)
        if self.engine is not None:
            self.engine.close()
        self.engine, self.bundle_path = engine, path

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def signature(self) -> tuple:
        """What a refresh depends on: the bundle version and the database files' change times."""
        stamp = []
        for suffix in ("", "-wal"):
            try:
                st = os.stat(f"{self.db}{suffix}")
                stamp.append((st.st_mtime_ns, st.st_size))
            except FileNotFoundError:
                stamp.append(None)
        return (str(resolve_bundle(self.bundle_arg, self.bundles_arg)), *stamp)

    def changed(self) -> bool:
        return self.signature() != self._seen

    def refresh(self) -> dict[str, Any]:
        """Recompute and write every profile's rows; returns what ``index.json`` now says."""
        t0 = time.perf_counter()
        if resolve_bundle(self.bundle_arg, self.bundles_arg) != self.bundle_path:
            self._open()  # a new bundle was installed (or rolled back); on failure the old stays
        self.out.mkdir(mode=0o700, parents=True, exist_ok=True)  # removed while serving: again
        self._seen = self.signature()
        assert self.engine is not None
        profiles, written = [], set()
        for p in self.engine.history.profiles():
            rows = self.engine.home(p.id)
            name = profile_file(p.id)
            _write_json(self.out / name, {"profile": p.id, "generated": time.time(),
                                          "home_ms": self.engine.timings.home_ms,
                                          "rows": _rows_json(rows)})
            profiles.append({"id": p.id, "file": name, "rows": len(rows),
                             "home_ms": round(self.engine.timings.home_ms, 2)})
            written.add(name)
        for stale in self.out.glob("*.json"):  # profiles deleted since the last refresh
            if stale.name != INDEX and stale.name not in written:
                stale.unlink(missing_ok=True)
        index = {"bundle": str(self.bundle_path), "db": str(self.db), "generated": time.time(),
                 "refresh_ms": round((time.perf_counter() - t0) * 1000.0, 2),
                 "profiles": profiles}
        _write_json(self.out / INDEX, index)
        return index

    def serve(self, *, poll: float = 2.0, interval: float = 600.0,
              max_refreshes: int | None = None, log=print, warn=None) -> int:
        """Refresh now, then whenever something changed or ``interval`` passed, until SIGTERM,
        SIGINT or ``max_refreshes`` refreshes (tests; failed ones count). Returns the number of
        refreshes. A failed refresh (the new bundle does not open, the rows folder is read-only
        or gone, the disk is full) goes to ``warn`` (default: stderr) once, and serving goes on
        from the last good engine and rows."""
        if warn is None:
            def warn(message: str) -> None:
                print(f"tvrec-device serve: {message}", file=sys.stderr, flush=True)
        stop, hup = [False], [False]

        def _stop(signum, frame):
            stop[0] = True

        def _hup(signum, frame):
            hup[0] = True

        old = {s: signal.signal(s, h) for s, h in
               ((signal.SIGTERM, _stop), (signal.SIGINT, _stop), (signal.SIGHUP, _hup))}
        n, last, failing = 0, -float("inf"), None
        try:
            while not stop[0]:
                now = time.monotonic()
                try:
                    due = hup[0] or now - last >= interval or self.changed()
                    if due:
                        hup[0] = False
                        index = self.refresh()
                except (TvrecError, OSError, sqlite3.Error) as err:
                    # A bundle that does not open, a read-only or vanished rows folder, a full
                    # disk: keep the engine and the rows files of the last good refresh, say so
                    # once, and try again at the next poll.
                    why = " ".join(str(err).split()) or type(err).__name__
                    if why != failing:
                        warn(f"refresh failed, still serving the last good rows: {why}")
                    failing, last = why, now
                    if max_refreshes is not None:
                        n += 1
                        if n >= max_refreshes:
                            break
                else:
                    if due:
                        if failing is not None:
                            warn("refresh works again")
                        failing = None
                        last, n = now, n + 1
                        log(f"refreshed {len(index['profiles'])} profile(s) in "
                            f"{index['refresh_ms']:.0f} ms from {index['bundle']}")
                        if max_refreshes is not None and n >= max_refreshes:
                            break
                time.sleep(poll)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        return n


# --------------------------------------------------------------------------- command line


def _bundle_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--bundles", help="bundle store; its 'current' link is followed")
    g.add_argument("--bundle", help="a bundle folder (instead of a store)")


def build_parser() -> argparse.ArgumentParser:
    from device.bundle_sign import DEFAULT_TRUSTED_KEYS

    from device.commandline import OneLineParser

    parser = OneLineParser(prog="tvrec-device",
                                     description="tvrec on the box: bundles and home-screen rows")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    i = sub.add_parser("install", help="verify (signature, sha256) and atomically install a bundle")
    i.add_argument("source", help="bundle folder or .tar.gz")
    i.add_argument("--bundles", required=True, help="bundle store (holds current/ and previous/)")
    i.add_argument("--trusted-keys", metavar="DIR", default=DEFAULT_TRUSTED_KEYS,
                   help=f"folder of the fleet's *.pub keys (default {DEFAULT_TRUSTED_KEYS})")
    i.add_argument("--allow-unsigned", action="store_true",
                   help="development only: install without a signature check (logged)")
    rb = sub.add_parser("rollback", help="switch the store back to the previous bundle")
    rb.add_argument("--bundles", required=True)
    r = sub.add_parser("recommend", help="print one profile's home rows (created if missing)")
    _bundle_args(r)
    r.add_argument("--db", required=True, help="watch-history database (created if missing)")
    r.add_argument("--profile", required=True)
    r.add_argument("--json", action="store_true")
    s = sub.add_parser("serve", help="keep every profile's rows fresh as JSON files")
    _bundle_args(s)
    s.add_argument("--db", required=True, help="watch-history database (created if missing)")
    s.add_argument("--out", required=True, help="folder for <profile>.json and index.json")
    s.add_argument("--poll", type=float, default=2.0, help="seconds between change checks")
    s.add_argument("--interval", type=float, default=600.0,
                   help="refresh at least this often, in seconds")
    s.add_argument("--once", action="store_true", help="refresh once and exit")
    s.add_argument("--threads", type=int, default=1, help="content model threads (default 1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "install":
            from device.bundle import install_bundle

            keys = args.trusted_keys
            if args.allow_unsigned:
                print(f"tvrec-device install: WARNING --allow-unsigned: {args.source} may be "
                      "installed without a signature check (development only)", file=sys.stderr)
                keys = keys if os.path.isdir(keys) else None
            print(f"installed {install_bundle(args.source, args.bundles, trusted_keys=keys, allow_unsigned=args.allow_unsigned)}")
        elif args.command == "rollback":
            from device.bundle import rollback

            print(f"rolled back to {rollback(args.bundles)}")
        elif args.command == "recommend":
            print_home(resolve_bundle(args.bundle, args.bundles), args.db, args.profile,
                       as_json=args.json)
        else:
            if not args.once:  # a SIGHUP while the engine opens must not end the service
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
            with RowWriter(args.db, args.out, bundle=args.bundle, bundles=args.bundles,
                           num_threads=args.threads) as writer:
                if args.once:
                    index = writer.refresh()
                    print(f"wrote {len(index['profiles'])} profile(s) to {args.out} in "
                          f"{index['refresh_ms']:.0f} ms")
                else:
                    writer.serve(poll=args.poll, interval=args.interval,
                                 log=lambda m: print(m, flush=True))
        return 0
    except TvrecError as err:
        print(f"tvrec-device {args.command}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `tvrec-device recommend ... | head`: the reader has gone
        from device.commandline import quiet_broken_pipe

        return quiet_broken_pipe()
    except OSError as err:  # e.g. --out /proc/nope: one line, not a traceback
        from device.commandline import oserror_line

        print(f"tvrec-device {args.command}: {oserror_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
