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
		'deferred', nullif((ev.result->>'deferred')::int, 0),
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
-- only with an outcome that sticks. Evolution and Cloud API bodies (dialect
-- evolution, meta) go through pgwa._apply_dialect_event (59_inbound_effects.sql);
-- one holding coexistence work for later is marked deferred.
CREATE FUNCTION pgwa._apply_event(p_id bigint, p_replay boolean) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	ev        pgwa.webhook_events;
	inst      pgwa.instances;
	envs      jsonb[];
	e         jsonb;
	r         jsonb;
	v_items   jsonb := '[]';
	v_dialect boolean;
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
	v_dialect := ev.dialect IN ('evolution', 'meta');
	v_raw := NOT v_dialect AND pgwa._is_raw_upsert(ev.body, ev.dialect);
	v_ptype := CASE WHEN v_dialect THEN ev.dialect ELSE pgwa._payload_type(ev.body, ev.dialect) END;

	IF v_raw AND NOT pgwa._raw_fallback_enabled(inst) THEN
		v_state := 'PW422';
		v_message := 'raw Baileys events are not enabled for this instance (settings.raw_fallback)';
		v_field := 'event';
		v_reason := 'raw_fallback_disabled';
	ELSE
		BEGIN
			IF v_dialect THEN
				v_items := pgwa._apply_dialect_event(ev, inst);
			ELSE
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
			END IF;
		EXCEPTION WHEN others THEN
			GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT, v_field = COLUMN_NAME;
			v_reason := CASE v_state WHEN 'PW400' THEN 'validation_failed' WHEN 'PW422' THEN 'unprocessable'
			                         WHEN 'PW413' THEN 'payload_too_large' END;
		END;
	END IF;

	IF v_state IS NULL THEN
		-- deferred first: the event still holds work; skipped items belong to
		-- another instance's copy of the body and count nowhere here
		SELECT CASE WHEN count(*) FILTER (WHERE i->>'result' = 'deferred') > 0 THEN 'deferred'
		            WHEN count(*) FILTER (WHERE i->>'result' = 'accepted') > 0 THEN 'applied'
		            WHEN count(*) FILTER (WHERE i->>'result' = 'duplicate') > 0 THEN 'duplicate'
		            ELSE 'ignored' END,
		       jsonb_build_object('accepted', count(*) FILTER (WHERE i->>'result' = 'accepted'),
		                          'duplicates', count(*) FILTER (WHERE i->>'result' = 'duplicate'),
		                          'ignored', count(*) FILTER (WHERE i->>'result' = 'ignored'),
		                          'deferred', count(*) FILTER (WHERE i->>'result' = 'deferred'),
		                          CASE WHEN v_dialect THEN 'events' ELSE 'messages' END, v_items)
		INTO v_status, r
		FROM jsonb_array_elements(v_items) i;
		UPDATE pgwa.webhook_events SET status = v_status, attempts = attempts + 1, applied_at = now(),
		       payload_type = v_ptype, result = r, last_error = NULL, error_sqlstate = NULL,
		       error_field = NULL, next_attempt_at = NULL
		WHERE instance_id = ev.instance_id AND id = ev.id
		RETURNING * INTO ev;
		PERFORM pgwa._observe_ingest(extract(epoch FROM clock_timestamp() - ev.received_at));
		PERFORM pgwa._count_webhook(c.result, c.reason, c.payload_type, c.n::int)
		FROM (SELECT i->>'result' AS result,
		             CASE WHEN v_dialect THEN i->>'reason'
		                  ELSE CASE i->>'result'
		                      WHEN 'accepted' THEN CASE i->>'payloadType' WHEN 'WHATSAPP_MESSAGES_UPSERT'
		                                           THEN 'raw_inbound_normalized' ELSE 'inbound_envelope' END
		                      WHEN 'ignored' THEN 'raw_inbound_ignored'
		                      ELSE 'duplicate_message' END END AS reason,
		             i->>'payloadType' AS payload_type, count(*) AS n
		      FROM jsonb_array_elements(v_items) i WHERE i->>'result' <> 'skipped' GROUP BY 1, 2, 3) c;
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
BEGIN
	SELECT count(*) INTO n FROM pgwa._webhook_instances(p_token) i
	WHERE p_key IS NULL OR i.broker_instance_id = p_key;
	IF n = 1 THEN
		SELECT * INTO inst FROM pgwa._webhook_instances(p_token) i
		WHERE p_key IS NULL OR i.broker_instance_id = p_key;
	END IF;
END $$;

-- Stores a body for an instance, then applies it; returns the event's outcome
-- (pgwa._event_result).
CREATE FUNCTION pgwa._ingest_store(inst pgwa.instances, p_dialect text, p_payload_type text,
                                   p_headers jsonb, p_body jsonb)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	v_id bigint;
BEGIN
	INSERT INTO pgwa.webhook_events (instance_id, tenant_id, dialect, payload_type, headers, body)
	VALUES (inst.id, inst.tenant_id, p_dialect, p_payload_type, p_headers, coalesce(p_body, 'null'))
	RETURNING id INTO v_id;
	RETURN pgwa._apply_event(v_id, false);
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
-- stored.
CREATE FUNCTION pgwa.ingest_webhook(p_dialect text, p_headers jsonb, p_body jsonb) RETURNS jsonb
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
	s := pgwa._secret_instance(t.token, pgwa._inbound_instance_key(p_body));
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
