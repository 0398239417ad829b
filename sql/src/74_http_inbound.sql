-------------------------------------------------------------------------------
-- /api/...: the broker-facing inbound webhook (seed 000) and the tenant's
-- setting of its secret.
-------------------------------------------------------------------------------

-- POST /api/integrations/whatsapp/webhook. The raw event is stored and
-- applied in this transaction, so a 202 means it is committed. Client errors
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

CREATE FUNCTION pgwa._route_api(p_method text, p_seg text[], p_query jsonb, p_headers jsonb, p_body text)
RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	n int := coalesce(array_length(p_seg, 1), 0);
BEGIN
	IF n < 3 OR p_seg[2] <> 'integrations' OR p_seg[3] <> 'whatsapp' THEN
		RETURN NULL;
	END IF;
	IF n = 4 AND p_seg[4] = 'webhook' THEN
		IF p_method = 'POST' THEN
			RETURN pgwa._http_whatsapp_webhook(p_headers, p_body);
		END IF;
		RETURN pgwa._not_allowed(p_method, 'POST');
	ELSIF n = 6 AND p_seg[4] = 'instances' AND p_seg[6] = 'webhook-secret' THEN
		IF p_method IN ('POST', 'PUT') THEN
			RETURN pgwa._http_set_webhook_secret(
				pgwa._tenant_instance(pgwa._require_tenant(p_headers), p_seg[5]), p_body);
		END IF;
		RETURN pgwa._not_allowed(p_method, 'POST');
	END IF;
	RETURN NULL;
END $$;
