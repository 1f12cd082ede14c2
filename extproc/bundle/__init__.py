"""Signed policy bundles: one reviewed policy directory, served alike by a fleet.

``extproc policy bundle build`` packs a policy directory that validates into a
reproducible archive; ``sign`` makes its detached signature (a JWS, EdDSA over
Ed25519); ``extproc serve --bundle URL --bundle-key PUB`` follows the URL and
serves only what a trusted key signed. The format and threat model are in
docs/bundles.md.
"""
