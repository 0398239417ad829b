-------------------------------------------------------------------------------
-- C functions
-------------------------------------------------------------------------------
-- A fresh API key: "pgwa_" and 40 hex digits from the strong random source.
CREATE FUNCTION pgwa._random_token() RETURNS text
	AS 'MODULE_PATHNAME', 'pgwa_random_token' LANGUAGE C VOLATILE STRICT;

-- Validates an outbound message and returns its canonical form; errors name
-- the field (COLUMN_NAME) and use SQLSTATE PW400.
CREATE FUNCTION pgwa.normalize_message(message jsonb) RETURNS jsonb
	AS 'MODULE_PATHNAME', 'pgwa_normalize_message' LANGUAGE C IMMUTABLE STRICT;

-- Wakes the dispatcher when the calling transaction commits (once per
-- transaction however often it is called).
CREATE FUNCTION pgwa._wake_dispatcher_on_commit() RETURNS void
	AS 'MODULE_PATHNAME', 'pgwa_wake_dispatcher_on_commit' LANGUAGE C VOLATILE;

-- Asks for the inbound applier to be woken when the current transaction
-- commits (it applies the webhook events just stored).
CREATE FUNCTION pgwa._wake_applier_on_commit() RETURNS void
	AS 'MODULE_PATHNAME', 'pgwa_wake_applier_on_commit' LANGUAGE C VOLATILE;

-- An inbound applier's process id (slot 0 to pgwa.inbound_workers - 1), or
-- NULL when it is not running.
CREATE FUNCTION pgwa.applier_pid(slot int DEFAULT 0) RETURNS int
	AS 'MODULE_PATHNAME', 'pgwa_applier_pid' LANGUAGE C VOLATILE;

-- The dispatcher's process id, NULL when it is not running.
CREATE FUNCTION pgwa.dispatcher_pid() RETURNS int
	AS 'MODULE_PATHNAME', 'pgwa_dispatcher_pid' LANGUAGE C VOLATILE;

-- The effective mode (http, dryrun, disabled) and the raw setting.
CREATE FUNCTION pgwa.mode(OUT mode text, OUT raw_mode text)
	AS 'MODULE_PATHNAME', 'pgwa_mode' LANGUAGE C STABLE;

-- Records one inbound event's received-to-applied time in the shared-memory
-- histogram pgwa_webhook_ingest_latency_seconds.
CREATE FUNCTION pgwa._observe_ingest(p_seconds double precision) RETURNS void
	AS 'MODULE_PATHNAME', 'pgwa_observe_ingest' LANGUAGE C VOLATILE STRICT;
