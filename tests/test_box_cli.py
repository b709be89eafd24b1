"""What a box integrator uses from outside Python: `tvrec-device record`, `--version`, and the
versioned contract of the rows files and the history database (deploy/INSTALL.md).

The launcher that shows the rows is rarely Python, so `record` must refuse exactly what
``History.record`` refuses, with the same message, as one line on stderr and exit 2, writing
nothing.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from device import service
from device._version import __version__
from device.bundle import install_bundle, open_bundle
from device.errors import TvrecError
from device.history import SCHEMA_VERSION, History

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "demo" / "bundle"
GUIDE = ROOT / "deploy" / "INSTALL.md"


@pytest.fixture(scope="module")
def catalog():
    """Two catalog items of the demo bundle: (id, duration) each."""
    items = open_bundle(BUNDLE).items
    return [items.record(r) for r in (0, 1)]


@pytest.fixture
def box(tmp_path):
    """A history database with profile 'tv' (as `tvrec-device recommend` leaves it)."""
    db = tmp_path / "history.db"
    with History(db) as h:
        h.add_profile("tv")
    return db


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = service.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _events(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as c:
        return c.execute("SELECT profile_id, item_id, kind, position FROM events ORDER BY id").fetchall()


def test_record_writes_the_event_a_launcher_reports(box, catalog, capsys):
    item = catalog[0]
    rc, out, err = _run(capsys, "record", "--db", str(box), "--bundle", str(BUNDLE),
                        "--profile", "tv", "--item", item["id"], "--event", "play",
                        "--position", "0")
    assert (rc, err) == (0, "")
    assert out == f"recorded play of {item['id']} for tv (event 1)\n"
    half = item["duration"] / 2
    rc, out, _ = _run(capsys, "record", "--db", str(box), "--profile", "tv", "--item", item["id"],
                      "--event", "progress", "--position", f"{half}", "--json")
    # The item is in the database since its first event: no bundle needed any more.
    assert rc == 0 and json.loads(out) == {"event_id": 2}
    assert _events(box) == [("tv", item["id"], "play", 0.0), ("tv", item["id"], "progress", half)]
    with History(box) as h:
        (resume,) = h.continue_watching("tv")
    assert resume.item_id == item["id"] and resume.position == pytest.approx(half)


def test_record_finds_the_catalog_in_the_store_next_to_the_database(tmp_path, catalog, capsys):
    """The box layout (/var/lib/tvrec/{history.db,bundles}): no --bundles needed."""
    install_bundle(BUNDLE, tmp_path / "bundles", trusted_keys=ROOT / "demo" / "keys")
    db = tmp_path / "history.db"
    with History(db) as h:
        h.add_profile("tv")
    rc, out, err = _run(capsys, "record", "--db", str(db), "--profile", "tv",
                        "--item", catalog[1]["id"], "--event", "finish")
    assert rc == 0 and err == "" and "(event 1)" in out
    assert _events(db) == [("tv", catalog[1]["id"], "finish", None)]


def test_record_on_a_paused_profile_writes_nothing_and_says_so(box, catalog, capsys):
    with History(box) as h:
        h.pause("tv")
    rc, out, _ = _run(capsys, "record", "--db", str(box), "--bundle", str(BUNDLE), "--profile",
                      "tv", "--item", catalog[0]["id"], "--event", "like")
    assert rc == 0 and out == "tv: history paused, nothing recorded\n"
    rc, out, _ = _run(capsys, "record", "--db", str(box), "--bundle", str(BUNDLE), "--profile",
                      "tv", "--item", catalog[0]["id"], "--event", "like", "--json")
    assert rc == 0 and json.loads(out) == {"event_id": None}
    assert _events(box) == []


# (profile, item, kind, position, timestamp) -> what History.record itself says about them
BAD = {
    "unknown profile": ("nobody", 0, "play", None, None),
    "unknown kind": ("tv", 0, "watched", None, None),
    "progress without a position": ("tv", 0, "progress", None, None),
    "position not a number": ("tv", 0, "stop", "ten", None),
    "negative position": ("tv", 0, "stop", "-5", None),
    "position past the end": ("tv", 0, "stop", "1e9", None),
    "position not finite": ("tv", 0, "stop", "nan", None),
    "timestamp in the future": ("tv", 0, "play", None, "9e12"),
    "timestamp not a number": ("tv", 0, "play", None, "yesterday"),
}


def _seconds(message: str) -> str:
    return re.sub(r"is \d+ s in the future", "is N s in the future", message)


@pytest.mark.parametrize("case", sorted(BAD))
def test_record_refuses_what_the_python_api_refuses_with_its_message(box, catalog, capsys, case):
    profile, row, kind, position, timestamp = BAD[case]
    item = catalog[row]["id"]
    # Put the item in the database first, as a previous event would, so that History itself
    # judges the event (the CLI path without a bundle).
    with History(box) as h:
        h.upsert_items([catalog[row]])
        try:
            h.record(profile, item, kind, position=service._number(position),
                     timestamp=service._number(timestamp))
        except TvrecError as e:
            expected = str(e)
        else:  # pragma: no cover - the table above is wrong
            pytest.fail(f"History.record accepted {case}")
    argv = ["record", "--db", str(box), "--profile", profile, "--item", item, "--event", kind]
    if position is not None:
        argv += ["--position", position]
    if timestamp is not None:
        argv += ["--timestamp", timestamp]
    rc, out, err = _run(capsys, *argv)
    assert rc == 2 and out == ""
    # (how far in the future is measured against each call's own clock)
    assert _seconds(err) == f"tvrec-device record: {_seconds(expected)}\n"
    assert _events(box) == []


def test_record_refuses_unknown_items_missing_databases_and_bundles(tmp_path, box, capsys):
    rc, _, err = _run(capsys, "record", "--db", str(box), "--bundle", str(BUNDLE),
                      "--profile", "tv", "--item", "no-such-item", "--event", "play")
    assert rc == 2 and err.count("\n") == 1 and "'no-such-item'" in err
    rc, _, err = _run(capsys, "record", "--db", str(box), "--profile", "tv",
                      "--item", "no-such-item", "--event", "play")  # no bundle next to it either
    assert rc == 2 and err.count("\n") == 1 and "'no-such-item'" in err
    rc, _, err = _run(capsys, "record", "--db", str(box), "--bundles", str(tmp_path / "none"),
                      "--profile", "tv", "--item", "x", "--event", "play")
    assert rc == 2 and err.count("\n") == 1 and "no bundle installed" in err
    missing = tmp_path / "typo.db"
    rc, _, err = _run(capsys, "record", "--db", str(missing), "--profile", "tv", "--item", "x",
                      "--event", "play")
    assert rc == 2 and err.count("\n") == 1 and "no such history database" in err
    assert not missing.exists()  # a typo never creates an empty database
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database" * 100)
    rc, _, err = _run(capsys, "record", "--db", str(garbage), "--profile", "tv", "--item", "x",
                      "--event", "play")
    assert rc == 2 and err.count("\n") == 1 and garbage.read_bytes() == b"not a database" * 100
    assert _events(box) == []


def test_record_as_a_launcher_calls_it_one_line_no_traceback(box, catalog):
    """The real process, as a launcher spawns it."""
    p = subprocess.run([sys.executable, "-m", "device.service", "record", "--db", str(box),
                        "--bundle", str(BUNDLE), "--profile", "tv", "--item", catalog[0]["id"],
                        "--event", "stop", "--position", "-1"],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and "negative" in p.stderr and "Traceback" not in p.stderr


def test_version_names_the_package_and_the_contract_versions(capsys):
    with pytest.raises(SystemExit) as exc:
        service.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == (f"tvrec-device {__version__} (history schema "
                                       f"{SCHEMA_VERSION}, rows format "
                                       f"{service.ROWS_FORMAT_VERSION})\n")


# --------------------------------------------------------------------------- the contract


def _guide_version(what: str) -> int:
    m = re.search(rf"{what} version (\d+)", GUIDE.read_text(encoding="utf-8"))
    assert m, f"deploy/INSTALL.md does not state the {what} version"
    return int(m.group(1))


def _guide_table(heading: str) -> dict[str, str]:
    """The first markdown table after ``heading``: first column (backticks stripped) -> second."""
    text = GUIDE.read_text(encoding="utf-8")
    start = text.index(heading)
    rows: dict[str, str] = {}
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if cells[0].startswith("`"):
                rows[cells[0].strip("`")] = cells[1]
        elif rows:
            break
    return rows


def test_documented_versions_are_the_codes():
    assert _guide_version("history schema") == SCHEMA_VERSION
    assert _guide_version("rows format") == service.ROWS_FORMAT_VERSION


def test_documented_history_schema_is_the_database_the_code_creates(tmp_path):
    with History(tmp_path / "h.db") as h:
        h.add_profile("tv")
    with sqlite3.connect(tmp_path / "h.db") as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        for table in ("profiles", "items", "events", "item_flags"):
            actual = {row[1]: row[2] for row in c.execute(f"PRAGMA table_info({table})")}
            documented = _guide_table(f"#### Table `{table}`")
            assert {k: v.split()[0] for k, v in documented.items()} == actual, table


def test_documented_rows_files_are_what_serve_writes(tmp_path, catalog):
    with History(tmp_path / "h.db") as h:
        h.add_profile("tv")
    with service.RowWriter(tmp_path / "h.db", tmp_path / "rows", bundle=BUNDLE) as w:
        w.engine.record("tv", catalog[0]["id"], "progress", position=catalog[0]["duration"] / 3)
        w.refresh()
    page = json.loads((tmp_path / "rows" / "tv.json").read_text())
    index = json.loads((tmp_path / "rows" / "index.json").read_text())
    assert page["format_version"] == index["format_version"] == service.ROWS_FORMAT_VERSION
    assert set(_guide_table("#### `<profile>.json`")) == set(page)
    assert set(_guide_table("#### `index.json`\n")) == set(index)
    assert set(_guide_table("#### `index.json` `profiles[]`")) == set(index["profiles"][0])
    assert set(_guide_table("#### `rows[]`")) == set(page["rows"][0])
    cards = [c for r in page["rows"] for c in r["cards"]]
    assert set(_guide_table("#### `cards[]`")) == set(cards[0])
    kinds = set(_guide_table("#### Row kinds"))
    assert {r["kind"] for r in page["rows"]} <= kinds
    assert any(c["progress"] is not None for c in cards)  # Continue watching carries progress
