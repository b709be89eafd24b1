"""The device bundle's format: its layout, its manifest, the opened :class:`Bundle`, and
:func:`write_bundle`. (Verification and opening: :mod:`device.bundle_verify`; transfer,
installation and rollback: :mod:`device.bundle_install`; synthetic bundles:
:mod:`device.bundle_synth`; :mod:`device.bundle` re-exports the public names.)

This module is the single definition of the bundle layout. A bundle is a flat directory:

=============================  ==========================================================
file                           content
=============================  ==========================================================
``manifest.json``              written last; describes and hashes every other file
``item_ids.npy``               ``<U{w}`` [N] external item ids (row order of every array)
``item_titles.npy``            ``<U`` [N] titles (memory-mapped, read per shown card)
``item_genres.npy``            int16 [N, G] codes into the manifest's ``genres`` list, -1 pad
``item_durations.npy``         float32 [N] seconds (> 0; NaN = unknown, schema 3)
``item_release.npy``           int64 [N] release order (larger = later; a rank or a time)
``item_cold.npy``              bool [N] no co-watch data yet (content model only)
``neighbours.npy``             int32 [N, K] neighbour rows, ``-1`` padding
``weights.npy``                float32 [N, K] neighbour weights, 0 at padding
``popularity.npy``             float32 [N] fallback score
``item_embeddings.npy``        int8 [N, D] content embeddings, ``float = int8 * scale``
``item_embedding_scales.npy``  float32 [N] per-row scale (only when the scale is per row)
``content_model.tflite``       the int8 content model (absent when ``manifest.model`` is null)
``item_series.npy``            ``<U`` [N] series name, ``""`` for none (optional, schema 3)
``item_season.npy``            int32 [N] season number, -1 for none (optional, schema 3)
``item_episode.npy``           int32 [N] episode number, -1 for none (optional, schema 3)
``item_maturity.npy``          int16 [N] minimum viewer age in years, -1 unrated (optional, 3)
=============================  ==========================================================

Schema 3 adds the four optional catalog columns (written when the producer has them:
``tvrec bundle build``) and unknown durations (NaN: a real catalog often has none; the box
counts such a programme as :data:`UNKNOWN_DURATION_S` long for playback and the history).
Schema 2 bundles open unchanged: without the files, :class:`BundleItems` has ``series`` etc.
set to None.

Every ``.npy`` is opened memory-mapped, so opening a 100k-item bundle reads only the manifest
and the ``.npy`` headers; pages are read when the scorer touches rows. Item titles and genres
(the only variable-length data) are JSON parsed on first access.

``manifest.json`` keys: ``format`` (``"tvrec-bundle"``), ``schema_version`` (int, see
:data:`SCHEMA_VERSION`), ``created`` (ISO 8601 UTC, ``...Z``), ``tvrec_version``, ``n_items``,
``k``, ``embedding_dim``, ``embedding_scale`` (a float, or ``"per_row"`` meaning
``item_embedding_scales.npy``), ``feature_config`` (:meth:`FeatureConfig.to_dict`),
``feature_fingerprint``, ``model`` (``{"file": "content_model.tflite", "io": {"inputs": [...],
"outputs": [...]}}`` -- each tensor's name, shape, dtype, scale, zero_point, see
:meth:`device.runtime.TFLiteModel.io_spec` -- or ``null`` for a CF-only bundle), ``extra``
(free JSON from the producer), optionally ``cold_start`` (``{"reads_genres": bool, ...}``:
how the cold items' embeddings were placed; with ``reads_genres`` the engine ranks New for you
on the embeddings alone, since they already read the genres) and ``files``: ``{name: {"sha256": hex, "bytes": int}}`` for every
file but the manifest.

``model: null`` is allowed: a bundle without a content model still recommends from CF and
popularity (cold items then get popularity only). :func:`synth_bundle` writes one when given
no model. Consumers that need the model check :attr:`Bundle.model_path` (None then).

Verification (:func:`open_bundle`) has three levels:

* ``"full"`` (``verify=True``): everything below plus the sha256 of every listed file, so the
  arrays are exactly what :func:`write_bundle` wrote -- and :func:`write_bundle` validated their
  content (neighbour rows in range, finite weights, ...). :func:`install_bundle`,
  :func:`unpack_bundle`, :func:`pack_bundle` and :func:`rollback` always verify fully.
* ``"sizes"``: manifest, schema, every listed file present with its recorded size, ``.npy``
  headers with the right dtype and shapes (N, K, D agree with the manifest), feature config,
  model magic bytes. Catches truncation, missing files and swapped arrays but not a flipped
  byte. For boot when the bundle was installed (fully verified) by this box.
* ``False``: as ``"sizes"`` without the size comparison.

``bench/bundle_open.py`` measures both (see README figures there).

Installation (:func:`install_bundle`) keeps versions side by side under a root::

    root/versions/<created>-<manifest sha256[:12]>/   one bundle per version
    root/current  -> versions/...                    what the box uses (symlink)
    root/previous -> versions/...                    what rollback() switches back to

A new bundle is copied into ``root/.staging-*``, fully verified, fsynced and renamed into
``versions/``; then the ``current`` link is replaced atomically (``current.tmp`` +
``os.replace``). A bundle that fails verification is refused and ``current`` is not touched.
Versions other than ``current`` and ``previous`` are deleted after a successful switch.
Installs and rollbacks on one root are serialised with a lock file (``root/.lock``).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Union

import numpy as np

from device.cf import PAD, ItemIndex, NeighbourTable, gather_rows, read_row
from device.errors import BundleError
from device.features import FeatureConfig

class _OnUse:
    """A module imported when first used. shutil, tarfile and tempfile (with bz2, lzma and
    random behind them: ~1.3 MB resident) serve packing and installing bundles, never the
    engine that only opens one."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        from importlib import import_module

        return getattr(import_module(self._name), attr)


