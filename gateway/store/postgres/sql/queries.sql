-- Every statement the PostgreSQL store runs, under the same names, parameters and result columns as SQLite's
-- (gateway/store/sqlite/sql/queries.sql), so the same ops (gateway/store/ops/) run on both. Loaded once by
-- gateway/store/postgres/sql.py, which turns each :name into a bound parameter. JSON lists of ids arrive as
-- text; flags as 0/1 or booleans (CAST(:x AS integer) <> 0 takes either); a parameter that may be NULL is cast
-- to its type, since PostgreSQL cannot guess the type of a bare NULL. seq orders what SQLite's rowid orders.

-- fragment: event_columns
e.id, e.source, e.event_type, COALESCE(e.dedupe_key, e.retired_key) AS dedupe_key, e.status, e.received_at,
e.method, e.url, e.headers, e.query, e.body, e.payload_kind, e.payload, e.verification, e.remote_addr,
e.replay_of, e.traceparent

-- fragment: run_columns
r.id, r.event_id, r.route_id, r.task_id, r.input, r.status, r.queue, r.priority, r.concurrency_key,
r.options, r.attempts, r.crashes, r.created_at, r.started_at, r.finished_at, r.output, r.error,
r.duration, r.idempotency_key, r.rerun_of, r.traceparent, r.span_id, r.worker_id

-- fragment: rejection_columns
id, source, reason, detail, received_at, remote_addr, body_prefix, body_size, kept_bytes, dropped, dropped_at,
recovered_as, recovery, recovered_at

-- fragment: job_columns
id, kind, filter, status, total, done, created, upto, cursor_time, cursor_id, owner, lease_until,
created_at, updated_at, finished_at, error, requested_by

-- fragment: event_filter
e.received_at >= :since AND e.received_at <= :until
  AND (CAST(:source AS text) IS NULL OR e.source = :source)
  AND (CAST(:event_type AS text) IS NULL OR e.event_type = :event_type)
  AND (CAST(:status AS text) IS NULL OR e.status = :status)
  AND (CAST(:include_replays AS integer) <> 0 OR e.replay_of IS NULL)
  AND ((CAST(:task AS text) IS NULL AND CAST(:run_status AS text) IS NULL) OR EXISTS (
        SELECT 1 FROM runs AS r WHERE r.event_id = e.id
          AND (CAST(:task AS text) IS NULL OR r.task_id = :task)
          AND (CAST(:run_status AS text) IS NULL OR r.status = :run_status)))

-- fragment: text_hits
SELECT CAST(:text AS text)
UNION SELECT id FROM events
      WHERE dedupe_hash = gateway_key_hash(CAST(:text AS text)) AND dedupe_key = :text
UNION SELECT id FROM events
      WHERE gateway_key_hash(retired_key) = gateway_key_hash(CAST(:text AS text)) AND retired_key = :text
        AND dedupe_key IS NULL
UNION SELECT event_id FROM runs WHERE id = :text

-- fragment: run_filter
r.created_at >= :since AND r.created_at <= :until
  AND (CAST(:status AS text) IS NULL OR r.status = :status)
  AND (CAST(:task AS text) IS NULL OR r.task_id = :task)
  AND (CAST(:event_id AS text) IS NULL OR r.event_id = :event_id)
  AND (CAST(:source AS text) IS NULL OR COALESCE(e.source, '') = :source)

-- fragment: event_class
((CAST(:inside AS integer) <> 0 AND e.source IN (SELECT jsonb_array_elements_text(CAST(:sources AS jsonb))))
 OR (CAST(:inside AS integer) = 0
     AND e.source NOT IN (SELECT jsonb_array_elements_text(CAST(:sources AS jsonb)))))

-- fragment: rejection_class
((CAST(:inside AS integer) <> 0 AND source IN (SELECT jsonb_array_elements_text(CAST(:sources AS jsonb))))
 OR (CAST(:inside AS integer) = 0
     AND source NOT IN (SELECT jsonb_array_elements_text(CAST(:sources AS jsonb)))))


-- == Connections ==============================================================================================

-- name: writer_setup
-- Per write connection. synchronous_commit on: a commit returns once it is durable (flushed to the WAL), and
-- only then does the gateway answer 2xx. The scratch tables hold a batch's keys while it looks them up, bound
-- as values; they live on this connection only, emptied by each batch.
SET synchronous_commit = on;
CREATE TEMP TABLE IF NOT EXISTS batch_dedupe_keys (source text NOT NULL, dedupe_key text NOT NULL);
CREATE TEMP TABLE IF NOT EXISTS batch_concurrency_keys (task_id text NOT NULL, concurrency_key text NOT NULL);

