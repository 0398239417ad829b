-------------------------------------------------------------------------------
-- Message counters (GET /metrics). Kept as rows so they survive restarts and
-- never need a scan of the outbox; keyed by (instance_id, type). Each table
-- has one writer, so counting adds no lock contention:
--   enqueue_counts   pgwa.enqueue, per message; an instance's enqueues are
--                    already serialised by its instance_state row
--   delivery_counts  the dispatcher, one upsert per batch of results
-- Rows change often and no indexed column changes: a low fillfactor keeps
-- their updates HOT.
-------------------------------------------------------------------------------
CREATE TABLE pgwa.enqueue_counts (
	instance_id uuid   NOT NULL REFERENCES pgwa.instances (id) ON DELETE CASCADE,
	type        text   NOT NULL,
	queued      bigint NOT NULL DEFAULT 0,   -- messages accepted (not idempotent replays)
	PRIMARY KEY (instance_id, type)
) WITH (fillfactor = 50);

-- Attempts by outcome, and failed attempts by class:
--   timeout       no answer within pgwa.http_timeout / pgwa.connect_timeout
--   connect       no connection, or it broke before an answer
--   http_429      HTTP 429
--   http_4xx      other HTTP 4xx (a 409 that means disconnected excepted)
--   http_5xx      HTTP 5xx
--   disconnected  the broker says the instance is offline
--   other         anything else (no usable request, unexpected status)
CREATE TABLE pgwa.delivery_counts (
	instance_id       uuid   NOT NULL REFERENCES pgwa.instances (id) ON DELETE CASCADE,
	type              text   NOT NULL,
	sent              bigint NOT NULL DEFAULT 0,   -- accepted by the broker (or dry run)
	retried           bigint NOT NULL DEFAULT 0,   -- failed attempts retried later
	dead              bigint NOT NULL DEFAULT 0,   -- messages that became dead letters
	fail_timeout      bigint NOT NULL DEFAULT 0,
	fail_connect      bigint NOT NULL DEFAULT 0,
	fail_http_4xx     bigint NOT NULL DEFAULT 0,
	fail_http_5xx     bigint NOT NULL DEFAULT 0,
	fail_http_429     bigint NOT NULL DEFAULT 0,
	fail_disconnected bigint NOT NULL DEFAULT 0,
	fail_other        bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (instance_id, type)
) WITH (fillfactor = 50);
