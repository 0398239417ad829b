-- The seeds' send routes: seed 000's POST /integrations/whatsapp/instances/{id}/messages
-- (also under /api) and seed 004's POST /api/whatsapp/send-message and schedule-message.
\set VERBOSITY terse
SELECT pgwa.create_admin_key('seed routes test') AS admin \gset
CREATE FUNCTION pg_temp.call(m text, p text, key text DEFAULT NULL, body text DEFAULT NULL, extra jsonb DEFAULT '{}')
RETURNS TABLE (status int, code text, field text, message text, body jsonb, headers jsonb)
LANGUAGE sql AS $$
	SELECT r.status, r.body::jsonb #>> '{error,code}', r.body::jsonb #>> '{error,field}',
	       r.body::jsonb #>> '{error,message}', r.body::jsonb, r.headers
	FROM pgwa.http(m, p, '{}', coalesce(jsonb_build_object('x-api-key', key), '{}') || extra, body) r
$$;

-- tenant "seed-a" has two instances, one of them without base_url; "seed-b" has one
SELECT body->>'api_key' AS key FROM pg_temp.call('POST', '/v1/tenants', :'admin', '{"name":"seed-a"}') \gset
SELECT body->>'api_key' AS other FROM pg_temp.call('POST', '/v1/tenants', :'admin', '{"name":"seed-b"}') \gset
SELECT body->>'api_key' AS empty FROM pg_temp.call('POST', '/v1/tenants', :'admin', '{"name":"seed-c"}') \gset
SELECT body->>'id' AS inst FROM pg_temp.call('POST', '/v1/instances', :'key',
	'{"name":"business","base_url":"http://127.0.0.1:1","api_key":"s3cret"}') \gset
SELECT body->>'id' AS nocfg FROM pg_temp.call('POST', '/v1/instances', :'key', '{"name":"nocfg"}') \gset
SELECT body->>'id' AS solo FROM pg_temp.call('POST', '/v1/instances', :'other',
	'{"name":"solo","base_url":"http://127.0.0.1:1","api_key":"s3cret"}') \gset
\set path '/integrations/whatsapp/instances/' :inst '/messages'
\set apipath '/api/integrations/whatsapp/instances/' :inst '/messages'

-------------------------------------------------------------------------------
-- seed 000
-------------------------------------------------------------------------------
-- success: content is the text; 202 with the message id and status
SELECT status, body->>'status' AS st, body->>'instanceId' = :'inst' AS same_instance,
       body ? 'messageId' AS has_id, body->'scheduledFor' AS sched, headers ? 'Location' AS has_location
FROM pg_temp.call('POST', :'path', :'key', '{"to":"+55 11 90000-0001","content":"hello"}');
SELECT o.type, o.recipient, o.payload->>'text' AS text FROM pgwa.outbox o
WHERE o.instance_id = :'inst' ORDER BY o.seq DESC LIMIT 1;
-- the same under /api; text and a string message are read as content too
SELECT status, body->>'status' AS st FROM pg_temp.call('POST', :'apipath', :'key', '{"to":"5511900000001","text":"hi"}');
SELECT status, body->>'status' AS st FROM pg_temp.call('POST', :'apipath', :'key',
	'{"sessionId":"s","instanceId":"x","to":"5511900000001","type":"text","message":"hey"}');
SELECT o.payload FROM pgwa.outbox o WHERE o.instance_id = :'inst' ORDER BY o.seq DESC LIMIT 1;
-- other types: content is a media caption; a template needs its template
SELECT status, body->>'status' AS st FROM pg_temp.call('POST', :'path', :'key',
	'{"to":"5511900000001","type":"image","mediaUrl":"https://cdn.example/a.jpg","content":"look"}');
SELECT o.type, o.payload->>'caption' AS caption FROM pgwa.outbox o WHERE o.instance_id = :'inst' ORDER BY o.seq DESC LIMIT 1;
SELECT status, body->>'status' AS st FROM pg_temp.call('POST', :'path', :'key',
	'{"to":"5511900000001","type":"template","template":{"name":"welcome","language":"pt_BR"}}');
