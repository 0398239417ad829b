-------------------------------------------------------------------------------
-- HTTP: pgwa-http turns every request into one call of pgwa.http(); routing,
-- authentication, validation and response shaping all happen here, so the
-- whole HTTP surface can be tested from SQL.
-------------------------------------------------------------------------------
CREATE TYPE pgwa.http_response AS (status int, headers jsonb, body text);

CREATE FUNCTION pgwa._reply(p_status int, p_body jsonb, p_headers jsonb DEFAULT '{}')
RETURNS pgwa.http_response
LANGUAGE sql IMMUTABLE AS $$
	SELECT ROW(p_status, '{"Content-Type": "application/json"}'::jsonb || p_headers,
	           p_body::text)::pgwa.http_response
$$;

-- The JSON error body for a pgwa error (or any other) raised while serving.
CREATE FUNCTION pgwa._error_reply(p_sqlstate text, p_message text, p_field text, p_detail text,
                                  p_request_id text)
RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	v_code   text;
	v_status int;
	v_err    jsonb;
BEGIN
	SELECT code, http_status INTO v_code, v_status FROM pgwa.error_codes WHERE sqlstate = p_sqlstate;
	IF NOT FOUND THEN
		IF p_sqlstate LIKE '22%' THEN
			-- data exceptions (bad number, bad date...) come from client input
			v_code := 'VALIDATION_FAILED';
			v_status := 400;
		ELSIF p_sqlstate IN ('57014', '55P03', '40001', '40P01', '53300') THEN
			v_code := 'TEMPORARILY_UNAVAILABLE';
			v_status := 503;
			p_message := 'the request could not be served now; retry';
		ELSE
			-- Not the client's fault: log it, tell the client only the request id.
			RAISE WARNING 'pgwa http: request % failed: % (SQLSTATE %)', p_request_id, p_message, p_sqlstate;
			v_code := 'INTERNAL';
			v_status := 500;
			p_message := 'internal error';
			p_detail := NULL;
			p_field := NULL;
		END IF;
	END IF;
	v_err := jsonb_build_object('code', v_code, 'message', p_message);
	IF coalesce(p_field, '') <> '' THEN
		v_err := v_err || jsonb_build_object('field', p_field);
	END IF;
	IF coalesce(p_detail, '') <> '' THEN
		v_err := v_err || jsonb_build_object('detail', p_detail);
	END IF;
	IF p_request_id IS NOT NULL THEN
		v_err := v_err || jsonb_build_object('request_id', p_request_id);
	END IF;
	RETURN pgwa._reply(v_status, jsonb_build_object('error', v_err),
	                   CASE WHEN v_status = 401 THEN '{"WWW-Authenticate": "Bearer"}'::jsonb
	                        ELSE '{}'::jsonb END);
END $$;

CREATE FUNCTION pgwa._uuid_or_null(p text) RETURNS uuid
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
	IF p ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
		RETURN p::uuid;
	END IF;
	RETURN NULL;
END $$;

