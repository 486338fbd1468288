-- Every statement the SQLite store runs, as named blocks loaded once by gateway/store/sqlite/sql.py. The schema
-- is not here: it is built by the numbered files in migrations/, applied in order (never edit a released one).
--
-- `-- name: x` starts a statement; the comment line under it says what it is for. `-- fragment: x` starts a
-- piece of SQL that statements include as {x}: the column lists the row codec (gateway/store/rows.py) reads,
-- and the filters several listings share, written once.

-- fragment: event_columns
e.id, e.source, e.event_type, COALESCE(e.dedupe_key, e.retired_key) AS dedupe_key, e.status, e.received_at,
e.method, e.url, e.headers, e.query, e.body, e.payload_kind, e.payload, e.verification, e.remote_addr,
e.replay_of, e.traceparent

-- fragment: run_columns
r.id, r.event_id, r.route_id, r.task_id, r.input, r.status, r.queue, r.priority, r.concurrency_key,
r.options, r.attempts, r.crashes, r.created_at, r.started_at, r.finished_at, r.output, r.error,
r.duration, r.idempotency_key, r.rerun_of, r.traceparent, r.span_id, r.worker_id

-- fragment: event_filter
e.received_at >= :since AND e.received_at <= :until
  AND (:source IS NULL OR e.source = :source)
  AND (:event_type IS NULL OR e.event_type = :event_type)
  AND (:status IS NULL OR e.status = :status)
  AND (:include_replays OR e.replay_of IS NULL)
  AND ((:task IS NULL AND :run_status IS NULL) OR EXISTS (
        SELECT 1 FROM runs AS r WHERE r.event_id = e.id
          AND (:task IS NULL OR r.task_id = :task) AND (:run_status IS NULL OR r.status = :run_status)))

-- fragment: text_hits
SELECT :text
UNION SELECT id FROM events WHERE dedupe_key = :text
UNION SELECT id FROM events WHERE retired_key = :text AND dedupe_key IS NULL
UNION SELECT event_id FROM runs WHERE id = :text

-- fragment: rejection_columns
id, source, reason, detail, received_at, remote_addr, body_prefix, body_size, kept_bytes, dropped, dropped_at,
recovered_as, recovery, recovered_at

-- fragment: job_columns
id, kind, filter, status, total, done, created, upto, cursor_time, cursor_id, owner, lease_until,
created_at, updated_at, finished_at, error, requested_by


-- == Connections ==============================================================================================

-- name: writer_pragmas
-- Per write connection. FULL: a commit is fsynced before the gateway answers 2xx. Its scratch tables hold a
-- batch's keys while it looks them up (find_dedupe_keys, busy_keys): bound as values, each key is compared
-- byte for byte as it is stored. Passed in JSON text, json_extract cut a key at U+0000: a dedupe key then
-- missed its event and hit the UNIQUE index, a concurrency key the runs it waits for (issue 17). They live in
-- memory, on this connection only.
PRAGMA synchronous = FULL;
PRAGMA foreign_keys = ON;
PRAGMA busy_timeout = 5000;
PRAGMA temp_store = MEMORY;
CREATE TEMP TABLE batch_dedupe_keys (source TEXT NOT NULL, dedupe_key TEXT NOT NULL);
CREATE TEMP TABLE batch_concurrency_keys (task_id TEXT NOT NULL, concurrency_key TEXT NOT NULL);

-- name: reader_pragmas
-- Per read connection: it waits for the writer's lock, and can never write.
PRAGMA busy_timeout = 5000;
PRAGMA query_only = ON;

-- name: heartbeat_pragmas
-- The heartbeat thread's own connection, which renews leases while task code blocks the event loop.
PRAGMA busy_timeout = 5000;

-- name: enable_wal
-- Persistent in the file; answers the mode actually in force.
PRAGMA journal_mode = WAL;

-- name: read_user_version
-- How many migrations the file has had.
PRAGMA user_version;


-- == Intake: events, their runs, rejections ==================================================================

-- name: clear_dedupe_keys
-- Empties the scratch table of a batch's dedupe keys, before they are noted.
DELETE FROM temp.batch_dedupe_keys;

