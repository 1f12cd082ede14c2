"""MCP (Model Context Protocol) over Streamable HTTP. JSON-RPC itself
(strict parsing, refusals, response rewriting, the exchange both agent
capabilities run) is ``extproc.jsonrpc``; the ``who`` of a rule, the caller
summary audit records carry and the RFC 8693 delegation checks are
``extproc.identity`` (``who``, ``caller``, ``delegation``), shared with rbac
and A2A.

* ``policy``: tool / resource / prompt access rules and argument constraints,
  the single decision function that both authorizes calls and filters lists;
* ``pins``: tool-definition pinning;
* ``protocol``: which MCP methods carry which target.

The capabilities themselves are ``extproc.capabilities.mcp_tools`` and
``extproc.capabilities.a2a_access``; docs/agents.md describes the semantics.
"""
