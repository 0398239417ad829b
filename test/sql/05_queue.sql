-- Queue management: list, cancel, purge, dead letters and replay, with the
-- head_due bookkeeping the claim relies on; what enqueue refuses up front.
\set VERBOSITY terse
SELECT tenant_id AS t, api_key AS key FROM pgwa.create_tenant('queue') \gset
SELECT api_key AS other_key FROM pgwa.create_tenant('queue-other') \gset
SELECT pgwa.create_instance(:'t', 'qa', 'broker', 'http://127.0.0.1:1', 'k',
       '{"delay_min_ms":0,"delay_max_ms":0,"max_attempts":2}') AS qa \gset
SELECT pgwa.create_instance(:'t', 'qb', 'broker', 'http://127.0.0.1:1', 'k',
       '{"delay_min_ms":0,"delay_max_ms":0}') AS qb \gset
-- Only this test's instances: hide the others from the claim.
UPDATE pgwa.instance_state SET head_due = NULL WHERE instance_id NOT IN (:'qa', :'qb');

CREATE FUNCTION pg_temp.claim() RETURNS TABLE (inst text, seq bigint, attempt int, text text)
LANGUAGE sql AS $$
	SELECT i.name, c.seq, c.attempt, c.payload->>'text'
	FROM pgwa._claim(100, 60) c JOIN pgwa.instances i ON i.id = c.instance_id ORDER BY 1, 2
$$;
CREATE FUNCTION pg_temp.done(p uuid, s bigint, outcome text, status int DEFAULT 200)
RETURNS text LANGUAGE sql AS $$
	SELECT pgwa._complete(p, s, outcome, status, CASE WHEN outcome = 'sent' THEN 'BRK-' || s END,
	                      CASE WHEN outcome <> 'sent' THEN 'HTTP ' || status END, now(), 1.5, NULL)
$$;
-- head_due must always be the due time of the first waiting message
CREATE FUNCTION pg_temp.head_ok(p uuid) RETURNS boolean LANGUAGE sql AS $$
	SELECT s.head_due IS NOT DISTINCT FROM pgwa._head_due(p) FROM pgwa.instance_state s WHERE s.instance_id = p
$$;
-- a listing as "text:status" in the order given
CREATE FUNCTION pg_temp.items(j jsonb) RETURNS text LANGUAGE sql AS $$
	SELECT string_agg(coalesce(x->'message'->>'text', x->>'type') || ':' || (x->>'status'), ' ' ORDER BY n)
	FROM jsonb_array_elements(j->'items') WITH ORDINALITY AS e(x, n)
$$;
CREATE FUNCTION pg_temp.page(j jsonb) RETURNS text LANGUAGE sql AS $$
	SELECT format('queueLength=%s total=%s limit=%s offset=%s', j->'queueLength', j->'total', j->'limit', j->'offset')
$$;
CREATE FUNCTION pg_temp.http(method text, path text, query jsonb DEFAULT '{}', key text DEFAULT NULL)
RETURNS TABLE (status int, code text, field text, allow text) LANGUAGE sql AS $$
	SELECT r.status, r.body::jsonb->'error'->>'code', r.body::jsonb->'error'->>'field', r.headers->>'Allow'
	FROM pgwa.http(method, path, query, jsonb_build_object('x-api-key', key)) r
$$;

SELECT message_id AS a1 FROM pgwa.send(:'qa', '5511900000001', 'a1') \gset
SELECT message_id AS a2 FROM pgwa.send(:'qa', '5511900000001', 'a2') \gset
SELECT message_id AS a3 FROM pgwa.send(:'qa', '5511900000001', 'a3') \gset
SELECT message_id AS img FROM pgwa.enqueue(:'qa', '{"to":"5511900000001","type":"image","mediaUrl":"https://x.test/a.jpg"}') \gset
SELECT message_id AS s1 FROM pgwa.enqueue(:'qa', jsonb_build_object('to','5511900000001','text','s1','scheduledFor', now() + interval '1 hour')) \gset

