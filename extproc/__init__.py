"""Governance gateway processor for Envoy (ext_authz + ext_proc)."""

__version__ = "0.1.0"