-- The body as a JSON object, or a 400 naming what is wrong.
CREATE FUNCTION pgwa._json_body(p_body text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
	v jsonb;
BEGIN
	IF p_body IS NULL OR btrim(p_body) = '' THEN
		PERFORM pgwa._raise('PW400', 'a JSON object body is required', 'body');
	END IF;
	BEGIN
		v := p_body::jsonb;
	EXCEPTION WHEN others THEN
		PERFORM pgwa._raise('PW400', 'the body is not valid JSON', 'body');
	END;
	IF jsonb_typeof(v) <> 'object' THEN
		PERFORM pgwa._raise('PW400', 'the body must be a JSON object', 'body');
	END IF;
	RETURN v;
END $$;

-- A string member of a JSON object (NULL when absent), or a 400 naming it.
CREATE FUNCTION pgwa._json_string(p_obj jsonb, p_key text, p_required boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
	IF p_obj->p_key IS NULL OR jsonb_typeof(p_obj->p_key) = 'null' THEN
		IF p_required THEN
			PERFORM pgwa._raise('PW400', format('%s is required', p_key), p_key);
		END IF;
		RETURN NULL;
	END IF;
	IF jsonb_typeof(p_obj->p_key) <> 'string' THEN
		PERFORM pgwa._raise('PW400', format('%s must be a string', p_key), p_key);
	END IF;
	RETURN p_obj->>p_key;
END $$;

-- The caller behind the presented key: X-API-Key first, then
-- Authorization: Bearer, then the legacy X-Authorization raw token.
CREATE FUNCTION pgwa._http_caller(p_headers jsonb, OUT tenant_id uuid, OUT role text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
	v_key text := p_headers->>'x-api-key';
BEGIN
	IF v_key IS NULL AND p_headers->>'authorization' ~* '^bearer\s+' THEN
		v_key := regexp_replace(p_headers->>'authorization', '^[Bb][Ee][Aa][Rr][Ee][Rr]\s+', '');
	END IF;
	IF v_key IS NULL THEN
		v_key := p_headers->>'x-authorization';
	END IF;
	IF v_key IS NULL OR btrim(v_key) = '' THEN
		PERFORM pgwa._raise('PW401', 'an API key is required (X-API-Key or Authorization: Bearer)');
	END IF;
	SELECT a.tenant_id, a.role INTO tenant_id, role FROM pgwa.authenticate(btrim(v_key)) a;
	IF NOT FOUND THEN
		PERFORM pgwa._raise('PW401', 'the API key is not valid');
	END IF;
END $$;

CREATE FUNCTION pgwa._require_tenant(p_headers jsonb) RETURNS uuid
LANGUAGE plpgsql STABLE AS $$
DECLARE
	c record;
BEGIN
	c := pgwa._http_caller(p_headers);
	IF c.role <> 'tenant' THEN
		PERFORM pgwa._raise('PW403', 'this route needs a tenant API key');
	END IF;
	RETURN c.tenant_id;
END $$;

CREATE FUNCTION pgwa._require_admin(p_headers jsonb) RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
	IF (pgwa._http_caller(p_headers)).role <> 'admin' THEN
		PERFORM pgwa._raise('PW403', 'this route needs an admin API key');
	END IF;
END $$;

-- The tenant's instance named in the path; another tenant's is not found.
-- Raises again an error caught in a handler, with its field renamed through
-- p_map (the names the client used: config.base_url for base_url, ...). A
-- message that starts with the old name starts with the new one.
CREATE FUNCTION pgwa._reraise_renamed(p_state text, p_message text, p_field text, p_detail text,
                                      p_map jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	v_field text := coalesce(p_map->>p_field, p_field);
BEGIN
	IF v_field IS DISTINCT FROM p_field AND p_message LIKE p_field || ' %' THEN
		p_message := v_field || substr(p_message, length(p_field) + 1);
	END IF;
	PERFORM pgwa._raise(p_state, p_message, v_field, p_detail);
END $$;

-- The tenant's instance named in the path; another tenant's is not found.
-- p_what and p_field name it as the route does (a seed-003 connection is
-- an instance too).
CREATE FUNCTION pgwa._tenant_instance(p_tenant uuid, p_id text, p_what text DEFAULT 'instance',
                                      p_field text DEFAULT 'instance_id') RETURNS uuid
LANGUAGE plpgsql STABLE AS $$
DECLARE
	v uuid;
BEGIN
	SELECT i.id INTO v FROM pgwa.instances i
	WHERE i.id = pgwa._uuid_or_null(p_id) AND i.tenant_id = p_tenant;
	IF v IS NULL THEN
		PERFORM pgwa._raise('PW404', p_what || ' not found', p_field);
	END IF;
	RETURN v;
END $$;

-------------------------------------------------------------------------------
-- Handlers
-------------------------------------------------------------------------------
CREATE FUNCTION pgwa._http_create_tenant(p_headers jsonb, p_body text) RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	b jsonb;
	t record;
BEGIN
	PERFORM pgwa._require_admin(p_headers);
	b := pgwa._json_body(p_body);
	SELECT * INTO t FROM pgwa.create_tenant(pgwa._json_string(b, 'name', true));
	RETURN pgwa._reply(201, jsonb_build_object('id', t.tenant_id, 'name', b->>'name',
	                                           'api_key', t.api_key));
END $$;

CREATE FUNCTION pgwa._http_create_instance(p_tenant uuid, p_body text) RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	b jsonb := pgwa._json_body(p_body);
	v_id uuid;
	v_options jsonb;
BEGIN
	v_options := jsonb_strip_nulls(jsonb_build_object(
		'broker_instance_id', pgwa._json_string(b, 'broker_instance_id'),
		'delay_min_ms', b->'delay_min_ms', 'delay_max_ms', b->'delay_max_ms',
		'max_attempts', b->'max_attempts', 'settings', b->'settings'));
	v_id := pgwa.create_instance(p_tenant, pgwa._json_string(b, 'name', true),
	                             coalesce(pgwa._json_string(b, 'provider'), 'broker'),
	                             pgwa._json_string(b, 'base_url'),
	                             pgwa._json_string(b, 'api_key'), v_options);
	RETURN pgwa._reply(201, pgwa.instance_json(v_id),
	                   jsonb_build_object('Location', '/v1/instances/' || v_id));
END $$;

CREATE FUNCTION pgwa._http_send(p_instance uuid, p_headers jsonb, p_body text)
RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	b jsonb := pgwa._json_body(p_body);
	e record;
BEGIN
	SELECT * INTO e FROM pgwa.enqueue(p_instance, b, p_headers->>'idempotency-key');
	RETURN pgwa._reply(CASE WHEN e.created THEN 202 ELSE 200 END,
		jsonb_build_object('message_id', e.message_id, 'status', e.status, 'seq', e.seq,
		                   'scheduled_for', e.scheduled_for),
		CASE WHEN e.created THEN jsonb_build_object('Location', '/v1/messages/' || e.message_id)
		     ELSE '{"Idempotent-Replayed": "true"}'::jsonb END);
END $$;

CREATE FUNCTION pgwa._http_set_connection(p_instance uuid, p_body text) RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	b jsonb := pgwa._json_body(p_body);
BEGIN
	PERFORM pgwa.set_connection_state(p_instance, pgwa._json_string(b, 'state', true));
	RETURN pgwa._reply(200, pgwa.instance_json(p_instance));
END $$;

CREATE FUNCTION pgwa._http_get_message(p_tenant uuid, p_id text) RETURNS pgwa.http_response
LANGUAGE plpgsql STABLE AS $$
DECLARE
	v jsonb;
BEGIN
	SELECT pgwa.message_json(o.id) INTO v FROM pgwa.outbox o
	WHERE o.id = pgwa._uuid_or_null(p_id) AND o.tenant_id = p_tenant;
	IF v IS NULL THEN
		PERFORM pgwa._raise('PW404', 'message not found', 'message_id');
	END IF;
	RETURN pgwa._reply(200, v);
END $$;

CREATE FUNCTION pgwa._http_list_instances(p_tenant uuid) RETURNS pgwa.http_response
LANGUAGE sql STABLE AS $$
	SELECT pgwa._reply(200, jsonb_build_object('instances', coalesce(jsonb_agg(pgwa.instance_json(i.id)
	                                                              ORDER BY i.created_at, i.id), '[]')))
	FROM pgwa.instances i WHERE i.tenant_id = p_tenant
$$;

-- The tenant's message named in the path; another tenant's is not found.
CREATE FUNCTION pgwa._tenant_message(p_tenant uuid, p_id text) RETURNS uuid
LANGUAGE plpgsql STABLE AS $$
DECLARE
	v uuid;
BEGIN
	SELECT o.id INTO v FROM pgwa.outbox o
	WHERE o.id = pgwa._uuid_or_null(p_id) AND o.tenant_id = p_tenant;
	IF v IS NULL THEN
		PERFORM pgwa._raise('PW404', 'message not found', 'message_id');
	END IF;
	RETURN v;
END $$;

-- An integer query parameter (p_default when absent or empty), or a 400
-- naming it. Ranges are checked by the function the value is for.
CREATE FUNCTION pgwa._query_int(p_query jsonb, p_key text, p_default int) RETURNS int
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
	v text := btrim(p_query->>p_key);
BEGIN
	IF v IS NULL OR v = '' THEN
		RETURN p_default;
	END IF;
	IF v !~ '^[-+]?[0-9]{1,9}$' THEN
		PERFORM pgwa._raise('PW400', format('%s must be an integer', p_key), p_key);
	END IF;
	RETURN v::int;
END $$;

-- GET /v1/instances/{id}/queue?status=a,b&type=&limit=&offset=
CREATE FUNCTION pgwa._http_queue_list(p_instance uuid, p_query jsonb) RETURNS pgwa.http_response
LANGUAGE sql STABLE AS $$
	SELECT pgwa._reply(200, pgwa.queue_list(
		p_instance,
		(SELECT array_agg(btrim(s)) FROM unnest(string_to_array(p_query->>'status', ',')) s
		 WHERE btrim(s) <> ''),
		nullif(btrim(p_query->>'type'), ''),
		pgwa._query_int(p_query, 'limit', 50),
		pgwa._query_int(p_query, 'offset', 0)))
$$;

-- DELETE /v1/instances/{id}/queue[?olderThan=ISO time]
CREATE FUNCTION pgwa._http_queue_purge(p_instance uuid, p_query jsonb) RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	v_older timestamptz;
	n int;
BEGIN
	IF coalesce(btrim(p_query->>'olderThan'), '') <> '' THEN
		BEGIN
			v_older := (p_query->>'olderThan')::timestamptz;
		EXCEPTION WHEN data_exception THEN
			PERFORM pgwa._raise('PW400', 'olderThan must be an ISO 8601 timestamp', 'olderThan');
		END;
	END IF;
	n := pgwa.queue_purge(p_instance, v_older);
	RETURN pgwa._reply(200, jsonb_build_object('canceled', n,
	                                           'queueLength', pgwa._queue_length(p_instance)));
END $$;

-- GET /v1/instances/{id}/dead-letters?limit=&offset=
CREATE FUNCTION pgwa._http_dead_letters(p_instance uuid, p_query jsonb) RETURNS pgwa.http_response
LANGUAGE sql STABLE AS $$
	SELECT pgwa._reply(200, pgwa.dead_letters(p_instance, pgwa._query_int(p_query, 'limit', 50),
	                                          pgwa._query_int(p_query, 'offset', 0)))
$$;

-- POST /v1/instances/{id}/dead-letters/replay
CREATE FUNCTION pgwa._http_replay_dead_letters(p_instance uuid) RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	n int := pgwa.replay_dead_letters(p_instance);
BEGIN
	RETURN pgwa._reply(200, jsonb_build_object('replayed', n,
	                                           'queueLength', pgwa._queue_length(p_instance)));
END $$;

-------------------------------------------------------------------------------
-- The router. _route dispatches on the first path segment to one sub-router
-- per area (each in its own file); a sub-router returns NULL when no route of
-- its own matches, and pgwa._not_allowed() for a known path with another method.
-------------------------------------------------------------------------------
CREATE FUNCTION pgwa._not_allowed(p_method text, p_allowed text) RETURNS pgwa.http_response
LANGUAGE sql IMMUTABLE AS $$
	SELECT pgwa._reply(405, jsonb_build_object('error', jsonb_build_object(
		'code', 'METHOD_NOT_ALLOWED', 'message', format('%s is not allowed here', p_method))),
		jsonb_build_object('Allow', p_allowed))
$$;

-- /v1/...: pgwa's own API.
CREATE FUNCTION pgwa._route_v1(p_method text, p_seg text[], p_query jsonb, p_headers jsonb, p_body text)
RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	n int := coalesce(array_length(p_seg, 1), 0);
	v_tenant uuid;
BEGIN
	IF n = 2 AND p_seg[2] = 'tenants' THEN
		IF p_method = 'POST' THEN
			RETURN pgwa._http_create_tenant(p_headers, p_body);
		END IF;
		RETURN pgwa._not_allowed(p_method, 'POST');
	ELSIF p_seg[2] = 'instances' THEN
		v_tenant := pgwa._require_tenant(p_headers);
		IF n = 2 THEN
			IF p_method = 'POST' THEN
				RETURN pgwa._http_create_instance(v_tenant, p_body);
			ELSIF p_method = 'GET' THEN
				RETURN pgwa._http_list_instances(v_tenant);
			END IF;
			RETURN pgwa._not_allowed(p_method, 'GET, POST');
		ELSIF n = 3 THEN
			IF p_method = 'GET' THEN
				RETURN pgwa._reply(200, pgwa.instance_json(pgwa._tenant_instance(v_tenant, p_seg[3])));
			END IF;
			RETURN pgwa._not_allowed(p_method, 'GET');
		ELSIF n = 4 AND p_seg[4] = 'messages' THEN
			IF p_method = 'POST' THEN
				RETURN pgwa._http_send(pgwa._tenant_instance(v_tenant, p_seg[3]), p_headers, p_body);
			END IF;
			RETURN pgwa._not_allowed(p_method, 'POST');
		ELSIF n = 4 AND p_seg[4] = 'connection' THEN
			IF p_method IN ('PUT', 'POST') THEN
				RETURN pgwa._http_set_connection(pgwa._tenant_instance(v_tenant, p_seg[3]), p_body);
			END IF;
			RETURN pgwa._not_allowed(p_method, 'PUT');
		ELSIF n = 4 AND p_seg[4] = 'queue' THEN
			IF p_method = 'GET' THEN
				RETURN pgwa._http_queue_list(pgwa._tenant_instance(v_tenant, p_seg[3]), p_query);
			ELSIF p_method = 'DELETE' THEN
				RETURN pgwa._http_queue_purge(pgwa._tenant_instance(v_tenant, p_seg[3]), p_query);
			END IF;
			RETURN pgwa._not_allowed(p_method, 'GET, DELETE');
		ELSIF n = 4 AND p_seg[4] = 'dead-letters' THEN
			IF p_method = 'GET' THEN
				RETURN pgwa._http_dead_letters(pgwa._tenant_instance(v_tenant, p_seg[3]), p_query);
			END IF;
			RETURN pgwa._not_allowed(p_method, 'GET');
		ELSIF n = 4 AND p_seg[4] = 'history-sync' THEN
			-- the coexistence history sync (64_history_sync.sql)
			IF p_method = 'GET' THEN
				RETURN pgwa._reply(200, pgwa.history_sync_status(pgwa._tenant_instance(v_tenant, p_seg[3])));
			ELSIF p_method = 'POST' THEN
				RETURN pgwa._reply(202, pgwa.request_history_sync(pgwa._tenant_instance(v_tenant, p_seg[3])));
			END IF;
			RETURN pgwa._not_allowed(p_method, 'GET, POST');
		ELSIF n = 5 AND p_seg[4] = 'dead-letters' AND p_seg[5] = 'replay' THEN
			IF p_method = 'POST' THEN
				RETURN pgwa._http_replay_dead_letters(pgwa._tenant_instance(v_tenant, p_seg[3]));
			END IF;
			RETURN pgwa._not_allowed(p_method, 'POST');
		END IF;
	ELSIF p_seg[2] = 'messages' AND n = 3 THEN
		v_tenant := pgwa._require_tenant(p_headers);
		IF p_method = 'GET' THEN
			RETURN pgwa._http_get_message(v_tenant, p_seg[3]);
		ELSIF p_method = 'DELETE' THEN
			RETURN pgwa._reply(200, pgwa.cancel(pgwa._tenant_message(v_tenant, p_seg[3])));
		END IF;
		RETURN pgwa._not_allowed(p_method, 'GET, DELETE');
	ELSIF p_seg[2] IN ('tickets', 'leads') AND n = 3 THEN
		-- a ticket with its lead and conversation, a lead, with their origins (seed 002 section 6)
		v_tenant := pgwa._require_tenant(p_headers);
		IF p_method = 'GET' THEN
			RETURN pgwa._reply(200, CASE p_seg[2] WHEN 'tickets' THEN pgwa.ticket_detail(v_tenant, p_seg[3])
			                                      ELSE pgwa.lead_json(v_tenant, p_seg[3]) END);
		END IF;
		RETURN pgwa._not_allowed(p_method, 'GET');
	ELSIF p_seg[2] = 'webhooks' AND n BETWEEN 2 AND 6 THEN
		-- client webhook subscriptions (71_http_webhooks.sql)
		RETURN pgwa._route_webhooks(p_method, p_seg, p_query, pgwa._require_tenant(p_headers), p_body);
	ELSIF p_seg[2] = 'events' AND n = 2 THEN
		-- real-time events after an id; pgwa-http streams them (73_http_events.sql)
		RETURN pgwa._http_events(p_method, p_query, p_headers);
	ELSIF p_seg[2] = 'messages' AND n = 4 AND p_seg[4] = 'replay' THEN
		v_tenant := pgwa._require_tenant(p_headers);
		IF p_method = 'POST' THEN
			RETURN pgwa._reply(200, pgwa.replay(pgwa._tenant_message(v_tenant, p_seg[3])));
		END IF;
		RETURN pgwa._not_allowed(p_method, 'POST');
	END IF;
	RETURN NULL;
END $$;
