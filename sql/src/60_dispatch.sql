-------------------------------------------------------------------------------
-- Dispatcher support. The background worker calls these through prepared
-- SPI plans: _claim in one short transaction, HTTP with no transaction open,
-- _complete for the results in a second short transaction.
-------------------------------------------------------------------------------

-- The first pending message of an instance, in sending order.
CREATE FUNCTION pgwa._head_due(p_instance uuid) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
	SELECT o.due_at FROM pgwa.outbox o
	WHERE o.instance_id = p_instance AND o.status IN ('queued', 'scheduled', 'failed')
	ORDER BY o.due_at, o.seq LIMIT 1
$$;

-- Claims the head message of up to p_limit ready instances, in one statement.
-- An instance whose head is not due yet (or that has none left) only gets its
-- head_due corrected, so it drops out of the ready index until then.
CREATE FUNCTION pgwa._claim(p_limit int, p_lease_s int)
RETURNS TABLE (instance_id uuid, seq bigint, message_id uuid, attempt int, provider text,
               base_url text, broker_api_key text, broker_instance_id text, settings jsonb,
               payload jsonb)
LANGUAGE sql AS $$
	WITH ready AS (
		SELECT s.instance_id FROM pgwa.instance_state s
		WHERE s.head_due IS NOT NULL AND s.inflight_seq IS NULL
		  AND s.connection_state <> 'disconnected'
		  AND greatest(s.head_due, s.not_before) <= clock_timestamp()
		ORDER BY greatest(s.head_due, s.not_before)
		LIMIT p_limit
		FOR UPDATE SKIP LOCKED
	), heads AS (
		SELECT r.instance_id, h.seq, h.due_at, coalesce(h.due_at <= clock_timestamp(), false) AS due
		FROM ready r
		LEFT JOIN LATERAL (
			SELECT o.seq, o.due_at FROM pgwa.outbox o
			WHERE o.instance_id = r.instance_id AND o.status IN ('queued', 'scheduled', 'failed')
			ORDER BY o.due_at, o.seq LIMIT 1) h ON true
	), state AS (
		UPDATE pgwa.instance_state s
		SET head_due = CASE WHEN h.due THEN s.head_due ELSE h.due_at END,
		    inflight_seq = CASE WHEN h.due THEN h.seq END
		FROM heads h WHERE s.instance_id = h.instance_id
	)
	UPDATE pgwa.outbox o
	SET status = 'sending', attempts = o.attempts + 1, updated_at = clock_timestamp(),
	    lease_until = clock_timestamp() + make_interval(secs => p_lease_s)
	FROM heads h, pgwa.instances i
	WHERE h.due AND o.instance_id = h.instance_id AND o.seq = h.seq AND i.id = o.instance_id
	RETURNING o.instance_id, o.seq, o.id, o.attempts, i.provider, i.base_url, i.broker_api_key,
	          i.broker_instance_id, i.settings, o.payload
$$;

-- Records the outcome of one attempt.
--   sent          the broker accepted it (p_broker_id is its id)
--   retry         transient failure: retried with backoff (p_retry_after_ms
--                 overrides the backoff), dead once attempts are exhausted
--   dead          permanent failure
--   disconnected  the broker says the instance is offline: the attempt is
--                 given back and the instance's queue pauses
--   dryrun        mode dryrun: recorded as sent without a broker call
CREATE FUNCTION pgwa._complete(p_instance uuid, p_seq bigint, p_outcome text, p_http_status int,
                               p_broker_id text, p_error text, p_started_at timestamptz,
                               p_duration_ms double precision, p_retry_after_ms int)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	o        pgwa.outbox;
	i        pgwa.instances;
	v_now    timestamptz := clock_timestamp();
	v_next   timestamptz;
	v_result text := p_outcome;
	v_pace   interval;
