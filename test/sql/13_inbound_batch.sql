-- Inbound batches: the inbound appliers apply stored webhook events many at
-- a time (pgwa.apply_pending); the rows must be exactly those of applying
-- the same events one by one, in order. Tenant a applies after every
-- webhook, tenant b everything at once; their leads, conversations,
-- messages, tickets and events are then compared.
\set VERBOSITY terse
\set seed000 `cat test/fixtures/inbound/seed000_sample.json`
\set lid `cat test/fixtures/inbound/envelope_lid.json`
\set batch `cat test/fixtures/inbound/envelope_batch.json`
\set rgroup `cat test/fixtures/inbound/baileys_group_lid.json`
\set rtext `cat test/fixtures/inbound/baileys_text_quote.json`
SELECT tenant_id AS ta FROM pgwa.create_tenant('batch-a') \gset
SELECT tenant_id AS tb FROM pgwa.create_tenant('batch-b') \gset
SELECT pgwa.create_instance(:'ta', 'bat', 'broker', 'http://127.0.0.1:1', 'k',
       '{"broker_instance_id":"bat-a","settings":{"raw_fallback":true}}') AS ia \gset
SELECT pgwa.create_instance(:'tb', 'bat', 'broker', 'http://127.0.0.1:1', 'k',
       '{"broker_instance_id":"bat-b","settings":{"raw_fallback":true}}') AS ib \gset
SELECT pgwa.set_webhook_secret(:'ia', 'batch-secret-a-0123456789') IS NOT NULL AS a,
       pgwa.set_webhook_secret(:'ib', 'batch-secret-b-0123456789') IS NOT NULL AS b;
-- a history lead (seed 002) and a lead whose ticket is closed, in both
INSERT INTO pgwa.leads (tenant_id, phone, name, source)
SELECT t, '5511966660001', 'Histórico', 'history_sync' FROM unnest(ARRAY[:'ta', :'tb']::uuid[]) t;

-- The webhooks, in order: new contacts, replies, redeliveries, a LID that
-- meets its phone, group messages, an array, a raw upsert of two, the
-- history lead writing, thirty messages of ten contacts interleaved.
CREATE TEMP TABLE fixture (n int, body jsonb);
INSERT INTO fixture VALUES
	(1, jsonb_set(:'seed000'::jsonb, '{id}', '"b-1"')),
	(2, jsonb_set(jsonb_set(:'seed000'::jsonb, '{id}', '"b-2"'), '{payload,timestamp}', '"2024-05-02T14:00:00Z"')),
	(3, jsonb_set(:'seed000'::jsonb, '{id}', '"b-1"')),
	(4, :'lid'::jsonb),
	(5, :'rgroup'::jsonb),
	(6, :'batch'::jsonb),
	(7, :'rtext'::jsonb),
	(8, jsonb_set(jsonb_set(:'seed000'::jsonb, '{id}', '"b-hist"'), '{payload,contact,phone}', '"5511966660001"')),
	(9, jsonb_set(jsonb_set(:'seed000'::jsonb, '{id}', '"b-2"'), '{payload,timestamp}', '"2024-05-02T14:00:00Z"'));
INSERT INTO fixture
SELECT 100 + g, jsonb_set(jsonb_set(jsonb_set(:'seed000'::jsonb,
           '{id}', to_jsonb('b-gen-' || g)),
           '{payload,contact,phone}', to_jsonb('55119777700' || lpad((g % 10)::text, 2, '0'))),
           '{payload,timestamp}', to_jsonb(1714660000 + g))
FROM generate_series(1, 30) g;
-- each tenant's copy names its own instance (every event of an array)
CREATE FUNCTION pg_temp.rekey(e jsonb, p_key text) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_set(CASE WHEN e->'payload' ? 'instanceId'
	                      THEN jsonb_set(e, '{payload,instanceId}', to_jsonb(p_key)) ELSE e END,
	                 '{instanceId}', to_jsonb(p_key))
$$;
CREATE FUNCTION pg_temp.webhooks(p_key text) RETURNS TABLE (n int, body jsonb) LANGUAGE sql AS $$
	SELECT f.n, CASE jsonb_typeof(f.body)
	                WHEN 'array' THEN (SELECT jsonb_agg(pg_temp.rekey(e, p_key) ORDER BY o)
	                                   FROM jsonb_array_elements(f.body) WITH ORDINALITY AS x(e, o))
	                ELSE pg_temp.rekey(f.body, p_key) END
	FROM fixture f ORDER BY f.n
$$;

-- a: each webhook applied before the next one comes
SELECT count(*) AS stored_a, sum(applied) AS applied_one_at_a_time FROM (
	SELECT (pgwa.ingest_webhook('broker', '{"x-api-key":"batch-secret-a-0123456789"}', w.body)->>'eventId') IS NOT NULL,
	       pgwa.apply_pending(1) AS applied
	FROM pg_temp.webhooks('bat-a') w ORDER BY w.n) s;
-- b: all stored, then one batch
SELECT count(*) AS stored_b FROM (
	SELECT pgwa.ingest_webhook('broker', '{"x-api-key":"batch-secret-b-0123456789"}', w.body)
	FROM pg_temp.webhooks('bat-b') w ORDER BY w.n) s;
