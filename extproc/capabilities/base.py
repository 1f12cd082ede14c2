"""The capability plugin contract.

A capability is one governance control (a header check, JWT verification, a
quota...). It declares:

* ``name``: the ``type`` a policy uses to attach it;
* ``priority``: higher runs first, whatever the order in the policy file, so
  authentication always precedes authorization, which precedes quotas;
* ``Config``: a pydantic model, validated (unknown fields rejected) when the
  policy loads;
* handlers for the phases it needs: ``on_request_headers``,
  ``on_request_body``, ``on_response_headers``, ``on_response_body`` and
  ``on_log`` (the final audit step, called once whether the request was
  allowed, denied or failed).

The constructor receives the validated config and the process ``Runtime``
(shared pools and caches that survive reloads) and is the place to validate
and precompile (regexes, key sets...), so that handlers stay cheap; it does
no I/O. I/O belongs to ``start`` (called once before the revision serves),
and ``close`` ends what ``start`` began when a reload replaces it. A handler returns
``None`` to let the request continue or a ``Deny`` to stop it; raising is a
bug that the pipeline turns into a 500 for that request.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar, get_args, get_origin

from extproc.config import CapabilityConfig
from extproc.context import Deny, Mode, Phase, RequestContext
from extproc.runtime import DEFAULT_RUNTIME, Runtime

__all__ = ["REGISTRY", "Capability", "CapabilityConfig", "ConfigT", "declared_config", "describe", "register"]

ConfigT = TypeVar("ConfigT", bound=CapabilityConfig)
CapabilityT = TypeVar("CapabilityT", bound="Capability[Any]")


class Capability(Generic[ConfigT]):
    """Generic in its config model, so ``self.config.issuers`` is checked:
    ``class JwtAuth(Capability[JwtConfig])`` with ``Config = JwtConfig``."""

    name: ClassVar[str]
    priority: ClassVar[int]
    # ClassVar cannot name a type variable; each subclass sets its own model
    # and the generic parameter ties ``self.config`` to it.
    Config: ClassVar[type[CapabilityConfig]] = CapabilityConfig

    def __init__(self, config: ConfigT, mode: Mode = Mode.ENFORCE, runtime: Runtime = DEFAULT_RUNTIME) -> None:
        self.config: ConfigT = config
        self.mode = mode
        self.runtime = runtime

    @classmethod
    def phases(cls) -> frozenset[Phase]:
        """The phases whose handler this class overrides."""
        return frozenset(
            phase
            for phase in Phase
            if getattr(cls, f"on_{phase.value}") is not getattr(Capability, f"on_{phase.value}")
        )

    async def on_request_headers(self, ctx: RequestContext) -> Deny | None:
        return None

    async def on_request_body(self, ctx: RequestContext) -> Deny | None:
        return None

    async def on_response_headers(self, ctx: RequestContext) -> Deny | None:
        return None

    async def on_response_body(self, ctx: RequestContext) -> Deny | None:
        return None

    def on_log(self, ctx: RequestContext) -> None:
        return None

    async def start(self) -> None:
        """I/O the capability needs before it serves (reading a key file,
        starting a JWKS refresh...). The constructor only validates and
        precompiles; the policy loader calls ``start`` once per load, after
        the whole policy validated and before the revision serves. A
        ``ValueError`` or ``OSError`` refuses the load at this capability's
        place in the policy, as a constructor's error does (and ``close`` is
        called). The loader also runs inside a reload on the server's event
        loop, so ``start`` must not wait on the loop: bounded local reads are
        done directly, network I/O is handed to a background task."""
        return None

    def close(self) -> None:
        """Called once when the policy revision holding this instance is
        replaced (or a load building it is refused). Requests that started
        on that revision may still call handlers afterwards, so stop
        background work and free caches, but keep handlers working. Shared
        resources from ``Runtime.shared`` are closed by the runtime."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} mode={self.mode.value}>"


REGISTRY: dict[str, type[Capability[Any]]] = {}


def declared_config(cls: type[Capability[Any]]) -> type[CapabilityConfig] | None:
    """The config model ``cls`` is generic in (``Capability[JwtConfig]``)."""
    for base in getattr(cls, "__orig_bases__", ()):
        if get_origin(base) is Capability:
            (argument,) = get_args(base)
            return argument if isinstance(argument, type) and issubclass(argument, CapabilityConfig) else None
    return None


def register(cls: type[CapabilityT]) -> type[CapabilityT]:
    """Class decorator: make a capability attachable by its ``name``. Its
    ``Config`` must be the model it is generic in: the loader validates
    with ``Config``, the handlers are type-checked against the parameter."""
    declared = declared_config(cls)
    if declared is not None and not issubclass(cls.Config, declared):
        raise TypeError(f"{cls.__name__}.Config is {cls.Config.__name__}, not the {declared.__name__} it is generic in")
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"capability {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


def describe() -> list[dict[str, Any]]:
    """Name, priority and config JSON schema of every registered capability."""
    return [
        {"name": c.name, "priority": c.priority, "config_schema": c.Config.model_json_schema()}
        for c in sorted(REGISTRY.values(), key=lambda c: -c.priority)
    ]
