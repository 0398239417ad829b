-- The Z-API dialect: /instances/{instanceId}/token/{token}/... (78_http_zapi.sql).
\set VERBOSITY terse
CREATE FUNCTION pg_temp.z(m text, p text, body text DEFAULT NULL, headers jsonb DEFAULT '{}', query jsonb DEFAULT '{}')
RETURNS TABLE (status int, body jsonb, headers jsonb)
LANGUAGE sql AS $$
	SELECT r.status, r.body::jsonb, r.headers FROM pgwa.http(m, p, query, headers, body) r
$$;
-- the newest message of an instance
CREATE FUNCTION pg_temp.last(p_instance uuid) RETURNS TABLE (type text, recipient text, status text, payload jsonb)
LANGUAGE sql AS $$
	SELECT o.type, o.recipient, o.status, o.payload - 'to' - 'type' FROM pgwa.outbox o
	WHERE o.instance_id = p_instance ORDER BY o.seq DESC LIMIT 1
$$;

SELECT tenant_id AS ta FROM pgwa.create_tenant('zapi-a') \gset
SELECT tenant_id AS tb FROM pgwa.create_tenant('zapi-b') \gset
SELECT pgwa.create_instance(:'ta', 'za', 'broker', 'http://127.0.0.1:1', 's3cret') AS ia,
       pgwa.create_instance(:'ta', 'za2', 'broker', 'http://127.0.0.1:1', 's3cret') AS ia2,
       pgwa.create_instance(:'tb', 'zb', 'broker', 'http://127.0.0.1:1', 's3cret') AS ib \gset

-------------------------------------------------------------------------------
-- tokens
-------------------------------------------------------------------------------
-- generated: 40 upper-case hex digits; chosen: checked
SELECT pgwa.set_zapi_token(:'ia') ~ '^[0-9A-F]{40}$' AS generated;
SELECT pgwa.set_zapi_token(:'ia', 'short1');
SELECT pgwa.set_zapi_token(:'ia', 'no/slashes/in/a/path/1');
SELECT pgwa.set_zapi_token(:'ia', 'abcdefghijklmnopqrstuvwxyz');
SELECT pgwa.set_zapi_token(gen_random_uuid(), 'TOKEN-A-0000000001');
SELECT pgwa.set_zapi_token(:'ia', 'TOKEN-A-0000000001') AS ta_token;
SELECT pgwa.set_zapi_token(:'ia2', 'TOKEN-A-0000000002') IS NOT NULL AS ok;
SELECT pgwa.set_zapi_token(:'ib', 'TOKEN-B-0000000001') IS NOT NULL AS ok;
SELECT pgwa.set_zapi_client_token(:'ia2', 'CLIENT-0000000002') AS required;
SELECT pgwa.set_zapi_client_token(gen_random_uuid(), 'CLIENT-0000000002');
-- only hashes are kept
SELECT bool_and(length(token_hash) = 32) AS sha256_only FROM pgwa.zapi_tokens;
\set za '/instances/' :ia '/token/TOKEN-A-0000000001'
\set za2 '/instances/' :ia2 '/token/TOKEN-A-0000000002'
\set zb '/instances/' :ib '/token/TOKEN-B-0000000001'

-- a wrong token, an unknown instance, another tenant's instance with this
-- token: all 401 in Z-API's shape, without a Bearer challenge
SELECT status, body, headers FROM pg_temp.z('GET', '/instances/' || :'ia' || '/token/TOKEN-A-9999999999/status');
SELECT status, body FROM pg_temp.z('GET', '/instances/' || gen_random_uuid() || '/token/TOKEN-A-0000000001/status');
SELECT status, body FROM pg_temp.z('GET', '/instances/not-a-uuid/token/TOKEN-A-0000000001/status');
SELECT status, body FROM pg_temp.z('GET', '/instances/' || :'ib' || '/token/TOKEN-A-0000000001/status');
SELECT status, body FROM pg_temp.z('POST', '/instances/' || :'ib' || '/token/TOKEN-A-0000000001/send-text',
	'{"phone":"5511900000001","message":"x"}');
