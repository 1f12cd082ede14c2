"""Establishing who is calling: JWT/OIDC, API keys, mTLS peer identity."""
