-------------------------------------------------------------------------------
-- Enqueue
-------------------------------------------------------------------------------
-- Queues one outbound message. p_message is validated by normalize_message;
-- it may carry scheduledFor (ISO time, future, at most 90 days ahead),
-- delayMessage (1-15 s) and messageId (used as idempotency key when
-- p_idempotency_key is NULL). The same key with the same message returns
-- the message already queued; with a different message it is a PW409.
-- An instance without what its provider needs (base_url, api_key, for meta
-- settings.phone_number_id) refuses messages with a PW503 naming the field;
-- the Cloud API (meta) takes neither polls nor group or LID recipients, and
-- outside a contact's 24 h window only templates (WINDOW_CLOSED).
CREATE FUNCTION pgwa.enqueue(p_instance uuid, p_message jsonb, p_idempotency_key text DEFAULT NULL)
RETURNS TABLE (message_id uuid, status text, seq bigint, scheduled_for timestamptz, created boolean)
	AS 'MODULE_PATHNAME', 'pgwa_enqueue' LANGUAGE C VOLATILE ROWS 1;

-- A text message: the simplest send. p_options holds any other field of the
-- message (delayMessage, scheduledFor, messageId...); to, type and text are
-- set over it.
CREATE FUNCTION pgwa.send(p_instance uuid, p_to text, p_text text, p_options jsonb DEFAULT '{}',
                          p_idempotency_key text DEFAULT NULL)
RETURNS TABLE (message_id uuid, status text)
	AS 'MODULE_PATHNAME', 'pgwa_send' LANGUAGE C VOLATILE ROWS 1;

-- A message as the API shows it, with its attempts.
CREATE FUNCTION pgwa.message_json(p_message uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT jsonb_build_object(
		'id', o.id, 'instance_id', o.instance_id, 'seq', o.seq, 'status', o.status,
		'type', o.type, 'to', o.recipient, 'message', o.payload,
		'idempotency_key', o.idempotency_key, 'scheduled_for', o.scheduled_for,
		'attempts', o.attempts, 'max_attempts', o.max_attempts,
		'next_attempt_at', o.next_attempt_at, 'broker_message_id', o.broker_message_id,
		'last_http_status', o.last_http_status, 'last_error', o.last_error,
		'created_at', o.created_at, 'updated_at', o.updated_at, 'sent_at', o.sent_at,
		'delivered_at', o.delivered_at, 'read_at', o.read_at, 'dead_at', o.dead_at,
		'canceled_at', o.canceled_at,
		'attempt_log', coalesce((
			SELECT jsonb_agg(jsonb_build_object(
				'attempt', a.attempt, 'started_at', a.started_at, 'duration_ms', a.duration_ms,
				'outcome', a.outcome, 'http_status', a.http_status, 'error', a.error)
				ORDER BY a.id)
			FROM pgwa.attempts a WHERE a.instance_id = o.instance_id AND a.seq = o.seq), '[]'))
	FROM pgwa.outbox o WHERE o.id = p_message
$$;
