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
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
	v_msg      jsonb;
	v_inst     pgwa.instances;
	v_key      text;
	v_hash     bytea;
	v_sched    timestamptz;
	v_due      timestamptz;
	v_seq      bigint;
	v_existing record;
	v_missing  text;
BEGIN
	v_msg := pgwa.normalize_message(p_message);
	SELECT * INTO v_inst FROM pgwa.instances WHERE id = p_instance;
	IF NOT FOUND THEN
		PERFORM pgwa._raise('PW404', 'instance not found', 'instance_id');
	END IF;
	-- Refuse at once what the dispatcher could never send.
	IF NOT pgwa._instance_configured(v_inst) THEN
		v_missing := CASE WHEN v_inst.base_url IS NULL THEN 'base_url'
		                  WHEN coalesce(v_inst.broker_api_key, '') = '' THEN 'api_key'
		                  ELSE 'settings.phone_number_id' END;
		PERFORM pgwa._raise('PW503', format('the instance is not configured to send: %s is missing', v_missing),
		                    v_missing);
	END IF;
	IF v_inst.provider = 'meta' THEN
		IF v_msg->>'type' = 'poll' THEN
			PERFORM pgwa._raise('PW400', 'the Cloud API has no polls', 'type');
		ELSIF strpos(v_msg->>'to', '@') > 0 AND v_msg->>'to' NOT LIKE '%@s.whatsapp.net' THEN
			-- a user JID is a phone number (the adapter sends its digits); groups and LIDs are not
			PERFORM pgwa._raise('PW400', 'the Cloud API sends to phone numbers only, not to group or LID JIDs', 'to');
		ELSIF v_msg->>'type' <> 'template'
		      AND (SELECT w.state FROM pgwa.window_state(v_inst.tenant_id, v_msg->>'to') w) IN ('closed', 'unknown') THEN
			-- Cloud API rule: outside the 24 h customer service window (or to a
			-- contact who never wrote), a business may only send templates.
			PERFORM pgwa._raise('PW423', 'the 24 h window with this contact is closed: only template messages can be sent',
			                    'to', 'the window opens when the contact writes to you');
		END IF;
	END IF;

	v_key := coalesce(p_idempotency_key, v_msg->>'messageId');
	IF v_key IS NOT NULL AND (length(v_key) = 0 OR length(v_key) > 200) THEN
		PERFORM pgwa._raise('PW400', 'messageId / Idempotency-Key must be 1-200 characters', 'messageId');
	END IF;
	v_msg := v_msg - 'messageId';
	v_hash := sha256(convert_to(v_msg::text, 'UTF8'));

	IF v_msg ? 'scheduledFor' THEN
		BEGIN
			v_sched := (v_msg->>'scheduledFor')::timestamptz;
		EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow THEN
			PERFORM pgwa._raise('PW400', 'scheduledFor must be an ISO 8601 timestamp', 'scheduledFor');
		END;
		IF v_sched IS NULL OR NOT isfinite(v_sched) THEN
			PERFORM pgwa._raise('PW400', 'scheduledFor must be an ISO 8601 timestamp', 'scheduledFor');
		END IF;
		IF v_sched <= now() THEN
			PERFORM pgwa._raise('PW400', 'scheduledFor must be in the future', 'scheduledFor');
		ELSIF v_sched > now() + interval '90 days' THEN
			PERFORM pgwa._raise('PW400', 'scheduledFor must be at most 90 days ahead', 'scheduledFor');
		END IF;
	END IF;

	-- Taking the instance's row lock serialises enqueues per instance: the
	-- sequence and the due time below then agree, and a concurrent enqueue
	-- with the same key has committed before we look for it.
	UPDATE pgwa.instance_state s SET next_seq = s.next_seq + 1
	WHERE s.instance_id = p_instance RETURNING s.next_seq INTO v_seq;

	IF v_key IS NOT NULL THEN
		SELECT o.id, o.status, o.seq, o.scheduled_for, o.request_hash INTO v_existing
		FROM pgwa.outbox o WHERE o.instance_id = p_instance AND o.idempotency_key = v_key;
		IF FOUND THEN
			IF v_existing.request_hash <> v_hash THEN
				PERFORM pgwa._raise('PW409', 'this idempotency key was already used for a different message',
				                    'messageId', format('message %s', v_existing.id));
			END IF;
			RETURN QUERY SELECT v_existing.id, v_existing.status, v_existing.seq,
			                    v_existing.scheduled_for, false;
			RETURN;
		END IF;
	END IF;

	v_due := coalesce(v_sched, clock_timestamp());
	INSERT INTO pgwa.outbox AS o (instance_id, seq, tenant_id, idempotency_key, request_hash, type,
	                              recipient, payload, status, due_at, scheduled_for,
	                              delay_message_s, max_attempts)
	VALUES (p_instance, v_seq, v_inst.tenant_id, v_key, v_hash, v_msg->>'type', v_msg->>'to',
	        v_msg - 'scheduledFor',
	        CASE WHEN v_sched IS NULL THEN 'queued' ELSE 'scheduled' END,
	        v_due, v_sched, coalesce((v_msg->>'delayMessage')::int, 0), v_inst.max_attempts)
	RETURNING o.id, o.status, o.seq, o.scheduled_for, true
	INTO message_id, status, seq, scheduled_for, created;
	-- Counted for GET /metrics. Only this instance's enqueues take this row,
	-- and they already queue behind its instance_state row: no new contention.
	INSERT INTO pgwa.enqueue_counts AS c (instance_id, type, queued)
	VALUES (p_instance, v_msg->>'type', 1)
	ON CONFLICT (instance_id, type) DO UPDATE SET queued = c.queued + 1;

	UPDATE pgwa.instance_state s SET head_due = least(s.head_due, v_due)
	WHERE s.instance_id = p_instance AND (s.head_due IS NULL OR s.head_due > v_due);
	PERFORM pgwa._wake_dispatcher_on_commit();
	RETURN NEXT;
END $$;

-- A text message: the simplest send.
CREATE FUNCTION pgwa.send(p_instance uuid, p_to text, p_text text, p_options jsonb DEFAULT '{}',
                          p_idempotency_key text DEFAULT NULL)
RETURNS TABLE (message_id uuid, status text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
	-- plpgsql keeps this plan; a sql wrapper around a set-returning plpgsql
	-- function is not inlined and would be planned at every call
	RETURN QUERY
	SELECT e.message_id, e.status
	FROM pgwa.enqueue(p_instance,
	                  coalesce(p_options, '{}') || jsonb_build_object('to', p_to, 'type', 'text', 'text', p_text),
	                  p_idempotency_key) e;
END $$;

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