-- name: note_dedupe_key
-- One (source, dedupe key) a batch looks up, bound as it will be stored.
INSERT INTO temp.batch_dedupe_keys (source, dedupe_key) VALUES (:source, :dedupe_key);

-- name: find_dedupe_keys
-- The stored events the noted dedupe keys already name, and when each was received (a key past its source's
-- dedupe window may be stored again): one lookup for a whole batch, one index seek per key.
SELECT e.source, e.dedupe_key, e.id, e.received_at
FROM temp.batch_dedupe_keys AS k
JOIN events AS e ON e.source = k.source AND e.dedupe_key = k.dedupe_key;

-- name: retire_dedupe_keys
-- The events :ids (a JSON list) give up their keys, past their dedupe window, to newer events of this batch:
-- each keeps its key as retired_key (what readers show), out of the UNIQUE (source, dedupe_key) index.
UPDATE events SET retired_key = dedupe_key, dedupe_key = NULL
WHERE id IN (SELECT value FROM json_each(:ids)) AND dedupe_key IS NOT NULL;

-- name: insert_event
-- One event row (gateway/store/rows.py event_to_row). A dedupe key the UNIQUE index holds already inserts
-- nothing: the intake finds which rows those were (stored_event_ids) and answers them as duplicates, so a
-- constraint hit is never a store fault. Events without a key (replays) never conflict.
INSERT INTO events (id, source, event_type, dedupe_key, status, received_at, method, url, headers, query,
                    body, payload_kind, payload, verification, remote_addr, replay_of, traceparent)
VALUES (:id, :source, :event_type, :dedupe_key, :status, :received_at, :method, :url, :headers, :query,
        :body, :payload_kind, :payload, :verification, :remote_addr, :replay_of, :traceparent)
ON CONFLICT (source, dedupe_key) DO NOTHING;

-- name: stored_event_ids
-- Which of the event ids :ids (a JSON list of ids the gateway made) are on disk: after an insert_event batch
-- that inserted fewer rows than it was given.
SELECT id FROM events WHERE id IN (SELECT value FROM json_each(:ids));

-- name: dedupe_key_holder
-- The event holding one dedupe key in the UNIQUE index: the one a delivery insert_event skipped duplicates.
SELECT id FROM events WHERE source = :source AND dedupe_key = :dedupe_key;

-- name: clear_concurrency_keys
-- Empties the scratch table of a batch's (task, concurrency key) pairs, before they are noted.
DELETE FROM temp.batch_concurrency_keys;

-- name: note_concurrency_key
-- One distinct (task, concurrency key) of a batch's new runs, bound as it will be stored.
INSERT INTO temp.batch_concurrency_keys (task_id, concurrency_key) VALUES (:task_id, :concurrency_key);

-- name: busy_keys
-- Which of the noted (task, concurrency key) pairs have an unfinished run already: the new runs on them
-- wait. EXISTS stops at the first such run, however many wait on the key.
SELECT k.task_id, k.concurrency_key
FROM temp.batch_concurrency_keys AS k
WHERE EXISTS (
    SELECT 1 FROM runs AS r
    WHERE r.task_id = k.task_id AND r.concurrency_key = k.concurrency_key
      AND r.status IN ('queued', 'executing', 'retrying'));

-- name: insert_run
-- One run row. sort_key = available_at - priority: priority is seconds of queue-age advantage (Trigger.dev's
-- meaning). :blocked comes from runs.insert_runs.
INSERT INTO runs (id, event_id, route_id, task_id, input, status, queue, priority, concurrency_key, options,
                  attempts, crashes, created_at, available_at, started_at, finished_at, output, error,
                  duration, idempotency_key, rerun_of, sort_key, blocked, traceparent, span_id)
VALUES (:id, :event_id, :route_id, :task_id, :input, :status, :queue, :priority, :concurrency_key, :options,
        :attempts, :crashes, :created_at, :created_at, :started_at, :finished_at, :output, :error,
        :duration, :idempotency_key, :rerun_of, :created_at - :priority, :blocked, :traceparent, :span_id);

