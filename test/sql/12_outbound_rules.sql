-- Outbound rules that meet inbound state: the Cloud API's 24 h window
-- (WINDOW_CLOSED at enqueue) and the ticket timeline's outbound side kept
-- when the broker accepts a message.
\set VERBOSITY terse
SELECT tenant_id AS t FROM pgwa.create_tenant('outbound-rules') \gset
SELECT pgwa.create_instance(:'t', 'or-meta', 'meta', 'https://graph.test', 'tok',
       '{"settings":{"phone_number_id":"5550001"},"delay_min_ms":0,"delay_max_ms":0}') AS meta \gset
SELECT pgwa.create_instance(:'t', 'or-broker', 'broker', 'http://127.0.0.1:1', 'k',
       '{"delay_min_ms":0,"delay_max_ms":0}') AS brk \gset
UPDATE pgwa.instance_state SET head_due = NULL WHERE instance_id NOT IN (:'meta', :'brk');

-- A contact who never wrote: only templates through the Cloud API
SELECT * FROM pgwa.enqueue(:'meta', '{"to":"5511977770001","text":"hello"}');
SELECT status FROM pgwa.enqueue(:'meta', '{"to":"5511977770001","type":"template","template":{"name":"welcome","language":"pt_BR"}}');
-- other providers have no such rule
SELECT status FROM pgwa.send(:'brk', '5511977770001', 'hello through a broker');

-- The contact writes in (seed-000 webhook): a lead, an open ticket, a 24 h window
SELECT pgwa.set_webhook_secret(:'brk', 'outbound-rules-secret') IS NOT NULL AS secret_set;
SELECT r->>'status' AS stored FROM pgwa.ingest_webhook('broker', '{"x-api-key":"outbound-rules-secret"}',
	'{"id":"wamid.OR1","type":"MESSAGE_INBOUND","instanceId":"or-broker","timestamp":1714655100,
	  "payload":{"contact":{"phone":"+5511977770001","name":"Ana"},"message":{"conversation":"Oi!"},"metadata":{}}}') r;
-- the background worker's step
SELECT pgwa.apply_pending() AS applied;
SELECT state FROM pgwa.window_state(:'t', '5511977770001');
SELECT status FROM pgwa.enqueue(:'meta', '{"to":"5511977770001","text":"now a text is fine"}');
-- a closed window refuses again
UPDATE pgwa.leads SET window_expires_at = now() - interval '1 minute' WHERE tenant_id = :'t' AND phone = '5511977770001';
SELECT * FROM pgwa.enqueue(:'meta', '{"to":"5511977770001","text":"too late"}');
-- the error over HTTP: 422 WINDOW_CLOSED naming 'to'
SELECT api_key AS key FROM pgwa.create_api_key(:'t') \gset
SELECT status, body::jsonb->'error'->>'code' AS code, body::jsonb->'error'->>'field' AS field
FROM pgwa.http('POST', '/v1/instances/' || :'meta' || '/messages', '{}', jsonb_build_object('x-api-key', :'key'),
               '{"to":"5511977770001","text":"too late"}');

-- Outbound timeline: when the broker accepts a message to the lead, the open
-- ticket's firstOutboundAt/lastOutboundAt move and ticket.updated is emitted.
SELECT count(*) AS events_before FROM pgwa.events WHERE tenant_id = :'t' AND event = 'ticket.updated' \gset
SELECT metadata->'timeline' ? 'firstOutboundAt' AS had_outbound FROM pgwa.tickets WHERE tenant_id = :'t' AND status = 'open';
SELECT c.seq AS s1 FROM pgwa._claim(10, 60) c WHERE c.instance_id = :'brk' \gset
SELECT pgwa._complete(:'brk', :'s1', 'sent', 200, 'BRK-OR-1', NULL, now(), 2.0, NULL);
SELECT metadata->'timeline' ? 'firstOutboundAt' AS has_first_outbound,
       metadata->'timeline' ? 'lastOutboundAt' AS has_last_outbound
FROM pgwa.tickets WHERE tenant_id = :'t' AND status = 'open';
SELECT count(*) - :events_before AS new_ticket_updated FROM pgwa.events WHERE tenant_id = :'t' AND event = 'ticket.updated';
-- a message to someone who is not a lead touches no ticket
SELECT status FROM pgwa.send(:'brk', '5511977779999', 'a stranger');
SELECT c.seq AS s2 FROM pgwa._claim(10, 60) c WHERE c.instance_id = :'brk' \gset
SELECT pgwa._complete(:'brk', :'s2', 'sent', 200, 'BRK-OR-2', NULL, now(), 2.0, NULL);
SELECT count(*) - :events_before AS still_one FROM pgwa.events WHERE tenant_id = :'t' AND event = 'ticket.updated';
