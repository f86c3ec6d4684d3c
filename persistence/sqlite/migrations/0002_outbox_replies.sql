-- Reply tracking for the outbox: a dispatched command stays "awaiting reply" until the engine
-- applies a reply whose causationId is its eventId; the engine re-sends it after a timeout.
ALTER TABLE outbox ADD COLUMN replied_at INTEGER;  -- NULL until a reply to it was applied

CREATE INDEX outbox_awaiting_reply ON outbox (dispatched_at)
  WHERE dispatched = 1 AND replied_at IS NULL;
