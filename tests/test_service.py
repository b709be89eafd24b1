"""The box's row service (device/service.py): real bundle store, real SQLite, real interpreter."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from device.bundle import install_bundle, rollback, synth_bundle
from device.engine import Engine
from device.errors import BundleError
from device.service import RowWriter, main, profile_file

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def store(tmp_path, demo_bundle):
    root = tmp_path / "bundles"
    install_bundle(demo_bundle, root, trusted_keys=ROOT / "demo" / "keys")
    return root


def _rows(out: Path, profile: str) -> dict:
    return json.loads((out / profile_file(profile)).read_text())


def test_rows_follow_events_profiles_and_bundle_switches(store, tmp_path):
    db, out = tmp_path / "h.db", tmp_path / "rows"
    with RowWriter(db, out, bundles=store) as writer:
        writer.engine.add_profile("alice")
        writer.engine.add_profile("bob/../x")  # an id that is not a safe file name
        index = writer.refresh()
        assert [p["id"] for p in index["profiles"]] == ["alice", "bob/../x"]
        assert sorted(p.name for p in out.iterdir()) == sorted(
            ["index.json", "alice.json", "bob%2F..%2Fx.json"])
        kinds = [r["kind"] for r in _rows(out, "alice")["rows"]]
        assert "continue" not in kinds and "popular" in kinds
        assert not writer.changed()

        # The launcher is another connection (another process on the box) writing events.
        with Engine(writer.bundle_path, db) as launcher:
            first = _rows(out, "alice")["rows"][0]["cards"][0]
            launcher.record("alice", first["item_id"], "play", position=0.0)
            launcher.record("alice", first["item_id"], "stop", position=first["duration"] / 3)
            launcher.history.remove_profile("bob/../x")
        assert writer.changed()
        writer.refresh()
        rows = _rows(out, "alice")["rows"]
        assert rows[0]["kind"] == "continue" and rows[0]["cards"][0]["item_id"] == first["item_id"]
        assert not (out / profile_file("bob/../x")).exists(), "a removed profile's file goes"

        # A new bundle arrives: the engine is reopened on it, history kept.
        old = writer.bundle_path
        install_bundle(synth_bundle(tmp_path / "synth", 300, template=old), store, allow_unsigned=True)
        assert writer.changed()
        index = writer.refresh()
        assert writer.bundle_path != old and index["bundle"] == str(writer.bundle_path)
        assert writer.engine.bundle.n_items == 300
        rollback(store)
        writer.refresh()
        assert writer.bundle_path == old


def test_missing_store_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["serve", "--bundles", str(tmp_path / "none"), "--db", str(tmp_path / "h.db"),
                 "--out", str(tmp_path / "rows"), "--once"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no bundle installed" in err
    with pytest.raises(BundleError):
        RowWriter(tmp_path / "h.db", tmp_path / "rows", bundle=tmp_path / "none")


def test_cli_install_recommend_once(store, tmp_path, capsys, demo_bundle):
    db = str(tmp_path / "h.db")
    assert main(["recommend", "--bundles", str(store), "--db", db, "--profile", "kid",
                 "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert rows and all(r["cards"] for r in rows)
    assert main(["serve", "--bundle", str(demo_bundle), "--db", db, "--out",
                 str(tmp_path / "rows"), "--once"]) == 0
    assert "wrote 1 profile(s)" in capsys.readouterr().out
    assert _rows(tmp_path / "rows", "kid")["rows"] == rows


def _watchdog(proc: subprocess.Popen, seconds: float = 900.0) -> threading.Timer:
    """Kill ``proc`` if the test is still waiting on it after ``seconds``: a guard against a hang,
    not a speed check (no assertion reads the clock; a box under emulation and load is slow)."""
    timer = threading.Timer(seconds, proc.kill)
    timer.daemon = True
    timer.start()
    return timer


def _next_refresh(proc: subprocess.Popen) -> str:
    """The service's next "refreshed ..." log line (blocking); fails if the process ends first."""
    for line in proc.stdout:
        if line.startswith("refreshed"):
            return line
    raise AssertionError(f"serve ended (exit {proc.wait()}) before refreshing: {proc.stderr.read()}")


def test_serve_process_refreshes_and_stops_on_sigterm(store, tmp_path):
    """The command the systemd unit runs: a real process, stopped the way systemd stops it. Each
    step waits for the service's own log line (no wall-clock deadline: this also runs under qemu
    on a loaded machine)."""
    db, out = tmp_path / "h.db", tmp_path / "rows"
    with Engine(store / "current", db) as eng:
        eng.add_profile("alice")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "device.service", "serve", "--bundles", str(store), "--db",
         str(db), "--out", str(out), "--poll", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    watchdog = _watchdog(proc)
    try:
        assert _next_refresh(proc).startswith("refreshed 1 profile(s)")
        assert [p["id"] for p in json.loads((out / "index.json").read_text())["profiles"]] == [
            "alice"]
        with Engine(store / "current", db) as eng:  # an event: the next poll refreshes
            eng.add_profile("bob")
        line = _next_refresh(proc)
        while line.startswith("refreshed 1 profile(s)"):  # a poll that saw the open, not bob yet
            line = _next_refresh(proc)
        assert line.startswith("refreshed 2 profile(s)"), line
        assert (out / "bob.json").exists(), "the new profile's rows are written"
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate()
        watchdog.cancel()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr


def test_the_service_never_loads_the_signature_library(store, tmp_path):
    """Signatures are checked at install, never on the serving path: a real `serve --once`
    (bundle opened, every profile's rows written) leaves PyNaCl unimported, so checking
    signatures adds nothing to the service's memory (issue 16: peak RSS grows <= 5 MB)."""
    code = ("import sys; from device.service import main; "
            "rc = main(sys.argv[1:]); print('nacl' in sys.modules, '_cffi_backend' in sys.modules); "
            "sys.exit(rc)")
    out = tmp_path / "rows"
    r = subprocess.run([sys.executable, "-c", code, "serve", "--bundles", str(store), "--db",
                        str(tmp_path / "h.db"), "--out", str(out), "--once"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-2:] == ["False", "False"], r.stdout
    assert (out / "index.json").exists()
