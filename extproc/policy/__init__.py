"""Policies: schema, loading with precise errors, compiled form, hot reload."""

from extproc.policy.loader import PolicyError, PolicyLoadError, load_policy_dir
from extproc.policy.model import CompiledRoute, PolicySet
from extproc.policy.store import PolicyStore

__all__ = ["CompiledRoute", "PolicyError", "PolicyLoadError", "PolicySet", "PolicyStore", "load_policy_dir"]
