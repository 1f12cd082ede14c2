"""Text inspection for LLM traffic: PII/secret detection and prompt-injection
scoring. Pure functions of text: no Envoy, no gRPC, no I/O per request."""

# The configs here derive from CapabilityConfig, and the capabilities package
# imports this one to build the LLM capabilities. Importing it first makes
# either import order work: starting from extproc.guard.pii would otherwise
# enter extproc.capabilities' __init__, which imports extproc.guard.pii back
# while it is half-initialized.
import extproc.capabilities  # noqa: F401
