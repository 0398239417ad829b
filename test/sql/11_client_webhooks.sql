-- Client webhooks, driven by hand: subscriptions, fan-out filters, claims in
-- event order with one delivery in flight per subscription, outcomes,
-- backoff, dead deliveries and replay, leases, metrics and the HTTP routes.
\set VERBOSITY terse

-- signing: RFC 4231 test case 2, then "<timestamp>.<body>"
SELECT pgwa._hmac_sha256_hex('Jefe', 'what do ya want for nothing?')
       = '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843' AS rfc4231;
SELECT pgwa.webhook_signature('k', 1700000000, '{}') = 'sha256=' || pgwa._hmac_sha256_hex('k', '1700000000.{}') AS signs_timestamp_dot_body;

-- keys: tenant_id first everywhere
SELECT c.relname, array_agg(a.attname ORDER BY k.n) AS pk
FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid
JOIN LATERAL unnest(x.indkey) WITH ORDINALITY k(attnum, n) ON true
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE x.indisprimary AND c.relnamespace = 'pgwa'::regnamespace
  AND c.relname IN ('webhook_subscriptions', 'webhook_deliveries', 'webhook_delivery_attempts', 'webhook_delivery_counts')
GROUP BY c.relname ORDER BY c.relname;

SELECT tenant_id AS ta FROM pgwa.create_tenant('hooks-a') \gset
SELECT tenant_id AS tb FROM pgwa.create_tenant('hooks-b') \gset
SELECT tenant_id AS tc FROM pgwa.create_tenant('hooks-c') \gset
SELECT pgwa.create_instance(:'ta', 'hk1') AS i1, pgwa.create_instance(:'ta', 'hk2') AS i2,
       pgwa.create_instance(:'tb', 'hk1') AS ib \gset

-- validation
SELECT * FROM pgwa.create_webhook_subscription(:'ta', 'ftp://x', ARRAY['*']);
SELECT * FROM pgwa.create_webhook_subscription(:'ta', 'http://', ARRAY['*']);
SELECT * FROM pgwa.create_webhook_subscription(:'ta', 'http://127.0.0.1:9/h', ARRAY['message.new']);
SELECT * FROM pgwa.create_webhook_subscription(:'ta', 'http://127.0.0.1:9/h', ARRAY[]::text[]);
SELECT * FROM pgwa.create_webhook_subscription(:'ta', 'http://127.0.0.1:9/h', NULL);
SELECT * FROM pgwa.create_webhook_subscription(:'ta', 'http://127.0.0.1:9/h', ARRAY['*'], :'ib');
SELECT * FROM pgwa.create_webhook_subscription(:'ta', 'http://127.0.0.1:9/h', ARRAY['*'], NULL, 'short');
SELECT * FROM pgwa.create_webhook_subscription(:'ta', 'http://127.0.0.1:9/h', ARRAY['*'], NULL, NULL, 0);
SELECT * FROM pgwa.create_webhook_subscription('00000000-0000-0000-0000-000000000000', 'http://127.0.0.1:9/h', ARRAY['*']);
-- '*' stands alone; names are kept once, sorted
SELECT id AS sc1 FROM pgwa.create_webhook_subscription(:'tc', 'http://127.0.0.1:9/h', ARRAY['ticket.updated', '*']) \gset
SELECT id AS sc2 FROM pgwa.create_webhook_subscription(:'tc', 'http://127.0.0.1:9/h',
                                                       ARRAY['ticket.updated', 'messages.new', 'ticket.updated']) \gset
SELECT events FROM pgwa.webhook_subscriptions WHERE id IN (:'sc1', :'sc2') ORDER BY cardinality(events);
SELECT pgwa.delete_webhook_subscription(:'sc1') AS deleted, pgwa.delete_webhook_subscription(:'sc1') AS again,
       pgwa.delete_webhook_subscription(:'sc2') AS deleted_2;
