"""Torture suite: crashes, full disks, hostile input and signals against the box's code.

Run:  .venv/bin/python bench/torture.py [--quick] [--json OUT] [--only SCENARIO ...]
Default OUT: bench/results/torture.json (``--quick``: bench/results/torture_quick.json). Prints a
table; exits 1 when a target is missed.

Scenarios (each reports ``runs``, ``lost_committed_events``, ``corrupt_databases``,
``unrecovered``, ``tracebacks``, ``hangs``, plus its own counts):

``sigkill_writer``
    A forked writer records watch events into one history database and prints each event's
    sequence number *after* ``record`` returned (i.e. after COMMIT); it is SIGKILLed at a random
    moment, >= 200 times (SQLite's own crash tests kill a writer the same way). After each kill
    the verifier opens the database: ``PRAGMA integrity_check`` must say ok (else a corrupt
    database) and every acknowledged sequence number must be there (else a lost event).
``disk_full``
    The history on a 1 MB tmpfs (root only; skipped with the reason otherwise), filled with a
    ballast file until writes fail: the failing ``Engine.record`` must raise
    :class:`~device.errors.StorageFullError` (anything else is a traceback), ``home()`` must
    keep answering, nothing acknowledged may be missing, and recording must resume once the
    ballast is removed (else unrecovered).
``killed_install``
    ``install_bundle`` of a signed bundle, SIGKILLed at a random point of its run, >= 100 times:
    ``current`` must always open with full verification (else unrecovered), and the next
    install must work (no stale lock or staging folder in the way).
``signed_install``
    Forged (file rewritten, its sha256 recomputed), unsigned, unknown-key, mixed (manifest or
    signature of another bundle) and replayed-older bundles: every one refused with one line and
    the old bundle still current and verifying. Also times the signature check on the demo
    bundle (target <= 50 ms).
``fuzz_manifest``, ``fuzz_npy``, ``fuzz_archive``
    Hypothesis-driven mutations (JSON values replaced, keys dropped; truncations and bit flips
    of ``.npy`` files and of the ``.tar.gz``), each installed with full verification: refused
    with a :class:`~device.errors.BundleError` or, when harmless, served identically (same
    ``home()`` rows as the pristine bundle); never another exception (a traceback), never
    longer than 10 s (a hang). >= 1,000 inputs per kind (``--quick``: 60).
``fuzz_media``
    Truncated and bit-flipped real clips from ``../shared/data/media/video`` through the
    engine's own recording path (``device.content.embed_files_isolated``: decode + int8 model in
    a child): each a one-line ``MediaError`` or a finite unit embedding; the engine process
    never dies; per-batch time bounded.
``service``
    A real ``tvrec-device serve`` process (poll 0.1 s) while its rows folder is removed, made
    read-only (a read-only tmpfs remount; root only), ``current`` is pointed at a broken bundle
    and back, and 200 SIGHUPs arrive: the process must stay alive (else unrecovered), every rows
    file must always parse (else corrupt), stderr must hold no traceback. Also its peak RSS
    (``VmHWM``) against a ``serve --once`` of the same code.

``--quick`` runs a few seconds' subset of each (what ``make test`` runs through
``tests/test_torture.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MEDIA = ROOT.parent / "shared" / "data" / "media" / "video"
KEYS = ("runs", "lost_committed_events", "corrupt_databases", "unrecovered", "tracebacks", "hangs")
HANG_S = 10.0


def _blank(**extra: Any) -> dict[str, Any]:
    return {**{k: 0 for k in KEYS}, **extra}


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _one_line(err: BaseException) -> bool:
    return "\n" not in str(err) and bool(str(err))


@contextlib.contextmanager
def _alarm(seconds: float):
    """Raise TimeoutError in this process after ``seconds`` (a hang guard for in-process work)."""
    def fire(signum, frame):
        raise TimeoutError(f"no answer within {seconds:g} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _demo_items(n: int = 50) -> list[dict]:
    from device.bundle import open_bundle

    b = open_bundle(ROOT / "demo" / "bundle", verify="sizes")
    return [b.items.record(r) for r in range(min(n, b.n_items))]


# --------------------------------------------------------------------------- sigkill_writer


def _writer(db: str, items: list[dict], start: int, out_fd: int) -> None:
    """Child: record progress events forever, acknowledging each committed one on ``out_fd``."""
    from device.history import History

    rng = random.Random(start)
    with History(db) as h:
        seq = start
        while True:
            item = items[rng.randrange(len(items))]
            # The sequence number rides in the timestamp (a past time, unique per event).
            h.record("torture", item["id"], "progress", position=float(seq % 3000),
                     timestamp=SEQ_EPOCH + seq)
            os.write(out_fd, f"{seq}\n".encode())  # record() returned: committed
            seq += 1


SEQ_EPOCH = 1_000_000_000.0  # 2001-09-09: every sequence number is a distinct past second


def _committed(db: str) -> tuple[bool, set[int]]:
    """(integrity ok, the sequence numbers in the database), through a fresh connection."""
    import sqlite3

    conn = sqlite3.connect(db, timeout=5)
    try:
        ok = conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        seqs = {int(round(ts - SEQ_EPOCH)) for (ts,) in conn.execute(
            "SELECT ts FROM events WHERE profile_id = 'torture'")}
    finally:
        conn.close()
    return ok, seqs


def sigkill_writer(runs: int, seed: int) -> dict[str, Any]:
    from device.history import History

    rng = random.Random(seed)
    r = _blank(acknowledged_events=0, kill_delay_ms=[])
    items = [dict(i, duration=3600.0 * 4) for i in _demo_items()]
    with tempfile.TemporaryDirectory(prefix="torture-kill-") as tmp:
        db = os.path.join(tmp, "history.db")
        with History(db) as h:
            h.add_profile("torture")
            h.upsert_items(items)
        acknowledged: set[int] = set()
        for run in range(runs):
            rfd, wfd = os.pipe()
            pid = os.fork()
            if pid == 0:  # the writer
                os.close(rfd)
                try:
                    _writer(db, items, run * 1_000_000, wfd)
                finally:
                    os._exit(1)
            os.close(wfd)
            delay = rng.uniform(0.002, 0.12)
            r["kill_delay_ms"].append(round(delay * 1000, 1))
            time.sleep(delay)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            with os.fdopen(rfd, "rb") as fh:
                # A line cut by the kill is not an acknowledgement.
                text = fh.read().decode()
            acknowledged |= {int(s) for s in text.split("\n")[:-1]}
            r["runs"] += 1
            try:
                ok, present = _committed(db)
            except Exception:  # noqa: BLE001 -- an unopenable file is a corrupt database
                r["corrupt_databases"] += 1
                continue
            if not ok:
                r["corrupt_databases"] += 1
            r["lost_committed_events"] += len(acknowledged - present)
            acknowledged &= present
        r["acknowledged_events"] = len(acknowledged)
    delays = sorted(r.pop("kill_delay_ms"))
    r["kill_delay_ms_range"] = [delays[0], delays[-1]] if delays else []
    return r


# --------------------------------------------------------------------------- disk_full


def disk_full(runs: int, seed: int) -> dict[str, Any]:
    from device.engine import Engine
    from device.errors import StorageFullError

    if not _is_root():
        return _blank(skipped="needs root to mount a size-limited tmpfs")
    r = _blank(typed_errors=0, home_while_full=0, events_before_full=[])
    rng = random.Random(seed)
    bundle = ROOT / "demo" / "bundle"
    with tempfile.TemporaryDirectory(prefix="torture-full-") as tmp:
        mnt = Path(tmp) / "fs"
        mnt.mkdir()
        try:
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tvrec-torture", str(mnt)],
                           check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError) as err:
            return _blank(skipped=f"cannot mount a tmpfs ({err})")
        try:
            for run in range(runs):
                for p in mnt.iterdir():
                    p.unlink()
                db = mnt / "history.db"
                r["runs"] += 1
                acknowledged = 0
                try:
                    with Engine(bundle, db) as eng:
                        eng.add_profile("full")
                        ids = list(eng.bundle.items.ids[:200])
                        # Ballast leaves a few hundred KB: the WAL and the table grow into it.
                        free = shutil.disk_usage(mnt).free
                        (mnt / "ballast").write_bytes(b"\0" * max(0, free - rng.randint(60, 300) * 1024))
                        failed = None
                        for i in range(200_000):
                            try:
                                eng.record("full", str(ids[i % len(ids)]), "play", position=0.0)
                                acknowledged += 1
                            except StorageFullError as err:
                                failed = err
                                break
                        if failed is None or not _one_line(failed):
                            r["unrecovered"] += 1
                        else:
                            r["typed_errors"] += 1
                        r["events_before_full"].append(acknowledged)
                        with _alarm(HANG_S):
                            if eng.home("full"):
                                r["home_while_full"] += 1
                        # A second write while still full: the same typed error, nothing else.
                        try:
                            eng.record("full", str(ids[0]), "play", position=0.0)
                            acknowledged += 1
                        except StorageFullError:
                            pass
                        (mnt / "ballast").unlink()  # space returns
                        eng.record("full", str(ids[1]), "finish")
                        acknowledged += 1
                        eng.home("full")
                    ok, n = _committed_profile(db, "full")
                    r["corrupt_databases"] += 0 if ok else 1
                    r["lost_committed_events"] += max(0, acknowledged - n)
                except StorageFullError:
                    r["unrecovered"] += 1  # recording did not resume with space back
                except TimeoutError:
                    r["hangs"] += 1
                except Exception:  # noqa: BLE001 -- anything untyped is a traceback to a user
                    import traceback

                    r["tracebacks"] += 1
                    r.setdefault("first_traceback", traceback.format_exc(limit=3))
        finally:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    ev = r.pop("events_before_full")
    r["events_before_full_median"] = sorted(ev)[len(ev) // 2] if ev else 0
    return r


def _committed_profile(db: Path, profile: str) -> tuple[bool, int]:
    import sqlite3

    conn = sqlite3.connect(db, timeout=5)
    try:
        ok = conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        n = conn.execute("SELECT COUNT(*) FROM events WHERE profile_id = ?", [profile]).fetchone()[0]
    finally:
        conn.close()
    return ok, n


# --------------------------------------------------------------------------- bundles


class Fleet:
    """Signed small bundles with growing versions, a trusted-keys folder and an attacker key."""

    def __init__(self, tmp: Path):
        from device.bundle import generate_key

        self.tmp = tmp
        self.key, pub = generate_key(tmp / "fleet" / "fleet.key")
        self.evil, _ = generate_key(tmp / "evil" / "evil.key")
        self.trusted = tmp / "trusted"
        self.trusted.mkdir()
        shutil.copy(pub, self.trusted)
        self.version = 0

    def bundle(self, *, n: int = 60, sign: bool = True, key: Path | None = None,
               version: int | None = None) -> Path:
        from device.bundle import sign_bundle, synth_bundle

        self.version += 1
        v = self.version if version is None else version
        path = self.tmp / "made" / f"b{self.version}"
        synth_bundle(path, n, seed=self.version, k=8, dim=8)
        if sign:
            sign_bundle(path, key or self.key, bundle_version=v)
        return path


def _install_child(source: str, root: str, trusted: str) -> None:
    from device.bundle import install_bundle

    install_bundle(source, root, trusted_keys=trusted)


def killed_install(runs: int, seed: int) -> dict[str, Any]:
    from device.bundle import current_bundle, install_bundle

    rng = random.Random(seed)
    r = _blank(completed_before_kill=0, next_install_failed=0)
    with tempfile.TemporaryDirectory(prefix="torture-install-") as tmp:
        fleet = Fleet(Path(tmp))
        root = Path(tmp) / "store"
        install_bundle(fleet.bundle(), root, trusted_keys=fleet.trusted)
        t0 = time.perf_counter()
        install_bundle(fleet.bundle(), root, trusted_keys=fleet.trusted)
        typical = time.perf_counter() - t0
        for _ in range(runs):
            source = fleet.bundle(n=rng.choice([60, 400]))
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    _install_child(str(source), str(root), str(fleet.trusted))
                except BaseException:  # noqa: BLE001
                    code = 3
                os._exit(code)
            time.sleep(rng.uniform(0, typical * 1.3))
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            r["runs"] += 1
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
                r["completed_before_kill"] += 1
            try:
                with _alarm(HANG_S):
                    current_bundle(root, verify=True)
            except TimeoutError:
                r["hangs"] += 1
            except Exception:  # noqa: BLE001
                r["unrecovered"] += 1
        # After all the kills, the store still takes a new bundle (lock and staging not in the way).
        try:
            with _alarm(HANG_S * 3):
                install_bundle(fleet.bundle(), root, trusted_keys=fleet.trusted)
                current_bundle(root, verify=True)
        except Exception:  # noqa: BLE001
            r["next_install_failed"] += 1
            r["unrecovered"] += 1
        r["typical_install_ms"] = round(typical * 1000, 1)
    return r


def signed_install(runs: int, seed: int, *, timing: bool = True) -> dict[str, Any]:
    import hashlib

    from device.bundle import (SIGNATURE, check_signature, current_bundle, install_bundle,
                               pack_bundle)
    from device.errors import BundleError

    r = _blank(attacks=0, refused=0, refused_by_kind={})
    with tempfile.TemporaryDirectory(prefix="torture-sign-") as tmp:
        fleet = Fleet(Path(tmp))
        root = Path(tmp) / "store"
        base = fleet.bundle(version=1000)
        install_bundle(base, root, trusted_keys=fleet.trusted)
        fleet.version = 1000

        def forged() -> Path:
            b = fleet.bundle()
            pop = b / "popularity.npy"
            data = bytearray(pop.read_bytes())
            data[-4:] = b"\x00\x00\x80\x7f"  # the top item's popularity becomes +inf
            pop.write_bytes(bytes(data))
            m = json.loads((b / "manifest.json").read_text())
            m["files"]["popularity.npy"]["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
            (b / "manifest.json").write_text(json.dumps(m, indent=1, sort_keys=True) + "\n")
            return b

        def forged_resigned_digest() -> Path:
            b = forged()
            sig = json.loads((b / SIGNATURE).read_text())
            sig["manifest_sha256"] = hashlib.sha256((b / "manifest.json").read_bytes()).hexdigest()
            (b / SIGNATURE).write_text(json.dumps(sig))
            return b

        def mixed_manifest() -> Path:
            a, b = fleet.bundle(), fleet.bundle()
            shutil.copy(b / "manifest.json", a / "manifest.json")
            return a

        def mixed_files() -> Path:
            a, b = fleet.bundle(), fleet.bundle()
            shutil.copy(b / "weights.npy", a / "weights.npy")
            return a

        def older() -> Path:
            return fleet.bundle(version=rng.randint(1, 999))

        def archive_of(make: Callable[[], Path]) -> Callable[[], Path]:
            def f() -> Path:
                b = make()
                return pack_bundle(b, b.with_suffix(".tar.gz")) if (b / SIGNATURE).exists() \
                    else _pack_unsigned(b)
            return f

        rng = random.Random(seed)
        kinds: dict[str, Callable[[], Path]] = {
            "unsigned": lambda: fleet.bundle(sign=False),
            "unknown_key": lambda: fleet.bundle(key=fleet.evil),
            "forged": forged,
            "forged_digest_patched": forged_resigned_digest,
            "mixed_manifest": mixed_manifest,
            "mixed_files": mixed_files,
            "replayed_older": older,
            "replayed_older_archive": archive_of(older),
        }
        before = os.readlink(root / "current")
        for i in range(runs):
            kind = list(kinds)[i % len(kinds)]
            source = kinds[kind]()
            r["runs"] += 1
            r["attacks"] += 1
            try:
                install_bundle(source, root, trusted_keys=fleet.trusted)
            except BundleError as err:
                if _one_line(err):
                    r["refused"] += 1
                    r["refused_by_kind"][kind] = r["refused_by_kind"].get(kind, 0) + 1
            except Exception:  # noqa: BLE001
                r["tracebacks"] += 1
            if os.readlink(root / "current") != before:
                r["unrecovered"] += 1
            try:
                current_bundle(root, verify=True)
            except Exception:  # noqa: BLE001
                r["unrecovered"] += 1
        r["refused_pct"] = round(100.0 * r["refused"] / max(1, r["attacks"]), 2)

        if not timing:
            return r
        # The signature check on the demo bundle: median of 30 (warm), and a fresh process's first
        # check (the trusted keys read, PyNaCl's libsodium binding imported) -- wall and CPU time,
        # and how much it raises that process's peak RSS (VmHWM; the service itself never checks
        # signatures nor imports PyNaCl, tests/test_service.py).
        demo, keys = ROOT / "demo" / "bundle", ROOT / "demo" / "keys"
        times = []
        for _ in range(30):
            t0 = time.perf_counter()
            check_signature(demo, keys)
            times.append((time.perf_counter() - t0) * 1000)
        r["signature_check_ms_median"] = round(sorted(times)[len(times) // 2], 3)
        firsts = [json.loads(subprocess.run([sys.executable, "-c", _FIRST_CHECK, str(ROOT)], check=True,
                                            capture_output=True, text=True).stdout) for _ in range(9)]
        med = lambda k: round(sorted(f[k] for f in firsts)[len(firsts) // 2], 2)  # noqa: E731
        r["signature_check_first_ms_median"] = med("wall_ms")
        r["signature_check_first_cpu_ms_median"] = med("cpu_ms")
        r["signature_check_first_vmhwm_growth_mb_median"] = med("vmhwm_growth_mb")
        r["signature_check_first_nacl_import_cpu_ms_median"] = med("nacl_import_cpu_ms")
    return r


#: A fresh process's first signature check of the demo bundle (run as ``python -c``): what an
#: install on the box pays once. Its parts are timed apart to say where the time goes.
_FIRST_CHECK = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
def hwm():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM")) / 1024
from device.bundle import check_signature
h0 = hwm(); w0, c0 = time.perf_counter(), time.process_time()
from nacl._sodium import lib  # noqa: F401 -- what check_signature imports first
c1 = time.process_time()
check_signature(sys.argv[1] + "/demo/bundle", sys.argv[1] + "/demo/keys")
print(json.dumps({"wall_ms": (time.perf_counter() - w0) * 1000, "cpu_ms": (time.process_time() - c0) * 1000,
                  "nacl_import_cpu_ms": (c1 - c0) * 1000, "vmhwm_growth_mb": hwm() - h0}))
"""


