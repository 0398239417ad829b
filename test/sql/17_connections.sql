-- The connections API of seed 003 (/connections) and GET /ready: a
-- connection is an instance; create, list, get, QR code, send with
-- messageId as idempotency key, delete (refused while a message is in
-- flight), tenant isolation, errors naming the fields.
\set VERBOSITY terse
SELECT pgwa.create_admin_key('connections test') AS admin \gset
SELECT api_key AS key FROM pgwa.create_tenant('conn-acme') \gset
SELECT api_key AS other FROM pgwa.create_tenant('conn-other') \gset
CREATE FUNCTION pg_temp.call(m text, p text, key text DEFAULT NULL, body text DEFAULT NULL)
RETURNS TABLE (status int, code text, field text, body jsonb, headers jsonb)
LANGUAGE sql AS $$
	SELECT r.status, r.body::jsonb #>> '{error,code}', r.body::jsonb #>> '{error,field}', r.body::jsonb, r.headers
	FROM pgwa.http(m, p, '{}', coalesce(jsonb_build_object('x-api-key', key), '{}'), body) r
$$;

-- readiness: no key; this database has neither a dispatcher nor pg_cron
SELECT status, body, headers->>'Cache-Control' AS cache FROM pg_temp.call('GET', '/ready');
SELECT status, code, headers->>'Allow' AS allow FROM pg_temp.call('POST', '/ready');

-- authentication
SELECT status, code FROM pg_temp.call('GET', '/connections');
SELECT status, code FROM pg_temp.call('GET', '/connections', 'pgwa_nope');
SELECT status, code FROM pg_temp.call('GET', '/connections', :'admin');
SELECT status, code, headers->>'Allow' AS allow FROM pg_temp.call('PUT', '/connections', :'key');

-- creating: validation names the field as the client wrote it
SELECT status, code, field FROM pg_temp.call('POST', '/connections', :'key', NULL);
SELECT status, code, field FROM pg_temp.call('POST', '/connections', :'key', '{}');
SELECT status, code, field FROM pg_temp.call('POST', '/connections', :'key', '{"label": 7}');
SELECT status, code, field FROM pg_temp.call('POST', '/connections', :'key', '{"label": "   "}');
SELECT status, code, field, body->'error'->>'message' AS message
FROM pg_temp.call('POST', '/connections', :'key', '{"label": "***"}');
SELECT status, code, field FROM pg_temp.call('POST', '/connections', :'key', '{"label": "x", "config": [1]}');
SELECT status, code, field FROM pg_temp.call('POST', '/connections', :'key', '{"label": "x", "webhookUrl": 5}');
SELECT status, code, field, body->'error'->>'message' AS message
FROM pg_temp.call('POST', '/connections', :'key', '{"label": "x", "config": {"baseUrl": "http://b"}}');
SELECT status, code, field, body->'error'->>'message' AS message
FROM pg_temp.call('POST', '/connections', :'key', '{"label": "x", "config": {"provider": "sms"}}');
SELECT status, code, field, body->'error'->>'message' AS message
FROM pg_temp.call('POST', '/connections', :'key', '{"label": "x", "config": {"base_url": "ftp://b"}}');
SELECT status, code, field FROM pg_temp.call('POST', '/connections', :'key', '{"label": "x", "config": {"api_key": 1}}');
SELECT status, code, field FROM pg_temp.call('POST', '/connections', :'key', '{"label": "x", "config": {"delay_min_ms": "soon"}}');
SELECT status, code, field FROM pg_temp.call('POST', '/connections', :'key', '{"label": "x", "config": {"settings": 3}}');
SELECT status, code, field, body->'error'->>'message' AS message
FROM pg_temp.call('POST', '/connections', :'key', '{"label": "x", "config": {"name": "no spaces"}}');
-- a bad webhookUrl leaves no connection behind
SELECT status, code, field, body->'error'->>'message' AS message
FROM pg_temp.call('POST', '/connections', :'key', '{"label": "x", "webhookUrl": "not a url"}');
SELECT count(*) AS leftover FROM pgwa.instances i JOIN pgwa.tenants t ON t.id = i.tenant_id
WHERE t.name = 'conn-acme';

