"""Text inspection for LLM traffic: PII/secret detection and prompt-injection
scoring. Pure functions of text: no Envoy, no gRPC, no I/O per request."""
