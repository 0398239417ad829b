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

-- True when a body holds one event only (the usual case: no need to unfold it).
CREATE FUNCTION pgwa._single_event(p_body jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE
RETURN jsonb_typeof(p_body) = 'object' AND (p_body ? 'type' OR p_body ? 'event' OR NOT p_body ? 'events');

-- True when a body is (or holds) a raw Baileys upsert. (plpgsql, so that
-- its plans are kept: it is on every webhook's path.)
CREATE FUNCTION pgwa._is_raw_upsert(p_body jsonb, p_dialect text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
	IF p_dialect = 'baileys' THEN
		RETURN true;
	ELSIF pgwa._single_event(p_body) THEN
		RETURN coalesce('WHATSAPP_MESSAGES_UPSERT' IN (p_body->>'event', p_body->>'type'), false);
	END IF;
	RETURN EXISTS (SELECT 1 FROM pgwa._body_events(p_body) e
	               WHERE jsonb_typeof(e) = 'object' AND 'WHATSAPP_MESSAGES_UPSERT' IN (e->>'event', e->>'type'));
END $$;

-- The payload_type label of a body: one of a fixed few, whatever it says.
CREATE FUNCTION pgwa._payload_type(p_body jsonb, p_dialect text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
	IF pgwa._is_raw_upsert(p_body, p_dialect) THEN
		RETURN 'WHATSAPP_MESSAGES_UPSERT';
	ELSIF p_dialect = 'envelope' THEN
		RETURN 'MESSAGE_INBOUND';
	ELSIF pgwa._single_event(p_body) THEN
		RETURN CASE p_body->>'type' WHEN 'MESSAGE_INBOUND' THEN 'MESSAGE_INBOUND' ELSE 'unknown' END;
	ELSIF EXISTS (SELECT 1 FROM pgwa._body_events(p_body) e
	              WHERE jsonb_typeof(e) = 'object' AND e->>'type' = 'MESSAGE_INBOUND') THEN
		RETURN 'MESSAGE_INBOUND';
	END IF;
	RETURN 'unknown';
END $$;

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
		'deferred', nullif((ev.result->>'deferred')::int, 0),
		'nextAttemptAt', pgwa._iso(ev.next_attempt_at),
		'error', CASE WHEN ev.status IN ('rejected', 'failed') THEN jsonb_strip_nulls(jsonb_build_object(
			'sqlstate', ev.error_sqlstate,
			'code', (SELECT c.code FROM pgwa.error_codes c WHERE c.sqlstate = ev.error_sqlstate),
			'message', ev.last_error, 'field', nullif(ev.error_field, ''))) END))
$$;

-- Applies stored events, all of them in a few set-based statements: their
-- live messages through pgwa._apply_live, the other items of dialect bodies
-- one by one, then each event's outcome (status, result, counters, ingest
-- latency). Raises on any error, leaving the caller to apply the events one
-- by one; with p_one_by_one, live messages too are applied one at a time.
-- The events must be locked by the caller.
CREATE FUNCTION pgwa._apply_batch(p_ids bigint[], p_one_by_one boolean) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	v_live  pgwa._live_msg[];
	v_items jsonb;
	v_res   jsonb := '[]';
	v_other jsonb := '[]';
	ev      pgwa.webhook_events;
	inst    pgwa.instances;
	r       pgwa._live_msg;
	rec     record;
	v_id    bigint;
BEGIN
	-- seed-000 envelopes and raw Baileys, normalised in C
	WITH e AS (
		SELECT w.id, w.received_at, w.dialect, w.body, i AS inst
		FROM unnest(p_ids) k(id)
		CROSS JOIN LATERAL (SELECT * FROM pgwa.webhook_events x WHERE x.id = k.id LIMIT 1) w
		JOIN pgwa.instances i ON i.id = w.instance_id
		WHERE w.dialect NOT IN ('evolution', 'meta')),
	env AS (
		SELECT e.id, e.received_at, e.inst, u.env, u.n::int AS n
		FROM e, unnest(pgwa.normalize_inbound(e.body, e.dialect)) WITH ORDINALITY AS u(env, n)
		WHERE pgwa._raise_if(pgwa._is_raw_upsert(e.body, e.dialect) AND NOT pgwa._raw_fallback_enabled(e.inst),
		                     'PW422', 'raw Baileys events are not enabled for this instance', 'event')
		  AND pgwa._raise_if(u.env->>'type' <> 'IGNORED'
		                     AND u.env->>'instanceId' IS DISTINCT FROM (e.inst).broker_instance_id,
		                     'PW422', format('instanceId "%s" is not the instance of this webhook secret',
		                                     u.env->>'instanceId'), 'instanceId'))
	SELECT array_agg(pgwa._live_msg(v.inst, v.id, v.received_at, v.n, v.env) ORDER BY v.id, v.n)
	           FILTER (WHERE v.env->>'type' <> 'IGNORED'),
	       coalesce(jsonb_agg(jsonb_build_object('e', v.id, 'n', v.n, 'i', jsonb_build_object(
	           'result', 'ignored', 'brokerMessageId', v.env->>'id', 'reason', v.env->>'reason',
	           'payloadType', v.env->>'payloadType'))) FILTER (WHERE v.env->>'type' = 'IGNORED'), '[]'),
	       coalesce(jsonb_object_agg(v.id || '/' || v.n, v.env->>'payloadType')
	           FILTER (WHERE v.env->>'type' <> 'IGNORED'), '{}')
	INTO v_live, v_res, v_items FROM env v;

	-- Evolution and Cloud API bodies
	FOR v_id IN SELECT w.id FROM unnest(p_ids) k(id)
	            CROSS JOIN LATERAL (SELECT x.id, x.dialect FROM pgwa.webhook_events x WHERE x.id = k.id LIMIT 1) w
	            WHERE w.dialect IN ('evolution', 'meta') ORDER BY w.id
	LOOP
		SELECT * INTO ev FROM pgwa.webhook_events WHERE id = v_id;
		SELECT * INTO inst FROM pgwa.instances WHERE id = ev.instance_id;
		FOR rec IN SELECT d.it, d.n::int AS n FROM pgwa._dialect_items(ev, inst) WITH ORDINALITY AS d(it, n) LOOP
			IF rec.it->>'kind' = 'message' AND NOT rec.it ? 'result' THEN
				v_live := v_live || pgwa._live_msg(inst, ev.id, ev.received_at, rec.n, rec.it->'envelope');
			ELSE
				v_other := v_other || jsonb_build_array(jsonb_build_object('e', ev.id, 'n', rec.n, 'i', rec.it));
			END IF;
		END LOOP;
	END LOOP;

	-- Live messages: the whole batch at once, or one after the other.
	IF v_live IS NOT NULL THEN
		IF p_one_by_one THEN
			FOREACH r IN ARRAY v_live LOOP
				v_res := v_res || coalesce((SELECT jsonb_agg(jsonb_build_object('e', a.event_id, 'n', a.n, 'i', a.result))
				                            FROM pgwa._apply_live(ARRAY[r]) a), '[]');
			END LOOP;
		ELSE
			v_res := v_res || coalesce((SELECT jsonb_agg(jsonb_build_object('e', a.event_id, 'n', a.n, 'i', a.result))
			                            FROM pgwa._apply_live(v_live) a), '[]');
		END IF;
		SELECT jsonb_agg(CASE WHEN v_items ? (x->>'e' || '/' || (x->>'n')) THEN
		           jsonb_set(x, '{i}', (x->'i') || jsonb_build_object('payloadType', v_items->>(x->>'e' || '/' || (x->>'n'))))
		           ELSE x END)
		INTO v_res FROM jsonb_array_elements(v_res) x;
	END IF;

	-- The other items of dialect bodies, in order.
	FOR rec IN SELECT (o->>'e')::bigint AS e, (o->>'n')::int AS n, o->'i' AS it
	           FROM jsonb_array_elements(v_other) o ORDER BY 1, 2
	LOOP
		SELECT * INTO ev FROM pgwa.webhook_events WHERE id = rec.e;
		SELECT * INTO inst FROM pgwa.instances WHERE id = ev.instance_id;
		v_res := v_res || jsonb_build_array(jsonb_build_object('e', rec.e, 'n', rec.n,
		                                                       'i', pgwa._apply_item(inst, ev, rec.it)));
	END LOOP;

	-- Each event's outcome. deferred first: the event still holds work;
	-- skipped items belong to another instance's copy of the body and count
	-- nowhere here.
	WITH ev AS (
		-- one index lookup per id, whatever the planner thinks of the
		-- table's size (a filter by = ANY, or a join, was sized from it)
		SELECT w.instance_id, w.id, w.dialect FROM unnest(p_ids) k(id)
		CROSS JOIN LATERAL (SELECT x.instance_id, x.id, x.dialect FROM pgwa.webhook_events x
		                    WHERE x.id = k.id LIMIT 1) w),
	it AS (
		SELECT (x->>'e')::bigint AS event_id, (x->>'n')::int AS n,
		       CASE WHEN w.dialect IN ('evolution', 'meta') AND NOT x->'i' ? 'kind'
		                 AND x->'i'->>'result' IN ('accepted', 'duplicate') THEN
		                x->'i' || jsonb_build_object('reason', CASE x->'i'->>'result' WHEN 'accepted'
		                                                       THEN 'inbound_message' ELSE 'duplicate_message' END,
		                                             'kind', 'message',
		                                             'payloadType', w.dialect || '.message')
		            ELSE x->'i' END AS i,
		       w.dialect IN ('evolution', 'meta') AS dialect
		FROM jsonb_array_elements(v_res) x JOIN ev w ON w.id = (x->>'e')::bigint),
	o AS (
		SELECT w.instance_id, w.id,
		       CASE WHEN count(*) FILTER (WHERE it.i->>'result' = 'deferred') > 0 THEN 'deferred'
		            WHEN count(*) FILTER (WHERE it.i->>'result' = 'accepted') > 0 THEN 'applied'
		            WHEN count(*) FILTER (WHERE it.i->>'result' = 'duplicate') > 0 THEN 'duplicate'
		            ELSE 'ignored' END AS status,
		       jsonb_build_object('accepted', count(*) FILTER (WHERE it.i->>'result' = 'accepted'),
		                          'duplicates', count(*) FILTER (WHERE it.i->>'result' = 'duplicate'),
		                          'ignored', count(*) FILTER (WHERE it.i->>'result' = 'ignored'),
		                          'deferred', count(*) FILTER (WHERE it.i->>'result' = 'deferred'),
		                          CASE WHEN w.dialect IN ('evolution', 'meta') THEN 'events' ELSE 'messages' END,
		                          coalesce(jsonb_agg(it.i ORDER BY it.n) FILTER (WHERE it.i IS NOT NULL), '[]'))
		           AS result
		FROM ev w LEFT JOIN it ON it.event_id = w.id
		GROUP BY w.instance_id, w.id, w.dialect),
	upd AS (
		UPDATE pgwa.webhook_events w SET status = o.status, attempts = w.attempts + 1, applied_at = now(),
		       result = o.result, last_error = NULL, error_sqlstate = NULL, error_field = NULL,
		       next_attempt_at = NULL
		FROM o WHERE w.instance_id = o.instance_id AND w.id = o.id
		RETURNING w.received_at),
	obs AS (
		SELECT count(pgwa._observe_ingest(extract(epoch FROM clock_timestamp() - u.received_at))) FROM upd u),
	c AS (
		SELECT it.i->>'result' AS result,
		       CASE WHEN it.dialect THEN it.i->>'reason'
		            ELSE CASE it.i->>'result'
		                WHEN 'accepted' THEN CASE it.i->>'payloadType' WHEN 'WHATSAPP_MESSAGES_UPSERT'
		                                     THEN 'raw_inbound_normalized' ELSE 'inbound_envelope' END
		                WHEN 'ignored' THEN 'raw_inbound_ignored'
		                ELSE 'duplicate_message' END END AS reason,
		       coalesce(it.i->>'payloadType', 'unknown') AS payload_type, count(*) AS n
		FROM it WHERE it.i->>'result' <> 'skipped' GROUP BY 1, 2, 3)
	INSERT INTO pgwa.webhook_counters AS k (result, reason, payload_type, shard, count)
	SELECT c.result, c.reason, c.payload_type, pg_backend_pid() % 8, c.n FROM c, obs
	ORDER BY 1, 2, 3
	ON CONFLICT (result, reason, payload_type, shard) DO UPDATE SET count = k.count + excluded.count;
END $$;

-- Applies one stored event on its own and records what came of it: a
-- validation error marks it rejected (kept, not retried); any other error
-- marks it failed, to be retried at next_attempt_at (5 s, doubling, at most
-- 1 h apart, with no limit on attempts: a stored event is never dropped).
-- Counters move only with an outcome that sticks.
CREATE FUNCTION pgwa._apply_one(p_id bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	ev        pgwa.webhook_events;
	v_state   text;
	v_message text;
	v_field   text;
	v_reason  text;
BEGIN
	SELECT * INTO ev FROM pgwa.webhook_events WHERE id = p_id;
	BEGIN
		BEGIN
			PERFORM pgwa._apply_batch(ARRAY[p_id], false);
		EXCEPTION WHEN SQLSTATE 'PW5B1' THEN
			PERFORM pgwa._apply_batch(ARRAY[p_id], true);
		END;
		RETURN;
	EXCEPTION WHEN others THEN
		GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT, v_field = COLUMN_NAME;
	END;
	v_reason := CASE WHEN v_state = 'PW422' AND v_field = 'event' THEN 'raw_fallback_disabled'
	                 WHEN v_state = 'PW400' THEN 'validation_failed' WHEN v_state = 'PW422' THEN 'unprocessable'
	                 WHEN v_state = 'PW413' THEN 'payload_too_large'
	                 WHEN v_state = 'PW409' THEN 'conflict' END;
	IF v_reason IS NOT NULL THEN
		IF v_reason = 'raw_fallback_disabled' THEN
			v_message := 'raw Baileys events are not enabled for this instance (settings.raw_fallback)';
		END IF;
		UPDATE pgwa.webhook_events SET status = 'rejected', attempts = attempts + 1,
		       last_error = v_message, error_sqlstate = v_state, error_field = nullif(v_field, ''),
		       next_attempt_at = NULL, result = NULL
		WHERE instance_id = ev.instance_id AND id = ev.id;
		PERFORM pgwa._count_webhook('rejected', v_reason, ev.payload_type);
	ELSE
		RAISE WARNING 'pgwa inbound: event % of instance % failed (SQLSTATE %): %',
			ev.id, ev.instance_id, v_state, v_message;
		UPDATE pgwa.webhook_events SET status = 'failed', attempts = attempts + 1,
		       last_error = v_message, error_sqlstate = v_state, error_field = NULL,
		       next_attempt_at = now() + least(interval '1 hour', interval '5 seconds' * power(2, least(attempts, 20)))
		WHERE instance_id = ev.instance_id AND id = ev.id;
		PERFORM pgwa._count_webhook('failed', 'apply_error', ev.payload_type);
	END IF;
END $$;

-- Applies stored events: those waiting (received or failed), or with
-- p_replay any of them again. Several go as one batch; when the batch
-- raises, each is applied on its own, so that one bad event never holds
-- the others back. Returns how many were applied or tried.
CREATE FUNCTION pgwa._apply_events(p_ids bigint[], p_replay boolean) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
	v_ids bigint[];
	v_id  bigint;
BEGIN
	-- one index lookup per id, in id order (a join or = ANY is planned from
	-- the table's size and, once it is large, reads all of it)
	SELECT array_agg(w.id ORDER BY w.id) INTO v_ids
	FROM (SELECT DISTINCT k.id FROM unnest(p_ids) k(id) ORDER BY 1) k
	CROSS JOIN LATERAL (
		SELECT x.id FROM pgwa.webhook_events x
		WHERE x.id = k.id AND (p_replay OR x.status IN ('received', 'failed'))
		LIMIT 1 FOR UPDATE) w;
	IF v_ids IS NULL THEN
		RETURN 0;
	END IF;
	IF cardinality(v_ids) > 1 THEN
		BEGIN
			PERFORM pgwa._apply_batch(v_ids, false);
			RETURN cardinality(v_ids);
		EXCEPTION WHEN others THEN
			NULL;	-- one by one below
		END;
	END IF;
	FOREACH v_id IN ARRAY v_ids LOOP
		PERFORM pgwa._apply_one(v_id);
	END LOOP;
	RETURN cardinality(v_ids);
END $$;

-- Applies one stored event now (all of them again with p_replay) and
-- reports its outcome (pgwa._event_result).
CREATE FUNCTION pgwa._apply_and_report(p_event_id bigint, p_replay boolean) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	ev pgwa.webhook_events;
BEGIN
	PERFORM pgwa._apply_events(ARRAY[p_event_id], p_replay);
	SELECT * INTO ev FROM pgwa.webhook_events WHERE id = p_event_id;
	IF ev.id IS NULL THEN
		PERFORM pgwa._raise('PW404', 'webhook event not found', 'event_id');
	END IF;
	RETURN pgwa._event_result(ev);
END $$;

-- Applies a stored event that has not been applied yet (received or failed)
-- and reports its outcome; for any other event it only reports it.
CREATE FUNCTION pgwa.apply_event(p_event_id bigint) RETURNS jsonb
LANGUAGE sql AS $$ SELECT pgwa._apply_and_report(p_event_id, false) $$;

-- Applies a stored event again whatever its status: a rejected event after
-- its instance was fixed (say, raw_fallback turned on), or any event to
-- check it (what was applied before comes out as duplicates).
CREATE FUNCTION pgwa.replay_event(p_event_id bigint) RETURNS jsonb
LANGUAGE sql AS $$ SELECT pgwa._apply_and_report(p_event_id, true) $$;

-- Applies up to p_limit stored events that wait for it, oldest first, as
-- one batch (seed 000: the webhook stores, the worker applies); concurrent
-- callers skip each other's events. Only events received at p_from or later
-- are looked at (NULL: all): the appliers pass a little before the oldest
-- event of their last batch, so that their claims skip the entries of
-- applied events that the pending index keeps until VACUUM, or until no
-- snapshot can see them (a long transaction anywhere keeps them all). An
-- event committed so late that it falls before p_from is taken by
-- pgwa.retry_failed_events, which looks at all of them. A batch also stops
-- at about 4 MB of stored bodies (always one event at least): a history
-- webhook can carry thousands of messages, and a hundred of them in one
-- transaction would hold their locks for seconds; the events left out stay
-- waiting for the next claim. Returns how many it took, the oldest one's
-- receipt, and whether more wait (a full or cut batch).
CREATE FUNCTION pgwa._apply_pending(p_limit int, p_from timestamptz,
                                    OUT taken int, OUT oldest timestamptz, OUT more boolean)
LANGUAGE plpgsql AS $$
DECLARE
	v_ids     bigint[];
	v_claimed int;
BEGIN
	SELECT array_agg(c.id ORDER BY c.received_at, c.id) FILTER (WHERE c.before < 4194304 OR c.rn = 1),
	       min(c.received_at) FILTER (WHERE c.before < 4194304 OR c.rn = 1), count(*)
	INTO v_ids, oldest, v_claimed
	FROM (SELECT s.*, row_number() OVER w AS rn, coalesce(sum(s.size) OVER w - s.size, 0) AS before
	      FROM (SELECT w.id, w.received_at, pg_column_size(w.body) AS size FROM pgwa.webhook_events w
	            WHERE w.status = 'received' AND w.received_at >= coalesce(p_from, '-infinity')
	            ORDER BY w.received_at, w.id LIMIT p_limit FOR UPDATE SKIP LOCKED) s
	      WINDOW w AS (ORDER BY s.received_at, s.id)) c;
	taken := coalesce(cardinality(v_ids), 0);
	more := v_claimed >= p_limit OR taken < v_claimed;
	IF taken > 0 THEN
		PERFORM pgwa._apply_events(v_ids, false);
	END IF;
END $$;

-- Applies up to p_limit stored events that wait for it, oldest first, as
-- one batch: what the background workers do whenever a webhook was stored.
-- Returns how many it took.
CREATE FUNCTION pgwa.apply_pending(p_limit int DEFAULT 200) RETURNS int
LANGUAGE sql AS $$ SELECT taken FROM pgwa._apply_pending(p_limit, NULL) $$;

-- Applies up to p_limit failed events whose retry time has come, and events
-- stored but never applied. Returns how many were tried. Meant for the
-- background worker or pg_cron; concurrent callers skip each other's events.
CREATE FUNCTION pgwa.retry_failed_events(p_limit int DEFAULT 100) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
	v_ids bigint[];
BEGIN
	SELECT array_agg(id) INTO v_ids FROM (
		SELECT w.id FROM pgwa.webhook_events w
		WHERE (w.status = 'failed' AND w.next_attempt_at <= now()) OR w.status = 'received'
		ORDER BY coalesce(w.next_attempt_at, w.received_at) LIMIT p_limit
		FOR UPDATE SKIP LOCKED) s;
	IF v_ids IS NULL THEN
		RETURN 0;
	END IF;
	RETURN pgwa._apply_events(v_ids, false);
END $$;

-- Deletes stored webhook bodies older than p_older_than, except failed ones
-- still waiting for a retry and deferred ones still holding work. Returns
-- how many went.
CREATE FUNCTION pgwa.purge_webhook_events(p_older_than interval DEFAULT '30 days') RETURNS bigint
LANGUAGE sql AS $$
	WITH d AS (DELETE FROM pgwa.webhook_events
	           WHERE received_at < now() - p_older_than AND status NOT IN ('failed', 'deferred') RETURNING 1)
	SELECT count(*) FROM d
$$;

-- A refusal as ingest functions answer it (see ingest_webhook).
CREATE FUNCTION pgwa._ingest_refusal(p_state text, p_message text, p_field text, p_event bigint DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT jsonb_strip_nulls(jsonb_build_object(
		'status', CASE WHEN p_state = 'PW401' THEN 'unauthorized' ELSE 'rejected' END,
		'httpStatus', c.http_status, 'eventId', p_event,
		'error', jsonb_build_object('sqlstate', p_state, 'code', c.code, 'message', p_message, 'field', p_field)))
	FROM pgwa.error_codes c WHERE c.sqlstate = p_state
$$;

-- The instance a webhook secret stands for: among the instances whose
-- secret is p_token, the one whose broker_instance_id is p_key, or the only
-- one when the body names none. n says how many matched (0, 1 or more).
CREATE FUNCTION pgwa._secret_instance(p_token text, p_key text, OUT inst pgwa.instances, OUT n int)
LANGUAGE plpgsql STABLE AS $$
DECLARE
	v_hash bytea := pgwa._hash_key(p_token);
	i      pgwa.instances;
BEGIN
	n := 0;
	FOR i IN SELECT x.* FROM pgwa.instances x
	         WHERE x.id IN (SELECT s.instance_id FROM pgwa.webhook_secrets s
	                        WHERE s.secret_hash = v_hash
	                           OR (s.previous_hash = v_hash AND s.previous_valid_until > now()))
	           AND (p_key IS NULL OR x.broker_instance_id = p_key)
	         LIMIT 2
	LOOP
		inst := i;
		n := n + 1;
	END LOOP;
	IF n <> 1 THEN
		inst := NULL;
	END IF;
END $$;

-- Whether a body can be applied, checked before it is stored so that the
-- broker hears of a bad one at once (seed 000: 400/422 naming the field):
-- what the normaliser refuses, an instanceId that is not the instance's, a
-- raw Baileys body when the fallback is off. NULLs when it can; an error
-- that is not a refusal leaves it to the worker (stored, retried).
CREATE FUNCTION pgwa._check_event(inst pgwa.instances, p_dialect text, p_body jsonb,
                                  OUT state text, OUT message text, OUT field text, OUT reason text)
LANGUAGE plpgsql AS $$
DECLARE
	ev pgwa.webhook_events;
	e  jsonb;
BEGIN
	IF p_dialect NOT IN ('evolution', 'meta') AND pgwa._is_raw_upsert(p_body, p_dialect)
	   AND NOT pgwa._raw_fallback_enabled(inst) THEN
		state := 'PW422';
		message := 'raw Baileys events are not enabled for this instance (settings.raw_fallback)';
		field := 'event';
		reason := 'raw_fallback_disabled';
		RETURN;
	END IF;
	BEGIN
		IF p_dialect IN ('evolution', 'meta') THEN
			ev.dialect := p_dialect;
			ev.body := p_body;
			PERFORM count(*) FROM pgwa._dialect_items(ev, inst);
		ELSE
			FOREACH e IN ARRAY pgwa.normalize_inbound(p_body, p_dialect) LOOP
				IF e->>'type' <> 'IGNORED' AND e->>'instanceId' IS DISTINCT FROM inst.broker_instance_id THEN
					PERFORM pgwa._raise('PW422', format('instanceId "%s" is not the instance of this webhook secret',
					                                    e->>'instanceId'), 'instanceId');
				END IF;
			END LOOP;
		END IF;
	EXCEPTION WHEN SQLSTATE 'PW400' OR SQLSTATE 'PW422' OR SQLSTATE 'PW413' THEN
		GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT, field = COLUMN_NAME;
		field := nullif(field, '');
		reason := CASE state WHEN 'PW400' THEN 'validation_failed' WHEN 'PW422' THEN 'unprocessable'
		                     ELSE 'payload_too_large' END;
	WHEN others THEN
		NULL;
	END;
END $$;

-- Stores a body for an instance: received, for the background worker to
-- apply (it is woken at commit), or rejected when pgwa._check_event
-- refuses it. Returns the event's outcome (pgwa._event_result).
CREATE FUNCTION pgwa._ingest_store(inst pgwa.instances, p_dialect text, p_payload_type text,
                                   p_headers jsonb, p_body jsonb)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	c  record := pgwa._check_event(inst, p_dialect, coalesce(p_body, 'null'));
	ev pgwa.webhook_events;
BEGIN
	INSERT INTO pgwa.webhook_events (instance_id, tenant_id, dialect, payload_type, headers, body, status,
	                                 attempts, last_error, error_sqlstate, error_field)
	VALUES (inst.id, inst.tenant_id, p_dialect, p_payload_type, p_headers, coalesce(p_body, 'null'),
	        CASE WHEN c.state IS NULL THEN 'received' ELSE 'rejected' END,
	        CASE WHEN c.state IS NULL THEN 0 ELSE 1 END, c.message, c.state, c.field)
	RETURNING * INTO ev;
	IF c.state IS NULL THEN
		PERFORM pgwa._wake_applier_on_commit();
		RETURN jsonb_build_object('eventId', ev.id, 'status', 'received', 'attempts', 0,
		                          'accepted', 0, 'duplicates', 0, 'ignored', 0);
	END IF;
	PERFORM pgwa._count_webhook('rejected', c.reason, p_payload_type);
	RETURN pgwa._event_result(ev);
END $$;

-- Receives one webhook body: authenticates it (the token of X-API-Key,
-- Authorization: Bearer or X-Authorization must be the webhook secret of the
-- instance the body names in instanceId), stores it, then applies it.
-- Answers {status, httpStatus, eventId, accepted, duplicates, ignored} or,
-- when refused, {status: unauthorized | rejected, httpStatus, eventId?,
-- error: {sqlstate, code, message, field}}; client errors are answers, not
-- exceptions, so that the stored event and the counters survive them.
-- A body that names no instance is attributed to the presented secret's
-- instance when only one has it; a body that cannot be attributed is not
-- stored. The usual body takes a shorter way in C (extension/ingest.c), to
-- the same result; this is the definition, and what the rest takes.
CREATE FUNCTION pgwa._ingest_webhook_sql(p_dialect text, p_headers jsonb, p_body jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	t       record := pgwa._webhook_token(p_headers);
	s       record;
	r       jsonb;
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
	s := pgwa._secret_instance(t.token, CASE WHEN jsonb_typeof(p_body->'instanceId') = 'string'
	                                         THEN p_body->>'instanceId' ELSE pgwa._inbound_instance_key(p_body) END);
	IF s.n <> 1 THEN
		IF s.n > 1 THEN
			PERFORM pgwa._count_webhook('rejected', 'validation_failed', v_ptype);
			RETURN pgwa._ingest_refusal('PW400', 'instanceId is required', 'instanceId');
		END IF;
		PERFORM pgwa._count_webhook('rejected', 'unauthorized', v_ptype);
		RETURN pgwa._ingest_refusal('PW401', 'the webhook secret is not valid for this instance', NULL);
	END IF;
	r := pgwa._ingest_store(s.inst, p_dialect, v_ptype, pgwa._webhook_headers(p_headers, t.scheme), p_body);
	IF r->>'status' = 'rejected' THEN
		RETURN pgwa._ingest_refusal(r->'error'->>'sqlstate', r->'error'->>'message', r->'error'->>'field',
		                            (r->>'eventId')::bigint);
	END IF;
	RETURN (r - 'error') || jsonb_build_object('httpStatus', 202);
END $$;

CREATE FUNCTION pgwa.ingest_webhook(p_dialect text, p_headers jsonb, p_body jsonb) RETURNS jsonb
	AS 'MODULE_PATHNAME', 'pgwa_ingest_webhook' LANGUAGE C VOLATILE;

-- Receives an Evolution API webhook body (POST /webhooks/whatsapp, seed 004).
-- The token is the instance's webhook secret, presented as for seed 000
-- (X-API-Key, then Authorization: Bearer, then X-Authorization) or, only when
-- no header carries one, as the body's "apikey" (Evolution writes its API key
-- there: set it as the webhook secret). The instance is the one whose
-- broker_instance_id is the body's "instance" and whose secret it is. The
-- body is stored without its apikey. Answers as ingest_webhook, with
-- httpStatus 200 and a deferred count.
CREATE FUNCTION pgwa.ingest_evolution(p_headers jsonb, p_body jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	t        record := pgwa._webhook_token(p_headers);
	v_token  text := t.token;
	v_scheme text := t.scheme;
	s        record;
	r        jsonb;
BEGIN
	IF v_token IS NULL AND jsonb_typeof(p_body->'apikey') = 'string' AND btrim(p_body->>'apikey') <> '' THEN
		v_token := btrim(p_body->>'apikey');
		v_scheme := 'body-apikey';
	END IF;
	IF v_token IS NULL THEN
		PERFORM pgwa._count_webhook('rejected', 'unauthorized', 'evolution');
		RETURN pgwa._ingest_refusal('PW401', 'a webhook secret is required (X-API-Key, Authorization: Bearer, '
		                                     'X-Authorization or the body''s apikey)', NULL);
	END IF;
	s := pgwa._secret_instance(v_token, CASE WHEN jsonb_typeof(p_body->'instance') = 'string'
	                                         THEN p_body->>'instance' END);
	IF s.n <> 1 THEN
		IF s.n > 1 THEN
			PERFORM pgwa._count_webhook('rejected', 'validation_failed', 'evolution');
			RETURN pgwa._ingest_refusal('PW400', 'instance is required', 'instance');
		END IF;
		PERFORM pgwa._count_webhook('rejected', 'unauthorized', 'evolution');
		RETURN pgwa._ingest_refusal('PW401', 'the webhook secret is not valid for this instance', NULL);
	END IF;
	r := pgwa._ingest_store(s.inst, 'evolution', 'evolution', pgwa._webhook_headers(p_headers, v_scheme),
	                        CASE WHEN jsonb_typeof(p_body) = 'object' THEN p_body - 'apikey' ELSE p_body END);
	IF r->>'status' = 'rejected' THEN
		RETURN pgwa._ingest_refusal(r->'error'->>'sqlstate', r->'error'->>'message', r->'error'->>'field',
		                            (r->>'eventId')::bigint);
	END IF;
	RETURN (r - 'error') || jsonb_build_object('httpStatus', 200);
END $$;

-- Receives a WhatsApp Cloud API webhook (POST /webhooks/meta), or a 360dialog
-- one, as its raw body: the signature covers the exact bytes. The instances
-- are those whose settings.phone_number_id the body names and whose Meta app
-- secret keys the X-Hub-Signature-256 HMAC. Without that header (360dialog
-- does not sign) a webhook secret header of such an instance stands instead;
-- a header that is there must be right. A batch naming several instances'
-- numbers is stored once per instance, each copy applying its number's
-- events, so nothing accepted is lost and nothing is applied twice.
-- Answers httpStatus 200 once stored, whatever the outcome (Meta retries
-- anything else for days; a rejected body is kept and replayable):
-- {status, accepted, duplicates, ignored, deferred, eventIds, eventId?,
-- error?}; 401 when no instance's credential matches, 400 for a body that
-- is not a JSON object. Nothing is stored for a 401 or a 400.
CREATE FUNCTION pgwa.ingest_meta(p_headers jsonb, p_raw text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	v_sig    text := nullif(btrim(p_headers->>'x-hub-signature-256'), '');
	t        record := pgwa._webhook_token(p_headers);
	v_scheme text := CASE WHEN v_sig IS NOT NULL THEN 'x-hub-signature-256' ELSE t.scheme END;
	v_body   jsonb;
	v_ids    text[];
	v_known  boolean;
	inst     pgwa.instances;
	v_taken  text[] := '{}';
	v_res    jsonb := '[]';
BEGIN
	IF v_sig IS NULL AND t.token IS NULL THEN
		PERFORM pgwa._count_webhook('rejected', 'unauthorized', 'meta');
		RETURN pgwa._ingest_refusal('PW401', 'X-Hub-Signature-256 is required', 'x-hub-signature-256');
	END IF;
	BEGIN
		v_body := p_raw::jsonb;
	EXCEPTION WHEN others THEN
		v_body := NULL;
	END;
	IF v_body IS NULL OR jsonb_typeof(v_body) <> 'object' THEN
		PERFORM pgwa._count_webhook('rejected', 'invalid_json', 'meta');
		RETURN pgwa._ingest_refusal('PW400', 'the body must be a JSON object', 'body');
	END IF;
	v_ids := pgwa._meta_phone_number_ids(v_body);
	IF v_sig IS NOT NULL THEN
		SELECT count(*) > 0 INTO v_known FROM pgwa.instances i
		JOIN pgwa.meta_webhook_credentials c ON c.instance_id = i.id
		WHERE i.settings->>'phone_number_id' = ANY (v_ids) AND c.app_secret IS NOT NULL;
		FOR inst IN SELECT i.* FROM pgwa.instances i JOIN pgwa.meta_webhook_credentials c ON c.instance_id = i.id
		            WHERE i.settings->>'phone_number_id' = ANY (v_ids) AND c.app_secret IS NOT NULL
		              AND pgwa.verify_meta_signature(p_raw, v_sig, c.app_secret)
		            ORDER BY i.id
		LOOP
			v_res := v_res || jsonb_build_array(pgwa._ingest_store(inst, 'meta', 'meta',
				pgwa._webhook_headers(p_headers, v_scheme), v_body));
			v_taken := v_taken || (inst.settings->>'phone_number_id');
		END LOOP;
	ELSE
		v_known := false;
		FOR inst IN SELECT i.* FROM pgwa._webhook_instances(t.token) i
		            WHERE i.settings->>'phone_number_id' = ANY (v_ids) ORDER BY i.id
		LOOP
			v_res := v_res || jsonb_build_array(pgwa._ingest_store(inst, 'meta', 'meta',
				pgwa._webhook_headers(p_headers, v_scheme), v_body));
			v_taken := v_taken || (inst.settings->>'phone_number_id');
		END LOOP;
	END IF;
	IF jsonb_array_length(v_res) = 0 THEN
		PERFORM pgwa._count_webhook('rejected', CASE WHEN v_known THEN 'invalid_signature' ELSE 'unauthorized' END,
		                            'meta');
		RETURN pgwa._ingest_refusal('PW401', CASE WHEN v_sig IS NOT NULL
			THEN 'X-Hub-Signature-256 is not the signature of this body by the app of its phone number'
			ELSE 'the webhook secret is not valid for this phone number' END, NULL);
	END IF;
	-- numbers of the batch that no instance took: their events are in the
	-- stored copies, applied by none
	PERFORM pgwa._count_webhook('ignored', 'unknown_phone_number', 'meta',
	                            (SELECT count(*)::int FROM unnest(v_ids) x WHERE x <> ALL (v_taken)));
	-- one instance, as usual: its outcome; several: the most telling one
	RETURN jsonb_strip_nulls(jsonb_build_object(
		'httpStatus', 200,
		'status', (SELECT x->>'status' FROM jsonb_array_elements(v_res) x
		           ORDER BY array_position(ARRAY['rejected', 'failed', 'deferred', 'applied', 'duplicate',
		                                         'ignored'], x->>'status') LIMIT 1),
		'accepted', (SELECT sum((x->>'accepted')::int) FROM jsonb_array_elements(v_res) x),
		'duplicates', (SELECT sum((x->>'duplicates')::int) FROM jsonb_array_elements(v_res) x),
		'ignored', (SELECT sum((x->>'ignored')::int) FROM jsonb_array_elements(v_res) x),
		'deferred', (SELECT sum(coalesce((x->>'deferred')::int, 0)) FROM jsonb_array_elements(v_res) x),
		'eventIds', (SELECT jsonb_agg(x->'eventId') FROM jsonb_array_elements(v_res) x),
		'eventId', CASE WHEN jsonb_array_length(v_res) = 1 THEN v_res->0->'eventId' END,
		'error', (SELECT x->'error' FROM jsonb_array_elements(v_res) x WHERE x ? 'error' LIMIT 1)));
END $$;
