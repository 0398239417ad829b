-- Broker dialects in the inbound pipeline: Evolution API webhooks on
-- POST /webhooks/whatsapp, WhatsApp Cloud API (and 360dialog) webhooks on
-- POST /webhooks/meta with their signature and GET handshake; every kind of
-- event (message, status, echo, connection, qrcode, coexistence), stored
-- first and applied once, receipts that only move forward, failures kept and
-- retried, counters, and the tenant's settings routes.
\set VERBOSITY terse
CREATE TEMP TABLE counters_before AS
	SELECT result, reason, payload_type, sum(count) AS n FROM pgwa.webhook_counters GROUP BY 1, 2, 3;

\set e_text `cat test/fixtures/evolution/messages_upsert_text.json`
\set e_image `cat test/fixtures/evolution/messages_upsert_image.json`
\set e_audio `cat test/fixtures/evolution/messages_upsert_audio_ptt.json`
\set e_doc `cat test/fixtures/evolution/messages_upsert_document_caption.json`
\set e_contacts `cat test/fixtures/evolution/messages_upsert_contacts.json`
\set e_locst `cat test/fixtures/evolution/messages_upsert_location_sticker.json`
\set e_reaction `cat test/fixtures/evolution/messages_upsert_reaction.json`
\set e_replies `cat test/fixtures/evolution/messages_upsert_replies.json`
\set e_group `cat test/fixtures/evolution/messages_upsert_group.json`
\set e_lid `cat test/fixtures/evolution/messages_upsert_lid.json`
\set e_eph `cat test/fixtures/evolution/messages_upsert_ephemeral_viewonce.json`
\set e_quoted `cat test/fixtures/evolution/messages_upsert_extended_quoted.json`
\set e_ignored `cat test/fixtures/evolution/messages_upsert_ignored.json`
\set e_fromme `cat test/fixtures/evolution/messages_upsert_from_me.json`
\set e_send `cat test/fixtures/evolution/send_message.json`
\set e_status `cat test/fixtures/evolution/messages_update_statuses.json`
\set e_v1status `cat test/fixtures/evolution/MESSAGES_UPDATE_v1.json`
\set e_v1upsert `cat test/fixtures/evolution/MESSAGES_UPSERT_v1.json`
\set e_close `cat test/fixtures/evolution/CONNECTION_UPDATE_close.json`
\set e_open `cat test/fixtures/evolution/connection_update_open.json`
\set e_qr `cat test/fixtures/evolution/qrcode_updated.json`
\set e_contacts_up `cat test/fixtures/evolution/contacts_upsert.json`
\set e_bad_data `cat test/fixtures/evolution/malformed_data.json`
\set e_bad_key `cat test/fixtures/evolution/malformed_key.json`
\set e_bad_event `cat test/fixtures/evolution/malformed_no_event.json`
\set e_bad_ts `cat test/fixtures/evolution/malformed_timestamp.json`
\set m_text `cat test/fixtures/meta/text.json`
\set m_image `cat test/fixtures/meta/image.json`
\set m_sent `cat test/fixtures/meta/status_sent.json`
\set m_delread `cat test/fixtures/meta/status_delivered_read.json`
\set m_failed `cat test/fixtures/meta/status_failed.json`
\set m_multi `cat test/fixtures/meta/multi_entry_batch.json`
\set m_coex `cat test/fixtures/meta/coexistence.json`
\set m_360 `cat test/fixtures/meta/dialog360_wrapped.json`
\set m_bare `cat test/fixtures/meta/bare_value.json`
\set m_bad `cat test/fixtures/meta/malformed_message_id.json`
\set m_other `cat test/fixtures/meta/other_fields_and_errors.json`
-- X-Hub-Signature-256 of the text fixture as openssl computes it, to check the helper below
\set openssl_sig `printf %s "$(cat test/fixtures/meta/text.json)" | openssl dgst -sha256 -hmac app-secret-0123456789abcdef -r | cut -c1-64`

SELECT tenant_id AS t FROM pgwa.create_tenant('webhooks') \gset
SELECT api_key AS k FROM pgwa.create_api_key(:'t', 'webhooks') \gset
SELECT pgwa.create_instance(:'t', 'wh-evo', 'evolution', 'http://127.0.0.1:1', 'k',
       '{"broker_instance_id":"business","delay_min_ms":0,"delay_max_ms":0}') AS evo \gset
SELECT pgwa.create_instance(:'t', 'wh-evo1', 'evolution', 'http://127.0.0.1:1', 'k',
       '{"broker_instance_id":"loja-v1","delay_min_ms":0,"delay_max_ms":0}') AS evo1 \gset
SELECT pgwa.create_instance(:'t', 'wh-meta', 'meta', 'http://127.0.0.1:1', 'k',
       '{"settings":{"phone_number_id":"106540352242922"},"delay_min_ms":0,"delay_max_ms":0}') AS meta \gset
SELECT pgwa.create_instance(:'t', 'wh-meta2', 'meta', 'http://127.0.0.1:1', 'k',
       '{"settings":{"phone_number_id":"106540352242923"},"delay_min_ms":0,"delay_max_ms":0}') AS meta2 \gset