-- name: insert_rejection
-- A refused delivery, with the first bytes of its body for debugging and, when it is kept for replay, the whole
-- request (kept_bytes > 0; the triggers of migration 0006 add it to its source's rejection_space).
INSERT INTO rejections (source, reason, detail, received_at, remote_addr, body_prefix, body_size, method, url,
                        headers, query, body, kept_bytes, dropped, dropped_at)
VALUES (:source, :reason, :detail, :received_at, :remote_addr, :body_prefix, :body_size, :method, :url,
        :headers, :query, :body, :kept_bytes, :dropped, :dropped_at);

-- name: rejection_space
-- The bytes of requests a source keeps, and this hour's turnover (bytes of older ones dropped since
-- window_start): what a batch of new rejections checks against the source's cap.
SELECT kept_bytes, window_start, dropped FROM rejection_space WHERE source = :source;

-- name: kept_oldest
-- A source's kept requests, oldest first, after :after (a rejection id): the first to drop past the cap.
SELECT id, kept_bytes FROM rejections INDEXED BY rejections_kept
WHERE source = :source AND kept_bytes > 0 AND id > :after
ORDER BY id
LIMIT :limit;

-- name: kept_newest
-- A source's kept requests, newest first, before :before: those not kept when the hour's turnover is spent.
SELECT id, kept_bytes FROM rejections INDEXED BY rejections_kept
WHERE source = :source AND kept_bytes > 0 AND id < :before
ORDER BY id DESC
LIMIT :limit;

-- name: drop_requests
-- The kept requests :ids (a JSON list) are dropped; each row stays, saying why (:why) and when.
UPDATE rejections
SET method = NULL, url = NULL, headers = NULL, query = NULL, body = NULL, kept_bytes = 0, dropped = :why,
    dropped_at = :now
WHERE id IN (SELECT value FROM json_each(:ids)) AND kept_bytes > 0;

-- name: turn_over
-- A source's turnover window after a batch dropped older requests to make room.
UPDATE rejection_space SET window_start = :window_start, dropped = :dropped WHERE source = :source;

-- name: recovered_rejections
-- Of the rejections :ids (a JSON list), those recovered already, with the event each became.
SELECT id, recovered_as FROM rejections
WHERE id IN (SELECT value FROM json_each(:ids)) AND recovered_as IS NOT NULL;

-- name: mark_recovered
-- A rejection verified again and stored (or found a duplicate of :event_id): its request is an event now, so
-- its space is freed.
UPDATE rejections
SET recovered_as = :event_id, recovery = :recovery, recovered_at = :now, method = NULL, url = NULL,
    headers = NULL, query = NULL, body = NULL, kept_bytes = 0
WHERE id = :id AND recovered_as IS NULL;

-- name: set_meta
-- A key of the meta table (the readiness probe writes last_probe).
INSERT INTO meta (key, value) VALUES (:key, :value)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;


-- == The executor: claim, attempts, recovery, cancel =========================================================

-- name: claim_candidates
-- Ready runs in claim order, at most :limit of them; the executor's accept() picks from these. A blocked run
-- waits for the earlier unfinished run of its (task, concurrency key): one at a time, in arrival order. The
-- index holds no blocked run, so a long line on one key costs a claim nothing.
-- LEFT JOIN: a run without its event gets source '' and no headers.
SELECT {run_columns},
       COALESCE(e.source, '') AS source, e.event_type AS event_type, COALESCE(e.headers, '[]') AS headers,
       (SELECT COALESCE(MAX(a.number), 0) + 1 FROM attempts AS a WHERE a.run_id = r.id) AS next_attempt
FROM runs AS r INDEXED BY runs_claim  -- walk in claim order and stop at LIMIT; never sort the backlog
LEFT JOIN events AS e ON e.id = r.event_id
WHERE r.status IN ('queued', 'retrying') AND r.blocked = 0
  AND r.available_at <= :now
  AND r.queue NOT IN (SELECT value FROM json_each(:skip_queues))
  AND r.task_id NOT IN (SELECT value FROM json_each(:skip_tasks))
  AND (:tasks IS NULL OR r.task_id IN (SELECT value FROM json_each(:tasks)))
  AND (:queues IS NULL OR r.queue IN (SELECT value FROM json_each(:queues)))
ORDER BY r.sort_key, r.rowid
LIMIT :limit;

