"""Watch Next on the box: Up next, New episodes, My list, card actions, kids profiles, time of
day, and what `export` / `clear` cover -- through the real engine on the demo bundle and a real
SQLite file."""

from __future__ import annotations

import os
import sqlite3
import stat
import struct
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device.engine import Engine, episode_of, series_of
from device.errors import DataFormatError, HistoryError
from device.history import PROFILE_TABLES, History, WatchThresholds
from device.replay import seed_profile

NOW = 1_800_000_000.0  # a Friday, 08:00 UTC
HOUR = 3600.0


@pytest.fixture
def engine(demo_bundle, tmp_path):
    eng = Engine(demo_bundle, tmp_path / "history.db", clock=lambda: NOW, utc_offset_s=0)
    eng.add_profile("alice")
    yield eng
    eng.close()


def series_table(eng):
    """series -> [(season, episode, item id, cold)] of the demo bundle, in episode order."""
    by = defaultdict(list)
    for i, (item, title) in enumerate(zip(eng.items.ids, eng.items.titles)):
        se = episode_of(str(title))
        if se is not None:
            by[series_of(str(title))].append((*se, str(item), bool(eng.items.cold[i])))
    return {k: sorted(v) for k, v in by.items()}


def all_cards(rows):
    return [c for r in rows for c in r.cards]


def test_thresholds_are_one_setting_with_the_documented_values():
    th = WatchThresholds()
    assert th.started_at(20 * 60) == pytest.approx(36.0)        # 3% of a 20-minute cartoon
    assert th.started_at(2 * HOUR) == pytest.approx(120.0)      # 2 minutes of a film
    assert th.finished_at(2 * HOUR) == pytest.approx(2 * HOUR - 360.0)  # credits at 95%
    assert th.finished_at(45 * 60) == pytest.approx(45 * 60 - 180.0)    # 3 minutes left
    assert th.finished_at(5 * 60) == pytest.approx(0.95 * 300)  # short: at the credits only


def test_finishing_episode_1_of_3_puts_episode_2_first_in_continue_watching(engine):
    three = [v for v in series_table(engine).values()
             if len(v) == 3 and not any(x[3] for x in v)][0]
    e1, e2, e3 = (x[2] for x in three)
    other = [str(i) for i in engine.items.ids[~np.asarray(engine.items.cold)][:40]
             if str(i) not in (e1, e2, e3)][-1]
    engine.record("alice", other, "progress", position=0.5 * engine.card(other).duration,
                  timestamp=NOW - 2 * HOUR)
    engine.record("alice", e1, "play", position=0.0, timestamp=NOW - HOUR)
    engine.record("alice", e1, "finish", timestamp=NOW - 60)
    rows = engine.home("alice")
    assert rows[0].kind == "continue"
    first = rows[0].cards[0]
    assert (first.item_id, first.kind, first.reason) == (e2, "next", "Up next: E2")
    assert [c.item_id for c in rows[0].cards][1] == other  # the older resume point after it
    assert first.episode == "E2"
    # finishing episode 2 (here: by marking it watched) brings episode 3 up next
    engine.mark_watched("alice", e2)
    rows = engine.home("alice")
    assert rows[0].cards[0].item_id == e3 and rows[0].cards[0].kind == "next"
    # the last episode finished: nothing of the show is up next any more
    engine.mark_watched("alice", e3)
    assert all(c.item_id not in (e1, e2, e3) for c in all_cards(engine.home("alice")))


def test_started_but_not_finished_next_episode_is_a_resume_card_not_twice(engine):
    three = [v for v in series_table(engine).values() if len(v) >= 3 and not any(x[3] for x in v)][0]
    e1, e2 = three[0][2], three[1][2]
    engine.record("alice", e1, "finish", timestamp=NOW - HOUR)
    engine.record("alice", e2, "progress", position=0.3 * engine.card(e2).duration,
                  timestamp=NOW - 60)
    cont = engine.home("alice")[0]
    assert [(c.item_id, c.kind) for c in cont.cards] == [(e2, "continue")]


def test_new_episode_of_a_followed_series(engine):
    # a series whose last episodes arrived after the co-watch model was learned (cold)
    table = series_table(engine)
    show = [v for v in table.values() if sum(x[3] for x in v) >= 2 and not v[0][3]][0]
    warm = [x[2] for x in show if not x[3]]
    new = [x[2] for x in show if x[3]]
    for n, item in enumerate(warm):
        engine.record("alice", item, "finish", timestamp=NOW - 10 * HOUR + n)
    rows = engine.home("alice")
    kinds = [r.kind for r in rows]
    assert kinds[:2] == ["continue", "new_episode"]
    assert rows[0].cards[0].item_id == new[0] and rows[0].cards[0].kind == "next"
    # the rest of the new episodes, newest first; each says which show
    assert [c.item_id for c in rows[1].cards] == new[1:][::-1]
    assert all(c.kind == "new_episode" and c.reason.startswith("New episode of ")
               for c in rows[1].cards)


