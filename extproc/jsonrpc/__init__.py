"""JSON-RPC 2.0 as the agent protocols (MCP, A2A) carry it over HTTP, shared
by both capabilities so that they parse, refuse and audit alike:

* ``wire``: strict parsing (single and batch), error objects, how a refusal
  is rendered (JSON or SSE), the audit fingerprint of parameters;
* ``responses``: rewriting JSON-RPC responses as they stream back;
* ``exchange``: one HTTP request's JSON-RPC exchange through the phases: the
  request body judged message by message, the refusal (a batch is refused
  as a unit and audited as refused), the awaited responses.
"""