-- name: reader_setup
-- Per read connection: it never writes.
SET default_transaction_read_only = on;

-- name: heartbeat_setup
-- The heartbeat thread's own connection.
SET synchronous_commit = on;

-- name: clock
-- The database server's clock, in seconds since the epoch: every process judges leases by this one.
SELECT CAST(extract(epoch FROM clock_timestamp()) AS double precision) AS now;

-- name: lock
-- Hold the advisory locks :keys (64-bit hashes of lock names, sorted: every writer takes them in one order)
-- until the transaction ends, in one round trip; unnest yields them in the array's order.
SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k;


-- name: notify_runs
-- Inside a transaction that commits new runs: every process listening hears of them once it commits (NOTIFY
-- is delivered at COMMIT, never for a transaction rolled back). :payload names the store that sent it.
SELECT pg_notify('gateway_runs', :payload);

-- name: listen_runs
-- On a listening connection of its own.
LISTEN gateway_runs;


-- == Schema ==================================================================================================

-- name: migrate_lock
-- Held while a process looks at and applies migrations: ten gateways starting at once migrate once.
SELECT pg_advisory_xact_lock(7421773906519631401);

-- name: create_migrations
-- Which migrations the database has had, one row each.
CREATE TABLE IF NOT EXISTS gateway_migrations (
    number     integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at double precision NOT NULL
);

-- name: applied_migrations
-- The migrations applied, in order (none: an empty database, or one the gateway never used).
SELECT number, name FROM gateway_migrations ORDER BY number;

-- name: note_migration
-- One migration applied, in its own transaction.
INSERT INTO gateway_migrations (number, name, applied_at)
VALUES (:number, :name, CAST(extract(epoch FROM clock_timestamp()) AS double precision));

-- name: has_migrations_table
-- Whether the gateway's migration table exists (migrate --check reads without creating it).
SELECT to_regclass('gateway_migrations') IS NOT NULL AS present;


-- == Intake: events, their runs, rejections ==================================================================

-- name: clear_dedupe_keys
-- Empties the scratch table of a batch's dedupe keys, before they are noted.
DELETE FROM batch_dedupe_keys;

-- name: note_dedupe_key
-- One (source, dedupe key) a batch looks up, bound as it will be stored.
INSERT INTO batch_dedupe_keys (source, dedupe_key) VALUES (:source, :dedupe_key);

-- name: find_dedupe_keys
-- The stored events the noted dedupe keys already name, and when each was received.
SELECT e.source, e.dedupe_key, e.id, e.received_at
FROM batch_dedupe_keys AS k
JOIN events AS e ON e.source = k.source AND e.dedupe_hash = gateway_key_hash(k.dedupe_key)
                 AND e.dedupe_key = k.dedupe_key;

-- name: retire_dedupe_keys
-- The events :ids give up their keys, past their dedupe window, to newer events of this batch.
UPDATE events SET retired_key = dedupe_key, dedupe_key = NULL
WHERE id IN (SELECT jsonb_array_elements_text(CAST(:ids AS jsonb))) AND dedupe_key IS NOT NULL;

-- name: insert_event
-- One event row. A dedupe key the UNIQUE index holds already (committed by another gateway meanwhile, too)
-- inserts nothing: the intake answers it as a duplicate of the event holding the key.
INSERT INTO events (id, source, event_type, dedupe_key, status, received_at, method, url, headers, query,
                    body, payload_kind, payload, verification, remote_addr, replay_of, traceparent)
VALUES (:id, :source, :event_type, :dedupe_key, :status, :received_at, :method, :url, :headers, :query,
        :body, :payload_kind, :payload, :verification, :remote_addr, :replay_of, :traceparent)
ON CONFLICT (source, dedupe_hash) DO NOTHING;

-- name: stored_event_ids
-- Which of the event ids :ids are on disk: after an insert_event batch that inserted fewer rows than given.
SELECT id FROM events WHERE id IN (SELECT jsonb_array_elements_text(CAST(:ids AS jsonb)));

-- name: dedupe_key_holder
-- The event holding one dedupe key in the UNIQUE index.
SELECT id FROM events
WHERE source = :source AND dedupe_hash = gateway_key_hash(:dedupe_key) AND dedupe_key = :dedupe_key;

-- name: clear_concurrency_keys
-- Empties the scratch table of a batch's (task, concurrency key) pairs.
DELETE FROM batch_concurrency_keys;

