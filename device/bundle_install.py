"""Moving bundles to the box and switching between them: :func:`pack_bundle` /
:func:`unpack_bundle` (one flat ``.tar`` / ``.tar.gz``), :func:`install_bundle` (verified,
atomic, versions side by side), :func:`rollback` and :func:`current_bundle`. The store's layout
is described in :mod:`device.bundle_format`."""

from __future__ import annotations

import contextlib
import json
import os
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from device.bundle_format import (
    _HASH_CHUNK, _NAME_RE, MANIFEST, Bundle, PathLike, VerifyLevel, _fsync_dir, _reason,
    shutil, tarfile, tempfile)
from device.bundle_sign import SIGNATURE, check_signature, log, manifest_version
from device.bundle_verify import _open, open_bundle
from device.errors import BundleError
from device.features import sha256


# --------------------------------------------------------------------------- transfer


def _archive_mode(archive: Path, write: bool) -> str:
    name = archive.name.lower()
    if name.endswith((".tar.gz", ".tgz")):
        return "w:gz" if write else "r:gz"
    if name.endswith(".tar"):
        return "w" if write else "r:"
    raise BundleError(f"{archive}: archive name must end in .tar, .tar.gz or .tgz")


def pack_bundle(bundle_dir: PathLike, archive_path: PathLike) -> Path:
    """Verify a bundle fully and write it as one ``.tar`` / ``.tar.gz`` for transfer.

    Members are the flat file names (manifest first), regular files only. The archive is
    written beside its final name and renamed when complete.
    """
    bundle = open_bundle(bundle_dir, verify="full")
    archive = Path(archive_path)
    mode = _archive_mode(archive, write=True)
    archive.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{archive.name}.tmp-", dir=archive.parent)
    os.close(fd)
    try:
        with tarfile.open(tmp, mode) as tar:
            signed = [SIGNATURE] if (bundle.path / SIGNATURE).is_file() else []
            for name in [MANIFEST, *signed, *sorted(bundle.manifest["files"])]:
                src = bundle.path / name
                info = tar.gettarinfo(str(src), arcname=name)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = 0o644
                with open(src, "rb") as fh:
                    tar.addfile(info, fh)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; an archive is for others to read
        os.replace(tmp, archive)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(err, OSError):
            raise BundleError(f"{archive}: cannot write archive ({_reason(err)})") from None
        raise
    return archive


def _extract(archive: Path, dest: Path) -> None:
    """Extract the flat regular files of a bundle archive into ``dest`` (fsynced)."""
    label = str(archive)
    mode = _archive_mode(archive, write=False)
    seen: set[str] = set()
    try:
        with tarfile.open(archive, mode) as tar:
            for member in tar:
                name = member.name[2:] if member.name.startswith("./") else member.name
                if member.isdir() and name in ("", "."):
                    continue
                if not member.isfile():
                    raise BundleError(f"{label}: {member.name} is not a regular file "
                                      "(links, devices and folders are refused)")
                if not _NAME_RE.match(name) or name in seen:
                    raise BundleError(f"{label}: member {member.name!r} is not a plain, "
                                      "unique bundle file name")
                seen.add(name)
                src = tar.extractfile(member)
                assert src is not None
                with open(dest / name, "wb") as out:
                    shutil.copyfileobj(src, out, _HASH_CHUNK)
                    out.flush()
                    os.fsync(out.fileno())
    except BundleError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise BundleError(f"{label}: not a readable bundle archive ({_reason(err)})") from None


