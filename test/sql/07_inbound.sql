-- Inbound: normalisation (seed-000 envelope and raw Baileys), every refusal,
-- storage first, exactly-once application to leads, conversations, messages
-- and tickets (seed 002 rules), the 24 h window, the timeline, duplicates,
-- failures kept and retried, real-time events, counters and the HTTP route.
\set VERBOSITY terse
CREATE TEMP TABLE counters_before AS
	SELECT result, reason, payload_type, sum(count) AS n FROM pgwa.webhook_counters GROUP BY 1, 2, 3;

-------------------------------------------------------------------------------
-- Normalisation
-------------------------------------------------------------------------------
\set seed000 `cat test/fixtures/inbound/seed000_sample.json`
\set contact `cat test/fixtures/inbound/envelope_contact_fields.json`
\set lid `cat test/fixtures/inbound/envelope_lid.json`
\set batch `cat test/fixtures/inbound/envelope_batch.json`
\set rtext `cat test/fixtures/inbound/baileys_text_quote.json`
\set rmedia `cat test/fixtures/inbound/baileys_media.json`
\set rinter `cat test/fixtures/inbound/baileys_interactive.json`
\set rwrap `cat test/fixtures/inbound/baileys_wrappers.json`
\set rgroup `cat test/fixtures/inbound/baileys_group_lid.json`
\set rignored `cat test/fixtures/inbound/baileys_ignored.json`

-- the seed-000 sample, whole: name kept, phone to E.164 digits, image typed
-- with the conversation as text, broker timestamps kept next to the ISO one
SELECT jsonb_pretty(e) FROM unnest(pgwa.normalize_inbound(:'seed000')) e;
-- contact: name falls back to pushName, unknown keys go to metadata; epoch ms; quotes
SELECT e->'timestamp' AS ts, e->'payload'->'contact' AS contact FROM unnest(pgwa.normalize_inbound(:'contact')) e;
SELECT e->'payload'->'message' AS message FROM unnest(pgwa.normalize_inbound(:'contact')) e;
-- an @lid sender resolved through key.senderPn; epoch seconds as a string
SELECT e->'timestamp' AS ts, e->'payload'->'contact' AS contact, e->'payload'->'chat' AS chat
FROM unnest(pgwa.normalize_inbound(:'lid')) e;
-- an array of envelopes; a time zone offset is converted to UTC
SELECT e->>'id' AS id, e->>'timestamp' AS ts, e->'payload'->'message'->>'text' AS text
FROM unnest(pgwa.normalize_inbound(:'batch')) e;

-- raw Baileys: one envelope per message, with the seed's metadata
SELECT e->>'id' AS id, e->>'timestamp' AS ts, e->'payload'->'message'->>'type' AS type,
       e->'payload'->'message'->>'text' AS text, e->'payload'->'message'->>'quotedMessageId' AS quoted_id,
       e->'payload'->'message'->>'quotedText' AS quoted_text
FROM unnest(pgwa.normalize_inbound(:'rtext')) e;
SELECT (e->'payload'->'metadata') - 'normalizedTimestamp' - 'brokerMessageTimestamp' AS metadata
FROM unnest(pgwa.normalize_inbound(:'rtext')) e LIMIT 1;
SELECT e->>'id' AS id, e->'payload'->'message'->>'type' AS type, e->'payload'->'message'->'media' AS media,
       e->'payload'->'message'->'wrappers' AS wrappers
FROM unnest(pgwa.normalize_inbound(:'rmedia')) e;
SELECT e->>'id' AS id, (e->'payload'->'message') - 'id' AS message FROM unnest(pgwa.normalize_inbound(:'rinter')) e;
SELECT e->>'id' AS id, (e->'payload'->'message') - 'id' AS message FROM unnest(pgwa.normalize_inbound(:'rwrap')) e;
-- groups flag isGroup and keep the participant; @lid resolved through
-- participantPn, senderPn and remoteJidAlt; a LID alone stays a LID
SELECT e->>'id' AS id, (e->'payload'->'contact') - 'name' - 'pushName' AS contact, e->'payload'->'chat' AS chat,
       e->'payload'->'metadata'->'contact'->'isGroup' AS meta_is_group,
       e->'payload'->'metadata'->'rawKey' AS raw_key
FROM unnest(pgwa.normalize_inbound(:'rgroup')) e;
-- the kinds the seed ignores come out as IGNORED markers with a reason
SELECT e->>'type' AS type, e->>'id' AS id, e->>'reason' AS reason FROM unnest(pgwa.normalize_inbound(:'rignored')) e;
-- the baileys dialect reads raw upserts only; timestamps in their every writing
SELECT e->>'timestamp' AS ts FROM unnest(pgwa.normalize_inbound(
	'{"event":"WHATSAPP_MESSAGES_UPSERT","instanceId":"x","payload":{"timestamp":1714655100000,"messages":[
	  {"key":{"remoteJid":"5511988880001@s.whatsapp.net","id":"A"},"message":{"conversation":"a"}},
	  {"key":{"remoteJid":"5511988880001@s.whatsapp.net","id":"B"},"messageTimestamp":1714655100.5,"message":{"conversation":"b"}},
	  {"key":{"remoteJid":"5511988880001@s.whatsapp.net","id":"C"},"messageTimestamp":"1714655100250","message":{"conversation":"c"}}]}}',
	'baileys')) e;
