"""The capability lifecycle through the real loader and store: constructors
do no I/O, ``start`` runs once per load before the revision serves, and a
``start`` that fails refuses the load at the capability's place in the
policy (the live revision keeps serving), closing what the load built."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from extproc.capabilities.api_key import ApiKeyAuth, ApiKeyConfig
from extproc.capabilities.base import REGISTRY, Capability, CapabilityConfig, register
from extproc.context import Mode
from extproc.policy.loader import PolicyLoadError, load_policy_dir
from extproc.policy.store import PolicyStore
from extproc.runtime import Runtime


class ProbeConfig(CapabilityConfig):
    fail: str | None = None
    wait: bool = False


events: list[tuple[str, int]] = []


class Probe(Capability[ProbeConfig]):
    name = "lifecycle_probe"
    priority = 1

    Config = ProbeConfig

    def __init__(self, config: ProbeConfig, mode: Mode = Mode.ENFORCE, runtime: Runtime | None = None) -> None:
        super().__init__(config, mode, runtime or Runtime())
        events.append(("construct", id(self)))

    async def start(self) -> None:
        events.append(("start", id(self)))
        if self.config.wait:
            await asyncio.sleep(0)
        if self.config.fail:
            raise ValueError(self.config.fail)

    def close(self) -> None:
        events.append(("close", id(self)))


@pytest.fixture(autouse=True)
def probe() -> Iterator[None]:
    register(Probe)
    events.clear()
    yield
    REGISTRY.pop(Probe.name, None)


def policy(*configs: str) -> str:
    caps = "".join(f"      - type: lifecycle_probe\n        config: {c}\n" for c in configs)
    return f"routes:\n  - name: api\n    capabilities:\n{caps}"


def test_start_runs_once_per_load_after_every_constructor(tmp_path) -> None:
    (tmp_path / "p.yaml").write_text(policy("{}", "{}"))
    loaded = load_policy_dir(tmp_path, Runtime())
    kinds = [kind for kind, _ in events]
    assert kinds == ["construct", "construct", "start", "start"]
    assert {ident for kind, ident in events if kind == "start"} == {id(c) for c in loaded.routes["api"].capabilities}


def test_a_failing_start_refuses_the_load_where_the_capability_is_declared(tmp_path) -> None:
    (tmp_path / "p.yaml").write_text(policy("{}", "{fail: key file unreadable}"))
    with pytest.raises(PolicyLoadError) as refused:
        load_policy_dir(tmp_path, Runtime())
    (error,) = refused.value.errors
    assert error.file.endswith("p.yaml") and error.line == 6
    assert error.field == "routes[0].capabilities[1]" and error.message == "key file unreadable"
    # Everything the refused load built is closed.
    built = {ident for kind, ident in events if kind == "construct"}
    assert {ident for kind, ident in events if kind == "close"} == built


def test_an_invalid_policy_starts_nothing(tmp_path) -> None:
    (tmp_path / "p.yaml").write_text(policy("{}", "{unknown: 1}"))
    with pytest.raises(PolicyLoadError):
        load_policy_dir(tmp_path, Runtime())
    assert [kind for kind, _ in events if kind == "start"] == []


def test_a_start_that_waits_on_the_loop_fails_the_load(tmp_path) -> None:
    (tmp_path / "p.yaml").write_text(policy("{wait: true}"))
    with pytest.raises(PolicyLoadError, match=r"start\(\) waited on the event loop"):
        load_policy_dir(tmp_path, Runtime())


def test_a_reload_whose_start_fails_keeps_the_live_revision(tmp_path) -> None:
    (tmp_path / "p.yaml").write_text(policy("{}"))
    store = PolicyStore(tmp_path, Runtime())
    live = store.current
    (tmp_path / "p.yaml").write_text(policy("{fail: upstream says no}"))
    assert not store.reload()
    assert store.current is live
    assert "upstream says no" in store.last_errors[0]


def test_api_key_reads_its_keys_file_in_start_not_in_the_constructor(tmp_path) -> None:
    runtime = Runtime(policy_dir=tmp_path)
    config = ApiKeyConfig.model_validate({"keys_file": "keys.yaml"})
    capability = ApiKeyAuth(config, Mode.ENFORCE, runtime)  # the file does not exist: no error yet
    with pytest.raises(ValueError, match="keys_file"):
        asyncio.run(capability.start())
