-------------------------------------------------------------------------------
-- The seeds' send routes, over pgwa.enqueue:
--   seed 000  POST /integrations/whatsapp/instances/{id}/messages (also under /api)
--   seed 004  POST /api/whatsapp/send-message, POST /api/whatsapp/schedule-message
-- pgwa._route (79_http_router.sql) and pgwa._route_api (74_http_inbound.sql)
-- hand these paths to pgwa._route_seed_send.
-------------------------------------------------------------------------------

-- pgwa.enqueue, with errors naming the route's own fields: p_fields maps a
-- message field (to, text, caption) to the body field it was built from.
CREATE FUNCTION pgwa._enqueue_as(p_instance uuid, p_message jsonb, p_key text, p_fields jsonb,
                                 OUT message_id uuid, OUT status text,
                                 OUT scheduled_for timestamptz, OUT created boolean)
LANGUAGE plpgsql AS $$
DECLARE
	v_state text;
	v_message text;
	v_field text;
	v_detail text;
BEGIN
	SELECT e.message_id, e.status, e.scheduled_for, e.created
	INTO message_id, status, scheduled_for, created
	FROM pgwa.enqueue(p_instance, p_message, p_key) e;
EXCEPTION WHEN others THEN
	GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
	                        v_field = COLUMN_NAME, v_detail = PG_EXCEPTION_DETAIL;
	IF v_state LIKE 'PW%' AND p_fields ? v_field THEN
		PERFORM pgwa._reraise_renamed(v_state, v_message, v_field, nullif(v_detail, ''), p_fields);
	END IF;
	RAISE;
END $$;

-------------------------------------------------------------------------------
-- Seed 000: POST /integrations/whatsapp/instances/{id}/messages
-- The body is the outbound contract: to, content (the text, or a media
-- caption), type (default text) and the fields of its type (template,
-- location, mediaUrl, mimeType, fileName, previewUrl, metadata); text and
-- a string message are read as content too. The Idempotency-Key header, or
-- else metadata.idempotencyKey, makes a retry return the message queued.
-- A disconnected instance is a 409 carrying its status and connected: false.
-------------------------------------------------------------------------------
CREATE FUNCTION pgwa._http_seed_instance_send(p_instance uuid, p_headers jsonb, p_body text)
RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	b jsonb := pgwa._json_body(p_body);
	v_type text := coalesce(pgwa._json_string(b, 'type'), 'text');
	v_content_field text;
	v_content text;
	v_state text;
	m jsonb;
	v_fields jsonb := '{}';
	v_text_field text;
	r pgwa.http_response;
	e record;