SELECT t AS written, e->>'timestamp' AS ts
FROM unnest(ARRAY['2024-02-29T23:59:59.999-03:00', '2024-05-02 13:05', '2024-05-02T13:05:00+0530',
                  '2024-12-31T23:59:60Z', '1970-01-01']) t,
     unnest(pgwa.normalize_inbound(jsonb_build_object(
	'id', 'x', 'type', 'MESSAGE_INBOUND', 'instanceId', 'i', 'timestamp', t,
	'payload', jsonb_build_object('contact', '{"phone":"5511999999999"}'::jsonb, 'message', '{}'::jsonb,
	                              'metadata', '{}'::jsonb)))) e;
-- an envelope whose message is already normalised by the broker, and one with no time
SELECT e->'payload'->'message' AS message, e->'timestamp' AS ts FROM unnest(pgwa.normalize_inbound(
	'{"id":"n1","type":"MESSAGE_INBOUND","instanceId":"i","payload":{"contact":{"phone":"5511999999999"},
	  "message":{"type":"document","mediaUrl":"https://files.test/a.pdf","fileName":"a.pdf","id":"DOC-1"},
	  "metadata":{}}}')) e;

-- Refusals: PW400 for a missing or mistyped field, PW422 for unusable content;
-- the field path goes in COLUMN_NAME.
CREATE FUNCTION pg_temp.err(p jsonb, d text DEFAULT 'broker') RETURNS text LANGUAGE plpgsql AS $$
DECLARE s text; c text; t text;
BEGIN
	PERFORM pgwa.normalize_inbound(p, d);
	RETURN 'accepted';
EXCEPTION WHEN others THEN
	GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, c = COLUMN_NAME, t = MESSAGE_TEXT;
	RETURN s || ' [' || c || '] ' || t;
END $$;
CREATE FUNCTION pg_temp.env(patch jsonb, drop_path text[] DEFAULT NULL) RETURNS jsonb LANGUAGE sql AS $$
	SELECT CASE WHEN drop_path IS NULL THEN e ELSE e #- drop_path END || patch
	FROM (SELECT '{"id":"e1","type":"MESSAGE_INBOUND","instanceId":"instance-42",
	               "payload":{"contact":{"phone":"5511999999999"},"message":{"conversation":"x"},"metadata":{}}}'::jsonb AS e) s
$$;
CREATE FUNCTION pg_temp.raw(msg jsonb) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('event', 'WHATSAPP_MESSAGES_UPSERT', 'instanceId', 'wa-raw-1',
	                          'payload', jsonb_build_object('messages', jsonb_build_array(msg)))