-- creating (seed 003 section 17): the name comes from the label
SELECT status, (body #- '{webhooks,0,id}') - 'sessionId' - 'webhook' - 'createdAt' - 'updatedAt' - 'statusChangedAt' AS body,
       (body->'webhook') - 'id' - 'secret' AS webhook, body->'webhook'->>'secret' LIKE 'whsec_%' AS has_secret,
       body #> '{webhooks,0,id}' = body #> '{webhook,id}' AS same_webhook,
       headers->>'Location' = '/connections/' || (body->>'sessionId') AS location
FROM pg_temp.call('POST', '/connections', :'key',
  '{"label": "Loja A - 1", "webhookUrl": "https://app.example.com/webhook",
    "config": {"base_url": "http://127.0.0.1:1", "api_key": "s3cret", "delay_min_ms": 0, "delay_max_ms": 0}}');
SELECT i.id AS conn FROM pgwa.instances i WHERE i.name = 'Loja-A-1' \gset
SELECT name, provider, base_url, broker_api_key, broker_instance_id, delay_min_ms, settings
FROM pgwa.instances WHERE id = :'conn';
SELECT url, events, active FROM pgwa.webhook_subscriptions WHERE instance_id = :'conn';
-- the same label again is the same name
SELECT status, code, field FROM pg_temp.call('POST', '/connections', :'key', '{"label": "Loja A  1"}');
-- config.name sets the name; without base_url and api_key it cannot send yet
SELECT status, body->>'name' AS name, body->>'label' AS label, body->>'provider' AS provider,
       body->>'configured' AS configured, body ? 'webhook' AS has_webhook
FROM pg_temp.call('POST', '/connections', :'key', '{"label": "Segunda", "config": {"name": "second", "provider": "evolution"}}');
SELECT i.id AS second FROM pgwa.instances i WHERE i.name = 'second' \gset

-- listing and reading
SELECT status, jsonb_path_query_array(body, '$.connections[*].label') AS labels
FROM pg_temp.call('GET', '/connections', :'key');
SELECT status, jsonb_array_length(body->'connections') AS n FROM pg_temp.call('GET', '/connections', :'other');
SELECT status, body->>'sessionId' = :'conn' AS same_id, body->>'status' AS st, body->'configured' AS configured,
       body->'queueLength' AS queue_length, body->'webhooks'->0->'events' AS events, body->>'hasQrCode' AS has_qr
FROM pg_temp.call('GET', '/connections/' || :'conn', :'key');
SELECT status, code, field FROM pg_temp.call('GET', '/connections/' || :'conn', :'other');
SELECT status, code, field FROM pg_temp.call('GET', '/connections/not-a-uuid', :'key');
SELECT status, code, field FROM pg_temp.call('GET', '/connections/00000000-0000-0000-0000-000000000000', :'key');
SELECT status, code, headers->>'Allow' AS allow FROM pg_temp.call('PATCH', '/connections/' || :'conn', :'key');
SELECT status, code FROM pg_temp.call('GET', '/connections/' || :'conn' || '/nothing', :'key');

-- QR code: none yet, then the latest one received (as an Evolution
-- qrcode.updated leaves it)
SELECT status, code, field FROM pg_temp.call('GET', '/connections/' || :'conn' || '/qr', :'key');
INSERT INTO pgwa.instance_qrcodes (instance_id, tenant_id, code, base64, pairing_code, received_at)
SELECT id, tenant_id, '2@abc', 'data:image/png;base64,iVBOR', 'K7Q2-9XZT', '2025-11-13T12:00:00Z'
FROM pgwa.instances WHERE id = :'conn';
SELECT status, body - 'sessionId' AS body, body->>'sessionId' = :'conn' AS same_id, headers->>'Cache-Control' AS cache
FROM pg_temp.call('GET', '/connections/' || :'conn' || '/qr', :'key');
SELECT body->>'status' AS st, body->>'hasQrCode' AS has_qr FROM pg_temp.call('GET', '/connections/' || :'conn', :'key');
-- as the PNG to scan: ?format=png or Accept: image/png; this one has no valid image
SELECT r.status, r.body::jsonb #>> '{error,field}' AS field FROM pgwa.http('GET', '/connections/' || :'conn' || '/qr',
	'{"format": "png"}', jsonb_build_object('x-api-key', :'key'), NULL) r;
