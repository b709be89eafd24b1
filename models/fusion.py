"""The CNN/LSTM fusion content model: media -> a D-dim embedding that predicts co-watching.

A new programme has no viewing logs, so item-item CF (``models/cowatch.py``) cannot recommend
it. This model looks at what the box can always compute for a programme -- ``F`` keyframes and a
log-mel window, through the one preprocessing path (:mod:`device.media`, :mod:`device.features`)
-- and maps it into the space of the items' *collaborative* representations (see
:func:`cf_targets`), so that a cold item lands near the warm items the same people watch.

Architecture (fixed input shapes, builtin ops only, so that a concrete function with a fixed
batch converts to TFLite with the fused ``UNIDIRECTIONAL_SEQUENCE_LSTM`` and no Flex ops)::

    frames [B, F, S, S, 3] float32 in [-1, 1]   (device.features.normalize_frames)
      -> reshape to [B*F, S, S, 3]              (frames folded into the batch; no TimeDistributed)
      -> conv 3x3/2 + 4 depthwise-separable blocks (DepthwiseConv2D + BN + ReLU, 1x1 Conv2D + BN
         + ReLU), global average pooling           -> [B*F, C]
      -> reshape to [B, F, C], mean over frames    -> [B, C]
    logmel [B, T, M] float32                     (device.features.normalize_logmel)
      -> average 4 frames per step, LSTM(units), last state -> [B, units]
    statistics (no parameters): per-keyframe mean and mean squared colour, keyframe-to-keyframe
      motion; per-band mean and mean squared log-mel level and flux -- each group batch-normalised
    Dense(video) + Dense(audio) + Dense(statistics) (added, see below) -> ReLU -> Dropout
      -> Dense(D) -> L2 normalise -> embedding [B, D]

Why these choices:

* Inputs are the *normalised* features (floats), not uint8: the box calls the same two numpy
  functions of :mod:`device.features` that training calls, so there is one normalisation, and the
  model's first op is a conv whose int8 input range (scale 1/127.5, symmetric) loses nothing.
* Folding frames into the batch keeps every conv an ordinary ``Conv2D``/``DepthwiseConv2D`` that
  TFMOT can annotate (``quantize_model`` rejects ``TimeDistributed``); the reshapes are
  ``tf.reshape`` ops (Keras ``TFOpLambda`` layers), not custom layers.
* Depthwise-separable convs: ~30k parameters and ~5 MMAC per 96x96 frame, a few ms per clip on a
  box. BatchNorm folds into the convs at conversion.
* The LSTM is a plain ``keras.layers.LSTM`` (stateless, unroll=False, no masking: every clip has
  exactly ``T`` frames), which the converter fuses.
* The statistics paths carry what the deep branches, trained on ~400 items, overfit before
  learning (palette, pace, spectral shape). Each stream has its own Dense and the results are
  added rather than concatenated first: an int8 tensor has one scale, and a concatenation
  would make small-valued features (motion, pooled CNN activations) share it with unit-range
  ones.
* The embedding is L2-normalised: training regresses it onto unit-norm CF targets by cosine, and
  the box ranks by dot products.

An auxiliary genre head (softmax over genres, trained against the item's genre mixture) sits on
the embedding in the *training* model only; :func:`build_fusion_model` returns the embedder that
is exported, :func:`build_training_model` wraps it.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import dataclasses  # noqa: E402
import json  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from device.features import FeatureConfig, normalize_frames, normalize_logmel  # noqa: E402

#: Default embedding size (what the box stores per item).
DEFAULT_DIM = 32


@dataclass(frozen=True)
class FusionConfig:
    """Architecture hyperparameters; recorded in ``model/config.json`` next to the weights.

    Attributes
    ----------
    dim : int
        Embedding size D.
    stem : int
        Channels of the first (full) 3x3/2 conv.
    blocks : tuple of (channels, stride)
        Depthwise-separable blocks of the video tower.
    lstm_units : int
        Units of the audio LSTM.
    video_stats, audio_stats : bool
        Also feed the fusion parameter-free statistics of the inputs (on by default): each
        keyframe's mean and mean squared colour and the motion between keyframes; each mel
        band's mean and mean squared level and its flux (:func:`_video_statistics`,
        :func:`_audio_statistics`). Without them the deep branches overfit the ~400 warm demo
        items within two epochs (cold-start NDCG@20 0.24, below the genre-label baseline's
        0.48); with them the model passes it. They once seemed to break TFLite parity; the
        cause was the converted LSTM's state tensors carrying over from one clip to the next
        (fixed in :meth:`device.runtime.TFLiteModel.run`), not these paths.
    deep_dropout : float
        Dropout on the pooled CNN features and the LSTM state before the fusion (training
        only): the deep branches are the ones that overfit.
    audio_pool : int
        Log-mel frames averaged into one LSTM step (4: 128 frames of 32 ms -> 32 steps of
        128 ms). The integer LSTM kernel costs ~10x the float one per step on x86 (it runs
        int16 gate arithmetic outside XNNPACK; ``export/parity.py`` measures it), so fewer,
        coarser steps are what makes the int8 model affordable; 128 ms still resolves beats
        and syllables.
    hidden : int
        Width of the fusion dense layer.
    dropout : float
        Dropout before the embedding layer (training only).
    n_genres : int
        Size of the auxiliary genre head (0: no head).
    """

    dim: int = DEFAULT_DIM
    stem: int = 16
    blocks: tuple = ((32, 2), (64, 2), (96, 2), (128, 2))
    lstm_units: int = 48
    audio_pool: int = 4
    audio_stats: bool = True
    video_stats: bool = True
    hidden: int = 192
    dropout: float = 0.2
    deep_dropout: float = 0.3
    n_genres: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["blocks"] = [list(b) for b in self.blocks]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FusionConfig:
        d = dict(d)
        if "blocks" in d:
            d["blocks"] = tuple(tuple(int(v) for v in b) for b in d["blocks"])
        return cls(**d)


def _keras():
    import tf_keras as keras

    return keras


def build_fusion_model(cfg: FeatureConfig | None = None, fcfg: FusionConfig | None = None,
                       *, batch_size: int | None = None):
    """The embedder: ``{"frames": [B,F,S,S,3], "logmel": [B,T,M]} -> embedding [B, D]``.

    Parameters
    ----------
    cfg : FeatureConfig
        Fixes F, S, T and M.
    fcfg : FusionConfig
        Architecture.
    batch_size : int, optional
        Fix the batch dimension (export uses 1); None leaves it dynamic (training).

    Returns
    -------
    tf_keras.Model
        Layers are named ``video_*``, ``audio_*`` and ``fusion_*`` (see :func:`branch_params`).
    """
    import tensorflow as tf

    keras = _keras()
    L = keras.layers
    cfg = cfg or FeatureConfig()
    fcfg = fcfg or FusionConfig()
    F, S, T, M = cfg.frames, cfg.size, cfg.n_frames, cfg.n_mels

    frames = keras.Input((F, S, S, 3), batch_size=batch_size, name="frames", dtype="float32")
    logmel = keras.Input((T, M), batch_size=batch_size, name="logmel", dtype="float32")

    # ---- video: frames folded into the batch, one conv tower for all of them
    folded = tf.reshape(frames, (-1, S, S, 3), name="video_fold")
    x = L.Conv2D(fcfg.stem, 3, strides=2, padding="same", use_bias=False, name="video_stem")(folded)
    x = L.BatchNormalization(name="video_stem_bn")(x)
    x = L.ReLU(name="video_stem_relu")(x)
    for k, (ch, stride) in enumerate(fcfg.blocks):
        x = L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"video_dw{k}")(x)
        x = L.BatchNormalization(name=f"video_dw{k}_bn")(x)
        x = L.ReLU(name=f"video_dw{k}_relu")(x)
        x = L.Conv2D(ch, 1, use_bias=False, name=f"video_pw{k}")(x)
        x = L.BatchNormalization(name=f"video_pw{k}_bn")(x)
        x = L.ReLU(name=f"video_pw{k}_relu")(x)
    x = L.GlobalAveragePooling2D(name="video_gap")(x)  # [B*F, C]
    x = tf.reshape(x, (-1, F, fcfg.blocks[-1][0]), name="video_unfold")  # [B, F, C]
    video = L.GlobalAveragePooling1D(name="video_frame_mean")(x)  # mean over frames

    # ---- audio: one LSTM over the normalised log-mel, last state
    a = logmel
    if fcfg.audio_pool > 1:
        a = L.AveragePooling1D(fcfg.audio_pool, name="audio_pool")(a)
    audio = L.LSTM(fcfg.lstm_units, name="audio_lstm")(a)

    # ---- fusion. The deep features and the (batch-normalised, ~unit range) statistics each
    # get their own Dense projection and the projections are *added* -- the same function as one
    # Dense over their concatenation, but an int8 CONCATENATION shares one scale between its
    # inputs, which would crush the CNN's small pooled activations next to unit-range statistics.
    streams = [L.Dropout(fcfg.deep_dropout, name="video_deep_dropout")(video),
               L.Dropout(fcfg.deep_dropout, name="audio_deep_dropout")(audio)]
    names = ["fusion_video", "fusion_audio"]
    stats = (_video_statistics(tf, L, folded, F, S) if fcfg.video_stats else []) + \
        (_audio_statistics(tf, L, a) if fcfg.audio_stats else [])
    if stats:
        streams.append(stats[0] if len(stats) == 1 else L.Concatenate(name="fusion_stats")(stats))
        names.append("fusion_stats_dense")
    parts = [L.Dense(fcfg.hidden, use_bias=(k == 0), name=n)(t) for k, (n, t) in enumerate(zip(names, streams))]
    h = parts[0] if len(parts) == 1 else L.Add(name="fusion_add")(parts)
    h = L.ReLU(name="fusion_relu")(h)
    h = L.Dropout(fcfg.dropout, name="fusion_dropout")(h)
    e = L.Dense(fcfg.dim, name="fusion_embed")(h)
    e = L.UnitNormalization(axis=-1, name="embedding")(e)
    return keras.Model({"frames": frames, "logmel": logmel}, e, name="fusion")


def _video_statistics(tf, L, folded, F: int, S: int):
    """Parameter-free picture statistics -> ``[B, 6F]`` palette and ``[B, F-1]`` motion.

    The palette, brightness and pace of a programme are what its style is drawn with
    (``models/synth_media.py``), and a small CNN trained on ~400 items overfits long before it
    learns them; so they also reach the fusion directly:

    * palette: each keyframe's mean colour and mean squared colour (``MEAN`` of ``x`` and
      ``x * x``: no ``sqrt``/``moments``, whose variance near 0 has an unbounded derivative);
    * motion: mean absolute change between consecutive keyframes on a 4x-pooled picture.

    Builtin ops only (``MEAN``, ``MUL``, ``AVERAGE_POOL_2D``, ``STRIDED_SLICE``, ``SUB``,
    ``ABS``, ``RESHAPE``), float and int8 alike. Motion (~0.05) and palette (~1) are batch-
    normalised *separately* (a per-feature scale at inference): an int8 tensor has one scale, so
    the two must not share a tensor before their ranges are equalised.
    """
    colour = L.GlobalAveragePooling2D(name="video_colour")(folded)  # [B*F, 3]
    colour_sq = L.GlobalAveragePooling2D(name="video_colour_sq")(L.Multiply(name="video_square")([folded, folded]))
    palette = tf.reshape(L.Concatenate(name="video_palette_cat")([colour, colour_sq]), (-1, F * 6),
                         name="video_palette_unfold")
    small = L.AveragePooling2D(4, name="video_motion_pool")(folded)  # [B*F, S/4, S/4, 3]
    seq = tf.reshape(small, (-1, F, (S // 4) * (S // 4) * 3), name="video_motion_seq")
    diff = L.Subtract(name="video_motion_diff")([seq[:, 1:], seq[:, :-1]])
    motion = L.GlobalAveragePooling1D(data_format="channels_first", name="video_motion")(tf.abs(diff))
    return [L.BatchNormalization(name="video_palette_bn")(palette),
            L.BatchNormalization(name="video_motion_bn")(motion)]


def _audio_statistics(tf, L, a):
    """Per mel band over the (pooled) clip: mean level, mean squared level and mean absolute
    change between steps (spectral flux: tempo and articulation), batch-normalised together
    (their ranges are alike). ``a`` is ``[B, steps, M]``."""
    band = L.GlobalAveragePooling1D(name="audio_band_mean")(a)
    band_sq = L.GlobalAveragePooling1D(name="audio_band_sq")(L.Multiply(name="audio_square")([a, a]))
    flux = L.GlobalAveragePooling1D(name="audio_flux")(tf.abs(a[:, 1:] - a[:, :-1]))
    stats = L.Concatenate(name="audio_stats_cat")([band, band_sq, flux])
    return [L.BatchNormalization(name="audio_stats_bn")(stats)]

#: The student branch outputs that distillation shapes (and reports on): the video tower's
#: frame-mean pooled features and the audio LSTM's last state, both inside the shipped model.
BRANCH_OUTPUTS = {"video": "video_frame_mean", "audio": "audio_lstm"}


def build_training_model(embedder, n_genres: int, branches: bool = False):
    """Wrap the embedder for training: outputs ``[embedding, genre_logits?, video?, audio?]``.

    ``n_genres > 0`` adds the auxiliary genre head; ``branches`` also outputs the two branch
    features of :data:`BRANCH_OUTPUTS` (the distillation loss reads them). Neither is exported.
    """
    keras = _keras()
    e = embedder.outputs[0]
    outputs = [e]
    if n_genres > 0:
        outputs.append(keras.layers.Dense(n_genres, name="genre_head")(e))
    if branches:
        outputs += [embedder.get_layer(name).output for name in BRANCH_OUTPUTS.values()]
    return keras.Model(embedder.inputs, outputs, name="fusion_train")


def branch_embedders(model):
    """Keras sub-models ``{"video": frames -> [B, C], "audio": logmel -> [B, units]}`` of the
    embedder, sharing its weights (what distillation is measured on)."""
    keras = _keras()
    inputs = {t.name.split(":")[0]: t for t in model.inputs}
    return {"video": keras.Model(inputs["frames"], model.get_layer(BRANCH_OUTPUTS["video"]).output,
                                 name="video_branch"),
            "audio": keras.Model(inputs["logmel"], model.get_layer(BRANCH_OUTPUTS["audio"]).output,
                                 name="audio_branch")}


def branch_params(model) -> dict[str, int]:
    """Parameter counts per branch (by layer-name prefix), plus the total."""
    out = {"video": 0, "audio": 0, "fusion": 0, "other": 0}
    for layer in model.layers:
        n = int(sum(np.prod(w.shape) for w in layer.weights))
        prefix = layer.name.split("_")[0]
        key = prefix if prefix in out else ("fusion" if layer.name == "embedding" else "other")
        out[key] += n
    out["total"] = int(sum(v for k, v in out.items()))
    return out


def model_inputs(frames: np.ndarray, logmel: np.ndarray, cfg: FeatureConfig) -> dict[str, np.ndarray]:
    """Stored features ``(uint8 [N,F,S,S,3], float32 [N,T,M])`` -> the model's input dict.

    The same two :mod:`device.features` functions the box calls; log-mel is standardised per clip.
    """
    f = normalize_frames(frames)
    lm = np.stack([normalize_logmel(x, cfg) for x in np.asarray(logmel)]) if len(logmel) else \
        np.zeros((0, cfg.n_frames, cfg.n_mels), np.float32)
    return {"frames": f, "logmel": lm}


def embed(model, frames: np.ndarray, logmel: np.ndarray, cfg: FeatureConfig,
          batch_size: int = 32) -> np.ndarray:
    """Embeddings ``float32 [N, D]`` of stored features, in inference mode, batch by batch."""
    out = []
    for lo in range(0, len(frames), batch_size):
        x = model_inputs(frames[lo : lo + batch_size], logmel[lo : lo + batch_size], cfg)
        out.append(np.asarray(model(x, training=False)))
    if not out:
        return np.zeros((0, model.output_shape[-1]), np.float32)
    return np.concatenate(out).astype(np.float32)


# --------------------------------------------------------------------------- save / load


@dataclass
class SavedModelInfo:
    """What ``model/config.json`` records."""

    feature_config: dict
    fusion_config: dict
    inputs: dict = field(default_factory=dict)
    output: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    weights: str = "weights.h5"
    keras_model: str = "embedder.h5"


def save_model(model, model_dir: str | os.PathLike, cfg: FeatureConfig, fcfg: FusionConfig) -> Path:
    """Write the embedder to ``model_dir``: weights, a full Keras H5 model and ``config.json``.

    ``config.json`` holds the FeatureConfig (its ``to_dict()`` and fingerprint), the
    architecture, the input/output shapes and dtypes, and the parameter counts per branch.
    :func:`load_model` rebuilds the architecture from it and loads the weights (no
    deserialisation of Python code).
    """
    d = Path(model_dir)
    d.mkdir(parents=True, exist_ok=True)
    model.save_weights(str(d / "weights.h5"))
    model.save(str(d / "embedder.h5"), include_optimizer=False)
    info = {
        "format": "tvrec-fusion/1",
        "feature_config": cfg.to_dict(),
        "feature_fingerprint": cfg.fingerprint(),
        "fusion_config": fcfg.to_dict(),
        "dim": fcfg.dim,
        "inputs": {
            "frames": {"shape": [None, cfg.frames, cfg.size, cfg.size, 3], "dtype": "float32",
                       "preprocess": "device.features.normalize_frames (uint8 -> [-1, 1])"},
            "logmel": {"shape": [None, cfg.n_frames, cfg.n_mels], "dtype": "float32",
                       "preprocess": "device.features.normalize_logmel (per clip)"},
        },
        "output": {"name": "embedding", "shape": [None, fcfg.dim], "dtype": "float32",
                   "l2_normalised": True},
        "params": branch_params(model),
        "weights": "weights.h5",
        "keras_model": "embedder.h5",
    }
    tmp = d / "config.json.tmp"
    tmp.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, d / "config.json")
    return d


def load_model(model_dir: str | os.PathLike, *, batch_size: int | None = None):
    """Rebuild the embedder from ``model_dir/config.json`` and load its weights.

    Returns
    -------
    (model, FeatureConfig, FusionConfig)
    """
    from device.errors import DataFormatError

    d = Path(model_dir)
    try:
        info = json.loads((d / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFormatError(f"{d / 'config.json'}: no model config (not a trained model folder)") from None
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{d / 'config.json'}:{err.lineno}: not valid JSON ({err.msg})") from None
    cfg = FeatureConfig.from_dict(info["feature_config"])
    fcfg = FusionConfig.from_dict(info["fusion_config"])
    model = build_fusion_model(cfg, fcfg, batch_size=batch_size)
    model.load_weights(str(d / info.get("weights", "weights.h5")))
    return model, cfg, fcfg


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of :func:`fit_fusion` (recorded in the report).

    The loss is ``cosine + nce_weight * InfoNCE + genre_weight * genre`` where *cosine* is
    ``1 - cos(embedding, target)``, *InfoNCE* the in-batch contrastive loss (each clip must pick
    its own target among the batch's, temperature ``temperature``) and *genre* the softmax
    cross-entropy of the genre head against the item's genre mixture. With teachers
    (:func:`fit_fusion`'s ``teachers``), ``teacher_weight`` times the similarity-preserving
    distillation loss is added (the mean over the two branches), on the catalog batch and, when
    there are unlabelled recordings, on their batch too.
    """

    epochs: int = 60
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    nce_weight: float = 0.5
    genre_weight: float = 0.3
    temperature: float = 0.1
    patience: int = 8
    val_fraction: float = 0.15
    flip: bool = True
    threads: int = 2
    teacher_weight: float = 2.0


