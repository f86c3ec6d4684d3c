-- A retriable step's command sent again after a failure reply waits before it leaves (its retry
-- policy's wait for the n-th failure in a row). The wait and n are kept with the command, so an
-- engine that starts while the command waits lets it wait out the rest, and the next failure's
-- wait goes on from n instead of starting over.
--
-- not_before: when the command may leave (microseconds since the Unix epoch, like created_at);
-- NULL for every other command. retry_failures: the failure replies in a row its wait was for.
-- Both are written with the command (an operator's re-open clears them); the engine reads them
-- only when it starts, through the open-commands index (outbox_open), so no index is added.
ALTER TABLE outbox ADD COLUMN not_before INTEGER;
ALTER TABLE outbox ADD COLUMN retry_failures INTEGER NOT NULL DEFAULT 0 CHECK (retry_failures >= 0);