def _pack_unsigned(b: Path) -> Path:
    from device.bundle import pack_bundle

    return pack_bundle(b, b.with_suffix(".tar.gz"))


# --------------------------------------------------------------------------- fuzzing


def _rows_of(root: Path) -> Any:
    """The rows ``home()`` serves from ``root/current`` for a fixed small history."""
    from device.engine import Engine

    with tempfile.TemporaryDirectory() as tmp:
        with Engine(root / "current", Path(tmp) / "h.db") as eng:
            eng.add_profile("p")
            ids = [str(i) for i in eng.bundle.items.ids[:3]]
            for i in ids:
                eng.record("p", i, "finish")
            return [(row.kind, [c.item_id for c in row.cards]) for row in eng.home("p")]


def _fuzz(kind: str, examples: int, seed: int, make_input: Callable[[Any, Path], Path],
          strategy: Any, fleet: Fleet, pristine: Path) -> dict[str, Any]:
    """Install each hypothesis-made input into a fresh store with full verification."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hyp_seed

    from device.bundle import install_bundle
    from device.errors import BundleError

    r = _blank(refused=0, served_identically=0, served_differently=0)
    good_root = fleet.tmp / f"good-{kind}"
    install_bundle(pristine, good_root, trusted_keys=fleet.trusted)
    want = _rows_of(good_root)
    counter = [0]

    @hyp_seed(seed)
    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck), phases=("generate",))
    @given(strategy)
    def one(mutation: Any) -> None:
        counter[0] += 1
        work = fleet.tmp / f"{kind}-{counter[0]}"
        source = make_input(mutation, work)
        root = work / "store"
        r["runs"] += 1
        try:
            with _alarm(HANG_S):
                install_bundle(source, root, trusted_keys=fleet.trusted)
                got = _rows_of(root)
            if got == want:
                r["served_identically"] += 1
            else:
                r["served_differently"] += 1
        except BundleError as err:
            r["refused"] += 1 if _one_line(err) else 0
            r["tracebacks"] += 0 if _one_line(err) else 1
        except TimeoutError:
            r["hangs"] += 1
        except Exception as err:  # noqa: BLE001
            r["tracebacks"] += 1
            r.setdefault("first_traceback", f"{type(err).__name__}: {err}"[:300])
        finally:
            shutil.rmtree(work, ignore_errors=True)

    one()
    r["unrecovered"] = r["served_differently"]  # a mutation that changed the rows got through
    return r


def _scratch() -> str | None:
    """RAM-backed scratch space when there is some: the fuzzers write thousands of bundles."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def _sign_raw(bundle: Path, key: Path) -> None:
    """Sign ``bundle``'s manifest bytes as they are, valid or not (a fleet bug, or a stolen key):
    what the box then does rests on its own checks of the manifest and files alone."""
    import base64

    from device.bundle_sign import _DOMAIN, SIGNATURE, SIGNATURE_FORMAT, _read_secret, key_id
    from device.features import sha256

    sk = _read_secret(key)
    raw = (bundle / "manifest.json").read_bytes()
    doc = {"format": SIGNATURE_FORMAT, "algorithm": "ed25519", "key_id": key_id(bytes(sk.verify_key)),
           "manifest_sha256": sha256(raw).hexdigest(),
           "signature": base64.b64encode(sk.sign(_DOMAIN + raw).signature).decode()}
    (bundle / SIGNATURE).write_text(json.dumps(doc))


