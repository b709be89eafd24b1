"""Float and full-int8 TFLite conversion of the fusion model (fleet side).

Two routes to int8, compared by :mod:`export.parity` and chosen by the numbers:

* **PTQ** -- post-training quantisation: the float Keras model is converted with a
  representative dataset of real catalog features, which calibrates every tensor's range
  (convolutions, dense layers and the LSTM alike).
* **QAT** -- quantisation-aware training with tensorflow-model-optimization: the conv, depthwise,
  batch-norm and dense layers are annotated (TFMOT cannot annotate the LSTM, nor a
  ``TimeDistributed`` wrapper -- the model folds frames into the batch so it needs none), the
  model is fine-tuned with fake quantisation for a few epochs on the same cosine objective, then
  converted with the representative dataset, which calibrates the LSTM post-training.

Both conversions go through a concrete function with a **fixed batch of 1**: only then does the
converter emit the fused ``UNIDIRECTIONAL_SEQUENCE_LSTM`` (a dynamic batch falls back to a
TensorList ``WHILE`` loop that needs Flex ops). The int8 model uses ``TFLITE_BUILTINS_INT8``
only, with int8 input and output tensors.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from dataclasses import dataclass  # noqa: E402
from typing import Any, Iterator  # noqa: E402

import numpy as np  # noqa: E402

from device.features import FeatureConfig  # noqa: E402

#: Ops the box must never see in a shipped model.
FORBIDDEN_OPS = ("FlexDelegate", "WHILE", "CUSTOM")


def _tf():
    import tensorflow as tf

    return tf


def serving_function(model, cfg: FeatureConfig, batch: int = 1):
    """A concrete function with a fixed batch (what makes the LSTM convert to the fused op).

    Works for the fusion model and for its single-branch sub-models: the signature has one
    tensor per Keras input (``frames`` and/or ``logmel``), batch fixed to ``batch``.
    """
    tf = _tf()
    names = [t.name.split(":")[0] for t in model.inputs]
    spec = [tf.TensorSpec((batch, *t.shape[1:]), tf.float32, name=n)
            for n, t in zip(names, model.inputs)]

    @tf.function(input_signature=spec)
    def serve(*tensors):
        out = model(dict(zip(names, tensors)), training=False)
        return {"embedding": out}

    return serve.get_concrete_function()


def convert_float(model, cfg: FeatureConfig) -> bytes:
    """Float32 TFLite model (builtin ops only)."""
    tf = _tf()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([serving_function(model, cfg)], model)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return conv.convert()


def input_order(tflite_bytes: bytes) -> list[str]:
    """``"frames"`` / ``"logmel"`` in the order the converted model takes its inputs."""
    from device.runtime import load_interpreter

    it = load_interpreter(tflite_bytes, 1, False)
    names = [d["name"] for d in it.get_input_details()]
    return ["frames" if "frames" in n else "logmel" for n in names]


def convert_int8(model, cfg: FeatureConfig, frames_norm: np.ndarray, logmel_norm: np.ndarray,
                 *, per_channel: bool = True) -> bytes:
    """Full-integer TFLite model calibrated on real, *normalised* features.

    ``per_channel=False`` quantises every weight tensor with one scale instead of one per
    output channel: less accurate in principle, but the per-channel scales and (int64) zero
    points are a fixed cost of ~12 bytes per channel, a large share of a model this small.

    Parameters
    ----------
    frames_norm : float32 [R, F, S, S, 3]
        ``device.features.normalize_frames`` of representative clips.
    logmel_norm : float32 [R, T, M]
        ``device.features.normalize_logmel`` of the same clips.
    """
    tf = _tf()
    order = input_order(convert_float(model, cfg))

    def representative() -> Iterator[list[np.ndarray]]:
        for f, lm in zip(frames_norm, logmel_norm):
            sample = {"frames": f[None].astype(np.float32), "logmel": lm[None].astype(np.float32)}
            yield [sample[name] for name in order]

    conv = tf.lite.TFLiteConverter.from_concrete_functions([serving_function(model, cfg)], model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    if not per_channel:
        conv._experimental_disable_per_channel = True
    return conv.convert()


# --------------------------------------------------------------------------- QAT


def annotate_for_qat(model):
    """Clone ``model`` with TFMOT annotations on every conv, depthwise, dense and conv-following
    batch-norm layer, and apply quantisation (fake-quant wrappers). The LSTM stays float in training; the
    converter calibrates it from the representative dataset."""
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    Q = tfmot.quantization.keras
    kinds = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense,
             keras.layers.BatchNormalization)

    convs = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)

    def annotate(layer) -> bool:
        if not isinstance(layer, kinds):
            return False
        if isinstance(layer, keras.layers.BatchNormalization):
            # TFMOT quantises a batch norm only as part of a conv+BN pattern; the statistics
            # paths' batch norms (after a pooling) stay float in QAT, PTQ calibrates them.
            inbound = layer.inbound_nodes[0].inbound_layers
            return isinstance(inbound, convs)
        return True

    def clone(layer):
        fresh = layer.__class__.from_config(layer.get_config())
        return Q.quantize_annotate_layer(fresh) if annotate(layer) else fresh

    annotated = keras.models.clone_model(model, clone_function=clone)
    annotated.set_weights(model.get_weights())
    with Q.quantize_scope():
        return Q.quantize_apply(annotated)


def fine_tune_qat(qat_model, frames_norm: np.ndarray, logmel_norm: np.ndarray, targets: np.ndarray,
                  *, epochs: int = 3, batch_size: int = 32, learning_rate: float = 2e-4,
                  seed: int = 0, progress: bool = True) -> dict[str, list[float]]:
    """A few epochs of cosine regression to the CF targets with fake quantisation on."""
    import tensorflow as tf
    import tf_keras as keras
    from tqdm import tqdm

    keras.utils.set_random_seed(seed)
    opt = keras.optimizers.Adam(learning_rate)
    rng = np.random.default_rng(seed)

    @tf.function
    def step(fr, lm, y):
        with tf.GradientTape() as tape:
            e = qat_model({"frames": fr, "logmel": lm}, training=True)
            loss = tf.reduce_mean(1.0 - tf.reduce_sum(e * y, axis=-1))
        grads = tape.gradient(loss, qat_model.trainable_variables)
        opt.apply_gradients(zip(grads, qat_model.trainable_variables))
        return loss

    hist: dict[str, list[float]] = {"qat_loss": []}
    n = len(targets)
    steps = max(1, n // batch_size)
    for epoch in range(epochs):
        order = rng.permutation(n)
        total = 0.0
        bar = tqdm(range(steps), desc=f"QAT epoch {epoch + 1}/{epochs}", unit="batch",
                   leave=False, disable=not progress)
        for s in bar:
            idx = np.sort(order[s * batch_size:(s + 1) * batch_size])
            total += float(step(frames_norm[idx], logmel_norm[idx], targets[idx].astype(np.float32)))
        hist["qat_loss"].append(total / steps)
    return hist


def strip_strings(tflite_bytes: bytes) -> bytes:
    """Drop tensor names, signature strings and debug metadata (TFLite's own
    ``flatbuffer_utils.strip_strings``): ~4 KB, 5% of the int8 model. The box finds its inputs
    by rank (5-D frames, 3-D log-mel), not by name. Read ``min_runtime_version`` before."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite_bytes))
    flatbuffer_utils.strip_strings(model)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


