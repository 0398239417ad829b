-------------------------------------------------------------------------------
-- Queue management: list, cancel, purge, dead letters and their replay.
--
-- Every change to an instance's pending messages first locks its
-- instance_state row. The dispatcher's claim locks that row too (SKIP
-- LOCKED), so a claim never turns a message canceled here into 'sending',
-- and a message it has already claimed is seen here as 'sending' and left
-- alone. head_due is recomputed after each change, so the ready index keeps
-- pointing at the right head.
--
-- Those that call pgwa._head_due() are plpgsql: it is created later in the
-- install script, and plpgsql bodies are resolved only when they run.
-------------------------------------------------------------------------------

-- Dead letters of an instance, newest first, without scanning its history.
CREATE INDEX outbox_dead ON pgwa.outbox (instance_id, dead_at DESC, seq DESC) WHERE status = 'dead';

-- Every status a message can have, and those still waiting to go out.
CREATE FUNCTION pgwa._message_statuses() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ARRAY['queued', 'scheduled', 'sending', 'failed', 'sent', 'delivered', 'read', 'dead', 'canceled'];

CREATE FUNCTION pgwa._waiting_statuses() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ARRAY['queued', 'scheduled', 'failed'];

-- Locks an instance's queue (its instance_state row) for a change; 404 when
-- there is no such instance.
CREATE FUNCTION pgwa._lock_queue(p_instance uuid) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM 1 FROM pgwa.instance_state WHERE instance_id = p_instance FOR UPDATE;
	IF NOT FOUND THEN
		PERFORM pgwa._raise('PW404', 'instance not found', 'instance_id');
	END IF;
END $$;

-- Validates a page request (limit 1-500, offset >= 0).
CREATE FUNCTION pgwa._check_page(p_limit int, p_offset int) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
	IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 500 THEN
		PERFORM pgwa._raise('PW400', 'limit must be between 1 and 500', 'limit');
	END IF;
	IF p_offset IS NULL OR p_offset < 0 THEN
		PERFORM pgwa._raise('PW400', 'offset must be 0 or more', 'offset');
	END IF;
END $$;

-- How many messages an instance still has to send: those waiting plus the
-- one in flight. Read through the pending index and the in-flight pointer,
-- so its cost does not grow with the instance's history.
CREATE FUNCTION pgwa._queue_length(p_instance uuid) RETURNS bigint
LANGUAGE sql STABLE AS $$
	SELECT (SELECT count(*) FROM pgwa.outbox o
	        WHERE o.instance_id = p_instance AND o.status IN ('queued', 'scheduled', 'failed'))
	     + (SELECT count(*) FROM pgwa.instance_state s
	        JOIN pgwa.outbox o ON o.instance_id = s.instance_id AND o.seq = s.inflight_seq
	        WHERE s.instance_id = p_instance AND o.status = 'sending')
$$;

-- A page of an instance's messages in sending order (due_at, seq), filtered
-- by status (default: those still to be sent, in flight included) and type:
-- {items, queueLength, total, limit, offset}.
CREATE FUNCTION pgwa.queue_list(p_instance uuid, p_status text[] DEFAULT NULL, p_type text DEFAULT NULL,
                                p_limit int DEFAULT 50, p_offset int DEFAULT 0)
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
	v_status   text[] := coalesce(p_status, pgwa._waiting_statuses() || 'sending'::text);
	v_others   boolean;
	v_inflight bigint;
	v_total    bigint;
	v_items    jsonb;
