-- Compensating commands have their own retry policy: the outbox records which rows are.
ALTER TABLE outbox ADD COLUMN compensation INTEGER NOT NULL DEFAULT 0 CHECK (compensation IN (0, 1));