-- one batch, as the appliers take it; it must not need one by one (that
-- would raise here)
SELECT pgwa._apply_batch(array_agg(id ORDER BY id), false) IS NOT NULL AS applied_in_one_batch
FROM pgwa.webhook_events WHERE tenant_id = :'tb' AND status = 'received';
SELECT tenant_id = :'ta' AS a, status, count(*) FROM pgwa.webhook_events
WHERE tenant_id IN (:'ta', :'tb') GROUP BY 1, 2 ORDER BY 1, 2;

-- What each tenant holds, without ids and arrival times.
CREATE FUNCTION pg_temp.state(p_tenant uuid) RETURNS SETOF text LANGUAGE sql AS $$
	SELECT format('lead %s %s %s %s %s %s %s %s', l.phone, l.lid, l.name, l.push_name, l.source,
	              l.first_inbound_at, l.last_inbound_at, l.window_expires_at IS NOT NULL)
	FROM pgwa.leads l WHERE l.tenant_id = p_tenant
	UNION ALL
	SELECT format('conversation %s %s %s %s', coalesce(l.phone, l.lid), c.remote, c.last_message_at, c.last_inbound_at)
	FROM pgwa.conversations c JOIN pgwa.leads l ON l.tenant_id = c.tenant_id AND l.id = c.lead_id
	WHERE c.tenant_id = p_tenant
	UNION ALL
	SELECT format('ticket %s %s %s %s %s', coalesce(l.phone, l.lid), t.status, t.originated_from, t.source,
	              t.metadata->'timeline')
	FROM pgwa.tickets t JOIN pgwa.leads l ON l.tenant_id = t.tenant_id AND l.id = t.lead_id
	WHERE t.tenant_id = p_tenant
	UNION ALL
	SELECT format('message %s %s %s %s %s %s %s %s %s', m.broker_message_id, m.direction, m.type, m.status,
	              m.source, coalesce(l.phone, l.lid), m.conversation_id IS NOT NULL,
	              (SELECT coalesce(tl.phone, tl.lid) FROM pgwa.tickets t JOIN pgwa.leads tl
	               ON tl.tenant_id = t.tenant_id AND tl.id = t.lead_id WHERE t.id = m.ticket_id), m.content)
	FROM pgwa.messages m LEFT JOIN pgwa.leads l ON l.tenant_id = m.tenant_id AND l.id = m.lead_id
	WHERE m.tenant_id = p_tenant
	UNION ALL
	-- a batch sends one ticket.updated per ticket, not one per message
	SELECT format('event %s %s', e.event, e.payload - 'messageId' - 'leadId' - 'ticketId' - 'conversationId'
	                                               - 'instanceId' - 'tenantId' #- '{metadata,broker,instanceId}')
	FROM pgwa.events e WHERE e.tenant_id = p_tenant AND e.event <> 'ticket.updated'
$$;
SELECT count(*) AS rows_a, count(*) FILTER (WHERE s LIKE 'message %') AS messages,
       count(*) FILTER (WHERE s LIKE 'lead %') AS leads, count(*) FILTER (WHERE s LIKE 'ticket %') AS tickets
FROM pg_temp.state(:'ta') s;
SELECT 'only one at a time' AS "where", s FROM (SELECT * FROM pg_temp.state(:'ta') EXCEPT ALL SELECT * FROM pg_temp.state(:'tb')) x(s)
UNION ALL
SELECT 'only batched', s FROM (SELECT * FROM pg_temp.state(:'tb') EXCEPT ALL SELECT * FROM pg_temp.state(:'ta')) x(s);
-- A batch that cannot tell alone: a LID-only sender and, in another event,
-- the same LID with its phone (one lead, two senders). The appliers apply
-- such a batch event by event, message by message; the result is the same.
INSERT INTO fixture VALUES (200, jsonb_build_object('event', 'WHATSAPP_MESSAGES_UPSERT', 'instanceId', 'x',
	'payload', jsonb_build_object('messages', jsonb_build_array(jsonb_build_object(
		'key', jsonb_build_object('remoteJid', '44444444444444@lid', 'fromMe', false, 'id', 'B-LID-1'),
		'messageTimestamp', 1714670000, 'pushName', 'Lia', 'message', jsonb_build_object('conversation', 'oi'))))));
INSERT INTO fixture VALUES (201, jsonb_build_object('event', 'WHATSAPP_MESSAGES_UPSERT', 'instanceId', 'x',
	'payload', jsonb_build_object('messages', jsonb_build_array(jsonb_build_object(
		'key', jsonb_build_object('remoteJid', '44444444444444@lid', 'senderPn', '5511988880044@s.whatsapp.net',
		                          'fromMe', false, 'id', 'B-LID-2'),
		'messageTimestamp', 1714670001, 'pushName', 'Lia', 'message', jsonb_build_object('conversation', 'sou eu'))))));
SELECT count(*) AS stored_a, sum(applied) AS applied_one_at_a_time FROM (
	SELECT (pgwa.ingest_webhook('broker', '{"x-api-key":"batch-secret-a-0123456789"}', w.body)->>'eventId') IS NOT NULL,
	       pgwa.apply_pending(1) AS applied
	FROM pg_temp.webhooks('bat-a') w WHERE w.n >= 200 ORDER BY w.n) s;
SELECT count(*) AS stored_b FROM (
	SELECT pgwa.ingest_webhook('broker', '{"x-api-key":"batch-secret-b-0123456789"}', w.body)
	FROM pg_temp.webhooks('bat-b') w WHERE w.n >= 200 ORDER BY w.n) s;
SELECT pgwa._apply_batch(array_agg(id ORDER BY id), false)
FROM pgwa.webhook_events WHERE tenant_id = :'tb' AND status = 'received';
SELECT pgwa.apply_pending(1000) AS applied_one_by_one_after_all;
SELECT s FROM pg_temp.state(:'ta') s WHERE s LIKE '%44444444444444@lid%' OR s LIKE '%5511988880044%' ORDER BY 1;
SELECT 'only one at a time' AS "where", s FROM (SELECT * FROM pg_temp.state(:'ta') EXCEPT ALL SELECT * FROM pg_temp.state(:'tb')) x(s)
UNION ALL
SELECT 'only batched', s FROM (SELECT * FROM pg_temp.state(:'tb') EXCEPT ALL SELECT * FROM pg_temp.state(:'ta')) x(s);

-- the last ticket.updated of every ticket agrees
SELECT count(*) AS tickets_whose_last_update_differs FROM (
	SELECT DISTINCT ON (e.payload->>'ticketId') coalesce(l.phone, l.lid) AS who, e.payload->'timeline'->'lastInboundAt' AS last_in
	FROM pgwa.events e JOIN pgwa.tickets t ON t.id = (e.payload->>'ticketId')::uuid
	JOIN pgwa.leads l ON l.tenant_id = t.tenant_id AND l.id = t.lead_id
	WHERE e.tenant_id = :'ta' AND e.event = 'ticket.updated' ORDER BY e.payload->>'ticketId', e.id DESC) a
FULL JOIN (
	SELECT DISTINCT ON (e.payload->>'ticketId') coalesce(l.phone, l.lid) AS who, e.payload->'timeline'->'lastInboundAt' AS last_in
	FROM pgwa.events e JOIN pgwa.tickets t ON t.id = (e.payload->>'ticketId')::uuid
	JOIN pgwa.leads l ON l.tenant_id = t.tenant_id AND l.id = t.lead_id
	WHERE e.tenant_id = :'tb' AND e.event = 'ticket.updated' ORDER BY e.payload->>'ticketId', e.id DESC) b
USING (who) WHERE a.last_in IS DISTINCT FROM b.last_in;

-- The appliers claim from a point in time, a little before their last
-- batch (pgwa._apply_pending): an event received before it is left for the
-- sweep (pgwa.retry_failed_events), one received at or after it is taken.
BEGIN;
SELECT pgwa.ingest_webhook('broker', '{"x-api-key":"batch-secret-b-0123456789"}',
       pg_temp.rekey(jsonb_set(:'seed000'::jsonb, '{id}', '"b-window"'), 'bat-b'))->>'status' AS stored;
SELECT * FROM pgwa._apply_pending(10, now() + interval '1 second');
SELECT taken, oldest = now() AS oldest_is_its_receipt FROM pgwa._apply_pending(10, now());
SELECT status FROM pgwa.webhook_events WHERE body->>'id' = 'b-window';
ROLLBACK;
BEGIN;
SELECT pgwa.ingest_webhook('broker', '{"x-api-key":"batch-secret-b-0123456789"}',
       pg_temp.rekey(jsonb_set(:'seed000'::jsonb, '{id}', '"b-sweep"'), 'bat-b'))->>'status' AS stored;
SELECT * FROM pgwa._apply_pending(10, now() + interval '1 second');
SELECT pgwa.retry_failed_events(10) AS swept;
SELECT status FROM pgwa.webhook_events WHERE body->>'id' = 'b-sweep';
ROLLBACK;

-- Deleting an instance deletes its events, messages and conversations;
-- deleting a tenant its leads and tickets (triggers: these tables have no
-- foreign key to their busy parent row).
DELETE FROM pgwa.instances WHERE id = :'ia';
SELECT (SELECT count(*) FROM pgwa.webhook_events WHERE instance_id = :'ia') AS events,
       (SELECT count(*) FROM pgwa.messages WHERE instance_id = :'ia') AS messages,
       (SELECT count(*) FROM pgwa.conversations WHERE instance_id = :'ia') AS conversations,
       (SELECT count(*) FROM pgwa.leads WHERE tenant_id = :'ta') > 0 AS leads_stay_with_the_tenant;
DELETE FROM pgwa.tenants WHERE id = :'tb';
SELECT (SELECT count(*) FROM pgwa.leads WHERE tenant_id = :'tb') AS leads,
       (SELECT count(*) FROM pgwa.tickets WHERE tenant_id = :'tb') AS tickets,
       (SELECT count(*) FROM pgwa.messages WHERE instance_id = :'ib') AS messages;
