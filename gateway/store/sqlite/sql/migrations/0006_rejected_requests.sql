-- Rejected requests kept whole, so they can be verified again once a secret is fixed (issue 16): the request as
-- it came (credentials redacted, like an event's), the bytes it takes against its source's cap, why it is gone
-- when it is, and what it became. Rows from before keep only their body prefix: method IS NULL, kept_bytes 0.
ALTER TABLE rejections ADD COLUMN method TEXT;
ALTER TABLE rejections ADD COLUMN url TEXT;
ALTER TABLE rejections ADD COLUMN headers TEXT;          -- JSON [[name, value], ...]; credentials "[redacted]"
ALTER TABLE rejections ADD COLUMN query TEXT;            -- JSON [[name, value], ...]
ALTER TABLE rejections ADD COLUMN body BLOB;             -- the whole body (at most the source's max_body)
ALTER TABLE rejections ADD COLUMN kept_bytes INTEGER NOT NULL DEFAULT 0;  -- 0: no request kept
ALTER TABLE rejections ADD COLUMN dropped TEXT;          -- why none is kept: evicted | no_room | unverifiable
ALTER TABLE rejections ADD COLUMN dropped_at REAL;
ALTER TABLE rejections ADD COLUMN recovered_as TEXT;     -- the event it became (no foreign key: pruned apart)
ALTER TABLE rejections ADD COLUMN recovery TEXT;         -- stored | duplicate (of recovered_as)
ALTER TABLE rejections ADD COLUMN recovered_at REAL;
-- The kept requests of a source in arrival order: what the cap drops first, and what a replay by filter walks.
CREATE INDEX rejections_kept ON rejections (source, id) WHERE kept_bytes > 0;

-- Per source: the bytes of kept requests (kept up to date by the triggers below, whoever inserts, drops or
-- prunes), and this hour's turnover: the bytes of older requests dropped since window_start.
CREATE TABLE rejection_space (
    source       TEXT PRIMARY KEY,
    kept_bytes   INTEGER NOT NULL DEFAULT 0,
    window_start REAL NOT NULL DEFAULT 0,
    dropped      INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TRIGGER rejection_kept_insert AFTER INSERT ON rejections WHEN NEW.kept_bytes > 0 BEGIN
    INSERT INTO rejection_space (source, kept_bytes) VALUES (NEW.source, NEW.kept_bytes)
    ON CONFLICT (source) DO UPDATE SET kept_bytes = kept_bytes + excluded.kept_bytes;
END;
CREATE TRIGGER rejection_kept_update AFTER UPDATE OF kept_bytes ON rejections
WHEN OLD.kept_bytes != NEW.kept_bytes BEGIN
    UPDATE rejection_space SET kept_bytes = kept_bytes - OLD.kept_bytes + NEW.kept_bytes
    WHERE source = NEW.source;
END;
CREATE TRIGGER rejection_kept_delete AFTER DELETE ON rejections WHEN OLD.kept_bytes > 0 BEGIN
    UPDATE rejection_space SET kept_bytes = kept_bytes - OLD.kept_bytes WHERE source = OLD.source;
END;
