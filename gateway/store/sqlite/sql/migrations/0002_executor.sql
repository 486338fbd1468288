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
