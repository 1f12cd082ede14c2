"""forward_token: false — the upstream never sees the token, whichever of
header, cookie or query parameter carried it, on ext_authz and ext_proc."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from extproc.local.demo_keys import load_demo_key, mint

REPO = Path(__file__).resolve().parents[2]
JWT = """\
      - type: jwt
        config:
          forward_token: false
          sources:
            - { header: authorization, prefix: "Bearer " }
            - { cookie: session }
            - { query: access_token }
          issuers:
            - issuer: https://demo.extproc.local
              jwks: { file: keys/demo-jwks.json }
              audiences: [extproc-demo]
"""


@pytest.fixture
def gateway(gateway_factory, tmp_path):
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies" / "keys", policies / "keys")
    (policies / "p.yaml").write_text(
        "routes:\n" + "".join(f"  - name: {name}\n    capabilities:\n{JWT}" for name in ("api", "proc"))
    )
    return gateway_factory(policy_dir=policies)


TOKEN = mint(load_demo_key(), sub="alice", roles=["reader"])


@pytest.mark.parametrize("prefix", ["/api", "/proc"])
def test_query_token_is_removed_and_other_parameters_kept(gateway, prefix):
    r = gateway.client.get(f"{prefix}/x?a=1&access_token={TOKEN}&b=two%20words")
    assert r.status_code == 200
    seen = r.json()
    assert TOKEN not in seen["path"] and seen["path"] == f"{prefix}/x?a=1&b=two%20words"
    assert seen["headers"]["x-auth-subject"] == "alice"


@pytest.mark.parametrize("prefix", ["/api", "/proc"])
def test_cookie_and_header_tokens_are_removed(gateway, prefix):
    r = gateway.client.get(f"{prefix}/x", headers={"cookie": f"theme=dark; session={TOKEN}; lang=en"})
    assert r.status_code == 200
    assert r.json()["headers"]["cookie"] == "theme=dark; lang=en"
    r = gateway.client.get(f"{prefix}/x", headers={"authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200
    assert "authorization" not in r.json()["headers"]