-- name: note_concurrency_key
-- One distinct (task, concurrency key) of a batch's new runs.
INSERT INTO batch_concurrency_keys (task_id, concurrency_key) VALUES (:task_id, :concurrency_key);

-- name: busy_keys
-- Which of the noted pairs have an unfinished run already (the batch holds their locks): new runs on them wait.
SELECT k.task_id, k.concurrency_key
FROM batch_concurrency_keys AS k
WHERE EXISTS (
    SELECT 1 FROM runs AS r
    WHERE r.task_id = k.task_id AND r.key_hash = gateway_key_hash(k.concurrency_key)
      AND r.concurrency_key = k.concurrency_key AND r.status IN ('queued', 'executing', 'retrying'));

-- name: insert_run
-- One run row; sort_key = available_at - priority.
INSERT INTO runs (id, event_id, route_id, task_id, input, status, queue, priority, concurrency_key, options,
                  attempts, crashes, created_at, available_at, started_at, finished_at, output, error,
                  duration, idempotency_key, rerun_of, sort_key, blocked, traceparent, span_id)
VALUES (:id, :event_id, :route_id, :task_id, :input, :status, :queue, :priority, :concurrency_key, :options,
        :attempts, :crashes, :created_at, :created_at, :started_at, :finished_at, :output, :error,
        :duration, :idempotency_key, :rerun_of,
        CAST(:created_at AS double precision) - CAST(:priority AS double precision), :blocked, :traceparent,
        :span_id);

