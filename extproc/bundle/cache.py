"""The follower's directory: the active bundle, unpacked and kept.

::

    DIR/current                   symlink to revisions/<name>: what the policy store serves
    DIR/revisions/<name>/         an unpacked, validated bundle (<name> = <revision>-<archive digest>)
    DIR/revisions/<name>.tar.gz   its archive, as signed
    DIR/revisions/<name>.sig      its signature
    DIR/state.json                ETags of the active pair (saves a download after a restart)

Activation writes everything of a revision first and then replaces
``current`` with one ``rename``: a reader sees the old directory or the new
one, never a mix. A few previous revisions stay (a worker may still be
reloading from one); older ones are removed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from extproc.bundle.archive import Bundle, BundleError, read_archive
from extproc.bundle.signing import KeyRing, Statement, verify

KEEP_PREVIOUS = 2
_INCOMING = ".incoming-"


@dataclass(frozen=True, slots=True)
class Active:
    statement: Statement
    bundle: Bundle
    archive: bytes
    signature: bytes
    name: str

    @property
    def revision(self) -> str:
        return self.bundle.manifest.revision


def open_signed(archive: bytes, signature: bytes, keys: KeyRing) -> tuple[Statement, Bundle]:
    """Verify, then (and only then) read. Raises ``SignatureError`` or
    ``BundleError``."""
    statement = verify(archive, signature, keys)
    bundle = read_archive(archive)
    if bundle.manifest.revision != statement.revision:
        raise BundleError(
            f"the manifest's revision {bundle.manifest.revision} is not the signed one ({statement.revision})"
        )
    return statement, bundle


def revision_name(statement: Statement) -> str:
    return f"{statement.revision}-{statement.sha256[:8]}"


class BundleCache:
    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.revisions = self.directory / "revisions"
        self.current = self.directory / "current"
        self.state_file = self.directory / "state.json"
        self.revisions.mkdir(parents=True, exist_ok=True)

    def current_name(self) -> str | None:
        try:
            return Path(os.readlink(self.current)).name
        except OSError:
            return None

    def load_active(self, keys: KeyRing) -> Active | None:
        """The bundle ``current`` points to, verified again with today's keys
        (a key removed from the trusted set also retires what it signed).
        None if there is none; ``SignatureError``/``BundleError`` if it no
        longer verifies or its unpacked files were altered."""
        name = self.current_name()
        if name is None:
            return None
        try:
            archive = (self.revisions / f"{name}.tar.gz").read_bytes()
            signature = (self.revisions / f"{name}.sig").read_bytes()
        except OSError as exc:
            raise BundleError(f"the bundle on disk is incomplete: {exc.strerror or exc}") from None
        statement, bundle = open_signed(archive, signature, keys)
        for path, content in bundle.files.items():
            try:
                on_disk = (self.revisions / name / path).read_bytes()
            except OSError:
                on_disk = None
            if on_disk != content:
                raise BundleError(f"{self.revisions / name / path} differs from its signed archive")
        return Active(statement, bundle, archive, signature, name)

    def stage(self, bundle: Bundle) -> Path:
        """Unpack into a fresh private directory under ``revisions``."""
        staged = Path(tempfile.mkdtemp(prefix=_INCOMING, dir=self.revisions))
        try:
            bundle.write_to(staged)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        return staged

    def discard(self, staged: Path) -> None:
        shutil.rmtree(staged, ignore_errors=True)

    def activate(self, staged: Path, statement: Statement, archive: bytes, signature: bytes) -> str:
        """Make the staged directory the served one; returns its name."""
        name = revision_name(statement)
        target = self.revisions / name
        stale: Path | None = None
        if target.exists():
            # The same bundle unpacked before: refused on disk at start-up
            # (altered files) and fetched again. Replace it whole.
            stale = Path(tempfile.mkdtemp(prefix=_INCOMING, dir=self.revisions))
            os.rename(target, stale / name)
        _write_atomically(self.revisions / f"{name}.tar.gz", archive)
        _write_atomically(self.revisions / f"{name}.sig", signature)
        os.rename(staged, target)
        _fsync_dir(self.revisions)
        link = self.directory / f".current-{os.getpid()}"
        link.unlink(missing_ok=True)
        os.symlink(Path("revisions") / name, link)
        os.replace(link, self.current)
        _fsync_dir(self.directory)
        if stale is not None:
            shutil.rmtree(stale, ignore_errors=True)
        self.prune()
        return name

    def replace_signature(self, name: str, signature: bytes) -> None:
        """The active archive signed again (a fresh signing time)."""
        _write_atomically(self.revisions / f"{name}.sig", signature)

    def prune(self) -> None:
        current = self.current_name()
        unpacked = [p for p in self.revisions.iterdir() if p.is_dir() and not p.name.startswith(_INCOMING)]
        unpacked.sort(key=lambda p: p.stat().st_mtime_ns, reverse=True)
        keep = {current, *[p.name for p in unpacked if p.name != current][:KEEP_PREVIOUS]}
        for path in self.revisions.iterdir():
            stem = path.name.removesuffix(".tar.gz").removesuffix(".sig")
            if stem in keep:
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def load_etags(self) -> dict[str, str]:
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(state, dict) or state.get("active") != self.current_name():
            return {}
        etags = state.get("etags")
        return {k: v for k, v in etags.items() if isinstance(v, str)} if isinstance(etags, dict) else {}

    def save_etags(self, etags: dict[str, str]) -> None:
        state = {"active": self.current_name(), "etags": etags}
        _write_atomically(self.state_file, json.dumps(state, sort_keys=True).encode())


def _write_atomically(path: Path, content: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as fh:
        fh.write(content)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temporary, path)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