-- name: executing_counts
-- What every process runs now, by queue and task: a claim checks the queue and task limits against these,
-- inside its own transaction, so the limits hold across processes (BEGIN IMMEDIATE: one claim at a time).
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
-- The attempts still open on a still-executing run, of those named: an end that arrives after a cancel or a
-- recovery finds none. :keys is a JSON list of [run_id, number].
SELECT a.run_id, a.number, a.started_at
FROM json_each(:keys) AS k
CROSS JOIN attempts AS a ON a.run_id = json_extract(k.value, '$[0]') AND a.number = json_extract(k.value, '$[1]')
CROSS JOIN runs AS r ON r.id = a.run_id
WHERE a.outcome IS NULL AND r.status = 'executing';

-- name: end_attempt
-- How an attempt ended: its outcome, error, traceback and logs.
UPDATE attempts
SET finished_at = :finished_at, outcome = :outcome, error_type = :error_type, error_message = :error_message,
    traceback = :traceback, logs = :logs
WHERE run_id = :run_id AND number = :attempt AND outcome IS NULL;

-- name: end_run_attempt
-- The run after an attempt: its next status and when it may start again. A completed run drops the error of
-- an earlier attempt; any other keeps the newest one it was given.
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
-- Runs whose process died: their lease lapsed, or their worker is one of :dead (a process found gone); all of
-- them when :only_expired is 0; minus :keep. With the name and place of the worker that held each.
SELECT {run_columns}, w.kind AS worker_kind, w.host AS worker_host, w.pid AS worker_pid
FROM runs AS r
LEFT JOIN workers AS w ON w.id = r.worker_id
WHERE r.status = 'executing'
  AND (NOT :only_expired OR r.lease_until IS NULL OR r.lease_until < :now
       OR r.worker_id IN (SELECT value FROM json_each(:dead)))
  AND r.id NOT IN (SELECT value FROM json_each(:keep))
ORDER BY r.rowid;

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
    available_at = COALESCE(:available_at, available_at),
    sort_key = COALESCE(:available_at - priority, sort_key),
    finished_at = :finished_at,
    error = COALESCE(:error, error)
WHERE id = :id AND status = 'executing';

-- name: run_statuses
-- The status of each run named: what a batch of cancels checks first.
SELECT id, status FROM runs WHERE id IN (SELECT value FROM json_each(:ids));

-- name: cancel_run
-- A queued or retrying run is canceled; a run in any other status is left as it is.
UPDATE runs SET status = 'canceled', finished_at = :now, lease_until = NULL
WHERE id = :id AND status IN ('queued', 'retrying');

-- name: unblock_next
-- Per-key order: :ids are runs that have just reached a final status. Each that was its key's head (not
-- blocked) hands the head on to the earliest blocked run of its (task, key): one index seek per finished run.
UPDATE runs SET blocked = 0
WHERE rowid IN (
    SELECT (SELECT n.rowid FROM runs AS n
            WHERE n.task_id = f.task_id AND n.concurrency_key = f.concurrency_key
              AND n.status IN ('queued', 'executing', 'retrying') AND n.blocked = 1
            ORDER BY n.rowid
            LIMIT 1)
    FROM runs AS f
    WHERE f.id IN (SELECT value FROM json_each(:ids)) AND f.concurrency_key IS NOT NULL AND f.blocked = 0);

-- name: keys_of_runs
-- The (task, concurrency key) of the runs :ids that have one: what a writer sharing the database with other
-- processes locks before it hands a key on (unused here: BEGIN IMMEDIATE already holds the one writer lock).
SELECT DISTINCT task_id, concurrency_key FROM runs
WHERE id IN (SELECT value FROM json_each(:ids)) AND concurrency_key IS NOT NULL;

-- name: runs_by_ids
-- The runs named, as they are now (what a cancel returns).
SELECT {run_columns}
FROM runs AS r
WHERE r.id IN (SELECT value FROM json_each(:ids));

-- name: renew_leases
-- From the heartbeat thread, on its own connection: keeps the leases of runs this worker executes (not one
-- recovered from it meanwhile and claimed by another).
UPDATE runs SET lease_until = :lease_until
WHERE id IN (SELECT value FROM json_each(:ids)) AND status = 'executing' AND worker_id IS :worker;

