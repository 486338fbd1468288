-- A source's dedupe window (issue 16): a key older than the window may be stored again. The UNIQUE (source,
-- dedupe_key) of migration 0001 stays, and still decides every duplicate inside the write transaction: when a
-- key past its window arrives again, the same transaction moves it off the older event into retired_key, then
-- stores the newer event under it. Readers see COALESCE(dedupe_key, retired_key): every event shows the key it
-- arrived with. No table is rebuilt, and files of any size upgrade at once.
ALTER TABLE events ADD COLUMN retired_key TEXT;
