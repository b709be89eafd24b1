"""Signed bundles (device/bundle_sign.py): the attacks of The Update Framework's threat model,
each refused with one line and the old bundle still serving."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from device.bundle import (SIGNATURE, check_signature, current_bundle, generate_key,
                           install_bundle, open_bundle, pack_bundle, rollback, sign_bundle)
from device.errors import BundleError
from tests.test_bundle import small_bundle

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def keys(tmp_path):
    """The fleet's key (trusted: its .pub is in trusted/) and an attacker's key (not trusted)."""
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    fleet, fleet_pub = generate_key(tmp_path / "fleet" / "fleet.key")
    shutil.copy(fleet_pub, trusted)
    evil, _ = generate_key(tmp_path / "evil" / "evil.key")
    return {"fleet": fleet, "evil": evil, "trusted": trusted}


def signed(path: Path, key: Path, seed: int, version: int, **kw) -> Path:
    small_bundle(path, seed=seed)
    sign_bundle(path, key, bundle_version=version, **kw)
    return path


def refused(source, root, trusted, match: str) -> None:
    """Installing ``source`` fails with one line matching ``match``; ``current`` is unchanged and
    still opens with full verification."""
    before = os.readlink(root / "current") if (root / "current").is_symlink() else None
    with pytest.raises(BundleError, match=match) as info:
        install_bundle(source, root, trusted_keys=trusted)
    assert "\n" not in str(info.value)
    after = os.readlink(root / "current") if (root / "current").is_symlink() else None
    assert after == before
    if before is not None:
        assert current_bundle(root, verify=True).path.name == os.path.basename(before)


def test_keygen_writes_a_private_and_a_public_file_and_never_overwrites(tmp_path):
    secret, public = generate_key(tmp_path / "k")
    assert public == tmp_path / "k.pub"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert secret.read_text().startswith("tvrec-ed25519-secret ")
    assert public.read_text().startswith("tvrec-ed25519-public ")
    with pytest.raises(BundleError, match="already exists"):
        generate_key(tmp_path / "k")


def test_sign_sets_the_version_and_a_trusted_key_installs_it(tmp_path, keys):
    b = signed(tmp_path / "b", keys["fleet"], 1, 7)
    manifest = json.loads((b / "manifest.json").read_text())
    assert manifest["bundle_version"] == 7
    s = check_signature(b, keys["trusted"])
    assert s.bundle_version == 7 and s.key_path.parent == keys["trusted"]
    assert open_bundle(b).manifest["bundle_version"] == 7  # signing keeps the bundle valid
    root = tmp_path / "root"
    v = install_bundle(b, root, trusted_keys=keys["trusted"])
    assert (v / SIGNATURE).is_file(), "the store keeps the signature with the version"
    # Through an archive too: the signature travels in it.
    b2 = signed(tmp_path / "b2", keys["fleet"], 2, 8)
    v2 = install_bundle(pack_bundle(b2, tmp_path / "b2.tar.gz"), root, trusted_keys=keys["trusted"])
    assert current_bundle(root).path == v2


def test_every_attack_is_refused_with_the_old_bundle_serving(tmp_path, keys):
    root, trusted = tmp_path / "root", keys["trusted"]
    install_bundle(signed(tmp_path / "v5", keys["fleet"], 5, 5), root, trusted_keys=trusted)

    # Arbitrary package: unsigned.
    refused(small_bundle(tmp_path / "unsigned", seed=9), root, trusted, "unsigned")
    # Signed by a key the box does not trust.
    refused(signed(tmp_path / "by-evil", keys["evil"], 9, 99), root, trusted, "unknown key")
    # A file rewritten and its sha256 recomputed in the manifest (the attack).
    forged = signed(tmp_path / "forged", keys["fleet"], 6, 6)
    pop = forged / "popularity.npy"
    pop.write_bytes(pop.read_bytes()[:-4] + b"\x00\x00\x80\x7f")
    m = json.loads((forged / "manifest.json").read_text())
    import hashlib

    m["files"]["popularity.npy"]["sha256"] = hashlib.sha256(pop.read_bytes()).hexdigest()
    (forged / "manifest.json").write_text(json.dumps(m, indent=1, sort_keys=True) + "\n")
    refused(forged, root, trusted, "signs another manifest")
    # ...and with the signature's manifest_sha256 patched as well: the signature itself fails.
    sig = json.loads((forged / SIGNATURE).read_text())
    sig["manifest_sha256"] = hashlib.sha256((forged / "manifest.json").read_bytes()).hexdigest()
    (forged / SIGNATURE).write_text(json.dumps(sig))
    refused(forged, root, trusted, "bad signature")
    # A file changed without touching the manifest: the hashes of the signed manifest.
    tampered = signed(tmp_path / "tampered", keys["fleet"], 6, 6)
    (tampered / "weights.npy").write_bytes(b"\0" * (tampered / "weights.npy").stat().st_size)
    refused(tampered, root, trusted, "weights.npy sha256 mismatch")
    # Mix-and-match: two validly signed bundles' files combined.
    a, b = signed(tmp_path / "a", keys["fleet"], 6, 6), signed(tmp_path / "b", keys["fleet"], 7, 7)
    shutil.copy(b / "manifest.json", a / "manifest.json")
    refused(a, root, trusted, "signs another manifest")
    shutil.copy(b / SIGNATURE, a / SIGNATURE)  # b's manifest + signature, a's arrays
    refused(a, root, trusted, "sha256 mismatch")
    # Rollback attack: an older, validly signed bundle.
    refused(signed(tmp_path / "v4", keys["fleet"], 4, 4), root, trusted, "older than the installed 5")
    # The same version with other content.
    refused(signed(tmp_path / "v5b", keys["fleet"], 55, 5), root, trusted, "already installed")
    # Freeze: a signature that expired.
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    refused(signed(tmp_path / "stale", keys["fleet"], 8, 8, expires=past), root, trusted, "expired")
    # A malformed signature file.
    junk = signed(tmp_path / "junk", keys["fleet"], 8, 8)
    (junk / SIGNATURE).write_text("{not json")
    refused(junk, root, trusted, "malformed")


def test_newer_installs_and_the_explicit_rollback_goes_back(tmp_path, keys):
    root, trusted = tmp_path / "root", keys["trusted"]
    v1 = install_bundle(signed(tmp_path / "v1", keys["fleet"], 1, 1), root, trusted_keys=trusted)
    v2 = install_bundle(signed(tmp_path / "v2", keys["fleet"], 2, 2), root, trusted_keys=trusted)
    assert install_bundle(tmp_path / "v2", root, trusted_keys=trusted) == v2  # idempotent
    assert rollback(root) == v1 and current_bundle(root).path == v1
    # After the box's own rollback, the newer one installs again; the older is still refused.
    refused(signed(tmp_path / "v1b", keys["fleet"], 3, 1), root, trusted, "already installed")
    assert install_bundle(tmp_path / "v2", root, trusted_keys=trusted) == v2


def test_key_rotation_trusts_every_key_in_the_folder(tmp_path, keys):
    new, new_pub = generate_key(tmp_path / "rotated" / "2027.key")
    shutil.copy(new_pub, keys["trusted"])
    (keys["trusted"] / "broken.pub").write_text("garbage\n")  # skipped, logged
    root = tmp_path / "root"
    install_bundle(signed(tmp_path / "old", keys["fleet"], 1, 1), root, trusted_keys=keys["trusted"])
    install_bundle(signed(tmp_path / "new", new, 2, 2), root, trusted_keys=keys["trusted"])
    # Re-signing a bundle with the new key keeps its version.
    sign_bundle(tmp_path / "old", new)
    assert check_signature(tmp_path / "old", keys["trusted"]).bundle_version == 1


def test_no_keys_means_no_install_unless_unsigned_is_explicit(tmp_path, keys, caplog):
    b = small_bundle(tmp_path / "b")
    with pytest.raises(BundleError, match="no trusted keys given"):
        install_bundle(b, tmp_path / "root")
    with pytest.raises(BundleError, match="trusted keys folder not found"):
        install_bundle(b, tmp_path / "root", trusted_keys=tmp_path / "nowhere")
    with caplog.at_level("WARNING", logger="tvrec.bundle"):
        install_bundle(b, tmp_path / "root", allow_unsigned=True)
    assert "WITHOUT a signature check" in caplog.text
    # allow_unsigned admits a bundle without a signature, never a bad one.
    bad = signed(tmp_path / "bad", keys["evil"], 3, 3)
    with pytest.raises(BundleError, match="unknown key"):
        install_bundle(bad, tmp_path / "root", trusted_keys=keys["trusted"], allow_unsigned=True)


def test_the_demo_bundle_is_signed_by_the_demo_key(demo_bundle):
    s = check_signature(demo_bundle, ROOT / "demo" / "keys")
    assert s.bundle_version >= 1


def test_cli_keygen_sign_verify_install(tmp_path):
    def run(prog, *args):
        mod = "tvrec.cli" if prog == "tvrec" else "device.service"
        return subprocess.run([sys.executable, "-m", mod, *map(str, args)], capture_output=True,
                              text=True, cwd=ROOT)

    key = tmp_path / "k" / "fleet.key"
    assert run("tvrec", "bundle", "keygen", "--out", key).returncode == 0
    (tmp_path / "trusted").mkdir()
    shutil.copy(f"{key}.pub", tmp_path / "trusted")
    b = small_bundle(tmp_path / "b")
    p = run("tvrec", "bundle", "verify", b, "--trusted-keys", tmp_path / "trusted")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "unsigned" in p.stderr
    assert run("tvrec", "bundle", "sign", b, "--key", key, "--bundle-version", 3).returncode == 0
    p = run("tvrec", "bundle", "verify", b, "--trusted-keys", tmp_path / "trusted")
    assert p.returncode == 0 and "bundle_version 3" in p.stdout, p.stderr
    p = run("tvrec-device", "install", b, "--bundles", tmp_path / "root", "--trusted-keys",
            tmp_path / "trusted")
    assert p.returncode == 0, p.stderr
    p = run("tvrec-device", "install", small_bundle(tmp_path / "u", seed=4), "--bundles",
            tmp_path / "root", "--trusted-keys", tmp_path / "trusted")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "unsigned" in p.stderr
    p = run("tvrec-device", "install", tmp_path / "u", "--bundles", tmp_path / "root2",
            "--allow-unsigned")
    assert p.returncode == 0 and "WARNING --allow-unsigned" in p.stderr
