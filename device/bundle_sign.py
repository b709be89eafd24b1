"""Signed bundles: the fleet signs a bundle's manifest with Ed25519, the box installs only what a
trusted key signed, and never an older version than it runs.

Threat model (The Update Framework's attacks, Android's signed A/B updates): whoever can put a
file where the box fetches bundles must not decide its home screen.

* **Arbitrary package** -- the manifest pins every file's sha256 and the schema; the signature
  covers the manifest's exact bytes, so no file can change without breaking one of the two.
* **Mix-and-match** -- ``signature.json`` names the sha256 of the manifest it signs; a signature
  next to another bundle's manifest, or a file from another bundle, is refused.
* **Rollback** -- a signed manifest carries ``bundle_version`` (an int that only grows); the box
  refuses a validly signed bundle older than the one it runs (or the same version with other
  content). The explicit ``rollback`` to the kept previous version stays allowed: the box's own
  choice, not a file someone put there.
* **Freeze** -- ``sign_bundle(..., expires=...)`` puts an ``expires`` time into the signed
  manifest; the box refuses an expired bundle at install (the running one keeps serving). The
  demo bundle carries none (a box is often offline for months).

Files::

    KEY        tvrec-ed25519-secret <base64 32-byte seed>     (0600; the fleet's, never shipped)
    KEY.pub    tvrec-ed25519-public <base64 32-byte key> <key id>
    <bundle>/signature.json
               {"format": "tvrec-bundle-signature", "algorithm": "ed25519", "key_id": ...,
                "manifest_sha256": ..., "signature": <base64 64 bytes>}

The signed message is ``b"tvrec-bundle-manifest-v1\\n" + manifest.json bytes`` (the prefix keeps
a bundle signature from ever meaning anything else). A key id is the first 16 hex digits of the
public key's sha256. The box keeps its trusted public keys as ``*.pub`` files in one folder
(``/etc/tvrec/keys/`` by default), several at once for rotation.

Signatures are checked at install (:func:`check_signature`, from
:func:`device.bundle_install.install_bundle`), never when the engine opens ``current``: PyNaCl
is imported only here.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device.bundle_format import MANIFEST, PathLike, _fsync_dir, _parse_iso, _reason
from device.errors import BundleError
from device.features import sha256

__all__ = ["SIGNATURE", "DEFAULT_TRUSTED_KEYS", "Signed", "TrustedKey", "check_signature",
           "generate_key", "load_trusted_keys", "manifest_version", "sign_bundle"]

SIGNATURE = "signature.json"
SIGNATURE_FORMAT = "tvrec-bundle-signature"
DEFAULT_TRUSTED_KEYS = "/etc/tvrec/keys"
_DOMAIN = b"tvrec-bundle-manifest-v1\n"
_SECRET_TAG = "tvrec-ed25519-secret"
_PUBLIC_TAG = "tvrec-ed25519-public"

def log() -> Any:
    """The ``tvrec.bundle`` logger (logging is imported on first use: the engine never needs it)."""
    import logging

    return logging.getLogger("tvrec.bundle")


@dataclass(frozen=True)
class TrustedKey:
    """One public key the box trusts."""

    key_id: str
    public: bytes
    path: Path


@dataclass(frozen=True)
class Signed:
    """What a valid signature says: who signed, which version."""

    key_id: str
    key_path: Path
    bundle_version: int
    manifest_sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "key": str(self.key_path),
                "bundle_version": self.bundle_version, "manifest_sha256": self.manifest_sha256}


def key_id(public: bytes) -> str:
    """First 16 hex digits of the public key's sha256."""
    return sha256(bytes(public)).hexdigest()[:16]


def _b64(data: bytes) -> str:
    return base64.b64encode(bytes(data)).decode("ascii")