-- name: insert_rejection
-- A refused delivery (the trigger adds a kept request to its source's rejection_space).
INSERT INTO rejections (source, reason, detail, received_at, remote_addr, body_prefix, body_size, method, url,
                        headers, query, body, kept_bytes, dropped, dropped_at)
VALUES (:source, :reason, :detail, :received_at, :remote_addr, :body_prefix, :body_size, :method, :url,
        :headers, :query, :body, :kept_bytes, :dropped, :dropped_at);

-- name: rejection_space
-- The bytes of requests a source keeps, and this hour's turnover.
SELECT kept_bytes, window_start, dropped FROM rejection_space WHERE source = :source;

-- name: kept_oldest
-- A source's kept requests, oldest first, after :after.
SELECT id, kept_bytes FROM rejections
WHERE source = :source AND kept_bytes > 0 AND id > :after
ORDER BY id
LIMIT :limit;

-- name: kept_newest
-- A source's kept requests, newest first, before :before.
SELECT id, kept_bytes FROM rejections
WHERE source = :source AND kept_bytes > 0 AND id < :before
ORDER BY id DESC
LIMIT :limit;

-- name: drop_requests
-- The kept requests :ids are dropped; each row stays, saying why (:why) and when.
UPDATE rejections
SET method = NULL, url = NULL, headers = NULL, query = NULL, body = NULL, kept_bytes = 0, dropped = :why,
    dropped_at = :now
WHERE id IN (SELECT CAST(jsonb_array_elements_text(CAST(:ids AS jsonb)) AS bigint)) AND kept_bytes > 0;

-- name: turn_over
-- A source's turnover window after a batch dropped older requests to make room.
UPDATE rejection_space SET window_start = :window_start, dropped = :dropped WHERE source = :source;

-- name: recovered_rejections
-- Of the rejections :ids, those recovered already, with the event each became.
SELECT id, recovered_as FROM rejections
WHERE id IN (SELECT CAST(jsonb_array_elements_text(CAST(:ids AS jsonb)) AS bigint))
  AND recovered_as IS NOT NULL;

-- name: mark_recovered
-- A rejection verified again and stored (or found a duplicate of :event_id): its space is freed.
UPDATE rejections
SET recovered_as = :event_id, recovery = :recovery, recovered_at = :now, method = NULL, url = NULL,
    headers = NULL, query = NULL, body = NULL, kept_bytes = 0
WHERE id = :id AND recovered_as IS NULL;

-- name: set_meta
-- A key of the meta table (the readiness probe writes last_probe).
INSERT INTO meta (key, value) VALUES (:key, CAST(:value AS text))
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;


-- == The executor: claim, attempts, recovery, cancel =========================================================

-- name: claim_candidates
-- Ready runs in claim order, at most :limit. The claim holds the claims lock (one claim counts and takes at a
-- time, across every process); SKIP LOCKED passes runs another transaction is changing (a cancel, an end).
SELECT {run_columns},
       COALESCE(e.source, '') AS source, e.event_type AS event_type, COALESCE(e.headers, '[]') AS headers,
       (SELECT COALESCE(MAX(a.number), 0) + 1 FROM attempts AS a WHERE a.run_id = r.id) AS next_attempt
FROM runs AS r
LEFT JOIN events AS e ON e.id = r.event_id
WHERE r.status IN ('queued', 'retrying') AND r.blocked = 0
  AND r.available_at <= :now
  AND r.queue NOT IN (SELECT jsonb_array_elements_text(CAST(:skip_queues AS jsonb)))
  AND r.task_id NOT IN (SELECT jsonb_array_elements_text(CAST(:skip_tasks AS jsonb)))
  AND (CAST(:tasks AS text) IS NULL OR r.task_id IN (SELECT jsonb_array_elements_text(CAST(:tasks AS jsonb))))
  AND (CAST(:queues AS text) IS NULL
       OR r.queue IN (SELECT jsonb_array_elements_text(CAST(:queues AS jsonb))))
ORDER BY r.sort_key, r.seq
LIMIT :limit
FOR UPDATE OF r SKIP LOCKED;

-- name: executing_counts
-- What every process runs now, by queue and task (counted under the claims lock).
SELECT queue, task_id, COUNT(*) AS n FROM runs WHERE status = 'executing' GROUP BY queue, task_id;

-- name: start_run
-- A claimed run is executing, leased to worker :worker until :lease_until.
UPDATE runs
SET status = 'executing', started_at = COALESCE(started_at, :now), lease_until = :lease_until, worker_id = :worker
WHERE id = :id AND status IN ('queued', 'retrying');

-- name: insert_attempt
-- The attempt a claim starts.
INSERT INTO attempts (run_id, number, started_at, worker_id) VALUES (:run_id, :number, :now, :worker);

-- name: open_attempts
-- The attempts still open on a still-executing run, of those named: :keys is a JSON list of [run_id, number].
-- Written as lookups: one primary-key probe per key in attempts, and the run's status by a scalar subquery
-- (which the planner cannot turn into a join). As a plain join, guessing 100 keys, it hashed every executing
-- run at every attempt's end: 186 pages read for one end with 10,000 runs executing, against 8 so.
SELECT a.run_id, a.number, a.started_at
FROM jsonb_array_elements(CAST(:keys AS jsonb)) AS k(value)
JOIN attempts AS a ON a.run_id = k.value ->> 0 AND a.number = CAST(k.value ->> 1 AS integer)
WHERE a.outcome IS NULL
  AND (SELECT r.status FROM runs AS r WHERE r.id = a.run_id) = 'executing';

-- name: end_attempt
-- How an attempt ended: its outcome, error, traceback and logs.
UPDATE attempts
SET finished_at = :finished_at, outcome = :outcome, error_type = :error_type, error_message = :error_message,
    traceback = :traceback, logs = :logs
WHERE run_id = :run_id AND number = :attempt AND outcome IS NULL;

-- name: end_run_attempt
-- The run after an attempt: its next status and when it may start again.
UPDATE runs
SET status = :status,
    duration = duration + :spent,
    attempts = attempts + :counts,
    available_at = COALESCE(CAST(:available_at AS double precision), available_at),
    sort_key = COALESCE(CAST(:available_at AS double precision) - priority, sort_key),
    lease_until = NULL,
    output = :output,
    error = CASE WHEN CAST(:status AS text) = 'completed' THEN NULL ELSE COALESCE(CAST(:error AS text), error) END,
    finished_at = :run_finished_at
WHERE id = :run_id AND status = 'executing';

-- name: executing_runs
-- Runs whose process died: their lease lapsed, or their worker is one of :dead; all of them when
-- :only_expired is 0; minus :keep. With the name and place of the worker that held each.
SELECT {run_columns}, w.kind AS worker_kind, w.host AS worker_host, w.pid AS worker_pid
FROM runs AS r
LEFT JOIN workers AS w ON w.id = r.worker_id
WHERE r.status = 'executing'
  AND (CAST(:only_expired AS integer) = 0 OR r.lease_until IS NULL OR r.lease_until < :now
       OR r.worker_id IN (SELECT jsonb_array_elements_text(CAST(:dead AS jsonb))))
  AND r.id NOT IN (SELECT jsonb_array_elements_text(CAST(:keep AS jsonb)))
ORDER BY r.seq
FOR UPDATE OF r;

-- name: crash_attempt
-- The open attempt of a run whose process died ends as crashed.
UPDATE attempts
SET outcome = 'crashed', finished_at = :now, error_type = 'Crashed', error_message = :message
WHERE run_id = :id AND outcome IS NULL;

-- name: recover_run
-- A crashed run is queued again (without using a retry), or ends crashed after too many crashes.
UPDATE runs
SET status = :status,
    crashes = :crashes,
    lease_until = NULL,
    available_at = COALESCE(CAST(:available_at AS double precision), available_at),
    sort_key = COALESCE(CAST(:available_at AS double precision) - priority, sort_key),
    finished_at = :finished_at,
    error = COALESCE(CAST(:error AS text), error)
WHERE id = :id AND status = 'executing';

-- name: run_statuses
-- The status of each run named: what a batch of cancels checks first.
SELECT id, status FROM runs WHERE id IN (SELECT jsonb_array_elements_text(CAST(:ids AS jsonb)));

-- name: cancel_run
-- A queued or retrying run is canceled; a run in any other status is left as it is.
UPDATE runs SET status = 'canceled', finished_at = :now, lease_until = NULL
WHERE id = :id AND status IN ('queued', 'retrying');

-- name: keys_of_runs
-- The (task, concurrency key) of the runs :ids that have one: locked before a key is handed on.
SELECT DISTINCT task_id, concurrency_key FROM runs
WHERE id IN (SELECT jsonb_array_elements_text(CAST(:ids AS jsonb))) AND concurrency_key IS NOT NULL;

-- name: unblock_next
-- Per-key order: each of :ids that was its key's head hands the head on to the earliest blocked run of its key.
UPDATE runs SET blocked = 0
WHERE seq IN (
    SELECT (SELECT n.seq FROM runs AS n
            WHERE n.task_id = f.task_id AND n.key_hash = f.key_hash AND n.concurrency_key = f.concurrency_key
              AND n.status IN ('queued', 'executing', 'retrying') AND n.blocked = 1
            ORDER BY n.seq
            LIMIT 1)
    FROM runs AS f
    WHERE f.id IN (SELECT jsonb_array_elements_text(CAST(:ids AS jsonb))) AND f.concurrency_key IS NOT NULL
      AND f.blocked = 0);

-- name: runs_by_ids
-- The runs named, as they are now (what a cancel returns).
SELECT {run_columns}
FROM runs AS r
WHERE r.id IN (SELECT jsonb_array_elements_text(CAST(:ids AS jsonb)));

-- name: renew_leases
-- From the heartbeat thread: keeps the leases of runs this worker executes.
UPDATE runs SET lease_until = :lease_until
WHERE id IN (SELECT jsonb_array_elements_text(CAST(:ids AS jsonb))) AND status = 'executing'
  AND worker_id IS NOT DISTINCT FROM CAST(:worker AS text);

-- name: beat_worker
-- The worker's own heartbeat, in the same transaction as its leases.
UPDATE workers SET heartbeat_at = :now WHERE id = :worker AND stopped_at IS NULL;

-- name: keep_logs
-- From the heartbeat thread: the log lines a still-open attempt has written so far.
UPDATE attempts SET logs = :logs
WHERE run_id = :run_id AND number = :attempt AND outcome IS NULL;

-- name: register_worker
-- A process that runs tasks, as it starts.
INSERT INTO workers (id, kind, host, pid, process, tasks, queues, concurrency, version, started_at, heartbeat_at)
VALUES (:id, :kind, :host, :pid, :process, :tasks, :queues, :concurrency, :version, :now, :now);

-- name: forget_workers
-- Workers stopped or silent since before :before, holding no run.
DELETE FROM workers
WHERE COALESCE(stopped_at, heartbeat_at) < :before
  AND NOT EXISTS (SELECT 1 FROM runs AS r WHERE r.status = 'executing' AND r.worker_id = workers.id);

-- name: stop_worker
-- A clean stop: it holds no run any more.
UPDATE workers SET stopped_at = :now, heartbeat_at = :now WHERE id = :id;

-- name: list_workers
-- Every registered worker, newest first, with how many runs it holds now.
SELECT w.id, w.kind, w.host, w.pid, w.process, w.tasks, w.queues, w.concurrency, w.version, w.started_at,
       w.heartbeat_at, w.stopped_at,
       (SELECT COUNT(*) FROM runs AS r WHERE r.status = 'executing' AND r.worker_id = w.id) AS running
FROM workers AS w
ORDER BY w.started_at DESC, w.id;

-- name: waiting_by_task
-- The runs waiting to start, by task and queue.
SELECT task_id, queue, COUNT(*) AS waiting, MIN(created_at) AS oldest
FROM runs
WHERE status IN ('queued', 'retrying')
GROUP BY task_id, queue
ORDER BY task_id, queue;

-- name: next_available_at
-- When the next waiting run becomes ready, after :after.
SELECT MIN(available_at) FROM runs WHERE status IN ('queued', 'retrying') AND available_at > :after;


-- == Reads for people ========================================================================================

-- name: get_event
-- One event by id.
SELECT {event_columns}
FROM events AS e
WHERE e.id = :id;

-- name: get_run
-- One run by id.
SELECT {run_columns}
FROM runs AS r
WHERE r.id = :id;

-- name: runs_for_event
-- An event's runs in the order they were recorded.
SELECT {run_columns}
FROM runs AS r
WHERE r.event_id = :event_id
ORDER BY r.created_at, r.seq;

-- name: runs_for_events
-- The runs of several events, each event's in recorded order.
SELECT {run_columns}
FROM runs AS r
WHERE r.event_id IN (SELECT jsonb_array_elements_text(CAST(:ids AS jsonb)))
ORDER BY r.created_at, r.seq;

-- name: attempts_for_run
-- A run's attempts, first to last.
SELECT run_id, number, started_at, finished_at, outcome, error_type, error_message, traceback, logs, worker_id
FROM attempts
WHERE run_id = :run_id
ORDER BY number;

-- name: filter_events_newest
-- Listings, newest first, after the keyset cursor (:before_time, :before_id).
SELECT {event_columns}
FROM events AS e
WHERE (e.received_at, e.id) < (CAST(:before_time AS double precision), CAST(:before_id AS text))
  AND {event_filter}
ORDER BY e.received_at DESC, e.id DESC
LIMIT :limit;

-- name: filter_events_oldest
-- Bulk replays walk oldest first, after the job's cursor, up to the job's start.
SELECT {event_columns}
FROM events AS e
WHERE (e.received_at, e.id) > (CAST(:after_time AS double precision), CAST(:after_id AS text))
  AND {event_filter}
ORDER BY e.received_at, e.id
LIMIT :limit;

-- name: count_events
-- How many events a filter selects.
SELECT count(*)
FROM events AS e
WHERE {event_filter};

-- name: search_events_newest
-- filter_events_newest for EventFilter.text: only the events :text names exactly, by id, by the dedupe key
-- they show, or by a run's id. Each arm of the text_hits fragment is one index seek (the primary keys,
-- migration 0002's key-hash indexes), so a search costs its few hits, not a walk of the events in the window.
SELECT {event_columns}
FROM events AS e
WHERE e.id IN ({text_hits})
  AND (e.received_at, e.id) < (CAST(:before_time AS double precision), CAST(:before_id AS text))
  AND {event_filter}
ORDER BY e.received_at DESC, e.id DESC
LIMIT :limit;

-- name: search_events_oldest
-- filter_events_oldest for EventFilter.text (a bulk replay of what a search found).
SELECT {event_columns}
FROM events AS e
WHERE e.id IN ({text_hits})
  AND (e.received_at, e.id) > (CAST(:after_time AS double precision), CAST(:after_id AS text))
  AND {event_filter}
ORDER BY e.received_at, e.id
LIMIT :limit;

-- name: count_search_events
-- count_events for EventFilter.text.
SELECT count(*)
FROM events AS e
WHERE e.id IN ({text_hits})
  AND {event_filter};

-- name: filter_runs_newest
-- Run listings, newest first, after the keyset cursor.
SELECT {run_columns}
FROM runs AS r
LEFT JOIN events AS e ON e.id = r.event_id
WHERE (r.created_at, r.id) < (CAST(:before_time AS double precision), CAST(:before_id AS text))
  AND {run_filter}
ORDER BY r.created_at DESC, r.id DESC
LIMIT :limit;

-- name: filter_runs_oldest
-- Bulk reruns walk oldest first, after the job's cursor, up to the job's start.
SELECT {run_columns}
FROM runs AS r
LEFT JOIN events AS e ON e.id = r.event_id
WHERE (r.created_at, r.id) > (CAST(:after_time AS double precision), CAST(:after_id AS text))
  AND {run_filter}
ORDER BY r.created_at, r.id
LIMIT :limit;

-- name: count_runs
-- How many runs a filter selects.
SELECT count(*)
FROM runs AS r
LEFT JOIN events AS e ON e.id = r.event_id
WHERE {run_filter};

-- name: list_rejections
-- Refused deliveries, newest first, before the cursor :before_id; not their kept requests.
SELECT {rejection_columns}
FROM rejections
WHERE id < CAST(:before_id AS double precision) AND received_at >= :since AND received_at <= :until
  AND (CAST(:source AS text) IS NULL OR source = :source)
  AND (CAST(:reason AS text) IS NULL OR reason = :reason)
ORDER BY id DESC
LIMIT :limit;

-- name: get_rejection
-- One rejection with its kept request, if it has one.
SELECT {rejection_columns}, method, url, headers, query, body
FROM rejections
WHERE id = :id;

-- name: kept_rejections
-- Rejections that still hold their request, oldest first after :after.
SELECT {rejection_columns}, method, url, headers, query, body
FROM rejections
WHERE kept_bytes > 0 AND id > :after AND received_at >= :since AND received_at <= :until
  AND (CAST(:source AS text) IS NULL OR source = :source)
ORDER BY id
LIMIT :limit;

-- name: replays_of_event
-- The events replaying one, oldest first in the order recorded.
SELECT id, received_at, status FROM events WHERE replay_of = :id ORDER BY received_at, seq;

-- name: reruns_of_run
-- The runs rerunning one, oldest first in the order recorded.
SELECT id, created_at, status FROM runs WHERE rerun_of = :id ORDER BY created_at, seq;

-- name: event_counts
-- Events by source and status since :since.
SELECT source, status, count(*) AS n FROM events WHERE received_at >= :since GROUP BY source, status;

-- name: run_counts
-- Runs by task and status since :since.
SELECT task_id, status, count(*) AS n FROM runs WHERE created_at >= :since GROUP BY task_id, status;

-- name: run_status_windows
-- Runs by status created since :since, and how many of them since :recent (a later time): the dashboard's
-- day and hour in one walk of the day's runs.
SELECT status, count(*) AS n, count(*) FILTER (WHERE created_at >= :recent) AS recent FROM runs WHERE created_at >= :since GROUP BY status;

-- name: rejection_counts
-- Rejections by source and reason since :since.
SELECT source, reason, count(*) AS n FROM rejections WHERE received_at >= :since GROUP BY source, reason;

-- name: deliveries_per_minute
-- Deliveries from :since to :until by minute (its start, a multiple of 60), source and outcome: original events
-- (no replays, no @api triggers) as routed or unrouted, and rejections. Each side seeks its received_at index.
SELECT floor(received_at / 60) * 60 AS minute, source, status AS outcome, count(*) AS n
FROM events
WHERE received_at >= :since AND received_at <= :until AND replay_of IS NULL AND source <> '@api'
GROUP BY 1, 2, 3
UNION ALL
SELECT floor(received_at / 60) * 60 AS minute, source, 'rejected' AS outcome, count(*) AS n
FROM rejections
WHERE received_at >= :since AND received_at <= :until
GROUP BY 1, 2
ORDER BY minute, source, outcome;

-- name: task_durations
-- The executing seconds of each task's :per_task most recently finished runs among those created since
-- :since (:statuses, a JSON list, are the finished statuses), by task, shortest first.
SELECT task_id, duration
FROM (SELECT task_id, duration,
             ROW_NUMBER() OVER (PARTITION BY task_id ORDER BY finished_at DESC, id DESC) AS k
      FROM runs
      WHERE created_at >= :since AND finished_at IS NOT NULL
        AND status IN (SELECT jsonb_array_elements_text(CAST(:statuses AS jsonb)))) AS t
WHERE k <= :per_task
ORDER BY task_id, duration;

-- name: queue_depth
-- Waiting runs per queue and when the longest-waiting one became ready.
SELECT queue, count(*) AS n, MIN(available_at) AS oldest
FROM runs WHERE status IN ('queued', 'retrying') GROUP BY queue;


-- == Bulk jobs ===============================================================================================

-- name: insert_job
-- A new running job, held by :owner or by nobody.
INSERT INTO jobs (id, kind, filter, status, total, upto, owner, lease_until, created_at, updated_at,
                  requested_by)
VALUES (:id, :kind, :filter, 'running', :total, :upto, :owner, :lease_until, :created_at, :created_at,
        :requested_by);

-- name: get_job
-- One job by id.
SELECT {job_columns}
FROM jobs WHERE id = :id;

-- name: list_jobs
-- Jobs, newest first, after the keyset cursor.
SELECT {job_columns}
FROM jobs
WHERE (created_at, id) < (CAST(:before_time AS double precision), CAST(:before_id AS text))
  AND (CAST(:status AS text) IS NULL OR status = :status)
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: take_job
-- A running job nobody holds, or :id if it is free; :holder, when given, takes :id from that holder at once.
UPDATE jobs SET owner = :owner, lease_until = :lease_until, updated_at = :now
WHERE id = (SELECT id FROM jobs
            WHERE status = 'running'
              AND (lease_until IS NULL OR lease_until < :now
                   OR (CAST(:holder AS text) IS NOT NULL AND owner = :holder))
              AND (CAST(:id AS text) IS NULL OR id = :id)
            ORDER BY created_at, id
            LIMIT 1
            FOR UPDATE SKIP LOCKED)
RETURNING {job_columns};

-- name: advance_job
-- A chunk's progress, in the chunk's own transaction; changes nothing unless :owner still holds the job.
UPDATE jobs
SET done = done + :items, created = created + :runs, cursor_time = :cursor_time, cursor_id = :cursor_id,
    lease_until = :lease_until, updated_at = :now,
    status = CASE WHEN CAST(:finished AS integer) <> 0 THEN 'completed' ELSE status END,
    finished_at = CASE WHEN CAST(:finished AS integer) <> 0 THEN :now ELSE finished_at END,
    owner = CASE WHEN CAST(:finished AS integer) <> 0 THEN NULL ELSE owner END
WHERE id = :id AND owner = :owner AND status = 'running';

-- name: release_job
-- The owner stops without finishing (shutdown): anyone may take it at once.
UPDATE jobs SET owner = NULL, lease_until = NULL, updated_at = :now
WHERE id = :id AND owner = :owner AND status = 'running';

-- name: end_job
-- Cancel (anyone) or fail (its owner) a running job.
UPDATE jobs SET status = :status, error = :error, finished_at = :now, updated_at = :now, owner = NULL,
                lease_until = NULL
WHERE id = :id AND status = 'running' AND (CAST(:owner AS text) IS NULL OR owner = :owner);


-- == Retention ===============================================================================================

-- name: prune_candidates
-- Up to :limit events of one retention class received before :cutoff, oldest first, none with a run still
-- to finish.
SELECT e.id
FROM events AS e
WHERE e.received_at < :cutoff
  AND {event_class}
  AND NOT EXISTS (SELECT 1 FROM runs AS r WHERE r.event_id = e.id
                  AND r.status IN ('queued', 'executing', 'retrying'))
ORDER BY e.received_at
LIMIT :limit;

-- name: prune_attempts
-- The attempts of the runs of the events :ids.
DELETE FROM attempts
WHERE run_id IN (SELECT id FROM runs
                 WHERE event_id IN (SELECT jsonb_array_elements_text(CAST(:ids AS jsonb))));

-- name: prune_runs
-- The runs of the events :ids.
DELETE FROM runs WHERE event_id IN (SELECT jsonb_array_elements_text(CAST(:ids AS jsonb)));

-- name: prune_events
-- The events :ids themselves, once their runs and attempts are gone.
DELETE FROM events WHERE id IN (SELECT jsonb_array_elements_text(CAST(:ids AS jsonb)));

-- name: prune_rejections
-- Up to :limit rejections of one retention class received before :cutoff.
DELETE FROM rejections
WHERE id IN (SELECT id FROM rejections
             WHERE received_at < :cutoff AND {rejection_class}
             ORDER BY id
             LIMIT :limit);

-- name: prune_jobs
-- Jobs that ended before :cutoff.
DELETE FROM jobs WHERE status <> 'running' AND finished_at < :cutoff;

-- name: count_prunable_jobs
-- How many jobs prune_jobs would remove.
SELECT count(*) FROM jobs WHERE status <> 'running' AND finished_at < :cutoff;

-- name: count_prunable
-- For `gateway prune --dry-run`: what a prune of one retention class would remove.
WITH doomed AS (
    SELECT e.id FROM events AS e
    WHERE e.received_at < :cutoff
      AND {event_class}
      AND NOT EXISTS (SELECT 1 FROM runs AS r WHERE r.event_id = e.id
                      AND r.status IN ('queued', 'executing', 'retrying')))
SELECT (SELECT count(*) FROM doomed) AS events,
       (SELECT count(*) FROM runs WHERE event_id IN (SELECT id FROM doomed)) AS runs,
       (SELECT count(*) FROM attempts
        WHERE run_id IN (SELECT id FROM runs WHERE event_id IN (SELECT id FROM doomed))) AS attempts,
       (SELECT count(*) FROM rejections WHERE received_at < :cutoff AND {rejection_class}) AS rejections;

-- name: backup_counts
-- What the database holds, for what `gateway copy` prints.
SELECT (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM runs) AS runs;
