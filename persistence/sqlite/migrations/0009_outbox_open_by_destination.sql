-- The open-commands index keyed by destination (and, implicitly, rowid: commit order) instead of
-- created_at.
--
-- The engine holds at most Options::max_queued_commands unsent commands per destination in
-- memory; the newer ones wait in the outbox only, and it reads them back, a destination at a
-- time and in commit order, as that destination takes what it holds ("destination = ? AND
-- replied_at IS NULL AND rowid > ? ORDER BY rowid"). This index makes that read a range search
-- however many commands wait for other destinations. Its entries are as many as before and
-- change at the same moments (insert, reply applied), so commits cost the same.
--
-- The start-up reads (pending and awaiting commands, ordered by created_at or dispatched_at)
-- still search this index for open rows and then sort what they found. Building the index reads
-- the outbox once.
DROP INDEX outbox_open;
CREATE INDEX outbox_open ON outbox (destination) WHERE replied_at IS NULL;
