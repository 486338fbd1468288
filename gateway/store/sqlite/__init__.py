"""The SQLite store: group-committed writes on one writer connection, reads on another, its SQL and schema.

May import: gateway.store (the interface and the codec) and the shared vocabulary.
"""
