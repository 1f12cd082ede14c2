"""Bundle archives: reproducible bytes, and what a reader refuses."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from extproc.bundle.archive import BundleError, build_archive, read_archive
from extproc.bundle.build import build
from extproc.policy.loader import PolicyLoadError, validate_policy_dir
from tests.unit.bundle.conftest import ALLOW_A, ALLOW_A_AND_B, JWKS, WITH_JWKS, make_policy


def test_same_directory_same_bytes(tmp_path: Path) -> None:
    policy = make_policy(tmp_path / "p", {"a.yaml": ALLOW_A_AND_B, "z.yml": "routes: [{name: z}]\n"})
    first = build(policy).archive
    os.utime(policy / "a.yaml", (1, 1))  # mtimes, modes and location do not matter
    (policy / "z.yml").chmod(0o600)
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(policy, copy)
    assert build(policy).archive == first
    assert build(copy).archive == first


def test_archive_layout_is_fixed(tmp_path: Path) -> None:
    built = build(make_policy(tmp_path / "p", {"b.yaml": ALLOW_A, "a.yaml": "routes: [{name: z}]\n"}))
    raw = gzip.decompress(built.archive)
    assert built.archive[4:8] == b"\0\0\0\0"  # gzip header mtime
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["manifest.json", "policy/a.yaml", "policy/b.yaml"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "", "", 0o644)}


def test_manifest_carries_the_loaders_revision_and_digests(tmp_path: Path) -> None:
    policy = make_policy(tmp_path / "p", {"a.yaml": ALLOW_A_AND_B})
    built = build(policy)
    bundle = read_archive(built.archive)
    assert bundle.manifest.revision == built.revision == validate_policy_dir(policy).revision
    assert bundle.manifest.routes == ("a", "b")
    [entry] = bundle.manifest.files
    assert (entry.path, entry.size) == ("a.yaml", len(ALLOW_A_AND_B))
    assert entry.sha256 == hashlib.sha256(ALLOW_A_AND_B.encode()).hexdigest()
    assert bundle.files == {"a.yaml": ALLOW_A_AND_B.encode()}


def test_referenced_files_are_packed(tmp_path: Path) -> None:
    policy = make_policy(
        tmp_path / "p", {"api.yaml": WITH_JWKS, "keys/jwks.json": JWKS, "keys/unused.txt": "not packed"}
    )
    bundle = read_archive(build(policy).archive)
    assert sorted(bundle.files) == ["api.yaml", "keys/jwks.json"]


def test_a_file_outside_the_directory_is_refused(tmp_path: Path) -> None:
    make_policy(tmp_path, {"keys/jwks.json": JWKS})
    policy = make_policy(tmp_path / "p", {"api.yaml": WITH_JWKS.replace("keys/jwks.json", "../keys/jwks.json")})
    with pytest.raises(BundleError, match="outside"):
        build(policy)


def test_an_invalid_policy_is_not_built(tmp_path: Path) -> None:
    policy = make_policy(tmp_path / "p", {"a.yaml": "routes: [{name: a, capabilities: [{type: nope}]}]\n"})
    with pytest.raises(PolicyLoadError, match="unknown capability"):
        build(policy)


def _tar_gz(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for info, content in entries:
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return out.getvalue()


def _file(name: str, content: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    return info, content


def _manifest(files: dict[str, bytes]) -> tuple[tarfile.TarInfo, bytes]:
    document = {
        "format": "extproc-policy-bundle/1",
        "revision": "r",
        "routes": [],
        "files": [{"path": p, "sha256": hashlib.sha256(c).hexdigest(), "size": len(c)} for p, c in files.items()],
    }
    return _file("manifest.json", json.dumps(document).encode())


def test_reader_accepts_what_build_writes() -> None:
    files = {"a.yaml": ALLOW_A.encode(), "keys/k.json": b"{}"}
    assert read_archive(build_archive(files, "r", ["a"])).files == files


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([_file("policy/a.yaml", b"x")], "first entry is not manifest.json"),
        ([_manifest({}), _file("policy/a.yaml", b"x")], "disagree"),
        ([_manifest({"a.yaml": b"x"}), _file("policy/a.yaml", b"y")], "does not match its manifest digest"),
        ([_manifest({"a.yaml": b"x"})], "disagree"),
        ([_manifest({}), _file("etc/passwd", b"x")], "unexpected archive entry"),
        ([_manifest({}), _file("policy/../../evil.yaml", b"x")], "unsafe path"),
        ([_manifest({}), _file("policy//abs.yaml", b"x")], "unsafe path"),
    ],
)
def test_reader_refuses(entries: list[tuple[tarfile.TarInfo, bytes]], expected: str) -> None:
    with pytest.raises(BundleError, match=expected):
        read_archive(_tar_gz(entries))


def test_reader_refuses_links() -> None:
    link = tarfile.TarInfo("policy/a.yaml")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    with pytest.raises(BundleError, match="not a regular file"):
        read_archive(_tar_gz([_manifest({}), (link, None)]))


def test_reader_refuses_a_manifest_path_escaping() -> None:
    with pytest.raises(BundleError, match="unsafe path"):
        read_archive(_tar_gz([_manifest({"../x.yaml": b"x"})]))


def test_reader_refuses_a_path_both_file_and_directory() -> None:
    files = {"a.yaml": b"x", "a.yaml/b.json": b"y"}
    entries = [_manifest(files)] + [_file(f"policy/{p}", c) for p, c in files.items()]
    with pytest.raises(BundleError, match="both as a file and as a directory"):
        read_archive(_tar_gz(entries))


def test_reader_refuses_garbage() -> None:
    with pytest.raises(BundleError, match="not a readable bundle archive"):
        read_archive(b"this is not gzip")


def test_a_policy_with_referenced_files_has_one_revision_wherever_unpacked(tmp_path: Path) -> None:
    policy = make_policy(tmp_path / "p", {"api.yaml": WITH_JWKS, "keys/jwks.json": JWKS})
    bundle = read_archive(build(policy).archive)
    revisions = set()
    for host in ("host-a", "host-b"):
        bundle.write_to(tmp_path / host)
        revisions.add(validate_policy_dir(tmp_path / host).revision)
    assert revisions == {bundle.manifest.revision}