def _mutate_bytes(data: bytes, m: tuple) -> bytes:
    cut, flips = m
    out = bytearray(data[: max(0, len(data) - cut)] if cut else data)
    for pos, bit in flips:
        if out:
            out[pos % len(out)] ^= 1 << bit
    return bytes(out)


def fuzz_bundles(examples: int, seed: int) -> dict[str, dict[str, Any]]:
    from hypothesis import strategies as st

    from device.bundle import pack_bundle

    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="torture-fuzz-", dir=_scratch()) as tmp:
        fleet = Fleet(Path(tmp))
        pristine = fleet.bundle(n=40)
        manifest = json.loads((pristine / "manifest.json").read_text())
        npys = sorted(p.name for p in pristine.glob("*.npy"))
        archive = pack_bundle(pristine, Path(tmp) / "pristine.tar.gz")
        arch_bytes = archive.read_bytes()

        values = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63), st.floats(),
                           st.text(max_size=20), st.lists(st.integers(), max_size=3),
                           st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))

        def keys_of(m: dict, prefix=()) -> list[tuple]:
            out = []
            for k, v in m.items():
                out.append(prefix + (k,))
                if isinstance(v, dict):
                    out += keys_of(v, prefix + (k,))
            return out

        paths = keys_of(manifest)
        # Half the mutated manifests are re-signed with the fleet key, so the box's own manifest
        # checks (not only the signature) meet them.
        manifest_mut = st.tuples(st.booleans(), st.lists(
            st.tuples(st.sampled_from(paths), st.booleans(), values), min_size=1, max_size=3))

        def make_manifest(mm, work: Path) -> Path:
            resign, muts = mm
            shutil.copytree(pristine, work)
            m = json.loads((work / "manifest.json").read_text())
            for path, drop, value in muts:
                node = m
                for k in path[:-1]:
                    node = node.get(k) if isinstance(node, dict) else None
                if not isinstance(node, dict):
                    continue
                if drop:
                    node.pop(path[-1], None)
                else:
                    node[path[-1]] = value
            text = json.dumps(m, indent=1, sort_keys=True, allow_nan=True) + "\n"
            (work / "manifest.json").write_text(text)
            if resign:
                _sign_raw(work, fleet.key)
            return work

        byte_mut = st.tuples(st.one_of(st.just(0), st.integers(1, 4000)),
                             st.lists(st.tuples(st.integers(0, 10**7), st.integers(0, 7)),
                                      max_size=4))

        def make_npy(m, work: Path) -> Path:
            name, mut = m
            shutil.copytree(pristine, work)
            f = work / name
            f.write_bytes(_mutate_bytes(f.read_bytes(), mut))
            return work

        def make_archive(mut, work: Path) -> Path:
            work.mkdir(parents=True)
            f = work / "bundle.tar.gz"
            f.write_bytes(_mutate_bytes(arch_bytes, mut))
            return f

        results["fuzz_manifest"] = _fuzz("manifest", examples, seed, make_manifest, manifest_mut,
                                         fleet, pristine)
        results["fuzz_npy"] = _fuzz("npy", examples, seed + 1, make_npy,
                                    st.tuples(st.sampled_from(npys), byte_mut), fleet, pristine)
        results["fuzz_archive"] = _fuzz("archive", examples, seed + 2, make_archive, byte_mut,
                                        fleet, pristine)
    return results