$$;
SELECT pg_temp.err('"just a string"');
SELECT pg_temp.err('[]');
SELECT pg_temp.err('[1]');
SELECT pg_temp.err('{"id":"x"}');
SELECT pg_temp.err('{}', 'sms');
SELECT pg_temp.err(pg_temp.env('{"type":"MESSAGE_STATUS"}'));
SELECT pg_temp.err(pg_temp.env('{}', '{id}'));
SELECT pg_temp.err(pg_temp.env('{"id":42}'));
SELECT pg_temp.err(pg_temp.env('{"id":""}'));
SELECT pg_temp.err(pg_temp.env('{}', '{instanceId}'));
SELECT pg_temp.err(pg_temp.env('{"payload":[]}'));
SELECT pg_temp.err(pg_temp.env('{}', '{payload,contact}'));
SELECT pg_temp.err(pg_temp.env('{}', '{payload,metadata}'));
SELECT pg_temp.err(pg_temp.env('{}', '{payload,message}'));
SELECT pg_temp.err(jsonb_set(pg_temp.env('{}'), '{payload,instanceId}', '"instance-43"'));
SELECT pg_temp.err(jsonb_set(pg_temp.env('{}'), '{payload,timestamp}', '"2024-02-30T10:00:00Z"'));
SELECT pg_temp.err(pg_temp.env('{"timestamp":-5}'));
SELECT pg_temp.err(jsonb_set(pg_temp.env('{}'), '{payload,contact}', '{"name":"no phone"}'));
SELECT pg_temp.err(jsonb_set(pg_temp.env('{}'), '{payload,contact}', '{"phone":"5511999999999","name":["x"]}'));
SELECT pg_temp.err(jsonb_set(pg_temp.env('{}'), '{payload,contact}', '{"phone":"5511999999999","registrations":"R1"}'));
SELECT pg_temp.err(jsonb_set(pg_temp.env('{}'), '{payload,contact}', '{"phone":"5511999999999","registrations":[1]}'));
SELECT pg_temp.err(jsonb_set(pg_temp.env('{}'), '{payload,contact}', '{"phone":"120363025246125486@g.us"}'));
SELECT pg_temp.err(jsonb_build_array(pg_temp.env('{}'), jsonb_set(pg_temp.env('{}'), '{payload,contact}', '[]')));
SELECT pg_temp.err(:'seed000', 'baileys');
-- the malformed fixtures
\set m1 `cat test/fixtures/inbound/malformed_contact_string.json`
\set m2 `cat test/fixtures/inbound/malformed_message_string.json`
\set m3 `cat test/fixtures/inbound/malformed_bad_phone.json`
\set m4 `cat test/fixtures/inbound/malformed_bad_timestamp.json`
\set m5 `cat test/fixtures/inbound/malformed_wrong_type.json`
SELECT pg_temp.err(:'m1'), pg_temp.err(:'m2');
SELECT pg_temp.err(:'m3'), pg_temp.err(:'m4');
SELECT pg_temp.err(:'m5');
-- raw upserts
SELECT pg_temp.err('{"event":"WHATSAPP_MESSAGES_UPSERT","payload":{"messages":[]}}');
SELECT pg_temp.err('{"event":"WHATSAPP_MESSAGES_UPSERT","instanceId":"wa-raw-1","payload":{}}');
SELECT pg_temp.err('{"event":"WHATSAPP_MESSAGES_UPDATE","instanceId":"wa-raw-1","payload":{"messages":[]}}', 'baileys');
SELECT pg_temp.err(pg_temp.raw('"x"'));
SELECT pg_temp.err(pg_temp.raw('{"message":{"conversation":"x"}}'));
SELECT pg_temp.err(pg_temp.raw('{"key":{"remoteJid":"5511988880001@s.whatsapp.net"},"message":{"conversation":"x"}}'));
SELECT pg_temp.err(pg_temp.raw('{"key":{"id":"A"},"message":{"conversation":"x"}}'));
SELECT pg_temp.err(pg_temp.raw('{"key":{"id":"A","remoteJid":"someone@example.com"},"message":{"conversation":"x"}}'));
SELECT pg_temp.err(pg_temp.raw('{"key":{"id":"A","remoteJid":"120363025246125486@g.us"},"message":{"conversation":"x"}}'));
SELECT pg_temp.err(pg_temp.raw('{"key":{"id":"A","remoteJid":"5511988880001@s.whatsapp.net"},"messageTimestamp":"soon","message":{"conversation":"x"}}'));
SELECT pg_temp.err(pg_temp.raw('{"key":{"id":"A","remoteJid":"12@s.whatsapp.net"},"message":{"conversation":"x"}}'));
-- an ignored message needs no id nor a usable chat
SELECT pg_temp.err(pg_temp.raw('{"key":{"fromMe":true},"message":{"conversation":"x"}}'));

-------------------------------------------------------------------------------
-- Secrets and ingest
-------------------------------------------------------------------------------
SELECT tenant_id AS t FROM pgwa.create_tenant('inbound') \gset
SELECT pgwa.create_instance(:'t', 'inb-env', 'broker', 'http://127.0.0.1:1', 'k',
       '{"broker_instance_id":"instance-42"}') AS ienv \gset
SELECT pgwa.create_instance(:'t', 'inb-raw', 'broker', 'http://127.0.0.1:1', 'k',
       '{"broker_instance_id":"wa-raw-1","settings":{"raw_fallback":true}}') AS iraw \gset
SELECT pgwa.create_instance(:'t', 'inb-noraw', 'broker', 'http://127.0.0.1:1', 'k',
       '{"broker_instance_id":"wa-raw-2"}') AS inoraw \gset
SELECT pgwa.set_webhook_secret(:'ienv', 'env-secret-0123456789') AS s;
SELECT length(pgwa.set_webhook_secret(:'iraw')) AS generated_length;
SELECT pgwa.set_webhook_secret(:'iraw', 'raw-secret-0123456789') IS NOT NULL AS rotated;
SELECT pgwa.set_webhook_secret(:'inoraw', 'raw-secret-0123456789') IS NOT NULL AS shared_by_two_instances;
SELECT encode(secret_hash, 'hex') = encode(sha256('env-secret-0123456789'), 'hex') AS only_a_hash
FROM pgwa.webhook_secrets WHERE instance_id = :'ienv';
SELECT pgwa.set_webhook_secret(:'ienv', 'short');
SELECT pgwa.set_webhook_secret('00000000-0000-0000-0000-000000000000', 'long-enough-secret-123');
SELECT pgwa.create_instance(:'t', 'inb-clash', 'broker', NULL, NULL, '{"broker_instance_id":"instance-42"}') AS iclash \gset
SELECT pgwa.set_webhook_secret(:'iclash', 'env-secret-0123456789');

-- stores a body, lets the worker's step apply what waits, then reports the event
CREATE FUNCTION pg_temp.ingest(body jsonb, token text, header text DEFAULT 'x-api-key') RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	r jsonb := pgwa.ingest_webhook('broker', jsonb_build_object(header,
	             CASE header WHEN 'authorization' THEN 'Bearer ' || token ELSE token END,
	             'x-request-id', 'req-1', 'user-agent', 'broker/1.0'), body);