-- scheduled through the contract's scheduledFor
SELECT status, body->>'status' AS st, (body->>'scheduledFor')::timestamptz > now() AS future
FROM pg_temp.call('POST', :'path', :'key',
	format('{"to":"5511900000001","content":"later","scheduledFor":"%s"}', now() + interval '1 day'));

-- idempotency: the Idempotency-Key header, else metadata.idempotencyKey
SELECT status, body->>'status' AS st FROM pg_temp.call('POST', :'path', :'key',
	'{"to":"5511900000001","content":"once"}', '{"idempotency-key":"seed-1"}');
SELECT status, body->>'status' AS st, headers->>'Idempotent-Replayed' AS replayed FROM pg_temp.call('POST', :'path', :'key',
	'{"to":"5511900000001","content":"once"}', '{"idempotency-key":"seed-1"}');
SELECT status, code, field FROM pg_temp.call('POST', :'path', :'key',
	'{"to":"5511900000001","content":"twice"}', '{"idempotency-key":"seed-1"}');
SELECT status FROM pg_temp.call('POST', :'path', :'key',
	'{"to":"5511900000001","content":"meta","metadata":{"idempotencyKey":"seed-2"}}');
SELECT status, headers->>'Idempotent-Replayed' AS replayed FROM pg_temp.call('POST', :'path', :'key',
	'{"to":"5511900000001","content":"meta","metadata":{"idempotencyKey":"seed-2"}}');
SELECT count(*) FROM pgwa.outbox o WHERE o.idempotency_key IN ('seed-1', 'seed-2');

-- validation names the contract's fields
SELECT status, code, field, message FROM pg_temp.call('POST', :'path', :'key', '{"to":"5511900000001"}');
SELECT status, code, field, message FROM pg_temp.call('POST', :'path', :'key', '{"to":"5511900000001","content":""}');
SELECT status, code, field, message FROM pg_temp.call('POST', :'path', :'key', '{"to":"5511900000001","content":7}');
SELECT status, code, field, message FROM pg_temp.call('POST', :'path', :'key', '{"to":"12","content":"x"}');
SELECT status, code, field, message FROM pg_temp.call('POST', :'path', :'key', '{"content":"x"}');
SELECT status, code, field FROM pg_temp.call('POST', :'path', :'key', '{"to":"5511900000001","type":"sticker","content":"x"}');
SELECT status, code, field FROM pg_temp.call('POST', :'path', :'key', '{"to":"5511900000001","type":"image","content":"x"}');
SELECT status, code, field FROM pg_temp.call('POST', :'path', :'key', '{"to":"5511900000001","type":"location"}');
SELECT status, code, field FROM pg_temp.call('POST', :'path', :'key', 'not json');

-- keys and tenants
SELECT status, code, headers->>'WWW-Authenticate' AS auth FROM pg_temp.call('POST', :'path', NULL, '{"to":"5511900000001","content":"x"}');
SELECT status, code FROM pg_temp.call('POST', :'path', 'pgwa_nope', '{"to":"5511900000001","content":"x"}');
SELECT status, code FROM pg_temp.call('POST', :'path', :'admin', '{"to":"5511900000001","content":"x"}');
SELECT status, code, field FROM pg_temp.call('POST', :'path', :'other', '{"to":"5511900000001","content":"x"}');
SELECT status, code FROM pg_temp.call('POST', '/integrations/whatsapp/instances/nope/messages', :'key', '{"to":"5511900000001","content":"x"}');
SELECT status, code, headers->>'Allow' AS allow FROM pg_temp.call('GET', :'path', :'key');
SELECT status, code FROM pg_temp.call('POST', '/integrations/whatsapp/instances', :'key', '{}');

-- a disconnected instance: 409 with its status and connected: false; nothing queued
SELECT pgwa.set_connection_state(:'inst', 'disconnected');
SELECT count(*) AS before FROM pgwa.outbox o WHERE o.instance_id = :'inst' \gset
SELECT status, code, field, body->>'status' AS st, body->'connected' AS connected
FROM pg_temp.call('POST', :'path', :'key', '{"to":"5511900000001","content":"x"}');
SELECT status, code, body->>'status' AS st, body->'connected' AS connected, body->'error'->>'request_id' AS request_id
FROM pg_temp.call('POST', :'apipath', :'key', '{"to":"5511900000001","content":"x"}', '{"x-request-id":"r-409"}');
SELECT count(*) = :before AS nothing_queued FROM pgwa.outbox o WHERE o.instance_id = :'inst';
SELECT pgwa.set_connection_state(:'inst', 'connected');
SELECT status FROM pg_temp.call('POST', :'path', :'key', '{"to":"5511900000001","content":"x"}');

