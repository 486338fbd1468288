-- Every SQL statement the gateway runs, as named blocks loaded once by gateway/store.py.
-- Schema changes are new `schema_vN` blocks listed in store.MIGRATIONS; never edit a released one.

-- name: writer_pragmas
-- Per connection. FULL: a commit is fsynced before the gateway answers 2xx.
PRAGMA synchronous = FULL;
PRAGMA foreign_keys = ON;
PRAGMA busy_timeout = 5000;

-- name: reader_pragmas
PRAGMA busy_timeout = 5000;
PRAGMA query_only = ON;

-- name: enable_wal
-- Persistent in the file; answers the mode actually in force.
PRAGMA journal_mode = WAL;

-- name: read_user_version
PRAGMA user_version;

-- name: schema_v1
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

-- name: find_dedupe_keys
-- :keys is a JSON list of [source, dedupe_key] pairs: one lookup for a whole batch.
SELECT e.source, e.dedupe_key, e.id
FROM json_each(:keys) AS k
JOIN events AS e
  ON e.source = json_extract(k.value, '$[0]') AND e.dedupe_key = json_extract(k.value, '$[1]');

-- name: insert_event
INSERT INTO events (id, source, event_type, dedupe_key, status, received_at, method, url, headers, query,
                    body, payload_kind, payload, verification, remote_addr, replay_of)
VALUES (:id, :source, :event_type, :dedupe_key, :status, :received_at, :method, :url, :headers, :query,
        :body, :payload_kind, :payload, :verification, :remote_addr, :replay_of);

-- name: insert_run
INSERT INTO runs (id, event_id, route_id, task_id, input, status, queue, priority, concurrency_key, options,
                  attempts, crashes, created_at, available_at, started_at, finished_at, output, error)
VALUES (:id, :event_id, :route_id, :task_id, :input, :status, :queue, :priority, :concurrency_key, :options,
        :attempts, :crashes, :created_at, :created_at, :started_at, :finished_at, :output, :error);

-- name: insert_rejection
INSERT INTO rejections (source, reason, detail, received_at, remote_addr, body_prefix, body_size)
VALUES (:source, :reason, :detail, :received_at, :remote_addr, :body_prefix, :body_size);

-- name: set_meta
INSERT INTO meta (key, value) VALUES (:key, :value)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: get_event
SELECT id, source, event_type, dedupe_key, status, received_at, method, url, headers, query, body,
       payload_kind, payload, verification, remote_addr, replay_of
FROM events
WHERE id = :id;

-- name: list_events
-- Newest first; rowid breaks ties in arrival order and lets the index serve the ORDER BY.
SELECT id, source, event_type, dedupe_key, status, received_at, method, url, headers, query, body,
       payload_kind, payload, verification, remote_addr, replay_of
FROM events
WHERE received_at >= :since AND (:status IS NULL OR status = :status)
ORDER BY received_at DESC, rowid DESC
LIMIT :limit;

-- name: list_events_for_source
SELECT id, source, event_type, dedupe_key, status, received_at, method, url, headers, query, body,
       payload_kind, payload, verification, remote_addr, replay_of
FROM events
WHERE source = :source AND received_at >= :since AND (:status IS NULL OR status = :status)
ORDER BY received_at DESC, rowid DESC
LIMIT :limit;

-- name: get_run
SELECT id, event_id, route_id, task_id, input, status, queue, priority, concurrency_key, options, attempts,
       crashes, created_at, started_at, finished_at, output, error
FROM runs
WHERE id = :id;

-- name: runs_for_event
-- In the order they were recorded (route order), not newest first: they share one created_at.
SELECT id, event_id, route_id, task_id, input, status, queue, priority, concurrency_key, options, attempts,
       crashes, created_at, started_at, finished_at, output, error
FROM runs
WHERE event_id = :event_id
ORDER BY created_at, rowid;

-- name: list_rejections
SELECT id, source, reason, detail, received_at, remote_addr, body_prefix, body_size
FROM rejections
WHERE received_at >= :since
ORDER BY received_at DESC, id DESC
LIMIT :limit;

-- name: list_rejections_for_source
SELECT id, source, reason, detail, received_at, remote_addr, body_prefix, body_size
FROM rejections
WHERE source = :source AND received_at >= :since
ORDER BY received_at DESC, id DESC
LIMIT :limit;