BEGIN
	SELECT s.inflight_seq INTO v_inflight FROM pgwa.instance_state s WHERE s.instance_id = p_instance;
	IF NOT FOUND THEN
		PERFORM pgwa._raise('PW404', 'instance not found', 'instance_id');
	END IF;
	PERFORM pgwa._check_page(p_limit, p_offset);
	IF cardinality(v_status) = 0 OR array_position(v_status, NULL) IS NOT NULL
	   OR NOT v_status <@ pgwa._message_statuses() THEN
		PERFORM pgwa._raise('PW400', 'status must be a list of: '
		                    || array_to_string(pgwa._message_statuses(), ', '), 'status');
	END IF;
	IF p_type IS NOT NULL AND p_type !~ '^[a-z]{1,32}$' THEN
		PERFORM pgwa._raise('PW400', 'type must be a message type such as text or image', 'type');
	END IF;
	v_others := EXISTS (SELECT 1 FROM unnest(v_status) s
	                    WHERE s NOT IN ('queued', 'scheduled', 'failed', 'sending'));

	-- Three parts, so that the usual question (what is still to go out)
	-- reads the pending index and the in-flight row only.
	WITH m AS (
		SELECT o.id, o.due_at, o.seq FROM pgwa.outbox o
		WHERE o.instance_id = p_instance AND o.status IN ('queued', 'scheduled', 'failed')
		  AND o.status = ANY (v_status) AND (p_type IS NULL OR o.type = p_type)
		UNION ALL
		SELECT o.id, o.due_at, o.seq FROM pgwa.outbox o
		WHERE o.instance_id = p_instance AND o.seq = v_inflight AND o.status = 'sending'
		  AND 'sending' = ANY (v_status) AND (p_type IS NULL OR o.type = p_type)
		UNION ALL
		SELECT o.id, o.due_at, o.seq FROM pgwa.outbox o
		WHERE v_others AND o.instance_id = p_instance
		  AND o.status NOT IN ('queued', 'scheduled', 'failed', 'sending')
		  AND o.status = ANY (v_status) AND (p_type IS NULL OR o.type = p_type)
	), numbered AS (
		SELECT m.id, row_number() OVER (ORDER BY m.due_at, m.seq) AS n FROM m
	)
	SELECT count(*),
	       coalesce(jsonb_agg(pgwa.message_json(numbered.id) ORDER BY numbered.n)
	                FILTER (WHERE numbered.n > p_offset AND numbered.n <= p_offset::bigint + p_limit), '[]')
	INTO v_total, v_items FROM numbered;

	RETURN jsonb_build_object('items', v_items, 'queueLength', pgwa._queue_length(p_instance),
	                          'total', v_total, 'limit', p_limit, 'offset', p_offset);
END $$;

-- Cancels every message of an instance still waiting to be sent (queued,
-- scheduled, failed), or only those created before p_older_than. The
-- message in flight is left alone. Returns how many were canceled.
CREATE FUNCTION pgwa.queue_purge(p_instance uuid, p_older_than timestamptz DEFAULT NULL) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
	v_now timestamptz := clock_timestamp();
	n     int;
BEGIN
	PERFORM pgwa._lock_queue(p_instance);
	UPDATE pgwa.outbox o
	SET status = 'canceled', canceled_at = v_now, updated_at = v_now, next_attempt_at = NULL
	WHERE o.instance_id = p_instance AND o.status IN ('queued', 'scheduled', 'failed')
	  AND (p_older_than IS NULL OR o.created_at < p_older_than);
	GET DIAGNOSTICS n = ROW_COUNT;
	UPDATE pgwa.instance_state SET head_due = pgwa._head_due(p_instance)
	WHERE instance_id = p_instance;
	RETURN n;
END $$;

-- Finds a message and locks its instance's queue and its row; returns its
-- instance and status.
CREATE FUNCTION pgwa._lock_message(p_message uuid, OUT instance_id uuid, OUT status text)
LANGUAGE plpgsql AS $$
BEGIN
	SELECT o.instance_id INTO instance_id FROM pgwa.outbox o WHERE o.id = p_message;
	IF NOT FOUND THEN
		PERFORM pgwa._raise('PW404', 'message not found', 'message_id');
	END IF;
	PERFORM pgwa._lock_queue(_lock_message.instance_id);
	-- Read again under the lock: the dispatcher may have claimed it meanwhile.
	SELECT o.status INTO status FROM pgwa.outbox o
	WHERE o.instance_id = _lock_message.instance_id AND o.id = p_message FOR UPDATE;
END $$;

-- Cancels one message that has not been sent yet and returns it. A message
-- being sent, or already final, cannot be canceled (PW411).
CREATE FUNCTION pgwa.cancel(p_message uuid) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	m     record;
	v_now timestamptz := clock_timestamp();