UPDATE pgwa.instance_qrcodes SET base64 = 'data:image/png;base64,iVBORw0KGgoAAAANSUhEUg==' WHERE instance_id = :'conn';
SELECT r.status, r.headers, decode(r.body, 'base64') = decode('iVBORw0KGgoAAAANSUhEUg==', 'base64') AS same_png
FROM pgwa.http('GET', '/connections/' || :'conn' || '/qr', '{}', jsonb_build_object('x-api-key', :'key', 'accept', 'image/png'), NULL) r;
SELECT r.status, r.headers->>'Content-Type' AS ctype FROM pgwa.http('GET', '/connections/' || :'conn' || '/qr',
	'{"format": "png"}', jsonb_build_object('x-api-key', :'key'), NULL) r;
SELECT status, code FROM pg_temp.call('GET', '/connections/' || :'conn' || '/qr', :'other');
SELECT status, code, headers->>'Allow' AS allow FROM pg_temp.call('POST', '/connections/' || :'conn' || '/qr', :'key');

-- sending: validation
SELECT status, code, field FROM pg_temp.call('POST', '/connections/' || :'conn' || '/send', :'key',
  '{"to": "5534999999999", "type": "text", "body": "Olá"}');
SELECT status, code, field FROM pg_temp.call('POST', '/connections/' || :'conn' || '/send', :'key',
  '{"messageId": 12, "to": "5534999999999", "body": "Olá"}');
SELECT status, code, field FROM pg_temp.call('POST', '/connections/' || :'conn' || '/send', :'key',
  '{"messageId": "", "to": "5534999999999", "body": "Olá"}');
SELECT status, code, field, body->'error'->>'message' AS message
FROM pg_temp.call('POST', '/connections/' || :'conn' || '/send', :'key', '{"messageId": "m-0", "to": "5534999999999"}');
SELECT status, code, field, body->'error'->>'message' AS message
FROM pg_temp.call('POST', '/connections/' || :'conn' || '/send', :'key', '{"messageId": "m-0", "to": "5534999999999", "body": [1]}');
SELECT status, code, field, body->'error'->>'message' AS message
FROM pg_temp.call('POST', '/connections/' || :'conn' || '/send', :'key', '{"messageId": "m-0", "to": "5534999999999", "body": ""}');
SELECT status, code, field FROM pg_temp.call('POST', '/connections/' || :'conn' || '/send', :'key',
  '{"messageId": "m-0", "body": "Olá"}');
SELECT status, code, field, body->'error'->>'message' AS message
FROM pg_temp.call('POST', '/connections/' || :'conn' || '/send', :'key',
  '{"messageId": "m-0", "to": "5534999999999", "type": "image", "body": "a picture"}');
SELECT status, code, field, body->'error'->>'message' AS message
FROM pg_temp.call('POST', '/connections/' || :'conn' || '/send', :'key',
  '{"messageId": "m-0", "to": "5534999999999", "type": "image", "body": {"caption": "no media"}}');
SELECT status, code, field FROM pg_temp.call('POST', '/connections/' || :'conn' || '/send', :'key',
  '{"messageId": "m-0", "to": "5534999999999", "type": "location", "body": {"location": {"latitude": "north"}}}');
SELECT status, code, field FROM pg_temp.call('POST', '/connections/' || :'conn' || '/send', :'key',
  '{"messageId": "m-0", "to": "5534999999999", "body": "Olá", "delayMessage": 99}');
SELECT status, code, field FROM pg_temp.call('POST', '/connections/' || :'conn' || '/send', :'key',
  '{"messageId": "m-0", "to": "5534999999999", "type": "carrier-pigeon", "body": {}}');
SELECT count(*) AS queued_so_far FROM pgwa.outbox WHERE instance_id = :'conn';

-- sending (seed 003 section 17): 202, and the same messageId again is not sent twice
SELECT status, body - 'id' AS body, headers->>'Location' = '/v1/messages/' || (body->>'id') AS location
FROM pg_temp.call('POST', '/connections/' || :'conn' || '/send', :'key',
  '{"messageId": "m-1", "to": "5534999999999@s.whatsapp.net", "type": "text", "body": "Olá"}');
SELECT status, body - 'id' AS body, headers->>'Idempotent-Replayed' AS replayed
FROM pg_temp.call('POST', '/connections/' || :'conn' || '/send', :'key',
  '{"messageId": "m-1", "to": "5534999999999@s.whatsapp.net", "type": "text", "body": "Olá"}');
