"""The base of every policy config model.

It lives at the bottom of the import graph (it depends on pydantic only) so that
the pure-text guards and the MCP/A2A protocol code can declare their configs
without importing the capabilities layer that builds on them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class CapabilityConfig(BaseModel):
    """Base for capability configs: strict about unknown fields, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
