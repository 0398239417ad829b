-- Coexistence history sync (seed 002): contacts (smb_app_state_sync),
-- history chunks, media sent later, echoes of messages sent from the app,
-- the sync's state machine, and then live messages from history leads and
-- new contacts. Fixtures in test/fixtures/coexistence, from Meta's and
-- 360dialog's documentation; each instance has its own phone number id.
\set VERBOSITY terse
\set state `cat test/fixtures/coexistence/meta_state_sync.json`
\set chunk `cat test/fixtures/coexistence/meta_history_chunk.json`
\set last `cat test/fixtures/coexistence/meta_history_last.json`
\set media `cat test/fixtures/coexistence/meta_history_media.json`
\set declined `cat test/fixtures/coexistence/meta_history_declined.json`
\set echoes `cat test/fixtures/coexistence/meta_echoes.json`
\set d360chunk `cat test/fixtures/coexistence/d360_history_chunk.json`
\set live `cat test/fixtures/meta/text.json`
SELECT tenant_id AS t FROM pgwa.create_tenant('history') \gset
SELECT pgwa.create_instance(:'t', 'hist', 'meta', 'http://127.0.0.1:1', 'k',
       '{"settings":{"phone_number_id":"551100000001"}}') AS i \gset
SELECT pgwa.create_instance(:'t', 'hist-b', 'meta', 'http://127.0.0.1:1', 'k',
       '{"settings":{"phone_number_id":"551100000002"}}') AS ib \gset
SELECT pgwa.create_instance(:'t', 'hist-evo', 'evolution', 'http://127.0.0.1:1', 'k',
       '{"broker_instance_id":"hist-evo"}') AS evo \gset
SELECT pgwa.set_webhook_secret(:'i', 'hist-secret-a-0123456789') IS NOT NULL AS a,
       pgwa.set_webhook_secret(:'ib', 'hist-secret-b-0123456789') IS NOT NULL AS b;

-- A webhook for instance a (or b): stored, applied, and what came of it.
CREATE FUNCTION pg_temp.hook(body text, pnid text DEFAULT '551100000001',
                             secret text DEFAULT 'hist-secret-a-0123456789')
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	r jsonb := pgwa.ingest_meta(jsonb_build_object('x-api-key', secret), replace(body, '106540352242922', pnid));
	v text;
BEGIN
	PERFORM pgwa.apply_pending();
	SELECT string_agg(w.status || coalesce(' ' || w.error_sqlstate || ' ' || w.error_field || ': ' || w.last_error, '')
	                  || coalesce(' ' || ((w.result->'events'->0) - 'payloadType' - 'kind' - 'leadId' - 'ticketId' - 'messageId')::text, ''), '; ' ORDER BY w.id)
	INTO v FROM pgwa.webhook_events w
	WHERE w.id = (r->>'eventId')::bigint
	   OR w.id IN (SELECT x::bigint FROM jsonb_array_elements_text(coalesce(r->'eventIds', '[]')) x);
	RETURN coalesce(r->>'httpStatus', '?') || ' ' || coalesce(r->>'status', r->'error'->>'code', '') || ' -> ' || coalesce(v, '');
END $$;
CREATE FUNCTION pg_temp.sync(p uuid) RETURNS text LANGUAGE sql AS $$
	SELECT format('%s %s%% phase=%s chunk=%s chunks=%s messages=%s contacts=%s started=%s completed=%s error=%s',
	              s->>'status', s->>'progress', s->>'phase', s->>'chunkOrder', s->>'chunks', s->>'messagesImported',
	              s->>'contactsImported', s->>'startedAt' IS NOT NULL, s->>'completedAt' IS NOT NULL, s->'error')
	FROM pgwa.history_sync_status(p) s
$$;

-- Nothing asked yet: not supported. Only a Cloud API instance can ask.
SELECT pg_temp.sync(:'i');
SELECT pgwa.request_history_sync(:'evo');
SELECT pgwa.history_sync_status('00000000-0000-0000-0000-000000000000');
SELECT (pgwa.request_history_sync(:'i'))->>'status' AS requested;
SELECT action, details FROM pgwa.audit_log WHERE instance_id = :'i' ORDER BY id;

-- 1. Contacts: three added, one removed; leads with source state_sync, no ticket.
SELECT pg_temp.hook(:'state');
SELECT pg_temp.sync(:'i');
SELECT phone, name, push_name, source, active, deleted_at IS NOT NULL AS deleted, window_expires_at
FROM pgwa.leads WHERE tenant_id = :'t' ORDER BY phone;

-- A contact removed in the app: inactive; an older add of it that arrives
-- late changes nothing.
\set rm '{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"smb_app_state_sync","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"state_sync":[{"type":"contact","contact":{"phone_number":"5511976543210"},"action":"remove","metadata":{"timestamp":"1752700000"}}]}}]}]}'
SELECT pg_temp.hook(:'rm');
SELECT pg_temp.hook(replace(replace(:'rm', '"remove"', '"add"'), '1752700000', '1752600000'));
SELECT phone, active, deleted_at FROM pgwa.leads WHERE tenant_id = :'t' AND phone = '5511976543210';

