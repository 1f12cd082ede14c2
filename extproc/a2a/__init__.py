"""A2A (Agent2Agent) protocol knowledge for the ``a2a_access`` capability:
method names of both spec versions, where a request designates its skill,
and what an agent card and a task look like. JSON-RPC framing, caller
matching and delegation checks are shared with MCP (``extproc.mcp``)."""
