-- Tracing (issue 6): the W3C traceparent of the span that recorded an event, and for a run the span it hangs
-- under plus its own span id (chosen at creation, so attempts made by any process are its children).
ALTER TABLE events ADD COLUMN traceparent TEXT;
ALTER TABLE runs ADD COLUMN traceparent TEXT;
ALTER TABLE runs ADD COLUMN span_id TEXT;
