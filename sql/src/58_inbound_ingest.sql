-------------------------------------------------------------------------------
-- Inbound, part 3: webhook events are stored first, then applied; an event
-- whose application fails stays stored and is retried with backoff (seed
-- 000, "Session store & inbound queue"; ARCHITECTURE, inbound pipeline).
-------------------------------------------------------------------------------

-- The events of a body: its elements when it is an array (or {"events": [...]}),
-- else the body itself.
CREATE FUNCTION pgwa._body_events(p_body jsonb) RETURNS SETOF jsonb
LANGUAGE sql IMMUTABLE AS $$
	SELECT e FROM jsonb_array_elements(CASE
		WHEN jsonb_typeof(p_body) = 'array' THEN p_body
		WHEN jsonb_typeof(p_body->'events') = 'array' AND NOT p_body ? 'type' AND NOT p_body ? 'event'
			THEN p_body->'events'
		ELSE jsonb_build_array(p_body) END) e
$$;

-- The instanceId a body names (its first event's), as written.
CREATE FUNCTION pgwa._inbound_instance_key(p_body jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
	SELECT coalesce(e->>'instanceId', e->'payload'->>'instanceId')
	FROM pgwa._body_events(p_body) e WHERE jsonb_typeof(e) = 'object' LIMIT 1
$$;

-- True when a body is (or holds) a raw Baileys upsert.
CREATE FUNCTION pgwa._is_raw_upsert(p_body jsonb, p_dialect text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
	SELECT p_dialect = 'baileys' OR EXISTS (
		SELECT 1 FROM pgwa._body_events(p_body) e
		WHERE jsonb_typeof(e) = 'object'
		  AND 'WHATSAPP_MESSAGES_UPSERT' IN (e->>'event', e->>'type'))
$$;

-- The payload_type label of a body: one of a fixed few, whatever it says.
CREATE FUNCTION pgwa._payload_type(p_body jsonb, p_dialect text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
	SELECT CASE WHEN pgwa._is_raw_upsert(p_body, p_dialect) THEN 'WHATSAPP_MESSAGES_UPSERT'
	            WHEN EXISTS (SELECT 1 FROM pgwa._body_events(p_body) e
	                         WHERE jsonb_typeof(e) = 'object' AND e->>'type' = 'MESSAGE_INBOUND')
	                 OR p_dialect = 'envelope' THEN 'MESSAGE_INBOUND'
	            ELSE 'unknown' END
$$;

-- The raw Baileys fallback is off unless the instance's settings say
-- "raw_fallback": true (seed 000: WHATSAPP_RAW_FALLBACK_ENABLED, per instance here).
CREATE FUNCTION pgwa._raw_fallback_enabled(i pgwa.instances) RETURNS boolean
LANGUAGE sql IMMUTABLE
RETURN coalesce(i.settings->>'raw_fallback', 'false') = 'true';

-- An event's outcome as the API reports it.
CREATE FUNCTION pgwa._event_result(ev pgwa.webhook_events) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT jsonb_strip_nulls(jsonb_build_object(
		'eventId', ev.id, 'status', ev.status, 'attempts', ev.attempts,
		'accepted', coalesce((ev.result->>'accepted')::int, 0),
		'duplicates', coalesce((ev.result->>'duplicates')::int, 0),
		'ignored', coalesce((ev.result->>'ignored')::int, 0),
		'nextAttemptAt', pgwa._iso(ev.next_attempt_at),
		'error', CASE WHEN ev.status IN ('rejected', 'failed') THEN jsonb_strip_nulls(jsonb_build_object(
			'sqlstate', ev.error_sqlstate,
			'code', (SELECT c.code FROM pgwa.error_codes c WHERE c.sqlstate = ev.error_sqlstate),
			'message', ev.last_error, 'field', nullif(ev.error_field, ''))) END))
$$;

-- Normalises and applies a stored event, all or nothing. A validation error
-- marks it rejected (kept, not retried); any other error marks it failed,
-- to be retried at next_attempt_at (5 s, doubling, at most 1 h apart, with
-- no limit on attempts: a stored event is never dropped). Counters move
-- only with an outcome that sticks.
CREATE FUNCTION pgwa._apply_event(p_id bigint, p_replay boolean) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	ev        pgwa.webhook_events;
	inst      pgwa.instances;
	envs      jsonb[];
	e         jsonb;
	r         jsonb;
	v_items   jsonb := '[]';
	v_raw     boolean;
	v_ptype   text;
	v_state   text;
	v_message text;
	v_field   text;
	v_reason  text;
	v_status  text;
BEGIN
	SELECT * INTO ev FROM pgwa.webhook_events WHERE id = p_id FOR UPDATE;
	IF ev.id IS NULL THEN
		PERFORM pgwa._raise('PW404', 'webhook event not found', 'event_id');
	END IF;
	IF NOT p_replay AND ev.status NOT IN ('received', 'failed') THEN
		RETURN pgwa._event_result(ev);
	END IF;
	SELECT * INTO inst FROM pgwa.instances WHERE id = ev.instance_id;
	v_raw := pgwa._is_raw_upsert(ev.body, ev.dialect);
	v_ptype := pgwa._payload_type(ev.body, ev.dialect);

	IF v_raw AND NOT pgwa._raw_fallback_enabled(inst) THEN
		v_state := 'PW422';
		v_message := 'raw Baileys events are not enabled for this instance (settings.raw_fallback)';
		v_field := 'event';
		v_reason := 'raw_fallback_disabled';
	ELSE
		BEGIN
			envs := pgwa.normalize_inbound(ev.body, ev.dialect);
			FOREACH e IN ARRAY envs LOOP
				IF e->>'instanceId' IS DISTINCT FROM inst.broker_instance_id THEN
					PERFORM pgwa._raise('PW422', format('instanceId "%s" is not the instance of this webhook secret',
					                                    e->>'instanceId'), 'instanceId');
				END IF;
			END LOOP;
			-- By sender, so that concurrent events lock senders in one order.
			FOR e IN SELECT x FROM unnest(envs) WITH ORDINALITY AS u(x, n)
			         ORDER BY coalesce(x->'payload'->'contact'->>'phone', x->'payload'->'contact'->>'lid', ''),
			                  x->>'timestamp', n
			LOOP
				IF e->>'type' = 'IGNORED' THEN
					r := jsonb_build_object('result', 'ignored', 'brokerMessageId', e->>'id', 'reason', e->>'reason');
				ELSE
					r := pgwa._apply_message(inst, ev.id, ev.received_at, e);
				END IF;
				v_items := v_items || jsonb_build_array(r || jsonb_build_object('payloadType', e->>'payloadType'));
			END LOOP;
		EXCEPTION WHEN others THEN
			GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT, v_field = COLUMN_NAME;
			v_reason := CASE v_state WHEN 'PW400' THEN 'validation_failed' WHEN 'PW422' THEN 'unprocessable' END;
		END;
	END IF;

	IF v_state IS NULL THEN
		SELECT CASE WHEN count(*) FILTER (WHERE i->>'result' = 'accepted') > 0 THEN 'applied'
		            WHEN count(*) FILTER (WHERE i->>'result' = 'duplicate') > 0 THEN 'duplicate'
		            ELSE 'ignored' END,
		       jsonb_build_object('accepted', count(*) FILTER (WHERE i->>'result' = 'accepted'),
		                          'duplicates', count(*) FILTER (WHERE i->>'result' = 'duplicate'),
		                          'ignored', count(*) FILTER (WHERE i->>'result' = 'ignored'),
		                          'messages', v_items)
		INTO v_status, r
		FROM jsonb_array_elements(v_items) i;
		UPDATE pgwa.webhook_events SET status = v_status, attempts = attempts + 1, applied_at = now(),
		       payload_type = v_ptype, result = r, last_error = NULL, error_sqlstate = NULL,
		       error_field = NULL, next_attempt_at = NULL
		WHERE instance_id = ev.instance_id AND id = ev.id
		RETURNING * INTO ev;
		PERFORM pgwa._count_webhook(c.result, c.reason, c.payload_type, c.n::int)
		FROM (SELECT i->>'result' AS result,
		             CASE i->>'result'
		                 WHEN 'accepted' THEN CASE i->>'payloadType' WHEN 'WHATSAPP_MESSAGES_UPSERT'
		                                      THEN 'raw_inbound_normalized' ELSE 'inbound_envelope' END
		                 WHEN 'ignored' THEN 'raw_inbound_ignored'
		                 ELSE 'duplicate_message' END AS reason,
		             i->>'payloadType' AS payload_type, count(*) AS n
		      FROM jsonb_array_elements(v_items) i GROUP BY 1, 2, 3) c;
	ELSIF v_reason IS NOT NULL THEN
		UPDATE pgwa.webhook_events SET status = 'rejected', attempts = attempts + 1, payload_type = v_ptype,
		       last_error = v_message, error_sqlstate = v_state, error_field = nullif(v_field, ''),
		       next_attempt_at = NULL, result = NULL
		WHERE instance_id = ev.instance_id AND id = ev.id
		RETURNING * INTO ev;
		PERFORM pgwa._count_webhook('rejected', v_reason, v_ptype);
	ELSE
		RAISE WARNING 'pgwa inbound: event % of instance % failed (SQLSTATE %): %',
			ev.id, ev.instance_id, v_state, v_message;
		UPDATE pgwa.webhook_events SET status = 'failed', attempts = attempts + 1, payload_type = v_ptype,
		       last_error = v_message, error_sqlstate = v_state, error_field = NULL,
		       next_attempt_at = now() + least(interval '1 hour', interval '5 seconds' * power(2, least(attempts, 20)))
		WHERE instance_id = ev.instance_id AND id = ev.id
		RETURNING * INTO ev;
		PERFORM pgwa._count_webhook('failed', 'apply_error', v_ptype);
	END IF;
	RETURN pgwa._event_result(ev);
END $$;

-- Applies a stored event that has not been applied yet (received or failed);
-- for any other event it only reports its outcome.
CREATE FUNCTION pgwa.apply_event(p_event_id bigint) RETURNS jsonb
LANGUAGE sql AS $$ SELECT pgwa._apply_event(p_event_id, false) $$;

-- Applies a stored event again whatever its status: a rejected event after
-- its instance was fixed (say, raw_fallback turned on), or any event to
-- check it (what was applied before comes out as duplicates).
CREATE FUNCTION pgwa.replay_event(p_event_id bigint) RETURNS jsonb
LANGUAGE sql AS $$ SELECT pgwa._apply_event(p_event_id, true) $$;

-- Applies up to p_limit stored events that wait for it, each on its own:
-- failed events whose retry time has come, and events stored but never
-- applied (committed as received by a writer that does not apply them).
-- Returns how many were tried. Meant for the background worker or pg_cron;
-- concurrent callers skip each other's events.
CREATE FUNCTION pgwa.retry_failed_events(p_limit int DEFAULT 100) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
	r record;
	n int := 0;
BEGIN
	FOR r IN SELECT w.id FROM pgwa.webhook_events w
	         WHERE (w.status = 'failed' AND w.next_attempt_at <= now()) OR w.status = 'received'
	         ORDER BY coalesce(w.next_attempt_at, w.received_at) LIMIT p_limit
	         FOR UPDATE SKIP LOCKED
	LOOP
		PERFORM pgwa._apply_event(r.id, false);
		n := n + 1;
	END LOOP;
	RETURN n;
END $$;

-- Deletes stored webhook bodies older than p_older_than, except failed ones
-- still waiting for a retry. Returns how many went.
CREATE FUNCTION pgwa.purge_webhook_events(p_older_than interval DEFAULT '30 days') RETURNS bigint
LANGUAGE sql AS $$
	WITH d AS (DELETE FROM pgwa.webhook_events
	           WHERE received_at < now() - p_older_than AND status <> 'failed' RETURNING 1)
	SELECT count(*) FROM d
$$;

CREATE FUNCTION pgwa._ingest_refusal(p_state text, p_message text, p_field text, p_event bigint DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT jsonb_strip_nulls(jsonb_build_object(
		'status', CASE WHEN p_state = 'PW401' THEN 'unauthorized' ELSE 'rejected' END,
		'httpStatus', c.http_status, 'eventId', p_event,
		'error', jsonb_build_object('sqlstate', p_state, 'code', c.code, 'message', p_message, 'field', p_field)))
	FROM pgwa.error_codes c WHERE c.sqlstate = p_state
$$;

-- Receives one webhook body: authenticates it (the token of X-API-Key,
-- Authorization: Bearer or X-Authorization must be the webhook secret of the
-- instance the body names in instanceId), stores it, then applies it.
-- Answers {status, httpStatus, eventId, accepted, duplicates, ignored} or,
-- when refused, {status: unauthorized | rejected, httpStatus, eventId?,
-- error: {sqlstate, code, message, field}}; client errors are answers, not
-- exceptions, so that the stored event and the counters survive them.
-- A body that names no instance is attributed to the presented secret's
-- instance when only one has it; a body that cannot be attributed is not
-- stored.
CREATE FUNCTION pgwa.ingest_webhook(p_dialect text, p_headers jsonb, p_body jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	t      record := pgwa._webhook_token(p_headers);
	v_key  text;
	inst   pgwa.instances;
	n      int;
	v_id   bigint;
	r      jsonb;
	v_ptype text;
BEGIN
	IF p_dialect IS NULL OR p_dialect NOT IN ('broker', 'envelope', 'baileys') THEN
		PERFORM pgwa._raise('PW400', 'dialect must be one of broker, envelope, baileys', 'dialect');
	END IF;
	v_ptype := pgwa._payload_type(p_body, p_dialect);
	IF t.token IS NULL THEN
		PERFORM pgwa._count_webhook('rejected', 'unauthorized', v_ptype);
		RETURN pgwa._ingest_refusal('PW401',
			'a webhook secret is required (X-API-Key, Authorization: Bearer or X-Authorization)', NULL);
	END IF;
	v_key := pgwa._inbound_instance_key(p_body);
	SELECT count(*) INTO n FROM pgwa._webhook_instances(t.token) i
	WHERE v_key IS NULL OR i.broker_instance_id = v_key;
	IF n = 1 THEN
		SELECT * INTO inst FROM pgwa._webhook_instances(t.token) i
		WHERE v_key IS NULL OR i.broker_instance_id = v_key;
	END IF;
	IF inst.id IS NULL THEN
		IF n > 1 THEN
			PERFORM pgwa._count_webhook('rejected', 'validation_failed', v_ptype);
			RETURN pgwa._ingest_refusal('PW400', 'instanceId is required', 'instanceId');
		END IF;
		PERFORM pgwa._count_webhook('rejected', 'unauthorized', v_ptype);
		RETURN pgwa._ingest_refusal('PW401', 'the webhook secret is not valid for this instance', NULL);
	END IF;

	INSERT INTO pgwa.webhook_events (instance_id, tenant_id, dialect, payload_type, headers, body)
	VALUES (inst.id, inst.tenant_id, p_dialect, v_ptype, pgwa._webhook_headers(p_headers, t.scheme),
	        coalesce(p_body, 'null'))
	RETURNING id INTO v_id;
	r := pgwa._apply_event(v_id, false);
	IF r->>'status' = 'rejected' THEN
		RETURN pgwa._ingest_refusal(r->'error'->>'sqlstate', r->'error'->>'message', r->'error'->>'field', v_id);
	END IF;
	RETURN (r - 'error') || jsonb_build_object('httpStatus', 202);
END $$;