-- an instance that lacks what its provider needs: 503 naming what is missing
SELECT status, code, field FROM pg_temp.call('POST', '/integrations/whatsapp/instances/' || :'nocfg' || '/messages',
	:'key', '{"to":"5511900000001","content":"x"}');

-------------------------------------------------------------------------------
-- seed 004
-------------------------------------------------------------------------------
-- send-message: 200 queued, the instance by name
SELECT status, body - 'messageId' AS body, body ? 'messageId' AS has_id FROM pg_temp.call('POST', '/api/whatsapp/send-message', :'key',
	'{"instanceName":"business","phoneNumber":"5511999999999","message":"Olá!"}');
SELECT o.instance_id = :'inst' AS on_business, o.recipient, o.payload->>'text' AS text, o.status
FROM pgwa.outbox o WHERE o.recipient = '5511999999999' AND o.tenant_id = (SELECT tenant_id FROM pgwa.instances WHERE id = :'inst');
-- by instanceId; phone for phoneNumber; the tenant's only instance when none is named
SELECT status, body->>'status' AS st FROM pg_temp.call('POST', '/api/whatsapp/send-message', :'key',
	format('{"instanceId":"%s","phone":"5511999999998","message":"by id"}', :'inst'));
SELECT status, body->>'status' AS st FROM pg_temp.call('POST', '/api/whatsapp/send-message', :'other',
	'{"phoneNumber":"5511999999997","message":"only one"}');
SELECT o.instance_id = :'solo' AS on_solo FROM pgwa.outbox o WHERE o.recipient = '5511999999997';
-- the instance: several, none, unknown, another tenant's
SELECT status, code, field, message FROM pg_temp.call('POST', '/api/whatsapp/send-message', :'key',
	'{"phoneNumber":"5511999999999","message":"which?"}');
SELECT status, code, field FROM pg_temp.call('POST', '/api/whatsapp/send-message', :'empty',
	'{"phoneNumber":"5511999999999","message":"x"}');
SELECT status, code, field FROM pg_temp.call('POST', '/api/whatsapp/send-message', :'key',
	'{"instanceName":"nowhere","phoneNumber":"5511999999999","message":"x"}');
SELECT status, code, field FROM pg_temp.call('POST', '/api/whatsapp/send-message', :'other',
	'{"instanceName":"business","phoneNumber":"5511999999999","message":"x"}');
SELECT status, code, field FROM pg_temp.call('POST', '/api/whatsapp/send-message', :'other',
	format('{"instanceId":"%s","phoneNumber":"5511999999999","message":"x"}', :'inst'));
SELECT status, code, field FROM pg_temp.call('POST', '/api/whatsapp/send-message', :'key',
	'{"instanceName":"nocfg","phoneNumber":"5511999999999","message":"x"}');
-- phone and message
SELECT status, code, field, message FROM pg_temp.call('POST', '/api/whatsapp/send-message', :'key',
	'{"instanceName":"business","message":"x"}');
SELECT status, code, field, message FROM pg_temp.call('POST', '/api/whatsapp/send-message', :'key',
	'{"instanceName":"business","phoneNumber":"call me","message":"x"}');
SELECT status, code, field, message FROM pg_temp.call('POST', '/api/whatsapp/send-message', :'key',
	'{"instanceName":"business","phone":"123","message":"x"}');
SELECT status, code, field, message FROM pg_temp.call('POST', '/api/whatsapp/send-message', :'key',
	'{"instanceName":"business","phoneNumber":5511999999999,"message":"x"}');
SELECT status, code, field, message FROM pg_temp.call('POST', '/api/whatsapp/send-message', :'key',
	'{"instanceName":"business","phoneNumber":"5511999999999"}');
SELECT status, code, field, message FROM pg_temp.call('POST', '/api/whatsapp/send-message', :'key',
	'{"instanceName":"business","phoneNumber":"5511999999999","message":""}');
