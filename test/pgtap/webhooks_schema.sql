-- Schema invariants of the broker dialect webhooks: the credential and QR
-- tables are keyed by instance_id, the verify token is kept as a hash only,
-- the API's signatures, and the routes refuse callers without credentials.
BEGIN;
SELECT plan(14);

SELECT col_is_pk('pgwa', 'meta_webhook_credentials', 'instance_id', 'Meta credentials are keyed by instance_id');
SELECT col_is_pk('pgwa', 'instance_qrcodes', 'instance_id', 'QR codes are keyed by instance_id');
SELECT is(
	(SELECT count(*)::int FROM pg_constraint c
	 WHERE c.contype = 'f' AND c.conrelid IN ('pgwa.meta_webhook_credentials'::regclass, 'pgwa.instance_qrcodes'::regclass)
	   AND c.confrelid <> 'pgwa.instances'::regclass),
	0, 'their foreign keys point only at instances');
SELECT hasnt_column('pgwa', 'meta_webhook_credentials', 'verify_token', 'the verify token is not stored in clear');
SELECT col_type_is('pgwa', 'meta_webhook_credentials', 'verify_token_hash', 'bytea', 'the verify token is stored as a hash');
SELECT col_not_null('pgwa', 'webhook_events', 'dialect', 'every stored event records its dialect');

SELECT has_function('pgwa', 'ingest_evolution', ARRAY['jsonb', 'jsonb']);
SELECT has_function('pgwa', 'ingest_meta', ARRAY['jsonb', 'text']);
SELECT has_function('pgwa', 'set_meta_app_secret', ARRAY['uuid', 'text']);
SELECT has_function('pgwa', 'set_meta_verify_token', ARRAY['uuid', 'text']);
SELECT function_returns('pgwa', 'instance_qrcode', ARRAY['uuid'], 'jsonb');

SELECT is((pgwa.http('POST', '/webhooks/whatsapp', '{}', '{}', '{"event":"messages.upsert","instance":"x"}')).status, 401,
          'the Evolution webhook without a secret: 401');
SELECT is((pgwa.http('POST', '/webhooks/meta', '{}', '{}', '{"object":"whatsapp_business_account","entry":[]}')).status, 401,
          'the Cloud API webhook without a signature: 401');
SELECT is((pgwa.http('GET', '/webhooks/meta', '{"hub.mode":"subscribe","hub.challenge":"1"}', '{}', NULL)).status, 403,
          'the handshake without a verify token: 403');

SELECT * FROM finish();
ROLLBACK;
