-- The dispatcher's SQL side, driven by hand: claims, outcomes, FIFO,
-- pacing, backoff, dead letters, disconnection and leases.
\set VERBOSITY terse
SELECT tenant_id AS t FROM pgwa.create_tenant('dispatch') \gset
SELECT pgwa.create_instance(:'t', 'q', 'broker', 'http://127.0.0.1:1', 'k',
       '{"delay_min_ms":0,"delay_max_ms":0,"max_attempts":3}') AS q \gset
SELECT pgwa.create_instance(:'t', 'r', 'broker', 'http://127.0.0.1:1', 'k',
       '{"delay_min_ms":1000,"delay_max_ms":1000}') AS r \gset
-- Only this test's instances: hide the others from the claim.
UPDATE pgwa.instance_state SET head_due = NULL WHERE instance_id NOT IN (:'q', :'r');

CREATE FUNCTION pg_temp.claim() RETURNS TABLE (inst text, seq bigint, attempt int, text text)
LANGUAGE sql AS $$
	SELECT i.name, c.seq, c.attempt, c.payload->>'text'
	FROM pgwa._claim(100, 60) c JOIN pgwa.instances i ON i.id = c.instance_id ORDER BY 1, 2
$$;
-- pretend the pacing / backoff time has passed
CREATE FUNCTION pg_temp.time_passes(p uuid) RETURNS void LANGUAGE sql AS $$
	UPDATE pgwa.instance_state SET not_before = '-infinity' WHERE instance_id = p
$$;
CREATE FUNCTION pg_temp.done(p uuid, s bigint, outcome text, status int DEFAULT 200, retry_after int DEFAULT NULL)
RETURNS text LANGUAGE sql AS $$
	SELECT pgwa._complete(p, s, outcome, status, CASE WHEN outcome = 'sent' THEN 'BRK-' || s END,
	                      CASE WHEN outcome <> 'sent' THEN 'HTTP ' || status END, now(), 1.5, retry_after)
$$;

SELECT pgwa.send(:'q', '5511900000001', 'q1'), pgwa.send(:'q', '5511900000001', 'q2'),
       pgwa.send(:'q', '5511900000001', 'q3'), pgwa.send(:'r', '5511900000001', 'r1') \gset

-- one message in flight per instance, the head of each queue
SELECT * FROM pg_temp.claim();
SELECT * FROM pg_temp.claim();
SELECT status, attempts, lease_until > now() AS leased FROM pgwa.outbox WHERE instance_id = :'q' AND seq = 1;

-- sent: broker id recorded, the conversation log gets the message, the queue moves on
SELECT pg_temp.done(:'q', 1, 'sent');
SELECT status, broker_message_id, sent_at IS NOT NULL AS has_sent_at, lease_until FROM pgwa.outbox WHERE instance_id = :'q' AND seq = 1;
SELECT direction, broker_message_id, remote, type, status FROM pgwa.messages WHERE instance_id = :'q';
SELECT * FROM pg_temp.claim();

-- transient failure: retried with exponential backoff, keeping its place
SELECT pg_temp.done(:'q', 2, 'retry', 503);
SELECT status, attempts, last_http_status, last_error,
       next_attempt_at - now() BETWEEN interval '0.9 s' AND interval '1.5 s' AS backoff_1s
