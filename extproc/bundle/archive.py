"""The bundle archive: a reproducible ``tar.gz`` of a policy directory.

Layout, in this order::

    manifest.json          {"format", "revision", "routes", "files": [{"path", "sha256", "size"}]}
    policy/<path>          every file the policy loads, sorted by path

Reproducible: the same directory gives the same bytes (sorted entries, mtime
0, uid/gid 0, no owner names, fixed modes, no gzip name or timestamp), so a
rebuild in CI can be compared byte for byte and the archive's digest names
its content. Nothing time-dependent is inside: the signing time travels in
the signature (``extproc.bundle.signing``).

Only the files the loader reads are packed: the policy files and the files
they refer to (JWKS, API key files), which must lie inside the directory.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

FORMAT = "extproc-policy-bundle/1"
MANIFEST = "manifest.json"
POLICY_PREFIX = "policy/"
# Policies are small; these bound what a (signed) archive may make us hold.
MAX_ARCHIVE_BYTES = 16 * 1024 * 1024
MAX_FILES = 2000
MAX_UNPACKED_BYTES = 64 * 1024 * 1024
_MANIFEST_MAX_BYTES = 1024 * 1024


class BundleError(Exception):
    """A bundle that cannot be built or read; the message is one line."""


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: str  # POSIX, relative to the policy directory
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class Manifest:
    revision: str
    routes: tuple[str, ...]
    files: tuple[FileEntry, ...]

    def to_json(self) -> bytes:
        document = {
            "format": FORMAT,
            "revision": self.revision,
            "routes": list(self.routes),
            "files": [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in self.files],
        }
        return (json.dumps(document, sort_keys=True, separators=(",", ":")) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        try:
            document = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"manifest is not JSON: {exc}") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise BundleError(f"manifest format is not {FORMAT}")
        try:
            revision = _str(document["revision"])
            routes = tuple(_str(r) for r in document["routes"])
            files = tuple(
                FileEntry(safe_relative_path(_str(f["path"])), _str(f["sha256"]), _int(f["size"]))
                for f in document["files"]
            )
        except (KeyError, TypeError) as exc:
            raise BundleError(f"manifest is malformed: {exc}") from None
        paths = {f.path for f in files}
        if len(paths) != len(files):
            raise BundleError("manifest names a file twice")
        for path in paths:
            # "a.yaml" and "a.yaml/b" cannot both be unpacked.
            parent = PurePosixPath(path).parent
            while parent != PurePosixPath("."):
                if str(parent) in paths:
                    raise BundleError(f"manifest names {parent} both as a file and as a directory")
                parent = parent.parent
        return cls(revision, routes, files)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError("expected a non-negative integer")
    return value


def safe_relative_path(name: str) -> str:
    """``name`` if it is a plain relative POSIX path that stays inside its
    root (no absolute path, no ``..``, no backslash, no empty segment)."""
    parts = name.split("/")
    if not name or "\\" in name or "\0" in name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise BundleError(f"unsafe path in bundle: {name!r}")
    return str(PurePosixPath(name))


@dataclass(frozen=True, slots=True)
class Bundle:
    """An archive's content, read and checked against its manifest."""

    manifest: Manifest
    files: dict[str, bytes]  # path -> content

    def write_to(self, directory: Path) -> None:
        for path, content in self.files.items():
            target = directory / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)


def build_archive(files: dict[str, bytes], revision: str, routes: list[str]) -> bytes:
    """The archive bytes for ``files`` (relative path -> content)."""
    entries = tuple(
        FileEntry(safe_relative_path(path), hashlib.sha256(content).hexdigest(), len(content))
        for path, content in sorted(files.items())
    )
    manifest = Manifest(revision, tuple(sorted(routes)), entries)
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, MANIFEST, manifest.to_json())
        for entry in entries:
            _add(tar, POLICY_PREFIX + entry.path, files[entry.path])
    out = io.BytesIO()
    # filename "" and mtime 0: the gzip header would otherwise carry both.
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(tar_bytes.getvalue())
    return out.getvalue()


def _add(tar: tarfile.TarFile, name: str, content: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(content))


def read_archive(data: bytes) -> Bundle:
    """Parse and check an archive. Call only on bytes whose signature was
    verified: this is the first code that interprets them."""
    if len(data) > MAX_ARCHIVE_BYTES:
        raise BundleError(f"archive larger than {MAX_ARCHIVE_BYTES} bytes")
    manifest: Manifest | None = None
    files: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for index, member in enumerate(tar):
                if index > MAX_FILES:
                    raise BundleError(f"archive holds more than {MAX_FILES} files")
                if not member.isfile():
                    raise BundleError(f"archive entry {member.name!r} is not a regular file")
                total += member.size
                if total > MAX_UNPACKED_BYTES:
                    raise BundleError(f"archive unpacks to more than {MAX_UNPACKED_BYTES} bytes")
                content = _member_bytes(tar, member)
                if index == 0:
                    if member.name != MANIFEST or member.size > _MANIFEST_MAX_BYTES:
                        raise BundleError(f"the archive's first entry is not {MANIFEST}")
                    manifest = Manifest.from_json(content)
                    continue
                if not member.name.startswith(POLICY_PREFIX):
                    raise BundleError(f"unexpected archive entry {member.name!r}")
                path = safe_relative_path(member.name[len(POLICY_PREFIX) :])
                if path in files:
                    raise BundleError(f"archive holds {path!r} twice")
                files[path] = content
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as exc:
        raise BundleError(f"not a readable bundle archive: {exc}") from None
    if manifest is None:
        raise BundleError("empty archive")
    _check_against_manifest(manifest, files)
    return Bundle(manifest, files)


def _member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    stream = tar.extractfile(member)
    if stream is None:
        raise BundleError(f"archive entry {member.name!r} has no content")
    with stream:
        return stream.read()


def _check_against_manifest(manifest: Manifest, files: dict[str, bytes]) -> None:
    listed = {f.path: f for f in manifest.files}
    if set(listed) != set(files):
        extra = sorted(set(files) - set(listed))
        missing = sorted(set(listed) - set(files))
        raise BundleError(f"archive and manifest disagree (unlisted: {extra[:3]}, missing: {missing[:3]})")
    for path, content in files.items():
        entry = listed[path]
        if len(content) != entry.size or hashlib.sha256(content).hexdigest() != entry.sha256:
            raise BundleError(f"{path} does not match its manifest digest")
