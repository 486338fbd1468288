-- Schema version 1: events, their runs and attempts, rejected deliveries, and the meta table.
CREATE TABLE events (
    id           TEXT PRIMARY KEY,
    source       TEXT NOT NULL,
    event_type   TEXT,
    dedupe_key   TEXT,
    status       TEXT NOT NULL CHECK (status IN ('routed', 'unrouted')),
    received_at  REAL NOT NULL,              -- unix seconds
    method       TEXT NOT NULL,
    url          TEXT NOT NULL,
    headers      TEXT NOT NULL,              -- JSON [[name, value], ...]; repeated names kept, in order
    query        TEXT NOT NULL,              -- JSON [[name, value], ...]
    body         BLOB NOT NULL,              -- the exact bytes received
    payload_kind TEXT NOT NULL,              -- json | form | raw
    payload      TEXT NOT NULL,              -- JSON
    verification TEXT NOT NULL,
    remote_addr  TEXT,
    replay_of    TEXT,                       -- no foreign key: retention may prune the original
    UNIQUE (source, dedupe_key)              -- NULL keys never collide
);
CREATE INDEX events_received ON events (received_at);
CREATE INDEX events_source_received ON events (source, received_at);

CREATE TABLE runs (
    id              TEXT PRIMARY KEY,
    event_id        TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    route_id        TEXT,
    task_id         TEXT NOT NULL,
    input           TEXT NOT NULL,           -- JSON
    status          TEXT NOT NULL CHECK (status IN ('queued', 'executing', 'retrying', 'completed',
                                                    'failed', 'timed_out', 'canceled', 'crashed')),
    queue           TEXT NOT NULL DEFAULT 'default',
    priority        INTEGER NOT NULL DEFAULT 0,
    concurrency_key TEXT,
    options         TEXT NOT NULL DEFAULT '{}',  -- JSON: resolved retry/timeout
    attempts        INTEGER NOT NULL DEFAULT 0,
    crashes         INTEGER NOT NULL DEFAULT 0,
    created_at      REAL NOT NULL,
    available_at    REAL NOT NULL,           -- when it may next start (a retry moves it forward)
    started_at      REAL,
    finished_at     REAL,
    output          TEXT,                    -- JSON
    error           TEXT,                    -- JSON
    lease_until     REAL                     -- an executing run whose lease lapsed has crashed
);
CREATE INDEX runs_status_available ON runs (status, available_at);
CREATE INDEX runs_event ON runs (event_id);

CREATE TABLE attempts (
    run_id        TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    number        INTEGER NOT NULL,
    started_at    REAL NOT NULL,
    finished_at   REAL,
    outcome       TEXT,
    error_type    TEXT,
    error_message TEXT,
    traceback     TEXT,
    logs          TEXT NOT NULL DEFAULT '[]',  -- JSON
    PRIMARY KEY (run_id, number)
) WITHOUT ROWID;

CREATE TABLE rejections (
    id          INTEGER PRIMARY KEY,
    source      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    received_at REAL NOT NULL,
    remote_addr TEXT,
    body_prefix BLOB NOT NULL,
    body_size   INTEGER NOT NULL
);
CREATE INDEX rejections_received ON rejections (received_at);
CREATE INDEX rejections_source_received ON rejections (source, received_at);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value
);