shutil: Any = _OnUse("shutil")
tarfile: Any = _OnUse("tarfile")
tempfile: Any = _OnUse("tempfile")

PathLike = Union[str, "os.PathLike[str]"]

#: Written into every manifest; a reader refuses anything it does not list as supported.
SCHEMA_VERSION = 3
SUPPORTED_SCHEMA_VERSIONS = (2, 3)
FORMAT = "tvrec-bundle"

MANIFEST = "manifest.json"
MODEL = "content_model.tflite"
ITEM_IDS = "item_ids.npy"
ITEM_TITLES = "item_titles.npy"
ITEM_GENRES = "item_genres.npy"
ITEM_DURATIONS = "item_durations.npy"
ITEM_RELEASE = "item_release.npy"
ITEM_COLD = "item_cold.npy"
NEIGHBOURS = "neighbours.npy"
WEIGHTS = "weights.npy"
POPULARITY = "popularity.npy"
EMBEDDINGS = "item_embeddings.npy"
EMBEDDING_SCALES = "item_embedding_scales.npy"
ITEM_SERIES = "item_series.npy"
ITEM_SEASON = "item_season.npy"
ITEM_EPISODE = "item_episode.npy"
ITEM_MATURITY = "item_maturity.npy"
#: Optional catalog columns (schema 3): item column name -> (file, dtype, value for "none").
OPTIONAL_COLUMNS = {"series": (ITEM_SERIES, "U", ""), "season": (ITEM_SEASON, np.int32, -1),
                    "episode": (ITEM_EPISODE, np.int32, -1),
                    "maturity": (ITEM_MATURITY, np.int16, -1)}
#: How long the box takes a programme of unknown duration to be (seconds).
UNKNOWN_DURATION_S = 3600.0

#: Every file name the layout defines, besides the manifest.
FILES = (ITEM_IDS, ITEM_TITLES, ITEM_GENRES, ITEM_DURATIONS, ITEM_RELEASE, ITEM_COLD, NEIGHBOURS, WEIGHTS,
         POPULARITY, EMBEDDINGS, EMBEDDING_SCALES, MODEL, ITEM_SERIES, ITEM_SEASON, ITEM_EPISODE,
         ITEM_MATURITY)

_PER_ROW = "per_row"
_TFLITE_MAGIC = b"TFL3"  # flatbuffer file identifier, bytes 4..8 of every .tflite
_HASH_CHUNK = 1 << 20
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")  # flat, no '/', no leading dot

VerifyLevel = Union[bool, str]


# --------------------------------------------------------------------------- items


class _Titles(Sequence):
    """Read-only sequence of str over a ``<U`` column."""

    def __init__(self, column: np.ndarray):
        self._c = column

    def __len__(self) -> int:
        return len(self._c)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [str(x) for x in self._c[i]]
        # One title by pread: through the mapping, each read made up to 2 MB of a 100k-item
        # column resident (the kernel maps whole page-cache folios).
        return str(read_row(self._c, int(i)))