-- list: what is still to go out, in sending order (scheduled ones by due time)
SELECT pg_temp.items(pgwa.queue_list(:'qa')), pg_temp.page(pgwa.queue_list(:'qa'));
SELECT * FROM pg_temp.claim();
-- the message in flight is listed and counted
SELECT pg_temp.items(pgwa.queue_list(:'qa')), pg_temp.page(pgwa.queue_list(:'qa'));
SELECT pg_temp.items(pgwa.queue_list(:'qa', '{sending}'));
SELECT pg_temp.items(pgwa.queue_list(:'qa', '{queued}'));
SELECT pg_temp.items(pgwa.queue_list(:'qa', '{scheduled,queued}', 'image'));
SELECT pg_temp.items(pgwa.queue_list(:'qa', NULL, 'text', 2, 1)), pg_temp.page(pgwa.queue_list(:'qa', NULL, 'text', 2, 1));
SELECT pg_temp.items(pgwa.queue_list(:'qa', NULL, NULL, 50, 10)), pg_temp.page(pgwa.queue_list(:'qa', NULL, NULL, 50, 10));
SELECT pg_temp.page(pgwa.queue_list(:'qa', NULL, NULL, 500, 2147483647));
SELECT pg_temp.items(pgwa.queue_list(:'qa', '{sent,dead,canceled}')), pg_temp.page(pgwa.queue_list(:'qa', '{sent,dead,canceled}'));
-- each item is the message as GET /v1/messages/{id} shows it
SELECT pgwa.queue_list(:'qa', '{sending}')->'items'->0 = pgwa.message_json(:'a1') AS same_as_message_json;
-- bad pages and filters name the field
SELECT pgwa.queue_list(:'qa', NULL, NULL, 0);
SELECT pgwa.queue_list(:'qa', NULL, NULL, 501);
SELECT pgwa.queue_list(:'qa', NULL, NULL, 500) IS NOT NULL AS limit_500_ok;
SELECT pgwa.queue_list(:'qa', NULL, NULL, 50, -1);
SELECT pgwa.queue_list(:'qa', '{queued,pending}');
SELECT pgwa.queue_list(:'qa', '{}');
SELECT pgwa.queue_list(:'qa', NULL, 'Text!');
SELECT pgwa.queue_list('00000000-0000-0000-0000-000000000000');

-- cancel: a waiting message is canceled; the one in flight and final ones cannot be
SELECT pgwa.cancel(:'a1');
SELECT x->>'status' AS status, x->>'canceled_at' IS NOT NULL AS has_canceled_at
FROM pgwa.cancel(:'a2') x;
SELECT pgwa.cancel(:'a2');
SELECT pgwa.cancel('00000000-0000-0000-0000-000000000000');
SELECT pg_temp.head_ok(:'qa');
SELECT pg_temp.done(:'qa', 1, 'sent');
SELECT pgwa.cancel(:'a1');
-- the claim skips the canceled message
SELECT * FROM pg_temp.claim();
SELECT pg_temp.done(:'qa', 3, 'sent');
-- canceling the head moves head_due to the next one (here: the scheduled message)
SELECT pgwa.cancel(:'img') ->> 'status' AS status;
SELECT pg_temp.head_ok(:'qa'), head_due > now() + interval '59 minutes' AS waits_for_schedule
FROM pgwa.instance_state WHERE instance_id = :'qa';
SELECT * FROM pg_temp.claim();
SELECT pgwa.cancel(:'s1') ->> 'status' AS status;
SELECT head_due IS NULL AS nothing_waiting FROM pgwa.instance_state WHERE instance_id = :'qa';
SELECT pg_temp.page(pgwa.queue_list(:'qa'));