def test_remove_from_continue_keeps_the_resume_point_until_played_again(engine):
    item = str(engine.items.ids[5])
    d = engine.card(item).duration
    engine.record("alice", item, "stop", position=0.4 * d, timestamp=NOW - 100)
    assert engine.home("alice")[0].cards[0].item_id == item
    engine.remove_from_continue("alice", item)
    assert item not in {c.item_id for c in all_cards(engine.home("alice"))
                        if c.kind == "continue"}
    assert engine.history.events("alice")[-1].position == pytest.approx(0.4 * d)  # kept
    # playing it again brings it back, at its (new) position
    engine.record("alice", item, "play", position=0.4 * d, timestamp=NOW + 10)
    engine.record("alice", item, "stop", position=0.5 * d, timestamp=NOW + 20)
    first = engine.home("alice", now=NOW + 30)[0].cards[0]
    assert first.item_id == item and first.progress == pytest.approx(0.5, abs=1e-3)


def test_my_list_row(engine):
    a, b = (str(i) for i in engine.items.ids[[10, 20]])
    engine.add_to_list("alice", a)
    engine.clock = lambda: NOW + 1
    engine.history._clock = engine.clock
    engine.add_to_list("alice", b)
    rows = engine.home("alice")
    mine = [r for r in rows if r.kind == "my_list"][0]
    assert mine.title == "My list" and [c.item_id for c in mine.cards] == [b, a]  # newest first
    assert {c.kind for c in mine.cards} == {"my_list"}
    engine.remove_from_list("alice", b)
    mine = [r for r in engine.home("alice") if r.kind == "my_list"][0]
    assert [c.item_id for c in mine.cards] == [a]


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(history=st.lists(st.tuples(st.integers(0, 59), st.sampled_from(["finish", "like", "stop"]),
                                  st.floats(0.1, 0.9)), max_size=12),
       target=st.integers(0, 599), ask_similar=st.integers(0, 59))
def test_not_interested_never_returns_anywhere(demo_bundle, tmp_path_factory, history, target,
                                               ask_similar):
    db = tmp_path_factory.mktemp("ni") / "h.db"
    with Engine(demo_bundle, db, clock=lambda: NOW) as eng:
        eng.add_profile("p")
        ids = [str(i) for i in eng.items.ids]
        warm = [str(i) for i in np.asarray(eng.items.ids)[~np.asarray(eng.items.cold)]]
        for n, (i, kind, frac) in enumerate(history):
            pos = frac * eng.card(warm[i]).duration if kind == "stop" else None
            eng.record("p", warm[i], kind, position=pos, timestamp=NOW - 1000 + n)
        item = ids[target]
        eng.not_interested("p", item)
        shown = [c.item_id for c in all_cards(eng.home("p"))]
        assert item not in shown
        for anchor in (warm[ask_similar], item):
            assert item not in [c.item_id for c in eng.similar(anchor, profile_id="p")]


def test_not_interested_pushes_its_neighbours_down(engine):
    a = str(engine.items.ids[0])
    engine.record("alice", a, "finish", timestamp=NOW - 100)
    top = [r for r in engine.home("alice") if r.kind == "top_picks"][0].cards
    victim = top[0].item_id
    row = engine.items.row(victim)
    nb = [str(engine.items.ids[j]) for j in np.asarray(engine.table.neighbours[row])[:5] if j >= 0]
    def scores():
        return {c.item_id: c.score for r in engine.home("alice") if r.kind == "top_picks"
                for c in r.cards}
    before = scores()
    engine.not_interested("alice", victim)
    after = scores()
    moved = [i for i in nb if i in before]
    # each neighbour's CF score drops (or it leaves the row); the others' do not move
    assert moved and all(after.get(i, -np.inf) < before[i] for i in moved)
    assert victim not in after


@pytest.fixture(scope="module")
def unrated_bundle(demo_bundle, tmp_path_factory):
    """The demo bundle without its maturity column -- a catalog that ships no ratings, which is
    what the launcher's ratings sync is for (the demo bundle itself is rated since its rebuild)."""
    import json
    import shutil

    out = tmp_path_factory.mktemp("unrated") / "bundle"
    shutil.copytree(demo_bundle, out)
    (out / "item_maturity.npy").unlink()
    (out / "signature.json").unlink(missing_ok=True)
    m = json.loads((out / "manifest.json").read_text())
    del m["files"]["item_maturity.npy"]
    (out / "manifest.json").write_text(json.dumps(m))
    return out


