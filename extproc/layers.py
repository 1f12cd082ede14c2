"""The import layers of ``extproc``: which part may import which.

Imports point down only. The bottom layer (config models, identity matching,
request context, the text guards, the JSON-RPC, MCP, A2A and LLM protocol
code, quota backends, audit) knows nothing of capabilities, policy loading
or the gRPC services; capabilities build on it; the policy loader builds
capabilities; the services run the pipeline over a loaded policy; the
server and the CLI sit on top. ``tests/test_imports.py`` imports every
module alone in a fresh interpreter and checks it against this table, and
docs/architecture.md cites it. Data only: importing this module imports
nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LAYERS", "Layer", "layer_of", "violations"]


@dataclass(frozen=True, slots=True)
class Layer:
    name: str
    # Module names or package prefixes (``extproc.mcp`` is the package and
    # everything under it) that belong to this layer.
    members: tuple[str, ...]
    # What importing any member must never load, alone or through others:
    # extproc modules of the layers above, and heavy third-party packages
    # where none belongs.
    forbidden: tuple[str, ...]


_ABOVE_BOTTOM = (
    "extproc.capabilities",
    "extproc.policy",
    "extproc.pipeline",
    "extproc.services",
    "extproc.server",
    "extproc.supervisor",
    "extproc.cli",
    "extproc.policytools",
    "extproc.bundle",
    "extproc.local",
)

LAYERS: tuple[Layer, ...] = (
    # Pure text scanning: runs in scan worker processes, so it must stay
    # free of network and telemetry stacks as well.
    Layer(
        "guard",
        ("extproc.guard",),
        (*_ABOVE_BOTTOM, "extproc.quota", "jwt", "grpc", "redis", "opentelemetry", "prometheus_client"),
    ),
    Layer(
        "bottom",
        (
            "extproc.config",
            "extproc.layers",
            "extproc.globs",
            "extproc.paths",
            "extproc.headers",
            "extproc.jsonstrict",
            "extproc.encodings",
            "extproc.sse",
            "extproc.logs",
            "extproc.context",
            "extproc.runtime",
            "extproc.admission",
            "extproc.portclaim",
            "extproc.identity",
            "extproc.jsonrpc",
            "extproc.mcp",
            "extproc.a2a",
            "extproc.llm",
            "extproc.quota",
            "extproc.audit",
        ),
        _ABOVE_BOTTOM,
    ),
    Layer(
        "capabilities",
        ("extproc.capabilities",),
        tuple(m for m in _ABOVE_BOTTOM if m != "extproc.capabilities"),
    ),
    Layer(
        "policy",
        ("extproc.policy", "extproc.pipeline"),
        (
            "extproc.services",
            "extproc.server",
            "extproc.supervisor",
            "extproc.cli",
            "extproc.policytools",
            "extproc.bundle",
            "extproc.local",
        ),
    ),
    Layer("services", ("extproc.services",), ("extproc.server", "extproc.supervisor", "extproc.cli", "extproc.local")),
    # The process and the tools on top may import anything below.
    Layer(
        "top",
        (
            "extproc",
            "extproc.server",
            "extproc.supervisor",
            "extproc.cli",
            "extproc.policytools",
            "extproc.bundle",
            "extproc.xds",
        ),
        (),
    ),
    Layer("local", ("extproc.local",), ()),
)


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> Layer | None:
    """The layer of ``module``: the one whose most specific member holds it."""
    best: tuple[int, Layer] | None = None
    for layer in LAYERS:
        for member in layer.members:
            if _within(module, member) and (best is None or len(member) > best[0]):
                best = (len(member), layer)
    return best[1] if best else None


def violations(module: str, loaded: list[str]) -> list[str]:
    """The modules in ``loaded`` (what importing ``module`` loaded) that its layer forbids."""
    layer = layer_of(module)
    if layer is None:
        return []
    return sorted(name for name in loaded for banned in layer.forbidden if _within(name, banned))
