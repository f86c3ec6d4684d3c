-- The journal's sequence without AUTOINCREMENT: AUTOINCREMENT reads and rewrites the journal's
-- row in sqlite_sequence on every insert (about 9% of the instructions the store executes per
-- engine step).
--
-- A plain INTEGER PRIMARY KEY assigns max(sequence) + 1, which gives the same sequences as
-- AUTOINCREMENT as long as the newest journal row is never deleted: the journal is append-only
-- (no code deletes journal rows), so sequences stay ascending and are never reused. Anything
-- that ever prunes the journal must keep its newest row.
--
-- SQLite cannot drop AUTOINCREMENT in place: the table is rebuilt, keeping every row and its
-- sequence, and its index is created again.
CREATE TABLE journal_rebuilt (
  sequence     INTEGER PRIMARY KEY,
  saga_id      TEXT    NOT NULL,
  at           INTEGER NOT NULL,
  kind         TEXT    NOT NULL,
  message_id   TEXT    NOT NULL DEFAULT '',
  message_type TEXT    NOT NULL DEFAULT '',
  from_state   TEXT    NOT NULL DEFAULT '',
  to_state     TEXT    NOT NULL DEFAULT '',
  detail       TEXT    NOT NULL DEFAULT ''
) STRICT;

INSERT INTO journal_rebuilt
    (sequence, saga_id, at, kind, message_id, message_type, from_state, to_state, detail)
  SELECT sequence, saga_id, at, kind, message_id, message_type, from_state, to_state, detail
  FROM journal ORDER BY sequence;

DROP TABLE journal;
ALTER TABLE journal_rebuilt RENAME TO journal;
CREATE INDEX journal_by_saga ON journal (saga_id, sequence);
