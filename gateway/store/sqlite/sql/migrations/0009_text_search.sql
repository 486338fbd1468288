-- Finding an event by the dedupe key it shows (EventFilter.text, the dashboard's search box): the UNIQUE
-- (source, dedupe_key) of migration 0001 leads with the source, so a key alone needs its own index; and a key
-- moved off past its dedupe window (0007) is shown from retired_key. Partial: events without a key cost
-- nothing. Building them reads the events table once, at the upgrade.
CREATE INDEX events_dedupe_key ON events (dedupe_key) WHERE dedupe_key IS NOT NULL;
CREATE INDEX events_retired_key ON events (retired_key) WHERE retired_key IS NOT NULL;
