-- 0001: the initial schema.
--
-- Conventions for every migration:
-- - The runner wraps each file in its own BEGIN IMMEDIATE transaction and sets
--   PRAGMA user_version to the file's number; a file contains neither.
-- - Timestamps (*_at columns) are INTEGER microseconds since the Unix epoch (UTC).
-- - Statuses, states and journal kinds are stored by name as TEXT, never as numbers.
-- - Optional text fields are stored as '' rather than NULL.
-- - No foreign keys: dead letters and journal rows may name sagas that do not exist.

CREATE TABLE sagas (
  id                 TEXT    NOT NULL PRIMARY KEY,
  type               TEXT    NOT NULL,
  definition_version INTEGER NOT NULL,
  state              TEXT    NOT NULL,
  status             TEXT    NOT NULL,  -- Running, Compensating, Completed, Compensated, Failed
  data               TEXT    NOT NULL,  -- JSON
  row_version        INTEGER NOT NULL,  -- optimistic concurrency, +1 on every update
  created_at         INTEGER NOT NULL,
  updated_at         INTEGER NOT NULL
) STRICT;

-- (status, created_at) also serves lookups by status alone.
CREATE INDEX sagas_by_status ON sagas (status, created_at);
CREATE INDEX sagas_by_type_status ON sagas (type, status);

-- Append-only.
CREATE TABLE journal (
  sequence     INTEGER PRIMARY KEY AUTOINCREMENT,
  saga_id      TEXT    NOT NULL,
  at           INTEGER NOT NULL,
  kind         TEXT    NOT NULL,  -- started, message_in, message_out, transition, ...
  message_id   TEXT    NOT NULL DEFAULT '',
  message_type TEXT    NOT NULL DEFAULT '',
  from_state   TEXT    NOT NULL DEFAULT '',
  to_state     TEXT    NOT NULL DEFAULT '',
  detail       TEXT    NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX journal_by_saga ON journal (saga_id, sequence);

CREATE TABLE outbox (
  message_id    TEXT    NOT NULL PRIMARY KEY,  -- the envelope's eventId
  saga_id       TEXT    NOT NULL,
  destination   TEXT    NOT NULL,
  message_type  TEXT    NOT NULL,
  payload       TEXT    NOT NULL,  -- the encoded envelope, sent as is
  attempts      INTEGER NOT NULL DEFAULT 0,
  dispatched    INTEGER NOT NULL DEFAULT 0 CHECK (dispatched IN (0, 1)),
  created_at    INTEGER NOT NULL,
  dispatched_at INTEGER             -- NULL until first handed to the transport
) STRICT;

-- Pending rows, oldest first (ties broken by rowid, i.e. insertion order).
CREATE INDEX outbox_pending ON outbox (created_at) WHERE dispatched = 0;
CREATE INDEX outbox_by_saga ON outbox (saga_id, created_at);

CREATE TABLE inbox (
  message_id   TEXT    NOT NULL PRIMARY KEY,
  processed_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE dead_letters (
  id           INTEGER PRIMARY KEY,
  at           INTEGER NOT NULL,
  reason_code  TEXT    NOT NULL,
  reason       TEXT    NOT NULL,
  message_id   TEXT    NOT NULL DEFAULT '',
  message_type TEXT    NOT NULL DEFAULT '',
  saga_id      TEXT    NOT NULL DEFAULT '',
  raw          BLOB    NOT NULL,  -- the original bytes, possibly truncated
  raw_size     INTEGER NOT NULL   -- the original length before truncation
) STRICT;

-- Not used yet; timers arrive with saga deadlines.
CREATE TABLE timers (
  id      INTEGER PRIMARY KEY,
  saga_id TEXT    NOT NULL,
  due_at  INTEGER NOT NULL,
  kind    TEXT    NOT NULL,
  payload TEXT    NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX timers_by_due_at ON timers (due_at);
