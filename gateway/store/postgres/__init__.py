"""The PostgreSQL store: several gateways and workers on many hosts share one database. Group-committed writes
on one writer connection per process, reads on another, the same ops as SQLite's (gateway/store/ops/) over its
own SQL; advisory locks where SQLite's one writer lock serialized; leases by the server's clock; wake-ups by
LISTEN/NOTIFY.

May import: gateway.store (the interface, the codec and the ops) and the shared vocabulary.
"""
