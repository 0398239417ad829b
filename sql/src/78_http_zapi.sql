-------------------------------------------------------------------------------
-- The Z-API dialect: /instances/{instanceId}/token/{token}/..., for clients
-- written against Z-API. {instanceId} is the pgwa instance id; {token} is the
-- instance's Z-API token (pgwa.set_zapi_token), which authenticates instead
-- of an API key. When the instance also has a client token
-- (pgwa.set_zapi_client_token), every request must carry it in Client-Token.
--
-- Sends become pgwa messages (pgwa.enqueue) and answer Z-API's
-- {zaapId, messageId, id}, all three the pgwa message id: the WhatsApp id is
-- known only once the message is sent. Errors keep their HTTP status and
-- take Z-API's shape, {"error": "<message>"}, with pgwa's code and the
-- offending field (named as Z-API names it) beside it.
-------------------------------------------------------------------------------

-- An instance's Z-API credentials; only their SHA-256 is kept.
CREATE TABLE pgwa.zapi_tokens (
	instance_id       uuid PRIMARY KEY REFERENCES pgwa.instances (id) ON DELETE CASCADE,
	tenant_id         uuid NOT NULL,
	token_hash        bytea NOT NULL,
	client_token_hash bytea,
	created_at        timestamptz NOT NULL DEFAULT now(),
	rotated_at        timestamptz
);