def fuzz_media(examples: int, seed: int) -> dict[str, Any]:
    import numpy as np
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hyp_seed
    from hypothesis import strategies as st

    from device.bundle import open_bundle
    from device.content import embed_files_isolated

    clips = sorted(p for p in MEDIA.glob("*") if p.suffix in (".mp4", ".webm", ".mkv"))
    if not clips:
        return _blank(skipped=f"no clips in {MEDIA}")
    bundle = open_bundle(ROOT / "demo" / "bundle", verify="sizes")
    r = _blank(media_errors=0, valid_embeddings=0, decoder_children_died=0, batch_s_max=0.0)
    raw = {p: p.read_bytes() for p in clips}
    made: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="torture-media-") as tmp:
        @hyp_seed(seed)
        @settings(max_examples=examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck), phases=("generate",))
        @given(st.sampled_from(clips), st.one_of(st.just(0), st.integers(1, 10**6)),
               st.lists(st.tuples(st.integers(0, 10**7), st.integers(0, 7)), max_size=8))
        def one(clip: Path, cut: int, flips: list) -> None:
            data = raw[clip]
            cut = cut % max(1, len(data))
            f = Path(tmp) / f"m{len(made)}{clip.suffix}"
            f.write_bytes(_mutate_bytes(data, (cut, flips)))
            made.append(f)

        one()
        batch = 25
        for i in range(0, len(made), batch):
            chunk = made[i:i + batch]
            t0 = time.perf_counter()
            try:
                out = embed_files_isolated(bundle.model_path, bundle.feature_config, chunk,
                                           timeout_s=HANG_S * len(chunk))
            except Exception:  # noqa: BLE001
                r["tracebacks"] += len(chunk)
                continue
            dt = time.perf_counter() - t0
            r["batch_s_max"] = max(r["batch_s_max"], round(dt, 2))
            for res in out:
                r["runs"] += 1
                if isinstance(res, Exception):
                    msg = str(res)
                    if "died" in msg or "stopped before" in msg:
                        r["decoder_children_died"] += 1
                    if "timed out" in msg:
                        r["hangs"] += 1
                    r["media_errors"] += 1 if _one_line(res) else 0
                    r["tracebacks"] += 0 if _one_line(res) else 1
                else:
                    v = np.asarray(res.vector, np.float32)
                    ok = np.isfinite(v).all() and abs(float(np.linalg.norm(v)) - 1.0) < 1e-3
                    r["valid_embeddings"] += 1 if ok else 0
                    r["unrecovered"] += 0 if ok else 1
            for f in chunk:
                f.unlink(missing_ok=True)
    return r