SELECT count(*) AS sent_to_b FROM pgwa.outbox WHERE instance_id = :'ib';
-- Client-Token: required once set, must match; ignored where none is set
SELECT status, body FROM pg_temp.z('GET', :'za2' || '/status');
SELECT status, body FROM pg_temp.z('GET', :'za2' || '/status', NULL, '{"client-token":"CLIENT-0000000009"}');
SELECT status, body FROM pg_temp.z('GET', :'za2' || '/status', NULL, '{"client-token":"CLIENT-0000000002"}');
SELECT status FROM pg_temp.z('GET', :'za' || '/status', NULL, '{"client-token":"anything"}');
SELECT pgwa.set_zapi_client_token(:'ia2', NULL) AS required;
SELECT status FROM pg_temp.z('GET', :'za2' || '/status');
-- a rotated token replaces the old one; a cleared one closes the routes
SELECT pgwa.set_zapi_token(:'ia2', 'TOKEN-A-0000000003') IS NOT NULL AS rotated;
SELECT status FROM pg_temp.z('GET', :'za2' || '/status');
SELECT pgwa.clear_zapi_token(:'ia2') AS cleared, pgwa.clear_zapi_token(:'ia2') AS again;
SELECT status FROM pg_temp.z('GET', '/instances/' || :'ia2' || '/token/TOKEN-A-0000000003/status');
-- not a Z-API path: pgwa's own 404; an unknown Z-API route, or another method: Z-API's shape
SELECT status, body->'error'->>'code' AS code FROM pg_temp.z('GET', '/instances/' || :'ia');
SELECT status, body FROM pg_temp.z('GET', :'za' || '/nope');
SELECT status, body, headers->>'Allow' AS allow FROM pg_temp.z('GET', :'za' || '/send-text');

-------------------------------------------------------------------------------
-- status
-------------------------------------------------------------------------------
SELECT status, body FROM pg_temp.z('GET', :'za' || '/status');
SELECT pgwa.set_connection_state(:'ia', 'connected');
SELECT status, body FROM pg_temp.z('GET', :'za' || '/status');
SELECT pgwa.set_connection_state(:'ia', 'disconnected');
SELECT status, body FROM pg_temp.z('GET', :'za' || '/status');

-------------------------------------------------------------------------------
-- sends: 200 {zaapId, messageId, id}, all the pgwa message id; queued even
-- while disconnected (they go out once connected)
-------------------------------------------------------------------------------
SELECT status AS sent_status, body->>'zaapId' = body->>'messageId' AND body->>'id' = body->>'zaapId' AS same_ids,
       body->>'zaapId' AS zaap, (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(body) k) AS sent_keys
FROM pg_temp.z('POST', :'za' || '/send-text',
	'{"phone":"5511900000001","message":"hello","delayMessage":5,"delayTyping":3}') \gset
SELECT :sent_status AS status, :'same_ids' AS same_ids, :'sent_keys' AS keys,
       EXISTS (SELECT 1 FROM pgwa.outbox o WHERE o.id = :'zaap' AND o.instance_id = :'ia') AS is_message;
SELECT * FROM pg_temp.last(:'ia');
-- messageId is the message replied to; a group id "<digits>-group"
SELECT status FROM pg_temp.z('POST', :'za' || '/send-text',
	'{"phone":"120363019502650977-group","message":"to the group","messageId":"3EB0ABC"}');
SELECT * FROM pg_temp.last(:'ia');
SELECT status FROM pg_temp.z('POST', :'za' || '/send-image',
	'{"phone":"5511900000001","image":"https://cdn.example/a.jpg","caption":"look"}');
SELECT * FROM pg_temp.last(:'ia');
SELECT status FROM pg_temp.z('POST', :'za' || '/send-audio',
	'{"phone":"5511900000001","audio":"https://cdn.example/a.ogg","caption":"dropped"}');
SELECT * FROM pg_temp.last(:'ia');
SELECT status FROM pg_temp.z('POST', :'za' || '/send-video',
	'{"phone":"5511900000001","video":"https://cdn.example/a.mp4","caption":"watch"}');
