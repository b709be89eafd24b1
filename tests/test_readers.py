"""Catalog, log and vector readers on tiny hand-written files, and on the real ML-100K."""

from __future__ import annotations

import math

import numpy as np
import pytest

from device.errors import DataFormatError
from models.readers import (MAX_UNKNOWN_FRACTION, ReadError, read_item_vectors, read_items,
                            read_log)


def write(tmp_path, name, text, encoding="utf-8"):
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


GENERIC = (
    "id,title,genres,duration,release,series,season,episode,maturity,description,poster\n"
    "e1,\"Harbour, The: Part One\",drama|crime,3000,2024-03-01,The Harbour,1,1,12,A port town,x.png\n"
    "e2,The Harbour 2,drama,,1709856000,The Harbour,1,2,,,\n"
    "f9,Cartoon Club,kids,1320,,,,,0,,\n"
)


def test_generic_csv_every_column(tmp_path):
    items = read_items(write(tmp_path, "catalog.csv", GENERIC))
    assert items.format == "csv"
    assert items.ids.tolist() == ["e1", "e2", "f9"]
    assert items.titles[0] == "Harbour, The: Part One"  # quoted comma
    assert items.genres.tolist() == [("drama", "crime"), ("drama",), ("kids",)]
    assert items.durations[0] == 3000 and math.isnan(items.durations[1])
    assert items.release[0] == 1709251200.0  # 2024-03-01T00:00Z
    assert items.release[1] == 1709856000.0 and math.isnan(items.release[2])
    assert items.series.tolist() == ["The Harbour", "The Harbour", ""]
    assert items.season.tolist() == [1, 1, -1] and items.episode.tolist() == [1, 2, -1]
    assert items.maturity.tolist() == [12, -1, 0]
    assert items.descriptions[0] == "A port town"
    assert items.index["f9"] == 2
    assert items.genre_vocab == ["crime", "drama", "kids"]
    # primary first: 2/3 and 1/3, as the engine weighs them
    np.testing.assert_allclose(items.genre_matrix()[0], [1 / 3, 2 / 3, 0], rtol=1e-6)


def test_generic_csv_minimal_header_and_bom(tmp_path):
    items = read_items(write(tmp_path, "c.csv", "\ufeffTitle,ID\nHeat,1\n"))
    assert items.ids.tolist() == ["1"] and items.titles.tolist() == ["Heat"]
    assert items.genres[0] == () and math.isnan(items.durations[0]) and items.maturity[0] == -1


@pytest.mark.parametrize("body, line, reason", [
    ("id,title\na,A\na,B\n", 3, "duplicate item id 'a' (first on line 2)"),
    ("id,title\na,A,extra\n", 2, "expected 2 fields"),
    ("id,title,duration\na,A,long\n", 2, "duration must be a number"),
    ("id,title,duration\na,A,-5\n", 2, "duration -5 must be > 0"),
    ("id,title,release\na,A,yesterday\n", 2, "release must be unix seconds or an ISO 8601 date"),
    ("id,title,season\na,A,1.5\n", 2, "season must be a whole number"),
    ("id,title,maturity\na,A,99\n", 2, "maturity (minimum age) 99 must be in 0..21"),
    ("id,title\n,A\n", 2, "empty item id"),
    ("id,title\na,\n", 2, "item 'a' has an empty title"),
    ("id,title\n\"a,A\n", 2, "malformed CSV"),
    ("name,year\nHeat,1995\n", 1, "not a catalog"),
])
def test_generic_csv_errors_name_file_and_line(tmp_path, body, line, reason):
    path = write(tmp_path, "bad.csv", body)
    with pytest.raises(ReadError) as err:
        read_items(path)
    assert err.value.line == line and reason in err.value.reason
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert "\n" not in str(err.value)
    assert isinstance(err.value, DataFormatError)  # what the CLI prints in one line, exit 2


def test_not_utf8_names_the_line(tmp_path):
    path = write(tmp_path, "c.csv", "id,title\n1,Ok\n2,Caf\xe9\n", encoding="latin-1")
    with pytest.raises(ReadError, match=r"c\.csv:3: not UTF-8 text"):
        read_items(path)


MOVIES = ('movieId,title,genres\n'
          '1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n'
          '11,"American President, The (1995)",Comedy|Drama|Romance\n'
          '208,Untitled,(no genres listed)\n')


