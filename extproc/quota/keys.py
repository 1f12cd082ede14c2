"""What a quota counts by: key parts, and the backend keys built from them.

A limit's ``key`` is a list of parts such as ``[consumer, route]`` or
``[tenant, "header:x-org"]``. Each part is a small function of the request
context, looked up and bound once when the policy loads, so a request only
calls them. A new part (``model`` and ``mcp_tool`` will come with LLM and
MCP support) is one ``register_part`` call; nothing else changes.

Backend key layout::

    quota:{<tag>}:<kind>:<limit name>:<value>:<value>...

``<kind>`` is ``r`` (rate) or ``c`` (concurrency). ``{<tag>}`` is a Redis
Cluster hash tag: Redis Cluster hashes only the text between the first
braces, and one atomic script may only touch keys of one slot, so every key
one request checks carries the same tag. See ``cluster_tag``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

from extproc.context import RequestContext
from extproc.headers import validate_header_name

PartFn = Callable[[RequestContext], "str | None"]

PREFIX = "quota:"
# A value made only of these characters (and short) is used as is, so keys
# stay readable in redis-cli; anything else is hashed. The separators ``:``
# and ``{}`` are excluded, so two different value lists never build one key.
_PLAIN = re.compile(r"^[A-Za-z0-9._@/+=\-]{1,64}$")
# Stands for an absent part under ``missing_key: shared``. ``%`` is not a
# plain character and hashed values start with ``#``: no real value maps here.
MISSING = "%"
# The tag of a limit set whose limits share no key part (see cluster_tag).
SHARED_TAG = "*"

# name -> (factory, whether the part takes an argument as in ``header:x-org``)
_PARTS: dict[str, tuple[Callable[[str | None], PartFn], bool]] = {}


def register_part(name: str, factory: Callable[[str | None], PartFn], *, takes_argument: bool = False) -> None:
    """Make ``name`` (or ``name:<argument>`` when ``takes_argument``) usable
    in a limit's ``key``. ``factory(argument)`` runs at policy load and returns
    the per-request function, which returns ``None`` when the part is absent."""
    if name in _PARTS:
        raise ValueError(f"quota key part {name!r} registered twice")
    _PARTS[name] = (factory, takes_argument)


def _identity(attribute: str) -> Callable[[str | None], PartFn]:
    def factory(_argument: str | None) -> PartFn:
        return lambda ctx: getattr(ctx.identity, attribute)

    return factory


def _route(_argument: str | None) -> PartFn:
    return lambda ctx: ctx.route.name if ctx.route is not None else None


def _header(argument: str | None) -> PartFn:
    name = validate_header_name(argument or "")
    return lambda ctx: ctx.request.headers.get(name)


register_part("consumer", _identity("subject"))  # JWT sub / API key consumer
register_part("tenant", _identity("tenant"))
register_part("api_key", _identity("api_key_id"))
register_part("principal", _identity("principal"))  # mTLS peer identity
register_part("route", _route)
register_part("header", _header, takes_argument=True)


def known_parts() -> list[str]:
    return sorted(f"{name}:<name>" if takes else name for name, (_, takes) in _PARTS.items())


def normalize_part(spec: str) -> str:
    """Validate a key part as written in a policy; return its canonical form
    (``header:X-Org`` -> ``header:x-org``). Raises ``ValueError``."""
    name, sep, argument = spec.partition(":")
    if name not in _PARTS:
        raise ValueError(f"unknown key part {spec!r} (known: {', '.join(known_parts())})")
    if _PARTS[name][1]:
        if not sep or not argument:
            raise ValueError(f"key part {name!r} needs an argument: {name}:<name>")
        if name == "header":
            argument = validate_header_name(argument)
        return f"{name}:{argument}"
    if sep:
        raise ValueError(f"key part {name!r} takes no argument")
    return name


def compile_part(spec: str) -> PartFn:
    """The request-time function for a canonical key part."""
    name, _, argument = spec.partition(":")
    return _PARTS[name][0](argument or None)


def encode_value(value: str) -> str:
    """A key part value as it appears in a backend key."""
    if _PLAIN.match(value):
        return value
    return "#" + hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def cluster_tag(encoded_values: list[str]) -> str:
    """The hash tag for one request's keys.

    It is built from the key parts that ALL of a capability's limits share
    (for ``[consumer]`` and ``[consumer, route]``: the consumer), so each
    consumer's keys live on one slot and different consumers spread over the
    cluster. When the limits share no part (``[consumer]`` and ``[tenant]``)
    the only tag that keeps every key of the request together is a constant:
    correct, but all of that capability's keys land on one node. Splitting
    such limits into two ``quota`` capabilities spreads them again, at the
    cost of a second round trip and of all-or-nothing across the two.
    """
    return ":".join(encoded_values) if encoded_values else SHARED_TAG
