"""Signature verification, pure: provider schemes as rows of data, the adapters that read each vendor's
headers, the one verifier, public-key and JWT checks, signing (for `gateway sign` and tests) and handshakes.

May import: gateway.model, gateway.errors. No I/O, no clock: ``now`` and every key come in.
"""