BEGIN
	m := pgwa._lock_message(p_message);
	IF m.status = 'sending' THEN
		PERFORM pgwa._raise('PW411', 'the message is being sent', 'message_id');
	ELSIF m.status <> ALL (pgwa._waiting_statuses()) THEN
		PERFORM pgwa._raise('PW411', format('the message cannot be canceled: it is already %s', m.status),
		                    'message_id', format('status %s', m.status));
	END IF;
	UPDATE pgwa.outbox SET status = 'canceled', canceled_at = v_now, updated_at = v_now,
	       next_attempt_at = NULL
	WHERE instance_id = m.instance_id AND id = p_message;
	UPDATE pgwa.instance_state SET head_due = pgwa._head_due(m.instance_id)
	WHERE instance_id = m.instance_id;
	RETURN pgwa.message_json(p_message);
END $$;

-- A page of an instance's dead letters, newest first, each with its last
-- error, last HTTP status and attempts: {items, total, limit, offset}.
CREATE FUNCTION pgwa.dead_letters(p_instance uuid, p_limit int DEFAULT 50, p_offset int DEFAULT 0)
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
	v_items jsonb;
BEGIN
	PERFORM 1 FROM pgwa.instances WHERE id = p_instance;
	IF NOT FOUND THEN
		PERFORM pgwa._raise('PW404', 'instance not found', 'instance_id');
	END IF;
	PERFORM pgwa._check_page(p_limit, p_offset);
	SELECT coalesce(jsonb_agg(pgwa.message_json(d.id) ORDER BY d.dead_at DESC, d.seq DESC), '[]')
	INTO v_items
	FROM (SELECT o.id, o.dead_at, o.seq FROM pgwa.outbox o
	      WHERE o.instance_id = p_instance AND o.status = 'dead'
	      ORDER BY o.dead_at DESC, o.seq DESC LIMIT p_limit OFFSET p_offset) d;
	RETURN jsonb_build_object(
		'items', v_items,
		'total', (SELECT count(*) FROM pgwa.outbox o WHERE o.instance_id = p_instance AND o.status = 'dead'),
		'limit', p_limit, 'offset', p_offset);
END $$;

-- Puts dead letters back in the queue, due at p_now: attempts start again
-- from zero, and the id (so the Idempotency-Key the broker sees) is kept.
-- They take their place by due time, behind what is already waiting.
CREATE FUNCTION pgwa._requeue_dead(p_instance uuid, p_message uuid, p_now timestamptz) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
	n int;
BEGIN
	UPDATE pgwa.outbox o
	SET status = 'queued', attempts = 0, due_at = p_now, dead_at = NULL, next_attempt_at = NULL,
	    lease_until = NULL, updated_at = p_now
	WHERE o.instance_id = p_instance AND o.status = 'dead' AND (p_message IS NULL OR o.id = p_message);
	GET DIAGNOSTICS n = ROW_COUNT;
	IF n > 0 THEN
		UPDATE pgwa.instance_state SET head_due = pgwa._head_due(p_instance)
		WHERE instance_id = p_instance;
		PERFORM pgwa._wake_dispatcher_on_commit();
	END IF;
	RETURN n;
END $$;

-- Replays one dead letter: it is queued again (at the tail, by due time)
-- and returned. Any other message is a PW414.
CREATE FUNCTION pgwa.replay(p_message uuid) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	m record;
BEGIN
	m := pgwa._lock_message(p_message);
	IF m.status <> 'dead' THEN
		PERFORM pgwa._raise('PW414', format('only dead letters can be replayed: the message is %s', m.status),
		                    'message_id', format('status %s', m.status));
	END IF;
	PERFORM pgwa._requeue_dead(m.instance_id, p_message, clock_timestamp());
	RETURN pgwa.message_json(p_message);
END $$;

-- Replays every dead letter of an instance. They share one due time, so
-- they go out in their original order (seq). Returns how many.
CREATE FUNCTION pgwa.replay_dead_letters(p_instance uuid) RETURNS int
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pgwa._lock_queue(p_instance);
	RETURN pgwa._requeue_dead(p_instance, NULL, clock_timestamp());
END $$;