def unpack_bundle(archive_path: PathLike, out_dir: PathLike) -> Path:
    """Extract a :func:`pack_bundle` archive to ``out_dir`` (atomically), verified fully.

    Raises
    ------
    BundleError
        The archive is unreadable, holds anything but flat regular files, or the bundle in it
        fails verification (the message names the archive and the file); nothing is left under
        ``out_dir``.
    """
    archive = Path(archive_path)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BundleError(f"{out}: already exists and is not an empty folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        _extract(archive, tmp)
        _open(tmp, "full", str(archive))
        os.chmod(tmp, 0o755)
        _fsync_dir(tmp)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(out.parent)
    return out


# --------------------------------------------------------------------------- install


VERSIONS = "versions"
CURRENT = "current"
PREVIOUS = "previous"
_STAGING_PREFIX = ".staging-"


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Serialise installs/rollbacks on one root (advisory ``flock``; no-op without fcntl)."""
    root.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: the box is Linux, this is for developer machines
        yield
        return
    with open(root / ".lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _copy_file(src: Path, dst: Path) -> None:
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout, _HASH_CHUNK)
        fout.flush()
        os.fsync(fout.fileno())


def _stage_dir(source: Path, staging: Path) -> None:
    """Copy the manifest, its signature and the files it lists (nothing else) from ``source``."""
    names = [MANIFEST, SIGNATURE]
    try:
        manifest = json.loads((source / MANIFEST).read_bytes())
        listed = manifest.get("files") if isinstance(manifest, dict) else None
        if isinstance(listed, dict):
            names += [n for n in listed if isinstance(n, str) and _NAME_RE.match(n)]
    except (OSError, ValueError):
        pass  # verification of the staged copy names the problem
    for name in names:
        src = source / name
        if src.is_file():
            try:
                _copy_file(src, staging / name)
            except OSError as err:
                raise BundleError(f"{source}: {name} cannot be copied ({_reason(err)})") from None


def _link_target(root: Path, name: str) -> str | None:
    try:
        return os.readlink(root / name)
    except (FileNotFoundError, OSError):
        return None


def _set_link(root: Path, name: str, target: str) -> None:
    """Point ``root/name`` at ``target`` atomically (symlink ``name.tmp`` then rename)."""
    tmp = root / f"{name}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, root / name)


def _version_id(path: Path, manifest: dict[str, Any]) -> str:
    digest = sha256((path / MANIFEST).read_bytes()).hexdigest()[:12]
    stamp = re.sub(r"[^0-9TZ]", "", str(manifest.get("created", "")))[:16] or "undated"
    return f"{stamp}-{digest}"


def _gc(root: Path) -> None:
    """Remove versions that neither link uses, and staging left by crashed installs."""
    keep = {os.path.basename(t) for t in (_link_target(root, CURRENT),
                                          _link_target(root, PREVIOUS)) if t}
    versions = root / VERSIONS
    if versions.is_dir():
        for entry in versions.iterdir():
            if entry.name not in keep:
                shutil.rmtree(entry, ignore_errors=True)
    for entry in root.iterdir():
        if entry.name.startswith(_STAGING_PREFIX):
            shutil.rmtree(entry, ignore_errors=True)


def _installed_manifest(root: Path) -> dict[str, Any] | None:
    """The manifest ``current`` points at (None without one, or when it cannot be read)."""
    try:
        manifest = json.loads((root / CURRENT / MANIFEST).read_bytes())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _check_not_older(root: Path, staging: Path, manifest: dict[str, Any], label: str) -> None:
    """Refuse a rollback attack: a signed bundle older than ``current`` (or the same version with
    other content). The explicit :func:`rollback` is how a box goes back."""
    installed = _installed_manifest(root)
    if installed is None:
        return
    new, old = manifest_version(manifest), manifest_version(installed)
    if new < old:
        raise BundleError(f"{label}: bundle_version {new} is older than the installed {old} "
                          "(rollback attack?); refused, `rollback` returns to the kept previous "
                          "version")
    if new == old and _version_id(staging, manifest) != os.path.basename(
            _link_target(root, CURRENT) or ""):
        raise BundleError(f"{label}: bundle_version {new} is already installed with other "
                          "content (a signed version is never reused); refused")


def install_bundle(source_dir_or_archive: PathLike, bundles_root: PathLike, *,
                   trusted_keys: PathLike | None = None, allow_unsigned: bool = False) -> Path:
    """Verify a bundle fully -- its signature, then every file's sha256 -- and make it the box's
    ``current`` one, atomically.

    Parameters
    ----------
    source_dir_or_archive : path
        A bundle folder or a :func:`pack_bundle` archive.
    bundles_root : path
        The box's bundle store (created if needed); see the module docstring for its layout.
    trusted_keys : path, optional
        Folder of the fleet's ``*.pub`` keys (:mod:`device.bundle_sign`). The bundle must be
        signed by one of them, with a ``bundle_version`` not older than the installed one.
    allow_unsigned : bool
        Development only: install without a signature check (logged as a warning). Without
        ``trusted_keys`` this is required; with them, it admits bundles that carry no signature
        (a present but bad signature is still refused).

    Returns
    -------
    Path
        The installed version folder (``bundles_root/versions/<id>``).

    Raises
    ------
    BundleError
        The bundle fails verification, is unsigned, signed by an unknown key, mixed from two
        bundles or older than the installed one (the message names the source and the reason).
        Nothing under ``bundles_root`` changes: ``current`` and ``previous`` keep their targets.
    """
    source = Path(source_dir_or_archive)
    root = Path(bundles_root)
    label = str(source)
    if trusted_keys is None and not allow_unsigned:
        raise BundleError(f"{label}: no trusted keys given; pass the folder of the fleet's "
                          "public keys (or allow_unsigned for development)")
    if not source.exists():
        raise BundleError(f"{label}: not found")
    with _locked(root):
        for entry in root.iterdir():  # a crashed install's staging folder
            if entry.name.startswith(_STAGING_PREFIX):
                shutil.rmtree(entry, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=root))
        try:
            if source.is_dir():
                _stage_dir(source, staging)
            else:
                _extract(source, staging)
            signed = (trusted_keys is not None
                      and not (allow_unsigned and not (staging / SIGNATURE).exists()))
            if signed:
                check_signature(staging, trusted_keys, label=label)
            else:
                log().warning("%s: installing WITHOUT a signature check (--allow-unsigned, "
                            "development only)", label)
            bundle = _open(staging, "full", label)
            if signed:
                _check_not_older(root, staging, bundle.manifest, label)
            vid = _version_id(staging, bundle.manifest)
            versions = root / VERSIONS
            versions.mkdir(exist_ok=True)
            dest = versions / vid
            if dest.exists():
                try:  # the same bundle again: keep the copy if it is intact
                    _open(dest, "full", str(dest))
                    shutil.rmtree(staging)
                except BundleError:
                    shutil.rmtree(dest)
            if not dest.exists():
                os.chmod(staging, 0o755)
                _fsync_dir(staging)
                os.rename(staging, dest)
                _fsync_dir(versions)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        target = os.path.join(VERSIONS, vid)
        old = _link_target(root, CURRENT)
        if old != target:
            if old is not None:
                _set_link(root, PREVIOUS, old)
            _set_link(root, CURRENT, target)
            _fsync_dir(root)
        _gc(root)
        return dest


def rollback(bundles_root: PathLike) -> Path:
    """Switch ``current`` back to ``previous`` (fully verified first); the two swap, so a second
    rollback rolls forward again. Returns the new current version folder.

    Raises
    ------
    BundleError
        There is no previous bundle, or it fails verification (``current`` is not touched).
    """
    root = Path(bundles_root)
    with _locked(root):
        prev = _link_target(root, PREVIOUS)
        if prev is None:
            raise BundleError(f"{root}: no previous bundle to roll back to")
        _open((root / prev).resolve(), "full", str(root / PREVIOUS))
        cur = _link_target(root, CURRENT)
        _set_link(root, CURRENT, prev)
        if cur is not None:
            _set_link(root, PREVIOUS, cur)
        _fsync_dir(root)
        return (root / prev).resolve()


def current_bundle(bundles_root: PathLike, *, verify: VerifyLevel = True) -> Bundle:
    """Open the bundle ``bundles_root/current`` points at (what the box runs)."""
    root = Path(bundles_root)
    if _link_target(root, CURRENT) is None:
        raise BundleError(f"{root}: no bundle installed (no '{CURRENT}' link)")
    return open_bundle(root / CURRENT, verify=verify)