SELECT * FROM pg_temp.last(:'ia');
-- the path's extension names the file's type
SELECT status FROM pg_temp.z('POST', :'za' || '/send-document/pdf',
	'{"phone":"5511900000001","document":"https://cdn.example/r","fileName":"report"}');
SELECT * FROM pg_temp.last(:'ia');
SELECT status FROM pg_temp.z('POST', :'za' || '/send-document/PDF',
	'{"phone":"5511900000001","document":"https://cdn.example/r.pdf","fileName":"report.pdf"}');
SELECT payload->>'fileName' AS file_name FROM pg_temp.last(:'ia');
SELECT status FROM pg_temp.z('POST', :'za' || '/send-document/xlsx',
	'{"phone":"5511900000001","document":"https://cdn.example/r"}');
SELECT payload->>'fileName' AS file_name FROM pg_temp.last(:'ia');
SELECT status FROM pg_temp.z('POST', :'za' || '/send-link',
	'{"phone":"5511900000001","message":"see https://z.example","image":"https://z.example/i.png","linkUrl":"https://z.example","title":"Z","linkDescription":"a site"}');
SELECT * FROM pg_temp.last(:'ia');
-- coordinates as strings, as Z-API writes them
SELECT status FROM pg_temp.z('POST', :'za' || '/send-location',
	'{"phone":"5511900000001","title":"Office","address":"Av. Paulista, 1000","latitude":"-23.5614","longitude":"-46.6559"}');
SELECT * FROM pg_temp.last(:'ia');
SELECT status FROM pg_temp.z('POST', :'za' || '/send-contact',
	'{"phone":"5511900000001","contactName":"Ana","contactPhone":"+55 11 90000-0002"}');
SELECT * FROM pg_temp.last(:'ia');
SELECT status FROM pg_temp.z('POST', :'za' || '/send-reaction',
	'{"phone":"5511900000001","reaction":"👍","messageId":"3EB0ABC"}');
SELECT * FROM pg_temp.last(:'ia');
SELECT status FROM pg_temp.z('POST', :'za' || '/send-poll',
	'{"phone":"5511900000001","message":"Lunch?","poll":[{"name":"Yes"},{"name":"No"}],"pollMaxOptions":1}');
SELECT * FROM pg_temp.last(:'ia');
-- lists and buttons: text listing the choices (an image with them as caption)
SELECT status FROM pg_temp.z('POST', :'za' || '/send-option-list',
	'{"phone":"5511900000001","message":"Pick one:","optionList":{"title":"Plans","buttonLabel":"Open","options":[{"id":"1","title":"Basic","description":"cheap"},{"id":"2","title":"Pro"}]}}');
SELECT type, payload->>'text' AS text FROM pg_temp.last(:'ia');
SELECT status FROM pg_temp.z('POST', :'za' || '/send-button-list',
	'{"phone":"5511900000001","message":"Coming?","buttonList":{"buttons":[{"id":"1","label":"Yes"},{"id":"2","label":"No"}]}}');
SELECT type, payload->>'text' AS text FROM pg_temp.last(:'ia');
SELECT status FROM pg_temp.z('POST', :'za' || '/send-button-list',
	'{"phone":"5511900000001","message":"Coming?","buttonList":{"image":"https://cdn.example/b.png","buttons":[{"label":"Yes"}]}}');
SELECT type, payload->>'mediaUrl' AS media, payload->>'caption' AS caption FROM pg_temp.last(:'ia');
-- the Idempotency-Key header: a repeat answers the same ids
SELECT status, headers->>'Idempotent-Replayed' AS replayed FROM pg_temp.z('POST', :'za' || '/send-text',
	'{"phone":"5511900000001","message":"once"}', '{"idempotency-key":"z-1"}');
SELECT status, headers->>'Idempotent-Replayed' AS replayed FROM pg_temp.z('POST', :'za' || '/send-text',
	'{"phone":"5511900000001","message":"once"}', '{"idempotency-key":"z-1"}');

