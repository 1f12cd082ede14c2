"""A2A (Agent2Agent) protocol knowledge for the ``a2a_access`` capability:
method names of both spec versions, where a request designates its skill,
and what an agent card and a task look like (``protocol``); who owns a task
and which tasks a message names (``ownership``). JSON-RPC handling is
``extproc.jsonrpc``, shared with MCP; caller matching and delegation checks
come from ``extproc.identity``. Nothing here imports ``extproc.mcp``."""