class _Genres(Sequence):
    """Read-only sequence of genre lists over an int16 code column and its vocabulary."""

    def __init__(self, codes: np.ndarray, vocab: list[str]):
        # A plain ndarray view of the mapping: np.memmap's per-item __getitem__ and
        # __array_finalize__ cost more than the decoding itself.
        self._c, self._v = np.asarray(codes), vocab

    def __len__(self) -> int:
        return len(self._c)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return [self._v[c] for c in np.asarray(self._c[i]).tolist() if c >= 0]


class BundleItems:
    """The item table of a bundle: ids and numeric columns memory-mapped, text loaded lazily.

    Attributes
    ----------
    ids : np.ndarray of str, shape (N,)
        External item id per row (memory-mapped ``<U`` array).
    durations : np.ndarray of float32, shape (N,)
        Seconds; NaN where the catalog did not say (:meth:`record` and the engine then use
        :data:`UNKNOWN_DURATION_S`).
    release : np.ndarray of int64, shape (N,)
        Release order, larger is later.
    cold : np.ndarray of bool, shape (N,)
        Items without co-watch data (no neighbours; the content model covers them).
    series : np.ndarray of str or None
        Series name per row, ``""`` for none; None when the bundle has no series column.
    season, episode : np.ndarray of int32 or None
        -1 for none; None without the column.
    maturity : np.ndarray of int16 or None
        Minimum viewer age in years, -1 unrated; None without the column.
    """

    def __init__(self, path: Path, ids: np.ndarray, durations: np.ndarray, release: np.ndarray,
                 cold: np.ndarray, label: str, titles: np.ndarray | None = None,
                 genre_codes: np.ndarray | None = None, genre_vocab: Sequence[str] = (),
                 optional: Mapping[str, np.ndarray] | None = None):
        self._path = path
        self._label = label
        self.ids = ids
        self.durations = durations
        self.release = release
        self.cold = cold
        self._titles = titles if titles is not None else ids
        self._genre_codes = genre_codes if genre_codes is not None else np.full((len(ids), 1), -1)
        self._genre_vocab = list(genre_vocab)
        optional = optional or {}
        self.series = optional.get("series")
        self.season = optional.get("season")
        self.episode = optional.get("episode")
        self.maturity = optional.get("maturity")

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.index

    @cached_property
    def titles(self) -> _Titles:
        """Title per row, read from the memory-mapped column on access (schema 2: a
        100k-item catalog's titles never become 100k Python objects)."""
        return _Titles(self._titles)

    @property
    def genre_codes(self) -> np.ndarray:
        """int16 ``[N, G]`` codes into :attr:`genre_vocab` (primary first, -1 padding)."""
        return self._genre_codes

    @property
    def genre_vocab(self) -> list[str]:
        """The genre names the codes index."""
        return self._genre_vocab

    @cached_property
    def genres(self) -> _Genres:
        """Genre list per row (primary first), decoded from the code column on access."""
        return _Genres(self._genre_codes, self._genre_vocab)

    @cached_property
    def index(self) -> ItemIndex:
        """id -> row map, built on first use (O(N)); pass it to :func:`device.cf.recommend`."""
        return ItemIndex(self.ids)

    def row(self, item_id: str) -> int:
        """Row of ``item_id``, -1 if the bundle does not know it."""
        return int(self.index.rows([item_id])[0])

    def record(self, row: int) -> dict[str, Any]:
        """Row ``row`` as a dict for :meth:`device.history.History.upsert_items`."""
        d = float(self.durations[row])
        return {"id": str(read_row(self.ids, int(row))), "title": self.titles[row],
                "genres": list(self.genres[row]),
                "duration": d if d > 0 else UNKNOWN_DURATION_S}  # NaN > 0 is False

    def records(self) -> list[dict[str, Any]]:
        """Every item as :meth:`record` dicts (catalog sync into the history database)."""
        return [self.record(r) for r in range(len(self.ids))]


# --------------------------------------------------------------------------- bundle


