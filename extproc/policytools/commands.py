"""The ``extproc policy test|explain|diff`` subcommands (argument parsing
only; the work is imported when a command runs, so ``extproc --help`` stays
fast)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def _test(args: argparse.Namespace) -> int:
    from extproc.policytools.runner import main

    return main(
        args.directory,
        args.tests,
        args.junit,
        sys.stdout,
        sys.stderr,
        verbose=args.verbose,
        require_coverage=args.require_coverage,
    )


def _explain(args: argparse.Namespace) -> int:
    from extproc.policytools.explain import main

    return main(args, sys.stdout, sys.stderr)


def _diff(args: argparse.Namespace) -> int:
    from extproc.policytools.diff import main

    return main(args, sys.stdout, sys.stderr)


def add_request_arguments(parser: argparse.ArgumentParser) -> None:
    """One request, as flags or as a case file (``--case FILE[:NAME]``)."""
    parser.add_argument("--case", metavar="FILE[:NAME]", help="a test-case file, and which case in it")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--path", default="/")
    parser.add_argument("--host", default="gateway.test")
    parser.add_argument("--header", action="append", default=[], metavar="NAME:VALUE", help="repeatable")
    parser.add_argument(
        "--claims", metavar="JSON", help='identity as JWT claims, e.g. {"sub":"alice","roles":["reader"]}'
    )
    parser.add_argument("--token", help="a literal bearer token")
    parser.add_argument("--api-key", help="an API key, sent in the route's api_key header")
    parser.add_argument("--principal", help="the mTLS peer identity (SPIFFE ID)")
    parser.add_argument("--body", help="the request body (a string; @FILE reads a file)")
    parser.add_argument("--route", help="the route Envoy binds (default: the policy's match)")
    parser.add_argument("--filter", choices=["auto", "ext_authz", "ext_proc"], default="auto")
    parser.add_argument("--repeat", type=int, default=1, help="send the request N times, explain the last")


def add_commands(policy_sub: argparse._SubParsersAction[Any]) -> None:
    test = policy_sub.add_parser(
        "test", help="run a policy's test cases (DIR/tests/*.yaml) through the real pipeline, in process"
    )
    test.add_argument("directory")
    test.add_argument("--tests", help="a case file or directory (default: DIR/tests)")
    test.add_argument("--junit", metavar="FILE", help="also write JUnit XML here")
    test.add_argument("-v", "--verbose", action="store_true", help="list passing cases too")
    test.add_argument(
        "--require-coverage", action="store_true", help="fail when a route, capability or rule went unexercised"
    )
    test.set_defaults(func=_test)

    explain = policy_sub.add_parser(
        "explain", help="show how a policy decides one request: route, each capability's verdict, the answer"
    )
    target = explain.add_mutually_exclusive_group()
    target.add_argument("--policies", default="policies", help="the policy directory (default: policies)")
    target.add_argument(
        "--processor",
        metavar="HOST:PORT",
        help="ask a running processor (its real ext_authz/ext_proc gRPC API) instead of a directory",
    )
    explain.add_argument(
        "--decision-log", metavar="PATH", help="with --processor: the decision log it writes (per-capability facts)"
    )
    explain.add_argument(
        "--signing-key",
        metavar="PEM",
        help="with --processor and --claims: sign the token with this key (default: the demo key)",
    )
    explain.add_argument("--kid", help="the signing key's kid (default: the demo key's)")
    explain.add_argument("--json", action="store_true", help="print the explanation as JSON")
    add_request_arguments(explain)
    explain.set_defaults(func=_explain)

    diff = policy_sub.add_parser("diff", help="what a policy change does to access (markdown for a PR comment)")
    diff.add_argument("old", help="a directory, or git:REV[:PATH]")
    diff.add_argument("new", help="a directory, or git:REV[:PATH]")
    diff.add_argument("--tests", help="cases whose requests are compared (default: NEW's tests/ directory)")
    diff.add_argument("--format", choices=["markdown", "json"], default="markdown")
    diff.add_argument(
        "--exit-code",
        action="store_true",
        help="exit 1 when any request flips between allowed and denied (or a route or limit changes)",
    )
    diff.set_defaults(func=_diff)