-- 2. A history chunk: leads (history_sync when new), a conversation per
-- lead, messages by wamid with direction and status; no ticket, no window.
SELECT pg_temp.hook(:'chunk');
SELECT pg_temp.sync(:'i');
SELECT l.phone, l.source, l.window_expires_at, l.last_message_at, c.remote
FROM pgwa.leads l LEFT JOIN pgwa.conversations c ON c.lead_id = l.id AND c.instance_id = :'i'
WHERE l.tenant_id = :'t' ORDER BY l.phone;
SELECT remote, direction, type, status, source, broker_timestamp, content->>'text' AS text,
       content->'media'->>'mediaId' AS media_id, metadata->>'historyStatus' AS history_status
FROM pgwa.messages WHERE instance_id = :'i' ORDER BY broker_timestamp, broker_message_id;
SELECT count(*) AS tickets FROM pgwa.tickets WHERE tenant_id = :'t';

-- The same chunk again, and in 360dialog's envelope: nothing new.
SELECT pg_temp.hook(:'chunk');
SELECT pg_temp.hook(:'d360chunk');
SELECT pg_temp.sync(:'i');
SELECT count(*) AS messages FROM pgwa.messages WHERE instance_id = :'i';

-- The media of a placeholder, sent later: the content with the media id.
SELECT pg_temp.hook(:'media');
SELECT type, content->'media'->>'mediaId' AS media_id, content->>'text' AS text FROM pgwa.messages
WHERE instance_id = :'i' AND broker_message_id = (:'media'::jsonb)#>>'{entry,0,changes,0,value,messages,0,id}';

-- Contradictory and out-of-range input: a clear error, the state unchanged.
SELECT pg_temp.hook(replace(:'chunk', '"progress": 40', '"progress": 41'));
SELECT pg_temp.hook(replace(:'chunk', '"progress": 40', '"progress": 140'));
SELECT pg_temp.hook(replace(:'chunk', '"phase": 0', '"phase": 3'));
SELECT pg_temp.hook(replace(:'chunk', '"chunk_order": 1', '"chunk_order": -1'));
SELECT pg_temp.sync(:'i');

-- 3. The last chunk (progress 100): completed.
SELECT pg_temp.hook(:'last');
SELECT pg_temp.sync(:'i');
SELECT action FROM pgwa.audit_log WHERE instance_id = :'i' ORDER BY id;
SELECT event, payload->>'status' AS status, payload->>'progress' AS progress FROM pgwa.events
WHERE tenant_id = :'t' AND event LIKE 'history_sync%' ORDER BY id;

-- 4. Echoes of messages sent from the app: one pgwa sent (now confirmed,
-- source app_echo), one it never had (recorded).
INSERT INTO pgwa.messages (instance_id, tenant_id, direction, broker_message_id, remote, type, content, status)
VALUES (:'i', :'t', 'outbound', (:'echoes'::jsonb)#>>'{entry,0,changes,0,value,message_echoes,0,id}',
        '5511912345678', 'text', '{"type":"text"}', 'queued');
SELECT pg_temp.hook(:'echoes');
SELECT pg_temp.hook(:'echoes');
SELECT direction, status, source, content->>'text' AS text, metadata ? 'metaConfirmedAt' AS confirmed
FROM pgwa.messages WHERE instance_id = :'i' AND source = 'app_echo' ORDER BY broker_message_id;

-- 5. Then live (seed 002 section 5): a history lead writes, a ticket opens
-- with originatedFrom history_lead and no window; a new contact gets 24 h.
SELECT pg_temp.hook(replace(replace(:'live', '16505551234', '5511987654321'), 'wamid.', 'wamid.live1.'));
SELECT pg_temp.hook(replace(replace(:'live', '16505551234', '5511955554444'), 'wamid.', 'wamid.live2.'));
SELECT l.phone, l.source AS lead_source, t.source, t.originated_from, l.window_expires_at IS NOT NULL AS has_window,
       (pgwa.ticket_json(t.id))->>'window' AS "window"
FROM pgwa.tickets t JOIN pgwa.leads l ON l.tenant_id = t.tenant_id AND l.id = t.lead_id
WHERE t.tenant_id = :'t' ORDER BY l.phone;

-- 6. Another instance: the business declined; a chunk after that is refused.
SELECT (pgwa.request_history_sync(:'ib'))->>'status' AS requested;
SELECT pg_temp.hook(:'declined', '551100000002', 'hist-secret-b-0123456789');
SELECT pg_temp.sync(:'ib');
SELECT pg_temp.hook(:'chunk', '551100000002', 'hist-secret-b-0123456789');
SELECT pg_temp.sync(:'ib');

-- 7. The stalled check: asked long ago, nothing came: failed, one alert.
UPDATE pgwa.history_syncs SET status = 'pending_consent', requested_at = now() - interval '2 hours',
       error_code = NULL, error_message = NULL WHERE instance_id = :'ib';
SELECT pgwa.check_stalled_history_syncs() AS marked;
SELECT pgwa.check_stalled_history_syncs() AS marked_again;
SELECT pg_temp.sync(:'ib');
SELECT event, payload->>'status' AS status, payload->>'minutes' AS minutes FROM pgwa.events
WHERE tenant_id = :'t' AND event = 'whatsapp.history_sync.stalled';
-- a chunk resumes a failed sync
SELECT pg_temp.hook(:'chunk', '551100000002', 'hist-secret-b-0123456789');
SELECT pg_temp.sync(:'ib');