@dataclass(frozen=True)
class Bundle:
    """An opened (and verified) bundle. Arrays are memory-mapped: keep the object alive.

    Attributes
    ----------
    path : Path
        The bundle directory (resolved: the version folder, not the ``current`` link).
    manifest : dict
        The parsed ``manifest.json``.
    feature_config : FeatureConfig
        The preprocessing the content model was trained with.
    items : BundleItems
        Ids, durations, release order, cold flags; titles and genres on demand.
    table : NeighbourTable
        The CF model over memory-mapped ``neighbours`` / ``weights`` / ``popularity``.
    embeddings : np.memmap of int8, shape (N, D)
        Quantised item content embeddings; :meth:`embedding` dequantises rows.
    embedding_scale : float or np.ndarray of float32, shape (N,)
        ``float = int8 * scale`` (one scale, or one per row).
    model_path : Path or None
        ``content_model.tflite``, None for a bundle without a model (``manifest.model`` null).
    verified : str
        The verification done when opening: ``"full"``, ``"sizes"`` or ``"none"``.
    """

    path: Path
    manifest: dict
    feature_config: FeatureConfig
    items: BundleItems
    table: NeighbourTable
    embeddings: np.ndarray
    embedding_scale: Any
    model_path: Path | None
    verified: str

    @property
    def n_items(self) -> int:
        return int(self.manifest["n_items"])

    @property
    def k(self) -> int:
        return int(self.manifest["k"])

    @property
    def dim(self) -> int:
        return int(self.manifest["embedding_dim"])

    @property
    def model_io(self) -> dict | None:
        """Input/output shapes, dtypes and quantisation of the model (None without a model)."""
        model = self.manifest.get("model")
        return None if model is None else model["io"]

    def embedding(self, rows: Any) -> np.ndarray:
        """Dequantised float32 embeddings of ``rows`` (an int, a slice or an index array)."""
        if isinstance(rows, np.ndarray) and rows.dtype.kind in "iu":
            q = gather_rows(self.embeddings, rows).astype(np.float32)  # pread, see gather_rows
        else:
            q = np.asarray(self.embeddings[rows], dtype=np.float32)
        if isinstance(self.embedding_scale, np.ndarray):
            s = np.asarray(self.embedding_scale[rows], dtype=np.float32)
            return q * (s[..., None] if q.ndim == s.ndim + 1 else s)
        return q * np.float32(self.embedding_scale)

    def summary(self) -> str:
        """One line: size, K, D, model, fingerprint, created."""
        model = "no model"
        if self.model_io is not None:
            ins = ", ".join(f"{t['name']} {t['dtype']}{t['shape']}" for t in self.model_io["inputs"])
            model = f"model {ins}"
        return (f"{self.path}: tvrec bundle schema {self.manifest['schema_version']}, "
                f"{self.n_items} items ({int(np.count_nonzero(self.items.cold))} cold), "
                f"K={self.k}, D={self.dim}, {model}, features "
                f"{self.feature_config.fingerprint()[:12]}, created {self.manifest['created']}, "
                f"verified {self.verified}")


# --------------------------------------------------------------------------- helpers


def _reason(err: BaseException) -> str:
    """An exception as one short line (no newlines: CLI errors are one line)."""
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return " ".join(str(text).split())