-- a generated secret, and a given one, are returned once
SELECT id AS s_all, secret AS s_all_secret FROM pgwa.create_webhook_subscription(:'ta', 'http://127.0.0.1:9/all', ARRAY['*']) \gset
SELECT :'s_all_secret' ~ '^whsec_[0-9a-f]{40}$' AS generated_secret;
SELECT id AS s_msg, secret = 'a-given-secret-of-length' AS given_secret
FROM pgwa.create_webhook_subscription(:'ta', 'https://127.0.0.1:9/msg?x=1', ARRAY['messages.new'], NULL,
                                      'a-given-secret-of-length', 2) \gset
SELECT :'given_secret' AS given_secret_returned;
SELECT id AS s_i1 FROM pgwa.create_webhook_subscription(:'ta', 'http://127.0.0.1:9/i1', ARRAY['*'], :'i1') \gset
SELECT id AS s_off FROM pgwa.create_webhook_subscription(:'ta', 'http://127.0.0.1:9/off', ARRAY['*']) \gset
SELECT id AS s_b FROM pgwa.create_webhook_subscription(:'tb', 'http://127.0.0.1:9/b', ARRAY['*']) \gset
SELECT pgwa.pause_webhook_subscription(:'s_off')->>'active' AS off_active;
-- the API shows subscriptions without their secret
SELECT jsonb_array_length(pgwa.list_webhook_subscriptions(:'ta')) AS subs_a,
       pgwa.list_webhook_subscriptions(:'ta')::text LIKE '%' || :'s_all_secret' || '%' AS leaks_secret,
       bool_and(s ? 'secret') AS has_secret_key
FROM jsonb_array_elements(pgwa.list_webhook_subscriptions(:'ta')) s;

CREATE TEMP TABLE subs (name text, id uuid);
INSERT INTO subs VALUES ('all', :'s_all'), ('msg', :'s_msg'), ('i1', :'s_i1'), ('off', :'s_off'), ('b', :'s_b');
CREATE TEMP TABLE ev (label text, id bigint);

-- fan-out: tenant, instance and event filters; the ticket's instance for
-- ticket.updated; paused subscriptions and other tenants get nothing
INSERT INTO pgwa.tickets (tenant_id, lead_id, instance_id, source, originated_from)
VALUES (:'ta', gen_random_uuid(), :'i2', 'manual', 'existing') RETURNING id AS ticket2 \gset
INSERT INTO ev VALUES
	('e1 messages.new i1', pgwa._emit(:'ta', 'messages.new', jsonb_build_object('instanceId', :'i1', 'text', 'one'))),
	('e2 ticket.updated i2', pgwa._emit(:'ta', 'ticket.updated', jsonb_build_object('ticketId', :'ticket2'))),
	('e3 messages.new i2', pgwa._emit(:'ta', 'messages.new', jsonb_build_object('instanceId', :'i2'))),
	('e4 queue.missing i1', pgwa._emit(:'ta', 'whatsapp.queue.missing', jsonb_build_object('instanceId', :'i1'))),
	('e5 instance.status', pgwa._emit(:'ta', 'instance.status', '{"state":"open"}')),
	('b1 messages.new', pgwa._emit(:'tb', 'messages.new', jsonb_build_object('instanceId', :'ib'))),
	('c1 messages.new', pgwa._emit(:'tc', 'messages.new', '{}'));
