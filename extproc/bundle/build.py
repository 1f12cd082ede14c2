"""Pack a policy directory that validates into a bundle archive."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from extproc.bundle.archive import BundleError, build_archive
from extproc.policy.loader import discard_policy, load_policy_dir, policy_files
from extproc.runtime import Runtime


@dataclass(frozen=True, slots=True)
class Built:
    archive: bytes
    revision: str
    files: tuple[str, ...]
    routes: tuple[str, ...]


def policy_contents(directory: Path) -> tuple[dict[str, bytes], str, list[str]]:
    """The files ``directory``'s policy loads (relative path -> bytes), its
    revision and its routes. Raises ``PolicyLoadError`` if it does not
    validate, ``BundleError`` if it refers to a file outside itself."""
    if not directory.is_dir():
        raise BundleError(f"{directory}: not a directory")
    # A throwaway runtime, as `policy validate`: what the load refers to is
    # read from it, and its resources are released before returning.
    runtime = Runtime(quota_backend="memory")
    policy = load_policy_dir(directory, runtime)
    referenced = set(runtime.referenced_files)
    discard_policy(policy, runtime)
    root = directory.resolve()
    files: dict[str, bytes] = {}
    for path in policy_files(directory):
        files[path.name] = path.read_bytes()
    for path in sorted(referenced):
        try:
            relative = path.relative_to(root)
        except ValueError:
            raise BundleError(
                f"{path} is outside {directory}: a bundle carries its policy's files, so they must lie inside it"
            ) from None
        files[relative.as_posix()] = path.read_bytes()
    return files, policy.revision, sorted(policy.routes)


def build(directory: str | Path) -> Built:
    files, revision, routes = policy_contents(Path(directory))
    return Built(build_archive(files, revision, routes), revision, tuple(sorted(files)), tuple(routes))
