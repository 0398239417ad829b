-- pgwa.http() answers POST /v1/instances/{id}/messages in C when all is as
-- usual (extension/http_fast.c); the SQL router, pgwa._http_sql, is the
-- reference. Each request here goes both ways and the answers are compared;
-- track_functions tells which way pgwa.http() took.
\set VERBOSITY terse
SET TimeZone = 'America/Sao_Paulo';
SET track_functions = 'all';
SELECT pgwa.create_admin_key('fast test') AS admin \gset
SELECT tenant_id AS t1, api_key AS key FROM pgwa.create_tenant('fast-a') \gset
SELECT tenant_id AS t2, api_key AS key2 FROM pgwa.create_tenant('fast-b') \gset
SELECT pgwa.create_instance(:'t1', 'fast-1', 'broker', 'http://127.0.0.1:9', 'k') AS inst \gset
SELECT pgwa.create_instance(:'t2', 'fast-2', 'broker', 'http://127.0.0.1:9', 'k') AS inst2 \gset

-- One request through pgwa.http() and through the router, in that order:
-- statuses, headers and bodies, with the ids a new message gets masked, and
-- whether pgwa.http() went to the router.
CREATE FUNCTION pg_temp.both(p_path text, p_headers jsonb, p_body text, p_method text DEFAULT 'POST')
RETURNS TABLE (fast_status int, same boolean, routed boolean, fast_body jsonb, fast_headers jsonb)
LANGUAGE plpgsql AS $$
DECLARE
	f pgwa.http_response;
	s pgwa.http_response;
	calls bigint := coalesce(pg_stat_get_xact_function_calls('pgwa._http_sql'::regproc), 0);
BEGIN
	f := pgwa.http(p_method, p_path, '{}', p_headers, p_body);
	routed := coalesce(pg_stat_get_xact_function_calls('pgwa._http_sql'::regproc), 0) > calls;
	s := pgwa._http_sql(p_method, p_path, '{}', p_headers, p_body);
	fast_status := f.status;
	fast_body := f.body::jsonb - 'message_id' - 'seq';
	fast_headers := f.headers - 'Location';
	same := f.status = s.status AND f.body::jsonb - 'message_id' - 'seq' = s.body::jsonb - 'message_id' - 'seq'
	        AND f.headers - 'Location' = s.headers - 'Location'
	        AND (f.headers ? 'Location') = (s.headers ? 'Location')
	        AND (f.body::jsonb ? 'seq') = (s.body::jsonb ? 'seq');
	RETURN NEXT;
END $$;

\set path '/v1/instances/' :inst '/messages'
SELECT jsonb_build_object('x-api-key', :'key') AS h \gset