SELECT s.name, e.label, d.status, d.attempts, d.instance_id = :'i1' AS on_i1, d.instance_id = :'i2' AS on_i2
FROM pgwa.webhook_deliveries d JOIN subs s ON s.id = d.subscription_id JOIN ev e ON e.id = d.event_id
ORDER BY s.name, e.id;
SELECT count(*) AS tenant_c_deliveries FROM pgwa.webhook_deliveries WHERE tenant_id = :'tc';
-- any writer of pgwa.events is covered, several rows at once in event order
INSERT INTO pgwa.events (tenant_id, event, payload)
SELECT :'tb', 'instance.qrcode', jsonb_build_object('n', n) FROM generate_series(1, 3) n;
SELECT array_agg(e.payload->>'n' ORDER BY d.id) AS fanned_out FROM pgwa.webhook_deliveries d
JOIN pgwa.events e ON e.tenant_id = d.tenant_id AND e.id = d.event_id
WHERE d.subscription_id = :'s_b' AND d.event = 'instance.qrcode';
DELETE FROM pgwa.events WHERE tenant_id = :'tb' AND event = 'instance.qrcode';
SELECT count(*) AS cascaded FROM pgwa.webhook_deliveries WHERE subscription_id = :'s_b' AND event = 'instance.qrcode';
-- a tenant has at most 100 subscriptions
SELECT count(*) AS created FROM generate_series(1, 100) n,
       pgwa.create_webhook_subscription(:'tc', 'http://127.0.0.1:9/n' || n, ARRAY['*']);
SELECT * FROM pgwa.create_webhook_subscription(:'tc', 'http://127.0.0.1:9/101', ARRAY['*']);
DELETE FROM pgwa.webhook_subscriptions WHERE tenant_id = :'tc';

-- claims, keeping what would be sent in table sent
CREATE TEMP TABLE sent AS SELECT * FROM pgwa._claim_deliveries(0, 60) WITH NO DATA;
CREATE FUNCTION pg_temp.claim() RETURNS TABLE (sub text, ev text, attempt int)
LANGUAGE sql AS $$
	WITH c AS (SELECT * FROM pgwa._claim_deliveries(100, 60)), keep AS (INSERT INTO sent SELECT * FROM c)
	SELECT s.name, e.label, c.attempt
	FROM c JOIN pgwa.webhook_deliveries d ON d.tenant_id = c.tenant_id AND d.id = c.id
	JOIN subs s ON s.id = d.subscription_id
	JOIN ev e ON e.id = c.event_id ORDER BY s.name COLLATE "C", e.label COLLATE "C"
$$;
CREATE FUNCTION pg_temp.done(p_sub text, p_ev text, p_outcome text, p_status int DEFAULT 200,
                             p_retry_after int DEFAULT NULL)
RETURNS text LANGUAGE sql AS $$
	SELECT coalesce((SELECT c.outcome FROM pgwa._complete_deliveries(jsonb_build_array(jsonb_build_object(
		'tn', d.tenant_id, 'i', d.id, 'o', p_outcome, 'h', p_status,
		'e', CASE WHEN p_outcome <> 'delivered' THEN 'HTTP ' || p_status END, 't', now(), 'd', 1.5,
		'r', p_retry_after))) c), 'stale')
	FROM pgwa.webhook_deliveries d JOIN subs s ON s.id = d.subscription_id JOIN ev e ON e.id = d.event_id
	WHERE s.name = p_sub AND e.label LIKE p_ev || '%'
$$;
CREATE FUNCTION pg_temp.time_passes(p_sub text) RETURNS void LANGUAGE sql AS $$
	UPDATE pgwa.webhook_deliveries SET next_attempt_at = now() - interval '1 ms'
	WHERE subscription_id = (SELECT id FROM subs WHERE name = p_sub) AND status IN ('pending', 'failed')
$$;
CREATE FUNCTION pg_temp.state(p_sub text)
RETURNS TABLE (ev text, status text, attempts int, last_http_status int, last_error text)
LANGUAGE sql AS $$
	SELECT e.label, d.status, d.attempts, d.last_http_status, d.last_error
	FROM pgwa.webhook_deliveries d JOIN subs s ON s.id = d.subscription_id JOIN ev e ON e.id = d.event_id
	WHERE s.name = p_sub ORDER BY e.id
$$;