def _sha256_file(path: Path) -> str:
    import hashlib  # OpenSSL's sha256 is faster for whole files; only full verification needs it

    h = hashlib.sha256()
    buf = bytearray(_HASH_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while True:
            n = fh.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    return h.hexdigest()


class _HashingWriter:
    """A write-only file that hashes and counts what goes through it (one pass per file)."""

    def __init__(self, path: Path):
        import hashlib

        self._fh = open(path, "wb")
        self.sha = hashlib.sha256()
        self.bytes = 0

    def write(self, data: Any) -> int:
        mv = memoryview(data).cast("B")
        self.sha.update(mv)
        self.bytes += len(mv)
        return self._fh.write(mv)

    def close(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # platforms without directory fds: rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso(created: Any) -> str:
    if created is None:
        return _now_iso()
    if isinstance(created, _dt.datetime):
        if created.tzinfo is None:
            raise ValueError("created must be timezone-aware (UTC)")
        return created.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = str(created)
    _parse_iso(text)
    return text


def _parse_iso(text: str) -> _dt.datetime:
    value = _dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return value


def _check_io(io: Any) -> str | None:
    """Why ``io`` is not a valid ``model.io`` dict, or None."""
    if not isinstance(io, Mapping):
        return "must be a dict with 'inputs' and 'outputs'"
    for side in ("inputs", "outputs"):
        tensors = io.get(side)
        if not isinstance(tensors, list) or not tensors:
            return f"needs a non-empty list '{side}'"
        for t in tensors:
            if not isinstance(t, Mapping) or not {"name", "shape", "dtype"} <= set(t):
                return f"each of '{side}' needs name, shape and dtype"
            if not isinstance(t["shape"], list) or not all(isinstance(d, int) for d in t["shape"]):
                return f"{side} {t.get('name')!r}: shape must be a list of ints"
    return None


# --------------------------------------------------------------------------- write


def _item_columns(items: Any, label: str) -> dict[str, Any]:
    """Normalise ``items`` (columns dict or list of row dicts) to validated columns."""
    if isinstance(items, Mapping):
        cols = dict(items)
        if "ids" not in cols:
            raise BundleError(f"{label}: items needs an 'ids' column")
    elif isinstance(items, Sequence) and not isinstance(items, (str, bytes)):
        rows = list(items)
        try:
            cols = {"ids": [r["id"] for r in rows]}
        except (KeyError, TypeError):
            raise BundleError(f"{label}: every item row needs an 'id'") from None
        for col, key in (("titles", "title"), ("genres", "genres"), ("durations", "duration"),
                         ("release", "release"), ("cold", "cold"), *((c, c) for c in OPTIONAL_COLUMNS)):
            if any(key in r for r in rows):
                if not all(key in r for r in rows):
                    raise BundleError(f"{label}: some item rows lack '{key}'")
                cols[col] = [r[key] for r in rows]
    else:
        raise BundleError(f"{label}: items must be a dict of columns or a list of item dicts")
    unknown = sorted(set(cols) - {"ids", "titles", "genres", "durations", "release", "cold",
                                  *OPTIONAL_COLUMNS})
    if unknown:
        raise BundleError(f"{label}: unknown item column(s) {unknown}")

    ids = [str(i) for i in cols["ids"]]
    n = len(ids)
    if n == 0:
        raise BundleError(f"{label}: a bundle needs at least one item")
    if any(not i for i in ids):
        raise BundleError(f"{label}: empty item id")
    if len(set(ids)) != n:
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))
        raise BundleError(f"{label}: duplicate item id {dup!r}")

    def column(name: str, default: Any) -> Any:
        value = cols.get(name)
        if value is None:
            return default
        if len(value) != n:
            raise BundleError(f"{label}: items column '{name}' has {len(value)} entries, ids {n}")
        return value

    titles = [str(t) for t in column("titles", ids)]
    genres = [[str(g) for g in gs] for gs in column("genres", [[] for _ in range(n)])]
    if "durations" not in cols:
        raise BundleError(f"{label}: items need durations (seconds > 0, NaN for unknown)")
    durations = np.asarray(column("durations", None), dtype=np.float32)
    bad = ~((np.isfinite(durations) & (durations > 0)) | np.isnan(durations))
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise BundleError(f"{label}: item {ids[r]!r} has duration {durations[r]} (need > 0 s, "
                          "or NaN for unknown)")
    release = np.asarray(column("release", np.arange(n)), dtype=np.int64)
    cold = np.asarray(column("cold", np.zeros(n, dtype=bool)), dtype=bool)
    out = {"ids": ids, "titles": titles, "genres": genres, "durations": durations,
           "release": release, "cold": cold}
    for name, (_, dtype, _none) in OPTIONAL_COLUMNS.items():
        if cols.get(name) is None:
            continue
        if dtype == "U":
            out[name] = np.asarray([str(v) for v in column(name, None)], dtype=str)
            continue
        try:
            values = np.asarray(column(name, None), dtype=np.float64)
        except (TypeError, ValueError):
            raise BundleError(f"{label}: items column '{name}' must hold whole numbers") from None
        if not np.isfinite(values).all() or (values != np.round(values)).any() \
                or values.min(initial=0) < -1 or values.max(initial=0) > np.iinfo(dtype).max:
            raise BundleError(f"{label}: items column '{name}' must hold whole numbers >= -1")
        out[name] = values.astype(dtype)
    return out


