-------------------------------------------------------------------------------
-- /api/...: the broker-facing inbound webhook (seed 000) and the tenant's
-- settings of its credentials; /webhooks/...: the Evolution API (seed 004)
-- and WhatsApp Cloud API webhooks.
-------------------------------------------------------------------------------

-- POST /api/integrations/whatsapp/webhook. The raw event is checked and
-- stored in this transaction, so a 202 means it is committed; the inbound
-- appliers apply it. (pgwa.http() stores the usual one itself, in C, with
-- the same answer.) Client errors
-- are built here rather than raised: a rejected event stays stored and every
-- outcome is counted.
CREATE FUNCTION pgwa._http_whatsapp_webhook(p_headers jsonb, p_body text) RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	v_token text := (pgwa._webhook_token(p_headers)).token;
	v_body  jsonb;
	r       jsonb;
	v_reply pgwa.http_response;
BEGIN
	-- Who is calling comes before what they sent.
	IF v_token IS NULL OR NOT EXISTS (SELECT 1 FROM pgwa._webhook_instances(v_token)) THEN
		PERFORM pgwa._count_webhook('rejected', 'unauthorized', 'unknown');
		RETURN pgwa._error_reply('PW401', CASE WHEN v_token IS NULL
			THEN 'a webhook secret is required (X-API-Key, Authorization: Bearer or X-Authorization)'
			ELSE 'the webhook secret is not valid' END, NULL, NULL, p_headers->>'x-request-id');
	END IF;
	BEGIN
		v_body := p_body::jsonb;
	EXCEPTION WHEN others THEN
		v_body := NULL;
	END;
	IF v_body IS NULL OR jsonb_typeof(v_body) NOT IN ('object', 'array') THEN
		PERFORM pgwa._count_webhook('rejected', 'invalid_json', 'unknown');
		RETURN pgwa._error_reply('PW400', 'the body must be a JSON object or an array of events',
		                         'body', NULL, p_headers->>'x-request-id');
	END IF;

	r := pgwa.ingest_webhook('broker', p_headers, v_body);
	IF r ? 'error' THEN
		v_reply := pgwa._error_reply(r->'error'->>'sqlstate', r->'error'->>'message',
		                             r->'error'->>'field', NULL, p_headers->>'x-request-id');
		IF r ? 'eventId' THEN
			-- the rejected body is kept under this id
			v_reply.body := jsonb_set(v_reply.body::jsonb, '{error,eventId}', r->'eventId')::text;
		END IF;
		RETURN v_reply;
	END IF;
	RETURN pgwa._reply(202, jsonb_build_object(
		'accepted', r->'accepted', 'duplicates', r->'duplicates', 'ignored', r->'ignored',
		'eventId', r->'eventId', 'status', r->'status'));
END $$;

-- POST /api/integrations/whatsapp/instances/{id}/webhook-secret
-- {"secret"?, "grace_seconds"?}: sets or rotates the instance's webhook
-- secret; 201 {"instance_id", "secret"} (shown once).
CREATE FUNCTION pgwa._http_set_webhook_secret(p_instance uuid, p_body text) RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	b       jsonb := CASE WHEN coalesce(btrim(p_body), '') = '' THEN '{}' ELSE pgwa._json_body(p_body) END;
	v_grace int := 0;
BEGIN
	IF b ? 'grace_seconds' THEN
		IF jsonb_typeof(b->'grace_seconds') <> 'number' OR (b->>'grace_seconds')::numeric <> floor((b->>'grace_seconds')::numeric)
		   OR (b->>'grace_seconds')::numeric NOT BETWEEN 0 AND 2592000 THEN
			PERFORM pgwa._raise('PW400', 'grace_seconds must be an integer between 0 and 2592000', 'grace_seconds');
		END IF;
		v_grace := (b->>'grace_seconds')::int;
	END IF;
	RETURN pgwa._reply(201, jsonb_build_object('instance_id', p_instance,
		'secret', pgwa.set_webhook_secret(p_instance, pgwa._json_string(b, 'secret'),
		                                  make_interval(secs => v_grace))));
END $$;

-- POST /api/integrations/whatsapp/instances/{id}/meta-app-secret
-- {"app_secret"}: the Meta app secret that signs the instance's Cloud API
-- webhooks (null removes it); 200 {"instance_id", "app_secret_set"}. It is
-- never shown again.
CREATE FUNCTION pgwa._http_set_meta_app_secret(p_instance uuid, p_body text) RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	b jsonb := pgwa._json_body(p_body);
BEGIN
	IF NOT b ? 'app_secret' THEN
		PERFORM pgwa._raise('PW400', 'app_secret is required (null removes it)', 'app_secret');
	END IF;
	RETURN pgwa._reply(200, jsonb_build_object('instance_id', p_instance,
		'app_secret_set', pgwa.set_meta_app_secret(p_instance, pgwa._json_string(b, 'app_secret'))));
