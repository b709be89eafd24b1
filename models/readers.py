"""Real catalogs in: item metadata, watch logs and content vectors from the files platforms have.

::

    from models.readers import read_items, read_log, read_item_vectors

    items = read_items("ml-100k/u.item")          # or movies.csv, or a generic catalog CSV
    log = read_log("ml-100k/u.data", items)        # or ratings.csv, or a watch-event CSV
    vectors = read_item_vectors("vectors.npz")     # optional content vectors per item

Formats are recognised from the header (or, for the header-less MovieLens files, from the shape
of the first line), never from the file name:

=====================  =============================================================================
items                  how it is recognised
=====================  =============================================================================
generic CSV            header with at least ``id,title``; optional ``genres`` (``|``-separated,
                       primary first), ``duration`` (seconds), ``release`` (ISO date/time or unix
                       seconds), ``series``, ``season``, ``episode``, ``maturity`` (minimum age in
                       years), ``description``; other columns are ignored; empty cell = unknown
MovieLens movies.csv   header ``movieId,title,genres``; the year in the title is the release
ML-100K u.item         no header, ``|``-separated, latin-1: id, title, release date, video
                       release date, IMDb URL, then one 0/1 flag per genre named by ``u.genre``
                       in the same folder
=====================  =============================================================================

=====================  =============================================================================
logs                   how it is recognised
=====================  =============================================================================
watch-event CSV        header with ``profile_id,item_id,timestamp``; optional ``completion``
                       (0..1) and ``liked`` (-1, 0, 1); timestamps unix seconds or ISO 8601
MovieLens ratings.csv  header ``userId,movieId,rating,timestamp``
ML-100K u.data         no header, 4 tab-separated fields: user, item, rating, unix time
ML-1M ratings.dat      no header, ``user::item::rating::time``
=====================  =============================================================================

Every malformed line raises :class:`ReadError` (a :class:`~device.errors.DataFormatError`) whose
message is one line ``FILE:LINE: reason``. Duplicate item ids are refused. A log read against a
catalog drops rows naming items the catalog does not have and counts them
(:attr:`Log.skipped_lines`); more than :data:`MAX_UNKNOWN_FRACTION` of the rows is fatal -- the
log and the catalog then do not belong together (another catalog, the wrong id column).

Everything comes back as plain dataclasses of numpy arrays; ids are always the file's own ids as
strings (MovieLens ``movieId`` 1 stays ``"1"``).
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterator

import numpy as np

from device.errors import DataFormatError

__all__ = [
    "ItemVectors",
    "Items",
    "Log",
    "MAX_UNKNOWN_FRACTION",
    "ReadError",
    "read_item_vectors",
    "read_items",
    "read_log",
    "log_matrix",
]

#: A log read against a catalog may name unknown items in at most this share of its rows.
MAX_UNKNOWN_FRACTION = 0.10
#: The id columns a content-vector CSV may use.
VECTOR_ID_COLUMNS = ("id", "item_id", "itemId", "movieId")
#: Minimum ages (years) a ``maturity`` cell may hold.
MAX_MATURITY = 21

# ML-100K's genre names, for a u.item whose u.genre is missing (19 flags).
_ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                  "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                  "Romance", "Sci-Fi", "Thriller", "War", "Western")
_YEAR_IN_TITLE = re.compile(r"\((\d{4})(?:[-\u2013]\d{0,4})?\)\s*$")
_MONTHS = {m: k for k, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}


class ReadError(DataFormatError):
    """A catalog, log or vector file is malformed; ``str(err)`` is ``FILE:LINE: reason``.

    Attributes
    ----------
    path : str
    line : int or None
        1-based line number (None when the problem is the whole file).
    reason : str
    """

    def __init__(self, path: str, line: int | None, reason: str):
        self.path, self.line, self.reason = path, line, reason
        super().__init__(f"{path}:{line}: {reason}" if line else f"{path}: {reason}")


# --------------------------------------------------------------------------- data classes


@dataclass(frozen=True)
class Items:
    """A catalog's items as parallel arrays (row order = file order).

    Attributes
    ----------
    ids, titles, descriptions : np.ndarray of str (object), shape (N,)
    genres : np.ndarray of object, shape (N,)
        A tuple of genre names per item, primary first (empty tuple: none).
    durations : np.ndarray of float32, shape (N,)
        Seconds; NaN where the catalog does not say.
    release : np.ndarray of float64, shape (N,)
        Release time, unix seconds (a year alone means 1 January); NaN where unknown.
    series : np.ndarray of str (object), shape (N,)
        Series name, ``""`` for a one-off.
    season, episode : np.ndarray of int32, shape (N,)
        -1 where unknown.
    maturity : np.ndarray of int16, shape (N,)
        Minimum viewer age in years, -1 where unrated.
    format : str
        ``"csv"``, ``"movies.csv"`` or ``"u.item"``.
    path : str
    """

    ids: np.ndarray
    titles: np.ndarray
    genres: np.ndarray
    durations: np.ndarray
    release: np.ndarray
    series: np.ndarray
    season: np.ndarray
    episode: np.ndarray
    maturity: np.ndarray
    descriptions: np.ndarray
    format: str = ""
    path: str = ""

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def index(self) -> dict[str, int]:
        """id -> row."""
        return {i: r for r, i in enumerate(self.ids.tolist())}

    @cached_property
    def genre_vocab(self) -> list[str]:
        """Every genre name, sorted."""
        return sorted({g for gs in self.genres for g in gs})

    def genre_matrix(self, vocab: list[str] | None = None) -> np.ndarray:
        """float32 ``[N, len(vocab)]``: an item's genres weighted by position (``n - k`` for
        the k-th of n, normalised to sum 1; primary first), as the box's engine weighs them."""
        vocab = self.genre_vocab if vocab is None else vocab
        col = {g: c for c, g in enumerate(vocab)}
        out = np.zeros((len(self), len(vocab)), np.float32)
        for r, gs in enumerate(self.genres):
            n = len(gs)
            for k, g in enumerate(gs):
                if g in col:
                    out[r, col[g]] = (n - k) / (n * (n + 1) / 2)
        return out


