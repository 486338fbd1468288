-- Every SQL statement the gateway runs, as named blocks loaded once by gateway/store/sqlite/store.py.
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

-- name: schema_v2
-- The executor's columns. sort_key = available_at - priority orders the claim; a run's rowid is its
-- arrival order (per-key FIFO compares rowids).
ALTER TABLE runs ADD COLUMN duration REAL NOT NULL DEFAULT 0;  -- seconds executing, over all attempts
ALTER TABLE runs ADD COLUMN idempotency_key TEXT;               -- NULL means the run id
ALTER TABLE runs ADD COLUMN rerun_of TEXT;
ALTER TABLE runs ADD COLUMN sort_key REAL;
UPDATE runs SET sort_key = available_at - priority;
-- Only waiting runs are in it, in claim order (sort_key, then rowid, which every index entry ends with).
CREATE INDEX runs_claim ON runs (sort_key) WHERE status IN ('queued', 'retrying');
-- Per-key FIFO looks for an earlier unfinished run of the same (task, key): only those are indexed, so a
-- key with a long history costs no more than one without.
CREATE INDEX runs_concurrency_key ON runs (task_id, concurrency_key)
    WHERE concurrency_key IS NOT NULL AND status IN ('queued', 'executing', 'retrying');
CREATE INDEX runs_created ON runs (created_at);

-- name: schema_v3
-- Per-key FIFO as a flag: blocked = 1 marks a waiting run behind an earlier unfinished run of its (task,
-- key). Only a key's head (its earliest unfinished run) is unblocked, so a claim never walks the runs that
-- wait behind it. A run's flag is set when it is recorded and cleared when its key's head reaches a final
-- status; it means nothing once the run itself is final.
ALTER TABLE runs ADD COLUMN blocked INTEGER NOT NULL DEFAULT 0;
UPDATE runs SET blocked = 1
WHERE concurrency_key IS NOT NULL AND status IN ('queued', 'executing', 'retrying')
  AND EXISTS (
        SELECT 1 FROM runs AS p
        WHERE p.task_id = runs.task_id AND p.concurrency_key = runs.concurrency_key
          AND p.status IN ('queued', 'executing', 'retrying') AND p.rowid < runs.rowid);
DROP INDEX runs_claim;
CREATE INDEX runs_claim ON runs (sort_key) WHERE status IN ('queued', 'retrying') AND blocked = 0;

-- name: find_dedupe_keys
-- :keys is a JSON list of [source, dedupe_key] pairs: one lookup for a whole batch.
SELECT e.source, e.dedupe_key, e.id
FROM json_each(:keys) AS k
JOIN events AS e
  ON e.source = json_extract(k.value, '$[0]') AND e.dedupe_key = json_extract(k.value, '$[1]');

-- name: insert_event
INSERT INTO events (id, source, event_type, dedupe_key, status, received_at, method, url, headers, query,
                    body, payload_kind, payload, verification, remote_addr, replay_of, traceparent)
VALUES (:id, :source, :event_type, :dedupe_key, :status, :received_at, :method, :url, :headers, :query,
        :body, :payload_kind, :payload, :verification, :remote_addr, :replay_of, :traceparent);

-- name: busy_keys
-- :keys is a JSON list of distinct [task_id, concurrency_key]: those with an unfinished run already. EXISTS
-- stops at the first such run, however many wait on the key.
SELECT json_extract(k.value, '$[0]') AS task_id, json_extract(k.value, '$[1]') AS concurrency_key
FROM json_each(:keys) AS k
WHERE EXISTS (
    SELECT 1 FROM runs AS r
    WHERE r.task_id = json_extract(k.value, '$[0]') AND r.concurrency_key = json_extract(k.value, '$[1]')
      AND r.status IN ('queued', 'executing', 'retrying'));

