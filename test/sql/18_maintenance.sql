-- Maintenance: timeline reconciliation and backfill (seed 000), retention of
-- sent messages, and the pg_cron registration (pg_cron lives in another
-- database here: a clear error; test/e2e/13_history_sync.sh registers the
-- jobs where pg_cron is).
\set VERBOSITY terse
\set seed000 `cat test/fixtures/inbound/seed000_sample.json`
SELECT tenant_id AS t FROM pgwa.create_tenant('maintenance') \gset
SELECT pgwa.create_instance(:'t', 'mnt', 'broker', 'http://127.0.0.1:1', 'k',
       '{"broker_instance_id":"mnt-1","delay_min_ms":0,"delay_max_ms":0}') AS i \gset
SELECT pgwa.set_webhook_secret(:'i', 'maintenance-secret-0123') IS NOT NULL AS secret;

-- Two live messages of one contact: a ticket with its timeline.
SELECT pgwa.ingest_webhook('broker', '{"x-api-key":"maintenance-secret-0123"}',
       jsonb_set(jsonb_set(jsonb_set(:'seed000'::jsonb, '{instanceId}', '"mnt-1"'), '{payload,instanceId}', '"mnt-1"'),
                 '{id}', '"mnt-a"'))->>'status' AS first,
       pgwa.ingest_webhook('broker', '{"x-api-key":"maintenance-secret-0123"}',
       jsonb_set(jsonb_set(jsonb_set(jsonb_set(:'seed000'::jsonb, '{instanceId}', '"mnt-1"'), '{payload,instanceId}', '"mnt-1"'),
                 '{id}', '"mnt-b"'), '{payload,timestamp}', '"2024-05-03T10:00:00Z"'))->>'status' AS second;
SELECT pgwa.apply_pending() AS applied;
SELECT id AS ticket, metadata->'timeline' AS timeline FROM pgwa.tickets WHERE tenant_id = :'t' \gset
SELECT :'timeline'::jsonb AS timeline_as_built;

-- Nothing to do on a timeline that covers its messages.
SELECT pgwa.reconcile_timelines() AS changed;
-- A ticket whose timeline was lost (legacy data) is rebuilt from the
-- stored message times, and the tenant hears of it.
UPDATE pgwa.tickets SET metadata = '{"timeline": {}}' WHERE id = :'ticket';
SELECT pgwa.reconcile_timelines() AS changed;
SELECT metadata->'timeline' = :'timeline'::jsonb AS same_as_built FROM pgwa.tickets WHERE id = :'ticket';
SELECT event, payload->'tickets' AS tickets, payload->'changed' AS changed FROM pgwa.events
WHERE tenant_id = :'t' AND event = 'whatsapp.timeline.reconciled';
SELECT pgwa.reconcile_timelines() AS changed_again;
-- An older message than the timeline says (a replay, a late broker
-- timestamp) moves firstInboundAt back; nothing else changes.
UPDATE pgwa.messages SET broker_timestamp = '2024-05-01T08:00:00Z' WHERE tenant_id = :'t' AND broker_message_id = (
	SELECT broker_message_id FROM pgwa.messages WHERE tenant_id = :'t' ORDER BY broker_timestamp LIMIT 1);
SELECT pgwa.reconcile_timelines() AS changed;
SELECT metadata->'timeline'->>'firstInboundAt' AS first_inbound, metadata->'timeline'->>'lastInboundAt' AS last_inbound
FROM pgwa.tickets WHERE id = :'ticket';
-- backfill: tickets not updated lately are left out unless asked
UPDATE pgwa.tickets SET metadata = '{"timeline": {}}', updated_at = now() - interval '30 days' WHERE id = :'ticket';
SELECT pgwa.reconcile_timelines('2 days') AS recent_only, pgwa.reconcile_timelines('365 days') AS backfilled;
SELECT pgwa.reconcile_timelines('-1 day');

-- Retention of sent messages: only finished ones, only old ones.
SELECT message_id AS sent FROM pgwa.send(:'i', '5511977770001', 'sent long ago') \gset
SELECT message_id AS waiting FROM pgwa.send(:'i', '5511977770002', 'still waiting') \gset
SELECT message_id AS dead FROM pgwa.send(:'i', '5511977770003', 'a dead letter') \gset
UPDATE pgwa.outbox SET status = 'sent', sent_at = now() - interval '40 days', updated_at = now() - interval '40 days'
WHERE id = :'sent';
UPDATE pgwa.outbox SET status = 'dead', dead_at = now() - interval '40 days', updated_at = now() - interval '40 days'
WHERE id = :'dead';
UPDATE pgwa.outbox SET updated_at = now() - interval '40 days' WHERE id = :'waiting';
SELECT pgwa.purge_outbox('30 days') AS purged;
SELECT status FROM pgwa.outbox WHERE instance_id = :'i' ORDER BY status;
SELECT pgwa.purge_outbox('1 minute');

-- pg_cron is not in this database.
SELECT pgwa.schedule_maintenance();
