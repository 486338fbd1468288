-- Workers (issue 18): every process that runs tasks (gateway serve with its embedded executor, gateway
-- worker) registers here, renews heartbeat_at with its leases, and sets stopped_at when it stops cleanly. A
-- claimed run names the worker holding it (runs.worker_id) and so does each attempt (attempts.worker_id):
-- recovery says whose process died, and any live process can tell a dead worker's runs by its row.
CREATE TABLE workers (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('serve', 'worker')),
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    process      TEXT,                  -- boot id and start time of the process: a reused pid is not it
    tasks        TEXT NOT NULL,         -- JSON list of the task ids it serves
    queues       TEXT,                  -- JSON list of the queues it serves; NULL: every queue
    concurrency  INTEGER NOT NULL,
    version      TEXT NOT NULL,
    started_at   REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    stopped_at   REAL                   -- a clean stop; NULL while it runs, and once it died
);
CREATE INDEX workers_heartbeat ON workers (heartbeat_at);
ALTER TABLE runs ADD COLUMN worker_id TEXT;
ALTER TABLE attempts ADD COLUMN worker_id TEXT;
