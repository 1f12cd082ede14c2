"""The follower against a real HTTP server (ETags, 304s) and real files."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from extproc.bundle.archive import build_archive
from extproc.bundle.build import policy_contents
from extproc.bundle.follower import BundleFollower, BundleUnavailable, FollowerOptions
from extproc.bundle.signing import KeyRing, load_private_key, sign
from extproc.policy.loader import validate_policy_dir
from tests.unit.bundle.bundle_server import BundleServer
from tests.unit.bundle.conftest import ALLOW_A, ALLOW_A_AND_B, KeyPair, make_policy
from tests.waiting import wait_for


class Publisher:
    def __init__(self, server: BundleServer, root: Path, keys: KeyPair):
        self.server, self.root, self.keys = server, root, keys
        self.count = 0

    def bundle(self, files: dict[str, str], signed_at: int) -> tuple[bytes, bytes, str]:
        self.count += 1
        contents, revision, routes = policy_contents(make_policy(self.root / f"src{self.count}", files))
        archive = build_archive(contents, revision, routes)
        return archive, sign(archive, revision, load_private_key(self.keys.private), signed_at=signed_at), revision

    def publish(self, files: dict[str, str], signed_at: int) -> str:
        archive, signature, revision = self.bundle(files, signed_at)
        self.server.publish("bundle.tgz", archive, signature)
        return revision


@pytest.fixture
def server() -> Iterator[BundleServer]:
    server = BundleServer().start()
    yield server
    server.stop()


@pytest.fixture
def publisher(server: BundleServer, tmp_path: Path, keys: KeyPair) -> Publisher:
    return Publisher(server, tmp_path / "published", keys)


def follower(server: BundleServer, directory: Path, keys: KeyPair, poll: float = 0.1) -> BundleFollower:
    options = FollowerOptions(url=server.url("bundle.tgz"), directory=directory, poll=poll, timeout=2.0)
    return BundleFollower(options, KeyRing.from_files([keys.public]), rng=random.Random(7))


def served_revision(directory: Path) -> str:
    return validate_policy_dir(directory / "current").revision


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("policy bundle refused")]


def test_start_up_activates_the_published_bundle(server, publisher, tmp_path, keys) -> None:
    revision = publisher.publish({"a.yaml": ALLOW_A}, 100)
    f = follower(server, tmp_path / "dir", keys)
    current = f.start_up()
    assert current == tmp_path / "dir" / "current" and current.is_symlink()
    assert f.revision == revision == served_revision(tmp_path / "dir")
    assert (current / "a.yaml").read_text() == ALLOW_A


def test_an_unchanged_bundle_is_a_304(server, publisher, tmp_path, keys) -> None:
    publisher.publish({"a.yaml": ALLOW_A}, 100)
    f = follower(server, tmp_path / "dir", keys)
    f.start_up()
    server.requests.clear()
    assert f.poll_once() is False
    assert [(path, status) for path, status, _ in server.requests] == [("/bundle.tgz", 304), ("/bundle.tgz.sig", 304)]
    assert all(condition is not None for _, _, condition in server.requests)


def test_a_new_signed_revision_is_activated_atomically(server, publisher, tmp_path, keys) -> None:
    first = publisher.publish({"a.yaml": ALLOW_A}, 100)
    f = follower(server, tmp_path / "dir", keys)
    f.start_up()
    old_target = (tmp_path / "dir" / "current").resolve()
    second = publisher.publish({"a.yaml": ALLOW_A_AND_B}, 200)
    assert f.poll_once() is True
    assert f.revision == second != first
    assert served_revision(tmp_path / "dir") == second
    assert old_target.is_dir()  # the previous revision stays for workers still reloading


def test_a_tampered_archive_is_refused_once_and_the_old_one_serves(server, publisher, tmp_path, keys, caplog) -> None:
    first = publisher.publish({"a.yaml": ALLOW_A}, 100)
    f = follower(server, tmp_path / "dir", keys)
    f.start_up()
    archive, signature, _ = publisher.bundle({"a.yaml": ALLOW_A_AND_B}, 200)
    tampered = bytearray(archive)
    tampered[len(tampered) // 2] ^= 0xFF
    server.publish("bundle.tgz", bytes(tampered), signature)
    with caplog.at_level(logging.INFO, "extproc.bundle"):
        assert f.poll_once() is False
        assert f.poll_once() is False  # the same refused pair: no second log line
    [line] = refusals(caplog)
    assert "not the one signed" in line and f"still serving revision {first}" in line
    assert "\n" not in line
    assert served_revision(tmp_path / "dir") == first == f.revision


@pytest.mark.parametrize("case", ["unsigned", "wrong key", "invalid policy", "rollback"])
def test_refused_bundles(server, publisher, tmp_path, keys, other_keys, caplog, case) -> None:
    first = publisher.publish({"a.yaml": ALLOW_A}, 100)
    f = follower(server, tmp_path / "dir", keys)
    f.start_up()
    if case == "unsigned":
        archive, _, _ = publisher.bundle({"a.yaml": ALLOW_A_AND_B}, 200)
        server.publish("bundle.tgz", archive, None)
        expected = "unsigned"
    elif case == "wrong key":
        archive, _, revision = publisher.bundle({"a.yaml": ALLOW_A_AND_B}, 200)
        server.publish("bundle.tgz", archive, sign(archive, revision, load_private_key(other_keys.private)))
        expected = "not a trusted key"
    elif case == "invalid policy":
        # Signed, but the policy cannot load: the signer's CI should have
        # caught it; the follower does not trust it to have.
        archive = build_archive({"a.yaml": b"routes: [{name: a, capabilities: [{type: nope}]}]\n"}, "bad", ["a"])
        server.publish("bundle.tgz", archive, sign(archive, "bad", load_private_key(keys.private), signed_at=200))
        expected = "does not validate"
    else:
        publisher.publish({"a.yaml": ALLOW_A_AND_B}, 50)  # validly signed, but before the active one
        expected = "to roll back, sign it again"
    with caplog.at_level(logging.INFO, "extproc.bundle"):
        assert f.poll_once() is False
    [line] = refusals(caplog)
    assert expected in line and f"still serving revision {first}" in line
    assert served_revision(tmp_path / "dir") == first
    assert not [p for p in (tmp_path / "dir" / "revisions").iterdir() if p.name.startswith(".incoming")]


def test_a_resigned_archive_only_replaces_the_signature(server, publisher, tmp_path, keys) -> None:
    archive, _, revision = publisher.bundle({"a.yaml": ALLOW_A}, 100)
    server.publish("bundle.tgz", archive, sign(archive, revision, load_private_key(keys.private), signed_at=100))
    f = follower(server, tmp_path / "dir", keys)
    f.start_up()
    target = (tmp_path / "dir" / "current").resolve()
    server.publish("bundle.tgz", archive, sign(archive, revision, load_private_key(keys.private), signed_at=300))
    assert f.poll_once() is False
    assert f.active is not None and f.active.statement.signed_at == 300
    assert (tmp_path / "dir" / "current").resolve() == target


def test_restart_with_the_server_down_serves_the_bundle_on_disk(server, publisher, tmp_path, keys, caplog) -> None:
    revision = publisher.publish({"a.yaml": ALLOW_A}, 100)
    follower(server, tmp_path / "dir", keys).start_up()
    server.stop()
    with caplog.at_level(logging.INFO, "extproc.bundle"):
        restarted = follower(server, tmp_path / "dir", keys)
        assert restarted.start_up() == tmp_path / "dir" / "current"
    assert restarted.revision == revision
    assert any("serving the last good bundle from disk" in r.getMessage() for r in caplog.records)


def test_restart_reuses_the_etags(server, publisher, tmp_path, keys) -> None:
    publisher.publish({"a.yaml": ALLOW_A}, 100)
    follower(server, tmp_path / "dir", keys).start_up()
    server.requests.clear()
    follower(server, tmp_path / "dir", keys).start_up()
    assert [status for _, status, _ in server.requests] == [304, 304]


def test_no_server_and_nothing_on_disk_cannot_start(server, tmp_path, keys) -> None:
    server.stop()
    with pytest.raises(BundleUnavailable, match="cannot fetch the policy bundle"):
        follower(server, tmp_path / "dir", keys).start_up()


def test_a_tampered_bundle_and_nothing_on_disk_cannot_start(server, publisher, tmp_path, keys) -> None:
    archive, _, _ = publisher.bundle({"a.yaml": ALLOW_A}, 100)
    server.publish("bundle.tgz", archive, None)
    with pytest.raises(BundleUnavailable, match="unsigned"):
        follower(server, tmp_path / "dir", keys).start_up()


def test_altered_files_on_disk_are_not_served(server, publisher, tmp_path, keys, caplog) -> None:
    publisher.publish({"a.yaml": ALLOW_A}, 100)
    follower(server, tmp_path / "dir", keys).start_up()
    (tmp_path / "dir" / "current" / "a.yaml").write_text(ALLOW_A_AND_B)
    server.stop()
    with caplog.at_level(logging.INFO, "extproc.bundle"), pytest.raises(BundleUnavailable):
        follower(server, tmp_path / "dir", keys).start_up()
    assert any("differs from its signed archive" in r.getMessage() for r in caplog.records)


def test_a_retired_key_retires_the_bundle_on_disk(server, publisher, tmp_path, keys, other_keys) -> None:
    publisher.publish({"a.yaml": ALLOW_A}, 100)
    follower(server, tmp_path / "dir", keys).start_up()
    server.stop()
    with pytest.raises(BundleUnavailable):
        follower(server, tmp_path / "dir", other_keys).start_up()


def test_old_revisions_are_pruned(server, publisher, tmp_path, keys) -> None:
    publisher.publish({"a.yaml": ALLOW_A}, 100)
    f = follower(server, tmp_path / "dir", keys)
    f.start_up()
    for n in range(5):
        publisher.publish({"a.yaml": ALLOW_A + f"  - name: r{n}\n"}, 200 + n)
        assert f.poll_once() is True
    unpacked = [p for p in (tmp_path / "dir" / "revisions").iterdir() if p.is_dir()]
    assert len(unpacked) == 3 and (tmp_path / "dir" / "current").resolve() in unpacked
    assert len(list((tmp_path / "dir" / "revisions").glob("*.sig"))) == 3


def test_the_thread_follows_and_backs_off(server, publisher, tmp_path, keys) -> None:
    publisher.publish({"a.yaml": ALLOW_A}, 100)
    f = follower(server, tmp_path / "dir", keys, poll=0.1)
    f.start_up()
    f.start()
    try:
        second = publisher.publish({"a.yaml": ALLOW_A_AND_B}, 200)
        wait_for(lambda: f.revision == second, timeout=5)
        server.stop()
        wait_for(lambda: f.failures >= 2, timeout=5)
        assert f.revision == second
    finally:
        f.stop()


def test_backoff_is_exponential_with_jitter_and_capped(tmp_path, keys) -> None:
    options = FollowerOptions(url="http://127.0.0.1:1/b", directory=tmp_path / "d", poll=10.0, max_backoff=60.0)
    f = BundleFollower(options, KeyRing.from_files([keys.public]), rng=random.Random(1))
    assert all(8.0 <= f.next_delay() <= 10.0 for _ in range(50))  # jitter, never past the interval
    ceilings = {1: 20.0, 2: 40.0, 3: 60.0, 10: 60.0}
    for failures, ceiling in ceilings.items():
        f.failures = failures
        delays = [f.next_delay() for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1


def test_a_server_without_etags_costs_downloads_not_activations(tmp_path, keys, caplog) -> None:
    server = BundleServer(etags=False).start()
    try:
        publisher = Publisher(server, tmp_path / "published", keys)
        publisher.publish({"a.yaml": ALLOW_A}, 100)
        f = follower(server, tmp_path / "dir", keys)
        f.start_up()
        target = (tmp_path / "dir" / "current").resolve()
        assert f.poll_once() is False
        assert (tmp_path / "dir" / "current").resolve() == target
        server.publish("bundle.tgz", b"garbage", b"")
        with caplog.at_level(logging.INFO, "extproc.bundle"):
            assert f.poll_once() is False
            assert f.poll_once() is False
        assert len(refusals(caplog)) == 1
        assert all(condition is None for _, _, condition in server.requests)
    finally:
        server.stop()


def test_altered_files_on_disk_are_replaced_from_the_server(server, publisher, tmp_path, keys, caplog) -> None:
    revision = publisher.publish({"a.yaml": ALLOW_A}, 100)
    follower(server, tmp_path / "dir", keys).start_up()
    (tmp_path / "dir" / "current" / "a.yaml").write_text(ALLOW_A_AND_B)
    with caplog.at_level(logging.INFO, "extproc.bundle"):
        restarted = follower(server, tmp_path / "dir", keys)
        restarted.start_up()
    assert any("differs from its signed archive" in r.getMessage() for r in caplog.records)
    assert restarted.revision == revision == served_revision(tmp_path / "dir")
    assert (tmp_path / "dir" / "current" / "a.yaml").read_text() == ALLOW_A
