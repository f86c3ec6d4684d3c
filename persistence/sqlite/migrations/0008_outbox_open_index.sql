-- One index for the outbox's open commands (sent or not, not yet replied) instead of two.
--
-- outbox_pending (dispatched = 0) and outbox_awaiting_reply (dispatched = 1, not replied) made a
-- command move between two indexes when it was sent: the dispatch mark deleted an entry from one
-- and inserted one into the other, two more index pages in the commit after every send. The new
-- index is keyed by created_at and filtered on replied_at only, so a dispatch mark (dispatched,
-- attempts, dispatched_at) leaves it untouched: a command enters it when inserted and leaves it
-- when its reply is applied.
--
-- The engine reads pending and awaiting commands only when it starts, through this index
-- ("replied_at IS NULL AND dispatched = ..."). Pending now also requires "not replied": a command
-- whose reply was applied before its dispatch mark was committed is closed, and is no longer sent
-- again at start. Building the index reads the outbox once.
DROP INDEX outbox_pending;
DROP INDEX outbox_awaiting_reply;
CREATE INDEX outbox_open ON outbox (created_at) WHERE replied_at IS NULL;
