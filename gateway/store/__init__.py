"""Durable records. ``interface`` is what every store implements (no SQLite types in it); ``rows`` the codec
between frozen values and rows; ``sqlite/`` the embedded implementation, the only code that speaks SQL.

May import: gateway.model, gateway.errors, gateway.report.
"""