-- name: beat_worker
-- The worker's own heartbeat, in the same transaction as its leases: `gateway workers` shows it live.
UPDATE workers SET heartbeat_at = :now WHERE id = :worker AND stopped_at IS NULL;

-- name: keep_logs
-- From the heartbeat thread: the log lines a still-open attempt has written so far (its end writes them all).
UPDATE attempts SET logs = :logs
WHERE run_id = :run_id AND number = :attempt AND outcome IS NULL;

-- name: register_worker
-- A process that runs tasks, as it starts.
INSERT INTO workers (id, kind, host, pid, process, tasks, queues, concurrency, version, started_at, heartbeat_at)
VALUES (:id, :kind, :host, :pid, :process, :tasks, :queues, :concurrency, :version, :now, :now);

-- name: forget_workers
-- Workers stopped or silent since before :before, holding no run: `gateway workers` stops listing them.
DELETE FROM workers
WHERE COALESCE(stopped_at, heartbeat_at) < :before
  AND NOT EXISTS (SELECT 1 FROM runs AS r WHERE r.status = 'executing' AND r.worker_id = workers.id);

-- name: stop_worker
-- A clean stop: it holds no run any more (its drain requeued or finished them).
UPDATE workers SET stopped_at = :now, heartbeat_at = :now WHERE id = :id;

-- name: list_workers
-- Every registered worker, newest first, with how many runs it holds now.
SELECT w.id, w.kind, w.host, w.pid, w.process, w.tasks, w.queues, w.concurrency, w.version, w.started_at,
       w.heartbeat_at, w.stopped_at,
       (SELECT COUNT(*) FROM runs AS r WHERE r.status = 'executing' AND r.worker_id = w.id) AS running
FROM workers AS w
ORDER BY w.started_at DESC, w.id;

-- name: waiting_by_task
-- The runs waiting to start, by task and queue: with the live workers, which tasks nobody serves.
SELECT task_id, queue, COUNT(*) AS waiting, MIN(created_at) AS oldest
FROM runs
WHERE status IN ('queued', 'retrying')
GROUP BY task_id, queue
ORDER BY task_id, queue;

-- name: next_available_at
-- When the next waiting run becomes ready, after :after: how long the executor may sleep.
SELECT MIN(available_at) FROM runs WHERE status IN ('queued', 'retrying') AND available_at > :after;


-- == Reads for people: one record, listings paged by keyset, counts ==========================================

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
-- An event's runs in the order they were recorded (route order), not newest first: they share one created_at.
SELECT {run_columns}
FROM runs AS r
WHERE r.event_id = :event_id
ORDER BY r.created_at, r.rowid;

-- name: runs_for_events
-- The runs of several events (`gateway routes test` pages through events), each event's in recorded order.
SELECT {run_columns}
FROM runs AS r
WHERE r.event_id IN (SELECT value FROM json_each(:ids))
ORDER BY r.created_at, r.rowid;

-- name: attempts_for_run
-- A run's attempts, first to last.
SELECT run_id, number, started_at, finished_at, outcome, error_type, error_message, traceback, logs, worker_id
FROM attempts
WHERE run_id = :run_id
ORDER BY number;

-- name: filter_events_newest
-- Listings, newest first, after the keyset cursor (:before_time, :before_id). Every filter is optional (NULL);
-- :include_replays 0 keeps original deliveries only (replay_of IS NULL).
-- :source IS NULL picks the index without a source prefix; SQLite plans the OR once per statement.
SELECT {event_columns}
FROM events AS e
WHERE (e.received_at, e.id) < (:before_time, :before_id)
  AND {event_filter}
ORDER BY e.received_at DESC, e.id DESC
LIMIT :limit;

-- name: filter_events_oldest
-- Bulk replays walk oldest first, after the job's cursor (:after_time, :after_id), up to the job's start.
SELECT {event_columns}
FROM events AS e
WHERE (e.received_at, e.id) > (:after_time, :after_id)
  AND {event_filter}
ORDER BY e.received_at, e.id
LIMIT :limit;