-- the head of each active subscription, one in flight each
SELECT * FROM pg_temp.claim();
SELECT * FROM pg_temp.claim();
SELECT status, attempts, lease_until > now() AS leased FROM pgwa.webhook_deliveries
WHERE subscription_id = :'s_all' AND status = 'sending';
-- what goes out: the body, its timestamp and signature
SELECT c.url, c.event, (SELECT array_agg(k ORDER BY k COLLATE "C") FROM jsonb_object_keys(c.body::jsonb) k) AS body_keys,
       c.body::jsonb->'data'->>'text' AS text,
       (c.body::jsonb->>'id')::bigint = c.event_id AND c.event_id = (SELECT id FROM ev WHERE label LIKE 'e1%') AS id_ok,
       (c.body::jsonb->>'tenantId')::uuid = :'ta' AS tenant_ok,
       (c.body::jsonb->>'instanceId')::uuid = :'i1' AS instance_ok,
       c.body::jsonb->>'createdAt' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$' AS iso_time,
       c.sent_at BETWEEN extract(epoch FROM now()) - 5 AND extract(epoch FROM now()) + 5 AS unix_seconds,
       c.signature = pgwa.webhook_signature(:'s_all_secret', c.sent_at, c.body) AS signed
FROM sent c WHERE c.tenant_id = :'ta' AND c.url LIKE '%/all';

-- delivered: the subscription's next event goes out
SELECT pg_temp.done('all', 'e1', 'delivered');
SELECT * FROM pg_temp.state('all') LIMIT 2;
SELECT delivered_at IS NOT NULL AS has_delivered_at, lease_until FROM pgwa.webhook_deliveries d
JOIN ev e ON e.id = d.event_id WHERE d.subscription_id = :'s_all' AND e.label LIKE 'e1%';
SELECT * FROM pg_temp.claim();
-- ticket.updated names only its ticket: the body carries the ticket's instance
SELECT (c.body::jsonb->>'instanceId')::uuid = :'i2' AS ticket_instance FROM sent c
WHERE c.event_id = (SELECT id FROM ev WHERE label LIKE 'e2%');

-- a transient failure keeps the head: later events wait behind it
SELECT pg_temp.done('msg', 'e1', 'retry', 503);
SELECT * FROM pg_temp.state('msg');
SELECT next_attempt_at - now() BETWEEN interval '0.9 s' AND interval '1.5 s' AS backoff_1s
FROM pgwa.webhook_deliveries d JOIN ev e ON e.id = d.event_id WHERE d.subscription_id = :'s_msg' AND e.label LIKE 'e1%';
SELECT * FROM pg_temp.claim();
SELECT pgwa._next_delivery_due() > now() AS next_due_is_the_retry;
SELECT pg_temp.time_passes('msg');
SELECT * FROM pg_temp.claim();
-- attempts exhausted (max_attempts 2): dead, and the next event goes out
SELECT pg_temp.done('msg', 'e1', 'retry', 500);
SELECT * FROM pg_temp.state('msg');
SELECT * FROM pg_temp.claim();
-- Retry-After overrides the backoff
SELECT pg_temp.done('msg', 'e3', 'retry', 429, 5000);
SELECT next_attempt_at - now() BETWEEN interval '4.9 s' AND interval '5.5 s' AS honours_retry_after
FROM pgwa.webhook_deliveries d JOIN ev e ON e.id = d.event_id WHERE d.subscription_id = :'s_msg' AND e.label LIKE 'e3%';
-- a 4xx is dead at once
SELECT pg_temp.done('i1', 'e1', 'dead', 400);
SELECT * FROM pg_temp.state('i1');
SELECT * FROM pg_temp.claim();
-- a late or repeated result is ignored
SELECT pg_temp.done('i1', 'e1', 'delivered') AS late_result;
SELECT pg_temp.done('b', 'b1', 'delivered');
SELECT pg_temp.done('b', 'b1', 'delivered') AS repeated_result;

-- the attempt log
SELECT d.attempt, d.outcome, d.http_status, d.error, d.duration_ms
FROM pgwa.webhook_delivery_attempts d JOIN pgwa.webhook_deliveries w ON w.tenant_id = d.tenant_id AND w.id = d.delivery_id
JOIN ev e ON e.id = w.event_id WHERE w.subscription_id = :'s_msg' ORDER BY d.id;