@dataclass(frozen=True)
class Log:
    """Interaction events as parallel arrays (one row per event, file order).

    Attributes
    ----------
    profiles, items : np.ndarray of str (object), shape (E,)
    timestamps : np.ndarray of float64
        Unix seconds.
    completion : np.ndarray of float32
        Share watched, 0..1 (1 where the source has none: a rating means the item was seen).
    liked : np.ndarray of int8
        -1 dislike, 0 nothing said, 1 like.
    ratings : np.ndarray of float32
        Explicit rating, NaN where the source has none.
    format : str
        ``"watch-events"``, ``"ratings.csv"``, ``"u.data"`` or ``"ratings.dat"``.
    path : str
    skipped_lines : int
        Rows dropped because they name an item the catalog does not have.
    unknown_items : int
        Distinct item ids among them.
    """

    profiles: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    completion: np.ndarray
    liked: np.ndarray
    ratings: np.ndarray
    format: str = ""
    path: str = ""
    skipped_lines: int = 0
    unknown_items: int = 0

    def __len__(self) -> int:
        return len(self.items)

    def take(self, rows: np.ndarray, **changes: Any) -> "Log":
        """The events at ``rows`` (an index or boolean array), other fields as given."""
        kw = {f: getattr(self, f)[rows] for f in
              ("profiles", "items", "timestamps", "completion", "liked", "ratings")}
        kw.update(format=self.format, path=self.path, skipped_lines=self.skipped_lines,
                  unknown_items=self.unknown_items)
        kw.update(changes)
        return Log(**kw)


@dataclass(frozen=True)
class ItemVectors:
    """Content vectors per item (e.g. from a fleet-side content or text model).

    Attributes
    ----------
    ids : np.ndarray of str (object), shape (M,)
    vectors : np.ndarray of float32, shape (M, D)
    path : str
    """

    ids: np.ndarray
    vectors: np.ndarray
    path: str = ""
    extra: dict = field(default_factory=dict, repr=False)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def align(self, item_ids: Any) -> tuple[np.ndarray, np.ndarray, int]:
        """Vectors in the row order of ``item_ids``.

        Returns
        -------
        matrix : np.ndarray of float32, shape (N, D)
            Zero rows for items without a vector.
        has : np.ndarray of bool, shape (N,)
        unknown : int
            Vectors whose id is not among ``item_ids`` (ignored).
        """
        pos = {str(i): r for r, i in enumerate(list(item_ids))}
        out = np.zeros((len(pos), self.dim), np.float32)
        has = np.zeros(len(pos), bool)
        unknown = 0
        for k, i in enumerate(self.ids.tolist()):
            r = pos.get(i)
            if r is None:
                unknown += 1
            else:
                out[r] = self.vectors[k]
                has[r] = True
        return out, has, unknown


