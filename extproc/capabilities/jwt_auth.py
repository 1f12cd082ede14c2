"""``jwt``: OIDC / JWT bearer authentication.

Verification is by PyJWT against keys from each issuer's JWKS (file, URL or
OIDC discovery). What we add around it is what an attacker probes:

* the token's ``alg`` must be in the issuer's explicit, asymmetric-only list
  and match the key's type, so ``none`` and RS/HS confusion cannot pass;
* ``jku``, ``x5u``, ``jwk`` and ``x5c`` headers are never used to find keys:
  keys come only from the policy's configured source, by ``kid`` lookup;
* a request presenting two tokens (say a header and a cookie) is refused
  rather than having one silently chosen;
* verified tokens are cached by SHA-256 of the token until they expire, so a
  repeat costs a hash and a dict lookup; a cached token stops verifying as
  soon as its key leaves the JWKS.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import re
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from jwt.types import Options
from pydantic import Field, field_validator, model_validator

from extproc.capabilities.base import Capability, CapabilityConfig, register
from extproc.context import Deny, Identity, Mode, RequestContext
from extproc.headers import validate_header_name
from extproc.identity.jwks import ASYMMETRIC_ALGORITHMS, JwksCache, key_type_for
from extproc.identity.publish import publish
from extproc.identity.responses import unauthenticated
from extproc.runtime import DEFAULT_RUNTIME, Runtime

_JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")


class JwksSource(CapabilityConfig):
    file: str | None = None
    url: str | None = None
    discovery: str | None = Field(None, description="OIDC issuer URL or its /.well-known/openid-configuration URL.")
    refresh_interval: float = Field(300.0, gt=0, description="Seconds between background refreshes.")
    min_refresh_interval: float = Field(
        10.0, ge=0, description="Least seconds between refreshes an unknown kid may trigger."
    )

    @model_validator(mode="after")
    def _one_source(self) -> JwksSource:
        if sum(x is not None for x in (self.file, self.url, self.discovery)) != 1:
            raise ValueError("give exactly one of file, url, discovery")
        for name in ("url", "discovery"):
            value = getattr(self, name)
            if value is None:
                continue
            # Keys fetched over plain HTTP can be swapped by anyone on the path;
            # only a loopback identity provider (tests, sidecars) may use it.
            host = urlsplit(value).hostname or ""
            if not (value.startswith("https://") or (value.startswith("http://") and _is_loopback(host))):
                raise ValueError(f"{name} must be an https URL (http only for a loopback host)")
        return self

    def discovery_url(self) -> str | None:
        if self.discovery is None or self.discovery.endswith("/.well-known/openid-configuration"):
            return self.discovery
        return self.discovery.rstrip("/") + "/.well-known/openid-configuration"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ClaimMapping(CapabilityConfig):
    subject: str = "sub"
    tenant: str | None = "tenant"
    roles: str | None = Field("roles", description="Claim holding roles/groups: a list or a space-separated string.")
    scopes: str | None = "scope"
    agent_id: str | None = "agent_id"


class IssuerConfig(CapabilityConfig):
    issuer: str
    jwks: JwksSource
    audiences: list[str] = Field(default_factory=list, description="Accepted `aud` values; empty: `aud` not checked.")
    algorithms: list[str] = Field(default_factory=lambda: ["RS256"])
    required_claims: list[str] = Field(default_factory=lambda: ["exp", "sub"])
    leeway: float = Field(30.0, ge=0, le=300, description="Clock skew allowed on exp/nbf/iat, seconds.")
    claims: ClaimMapping = Field(default_factory=ClaimMapping)

    @field_validator("algorithms")
    @classmethod
    def _asymmetric(cls, value: list[str]) -> list[str]:
        bad = [a for a in value if a not in ASYMMETRIC_ALGORITHMS]
        if bad or not value:
            raise ValueError(f"allowed algorithms are {sorted(ASYMMETRIC_ALGORITHMS)}; got {bad or 'none'}")
        return value


class TokenSource(CapabilityConfig):
    header: str | None = None
    prefix: str = Field("", description="Scheme before the token in the header, e.g. 'Bearer ' (case-insensitive).")
    cookie: str | None = None
    query: str | None = None

    @model_validator(mode="after")
    def _one(self) -> TokenSource:
        if sum(x is not None for x in (self.header, self.cookie, self.query)) != 1:
            raise ValueError("give exactly one of header, cookie, query")
        if self.header is not None:
            object.__setattr__(self, "header", validate_header_name(self.header))
        return self


class JwtConfig(CapabilityConfig):
    issuers: list[IssuerConfig] = Field(min_length=1)
    sources: list[TokenSource] = Field(default_factory=lambda: [TokenSource(header="authorization", prefix="Bearer ")])
    required: bool = Field(
        True, description="false: a request without a token continues anonymous (for RBAC to decide)."
    )
    forward_token: bool = Field(
        True, description="false: remove the token (header, cookie or query parameter) before the upstream."
    )
    max_token_bytes: int = Field(8192, ge=256, le=65536)
    cache_size: int = Field(10_000, ge=0)

    @model_validator(mode="after")
    def _unique_issuers(self) -> JwtConfig:
        names = [i.issuer for i in self.issuers]
        if len(set(names)) != len(names):
            raise ValueError("each issuer may appear once")
        return self


class _Rejected(Exception):
    def __init__(self, reason: str, error: str = "invalid_token"):
        self.reason, self.error = reason, error


@dataclasses.dataclass(slots=True)
class _Issuer:
    config: IssuerConfig
    jwks: JwksCache
    algorithms: frozenset[str]
    audience: list[str] | None
    options: Options


@register
class JwtAuth(Capability[JwtConfig]):
    name = "jwt"
    priority = 1000
    Config = JwtConfig

    def __init__(self, config: JwtConfig, mode: Mode = Mode.ENFORCE, runtime: Runtime = DEFAULT_RUNTIME) -> None:
        super().__init__(config, mode, runtime)
        self._issuers = {i.issuer: self._issuer(i) for i in config.issuers}
        self._cache: OrderedDict[bytes, tuple[Identity, float, JwksCache, str | None]] = OrderedDict()
        self._header_sources = [(s.header, s.prefix.lower()) for s in config.sources if s.header]
        self._cookie_sources = [s.cookie for s in config.sources if s.cookie]
        self._query_sources = [s.query for s in config.sources if s.query]
        self._token_headers = tuple(s.header for s in config.sources if s.header)

    def _issuer(self, cfg: IssuerConfig) -> _Issuer:
        src = cfg.jwks
        file = str(self.runtime.resolve_path(src.file)) if src.file else None
        url, discovery = src.url, src.discovery_url()
        expected_issuer = cfg.issuer if discovery else None
        # The refresh settings are part of the key: a reload that changes them
        # gets a cache that follows them (the old one closes once no revision
        # uses it), and two routes with different settings never share one.
        key = ("jwks", file, url, discovery, expected_issuer, src.refresh_interval, src.min_refresh_interval)
        jwks = self.runtime.shared(
            key,
            lambda: JwksCache(
                file=file,
                url=url,
                discovery=discovery,
                issuer=expected_issuer,
                refresh_interval=src.refresh_interval,
                min_refresh_interval=src.min_refresh_interval,
            ),
        )
        return _Issuer(
            config=cfg,
            jwks=jwks,
            algorithms=frozenset(cfg.algorithms),
            audience=list(cfg.audiences) or None,
            options={"require": list(cfg.required_claims), "verify_aud": bool(cfg.audiences)},
        )

    async def start(self) -> None:
        for issuer in self._issuers.values():
            jwks = issuer.jwks
            if jwks.file is not None:
                # The cache outlives reloads: re-read the file so that the
                # reload a change to it triggers also sees it (a removed key
                # stops verifying), and a bad file fails this load.
                jwks.load_file()
            else:
                # Fetch now, while the policy loads in the server's loop, so
                # the first request does not wait on the identity provider
                # (Envoy gives the whole check 250 ms). Without a loop
                # (policy validation), the first request starts it.
                jwks.ensure_background_refresh()

    def close(self) -> None:
        # The JWKS caches belong to the Runtime (released with the revision);
        # what this instance alone holds is its verified-token cache.
        self._cache.clear()

    # -- token extraction -------------------------------------------------

    def _find_tokens(self, ctx: RequestContext) -> list[str]:
        headers = ctx.request.headers
        found: list[str] = []
        for name, prefix in self._header_sources:
            value = headers.get(name)
            if value is None:
                continue
            if prefix:
                if value[: len(prefix)].lower() != prefix:
                    raise _Rejected(f"{name} is not a {prefix.strip()} credential", "invalid_request")
                value = value[len(prefix) :]
            found.append(value.strip())
        if self._cookie_sources and "cookie" in headers:
            found.extend(_cookie_values(headers["cookie"], self._cookie_sources))
        if self._query_sources and ctx.request.query:
            params = parse_qs(ctx.request.query, keep_blank_values=True)
            for name in self._query_sources:
                found.extend(params.get(name, ()))
        return found

    # -- verification -----------------------------------------------------

    async def on_request_headers(self, ctx: RequestContext) -> Deny | None:
        try:
            tokens = self._find_tokens(ctx)
            if not tokens:
                if self.config.required:
                    return unauthenticated("no token", None)
                return None
            if len(tokens) > 1:
                raise _Rejected("more than one token presented", "invalid_request")
            identity = await self._verify(tokens[0])
        except _Rejected as exc:
            return unauthenticated(exc.reason, exc.error)
        merged = dataclasses.replace(
            identity,
            principal=ctx.identity.principal,
            methods=ctx.identity.methods | identity.methods,
        )
        publish(ctx, merged)
        if not self.config.forward_token:
            self._strip_token(ctx)
        return None

    def _strip_token(self, ctx: RequestContext) -> None:
        """The upstream (and its access logs) never sees the token, wherever
        it came from: header, cookie or query parameter."""
        for name in self._token_headers:
            ctx.remove_request_header(name)
        cookie = ctx.request.headers.get("cookie")
        if self._cookie_sources and cookie is not None:
            kept = [
                part.strip()
                for part in cookie.split(";")
                if part.strip() and part.partition("=")[0].strip() not in self._cookie_sources
            ]
            if kept:
                ctx.set_request_header("cookie", "; ".join(kept))
            else:
                ctx.remove_request_header("cookie")
        for name in self._query_sources:
            ctx.remove_query_param(name)

    async def _verify(self, token: str) -> Identity:
        if len(token) > self.config.max_token_bytes:
            raise _Rejected("token too large")
        if not _JWT_SHAPE.fullmatch(token):  # not match(): `$` would accept a trailing newline
            raise _Rejected("malformed token")
        digest = hashlib.sha256(token.encode()).digest()
        cached = self._cache.get(digest)
        now = time.time()
        if cached is not None:
            identity, expires, jwks, kid = cached
            if now < expires and jwks.has_kid(kid):
                return identity
            del self._cache[digest]

        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except (jwt.PyJWTError, ValueError, TypeError):  # PyJWTError: also a non-string kid, unknown crit
            raise _Rejected("undecodable token") from None
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str):  # a list or object would be unhashable below
            raise _Rejected("bad alg")
        iss = unverified.get("iss")
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise _Rejected("unknown issuer")
        if alg not in issuer.algorithms:
            raise _Rejected(f"algorithm {alg!r} not allowed")
        if kid is not None and (not isinstance(kid, str) or len(kid) > 256):
            raise _Rejected("bad kid")
        key = await issuer.jwks.get(kid)
        if key is None:
            raise _Rejected("unknown kid")
        if key.kty != key_type_for(alg) or (key.algorithm is not None and key.algorithm != alg):
            raise _Rejected("algorithm does not match key")
        cfg = issuer.config
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=issuer.audience,
                issuer=cfg.issuer,
                leeway=cfg.leeway,
                options=issuer.options,
            )
        except jwt.PyJWTError as exc:
            raise _Rejected(f"{type(exc).__name__}: {exc}") from None

        identity = _identity_from(claims, cfg)
        expires = float(claims["exp"]) + cfg.leeway if isinstance(claims.get("exp"), (int, float)) else now + 300
        if self.config.cache_size:
            if len(self._cache) >= self.config.cache_size:
                self._cache.popitem(last=False)
            self._cache[digest] = (identity, expires, issuer.jwks, kid)
        return identity


def _cookie_values(header: str, names: list[str]) -> list[str]:
    """Every value of the named cookies, duplicates included (so that two
    cookies of the same name are refused like any two tokens). Parsed by hand:
    SimpleCookie keeps only the last duplicate and silently drops the whole
    header when any unrelated cookie is malformed."""
    values = []
    for part in header.split(";"):
        name, eq, value = part.partition("=")
        if eq and name.strip() in names:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            values.append(value)
    return values


def _as_set(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, (list, tuple)):
        return frozenset(_clean(str(v)) for v in value if isinstance(v, (str, int)) and not isinstance(v, bool))
    return frozenset()


def _delegation(claims: dict[str, Any]) -> tuple[str, ...]:
    # RFC 8693 nests actors: {"act": {"sub": "agent-b", "act": {"sub": "agent-a"}}}
    chain: list[str] = []
    act = claims.get("act")
    while isinstance(act, dict) and len(chain) < 16:
        if isinstance(act.get("sub"), str):
            chain.append(act["sub"])
        act = act.get("act")
    return tuple(chain)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _clean(value: str) -> str:
    # Identity values become upstream headers: a signed claim with CR/LF/NUL
    # would make Envoy refuse the header (an outage-looking 5xx), so such a
    # token is refused as invalid instead.
    if _CONTROL.search(value):
        raise _Rejected("control characters in an identity claim")
    return value


def _identity_from(claims: dict[str, Any], cfg: IssuerConfig) -> Identity:
    mapping = cfg.claims

    def text(name: str | None) -> str | None:
        value = claims.get(name) if name else None
        return _clean(str(value)) if isinstance(value, (str, int)) and not isinstance(value, bool) else None

    return Identity(
        subject=text(mapping.subject),
        issuer=cfg.issuer,
        tenant=text(mapping.tenant),
        roles=_as_set(claims.get(mapping.roles)) if mapping.roles else frozenset(),
        scopes=_as_set(claims.get(mapping.scopes)) if mapping.scopes else frozenset(),
        agent_id=text(mapping.agent_id),
        delegation=_delegation(claims),
        methods=frozenset({"jwt"}),
        claims=claims,
    )