def test_movies_csv(tmp_path):
    items = read_items(write(tmp_path, "m.csv", MOVIES))
    assert items.format == "movies.csv"
    assert items.ids.tolist() == ["1", "11", "208"]  # the catalog's own ids, as strings
    assert items.titles[1] == "American President, The (1995)"
    assert items.genres[0][:2] == ("Adventure", "Animation") and items.genres[2] == ()
    assert items.release[0] == 788918400.0  # 1995-01-01
    assert math.isnan(items.release[2])


def test_movies_csv_errors(tmp_path):
    with pytest.raises(ReadError, match=r"m\.csv:3: movieId must be a whole number"):
        read_items(write(tmp_path, "m.csv", "movieId,title,genres\n1,A (1990),Drama\nx,B,Drama\n"))
    with pytest.raises(ReadError, match=r"m\.csv:2: expected 3 fields"):
        read_items(write(tmp_path, "m.csv", "movieId,title,genres\n1,A (1990)\n"))


U_GENRE = "unknown|0\nAction|1\nComedy|2\n\n"
U_ITEM = ("1|Toy Story (1995)|01-Jan-1995||http://x|0|0|1\n"
          "2|GoldenEye (1995)|||http://x|0|1|0\n"
          "3|Caf\xe9 Society (1995)|05-Feb-1996||http://x|1|0|0\n")


def test_u_item_with_u_genre(tmp_path):
    d = tmp_path / "ml"
    d.mkdir()
    write(d, "u.genre", U_GENRE)
    items = read_items(write(d, "items.dat", U_ITEM, encoding="latin-1"))  # name is irrelevant
    assert items.format == "u.item"
    assert items.ids.tolist() == ["1", "2", "3"]
    assert items.titles[2] == "Caf\xe9 Society (1995)"  # latin-1 decoded
    assert items.genres.tolist() == [("Comedy",), ("Action",), ()]  # "unknown" is no genre
    assert items.release[0] == 788918400.0
    assert items.release[1] == 788918400.0  # no date: the year in the title
    assert items.release[2] == 823478400.0  # 1996-02-05


@pytest.mark.parametrize("line2, reason", [
    ("2|GoldenEye (1995)|||http://x|0|1", "expected 8 '|'-separated fields"),
    ("2|GoldenEye (1995)|||http://x|0|2|0", "genre flags must be 0 or 1"),
    ("2|GoldenEye (1995)|1995-01-01||http://x|0|1|0", "release date must look like 01-Jan-1995"),
    ("1|Again (1995)|||http://x|0|1|0", "duplicate item id '1'"),
])
def test_u_item_errors(tmp_path, line2, reason):
    write(tmp_path, "u.genre", U_GENRE)
    lines = U_ITEM.splitlines()
    lines[1] = line2
    path = write(tmp_path, "u.item", "\n".join(lines) + "\n", encoding="latin-1")
    with pytest.raises(ReadError) as err:
        read_items(path)
    assert err.value.line == 2 and reason in err.value.reason


def test_u_item_genre_names_must_match_flags(tmp_path):
    write(tmp_path, "u.genre", "unknown|0\nAction|1\n")
    with pytest.raises(ReadError, match="u.genre: names genres"):
        read_items(write(tmp_path, "u.item", U_ITEM, encoding="latin-1"))


WATCH = ("profile_id,item_id,timestamp,completion,liked\n"
         "living-room,e1,1709251200,0.5,0\n"
         "living-room,e2,2024-03-02T20:00:00Z,1,1\n"
         "kids,f9,1709251300,,-1\n")


def test_watch_events(tmp_path):
    log = read_log(write(tmp_path, "w.csv", WATCH))
    assert log.format == "watch-events" and len(log) == 3
    assert log.profiles.tolist() == ["living-room", "living-room", "kids"]
    assert log.items.tolist() == ["e1", "e2", "f9"]
    assert log.timestamps.tolist() == [1709251200.0, 1709409600.0, 1709251300.0]
    assert log.completion.tolist() == [0.5, 1.0, 1.0]  # empty completion: watched
    assert log.liked.tolist() == [0, 1, -1]
    assert np.isnan(log.ratings).all()


def test_watch_events_three_columns(tmp_path):
    log = read_log(write(tmp_path, "w.csv", "profile_id,item_id,timestamp\np,1,10\n"))
    assert log.completion.tolist() == [1.0] and log.liked.tolist() == [0]


@pytest.mark.parametrize("row, reason", [
    ("p,e1,1709251200,1.5,0", "completion 1.5 outside 0..1"),
    ("p,e1,1709251200,0.5,2", "liked must be -1, 0 or 1"),
    ("p,e1,noon,0.5,0", "timestamp must be unix seconds or an ISO 8601 date"),
    ("p,e1,1709251200,0.5", "expected 5 fields"),
    (",e1,1709251200,0.5,0", "empty profile_id or item_id"),
])
def test_watch_event_errors(tmp_path, row, reason):
    path = write(tmp_path, "w.csv", "profile_id,item_id,timestamp,completion,liked\n"
                 "p,e1,1,1,0\n" + row + "\n")
    with pytest.raises(ReadError) as err:
        read_log(path)
    assert err.value.line == 3 and reason in err.value.reason