BEGIN
	PERFORM pgwa.apply_pending();
	IF r->>'status' = 'received' THEN
		r := r || (SELECT pgwa._event_result(w) FROM pgwa.webhook_events w WHERE w.id = (r->>'eventId')::bigint);
	END IF;
	RETURN concat_ws(' ', r->>'httpStatus', r->>'status',
	                 CASE WHEN r ? 'accepted' THEN format('acc=%s dup=%s ign=%s', r->'accepted', r->'duplicates', r->'ignored') END,
	                 r->'error'->>'code', r->'error'->>'field', r->'error'->>'message');
END $$;
CREATE FUNCTION pg_temp.last_event() RETURNS pgwa.webhook_events LANGUAGE sql AS $$
	SELECT * FROM pgwa.webhook_events WHERE tenant_id = (SELECT id FROM pgwa.tenants WHERE name = 'inbound')
	ORDER BY id DESC LIMIT 1
$$;
CREATE FUNCTION pg_temp.counts() RETURNS text LANGUAGE sql AS $$
	SELECT format('leads=%s conversations=%s messages=%s tickets=%s events=%s webhook_events=%s',
		(SELECT count(*) FROM pgwa.leads WHERE tenant_id = t.id),
		(SELECT count(*) FROM pgwa.conversations WHERE tenant_id = t.id),
		(SELECT count(*) FROM pgwa.messages WHERE tenant_id = t.id),
		(SELECT count(*) FROM pgwa.tickets WHERE tenant_id = t.id),
		(SELECT count(*) FROM pgwa.events WHERE tenant_id = t.id),
		(SELECT count(*) FROM pgwa.webhook_events WHERE tenant_id = t.id))
	FROM pgwa.tenants t WHERE t.name = 'inbound'
$$;

-- authentication: X-API-Key, Bearer, legacy X-Authorization; the order is the seed's
SELECT pg_temp.ingest(:'seed000', NULL);
SELECT pg_temp.ingest(:'seed000', 'wrong-secret-0123456789');
SELECT pg_temp.ingest(:'seed000', 'raw-secret-0123456789');
SELECT pgwa.ingest_webhook('broker', '{"x-api-key":"wrong-secret-0123456789","authorization":"Bearer env-secret-0123456789"}',
                           :'seed000')->>'httpStatus' AS x_api_key_first;
SELECT pg_temp.counts();
-- a new contact: lead, conversation, message, ticket (new_contact), window
SELECT pg_temp.ingest(:'seed000', 'env-secret-0123456789');
SELECT status, attempts, dialect, payload_type, headers FROM pg_temp.last_event();
SELECT pg_temp.counts();
SELECT l.phone, l.name, l.push_name, l.registrations, l.source, l.active,
       l.first_inbound_at = '2024-05-02T13:05:00Z' AS first_inbound,
       l.window_expires_at = w.received_at + interval '24 hours' AS window_24h_from_arrival
FROM pgwa.leads l, pg_temp.last_event() w WHERE l.tenant_id = :'t';
SELECT m.direction, m.type, m.status, m.source, m.remote, m.broker_message_id,
       m.broker_timestamp = '2024-05-02T13:05:00Z' AS broker_ts, m.content, m.metadata,
       m.event_id = (pg_temp.last_event()).id AS linked_to_raw_event,
       m.conversation_id IS NOT NULL AS has_conversation, m.ticket_id IS NOT NULL AS has_ticket
FROM pgwa.messages m WHERE m.tenant_id = :'t';
SELECT j - 'id' - 'lead' - 'createdAt' - 'instanceId' - 'conversationId' - 'messageWindowExpiresAt' AS ticket,
       j->'lead'->>'phoneNumber' AS lead_phone, j->'lead'->>'source' AS lead_source
FROM pgwa.tickets t, pgwa.ticket_json(t.id) j WHERE t.tenant_id = :'t';
SELECT event, payload - 'messageId' - 'leadId' - 'ticketId' - 'conversationId' - 'instanceId' - 'tenantId'
       - 'messageWindowExpiresAt' AS payload
FROM pgwa.events WHERE tenant_id = :'t' ORDER BY id;

-- the same event redelivered: nothing new, counted as a duplicate
SELECT pg_temp.ingest(:'seed000', 'env-secret-0123456789', 'authorization');
SELECT status, result->'messages'->0->>'result' AS message FROM pg_temp.last_event();
SELECT pg_temp.counts();

-- a reply (same contact, new message) extends the window to 24 h after it
-- arrived; the open ticket takes it and its timeline moves
UPDATE pgwa.leads SET window_expires_at = now() + interval '1 hour' WHERE tenant_id = :'t';
SELECT pg_temp.ingest(jsonb_set(jsonb_set(:'seed000', '{id}', '"wamid-124"'), '{payload,timestamp}', '"2024-05-02T14:00:00Z"'),
                      'env-secret-0123456789', 'x-authorization');