SELECT count(*) AS copies, min(recipient) AS recipient, min(payload->>'text') AS text, min(type) AS type
FROM pgwa.outbox WHERE instance_id = :'conn' AND idempotency_key = 'm-1';
SELECT status, code, field FROM pg_temp.call('POST', '/connections/' || :'conn' || '/send', :'key',
  '{"messageId": "m-1", "to": "5534999999999", "type": "text", "body": "Tchau"}');
-- a media message: body holds the fields of its type
SELECT status, body->>'status' AS st
FROM pg_temp.call('POST', '/connections/' || :'conn' || '/send', :'key',
  '{"messageId": "m-2", "to": "5534999999999", "type": "image",
    "body": {"mediaUrl": "https://cdn.example.com/a.png", "caption": "a"}}');
SELECT type, payload->>'mediaUrl' AS media_url, payload->>'caption' AS caption
FROM pgwa.outbox WHERE instance_id = :'conn' AND idempotency_key = 'm-2';
SELECT status, code FROM pg_temp.call('POST', '/connections/' || :'conn' || '/send', :'other',
  '{"messageId": "m-3", "to": "5534999999999", "body": "not yours"}');
SELECT status, code, field FROM pg_temp.call('POST', '/connections/' || :'second' || '/send', :'key',
  '{"messageId": "m-4", "to": "5534999999999", "body": "no broker yet"}');
SELECT status, code, headers->>'Allow' AS allow FROM pg_temp.call('GET', '/connections/' || :'conn' || '/send', :'key');
SELECT body->'queueLength' AS queue_length FROM pg_temp.call('GET', '/connections/' || :'conn', :'key');

-- deleting: another tenant cannot; while a message is in flight it is refused
SELECT status, code FROM pg_temp.call('DELETE', '/connections/' || :'conn', :'other');
WITH c AS (
	UPDATE pgwa.outbox SET status = 'sending', attempts = 1, lease_until = now() + interval '1 minute'
	WHERE instance_id = :'conn' AND idempotency_key = 'm-1' RETURNING instance_id, seq)
UPDATE pgwa.instance_state s SET inflight_seq = c.seq FROM c WHERE s.instance_id = c.instance_id;
SELECT status, code, field, body->'error'->>'message' AS message
FROM pg_temp.call('DELETE', '/connections/' || :'conn', :'key');
SELECT count(*) AS still_there FROM pgwa.instances WHERE id = :'conn';
-- the attempt ends; then it goes, with the message still waiting
SELECT pgwa._complete(:'conn', seq, 'sent', 200, 'BAE5-1', NULL, now(), 12, NULL)
FROM pgwa.outbox WHERE instance_id = :'conn' AND idempotency_key = 'm-1';
SELECT count(*) AS attempts FROM pgwa.attempts WHERE instance_id = :'conn';
SELECT count(*) AS logged FROM pgwa.messages WHERE instance_id = :'conn';
SELECT status, body - 'sessionId' AS body FROM pg_temp.call('DELETE', '/connections/' || :'conn', :'key');
SELECT (SELECT count(*) FROM pgwa.instances WHERE id = :'conn') AS instances,
       (SELECT count(*) FROM pgwa.instance_state WHERE instance_id = :'conn') AS state,
       (SELECT count(*) FROM pgwa.outbox WHERE instance_id = :'conn') AS outbox,
       (SELECT count(*) FROM pgwa.attempts WHERE instance_id = :'conn') AS attempts,
       (SELECT count(*) FROM pgwa.messages WHERE instance_id = :'conn') AS messages,
       (SELECT count(*) FROM pgwa.webhook_subscriptions WHERE instance_id = :'conn') AS subscriptions,
       (SELECT count(*) FROM pgwa.instance_qrcodes WHERE instance_id = :'conn') AS qrcodes,
       (SELECT count(*) FROM pgwa.enqueue_counts WHERE instance_id = :'conn') AS counts;
SELECT action, details FROM pgwa.audit_log WHERE instance_id = :'conn';
SELECT status, code, field FROM pg_temp.call('GET', '/connections/' || :'conn', :'key');
SELECT status, code, field FROM pg_temp.call('DELETE', '/connections/' || :'conn', :'key');
SELECT status, jsonb_path_query_array(body, '$.connections[*].name') AS names FROM pg_temp.call('GET', '/connections', :'key');
-- the SQL function
SELECT pgwa.delete_instance('00000000-0000-0000-0000-000000000000');
SELECT pgwa.delete_instance(:'second');