def test_u_data_and_ratings_csv(tmp_path):
    u = read_log(write(tmp_path, "a", "196\t242\t3\t881250949\n\n186\t302\t3.5\t891717742\n"))
    assert u.format == "u.data"
    assert u.profiles.tolist() == ["196", "186"] and u.items.tolist() == ["242", "302"]
    assert u.ratings.tolist() == [3.0, 3.5] and u.completion.tolist() == [1.0, 1.0]
    r = read_log(write(tmp_path, "b", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n"))
    assert r.format == "ratings.csv" and r.items.tolist() == ["1"]
    assert r.timestamps.tolist() == [964982703.0]


@pytest.mark.parametrize("text, line, reason", [
    ("1\t2\t3\t4\n1\t2\t3\n", 2, "expected 4 fields"),
    ("1\t2\t3\t4\n1\t2\tgood\t4\n", 2, "rating must be a number"),
    ("1\t2\t3\t4\n1\t2\t3\tinf\n", 2, "timestamp must be finite"),
    ("1\t2\t3\t4\n\t2\t3\t4\n", 2, "empty user or item id"),
    ("userId,movieId,rating,timestamp\n1,2,3,4\n1,2,3\n", 3, "expected 4 fields"),
    ("user item rating\n", 1, "not an interaction log"),
])
def test_rating_log_errors(tmp_path, text, line, reason):
    path = write(tmp_path, "r", text)
    with pytest.raises(ReadError) as err:
        read_log(path)
    assert err.value.line == line and reason in err.value.reason


def test_unknown_items_are_counted_then_fatal(tmp_path):
    items = read_items(write(tmp_path, "c.csv", "id,title\n" + "".join(
        f"i{k},T{k}\n" for k in range(30))))
    rows = [f"p,i{k % 30},{k}" for k in range(95)] + ["p,gone,1", "p,gone,2", "q,other,3"]
    log = read_log(write(tmp_path, "w.csv", "profile_id,item_id,timestamp\n"
                         + "\n".join(rows) + "\n"), items)
    assert len(log) == 95 and log.skipped_lines == 3 and log.unknown_items == 2
    assert "gone" not in log.items.tolist()
    too_many = rows[:5] + [f"p,x{k},1" for k in range(5)]  # 50% unknown
    assert 0.5 > MAX_UNKNOWN_FRACTION
    with pytest.raises(ReadError, match=r"5 of 10 rows \(50%\) name items the catalog"):
        read_log(write(tmp_path, "w2.csv", "profile_id,item_id,timestamp\n"
                       + "\n".join(too_many) + "\n"), items)


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(ReadError, match="empty file"):
        read_items(write(tmp_path, "e.csv", "\n\n"))
    with pytest.raises(ReadError, match="no items"):
        read_items(write(tmp_path, "h.csv", "id,title\n"))
    with pytest.raises(ReadError, match="no events"):
        read_log(write(tmp_path, "l.csv", "profile_id,item_id,timestamp\n"))
    with pytest.raises(ReadError, match="no such file"):
        read_log(tmp_path / "absent.csv")


def test_item_vectors_all_layouts(tmp_path):
    per_dim = read_item_vectors(write(tmp_path, "a.csv", "movieId,d0,d1\n1,0.5,-1\n2,0,2e-1\n"))
    packed = read_item_vectors(write(tmp_path, "b.csv", 'item_id,vector\n1,"0.5, -1"\n2,"0,0.2"\n'))
    np.savez(tmp_path / "c.bin", ids=np.array([1, 2]), vectors=np.array([[0.5, -1], [0, 0.2]]))
    npz = read_item_vectors(tmp_path / "c.bin.npz")
    for v in (per_dim, packed, npz):
        assert v.ids.tolist() == ["1", "2"] and v.dim == 2
        np.testing.assert_allclose(v.vectors, [[0.5, -1], [0, 0.2]], rtol=1e-6)
    M, has, unknown = packed.align(["2", "3", "1", "9"])
    assert has.tolist() == [True, False, True, False] and unknown == 0
    np.testing.assert_allclose(M[0], [0, 0.2], rtol=1e-6)
    assert (M[1] == 0).all()


@pytest.mark.parametrize("text, reason", [
    ("name,d0\n1,2\n", "no id column"),
    ("id,v\n1,\"1,2\"\n2,\"1\"\n", "vector has 1 components, the first had 2"),
    ("id,d0\n1,x\n", "vector component must be a number"),
    ("id,d0\n1,1\n1,2\n", "duplicate item id '1'"),
    ("id,d0\n1,nan\n", "vector component must be finite"),
])
def test_item_vector_errors(tmp_path, text, reason):
    with pytest.raises(ReadError, match="v.csv") as err:
        read_item_vectors(write(tmp_path, "v.csv", text))
    assert reason in err.value.reason


def test_real_ml100k(shared_data):
    items = read_items(shared_data / "ml-100k" / "u.item")
    assert len(items) == 1682 and items.format == "u.item"
    assert items.titles[0] == "Toy Story (1995)"
    assert items.genres[0] == ("Animation", "Children's", "Comedy")
    log = read_log(shared_data / "ml-100k" / "u.data", items)
    assert len(log) == 100_000 and log.skipped_lines == 0
    assert len(set(log.profiles.tolist())) == 943


# --------------------------------------------------------------------------- invariants

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40) \
    .map(str.strip).filter(bool)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(_text, st.lists(_text.filter(lambda g: "|" not in g), max_size=4),
                          st.none() | st.integers(1, 20000), st.none() | st.integers(0, 18)),
                min_size=1, max_size=12))
