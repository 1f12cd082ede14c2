"""Built-in capabilities. Importing this package registers them all.

A new capability is one module here plus its import below.
"""

from extproc.capabilities import (  # noqa: F401  (registration: one line per capability)
    a2a_access,
    api_key,
    header_match,
    headers,
    jwt_auth,
    mcp_tools,
    model_access,
    mtls,
    pii,
    prompt_guard,
    quota,
    rbac,
    token_budget,
)
from extproc.capabilities.base import REGISTRY, Capability, CapabilityConfig, register

__all__ = ["REGISTRY", "Capability", "CapabilityConfig", "register"]
