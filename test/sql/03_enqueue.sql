-- Enqueue: per-instance sequence, idempotency, scheduling limits.
\set VERBOSITY terse
SELECT tenant_id AS t FROM pgwa.create_tenant('enqueue') \gset
SELECT pgwa.create_instance(:'t', 'a', 'broker', 'http://127.0.0.1:1', 'k') AS a \gset
SELECT pgwa.create_instance(:'t', 'b', 'broker', 'http://127.0.0.1:1', 'k') AS b \gset

SELECT status FROM pgwa.send(:'a', '5511900000001', 'one');
SELECT status FROM pgwa.send(:'a', '5511900000001', 'two');
SELECT status FROM pgwa.send(:'b', '5511900000001', 'first of b');
-- sequence numbers are per instance
SELECT i.name, o.seq, o.payload->>'text' AS text, o.status FROM pgwa.outbox o JOIN pgwa.instances i ON i.id = o.instance_id
WHERE o.tenant_id = :'t' ORDER BY i.name, o.seq;
SELECT i.name, s.next_seq, s.head_due IS NOT NULL AS has_head FROM pgwa.instance_state s JOIN pgwa.instances i ON i.id = s.instance_id
WHERE i.tenant_id = :'t' ORDER BY i.name;

-- idempotency: the same key and message give back the same message
SELECT message_id AS m1, created FROM pgwa.enqueue(:'a', '{"to":"5511900000002","text":"idem"}', 'key-1') \gset
SELECT :'created' AS first_created;
SELECT message_id = :'m1' AS same_message, created FROM pgwa.enqueue(:'a', '{"to":"5511900000002","text":"idem"}', 'key-1');
-- a messageId in the body is the key too, and equivalent writings are the same message
SELECT message_id = :'m1' AS same_message FROM pgwa.enqueue(:'a', '{"to":"+55 11 90000-0002","text":"idem","messageId":"key-1"}');
SELECT count(*) AS rows_for_key FROM pgwa.outbox WHERE instance_id = :'a' AND idempotency_key = 'key-1';
-- the same key with another message is a conflict
SELECT * FROM pgwa.enqueue(:'a', '{"to":"5511900000002","text":"different"}', 'key-1');
-- keys are per instance
SELECT created FROM pgwa.enqueue(:'b', '{"to":"5511900000002","text":"idem"}', 'key-1');
SELECT * FROM pgwa.enqueue(:'a', '{"to":"5511900000002","text":"x"}', '');

-- scheduling
SELECT status, scheduled_for > now() AS future FROM pgwa.enqueue(:'a', jsonb_build_object('to','5511900000003','text','later','scheduledFor', now() + interval '1 hour'));
SELECT * FROM pgwa.enqueue(:'a', jsonb_build_object('to','5511900000003','text','past','scheduledFor', now() - interval '1 minute'));
SELECT * FROM pgwa.enqueue(:'a', jsonb_build_object('to','5511900000003','text','far','scheduledFor', now() + interval '91 days'));
SELECT * FROM pgwa.enqueue(:'a', '{"to":"5511900000003","text":"bad","scheduledFor":"tomorrow-ish"}');
SELECT * FROM pgwa.enqueue(:'a', '{"to":"5511900000003","text":"bad","scheduledFor":"infinity"}');
SELECT status FROM pgwa.enqueue(:'a', jsonb_build_object('to','5511900000003','text','edge','scheduledFor', now() + interval '89 days'));

-- delayMessage is kept for pacing
SELECT message_id AS slow FROM pgwa.enqueue(:'a', '{"to":"5511900000004","text":"slow","delayMessage":7}') \gset
SELECT delay_message_s, payload->'delayMessage' AS kept FROM pgwa.outbox WHERE id = :'slow';

-- errors
SELECT * FROM pgwa.enqueue('00000000-0000-0000-0000-000000000000', '{"to":"5511900000004","text":"x"}');
SELECT * FROM pgwa.send(:'a', '55', 'x');
-- a failed enqueue leaves nothing behind
SELECT count(*) AS total FROM pgwa.outbox WHERE tenant_id = :'t';