BEGIN
	SELECT s.connection_state INTO v_state FROM pgwa.instance_state s WHERE s.instance_id = p_instance;
	IF v_state = 'disconnected' THEN
		r := pgwa._error_reply('PW410', 'the instance is disconnected: reconnect it before sending',
		                       'instanceId', NULL, p_headers->>'x-request-id');
		r.body := (r.body::jsonb || jsonb_build_object('status', v_state, 'connected', false))::text;
		RETURN r;
	END IF;

	v_content_field := CASE WHEN b ? 'content' THEN 'content'
	                        WHEN jsonb_typeof(b->'message') = 'string' THEN 'message' END;
	v_content := pgwa._json_string(b, v_content_field);
	-- the contract's routing fields are the path's business, not the message's
	m := b - 'content' - 'message' - 'sessionId' - 'instanceId' - 'externalId';
	v_text_field := CASE WHEN v_type = 'text' THEN 'text'
	                     WHEN v_type IN ('image', 'video', 'document', 'audio') THEN 'caption' END;
	IF v_text_field IS NOT NULL AND NOT m ? v_text_field THEN
		IF v_content IS NOT NULL THEN
			m := m || jsonb_build_object(v_text_field, v_content);
		END IF;
		v_fields := jsonb_build_object(v_text_field, coalesce(v_content_field, 'content'));
	END IF;

	SELECT * INTO e FROM pgwa._enqueue_as(p_instance, m,
		coalesce(p_headers->>'idempotency-key', b #>> '{metadata,idempotencyKey}'), v_fields);
	RETURN pgwa._reply(CASE WHEN e.created THEN 202 ELSE 200 END,
		jsonb_build_object('messageId', e.message_id, 'status', e.status,
		                   'instanceId', p_instance, 'scheduledFor', pgwa._iso(e.scheduled_for)),
		CASE WHEN e.created THEN jsonb_build_object('Location', '/v1/messages/' || e.message_id)
		     ELSE '{"Idempotent-Replayed": "true"}'::jsonb END);
END $$;

-------------------------------------------------------------------------------
-- Seed 004: POST /api/whatsapp/send-message, POST /api/whatsapp/schedule-message
-- Body: phoneNumber (or phone), message (text, 1-4096 characters),
-- scheduledFor (schedule-message only: ISO 8601, future, at most 90 days
-- ahead), and the instance: instanceId, else instanceName (the instance's
-- name), else the tenant's only instance.
-------------------------------------------------------------------------------
CREATE FUNCTION pgwa._seed_instance(p_tenant uuid, b jsonb) RETURNS uuid
LANGUAGE plpgsql STABLE AS $$
DECLARE
	v_id text := pgwa._json_string(b, 'instanceId');
	v_name text := pgwa._json_string(b, 'instanceName');
	v uuid;
	n int;
BEGIN
	IF v_id IS NOT NULL THEN
		SELECT i.id INTO v FROM pgwa.instances i
		WHERE i.id = pgwa._uuid_or_null(v_id) AND i.tenant_id = p_tenant;
		IF v IS NULL THEN
			PERFORM pgwa._raise('PW404', 'instance not found', 'instanceId');
		END IF;
	ELSIF v_name IS NOT NULL THEN
		SELECT i.id INTO v FROM pgwa.instances i WHERE i.tenant_id = p_tenant AND i.name = v_name;
		IF v IS NULL THEN
			PERFORM pgwa._raise('PW404', format('no instance is named "%s"', v_name), 'instanceName');
		END IF;
	ELSE
		SELECT count(*), min(i.id::text)::uuid INTO n, v FROM pgwa.instances i WHERE i.tenant_id = p_tenant;
		IF n = 0 THEN
			PERFORM pgwa._raise('PW404', 'the tenant has no instance', 'instanceName');
		ELSIF n > 1 THEN
			PERFORM pgwa._raise('PW400',
				format('instanceName is required: the tenant has %s instances', n), 'instanceName');
		END IF;
	END IF;
	RETURN v;
END $$;

CREATE FUNCTION pgwa._http_seed_send_message(p_tenant uuid, p_headers jsonb, p_body text,
                                             p_schedule boolean)
RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	b jsonb := pgwa._json_body(p_body);
	v_phone_field text := CASE WHEN b ? 'phoneNumber' OR NOT b ? 'phone' THEN 'phoneNumber' ELSE 'phone' END;
	v_phone text := pgwa._json_string(b, v_phone_field, true);
	v_text text := pgwa._json_string(b, 'message', true);
	v_when text;
	v_instance uuid := pgwa._seed_instance(p_tenant, b);
	m jsonb;
	e record;
BEGIN
	m := jsonb_build_object('to', v_phone, 'type', 'text', 'text', v_text);
	IF p_schedule THEN
		v_when := pgwa._json_string(b, 'scheduledFor', true);
		m := m || jsonb_build_object('scheduledFor', v_when);
	END IF;
	SELECT * INTO e FROM pgwa._enqueue_as(v_instance, m, p_headers->>'idempotency-key',
		jsonb_build_object('to', v_phone_field, 'text', 'message'));
	IF p_schedule THEN
		RETURN pgwa._reply(202, jsonb_build_object('success', true, 'scheduleId', e.message_id,
			'scheduledFor', pgwa._iso(e.scheduled_for), 'message', 'message scheduled'),
			CASE WHEN e.created THEN '{}'::jsonb ELSE '{"Idempotent-Replayed": "true"}'::jsonb END);
	END IF;
	RETURN pgwa._reply(200, jsonb_build_object('success', true, 'status', e.status,
	                                           'messageId', e.message_id),
		CASE WHEN e.created THEN '{}'::jsonb ELSE '{"Idempotent-Replayed": "true"}'::jsonb END);
END $$;

-------------------------------------------------------------------------------
-- Seed 000: the broker's complementary operations, passed through
--   GET  /integrations/whatsapp/instances/{id}/status    connectivity
--   POST /integrations/whatsapp/instances/{id}/exists    recipients on WhatsApp
--   GET  /integrations/whatsapp/instances/{id}/groups    groups
--   GET  /integrations/whatsapp/instances/{id}/metrics   the broker's usage figures
--   POST /integrations/whatsapp/instances/{id}/broker    creates the instance at the broker
-- SQL decides what to call (the instance's broker, its credential, the
-- provider's path); pgwa-http makes the call itself with a bounded timeout
-- (http_front/forward.c), told by the internal X-Pgwa-Forward header, which
-- never reaches the client, and answers with the broker's reply: 502
-- BROKER_ERROR for a broker error, 502 BROKER_UNAVAILABLE, 504
-- BROKER_TIMEOUT. The database never waits for a broker.
-------------------------------------------------------------------------------
CREATE FUNCTION pgwa._http_broker_op(p_instance uuid, p_op text, p_body text) RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	i      pgwa.instances;
	b      jsonb := CASE WHEN p_op IN ('exists', 'broker') AND coalesce(p_body, '') <> '' THEN pgwa._json_body(p_body)
	                     WHEN p_op IN ('exists', 'broker') THEN '{}' END;
	v_base text;
	v_id   text;
	f      jsonb;
	v_nums jsonb;
BEGIN
	SELECT * INTO i FROM pgwa.instances WHERE id = p_instance;
	IF i.base_url IS NULL OR i.broker_api_key IS NULL THEN
		PERFORM pgwa._raise('PW503', 'the instance has no broker base_url or api_key', 'base_url');
	END IF;
	v_base := rtrim(i.base_url, '/');
	v_id := replace(i.broker_instance_id, '/', '%2F');
	IF p_op = 'exists' THEN
		-- one phone or a list: {"phone"} / {"to"} / {"numbers": [...]}
		v_nums := coalesce(b->'numbers', jsonb_build_array(coalesce(b->'phone', b->'to')));
		IF jsonb_typeof(v_nums) <> 'array' OR jsonb_array_length(v_nums) = 0 OR v_nums @> '[null]'
		   OR EXISTS (SELECT 1 FROM jsonb_array_elements(v_nums) x
		              WHERE jsonb_typeof(x) <> 'string' OR x #>> '{}' !~ '^\+?[0-9 ().-]{8,20}$') THEN
			PERFORM pgwa._raise('PW400', 'phone (or numbers) must be phone numbers', 'phone');
		END IF;
	END IF;
	f := CASE i.provider
		WHEN 'broker' THEN CASE p_op
			WHEN 'status' THEN jsonb_build_object('method', 'GET', 'path', '/instances/' || v_id || '/status')
			WHEN 'groups' THEN jsonb_build_object('method', 'GET', 'path', '/instances/' || v_id || '/groups')
			WHEN 'metrics' THEN jsonb_build_object('method', 'GET', 'path', '/instances/' || v_id || '/metrics')
			WHEN 'exists' THEN jsonb_build_object('method', 'POST', 'path', '/instances/' || v_id || '/exists',
			                                      'body', b || jsonb_build_object('numbers', v_nums))
			WHEN 'broker' THEN jsonb_build_object('method', 'POST', 'path', '/instances',
			                                      'body', jsonb_build_object('id', i.broker_instance_id, 'name', i.name) || b)
			END
		WHEN 'evolution' THEN CASE p_op
			WHEN 'status' THEN jsonb_build_object('method', 'GET', 'path', '/instance/connectionState/' || v_id)
			WHEN 'groups' THEN jsonb_build_object('method', 'GET',
			                                      'path', '/group/fetchAllGroups/' || v_id || '?getParticipants=false')
			WHEN 'exists' THEN jsonb_build_object('method', 'POST', 'path', '/chat/whatsappNumbers/' || v_id,
			                                      'body', jsonb_build_object('numbers', v_nums))
			WHEN 'broker' THEN jsonb_build_object('method', 'POST', 'path', '/instance/create',
			                                      'body', jsonb_build_object('instanceName', i.broker_instance_id,
			                                                                 'integration', 'WHATSAPP-BAILEYS') || b)
			END
		END;
	IF f IS NULL THEN
		PERFORM pgwa._raise('PW422', format('the %s provider has no %s operation', i.provider, p_op), 'instance_id');
	END IF;
	RETURN pgwa._reply(200, '{}', jsonb_build_object('X-Pgwa-Forward', jsonb_build_object(
		'method', f->>'method', 'url', v_base || (f->>'path'),
		'headers', CASE i.provider WHEN 'evolution' THEN jsonb_build_object('apikey', i.broker_api_key)
		                           ELSE jsonb_build_object('X-API-Key', i.broker_api_key) END,
		'body', (f->'body')::text)::text));
END $$;

-- The seeds' send routes and broker operations; p_seg is the path without
-- its /api prefix. NULL when the path is not one of them.
CREATE FUNCTION pgwa._route_seed_send(p_method text, p_seg text[], p_query jsonb, p_headers jsonb,
                                      p_body text)
RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	n      int := coalesce(array_length(p_seg, 1), 0);
	v_verb text;
BEGIN
	IF n = 5 AND p_seg[1] = 'integrations' AND p_seg[2] = 'whatsapp' AND p_seg[3] = 'instances'
	   AND p_seg[5] = 'messages' THEN
		IF p_method = 'POST' THEN
			RETURN pgwa._http_seed_instance_send(
				pgwa._tenant_instance(pgwa._require_tenant(p_headers), p_seg[4]), p_headers, p_body);
		END IF;
		RETURN pgwa._not_allowed(p_method, 'POST');
	ELSIF n = 5 AND p_seg[1] = 'integrations' AND p_seg[2] = 'whatsapp' AND p_seg[3] = 'instances'
	      AND p_seg[5] IN ('status', 'exists', 'groups', 'metrics', 'broker') THEN
		v_verb := CASE WHEN p_seg[5] IN ('exists', 'broker') THEN 'POST' ELSE 'GET' END;
		IF p_method = v_verb THEN
			RETURN pgwa._http_broker_op(pgwa._tenant_instance(pgwa._require_tenant(p_headers), p_seg[4]),
			                            p_seg[5], p_body);
		END IF;
		RETURN pgwa._not_allowed(p_method, v_verb);
	ELSIF n = 2 AND p_seg[1] = 'whatsapp' AND p_seg[2] IN ('send-message', 'schedule-message') THEN
		IF p_method = 'POST' THEN
			RETURN pgwa._http_seed_send_message(pgwa._require_tenant(p_headers), p_headers, p_body,
			                                    p_seg[2] = 'schedule-message');
		END IF;
		RETURN pgwa._not_allowed(p_method, 'POST');
	END IF;
	RETURN NULL;
END $$;