-- validation names Z-API's fields
SELECT status, body FROM pg_temp.z('POST', :'za' || '/send-text', '{"message":"x"}');
SELECT status, body FROM pg_temp.z('POST', :'za' || '/send-text', '{"phone":"5511900000001"}');
SELECT status, body FROM pg_temp.z('POST', :'za' || '/send-text', '{"phone":"12","message":"x"}');
SELECT status, body FROM pg_temp.z('POST', :'za' || '/send-text', '{"phone":"5511900000001","message":"x","delayMessage":16}');
SELECT status, body FROM pg_temp.z('POST', :'za' || '/send-text', '{"phone":"5511900000001","message":"x","delayTyping":0}');
SELECT status, body FROM pg_temp.z('POST', :'za' || '/send-text', 'not json');
SELECT status, body FROM pg_temp.z('POST', :'za' || '/send-image', '{"phone":"5511900000001"}');
SELECT status, body FROM pg_temp.z('POST', :'za' || '/send-image', '{"phone":"5511900000001","image":"ftp://cdn.example/a.png"}');
-- inline media need a URL brokers can fetch: without pgwa.public_url, the request's Host
SELECT status, body FROM pg_temp.z('POST', :'za' || '/send-image', '{"phone":"5511900000001","image":"data:image/png;base64,AAAA"}');
SELECT status, body FROM pg_temp.z('POST', :'za' || '/send-document', '{"phone":"5511900000001","document":"https://cdn.example/r"}');
SELECT status, body FROM pg_temp.z('POST', :'za' || '/send-document/p.df', '{"phone":"5511900000001","document":"https://cdn.example/r"}');
SELECT status, body FROM pg_temp.z('POST', :'za' || '/send-link', '{"phone":"5511900000001","message":"x"}');
SELECT status, body FROM pg_temp.z('POST', :'za' || '/send-location', '{"phone":"5511900000001","latitude":"north","longitude":"1"}');
SELECT status, body FROM pg_temp.z('POST', :'za' || '/send-location', '{"phone":"5511900000001","latitude":"95","longitude":"1"}');
SELECT status, body FROM pg_temp.z('POST', :'za' || '/send-contact', '{"phone":"5511900000001","contactPhone":"5511900000002"}');
SELECT status, body FROM pg_temp.z('POST', :'za' || '/send-reaction', '{"phone":"5511900000001","reaction":"x"}');
SELECT status, body FROM pg_temp.z('POST', :'za' || '/send-poll', '{"phone":"5511900000001","message":"q","poll":[{"name":"only"}]}');
SELECT status, body FROM pg_temp.z('POST', :'za' || '/send-option-list', '{"phone":"5511900000001","message":"x"}');
SELECT status, body FROM pg_temp.z('POST', :'za' || '/send-option-list', '{"phone":"5511900000001","message":"x","optionList":{"options":[]}}');
SELECT status, body FROM pg_temp.z('POST', :'za' || '/send-option-list', '{"phone":"5511900000001","message":"x","optionList":{"options":[{"id":"1"}]}}');
SELECT status, body FROM pg_temp.z('POST', :'za' || '/send-option-list', '{"phone":"5511900000001","message":"","optionList":{"options":[{"title":"a"}]}}');
SELECT status, body FROM pg_temp.z('POST', :'za' || '/send-button-list', '{"phone":"5511900000001","message":"x","buttonList":{"buttons":[{"label":7}]}}');
SELECT status, body FROM pg_temp.z('POST', :'za' || '/send-button-list', '{"phone":"5511900000001","message":"x","buttonList":{"image":"ftp://x","buttons":[{"label":"a"}]}}');

-------------------------------------------------------------------------------
-- queue
-------------------------------------------------------------------------------
SELECT status, body FROM pg_temp.z('GET', :'za' || '/queue/count');
SELECT status, body->'size' AS size, jsonb_array_length(body->'messages') AS page_len,
       (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(body->'messages'->0) k) AS keys
FROM pg_temp.z('GET', :'za' || '/queue');
-- the first message, in sending order, with its delays
SELECT m->>'ZaapId' = m->>'_id' AS ids, m->'Phone' AS phone, m->'Message' AS message, m->'Type' AS type,
       m->'Status' AS st, m->'DelayMessage' AS delay_message, m->'DelayTyping' AS delay_typing,
       m->>'InstanceId' = :'ia' AS instance, (m->>'Created')::bigint > 1600000000000 AS created_ms