-- name: insert_run
-- sort_key = available_at - priority: priority is seconds of queue-age advantage (Trigger.dev's meaning).
-- :blocked comes from runstore.insert_runs.
INSERT INTO runs (id, event_id, route_id, task_id, input, status, queue, priority, concurrency_key, options,
                  attempts, crashes, created_at, available_at, started_at, finished_at, output, error,
                  duration, idempotency_key, rerun_of, sort_key, blocked, traceparent, span_id)
VALUES (:id, :event_id, :route_id, :task_id, :input, :status, :queue, :priority, :concurrency_key, :options,
        :attempts, :crashes, :created_at, :created_at, :started_at, :finished_at, :output, :error,
        :duration, :idempotency_key, :rerun_of, :created_at - :priority, :blocked, :traceparent, :span_id);

-- name: insert_rejection
INSERT INTO rejections (source, reason, detail, received_at, remote_addr, body_prefix, body_size)
VALUES (:source, :reason, :detail, :received_at, :remote_addr, :body_prefix, :body_size);

-- name: set_meta
INSERT INTO meta (key, value) VALUES (:key, :value)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: get_event
SELECT id, source, event_type, dedupe_key, status, received_at, method, url, headers, query, body,
       payload_kind, payload, verification, remote_addr, replay_of, traceparent
FROM events
WHERE id = :id;

-- name: get_run
SELECT id, event_id, route_id, task_id, input, status, queue, priority, concurrency_key, options, attempts,
       crashes, created_at, started_at, finished_at, output, error, duration, idempotency_key, rerun_of, traceparent, span_id
FROM runs
WHERE id = :id;

-- name: runs_for_event
-- In the order they were recorded (route order), not newest first: they share one created_at.
SELECT id, event_id, route_id, task_id, input, status, queue, priority, concurrency_key, options, attempts,
       crashes, created_at, started_at, finished_at, output, error, duration, idempotency_key, rerun_of, traceparent, span_id
FROM runs
WHERE event_id = :event_id
ORDER BY created_at, rowid;

-- name: heartbeat_pragmas
PRAGMA busy_timeout = 5000;

-- name: claim_candidates
-- Ready runs in claim order, at most :limit of them; the caller's accept() picks from these. A blocked run
-- waits for the earlier unfinished run of its (task, concurrency key): one at a time, in arrival order. The
-- index holds no blocked run, so a long line on one key costs a claim nothing.
-- LEFT JOIN: a run without its event gets source '' and no headers.
SELECT r.id, r.event_id, r.route_id, r.task_id, r.input, r.status, r.queue, r.priority, r.concurrency_key,
       r.options, r.attempts, r.crashes, r.created_at, r.started_at, r.finished_at, r.output, r.error,
       r.duration, r.idempotency_key, r.rerun_of, r.traceparent, r.span_id,
       COALESCE(e.source, '') AS source, e.event_type AS event_type, COALESCE(e.headers, '[]') AS headers,
       (SELECT COALESCE(MAX(a.number), 0) + 1 FROM attempts AS a WHERE a.run_id = r.id) AS next_attempt
FROM runs AS r INDEXED BY runs_claim  -- walk in claim order and stop at LIMIT; never sort the backlog
LEFT JOIN events AS e ON e.id = r.event_id
WHERE r.status IN ('queued', 'retrying') AND r.blocked = 0
  AND r.available_at <= :now
  AND r.queue NOT IN (SELECT value FROM json_each(:skip_queues))
  AND r.task_id NOT IN (SELECT value FROM json_each(:skip_tasks))
ORDER BY r.sort_key, r.rowid
LIMIT :limit;

-- name: start_run
UPDATE runs SET status = 'executing', started_at = COALESCE(started_at, :now), lease_until = :lease_until
WHERE id = :id AND status IN ('queued', 'retrying');

-- name: insert_attempt
INSERT INTO attempts (run_id, number, started_at) VALUES (:run_id, :number, :now);

-- name: open_attempts
-- :keys is a JSON list of [run_id, number]: the attempts that are still open on a still-executing run.
SELECT a.run_id, a.number, a.started_at
FROM json_each(:keys) AS k
CROSS JOIN attempts AS a ON a.run_id = json_extract(k.value, '$[0]') AND a.number = json_extract(k.value, '$[1]')
CROSS JOIN runs AS r ON r.id = a.run_id
WHERE a.outcome IS NULL AND r.status = 'executing';

-- name: end_attempt
UPDATE attempts
SET finished_at = :finished_at, outcome = :outcome, error_type = :error_type, error_message = :error_message,
    traceback = :traceback, logs = :logs
WHERE run_id = :run_id AND number = :attempt AND outcome IS NULL;

-- name: end_run_attempt
-- A completed run drops the error of an earlier attempt; any other keeps the newest one it was given.
UPDATE runs
SET status = :status,
    duration = duration + :spent,
    attempts = attempts + :counts,
    available_at = COALESCE(:available_at, available_at),
    sort_key = COALESCE(:available_at - priority, sort_key),
    lease_until = NULL,
    output = :output,
    error = CASE WHEN :status = 'completed' THEN NULL ELSE COALESCE(:error, error) END,
    finished_at = :run_finished_at
WHERE id = :run_id AND status = 'executing';

-- name: executing_runs
-- Runs whose process died (their lease lapsed), or all of them when :only_expired is 0; minus :keep.
SELECT id, event_id, route_id, task_id, input, status, queue, priority, concurrency_key, options, attempts,
       crashes, created_at, started_at, finished_at, output, error, duration, idempotency_key, rerun_of, traceparent, span_id
FROM runs
WHERE status = 'executing'
  AND (NOT :only_expired OR lease_until IS NULL OR lease_until < :now)
  AND id NOT IN (SELECT value FROM json_each(:keep))
ORDER BY rowid;

-- name: crash_attempt
UPDATE attempts
SET outcome = 'crashed', finished_at = :now, error_type = 'Crashed', error_message = :message
WHERE run_id = :id AND outcome IS NULL;

-- name: recover_run
UPDATE runs
SET status = :status,
    crashes = :crashes,
    lease_until = NULL,
    available_at = COALESCE(:available_at, available_at),
    sort_key = COALESCE(:available_at - priority, sort_key),
    finished_at = :finished_at,
    error = COALESCE(:error, error)
WHERE id = :id AND status = 'executing';

-- name: run_statuses
SELECT id, status FROM runs WHERE id IN (SELECT value FROM json_each(:ids));

-- name: cancel_run
UPDATE runs SET status = 'canceled', finished_at = :now, lease_until = NULL
WHERE id = :id AND status IN ('queued', 'retrying');

-- name: unblock_next
-- :ids are runs that have just reached a final status. Each that was its key's head (not blocked) hands the
-- head on to the earliest blocked run of its (task, key): one index seek per finished run.
UPDATE runs SET blocked = 0
WHERE rowid IN (
    SELECT (SELECT n.rowid FROM runs AS n
            WHERE n.task_id = f.task_id AND n.concurrency_key = f.concurrency_key
              AND n.status IN ('queued', 'executing', 'retrying') AND n.blocked = 1
            ORDER BY n.rowid
            LIMIT 1)
    FROM runs AS f
    WHERE f.id IN (SELECT value FROM json_each(:ids)) AND f.concurrency_key IS NOT NULL AND f.blocked = 0);

-- name: runs_by_ids
SELECT id, event_id, route_id, task_id, input, status, queue, priority, concurrency_key, options, attempts,
       crashes, created_at, started_at, finished_at, output, error, duration, idempotency_key, rerun_of, traceparent, span_id
FROM runs
WHERE id IN (SELECT value FROM json_each(:ids));

-- name: renew_leases
-- From the heartbeat thread, on its own connection: keeps the leases of runs this process executes.
UPDATE runs SET lease_until = :lease_until
WHERE id IN (SELECT value FROM json_each(:ids)) AND status = 'executing';

-- name: next_available_at
SELECT MIN(available_at) FROM runs WHERE status IN ('queued', 'retrying') AND available_at > :after;

-- name: attempts_for_run
SELECT run_id, number, started_at, finished_at, outcome, error_type, error_message, traceback, logs
FROM attempts
WHERE run_id = :run_id
ORDER BY number;

-- name: schema_v4
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

-- name: schema_v5
-- Tracing (issue 6): the W3C traceparent of the span that recorded an event, and for a run the span it hangs
-- under plus its own span id (chosen at creation, so attempts made by any process are its children).
ALTER TABLE events ADD COLUMN traceparent TEXT;
ALTER TABLE runs ADD COLUMN traceparent TEXT;
ALTER TABLE runs ADD COLUMN span_id TEXT;

-- name: filter_events_newest
-- Listings, newest first, after the keyset cursor (:before_time, :before_id). Every filter is optional (NULL).
-- :source IS NULL picks the index without a source prefix; SQLite plans the OR once per statement.
SELECT id, source, event_type, dedupe_key, status, received_at, method, url, headers, query, body,
       payload_kind, payload, verification, remote_addr, replay_of, traceparent
FROM events AS e
WHERE (e.received_at, e.id) < (:before_time, :before_id)
  AND e.received_at >= :since AND e.received_at <= :until
  AND (:source IS NULL OR e.source = :source)
  AND (:event_type IS NULL OR e.event_type = :event_type)
  AND (:status IS NULL OR e.status = :status)
  AND ((:task IS NULL AND :run_status IS NULL) OR EXISTS (
        SELECT 1 FROM runs AS r WHERE r.event_id = e.id
          AND (:task IS NULL OR r.task_id = :task) AND (:run_status IS NULL OR r.status = :run_status)))
ORDER BY e.received_at DESC, e.id DESC
LIMIT :limit;

-- name: filter_events_oldest
-- Bulk replays walk oldest first, after the job's cursor (:after_time, :after_id), up to the job's start.
SELECT id, source, event_type, dedupe_key, status, received_at, method, url, headers, query, body,
       payload_kind, payload, verification, remote_addr, replay_of, traceparent
FROM events AS e
WHERE (e.received_at, e.id) > (:after_time, :after_id)
  AND e.received_at >= :since AND e.received_at <= :until
  AND (:source IS NULL OR e.source = :source)
  AND (:event_type IS NULL OR e.event_type = :event_type)
  AND (:status IS NULL OR e.status = :status)
  AND ((:task IS NULL AND :run_status IS NULL) OR EXISTS (
        SELECT 1 FROM runs AS r WHERE r.event_id = e.id
          AND (:task IS NULL OR r.task_id = :task) AND (:run_status IS NULL OR r.status = :run_status)))
ORDER BY e.received_at, e.id
LIMIT :limit;

-- name: count_events
SELECT count(*)
FROM events AS e
WHERE e.received_at >= :since AND e.received_at <= :until
  AND (:source IS NULL OR e.source = :source)
  AND (:event_type IS NULL OR e.event_type = :event_type)
  AND (:status IS NULL OR e.status = :status)
  AND ((:task IS NULL AND :run_status IS NULL) OR EXISTS (
        SELECT 1 FROM runs AS r WHERE r.event_id = e.id
          AND (:task IS NULL OR r.task_id = :task) AND (:run_status IS NULL OR r.status = :run_status)));

-- name: filter_runs_newest
-- The event is joined only to filter by source (a run without one has source '').
SELECT r.id, r.event_id, r.route_id, r.task_id, r.input, r.status, r.queue, r.priority, r.concurrency_key,
       r.options, r.attempts, r.crashes, r.created_at, r.started_at, r.finished_at, r.output, r.error,
       r.duration, r.idempotency_key, r.rerun_of, r.traceparent, r.span_id
FROM runs AS r
LEFT JOIN events AS e ON e.id = r.event_id
WHERE (r.created_at, r.id) < (:before_time, :before_id)
  AND r.created_at >= :since AND r.created_at <= :until
  AND (:status IS NULL OR r.status = :status)
  AND (:task IS NULL OR r.task_id = :task)
  AND (:event_id IS NULL OR r.event_id = :event_id)
  AND (:source IS NULL OR COALESCE(e.source, '') = :source)
ORDER BY r.created_at DESC, r.id DESC
LIMIT :limit;

-- name: filter_runs_oldest
SELECT r.id, r.event_id, r.route_id, r.task_id, r.input, r.status, r.queue, r.priority, r.concurrency_key,
       r.options, r.attempts, r.crashes, r.created_at, r.started_at, r.finished_at, r.output, r.error,
       r.duration, r.idempotency_key, r.rerun_of, r.traceparent, r.span_id
FROM runs AS r
LEFT JOIN events AS e ON e.id = r.event_id
WHERE (r.created_at, r.id) > (:after_time, :after_id)
  AND r.created_at >= :since AND r.created_at <= :until
  AND (:status IS NULL OR r.status = :status)
  AND (:task IS NULL OR r.task_id = :task)
  AND (:event_id IS NULL OR r.event_id = :event_id)
  AND (:source IS NULL OR COALESCE(e.source, '') = :source)
ORDER BY r.created_at, r.id
LIMIT :limit;

-- name: count_runs
SELECT count(*)
FROM runs AS r
LEFT JOIN events AS e ON e.id = r.event_id
WHERE r.created_at >= :since AND r.created_at <= :until
  AND (:status IS NULL OR r.status = :status)
  AND (:task IS NULL OR r.task_id = :task)
  AND (:event_id IS NULL OR r.event_id = :event_id)
  AND (:source IS NULL OR COALESCE(e.source, '') = :source);

-- name: list_rejections
-- Newest first, before the cursor :before_id (rejection ids grow).
SELECT id, source, reason, detail, received_at, remote_addr, body_prefix, body_size
FROM rejections
WHERE id < :before_id AND received_at >= :since AND received_at <= :until
  AND (:source IS NULL OR source = :source)
  AND (:reason IS NULL OR reason = :reason)
ORDER BY id DESC
LIMIT :limit;

-- name: runs_for_events
SELECT id, event_id, route_id, task_id, input, status, queue, priority, concurrency_key, options, attempts,
       crashes, created_at, started_at, finished_at, output, error, duration, idempotency_key, rerun_of, traceparent, span_id
FROM runs
WHERE event_id IN (SELECT value FROM json_each(:ids))
ORDER BY created_at, rowid;

-- name: replays_of_event
-- Oldest first in the order recorded: ids made in one millisecond do not sort by time.
SELECT id, received_at, status FROM events WHERE replay_of = :id ORDER BY received_at, rowid;

-- name: reruns_of_run
SELECT id, created_at, status FROM runs WHERE rerun_of = :id ORDER BY created_at, rowid;

-- name: event_counts
SELECT source, status, count(*) AS n FROM events WHERE received_at >= :since GROUP BY source, status;

-- name: run_counts
SELECT task_id, status, count(*) AS n FROM runs WHERE created_at >= :since GROUP BY task_id, status;

-- name: rejection_counts
SELECT source, reason, count(*) AS n FROM rejections WHERE received_at >= :since GROUP BY source, reason;

-- name: queue_depth
SELECT queue, count(*) AS n, MIN(available_at) AS oldest
FROM runs WHERE status IN ('queued', 'retrying') GROUP BY queue;

-- name: insert_job
INSERT INTO jobs (id, kind, filter, status, total, upto, owner, lease_until, created_at, updated_at,
                  requested_by)
VALUES (:id, :kind, :filter, 'running', :total, :upto, :owner, :lease_until, :created_at, :created_at,
        :requested_by);

-- name: get_job
SELECT id, kind, filter, status, total, done, created, upto, cursor_time, cursor_id, owner, lease_until,
       created_at, updated_at, finished_at, error, requested_by
FROM jobs WHERE id = :id;

-- name: list_jobs
SELECT id, kind, filter, status, total, done, created, upto, cursor_time, cursor_id, owner, lease_until,
       created_at, updated_at, finished_at, error, requested_by
FROM jobs
WHERE (created_at, id) < (:before_time, :before_id) AND (:status IS NULL OR status = :status)
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: take_job
-- A running job nobody holds (its owner's lease lapsed: that process died), or :id if it is free. :holder,
-- when given, takes :id from that holder at once (the caller saw that the holder's process is gone).
UPDATE jobs SET owner = :owner, lease_until = :lease_until, updated_at = :now
WHERE id = (SELECT id FROM jobs
            WHERE status = 'running'
              AND (lease_until IS NULL OR lease_until < :now OR (:holder IS NOT NULL AND owner = :holder))
              AND (:id IS NULL OR id = :id)
            ORDER BY created_at, id
            LIMIT 1)
RETURNING id, kind, filter, status, total, done, created, upto, cursor_time, cursor_id, owner, lease_until,
          created_at, updated_at, finished_at, error, requested_by;

-- name: advance_job
-- A chunk's progress, in the chunk's own transaction; changes nothing unless :owner still holds the job.
UPDATE jobs
SET done = done + :items, created = created + :runs, cursor_time = :cursor_time, cursor_id = :cursor_id,
    lease_until = :lease_until, updated_at = :now,
    status = CASE WHEN :finished THEN 'completed' ELSE status END,
    finished_at = CASE WHEN :finished THEN :now ELSE finished_at END,
    owner = CASE WHEN :finished THEN NULL ELSE owner END
WHERE id = :id AND owner = :owner AND status = 'running';

-- name: release_job
-- The owner stops without finishing (shutdown): anyone may take it at once.
UPDATE jobs SET owner = NULL, lease_until = NULL, updated_at = :now
WHERE id = :id AND owner = :owner AND status = 'running';

-- name: end_job
-- Cancel (anyone) or fail (its owner) a running job.
UPDATE jobs SET status = :status, error = :error, finished_at = :now, updated_at = :now, owner = NULL,
                lease_until = NULL
WHERE id = :id AND status = 'running' AND (:owner IS NULL OR owner = :owner);

-- name: prune_candidates
-- Up to :limit events of one retention class received before :cutoff, oldest first, none with a run still
-- to finish. :sources is a JSON list; :inside 1 takes events of those sources, 0 events of every other one.
SELECT e.id
FROM events AS e
WHERE e.received_at < :cutoff
  AND ((:inside AND e.source IN (SELECT value FROM json_each(:sources)))
       OR (NOT :inside AND e.source NOT IN (SELECT value FROM json_each(:sources))))
  AND NOT EXISTS (SELECT 1 FROM runs AS r WHERE r.event_id = e.id
                  AND r.status IN ('queued', 'executing', 'retrying'))
ORDER BY e.received_at
LIMIT :limit;

-- name: prune_attempts
DELETE FROM attempts
WHERE run_id IN (SELECT id FROM runs WHERE event_id IN (SELECT value FROM json_each(:ids)));

-- name: prune_runs
DELETE FROM runs WHERE event_id IN (SELECT value FROM json_each(:ids));

-- name: prune_events
DELETE FROM events WHERE id IN (SELECT value FROM json_each(:ids));

-- name: prune_rejections
DELETE FROM rejections
WHERE id IN (SELECT id FROM rejections
             WHERE received_at < :cutoff
               AND ((:inside AND source IN (SELECT value FROM json_each(:sources)))
                    OR (NOT :inside AND source NOT IN (SELECT value FROM json_each(:sources))))
             ORDER BY id
             LIMIT :limit);

-- name: prune_jobs
DELETE FROM jobs WHERE status != 'running' AND finished_at < :cutoff;

-- name: count_prunable_jobs
SELECT count(*) FROM jobs WHERE status != 'running' AND finished_at < :cutoff;

-- name: count_prunable
-- For `gateway prune --dry-run`: the events, runs and attempts a prune of one retention class would remove.
WITH doomed AS (
    SELECT e.id FROM events AS e
    WHERE e.received_at < :cutoff
      AND ((:inside AND e.source IN (SELECT value FROM json_each(:sources)))
           OR (NOT :inside AND e.source NOT IN (SELECT value FROM json_each(:sources))))
      AND NOT EXISTS (SELECT 1 FROM runs AS r WHERE r.event_id = e.id
                      AND r.status IN ('queued', 'executing', 'retrying')))
SELECT (SELECT count(*) FROM doomed) AS events,
       (SELECT count(*) FROM runs WHERE event_id IN doomed) AS runs,
       (SELECT count(*) FROM attempts WHERE run_id IN (SELECT id FROM runs WHERE event_id IN doomed))
           AS attempts,
       (SELECT count(*) FROM rejections
        WHERE received_at < :cutoff
          AND ((:inside AND source IN (SELECT value FROM json_each(:sources)))
               OR (NOT :inside AND source NOT IN (SELECT value FROM json_each(:sources))))) AS rejections;
