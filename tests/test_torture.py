"""The fast subset of bench/torture.py (the full suite runs on demand): the same scenarios with
few runs each, asserting the suite's targets -- no committed event lost, no corrupt database,
``current`` always opening, every attack refused, no traceback, no hang."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import torture  # noqa: E402


def clean(r: dict) -> None:
    if "skipped" in r:
        pytest.skip(r["skipped"])
    assert r["runs"] > 0
    for key in torture.KEYS[1:]:
        assert r[key] == 0, (key, r)


def test_sigkilled_writer_loses_no_committed_event():
    r = torture.sigkill_writer(20, seed=1)
    clean(r)
    assert r["acknowledged_events"] > 0


def test_full_disk_raises_a_typed_error_and_recording_resumes():
    r = torture.disk_full(1, seed=1)
    clean(r)
    assert r["typed_errors"] == 1 and r["home_while_full"] == 1


def test_killed_installs_always_leave_a_current_that_verifies():
    clean(torture.killed_install(5, seed=1))


def test_every_attack_bundle_is_refused_with_the_old_one_serving():
    r = torture.signed_install(8, seed=1)
    clean(r)
    assert r["refused"] == r["attacks"] == 8 and len(r["refused_by_kind"]) == 8


def test_fuzzed_bundles_are_refused_or_served_identically():
    for r in torture.fuzz_bundles(12, seed=1).values():
        clean(r)
        assert r["refused"] + r["served_identically"] == r["runs"]


def test_fuzzed_clips_are_one_line_errors_or_valid_embeddings():
    r = torture.fuzz_media(4, seed=1)
    clean(r)
    assert r["media_errors"] + r["valid_embeddings"] == r["runs"]


def test_service_survives_vanished_readonly_rows_broken_bundle_and_sighup_storm():
    r = torture.service(1, seed=1)
    clean(r)
    assert r["sighups"] == 200 and r["exit_code"] == 0