# --------------------------------------------------------------------------- service


def _vmhwm_kb(pid: int) -> int:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def service(runs: int, seed: int) -> dict[str, Any]:
    from device.bundle import install_bundle
    from device.engine import Engine

    rng = random.Random(seed)
    r = _blank(sighups=0, rows_checks=0, readonly_tested=False)
    with tempfile.TemporaryDirectory(prefix="torture-serve-") as tmp:
        tmp = Path(tmp)
        store, db, out = tmp / "bundles", tmp / "h.db", tmp / "rows"
        install_bundle(ROOT / "demo" / "bundle", store, trusted_keys=ROOT / "demo" / "keys")
        with Engine(store / "current", db) as eng:
            for p in ("alice", "bob"):
                eng.add_profile(p)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "device.service", "serve", "--bundles", str(store),
               "--db", str(db), "--out", str(out)]
        once = subprocess.Popen(cmd + ["--once"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        once_hwm = 0
        while once.poll() is None:
            once_hwm = max(once_hwm, _vmhwm_kb(once.pid))
            time.sleep(0.005)
        once.communicate()
        proc = subprocess.Popen(cmd + ["--poll", "0.1"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        stderr_path = tmp / "stderr"
        try:
            deadline = time.monotonic() + 60
            while not (out / "index.json").exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.05)

            def check_rows() -> None:
                r["rows_checks"] += 1
                if not out.is_dir():
                    return
                for f in out.glob("*.json"):
                    try:
                        json.loads(f.read_text())
                    except (OSError, ValueError):
                        r["corrupt_databases"] += 1

            def record() -> None:
                with Engine(store / "current", db) as eng:
                    eng.record("alice", str(eng.bundle.items.ids[rng.randrange(50)]), "play",
                               position=0.0)

            for _ in range(runs):
                r["runs"] += 1
                # 1. the rows folder disappears while serving: it comes back.
                shutil.rmtree(out, ignore_errors=True)
                record()
                _wait(lambda: (out / "index.json").exists(), 10)
                check_rows()
                # 2. read-only rows folder (a read-only tmpfs: root ignores permission bits).
                if _is_root() and _mount_ro_over(out):
                    r["readonly_tested"] = True
                    record()
                    time.sleep(0.4)
                    check_rows()
                    subprocess.run(["umount", "-l", str(out)], capture_output=True)
                # 3. current pointed at a broken bundle, then back.
                good = os.readlink(store / "current")
                broken = store / "versions" / "broken"
                broken.mkdir(exist_ok=True)
                (broken / "manifest.json").write_text("{not json")
                os.symlink("versions/broken", store / "current.tmp")
                os.replace(store / "current.tmp", store / "current")
                time.sleep(0.4)
                check_rows()
                os.symlink(good, store / "current.tmp")
                os.replace(store / "current.tmp", store / "current")
                shutil.rmtree(broken, ignore_errors=True)
                # 4. a SIGHUP storm.
                for _ in range(200):
                    if proc.poll() is not None:
                        break
                    proc.send_signal(signal.SIGHUP)
                    r["sighups"] += 1
                time.sleep(0.3)
                check_rows()
                if proc.poll() is not None:
                    break
            alive = proc.poll() is None
            r["unrecovered"] += 0 if alive else 1
            r["serve_vmhwm_mb"] = round(_vmhwm_kb(proc.pid) / 1024, 1) if alive else None
            r["serve_once_vmhwm_mb"] = round(once_hwm / 1024, 1)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                _, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
                r["hangs"] += 1
            stderr_path.write_text(err or "")
            r["tracebacks"] += (err or "").count("Traceback")
            r["stderr_lines"] = len((err or "").splitlines())
            r["exit_code"] = proc.returncode
    return r


def _wait(cond: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def _mount_ro_over(path: Path) -> bool:
    """Mount a read-only tmpfs holding a copy of ``path``'s files over ``path``."""
    stage = Path(tempfile.mkdtemp(prefix="torture-ro-"))
    try:
        for f in path.glob("*.json"):
            shutil.copy(f, stage)
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tvrec-ro", str(path)],
                            capture_output=True).returncode == 0
        if not ok:
            return False
        for f in stage.iterdir():
            shutil.copy(f, path)
        return subprocess.run(["mount", "-o", "remount,ro", str(path)],
                              capture_output=True).returncode == 0
    finally:
        shutil.rmtree(stage, ignore_errors=True)


# --------------------------------------------------------------------------- main


TARGETS = {
    "sigkill_writer": lambda r: r["lost_committed_events"] == 0 and r["corrupt_databases"] == 0,
    "disk_full": lambda r: "skipped" in r or (r["lost_committed_events"] == 0 and r["unrecovered"] == 0
                                              and r["tracebacks"] == 0 and r["corrupt_databases"] == 0),
    "killed_install": lambda r: r["unrecovered"] == 0 and r["hangs"] == 0,
    "signed_install": lambda r: r["refused"] == r["attacks"] and r["unrecovered"] == 0
    and r.get("signature_check_first_ms_median", 0) <= 50
    and r.get("signature_check_first_vmhwm_growth_mb_median", 0) <= 5,
    "fuzz_manifest": lambda r: r["tracebacks"] == 0 and r["hangs"] == 0 and r["unrecovered"] == 0,
    "fuzz_npy": lambda r: r["tracebacks"] == 0 and r["hangs"] == 0 and r["unrecovered"] == 0,
    "fuzz_archive": lambda r: r["tracebacks"] == 0 and r["hangs"] == 0 and r["unrecovered"] == 0,
    "fuzz_media": lambda r: "skipped" in r or (r["tracebacks"] == 0 and r["hangs"] == 0
                                               and r["unrecovered"] == 0),
    "service": lambda r: r["unrecovered"] == 0 and r["tracebacks"] == 0 and r["corrupt_databases"] == 0,
}


def run(quick: bool, seed: int, only: list[str] | None = None) -> dict[str, Any]:
    n = (lambda full, q: q if quick else full)
    plan: dict[str, Callable[[], Any]] = {
        "sigkill_writer": lambda: sigkill_writer(n(200, 20), seed),
        "disk_full": lambda: disk_full(n(20, 2), seed),
        "killed_install": lambda: killed_install(n(100, 6), seed),
        "signed_install": lambda: signed_install(n(200, 8), seed),
        "fuzz_bundles": lambda: fuzz_bundles(n(1000, 30), seed),
        "fuzz_media": lambda: fuzz_media(n(1000, 8), seed),
        "service": lambda: service(n(10, 1), seed),
    }
    results: dict[str, Any] = {}
    for name, fn in plan.items():
        if only and name not in only and not (name == "fuzz_bundles" and
                                              any(o.startswith("fuzz_") and o != "fuzz_media" for o in only)):
            continue
        t0 = time.perf_counter()
        out = fn()
        seconds = round(time.perf_counter() - t0, 1)
        for key, res in (out.items() if name == "fuzz_bundles" else [(name, out)]):
            res["seconds"] = seconds
            res["target_met"] = bool(TARGETS[key](res))
            results[key] = res
        print(f"  {name}: {seconds} s", file=sys.stderr, flush=True)
    return results


def table(results: dict[str, Any]) -> str:
    head = f"{'scenario':16s} " + " ".join(f"{k[:12]:>12s}" for k in KEYS) + "  target  seconds"
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        if "skipped" in r:
            lines.append(f"{name:16s} skipped: {r['skipped']}")
            continue
        lines.append(f"{name:16s} " + " ".join(f"{r[k]:12d}" for k in KEYS)
                     + f"  {'met' if r['target_met'] else 'MISSED':6s}  {r['seconds']:7.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few seconds per scenario")
    ap.add_argument("--json", metavar="OUT", help="write the results as JSON")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="+", metavar="SCENARIO", choices=sorted(TARGETS) + ["fuzz_bundles"])
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    results = run(args.quick, args.seed, args.only)
    import platform

    doc = {"quick": args.quick, "seed": args.seed, "root": _is_root(),
           "python": platform.python_version(), "machine": platform.machine(),
           "seconds": round(time.perf_counter() - t0, 1), "scenarios": results}
    out = args.json or str(ROOT / "bench" / "results" /
                           ("torture_quick.json" if args.quick else "torture.json"))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(doc, indent=1) + "\n")
    print(table(results))
    print(f"wrote {out}")
    return 0 if all(r["target_met"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