SELECT status, code, field, message FROM pg_temp.call('POST', '/api/whatsapp/send-message', :'key',
	json_build_object('instanceName', 'business', 'phoneNumber', '5511999999999', 'message', repeat('x', 4097))::text);
-- keys, methods
SELECT status, code FROM pg_temp.call('POST', '/api/whatsapp/send-message', NULL,
	'{"instanceName":"business","phoneNumber":"5511999999999","message":"x"}');
SELECT status, code, headers->>'Allow' AS allow FROM pg_temp.call('GET', '/api/whatsapp/send-message', :'key');
SELECT status, code FROM pg_temp.call('POST', '/api/whatsapp/elsewhere', :'key', '{}');
SELECT status, code FROM pg_temp.call('POST', '/whatsapp/send-message', :'key', '{}');
-- idempotency: a retry with the same Idempotency-Key is the same message
SELECT body->>'messageId' AS m1 FROM pg_temp.call('POST', '/api/whatsapp/send-message', :'key',
	'{"instanceName":"business","phoneNumber":"5511999999990","message":"once"}', '{"idempotency-key":"s4-1"}') \gset
SELECT status, body->>'messageId' = :'m1' AS same, headers->>'Idempotent-Replayed' AS replayed
FROM pg_temp.call('POST', '/api/whatsapp/send-message', :'key',
	'{"instanceName":"business","phoneNumber":"5511999999990","message":"once"}', '{"idempotency-key":"s4-1"}');

-- schedule-message: 202 {success, scheduleId, scheduledFor, message}
SELECT date_trunc('second', now() + interval '2 days') AS when \gset
CREATE TEMP TABLE sched AS SELECT * FROM pg_temp.call('POST', '/api/whatsapp/schedule-message', :'key',
	format('{"instanceName":"business","phoneNumber":"5511999999996","message":"Olá!","scheduledFor":"%s"}', :'when'));
SELECT status, body - 'scheduleId' - 'scheduledFor' AS body, (body->>'scheduledFor')::timestamptz = :'when' AS same_time,
       body->>'scheduledFor' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$' AS iso_utc
FROM sched;
SELECT body->>'scheduleId' AS sid FROM sched \gset
SELECT o.status, o.scheduled_for = :'when' AS at_time, o.payload->>'text' AS text FROM pgwa.outbox o WHERE o.id = :'sid';
-- 90 days ahead is fine, beyond is not; the past, a bad date and no date are refused
SELECT status FROM pg_temp.call('POST', '/api/whatsapp/schedule-message', :'key',
	format('{"instanceName":"business","phoneNumber":"5511999999996","message":"x","scheduledFor":"%s"}', now() + interval '89 days 23 hours'));
SELECT status, code, field, message FROM pg_temp.call('POST', '/api/whatsapp/schedule-message', :'key',
	format('{"instanceName":"business","phoneNumber":"5511999999996","message":"x","scheduledFor":"%s"}', now() + interval '91 days'));
SELECT status, code, field, message FROM pg_temp.call('POST', '/api/whatsapp/schedule-message', :'key',
	format('{"instanceName":"business","phoneNumber":"5511999999996","message":"x","scheduledFor":"%s"}', now() - interval '1 minute'));
SELECT status, code, field, message FROM pg_temp.call('POST', '/api/whatsapp/schedule-message', :'key',
	'{"instanceName":"business","phoneNumber":"5511999999996","message":"x","scheduledFor":"tomorrow-ish"}');
SELECT status, code, field, message FROM pg_temp.call('POST', '/api/whatsapp/schedule-message', :'key',
	'{"instanceName":"business","phoneNumber":"5511999999996","message":"x"}');
SELECT status, code, field FROM pg_temp.call('POST', '/api/whatsapp/schedule-message', :'key',
	format('{"instanceName":"business","phoneNumber":"1","message":"x","scheduledFor":"%s"}', now() + interval '1 day'));
SELECT status, code FROM pg_temp.call('POST', '/api/whatsapp/schedule-message', :'other',
	format('{"instanceName":"business","phoneNumber":"5511999999996","message":"x","scheduledFor":"%s"}', now() + interval '1 day'));
