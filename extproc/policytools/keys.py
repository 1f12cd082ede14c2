"""The test signing key: tokens minted from a case's claims, and the policy
under test made to trust them.

The runner adds its own key to every ``jwt`` issuer of the policy it tests
(next to the issuer's keys when they come from a file, alone when they come
from a URL: tests run offline), so a case says who calls (claims) rather than
carrying a token that expires. Nothing here touches the policy files.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from extproc.capabilities.base import Capability
from extproc.capabilities.jwt_auth import JwtAuth, JwtConfig
from extproc.policy.loader import start_capability
from extproc.policy.model import CompiledRoute, PolicySet
from extproc.runtime import Runtime

TEST_KID_RSA = "extproc-policy-test-rs256"
TEST_KID_EC = "extproc-policy-test-es256"


class TestKeys:
    """One RSA and one P-256 key per run, their JWKS in a private temp dir."""

    __test__ = False  # not a pytest class

    def __init__(self) -> None:
        self._rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._ec = ec.generate_private_key(ec.SECP256R1())
        self._dir = tempfile.TemporaryDirectory(prefix="extproc-policy-test-")
        self.directory = Path(self._dir.name)
        self._jwks: dict[str, Path] = {}
        self._tokens: dict[str, str] = {}

    def close(self) -> None:
        self._dir.cleanup()

    def __enter__(self) -> TestKeys:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _public_jwks(self) -> list[dict[str, Any]]:
        rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._rsa.public_key()))
        rsa_jwk.update(kid=TEST_KID_RSA, use="sig", alg="RS256")
        ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self._ec.public_key()))
        ec_jwk.update(kid=TEST_KID_EC, use="sig", alg="ES256")
        return [rsa_jwk, ec_jwk]

    def jwks_file(self, original: Path | None) -> Path:
        """A JWKS file with the test keys and, if given, ``original``'s keys."""
        key = str(original) if original else ""
        found = self._jwks.get(key)
        if found is not None:
            return found
        keys = self._public_jwks()
        if original is not None:
            try:
                keys.extend(json.loads(original.read_text()).get("keys", []))
            except (OSError, ValueError, AttributeError):
                pass  # the policy's own load reports a broken file
        path = self.directory / f"jwks-{len(self._jwks)}.json"
        path.write_text(json.dumps({"keys": keys}))
        self._jwks[key] = path
        return path

    def mint(self, claims: dict[str, Any], algorithms: list[str], ttl: int) -> str:
        # The same caller in one run gets one token (a diff sends hundreds).
        key = json.dumps([claims, algorithms, ttl], sort_keys=True, default=str)
        token = self._tokens.get(key)
        if token is None:
            token = self._tokens[key] = self._sign(claims, algorithms, ttl)
        return token

    def _sign(self, claims: dict[str, Any], algorithms: list[str], ttl: int) -> str:
        now = int(time.time())
        body = {"iat": now, "nbf": now, "exp": now + ttl, **claims}
        if any(a.startswith(("RS", "PS")) for a in algorithms) or not algorithms:
            alg = next((a for a in algorithms if a.startswith(("RS", "PS"))), "RS256")
            return jwt.encode(body, self._rsa, algorithm=alg, headers={"kid": TEST_KID_RSA})
        return jwt.encode(body, self._ec, algorithm="ES256", headers={"kid": TEST_KID_EC})


def _with_test_keys(cap: JwtAuth, keys: TestKeys, runtime: Runtime) -> JwtAuth:
    config = cap.config.model_dump(exclude_unset=False)
    for issuer in config["issuers"]:
        source = issuer["jwks"]
        original = runtime.resolve_path(source["file"]) if source.get("file") else None
        issuer["jwks"] = {"file": str(keys.jwks_file(original))}
        if not any(a in ("RS256", "ES256") for a in issuer["algorithms"]):
            issuer["algorithms"] = [*issuer["algorithms"], "RS256"]
    replacement = JwtAuth(JwtConfig.model_validate(config), cap.mode, runtime)
    start_capability(replacement)  # its keys are read now, as the loader reads a policy's
    return replacement


def trust_test_keys(policy: PolicySet, keys: TestKeys, runtime: Runtime) -> PolicySet:
    """``policy`` with every ``jwt`` capability also trusting the test keys
    (same routes, order, matchers and revision)."""
    routes: dict[str, CompiledRoute] = {}
    for name, route in policy.routes.items():
        capabilities: list[Capability[Any]] = []
        for cap in route.capabilities:
            if isinstance(cap, JwtAuth):
                replacement = _with_test_keys(cap, keys, runtime)
                cap.close()
                capabilities.append(replacement)
            else:
                capabilities.append(cap)
        routes[name] = CompiledRoute(route.name, route.source, tuple(capabilities), route.matcher)
    return PolicySet(
        revision=policy.revision,
        routes=routes,
        unmatched_allow=policy.unmatched_allow,
        files=policy.files,
        max_route_removal=policy.max_route_removal,
        allow_route_removal=policy.allow_route_removal,
        resources=policy.resources,
    )


def issuer_defaults(policy: PolicySet, route: str | None) -> tuple[str | None, str | None, list[str]]:
    """The first ``jwt`` issuer of ``route`` (or of the policy): iss, aud, algorithms."""
    routes = [policy.routes[route]] if route and route in policy.routes else list(policy.routes.values())
    for compiled in routes:
        for cap in compiled.capabilities:
            if isinstance(cap, JwtAuth):
                issuer = cap.config.issuers[0]
                return issuer.issuer, (issuer.audiences[0] if issuer.audiences else None), list(issuer.algorithms)
    return None, None, ["RS256"]