-- leases: a claim without a result comes back, due at once, its attempt spent
SELECT pgwa._release_delivery_leases(false) AS released_unexpired;
UPDATE pgwa.webhook_deliveries SET lease_until = now() - interval '1 s' WHERE subscription_id = :'s_i1' AND status = 'sending';
SELECT pgwa._release_delivery_leases(false) AS released_expired;
SELECT * FROM pg_temp.state('i1');
SELECT * FROM pg_temp.claim();
SELECT pg_temp.done('i1', 'e4', 'delivered');

-- replay: a dead delivery goes out again, first, with attempts from zero
SELECT r->>'status' AS status, r->>'attempts' AS attempts, jsonb_array_length(r->'attempt_log') AS log
FROM pgwa.replay_delivery((SELECT d.id FROM pgwa.webhook_deliveries d JOIN ev e ON e.id = d.event_id
                           WHERE d.subscription_id = :'s_i1' AND e.label LIKE 'e1%')) r;
SELECT * FROM pg_temp.claim();
SELECT pgwa.replay_delivery((SELECT d.id FROM pgwa.webhook_deliveries d JOIN ev e ON e.id = d.event_id
                             WHERE d.subscription_id = :'s_i1' AND e.label LIKE 'e1%'));
SELECT pgwa.replay_delivery(-1);

-- a paused subscription sends nothing; resumed, it goes on in order
SELECT pgwa.pause_webhook_subscription(:'s_all')->>'active' AS active;
SELECT pg_temp.done('all', 'e2', 'delivered');
SELECT * FROM pg_temp.claim();
INSERT INTO ev VALUES ('e6 messages.new i1', pgwa._emit(:'ta', 'messages.new', jsonb_build_object('instanceId', :'i1')));
SELECT count(*) AS e6_for_paused FROM pgwa.webhook_deliveries d JOIN ev e ON e.id = d.event_id
WHERE d.subscription_id = :'s_all' AND e.label LIKE 'e6%';
SELECT pgwa.resume_webhook_subscription(:'s_all')->>'active' AS active;
SELECT * FROM pg_temp.claim();

-- listing
SELECT jsonb_array_length(l->'items') AS items, l->'total' AS total, l->'items'->0->>'status' AS newest
FROM pgwa.list_webhook_deliveries(:'s_msg') l;
SELECT l->'total' AS dead FROM pgwa.list_webhook_deliveries(:'s_msg', ARRAY['dead']) l;
SELECT pgwa.list_webhook_deliveries(:'s_msg', ARRAY['lost']);
SELECT pgwa.list_webhook_deliveries(:'s_msg', NULL, 0);
SELECT pgwa.webhook_subscription_json(:'s_msg') - 'id' - 'tenant_id' - 'created_at' - 'updated_at' AS msg_subscription;

-- metrics: outcomes per subscription and event, backlog and dead gauges
SELECT line FROM (
	SELECT regexp_replace(regexp_replace(l, 'tenant_id="[^"]*"', 'tenant_id=T'), 'subscription_id="([^"]*)"',
	       'subscription_id=' || coalesce((SELECT name FROM subs WHERE id::text = substring(l FROM 'subscription_id="([^"]*)"')), '?')) AS line
	FROM regexp_split_to_table(pgwa._client_webhook_metrics(), E'\n') l
	WHERE l LIKE 'pgwa_client_webhook%' AND (l LIKE '%' || :'ta' || '%' OR l LIKE '%' || :'tb' || '%')) m
ORDER BY line COLLATE "C";
SELECT count(*) AS families FROM regexp_split_to_table(pgwa.metrics(), E'\n') l
WHERE l LIKE '# TYPE pgwa_client_webhook%';

-- HTTP
CREATE FUNCTION pg_temp.call(m text, p text, key text DEFAULT NULL, body text DEFAULT NULL, q jsonb DEFAULT '{}')
RETURNS TABLE (status int, code text, field text, body jsonb, headers jsonb)
LANGUAGE sql AS $$
	SELECT r.status, r.body::jsonb #>> '{error,code}', r.body::jsonb #>> '{error,field}', r.body::jsonb, r.headers
	FROM pgwa.http(m, p, q, coalesce(jsonb_build_object('x-api-key', key), '{}'), body) r
