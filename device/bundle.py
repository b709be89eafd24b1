"""The device bundle: everything the box needs from the fleet, in one verified folder.

This module gathers the public names of the bundle's modules, each holding one job:

* :mod:`device.bundle_format` -- the layout (file names, manifest keys), :class:`Bundle`,
  :class:`BundleItems` and :func:`write_bundle`;
* :mod:`device.bundle_verify` -- :func:`open_bundle` and its verification levels;
* :mod:`device.bundle_install` -- :func:`pack_bundle` / :func:`unpack_bundle`,
  :func:`install_bundle`, :func:`rollback`, :func:`current_bundle`;
* :mod:`device.bundle_sign` -- Ed25519 keys, :func:`sign_bundle`, :func:`check_signature`
  (checked at install, never when opening);
* :mod:`device.bundle_synth` -- :func:`synth_bundle` for scale tests.

``from device.bundle import open_bundle`` keeps working for every caller.
"""

from __future__ import annotations

from device.bundle_format import (
    EMBEDDING_SCALES, EMBEDDINGS, FILES, FORMAT, ITEM_COLD, ITEM_DURATIONS, ITEM_GENRES, ITEM_IDS,
    ITEM_RELEASE, ITEM_TITLES, MANIFEST, MODEL, NEIGHBOURS, POPULARITY, SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS, WEIGHTS, Bundle, BundleItems, PathLike, VerifyLevel, write_bundle)
from device.bundle_install import (
    CURRENT, PREVIOUS, VERSIONS, current_bundle, install_bundle, pack_bundle, rollback,
    unpack_bundle)
from device.bundle_sign import SIGNATURE, check_signature, generate_key, sign_bundle
from device.bundle_synth import synth_bundle
from device.bundle_verify import open_bundle

__all__ = [
    "Bundle",
    "BundleItems",
    "FILES",
    "FORMAT",
    "MANIFEST",
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "SIGNATURE",
    "check_signature",
    "current_bundle",
    "generate_key",
    "install_bundle",
    "open_bundle",
    "pack_bundle",
    "rollback",
    "sign_bundle",
    "synth_bundle",
    "unpack_bundle",
    "write_bundle",
    # the layout's file names, the store's link names and the type aliases
    "CURRENT",
    "EMBEDDINGS",
    "EMBEDDING_SCALES",
    "ITEM_COLD",
    "ITEM_DURATIONS",
    "ITEM_GENRES",
    "ITEM_IDS",
    "ITEM_RELEASE",
    "ITEM_TITLES",
    "MODEL",
    "NEIGHBOURS",
    "POPULARITY",
    "PREVIOUS",
    "PathLike",
    "VERSIONS",
    "VerifyLevel",
    "WEIGHTS",
]