BEGIN
	SELECT * INTO o FROM pgwa.outbox WHERE instance_id = p_instance AND seq = p_seq FOR UPDATE;
	IF NOT FOUND OR o.status <> 'sending' THEN
		-- Reclaimed after its lease expired, or canceled: this result is stale.
		RETURN 'stale';
	END IF;
	SELECT * INTO i FROM pgwa.instances WHERE id = p_instance;

	IF p_outcome = 'retry' AND o.attempts >= o.max_attempts THEN
		v_result := 'dead';
	END IF;

	INSERT INTO pgwa.attempts (instance_id, seq, attempt, started_at, duration_ms, outcome,
	                           http_status, error, broker_message_id)
	VALUES (p_instance, p_seq, o.attempts, p_started_at, p_duration_ms, v_result,
	        p_http_status, p_error, p_broker_id);

	IF v_result IN ('sent', 'dryrun') THEN
		UPDATE pgwa.outbox SET status = 'sent', sent_at = v_now, updated_at = v_now,
		       broker_message_id = p_broker_id, last_http_status = p_http_status,
		       last_error = NULL, lease_until = NULL, next_attempt_at = NULL
		WHERE instance_id = p_instance AND seq = p_seq;
		INSERT INTO pgwa.messages (instance_id, tenant_id, direction, broker_message_id, outbox_seq,
		                           remote, type, content, status, source)
		VALUES (p_instance, o.tenant_id, 'outbound', p_broker_id, p_seq, o.recipient, o.type,
		        o.payload, 'sent', 'api')
		ON CONFLICT (instance_id, broker_message_id) DO NOTHING;
		-- Human pace: a random pause in [min, max] plus the message's delayMessage.
		v_pace := make_interval(secs => (i.delay_min_ms + random() * (i.delay_max_ms - i.delay_min_ms)) / 1000.0
		                                + o.delay_message_s);
		UPDATE pgwa.instance_state SET inflight_seq = NULL, not_before = v_now + v_pace,
		       head_due = pgwa._head_due(p_instance)
		WHERE instance_id = p_instance;
	ELSIF v_result = 'retry' THEN
		v_next := v_now + CASE WHEN p_retry_after_ms IS NOT NULL AND p_retry_after_ms > 0
		                       THEN make_interval(secs => least(p_retry_after_ms, 3600000) / 1000.0)
		                       ELSE make_interval(secs => power(2, o.attempts - 1)) END;
		UPDATE pgwa.outbox SET status = 'failed', updated_at = v_now, next_attempt_at = v_next,
		       last_http_status = p_http_status, last_error = p_error, lease_until = NULL
		WHERE instance_id = p_instance AND seq = p_seq;
		-- The message keeps its place at the head: its instance waits for it.
		UPDATE pgwa.instance_state SET inflight_seq = NULL, not_before = v_next,
		       head_due = pgwa._head_due(p_instance)
		WHERE instance_id = p_instance;
	ELSIF v_result = 'dead' THEN
		UPDATE pgwa.outbox SET status = 'dead', dead_at = v_now, updated_at = v_now,
		       last_http_status = p_http_status, last_error = p_error, lease_until = NULL,
		       next_attempt_at = NULL
		WHERE instance_id = p_instance AND seq = p_seq;
		UPDATE pgwa.instance_state SET inflight_seq = NULL, head_due = pgwa._head_due(p_instance)
		WHERE instance_id = p_instance;
	ELSIF v_result = 'disconnected' THEN
		UPDATE pgwa.outbox SET status = 'queued', attempts = attempts - 1, updated_at = v_now,
		       last_http_status = p_http_status, last_error = p_error, lease_until = NULL
		WHERE instance_id = p_instance AND seq = p_seq;
		UPDATE pgwa.instance_state SET inflight_seq = NULL, connection_state = 'disconnected',
		       state_changed_at = v_now, head_due = pgwa._head_due(p_instance)
		WHERE instance_id = p_instance;
	ELSE
		RAISE EXCEPTION 'unknown outcome %', p_outcome;
	END IF;
	RETURN v_result;
END $$;

-- Gives back messages whose lease expired (their dispatcher died or lost
-- them). They are sent again with the same Idempotency-Key. With p_all,
-- every claimed message is given back: the dispatcher does this when it
-- starts, since it is the only one that claims.
CREATE FUNCTION pgwa._release_leases(p_all boolean DEFAULT false) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
	r record;
	n int := 0;
BEGIN
	FOR r IN SELECT o.instance_id, o.seq FROM pgwa.outbox o
	         WHERE o.status = 'sending' AND (p_all OR o.lease_until < clock_timestamp())
	         ORDER BY o.instance_id, o.seq
	         FOR UPDATE SKIP LOCKED
	LOOP
		INSERT INTO pgwa.attempts (instance_id, seq, attempt, started_at, outcome, error)
		SELECT r.instance_id, r.seq, o.attempts, o.updated_at, 'lease_expired', 'claim released without a result'
		FROM pgwa.outbox o WHERE o.instance_id = r.instance_id AND o.seq = r.seq;
		UPDATE pgwa.outbox SET status = 'failed', lease_until = NULL, updated_at = clock_timestamp(),
		       last_error = 'claim released without a result'
		WHERE instance_id = r.instance_id AND seq = r.seq;
		UPDATE pgwa.instance_state SET inflight_seq = NULL, head_due = pgwa._head_due(r.instance_id)
		WHERE instance_id = r.instance_id;
		n := n + 1;
	END LOOP;
	RETURN n;
END $$;

-- When the dispatcher next has something to do (NULL: nothing pending).
CREATE FUNCTION pgwa._next_due() RETURNS timestamptz
LANGUAGE sql STABLE AS $$
	SELECT min(greatest(s.head_due, s.not_before)) FROM pgwa.instance_state s
	WHERE s.head_due IS NOT NULL AND s.inflight_seq IS NULL AND s.connection_state <> 'disconnected'
$$;
