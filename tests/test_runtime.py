"""The interpreter shim: real float and int8 TFLite models made here with TensorFlow (tests only),
run through LiteRT and, if its venv exists, tflite-runtime; quantise/dequantise checked exactly
against the raw interpreter and within tolerance against the float function."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from device.errors import BundleError, RuntimeMissingError
from device.runtime import TFLiteModel, backend_name, describe_io, load_interpreter

ROOT = Path(__file__).resolve().parents[1]
IN, OUT = 8, 4


@pytest.fixture(scope="module")
def models() -> dict:
    """A Dense+ReLU layer as float, full-int8 (int8 in/out) and dynamic-batch float models."""
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(0)
    w = rng.standard_normal((IN, OUT)).astype(np.float32) * 0.5
    b = rng.standard_normal(OUT).astype(np.float32) * 0.1

    def reference(x: np.ndarray) -> np.ndarray:
        return np.maximum(x @ w + b, 0.0).astype(np.float32)

    def convert(batch, int8: bool) -> bytes:
        class Dense(tf.Module):
            @tf.function(input_signature=[tf.TensorSpec([batch, IN], tf.float32, name="x")])
            def f(self, x):
                return tf.nn.relu(tf.matmul(x, w) + b)

        mod = Dense()
        conv = tf.lite.TFLiteConverter.from_concrete_functions([mod.f.get_concrete_function()], mod)
        if int8:
            calib = np.random.default_rng(1).standard_normal((200, 1, IN)).astype(np.float32)
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = lambda: ([c] for c in calib)
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
        return conv.convert()

    return {"float": convert(1, False), "int8": convert(1, True), "dynamic": convert(None, False),
            "reference": reference}


def _x(seed: int = 2, batch: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, IN)).astype(np.float32)


def test_backend_is_litert_when_installed():
    # armv7l has no LiteRT wheel: there the box (and make armhf-check) runs tflite-runtime
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed (armv7l)")
    assert backend_name() == "ai_edge_litert"


@pytest.mark.parametrize("use_xnnpack", [True, False])
def test_float_model_matches_the_function(models, use_xnnpack):
    m = TFLiteModel(models["float"], use_xnnpack=use_xnnpack)
    assert m.backend == "ai_edge_litert"
    x = _x()
    (y,) = m.run([x])
    assert y.dtype == np.float32 and y.shape == (1, OUT)
    np.testing.assert_allclose(y, models["reference"](x), atol=1e-5)
    # Without XNNPACK no DELEGATE node is in the plan; with it, the dense layer is delegated.
    assert ("DELEGATE" in m.op_profile()) == use_xnnpack
    assert m.op_profile().get("FULLY_CONNECTED") == 1


def test_int8_model_quantises_inputs_and_dequantises_outputs(models, tmp_path):
    path = tmp_path / "int8.tflite"
    path.write_bytes(models["int8"])
    m = TFLiteModel(path)
    spec = m.io_spec()
    json.dumps(spec)  # the manifest form is JSON-able
    (inp,), (out,) = spec["inputs"], spec["outputs"]
    assert inp["dtype"] == "int8" and out["dtype"] == "int8"
    assert inp["scale"] > 0 and out["scale"] > 0 and inp["shape"] == [1, IN]
    assert describe_io(models["int8"]) == spec

    x = _x(3)
    (y,) = m.run({inp["name"]: x})
    assert y.dtype == np.float32

    # Exactly what the wrapper promises, against the raw interpreter:
    raw = load_interpreter(models["int8"])
    raw.allocate_tensors()
    d_in, d_out = raw.get_input_details()[0], raw.get_output_details()[0]
    q = np.clip(np.rint(x / inp["scale"] + inp["zero_point"]), -128, 127).astype(np.int8)
    raw.set_tensor(d_in["index"], q)
    raw.invoke()
    expect = (raw.get_tensor(d_out["index"]).astype(np.float32) - out["zero_point"]) * out["scale"]
    np.testing.assert_allclose(y, expect, rtol=0, atol=1e-6)

    # ...and close to the float function (a few quantisation steps of the output).
    err = np.abs(y - models["reference"](x)).max()
    assert err < 4 * out["scale"] + 0.02, err

    # Out-of-range inputs saturate instead of wrapping around.
    (big,) = m.run([np.full((1, IN), 1e6, np.float32)])
    assert np.isfinite(big).all()


def test_inputs_as_dict_list_or_array_and_bad_inputs(models):
    m = TFLiteModel(models["float"])
    x = _x(4)
    a = m.run(x)[0]
    np.testing.assert_array_equal(a, m.run([x])[0])
    np.testing.assert_array_equal(a, m.run({m.input_names[0]: x})[0])
    with pytest.raises(ValueError, match="missing"):
        m.run({"nope": x})
    with pytest.raises(ValueError, match="shape"):
        m.run([np.zeros((2, IN), np.float32)])  # fixed batch of 1
    with pytest.raises(ValueError, match="1 input"):
        m.run([x, x])


def test_dynamic_batch_resizes_once(models):
    m = TFLiteModel(models["dynamic"])
    assert m.io_spec()["inputs"][0]["shape"] == [-1, IN]
    for batch in (3, 3, 5):
        x = _x(5, batch)
        (y,) = m.run(x)
        assert y.shape == (batch, OUT)
        np.testing.assert_allclose(y, models["reference"](x), atol=1e-5)


def test_bad_model_files_are_named(tmp_path):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\0" * 64)
    with pytest.raises(BundleError, match="junk.tflite"):
        TFLiteModel(junk)
    with pytest.raises(BundleError, match="missing.tflite: model file not found"):
        load_interpreter(tmp_path / "missing.tflite")
    with pytest.raises(ValueError, match="num_threads"):
        load_interpreter(junk, num_threads=0)


def test_no_interpreter_installed_is_one_clear_error():
    """With both packages unimportable, one RuntimeError-derived error names both."""
    code = (
        "import sys\n"
        "sys.modules['ai_edge_litert'] = None; sys.modules['tflite_runtime'] = None\n"
        "from device.runtime import backend_name\n"
        "from device.errors import RuntimeMissingError, TvrecError\n"
        "try:\n"
        "    backend_name()\n"
        "except RuntimeMissingError as err:\n"
        "    assert isinstance(err, RuntimeError) and isinstance(err, TvrecError)\n"
        "    print(err)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "pip install ai-edge-litert" in proc.stdout and "tflite-runtime" in proc.stdout
    assert issubclass(RuntimeMissingError, RuntimeError)


def test_forcing_an_absent_backend_names_it():
    try:
        import tflite_runtime  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeMissingError, match="pip install tflite-runtime"):
            TFLiteModel(b"", backend="tflite_runtime")
    else:
        pytest.skip("tflite_runtime is installed in this environment")


def test_tflite_runtime_backend(models, tmp_path):
    """The same wrapper on tflite-runtime: in-process if importable, else in `.venv-tflite`
    (tflite-runtime 2.14 needs numpy<2; `make test` creates that venv)."""
    (tmp_path / "int8.tflite").write_bytes(models["int8"])
    x = _x(6)
    np.save(tmp_path / "x.npy", x)
    expect = TFLiteModel(models["int8"]).run([x])[0]
    try:
        import tflite_runtime  # noqa: F401
        python = sys.executable
    except ImportError:
        venv = ROOT / ".venv-tflite" / "bin" / "python"
        if not venv.exists():
            pytest.skip("tflite_runtime is not installed and .venv-tflite does not exist "
                        "(make test creates it; wheels exist for x86_64 cp311)")
        python = str(venv)
    code = (
        "import sys, numpy as np\n"
        "from device.runtime import TFLiteModel\n"
        "for xnn in (True, False):\n"
        "    m = TFLiteModel(sys.argv[1] + '/int8.tflite', backend='tflite_runtime', use_xnnpack=xnn)\n"
        "    assert m.backend == 'tflite_runtime'\n"
        "    y = m.run([np.load(sys.argv[1] + '/x.npy')])[0]\n"
        "    np.save(sys.argv[1] + f'/y{int(xnn)}.npy', y)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([python, "-c", code, str(tmp_path)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for xnn in (0, 1):
        np.testing.assert_allclose(np.load(tmp_path / f"y{xnn}.npy"), expect, atol=1e-6)


def test_recurrent_state_does_not_leak_between_runs():
    """The fused LSTM keeps its state in variable tensors that invoke() does not clear: every run
    must start from zeros, so a clip's output never depends on the clip run before it."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("tf_keras")
    keras.utils.set_random_seed(0)
    inp = keras.Input((2, IN), batch_size=1)
    model = keras.Model(inp, keras.layers.LSTM(OUT)(inp))
    fn = tf.function(lambda x: model(x, training=False),
                     input_signature=[tf.TensorSpec((1, 2, IN), tf.float32)]).get_concrete_function()
    blob = tf.lite.TFLiteConverter.from_concrete_functions([fn], model).convert()
    m = TFLiteModel(blob, use_xnnpack=False)
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in m.op_profile()
    rng = np.random.default_rng(4)
    a, b = (rng.standard_normal((1, 2, IN)).astype(np.float32) * 2 for _ in range(2))
    first = m.run([b])[0]
    m.run([a])
    again = m.run([b])[0]
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(again, np.asarray(model(b, training=False)), atol=1e-5)
