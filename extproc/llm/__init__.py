"""LLM APIs: request parsing, response rewriting, errors in each API's shape."""
