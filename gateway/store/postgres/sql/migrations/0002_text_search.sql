-- Finding an event by the dedupe key it shows (EventFilter.text, the dashboard's search box): the UNIQUE
-- (source, dedupe_hash) leads with the source, so a key alone needs its own index; and a key moved off past
-- its dedupe window is shown from retired_key. Both by the key's SHA-256 (a key may be longer than a btree
-- row may be), every lookup comparing the key itself too; partial, so events without a key cost nothing.
-- Building them reads the events table once, at the upgrade, inside the migration's transaction.
CREATE INDEX events_dedupe_hash ON events (dedupe_hash) WHERE dedupe_hash IS NOT NULL;
CREATE INDEX events_retired_hash ON events (gateway_key_hash(retired_key)) WHERE retired_key IS NOT NULL;
