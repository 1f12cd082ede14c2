"""Agent protocols: MCP (Model Context Protocol) over Streamable HTTP, and the
caller-matching and delegation pieces that the A2A side (``extproc.a2a``)
shares with it. JSON-RPC itself (strict parsing, refusals, response
rewriting, the exchange both capabilities run) is ``extproc.jsonrpc``.

* ``callers``: the ``who`` of a rule (subjects, agents, SPIFFE principals,
  roles, scopes, claim conditions) and the caller summary audit records carry;
* ``delegation``: the RFC 8693 ``act`` chain checks (depth, trusted actors,
  scopes narrowing hop by hop);
* ``policy``: tool / resource / prompt access rules and argument constraints,
  the single decision function that both authorizes calls and filters lists;
* ``pins``: tool-definition pinning;
* ``protocol``: which MCP methods carry which target.

The capabilities themselves are ``extproc.capabilities.mcp_tools`` and
``extproc.capabilities.a2a_access``; docs/agents.md describes the semantics.
"""

# The capability modules import this package's modules; loading the registry
# first means whichever side is imported first, each module body runs once
# its imports are complete (no partially initialized module).
import extproc.capabilities  # noqa: F401
