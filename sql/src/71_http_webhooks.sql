-------------------------------------------------------------------------------
-- HTTP: client webhook subscriptions and their deliveries (/v1/webhooks).
-- Tenant-scoped: another tenant's subscription or delivery is not found.
-------------------------------------------------------------------------------

-- The tenant's subscription named in the path; another tenant's is not found.
CREATE FUNCTION pgwa._tenant_webhook(p_tenant uuid, p_id text) RETURNS uuid
LANGUAGE plpgsql STABLE AS $$
DECLARE
	v uuid;
BEGIN
	SELECT s.id INTO v FROM pgwa.webhook_subscriptions s
	WHERE s.tenant_id = p_tenant AND s.id = pgwa._uuid_or_null(p_id);
	IF v IS NULL THEN
		PERFORM pgwa._raise('PW404', 'webhook subscription not found', 'webhook_id');
	END IF;
	RETURN v;
END $$;

-- The subscription's delivery named in the path, or not found.
CREATE FUNCTION pgwa._tenant_delivery(p_tenant uuid, p_subscription uuid, p_id text) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
DECLARE
	v bigint;
BEGIN
	IF p_id ~ '^[0-9]{1,18}$' THEN
		SELECT d.id INTO v FROM pgwa.webhook_deliveries d
		WHERE d.tenant_id = p_tenant AND d.id = p_id::bigint AND d.subscription_id = p_subscription;
	END IF;
	IF v IS NULL THEN
		PERFORM pgwa._raise('PW404', 'delivery not found', 'delivery_id');
	END IF;
	RETURN v;
END $$;

-- POST /v1/webhooks {"url", "events", "instance_id"?, "secret"?, "max_attempts"?}:
-- 201 the subscription with its secret, shown this once.
CREATE FUNCTION pgwa._http_create_webhook(p_tenant uuid, p_body text) RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	b jsonb := pgwa._json_body(p_body);
	v_events text[];
	v_instance uuid;
	v_attempts int := 8;
	r record;
BEGIN
	IF jsonb_typeof(b->'events') = 'string' THEN
		v_events := ARRAY[b->>'events'];
	ELSIF jsonb_typeof(b->'events') = 'array'
	      AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(b->'events') e WHERE jsonb_typeof(e) <> 'string') THEN
		v_events := ARRAY(SELECT jsonb_array_elements_text(b->'events'));
	ELSIF b->'events' IS NOT NULL AND jsonb_typeof(b->'events') <> 'null' THEN
		PERFORM pgwa._raise('PW400', 'events must be an array of event names', 'events');
	END IF;
	IF pgwa._json_string(b, 'instance_id') IS NOT NULL THEN
		v_instance := pgwa._tenant_instance(p_tenant, b->>'instance_id');
	END IF;
	IF b ? 'max_attempts' AND jsonb_typeof(b->'max_attempts') <> 'null' THEN
		IF jsonb_typeof(b->'max_attempts') <> 'number' OR (b->>'max_attempts')::numeric <> trunc((b->>'max_attempts')::numeric)
		   OR (b->>'max_attempts')::numeric NOT BETWEEN 1 AND 50 THEN
			PERFORM pgwa._raise('PW400', 'max_attempts must be an integer between 1 and 50', 'max_attempts');
		END IF;
		v_attempts := (b->>'max_attempts')::int;
	END IF;
	SELECT * INTO r FROM pgwa.create_webhook_subscription(p_tenant, pgwa._json_string(b, 'url', true), v_events,
	                                                      v_instance, pgwa._json_string(b, 'secret'), v_attempts);
	RETURN pgwa._reply(201, pgwa.webhook_subscription_json(r.id) || jsonb_build_object('secret', r.secret),
	                   jsonb_build_object('Location', '/v1/webhooks/' || r.id));
END $$;

-- GET /v1/webhooks/{id}/deliveries?status=dead,failed&limit=&offset=
CREATE FUNCTION pgwa._http_webhook_deliveries(p_subscription uuid, p_query jsonb) RETURNS pgwa.http_response
LANGUAGE sql STABLE AS $$
	SELECT pgwa._reply(200, pgwa.list_webhook_deliveries(
		p_subscription,
		(SELECT array_agg(btrim(s)) FROM unnest(string_to_array(p_query->>'status', ',')) s
		 WHERE btrim(s) <> ''),
		pgwa._query_int(p_query, 'limit', 50),
		pgwa._query_int(p_query, 'offset', 0)))
$$;

-- /v1/webhooks...: called by _route_v1 with the tenant already known.
CREATE FUNCTION pgwa._route_webhooks(p_method text, p_seg text[], p_query jsonb, p_tenant uuid, p_body text)
RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	n int := coalesce(array_length(p_seg, 1), 0);
	v_sub uuid;
BEGIN
	IF n = 2 THEN
		IF p_method = 'POST' THEN
			RETURN pgwa._http_create_webhook(p_tenant, p_body);
		ELSIF p_method = 'GET' THEN
			RETURN pgwa._reply(200, jsonb_build_object('webhooks', pgwa.list_webhook_subscriptions(p_tenant)));
		END IF;
		RETURN pgwa._not_allowed(p_method, 'GET, POST');
	END IF;
	v_sub := pgwa._tenant_webhook(p_tenant, p_seg[3]);
	IF n = 3 THEN
		IF p_method = 'GET' THEN
			RETURN pgwa._reply(200, pgwa.webhook_subscription_json(v_sub));
		ELSIF p_method = 'DELETE' THEN
			PERFORM pgwa.delete_webhook_subscription(v_sub);
			RETURN pgwa._reply(200, jsonb_build_object('id', v_sub, 'deleted', true));
		END IF;
		RETURN pgwa._not_allowed(p_method, 'GET, DELETE');
	ELSIF n = 4 AND p_seg[4] IN ('pause', 'resume') THEN
		IF p_method = 'POST' THEN
			RETURN pgwa._reply(200, pgwa._set_webhook_active(v_sub, p_seg[4] = 'resume'));
		END IF;
		RETURN pgwa._not_allowed(p_method, 'POST');
	ELSIF n = 4 AND p_seg[4] = 'deliveries' THEN
		IF p_method = 'GET' THEN
			RETURN pgwa._http_webhook_deliveries(v_sub, p_query);
		END IF;
		RETURN pgwa._not_allowed(p_method, 'GET');
	ELSIF n = 5 AND p_seg[4] = 'deliveries' THEN
		IF p_method = 'GET' THEN
			RETURN pgwa._reply(200, pgwa.webhook_delivery_json(pgwa._tenant_delivery(p_tenant, v_sub, p_seg[5])));
		END IF;
		RETURN pgwa._not_allowed(p_method, 'GET');
	ELSIF n = 6 AND p_seg[4] = 'deliveries' AND p_seg[6] = 'replay' THEN
		IF p_method = 'POST' THEN
			RETURN pgwa._reply(200, pgwa.replay_delivery(pgwa._tenant_delivery(p_tenant, v_sub, p_seg[5])));
		END IF;
		RETURN pgwa._not_allowed(p_method, 'POST');
	END IF;
	RETURN NULL;
END $$;
