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
