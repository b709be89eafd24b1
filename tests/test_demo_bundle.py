"""The shipped demo bundle is what the pipeline makes from the demo catalog (seed 0).

Rebuilding it whole (600 clips, training, export) takes ~10 minutes, so this test regenerates
the catalog's manifest and viewing logs (seconds, `--no-media`) and checks that the bundle's item
table and co-watch table are exactly what they give; the content model's parity is re-checked
against the float model shipped beside it (`demo/float.tflite`) on real clips. The full rebuild
is `tvrec catalog generate`, `tvrec train`, `tvrec export` (README).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory, demo_bundle):
    from models.catalog import generate_catalog, load_catalog

    manifest = json.loads((demo_bundle / "manifest.json").read_text())
    seed = manifest["extra"]["catalog_seed"]
    out = tmp_path_factory.mktemp("democat")
    generate_catalog(out, n_items=manifest["n_items"], seed=seed, media=False, progress=False)
    return load_catalog(out)


def test_item_table_matches_the_catalog(demo_bundle, regenerated):
    from device.bundle import open_bundle

    b = open_bundle(demo_bundle)
    cat = regenerated
    assert [str(i) for i in b.items.ids] == [str(i) for i in cat.item_ids]
    assert list(b.items.titles) == [it.title for it in cat.items]
    np.testing.assert_array_equal(np.asarray(b.items.cold), cat.cold)
    np.testing.assert_array_equal(np.asarray(b.items.durations), cat.duration_s.astype(np.float32))
    assert [g[0] for g in b.items.genres] == [it.primary_genre for it in cat.items]


def test_cowatch_table_is_reproduced_exactly(demo_bundle, regenerated):
    from device.bundle import open_bundle
    from export.package import neighbour_table_for
    from models.coldstart import interaction_matrix

    b = open_bundle(demo_bundle)
    table, _ = neighbour_table_for(regenerated, interaction_matrix(regenerated), b.k)
    np.testing.assert_array_equal(np.asarray(b.table.neighbours), table.neighbours)
    np.testing.assert_allclose(np.asarray(b.table.weights), table.weights, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(b.table.popularity), table.popularity, rtol=1e-6)


def test_shipped_int8_model_keeps_parity_with_the_float_model(demo_bundle, shared_data):
    from device.content import ContentEmbedder
    from device.features import FeatureConfig

    manifest = json.loads((demo_bundle / "manifest.json").read_text())
    cfg = FeatureConfig.from_dict(manifest["feature_config"])
    q8 = ContentEmbedder(demo_bundle / "content_model.tflite", cfg)
    fl = ContentEmbedder(demo_bundle.parent / "float.tflite", cfg)
    report = json.loads((demo_bundle.parent / "export_report.json").read_text())
    assert report["parity"]["mean_cosine"] >= 0.98
    assert report["size_bytes"]["ratio"] >= 3.5
    cos = [float(q8.embed_file(c).vector @ fl.embed_file(c).vector)
           for c in sorted((shared_data / "media" / "video").glob("*.mp4"))]
    assert np.mean(cos) >= 0.98 and min(cos) >= 0.9, cos