def _unb64(text: str, size: int, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise ValueError(f"{what} is not base64") from None
    if len(raw) != size:
        raise ValueError(f"{what} has {len(raw)} bytes, expected {size}")
    return raw


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    _fsync_dir(path.parent)


# --------------------------------------------------------------------------- keys


def generate_key(out: PathLike) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair: ``out`` (secret, mode 0600) and ``out.pub``.

    Refuses to overwrite either file. Returns both paths.
    """
    from nacl.signing import SigningKey

    secret = Path(out)
    public = secret.with_name(secret.name + ".pub")
    for p in (secret, public):
        if p.exists():
            raise BundleError(f"{p}: already exists (keys are never overwritten)")
    try:
        secret.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BundleError(f"{secret.parent}: cannot create ({_reason(err)})") from None
    sk = SigningKey.generate()
    pub = bytes(sk.verify_key)
    try:
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(f"{_SECRET_TAG} {_b64(bytes(sk))}\n")
        public.write_text(f"{_PUBLIC_TAG} {_b64(pub)} {key_id(pub)}\n", encoding="ascii")
    except OSError as err:
        raise BundleError(f"{secret}: cannot write key ({_reason(err)})") from None
    return secret, public


def _read_secret(path: PathLike) -> Any:
    from nacl.signing import SigningKey

    p = Path(path)
    try:
        text = p.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as err:
        raise BundleError(f"{p}: cannot read signing key ({_reason(err)})") from None
    parts = text.split()
    if len(parts) != 2 or parts[0] != _SECRET_TAG:
        hint = " (that is a public key; sign with the secret one)" if parts[:1] == [_PUBLIC_TAG] else ""
        raise BundleError(f"{p}: not a tvrec signing key{hint}")
    try:
        return SigningKey(_unb64(parts[1], 32, "the key"))
    except ValueError as err:
        raise BundleError(f"{p}: not a tvrec signing key ({err})") from None


def read_public_key(path: PathLike) -> TrustedKey:
    """One ``*.pub`` file as a :class:`TrustedKey` (ValueError if malformed)."""
    p = Path(path)
    parts = p.read_text(encoding="ascii").split()
    if len(parts) < 2 or parts[0] != _PUBLIC_TAG:
        raise ValueError("not a tvrec public key")
    pub = _unb64(parts[1], 32, "the key")
    return TrustedKey(key_id(pub), pub, p)


def load_trusted_keys(keys_dir: PathLike) -> dict[str, TrustedKey]:
    """Every ``*.pub`` key in ``keys_dir`` by key id. A malformed file is skipped with a warning
    (one bad file must not stop every update); a missing folder or no key at all is an error."""
    d = Path(keys_dir)
    if not d.is_dir():
        raise BundleError(f"{d}: trusted keys folder not found (put the fleet's *.pub keys there)")
    keys: dict[str, TrustedKey] = {}
    for p in sorted(d.glob("*.pub")):
        try:
            k = read_public_key(p)
        except (OSError, ValueError, UnicodeDecodeError) as err:
            log().warning("%s: ignored, not a tvrec public key (%s)", p, _reason(err))
            continue
        keys[k.key_id] = k
    if not keys:
        raise BundleError(f"{d}: no trusted keys (no valid *.pub file)")
    return keys


# --------------------------------------------------------------------------- sign


def manifest_version(manifest: dict[str, Any]) -> int:
    """The manifest's ``bundle_version`` (0 when it has none: an unsigned development bundle)."""
    v = manifest.get("bundle_version", 0)
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0


def _default_version(manifest: dict[str, Any]) -> int:
    """A new bundle's version: its ``created`` time in UTC seconds, so a later build outranks an
    earlier one without a counter to keep anywhere."""
    try:
        return int(_parse_iso(str(manifest.get("created"))).timestamp())
    except ValueError:
        return int(_dt.datetime.now(_dt.timezone.utc).timestamp())


def sign_bundle(bundle_dir: PathLike, key_path: PathLike, *, bundle_version: int | None = None,
                expires: _dt.datetime | str | None = None) -> dict[str, Any]:
    """Sign a bundle folder in place: set ``bundle_version`` (and ``expires``) in its manifest,
    then write ``signature.json`` over the manifest's bytes.

    The bundle is verified fully first (a signature vouches for content, never for damage).
    ``bundle_version`` defaults to the manifest's own (re-signing with a rotated key keeps it),
    else the ``created`` time in seconds. Both files are replaced atomically.

    Returns
    -------
    dict
        ``key_id``, ``bundle_version``, ``manifest_sha256``, ``signature`` (the file's path).
    """
    from device.bundle_verify import open_bundle

    sk = _read_secret(key_path)
    bdir = Path(bundle_dir)
    bundle = open_bundle(bdir, verify="full")
    manifest = dict(bundle.manifest)
    if bundle_version is None:
        bundle_version = manifest_version(manifest) or _default_version(manifest)
    if isinstance(bundle_version, bool) or not isinstance(bundle_version, int) or bundle_version < 1:
        raise BundleError(f"{bdir}: bundle_version must be a positive int, got {bundle_version!r}")
    manifest["bundle_version"] = bundle_version
    if expires is not None:
        if isinstance(expires, _dt.datetime):
            if expires.tzinfo is None:
                raise BundleError(f"{bdir}: expires must be timezone-aware")
            expires = expires.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            _parse_iso(str(expires))
        except ValueError:
            raise BundleError(f"{bdir}: expires {expires!r} is not an ISO 8601 time with a zone") from None
        manifest["expires"] = str(expires)
    raw = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode("utf-8")
    sig = sk.sign(_DOMAIN + raw).signature
    pub = bytes(sk.verify_key)
    digest = sha256(raw).hexdigest()
    doc = {"format": SIGNATURE_FORMAT, "algorithm": "ed25519", "key_id": key_id(pub),
           "manifest_sha256": digest, "signature": _b64(sig)}
    try:
        _write_atomic(bdir / MANIFEST, raw)
        _write_atomic(bdir / SIGNATURE, (json.dumps(doc, indent=1) + "\n").encode("ascii"))
    except OSError as err:
        raise BundleError(f"{bdir}: cannot write the signature ({_reason(err)})") from None
    return {"key_id": doc["key_id"], "bundle_version": bundle_version, "manifest_sha256": digest,
            "signature": str(bdir / SIGNATURE)}


# --------------------------------------------------------------------------- check


def check_signature(bundle_dir: PathLike, trusted_keys: PathLike | dict[str, TrustedKey], *,
                    label: str | None = None, now: _dt.datetime | None = None) -> Signed:
    """Check that a trusted key signed this bundle's manifest (not the files' hashes: opening
    with ``verify="full"`` does that against the manifest this proves authentic).

    Raises
    ------
    BundleError
        One line naming the reason: unsigned, malformed signature, unknown key, a signature of
        another manifest (files mixed from two bundles), a bad signature, no ``bundle_version``,
        expired.
    """
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    bdir = Path(bundle_dir)
    label = label or str(bdir)
    keys = trusted_keys if isinstance(trusted_keys, dict) else load_trusted_keys(trusted_keys)
    where = "" if isinstance(trusted_keys, dict) else f" in {trusted_keys}"
    try:
        raw_sig = (bdir / SIGNATURE).read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{label}: unsigned (no {SIGNATURE}); refused, sign it with "
                          "`tvrec bundle sign` or install with --allow-unsigned for "
                          "development") from None
    except OSError as err:
        raise BundleError(f"{label}: {SIGNATURE} cannot be read ({_reason(err)})") from None
    try:
        doc = json.loads(raw_sig)
        if not isinstance(doc, dict) or doc.get("format") != SIGNATURE_FORMAT:
            raise ValueError("not a tvrec bundle signature")
        if doc.get("algorithm") != "ed25519":
            raise ValueError(f"algorithm {doc.get('algorithm')!r} is not ed25519")
        kid, want, sig_text = doc["key_id"], doc["manifest_sha256"], doc["signature"]
        if not all(isinstance(x, str) for x in (kid, want, sig_text)):
            raise ValueError("key_id, manifest_sha256 and signature must be strings")
        sig = _unb64(sig_text, 64, "the signature")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise BundleError(f"{label}: {SIGNATURE} is malformed ({_reason(err)})") from None
    key = keys.get(kid)
    if key is None:
        raise BundleError(f"{label}: signed by unknown key {kid} (not among the {len(keys)} "
                          f"trusted key(s){where})")
    try:
        raw = (bdir / MANIFEST).read_bytes()
    except OSError as err:
        raise BundleError(f"{label}: {MANIFEST} cannot be read ({_reason(err)})") from None
    digest = sha256(raw).hexdigest()
    if digest != want:
        raise BundleError(f"{label}: {SIGNATURE} signs another manifest (files mixed from two "
                          f"bundles, or {MANIFEST} modified)")
    try:
        VerifyKey(key.public).verify(_DOMAIN + raw, sig)
    except BadSignatureError:
        raise BundleError(f"{label}: bad signature by key {kid} ({MANIFEST} or "
                          f"{SIGNATURE} altered)") from None
    try:
        manifest = json.loads(raw)
    except ValueError as err:  # signed garbage: only a broken fleet writes this
        raise BundleError(f"{label}: {MANIFEST} is not valid JSON ({_reason(err)})") from None
    version = manifest.get("bundle_version") if isinstance(manifest, dict) else None
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise BundleError(f"{label}: signed {MANIFEST} has no valid bundle_version")
    expires = manifest.get("expires")
    if expires is not None:
        try:
            when = _parse_iso(str(expires))
        except ValueError:
            raise BundleError(f"{label}: signed {MANIFEST} expires {expires!r} is not a "
                              "time") from None
        if (now or _dt.datetime.now(_dt.timezone.utc)) > when:
            raise BundleError(f"{label}: signature expired at {expires} (a stale bundle; the "
                              "fleet must publish a fresh one)")
    return Signed(kid, key.path, version, digest)
