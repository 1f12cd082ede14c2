"""Policy directories for LLM route tests: the demo issuer's JWT plus the
capabilities a test wants, bound to Envoy's `llm` route."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEMO_JWT = """\
- type: jwt
  config:
    issuers:
      - issuer: https://demo.extproc.local
        jwks: { file: keys/demo-jwks.json }
        audiences: [extproc-demo]
"""


def llm_route_policy(directory: Path, capabilities: str) -> Path:
    """``capabilities``: YAML list items (``- type: ...``) after the JWT one."""
    shutil.copytree(REPO / "policies" / "keys", directory / "keys")
    items = textwrap.indent(DEMO_JWT + textwrap.dedent(capabilities), " " * 6)
    (directory / "llm.yaml").write_text(f"routes:\n  - name: llm\n    capabilities:\n{items}")
    return directory