-- name: count_events
-- How many events a filter selects (a bulk replay's total, its dry run).
SELECT count(*)
FROM events AS e
WHERE {event_filter};

-- name: search_events_newest
-- filter_events_newest for EventFilter.text: only the events :text names exactly, by id, by the dedupe key
-- they show, or by a run's id. Each arm of the text_hits fragment is one index seek (the primary keys, migration 0009's
-- key indexes), so a search costs its few hits, not a walk of the events in the window.
SELECT {event_columns}
FROM events AS e
WHERE e.id IN ({text_hits})
  AND (e.received_at, e.id) < (:before_time, :before_id)
  AND {event_filter}
ORDER BY e.received_at DESC, e.id DESC
LIMIT :limit;

-- name: search_events_oldest
-- filter_events_oldest for EventFilter.text (a bulk replay of what a search found).
SELECT {event_columns}
FROM events AS e
WHERE e.id IN ({text_hits})
  AND (e.received_at, e.id) > (:after_time, :after_id)
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
-- Run listings, newest first, after the keyset cursor. The event is joined only to filter by source (a run
-- without one has source '').
SELECT {run_columns}
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
-- Bulk reruns walk oldest first, after the job's cursor (:after_time, :after_id), up to the job's start.
SELECT {run_columns}
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
-- How many runs a filter selects (a bulk rerun's total, its dry run).
SELECT count(*)
FROM runs AS r
LEFT JOIN events AS e ON e.id = r.event_id
WHERE r.created_at >= :since AND r.created_at <= :until
  AND (:status IS NULL OR r.status = :status)
  AND (:task IS NULL OR r.task_id = :task)
  AND (:event_id IS NULL OR r.event_id = :event_id)
  AND (:source IS NULL OR COALESCE(e.source, '') = :source);

-- name: list_rejections
-- Refused deliveries, newest first, before the cursor :before_id (rejection ids grow); not their kept requests.
SELECT {rejection_columns}
FROM rejections
WHERE id < :before_id AND received_at >= :since AND received_at <= :until
  AND (:source IS NULL OR source = :source)
  AND (:reason IS NULL OR reason = :reason)
ORDER BY id DESC
LIMIT :limit;

-- name: get_rejection
-- One rejection with its kept request, if it has one.
SELECT {rejection_columns}, method, url, headers, query, body
FROM rejections
WHERE id = :id;

-- name: kept_rejections
-- Rejections that still hold their request, oldest first after :after (an id): what a replay by filter walks.
SELECT {rejection_columns}, method, url, headers, query, body
FROM rejections
WHERE kept_bytes > 0 AND id > :after AND received_at >= :since AND received_at <= :until
  AND (:source IS NULL OR source = :source)
ORDER BY id
LIMIT :limit;

-- name: replays_of_event
-- The events replaying one, oldest first in the order recorded: ids made in one millisecond do not sort by
-- time.
SELECT id, received_at, status FROM events WHERE replay_of = :id ORDER BY received_at, rowid;

-- name: reruns_of_run
-- The runs rerunning one, oldest first in the order recorded.
SELECT id, created_at, status FROM runs WHERE rerun_of = :id ORDER BY created_at, rowid;

-- name: event_counts
-- Events by source and status since :since (GET /api/stats, the dashboard). INDEXED BY: seek the window, which
-- costs its rows; left alone, SQLite walks the whole (source, received_at) index to spare the GROUP BY a sort,
-- which costs every event, even for an empty window (73 ms at 1 M events: bench/dashboard.py).
SELECT source, status, count(*) AS n FROM events INDEXED BY events_received
WHERE received_at >= :since GROUP BY source, status;

-- name: run_counts
-- Runs by task and status since :since.
SELECT task_id, status, count(*) AS n FROM runs WHERE created_at >= :since GROUP BY task_id, status;

-- name: run_status_windows
-- Runs by status created since :since, and how many of them since :recent (a later time): the dashboard's
-- day and hour in one walk of the day's runs. INDEXED BY: seek the window (left alone, SQLite walks the whole
-- status index to spare the GROUP BY a sort: 400 ms at 1 M runs for an empty window, bench/dashboard.py).
SELECT status, count(*) AS n, sum(created_at >= :recent) AS recent FROM runs INDEXED BY runs_created
WHERE created_at >= :since GROUP BY status;