# --------------------------------------------------------------------------- inspection


@dataclass(frozen=True)
class TFLiteFacts:
    """What a converted model holds (checked by tests, written to the export report)."""

    ops: dict[str, int]  # op name -> count
    tensor_dtypes: dict[str, int]  # dtype name -> count of tensors
    input_dtypes: list[str]
    output_dtypes: list[str]
    min_runtime_version: str | None
    size_bytes: int

    @property
    def forbidden(self) -> list[str]:
        return [op for op in self.ops if any(bad in op.upper() for bad in FORBIDDEN_OPS)]

    def to_dict(self) -> dict[str, Any]:
        return {"ops": self.ops, "tensor_dtypes": self.tensor_dtypes,
                "input_dtypes": self.input_dtypes, "output_dtypes": self.output_dtypes,
                "min_runtime_version": self.min_runtime_version, "size_bytes": self.size_bytes,
                "forbidden_ops": self.forbidden}


def inspect_tflite(tflite_bytes: bytes) -> TFLiteFacts:
    """Ops, tensor dtypes, I/O dtypes and the ``min_runtime_version`` metadata of a model."""
    from collections import Counter

    from device.runtime import load_interpreter

    it = load_interpreter(tflite_bytes, 1, False)
    it.allocate_tensors()
    ops = Counter(d["op_name"] for d in it._get_ops_details())
    dtypes = Counter(np.dtype(d["dtype"]).name for d in it.get_tensor_details())
    return TFLiteFacts(
        ops=dict(sorted(ops.items())),
        tensor_dtypes=dict(sorted(dtypes.items())),
        input_dtypes=[np.dtype(d["dtype"]).name for d in it.get_input_details()],
        output_dtypes=[np.dtype(d["dtype"]).name for d in it.get_output_details()],
        min_runtime_version=min_runtime_version(tflite_bytes),
        size_bytes=len(tflite_bytes),
    )


def min_runtime_version(tflite_bytes: bytes) -> str | None:
    """The converter's ``min_runtime_version`` metadata: the oldest TFLite runtime whose op
    versions cover this model."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(bytearray(tflite_bytes), 0)
    for i in range(model.MetadataLength()):
        meta = model.Metadata(i)
        if meta.Name() == b"min_runtime_version":
            buf = model.Buffers(meta.Buffer()).DataAsNumpy()
            return bytes(buf).rstrip(b"\0").decode("ascii")
    return None
