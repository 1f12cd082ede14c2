"""Signing keys from a JWKS file, a JWKS URL or OIDC discovery, cached.

The key set is refreshed on an interval in the background. A token with an
unknown ``kid`` may trigger one extra refresh, but at most one per
``min_refresh_interval`` and never two at once, so a flood of forged tokens
cannot turn into a flood of requests to the identity provider. When the
endpoint is down, the keys already fetched keep working.

Fetching uses urllib in a worker thread: it happens once per interval, far off
the request path, and needs no HTTP client dependency.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
from jwt import PyJWK

if TYPE_CHECKING:
    from jwt.algorithms import AllowedPublicKeys

log = logging.getLogger("extproc.jwks")

# Only asymmetric algorithms: a JWKS publishes public keys, and accepting an
# HMAC algorithm with one is the classic RS/HS key-confusion attack.
ASYMMETRIC_ALGORITHMS = frozenset(
    {
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES384",
        "ES512",
        "EdDSA",
    }
)
_KTY_FOR_ALG_PREFIX = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
MAX_JWKS_BYTES = 1 << 20


def key_type_for(algorithm: str) -> str:
    return _KTY_FOR_ALG_PREFIX[algorithm[:2]]


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str | None
    kty: str
    algorithm: str | None  # the JWK's own `alg`, if it pins one
    key: AllowedPublicKeys


def parse_jwks(document: dict[str, Any]) -> dict[str | None, SigningKey]:
    # Not a JWKS at all is an error (a policy naming such a file must fail to
    # load with a message, not a traceback); a bad entry inside one is skipped.
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError('not a JWKS: expected an object with a "keys" list')
    keys: dict[str | None, SigningKey] = {}
    for entry in document.get("keys", []):
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        if entry.get("alg") is not None and entry["alg"] not in ASYMMETRIC_ALGORITHMS:
            continue
        try:
            jwk = PyJWK(entry)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            log.warning("skipping unusable JWK", extra={"kid": entry.get("kid")})
            continue
        if jwk.key_type not in ("RSA", "EC", "OKP"):
            continue
        keys[entry.get("kid")] = SigningKey(entry.get("kid"), jwk.key_type, entry.get("alg"), jwk.key)
    return keys


def _http_get_json(url: str, timeout: float) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"accept": "application/json", "user-agent": "extproc-jwks"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = response.read(MAX_JWKS_BYTES + 1)
    if len(body) > MAX_JWKS_BYTES:
        raise ValueError(f"{url}: response larger than {MAX_JWKS_BYTES} bytes")
    document: dict[str, Any] = json.loads(body)
    return document


class JwksCache:
    """One key set. Created through ``Runtime.shared`` so every route (and
    every policy revision) naming the same source shares it."""

    def __init__(
        self,
        *,
        file: str | None = None,
        url: str | None = None,
        discovery: str | None = None,
        refresh_interval: float = 300.0,
        min_refresh_interval: float = 10.0,
        timeout: float = 5.0,
        issuer: str | None = None,
    ):
        if sum(x is not None for x in (file, url, discovery)) != 1:
            raise ValueError("give exactly one of file, url, discovery")
        self.file, self.url, self.discovery = file, url, discovery
        # OIDC Discovery §4.3: the document's issuer must be the one we trust,
        # or one provider's document could hand us another's keys.
        self.issuer = issuer
        self.refresh_interval = refresh_interval
        self.min_refresh_interval = min_refresh_interval
        self.timeout = timeout
        self.keys: dict[str | None, SigningKey] = {}
        # -inf, not 0: time.monotonic() counts from boot, so on a host up for
        # less than min_refresh_interval a 0 would block the first fetch.
        self.last_refresh = float("-inf")
        self.fetches = 0
        self._refreshing: asyncio.Task[Any] | None = None
        self._background: asyncio.Task[Any] | None = None
        # Closed when no live policy revision names this source any more:
        # nothing polls, but the keys stay for requests still in flight.
        self.closed = False

    def load_file(self) -> None:
        """Read the JWKS file now. Called by every policy load naming it (the
        jwt capability's start), as the cache is shared across reloads: the
        reload a change to the file triggers must see the new key set (a
        removed key stops verifying), and a bad file fails that load."""
        if self.file is None:
            raise ValueError("this key set is not read from a file")
        self.keys = parse_jwks(json.loads(Path(self.file).read_text()))
        self.last_refresh = time.monotonic()

    @property
    def source(self) -> str:
        return self.file or self.url or self.discovery or ""

    async def _fetch(self) -> dict[str | None, SigningKey]:
        if self.file is not None:
            return parse_jwks(json.loads(await asyncio.to_thread(Path(self.file).read_text)))
        url = self.url
        if self.discovery is not None:
            config = await asyncio.to_thread(_http_get_json, self.discovery, self.timeout)
            url = config.get("jwks_uri") if isinstance(config, dict) else None
            if not isinstance(url, str):
                raise ValueError(f"{self.discovery}: no jwks_uri")
            if self.issuer is not None and config.get("issuer") != self.issuer:
                raise ValueError(f"{self.discovery}: issuer {config.get('issuer')!r} is not {self.issuer!r}")
            if not url.startswith(("https://", "http://")):
                # urllib also opens file:// and ftp:// URLs: the discovery
                # document must not make us read local files.
                raise ValueError(f"{self.discovery}: jwks_uri is not an http(s) URL")
        if url is None:
            raise ValueError("no key set source")
        return parse_jwks(await asyncio.to_thread(_http_get_json, url, self.timeout))

    async def refresh(self) -> bool:
        """Fetch now, unless a fetch is already running (then wait for it)."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._do_refresh())
        return await asyncio.shield(self._refreshing)

    async def _do_refresh(self) -> bool:
        self.last_refresh = time.monotonic()
        self.fetches += 1
        try:
            keys = await self._fetch()
        except Exception as exc:  # noqa: BLE001 - network, JSON, anything: keep serving the keys we have
            log.warning(
                "JWKS refresh failed; keeping %d cached key(s)",
                len(self.keys),
                extra={"source": self.source, "error": str(exc)},
            )
            return False
        # An empty set is the identity provider revoking every key: honoured.
        # (A response that is not a JWKS at all raised above and changed nothing.)
        self.keys = keys
        return True

    def ensure_background_refresh(self) -> None:
        if self.closed:
            return
        if self._background is None or self._background.done():
            try:
                self._background = asyncio.get_running_loop().create_task(self._refresh_loop())
            except RuntimeError:
                pass  # no loop yet; the first request will start it

    async def _refresh_loop(self) -> None:
        while True:
            if time.monotonic() - self.last_refresh >= self.refresh_interval or not self.keys:
                await self.refresh()
            await asyncio.sleep(min(self.refresh_interval, max(self.min_refresh_interval, 1.0)))

    async def get(self, kid: str | None) -> SigningKey | None:
        self.ensure_background_refresh()
        key = self.keys.get(kid)
        if key is not None:
            return key
        if not self.closed and time.monotonic() - self.last_refresh >= self.min_refresh_interval:
            await self.refresh()
            return self.keys.get(kid)
        return None

    def has_kid(self, kid: str | None) -> bool:
        return kid in self.keys

    def close(self) -> None:
        self.closed = True
        for task in (self._background, self._refreshing):
            if task is not None and not task.done():
                task.cancel()

    async def aclose(self) -> None:
        self.close()
