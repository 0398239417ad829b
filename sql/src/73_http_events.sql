-------------------------------------------------------------------------------
-- GET /v1/events: the tenant's real-time events (pgwa.events) after an id.
-- pgwa-http serves this route as a server-sent events stream: it asks here
-- once, with limit=0, to check the key and the filters and to learn where the
-- stream starts, then for each batch, after a NOTIFY pgwa_events for the
-- tenant, so a revoked key ends the stream. Called through pgwa.http() it is
-- an ordinary page of events.
-------------------------------------------------------------------------------

-- The instance an event is about: its payload's instanceId, else its ticket's
-- instance (as the client webhooks' fan-out decides), NULL for tenant-wide events.
CREATE FUNCTION pgwa._event_instance(p_tenant uuid, p_payload jsonb) RETURNS uuid
LANGUAGE sql STABLE AS $$
	SELECT coalesce(pgwa._uuid_or_null(p_payload->>'instanceId'),
	                (SELECT t.instance_id FROM pgwa.tickets t
	                 WHERE t.tenant_id = p_tenant AND t.id = pgwa._uuid_or_null(p_payload->>'ticketId')))
$$;

-- A page of the tenant's events after p_after, in id order, as {events,
-- lastId, more}; each event as the client webhooks deliver it: {id, event,
-- tenantId, instanceId, createdAt, data}. The page reads at most p_limit
-- events (one range of the primary key) and then applies the filters (event
-- names p_events, instance p_instance), so rare events cost several short
-- reads, never one long scan: lastId is the last id read (p_after when none),
-- where the next page starts, and more says that the page was full. Events
-- of transactions that started after the oldest one still writing wait for
-- the next page (pgwa._events_horizon): an id taken earlier may commit later.
-- The start of the oldest transaction that is writing now (this one aside).
-- Its events, not committed yet, took their ids after it started; every
-- event created before that moment took a smaller id. So a page that stops
-- before the first event created at or after it never moves past an id that
-- could still appear. Reads every session (SECURITY DEFINER: the extension's
-- owner sees them all).
CREATE FUNCTION pgwa._events_horizon() RETURNS timestamptz
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
	SELECT min(a.xact_start) FROM pg_stat_activity a
	WHERE a.backend_xid IS NOT NULL AND a.pid <> pg_backend_pid() AND a.datname = current_database()
$$;

CREATE FUNCTION pgwa._events_after(p_tenant uuid, p_after bigint, p_limit int,
                                   p_events text[] DEFAULT NULL, p_instance uuid DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
	WITH page AS (
		SELECT e.id, e.event, e.payload, e.created_at, pgwa._event_instance(e.tenant_id, e.payload) AS instance_id
		FROM pgwa.events e
		WHERE e.tenant_id = p_tenant AND e.id > p_after
		  -- ids come in commit order only up to the oldest writer's start
		  AND e.created_at < coalesce((SELECT pgwa._events_horizon()), 'infinity')
		ORDER BY e.id
		LIMIT p_limit)
	SELECT jsonb_build_object(
		'events', coalesce((SELECT jsonb_agg(jsonb_build_object('id', p.id, 'event', p.event, 'tenantId', p_tenant,
		                                                        'instanceId', p.instance_id,
		                                                        'createdAt', pgwa._iso(p.created_at),
		                                                        'data', p.payload) ORDER BY p.id)
		                    FROM page p
		                    WHERE (p_events IS NULL OR p.event = ANY (p_events))
		                      AND (p_instance IS NULL OR p.instance_id = p_instance)), '[]'),
		'lastId', coalesce((SELECT max(p.id) FROM page p), p_after),
		'more', p_limit > 0 AND (SELECT count(*) FROM page) = p_limit)
$$;

-- The caller's events after p_after (see _events_after), authenticated like
-- every route: 401 without a valid key, 403 for the admin key.
CREATE FUNCTION pgwa.events_since(p_headers jsonb, p_after bigint, p_limit int DEFAULT 100,
                                  p_events text[] DEFAULT NULL, p_instance uuid DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
	v_tenant uuid := pgwa._require_tenant(p_headers);
BEGIN
	IF p_after IS NULL OR p_after < 0 THEN
		PERFORM pgwa._raise('PW400', 'after must be an event id (a non-negative integer)', 'after');
	END IF;
	IF p_limit IS NULL OR p_limit NOT BETWEEN 0 AND 1000 THEN
		PERFORM pgwa._raise('PW400', 'limit must be between 0 and 1000', 'limit');
	END IF;
	IF p_instance IS NOT NULL THEN
		PERFORM pgwa._tenant_instance(v_tenant, p_instance::text);
	END IF;
	RETURN pgwa._events_after(v_tenant, p_after, p_limit, p_events, p_instance);
END $$;

-- GET /v1/events[?after=&events=a,b&instance_id=&limit=]. Last-Event-ID (the
-- header a reconnecting EventSource sends) wins over after; without either
-- the page starts at the tenant's latest event, so a stream starts from now.
-- The answer is the page with tenantId and after, the id it started from.
CREATE FUNCTION pgwa._http_events(p_method text, p_query jsonb, p_headers jsonb)
RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	v_tenant uuid;
	v_field text := 'after';
	v_text text := nullif(btrim(p_headers->>'last-event-id'), '');
	v_after bigint;
	v_events text[];
	v_bad text;
	v_instance uuid;
BEGIN
	IF p_method <> 'GET' THEN
		RETURN pgwa._not_allowed(p_method, 'GET');
	END IF;
	v_tenant := pgwa._require_tenant(p_headers);
	IF v_text IS NOT NULL THEN
		v_field := 'Last-Event-ID';
	ELSE
		v_text := nullif(btrim(p_query->>'after'), '');
	END IF;
	IF v_text IS NULL THEN
		SELECT coalesce(max(e.id), 0) INTO v_after FROM pgwa.events e WHERE e.tenant_id = v_tenant;
	ELSIF v_text ~ '^[0-9]{1,18}$' THEN
		v_after := v_text::bigint;
	ELSE
		PERFORM pgwa._raise('PW400', format('%s must be an event id (a non-negative integer)', v_field), v_field);
	END IF;

	SELECT array_agg(DISTINCT btrim(s)) INTO v_events
	FROM unnest(string_to_array(p_query->>'events', ',')) s WHERE btrim(s) <> '';
	SELECT e INTO v_bad FROM unnest(v_events) e WHERE e !~ '^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$' LIMIT 1;
	IF FOUND THEN
		PERFORM pgwa._raise('PW400', format('events must list event names such as messages.new, not %s', v_bad),
		                    'events');
	END IF;
	IF nullif(btrim(p_query->>'instance_id'), '') IS NOT NULL THEN
		v_instance := pgwa._tenant_instance(v_tenant, btrim(p_query->>'instance_id'));
	END IF;

	RETURN pgwa._reply(200, jsonb_build_object('tenantId', v_tenant, 'after', v_after)
	                        || pgwa.events_since(p_headers, v_after, pgwa._query_int(p_query, 'limit', 100),
	                                             v_events, v_instance),
	                   '{"Cache-Control": "no-cache"}');
END $$;
