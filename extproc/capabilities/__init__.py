"""Built-in capabilities. Importing this package registers them all.

A new capability is one module here plus its import below.
"""

from extproc.capabilities import api_key, header_match, headers, jwt_auth, mtls, quota, rbac  # noqa: F401  (registration)
from extproc.capabilities.base import REGISTRY, Capability, CapabilityConfig, register

__all__ = ["REGISTRY", "Capability", "CapabilityConfig", "register"]
