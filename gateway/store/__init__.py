"""Durable records. ``interface`` is what every store implements (no database types in it); ``rows`` the codec
between frozen values and rows; ``ops/`` the writes and reads both stores run; ``sqlite/`` the embedded store
and ``postgres/`` the shared one, the only code that speaks each database; ``open`` picks one by address.

May import: gateway.model, gateway.errors, gateway.report.
"""