-- A token travels in the path: URL-safe characters only, and a digit, so
-- that pgwa-http's per-route metrics count it as {id} (http_front/metrics.c).
CREATE FUNCTION pgwa._zapi_check_token(p_token text, p_field text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
	IF p_token IS NULL OR p_token !~ '^[A-Za-z0-9_-]{16,128}$' OR p_token !~ '[0-9]' THEN
		PERFORM pgwa._raise('PW400', format('%s must be 16 to 128 letters, digits, - or _, with a digit',
		                                    p_field), p_field);
	END IF;
END $$;

-- Sets (or rotates) an instance's Z-API token; with p_token NULL a random one
-- is generated. Returned once. The client token, if any, stays.
CREATE FUNCTION pgwa.set_zapi_token(p_instance uuid, p_token text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	v_tenant uuid;
	v_token  text := coalesce(p_token, upper(substr(pgwa._random_token(), 6)));
BEGIN
	SELECT i.tenant_id INTO v_tenant FROM pgwa.instances i WHERE i.id = p_instance;
	IF NOT FOUND THEN
		PERFORM pgwa._raise('PW404', 'instance not found', 'instance_id');
	END IF;
	PERFORM pgwa._zapi_check_token(v_token, 'token');
	INSERT INTO pgwa.zapi_tokens AS z (instance_id, tenant_id, token_hash)
	VALUES (p_instance, v_tenant, pgwa._hash_key(v_token))
	ON CONFLICT (instance_id) DO UPDATE SET token_hash = excluded.token_hash, rotated_at = now();
	RETURN v_token;
END $$;

-- Requires (or, with NULL, stops requiring) a Client-Token header on the
-- instance's Z-API routes. The instance must have a Z-API token.
CREATE FUNCTION pgwa.set_zapi_client_token(p_instance uuid, p_client_token text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	IF p_client_token IS NOT NULL THEN
		PERFORM pgwa._zapi_check_token(p_client_token, 'client_token');
	END IF;
	UPDATE pgwa.zapi_tokens SET client_token_hash = pgwa._hash_key(p_client_token), rotated_at = now()
	WHERE instance_id = p_instance;
	IF NOT FOUND THEN
		PERFORM pgwa._raise('PW404', 'the instance has no Z-API token: set one first', 'instance_id');
	END IF;
	RETURN p_client_token IS NOT NULL;
END $$;

-- Removes an instance's Z-API credentials: its Z-API routes answer 401.
CREATE FUNCTION pgwa.clear_zapi_token(p_instance uuid) RETURNS boolean
LANGUAGE sql AS $$
	WITH d AS (DELETE FROM pgwa.zapi_tokens WHERE instance_id = p_instance RETURNING 1)
	SELECT EXISTS (SELECT 1 FROM d)
$$;

-- The instance a Z-API path names, once its token (and client token, when
-- one is set) match. An unknown instance and a wrong token answer alike.
CREATE FUNCTION pgwa._zapi_instance(p_id text, p_token text, p_headers jsonb) RETURNS uuid
LANGUAGE plpgsql STABLE AS $$
DECLARE
	z pgwa.zapi_tokens;
	v_client text := p_headers->>'client-token';
BEGIN
	SELECT * INTO z FROM pgwa.zapi_tokens t
	WHERE t.instance_id = pgwa._uuid_or_null(p_id) AND t.token_hash = pgwa._hash_key(p_token);
	IF NOT FOUND THEN
		PERFORM pgwa._raise('PW401', 'the instance or its token is not valid', 'token');
	END IF;
	IF z.client_token_hash IS NOT NULL THEN
		IF coalesce(v_client, '') = '' THEN
			PERFORM pgwa._raise('PW401', 'the Client-Token header is required', 'Client-Token');
		ELSIF pgwa._hash_key(v_client) <> z.client_token_hash THEN
			PERFORM pgwa._raise('PW401', 'the Client-Token is not allowed', 'Client-Token');
		END IF;
	END IF;
	RETURN z.instance_id;
END $$;

-------------------------------------------------------------------------------
-- Sends
-------------------------------------------------------------------------------
-- Z-API's phone: digits, or a group id written "<digits>-group".
CREATE FUNCTION pgwa._zapi_phone(p jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE
RETURN CASE WHEN jsonb_typeof(p) = 'string' AND p #>> '{}' ~ '^[0-9]+-group$'
            THEN to_jsonb(replace(p #>> '{}', '-group', '') || '@g.us') ELSE p END;

-- Z-API writes coordinates as strings ("-23.5"): read those as numbers.
CREATE FUNCTION pgwa._zapi_number(p jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE
RETURN CASE WHEN jsonb_typeof(p) = 'string' AND btrim(p #>> '{}') ~ '^[-+]?[0-9]{1,3}(\.[0-9]+)?$'
            THEN to_jsonb(btrim(p #>> '{}')::numeric) ELSE p END;

-- A JSON array member of b, or a 400 naming it.
CREATE FUNCTION pgwa._zapi_array(b jsonb, p_key text, p_field text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
	IF jsonb_typeof(b->p_key) IS DISTINCT FROM 'array' OR jsonb_array_length(b->p_key) = 0 THEN
		PERFORM pgwa._raise('PW400', format('%s must be a non-empty array', p_field), p_field);
	END IF;
	RETURN b->p_key;
END $$;

-- send-option-list and send-button-list: pgwa has no list or button
-- message, so the choices go out as text under the message, numbered, for
-- the contact to answer with one (optionList: its title in bold, each
-- option's title and description; buttonList: each label).
CREATE FUNCTION pgwa._zapi_choices_text(p_kind text, b jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
	v_list_key text := CASE p_kind WHEN 'option-list' THEN 'optionList' ELSE 'buttonList' END;
	v_items_key text := CASE p_kind WHEN 'option-list' THEN 'options' ELSE 'buttons' END;
	v_label_key text := CASE p_kind WHEN 'option-list' THEN 'title' ELSE 'label' END;
	v_field text := v_list_key || '.' || v_items_key;
	v_text text := pgwa._json_string(b, 'message', true);
	v_list jsonb := b->v_list_key;
	v_title text;
	o jsonb;
	n int := 0;
BEGIN
	IF jsonb_typeof(v_list) IS DISTINCT FROM 'object' THEN
		PERFORM pgwa._raise('PW400', format('%s must be an object', v_list_key), v_list_key);
	END IF;
	IF btrim(v_text) = '' THEN
		PERFORM pgwa._raise('PW400', 'message must not be empty', 'message');
	END IF;
	v_title := pgwa._json_string(v_list, 'title');
	IF coalesce(v_title, '') <> '' THEN
		v_text := v_text || E'\n\n*' || v_title || '*';
	END IF;
	v_text := v_text || CASE WHEN coalesce(v_title, '') = '' THEN E'\n' ELSE '' END;
	FOR o IN SELECT jsonb_array_elements(pgwa._zapi_array(v_list, v_items_key, v_field)) LOOP
		n := n + 1;
		IF jsonb_typeof(o) <> 'object' OR jsonb_typeof(o->v_label_key) IS DISTINCT FROM 'string'
		   OR btrim(o->>v_label_key) = '' THEN
			PERFORM pgwa._raise('PW400', format('each of %s needs a %s', v_field, v_label_key),
			                    format('%s[%s].%s', v_field, n - 1, v_label_key));
		END IF;
		v_text := v_text || E'\n' || n || '. ' || (o->>v_label_key)
		          || coalesce(' - ' || nullif(o->>'description', ''), '');
	END LOOP;
	RETURN v_text;
END $$;

-- The pgwa message a send route's body stands for, and the body field each
-- message field came from (so that errors name the body's fields).
-- p_extension is send-document's path segment.
CREATE FUNCTION pgwa._zapi_message(p_kind text, p_extension text, b jsonb,
                                   OUT message jsonb, OUT fields jsonb)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
	v_name text;
BEGIN
	fields := '{"to": "phone", "quotedMessageId": "messageId"}';
	message := jsonb_build_object('to', pgwa._zapi_phone(b->'phone'),
		'delayMessage', b->'delayMessage', 'delayTyping', b->'delayTyping',
		-- Z-API's messageId on a send is the message it replies to
		'quotedMessageId', b->'messageId');
	CASE p_kind
	WHEN 'text' THEN
		message := message || jsonb_build_object('type', 'text', 'text', b->'message');
		fields := fields || '{"text": "message"}';
	WHEN 'image', 'audio', 'video' THEN
		message := message || jsonb_build_object('type', p_kind, 'mediaUrl', b->p_kind, 'caption', b->'caption');
		fields := fields || jsonb_build_object('mediaUrl', p_kind);
		IF p_kind = 'audio' THEN
			message := message - 'caption';
		END IF;
	WHEN 'document' THEN
		IF p_extension IS NULL OR p_extension !~ '^[A-Za-z0-9]{1,10}$' THEN
			PERFORM pgwa._raise('PW400', 'the path must end with the document''s extension: send-document/{extension}',
			                    'extension');
		END IF;
		-- the extension in the path names the file's type
		v_name := coalesce(pgwa._json_string(b, 'fileName'), 'document');
		IF lower(v_name) NOT LIKE '%.' || lower(p_extension) THEN
			v_name := v_name || '.' || lower(p_extension);
		END IF;
		message := message || jsonb_build_object('type', 'document', 'mediaUrl', b->'document',
		                                         'fileName', v_name, 'caption', b->'caption');
		fields := fields || '{"mediaUrl": "document"}';
	WHEN 'link' THEN
		message := message || jsonb_build_object('type', 'link', 'text', b->'message', 'linkUrl', b->'linkUrl',
			'title', b->'title', 'description', b->'linkDescription', 'imageUrl', b->'image');
		fields := fields || '{"text": "message", "description": "linkDescription", "imageUrl": "image"}';
	WHEN 'location' THEN
		message := message || jsonb_build_object('type', 'location', 'location', jsonb_build_object(
			'latitude', pgwa._zapi_number(b->'latitude'), 'longitude', pgwa._zapi_number(b->'longitude'),
			'name', b->'title', 'address', b->'address'));
		fields := fields || '{"location.latitude": "latitude", "location.longitude": "longitude",
		                      "location.name": "title", "location.address": "address"}';
	WHEN 'contact' THEN
		message := message || jsonb_build_object('type', 'contact', 'contact', jsonb_build_object(
			'name', b->'contactName', 'phone', b->'contactPhone'));
		fields := fields || '{"contact.name": "contactName", "contact.phone": "contactPhone"}';
	WHEN 'reaction' THEN
		-- here messageId is the message reacted to
		message := (message - 'quotedMessageId') || jsonb_build_object('type', 'reaction', 'reaction',
			jsonb_build_object('messageId', b->'messageId', 'emoji', b->'reaction'));
		fields := fields || '{"reaction.messageId": "messageId", "reaction.emoji": "reaction"}';
	WHEN 'poll' THEN
		message := message || jsonb_build_object('type', 'poll', 'poll', jsonb_build_object(
			'name', b->'message', 'options', b->'poll', 'selectableCount', b->'pollMaxOptions'));
		fields := fields || '{"poll.name": "message", "poll.options": "poll",
		                      "poll.selectableCount": "pollMaxOptions"}';
	WHEN 'option-list' THEN
		message := message || jsonb_build_object('type', 'text', 'text', pgwa._zapi_choices_text(p_kind, b));
		fields := fields || '{"text": "message"}';
	WHEN 'button-list' THEN
		-- buttonList.image: an image with the choices as its caption
		IF jsonb_typeof(b #> '{buttonList,image}') = 'string' THEN
			message := message || jsonb_build_object('type', 'image', 'mediaUrl', b #> '{buttonList,image}',
			                                         'caption', pgwa._zapi_choices_text(p_kind, b));
		ELSE
			message := message || jsonb_build_object('type', 'text', 'text', pgwa._zapi_choices_text(p_kind, b));
		END IF;
		fields := fields || '{"text": "message", "caption": "message", "mediaUrl": "buttonList.image"}';
	END CASE;
	message := jsonb_strip_nulls(message);
END $$;

-- POST /send-{kind}: 200 {zaapId, messageId, id}; an Idempotency-Key
-- header works as on pgwa's own routes (a repeat answers the same ids).
CREATE FUNCTION pgwa._http_zapi_send(p_instance uuid, p_kind text, p_extension text, p_headers jsonb,
                                     p_body text)
RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	m record;
	e record;
BEGIN
	m := pgwa._zapi_message(p_kind, p_extension, pgwa._json_body(p_body));
	-- media as a URL or inline (base64): inline media become an upload (75_uploads.sql)
	IF m.message ? 'mediaUrl' THEN
		m.message := jsonb_set(m.message, '{mediaUrl}', pgwa._inline_media(
			(SELECT i.tenant_id FROM pgwa.instances i WHERE i.id = p_instance), p_headers,
			m.message->'mediaUrl', m.message->>'type', m.fields->>'mediaUrl', m.message->>'fileName'));
	END IF;
	SELECT * INTO e FROM pgwa._enqueue_as(p_instance, m.message, p_headers->>'idempotency-key', m.fields);
	RETURN pgwa._reply(200, jsonb_build_object('zaapId', e.message_id, 'messageId', e.message_id,
	                                           'id', e.message_id),
		CASE WHEN e.created THEN '{}'::jsonb ELSE '{"Idempotent-Replayed": "true"}'::jsonb END);
END $$;

-------------------------------------------------------------------------------
-- Queue and status
-------------------------------------------------------------------------------
-- A queued message as Z-API's queue lists it.
CREATE FUNCTION pgwa._zapi_queue_item(m jsonb) RETURNS jsonb
LANGUAGE sql STABLE
RETURN jsonb_strip_nulls(jsonb_build_object(
	'_id', m->'id', 'ZaapId', m->'id', 'MessageId', m->'id', 'InstanceId', m->'instance_id',
	'Phone', m->'to', 'Type', m->'type', 'Status', m->'status',
	'Message', coalesce(m #> '{message,text}', m #> '{message,caption}', m #> '{message,poll,name}',
	                    m #> '{message,location,name}', m #> '{message,contact,name}',
	                    m #> '{message,reaction,emoji}', m #> '{message,mediaUrl}'),
	'DelayMessage', m #> '{message,delayMessage}', 'DelayTyping', m #> '{message,delayTyping}',
	'Created', floor(extract(epoch FROM (m->>'created_at')::timestamptz) * 1000)::bigint,
	'ScheduledFor', m->'scheduled_for'));

-- A positive integer query parameter, or a 400 naming it.
CREATE FUNCTION pgwa._zapi_query_int(p_query jsonb, p_key text, p_default int, p_max int) RETURNS int
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
	v int := pgwa._query_int(p_query, p_key, p_default);
BEGIN
	IF v NOT BETWEEN 1 AND p_max THEN
		PERFORM pgwa._raise('PW400', format('%s must be between 1 and %s', p_key, p_max), p_key);
	END IF;
	RETURN v;
END $$;

-- GET /queue?page=1&pageSize=100: {size, messages}, what is still to go out
-- (in flight included) in sending order.
CREATE FUNCTION pgwa._http_zapi_queue(p_instance uuid, p_query jsonb) RETURNS pgwa.http_response
LANGUAGE plpgsql STABLE AS $$
DECLARE
	v_size int := pgwa._zapi_query_int(p_query, 'pageSize', 100, 500);
	v_page int := pgwa._zapi_query_int(p_query, 'page', 1, 1000000);
	q jsonb;
BEGIN
	q := pgwa.queue_list(p_instance, NULL, NULL, v_size, least((v_page - 1)::bigint * v_size, 2147483647)::int);
	RETURN pgwa._reply(200, jsonb_build_object('size', q->'total', 'messages',
		(SELECT coalesce(jsonb_agg(pgwa._zapi_queue_item(x) ORDER BY n), '[]')
		 FROM jsonb_array_elements(q->'items') WITH ORDINALITY a(x, n))));
END $$;

-- DELETE /queue/{zaapId}: cancels one waiting message of the instance.
CREATE FUNCTION pgwa._http_zapi_cancel(p_instance uuid, p_id text) RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	v uuid;
	v_state text;
	v_message text;
	v_field text;
	v_detail text;
BEGIN
	SELECT o.id INTO v FROM pgwa.outbox o WHERE o.instance_id = p_instance AND o.id = pgwa._uuid_or_null(p_id);
	IF v IS NULL THEN
		PERFORM pgwa._raise('PW404', 'no message of this instance has that zaapId', 'zaapId');
	END IF;
	BEGIN
		PERFORM pgwa.cancel(v);
	EXCEPTION WHEN others THEN
		GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
		                        v_field = COLUMN_NAME, v_detail = PG_EXCEPTION_DETAIL;
		PERFORM pgwa._reraise_renamed(v_state, v_message, v_field, nullif(v_detail, ''),
		                              '{"message_id": "zaapId"}');
	END;
	RETURN pgwa._reply(200, '{"value": true}');
END $$;

-- GET /status: Z-API's {connected, error, smartphoneConnected} from the
-- instance's connection state (pgwa does not see the phone apart from the
-- session, so smartphoneConnected follows connected).
CREATE FUNCTION pgwa._http_zapi_status(p_instance uuid) RETURNS pgwa.http_response
LANGUAGE sql STABLE AS $$
	SELECT pgwa._reply(200, jsonb_build_object(
		'connected', s.connection_state = 'connected',
		'error', CASE WHEN s.connection_state = 'connected' THEN 'You are already connected.'
		              ELSE 'You are not connected.' END,
		'smartphoneConnected', s.connection_state = 'connected'))
	FROM pgwa.instance_state s WHERE s.instance_id = p_instance
$$;

-------------------------------------------------------------------------------
-- Webhook settings: each update-webhook-{kind} is one client webhook
-- subscription of the instance (62_client_webhooks.sql) marked dialect zapi,
-- for the pgwa events that kind stands for.
-------------------------------------------------------------------------------
CREATE FUNCTION pgwa._zapi_webhook_kinds() RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN '{
	"received":          {"events": ["messages.new"], "match": {"direction": "inbound"}},
	"received-delivery": {"events": ["messages.new", "message.status"]},
	"delivery":          {"events": ["message.status"]},
	"message-status":    {"events": ["message.status"]},
	"connected":         {"events": ["instance.status"], "match": {"state": "connected"}},
	"disconnected":      {"events": ["instance.status"], "match": {"state": "disconnected"}}
}'::jsonb;

-- Points an instance's Z-API webhook of p_kind at p_url, replacing the one
-- set before (its waiting deliveries go to the new URL); an empty or NULL
-- URL removes it. Returns the subscription id (NULL when removed).
CREATE FUNCTION pgwa.set_zapi_webhook(p_instance uuid, p_kind text, p_url text) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
	k jsonb := pgwa._zapi_webhook_kinds()->p_kind;
	v_tenant uuid;
	v_id uuid;
	v_state text;
	v_message text;
	v_field text;
	v_detail text;
BEGIN
	IF k IS NULL THEN
		PERFORM pgwa._raise('PW400', format('kind must be one of %s',
			(SELECT string_agg(x, ', ' ORDER BY x) FROM jsonb_object_keys(pgwa._zapi_webhook_kinds()) x)), 'kind');
	END IF;
	SELECT i.tenant_id INTO v_tenant FROM pgwa.instances i WHERE i.id = p_instance;
	IF NOT FOUND THEN
		PERFORM pgwa._raise('PW404', 'instance not found', 'instance_id');
	END IF;
	-- the lock create_webhook_subscription takes: one change at a time per tenant
	PERFORM 1 FROM pgwa.tenants t WHERE t.id = v_tenant FOR UPDATE;
	SELECT s.id INTO v_id FROM pgwa.webhook_subscriptions s
	WHERE s.tenant_id = v_tenant AND s.instance_id = p_instance AND s.dialect = 'zapi' AND s.dialect_kind = p_kind;
	IF coalesce(p_url, '') = '' THEN
		DELETE FROM pgwa.webhook_subscriptions s WHERE s.tenant_id = v_tenant AND s.id = v_id;
		RETURN NULL;
	END IF;
	IF length(p_url) > 2048 OR p_url !~ '^https?://[^\s/?#]+([/?#]\S*)?$' THEN
		PERFORM pgwa._raise('PW400', 'value must be an http or https URL of at most 2048 characters', 'value');
	END IF;
	IF v_id IS NOT NULL THEN
		UPDATE pgwa.webhook_subscriptions s SET url = p_url, updated_at = now()
		WHERE s.tenant_id = v_tenant AND s.id = v_id AND s.url IS DISTINCT FROM p_url;
		RETURN v_id;
	END IF;
	BEGIN
		SELECT c.id INTO v_id FROM pgwa.create_webhook_subscription(v_tenant, p_url,
			ARRAY(SELECT jsonb_array_elements_text(k->'events')), p_instance) c;
	EXCEPTION WHEN others THEN
		GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
		                        v_field = COLUMN_NAME, v_detail = PG_EXCEPTION_DETAIL;
		PERFORM pgwa._reraise_renamed(v_state, v_message, v_field, nullif(v_detail, ''), '{"url": "value"}');
	END;
	UPDATE pgwa.webhook_subscriptions s SET dialect = 'zapi', dialect_kind = p_kind, match = k->'match'
	WHERE s.tenant_id = v_tenant AND s.id = v_id;
	RETURN v_id;
END $$;

-- PUT /update-webhook-{kind} and /update-every-webhooks {"value": url}:
-- 200 {"value": true}. Every webhook is each kind but received-delivery.
CREATE FUNCTION pgwa._http_zapi_webhook(p_instance uuid, p_kind text, p_body text) RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	v_url text := pgwa._json_string(pgwa._json_body(p_body), 'value', true);
BEGIN
	IF p_kind = 'every' THEN
		PERFORM pgwa.set_zapi_webhook(p_instance, k, v_url)
		FROM unnest(ARRAY['received', 'delivery', 'message-status', 'connected', 'disconnected']) k;
	ELSE
		PERFORM pgwa.set_zapi_webhook(p_instance, p_kind, v_url);
	END IF;
	RETURN pgwa._reply(200, '{"value": true}');
END $$;

-------------------------------------------------------------------------------
-- The router
-------------------------------------------------------------------------------
-- An error answer in Z-API's shape: {"error": "<message>", "code", "field"?,
-- "detail"?, "request_id"?}, same status; no Bearer challenge.
CREATE FUNCTION pgwa._zapi_error_shape(r pgwa.http_response) RETURNS pgwa.http_response
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
	e jsonb;
BEGIN
	IF r.status < 400 OR r.body IS NULL THEN
		RETURN r;
	END IF;
	e := r.body::jsonb->'error';
	IF jsonb_typeof(e) = 'object' THEN
		r.body := (jsonb_build_object('error', e->'message') || (e - 'message'))::text;
	END IF;
	r.headers := r.headers - 'WWW-Authenticate';
	RETURN r;
END $$;

-- GET /qr-code and /qr-code/image: the latest QR code the broker sent, as
-- Z-API gives it: {"value": code} or {"value": "data:image/png;base64,..."};
-- {"connected": true} once connected; 404 naming value before any.
CREATE FUNCTION pgwa._http_zapi_qr(p_instance uuid, p_image boolean) RETURNS pgwa.http_response
LANGUAGE plpgsql STABLE AS $$
DECLARE
	q jsonb := pgwa.instance_qrcode(p_instance);
	v text := CASE WHEN p_image THEN q->>'base64' ELSE q->>'code' END;
BEGIN
	IF (SELECT s.connection_state = 'connected' FROM pgwa.instance_state s WHERE s.instance_id = p_instance) THEN
		RETURN pgwa._reply(200, '{"connected": true}');
	END IF;
	IF coalesce(v, '') = '' THEN
		PERFORM pgwa._raise('PW404', 'no QR code yet: the broker has not sent one', 'value');
	END IF;
	IF p_image AND v NOT LIKE 'data:%' THEN
		v := 'data:image/png;base64,' || v;
	END IF;
	-- a QR code is a credential for a minute: not for caches
	RETURN pgwa._reply(200, jsonb_build_object('value', v), '{"Cache-Control": "no-store"}');
END $$;

CREATE FUNCTION pgwa._route_zapi_authed(p_method text, p_seg text[], p_query jsonb, p_headers jsonb,
                                        p_body text)
RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	n int := coalesce(array_length(p_seg, 1), 0);
	i uuid := pgwa._zapi_instance(p_seg[2], p_seg[4], p_headers);
	v_route text := p_seg[5];
BEGIN
	IF n IN (5, 6) AND v_route = 'send-document' OR n = 5 AND v_route IN (
	   'send-text', 'send-image', 'send-audio', 'send-video', 'send-link', 'send-location',
	   'send-contact', 'send-reaction', 'send-poll', 'send-option-list', 'send-button-list') THEN
		IF p_method = 'POST' THEN
			RETURN pgwa._http_zapi_send(i, substr(v_route, 6), p_seg[6], p_headers, p_body);
		END IF;
		RETURN pgwa._not_allowed(p_method, 'POST');
	ELSIF n = 5 AND v_route = 'queue' THEN
		IF p_method = 'GET' THEN
			RETURN pgwa._http_zapi_queue(i, p_query);
		ELSIF p_method = 'DELETE' THEN
			RETURN pgwa._reply(200, jsonb_build_object('value', true, 'canceled', pgwa.queue_purge(i)));
		END IF;
		RETURN pgwa._not_allowed(p_method, 'GET, DELETE');
	ELSIF n = 6 AND v_route = 'queue' AND p_seg[6] = 'count' THEN
		IF p_method = 'GET' THEN
			RETURN pgwa._reply(200, jsonb_build_object('count', pgwa._queue_length(i)));
		END IF;
		RETURN pgwa._not_allowed(p_method, 'GET');
	ELSIF n = 6 AND v_route = 'queue' THEN
		IF p_method = 'DELETE' THEN
			RETURN pgwa._http_zapi_cancel(i, p_seg[6]);
		END IF;
		RETURN pgwa._not_allowed(p_method, 'DELETE');
	ELSIF v_route = 'qr-code' AND (n = 5 OR n = 6 AND p_seg[6] = 'image') THEN
		IF p_method = 'GET' THEN
			RETURN pgwa._http_zapi_qr(i, n = 6);
		END IF;
		RETURN pgwa._not_allowed(p_method, 'GET');
	ELSIF n = 5 AND v_route = 'status' THEN
		IF p_method = 'GET' THEN
			RETURN pgwa._http_zapi_status(i);
		END IF;
		RETURN pgwa._not_allowed(p_method, 'GET');
	ELSIF n = 5 AND (v_route = 'update-every-webhooks'
	                 OR substr(v_route, 16) IN (SELECT jsonb_object_keys(pgwa._zapi_webhook_kinds()))
	                    AND v_route LIKE 'update-webhook-%') THEN
		IF p_method = 'PUT' THEN
			RETURN pgwa._http_zapi_webhook(i, CASE WHEN v_route = 'update-every-webhooks' THEN 'every'
			                                       ELSE substr(v_route, 16) END, p_body);
		END IF;
		RETURN pgwa._not_allowed(p_method, 'PUT');
	END IF;
	PERFORM pgwa._raise('PW404', format('no Z-API route for %s /%s', p_method, array_to_string(p_seg[5:], '/')));
END $$;

-- /instances/{instanceId}/token/{token}/...: NULL for any other /instances path.
CREATE FUNCTION pgwa._route_zapi(p_method text, p_seg text[], p_query jsonb, p_headers jsonb, p_body text)
RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	r pgwa.http_response;
	v_state text;
	v_message text;
	v_field text;
	v_detail text;
BEGIN
	IF coalesce(array_length(p_seg, 1), 0) < 5 OR p_seg[3] <> 'token' THEN
		RETURN NULL;
	END IF;
	BEGIN
		r := pgwa._route_zapi_authed(p_method, p_seg, p_query, p_headers, p_body);
	EXCEPTION WHEN others THEN
		GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
		                        v_field = COLUMN_NAME, v_detail = PG_EXCEPTION_DETAIL;
		r := pgwa._error_reply(v_state, v_message, v_field, v_detail, p_headers->>'x-request-id');
	END;
	RETURN pgwa._zapi_error_shape(r);
END $$;
