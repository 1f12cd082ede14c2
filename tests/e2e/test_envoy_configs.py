"""Every Envoy config we ship must be one Envoy accepts."""

from pathlib import Path

import pytest
import yaml

from extproc.local.envoy import render, uses_certs, validate

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted([*REPO.glob("envoy/**/*.yaml"), *REPO.glob("bench/**/envoy/*.yaml"), *REPO.glob("bench/envoy/*.yaml")])


def test_there_are_configs():
    assert any(p.name == "gateway.yaml" for p in CONFIGS)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_envoy_accepts(config, demo_certs, tmp_path):
    if uses_certs(config):  # validation opens the TLS files: point them at real ones
        rendered = tmp_path / config.name
        rendered.write_text(yaml.safe_dump(render(config, certs_dir=demo_certs)))
        config = rendered
    result = validate(config)
    assert result.returncode == 0, result.stdout + result.stderr


def test_render_rejects_unknown_names():
    with pytest.raises(KeyError):
        render(REPO / "envoy/gateway.yaml", {"no-such-cluster": 1})