-- purge: every waiting message (or those older than a time), never the one in flight
SELECT count(*) AS queued FROM generate_series(1, 4) g, pgwa.send(:'qb', '5511900000002', 'b' || g);
SELECT message_id AS bs FROM pgwa.enqueue(:'qb', jsonb_build_object('to','5511900000002','text','bs','scheduledFor', now() + interval '1 day')) \gset
UPDATE pgwa.outbox SET created_at = now() - interval '1 hour' WHERE instance_id = :'qb' AND seq <= 3;
SELECT * FROM pg_temp.claim();
-- b1 failed (its retry is due later): it is still waiting and can be purged
SELECT pg_temp.done(:'qb', 1, 'retry', 503);
SELECT * FROM pg_temp.claim();
SELECT pg_temp.items(pgwa.queue_list(:'qb'));
SELECT pgwa.queue_purge(:'qb', now() - interval '30 minutes') AS canceled;
SELECT pg_temp.items(pgwa.queue_list(:'qb'));
SELECT pg_temp.head_ok(:'qb');
UPDATE pgwa.instance_state SET not_before = '-infinity' WHERE instance_id = :'qb';
SELECT * FROM pg_temp.claim();
SELECT pgwa.queue_purge(:'qb') AS canceled;
SELECT pg_temp.items(pgwa.queue_list(:'qb')), pg_temp.page(pgwa.queue_list(:'qb'));
SELECT pg_temp.head_ok(:'qb'), (SELECT head_due IS NULL FROM pgwa.instance_state WHERE instance_id = :'qb') AS nothing_waiting;
SELECT status, count(*), count(canceled_at) AS with_canceled_at FROM pgwa.outbox WHERE instance_id = :'qb' GROUP BY 1 ORDER BY 1;
SELECT pgwa.queue_purge(:'qb') AS canceled_again;
SELECT pgwa.queue_purge('00000000-0000-0000-0000-000000000000');
SELECT pg_temp.done(:'qb', 4, 'sent');

-- dead letters: newest first, with their last error, HTTP status and attempts
SELECT message_id AS d1 FROM pgwa.send(:'qa', '5511900000003', 'd1') \gset
SELECT message_id AS d2 FROM pgwa.send(:'qa', '5511900000003', 'd2') \gset
SELECT message_id AS d3 FROM pgwa.send(:'qa', '5511900000003', 'd3') \gset
SELECT * FROM pg_temp.claim();
SELECT pg_temp.done(:'qa', 6, 'dead', 400);
SELECT * FROM pg_temp.claim();
SELECT pg_temp.done(:'qa', 7, 'retry', 500);
UPDATE pgwa.instance_state SET not_before = '-infinity' WHERE instance_id = :'qa';
SELECT * FROM pg_temp.claim();
SELECT pg_temp.done(:'qa', 7, 'retry', 502);
SELECT * FROM pg_temp.claim();
SELECT pg_temp.done(:'qa', 8, 'dead', 422);
SELECT x->'message'->>'text' AS text, x->>'status' AS status, x->'attempts' AS attempts,
       x->'last_http_status' AS last_http_status, x->>'last_error' AS last_error
FROM jsonb_array_elements(pgwa.dead_letters(:'qa')->'items') x;
SELECT pg_temp.items(pgwa.dead_letters(:'qa', 1, 1)), pgwa.dead_letters(:'qa', 1, 1) - 'items' AS page;
SELECT pgwa.dead_letters(:'qa', 0);
SELECT pgwa.dead_letters(:'qa', 10, -5);
SELECT pgwa.dead_letters('00000000-0000-0000-0000-000000000000');

-- replay: back to queued with no attempts, same id, at the tail by due time
SELECT message_id AS w1 FROM pgwa.send(:'qa', '5511900000003', 'w1') \gset
SELECT x->>'id' = :'d2' AS same_id, x->>'status' AS status, x->'attempts' AS attempts, x->>'dead_at' AS dead_at
FROM pgwa.replay(:'d2') x;
SELECT pg_temp.head_ok(:'qa');
SELECT pg_temp.items(pgwa.queue_list(:'qa')), pg_temp.items(pgwa.dead_letters(:'qa'));
SELECT * FROM pg_temp.claim();
SELECT pgwa.replay(:'w1');
SELECT pg_temp.done(:'qa', 9, 'sent');
SELECT * FROM pg_temp.claim();
SELECT pg_temp.done(:'qa', 7, 'sent');
SELECT pgwa.replay(:'d2');
SELECT pgwa.replay(:'img');
SELECT pgwa.replay('00000000-0000-0000-0000-000000000000');
-- replaying into an idle queue gives it a head again (head_due from NULL to the message)
SELECT head_due IS NULL AS idle FROM pgwa.instance_state WHERE instance_id = :'qa';
SELECT pgwa.replay(:'d3') ->> 'status' AS status;
SELECT pg_temp.head_ok(:'qa'), (SELECT head_due IS NOT NULL FROM pgwa.instance_state WHERE instance_id = :'qa') AS has_head;
SELECT * FROM pg_temp.claim();
-- dead again: attempts counted from zero
SELECT pg_temp.done(:'qa', 8, 'dead', 400);
SELECT attempt, outcome, http_status FROM pgwa.attempts WHERE instance_id = :'qa' AND seq = 8 ORDER BY id;