# --------------------------------------------------------------------------- text helpers


def _read_text(path: str, encoding: str = "utf-8-sig") -> str:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise ReadError(path, None, "no such file") from None
    except IsADirectoryError:
        raise ReadError(path, None, "is a folder, not a file") from None
    except OSError as err:
        raise ReadError(path, None, f"cannot read ({err.strerror or err})") from None
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ReadError(path, line, f"not {encoding.replace('-sig', '').upper()} text "
                        f"(byte 0x{raw[err.start]:02x})") from None


def _csv_rows(text: str, path: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank CSV record; quoted fields may span lines."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    line = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise ReadError(path, reader.line_num, f"malformed CSV ({err})") from None
        if row and any(f.strip() for f in row):
            yield line, row
        line = reader.line_num + 1


def _float(text: str, path: str, line: int, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ReadError(path, line, f"{what} must be a number, got {text[:40]!r}") from None
    if not np.isfinite(v):
        raise ReadError(path, line, f"{what} must be finite, got {text!r}")
    return v


def _int(text: str, path: str, line: int, what: str, lo: int, hi: int | None = None) -> int:
    try:
        v = int(text)
    except ValueError:
        raise ReadError(path, line, f"{what} must be a whole number, got {text[:40]!r}") from None
    if v < lo or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ReadError(path, line, f"{what} {v} must be {rng}")
    return v


def _time(text: str, path: str, line: int, what: str) -> float:
    """Unix seconds, or an ISO 8601 date / date-time (UTC unless it says otherwise)."""
    try:
        return _float(text, path, line, what)
    except ReadError:
        pass
    try:
        t = _dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        raise ReadError(path, line, f"{what} must be unix seconds or an ISO 8601 date, "
                        f"got {text[:40]!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return t.timestamp()


def _year_ts(year: int) -> float:
    return _dt.datetime(year, 1, 1, tzinfo=_dt.timezone.utc).timestamp()


# --------------------------------------------------------------------------- items


class _ItemColumns:
    """Accumulates item rows, refusing duplicate ids."""

    def __init__(self, path: str, fmt: str):
        self.path, self.fmt = path, fmt
        self.ids: list[str] = []
        self.seen: dict[str, int] = {}
        self.titles: list[str] = []
        self.genres: list[tuple[str, ...]] = []
        self.durations: list[float] = []
        self.release: list[float] = []
        self.series: list[str] = []
        self.season: list[int] = []
        self.episode: list[int] = []
        self.maturity: list[int] = []
        self.descriptions: list[str] = []

    def add(self, line: int, iid: str, title: str, genres: tuple[str, ...] = (),
            duration: float = np.nan, release: float = np.nan, series: str = "",
            season: int = -1, episode: int = -1, maturity: int = -1, description: str = "") -> None:
        if not iid:
            raise ReadError(self.path, line, "empty item id")
        if iid in self.seen:
            raise ReadError(self.path, line, f"duplicate item id {iid!r} (first on line "
                            f"{self.seen[iid]})")
        if not title:
            raise ReadError(self.path, line, f"item {iid!r} has an empty title")
        self.seen[iid] = line
        self.ids.append(iid)
        self.titles.append(title)
        self.genres.append(tuple(dict.fromkeys(g for g in genres if g)))  # unique, in order
        self.durations.append(duration)
        self.release.append(release)
        self.series.append(series)
        self.season.append(season)
        self.episode.append(episode)
        self.maturity.append(maturity)
        self.descriptions.append(description)

    def done(self) -> Items:
        if not self.ids:
            raise ReadError(self.path, None, "no items")
        genres = np.empty(len(self.ids), dtype=object)
        genres[:] = self.genres
        return Items(
            ids=np.asarray(self.ids, dtype=object), titles=np.asarray(self.titles, dtype=object),
            genres=genres, durations=np.asarray(self.durations, np.float32),
            release=np.asarray(self.release, np.float64),
            series=np.asarray(self.series, dtype=object), season=np.asarray(self.season, np.int32),
            episode=np.asarray(self.episode, np.int32), maturity=np.asarray(self.maturity, np.int16),
            descriptions=np.asarray(self.descriptions, dtype=object), format=self.fmt,
            path=self.path)


def _looks_like_u_item(first_line: str) -> bool:
    f = first_line.rstrip("\r\n").split("|")
    return len(f) >= 6 and f[0].strip().isdigit() and all(x.strip() in ("0", "1") for x in f[-2:])


def read_items(path: str | os.PathLike) -> Items:
    """Read a catalog's items: generic CSV, MovieLens ``movies.csv`` or ML-100K ``u.item``.

    Raises
    ------
    ReadError
        Unreadable file, unknown format, a malformed line or a duplicate id; the message names
        the file and the line.
    """
    path = os.fspath(path)
    head = _read_text(path, "latin-1")[:4096].lstrip("\ufeff")
    if not head.strip():
        raise ReadError(path, None, "empty file")
    if _looks_like_u_item(head.splitlines()[0]):
        return _read_u_item(path)
    text = _read_text(path)
    rows = _csv_rows(text, path)
    try:
        line, header = next(rows)
    except StopIteration:
        raise ReadError(path, None, "empty file") from None
    names = [h.strip().lower() for h in header]
    if names[:3] == ["movieid", "title", "genres"]:
        return _read_movies_csv(path, rows, len(names))
    if "id" in names and "title" in names:
        return _read_generic_csv(path, rows, names)
    raise ReadError(path, line, "not a catalog: want a CSV header with id,title (generic), "
                    "movieId,title,genres (MovieLens movies.csv) or an ML-100K u.item; got "
                    f"{','.join(header)[:60]!r}")


def _read_generic_csv(path: str, rows: Iterator[tuple[int, list[str]]], names: list[str]) -> Items:
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ReadError(path, 1, f"column {dup!r} appears twice in the header")
    col = {n: c for c, n in enumerate(names)}
    out = _ItemColumns(path, "csv")

    for line, row in rows:
        if len(row) != len(names):
            raise ReadError(path, line, f"expected {len(names)} fields ({','.join(names)[:60]}), "
                            f"got {len(row)}")

        def cell(name: str) -> str:
            c = col.get(name)
            return "" if c is None else row[c].strip()

        kw: dict[str, Any] = {}
        if cell("genres"):
            kw["genres"] = tuple(g.strip() for g in cell("genres").split("|"))
        if cell("duration"):
            d = _float(cell("duration"), path, line, "duration")
            if d <= 0:
                raise ReadError(path, line, f"duration {d:g} must be > 0 seconds (or empty)")
            kw["duration"] = d
        if cell("release"):
            kw["release"] = _time(cell("release"), path, line, "release")
        if cell("series"):
            kw["series"] = cell("series")
        for name in ("season", "episode"):
            if cell(name):
                kw[name] = _int(cell(name), path, line, name, 0)
        if cell("maturity"):
            kw["maturity"] = _int(cell("maturity"), path, line, "maturity (minimum age)", 0,
                                  MAX_MATURITY)
        if cell("description"):
            kw["description"] = cell("description")
        out.add(line, cell("id"), cell("title"), **kw)
    return out.done()


def _read_movies_csv(path: str, rows: Iterator[tuple[int, list[str]]], width: int) -> Items:
    out = _ItemColumns(path, "movies.csv")
    for line, row in rows:
        if len(row) != width:
            raise ReadError(path, line, f"expected {width} fields (movieId,title,genres), "
                            f"got {len(row)}")
        iid, title, genres = (f.strip() for f in row[:3])
        if not iid.isdigit():
            raise ReadError(path, line, f"movieId must be a whole number, got {iid[:40]!r}")
        year = _YEAR_IN_TITLE.search(title)
        release = _year_ts(int(year.group(1))) if year and 1800 <= int(year.group(1)) <= 2200 \
            else np.nan
        gs = () if genres in ("", "(no genres listed)") else tuple(genres.split("|"))
        out.add(line, iid, title, gs, release=release)
    return out.done()


def _u_genre_names(path: str, n_flags: int) -> list[str]:
    gpath = os.path.join(os.path.dirname(path), "u.genre")
    if not os.path.isfile(gpath):
        if n_flags == len(_ML100K_GENRES):
            return list(_ML100K_GENRES)
        raise ReadError(path, 1, f"{n_flags} genre flags and no u.genre beside it to name them")
    names: dict[int, str] = {}
    for lineno, line in enumerate(_read_text(gpath, "latin-1").splitlines(), 1):
        if not line.strip():
            continue
        name, sep, idx = line.rpartition("|")
        if not sep or not idx.strip().isdigit() or not name.strip():
            raise ReadError(gpath, lineno, f"expected 'name|index', got {line[:40]!r}")
        names[int(idx)] = name.strip()
    if sorted(names) != list(range(n_flags)):
        raise ReadError(gpath, None, f"names genres {sorted(names)[:5]}..., the u.item beside it "
                        f"has {n_flags} genre flags")
    return [names[k] for k in range(n_flags)]


def _u_item_date(text: str, path: str, line: int) -> float:
    """``01-Jan-1995`` -> unix seconds; empty -> NaN."""
    if not text:
        return np.nan
    try:
        d, m, y = text.split("-")
        return _dt.datetime(int(y), _MONTHS[m.lower()], int(d), tzinfo=_dt.timezone.utc).timestamp()
    except (ValueError, KeyError):
        raise ReadError(path, line, f"release date must look like 01-Jan-1995, got {text[:40]!r}") \
            from None


def _read_u_item(path: str) -> Items:
    lines = _read_text(path, "latin-1").splitlines()
    width = len(lines[0].split("|"))
    genres = _u_genre_names(path, width - 5)
    out = _ItemColumns(path, "u.item")
    for line, text in enumerate(lines, 1):
        if not text.strip():
            continue
        f = text.split("|")
        if len(f) != width:
            raise ReadError(path, line, f"expected {width} '|'-separated fields (id, title, "
                            f"release date, video release date, URL, {width - 5} genre flags), "
                            f"got {len(f)}")
        flags = [x.strip() for x in f[5:]]
        bad = next((x for x in flags if x not in ("0", "1")), None)
        if bad is not None:
            raise ReadError(path, line, f"genre flags must be 0 or 1, got {bad[:20]!r}")
        iid = f[0].strip()
        if not iid.isdigit():
            raise ReadError(path, line, f"item id must be a whole number, got {iid[:40]!r}")
        title = f[1].strip()
        release = _u_item_date(f[2].strip(), path, line)
        if not np.isfinite(release):
            year = _YEAR_IN_TITLE.search(title)
            release = _year_ts(int(year.group(1))) if year else np.nan
        # ML-100K flags "unknown" as a genre for titles without any; that is no genre.
        gs = tuple(g for g, x in zip(genres, flags) if x == "1" and g != "unknown")
        out.add(line, iid, title, gs, release=release)
    return out.done()


# --------------------------------------------------------------------------- logs


class _LogColumns:
    def __init__(self) -> None:
        self.profiles: list[str] = []
        self.items: list[str] = []
        self.ts: list[float] = []
        self.completion: list[float] = []
        self.liked: list[int] = []
        self.ratings: list[float] = []


def read_log(path: str | os.PathLike, items: Items | None = None, *,
             max_unknown_fraction: float = MAX_UNKNOWN_FRACTION) -> Log:
    """Read an interaction log: watch-event CSV, MovieLens ``ratings.csv``, ``u.data`` or
    ``ratings.dat``.

    Parameters
    ----------
    path : path
    items : Items, optional
        The catalog the log belongs to: rows naming other items are dropped and counted
        (:attr:`Log.skipped_lines`, :attr:`Log.unknown_items`).
    max_unknown_fraction : float
        More than this share of rows naming unknown items is an error.

    Raises
    ------
    ReadError
        Unreadable file, unknown format, a malformed line, no events, or too many rows for
        items the catalog does not have.
    """
    path = os.fspath(path)
    text = _read_text(path)
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    if not first:
        raise ReadError(path, None, "empty file")
    header = [h.strip().lower() for h in next(csv.reader([first]))]
    cols = _LogColumns()
    if header[:4] == ["userid", "movieid", "rating", "timestamp"]:
        fmt = "ratings.csv"
        _ratings_lines(path, text, ",", cols, skip_header=True)
    elif {"profile_id", "item_id", "timestamp"} <= set(header):
        fmt = "watch-events"
        _watch_events(path, text, header, cols)
    elif len(first.split("\t")) == 4:
        fmt = "u.data"
        _ratings_lines(path, text, "\t", cols, skip_header=False)
    elif len(first.split("::")) == 4:
        fmt = "ratings.dat"
        _ratings_lines(path, text, "::", cols, skip_header=False)
    else:
        raise ReadError(path, 1, "not an interaction log: want a CSV header with "
                        "profile_id,item_id,timestamp (watch events) or userId,movieId,rating,"
                        "timestamp (MovieLens ratings.csv), or u.data's 4 tab-separated fields; "
                        f"got {first[:60]!r}")
    if not cols.items:
        raise ReadError(path, None, "no events")
    log = Log(profiles=np.asarray(cols.profiles, dtype=object),
              items=np.asarray(cols.items, dtype=object),
              timestamps=np.asarray(cols.ts, np.float64),
              completion=np.asarray(cols.completion, np.float32),
              liked=np.asarray(cols.liked, np.int8), ratings=np.asarray(cols.ratings, np.float32),
              format=fmt, path=path)
    return log if items is None else _restrict(log, items, max_unknown_fraction)


def _restrict(log: Log, items: Items, max_unknown_fraction: float) -> Log:
    known = items.index
    ok = np.fromiter((i in known for i in log.items.tolist()), dtype=bool, count=len(log))
    n_bad = int(len(log) - ok.sum())
    if not n_bad:
        return log
    unknown = sorted(set(log.items[~ok].tolist()))
    share = n_bad / len(log)
    if share > max_unknown_fraction:
        raise ReadError(log.path, None, f"{n_bad} of {len(log)} rows ({share:.0%}) name items "
                        f"the catalog {items.path or ''} does not have (e.g. {unknown[0]!r}); "
                        f"more than {max_unknown_fraction:.0%} means the log and the catalog do "
                        "not belong together")
    return log.take(ok, skipped_lines=n_bad, unknown_items=len(unknown))


def _split_table(text: str, sep: str, width: int, skip_header: bool) -> np.ndarray | None:
    """The non-blank lines split on ``sep`` as a str array ``[rows, width]``, or None when
    any line has another number of fields (the line-by-line reader then says which)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if skip_header:
        lines = lines[1:]
    if not lines:
        return None
    parts = [ln.split(sep) for ln in lines]
    if any(len(p) != width for p in parts):
        return None
    return np.strings.strip(np.asarray(parts, dtype=str))


def _numbers(column: np.ndarray) -> np.ndarray | None:
    """A str column as float64, or None if any cell is not a finite number."""
    try:
        v = column.astype(np.float64)
    except ValueError:
        return None
    return v if np.isfinite(v).all() else None


def _ratings_fast(text: str, sep: str, cols: _LogColumns, skip_header: bool) -> bool:
    """Vectorised :func:`_ratings_lines` for well-formed files (a million lines in about a
    second instead of ten); False leaves the file to the line-by-line reader."""
    table = _split_table(text, sep, 4, skip_header)
    if table is None or (np.strings.str_len(table[:, :2]) == 0).any():
        return False
    ratings, stamps = _numbers(table[:, 2]), _numbers(table[:, 3])
    if ratings is None or stamps is None:
        return False
    cols.profiles = table[:, 0].astype(object).tolist()
    cols.items = table[:, 1].astype(object).tolist()
    cols.ratings, cols.ts = ratings, stamps
    cols.completion = np.ones(len(table), np.float32)
    cols.liked = np.zeros(len(table), np.int8)
    return True


def _ratings_lines(path: str, text: str, sep: str, cols: _LogColumns, *, skip_header: bool) -> None:
    """MovieLens ratings (u.data, ratings.csv, ratings.dat): user, item, rating, time."""
    if _ratings_fast(text, sep, cols, skip_header):
        return
    seen_header = not skip_header
    for line, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        if not seen_header:
            seen_header = True
            continue
        f = raw.split(sep)
        if len(f) != 4:
            raise ReadError(path, line, f"expected 4 fields (user, item, rating, timestamp), "
                            f"got {len(f)}: {raw[:60]!r}")
        user, item, rating, stamp = (x.strip() for x in f)
        if not user or not item:
            raise ReadError(path, line, "empty user or item id")
        cols.profiles.append(user)
        cols.items.append(item)
        cols.ratings.append(_float(rating, path, line, "rating"))
        cols.ts.append(_float(stamp, path, line, "timestamp"))
        cols.completion.append(1.0)
        cols.liked.append(0)


def _watch_events_fast(text: str, header: list[str], cols: _LogColumns) -> bool:
    """Vectorised :func:`_watch_events` for unquoted, well-formed files with numeric
    timestamps (millions of rows in seconds); False leaves the file to the CSV reader."""
    if '"' in text:
        return False
    table = _split_table(text, ",", len(header), skip_header=True)
    if table is None:
        return False
    col = {n: c for c, n in enumerate(header)}
    ids = table[:, [col["profile_id"], col["item_id"]]]
    if (np.strings.str_len(ids) == 0).any():
        return False
    ts = _numbers(table[:, col["timestamp"]])
    if ts is None:
        return False
    comp = np.ones(len(table))
    if "completion" in col:
        c = table[:, col["completion"]]
        comp = _numbers(np.where(c == "", "1", c))
        if comp is None or ((comp < 0) | (comp > 1)).any():
            return False
    liked = np.zeros(len(table), np.int8)
    if "liked" in col:
        lk = table[:, col["liked"]]
        if not np.isin(lk, ["-1", "0", "1", ""]).all():
            return False
        liked = np.where(lk == "", "0", lk).astype(np.int8)
    cols.profiles = ids[:, 0].astype(object).tolist()
    cols.items = ids[:, 1].astype(object).tolist()
    cols.ts, cols.completion, cols.liked = ts, comp, liked
    cols.ratings = np.full(len(table), np.nan, np.float32)
    return True


def _watch_events(path: str, text: str, header: list[str], cols: _LogColumns) -> None:
    if _watch_events_fast(text, header, cols):
        return
    col = {n: c for c, n in enumerate(header)}
    rows = _csv_rows(text, path)
    next(rows)  # the header
    c_p, c_i, c_t = col["profile_id"], col["item_id"], col["timestamp"]
    c_c, c_l = col.get("completion"), col.get("liked")
    for line, row in rows:
        if len(row) != len(header):
            raise ReadError(path, line, f"expected {len(header)} fields ({','.join(header)[:60]}), "
                            f"got {len(row)}")
        pid, iid, ts = row[c_p].strip(), row[c_i].strip(), row[c_t].strip()
        if not pid or not iid:
            raise ReadError(path, line, "empty profile_id or item_id")
        comp = 1.0
        if c_c is not None and row[c_c].strip():
            comp = _float(row[c_c].strip(), path, line, "completion")
            if not 0.0 <= comp <= 1.0:
                raise ReadError(path, line, f"completion {comp:g} outside 0..1")
        liked = 0
        if c_l is not None and row[c_l].strip():
            s = row[c_l].strip()
            if s not in ("-1", "0", "1"):
                raise ReadError(path, line, f"liked must be -1, 0 or 1, got {s[:20]!r}")
            liked = int(s)
        cols.profiles.append(pid)
        cols.items.append(iid)
        cols.ts.append(_time(ts, path, line, "timestamp"))
        cols.completion.append(comp)
        cols.liked.append(liked)
        cols.ratings.append(np.nan)


# --------------------------------------------------------------------------- log -> matrix


def _history_cap():
    """``models.cowatch.cap_histories`` (each profile's most recent ``HISTORY_CAP`` items, the
    rule the in-process and Spark learners share), or None where this tree has no such rule."""
    from models import cowatch

    return getattr(cowatch, "cap_histories", None)


def log_matrix(log: Log, items: Items) -> tuple[Any, np.ndarray]:
    """Profiles x items interaction strengths: per pair the largest completion, 0 when the
    latest event on it is a dislike (a dislike is no evidence of co-watching).

    A rating log has completion 1 on every row, so each rated item counts once (the MovieLens
    protocol of ``../shared/notes/cf-anchors.md``). A profile's history is first capped to its
    most recent items by the learner's rule (``models.cowatch.cap_histories``), so that the
    matrix is what the learners -- in-process and on Spark -- count co-watching on.

    Returns
    -------
    X : scipy.sparse.csr_matrix, shape (n_profiles, len(items))
    profile_ids : np.ndarray of str (object)
        Row order of ``X`` (sorted).
    """
    import scipy.sparse as sp

    n = len(items)
    col = np.fromiter((items.index[i] for i in log.items.tolist()), np.int64, count=len(log))
    profile_ids, row = np.unique(log.profiles.astype(str), return_inverse=True)
    if len(log) == 0:
        return sp.csr_matrix((len(profile_ids), n)), profile_ids.astype(object)
    ts = np.asarray(log.timestamps, np.float64)
    cap = _history_cap()
    if cap is not None:  # the learner's rule for very long histories, applied before learning
        keep = cap(row, col, ts)
        row, col, log = row[keep], col[keep], log.take(keep)
        ts = ts[keep]
    key = row.astype(np.int64) * n + col
    order = np.lexsort((ts, key))
    key_s = key[order]
    starts = np.flatnonzero(np.r_[True, key_s[1:] != key_s[:-1]])
    strength = np.maximum.reduceat(np.asarray(log.completion, np.float64)[order], starts)
    last = np.r_[starts[1:], len(key_s)] - 1
    strength = np.where(log.liked[order][last] < 0, 0.0, strength)
    uk = key_s[starts]
    X = sp.csr_matrix((strength, (uk // n, uk % n)), shape=(len(profile_ids), n))
    X.eliminate_zeros()
    return X, profile_ids.astype(object)


# --------------------------------------------------------------------------- content vectors


def read_item_vectors(path: str | os.PathLike) -> ItemVectors:
    """Read content vectors per item: ``.npz`` with ``ids`` and ``vectors``, or a CSV.

    The CSV has an id column (``id``, ``item_id``, ``itemId`` or ``movieId``) and either one
    numeric column per dimension or a single column holding the vector as comma-separated
    numbers (quoted). Recognised by content: an ``.npz`` is a zip archive.

    Raises
    ------
    ReadError
        Malformed line, ragged or non-finite vectors, duplicate ids, no vectors.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as err:
        raise ReadError(path, None, f"cannot read ({err.strerror or err})") from None
    if magic == b"PK\x03\x04":
        ids, vectors = _vectors_npz(path)
    else:
        ids, vectors = _vectors_csv(path)
    if len(ids) == 0:
        raise ReadError(path, None, "no vectors")
    if not np.isfinite(vectors).all():
        r = int(np.flatnonzero(~np.isfinite(vectors).all(axis=1))[0])
        raise ReadError(path, None, f"vector of item {ids[r]!r} is not finite")
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise ReadError(path, None, f"duplicate item id {i!r}")
        seen.add(i)
    return ItemVectors(np.asarray(ids, dtype=object), vectors.astype(np.float32), path)


def _vectors_npz(path: str) -> tuple[list[str], np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            if "ids" not in z or "vectors" not in z:
                raise ReadError(path, None, f"an .npz of vectors needs arrays 'ids' and "
                                f"'vectors', has {sorted(z.files)}")
            ids, vec = z["ids"], z["vectors"]
    except ReadError:
        raise
    except (OSError, ValueError) as err:
        raise ReadError(path, None, f"not a readable .npz ({err})") from None
    if vec.ndim != 2 or len(ids) != len(vec) or vec.dtype.kind not in "fiu":
        raise ReadError(path, None, f"'vectors' must be numbers [len(ids), D], got {vec.dtype} "
                        f"{list(vec.shape)} for {len(ids)} ids")
    return [str(i) for i in ids.tolist()], vec.astype(np.float64)


def _vectors_csv(path: str) -> tuple[list[str], np.ndarray]:
    rows = _csv_rows(_read_text(path), path)
    try:
        _, header = next(rows)
    except StopIteration:
        raise ReadError(path, None, "empty file") from None
    names = [h.strip() for h in header]
    id_col = next((c for c, n in enumerate(names) if n in VECTOR_ID_COLUMNS), None)
    if id_col is None:
        raise ReadError(path, 1, f"no id column (one of {', '.join(VECTOR_ID_COLUMNS)}) in "
                        f"header {','.join(names)[:60]!r}")
    value_cols = [c for c in range(len(names)) if c != id_col]
    if not value_cols:
        raise ReadError(path, 1, "no vector columns besides the id")
    ids: list[str] = []
    vecs: list[list[float]] = []
    dim = None
    for line, row in rows:
        if len(row) != len(names):
            raise ReadError(path, line, f"expected {len(names)} fields, got {len(row)}")
        iid = row[id_col].strip()
        if not iid:
            raise ReadError(path, line, "empty item id")
        cells = [row[c] for c in value_cols]
        parts = cells[0].split(",") if len(cells) == 1 else cells
        v = [_float(p.strip(), path, line, "vector component") for p in parts]
        if dim is None:
            dim = len(v)
        elif len(v) != dim:
            raise ReadError(path, line, f"vector has {len(v)} components, the first had {dim}")
        ids.append(iid)
        vecs.append(v)
    return ids, np.asarray(vecs, np.float64).reshape(len(ids), dim or 0)
