-- GET /v1/events through pgwa.http() and pgwa.events_since(): a tenant's
-- real-time events after an id, in id order, never another tenant's; where
-- a page starts (Last-Event-ID over after, else the latest event); filters;
-- errors naming the header or parameter. pgwa-http streams the same pages.
\set VERBOSITY terse
SELECT pgwa.create_admin_key('events test') AS admin \gset
CREATE FUNCTION pg_temp.call(p text, key text DEFAULT NULL, extra jsonb DEFAULT '{}', m text DEFAULT 'GET')
RETURNS TABLE (status int, code text, field text, body jsonb)
LANGUAGE sql AS $$
	SELECT r.status, r.body::jsonb #>> '{error,code}', r.body::jsonb #>> '{error,field}', r.body::jsonb
	FROM pgwa.http(m, split_part(p, '?', 1),
	               coalesce((SELECT jsonb_object_agg(split_part(kv, '=', 1), split_part(kv, '=', 2))
	                         FROM unnest(string_to_array(nullif(split_part(p, '?', 2), ''), '&')) kv), '{}'),
	               coalesce(jsonb_build_object('x-api-key', key), '{}') || extra, NULL) r
$$;
-- a page with ids relative to :base, so the output does not depend on other tests
CREATE FUNCTION pg_temp.page(b jsonb, base bigint) RETURNS text
LANGUAGE sql AS $$
	SELECT format('after=%s last=%s more=%s [%s]', (b->>'after')::bigint - base, (b->>'lastId')::bigint - base, b->>'more',
	              (SELECT string_agg(((e->>'id')::bigint - base) || ':' || (e->>'event') ||
	                                 CASE WHEN e->>'instanceId' IS NOT NULL THEN '@inst' ELSE '' END, ' ')
	               FROM jsonb_array_elements(b->'events') e))
$$;

SELECT r.body::jsonb->>'api_key' AS key FROM pgwa.http('POST', '/v1/tenants', '{}', jsonb_build_object('x-api-key', :'admin'), '{"name":"events-a"}') r \gset
SELECT r.body::jsonb->>'api_key' AS other FROM pgwa.http('POST', '/v1/tenants', '{}', jsonb_build_object('x-api-key', :'admin'), '{"name":"events-b"}') r \gset
SELECT tenant_id AS tenant FROM pgwa.authenticate(:'key') \gset
SELECT tenant_id AS tenant_b FROM pgwa.authenticate(:'other') \gset
SELECT pgwa.create_instance(:'tenant', 'ev1', 'broker', 'http://127.0.0.1:1', 'k') AS inst \gset
SELECT coalesce(max(id), 0) AS base FROM pgwa.events \gset

-- a tenant without events starts at 0
SELECT status, body->>'after' AS after, body->>'lastId' AS last, body->'events' AS events FROM pg_temp.call('/v1/events', :'key');
SELECT pgwa._emit(:'tenant', 'messages.new', jsonb_build_object('instanceId', :'inst', 'text', 'one')) > 0 AS emitted;
SELECT pgwa._emit(:'tenant_b', 'messages.new', '{"text": "theirs"}') > 0 AS emitted;
SELECT pgwa._emit(:'tenant', 'ticket.updated', '{"ticketId": "00000000-0000-0000-0000-000000000001"}') > 0 AS emitted;
SELECT pgwa._emit(:'tenant', 'messages.new', jsonb_build_object('instanceId', :'inst', 'text', 'two')) > 0 AS emitted;

-- from now: no events, the latest id
SELECT status, pg_temp.page(body, :base) FROM pg_temp.call('/v1/events', :'key');
-- after an id, in id order, only the tenant's; each as client webhooks get it
SELECT status, pg_temp.page(body, :base) FROM pg_temp.call('/v1/events?after=' || :base, :'key');
SELECT jsonb_object_keys(body->'events'->0) AS key FROM pg_temp.call('/v1/events?after=' || :base, :'key') ORDER BY 1;
SELECT body->'events'->0->'data'->>'text' AS text, body->'events'->0->>'tenantId' = :'tenant' AS tenant_id
FROM pg_temp.call('/v1/events?after=' || :base, :'key');
SELECT status, pg_temp.page(body, :base) FROM pg_temp.call('/v1/events?after=' || :base, :'other');
-- Last-Event-ID wins over after
SELECT status, pg_temp.page(body, :base) FROM pg_temp.call('/v1/events?after=0', :'key', jsonb_build_object('last-event-id', (:base + 1)::text));
-- pages: limit, more, lastId where the next page starts
SELECT status, pg_temp.page(body, :base) FROM pg_temp.call('/v1/events?limit=1&after=' || :base, :'key');
SELECT status, pg_temp.page(body, :base) FROM pg_temp.call('/v1/events?limit=0&after=' || :base, :'key');
-- filters: names, instance (a page that reads events it filters out still moves on)
SELECT status, pg_temp.page(body, :base) FROM pg_temp.call('/v1/events?events=ticket.updated&after=' || :base, :'key');
SELECT status, pg_temp.page(body, :base) FROM pg_temp.call('/v1/events?events=messages.new,ticket.updated&after=' || :base, :'key');
SELECT status, pg_temp.page(body, :base) FROM pg_temp.call('/v1/events?instance_id=' || :'inst' || '&after=' || :base, :'key');
SELECT status, pg_temp.page(body, :base) FROM pg_temp.call('/v1/events?limit=2&events=ticket.updated&after=' || (:base + 2), :'key');

-- errors
SELECT status, code, field FROM pg_temp.call('/v1/events');
SELECT status, code, field FROM pg_temp.call('/v1/events', 'pgwa_nope');
SELECT status, code, field FROM pg_temp.call('/v1/events', :'admin');
SELECT status, code, field FROM pg_temp.call('/v1/events', :'key', '{"last-event-id": "abc"}');
SELECT status, code, field FROM pg_temp.call('/v1/events', :'key', '{"last-event-id": "-1"}');
SELECT status, code, field FROM pg_temp.call('/v1/events?after=1.5', :'key');
SELECT status, code, field FROM pg_temp.call('/v1/events?limit=5000', :'key');
SELECT status, code, field FROM pg_temp.call('/v1/events?events=MessagesNew', :'key');
SELECT status, code, field FROM pg_temp.call('/v1/events?instance_id=nope', :'key');
SELECT status, code, field FROM pg_temp.call('/v1/events?instance_id=' || :'inst', :'other');
SELECT status, code FROM pg_temp.call('/v1/events', :'key', '{}', 'POST');

-- the SQL function itself
SELECT pg_temp.page(jsonb_build_object('after', :base) || pgwa.events_since(jsonb_build_object('x-api-key', :'key'), :base, 10), :base);
SELECT pg_temp.page(jsonb_build_object('after', :base) || pgwa.events_since(jsonb_build_object('authorization', 'Bearer ' || :'key'), :base + 3), :base);
SELECT pgwa.events_since('{}', 0);
SELECT pgwa.events_since(jsonb_build_object('x-api-key', :'key'), -1);