FROM pg_temp.z('GET', :'za' || '/queue') q, jsonb_array_elements(q.body->'messages') WITH ORDINALITY a(m, n)
WHERE n = 1;
-- pages
SELECT status, body->'size' AS size, body->'messages'->0->'Message' AS first
FROM pg_temp.z('GET', :'za' || '/queue', NULL, '{}', '{"page":"2","pageSize":"3"}');
SELECT status, body FROM pg_temp.z('GET', :'za' || '/queue', NULL, '{}', '{"pageSize":"0"}');
SELECT status, body FROM pg_temp.z('GET', :'za' || '/queue', NULL, '{}', '{"page":"x"}');
-- another instance's queue is its own
SELECT status, body FROM pg_temp.z('GET', :'zb' || '/queue/count');
-- DELETE /queue/{zaapId}: this instance's waiting message only
SELECT o.id AS first_id FROM pgwa.outbox o WHERE o.instance_id = :'ia' ORDER BY o.seq LIMIT 1 \gset
SELECT status, body FROM pg_temp.z('DELETE', :'za' || '/queue/' || :'first_id');
SELECT status FROM pgwa.outbox WHERE id = :'first_id';
SELECT status, body FROM pg_temp.z('DELETE', :'za' || '/queue/' || :'first_id');
SELECT status, body FROM pg_temp.z('DELETE', :'zb' || '/queue/' || (SELECT o.id FROM pgwa.outbox o WHERE o.instance_id = :'ia' ORDER BY o.seq DESC LIMIT 1));
SELECT status, body FROM pg_temp.z('DELETE', :'za' || '/queue/nope');
SELECT status, body FROM pg_temp.z('GET', :'za' || '/queue/count');
-- DELETE /queue: everything waiting
SELECT status, body FROM pg_temp.z('DELETE', :'za' || '/queue');
SELECT status, body FROM pg_temp.z('GET', :'za' || '/queue/count');
SELECT status, body FROM pg_temp.z('GET', :'za' || '/queue');

