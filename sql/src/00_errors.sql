-------------------------------------------------------------------------------
-- Errors
--
-- Every error pgwa raises on purpose carries a SQLSTATE of class PW. The
-- table below gives each one a stable code name and the HTTP status the
-- router answers with; the offending field, when there is one, travels in the
-- COLUMN_NAME diagnostic field.
-------------------------------------------------------------------------------
CREATE TABLE pgwa.error_codes (
	sqlstate    text PRIMARY KEY,
	code        text NOT NULL UNIQUE,
	http_status int  NOT NULL
);
INSERT INTO pgwa.error_codes VALUES
	('PW400', 'VALIDATION_FAILED',       400),
	('PW401', 'UNAUTHORIZED',            401),
	('PW403', 'FORBIDDEN',               403),
	('PW404', 'NOT_FOUND',               404),
	('PW405', 'METHOD_NOT_ALLOWED',      405),
	('PW409', 'IDEMPOTENCY_CONFLICT',    409),
	('PW410', 'INSTANCE_DISCONNECTED',   409),
	('PW411', 'MESSAGE_NOT_CANCELABLE',  409),
	('PW412', 'ALREADY_EXISTS',          409),
	('PW413', 'PAYLOAD_TOO_LARGE',       413),
	('PW414', 'MESSAGE_NOT_REPLAYABLE',  409),
	('PW415', 'DELIVERY_NOT_REPLAYABLE', 409),
	('PW422', 'UNPROCESSABLE',           422),
	('PW423', 'WINDOW_CLOSED',           422),
	('PW429', 'RATE_LIMITED',            429),
	('PW503', 'WHATSAPP_NOT_CONFIGURED', 503);

-------------------------------------------------------------------------------
-- Raising pgwa errors from SQL
-------------------------------------------------------------------------------
CREATE FUNCTION pgwa._raise(p_sqlstate text, p_message text, p_field text DEFAULT NULL,
                            p_detail text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION USING ERRCODE = p_sqlstate, MESSAGE = p_message,
		COLUMN = coalesce(p_field, ''), DETAIL = coalesce(p_detail, '');
END $$;

-- Raises a pgwa error when p_cond holds (as pgwa._raise); true otherwise,
-- so that a query can check every row it reads in its WHERE clause. C: it
-- is called for every row of a batch.
CREATE FUNCTION pgwa._raise_if(p_cond boolean, p_sqlstate text, p_message text, p_field text DEFAULT NULL)
RETURNS boolean
	AS 'MODULE_PATHNAME', 'pgwa_raise_if' LANGUAGE C VOLATILE;
