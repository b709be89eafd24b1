"""The watch history on real SQLite files: schema, validation, affinities, safety, threads."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.errors import (
    DatabaseCorruptError,
    HistoryError,
    InvalidEventError,
    UnknownItemError,
    UnknownProfileError,
)
from device.history import SCHEMA_VERSION, History, Item

NOW = 1_700_000_000.0
DAY = 86400.0


def fixed_clock() -> float:
    return NOW


def catalog(*ids: str, duration: float = 1000.0) -> list[dict]:
    return [
        {"id": i, "title": f"Title {i}", "genres": ["drama"], "duration": duration} for i in ids
    ]


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "history.db"


@pytest.fixture
def history(db_path):
    with History(db_path, clock=fixed_clock) as h:
        h.add_profile("alice", "Alice")
        h.upsert_items(catalog("a", "b", "c", "d", "e", "f"))
        yield h


def count_events(path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]


# --------------------------------------------------------------------------- opening and schema


def test_new_file_gets_schema_wal_and_foreign_keys(db_path):
    with History(db_path) as h:
        assert set(h.db.table_names()) >= {"profiles", "items", "events"}
        assert h.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert h.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert h.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert h.db.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
        indexed = {tuple(index.columns) for index in h.db["events"].indexes}
        assert {("profile_id", "ts"), ("profile_id", "item_id"), ("item_id",)} <= indexed


def test_reopening_keeps_data(db_path):
    with History(db_path, clock=fixed_clock) as h:
        h.add_profile("alice")
        h.upsert_items(catalog("a"))
        h.record("alice", "a", "play", position=0.0)
    with History(db_path, clock=fixed_clock) as h:
        assert [e.item_id for e in h.events("alice")] == ["a"]


def test_version_0_database_is_migrated(db_path):
    # A database made by hand, before any tvrec schema: user_version 0, an unrelated table.
    with sqlite3.connect(db_path) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.execute("INSERT INTO notes VALUES ('keep me')")
    conn.close()
    with History(db_path) as h:
        assert h.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert {"profiles", "items", "events"} <= set(h.db.table_names())
        assert list(h.db.query("SELECT text FROM notes")) == [{"text": "keep me"}]


def test_newer_schema_is_refused_and_left_untouched(db_path):
    with sqlite3.connect(db_path) as conn:
        conn.execute("CREATE TABLE future (x)")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 7}")
    conn.close()
    before = db_path.read_bytes()
    with pytest.raises(DatabaseCorruptError) as info:
        History(db_path)
    message = str(info.value)
    assert str(db_path) in message
    assert str(SCHEMA_VERSION + 7) in message and str(SCHEMA_VERSION) in message
    assert db_path.read_bytes() == before


def test_version_0_file_with_clashing_tables_is_refused(db_path):
    with sqlite3.connect(db_path) as conn:
        conn.execute("CREATE TABLE events (something_else TEXT)")
    conn.close()
    before = db_path.read_bytes()
    with pytest.raises(DatabaseCorruptError, match="events"):
        History(db_path)
    assert db_path.read_bytes() == before


def test_random_bytes_are_refused_and_left_untouched(db_path):
    db_path.write_bytes(np.random.default_rng(0).bytes(20_000))
    before = db_path.read_bytes()
    with pytest.raises(DatabaseCorruptError, match="not a tvrec history database") as info:
        History(db_path)
    assert str(db_path) in str(info.value)
    assert db_path.read_bytes() == before


@pytest.mark.parametrize("keep", [0.5, 0.1, 50 / 1e9])  # half, a tenth, just 50 bytes
def test_truncated_database_is_refused_and_left_untouched(db_path, keep):
    with History(db_path, clock=fixed_clock) as h:
        h.add_profile("alice")
        h.upsert_items(catalog(*(f"m{i}" for i in range(2000))))
    data = db_path.read_bytes()
    assert len(data) > 100_000
    db_path.write_bytes(data[: max(50, int(len(data) * keep))])
    before = db_path.read_bytes()
    with pytest.raises(DatabaseCorruptError, match="not a tvrec history database") as info:
        History(db_path)
    assert str(db_path) in str(info.value)
    assert db_path.read_bytes() == before


def test_unopenable_path_raises_history_error(tmp_path):
    with pytest.raises(HistoryError, match="cannot open"):
        History(tmp_path / "no" / "such" / "dir" / "history.db")


# --------------------------------------------------------------------------- profiles and items


def test_profiles_add_is_idempotent_and_remove_cascades(history):
    again = history.add_profile("alice", "Someone else")
    assert again.display_name == "Alice"  # an existing profile is left as it is
    history.add_profile("bob")
    assert [p.id for p in history.profiles()] == ["alice", "bob"]
    assert history.profile("bob").display_name == "bob"
    history.record("bob", "a", "play")
    history.record("alice", "a", "play")
    history.remove_profile("bob")
    assert [p.id for p in history.profiles()] == ["alice"]
    assert count_events(history.path) == 1  # bob's event went with him
    with pytest.raises(UnknownProfileError, match="'bob'"):
        history.remove_profile("bob")


def test_upsert_items_replaces_but_keeps_added(db_path):
    clock = [NOW]
    with History(db_path, clock=lambda: clock[0]) as h:
        h.upsert_items([{"id": "a", "title": "Old", "genres": ["x"], "duration": 60, "extra": 1}])
        clock[0] = NOW + 100
        h.upsert_items([Item(id="a", title="New", duration=90.0, genres=("y", "z"))])
        item = h.item("a")
        assert (item.title, item.duration, item.genres) == ("New", 90.0, ("y", "z"))
        assert item.source == "catalog" and item.embedding is None
        assert item.added == NOW
        assert h.has_item("a") and not h.has_item("zzz")
        with pytest.raises(UnknownItemError, match="'zzz'"):
            h.item("zzz")


@pytest.mark.parametrize(
    "bad, reason",
    [
        ({"id": "", "duration": 10}, "non-empty"),
        ({"id": "x", "duration": -1}, "duration"),
        ({"id": "x", "duration": float("nan")}, "duration"),
        ({"id": "x"}, "duration"),
        ({"id": "x", "duration": 10, "genres": "drama"}, "genres"),
        ({"id": "x", "duration": 10, "source": "web"}, "source"),
    ],
)
def test_a_bad_item_writes_nothing(history, bad, reason):
    with pytest.raises(HistoryError, match=reason):
        history.upsert_items(catalog("new1", "new2") + [bad])
    assert not history.has_item("new1")


def test_local_items_store_float32_and_int8_embeddings(history):
    history.add_local_item(
        "rec2", "Birthday", 120.0, "/media/rec2.mp4",
        embedding=np.array([2, -4, 0], dtype=np.int8), embedding_scale=0.25,
    )
    history.add_local_item("rec1", "Holiday", 60.0, "/media/rec1.mp4", embedding=[0.5, 1.0, -1.0])
    history.add_local_item("rec3", "Not embedded yet", 30.0, "/media/rec3.mp4")

    stored = history.item("rec2")
    assert stored.source == "local" and stored.media_path == "/media/rec2.mp4"
    assert stored.embedding.dtype == np.int8 and stored.embedding_scale == 0.25

    local = history.local_items()
    assert list(local.item_ids) == ["rec1", "rec2"]  # rec3 has no embedding yet
    assert local.embeddings.dtype == np.float32
    np.testing.assert_array_equal(local.embeddings, [[0.5, 1.0, -1.0], [0.5, -1.0, 0.0]])

    with pytest.raises(HistoryError, match="embedding_scale"):
        history.add_local_item("rec4", "x", 10.0, "/m", embedding=np.zeros(3, dtype=np.int8))
    history.add_local_item("rec4", "x", 10.0, "/m", embedding=np.zeros(5))
    with pytest.raises(HistoryError, match="different sizes"):
        history.local_items()


# --------------------------------------------------------------------------- recording


def test_record_stores_duration_from_item_and_events_filter(history):
    ids = [
        history.record("alice", "a", "play", position=0.0, timestamp=NOW - 30),
        history.record("alice", "a", "progress", position=500.0, timestamp=NOW - 20),
        history.record("alice", "b", "like", timestamp=NOW - 10),
        history.record("alice", "a", "stop", position=510.0),  # timestamp defaults to clock()
    ]
    assert all(isinstance(i, int) for i in ids)
    events = history.events("alice")
    assert [e.id for e in events] == ids
    assert events[1].duration == 1000.0 and events[1].position == 500.0
    assert events[2].position is None and events[3].ts == NOW
    assert [e.kind for e in history.events("alice", since=NOW - 20)] == ["progress", "like", "stop"]
    assert [e.kind for e in history.events("alice", limit=2)] == ["like", "stop"]


BAD_EVENTS = [
    # (profile, item, kind, keyword arguments, error type, words the message must contain)
    ("nobody", "a", "play", {}, UnknownProfileError, ["nobody"]),
    ("alice", "zzz", "play", {}, UnknownItemError, ["alice", "zzz"]),
    ("alice", "a", "rewind", {}, InvalidEventError, ["alice", "'a'", "rewind"]),
    ("alice", "a", "progress", {}, InvalidEventError, ["alice", "'a'", "needs a position"]),
    ("alice", "a", "progress", {"position": -1.0}, InvalidEventError, ["alice", "'a'", "negative"]),
    ("alice", "a", "progress", {"position": 1001.5}, InvalidEventError, ["'a'", "duration"]),
    ("alice", "a", "progress", {"position": math.nan}, InvalidEventError, ["'a'", "position"]),
    ("alice", "a", "progress", {"position": math.inf}, InvalidEventError, ["'a'", "position"]),
    ("alice", "a", "progress", {"position": "12"}, InvalidEventError, ["'a'", "position"]),
    ("alice", "a", "play", {"timestamp": math.nan}, InvalidEventError, ["'a'", "timestamp"]),
    ("alice", "a", "play", {"timestamp": -math.inf}, InvalidEventError, ["'a'", "timestamp"]),
    ("alice", "a", "play", {"timestamp": NOW + 61}, InvalidEventError, ["alice", "future"]),
]


@pytest.mark.parametrize("profile, item, kind, kwargs, error, words", BAD_EVENTS)
def test_bad_event_raises_typed_error_and_writes_nothing(
    history, profile, item, kind, kwargs, error, words
):
    history.record("alice", "a", "play")
    with pytest.raises(error) as info:
        history.record(profile, item, kind, **kwargs)
    for word in words:
        assert word in str(info.value)
    assert count_events(history.path) == 1


def test_tolerances_accept_what_players_really_send(history):
    assert history.record("alice", "a", "finish", position=1000.9) is not None  # late last frame
    assert history.record("alice", "a", "play", timestamp=NOW + 59) is not None  # clock skew


def test_record_many_is_all_or_nothing(history):
    good = [{"profile_id": "alice", "item_id": i, "kind": "play"} for i in "abc"]
    with pytest.raises(UnknownItemError, match="event 3: .*'zzz'"):
        history.record_many(good + [{"profile_id": "alice", "item_id": "zzz", "kind": "play"}])
    assert count_events(history.path) == 0
    ids = history.record_many(good)
    assert len(ids) == 3 and count_events(history.path) == 3


def test_paused_history_writes_nothing(history):
    history.pause("alice")
    assert history.is_paused("alice")
    assert history.record("alice", "a", "progress", position=10.0) is None
    assert history.record_many([{"profile_id": "alice", "item_id": "b", "kind": "like"}]) == [None]
    assert count_events(history.path) == 0
    with pytest.raises(InvalidEventError):  # still validated while paused
        history.record("alice", "a", "progress", position=-5.0)
    history.resume("alice")
    assert not history.is_paused("alice")
    assert history.record("alice", "a", "play") is not None


def test_clear_and_export(history):
    history.add_profile("bob")
    history.record("alice", "a", "play", position=0.0, timestamp=NOW - 5)
    history.record("alice", "a", "like", timestamp=NOW - 1)
    history.record("bob", "b", "play")

    exported = history.export("alice")
    assert json.loads(json.dumps(exported)) == exported  # JSON-serialisable, loss-free
    assert exported["profile"] == {
        "id": "alice", "display_name": "Alice", "created": NOW, "history_paused": False,
        "kids_max_maturity": None,
    }
    assert [(e["item_id"], e["title"], e["kind"]) for e in exported["events"]] == [
        ("a", "Title a", "play"),
        ("a", "Title a", "like"),
    ]

    assert history.clear("alice") == 2
    assert history.events("alice") == [] and history.export("alice")["events"] == []
    assert [e.item_id for e in history.events("bob")] == ["b"]  # others untouched


# --------------------------------------------------------------------------- what the ranker reads


def test_affinities_hand_checked(history):
    r = history.record
    r("alice", "a", "progress", position=500.0, timestamp=NOW)  # completion 0.5, today
    r("alice", "b", "finish", timestamp=NOW - 30 * DAY)  # finished one half-life ago
    r("alice", "c", "progress", position=200.0, timestamp=NOW)
    r("alice", "c", "like", timestamp=NOW)
    r("alice", "d", "play", position=0.0, timestamp=NOW)
    r("alice", "d", "dislike", timestamp=NOW)
    r("alice", "e", "play", timestamp=NOW - 60 * DAY)  # no position, two half-lives ago
    r("alice", "f", "progress", position=970.0, timestamp=NOW)  # past 95%: finished

    aff = history.affinities("alice", half_life_days=30.0)
    got = {item: i for i, item in enumerate(aff.item_ids)}
    assert set(got) == set("abcdef")
    expected = {
        "a": (0.625, 0.5, 0, False),  # 0.25 + 0.75*0.5
        "b": (0.75, 1.0, 0, True),  # 1.0 * 1.5 (finished) * 0.5 (30 days)
        "c": (0.8, 0.2, 1, False),  # (0.25 + 0.75*0.2) * 2 (liked)
        "d": (-1.0, 0.0, -1, False),  # disliked
        "e": (0.0625, 0.0, 0, False),  # 0.25 * 0.25 (60 days)
        "f": (1.46625, 0.97, 0, True),  # (0.25 + 0.75*0.97) * 1.5
    }
    for item, (affinity, completion, liked, finished) in expected.items():
        i = got[item]
        assert aff.affinity[i] == pytest.approx(affinity, rel=1e-6), item
        assert aff.completion[i] == pytest.approx(completion, rel=1e-6), item
        assert (aff.liked[i], aff.finished[i]) == (liked, finished), item
    assert aff.last_ts[got["b"]] == NOW - 30 * DAY
    assert aff.affinity.dtype == np.float32 and aff.completion.dtype == np.float32
    assert aff.liked.dtype == np.int8 and aff.finished.dtype == bool
    assert aff.last_ts.dtype == np.float64 and aff.item_ids.dtype == object


def test_idle_time_ages_nothing(history):
    """Recency is counted back from the profile's latest event, not from the clock: a box left
    unused for ten years (or a replayed 1997 log) keeps the same affinities."""
    history.record("alice", "a", "finish", timestamp=NOW - 30 * DAY)
    history.record("alice", "b", "progress", position=500.0, timestamp=NOW)
    at_last = history.affinities("alice", now=NOW)
    years_later = history.affinities("alice", now=NOW + 3650 * DAY)
    assert list(at_last.item_ids) == list(years_later.item_ids) == ["b", "a"]
    np.testing.assert_array_equal(at_last.affinity, years_later.affinity)
    assert years_later.affinity[1] == pytest.approx(0.75)  # 1.5 (finished) * 0.5 (30 days)


def test_latest_opinion_wins(history):
    history.record("alice", "a", "dislike", timestamp=NOW - 10)
    history.record("alice", "a", "like", timestamp=NOW - 5)
    history.record("alice", "b", "like", timestamp=NOW - 10)
    history.record("alice", "b", "dislike", timestamp=NOW - 5)
    aff = history.affinities("alice")
    liked = dict(zip(aff.item_ids, aff.liked))
    assert liked == {"a": 1, "b": -1}


def test_affinities_of_a_profile_without_events_are_empty(history):
    aff = history.affinities("alice")
    assert len(aff) == 0 and aff.affinity.dtype == np.float32 and aff.liked.dtype == np.int8
    with pytest.raises(UnknownProfileError):
        history.affinities("nobody")


@settings(max_examples=150, deadline=None)
@given(
    completions=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=2),
    ages_days=st.lists(st.floats(0.0, 400.0), min_size=2, max_size=2),
    liked=st.booleans(),
    finish_kind=st.booleans(),
)
def test_affinity_is_monotone_in_completion_and_recency(completions, ages_days, liked, finish_kind):
    # Item "more" has at least the completion of "less" and was watched at least as recently.
    low, high = sorted(completions)
    recent, old = sorted(ages_days)
    with History(":memory:", clock=fixed_clock) as h:
        h.add_profile("p")
        h.upsert_items(catalog("less", "more"))
        for item, completion, age in (("less", low, old), ("more", high, recent)):
            kind = "finish" if finish_kind and completion == 1.0 else "progress"
            h.record("p", item, kind, position=completion * 1000.0, timestamp=NOW - age * DAY)
            if liked:
                h.record("p", item, "like", timestamp=NOW - age * DAY)
        aff = h.affinities("p")
    value = dict(zip(aff.item_ids, aff.affinity))
    assert value["more"] >= value["less"] >= 0.0


def test_continue_watching(history):
    r = history.record
    r("alice", "a", "progress", position=400.0, timestamp=NOW - 300)  # 40%: resume
    r("alice", "b", "progress", position=600.0, timestamp=NOW - 100)  # 60%, most recent: first
    r("alice", "c", "progress", position=20.0, timestamp=NOW - 50)  # 2%: only sampled
    r("alice", "d", "progress", position=980.0, timestamp=NOW - 50)  # 98%: done
    r("alice", "e", "progress", position=500.0, timestamp=NOW - 400)
    r("alice", "e", "finish", timestamp=NOW - 200)  # finished: gone
    r("alice", "f", "progress", position=800.0, timestamp=NOW - 900)
    r("alice", "f", "stop", position=300.0, timestamp=NOW - 800)  # rewound: resume at 300
    r("alice", "f", "dislike", timestamp=NOW - 700)  # ...but disliked: gone

    rows = history.continue_watching("alice")
    assert [(p.item_id, p.position) for p in rows] == [("b", 600.0), ("a", 400.0)]
    assert rows[0].title == "Title b" and rows[0].completion == pytest.approx(0.6)
    assert rows[0].last_ts == NOW - 100
    assert [p.item_id for p in history.continue_watching("alice", limit=1)] == ["b"]

    r("alice", "e", "play", position=250.0, timestamp=NOW - 10)  # a rewatch after finishing
    assert [p.item_id for p in history.continue_watching("alice")] == ["e", "b", "a"]


# --------------------------------------------------------------------------- threads


def test_one_writer_and_readers_on_their_own_connections(db_path):
    with History(db_path) as h:
        h.add_profile("alice")
        h.upsert_items(catalog(*(f"m{i}" for i in range(50))))

    errors: list[BaseException] = []
    done = threading.Event()
    reads = [0, 0, 0]

    ready = [threading.Event() for _ in range(3)]

    def writer():
        try:
            with History(db_path) as h:
                for r in ready:  # every reader is reading before the first write: they overlap
                    r.wait()
                for i in range(400):
                    h.record("alice", f"m{i % 50}", "progress", position=float(i))
        except BaseException as err:
            errors.append(err)
        finally:
            done.set()

    def reader(slot):
        try:
            with History(db_path) as h:
                while not done.is_set():
                    h.affinities("alice")
                    h.continue_watching("alice")
                    reads[slot] += 1
                    ready[slot].set()
        except BaseException as err:
            errors.append(err)
        finally:
            ready[slot].set()  # a failed reader must not keep the writer waiting

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(3)]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    for t in threads:  # no timeout: how long the scheduler takes is not the behaviour tested
        t.join()
    assert errors == []
    assert min(reads) > 0
    with History(db_path) as h:
        assert len(h.events("alice")) == 400


def test_two_writers_lose_nothing(db_path):
    with History(db_path) as h:
        for p in ("alice", "bob"):
            h.add_profile(p)
        h.upsert_items(catalog("a"))
    errors: list[BaseException] = []

    def writer(profile):
        try:
            with History(db_path) as h:
                for i in range(150):
                    h.record(profile, "a", "progress", position=float(i))
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(p,)) for p in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert count_events(db_path) == 300


def test_a_history_belongs_to_the_thread_that_opened_it(history):
    caught: list[BaseException] = []
    thread = threading.Thread(target=lambda: _call_catching(history.profiles, caught))
    thread.start()
    thread.join()
    assert len(caught) == 1 and isinstance(caught[0], sqlite3.ProgrammingError)


def _call_catching(fn, caught):
    try:
        fn()
    except BaseException as err:
        caught.append(err)


def test_close_and_context_manager(db_path):
    h = History(db_path)
    with h:
        pass
    with pytest.raises(sqlite3.ProgrammingError):
        h.profiles()
    assert os.path.exists(db_path)


# --------------------------------------------------------------------------- read cache


def test_repeated_reads_see_every_write_from_any_connection(history, db_path):
    """affinities / continue_watching reuse their query results only while the database is
    unchanged: a write through this History, another History or a plain sqlite3 connection
    shows up in the very next read."""
    history.record("alice", "a", "play", position=0.0, timestamp=NOW - 100)
    history.record("alice", "a", "progress", position=400.0, timestamp=NOW - 90)
    assert [p.item_id for p in history.continue_watching("alice")] == ["a"]
    assert history.continue_watching("alice") == history.continue_watching("alice")
    before = float(history.affinities("alice").affinity[0])

    with History(db_path, clock=fixed_clock) as other:  # another connection, same process
        other.record("alice", "a", "finish", timestamp=NOW - 80)
    assert history.continue_watching("alice") == []
    assert float(history.affinities("alice").affinity[0]) > before

    history.record("alice", "a", "dislike", timestamp=NOW - 70)  # this connection
    assert float(history.affinities("alice").affinity[0]) == -1.0

    with sqlite3.connect(db_path) as conn:  # outside tvrec altogether
        conn.execute("DELETE FROM events WHERE kind = 'dislike'")
    assert float(history.affinities("alice").affinity[0]) > 0
    history.clear("alice")
    assert len(history.affinities("alice")) == 0 and history.continue_watching("alice") == []