-- name: rejection_counts
-- Rejections by source and reason since :since. INDEXED BY: seek the window (as event_counts).
SELECT source, reason, count(*) AS n FROM rejections INDEXED BY rejections_received
WHERE received_at >= :since GROUP BY source, reason;

-- name: deliveries_per_minute
-- Deliveries from :since to :until by minute (its start, a multiple of 60), source and outcome: original events
-- (no replays, no @api triggers) as routed or unrouted, and rejections. Each side seeks its received_at index.
SELECT CAST(received_at / 60 AS INTEGER) * 60 AS minute, source, status AS outcome, count(*) AS n
FROM events
WHERE received_at >= :since AND received_at <= :until AND replay_of IS NULL AND source <> '@api'
GROUP BY minute, source, status
UNION ALL
SELECT CAST(received_at / 60 AS INTEGER) * 60 AS minute, source, 'rejected' AS outcome, count(*) AS n
FROM rejections
WHERE received_at >= :since AND received_at <= :until
GROUP BY minute, source
ORDER BY minute, source, outcome;

-- name: task_durations
-- The executing seconds of each task's :per_task most recently finished runs among those created since
-- :since (:statuses, a JSON list, are the finished statuses), by task, shortest first. The unary + keeps
-- SQLite off the status index (every completed run ever) and on runs_created (the window's runs).
SELECT task_id, duration
FROM (SELECT task_id, duration,
             ROW_NUMBER() OVER (PARTITION BY task_id ORDER BY finished_at DESC, id DESC) AS k
      FROM runs
      WHERE created_at >= :since AND finished_at IS NOT NULL
        AND +status IN (SELECT value FROM json_each(:statuses)))
WHERE k <= :per_task
ORDER BY task_id, duration;

-- name: queue_depth
-- Waiting runs per queue and when the longest-waiting one became ready (/metrics, stats).
SELECT queue, count(*) AS n, MIN(available_at) AS oldest
FROM runs WHERE status IN ('queued', 'retrying') GROUP BY queue;


-- == Bulk jobs ===============================================================================================

-- name: insert_job
-- A new running job, held by :owner (the CLI working it) or by nobody (for gateway serve's worker to take).
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
RETURNING {job_columns};

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


-- == Retention ===============================================================================================

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
-- The attempts of the runs of the events :ids (prune_candidates' answer).
DELETE FROM attempts
WHERE run_id IN (SELECT id FROM runs WHERE event_id IN (SELECT value FROM json_each(:ids)));

-- name: prune_runs
-- The runs of the events :ids.
DELETE FROM runs WHERE event_id IN (SELECT value FROM json_each(:ids));

-- name: prune_events
-- The events :ids themselves, once their runs and attempts are gone.
DELETE FROM events WHERE id IN (SELECT value FROM json_each(:ids));

-- name: prune_rejections
-- Up to :limit rejections of one retention class received before :cutoff.
DELETE FROM rejections
WHERE id IN (SELECT id FROM rejections
             WHERE received_at < :cutoff
               AND ((:inside AND source IN (SELECT value FROM json_each(:sources)))
                    OR (NOT :inside AND source NOT IN (SELECT value FROM json_each(:sources))))
             ORDER BY id
             LIMIT :limit);

-- name: prune_jobs
-- Jobs that ended before :cutoff.
DELETE FROM jobs WHERE status != 'running' AND finished_at < :cutoff;

-- name: count_prunable_jobs
-- How many jobs prune_jobs would remove.
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


-- == Backups (gateway backup: store/sqlite/backup.py) =========================================================

-- name: backup_pragmas
-- The backup's read-only connection to the live file: it waits out the writer's brief locks.
PRAGMA busy_timeout = 5000;

-- name: vacuum_into
-- A consistent copy of the whole database, in one read transaction, into the empty file :path.
VACUUM INTO :path;

-- name: quick_check
-- The copy's structure: one row 'ok', or one row per problem.
PRAGMA quick_check;

-- name: backup_counts
-- What a copy holds, for what `gateway backup` prints.
SELECT (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM runs) AS runs;