-- the usual send, then the same with a schedule (its time in the session's zone)
SELECT * FROM pg_temp.both(:'path', :'h', '{"to":"5511900000001","text":"a"}');
SELECT * FROM pg_temp.both(:'path', :'h',
	'{"to":"5511900000001","text":"later","scheduledFor":"' || to_char(now() + interval '2 days', 'YYYY-MM-DD') || 'T12:00:00Z"}');
-- the answer's text is the router's, byte for byte
SELECT f.body = s.body AS same_text
FROM pgwa.http('POST', :'path', '{}', :'h'::jsonb || '{"idempotency-key":"text-1"}', '{"to":"5511900000001","text":"t"}') f,
     pgwa._http_sql('POST', :'path', '{}', :'h'::jsonb || '{"idempotency-key":"text-1"}', '{"to":"5511900000001","text":"t"}') s;
-- the keys a client may present, and the path as clients write it
SELECT * FROM pg_temp.both(:'path', jsonb_build_object('authorization', 'Bearer ' || :'key'), '{"to":"5511900000001","text":"b"}');
SELECT * FROM pg_temp.both(:'path', jsonb_build_object('authorization', E'bEaReR \t ' || :'key' || '  '), '{"to":"5511900000001","text":"b"}');
SELECT * FROM pg_temp.both(:'path', jsonb_build_object('x-authorization', :'key'), '{"to":"5511900000001","text":"b"}');
SELECT * FROM pg_temp.both('//v1/instances/' || :'inst' || '/messages/', :'h', '{"to":"5511900000001","text":"c"}', 'post');
-- an idempotent replay: 200, the same message, and every byte the router's
SELECT status FROM pgwa.http('POST', :'path', '{}', :'h'::jsonb || '{"idempotency-key":"fast-1"}', '{"to":"5511900000001","text":"d"}');
SELECT * FROM pg_temp.both(:'path', :'h'::jsonb || '{"idempotency-key":"fast-1"}', '{"to":"5511900000001","text":"d"}');
SELECT f.body::jsonb->>'message_id' = (SELECT id::text FROM pgwa.outbox WHERE idempotency_key = 'fast-1') AS same_id,
       f.body = s.body AND f.headers = s.headers AS same_text
FROM pgwa.http('POST', :'path', '{}', :'h'::jsonb || '{"idempotency-key":"fast-1"}', '{"to":"5511900000001","text":"d"}') f,
     pgwa._http_sql('POST', :'path', '{}', :'h'::jsonb || '{"idempotency-key":"fast-1"}', '{"to":"5511900000001","text":"d"}') s;

-- every refusal is the router's answer
SELECT fast_status, same, routed, fast_body->'error'->>'code' AS code, fast_body->'error'->>'field' AS field
FROM (VALUES
	(1, :'path', :'h'::jsonb || '{"idempotency-key":"fast-1"}', '{"to":"5511900000001","text":"other"}'),
	(2, :'path', :'h'::jsonb, '{"to":"5511900000001"}'),
	(3, :'path', :'h', '{"to":"5511900000001","text":"a","delayMessage":99}'),
	(4, :'path', :'h', '{"to":"5511900000001","text":"a","scheduledFor":"2001-01-01T00:00:00Z"}'),
	(5, :'path', :'h', 'not json'),
	(6, :'path', :'h', '[1]'),
	(7, :'path', :'h', '  '),
	(8, :'path', :'h', NULL),
	(9, :'path', '{}'::jsonb, '{"to":"5511900000001","text":"a"}'),
	(10, :'path', jsonb_build_object('x-api-key', 'pgwa_nope'), '{"to":"5511900000001","text":"a"}'),
	(11, :'path', jsonb_build_object('x-api-key', :'admin'), '{"to":"5511900000001","text":"a"}'),
	(12, :'path', jsonb_build_object('x-api-key', :'key2'), '{"to":"5511900000001","text":"a"}'),
	(13, '/v1/instances/' || upper(:'inst') || 'x/messages', :'h', '{"to":"5511900000001","text":"a"}'),
	(14, '/v1/instances/00000000-0000-0000-0000-000000000000/messages', :'h', '{"to":"5511900000001","text":"a"}'),
	(15, :'path', jsonb_build_object('x-api-key', ' ', 'authorization', 'Bearer ' || :'key'), '{"to":"5511900000001","text":"a"}'),
	(16, :'path', jsonb_build_object('x-api-key', 7, 'authorization', 'Bearer ' || :'key'), '{"to":"5511900000001","text":"a"}'),
	(17, :'path', jsonb_build_object('x-authorization', 'Bearer ' || :'key'), '{"to":"5511900000001","text":"a"}'),
	(18, :'path', :'h'::jsonb || '{"idempotency-key":""}', '{"to":"5511900000001","text":"a"}'),
	(19, :'path', :'h', '{"to":"5511900000001","text":"a\u0000"}')
) AS r(n, p, h, b), pg_temp.both(r.p, r.h, r.b)
ORDER BY n;
-- an uppercase instance id is still the instance (the router reads it so)
SELECT fast_status, same, routed FROM pg_temp.both('/v1/instances/' || upper(:'inst') || '/messages', :'h', '{"to":"5511900000001","text":"e"}');
-- a revoked key no longer sends
SELECT pgwa.revoke_api_key(k.id) FROM pgwa.api_keys k WHERE k.tenant_id = :'t2';
SELECT fast_status, same, routed FROM pg_temp.both('/v1/instances/' || :'inst2' || '/messages',
	jsonb_build_object('x-api-key', :'key2'), '{"to":"5511900000001","text":"a"}');

-- a refused fast send leaves nothing behind: the sequence and the queue are as they were
SELECT next_seq AS seq_before FROM pgwa.instance_state WHERE instance_id = :'inst' \gset
SELECT count(*) AS queued_before FROM pgwa.outbox WHERE instance_id = :'inst' \gset
SELECT status FROM pgwa.http('POST', :'path', '{}', :'h', '{"to":"5511900000001","text":"a","delayMessage":99}');
SELECT next_seq = :seq_before AS same_seq FROM pgwa.instance_state WHERE instance_id = :'inst';
SELECT count(*) = :queued_before AS same_queue FROM pgwa.outbox WHERE instance_id = :'inst';
-- and an accepted one is one message, with the next number
SELECT status, (body::jsonb->>'seq')::bigint = :seq_before + 1 AS next_number
FROM pgwa.http('POST', :'path', '{}', :'h', '{"to":"5511900000001","text":"a"}');
SELECT count(*) - :queued_before AS added FROM pgwa.outbox WHERE instance_id = :'inst';