-------------------------------------------------------------------------------
-- webhook settings: client webhook subscriptions of the instance, dialect zapi
-------------------------------------------------------------------------------
SELECT status, body FROM pg_temp.z('PUT', :'za' || '/update-webhook-received', '{"value":"https://hooks.example/received"}');
SELECT status, body FROM pg_temp.z('PUT', :'za' || '/update-webhook-delivery', '{"value":"https://hooks.example/delivery"}');
SELECT status, body FROM pg_temp.z('PUT', :'za' || '/update-webhook-message-status', '{"value":"https://hooks.example/status"}');
SELECT status, body FROM pg_temp.z('PUT', :'za' || '/update-webhook-connected', '{"value":"https://hooks.example/connected"}');
SELECT status, body FROM pg_temp.z('PUT', :'za' || '/update-webhook-disconnected', '{"value":"https://hooks.example/disconnected"}');
SELECT s.dialect, s.dialect_kind, s.url, s.events, s.match, s.instance_id = :'ia' AS inst
FROM pgwa.webhook_subscriptions s WHERE s.tenant_id = :'ta' ORDER BY s.dialect_kind;
-- the same kind again replaces the URL, keeping the subscription
SELECT id AS received_id FROM pgwa.webhook_subscriptions WHERE dialect_kind = 'received' AND instance_id = :'ia' \gset
SELECT status, body FROM pg_temp.z('PUT', :'za' || '/update-webhook-received', '{"value":"https://hooks.example/received2"}');
SELECT id = :'received_id' AS same, url FROM pgwa.webhook_subscriptions WHERE dialect_kind = 'received' AND instance_id = :'ia';
-- every webhook at once; an empty value removes one
SELECT status, body FROM pg_temp.z('PUT', :'za' || '/update-every-webhooks', '{"value":"https://hooks.example/all"}');
SELECT dialect_kind, url FROM pgwa.webhook_subscriptions WHERE tenant_id = :'ta' ORDER BY dialect_kind;
SELECT status, body FROM pg_temp.z('PUT', :'za' || '/update-webhook-delivery', '{"value":""}');
SELECT dialect_kind FROM pgwa.webhook_subscriptions WHERE tenant_id = :'ta' ORDER BY dialect_kind;
SELECT status FROM pg_temp.z('PUT', :'za' || '/update-webhook-received-delivery', '{"value":"https://hooks.example/both"}');
SELECT events, match FROM pgwa.webhook_subscriptions WHERE dialect_kind = 'received-delivery';
SELECT status FROM pg_temp.z('PUT', :'za' || '/update-webhook-received-delivery', '{"value":""}');
SELECT count(*) FROM pgwa.webhook_subscriptions WHERE dialect_kind = 'received-delivery';
-- the API shows the dialect of such a subscription
SELECT w->'dialect' AS dialect, w->'dialect_kind' AS kind, w->'match' AS match
FROM pgwa.webhook_subscription_json(:'received_id') w;
-- errors name value
SELECT status, body FROM pg_temp.z('PUT', :'za' || '/update-webhook-received', '{"value":"ftp://x"}');
SELECT status, body FROM pg_temp.z('PUT', :'za' || '/update-webhook-received', '{}');
SELECT status, body FROM pg_temp.z('PUT', :'za' || '/update-webhook-nothing', '{"value":"https://hooks.example/x"}');
SELECT status, headers->>'Allow' AS allow FROM pg_temp.z('POST', :'za' || '/update-webhook-received', '{"value":"https://hooks.example/x"}');
SELECT pgwa.set_zapi_webhook(:'ia', 'sideways', 'https://hooks.example/x');
-- the events each kind takes: received only inbound messages, connected and
-- disconnected only their state
SELECT pgwa._emit(:'ta', 'messages.new', jsonb_build_object('instanceId', :'ia', 'direction', 'inbound')) IS NOT NULL AS e1,
       pgwa._emit(:'ta', 'messages.new', jsonb_build_object('instanceId', :'ia', 'direction', 'outbound')) IS NOT NULL AS e2,
       pgwa._emit(:'ta', 'instance.status', jsonb_build_object('instanceId', :'ia', 'state', 'connected')) IS NOT NULL AS e3,
       pgwa._emit(:'ta', 'instance.status', jsonb_build_object('instanceId', :'ia', 'state', 'disconnected')) IS NOT NULL AS e4,
       pgwa._emit(:'ta', 'message.status', jsonb_build_object('instanceId', :'ia', 'status', 'read')) IS NOT NULL AS e5,
       pgwa._emit(:'ta', 'messages.new', jsonb_build_object('instanceId', :'ia2', 'direction', 'inbound')) IS NOT NULL AS e6;
SELECT s.dialect_kind, array_agg(d.event || coalesce('/' || (e.payload->>'direction'), '') || coalesce('/' || (e.payload->>'state'), '')
                                 ORDER BY d.event_id) AS delivered
FROM pgwa.webhook_subscriptions s
JOIN pgwa.webhook_deliveries d ON d.tenant_id = s.tenant_id AND d.subscription_id = s.id
JOIN pgwa.events e ON e.tenant_id = d.tenant_id AND e.id = d.event_id
WHERE s.tenant_id = :'ta' GROUP BY s.dialect_kind ORDER BY s.dialect_kind;
-- what the Z-API subscriptions are sent: Z-API's callback shapes
SELECT s.dialect_kind, e.event,
       pgwa._zapi_callback(s.dialect_kind, e.event, e.payload, d.instance_id, '2024-05-02T13:05:00Z') - 'instanceId' AS body
