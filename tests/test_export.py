"""Export end to end on a small generated catalog: int8 TFLite facts, parity, the bundle.

One module-scoped pipeline (generate 60 programmes with real MP4s -> train 2 epochs -> export)
feeds every test; it is the slowest part of the suite (about a minute).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from export.package import export_bundle
    from models.catalog import generate_catalog
    from models.train_pipeline import train_catalog

    base = tmp_path_factory.mktemp("export")
    generate_catalog(base / "cat", n_items=60, n_profiles=60, seed=3, progress=False)
    train_catalog(base / "cat", base / "train", epochs=2, seed=0, progress=False, plots=False)
    report = export_bundle(base / "train", base / "cat", base / "out", qat_epochs=1, seed=0,
                           progress=False, profile_branches=False)
    return base, report


def test_report_has_the_promised_keys(exported):
    base, report = exported
    on_disk = json.loads((base / "out" / "report.json").read_text())
    assert on_disk["int8_variant"] == report["int8_variant"]
    for key in ("mean_cosine", "min_cosine"):
        assert 0.0 < on_disk["parity"][key] <= 1.0 + 1e-6
    assert on_disk["size_bytes"]["int8_tflite"] < on_disk["size_bytes"]["float_tflite"] / 2.5
    for v in ("float", "int8"):
        assert 0.0 <= on_disk["cold_start"]["ndcg@20"][v] <= 1.0
        assert on_disk["latency_ms"][v] > 0
    assert on_disk["min_runtime_version"]
    assert (base / "out" / "parity.png").stat().st_size > 10_000
    assert (base / "out" / "float.tflite").stat().st_size == on_disk["size_bytes"]["float_tflite"]


def test_int8_model_is_fully_integer_with_the_fused_lstm(exported):
    from device.runtime import load_interpreter

    base, report = exported
    blob = (base / "out" / "bundle" / "content_model.tflite").read_bytes()
    it = load_interpreter(blob, 1, False)
    it.allocate_tensors()
    ops = {d["op_name"] for d in it._get_ops_details()}
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in ops
    assert not {op for op in ops if "FLEX" in op.upper() or op in ("WHILE", "CUSTOM")}
    assert [d["dtype"] for d in it.get_input_details()] == [np.int8, np.int8]
    assert [d["dtype"] for d in it.get_output_details()] == [np.int8]
    lstm, units = set(), None
    for d in it._get_ops_details():
        if d["op_name"] == "UNIDIRECTIONAL_SEQUENCE_LSTM":
            lstm.update(int(i) for i in list(d["inputs"]) + list(d["outputs"]) if i >= 0)
            units = int(it.get_tensor_details()[int(d["outputs"][0])]["shape"][-1])
    for t in it.get_tensor_details():
        dtype, shape, size = t["dtype"], list(t["shape"]), int(np.prod(t["shape"]))
        lstm_state = t["index"] in lstm or shape == [1, units]  # operands, state, kernel scratch
        if dtype == np.int8:
            continue
        if dtype == np.float32:
            # The integer LSTM's "intermediate" tensors only carry quantisation parameters.
            assert size == 0, f"float tensor {t['index']} {shape}"
        elif dtype == np.int16:
            assert lstm_state, f"int16 outside the LSTM: tensor {t['index']} {shape}"
        elif dtype == np.int32:
            # biases and shape operands are 1-D; only the LSTM has 2-D int32 tensors
            assert len(shape) <= 1 or lstm_state, f"int32 tensor {t['index']} {shape}"
        else:
            pytest.fail(f"unexpected tensor type {dtype} (tensor {t['index']})")


def test_int8_matches_float_tflite_on_real_clips(exported, shared_data):
    """Parity re-checked independently: the shipped int8 model vs the float .tflite beside the
    report, on real recordings the quantiser never saw."""
    from device.content import ContentEmbedder
    from device.features import FeatureConfig

    base, _ = exported
    manifest = json.loads((base / "out" / "bundle" / "manifest.json").read_text())
    cfg = FeatureConfig.from_dict(manifest["feature_config"])
    q8 = ContentEmbedder(base / "out" / "bundle" / "content_model.tflite", cfg)
    fl = ContentEmbedder(base / "out" / "float.tflite", cfg)
    clips = sorted((shared_data / "media" / "video").glob("*.mp4"))
    assert clips
    cos = []
    for clip in clips:
        a = q8.embed_file(clip).vector
        b = fl.embed_file(clip).vector
        assert np.isfinite(a).all() and abs(np.linalg.norm(a) - 1) < 1e-3
        cos.append(float(a @ b))
    assert np.mean(cos) >= 0.95, cos


def test_bundle_verifies_and_opens(exported):
    from device.bundle import open_bundle

    base, report = exported
    bundle = open_bundle(base / "out" / "bundle")
    assert bundle.n_items == 60
    assert bundle.k >= 1 and bundle.dim == 32
    assert bundle.manifest["extra"]["int8_variant"] == report["int8_variant"]["chosen"]
    cold = np.asarray(bundle.items.cold)
    assert cold.any() and (~cold).any()
    # Cold rows have no co-watch neighbours; warm rows point only at warm items.
    nb = np.asarray(bundle.table.neighbours)
    assert (nb[cold] < 0).all()
    targets = nb[~cold][nb[~cold] >= 0]
    assert not cold[targets].any()
    proc = subprocess.run([sys.executable, "-m", "tvrec.cli", "bundle", "verify",
                           str(base / "out" / "bundle")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


def test_tflite_runtime_fallback_runs_the_int8_model(exported):
    """The box's other runtime (tflite-runtime 2.14, numpy<2) loads and runs the model, in its
    own environment (`make test` creates .venv-tflite)."""
    py = ROOT / ".venv-tflite" / "bin" / "python"
    if not py.exists():
        pytest.skip(".venv-tflite not created (make test creates it; x86_64 only for cp311)")
    base, _ = exported
    code = (
        "import sys, numpy as np; from tflite_runtime.interpreter import Interpreter\n"
        "it = Interpreter(model_path=sys.argv[1], num_threads=1); it.allocate_tensors()\n"
        "for d in it.get_input_details(): it.set_tensor(d['index'], np.zeros(d['shape'], d['dtype']))\n"
        "it.invoke(); out = it.get_tensor(it.get_output_details()[0]['index'])\n"
        "print(out.shape, out.dtype)\n"
    )
    proc = subprocess.run([str(py), "-c", code, str(base / "out" / "bundle" / "content_model.tflite")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "(1, 32) int8" in proc.stdout
