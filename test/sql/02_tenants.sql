-- Tenants, API keys (stored hashed, shown once, revocable) and instances.
\set VERBOSITY terse
SELECT tenant_id AS t1, api_key AS k1 FROM pgwa.create_tenant('acme') \gset
SELECT :'k1' ~ '^pgwa_[0-9a-f]{40}$' AS key_format;
-- only the hash is stored
SELECT count(*) AS rows_with_plain_key FROM pgwa.api_keys WHERE key_prefix = :'k1' OR encode(key_hash, 'escape') LIKE '%' || :'k1' || '%';
SELECT key_hash = sha256(convert_to(:'k1', 'UTF8')) AS hash_matches, role, label FROM pgwa.api_keys WHERE tenant_id = :'t1';
SELECT tenant_id = :'t1' AS same_tenant, role FROM pgwa.authenticate(:'k1');
SELECT count(*) FROM pgwa.authenticate('pgwa_0000000000000000000000000000000000000000');
SELECT key_id AS k2id, api_key AS k2 FROM pgwa.create_api_key(:'t1', 'rotation') \gset
SELECT count(*) AS live_keys FROM pgwa.api_keys WHERE tenant_id = :'t1' AND revoked_at IS NULL;
SELECT pgwa.revoke_api_key(:'k2id') AS revoked, pgwa.revoke_api_key(:'k2id') AS revoked_again;
SELECT count(*) AS after_revoke FROM pgwa.authenticate(:'k2');
SELECT pgwa.create_admin_key() ~ '^pgwa_' AS admin_key;
SELECT pgwa.create_tenant('');
SELECT pgwa.create_api_key('00000000-0000-0000-0000-000000000000');

-- instances
SELECT pgwa.create_instance(:'t1', 'main', 'broker', 'http://127.0.0.1:1/', 'secret') AS i1 \gset
SELECT name, provider, broker_instance_id, delay_min_ms, delay_max_ms, max_attempts, connection_state, configured, has_api_key
FROM jsonb_to_record(pgwa.instance_json(:'i1')) AS x(name text, provider text, broker_instance_id text, delay_min_ms int,
     delay_max_ms int, max_attempts int, connection_state text, configured bool, has_api_key bool);
SELECT pgwa.instance_json(:'i1') ? 'broker_api_key' AS exposes_secret;
SELECT pgwa.create_instance(:'t1', 'evo', 'evolution', 'https://evo.test', 'k', '{"broker_instance_id":"business","delay_min_ms":0,"delay_max_ms":0}') IS NOT NULL AS evo;
SELECT broker_instance_id, delay_min_ms, delay_max_ms FROM pgwa.instances WHERE name = 'evo';
SELECT pgwa.create_instance(:'t1', 'meta1', 'meta', 'https://graph.test', 'tok') IS NOT NULL AS meta_without_phone;
SELECT pgwa._instance_configured(i) FROM pgwa.instances i WHERE name = 'meta1';
SELECT pgwa.create_instance(:'t1', 'main');
SELECT pgwa.create_instance(:'t1', 'bad name');
SELECT pgwa.create_instance(:'t1', 'x', 'whatsmeow');
SELECT pgwa.create_instance(:'t1', 'x', 'broker', 'ftp://a');
SELECT pgwa.create_instance(:'t1', 'x', 'broker', NULL, NULL, '{"delay_min_ms":5000,"delay_max_ms":10}');
SELECT pgwa.create_instance(:'t1', 'x', 'broker', NULL, NULL, '{"max_attempts":0}');
SELECT pgwa.create_instance(:'t1', 'x', 'broker', NULL, NULL, '{"max_attempts":"many"}');
SELECT pgwa.create_instance('00000000-0000-0000-0000-000000000000', 'x');
-- connection state
SELECT pgwa.set_connection_state(:'i1', 'disconnected');
SELECT connection_state FROM pgwa.instance_state WHERE instance_id = :'i1';
SELECT pgwa.set_connection_state(:'i1', 'connected');
SELECT connection_state FROM pgwa.instance_state WHERE instance_id = :'i1';
SELECT pgwa.set_connection_state(:'i1', 'sleeping');
SELECT pgwa.set_connection_state('00000000-0000-0000-0000-000000000000', 'connected');