FROM pgwa.webhook_subscriptions s
JOIN pgwa.webhook_deliveries d ON d.tenant_id = s.tenant_id AND d.subscription_id = s.id
JOIN pgwa.events e ON e.tenant_id = d.tenant_id AND e.id = d.event_id
WHERE s.tenant_id = :'ta' ORDER BY s.dialect_kind, d.event_id;
SELECT jsonb_pretty(pgwa._zapi_callback('received', 'messages.new', jsonb_build_object(
           'direction', 'inbound', 'remote', '5511900000009@s.whatsapp.net', 'brokerMessageId', 'wamid-9',
           'type', 'text', 'text', 'oi', 'timestamp', '2024-05-02T13:05:00.000Z'), :'ia', now()) - 'instanceId') AS received,
       pgwa._zapi_callback('delivery', 'message.status', jsonb_build_object(
           'status', 'sent', 'recipient', '5511900000009', 'brokerMessageId', 'wamid-10', 'messageId', 'm-10',
           'timestamp', '2024-05-02T13:05:00.000Z'), :'ia', now()) - 'instanceId' AS delivery,
       pgwa._zapi_callback('message-status', 'message.status', jsonb_build_object(
           'status', 'delivered', 'recipient', '120363000000000000@g.us', 'brokerMessageId', 'wamid-11',
           'timestamp', '2024-05-02T13:05:00.000Z'), :'ia', now()) - 'instanceId' AS status,
       pgwa._zapi_callback('received', 'ticket.updated', '{}', :'ia', now()) AS none_for_other_events;