def rated(eng, seed=0):
    """The launcher's catalog sync telling the box ratings (for a bundle without them): a
    seeded random rating for each of 400 items, the other 200 left unrated."""
    rng = np.random.default_rng(seed)
    ids = [str(i) for i in eng.items.ids]
    rows = rng.permutation(len(ids))[:400]
    ratings = {ids[r]: int(rng.choice([0, 7, 12, 16, 18])) for r in rows}
    eng.history.upsert_items([{**eng.items.record(eng.items.row(i)), "maturity": m}
                              for i, m in ratings.items()])
    return ratings


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(history=st.lists(st.tuples(st.integers(0, 599), st.sampled_from(["finish", "like", "stop"])),
                        max_size=15),
       limit=st.sampled_from([0, 7, 12]))
def test_a_kids_profile_never_sees_anything_above_its_rating(unrated_bundle, tmp_path_factory,
                                                             history, limit):
    db = tmp_path_factory.mktemp("kids") / "h.db"
    with Engine(unrated_bundle, db, clock=lambda: NOW) as eng:
        ratings = rated(eng)
        eng.add_profile("kid", kids_max_maturity=limit)
        ids = [str(i) for i in eng.items.ids]
        for n, (i, kind) in enumerate(history):  # whatever happened on the profile before
            pos = 0.5 * eng.card(ids[i]).duration if kind == "stop" else None
            eng.record("kid", ids[i], kind, position=pos, timestamp=NOW - 1000 + n)
            eng.add_to_list("kid", ids[i])
        rows = eng.home("kid")
        for card in all_cards(rows):
            assert card.item_id in ratings, f"unrated {card.item_id} shown to a kids profile"
            assert ratings[card.item_id] <= limit
        for i, _ in history[:3]:
            for card in eng.similar(ids[i], profile_id="kid"):
                assert ratings.get(card.item_id, 99) <= limit
        for genre in (None, "cartoons", "drama"):
            for card in eng.listing("kid", genre):
                assert ratings.get(card.item_id, 99) <= limit


def test_kids_rows_fill_from_what_is_allowed_and_adults_see_everything(unrated_bundle, tmp_path):
    engine = Engine(unrated_bundle, tmp_path / "history.db", clock=lambda: NOW, utc_offset_s=0)
    engine.add_profile("alice")
    ratings = rated(engine)
    engine.add_profile("kid", kids_max_maturity=7)
    rows = engine.home("kid")
    assert [r.kind for r in rows] == ["new", "popular"] and len(rows[1].cards) == 12
    adult = {c.item_id for c in all_cards(engine.home("alice"))}
    assert any(ratings.get(i, 99) > 7 for i in adult)
    cartoons = engine.listing("kid", "cartoons")
    assert cartoons and all(ratings[c.item_id] <= 7 and "cartoons" in c.genres for c in cartoons)
    assert len(engine.listing("alice", "cartoons")) > len(cartoons)
    engine.close()


def test_time_of_day_changes_top_picks(engine):
    """Cartoons at breakfast, drama late at night: at 7 am top picks lean to the cartoons'
    neighbours, at 10 pm to the drama's."""
    genres = {str(i): g[0] if g else "" for i, g in
              zip(engine.items.ids, (engine.items.genres[r] for r in range(engine.bundle.n_items)))}
    warm = [str(i) for i in np.asarray(engine.items.ids)[~np.asarray(engine.items.cold)]]
    cartoons = [i for i in warm if genres[i] == "cartoons"][:6]
    drama = [i for i in warm if genres[i] == "drama"][:6]
    day = 86400.0
    base = NOW - 8 * HOUR - 7 * day  # midnight UTC a week ago (a Friday)
    for n in range(6):
        engine.record("alice", cartoons[n], "finish", timestamp=base + n * day + 7 * HOUR)
        engine.record("alice", drama[n], "finish", timestamp=base + n * day + 22 * HOUR)

    def share(now):
        top = [r for r in engine.home("alice", now=now) if r.kind == "top_picks"][0].cards
        return sum(genres[c.item_id] == "cartoons" for c in top) - \
            sum(genres[c.item_id] == "drama" for c in top)
    morning, night = share(NOW - HOUR), share(NOW + 14 * HOUR)
    assert morning > night


# --------------------------------------------------------------------------- privacy