$$;
SELECT api_key AS kb FROM pgwa.create_api_key(:'tb', 'http') \gset
SELECT api_key AS ka FROM pgwa.create_api_key(:'ta', 'http') \gset
SELECT status, code FROM pg_temp.call('GET', '/v1/webhooks');
SELECT status, code, field FROM pg_temp.call('POST', '/v1/webhooks', :'kb', '{"events":["*"]}');
SELECT status, code, field FROM pg_temp.call('POST', '/v1/webhooks', :'kb', '{"url":"http://127.0.0.1:9/h","events":"nope"}');
SELECT status, code, field FROM pg_temp.call('POST', '/v1/webhooks', :'kb', '{"url":"http://127.0.0.1:9/h","events":[1]}');
SELECT status, code, field FROM pg_temp.call('POST', '/v1/webhooks', :'kb', '{"url":"http://127.0.0.1:9/h","events":["*"],"max_attempts":0}');
SELECT status, code, field FROM pg_temp.call('POST', '/v1/webhooks', :'kb',
	format('{"url":"http://127.0.0.1:9/h","events":["*"],"instance_id":"%s"}', :'i1'));
SELECT status, body->'events' AS events, body->>'max_attempts' AS max_attempts, length(body->>'secret') > 20 AS has_secret,
       headers->>'Location' = '/v1/webhooks/' || (body->>'id') AS location
FROM pg_temp.call('POST', '/v1/webhooks', :'kb', format('{"url":"http://127.0.0.1:9/h","events":["messages.new"],"instance_id":"%s","max_attempts":3}', :'ib'));
SELECT w->>'id' AS hb FROM pg_temp.call('GET', '/v1/webhooks', :'kb') c, jsonb_array_elements(c.body->'webhooks') w
WHERE w->>'url' = 'http://127.0.0.1:9/h' \gset
SELECT status, jsonb_array_length(body->'webhooks') AS n, body::text LIKE '%secret%' AS shows_secret
FROM pg_temp.call('GET', '/v1/webhooks', :'kb');
SELECT status, body->>'url' AS url, body ? 'secret' AS shows_secret FROM pg_temp.call('GET', '/v1/webhooks/' || :'hb', :'kb');
-- another tenant's subscription is not found
SELECT status, code, field FROM pg_temp.call('GET', '/v1/webhooks/' || :'hb', :'ka');
SELECT status, code FROM pg_temp.call('DELETE', '/v1/webhooks/' || :'hb', :'ka');
SELECT status, code FROM pg_temp.call('GET', '/v1/webhooks/' || :'s_b' || '/deliveries', :'ka');
SELECT status, code FROM pg_temp.call('GET', '/v1/webhooks/not-a-uuid', :'ka');
SELECT status, headers->>'Allow' AS allow FROM pg_temp.call('PUT', '/v1/webhooks/' || :'hb', :'kb');
SELECT status, headers->>'Allow' AS allow FROM pg_temp.call('DELETE', '/v1/webhooks', :'kb');
-- deliveries: listed, filtered, shown with their log, replayed
SELECT status, body->'total' AS total, body->'items'->0->>'event' AS event
FROM pg_temp.call('GET', '/v1/webhooks/' || :'s_b' || '/deliveries', :'kb', NULL, '{"status":"delivered"}');
SELECT status, code, field FROM pg_temp.call('GET', '/v1/webhooks/' || :'s_b' || '/deliveries', :'kb', NULL, '{"status":"gone"}');
SELECT status, code, field FROM pg_temp.call('GET', '/v1/webhooks/' || :'s_b' || '/deliveries', :'kb', NULL, '{"limit":"x"}');
SELECT d.id AS b1 FROM pgwa.webhook_deliveries d WHERE d.subscription_id = :'s_b' \gset
SELECT status, body->>'status' AS st, jsonb_array_length(body->'attempt_log') AS log
FROM pg_temp.call('GET', format('/v1/webhooks/%s/deliveries/%s', :'s_b', :'b1'), :'kb');
SELECT status, code FROM pg_temp.call('GET', format('/v1/webhooks/%s/deliveries/%s', :'s_b', :'b1'), :'ka');
SELECT status, code FROM pg_temp.call('GET', format('/v1/webhooks/%s/deliveries/%s', :'hb', :'b1'), :'kb');
SELECT status, code, field FROM pg_temp.call('POST', format('/v1/webhooks/%s/deliveries/%s/replay', :'s_b', :'b1'), :'ka');
SELECT status, body->>'status' AS st, body->>'attempts' AS attempts
FROM pg_temp.call('POST', format('/v1/webhooks/%s/deliveries/%s/replay', :'s_b', :'b1'), :'kb');
SELECT status, code, field FROM pg_temp.call('POST', format('/v1/webhooks/%s/deliveries/%s/replay', :'s_b', :'b1'), :'kb');
SELECT status, body->>'active' AS active FROM pg_temp.call('POST', '/v1/webhooks/' || :'hb' || '/pause', :'kb');
SELECT status, body->>'active' AS active FROM pg_temp.call('POST', '/v1/webhooks/' || :'hb' || '/resume', :'kb');
SELECT status, body->>'deleted' AS deleted FROM pg_temp.call('DELETE', '/v1/webhooks/' || :'s_b', :'kb');
SELECT status, code FROM pg_temp.call('GET', '/v1/webhooks/' || :'s_b', :'kb');
SELECT count(*) AS left_of_b FROM pgwa.webhook_deliveries WHERE subscription_id = :'s_b';
-- stale results of a deleted subscription are ignored
SELECT count(*) AS recorded FROM pgwa._complete_deliveries(jsonb_build_array(jsonb_build_object(
	'tn', :'tb', 'i', :'b1', 'o', 'delivered', 'h', 200)));