END $$;

-- POST /api/integrations/whatsapp/instances/{id}/meta-verify-token
-- {"verify_token"?}: sets the token of Meta's subscription handshake (a
-- random one when absent); 201 {"instance_id", "verify_token"} (shown once).
CREATE FUNCTION pgwa._http_set_meta_verify_token(p_instance uuid, p_body text) RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	b jsonb := CASE WHEN coalesce(btrim(p_body), '') = '' THEN '{}' ELSE pgwa._json_body(p_body) END;
BEGIN
	RETURN pgwa._reply(201, jsonb_build_object('instance_id', p_instance,
		'verify_token', pgwa.set_meta_verify_token(p_instance, pgwa._json_string(b, 'verify_token'))));
END $$;

-- GET /api/integrations/whatsapp/instances/{id}/qrcode: the latest pairing QR
-- code (200), or 404 when there is none.
CREATE FUNCTION pgwa._http_qrcode(p_instance uuid) RETURNS pgwa.http_response
LANGUAGE plpgsql STABLE AS $$
DECLARE
	q jsonb := pgwa.instance_qrcode(p_instance);
BEGIN
	IF q IS NULL THEN
		PERFORM pgwa._raise('PW404', 'the instance has no QR code (none received, or connected since)', 'qrcode');
	END IF;
	RETURN pgwa._reply(200, q, '{"Cache-Control": "no-store"}');
END $$;

-- The answer to a broker dialect's webhook, from what its ingest function
-- returned: the counts and event ids, or the error with the stored event's id.
CREATE FUNCTION pgwa._http_ingest_reply(r jsonb, p_headers jsonb) RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	v_reply pgwa.http_response;
BEGIN
	IF (r->>'httpStatus')::int >= 400 THEN
		v_reply := pgwa._error_reply(r->'error'->>'sqlstate', r->'error'->>'message',
		                             r->'error'->>'field', NULL, p_headers->>'x-request-id');
		IF r ? 'eventId' THEN
			v_reply.body := jsonb_set(v_reply.body::jsonb, '{error,eventId}', r->'eventId')::text;
		END IF;
		RETURN v_reply;
	END IF;
	RETURN pgwa._reply((r->>'httpStatus')::int, jsonb_strip_nulls(jsonb_build_object(
		'status', r->'status', 'accepted', r->'accepted', 'duplicates', r->'duplicates',
		'ignored', r->'ignored', 'deferred', coalesce(r->'deferred', '0'),
		'eventId', r->'eventId', 'eventIds', r->'eventIds',
		'error', (r->'error') - 'sqlstate'::text)));
END $$;

-- POST /webhooks/whatsapp[/{event}]: Evolution API webhooks (with "webhook
-- by events" Evolution appends the event's name to the URL). 200 once the
-- body is stored.
CREATE FUNCTION pgwa._http_evolution_webhook(p_headers jsonb, p_body text) RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	v_token text := (pgwa._webhook_token(p_headers)).token;
	v_body  jsonb;
BEGIN
	-- A header's token is checked before the body is read; the body's apikey
	-- (used only without one) needs the body.
	IF v_token IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pgwa._webhook_instances(v_token)) THEN
		PERFORM pgwa._count_webhook('rejected', 'unauthorized', 'evolution');
		RETURN pgwa._error_reply('PW401', 'the webhook secret is not valid', NULL, NULL, p_headers->>'x-request-id');
	END IF;
	BEGIN
		v_body := p_body::jsonb;
	EXCEPTION WHEN others THEN
		v_body := NULL;
	END;
	IF v_body IS NULL OR jsonb_typeof(v_body) NOT IN ('object', 'array') THEN
		IF v_token IS NULL THEN
			PERFORM pgwa._count_webhook('rejected', 'unauthorized', 'evolution');
			RETURN pgwa._error_reply('PW401', 'a webhook secret is required (X-API-Key, Authorization: Bearer, '
			                                  'X-Authorization or the body''s apikey)',
			                         NULL, NULL, p_headers->>'x-request-id');
		END IF;
		PERFORM pgwa._count_webhook('rejected', 'invalid_json', 'evolution');
		RETURN pgwa._error_reply('PW400', 'the body must be a JSON object', 'body', NULL, p_headers->>'x-request-id');
	END IF;
	RETURN pgwa._http_ingest_reply(pgwa.ingest_evolution(p_headers, v_body), p_headers);
END $$;

