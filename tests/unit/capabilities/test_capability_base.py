"""The capability contract: generic in its config model, registered by name,
its ``Config`` the model it is generic in."""

from __future__ import annotations

import pytest

from extproc.capabilities import REGISTRY
from extproc.capabilities.base import Capability, CapabilityConfig, declared_config, register


class AConfig(CapabilityConfig):
    a: int = 1


class BConfig(CapabilityConfig):
    b: int = 2


def test_every_registered_capability_validates_with_the_model_it_is_generic_in() -> None:
    checked = 0
    for name, cls in REGISTRY.items():
        declared = declared_config(cls)
        if declared is None:
            continue  # not generic yet (a module another change owns)
        assert issubclass(cls.Config, declared), name
        checked += 1
    assert checked >= 10


def test_a_config_that_is_not_the_generic_parameter_is_refused() -> None:
    class Mismatched(Capability[AConfig]):
        name = "test_mismatched"
        priority = 1
        Config = BConfig

    with pytest.raises(TypeError, match="not the AConfig it is generic in"):
        register(Mismatched)
    assert "test_mismatched" not in REGISTRY


def test_a_matching_capability_registers_once() -> None:
    class Matching(Capability[AConfig]):
        name = "test_matching"
        priority = 1
        Config = AConfig

    try:
        assert register(Matching) is Matching
        assert register(Matching) is Matching  # idempotent
        assert REGISTRY["test_matching"] is Matching
        assert Matching(AConfig()).config.a == 1
    finally:
        REGISTRY.pop("test_matching", None)


def test_start_and_close_are_no_ops_by_default() -> None:
    import asyncio

    class Plain(Capability[AConfig]):
        name = "test_plain"
        priority = 1
        Config = AConfig

    capability = Plain(AConfig())
    assert asyncio.run(capability.start()) is None
    assert capability.close() is None
