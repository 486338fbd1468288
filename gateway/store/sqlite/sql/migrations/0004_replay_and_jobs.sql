-- Replay, inspection and retention. Listings page by (time, id) keysets; bulk jobs keep their progress.
DROP INDEX events_received;
CREATE INDEX events_received ON events (received_at, id);
DROP INDEX events_source_received;
CREATE INDEX events_source_received ON events (source, received_at, id);
DROP INDEX runs_created;
CREATE INDEX runs_created ON runs (created_at, id);
CREATE INDEX events_replay_of ON events (replay_of) WHERE replay_of IS NOT NULL;
CREATE INDEX runs_rerun_of ON runs (rerun_of) WHERE rerun_of IS NOT NULL;
CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('replay', 'rerun')),
    filter       TEXT NOT NULL,            -- JSON: the EventFilter or RunFilter
    status       TEXT NOT NULL CHECK (status IN ('running', 'completed', 'canceled', 'failed')),
    total        INTEGER NOT NULL,         -- items selected when the job was created
    done         INTEGER NOT NULL DEFAULT 0,
    created      INTEGER NOT NULL DEFAULT 0,  -- runs created
    upto         REAL NOT NULL,            -- only items recorded at or before this time
    cursor_time  REAL,                     -- the last item processed, in (time, id) order
    cursor_id    TEXT,
    owner        TEXT,                     -- the process working on it, while its lease lasts
    lease_until  REAL,
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    finished_at  REAL,
    error        TEXT,
    requested_by TEXT
);
CREATE INDEX jobs_created ON jobs (created_at, id);