-- GET /webhooks/meta?hub.mode=subscribe&hub.verify_token=...&hub.challenge=...:
-- the subscription handshake. The token must be the verify token of some
-- instance; the answer is the challenge as plain text, else 403.
CREATE FUNCTION pgwa._http_meta_challenge(p_query jsonb) RETURNS pgwa.http_response
LANGUAGE plpgsql STABLE AS $$
DECLARE
	v_token text := p_query->>'hub.verify_token';
BEGIN
	IF v_token IS NULL OR NOT EXISTS (SELECT 1 FROM pgwa.meta_webhook_credentials
	                                  WHERE verify_token_hash = pgwa._hash_key(v_token)) THEN
		PERFORM pgwa._raise('PW403', 'hub.verify_token does not match', 'hub.verify_token');
	END IF;
	RETURN ROW(200, jsonb_build_object('Content-Type', 'text/plain; charset=utf-8',
	                                   'X-Content-Type-Options', 'nosniff', 'Cache-Control', 'no-store'),
	           pgwa.meta_verify_challenge(p_query, v_token))::pgwa.http_response;
END $$;

-- /webhooks/...: brokers post their own dialects here.
CREATE FUNCTION pgwa._route_webhooks(p_method text, p_seg text[], p_query jsonb, p_headers jsonb, p_body text)
RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	n int := coalesce(array_length(p_seg, 1), 0);
BEGIN
	IF p_seg[2] = 'whatsapp' AND n IN (2, 3) THEN
		IF p_method = 'POST' THEN
			RETURN pgwa._http_evolution_webhook(p_headers, p_body);
		END IF;
		RETURN pgwa._not_allowed(p_method, 'POST');
	ELSIF p_seg[2] = 'meta' AND n = 2 THEN
		IF p_method = 'GET' THEN
			RETURN pgwa._http_meta_challenge(p_query);
		ELSIF p_method = 'POST' THEN
			RETURN pgwa._http_ingest_reply(pgwa.ingest_meta(p_headers, p_body), p_headers);
		END IF;
		RETURN pgwa._not_allowed(p_method, 'GET, POST');
	END IF;
	RETURN NULL;
END $$;

CREATE FUNCTION pgwa._route_api(p_method text, p_seg text[], p_query jsonb, p_headers jsonb, p_body text)
RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	n int := coalesce(array_length(p_seg, 1), 0);
	i uuid;
BEGIN
	IF n = 3 AND p_seg[2] = 'whatsapp' AND p_seg[3] = 'uploads' THEN
		-- uploads (75_uploads.sql): pgwa-http holds the file and calls with what it read of it
		IF p_method = 'POST' THEN
			RETURN pgwa._http_upload(p_headers, p_query, p_body);
		END IF;
		RETURN pgwa._not_allowed(p_method, 'POST');
	END IF;
	IF p_seg[2] = 'whatsapp' OR p_seg[6] IN ('messages', 'status', 'exists', 'groups', 'metrics', 'broker') THEN
		-- the seeds' send routes and broker operations (76_http_seed_routes.sql)
		RETURN pgwa._route_seed_send(p_method, p_seg[2:], p_query, p_headers, p_body);
	END IF;
	IF n < 3 OR p_seg[2] <> 'integrations' OR p_seg[3] <> 'whatsapp' THEN
		RETURN NULL;
	END IF;
	IF n = 4 AND p_seg[4] = 'webhook' THEN
		IF p_method = 'POST' THEN
			RETURN pgwa._http_whatsapp_webhook(p_headers, p_body);
		END IF;
		RETURN pgwa._not_allowed(p_method, 'POST');
	ELSIF n = 6 AND p_seg[4] = 'instances'
	      AND p_seg[6] IN ('webhook-secret', 'meta-app-secret', 'meta-verify-token') THEN
		-- an instance's inbound credentials, set by its tenant
		IF p_method NOT IN ('POST', 'PUT') THEN
			RETURN pgwa._not_allowed(p_method, 'POST');
		END IF;
		i := pgwa._tenant_instance(pgwa._require_tenant(p_headers), p_seg[5]);
		RETURN CASE p_seg[6]
			WHEN 'webhook-secret' THEN pgwa._http_set_webhook_secret(i, p_body)
			WHEN 'meta-app-secret' THEN pgwa._http_set_meta_app_secret(i, p_body)
			ELSE pgwa._http_set_meta_verify_token(i, p_body) END;
	ELSIF n = 6 AND p_seg[4] = 'instances' AND p_seg[6] = 'qrcode' THEN
		IF p_method = 'GET' THEN
			RETURN pgwa._http_qrcode(pgwa._tenant_instance(pgwa._require_tenant(p_headers), p_seg[5]));
		END IF;
		RETURN pgwa._not_allowed(p_method, 'GET');
	END IF;
	RETURN NULL;
END $$;
