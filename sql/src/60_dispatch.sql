-------------------------------------------------------------------------------
-- Dispatcher support. The background worker calls these through prepared
-- SPI plans: _claim in one short transaction, HTTP with no transaction open,
-- _complete for the results in a second short transaction.
-------------------------------------------------------------------------------

-- The first pending message of an instance, in sending order.
-- plpgsql, not sql: with ORDER BY ... LIMIT a sql function cannot be inlined
-- and would be planned again at every call; plpgsql keeps its plan.
CREATE FUNCTION pgwa._head_due(p_instance uuid) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
BEGIN
	RETURN (SELECT o.due_at FROM pgwa.outbox o
	        WHERE o.instance_id = p_instance AND o.status IN ('queued', 'scheduled', 'failed')
	        ORDER BY o.due_at, o.seq LIMIT 1);
END $$;

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

-- Records the outcomes of a batch of attempts in one statement. p_results is
-- a JSON array of {i: instance_id, s: seq, o: outcome, h: http status,
-- b: broker id, e: error, t: started at, d: duration ms, r: retry-after ms,
-- c: failure class when there was no HTTP answer (timeout, connect, other)}.
-- Outcomes:
--   sent          the broker accepted it (b is its id)
--   retry         transient failure: retried with backoff (r overrides the
--                 backoff), dead once attempts are exhausted
--   dead          permanent failure
--   disconnected  the broker says the instance is offline: the attempt is
--                 given back and the instance's queue pauses
--   dryrun        mode dryrun: recorded as sent without a broker call
-- Results for messages no longer being sent (lease released, canceled) are
-- stale and ignored. Returns the outcome recorded for each message and, for
-- those sent, the seconds since they were enqueued. The batch is counted in
-- pgwa.delivery_counts with one upsert per (instance, type).
CREATE FUNCTION pgwa._complete_batch(p_results jsonb)
RETURNS TABLE (instance_id uuid, seq bigint, outcome text, latency_s double precision)
LANGUAGE sql AS $$
	WITH r AS (
		SELECT * FROM jsonb_to_recordset(p_results)
			AS r(i uuid, s bigint, o text, h int, b text, e text, t timestamptz, d float8, r int, c text)
	), cur AS (
		SELECT o.instance_id, o.seq, o.attempts, o.tenant_id, o.recipient, o.type, o.payload,
		       o.delay_message_s, o.due_at, r.h, r.b, r.e, r.t, r.d, r.r,
		       CASE WHEN r.o = 'retry' AND o.attempts >= o.max_attempts THEN 'dead' ELSE r.o END AS outcome,
		       -- the failure class of GET /metrics (see pgwa.delivery_counts)
		       CASE WHEN r.o IN ('sent', 'dryrun') THEN NULL
		            WHEN r.o = 'disconnected' THEN 'disconnected'
		            WHEN r.h = 429 THEN 'http_429'
		            WHEN r.h BETWEEN 400 AND 499 THEN 'http_4xx'
		            WHEN r.h BETWEEN 500 AND 599 THEN 'http_5xx'
		            WHEN r.h IS NULL AND r.c IN ('timeout', 'connect') THEN r.c
		            ELSE 'other' END AS class,
		       clock_timestamp() AS now
		FROM r JOIN pgwa.outbox o ON o.instance_id = r.i AND o.seq = r.s
		WHERE o.status = 'sending'
		FOR UPDATE OF o
	), att AS (
		INSERT INTO pgwa.attempts (instance_id, seq, attempt, started_at, duration_ms, outcome,
		                           http_status, error, broker_message_id)
		SELECT c.instance_id, c.seq, c.attempts, c.t, c.d, c.outcome, c.h, c.e, c.b FROM cur c
	), upd AS (
		UPDATE pgwa.outbox o
		-- an unknown outcome yields NULL and fails the NOT NULL constraint
		SET status = CASE c.outcome WHEN 'retry' THEN 'failed' WHEN 'dead' THEN 'dead'
		                            WHEN 'disconnected' THEN 'queued' WHEN 'sent' THEN 'sent'
		                            WHEN 'dryrun' THEN 'sent' END,
		    attempts = o.attempts - CASE WHEN c.outcome = 'disconnected' THEN 1 ELSE 0 END,
		    sent_at = CASE WHEN c.outcome IN ('sent', 'dryrun') THEN c.now ELSE o.sent_at END,
		    dead_at = CASE WHEN c.outcome = 'dead' THEN c.now ELSE o.dead_at END,
		    next_attempt_at = CASE WHEN c.outcome <> 'retry' THEN NULL
		                           WHEN c.r > 0 THEN c.now + make_interval(secs => least(c.r, 3600000) / 1000.0)
		                           ELSE c.now + make_interval(secs => power(2, c.attempts - 1)) END,
		    broker_message_id = CASE WHEN c.outcome IN ('sent', 'dryrun') THEN c.b ELSE o.broker_message_id END,
		    last_http_status = c.h,
		    last_error = CASE WHEN c.outcome IN ('sent', 'dryrun') THEN NULL ELSE c.e END,
		    lease_until = NULL,
		    updated_at = c.now
		FROM cur c
		WHERE o.instance_id = c.instance_id AND o.seq = c.seq
		-- carry what the state update needs: joining cur again would be a
		-- nested loop over two CTE scans (the planner cannot size them)
		RETURNING o.instance_id, o.seq, c.outcome, o.next_attempt_at, c.now, c.delay_message_s, c.due_at,
		          o.created_at, c.tenant_id, c.recipient
	), msg AS (
		INSERT INTO pgwa.messages (instance_id, tenant_id, direction, broker_message_id, outbox_seq,
		                           remote, type, content, status, source)
		SELECT c.instance_id, c.tenant_id, 'outbound', c.b, c.seq, c.recipient, c.type, c.payload, 'sent', 'api'
		FROM cur c WHERE c.outcome IN ('sent', 'dryrun')
		ON CONFLICT DO NOTHING
	), state AS (
		-- This statement's snapshot does not see upd: the message just finished
		-- still reads as 'sending', so the next head is computed from the other
		-- pending messages plus, when it stays pending, the message itself.
		UPDATE pgwa.instance_state s
		SET inflight_seq = NULL,
		    not_before = CASE
		        -- human pace: a random pause in [min, max] plus the message's delayMessage
		        WHEN u.outcome IN ('sent', 'dryrun') THEN u.now + make_interval(secs =>
		            (i.delay_min_ms + random() * (i.delay_max_ms - i.delay_min_ms)) / 1000.0 + u.delay_message_s)
		        WHEN u.outcome = 'retry' THEN u.next_attempt_at
		        ELSE s.not_before END,
		    connection_state = CASE WHEN u.outcome = 'disconnected' THEN 'disconnected' ELSE s.connection_state END,
		    state_changed_at = CASE WHEN u.outcome = 'disconnected' THEN u.now ELSE s.state_changed_at END,
		    head_due = CASE WHEN u.outcome IN ('retry', 'disconnected')
		                    THEN least(pgwa._head_due(s.instance_id), u.due_at)
		                    ELSE pgwa._head_due(s.instance_id) END
		FROM upd u
		JOIN pgwa.instances i ON i.id = u.instance_id
		WHERE s.instance_id = u.instance_id
	), counts AS (
		-- one row per (instance, type) of the batch: ON CONFLICT may touch a row once
		INSERT INTO pgwa.delivery_counts AS d (instance_id, type, sent, retried, dead,
		       fail_timeout, fail_connect, fail_http_4xx, fail_http_5xx, fail_http_429,
		       fail_disconnected, fail_other)
		SELECT c.instance_id, c.type,
		       count(*) FILTER (WHERE c.outcome IN ('sent', 'dryrun')),
		       count(*) FILTER (WHERE c.outcome = 'retry'),
		       count(*) FILTER (WHERE c.outcome = 'dead'),
		       count(*) FILTER (WHERE c.class = 'timeout'),
		       count(*) FILTER (WHERE c.class = 'connect'),
		       count(*) FILTER (WHERE c.class = 'http_4xx'),
		       count(*) FILTER (WHERE c.class = 'http_5xx'),
		       count(*) FILTER (WHERE c.class = 'http_429'),
		       count(*) FILTER (WHERE c.class = 'disconnected'),
		       count(*) FILTER (WHERE c.class = 'other')
		FROM cur c GROUP BY c.instance_id, c.type
		ON CONFLICT (instance_id, type) DO UPDATE
		SET sent = d.sent + excluded.sent, retried = d.retried + excluded.retried,
		    dead = d.dead + excluded.dead, fail_timeout = d.fail_timeout + excluded.fail_timeout,
		    fail_connect = d.fail_connect + excluded.fail_connect,
		    fail_http_4xx = d.fail_http_4xx + excluded.fail_http_4xx,
		    fail_http_5xx = d.fail_http_5xx + excluded.fail_http_5xx,
		    fail_http_429 = d.fail_http_429 + excluded.fail_http_429,
		    fail_disconnected = d.fail_disconnected + excluded.fail_disconnected,
		    fail_other = d.fail_other + excluded.fail_other
	)
	SELECT u.instance_id, u.seq, u.outcome,
	       CASE WHEN u.outcome IN ('sent', 'dryrun')
	            THEN extract(epoch FROM u.now - u.created_at)::double precision END
	FROM upd u
	-- The ticket timeline's outbound side, only for recipients that are leads
	-- (one index probe for the others, so bulk sends pay almost nothing).
	LEFT JOIN LATERAL (
		SELECT pgwa._timeline_outbound(u.instance_id, u.recipient, u.now) AS ticket
		WHERE u.outcome IN ('sent', 'dryrun')
		  AND EXISTS (SELECT 1 FROM pgwa.leads l
		              WHERE l.tenant_id = u.tenant_id
		                AND (l.phone = split_part(u.recipient, '@', 1) OR l.lid = u.recipient))) t ON true
$$;

-- Records the outcome of one attempt (see _complete_batch); 'stale' when the
-- message is no longer being sent.
CREATE FUNCTION pgwa._complete(p_instance uuid, p_seq bigint, p_outcome text, p_http_status int,
                               p_broker_id text, p_error text, p_started_at timestamptz,
                               p_duration_ms double precision, p_retry_after_ms int,
                               p_error_class text DEFAULT NULL)
RETURNS text
LANGUAGE sql AS $$
	SELECT coalesce((SELECT b.outcome FROM pgwa._complete_batch(jsonb_build_array(jsonb_build_object(
		'i', p_instance, 's', p_seq, 'o', p_outcome, 'h', p_http_status, 'b', p_broker_id,
		'e', p_error, 't', p_started_at, 'd', p_duration_ms, 'r', p_retry_after_ms,
		'c', p_error_class))) b), 'stale')
$$;

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

-- Whether the dispatcher is running and serving this database.
CREATE FUNCTION pgwa._dispatcher_serves_here() RETURNS boolean
LANGUAGE sql VOLATILE AS $$
	SELECT pgwa.dispatcher_pid() IS NOT NULL
	       AND current_setting('pgwa.database', true) IS NOT DISTINCT FROM current_database()
$$;