def configure_tensorflow(seed: int, threads: int = 2) -> None:
    """Seed Python/numpy/TF, make ops deterministic, cap TF at ``threads`` threads."""
    import tensorflow as tf

    keras = _keras()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # TF already initialised in this process (e.g. a second run): keep its pools
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(seed)


def fit_fusion(
    frames: np.ndarray,
    logmel: np.ndarray,
    targets: np.ndarray,
    genre_mix: np.ndarray | None,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    cfg: FeatureConfig,
    fcfg: FusionConfig,
    tcfg: TrainConfig = TrainConfig(),
    *,
    teachers: dict[str, np.ndarray] | None = None,
    unlabelled: dict[str, np.ndarray] | None = None,
    seed: int = 0,
    progress: bool = True,
):
    """Train the embedder to predict ``targets`` from the clips; early stopping on ``val_idx``.

    Parameters
    ----------
    frames : uint8 [N, F, S, S, 3]
    logmel : float32 [N, T, M]
        Raw log-mel (normalised per clip here, as on the box).
    targets : float32 [N, D]
        Unit-norm CF targets (rows outside ``train_idx``/``val_idx`` are ignored).
    genre_mix : float32 [N, G], optional
        Genre mixtures for the auxiliary head (None or ``tcfg.genre_weight == 0``: no head).
    train_idx, val_idx : int arrays
        Rows to train on and to stop early on.
    teachers : dict, optional
        ``{"video": [N, Pv], "audio": [N, Pa]}`` teacher embeddings projected to each branch's
        width (:class:`models.teachers.distill.Projection`). Each branch is then also trained
        to reproduce the teacher's pairwise similarities within the batch: ``mean((C_s -
        C_t)^2)`` with ``C`` the cosine matrix of the batch-centred branch features /
        teacher embeddings (similarity-preserving distillation), weighted ``teacher_weight``.
    unlabelled : dict, optional
        With ``teachers``: recordings without co-watch data, ``frames`` uint8 ``[U, F, S, S,
        3]``, ``logmel`` ``[U, T, M]`` (raw) and their projected teacher embeddings ``video``
        ``[U, Pv]`` and ``audio`` ``[U, Pa]``. Every step then also draws a batch of them (one
        forward pass with the catalog batch) and adds their distillation term, at the same
        ``teacher_weight``: the student learns where the teachers put real pictures and sounds,
        which the catalog's clips alone do not show it (:mod:`models.teachers.unlabelled`).
    seed : int
        Everything random (init, shuffling, flips, dropout) follows from it; with op
        determinism two runs give the same weights.

    Returns
    -------
    model : tf_keras.Model
        The embedder, with the weights of the best validation epoch.
    history : dict
        Per-epoch lists: ``loss``, ``cosine_loss``, ``nce_loss``, ``genre_loss``,
        ``teacher_loss`` (train) and
        ``val_cosine`` (mean cosine of validation embeddings to their targets); ``best_epoch``
        (1-based), ``epochs_run``, ``seconds``.
    """
    import time

    import tensorflow as tf
    from tqdm import tqdm

    keras = _keras()
    configure_tensorflow(seed, tcfg.threads)
    rng = np.random.default_rng(seed)
    use_genre = genre_mix is not None and tcfg.genre_weight > 0
    fcfg = dataclasses.replace(fcfg, n_genres=int(genre_mix.shape[1]) if use_genre else 0)
    embedder = build_fusion_model(cfg, fcfg)
    use_teachers = teachers is not None and tcfg.teacher_weight > 0
    train_model = build_training_model(embedder, fcfg.n_genres, branches=use_teachers)
    n_t = {b: (int(teachers[b].shape[1]) if use_teachers else 1) for b in BRANCH_OUTPUTS}
    t_video = np.asarray(teachers["video"], np.float32) if use_teachers else np.zeros((len(targets), 1), np.float32)
    t_audio = np.asarray(teachers["audio"], np.float32) if use_teachers else np.zeros((len(targets), 1), np.float32)
    w_teach = tf.constant(tcfg.teacher_weight if use_teachers else 0.0, tf.float32)
    use_unlabelled = use_teachers and unlabelled is not None and len(unlabelled["frames"]) >= 2
    if use_unlabelled:
        u_frames = unlabelled["frames"]
        u_lm = np.stack([normalize_logmel(x, cfg) for x in unlabelled["logmel"]]).astype(np.float32)
        u_video = np.asarray(unlabelled["video"], np.float32)
        u_audio = np.asarray(unlabelled["audio"], np.float32)
        u_batch = min(tcfg.batch_size, len(u_frames))

    lm_norm = np.stack([normalize_logmel(x, cfg) for x in logmel]).astype(np.float32)
    tgt = np.asarray(targets, dtype=np.float32)
    mix = np.asarray(genre_mix, dtype=np.float32) if use_genre else np.zeros((len(tgt), 1), np.float32)
    steps = max(1, len(train_idx) // tcfg.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(tcfg.learning_rate, decay_steps=steps * tcfg.epochs,
                                                      alpha=0.05)
    opt = keras.optimizers.Adam(schedule)
    tau = tf.constant(tcfg.temperature, tf.float32)
    w_nce = tf.constant(tcfg.nce_weight, tf.float32)
    w_genre = tf.constant(tcfg.genre_weight if use_genre else 0.0, tf.float32)
    wd = tf.constant(tcfg.weight_decay, tf.float32)
    decay_vars = [v for v in train_model.trainable_variables if "kernel" in v.name]

    F, S, T, M = cfg.frames, cfg.size, cfg.n_frames, cfg.n_mels
    spec = (
        tf.TensorSpec([None, F, S, S, 3], tf.float32), tf.TensorSpec([None, T, M], tf.float32),
        tf.TensorSpec([None, fcfg.dim], tf.float32), tf.TensorSpec([None, mix.shape[1]], tf.float32),
        tf.TensorSpec([None, n_t["video"]], tf.float32), tf.TensorSpec([None, n_t["audio"]], tf.float32),
        tf.TensorSpec([None, F, S, S, 3], tf.float32), tf.TensorSpec([None, T, M], tf.float32),
        tf.TensorSpec([None, n_t["video"]], tf.float32), tf.TensorSpec([None, n_t["audio"]], tf.float32),
    )

    def centred_gram(x):
        x = x - tf.reduce_mean(x, axis=0, keepdims=True)
        x = x * tf.math.rsqrt(tf.reduce_sum(x * x, axis=1, keepdims=True) + 1e-8)
        return tf.matmul(x, x, transpose_b=True)

    def teach_loss(f_video, f_audio, tv, ta):
        return 0.5 * (tf.reduce_mean(tf.square(centred_gram(f_video) - centred_gram(tv)))
                      + tf.reduce_mean(tf.square(centred_gram(f_audio) - centred_gram(ta))))

    @tf.function(input_signature=spec)
    def train_step(fr, lm, y, g, tv, ta, ufr, ulm, utv, uta):
        with tf.GradientTape() as tape:
            # One forward pass over catalog + unlabelled clips: the batch norms then see (and
            # keep running averages of) the mixture they will meet, instead of normalising each
            # kind by its own statistics in training and by a blend at inference.
            x = {"frames": tf.concat([fr, ufr], 0), "logmel": tf.concat([lm, ulm], 0)} if use_unlabelled \
                else {"frames": fr, "logmel": lm}
            outs = train_model(x, training=True)
            outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
            if use_unlabelled:
                nb = tf.shape(fr)[0]
                u_audio, u_video = outs[-1][nb:], outs[-2][nb:]
                outs = [o[:nb] for o in outs]
            if use_teachers:
                f_audio, f_video = outs.pop(), outs.pop()
                l_teach = teach_loss(f_video, f_audio, tv, ta)
                if use_unlabelled:
                    l_teach = l_teach + teach_loss(u_video, u_audio, utv, uta)
            else:
                l_teach = tf.constant(0.0)
            e = outs[0]
            cos = tf.reduce_sum(e * y, axis=-1)
            l_cos = tf.reduce_mean(1.0 - cos)
            logits = tf.matmul(e, y, transpose_b=True) / tau
            labels = tf.range(tf.shape(e)[0])
            l_nce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
            if len(outs) > 1:
                l_genre = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=g, logits=outs[1]))
            else:
                l_genre = tf.constant(0.0)
            l_wd = tf.add_n([tf.reduce_sum(tf.square(v)) for v in decay_vars])
            loss = l_cos + w_nce * l_nce + w_genre * l_genre + wd * l_wd + w_teach * l_teach
        grads = tape.gradient(loss, train_model.trainable_variables)
        opt.apply_gradients(zip(grads, train_model.trainable_variables))
        return loss, l_cos, l_nce, l_genre, l_teach

    def flipped(fr):
        """Each clip mirrored left-right with probability 1/2 (``tcfg.flip``)."""
        if not tcfg.flip:
            return fr
        flip = rng.random(len(fr)) < 0.5
        return np.where(flip[:, None, None, None, None], fr[:, :, :, ::-1], fr)

    def batch(idx, augment):
        fr = flipped(frames[idx]) if augment else frames[idx]
        return normalize_frames(fr), lm_norm[idx]

    def val_cosine() -> float:
        if len(val_idx) == 0:
            return float("nan")
        out = []
        for lo in range(0, len(val_idx), 64):
            idx = val_idx[lo : lo + 64]
            fr, lm = batch(idx, False)
            out.append(np.asarray(embedder({"frames": fr, "logmel": lm}, training=False)))
        e = np.concatenate(out)
        return float(np.mean(np.sum(e * tgt[val_idx], axis=1)))

    # placeholders the traced step never reads when there are no unlabelled recordings
    no_unlabelled = (np.zeros((1, F, S, S, 3), np.float32), np.zeros((1, T, M), np.float32),
                     np.zeros((1, n_t["video"]), np.float32), np.zeros((1, n_t["audio"]), np.float32))
    loss_keys = ("loss", "cosine_loss", "nce_loss", "genre_loss", "teacher_loss")
    hist: dict[str, Any] = {k: [] for k in loss_keys + ("val_cosine",)}
    best, best_epoch, best_weights, stale = -np.inf, 0, embedder.get_weights(), 0
    t0 = time.perf_counter()
    for epoch in range(1, tcfg.epochs + 1):
        order = rng.permutation(train_idx)
        sums = np.zeros(len(loss_keys))
        bar = tqdm(range(steps), desc=f"epoch {epoch}/{tcfg.epochs}", unit="batch", leave=False,
                   disable=not progress, dynamic_ncols=True)
        for s in bar:
            idx = np.sort(order[s * tcfg.batch_size : (s + 1) * tcfg.batch_size])
            fr, lm = batch(idx, True)
            if use_unlabelled:
                uidx = np.sort(rng.choice(len(u_frames), u_batch, replace=False))
                extra = (normalize_frames(flipped(u_frames[uidx])), u_lm[uidx], u_video[uidx], u_audio[uidx])
            else:
                extra = no_unlabelled
            vals = train_step(fr, lm, tgt[idx], mix[idx], t_video[idx], t_audio[idx], *extra)
            sums += [float(v) for v in vals]
            bar.set_postfix(loss=f"{sums[0] / (s + 1):.3f}")
        bar.close()
        for key, v in zip(loss_keys, sums / steps):
            hist[key].append(float(v))
        vc = val_cosine()
        hist["val_cosine"].append(vc)
        if progress:
            tqdm.write(f"epoch {epoch:3d}  loss {hist['loss'][-1]:.4f}  cos {hist['cosine_loss'][-1]:.4f}  "
                       f"nce {hist['nce_loss'][-1]:.3f}  genre {hist['genre_loss'][-1]:.3f}  "
                       f"teach {hist['teacher_loss'][-1]:.4f}  val_cos {vc:.4f}")
        if vc > best or not np.isfinite(best):
            best, best_epoch, best_weights, stale = vc, epoch, embedder.get_weights(), 0
        else:
            stale += 1
            if stale >= tcfg.patience:
                break
    embedder.set_weights(best_weights)
    hist.update(best_epoch=best_epoch, epochs_run=len(hist["loss"]), best_val_cosine=float(best),
                seconds=time.perf_counter() - t0)
    return embedder, hist
