-------------------------------------------------------------------------------
-- /connections/...: the sessions API of seed 003 ("PRD - Plataforma de
-- Conexões WhatsApp", section 17). A connection is an instance of the
-- tenant; its sessionId is the instance id, so everything else (queue,
-- dead letters, history sync under /v1/instances/{id}) applies to it too;
-- deleting one is pgwa.delete_instance (40_instances.sql).
--
--   POST   /connections               {label, webhookUrl?, config?} -> 201 {sessionId, ...}
--   GET    /connections               {connections: [...]}
--   GET    /connections/{id}          the connection
--   DELETE /connections/{id}          deletes it (409 while a message is in flight)
--   GET    /connections/{id}/qr       its latest QR code (404 when none)
--   POST   /connections/{id}/send     {messageId, to, type, body} -> 202 {queued, messageId}
-------------------------------------------------------------------------------

-------------------------------------------------------------------------------
-- Helpers
-------------------------------------------------------------------------------
-- An instance name from a label: runs of anything but letters, digits, "."
-- and "_" become "-", trimmed to start with a letter or digit, at most 64
-- characters ("Loja A - 1" is Loja-A-1). NULL when nothing is left.
CREATE FUNCTION pgwa._label_name(p_label text) RETURNS text
LANGUAGE sql IMMUTABLE
RETURN nullif(rtrim(left(regexp_replace(regexp_replace(p_label, '[^A-Za-z0-9._]+', '-', 'g'),
                                        '^[^A-Za-z0-9]+', ''), 64), '-'), '');

-- A connection as the API shows it. status: connected, disconnected, qr (a
-- QR code waits to be scanned) or unknown (not heard of yet).
CREATE FUNCTION pgwa.connection_json(p_instance uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT jsonb_build_object(
		'sessionId', i.id, 'label', coalesce(i.settings->>'label', i.name), 'name', i.name,
		'provider', i.provider, 'configured', pgwa._instance_configured(i),
		'status', CASE WHEN q.instance_id IS NOT NULL AND s.connection_state <> 'connected' THEN 'qr'
		               ELSE s.connection_state END,
		'statusChangedAt', pgwa._iso(s.state_changed_at),
		'hasQrCode', q.instance_id IS NOT NULL,
		'queueLength', pgwa._queue_length(i.id),
		'webhooks', coalesce((
			SELECT jsonb_agg(jsonb_build_object('id', w.id, 'url', w.url, 'events', to_jsonb(w.events),
			                                    'active', w.active) ORDER BY w.created_at, w.id)
			FROM pgwa.webhook_subscriptions w
			WHERE w.tenant_id = i.tenant_id AND w.instance_id = i.id), '[]'),
		'createdAt', pgwa._iso(i.created_at), 'updatedAt', pgwa._iso(i.updated_at))
	FROM pgwa.instances i
	JOIN pgwa.instance_state s ON s.instance_id = i.id
	LEFT JOIN pgwa.instance_qrcodes q ON q.instance_id = i.id
	WHERE i.id = p_instance
$$;

-------------------------------------------------------------------------------
-- Handlers
-------------------------------------------------------------------------------
-- POST /connections {label, webhookUrl?, config?}. config holds what
-- POST /v1/instances takes, under the same names: name (default: made from
-- the label), provider (default broker), base_url, api_key,
-- broker_instance_id, delay_min_ms, delay_max_ms, max_attempts, settings.
-- The label is kept verbatim in settings.label. webhookUrl subscribes to
-- every event of this connection ('*'); the subscription's signing secret
-- is in the answer, this once.
CREATE FUNCTION pgwa._http_create_connection(p_tenant uuid, p_body text) RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	b        jsonb;
	c        jsonb;
	v_label  text;
	v_name   text;
	v_url    text;
	v_bad    text;
	v_id     uuid;
	w        record;
	v_map    jsonb := '{}';
	v_reply  jsonb;
	v_state  text;
	v_msg    text;
	v_field  text;
	v_detail text;
BEGIN
	BEGIN
		b := pgwa._json_body(p_body);
		v_label := btrim(pgwa._json_string(b, 'label', true));
		IF v_label = '' OR length(v_label) > 200 THEN
			PERFORM pgwa._raise('PW400', 'label must be a non-empty string of at most 200 characters', 'label');
		END IF;
		v_url := pgwa._json_string(b, 'webhookUrl');
		c := coalesce(nullif(b->'config', 'null'), '{}');
		IF jsonb_typeof(c) <> 'object' THEN
			PERFORM pgwa._raise('PW400', 'config must be a JSON object', 'config');
		END IF;
		SELECT k INTO v_bad FROM jsonb_object_keys(c) k
		WHERE k <> ALL (ARRAY['name', 'provider', 'base_url', 'api_key', 'broker_instance_id',
		                      'delay_min_ms', 'delay_max_ms', 'max_attempts', 'settings'])
		ORDER BY k LIMIT 1;
		IF FOUND THEN
			PERFORM pgwa._raise('PW400', format('config.%s is not a known setting; known: name, provider, '
			                    'base_url, api_key, broker_instance_id, delay_min_ms, delay_max_ms, '
			                    'max_attempts, settings', v_bad), 'config.' || v_bad);
		END IF;
		-- from here on the functions below name fields as they know them
		v_map := '{"provider": "config.provider", "base_url": "config.base_url", "api_key": "config.api_key",
		           "broker_instance_id": "config.broker_instance_id", "delay_min_ms": "config.delay_min_ms",
		           "delay_max_ms": "config.delay_max_ms", "max_attempts": "config.max_attempts",
		           "settings": "config.settings", "options": "config", "url": "webhookUrl"}'::jsonb
		         || jsonb_build_object('name', CASE WHEN c ? 'name' THEN 'config.name' ELSE 'label' END);
		v_name := coalesce(pgwa._json_string(c, 'name'), pgwa._label_name(v_label));
		IF v_name IS NULL THEN
			PERFORM pgwa._raise('PW400', 'label must contain a letter or a digit (or give config.name)', 'label');
		END IF;
		IF c ? 'settings' AND jsonb_typeof(c->'settings') NOT IN ('object', 'null') THEN
			PERFORM pgwa._raise('PW400', 'settings must be a JSON object', 'settings');
		END IF;
		v_id := pgwa.create_instance(p_tenant, v_name, coalesce(pgwa._json_string(c, 'provider'), 'broker'),
			pgwa._json_string(c, 'base_url'), pgwa._json_string(c, 'api_key'),
			jsonb_strip_nulls(jsonb_build_object(
				'broker_instance_id', pgwa._json_string(c, 'broker_instance_id'),
				'delay_min_ms', c->'delay_min_ms', 'delay_max_ms', c->'delay_max_ms',
				'max_attempts', c->'max_attempts'))
			|| jsonb_build_object('settings', coalesce(nullif(c->'settings', 'null'), '{}')
			                                  || jsonb_build_object('label', v_label)));
		v_reply := jsonb_build_object('sessionId', v_id);
		IF v_url IS NOT NULL THEN
			SELECT * INTO w FROM pgwa.create_webhook_subscription(p_tenant, v_url, ARRAY['*'], v_id);
			v_reply := v_reply || jsonb_build_object('webhook', jsonb_build_object(
				'id', w.id, 'url', v_url, 'events', jsonb_build_array('*'), 'secret', w.secret));
		END IF;
	EXCEPTION WHEN others THEN
		GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT,
		                        v_field = COLUMN_NAME, v_detail = PG_EXCEPTION_DETAIL;
		PERFORM pgwa._reraise_renamed(v_state, v_msg, v_field, v_detail, v_map);
	END;
	RETURN pgwa._reply(201, v_reply || pgwa.connection_json(v_id),
	                   jsonb_build_object('Location', '/connections/' || v_id));
END $$;

-- POST /connections/{id}/send {messageId, to, type, body}. messageId is
-- required (seed 003 section 9) and is the idempotency key: the same
-- messageId with the same message answers 200 with the message already
-- queued (Idempotent-Replayed: true), with another message 409. body is the
-- text of a text (or link) message, or an object with the fields of the
-- message's type ({"mediaUrl", "caption"} for an image...). Any other field
-- of a message (delayMessage, scheduledFor, ...) may sit beside them.
CREATE FUNCTION pgwa._http_connection_send(p_instance uuid, p_body text) RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	b        jsonb;
	v_key    text;
	v_type   text;
	m        jsonb;
	e        record;
	v_map    jsonb := '{}';
	v_state  text;
	v_msg    text;
	v_field  text;
	v_detail text;
BEGIN
	BEGIN
		b := pgwa._json_body(p_body);
		v_key := pgwa._json_string(b, 'messageId', true);
		v_type := coalesce(pgwa._json_string(b, 'type'), 'text');
		CASE jsonb_typeof(b->'body')
			WHEN 'string' THEN
				IF v_type NOT IN ('text', 'link') THEN
					PERFORM pgwa._raise('PW400', format('body must be an object holding the fields of type %s',
					                                    v_type), 'body');
				END IF;
				m := (b - 'body' - 'messageId') || jsonb_build_object('type', v_type, 'text', b->'body');
			WHEN 'object' THEN
				m := (b->'body') || (b - 'body' - 'messageId') || jsonb_build_object('type', v_type);
			ELSE
				PERFORM pgwa._raise('PW400', CASE WHEN b->'body' IS NULL OR b->'body' = 'null'
				                                  THEN 'body is required'
				                                  ELSE 'body must be a string or a JSON object' END, 'body');
		END CASE;
		SELECT * INTO e FROM pgwa.enqueue(p_instance, m, v_key);
	EXCEPTION WHEN others THEN
		GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT,
		                        v_field = COLUMN_NAME, v_detail = PG_EXCEPTION_DETAIL;
		-- the message's fields as the client wrote them: the text is body, a
		-- field of the type is in body
		IF v_field = 'text' AND jsonb_typeof(b->'body') = 'string' THEN
			v_map := '{"text": "body"}';
		ELSIF jsonb_typeof(b->'body') = 'object' AND v_field <> ''
		      AND NOT b ? split_part(v_field, '.', 1) AND v_field NOT IN ('to', 'type', 'messageId') THEN
			v_map := jsonb_build_object(v_field, 'body.' || v_field);
		END IF;
		PERFORM pgwa._reraise_renamed(v_state, v_msg, v_field, v_detail, v_map);
	END;
	RETURN pgwa._reply(CASE WHEN e.created THEN 202 ELSE 200 END,
		jsonb_build_object('queued', true, 'messageId', v_key, 'id', e.message_id, 'status', e.status,
		                   'scheduledFor', pgwa._iso(e.scheduled_for))
		|| CASE WHEN e.created THEN '{}'::jsonb ELSE '{"duplicate": true}'::jsonb END,
		CASE WHEN e.created THEN jsonb_build_object('Location', '/v1/messages/' || e.message_id)
		     ELSE '{"Idempotent-Replayed": "true"}'::jsonb END);
END $$;

-- GET /connections/{id}/qr: the latest QR code, 404 when there is none
-- (never received, or connected since). As JSON, or as the PNG to scan
-- (seed 003: "qr/png") with ?format=png or Accept: image/png, which
-- pgwa-http sends as bytes (X-Pgwa-Body-Encoding).
CREATE FUNCTION pgwa._http_connection_qr(p_instance uuid, p_query jsonb DEFAULT '{}',
                                         p_headers jsonb DEFAULT '{}') RETURNS pgwa.http_response
LANGUAGE plpgsql STABLE AS $$
DECLARE
	q     jsonb := pgwa.instance_qrcode(p_instance);
	m     text[];
	v_png bytea;
BEGIN
	IF q IS NULL THEN
		PERFORM pgwa._raise('PW404', 'no QR code: none was received yet, or the connection is connected',
		                    'sessionId');
	END IF;
	IF lower(coalesce(p_query->>'format', '')) = 'png' OR coalesce(p_headers->>'accept', '') ILIKE '%image/png%' THEN
		m := regexp_match(coalesce(q->>'base64', ''), '^(data:image/png;base64,)?([A-Za-z0-9+/=\s]+)$');
		BEGIN
			v_png := decode(m[2], 'base64');
		EXCEPTION WHEN others THEN
			v_png := NULL;
		END;
		IF v_png IS NULL OR substring(v_png FROM 1 FOR 8) <> '\x89504e470d0a1a0a'::bytea THEN
			PERFORM pgwa._raise('PW404', 'the QR code has no PNG image, only its code', 'format');
		END IF;
		RETURN ROW(200, jsonb_build_object('Content-Type', 'image/png', 'Cache-Control', 'no-store',
		                                   'X-Pgwa-Body-Encoding', 'base64'), encode(v_png, 'base64'))::pgwa.http_response;
	END IF;
	-- a QR code is a credential for a minute: not for caches
	RETURN pgwa._reply(200, jsonb_build_object('sessionId', p_instance) || (q - 'instanceId'),
	                   '{"Cache-Control": "no-store"}');
END $$;

CREATE FUNCTION pgwa._http_delete_connection(p_instance uuid) RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	n int;
	v_state  text;
	v_msg    text;
	v_field  text;
	v_detail text;
BEGIN
	BEGIN
		n := pgwa.delete_instance(p_instance);
	EXCEPTION WHEN others THEN
		GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT,
		                        v_field = COLUMN_NAME, v_detail = PG_EXCEPTION_DETAIL;
		PERFORM pgwa._reraise_renamed(v_state, v_msg, v_field, v_detail, '{"instance_id": "sessionId"}');
	END;
	RETURN pgwa._reply(200, jsonb_build_object('sessionId', p_instance, 'deleted', true,
	                                           'discardedMessages', n));
END $$;

CREATE FUNCTION pgwa._http_list_connections(p_tenant uuid) RETURNS pgwa.http_response
LANGUAGE sql STABLE AS $$
	SELECT pgwa._reply(200, jsonb_build_object('connections', coalesce(jsonb_agg(pgwa.connection_json(i.id)
	                                                              ORDER BY i.created_at, i.id), '[]')))
	FROM pgwa.instances i WHERE i.tenant_id = p_tenant
$$;

-------------------------------------------------------------------------------
-- Router: /connections/... (tenant key)
-------------------------------------------------------------------------------
CREATE FUNCTION pgwa._route_connections(p_method text, p_seg text[], p_query jsonb, p_headers jsonb,
                                        p_body text)
RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	n int := coalesce(array_length(p_seg, 1), 0);
	v_tenant uuid := pgwa._require_tenant(p_headers);
BEGIN
	IF n = 1 THEN
		IF p_method = 'POST' THEN
			RETURN pgwa._http_create_connection(v_tenant, p_body);
		ELSIF p_method = 'GET' THEN
			RETURN pgwa._http_list_connections(v_tenant);
		END IF;
		RETURN pgwa._not_allowed(p_method, 'GET, POST');
	ELSIF n = 2 THEN
		IF p_method = 'GET' THEN
			RETURN pgwa._reply(200, pgwa.connection_json(pgwa._tenant_instance(v_tenant, p_seg[2], 'connection', 'sessionId')));
		ELSIF p_method = 'DELETE' THEN
			RETURN pgwa._http_delete_connection(pgwa._tenant_instance(v_tenant, p_seg[2], 'connection', 'sessionId'));
		END IF;
		RETURN pgwa._not_allowed(p_method, 'GET, DELETE');
	ELSIF n = 3 AND p_seg[3] = 'qr' THEN
		IF p_method = 'GET' THEN
			RETURN pgwa._http_connection_qr(pgwa._tenant_instance(v_tenant, p_seg[2], 'connection', 'sessionId'),
			                                 p_query, p_headers);
		END IF;
		RETURN pgwa._not_allowed(p_method, 'GET');
	ELSIF n = 3 AND p_seg[3] = 'send' THEN
		IF p_method = 'POST' THEN
			RETURN pgwa._http_connection_send(pgwa._tenant_instance(v_tenant, p_seg[2], 'connection', 'sessionId'), p_body);
		END IF;
		RETURN pgwa._not_allowed(p_method, 'POST');
	END IF;
	RETURN NULL;
END $$;
