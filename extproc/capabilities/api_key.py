"""``api_key``: static API keys, stored only as hashes.

Keys are looked up by the SHA-256 of the presented key, then confirmed with
``hmac.compare_digest``. Timing can at most reveal something about a hash of
attacker-chosen input, never a prefix of a real key. Keys are high-entropy
random strings (``extproc api-key`` makes them), so an unsalted fast hash is
the right tool here, as for GitHub's and Stripe's tokens: a slow password
hash would only add latency.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from extproc.capabilities.base import Capability, CapabilityConfig, register
from extproc.context import Deny, Identity, Mode, RequestContext
from extproc.headers import validate_header_name
from extproc.identity.publish import publish
from extproc.identity.responses import unauthenticated
from extproc.runtime import DEFAULT_RUNTIME, Runtime

_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
KEY_PREFIX = "egk_"


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def new_key() -> tuple[str, str]:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, hash_key(key)


class ApiKeyEntry(CapabilityConfig):
    id: str = Field(description="A name for the key (logged; never the key itself).")
    hash: str = Field(description="sha256:<hex> of the key, as printed by `extproc api-key`.")
    subject: str = Field(description="The consumer this key authenticates as.")
    tenant: str | None = None
    roles: list[str] = Field(default_factory=list)

    @field_validator("hash")
    @classmethod
    def _hash(cls, value: str) -> str:
        if not _HASH.match(value):
            raise ValueError("must be sha256:<64 lowercase hex digits> (never the key itself)")
        return value


class ApiKeyConfig(CapabilityConfig):
    header: str = "x-api-key"
    keys: list[ApiKeyEntry] = Field(default_factory=list)
    keys_file: str | None = Field(None, description="YAML file with a `keys:` list, relative to the policy directory.")
    required: bool = True
    forward_key: bool = Field(False, description="Keep the key header for the upstream (default: removed).")

    _header_ok = field_validator("header")(validate_header_name)

    @model_validator(mode="after")
    def _some_keys(self) -> ApiKeyConfig:
        if not self.keys and self.keys_file is None:
            raise ValueError("give keys or keys_file")
        return self


class _KeysFile(CapabilityConfig):
    keys: list[ApiKeyEntry]


def _index(entries: list[ApiKeyEntry]) -> dict[bytes, tuple[bytes, Identity]]:
    """Keys by the SHA-256 of the key, each with the identity it establishes."""
    by_hash: dict[bytes, tuple[bytes, Identity]] = {}
    for entry in entries:
        digest = bytes.fromhex(entry.hash.removeprefix("sha256:"))
        if digest in by_hash:
            raise ValueError(f"API key {entry.id!r} has the same hash as another key")
        by_hash[digest] = (
            digest,
            Identity(
                subject=entry.subject,
                tenant=entry.tenant,
                roles=frozenset(entry.roles),
                api_key_id=entry.id,
                methods=frozenset({"api_key"}),
            ),
        )
    return by_hash


@register
class ApiKeyAuth(Capability[ApiKeyConfig]):
    name = "api_key"
    priority = 1010  # before jwt: a key is cheaper to check than a signature
    Config = ApiKeyConfig

    def __init__(self, config: ApiKeyConfig, mode: Mode = Mode.ENFORCE, runtime: Runtime = DEFAULT_RUNTIME) -> None:
        super().__init__(config, mode, runtime)
        # Validated now, read in start(): the file is I/O.
        self._keys_file = runtime.resolve_path(config.keys_file) if config.keys_file else None
        self._by_hash = _index(config.keys)

    async def start(self) -> None:
        if self._keys_file is None:
            return
        path = self._keys_file
        try:
            entries = _KeysFile.model_validate(yaml.safe_load(path.read_text())).keys
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ValueError(f"keys_file {path}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"keys_file {path}: {exc}") from None
        self._by_hash = _index([*self.config.keys, *entries])

    async def on_request_headers(self, ctx: RequestContext) -> Deny | None:
        presented = ctx.request.headers.get(self.config.header)
        if presented is None:
            return unauthenticated("no API key", None) if self.config.required else None
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found = self._by_hash.get(digest)
        if found is None or not hmac.compare_digest(found[0], digest):
            return unauthenticated("unknown API key")
        identity = found[1]
        publish(
            ctx,
            dataclasses.replace(
                identity, principal=ctx.identity.principal, methods=ctx.identity.methods | identity.methods
            ),
        )
        if not self.config.forward_key:
            ctx.remove_request_header(self.config.header)
        return None
