"""Sound teacher: musicnn (Pons & Serra, 2019) from the checkpoints the ``musicnn`` package ships.

musicnn is a music-tagging CNN over 3 s of 96-band log-mel (16 kHz, 512-point FFT, hop 256):
timbral and temporal front-end filters, a dense mid-end, temporal mean/max pooling and a
200-unit penultimate layer, which is the embedding used here (averaged over 3 s patches). Two
training sets ship: ``MSD_musicnn`` (Million Song Dataset, Last.fm tags; the default) and
``MTT_musicnn`` (MagnaTagATune, whose data is CC BY-NC-SA: non-commercial). The package's code
is ISC-licensed. It is music-centric; on speech, crowds or silence its embedding still separates
clips by timbre and rhythm, which is what the student's audio LSTM is asked to learn.

How it is run here, and why:

* its graph is built with its own ``musicnn.models.define_model`` inside a private
  ``tf.Graph`` and a ``tf.compat.v1.Session`` restores the checkpoint -- never
  ``musicnn.extractor``, which turns eager execution off for the whole process;
* the package is installed with ``--no-deps`` (its metadata pins ``numpy<1.17``);
* its front end computed ``log10(10000 * mel + 1)`` in float16, which overflows to ``inf`` on
  loud audio under numpy 2 (every clip then gets the same output): computed in float32 here,
  with librosa's mel spectrogram at the package's settings.
"""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

SR = 16000
FFT_SIZE = 512
FFT_HOP = 256
N_MELS = 96
#: 3 s patches (librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1).
PATCH_FRAMES = 187
DIM = 200
SOUND_MODELS = ("MSD_musicnn", "MTT_musicnn")


def musicnn_input(audio: np.ndarray, sr: int = SR) -> np.ndarray:
    """Mono waveform -> ``float32 [T, 96]`` musicnn log-mel (float32: no float16 overflow)."""
    import librosa

    audio = np.asarray(audio, np.float32)
    if sr != SR:
        audio = librosa.resample(audio, orig_sr=sr, target_sr=SR)
    mel = librosa.feature.melspectrogram(y=audio, sr=SR, hop_length=FFT_HOP, n_fft=FFT_SIZE,
                                         n_mels=N_MELS).T.astype(np.float32)
    return np.log10(10000.0 * mel + 1.0).astype(np.float32)


def patches(rep: np.ndarray, n: int = PATCH_FRAMES, hop: int | None = None) -> np.ndarray:
    """``[T, 96]`` -> ``[P, n, 96]`` patches, hop ``hop`` (default ``n // 2``); a window shorter
    than one patch is repeated to fill it (the device's 4.1 s window gives two patches)."""
    rep = np.asarray(rep, np.float32)
    if len(rep) == 0:
        rep = np.zeros((1, N_MELS), np.float32)
    if len(rep) < n:
        rep = np.tile(rep, (int(np.ceil(n / len(rep))), 1))[:n]
    hop = hop or n // 2
    starts = list(range(0, len(rep) - n + 1, hop))
    if starts[-1] != len(rep) - n:
        starts.append(len(rep) - n)
    return np.stack([rep[s : s + n] for s in starts])


class SoundTeacher:
    """musicnn penultimate-layer embeddings of audio windows.

    Parameters
    ----------
    model : {"MSD_musicnn", "MTT_musicnn"}
    """

    dim = DIM

    def __init__(self, model: str = "MSD_musicnn"):
        if model not in SOUND_MODELS:
            raise ValueError(f"sound teacher model must be one of {', '.join(SOUND_MODELS)}, got {model!r}")
        import tensorflow as tf

        import musicnn
        from musicnn import models as mm

        self.model = model
        self.name = model
        self.path = Path(musicnn.__file__).parent / model
        self._graph = tf.Graph()
        with self._graph.as_default(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its tf.compat.v1.layers calls each warn "deprecated"
            # Its (inference-disabled) dropout is a random op: with op determinism on (training
            # enables it) a graph without a seed refuses to build.
            tf.compat.v1.set_random_seed(0)
            with tf.name_scope("model"):
                self._x = tf.compat.v1.placeholder(tf.float32, [None, PATCH_FRAMES, N_MELS])
                self._training = tf.compat.v1.placeholder_with_default(False, [])
                outs = mm.define_model(self._x, self._training, model, 50)
            self._logits, self._penultimate = outs[0], outs[-1]
            conf = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=2, inter_op_parallelism_threads=1)
            self._sess = tf.compat.v1.Session(graph=self._graph, config=conf)
            tf.compat.v1.train.Saver().restore(self._sess, str(self.path) + "/")

    def patch_embeddings(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``[P, 187, 96]`` patches -> (penultimate ``[P, 200]``, tag probabilities ``[P, 50]``)."""
        pen, logits = self._sess.run([self._penultimate, self._logits], feed_dict={self._x: batch})
        return np.asarray(pen, np.float32), 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))

    def embed_audio(self, audio: np.ndarray, sr: int = SR, max_patches: int | None = None) -> np.ndarray:
        """One waveform -> ``float32 [200]`` (mean over its 3 s patches; with ``max_patches``,
        over that many patches evenly spread, the middle one when 1)."""
        batch = patches(musicnn_input(audio, sr))
        if max_patches is not None and len(batch) > max_patches:
            pick = np.linspace(0, len(batch) - 1, max_patches + 2)[1:-1] if max_patches == 1 else \
                np.linspace(0, len(batch) - 1, max_patches)
            batch = batch[np.round(pick).astype(int)]
        pen, _ = self.patch_embeddings(batch)
        return pen.mean(axis=0)

    def embed(self, audios) -> np.ndarray:
        """Waveforms at 16 kHz -> ``float32 [N, 200]``."""
        out = [self.embed_audio(a) for a in audios]
        return np.stack(out).astype(np.float32) if out else np.zeros((0, DIM), np.float32)

    def tags(self, audio: np.ndarray, sr: int = SR, top: int = 5) -> list[str]:
        """The ``top`` most likely tags of a waveform (for inspection and tests)."""
        from musicnn import configuration as mc

        labels = mc.MSD_LABELS if self.model.startswith("MSD") else mc.MTT_LABELS
        _, prob = self.patch_embeddings(patches(musicnn_input(audio, sr)))
        order = np.argsort(-prob.mean(0))[:top]
        return [labels[i] for i in order]
