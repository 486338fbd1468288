"""Outbound key fetches (httpx): the bounded, expiring cache of remote verification keys and the keyring that
picks, per source, which key a delivery is checked with.

May import: gateway.routes (a source's settings), gateway.signatures, and the shared vocabulary.
"""
