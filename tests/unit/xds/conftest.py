"""Policies written to a temporary directory and loaded for real."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from extproc.policy.loader import discard_policy, load_policy_dir
from extproc.policy.model import PolicySet
from extproc.runtime import Runtime

REPO = Path(__file__).resolve().parents[3]
ISSUER = {
    "issuer": "https://demo.extproc.local",
    "jwks": {"file": "keys/demo-jwks.json"},
    "audiences": ["extproc-demo"],
}


def route(name: str, prefix: str, *capabilities: dict[str, Any], **match: Any) -> dict[str, Any]:
    return {"name": name, "match": {"path_prefix": prefix, **match}, "capabilities": list(capabilities)}


@pytest.fixture
def load(tmp_path: Path) -> Iterator[Callable[..., PolicySet]]:
    loaded: list[tuple[PolicySet, Runtime]] = []

    def make(*routes: dict[str, Any], quota_backend: str = "memory", **top: Any) -> PolicySet:
        directory = tmp_path / f"p{len(loaded)}"
        directory.mkdir()
        shutil.copytree(REPO / "policies" / "keys", directory / "keys")
        (directory / "policy.yaml").write_text(yaml.safe_dump({"version": 1, "routes": list(routes), **top}))
        runtime = Runtime(quota_backend=quota_backend)
        policy = load_policy_dir(directory, runtime)
        loaded.append((policy, runtime))
        return policy

    yield make
    for policy, runtime in loaded:
        discard_policy(policy, runtime)
