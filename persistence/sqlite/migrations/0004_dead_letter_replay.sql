-- Dead letters can be replayed once: the replay is recorded in the same transaction as its effect.
ALTER TABLE dead_letters ADD COLUMN replayed_at INTEGER;  -- NULL until replayed
