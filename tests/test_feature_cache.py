"""The catalog feature cache: decode once, reuse, re-decode only what changed."""

from __future__ import annotations

import os

import numpy as np

from device.features import FeatureConfig
from device.media import extract_features
from models.catalog import generate_catalog
from models.feature_cache import load_or_build_features


def test_decodes_once_and_redecodes_only_changed_media(tmp_path):
    generate_catalog(tmp_path, n_items=6, n_profiles=8, seed=5, progress=False, workers=1)
    cfg = FeatureConfig()
    first: dict = {}
    ids, frames, logmel = load_or_build_features(tmp_path, cfg, workers=1, progress=False,
                                                 stats=first)
    assert first["decoded"] == 6 and first["reused"] == 0
    assert frames.shape == (6, cfg.frames, cfg.size, cfg.size, 3) and frames.dtype == np.uint8
    # The cached features are exactly what the box computes from the file.
    f0, l0, _ = extract_features(tmp_path / "media" / f"{ids[0]}.mp4", cfg)
    np.testing.assert_array_equal(frames[0], f0)
    np.testing.assert_allclose(logmel[0], l0)

    again: dict = {}
    ids2, frames2, _ = load_or_build_features(tmp_path, cfg, workers=1, progress=False, stats=again)
    assert again["decoded"] == 0 and again["reused"] == 6
    np.testing.assert_array_equal(frames2, frames)

    clip = tmp_path / "media" / f"{ids[2]}.mp4"
    os.utime(clip, (clip.stat().st_atime, clip.stat().st_mtime + 10))  # the file changed
    third: dict = {}
    load_or_build_features(tmp_path, cfg, workers=1, progress=False, stats=third)
    assert third["decoded"] == 1 and third["reused"] == 5