def test_generic_csv_round_trip(tmp_path_factory, rows):
    """Whatever a platform writes with a CSV writer (commas, quotes, newlines and unicode in
    titles) reads back as written."""
    import csv

    path = tmp_path_factory.mktemp("rt") / "items.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "title", "genres", "duration", "maturity"])
        for k, (title, genres, dur, mat) in enumerate(rows):
            w.writerow([f"x{k}", title, "|".join(genres), "" if dur is None else dur,
                        "" if mat is None else mat])
    items = read_items(path)
    assert items.ids.tolist() == [f"x{k}" for k in range(len(rows))]
    assert items.titles.tolist() == [r[0] for r in rows]
    assert items.genres.tolist() == [tuple(dict.fromkeys(g.strip() for g in r[1])) for r in rows]
    assert [None if math.isnan(d) else int(d) for d in items.durations] == [r[2] for r in rows]
    assert [None if m < 0 else int(m) for m in items.maturity] == [r[3] for r in rows]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 4), st.integers(0, 50),
                          st.floats(0, 1), st.sampled_from([-1, 0, 1])), min_size=1, max_size=40))
def test_log_matrix_matches_brute_force(events):
    """Per (profile, item): the largest completion, 0 if the latest event is a dislike."""
    from models.readers import Items, Log, log_matrix

    n = 5
    items = Items(ids=np.array([str(i) for i in range(n)], dtype=object),
                  titles=np.array(["t"] * n, dtype=object), genres=np.empty(n, dtype=object),
                  durations=np.full(n, np.nan, np.float32), release=np.full(n, np.nan),
                  series=np.array([""] * n, dtype=object), season=np.full(n, -1, np.int32),
                  episode=np.full(n, -1, np.int32), maturity=np.full(n, -1, np.int16),
                  descriptions=np.array([""] * n, dtype=object))
    # distinct timestamps per pair, so "latest" is well defined
    events = list({(u, i, t): (c, lk) for u, i, t, c, lk in events}.items())
    log = Log(profiles=np.array([f"p{u}" for (u, _, _), _ in events], dtype=object),
              items=np.array([str(i) for (_, i, _), _ in events], dtype=object),
              timestamps=np.array([t for (_, _, t), _ in events], np.float64),
              completion=np.array([c for _, (c, _) in events], np.float32),
              liked=np.array([lk for _, (_, lk) in events], np.int8),
              ratings=np.full(len(events), np.nan, np.float32))
    X, profiles = log_matrix(log, items)
    want: dict[tuple[str, int], float] = {}
    latest: dict[tuple[str, int], tuple[int, int]] = {}
    for (u, i, t), (c, lk) in events:
        key = (f"p{u}", i)
        want[key] = max(want.get(key, 0.0), float(np.float32(c)))
        if key not in latest or t > latest[key][0]:
            latest[key] = (t, lk)
    dense = X.toarray()
    for (p, i), v in want.items():
        expect = 0.0 if latest[(p, i)][1] < 0 else v
        assert dense[list(profiles).index(p), i] == pytest.approx(expect)
    assert np.count_nonzero(dense) == sum(1 for k, v in want.items() if v > 0 and latest[k][1] >= 0)
