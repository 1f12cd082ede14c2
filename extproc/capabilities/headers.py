"""``headers``: set and remove request and response headers.

Runs last (lowest priority) so it sees the request after every control has
passed. On ext_authz routes, response headers can only be added: Envoy's
ext_authz API has no way to remove an upstream response header.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from extproc.capabilities.base import Capability, CapabilityConfig, register
from extproc.context import Deny, Mode, RequestContext
from extproc.headers import validate_mutable_header_name
from extproc.runtime import DEFAULT_RUNTIME, Runtime


class HeaderEdits(CapabilityConfig):
    set: dict[str, str] = Field(default_factory=dict, description="Headers to set, replacing any existing value.")
    remove: list[str] = Field(default_factory=list, description="Headers to remove.")

    @field_validator("set")
    @classmethod
    def _set_names(cls, value: dict[str, str]) -> dict[str, str]:
        return {validate_mutable_header_name(k): v for k, v in value.items()}

    @field_validator("remove")
    @classmethod
    def _remove_names(cls, value: list[str]) -> list[str]:
        return [validate_mutable_header_name(k) for k in value]


class HeadersConfig(CapabilityConfig):
    request: HeaderEdits = Field(default_factory=HeaderEdits)
    response: HeaderEdits = Field(default_factory=HeaderEdits)


@register
class Headers(Capability[HeadersConfig]):
    name = "headers"
    priority = 100
    Config = HeadersConfig

    def __init__(self, config: HeadersConfig, mode: Mode = Mode.ENFORCE, runtime: Runtime = DEFAULT_RUNTIME) -> None:
        super().__init__(config, mode, runtime)
        self._request_set = tuple(config.request.set.items())
        self._request_remove = tuple(config.request.remove)
        self._response_set = tuple(config.response.set.items())
        self._response_remove = tuple(config.response.remove)

    async def on_request_headers(self, ctx: RequestContext) -> Deny | None:
        # Response edits are planned now, not in a response phase, because an
        # ext_authz route has no response phase: Envoy applies them on the way back.
        for name in self._request_remove:
            ctx.remove_request_header(name)
        for name, value in self._request_set:
            ctx.set_request_header(name, value)
        for name in self._response_remove:
            ctx.remove_response_header(name)
        for name, value in self._response_set:
            ctx.set_response_header(name, value)
        return None
