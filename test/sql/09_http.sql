-- The HTTP surface through pgwa.http(): routing, authentication, statuses,
-- JSON error bodies naming the field, idempotent replays.
\set VERBOSITY terse
SELECT pgwa.create_admin_key('http test') AS admin \gset
CREATE FUNCTION pg_temp.call(m text, p text, key text DEFAULT NULL, body text DEFAULT NULL, extra jsonb DEFAULT '{}')
RETURNS TABLE (status int, code text, field text, body jsonb, headers jsonb)
LANGUAGE sql AS $$
	SELECT r.status, r.body::jsonb #>> '{error,code}', r.body::jsonb #>> '{error,field}', r.body::jsonb, r.headers
	FROM pgwa.http(m, p, '{}', coalesce(jsonb_build_object('x-api-key', key), '{}') || extra, body) r
$$;

-- routing
SELECT status, code FROM pg_temp.call('GET', '/nowhere');
SELECT status, code, headers->>'Allow' AS allow FROM pg_temp.call('DELETE', '/healthz');
-- no dispatcher serves this database: healthz says so
SELECT status, body->>'status' AS st, body->'dispatcher'->>'running' AS running, body->'whatsapp'->'runtime' ? 'mode' AS has_runtime
FROM pg_temp.call('GET', '/healthz');
SELECT status, code FROM pg_temp.call('GET', '/v1/instances');

-- tenants: admin only
SELECT status, code FROM pg_temp.call('POST', '/v1/tenants', 'pgwa_nope', '{"name":"x"}');
SELECT status, code, field FROM pg_temp.call('POST', '/v1/tenants', :'admin', '{}');
SELECT status, code, field FROM pg_temp.call('POST', '/v1/tenants', :'admin', '{"name":7}');
SELECT status, code, field FROM pg_temp.call('POST', '/v1/tenants', :'admin', '[1]');
SELECT status, code, field FROM pg_temp.call('POST', '/v1/tenants', :'admin', NULL);
SELECT body->>'api_key' AS key FROM pg_temp.call('POST', '/v1/tenants', :'admin', '{"name":"http-acme"}') \gset
SELECT status, code FROM pg_temp.call('POST', '/v1/tenants', :'key', '{"name":"nope"}');
SELECT status, code FROM pg_temp.call('GET', '/v1/instances', :'admin');

-- instances
SELECT status, code, field FROM pg_temp.call('POST', '/v1/instances', :'key', '{"provider":"broker"}');
SELECT status, code, field FROM pg_temp.call('POST', '/v1/instances', :'key', '{"name":"h1","provider":"sms"}');
SELECT status, code, field FROM pg_temp.call('POST', '/v1/instances', :'key', '{"name":"h1","delay_min_ms":"soon"}');
SELECT status, body->>'name' AS name, body ? 'broker_api_key' AS leaks_key, headers ? 'Location' AS has_location
FROM pg_temp.call('POST', '/v1/instances', :'key', '{"name":"h1","base_url":"http://127.0.0.1:1","api_key":"s3cret"}');
SELECT status, code, field FROM pg_temp.call('POST', '/v1/instances', :'key', '{"name":"h1"}');
SELECT c.body->'instances'->0->>'id' AS inst FROM pg_temp.call('GET', '/v1/instances', :'key') c \gset
SELECT status, jsonb_array_length(body->'instances') AS n FROM pg_temp.call('GET', '/v1/instances', :'key');
SELECT status, code FROM pg_temp.call('GET', '/v1/instances/not-a-uuid', :'key');
SELECT status, code FROM pg_temp.call('GET', '/v1/instances/00000000-0000-0000-0000-000000000000', :'key');
SELECT status, code, headers->>'Allow' AS allow FROM pg_temp.call('PATCH', '/v1/instances/' || :'inst', :'key');

-- messages
SELECT status, body->>'status' AS st, headers ? 'Location' AS has_location
FROM pg_temp.call('POST', '/v1/instances/' || :'inst' || '/messages', :'key', '{"to":"5511900000001","text":"a"}', '{"idempotency-key":"h-1"}');
SELECT status, body->>'status' AS st, headers->>'Idempotent-Replayed' AS replayed
FROM pg_temp.call('POST', '/v1/instances/' || :'inst' || '/messages', :'key', '{"to":"5511900000001","text":"a"}', '{"idempotency-key":"h-1"}');
SELECT status, code, field FROM pg_temp.call('POST', '/v1/instances/' || :'inst' || '/messages', :'key', '{"to":"5511900000001","text":"b"}', '{"idempotency-key":"h-1"}');
SELECT status, code, field FROM pg_temp.call('POST', '/v1/instances/' || :'inst' || '/messages', :'key', '{"to":"5511900000001","type":"location","location":{"latitude":"north"}}');
SELECT status, code, field FROM pg_temp.call('POST', '/v1/instances/' || :'inst' || '/messages', :'key', '{"to":"5511900000001","text":"a","scheduledFor":"2001-01-01T00:00:00Z"}');
SELECT status, code, field FROM pg_temp.call('POST', '/v1/instances/' || :'inst' || '/messages', :'key', '{"to":"5511900000001","text":"a","delayMessage":99}');
SELECT o.id AS msg FROM pgwa.outbox o WHERE o.idempotency_key = 'h-1' \gset
SELECT status, body->>'status' AS st, body->>'to' AS "to", jsonb_typeof(body->'attempt_log') AS log
FROM pg_temp.call('GET', '/v1/messages/' || :'msg', :'key');
SELECT status, code FROM pg_temp.call('GET', '/v1/messages/garbage', :'key');

-- connection state
SELECT status, body->>'connection_state' AS state FROM pg_temp.call('PUT', '/v1/instances/' || :'inst' || '/connection', :'key', '{"state":"disconnected"}');
SELECT status, code, field FROM pg_temp.call('PUT', '/v1/instances/' || :'inst' || '/connection', :'key', '{"state":"asleep"}');

-- another tenant sees none of it
SELECT body->>'api_key' AS other FROM pg_temp.call('POST', '/v1/tenants', :'admin', '{"name":"http-other"}') \gset
SELECT status, code FROM pg_temp.call('GET', '/v1/messages/' || :'msg', :'other');
SELECT status, code FROM pg_temp.call('GET', '/v1/instances/' || :'inst', :'other');
SELECT status, code FROM pg_temp.call('PUT', '/v1/instances/' || :'inst' || '/connection', :'other', '{"state":"connected"}');
SELECT status, jsonb_array_length(body->'instances') AS n FROM pg_temp.call('GET', '/v1/instances', :'other');

-- keys: Bearer and the legacy X-Authorization header work; revoked keys do not
SELECT status FROM pgwa.http('GET', '/v1/instances', '{}', jsonb_build_object('authorization', 'Bearer ' || :'key'));
SELECT status FROM pgwa.http('GET', '/v1/instances', '{}', jsonb_build_object('x-authorization', :'key'));
SELECT status FROM pgwa.http('GET', '/v1/instances', '{}', jsonb_build_object('authorization', 'Basic ' || :'key'));
SELECT pgwa.revoke_api_key(k.id) FROM pgwa.api_keys k JOIN pgwa.tenants t ON t.id = k.tenant_id WHERE t.name = 'http-other';
SELECT status, code FROM pg_temp.call('GET', '/v1/instances', :'other');
-- the request id is echoed in errors
SELECT body->'error'->>'request_id' AS request_id FROM pg_temp.call('GET', '/nowhere', NULL, NULL, '{"x-request-id":"abc123"}');