FROM pgwa.outbox WHERE instance_id = :'q' AND seq = 2;
SELECT * FROM pg_temp.claim();
SELECT pg_temp.time_passes(:'q');
SELECT * FROM pg_temp.claim();
SELECT pg_temp.done(:'q', 2, 'retry', 500);
SELECT attempts, next_attempt_at - now() BETWEEN interval '1.9 s' AND interval '2.5 s' AS backoff_2s
FROM pgwa.outbox WHERE instance_id = :'q' AND seq = 2;
SELECT pg_temp.time_passes(:'q');
SELECT * FROM pg_temp.claim();
-- attempts exhausted (max_attempts 3): dead letter, and the queue goes on
SELECT pg_temp.done(:'q', 2, 'retry', 502);
SELECT status, attempts, dead_at IS NOT NULL AS has_dead_at FROM pgwa.outbox WHERE instance_id = :'q' AND seq = 2;
SELECT attempt, outcome, http_status, error FROM pgwa.attempts WHERE instance_id = :'q' AND seq = 2 ORDER BY id;
SELECT * FROM pg_temp.claim();
-- Retry-After overrides the backoff
SELECT pg_temp.done(:'q', 3, 'retry', 429, 5000);
SELECT next_attempt_at - now() BETWEEN interval '4.9 s' AND interval '5.5 s' AS honours_retry_after
FROM pgwa.outbox WHERE instance_id = :'q' AND seq = 3;
SELECT pg_temp.time_passes(:'q');
SELECT * FROM pg_temp.claim();
-- permanent failure: dead at once
SELECT pg_temp.done(:'q', 3, 'dead', 400);
SELECT status, attempts FROM pgwa.outbox WHERE instance_id = :'q' AND seq = 3;

-- human pace: after a send, the instance waits delay_min..max plus delayMessage
SELECT message_id AS r2 FROM pgwa.enqueue(:'r', '{"to":"5511900000001","text":"r2","delayMessage":2}') \gset
SELECT pg_temp.done(:'r', 1, 'sent');
SELECT not_before - now() BETWEEN interval '0.9 s' AND interval '1.5 s' AS paced_1s FROM pgwa.instance_state WHERE instance_id = :'r';
SELECT * FROM pg_temp.claim();
SELECT pg_temp.time_passes(:'r');
SELECT * FROM pg_temp.claim();
SELECT pg_temp.done(:'r', 2, 'sent');
SELECT not_before - now() BETWEEN interval '2.9 s' AND interval '3.5 s' AS paced_3s FROM pgwa.instance_state WHERE instance_id = :'r';

-- disconnected: the attempt is given back and the queue pauses until reconnected
SELECT pgwa.send(:'r', '5511900000001', 'r3') \gset
SELECT pg_temp.time_passes(:'r');
SELECT * FROM pg_temp.claim();
SELECT pg_temp.done(:'r', 3, 'disconnected', 409);
SELECT o.status, o.attempts, s.connection_state FROM pgwa.outbox o JOIN pgwa.instance_state s USING (instance_id)
WHERE o.instance_id = :'r' AND o.seq = 3;
SELECT * FROM pg_temp.claim();
SELECT pgwa.set_connection_state(:'r', 'connected');
SELECT * FROM pg_temp.claim();

-- leases: a claim without a result comes back; a late result is ignored
SELECT pgwa._release_leases(false) AS released_unexpired;
SELECT pgwa._release_leases(true) AS released_all;
SELECT status, attempts FROM pgwa.outbox WHERE instance_id = :'r' AND seq = 3;
SELECT pg_temp.done(:'r', 3, 'sent') AS late_result;
SELECT * FROM pg_temp.claim();
SELECT pg_temp.done(:'r', 3, 'sent');

-- scheduled messages wait for their time, then take their place by due time
SELECT message_id AS s1 FROM pgwa.enqueue(:'q', jsonb_build_object('to','5511900000001','text','scheduled','scheduledFor', now() + interval '1 hour')) \gset
SELECT pg_temp.time_passes(:'q');
SELECT * FROM pg_temp.claim();
SELECT head_due > now() + interval '59 minutes' AS waits_for_schedule FROM pgwa.instance_state WHERE instance_id = :'q';
SELECT pgwa.send(:'q', '5511900000001', 'immediate') \gset
SELECT * FROM pg_temp.claim();
SELECT pg_temp.done(:'q', 5, 'sent');
UPDATE pgwa.outbox SET due_at = now() - interval '1 s' WHERE id = :'s1';
UPDATE pgwa.instance_state SET head_due = now() - interval '1 s' WHERE instance_id = :'q';
SELECT * FROM pg_temp.claim();

-- dry run: recorded as sent without a broker id
SELECT pg_temp.done(:'q', 4, 'dryrun');
SELECT status, broker_message_id FROM pgwa.outbox WHERE instance_id = :'q' AND seq = 4;
SELECT pgwa._next_due() IS NULL AS nothing_due;