-- retention: old delivered deliveries go with their log, dead ones stay unless asked
SELECT pgwa.purge_webhook_deliveries('1 day') AS purged_recent;
SELECT pgwa.purge_webhook_deliveries('-1 day') > 0 AS purged_delivered;
SELECT status, count(*) FROM pgwa.webhook_deliveries WHERE tenant_id IN (:'ta', :'tb')
GROUP BY status ORDER BY status COLLATE "C";
SELECT count(*) AS orphan_attempts FROM pgwa.webhook_delivery_attempts a
WHERE NOT EXISTS (SELECT 1 FROM pgwa.webhook_deliveries d WHERE d.tenant_id = a.tenant_id AND d.id = a.delivery_id);
SELECT pgwa.purge_webhook_deliveries('-1 day', true) AS purged_dead;

-- retention of real-time events: none kept for a delivery still to make
INSERT INTO pgwa.webhook_deliveries (tenant_id, subscription_id, event_id, event)
SELECT s.tenant_id, s.id, e.id, e.event FROM pgwa.webhook_subscriptions s
JOIN LATERAL (SELECT * FROM pgwa.events e WHERE e.tenant_id = s.tenant_id ORDER BY e.id LIMIT 1) e ON true
WHERE s.tenant_id = :'ta' LIMIT 1
RETURNING event_id AS pending_event \gset
SELECT pgwa.purge_events('1 day') AS purged_recent;
SELECT pgwa.purge_events('-1 day') > 0 AS purged_old;
SELECT EXISTS (SELECT 1 FROM pgwa.events WHERE id = :pending_event) AS kept_for_its_delivery,
       (SELECT count(*) FROM pgwa.events e
        WHERE NOT EXISTS (SELECT 1 FROM pgwa.webhook_deliveries w WHERE w.tenant_id = e.tenant_id AND w.event_id = e.id
                          AND w.status IN ('pending', 'sending', 'failed'))) AS others_left;