-- replay all: every dead letter, in its original order (seq), however it died
UPDATE pgwa.outbox SET dead_at = dead_at - interval '1 day' WHERE id = :'d3';
SELECT pg_temp.items(pgwa.dead_letters(:'qa'));
SELECT pgwa.replay_dead_letters(:'qa') AS replayed;
SELECT pg_temp.head_ok(:'qa'), pg_temp.items(pgwa.queue_list(:'qa'));
SELECT count(DISTINCT due_at) AS one_due_time FROM pgwa.outbox WHERE id IN (:'d1', :'d3');
SELECT * FROM pg_temp.claim();
SELECT pg_temp.done(:'qa', 6, 'sent');
SELECT * FROM pg_temp.claim();
SELECT pg_temp.done(:'qa', 8, 'sent');
SELECT pgwa.replay_dead_letters(:'qa') AS replayed_none;
SELECT pgwa.replay_dead_letters('00000000-0000-0000-0000-000000000000');

-- enqueue refuses what could never be sent
SELECT pgwa.create_instance(:'t', 'no-url', 'broker', NULL, 'k') AS no_url \gset
SELECT pgwa.create_instance(:'t', 'no-key', 'broker', 'http://127.0.0.1:1', NULL) AS no_key \gset
SELECT pgwa.create_instance(:'t', 'empty-key', 'evolution', 'http://127.0.0.1:1', '') AS empty_key \gset
SELECT pgwa.create_instance(:'t', 'meta-nophone', 'meta', 'http://127.0.0.1:1', 'tok') AS meta_nophone \gset
SELECT pgwa.create_instance(:'t', 'meta-ok', 'meta', 'http://127.0.0.1:1', 'tok',
       '{"settings":{"phone_number_id":"1234"}}') AS meta_ok \gset
SELECT * FROM pgwa.send(:'no_url', '5511900000004', 'x');
SELECT * FROM pgwa.send(:'no_key', '5511900000004', 'x');
SELECT * FROM pgwa.send(:'empty_key', '5511900000004', 'x');
SELECT * FROM pgwa.send(:'meta_nophone', '5511900000004', 'x');
SELECT status, body::jsonb->'error'->>'code' AS code, body::jsonb->'error'->>'field' AS field
FROM pgwa.http('POST', '/v1/instances/' || :'no_url' || '/messages', '{}', jsonb_build_object('x-api-key', :'key'),
               '{"to":"5511900000004","text":"x"}');
-- the contact wrote in: its 24 h window is open (else only templates: WINDOW_CLOSED)
INSERT INTO pgwa.leads (tenant_id, phone, window_expires_at)
SELECT tenant_id, '5511900000004', now() + interval '1 day' FROM pgwa.instances WHERE id = :'meta_ok';
SELECT * FROM pgwa.enqueue(:'meta_ok', '{"to":"5511900000004","type":"poll","poll":{"name":"q","options":["a","b"]}}');
SELECT * FROM pgwa.enqueue(:'meta_ok', '{"to":"120363000000000001@g.us","text":"x"}');
SELECT status FROM pgwa.enqueue(:'meta_ok', '{"to":"5511900000004@s.whatsapp.net","text":"a user JID is a phone number"}');
SELECT status FROM pgwa.send(:'meta_ok', '+55 11 90000-0004', 'a phone number is fine');
SELECT status FROM pgwa.enqueue(:'qb', '{"to":"5511900000004","type":"poll","poll":{"name":"q","options":["a","b"]}}');
SELECT status FROM pgwa.enqueue(:'qb', '{"to":"120363000000000001@g.us","text":"brokers take JIDs"}');
SELECT count(*) AS refused_left_nothing FROM pgwa.outbox WHERE instance_id IN (:'no_url', :'no_key', :'empty_key', :'meta_nophone');
SELECT pgwa.queue_purge(:'qb') AS cleanup, pgwa.queue_purge(:'meta_ok') AS cleanup;