-- the delivery path sends them (pgwa's own body for a pgwa subscription)
SELECT d.url, d.body::jsonb->>'type' AS type, d.body::jsonb ? 'momment' AS has_momment
FROM pgwa._claim_deliveries(1000, 30) d WHERE d.tenant_id = :'ta' ORDER BY d.url, d.event_id;

-- deleting the instance takes its credentials and subscriptions
SELECT pgwa.delete_instance(:'ia') >= 0 AS deleted;
SELECT count(*) AS tokens FROM pgwa.zapi_tokens WHERE instance_id = :'ia';
SELECT count(*) AS subscriptions FROM pgwa.webhook_subscriptions WHERE instance_id = :'ia';

-------------------------------------------------------------------------------
-- inline media (seed 001: a URL or base64): stored as an upload, sent by URL
-------------------------------------------------------------------------------
SELECT '{"host": "gw.example:8080", "x-forwarded-proto": "https"}' AS zh \gset
SELECT pgwa.set_zapi_token(:'ib', 'TOKEN-B-INLINE-0001') IS NOT NULL AS token_set;
\set zi '/instances/' :ib '/token/TOKEN-B-INLINE-0001'
-- a data: URI: its content type; the message names the signed URL
SELECT status, body ? 'zaapId' AS queued FROM pg_temp.z('POST', :'zi' || '/send-image',
	'{"phone":"5511900000001","image":"data:image/png;base64,iVBORw0KGgoAAAANSUhEUg==","caption":"inline"}', :'zh');
SELECT l.payload->>'caption' AS caption,
       l.payload->>'mediaUrl' ~ '^https://gw\.example:8080/uploads/[0-9a-f-]{36}\?expires=[0-9]+&signature=[0-9a-f]{64}$' AS signed_url,
       u.content_type, u.media_type, u.size, u.file_removed, b.sha256 = sha256(decode('iVBORw0KGgoAAAANSUhEUg==', 'base64')) AS same_bytes
FROM pg_temp.last(:'ib') l
JOIN pgwa.uploads u ON u.id = substring(l.payload->>'mediaUrl' FROM '/uploads/([0-9a-f-]{36})')::uuid
JOIN pgwa.upload_blobs b ON b.upload_id = u.id;
SELECT action, details->>'inline' AS inline, details->>'mediaType' AS media FROM pgwa.audit_log
WHERE action = 'upload.created' ORDER BY at DESC LIMIT 1;
-- the URL serves the bytes: pgwa-http gets them in base64 and decodes them
SELECT r.status, r.headers, decode(r.body, 'base64') = decode('iVBORw0KGgoAAAANSUhEUg==', 'base64') AS same_bytes
FROM pg_temp.last(:'ib') l,
     pgwa.http('GET', substring(l.payload->>'mediaUrl' FROM '(/uploads/[^?]+)'), jsonb_build_object(
         'expires', substring(l.payload->>'mediaUrl' FROM 'expires=([0-9]+)'),
         'signature', substring(l.payload->>'mediaUrl' FROM 'signature=([0-9a-f]+)')), '{}', NULL) r;
-- a repeated send with the same key is a replay: the same bytes name the same upload
SELECT status, headers->>'Idempotent-Replayed' AS replayed FROM pg_temp.z('POST', :'zi' || '/send-audio',
	'{"phone":"5511900000001","audio":"T2dnUwACAAAAAAAAAAAAAAAA"}', :'zh'::jsonb || '{"idempotency-key":"z-inline-1"}');
SELECT status, headers->>'Idempotent-Replayed' AS replayed FROM pg_temp.z('POST', :'zi' || '/send-audio',
	'{"phone":"5511900000001","audio":"T2dnUwACAAAAAAAAAAAAAAAA"}', :'zh'::jsonb || '{"idempotency-key":"z-inline-1"}');
SELECT count(*) AS audio_uploads, min(content_type) AS content_type FROM pgwa.uploads WHERE media_type = 'audio';
-- a document takes its type from the extension; pgwa.public_url wins over the Host
SET pgwa.public_url = 'https://media.example/';
SELECT status FROM pg_temp.z('POST', :'zi' || '/send-document/pdf',
	'{"phone":"5511900000001","document":"JVBERi0xLjQKJcfsj6IKMSAwIG9iago=","fileName":"boleto"}', :'zh');
SELECT l.payload->>'fileName' AS file_name, l.payload->>'mediaUrl' LIKE 'https://media.example/uploads/%' AS public_url,
       u.content_type, u.file_name AS upload_name
FROM pg_temp.last(:'ib') l JOIN pgwa.uploads u ON u.id = substring(l.payload->>'mediaUrl' FROM '/uploads/([0-9a-f-]{36})')::uuid;
RESET pgwa.public_url;
-- refusals name the field
SELECT status, body FROM pg_temp.z('POST', :'zi' || '/send-image', '{"phone":"5511900000001","image":"data:image/png,plain"}', :'zh');
SELECT status, body FROM pg_temp.z('POST', :'zi' || '/send-image', '{"phone":"5511900000001","image":"data:image/png;base64,@@@@"}', :'zh');
SELECT status, body FROM pg_temp.z('POST', :'zi' || '/send-video', '{"phone":"5511900000001","video":"data:video/mp4;base64,"}', :'zh');
SELECT status, body FROM pg_temp.z('POST', :'zi' || '/send-image', jsonb_build_object('phone', '5511900000001',
	'image', 'data:image/jpeg;base64,' || encode(convert_to(repeat('x', 5 * 1048576 + 1), 'UTF8'), 'base64'))::text, :'zh');
SELECT status, body FROM pg_temp.z('POST', :'zi' || '/send-image', '{"phone":"5511900000001","image":"data:image/png;base64,AAAA"}',
	'{"host": "bad host/x"}');
-- the QR code to connect: GET /qr-code and /qr-code/image
SELECT status, body FROM pg_temp.z('GET', :'zi' || '/qr-code');
INSERT INTO pgwa.instance_qrcodes (instance_id, tenant_id, code, base64, pairing_code, received_at)
VALUES (:'ib', :'tb', '2@zapi-qr', 'iVBORw0KGgoAAAANSUhEUg==', NULL, now());
SELECT status, body, headers->>'Cache-Control' AS cache FROM pg_temp.z('GET', :'zi' || '/qr-code');
SELECT status, body FROM pg_temp.z('GET', :'zi' || '/qr-code/image');
SELECT status, body, headers->>'Allow' AS allow FROM pg_temp.z('POST', :'zi' || '/qr-code');
SELECT pgwa.set_connection_state(:'ib', 'connected') IS NOT NULL AS connected;
SELECT status, body FROM pg_temp.z('GET', :'zi' || '/qr-code/image');
-- expiry ends the upload and drops its bytes
UPDATE pgwa.uploads SET expires_at = now() - interval '1 second' WHERE id IN (SELECT upload_id FROM pgwa.upload_blobs);
SELECT pgwa.expire_uploads() > 0 AS ended;
SELECT count(*) AS blobs_left FROM pgwa.upload_blobs;