def write_bundle(
    out_dir: PathLike,
    *,
    items: Any,
    neighbours: np.ndarray,
    weights: np.ndarray,
    popularity: np.ndarray,
    item_embeddings_int8: np.ndarray,
    embedding_scale: float | np.ndarray,
    model_bytes: bytes | None,
    feature_config: FeatureConfig | Mapping[str, Any],
    model_io: Mapping[str, Any] | None,
    created: Any = None,
    extra: Mapping[str, Any] | None = None,
    cold_start: Mapping[str, Any] | None = None,
) -> Path:
    """Validate the arrays and write them as a bundle directory, atomically.

    Everything is written into a temporary folder beside ``out_dir`` (``.<name>.tmp-*``),
    ``manifest.json`` last, every file and the folder fsynced, then the folder is renamed to
    ``out_dir``: a crash leaves no bundle under the final name (at most a temporary folder
    without a manifest, which :func:`open_bundle` refuses).

    Parameters
    ----------
    out_dir : path
        The bundle folder to create; it must not exist (or be an empty folder).
    items : dict of columns or list of dicts
        Columns ``ids`` (str, unique), ``durations`` (seconds > 0, NaN unknown), optional
        ``titles`` (default: the id), ``genres`` (lists of str), ``release`` (int order,
        default row order), ``cold`` (bool), ``series`` (str, "" none), ``season``,
        ``episode`` (int, -1 none), ``maturity`` (minimum age, -1 unrated); or rows with keys
        ``id``, ``duration``, ``title``, ``genres``, ``release``, ``cold`` and the optional
        names. Row order is the order of every array.
    neighbours : int array [N, K]
        Neighbour rows in ``[0, N)``, ``-1`` padding.
    weights : float array [N, K]
        Finite, 0 at padding.
    popularity : float array [N]
        Finite.
    item_embeddings_int8 : int8 array [N, D]
    embedding_scale : float or float array [N]
        ``float = int8 * scale``; finite and >= 0.
    model_bytes : bytes or None
        The ``.tflite`` flatbuffer; None writes a CF-only bundle (``manifest.model`` null).
    feature_config : FeatureConfig or its dict
    model_io : dict or None
        ``{"inputs": [...], "outputs": [...]}`` (name, shape, dtype, scale, zero_point per
        tensor; :func:`device.runtime.describe_io` computes it). Required with a model.
    created : datetime (aware) or ISO 8601 str, optional
        Default: now, UTC.
    extra : dict, optional
        Free JSON-able data from the producer (e.g. training run, metrics).
    cold_start : dict, optional
        How cold items were placed, read by the engine (``reads_genres``: the embeddings
        already read the genres, so New for you does not add them again).

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    BundleError
        Inconsistent or invalid inputs, or ``out_dir`` already holds something.
    """
    out = Path(out_dir)
    label = str(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BundleError(f"{label}: already exists and is not an empty folder")

    cols = _item_columns(items, label)
    n = len(cols["ids"])
    nb = np.asarray(neighbours)
    w = np.asarray(weights)
    pop = np.asarray(popularity)
    emb = np.asarray(item_embeddings_int8)
    if nb.ndim != 2 or nb.shape[0] != n or nb.shape[1] < 1:
        raise BundleError(f"{label}: neighbours has shape {nb.shape}, expected ({n}, K>=1)")
    k = nb.shape[1]
    if not np.issubdtype(nb.dtype, np.integer):
        raise BundleError(f"{label}: neighbours must be integers, got {nb.dtype}")
    if nb.size and (nb.min() < PAD or nb.max() >= n):
        raise BundleError(f"{label}: neighbours has rows outside [-1, {n})")
    if w.shape != (n, k):
        raise BundleError(f"{label}: weights has shape {w.shape}, expected {(n, k)}")
    w = w.astype(np.float32)
    if not np.isfinite(w).all():
        raise BundleError(f"{label}: weights has non-finite values")
    if (w[nb == PAD] != 0).any():
        raise BundleError(f"{label}: weights must be 0 where neighbours is padding (-1)")
    if pop.shape != (n,) or not np.isfinite(pop.astype(np.float64)).all():
        raise BundleError(f"{label}: popularity must be {n} finite values, got shape {pop.shape}")
    if emb.dtype != np.int8 or emb.ndim != 2 or emb.shape[0] != n or emb.shape[1] < 1:
        raise BundleError(f"{label}: item_embeddings_int8 must be int8 ({n}, D), "
                          f"got {emb.dtype} {emb.shape}")
    dim = emb.shape[1]
    if np.ndim(embedding_scale) == 0:
        scale_value: Any = float(embedding_scale)
        scale_arr = None
        if not (np.isfinite(scale_value) and scale_value >= 0):
            raise BundleError(f"{label}: embedding_scale {scale_value} must be finite and >= 0")
    else:
        scale_arr = np.asarray(embedding_scale, dtype=np.float32)
        scale_value = _PER_ROW
        if scale_arr.shape != (n,) or not (np.isfinite(scale_arr) & (scale_arr >= 0)).all():
            raise BundleError(f"{label}: embedding_scale must be a float or {n} finite "
                              f"values >= 0, got shape {scale_arr.shape}")
    if isinstance(feature_config, FeatureConfig):
        cfg = feature_config
    else:
        try:
            cfg = FeatureConfig.from_dict(dict(feature_config))
        except (TypeError, ValueError) as err:
            raise BundleError(f"{label}: feature_config is invalid ({_reason(err)})") from None
    if model_bytes is not None:
        model_bytes = bytes(model_bytes)
        if model_bytes[4:8] != _TFLITE_MAGIC:
            raise BundleError(f"{label}: model_bytes is not a TFLite flatbuffer")
        why = _check_io(model_io)
        if why:
            raise BundleError(f"{label}: model_io {why}")
    elif model_io is not None:
        raise BundleError(f"{label}: model_io given without model_bytes")
    created_s = _iso(created)

    from device._version import __version__

    vocab = sorted({g for gs in cols["genres"] for g in gs})
    code = {g: c for c, g in enumerate(vocab)}
    width = max([1] + [len(gs) for gs in cols["genres"]])
    genre_codes = np.full((n, width), -1, dtype=np.int16)
    for r, gs in enumerate(cols["genres"]):
        genre_codes[r, : len(gs)] = [code[g] for g in gs]

    manifest: dict[str, Any] = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "created": created_s,
        "tvrec_version": __version__,
        "n_items": n,
        "k": k,
        "embedding_dim": dim,
        "embedding_scale": scale_value,
        "feature_config": cfg.to_dict(),
        "feature_fingerprint": cfg.fingerprint(),
        "genres": vocab,
        "model": None if model_bytes is None else {"file": MODEL, "io": json.loads(
            json.dumps(model_io))},
        "extra": dict(extra) if extra is not None else {},
        "files": {},
    }
    if cold_start is not None:
        if not isinstance(cold_start, Mapping):
            raise BundleError(f"{label}: cold_start must be a dict")
        manifest["cold_start"] = json.loads(json.dumps(dict(cold_start)))
    try:
        json.dumps(manifest["extra"])
    except (TypeError, ValueError) as err:
        raise BundleError(f"{label}: extra is not JSON-able ({_reason(err)})") from None

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        files: dict[str, dict[str, Any]] = {}

        def put(name: str, writer_fn: Any) -> None:
            hw = _HashingWriter(tmp / name)
            try:
                writer_fn(hw)
            finally:
                hw.close()
            files[name] = {"sha256": hw.sha.hexdigest(), "bytes": hw.bytes}

        def put_npy(name: str, arr: np.ndarray) -> None:
            put(name, lambda fh: np.lib.format.write_array(
                fh, np.ascontiguousarray(arr), allow_pickle=False))

        put_npy(ITEM_IDS, np.asarray(cols["ids"], dtype=str))
        put_npy(ITEM_TITLES, np.asarray(cols["titles"], dtype=str))
        put_npy(ITEM_GENRES, genre_codes)
        put_npy(ITEM_DURATIONS, cols["durations"])
        put_npy(ITEM_RELEASE, cols["release"])
        put_npy(ITEM_COLD, cols["cold"])
        for name, (fname, _, _none) in OPTIONAL_COLUMNS.items():
            if name in cols:
                put_npy(fname, cols[name])
        put_npy(NEIGHBOURS, nb.astype(np.int32))
        put_npy(WEIGHTS, w)
        put_npy(POPULARITY, pop.astype(np.float32))
        put_npy(EMBEDDINGS, emb)
        if scale_arr is not None:
            put_npy(EMBEDDING_SCALES, scale_arr)
        if model_bytes is not None:
            put(MODEL, lambda fh: fh.write(model_bytes))
        manifest["files"] = files
        put(MANIFEST, lambda fh: fh.write(
            (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode("utf-8")))
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the UI may run as another user
        _fsync_dir(tmp)
        os.rename(tmp, out)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError):
            raise BundleError(f"{label}: cannot write bundle ({_reason(err)})") from None
        raise
    _fsync_dir(out.parent)
    return out
