-- Schema invariants: distribution keys in primary keys, hashed keys only,
-- the public API's signatures, and the error-code table.
BEGIN;
SELECT plan(25);

SELECT has_schema('pgwa');
SELECT has_table('pgwa', t, 'table pgwa.' || t || ' exists')
FROM unnest(ARRAY['tenants', 'api_keys', 'instances', 'instance_state', 'outbox', 'attempts', 'messages']) t;

-- ARCHITECTURE section 5: instance-scoped tables carry instance_id in their primary key
SELECT col_is_pk('pgwa', 'outbox', ARRAY['instance_id', 'seq'], 'outbox is keyed by (instance_id, seq)');
SELECT col_is_pk('pgwa', 'attempts', ARRAY['instance_id', 'id'], 'attempts are keyed by instance_id first');
SELECT col_is_pk('pgwa', 'messages', ARRAY['instance_id', 'id'], 'messages are keyed by instance_id first');
SELECT col_is_pk('pgwa', 'instance_state', 'instance_id', 'instance_state is keyed by instance_id');
SELECT is(
	(SELECT count(*)::int FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid
	 JOIN pg_namespace n ON n.oid = r.relnamespace
	 WHERE n.nspname = 'pgwa' AND c.contype = 'u' AND r.relname IN ('outbox', 'messages')
	   AND NOT EXISTS (SELECT 1 FROM unnest(c.conkey) k JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum = k
	                   WHERE a.attname = 'instance_id')),
	0, 'every unique constraint of instance-scoped tables includes instance_id');

-- API keys: only a hash is stored
SELECT hasnt_column('pgwa', 'api_keys', 'api_key', 'api_keys has no plaintext key column');
SELECT col_type_is('pgwa', 'api_keys', 'key_hash', 'bytea', 'api_keys stores a binary hash');

-- the SQL API
SELECT has_function('pgwa', 'send', ARRAY['uuid', 'text', 'text', 'jsonb', 'text']);
SELECT has_function('pgwa', 'enqueue', ARRAY['uuid', 'jsonb', 'text']);
SELECT has_function('pgwa', 'create_tenant', ARRAY['text']);
SELECT has_function('pgwa', 'create_instance', ARRAY['uuid', 'text', 'text', 'text', 'text', 'jsonb']);
SELECT has_function('pgwa', 'http', ARRAY['text', 'text', 'jsonb', 'jsonb', 'text']);
SELECT function_lang_is('pgwa', 'normalize_message', ARRAY['jsonb'], 'c', 'normalisation is written in C');

-- error codes: one per SQLSTATE, each a client-visible HTTP status
SELECT is((SELECT count(*)::int FROM pgwa.error_codes WHERE http_status NOT BETWEEN 400 AND 599), 0,
          'every error code maps to a 4xx or 5xx status');
SELECT is((SELECT count(*)::int FROM pgwa.error_codes WHERE sqlstate !~ '^PW[0-9A-Z]{3}$'), 0,
          'every pgwa SQLSTATE is in class PW');

-- the router answers JSON errors, never raises
SELECT is((pgwa.http('GET', '/no/such/route')).status, 404, 'unknown route: 404');
SELECT is((pgwa.http('GET', '/v1/messages/00000000-0000-0000-0000-000000000000')).status, 401,
          'a tenant route without a key: 401');

SELECT * FROM finish();
ROLLBACK;
