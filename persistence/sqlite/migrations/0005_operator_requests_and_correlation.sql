-- Operator requests: `sagactl` (or any tool) inserts a row; the engine that owns the database
-- applies it in its own loop turn, through the same code as Engine::retry/resolve/..., and
-- records the outcome in the same commit as the effect. Tools never change saga state directly.
CREATE TABLE operator_requests (
  id           INTEGER PRIMARY KEY,
  requested_at INTEGER NOT NULL,
  action       TEXT    NOT NULL,              -- retry | resolve | replay_dead_letter | discard_dead_letter
  target       TEXT    NOT NULL,              -- a saga id, or a dead-letter id as decimal text
  status       TEXT    NOT NULL DEFAULT '',   -- resolve: Completed or Compensated
  note         TEXT    NOT NULL DEFAULT '',
  requested_by TEXT    NOT NULL DEFAULT '',
  done_at      INTEGER,                       -- NULL until applied (or refused)
  ok           INTEGER CHECK (ok IN (0, 1)),  -- 1 applied, 0 refused
  result       TEXT    NOT NULL DEFAULT ''    -- what the engine answered
) STRICT;

CREATE INDEX operator_requests_pending ON operator_requests (id) WHERE done_at IS NULL;

-- A discarded dead letter is kept (with its bytes) but can no longer be replayed.
ALTER TABLE dead_letters ADD COLUMN discarded_at INTEGER;  -- NULL unless discarded
-- How many times the engine tried the message before giving up on it (poison messages).
ALTER TABLE dead_letters ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;

-- The correlation id a saga's messages carry. It defaults to the saga id; a caller can pass its
-- own request id at start so one correlation spans sagas. Replies are routed by causationId.
ALTER TABLE sagas ADD COLUMN correlation_id TEXT NOT NULL DEFAULT '';
UPDATE sagas SET correlation_id = id WHERE correlation_id = '';
CREATE INDEX sagas_by_correlation ON sagas (correlation_id);
