"""``mtls``: the client certificate identity Envoy verified.

Envoy terminates mTLS and sends the verified peer's URI SAN (a SPIFFE ID for
workloads) as ``source.principal``: in ext_authz always, in ext_proc when the
filter lists it in ``request_attributes``. It is the only source we trust:
``x-forwarded-client-cert`` from a client is stripped by Envoy
(``forward_client_cert_details: SANITIZE``) and never read here.
"""

from __future__ import annotations

import dataclasses

from pydantic import Field, field_validator

from extproc.capabilities.base import Capability, CapabilityConfig, register
from extproc.context import Deny, Mode, RequestContext
from extproc.globs import compile_globs
from extproc.identity.publish import publish
from extproc.identity.responses import unauthenticated
from extproc.runtime import DEFAULT_RUNTIME, Runtime


class MtlsConfig(CapabilityConfig):
    principals: list[str] = Field(
        default_factory=list,
        description="Accepted peer identities (globs), e.g. spiffe://example.org/ns/prod/*. "
        "Empty: any certificate Envoy verified.",
    )
    required: bool = True

    @field_validator("principals")
    @classmethod
    def _not_blank(cls, value: list[str]) -> list[str]:
        if any(not p.strip() for p in value):
            raise ValueError("principals must not be blank")
        return value


@register
class MtlsAuth(Capability[MtlsConfig]):
    name = "mtls"
    priority = 1020  # first: the connection's identity is known before any header is read
    Config = MtlsConfig

    def __init__(self, config: MtlsConfig, mode: Mode = Mode.ENFORCE, runtime: Runtime = DEFAULT_RUNTIME) -> None:
        super().__init__(config, mode, runtime)
        self._accepted = compile_globs(config.principals)

    async def on_request_headers(self, ctx: RequestContext) -> Deny | None:
        principal = ctx.attributes.get("source.principal")
        if not principal or not isinstance(principal, str):
            return unauthenticated("no verified client certificate", None) if self.config.required else None
        if self._accepted is not None and not self._accepted.fullmatch(principal):
            return Deny(403, "forbidden", f"peer {principal} not accepted")
        publish(ctx, dataclasses.replace(ctx.identity, principal=principal, methods=ctx.identity.methods | {"mtls"}))
        return None
