"""`extproc policy bundle build|sign|verify|keygen`, run in process."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from extproc.cli import main
from tests.unit.bundle.conftest import ALLOW_A_AND_B, KeyPair, make_policy


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_keygen_build_sign_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = make_policy(tmp_path / "p", {"a.yaml": ALLOW_A_AND_B})
    prefix = str(tmp_path / "ci")
    code, out, _ = run(capsys, "policy", "bundle", "keygen", "--out", prefix)
    assert code == 0 and "key " in out
    assert stat.S_IMODE(Path(prefix + ".key").stat().st_mode) == 0o600
    code, _, err = run(capsys, "policy", "bundle", "keygen", "--out", prefix)
    assert code == 1 and "not overwriting" in err

    archive = str(tmp_path / "b.tgz")
    code, out, _ = run(capsys, "policy", "bundle", "build", str(policy), "-o", archive)
    assert code == 0 and "2 route(s)" in out
    first = Path(archive).read_bytes()
    run(capsys, "policy", "bundle", "build", str(policy), "-o", archive)
    assert Path(archive).read_bytes() == first

    code, out, _ = run(capsys, "policy", "bundle", "sign", archive, "--key", prefix + ".key")
    assert code == 0 and Path(archive + ".sig").is_file()
    code, out, _ = run(capsys, "policy", "bundle", "verify", archive, "--key", prefix + ".pub")
    assert code == 0 and out.startswith("ok: revision ")


def test_verify_refuses_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = make_policy(tmp_path / "p", {"a.yaml": ALLOW_A_AND_B})
    prefix, archive = str(tmp_path / "ci"), str(tmp_path / "b.tgz")
    run(capsys, "policy", "bundle", "keygen", "--out", prefix)
    run(capsys, "policy", "bundle", "keygen", "--out", str(tmp_path / "other"))
    run(capsys, "policy", "bundle", "build", str(policy), "-o", archive)

    code, _, err = run(capsys, "policy", "bundle", "verify", archive, "--key", prefix + ".pub")
    assert code == 1 and err.strip() == "extproc: bundle refused: unsigned: the signature is empty"

    run(capsys, "policy", "bundle", "sign", archive, "--key", prefix + ".key")
    code, _, err = run(capsys, "policy", "bundle", "verify", archive, "--key", str(tmp_path / "other.pub"))
    assert code == 1 and "not a trusted key" in err and len(err.strip().splitlines()) == 1

    data = bytearray(Path(archive).read_bytes())
    data[-20] ^= 0x01
    Path(archive).write_bytes(bytes(data))
    code, _, err = run(capsys, "policy", "bundle", "verify", archive, "--key", prefix + ".pub")
    assert code == 1 and "not the one signed" in err and "PRIVATE" not in err


def test_build_refuses_an_invalid_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = make_policy(tmp_path / "p", {"a.yaml": "routes: [{name: a, capabilities: [{type: nope}]}]\n"})
    code, _, err = run(capsys, "policy", "bundle", "build", str(policy), "-o", str(tmp_path / "b.tgz"))
    assert code == 1 and "unknown capability" in err and "no bundle written" in err
    assert not (tmp_path / "b.tgz").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), "extproc: --bundle needs --bundle-key: a bundle is served only if a trusted key signed it"),
        (("--bundle-key", "{pub}"), "extproc: --bundle: not an http(s) URL: file:///etc/policy.tgz"),
        (("--bundle-key", "{key}"), "not a PEM public key"),
    ],
)
def test_serve_bundle_flags_fail_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: KeyPair, args: tuple[str, ...], expected: str
) -> None:
    argv = [a.format(pub=keys.public, key=keys.private) for a in args]
    code, _, err = run(capsys, "serve", "--port", "0", "--bundle", "file:///etc/policy.tgz", *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert expected in err


def test_fetch_urls_are_checked_and_redacted() -> None:
    from extproc.bundle.fetch import check_url, redact

    assert check_url("https://h.example/p.tgz") == "https://h.example/p.tgz"
    for bad in ("ftp://h/p", "file:///p", "http:///nohost"):
        with pytest.raises(ValueError, match="not an http"):
            check_url(bad)
    assert redact("https://user:secret@h.example:8443/p.tgz?X-Amz-Signature=abc") == "https://h.example:8443/p.tgz"
