"""HTTP: the ingest endpoint (hooks), the admin API with its auth, parameters and OpenAPI document, the table
of HTTP statuses, and the servers (Hypercorn, uvicorn) that serve them.

May import: gateway.records, gateway.keys, gateway.routes, gateway.signatures, gateway.store,
gateway.telemetry.
"""