-- the same over pgwa.http(): routes, methods, fields, tenants
SELECT count(*) AS queued FROM generate_series(1, 3) g, pgwa.send(:'qb', '5511900000005', 'h' || g);
SELECT status, body::jsonb->'queueLength' AS queue_length, jsonb_array_length(body::jsonb->'items') AS items
FROM pgwa.http('GET', '/v1/instances/' || :'qb' || '/queue', '{"status":"queued, failed","type":"text","limit":"2"}',
               jsonb_build_object('x-api-key', :'key'));
SELECT * FROM pg_temp.http('GET', '/v1/instances/' || :'qb' || '/queue', '{"limit":"ten"}', :'key');
SELECT * FROM pg_temp.http('GET', '/v1/instances/' || :'qb' || '/queue', '{"limit":"1000"}', :'key');
SELECT * FROM pg_temp.http('GET', '/v1/instances/' || :'qb' || '/queue', '{"offset":"-1"}', :'key');
SELECT * FROM pg_temp.http('GET', '/v1/instances/' || :'qb' || '/queue', '{"status":"queued,nope"}', :'key');
SELECT * FROM pg_temp.http('DELETE', '/v1/instances/' || :'qb' || '/queue', '{"olderThan":"last week"}', :'key');
SELECT * FROM pg_temp.http('GET', '/v1/instances/' || :'qb' || '/queue', '{}', :'other_key');
SELECT * FROM pg_temp.http('DELETE', '/v1/instances/' || :'qb' || '/queue', '{}', :'other_key');
SELECT * FROM pg_temp.http('GET', '/v1/instances/' || :'qb' || '/dead-letters', '{}', :'other_key');
SELECT * FROM pg_temp.http('POST', '/v1/instances/' || :'qb' || '/dead-letters/replay', '{}', :'other_key');
SELECT * FROM pg_temp.http('DELETE', '/v1/messages/' || :'d1', '{}', :'other_key');
SELECT * FROM pg_temp.http('POST', '/v1/messages/' || :'d1' || '/replay', '{}', :'other_key');
SELECT * FROM pg_temp.http('PUT', '/v1/instances/' || :'qb' || '/queue', '{}', :'key');
SELECT * FROM pg_temp.http('DELETE', '/v1/instances/' || :'qb' || '/dead-letters', '{}', :'key');
SELECT * FROM pg_temp.http('GET', '/v1/instances/' || :'qb' || '/dead-letters/replay', '{}', :'key');
SELECT * FROM pg_temp.http('PUT', '/v1/messages/' || :'d1', '{}', :'key');
SELECT * FROM pg_temp.http('GET', '/v1/messages/' || :'d1' || '/replay', '{}', :'key');
SELECT * FROM pg_temp.http('DELETE', '/v1/messages/' || :'d1', '{}', :'key');
SELECT * FROM pg_temp.http('POST', '/v1/messages/' || :'d1' || '/replay', '{}', :'key');
SELECT * FROM pg_temp.http('GET', '/v1/instances/' || :'qb' || '/queue', '{}');
SELECT status, body::jsonb->'total' AS total FROM pgwa.http('GET', '/v1/instances/' || :'qa' || '/dead-letters', '{}',
                                                          jsonb_build_object('x-api-key', :'key'));
SELECT status, body FROM pgwa.http('POST', '/v1/instances/' || :'qa' || '/dead-letters/replay', '{}',
                                   jsonb_build_object('x-api-key', :'key'));
SELECT status, body::jsonb->>'status' AS message_status
FROM pgwa.http('DELETE', '/v1/messages/' || (SELECT id FROM pgwa.outbox WHERE instance_id = :'qb' AND seq = 10), '{}',
               jsonb_build_object('x-api-key', :'key'));
SELECT status, body FROM pgwa.http('DELETE', '/v1/instances/' || :'qb' || '/queue', '{"olderThan":"2999-01-01T00:00:00Z"}',
                                   jsonb_build_object('x-api-key', :'key'));