def test_history_is_created_owner_only(tmp_path):
    path = tmp_path / "h.db"
    with History(path) as h:
        h.add_profile("a")
        for p in (path, tmp_path / "h.db-wal"):
            assert stat.S_IMODE(os.stat(p).st_mode) == 0o600, p


def test_export_and_clear_cover_every_table_about_a_profile(engine):
    conn = engine.history._conn
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                         "AND name NOT LIKE 'sqlite_%'")]
    about_profiles = {t for t in tables
                      if any(fk[2] == "profiles" for fk in conn.execute(f"PRAGMA foreign_key_list({t})"))}
    assert about_profiles == set(PROFILE_TABLES)  # a new table must be added there
    item = str(engine.items.ids[3])
    engine.record("alice", item, "stop", position=100.0)
    engine.add_to_list("alice", item)
    engine.not_interested("alice", str(engine.items.ids[4]))
    engine.remove_from_continue("alice", item)
    engine.add_profile("bob")
    engine.add_to_list("bob", item)
    exported = engine.history.export("alice")
    assert len(exported["events"]) == 1
    assert sorted(f["flag"] for f in exported["item_flags"]) == \
        ["hidden_continue", "my_list", "not_interested"]
    engine.history.clear("alice")
    for table, column in PROFILE_TABLES.items():
        assert conn.execute(f"SELECT COUNT(*) FROM {table} WHERE {column} = 'alice'").fetchone() == (0,)
    assert conn.execute("SELECT COUNT(*) FROM item_flags WHERE profile_id = 'bob'").fetchone() == (1,)


def test_a_cleared_profile_leaves_nothing_in_the_file(tmp_path):
    path = tmp_path / "h.db"
    marker = 1234.56789  # a position only this profile's events hold
    with History(path) as h:
        h.add_profile("a")
        h.upsert_items([{"id": f"m{i}", "title": f"T{i}", "duration": 5000.0} for i in range(50)])
        h.record_many({"profile_id": "a", "item_id": f"m{i % 50}", "kind": "progress",
                       "position": marker, "timestamp": 1_700_000_000.0 + i} for i in range(500))
        h.set_flag("a", "m1", "my_list", timestamp=1_777_777_777.25)
        packed = [struct.pack(">d", marker), struct.pack(">d", 1_777_777_777.25)]
        raw = path.read_bytes() + (tmp_path / "h.db-wal").read_bytes()
        assert all(p in raw for p in packed)  # the test can see them while they are there
        with History(path) as reader:  # another connection open meanwhile
            reader.affinities("a")
            h.clear("a")
        raw = path.read_bytes()
        wal = tmp_path / "h.db-wal"
        raw += wal.read_bytes() if wal.exists() else b""
        assert not any(p in raw for p in packed)


def test_kids_rating_and_flags_are_checked(history_path=None, tmp_path=None):
    with History(":memory:") as h:
        with pytest.raises(HistoryError, match="maturity"):
            h.add_profile("k", kids_max_maturity=-3)
        h.add_profile("k", kids_max_maturity=7)
        assert h.profile("k").kids_max_maturity == 7
        with pytest.raises(HistoryError, match="unknown flag"):
            h.set_flag("k", "x", "pinned")


# --------------------------------------------------------------------------- replaying a log


def test_replay_seeds_the_earliest_75_percent(engine, tmp_path):
    ids = [str(i) for i in engine.items.ids[:8]]
    log = tmp_path / "u.data"
    # user 7: eight ratings, written out of order; user 8: one
    lines = [f"7\t{ids[n]}\t{[5, 1, 3, 4, 2, 5, 3, 4][n]}\t{1_000_000 + 100 * ((n * 5) % 8)}"
             for n in range(8)] + [f"8\t{ids[0]}\t4\t999"]
    log.write_text("\n".join(lines) + "\n")
    report = seed_profile(engine, log, "7")
    assert report["profile"] == "user-7" and report["seeded"] == 6 and report["held_out"] == 2
    events = engine.history.events("user-7")
    order = sorted(range(8), key=lambda n: (n * 5) % 8)[:6]  # earliest six by time
    assert [e.item_id for e in events if e.kind == "finish"] == [ids[n] for n in order]
    liked = {e.item_id for e in events if e.kind == "like"}
    assert liked == {ids[n] for n in order if [5, 1, 3, 4, 2, 5, 3, 4][n] >= 4}
    # rated in 1970: decades later the replayed household still gets its personal rows (age
    # counts back from its own latest viewing, not from the clock)
    kinds = [row.kind for row in engine.home("user-7")]
    assert "top_picks" in kinds or "because" in kinds, kinds
    assert seed_profile(engine, log, "7")["already"] is True  # replaying twice changes nothing
    with pytest.raises(DataFormatError, match="no rows for user"):
        seed_profile(engine, log, "99")
    bad = tmp_path / "bad.csv"
    bad.write_text("profile_id,item_id,timestamp\nu1,p0001,yesterday\n")
    with pytest.raises(DataFormatError, match="line 2"):
        seed_profile(engine, bad, "u1")