SELECT l.window_expires_at = w.received_at + interval '24 hours' AS window_extended
FROM pgwa.leads l, pg_temp.last_event() w WHERE l.tenant_id = :'t';
SELECT count(*) AS tickets, min(metadata->'timeline'->>'firstInboundAt') AS first_in,
       min(metadata->'timeline'->>'lastInboundAt') AS last_in FROM pgwa.tickets WHERE tenant_id = :'t';
SELECT event, payload->'timeline' AS timeline, payload ? 'created' AS created
FROM pgwa.events WHERE tenant_id = :'t' AND event = 'ticket.updated' ORDER BY id DESC LIMIT 1;
-- an older message delivered late moves firstInboundAt back only
SELECT pg_temp.ingest(jsonb_set(jsonb_set(:'seed000', '{id}', '"wamid-100"'), '{payload,timestamp}', '"2024-05-01T09:00:00Z"'),
                      'env-secret-0123456789');
SELECT metadata->'timeline' AS timeline FROM pgwa.tickets WHERE tenant_id = :'t';

-- outbound side of the timeline (the dispatcher's hook)
SELECT pgwa._timeline_outbound(:'ienv', '5511999999999', '2024-05-02T14:05:00Z') IS NOT NULL AS ticket_found;
SELECT pgwa._timeline_outbound(:'ienv', '5511999999999@s.whatsapp.net', '2024-05-02T14:10:00Z') IS NOT NULL AS ticket_found;
SELECT pgwa._timeline_outbound(:'ienv', '5511900000000', now()) AS no_lead;
SELECT metadata->'timeline' AS timeline FROM pgwa.tickets WHERE tenant_id = :'t';
SELECT event, payload->'timeline' AS timeline FROM pgwa.events
WHERE tenant_id = :'t' AND event = 'ticket.updated' ORDER BY id DESC LIMIT 2;

-- a closed ticket: the next live message opens another, originatedFrom existing
SELECT pgwa.close_ticket(id) FROM pgwa.tickets WHERE tenant_id = :'t';
SELECT pgwa.close_ticket(id) AS again FROM pgwa.tickets WHERE tenant_id = :'t';
SELECT pgwa.set_default_ticket_queue(:'t', 'Atendimento') IS NOT NULL AS queue_set;
SELECT pg_temp.ingest(jsonb_set(:'seed000', '{id}', '"wamid-125"'), 'env-secret-0123456789');
SELECT status, originated_from, queue_id IS NOT NULL AS in_default_queue FROM pgwa.tickets
WHERE tenant_id = :'t' ORDER BY created_at;
SELECT count(*) AS queue_missing_events FROM pgwa.events WHERE tenant_id = :'t' AND event = 'whatsapp.queue.missing';

-- contact fields: pushName as name, document, registrations, avatar, unknown keys
SELECT pg_temp.ingest(:'contact', 'env-secret-0123456789');
SELECT name, push_name, document, registrations, avatar_url, metadata FROM pgwa.leads
WHERE tenant_id = :'t' AND phone = '5511977770001';
SELECT quoted_message_id, content->>'quotedText' AS quoted_text FROM pgwa.messages
WHERE tenant_id = :'t' AND broker_message_id = '3EB0AA0000000000C001';
-- an array: two messages, one contact, one ticket
SELECT pg_temp.ingest(:'batch', 'env-secret-0123456789');
SELECT count(*) AS messages, count(DISTINCT ticket_id) AS tickets FROM pgwa.messages
WHERE tenant_id = :'t' AND remote = '5511944440001';

-------------------------------------------------------------------------------
-- seed 002: history leads
-------------------------------------------------------------------------------
INSERT INTO pgwa.leads (tenant_id, phone, source, push_name) VALUES
	(:'t', '5511922220001', 'history_sync', 'Histórico'),
	(:'t', '5511922220002', 'state_sync', 'Contato do App'),
	(:'t', '5511922220003', 'direct_creation', 'Manual');
SELECT pg_temp.ingest(jsonb_build_array(
	jsonb_set(jsonb_set(:'seed000', '{id}', '"H-1"'), '{payload,contact,phone}', '"5511922220001"'),
	jsonb_set(jsonb_set(:'seed000', '{id}', '"H-2"'), '{payload,contact,phone}', '"5511922220002"'),
	jsonb_set(jsonb_set(:'seed000', '{id}', '"H-3"'), '{payload,contact,phone}', '"5511922220003"')),
	'env-secret-0123456789');
SELECT l.phone, l.source, t.source AS ticket_source, t.originated_from, l.window_expires_at IS NULL AS no_window,
       (pgwa.ticket_json(t.id))->>'window' AS window
FROM pgwa.leads l JOIN pgwa.tickets t ON t.tenant_id = l.tenant_id AND t.lead_id = l.id
WHERE l.tenant_id = :'t' AND l.phone LIKE '55119222200%' ORDER BY l.phone;
-- a history lead that writes again still has no window (seed 002: no limit)
SELECT pg_temp.ingest(jsonb_set(jsonb_set(:'seed000', '{id}', '"H-4"'), '{payload,contact,phone}', '"5511922220001"'),
                      'env-secret-0123456789');
SELECT window_expires_at IS NULL AS still_no_window, source FROM pgwa.leads WHERE tenant_id = :'t' AND phone = '5511922220001';
SELECT * FROM pgwa.window_state(:'t', '5511922220001');
SELECT state, expires_at > now() AS future FROM pgwa.window_state(:'t', '+55 11 92222-0003');
SELECT * FROM pgwa.window_state(:'t', '5511900000000');
UPDATE pgwa.leads SET window_expires_at = now() - interval '1 minute' WHERE tenant_id = :'t' AND phone = '5511922220003';
SELECT state FROM pgwa.window_state(:'t', '5511922220003@s.whatsapp.net');

-------------------------------------------------------------------------------
-- Raw Baileys fallback
-------------------------------------------------------------------------------
SELECT pg_temp.ingest(:'rtext', 'raw-secret-0123456789');
SELECT pg_temp.ingest(:'rmedia', 'raw-secret-0123456789', 'authorization');
SELECT pg_temp.ingest(:'rinter', 'raw-secret-0123456789', 'x-authorization');
SELECT pg_temp.ingest(:'rwrap', 'raw-secret-0123456789');
SELECT pg_temp.ingest(:'rignored', 'raw-secret-0123456789');
SELECT m->>'brokerMessageId' AS broker_id, m->>'result' AS result, m->>'reason' AS reason
FROM pg_temp.last_event() e, jsonb_array_elements(e.result->'messages') m;
SELECT pg_temp.ingest(pg_temp.raw('{"key":{"remoteJid":"5511988880001@s.whatsapp.net","fromMe":true,"id":"ME"},"message":{"conversation":"x"}}'),
                      'raw-secret-0123456789');
SELECT pg_temp.ingest(:'rgroup', 'raw-secret-0123456789');
SELECT m.broker_message_id, m.type, m.remote, m.participant, m.conversation_id IS NOT NULL AS in_conversation,
       m.ticket_id IS NOT NULL AS has_ticket, l.phone, l.lid, l.window_expires_at IS NOT NULL AS has_window
FROM pgwa.messages m JOIN pgwa.leads l ON l.tenant_id = m.tenant_id AND l.id = m.lead_id
WHERE m.instance_id = :'iraw' AND m.broker_message_id LIKE 'RAW-%' AND m.broker_message_id !~ '^RAW-(IMAGE|VIDEO|AUDIO|DOC|STICKER|BUTTONS|TEMPLATE|LIST|POLL|VOTE|LOCATION|CONTACTS|EPHEMERAL|VIEWONCE)'
ORDER BY m.broker_message_id;
SELECT broker_message_id, type, content->'media'->>'mediaType' AS media, metadata->>'source' AS source,
       metadata->'broker'->>'messageType' AS broker_type
FROM pgwa.messages WHERE instance_id = :'iraw' ORDER BY broker_message_id;
-- the LID-only lead learns its phone when a message carries both
SELECT pg_temp.ingest(pg_temp.raw('{"key":{"remoteJid":"55555555555555@lid","senderPn":"5511988880099@s.whatsapp.net","id":"RAW-LIDLATER-1"},
                                    "messageTimestamp":1714655900,"pushName":"Ivo","message":{"conversation":"agora com número"}}'),
                      'raw-secret-0123456789');
SELECT phone, lid, (SELECT count(*) FROM pgwa.messages m WHERE m.lead_id = l.id) AS messages,
       (SELECT count(*) FROM pgwa.tickets t WHERE t.lead_id = l.id) AS tickets
FROM pgwa.leads l WHERE tenant_id = :'t' AND lid = '55555555555555@lid';
-- ticket.message carries metadata.broker and the media/location/contacts summary
SELECT payload->'metadata' AS metadata FROM pgwa.events e
WHERE tenant_id = :'t' AND event = 'ticket.message'
  AND payload->>'messageId' IN (SELECT id::text FROM pgwa.messages WHERE broker_message_id IN ('RAW-DOC-1', 'RAW-LOCATION-1', 'RAW-CONTACTS-1'))
ORDER BY id;
-- no NOTIFY payload is near the 8000-byte limit
SELECT max(octet_length(payload::text)) < 2000 AS small FROM pgwa.events WHERE tenant_id = :'t';

-- without raw_fallback a raw upsert is rejected, stored, and replayable once enabled
SELECT pg_temp.ingest(jsonb_set(:'rtext', '{instanceId}', '"wa-raw-2"'), 'raw-secret-0123456789');
SELECT status, error_sqlstate, error_field, instance_id = :'inoraw' AS right_instance FROM pg_temp.last_event();
SELECT (pgwa.apply_event((pg_temp.last_event()).id))->>'status' AS apply_does_not_reapply;
UPDATE pgwa.instances SET settings = '{"raw_fallback": "true"}' WHERE id = :'inoraw';
SELECT r->>'status' AS status, r->'accepted' AS accepted FROM pgwa.replay_event((pg_temp.last_event()).id) r;
-- replaying an applied event finds only duplicates
SELECT r->>'status' AS status, r->'duplicates' AS duplicates FROM pgwa.replay_event((pg_temp.last_event()).id) r;

-- rejected events are stored with why; a body naming no instance goes to the
-- secret's only instance; one that names another instance is not this secret's
SELECT pg_temp.ingest(:'m3', 'env-secret-0123456789');
SELECT status, error_sqlstate, error_field, last_error FROM pg_temp.last_event();
SELECT pg_temp.ingest(:'seed000'::jsonb - 'instanceId' #- '{payload,instanceId}', 'env-secret-0123456789');
SELECT status, error_field FROM pg_temp.last_event();
SELECT pg_temp.ingest(pg_temp.raw('{}') - 'instanceId', 'raw-secret-0123456789');
SELECT pg_temp.ingest(jsonb_set(:'seed000', '{instanceId}', '"instance-99"'), 'env-secret-0123456789');
SELECT pg_temp.ingest('{"type":"EVIL\"}"}', 'env-secret-0123456789');
SELECT payload_type FROM pg_temp.last_event();
SELECT pg_temp.ingest(jsonb_build_array(:'seed000'::jsonb, jsonb_set(:'seed000', '{instanceId}', '"wa-raw-1"')), 'env-secret-0123456789');

-- secret rotation: with a grace period the old secret keeps working for a while
SELECT pgwa.set_webhook_secret(:'ienv', 'env-secret-9876543210', '1 hour') IS NOT NULL AS rotated;
SELECT pg_temp.ingest(jsonb_set(:'seed000', '{id}', '"wamid-126"'), 'env-secret-0123456789');
SELECT pg_temp.ingest(jsonb_set(:'seed000', '{id}', '"wamid-127"'), 'env-secret-9876543210');
SELECT pgwa.set_webhook_secret(:'ienv', 'env-secret-abcdefghij') IS NOT NULL AS rotated_without_grace;
SELECT pg_temp.ingest(jsonb_set(:'seed000', '{id}', '"wamid-128"'), 'env-secret-9876543210');
SELECT pgwa.set_webhook_secret(:'ienv', 'env-secret-0123456789') IS NOT NULL AS restored;

-------------------------------------------------------------------------------
-- A failed application is kept and retried
-------------------------------------------------------------------------------
CREATE FUNCTION pg_temp.boom() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.phone = '5511911110001' THEN
		RAISE EXCEPTION 'lead storage is down';
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER boom BEFORE INSERT ON pgwa.leads FOR EACH ROW EXECUTE FUNCTION pg_temp.boom();
SELECT pg_temp.counts() AS before_failure;
SET client_min_messages = error;  -- the server log names the failed event
SELECT pg_temp.ingest(jsonb_set(jsonb_set(:'seed000', '{id}', '"F-1"'), '{payload,contact,phone}', '"5511911110001"'),
                      'env-secret-0123456789');
SELECT status, attempts, last_error, error_sqlstate, next_attempt_at BETWEEN now() + interval '4 seconds'
       AND now() + interval '6 seconds' AS retry_in_5s FROM pg_temp.last_event();
SELECT pg_temp.counts() AS after_failure;
SELECT pgwa.retry_failed_events() AS not_due_yet;
UPDATE pgwa.webhook_events SET next_attempt_at = now() - interval '1 second' WHERE id = (pg_temp.last_event()).id;
SELECT pgwa.retry_failed_events() AS retried;
SELECT status, attempts, next_attempt_at BETWEEN now() + interval '9 seconds' AND now() + interval '11 seconds' AS retry_in_10s
FROM pg_temp.last_event();
DROP TRIGGER boom ON pgwa.leads;
RESET client_min_messages;
UPDATE pgwa.webhook_events SET next_attempt_at = now() - interval '1 second' WHERE id = (pg_temp.last_event()).id;
SELECT pgwa.retry_failed_events(10) AS retried;
SELECT status, attempts, last_error, next_attempt_at FROM pg_temp.last_event();
SELECT count(*) AS messages FROM pgwa.messages WHERE tenant_id = :'t' AND broker_message_id = 'F-1';
SELECT pgwa.retry_failed_events() AS nothing_left;
-- an event stored but never applied is picked up too
INSERT INTO pgwa.webhook_events (instance_id, tenant_id, dialect, body)
VALUES (:'ienv', :'t', 'broker', jsonb_set(:'seed000', '{id}', '"wamid-stored-only"'));
SELECT pgwa.retry_failed_events() AS picked_up;
SELECT status, attempts, result->'accepted' AS accepted FROM pg_temp.last_event();
SELECT pgwa.apply_event(-1);

-------------------------------------------------------------------------------
-- HTTP: POST /api/integrations/whatsapp/webhook
-------------------------------------------------------------------------------
-- the answer, then (-> ...) what the worker's step made of the stored event
CREATE FUNCTION pg_temp.http(headers jsonb, body text, method text DEFAULT 'POST',
                             path text DEFAULT '/api/integrations/whatsapp/webhook')
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	r pgwa.http_response := pgwa.http(method, path, '{}', headers || '{"x-request-id":"r-1"}', body);
	b jsonb := r.body::jsonb;
	w pgwa.webhook_events;
BEGIN
	PERFORM pgwa.apply_pending();
	SELECT * INTO w FROM pgwa.webhook_events WHERE id = (b->>'eventId')::bigint AND b->>'status' = 'received';
	RETURN r.status || ' ' || (b - 'eventId' - 'instance_id' #- '{error,request_id}' #- '{error,eventId}')::text
	       || CASE WHEN b ? 'eventId' OR b->'error' ? 'eventId' THEN ' +eventId' ELSE '' END
	       || coalesce(' WWW-Authenticate: ' || (r.headers->>'WWW-Authenticate'), '')
	       || coalesce(' Allow: ' || (r.headers->>'Allow'), '')
	       || coalesce(' -> ' || w.status || format(' acc=%s dup=%s ign=%s', w.result->'accepted',
	                                                w.result->'duplicates', w.result->'ignored'), '');
END $$;
SELECT pg_temp.http('{"x-api-key":"env-secret-0123456789"}', jsonb_set(:'seed000', '{id}', '"wamid-200"')::text);
SELECT pg_temp.http('{"x-api-key":"env-secret-0123456789"}', jsonb_set(:'seed000', '{id}', '"wamid-200"')::text);
SELECT pg_temp.http('{"authorization":"Bearer raw-secret-0123456789"}', :'rignored');
SELECT pg_temp.http('{}', :'seed000');
SELECT pg_temp.http('{"x-api-key":"not-a-secret-at-all"}', :'seed000');
SELECT pg_temp.http('{"x-api-key":"env-secret-0123456789"}', '{"id": ');
SELECT pg_temp.http('{"x-api-key":"env-secret-0123456789"}', NULL);
SELECT pg_temp.http('{"x-api-key":"env-secret-0123456789"}', :'m2');
SELECT pg_temp.http('{"x-api-key":"env-secret-0123456789"}', :'m5');
SELECT pg_temp.http('{"x-api-key":"env-secret-0123456789"}', NULL, 'GET');
SELECT api_key AS k FROM pgwa.create_api_key(:'t', 'inbound') \gset
SELECT length(((pgwa.http('POST', '/api/integrations/whatsapp/instances/' || :'ienv' || '/webhook-secret', '{}',
        jsonb_build_object('x-api-key', :'k'), '')).body::jsonb->>'secret')) AS generated;
SELECT pg_temp.http(jsonb_build_object('x-api-key', :'k'), '{"secret":"http-set-secret-0001","grace_seconds":60}',
                    'POST', '/api/integrations/whatsapp/instances/' || :'ienv' || '/webhook-secret');
SELECT pg_temp.http(jsonb_build_object('x-api-key', :'k'), '{"grace_seconds":1.5}',
                    'POST', '/api/integrations/whatsapp/instances/' || :'ienv' || '/webhook-secret');
SELECT pg_temp.http(jsonb_build_object('x-api-key', :'k'), '{}',
                    'POST', '/api/integrations/whatsapp/instances/00000000-0000-0000-0000-000000000000/webhook-secret');
SELECT pg_temp.http('{"x-api-key":"http-set-secret-0001"}', jsonb_set(:'seed000', '{id}', '"wamid-201"')::text);
SELECT pg_temp.http('{}', '', 'GET', '/api/integrations/whatsapp/nothing');
-- the stored headers never hold the secret
SELECT count(*) AS events_with_a_secret FROM pgwa.webhook_events
WHERE tenant_id = :'t' AND (headers::text LIKE '%secret%' OR headers ? 'x-api-key' OR headers ? 'authorization');
SELECT headers FROM pgwa.webhook_events WHERE tenant_id = :'t' ORDER BY id DESC LIMIT 1;

-------------------------------------------------------------------------------
-- Counters, retention
-------------------------------------------------------------------------------
SELECT c.result, c.reason, c.payload_type, sum(c.count) - coalesce(min(b.n), 0) AS added
FROM pgwa.webhook_counters c LEFT JOIN counters_before b USING (result, reason, payload_type)
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
SELECT line FROM pgwa.webhook_metrics() line LIMIT 2;
SELECT count(*) = (SELECT count(*) FROM (SELECT DISTINCT result, reason, payload_type FROM pgwa.webhook_counters) d)
       AS one_line_per_series
FROM pgwa.webhook_metrics() line WHERE line LIKE 'whatsapp_webhook_events_total{%';
UPDATE pgwa.webhook_events SET received_at = now() - interval '40 days'
WHERE tenant_id = :'t' AND status IN ('duplicate', 'ignored');
SELECT pgwa.purge_webhook_events('30 days') >= 5 AS purged;
SELECT count(*) AS left FROM pgwa.webhook_events WHERE tenant_id = :'t' AND status IN ('duplicate', 'ignored');
SELECT count(*) > 0 AS others_kept FROM pgwa.webhook_events WHERE tenant_id = :'t';
