"""The one place the box touches a TFLite interpreter.

Two packages provide the same ``Interpreter`` class: ``ai-edge-litert`` (LiteRT, the current
name, wheels for x86-64 and aarch64) and the older ``tflite-runtime`` (still the only choice on
some 32-bit ARM boxes). :func:`load_interpreter` tries them in that order and says which one it
used (:func:`backend_name`); with neither installed it raises one
:class:`~device.errors.RuntimeMissingError` naming both.

:class:`TFLiteModel` wraps an interpreter so callers always pass and receive float32: an int8
(or uint8 / int16) input is quantised with the tensor's own scale and zero point, a quantised
output is dequantised the same way. Tensors are allocated once; a call with a new batch size
resizes only when the model's shape signature allows it (a ``-1`` dimension).

Example::

    from device.runtime import TFLiteModel

    model = TFLiteModel(bundle.model_path)          # path or bytes
    (embedding,) = model.run({"logmel": x})          # or model.run([x]); float32 in and out
    model.io_spec()                                  # shapes, dtypes, quantisation (manifest form)

numpy only; never imports TensorFlow.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from importlib import import_module
from types import ModuleType
from typing import Any, Union

import numpy as np

from device.errors import BundleError, RuntimeMissingError

__all__ = [
    "BACKENDS",
    "TFLiteModel",
    "backend_name",
    "describe_io",
    "load_interpreter",
]

#: Interpreter packages in order of preference: (import name, pip name).
BACKENDS = (("ai_edge_litert", "ai-edge-litert"), ("tflite_runtime", "tflite-runtime"))

ModelSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]

_QUANTISED = (np.int8, np.uint8, np.int16)


def _interpreter_module(backend: str | None = None) -> tuple[str, ModuleType]:
    """``(name, module)`` of the first importable backend, or of ``backend`` if given."""
    wanted = [b for b in BACKENDS if backend is None or b[0] == backend]
    if not wanted:
        raise ValueError(f"unknown TFLite backend {backend!r}; expected one of "
                         f"{[b[0] for b in BACKENDS]}")
    for name, _pip in wanted:
        try:
            return name, import_module(f"{name}.interpreter")
        except ImportError:
            continue
    if backend is not None:
        pip = wanted[0][1]
        raise RuntimeMissingError(
            f"TFLite backend {backend} is not installed; install it with `pip install {pip}`")
    raise RuntimeMissingError(
        "no TFLite interpreter is installed: install one with `pip install ai-edge-litert` "
        "(or `pip install tflite-runtime` where LiteRT has no wheel)")


def backend_name(backend: str | None = None) -> str:
    """Import name of the interpreter package :func:`load_interpreter` uses.

    ``"ai_edge_litert"`` when installed, else ``"tflite_runtime"``; raises
    :class:`~device.errors.RuntimeMissingError` when neither is.
    """
    return _interpreter_module(backend)[0]


def load_interpreter(
    model_path_or_bytes: ModelSource,
    num_threads: int = 1,
    use_xnnpack: bool = True,
    *,
    backend: str | None = None,
) -> Any:
    """A TFLite ``Interpreter`` for a model file or its bytes (tensors not yet allocated).

    Parameters
    ----------
    model_path_or_bytes : path or bytes
        A ``.tflite`` file, or the flatbuffer itself.
    num_threads : int
        CPU threads for the kernels. 1 by default: the box renders the UI on the other cores.
    use_xnnpack : bool
        Apply the default XNNPACK delegate (the interpreter's default). ``False`` selects the
        ``BUILTIN_WITHOUT_DEFAULT_DELEGATES`` op resolver -- the plain built-in kernels -- which
        is what to compare against when XNNPACK is suspected (e.g. slow int8 LSTMs on x86).
    backend : {"ai_edge_litert", "tflite_runtime"}, optional
        Force one package (tests, benchmarks); default: the first installed.

    Raises
    ------
    RuntimeMissingError
        Neither interpreter package is installed (or the forced one is not), or the installed
        one cannot disable XNNPACK.
    BundleError
        The file is missing or is not a loadable TFLite model (the message names it).
    """
    name, mod = _interpreter_module(backend)
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads must be an int >= 1, got {num_threads!r}")
    kwargs: dict[str, Any] = {"num_threads": num_threads}
    if not use_xnnpack:
        resolver = getattr(mod, "OpResolverType", None)
        member = getattr(resolver, "BUILTIN_WITHOUT_DEFAULT_DELEGATES", None)
        if member is None:
            raise RuntimeMissingError(
                f"{name} has no OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES, so XNNPACK "
                "cannot be disabled; upgrade it (`pip install -U ai-edge-litert`)")
        kwargs["experimental_op_resolver_type"] = member
    if isinstance(model_path_or_bytes, (bytes, bytearray, memoryview)):
        label = f"<{len(model_path_or_bytes)} bytes of model>"
        kwargs["model_content"] = bytes(model_path_or_bytes)
    else:
        label = os.fspath(model_path_or_bytes)
        if not os.path.isfile(label):
            raise BundleError(f"{label}: model file not found")
        kwargs["model_path"] = label
    try:
        return mod.Interpreter(**kwargs)
    except (ValueError, RuntimeError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise BundleError(f"{label}: not a loadable TFLite model ({reason})") from None


def _quant(detail: Mapping[str, Any]) -> tuple[float, int] | None:
    """Per-tensor ``(scale, zero_point)`` of a quantised tensor, None for a float one."""
    if np.dtype(detail["dtype"]).type not in _QUANTISED:
        return None
    params = detail.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", []), dtype=np.float64)
    zps = np.asarray(params.get("zero_points", []), dtype=np.int64)
    if scales.size == 0:
        scale, zp = detail.get("quantization", (0.0, 0))
        if not scale:
            return None  # an integer tensor that is not quantised (e.g. token ids)
        return float(scale), int(zp)
    if scales.size != 1:
        raise ValueError(
            f"tensor {detail['name']!r} is quantised per axis ({scales.size} scales); only "
            "per-tensor quantisation is supported at the model's inputs and outputs")
    return float(scales[0]), int(zps[0]) if zps.size else 0


def _spec(detail: Mapping[str, Any]) -> dict[str, Any]:
    q = _quant(detail)
    sig = detail.get("shape_signature")
    return {
        "name": str(detail["name"]),
        "shape": [int(d) for d in (sig if sig is not None and len(sig) else detail["shape"])],
        "dtype": np.dtype(detail["dtype"]).name,
        "scale": None if q is None else q[0],
        "zero_point": None if q is None else q[1],
    }


class TFLiteModel:
    """A TFLite model ready to run: float32 in, float32 out, whatever the tensors' types.

    Parameters
    ----------
    model : path or bytes
        The ``.tflite`` file or its bytes.
    num_threads, use_xnnpack, backend
        As :func:`load_interpreter`.

    Attributes
    ----------
    backend : str
        Which interpreter package runs it (``"ai_edge_litert"`` or ``"tflite_runtime"``).
    interpreter
        The underlying ``Interpreter`` (allocated).
    """

    def __init__(
        self,
        model: ModelSource,
        *,
        num_threads: int = 1,
        use_xnnpack: bool = True,
        backend: str | None = None,
    ):
        self.backend = backend_name(backend)
        self.use_xnnpack = use_xnnpack
        self.interpreter = load_interpreter(model, num_threads, use_xnnpack, backend=self.backend)
        self.interpreter.allocate_tensors()
        self._refresh()
        # Both runtimes have reset_all_variables (a no-op for models without state tensors).
        self._stateful = hasattr(self.interpreter, "reset_all_variables")

    def _refresh(self) -> None:
        self._inputs = self.interpreter.get_input_details()
        self._outputs = self.interpreter.get_output_details()
        self._in_quant = [_quant(d) for d in self._inputs]
        self._out_quant = [_quant(d) for d in self._outputs]

    @property
    def input_details(self) -> list[dict[str, Any]]:
        """The interpreter's input details (name, index, shape, dtype, quantisation), in order."""
        return self._inputs

    @property
    def output_details(self) -> list[dict[str, Any]]:
        """The interpreter's output details, in order (the order :meth:`run` returns)."""
        return self._outputs

    @property
    def input_names(self) -> list[str]:
        return [str(d["name"]) for d in self._inputs]

    def io_spec(self) -> dict[str, list[dict[str, Any]]]:
        """``{"inputs": [...], "outputs": [...]}``: name, shape (``-1`` for a dynamic dimension),
        dtype name and per-tensor scale / zero point (None for float tensors). JSON-able: this
        is the ``model_io`` a bundle manifest records."""
        return {"inputs": [_spec(d) for d in self._inputs],
                "outputs": [_spec(d) for d in self._outputs]}

    def _arrange(self, inputs: Any) -> list[np.ndarray]:
        if isinstance(inputs, Mapping):
            names = self.input_names
            unknown = sorted(set(map(str, inputs)) - set(names))
            missing = [n for n in names if n not in inputs]
            if unknown or missing:
                raise ValueError(f"model inputs are {names}; got unknown {unknown}, "
                                 f"missing {missing}")
            return [np.asarray(inputs[n]) for n in names]
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        if not isinstance(inputs, Sequence) or len(inputs) != len(self._inputs):
            raise ValueError(f"model takes {len(self._inputs)} input(s) {self.input_names}")
        return [np.asarray(x) for x in inputs]

    def run(self, inputs: Mapping[str, Any] | Sequence[Any] | np.ndarray) -> list[np.ndarray]:
        """Run the model once.

        Parameters
        ----------
        inputs : dict name -> array, list of arrays in :attr:`input_details` order, or an array
            Float values for float and quantised inputs alike (quantised here with the tensor's
            scale and zero point, rounded and clipped to its integer range); integer inputs that
            are not quantised are passed as they are.

        Returns
        -------
        list of np.ndarray
            One array per output in :attr:`output_details` order; quantised outputs are
            dequantised to float32, float outputs are float32.
        """
        arrays = self._arrange(inputs)
        resized = False
        for d, x in zip(self._inputs, arrays):
            if tuple(x.shape) != tuple(d["shape"]):
                sig = d.get("shape_signature")
                sig = list(sig) if sig is not None and len(sig) else list(d["shape"])
                ok = len(sig) == x.ndim and all(s in (-1, n) for s, n in zip(sig, x.shape))
                if not ok:
                    raise ValueError(f"input {d['name']!r} has shape {list(d['shape'])} "
                                     f"(signature {sig}), got {list(x.shape)}")
                self.interpreter.resize_tensor_input(d["index"], list(x.shape))
                resized = True
        if resized:
            self.interpreter.allocate_tensors()
            self._refresh()
        for d, q, x in zip(self._inputs, self._in_quant, arrays):
            dtype = np.dtype(d["dtype"])
            if q is not None:
                info = np.iinfo(dtype)
                scale, zp = q
                x = np.clip(np.rint(x.astype(np.float64) / scale + zp), info.min, info.max)
            self.interpreter.set_tensor(d["index"], np.ascontiguousarray(x, dtype=dtype))
        # Every run starts from a zero recurrent state. The fused UNIDIRECTIONAL_SEQUENCE_LSTM
        # keeps its hidden and cell state in *variable* tensors that invoke() does not clear: without
        # this reset a clip's embedding starts from the previous clip's final LSTM state, so it
        # depended on what was embedded before (up to 0.3 abs. on a 1-step LSTM, ~1e-2 on the demo
        # model's 32 steps) and differed from Keras, which always starts from zeros.
        if self._stateful:
            self.interpreter.reset_all_variables()
        self.interpreter.invoke()
        out = []
        for d, q in zip(self._outputs, self._out_quant):
            y = self.interpreter.get_tensor(d["index"])
            if q is not None:
                scale, zp = q
                y = ((y.astype(np.float32) - np.float32(zp)) * np.float32(scale))
            elif np.issubdtype(y.dtype, np.floating):
                y = y.astype(np.float32, copy=False)
            out.append(np.array(y, copy=True))
        return out

    def op_profile(self) -> dict[str, int]:
        """How many nodes of each op the execution plan has, e.g. ``{"FULLY_CONNECTED": 2}``.

        Static (no timing) and cheap. With XNNPACK, delegated parts appear as ``DELEGATE`` nodes,
        so this also shows what the delegate took over. Empty if the backend exposes no op list.
        """
        get = getattr(self.interpreter, "_get_ops_details", None)
        if get is None:
            return {}
        return dict(Counter(str(op.get("op_name")) for op in get()))


def describe_io(model: ModelSource, *, backend: str | None = None) -> dict[str, Any]:
    """:meth:`TFLiteModel.io_spec` of a model file or bytes (what ``write_bundle`` wants as
    ``model_io``)."""
    return TFLiteModel(model, backend=backend).io_spec()