def test_context_is_earned_only_by_histories_with_habits():
    from device.context import context_weights, habit_strength

    rng = np.random.default_rng(0)
    day = 86400.0
    genres = rng.integers(0, 4, 60)
    # habits: genre g watched around hour 6 * g; no habits: any hour for any genre
    habit = np.arange(60) * day + (6 * genres + rng.normal(0, 1, 60)) % 24 * HOUR
    flat = np.arange(60) * day + rng.uniform(0, 24, 60) * HOUR
    assert habit_strength(habit[::-1], genres[::-1]) > 0.5
    assert habit_strength(flat[::-1], genres[::-1]) == 0.0
    assert habit_strength(habit[:5], genres[:5]) == 0.0  # too few to tell
    w = context_weights(habit, habit[0], strength=0.7)
    assert w.mean() == pytest.approx(1.0) and w[genres == genres[0]].mean() > w.mean()
    assert np.all(context_weights(habit, habit[0], strength=0.0) == 1.0)


def catalog_bundle(tmp_path, extra=None):
    """A 20-item schema-3 bundle whose catalog carries series/season/episode/maturity and
    whose titles have no episode markers (the catalog columns, not the regex, must be used)."""
    from device.bundle import write_bundle

    n = 20
    ids = [f"c{i:02d}" for i in range(n)]
    # c00-c03: "Harbour Lights" S1E1, S1E2, S2E1, S2E2 (rated 12); c04-c05: "Tiny Rockets" E1-E2 (0)
    series = ["Harbour Lights"] * 4 + ["Tiny Rockets"] * 2 + [""] * (n - 6)
    season = [1, 1, 2, 2, 1, 1] + [-1] * (n - 6)
    episode = [1, 2, 1, 2, 1, 2] + [-1] * (n - 6)
    maturity = [12, 12, 12, 12, 0, 0] + [0, 7, 16, 18, -1, -1, 0, 7, 12, 16, 18, -1, 0, 7]
    rng = np.random.default_rng(0)
    nb = np.full((n, 4), -1, dtype=np.int32)
    w = np.zeros((n, 4), dtype=np.float32)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        nb[i] = rng.choice(others, 4, replace=False)
        w[i] = np.sort(rng.random(4))[::-1] + 0.1
    emb = rng.integers(-100, 100, (n, 8)).astype(np.int8)
    return write_bundle(tmp_path / "b", items={
        "ids": ids, "titles": [f"Programme {i}" for i in range(n)],
        "genres": [["drama"] if i % 2 else ["cartoons"] for i in range(n)],
        "durations": [1800.0] * n, "series": series, "season": season, "episode": episode,
        "maturity": maturity}, neighbours=nb, weights=w,
        popularity=np.linspace(2.0, 1.0, n).astype(np.float32), item_embeddings_int8=emb,
        embedding_scale=0.01, model_bytes=None, feature_config={}, model_io=None,
        extra=extra), maturity


def test_catalog_columns_drive_up_next_and_kids(tmp_path):
    path, maturity = catalog_bundle(tmp_path)
    with Engine(path, tmp_path / "h.db", clock=lambda: NOW) as eng:
        eng.add_profile("a")
        eng.record("a", "c01", "finish", timestamp=NOW - 100)   # S1E2 -> S2E1 is next
        first = eng.home("a")[0].cards[0]
        assert (first.item_id, first.kind, first.episode) == ("c02", "next", "S2 E1")
        assert first.reason == "Up next: S2 E1"
        assert eng.card("c04").episode == "E1"
        eng.add_profile("kid", kids_max_maturity=7)
        shown = [c.item_id for c in all_cards(eng.home("kid"))]
        assert shown and all(0 <= maturity[int(i[1:])] <= 7 for i in shown)
        assert "c10" not in shown and "c11" not in shown         # unrated: hidden from kids
    # a catalog that vouches for its unrated programmes (manifest extra.unrated_maturity)
    path2, _ = catalog_bundle(tmp_path / "v", extra={"unrated_maturity": 0})
    with Engine(path2, tmp_path / "h2.db", clock=lambda: NOW) as eng:
        eng.add_profile("kid", kids_max_maturity=7)
        listed = {c.item_id for c in eng.listing("kid")}
        assert {"c10", "c11", "c17"} <= listed and "c08" not in listed
