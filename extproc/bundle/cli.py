"""``extproc policy bundle build|sign|verify|keygen`` and ``serve --bundle``.

Kept apart from ``extproc.cli``, which only registers these: the heavy
imports (the loader, cryptography) happen when a command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_BUNDLE_DIR = ".extproc-bundle"


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} out of range: must be greater than 0")
    return value


def add_serve_arguments(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group("signed policy bundles (docs/bundles.md)")
    group.add_argument(
        "--bundle",
        metavar="URL",
        help="follow the signed policy bundle at this http(s) URL instead of --policies",
    )
    group.add_argument(
        "--bundle-key",
        metavar="PUB",
        action="append",
        default=[],
        help="trusted Ed25519 public key (PEM) for --bundle; repeatable (key rotation)",
    )
    group.add_argument(
        "--bundle-sig-url", metavar="URL", help="where the bundle's signature is (default: the bundle URL + .sig)"
    )
    group.add_argument(
        "--bundle-dir",
        metavar="DIR",
        default=DEFAULT_BUNDLE_DIR,
        help=f"where the active bundle is kept, unpacked, across restarts (default {DEFAULT_BUNDLE_DIR})",
    )
    group.add_argument(
        "--bundle-poll",
        metavar="SECONDS",
        type=_positive,
        default=30.0,
        help="seconds between checks of the bundle URL (default 30)",
    )


@contextmanager
def following(args: argparse.Namespace) -> Iterator[str]:
    """For ``serve --bundle``: the policy directory to serve, kept following
    the URL while the block runs. Raises ``StartupError`` with one line."""
    from extproc.bundle.fetch import check_url
    from extproc.bundle.follower import BundleFollower, BundleUnavailable, FollowerOptions
    from extproc.bundle.signing import KeyRing, SignatureError
    from extproc.server import StartupError

    if not args.bundle_key:
        raise StartupError("--bundle needs --bundle-key: a bundle is served only if a trusted key signed it")
    try:
        keys = KeyRing.from_files(args.bundle_key)
        options = FollowerOptions(
            url=check_url(args.bundle),
            signature_url=check_url(args.bundle_sig_url) if args.bundle_sig_url else None,
            directory=Path(args.bundle_dir),
            poll=args.bundle_poll,
        )
    except (SignatureError, ValueError, OSError) as exc:
        raise StartupError(f"--bundle: {exc}") from None
    try:
        follower = BundleFollower(options, keys)
        policies = follower.start_up()
    except BundleUnavailable as exc:
        raise StartupError(str(exc)) from None
    except OSError as exc:
        raise StartupError(f"--bundle-dir {args.bundle_dir}: {exc.strerror or exc}") from None
    follower.start()
    try:
        yield str(policies)
    finally:
        follower.stop()


# -- policy bundle ... ------------------------------------------------------


def add_bundle_commands(policy_sub: Any) -> None:
    """``policy_sub``: the ``policy`` command's subparsers."""
    bundle = policy_sub.add_parser("bundle", help="signed policy bundles for a fleet (docs/bundles.md)")
    commands = bundle.add_subparsers(dest="bundle_command", required=True)

    build = commands.add_parser("build", help="pack a policy directory that validates into a reproducible archive")
    build.add_argument("directory")
    build.add_argument("-o", "--output", required=True, metavar="FILE")
    build.set_defaults(func=_build)

    sign = commands.add_parser("sign", help="sign a bundle archive: writes FILE.sig")
    sign.add_argument("file")
    sign.add_argument("--key", required=True, help="Ed25519 private key (PEM)")
    sign.add_argument("-o", "--output", metavar="SIG", help="default: FILE.sig")
    sign.set_defaults(func=_sign)

    verify = commands.add_parser("verify", help="check a bundle's signature, content and policy, as a follower would")
    verify.add_argument("file")
    verify.add_argument("--key", action="append", required=True, help="trusted Ed25519 public key (PEM); repeatable")
    verify.add_argument("--sig", help="default: FILE.sig")
    verify.set_defaults(func=_verify)

    keygen = commands.add_parser("keygen", help="make an Ed25519 key pair: PREFIX.key (private) and PREFIX.pub")
    keygen.add_argument("--out", default="bundle-signing", metavar="PREFIX")
    keygen.set_defaults(func=_keygen)


def _fail(message: str) -> int:
    print(f"extproc: {message}", file=sys.stderr)
    return 1


def _build(args: argparse.Namespace) -> int:
    from extproc.bundle.archive import BundleError
    from extproc.bundle.build import build
    from extproc.policy.loader import PolicyLoadError

    try:
        built = build(args.directory)
    except PolicyLoadError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        return _fail(f"{len(exc.errors)} error(s): no bundle written")
    except (BundleError, OSError) as exc:
        return _fail(str(exc))
    Path(args.output).write_bytes(built.archive)
    print(f"built {args.output}: revision {built.revision}, {len(built.files)} file(s), {len(built.routes)} route(s)")
    return 0


def _sign(args: argparse.Namespace) -> int:
    from extproc.bundle.archive import BundleError, read_archive
    from extproc.bundle.signing import SignatureError, key_id, load_private_key, sign

    try:
        key = load_private_key(args.key)
        archive = Path(args.file).read_bytes()
        # The archive is ours to sign: read it to sign the revision it holds.
        revision = read_archive(archive).manifest.revision
    except (SignatureError, BundleError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{exc.filename}: {exc.strerror}")
    output = args.output or args.file + ".sig"
    Path(output).write_bytes(sign(archive, revision, key))
    print(f"signed {args.file}: revision {revision}, key {key_id(key.public_key())} -> {output}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from extproc.bundle.archive import BundleError
    from extproc.bundle.cache import open_signed
    from extproc.bundle.signing import KeyRing, SignatureError
    from extproc.policy.loader import PolicyLoadError, validate_policy_dir

    try:
        keys = KeyRing.from_files(args.key)
        archive = Path(args.file).read_bytes()
        try:
            signature = Path(args.sig or args.file + ".sig").read_bytes()
        except FileNotFoundError:
            signature = b""  # reported as unsigned
        statement, bundle = open_signed(archive, signature, keys)
        with tempfile.TemporaryDirectory(prefix="extproc-bundle-verify-") as scratch:
            bundle.write_to(Path(scratch))
            validate_policy_dir(scratch)
    except PolicyLoadError as exc:
        return _fail(f"bundle refused: its policy does not validate: {exc.errors[0]}")
    except (SignatureError, BundleError) as exc:
        return _fail(f"bundle refused: {exc}")
    except OSError as exc:
        return _fail(f"{exc.filename}: {exc.strerror}")
    signed = datetime.fromtimestamp(statement.signed_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"ok: revision {statement.revision}, signed by key {statement.kid} at {signed}")
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from extproc.bundle.signing import generate_key_pair

    private_pem, public_pem, kid = generate_key_pair()
    private_path, public_path = Path(args.out + ".key"), Path(args.out + ".pub")
    try:
        # O_EXCL: never overwrite a key; 0600: the private key is a secret.
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(private_pem)
        with open(public_path, "xb") as fh:
            fh.write(public_pem)
    except FileExistsError as exc:
        return _fail(f"{exc.filename} exists; not overwriting a key")
    except OSError as exc:
        return _fail(f"{exc.filename}: {exc.strerror}")
    print(
        f"key {kid}: private {private_path} (keep it secret: CI signs with it), "
        f"public {public_path} (give it to --bundle-key)"
    )
    return 0
