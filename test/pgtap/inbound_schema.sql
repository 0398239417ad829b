-- Inbound schema invariants: distribution keys first in every key (ARCHITECTURE
-- section 5), foreign keys only towards the small tenants/instances tables,
-- hashed webhook secrets, and the inbound API's signatures.
BEGIN;
SELECT plan(28);

SELECT has_table('pgwa', t, 'table pgwa.' || t || ' exists')
FROM unnest(ARRAY['webhook_secrets', 'webhook_events', 'ticket_queues', 'leads', 'conversations',
                  'tickets', 'events', 'webhook_counters']) t;

SELECT col_is_pk('pgwa', 'webhook_events', ARRAY['instance_id', 'id'], 'raw events are keyed by instance_id first');
SELECT col_is_pk('pgwa', 'conversations', ARRAY['instance_id', 'id'], 'conversations are keyed by instance_id first');
SELECT col_is_pk('pgwa', 'leads', ARRAY['tenant_id', 'id'], 'leads are keyed by tenant_id first');
SELECT col_is_pk('pgwa', 'tickets', ARRAY['tenant_id', 'id'], 'tickets are keyed by tenant_id first');
SELECT col_is_pk('pgwa', 'events', ARRAY['tenant_id', 'id'], 'events are keyed by tenant_id first');
SELECT col_is_pk('pgwa', 'ticket_queues', ARRAY['tenant_id', 'id'], 'ticket queues are keyed by tenant_id first');

-- every unique index (constraints and partial ones alike) starts with the distribution key
SELECT is(
	(SELECT count(*)::int FROM pg_index x JOIN pg_class r ON r.oid = x.indrelid
	 JOIN pg_namespace n ON n.oid = r.relnamespace
	 JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum = x.indkey[0]
	 WHERE n.nspname = 'pgwa' AND x.indisunique
	   AND ((r.relname IN ('webhook_events', 'conversations', 'messages', 'webhook_secrets') AND a.attname <> 'instance_id')
	     OR (r.relname IN ('leads', 'tickets', 'events', 'ticket_queues') AND a.attname <> 'tenant_id'))),
	0, 'every unique key of an inbound table starts with instance_id or tenant_id');
SELECT is(
	(SELECT count(*)::int FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid
	 JOIN pg_namespace n ON n.oid = r.relnamespace
	 WHERE n.nspname = 'pgwa' AND c.contype = 'f'
	   AND r.relname IN ('webhook_secrets', 'webhook_events', 'ticket_queues', 'leads', 'conversations', 'tickets', 'events')
	   AND c.confrelid NOT IN ('pgwa.tenants'::regclass, 'pgwa.instances'::regclass)),
	0, 'inbound foreign keys point only at tenants and instances');
SELECT has_index('pgwa', 'tickets', 'tickets_one_open', 'at most one open ticket per lead');

SELECT hasnt_column('pgwa', 'webhook_secrets', 'secret', 'webhook secrets are not stored in clear');
SELECT col_type_is('pgwa', 'webhook_secrets', 'secret_hash', 'bytea', 'webhook secrets are stored as a hash');

SELECT function_lang_is('pgwa', 'normalize_inbound', ARRAY['jsonb', 'text'], 'c', 'inbound normalisation is written in C');
SELECT has_function('pgwa', 'ingest_webhook', ARRAY['text', 'jsonb', 'jsonb']);
SELECT has_function('pgwa', 'apply_event', ARRAY['bigint']);
SELECT has_function('pgwa', 'replay_event', ARRAY['bigint']);
SELECT has_function('pgwa', 'retry_failed_events', ARRAY['integer']);
SELECT has_function('pgwa', 'set_webhook_secret', ARRAY['uuid', 'text', 'interval']);
SELECT has_function('pgwa', '_timeline_outbound', ARRAY['uuid', 'text', 'timestamp with time zone']);
SELECT function_returns('pgwa', 'webhook_metrics', ARRAY[]::text[], 'setof text', 'webhook_metrics() returns Prometheus lines');

-- the route answers JSON, never raises
SELECT is((pgwa.http('POST', '/api/integrations/whatsapp/webhook', '{}', '{}', '{}')).status, 401,
          'the webhook without a secret: 401');

SELECT * FROM finish();
ROLLBACK;