SELECT pgwa.create_instance(:'t', 'wh-360', 'meta', 'http://127.0.0.1:1', 'k',
       '{"settings":{"phone_number_id":"112233445566778"},"delay_min_ms":0,"delay_max_ms":0}') AS d360 \gset
SELECT pgwa.set_webhook_secret(:'evo', 'evo-secret-0123456789') IS NOT NULL AS evo_secret,
       pgwa.set_webhook_secret(:'evo1', 'evo-secret-0123456789') IS NOT NULL AS shared_with_v1,
       pgwa.set_webhook_secret(:'d360', 'd360-secret-0123456789') IS NOT NULL AS d360_secret;
-- Only this test's instances are claimed below.
UPDATE pgwa.instance_state SET head_due = NULL
WHERE instance_id NOT IN (SELECT id FROM pgwa.instances WHERE tenant_id = :'t');

-- HMAC-SHA256 written from its definition (RFC 2104), independent of the C one.
CREATE FUNCTION pg_temp.sign(k text, m text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	kb bytea := convert_to(k, 'UTF8');
	i  bytea;
	o  bytea;
BEGIN
	kb := kb || decode(repeat('00', 64 - length(kb)), 'hex');
	i := kb;
	o := kb;
	FOR n IN 0..63 LOOP
		i := set_byte(i, n, get_byte(kb, n) # 54);
		o := set_byte(o, n, get_byte(kb, n) # 92);
	END LOOP;
	RETURN 'sha256=' || encode(sha256(o || sha256(i || convert_to(m, 'UTF8'))), 'hex');
END $$;
SELECT pg_temp.sign('app-secret-0123456789abcdef', :'m_text') = 'sha256=' || :'openssl_sig' AS helper_agrees_with_openssl;

-- An answer: status, body without ids, and whether stored event ids came
-- back; then (-> ...) what the worker's step made of the stored events.
CREATE FUNCTION pg_temp.post(path text, headers jsonb, body text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	r pgwa.http_response := pgwa.http('POST', path, '{}', headers || '{"x-request-id":"r-1"}', body);
	b jsonb := r.body::jsonb;
	v_applied text;
BEGIN
	PERFORM pgwa.apply_pending();
	SELECT string_agg(w.status || format(' acc=%s dup=%s ign=%s def=%s', w.result->'accepted', w.result->'duplicates',
	                                     w.result->'ignored', w.result->'deferred'), '; ' ORDER BY w.id)
	INTO v_applied
	FROM pgwa.webhook_events w
	WHERE b->>'status' = 'received'
	  AND (w.id = (b->>'eventId')::bigint
	       OR w.id IN (SELECT x::bigint FROM jsonb_array_elements_text(coalesce(b->'eventIds', '[]')) x));
	RETURN r.status || ' ' || (b - 'eventId' - 'eventIds' #- '{error,request_id}' #- '{error,eventId}')::text
	       || CASE WHEN b ? 'eventId' OR b ? 'eventIds' OR b->'error' ? 'eventId' THEN ' +stored' ELSE '' END
	       || coalesce(' WWW-Authenticate: ' || (r.headers->>'WWW-Authenticate'), '')
	       || coalesce(' Allow: ' || (r.headers->>'Allow'), '')
	       || coalesce(' -> ' || v_applied, '');
END $$;
CREATE FUNCTION pg_temp.evo(body jsonb, headers jsonb DEFAULT '{"x-api-key":"evo-secret-0123456789"}')
RETURNS text LANGUAGE sql AS $$ SELECT pg_temp.post('/webhooks/whatsapp', headers, body::text) $$;
CREATE FUNCTION pg_temp.meta(body text, secret text DEFAULT 'app-secret-0123456789abcdef')
RETURNS text LANGUAGE sql AS $$
	SELECT pg_temp.post('/webhooks/meta', jsonb_build_object('x-hub-signature-256', pg_temp.sign(secret, body)), body)
$$;
CREATE FUNCTION pg_temp.last_event() RETURNS pgwa.webhook_events LANGUAGE sql AS $$
	SELECT * FROM pgwa.webhook_events WHERE tenant_id = (SELECT id FROM pgwa.tenants WHERE name = 'webhooks')
	ORDER BY id DESC LIMIT 1
$$;
CREATE FUNCTION pg_temp.stored() RETURNS bigint LANGUAGE sql AS $$
	SELECT count(*) FROM pgwa.webhook_events WHERE tenant_id = (SELECT id FROM pgwa.tenants WHERE name = 'webhooks')
$$;
-- An outbound message the broker accepted with broker id p_bid.
CREATE FUNCTION pg_temp.sent(p_inst uuid, p_to text, p_bid text) RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
	m uuid;
	c record;
BEGIN
	SELECT message_id INTO m FROM pgwa.send(p_inst, p_to, 'hello ' || p_bid);
	SELECT * INTO c FROM pgwa._claim(100, 60) x WHERE x.message_id = m;
	PERFORM pgwa._complete(c.instance_id, c.seq, 'sent', 200, p_bid, NULL, now(), 1.0, NULL);
	RETURN m;
END $$;
-- A message's receipts as GET /v1/messages/{id} shows them.
CREATE FUNCTION pg_temp.receipts(p_message uuid) RETURNS text LANGUAGE sql AS $$
	SELECT format('%s delivered_at=%s read_at=%s dead_at=%s last_error=%s', j->>'status',
	              j->>'delivered_at' IS NOT NULL, j->>'read_at' IS NOT NULL, j->>'dead_at' IS NOT NULL,
	              coalesce(j->>'last_error', '-'))
	FROM pgwa.message_json(p_message) j
$$;

-------------------------------------------------------------------------------
-- Evolution API: authentication and attribution
-------------------------------------------------------------------------------
SELECT pg_temp.evo(:'e_text'::jsonb - 'apikey', '{}');
-- without a header the body's apikey is tried: the fixture's is Evolution's own key, not the secret
SELECT pg_temp.evo(:'e_text', '{}');
SELECT pg_temp.evo(:'e_text', '{"x-api-key":"not-the-secret-at-all"}');
SELECT pg_temp.evo(:'e_text', '{"x-api-key":"d360-secret-0123456789"}');
SELECT pg_temp.evo(jsonb_set(:'e_text', '{instance}', '"someone-else"'));
SELECT pg_temp.stored() AS nothing_stored_yet;
-- X-API-Key first, then Bearer, then X-Authorization (the body's apikey is then not read);
-- the body's apikey only without a header
SELECT pg_temp.evo(:'e_text');
SELECT status, dialect, payload_type, headers, body ? 'apikey' AS apikey_kept FROM pg_temp.last_event();
SELECT pg_temp.evo(:'e_text', '{"authorization":"Bearer evo-secret-0123456789"}');
SELECT pg_temp.evo(:'e_text', '{"x-authorization":"evo-secret-0123456789"}');
SELECT pg_temp.evo(jsonb_set(:'e_text', '{apikey}', '"evo-secret-0123456789"'), '{}');
SELECT headers, body ? 'apikey' AS apikey_kept FROM pg_temp.last_event();
SELECT pg_temp.evo(jsonb_set(:'e_text', '{apikey}', '"evo-secret-0123456789"'), '{"x-api-key":"not-the-secret-at-all"}');
SELECT pg_temp.evo(jsonb_set(:'e_text', '{apikey}', '"not-the-secret-at-all"'), '{}');
-- one secret, two Evolution instances: the body's instance picks one; without it, none
SELECT pg_temp.evo(:'e_text'::jsonb - 'instance');
SELECT count(*) AS rows_for_the_text_message FROM pgwa.messages WHERE instance_id = :'evo';
-- the same message through the seed-000 route is the same message
SELECT (pgwa.ingest_webhook('broker', '{"x-api-key":"evo-secret-0123456789"}', jsonb_build_object(
	'id', '3EB0C4A1B2C3D4E5F6A7', 'type', 'MESSAGE_INBOUND', 'instanceId', 'business',
	'payload', jsonb_build_object('contact', '{"phone":"5511999999999"}'::jsonb,
	                              'message', '{"conversation":"Oi! Vocês abrem no sábado?"}'::jsonb, 'metadata', '{}'::jsonb))))
	->>'status' AS seed000_route;
-- not JSON; another method; webhook-by-events URLs
SELECT pg_temp.post('/webhooks/whatsapp', '{"x-api-key":"evo-secret-0123456789"}', '{"event": ');
SELECT pg_temp.post('/webhooks/whatsapp', '{}', '{"event": ');
SELECT (pgwa.http('GET', '/webhooks/whatsapp')).status AS get_status;
SELECT pg_temp.post('/webhooks/whatsapp/messages-upsert', '{"x-api-key":"evo-secret-0123456789"}', :'e_text');
SELECT (pgwa.http('POST', '/webhooks/whatsapp/a/b', '{}', '{"x-api-key":"evo-secret-0123456789"}', :'e_text')).status AS deeper_path;

-------------------------------------------------------------------------------
-- Evolution: every kind of message through the envelope path
-------------------------------------------------------------------------------
SELECT name, pg_temp.evo(body) FROM (VALUES
	('image', :'e_image'::jsonb), ('audio', :'e_audio'), ('document', :'e_doc'), ('contacts', :'e_contacts'),
	('location+sticker', :'e_locst'), ('reaction', :'e_reaction'), ('replies', :'e_replies'),
	('group', :'e_group'), ('lid', :'e_lid'), ('ephemeral+viewonce', :'e_eph'), ('quoted', :'e_quoted'),
	('ignored', :'e_ignored'), ('contacts.upsert', :'e_contacts_up')) v(name, body);
SELECT pg_temp.evo(:'e_v1upsert', '{"x-api-key":"evo-secret-0123456789"}');
SELECT m.broker_message_id, m.type, m.remote, m.participant IS NOT NULL AS in_group, m.content->'media'->>'mediaType' AS media,
       coalesce(m.content->>'text', '') AS text, m.source, l.phone, l.lid, m.ticket_id IS NOT NULL AS ticket
FROM pgwa.messages m JOIN pgwa.leads l ON l.tenant_id = m.tenant_id AND l.id = m.lead_id
WHERE m.instance_id IN (:'evo', :'evo1') AND m.direction = 'inbound'
ORDER BY m.broker_message_id COLLATE "C";
-- media keep their details under content.media; quotes, locations, contacts and reactions their own fields
SELECT broker_message_id, content - 'id' - 'type' - 'text' AS details FROM pgwa.messages
WHERE instance_id = :'evo' AND broker_message_id IN ('3A9F0B1C2D3E4F5A6B7C', '3A55D2C1B0A9F8E7D6C5', '3EB0AA11BB22CC33DD44',
                                                      '3EB06C5D4E3F2A1B0C9D', '3EB0F00DCAFE12345678')
ORDER BY broker_message_id COLLATE "C";
SELECT broker_message_id, metadata->'broker'->>'type' AS broker, metadata->>'source' AS source,
       metadata->>'normalizedTimestamp' AS normalized, broker_timestamp = (metadata->>'normalizedTimestamp')::timestamptz AS same_time
FROM pgwa.messages WHERE instance_id = :'evo' AND broker_message_id = '3EB0C4A1B2C3D4E5F6A7';
SELECT source, originated_from, count(*) AS tickets, count(DISTINCT lead_id) AS leads
FROM pgwa.tickets WHERE tenant_id = :'t' AND instance_id IN (:'evo', :'evo1') GROUP BY 1, 2;
SELECT r->>'reason' AS reason, count(*) FROM pgwa.webhook_events w, jsonb_array_elements(w.result->'events') r
WHERE w.tenant_id = :'t' AND r->>'result' = 'ignored' GROUP BY 1 ORDER BY 1;

-------------------------------------------------------------------------------
-- Receipts: forward only, by broker id within the instance
-------------------------------------------------------------------------------
-- an unknown broker id is ignored, not an error
SELECT pg_temp.evo(:'e_status');
SELECT result->'events'->0->>'reason' AS reason FROM pg_temp.last_event();
SELECT pg_temp.sent(:'evo', '5511999999999', '3EB0FEEDBEEF00112233') AS m1 \gset
SELECT pg_temp.receipts(:'m1');
SELECT pg_temp.evo(:'e_status');
SELECT pg_temp.receipts(:'m1');
SELECT pg_temp.evo(jsonb_set(:'e_status', '{data,status}', '"READ"') || '{"date_time":"2024-05-02T10:30:00.000-03:00"}');
SELECT pg_temp.receipts(:'m1');
SELECT o.delivered_at = '2024-05-02T13:23:25.671Z' AS delivered_at_broker_time, o.read_at = '2024-05-02T13:30:00Z' AS read_at_broker_time
FROM pgwa.outbox o WHERE o.id = :'m1';
-- a late delivered, a repeated read and a sent change nothing
SELECT pg_temp.evo(:'e_status');
SELECT pg_temp.evo(jsonb_set(:'e_status', '{data,status}', '"READ"'));
SELECT pg_temp.evo(jsonb_set(:'e_status', '{data,status}', '"SERVER_ACK"'));
SELECT pg_temp.receipts(:'m1'), (SELECT status FROM pgwa.messages WHERE instance_id = :'evo' AND broker_message_id = '3EB0FEEDBEEF00112233') AS log_status;
-- the same broker id on another instance is another message
SELECT pg_temp.evo(jsonb_set(:'e_status', '{instance}', '"loja-v1"'));
SELECT result->'events'->0->>'reason' AS reason FROM pg_temp.last_event();
-- v1 batch: sent, delivered, read, played (read), error (failed); pending, inbound, deleted and empty ignored
SELECT count(pg_temp.sent(:'evo1', '5511912340000', 'BAE5B2B2B2B2B2B' || n)) AS sent FROM generate_series(1, 5) n;
SELECT pg_temp.evo(:'e_v1status');
SELECT o.broker_message_id, pg_temp.receipts(o.id) FROM pgwa.outbox o
WHERE o.instance_id = :'evo1' AND o.broker_message_id LIKE 'BAE5%' ORDER BY 1;
SELECT broker_message_id, status FROM pgwa.messages
WHERE instance_id = :'evo1' AND broker_message_id LIKE 'BAE5%' ORDER BY 1;
SELECT r->>'brokerMessageId' AS broker_id, r->>'result' AS result, r->>'reason' AS reason, r->>'status' AS status
FROM pg_temp.last_event() e, jsonb_array_elements(e.result->'events') r;
-- a dead letter by receipt can be replayed like any other
SELECT d->'items'->0->>'broker_message_id' AS dead_letter, d->'items'->0->>'last_error' AS last_error,
       d->'items'->0->>'id' AS dead_id
FROM pgwa.dead_letters(:'evo1') d \gset
SELECT :'dead_letter' AS dead_letter, :'last_error' AS last_error;
SELECT pgwa.replay(:'dead_id')->>'status' AS replayed;
SELECT pgwa.cancel(:'dead_id')->>'status' AS then_canceled;
-- failed after delivered: the error is kept, the status stays
SELECT pg_temp.evo(jsonb_set(jsonb_set(:'e_status', '{data,status}', '"ERROR"'), '{data,keyId}', '"BAE5B2B2B2B2B2B2"') || '{"instance":"loja-v1"}');
SELECT pg_temp.receipts(id) FROM pgwa.outbox WHERE instance_id = :'evo1' AND broker_message_id = 'BAE5B2B2B2B2B2B2';
-- every change was announced
SELECT payload->>'brokerMessageId' AS broker_id, payload->>'status' AS status, payload->>'previousStatus' AS previous,
       payload->>'receipt' AS receipt, payload ? 'messageId' AS has_id, payload ? 'error' AS has_error
FROM pgwa.events WHERE tenant_id = :'t' AND event = 'message.status' ORDER BY id;

-------------------------------------------------------------------------------
-- Echoes: the instance's own messages
-------------------------------------------------------------------------------
-- one pgwa sent (its broker id is in the outbox) is not stored again
SELECT pg_temp.evo(:'e_fromme');
SELECT count(*) AS rows_for_it FROM pgwa.messages WHERE instance_id = :'evo' AND broker_message_id = '3EB0FEEDBEEF00112233';
-- one written on the phone enters the log as app_echo, once
SELECT pg_temp.evo(:'e_send');
SELECT pg_temp.evo(:'e_send');
SELECT direction, source, status, remote, type, content->>'text' AS text, ticket_id IS NOT NULL AS on_ticket,
       lead_id IS NOT NULL AS has_lead, metadata->'broker' AS broker
FROM pgwa.messages WHERE instance_id = :'evo' AND broker_message_id = '3EB0A5E2D1C0B9A8F7E6';
SELECT metadata->'timeline' ? 'lastOutboundAt' AS outbound_timeline FROM pgwa.tickets
WHERE tenant_id = :'t' AND id = (SELECT ticket_id FROM pgwa.messages WHERE instance_id = :'evo' AND broker_message_id = '3EB0A5E2D1C0B9A8F7E6');
SELECT payload->>'direction' AS direction, payload->>'source' AS source, payload->>'text' AS text
FROM pgwa.events WHERE tenant_id = :'t' AND event = 'messages.new' AND payload->>'source' = 'app_echo';
-- Evolution posts send.message before it answers the send: an echo to the recipient of the
-- message in flight is that message, which the dispatcher records with the broker's answer
SELECT message_id AS inflight FROM pgwa.send(:'evo', '5511999999999', 'in flight') \gset
SELECT c.message_id = :'inflight' AS claimed, c.seq AS inflight_seq FROM pgwa._claim(100, 60) c \gset
SELECT :'claimed' AS claimed;
SELECT pg_temp.evo(jsonb_set(:'e_send', '{data,key,id}', '"EVO-INFLIGHT-1"'));
SELECT result->'events'->0->>'reason' AS reason FROM pg_temp.last_event();
SELECT pgwa._complete(:'evo', :inflight_seq, 'sent', 200, 'EVO-INFLIGHT-1', NULL, now(), 1.0, NULL) AS outcome;
SELECT source, outbox_seq = :inflight_seq AS from_the_outbox FROM pgwa.messages
WHERE instance_id = :'evo' AND broker_message_id = 'EVO-INFLIGHT-1';
SELECT pg_temp.evo(jsonb_set(:'e_send', '{data,key,id}', '"EVO-INFLIGHT-1"'));

-------------------------------------------------------------------------------
-- Connection: close pauses the queue, open resumes it
-------------------------------------------------------------------------------
SELECT pg_temp.evo(:'e_close');
SELECT connection_state FROM pgwa.instance_state WHERE instance_id = :'evo';
SELECT message_id AS queued FROM pgwa.send(:'evo', '5511999999999', 'while closed') \gset
SELECT count(*) AS claimed_while_closed FROM pgwa._claim(100, 60);
SELECT pg_temp.evo(:'e_close');
SELECT result->'events'->0->>'reason' AS reason FROM pg_temp.last_event();
SELECT e.id AS close_event FROM pg_temp.last_event() e \gset
SELECT pg_temp.evo(jsonb_set(:'e_close', '{data,state}', '"connecting"'));
SELECT connection_state FROM pgwa.instance_state WHERE instance_id = :'evo';
SELECT pg_temp.evo(:'e_close');
SELECT pg_temp.evo(:'e_qr');
SELECT q->>'code' LIKE '2@y8eK%' AS code, q->>'base64' LIKE 'data:image/png;base64,%' AS base64, q->'pairingCode' AS pairing_code
FROM pgwa.instance_qrcode(:'evo') q;
SELECT event, payload - 'instanceId' - 'receivedAt' AS payload FROM pgwa.events
WHERE tenant_id = :'t' AND event = 'instance.qrcode';
SELECT pg_temp.evo(:'e_open');
SELECT connection_state FROM pgwa.instance_state WHERE instance_id = :'evo';
SELECT m.seq = c.seq AS the_waiting_message_is_claimed
FROM pgwa._claim(100, 60) c JOIN pgwa.outbox m ON m.instance_id = c.instance_id AND m.id = :'queued';
SELECT pgwa.instance_qrcode(:'evo') IS NULL AS qrcode_gone_once_connected;
SELECT payload->>'state' AS state, payload->>'previousState' AS previous, payload->>'brokerState' AS broker,
       payload->'statusReason' AS reason
FROM pgwa.events WHERE tenant_id = :'t' AND event = 'instance.status' ORDER BY id;
-- an old close applied again (a replay) does not pause a connected instance
SELECT (pgwa.replay_event(:close_event))->>'status' AS replayed_close,
       (SELECT connection_state FROM pgwa.instance_state WHERE instance_id = :'evo') AS still;
-- a QR code older than the stored one does not replace it
SELECT pg_temp.evo(:'e_qr');
SELECT e.id AS qr_event FROM pg_temp.last_event() e \gset
SELECT pg_temp.evo(jsonb_set(:'e_qr', '{data,qrcode,code}', '"2@newer"'));
SELECT (pgwa.replay_event(:qr_event))->>'status' AS replayed_qr, pgwa.instance_qrcode(:'evo')->>'code' AS code;

-------------------------------------------------------------------------------
-- Evolution: malformed bodies are kept and answered with the field
-------------------------------------------------------------------------------
SELECT name, pg_temp.evo(body) FROM (VALUES ('data', :'e_bad_data'::jsonb), ('key', :'e_bad_key'),
	('no event', :'e_bad_event'), ('timestamp', :'e_bad_ts')) v(name, body);
SELECT status, error_sqlstate, error_field FROM pgwa.webhook_events
WHERE tenant_id = :'t' AND status = 'rejected' ORDER BY id;
SELECT count(*) AS nothing_of_them_applied FROM pgwa.messages WHERE instance_id = :'evo' AND broker_message_id = '3EB0';

-------------------------------------------------------------------------------
-- Cloud API: credentials, signature, handshake
-------------------------------------------------------------------------------
SELECT pgwa.set_meta_app_secret(:'meta', 'short');
SELECT pgwa.set_meta_app_secret('00000000-0000-0000-0000-000000000000', 'app-secret-0123456789abcdef');
SELECT pgwa.set_meta_app_secret(:'meta', 'app-secret-0123456789abcdef') AS set,
       pgwa.set_meta_app_secret(:'meta2', 'app-secret-0123456789abcdef') AS set2,
       pgwa.set_meta_app_secret(:'d360', 'd360-app-secret-0123456789') AS set3;
SELECT pgwa.set_meta_verify_token(:'meta', 'verify-token-0001') AS token, length(pgwa.set_meta_verify_token(:'meta2')) >= 32 AS generated;
SELECT pgwa.set_meta_verify_token(:'meta', 'short');
SELECT count(*) AS only_hashes FROM pgwa.meta_webhook_credentials
WHERE instance_id = :'meta' AND verify_token_hash = sha256('verify-token-0001') AND NOT (to_jsonb(meta_webhook_credentials)::text LIKE '%verify-token-0001%');
SELECT pgwa.instance_json(:'meta')::text LIKE '%app-secret%' AS api_shows_the_app_secret;

-- the handshake
CREATE FUNCTION pg_temp.challenge(q jsonb) RETURNS text LANGUAGE sql AS $$
	SELECT r.status || ' ' || (r.headers->>'Content-Type') || ' ' || r.body FROM pgwa.http('GET', '/webhooks/meta', q, '{}', NULL) r
$$;
SELECT pg_temp.challenge('{"hub.mode":"subscribe","hub.verify_token":"verify-token-0001","hub.challenge":"1158201444"}');
SELECT pg_temp.challenge('{"hub.mode":"subscribe","hub.verify_token":"verify-token-0002","hub.challenge":"1158201444"}');
SELECT pg_temp.challenge('{"hub.mode":"unsubscribe","hub.verify_token":"verify-token-0001","hub.challenge":"1158201444"}');
SELECT pg_temp.challenge('{"hub.mode":"subscribe","hub.challenge":"1158201444"}');
SELECT pg_temp.challenge('{"hub.mode":"subscribe","hub.verify_token":"verify-token-0001"}');
SELECT (pgwa.http('PUT', '/webhooks/meta')).status AS put_status;

-- the signature: of the raw body, by the app of the body's phone number
SELECT pg_temp.stored() AS stored_before \gset
SELECT pg_temp.meta(:'m_text', 'another-app-secret-0123456789');
SELECT pg_temp.post('/webhooks/meta', '{}', :'m_text');
SELECT pg_temp.post('/webhooks/meta', jsonb_build_object('x-hub-signature-256', pg_temp.sign('app-secret-0123456789abcdef', :'m_text')),
                    :'m_text' || ' ');
SELECT pg_temp.post('/webhooks/meta', '{"x-hub-signature-256":"sha256=00"}', :'m_text');
SELECT pg_temp.post('/webhooks/meta', '{"x-hub-signature-256":"sha1=00"}', :'m_text');
SELECT pg_temp.meta(replace(:'m_text', '106540352242922', '106540352242999'));
SELECT pg_temp.post('/webhooks/meta', '{"x-hub-signature-256":"sha256=00"}', '{"entry": ');
SELECT pg_temp.stored() - :stored_before AS nothing_stored_by_refusals;
SELECT pg_temp.meta(:'m_text');
SELECT status, dialect, payload_type, headers FROM pg_temp.last_event();
SELECT pg_temp.meta(:'m_text');
SELECT pg_temp.meta(:'m_image');
SELECT broker_message_id, type, content->'media'->>'mediaType' AS media, content->'media'->>'mediaId' AS media_id,
       metadata->'broker'->>'type' AS broker, metadata->>'source' AS source
FROM pgwa.messages WHERE instance_id = :'meta' ORDER BY broker_timestamp;

-- receipts: delivered and read in one body, then a late sent
SELECT pg_temp.sent(:'meta', '16505551234', 'wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA') AS mm \gset
SELECT pg_temp.meta(:'m_delread');
SELECT pg_temp.receipts(:'mm');
SELECT pg_temp.meta(:'m_sent');
SELECT pg_temp.receipts(:'mm');
SELECT to_char(delivered_at AT TIME ZONE 'UTC', 'HH24:MI:SS') AS delivered, to_char(read_at AT TIME ZONE 'UTC', 'HH24:MI:SS') AS read
FROM pgwa.outbox WHERE id = :'mm';
-- failed: the Graph error is kept, the message is a dead letter
SELECT pg_temp.sent(:'meta', '16505551234', 'wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI0RjBDNjQ5NTMyQjgyRkI0NzMA') AS mf \gset
SELECT pg_temp.meta(:'m_failed');
SELECT pg_temp.receipts(:'mf');
-- a bare change value whose message pgwa never sent
SELECT pg_temp.post('/webhooks/meta', jsonb_build_object('x-hub-signature-256', pg_temp.sign('d360-app-secret-0123456789', :'m_bare')), :'m_bare');

-- a batch of two entries and several numbers: one stored event per instance
SELECT pg_temp.meta(:'m_multi');
SELECT i.name, w.status, w.result->'accepted' AS accepted,
       (SELECT count(*) FROM jsonb_array_elements(w.result->'events') r WHERE r->>'result' = 'skipped') AS skipped
FROM pgwa.webhook_events w JOIN pgwa.instances i ON i.id = w.instance_id
WHERE w.tenant_id = :'t' AND w.id > (SELECT max(id) - 2 FROM pgwa.webhook_events WHERE tenant_id = :'t') ORDER BY i.name;
SELECT i.name, count(*) AS messages FROM pgwa.messages m JOIN pgwa.instances i ON i.id = m.instance_id
WHERE m.broker_message_id LIKE 'wamid.E%' GROUP BY 1 ORDER BY 1;
SELECT pg_temp.meta(:'m_multi');

-- coexistence fields go through the history pipeline (test 14_history_sync): contacts, history, echoes
SELECT pg_temp.meta(:'m_coex');
SELECT status, (SELECT string_agg(r->>'kind' || ':' || (r->>'result'), ',') FROM jsonb_array_elements(result->'events') r) AS kinds
FROM pg_temp.last_event();
SELECT e.id AS coex_event FROM pg_temp.last_event() e \gset
SELECT (pgwa.apply_event(:coex_event))->>'status' AS apply_again;
-- other fields and a change's errors are ignored, with their reasons
SELECT pg_temp.meta(:'m_other');
SELECT r->>'reason' AS reason, count(*) FROM pg_temp.last_event() e, jsonb_array_elements(e.result->'events') r GROUP BY 1 ORDER BY 1;

-- 360dialog: its envelope, signed by its app, or with the instance's webhook secret (it does not sign)
SELECT pg_temp.meta(:'m_360', 'd360-app-secret-0123456789');
SELECT pg_temp.post('/webhooks/meta', '{"x-api-key":"d360-secret-0123456789"}', replace(:'m_360', 'HBgNNDkx', 'HBgNNDky'));
SELECT headers FROM pg_temp.last_event();
SELECT pg_temp.post('/webhooks/meta', '{"x-api-key":"evo-secret-0123456789"}', :'m_360');
SELECT pg_temp.post('/webhooks/meta', '{"x-api-key":"d360-secret-0123456789","x-hub-signature-256":"sha256=00"}', :'m_360');
SELECT count(*) AS d360_messages FROM pgwa.messages WHERE instance_id = :'d360';

-- a signed but malformed body is stored as rejected; Meta is still told 200
SELECT pg_temp.meta(:'m_bad');
SELECT status, error_sqlstate, error_field FROM pg_temp.last_event();

-------------------------------------------------------------------------------
-- A failed application is kept and retried
-------------------------------------------------------------------------------
CREATE FUNCTION pg_temp.boom() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.status = 'read' AND NEW.broker_message_id = 'BAE5B2B2B2B2B2B1' THEN
		RAISE EXCEPTION 'outbox storage is down';
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER boom BEFORE UPDATE ON pgwa.outbox FOR EACH ROW EXECUTE FUNCTION pg_temp.boom();
SET client_min_messages = error;  -- the server log names the failed event
SELECT pg_temp.evo(jsonb_build_object('event', 'messages.update', 'instance', 'loja-v1',
	'data', '{"keyId":"BAE5B2B2B2B2B2B1","remoteJid":"5511912340000@s.whatsapp.net","fromMe":true,"status":"READ"}'::jsonb));
SELECT e.id AS failed_event FROM pg_temp.last_event() e \gset
SELECT status, attempts, last_error, next_attempt_at > now() AS retry_later FROM pg_temp.last_event();
SELECT pg_temp.receipts(id) FROM pgwa.outbox WHERE instance_id = :'evo1' AND broker_message_id = 'BAE5B2B2B2B2B2B1';
SELECT (pgwa.apply_event(:failed_event))->>'status' AS still_failing;
DROP TRIGGER boom ON pgwa.outbox;
RESET client_min_messages;
SELECT r->>'status' AS status, r->'accepted' AS accepted, r->'attempts' AS attempts FROM pgwa.apply_event(:failed_event) r;
SELECT pg_temp.receipts(id) FROM pgwa.outbox WHERE instance_id = :'evo1' AND broker_message_id = 'BAE5B2B2B2B2B2B1';

-------------------------------------------------------------------------------
-- The tenant's routes
-------------------------------------------------------------------------------
CREATE FUNCTION pg_temp.tenant(method text, path text, body text DEFAULT '') RETURNS text LANGUAGE sql AS $$
	SELECT r.status || ' ' || (r.body::jsonb - 'instance_id' - 'instanceId' - 'receivedAt' - 'base64' #- '{error,request_id}')::text
	FROM pgwa.http(method, path, '{}', jsonb_build_object('x-api-key', current_setting('pgwa_test.key')), body) r
$$;
SELECT set_config('pgwa_test.key', :'k', false) IS NOT NULL AS key_set;
SELECT pg_temp.tenant('POST', '/api/integrations/whatsapp/instances/' || :'meta' || '/meta-app-secret', '{"app_secret":"app-secret-0123456789abcdef"}');
SELECT pg_temp.tenant('POST', '/api/integrations/whatsapp/instances/' || :'meta' || '/meta-app-secret', '{}');
SELECT pg_temp.tenant('POST', '/api/integrations/whatsapp/instances/' || :'meta' || '/meta-app-secret', '{"app_secret":7}');
SELECT pg_temp.tenant('POST', '/api/integrations/whatsapp/instances/' || :'meta' || '/meta-verify-token', '{"verify_token":"verify-token-0003"}');
SELECT pg_temp.challenge('{"hub.mode":"subscribe","hub.verify_token":"verify-token-0003","hub.challenge":"42"}');
SELECT length(((pgwa.http('POST', '/api/integrations/whatsapp/instances/' || :'meta' || '/meta-verify-token', '{}',
        jsonb_build_object('x-api-key', :'k'), '')).body::jsonb->>'verify_token')) >= 32 AS generated;
SELECT pg_temp.tenant('GET', '/api/integrations/whatsapp/instances/' || :'evo1' || '/qrcode');
SELECT pg_temp.tenant('GET', '/api/integrations/whatsapp/instances/' || :'evo' || '/qrcode');
SELECT pg_temp.evo(jsonb_set(:'e_qr', '{data,qrcode,code}', '"2@latest"'));
SELECT pg_temp.tenant('GET', '/api/integrations/whatsapp/instances/' || :'evo' || '/qrcode');
SELECT pg_temp.tenant('POST', '/api/integrations/whatsapp/instances/' || :'evo' || '/qrcode');
SELECT tenant_id AS other FROM pgwa.create_tenant('webhooks-other') \gset
SELECT (pgwa.http('GET', '/api/integrations/whatsapp/instances/' || :'evo' || '/qrcode', '{}',
        jsonb_build_object('x-api-key', (SELECT api_key FROM pgwa.create_api_key(:'other', 'x'))))).status AS other_tenant;
SELECT pgwa.set_meta_app_secret(:'meta', NULL) AS still_set;
SELECT pg_temp.meta(:'m_text');

-------------------------------------------------------------------------------
-- Nothing secret is stored with the events; counters
-------------------------------------------------------------------------------
SELECT count(*) AS events_with_a_secret FROM pgwa.webhook_events
WHERE tenant_id = :'t' AND (headers::text ~ 'secret' OR body ? 'apikey' OR headers ? 'x-api-key'
                            OR headers ? 'authorization' OR headers ? 'x-hub-signature-256');
SELECT DISTINCT dialect, payload_type FROM pgwa.webhook_events WHERE tenant_id = :'t' ORDER BY 1;
SELECT c.result, c.reason, c.payload_type, sum(c.count) - coalesce(min(b.n), 0) AS added
FROM pgwa.webhook_counters c LEFT JOIN counters_before b USING (result, reason, payload_type)
WHERE c.payload_type ~ '^(evolution|meta)'
GROUP BY 1, 2, 3 ORDER BY 3, 1, 2;
