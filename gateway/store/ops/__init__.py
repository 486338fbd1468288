"""The store's writes and reads for either database: ops on the group-committing writer's batches, the
executor's side (runs), bulk jobs, rejections and reads, over a db.Db (named statements; each database package
brings its own SQL for the same names).

May import: gateway.store (the interface and the codec) and the shared vocabulary; no driver.
"""
