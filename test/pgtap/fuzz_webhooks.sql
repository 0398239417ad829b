-- Deterministic mutation fuzzing of the dialect webhooks end to end in SQL:
-- every Evolution and Cloud API fixture, damaged many times, is posted
-- through pgwa.http() (Cloud API bodies signed with the instance's app
-- secret). Every answer must be a 200 (stored), a 400/422 (stored, rejected)
-- or a 401 (stored nothing), never a 500; and no stored event may be left
-- failed or unapplied: a failure there would be a bug retried forever.
BEGIN;
SELECT plan(10);
SELECT setseed(0.31);

CREATE TEMP TABLE fixture_raw (path text, body text);
\copy fixture_raw from program 'for f in test/fixtures/evolution/*.json test/fixtures/meta/*.json; do printf "%s\037" "$f"; tr -d "\n" < "$f"; echo; done' with (format csv, delimiter E'\x1f', quote E'\x01')
CREATE TEMP TABLE fixture AS
	SELECT row_number() OVER (ORDER BY path COLLATE "C") AS id, split_part(path, '/', 3) AS dialect,
	       split_part(path, '/', 4) AS name, body::jsonb AS body
	FROM fixture_raw;

-- Instances for every name and phone number the fixtures use, in a tenant of their own.
SELECT tenant_id AS t FROM pgwa.create_tenant('fuzz-webhooks') \gset
SELECT count(pgwa.set_webhook_secret(pgwa.create_instance(:'t', 'fz-' || k, 'evolution', 'http://127.0.0.1:1', 'k',
                                                          jsonb_build_object('broker_instance_id', k)),
                                     'fuzz-webhook-secret-0001')) AS evolution_instances
FROM (SELECT DISTINCT body->>'instance' AS k FROM fixture WHERE dialect = 'evolution' AND body->>'instance' IS NOT NULL) s;
SELECT count(pgwa.set_meta_app_secret(pgwa.create_instance(:'t', 'fz-' || k, 'meta', 'http://127.0.0.1:1', 'k',
                                                           jsonb_build_object('settings', jsonb_build_object('phone_number_id', k))),
                                      'fuzz-app-secret-0123456789')) AS meta_instances
FROM (SELECT DISTINCT unnest(pgwa._meta_phone_number_ids(body)) AS k FROM fixture WHERE dialect = 'meta') s;

-- HMAC-SHA256 (RFC 2104) over the exact text posted.
CREATE FUNCTION pg_temp.sign(k text, m text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	kb bytea := convert_to(k, 'UTF8');
	i  bytea;
	o  bytea;
BEGIN
	kb := kb || decode(repeat('00', 64 - length(kb)), 'hex');
	i := kb;
	o := kb;
	FOR n IN 0..63 LOOP
		i := set_byte(i, n, get_byte(kb, n) # 54);
		o := set_byte(o, n, get_byte(kb, n) # 92);
	END LOOP;
	RETURN 'sha256=' || encode(sha256(o || sha256(i || convert_to(m, 'UTF8'))), 'hex');
END $$;

-- Every node of every fixture, by path (a JSON array of text arrays).
CREATE TEMP TABLE node AS
WITH RECURSIVE walk(id, path, v) AS (
	SELECT id, ARRAY[]::text[], body FROM fixture
	UNION ALL
	SELECT w.id, w.path || c.k, c.v
	FROM walk w, LATERAL (
		SELECT key AS k, value AS v FROM jsonb_each(CASE WHEN jsonb_typeof(w.v) = 'object' THEN w.v END)
		UNION ALL
		SELECT (ord - 1)::text, value FROM jsonb_array_elements(CASE WHEN jsonb_typeof(w.v) = 'array' THEN w.v END)
		     WITH ORDINALITY AS a(value, ord)) c)
SELECT id, jsonb_agg(to_jsonb(path)) AS paths FROM walk WHERE cardinality(path) > 0 GROUP BY id;

-- Values that reach the apply path: statuses, states, ids, phones, times.
CREATE FUNCTION pg_temp.random_value() RETURNS jsonb LANGUAGE sql AS $$
	SELECT (ARRAY[
		'null', 'true', 'false', '0', '-1', '3.5', '1714655100', '1714655100123', '""', '"yesterday"',
		'"5511999999999"', '"5511999999999@s.whatsapp.net"', '"120363025246125486@g.us"', '"99887766554433@lid"',
		'"1234567@s.whatsapp.net"', '"123"', '"status@broadcast"', '[]', '{}', '[{}]',
		'"DELIVERY_ACK"', '"READ"', '"PLAYED"', '"ERROR"', '"SERVER_ACK"', '"delivered"', '"read"', '"failed"',
		'"sent"', '"open"', '"close"', '"connecting"', '"3EB0FEEDBEEF00112233"', '"wamid.X"',
		'"106540352242922"', '"112233445566778"', '"business"', '"loja-v1"',
		'{"conversation":"x"}', '{"imageMessage":{"mimetype":"image/png"}}',
		'{"id":"wamid.Y","from":"5511999999999","type":"text","text":{"body":"x"}}',
		'{"id":"wamid.Z","status":"read","timestamp":"1750263790","recipient_id":"16505551234"}',
		to_jsonb(repeat('x', 3000))
	]::jsonb[])[1 + floor(random() * 43)::int]
$$;

CREATE FUNCTION pg_temp.mutate(body jsonb, paths jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
	p text[];
BEGIN
	FOR i IN 1 .. 1 + floor(random() * 2)::int LOOP
		p := ARRAY(SELECT jsonb_array_elements_text(paths->floor(random() * jsonb_array_length(paths))::int));
		BEGIN
			CASE floor(random() * 5)::int
				WHEN 0 THEN body := body #- p;
				WHEN 1, 2 THEN body := jsonb_set(body, p, pg_temp.random_value());
				WHEN 3 THEN body := jsonb_set(body, p[1:cardinality(p) - 1] || ('x' || floor(random() * 9)::text),
				                              pg_temp.random_value(), true);
				ELSE body := jsonb_set(body, p, jsonb_build_array(body #> p, body #> p));
			END CASE;
		EXCEPTION WHEN others THEN
			NULL;	-- a path made stale by an earlier mutation of this round
		END;
	END LOOP;
	RETURN body;
END $$;

CREATE TEMP TABLE answer (id bigint, round int, post int, status int, accepted int);
DO $$
DECLARE
	f   record;
	b   text;
	r   pgwa.http_response;
	hdr jsonb;
BEGIN
	FOR f IN SELECT x.*, n.paths FROM fixture x JOIN node n USING (id) ORDER BY id LOOP
		FOR i IN 0 .. 60 LOOP
			-- round 0 is the fixture itself; every second body goes twice (a redelivery)
			b := CASE WHEN i = 0 THEN f.body ELSE pg_temp.mutate(f.body, f.paths) END::text;
			FOR k IN 1 .. CASE WHEN i % 2 = 0 THEN 2 ELSE 1 END LOOP
				hdr := CASE WHEN f.dialect = 'meta'
				            THEN jsonb_build_object('x-hub-signature-256', pg_temp.sign('fuzz-app-secret-0123456789', b))
				            ELSE '{"x-api-key":"fuzz-webhook-secret-0001"}' END;
				r := pgwa.http('POST', CASE WHEN f.dialect = 'meta' THEN '/webhooks/meta' ELSE '/webhooks/whatsapp' END,
				               '{}', hdr, b);
				-- the worker's step, then what it made of the stored copies
				PERFORM pgwa.apply_pending();
				INSERT INTO answer VALUES (f.id, i, k, r.status, (
					SELECT sum((w.result->>'accepted')::int)::int FROM pgwa.webhook_events w
					WHERE w.id = (r.body::jsonb->>'eventId')::bigint
					   OR w.id IN (SELECT x::bigint FROM jsonb_array_elements_text(
					                   CASE WHEN jsonb_typeof(r.body::jsonb->'eventIds') = 'array'
					                        THEN r.body::jsonb->'eventIds' ELSE '[]' END) x)));
			END LOOP;
		END LOOP;
	END LOOP;
END $$;

SELECT cmp_ok((SELECT count(*)::int FROM answer), '>', 2000, 'thousands of damaged bodies were posted');
SELECT is((SELECT count(*)::int FROM answer WHERE status NOT IN (200, 400, 401, 422)), 0,
          'every answer is 200, 400, 401 or 422: never a 500');
SELECT is((SELECT count(*)::int FROM answer a JOIN fixture f USING (id)
           WHERE a.round = 0 AND f.name NOT LIKE 'malformed%' AND a.status <> 200), 0,
          'every well-formed fixture is taken with 200');
SELECT cmp_ok((SELECT count(*)::int FROM answer WHERE status = 200 AND round > 0), '>',
              (SELECT count(*)::int / 3 FROM answer), 'a good share of damaged bodies is still taken');
SELECT is((SELECT count(*)::int FROM pgwa.webhook_events WHERE tenant_id = :'t' AND status IN ('failed', 'received')), 0,
          'no stored event is left failed or unapplied');
SELECT is((SELECT count(*)::int FROM pgwa.webhook_events
           WHERE tenant_id = :'t' AND status = 'rejected' AND error_sqlstate NOT IN ('PW400', 'PW422')), 0,
          'rejected events are validation errors');
SELECT is((SELECT count(*)::int FROM pgwa.webhook_events
           WHERE tenant_id = :'t' AND status NOT IN ('applied', 'duplicate', 'ignored', 'deferred', 'rejected')), 0,
          'every stored event has an outcome');
SELECT is((SELECT count(*)::int FROM pgwa.outbox o JOIN pgwa.instances i ON i.id = o.instance_id
           WHERE i.tenant_id = :'t'), 0, 'webhooks never queue outbound messages');
SELECT is((SELECT count(*)::int FROM answer WHERE post = 2 AND accepted > 0), 0,
          'a redelivered body applies nothing new');
SELECT cmp_ok((SELECT count(*)::int FROM answer WHERE post = 1 AND round % 2 = 0 AND accepted > 0), '>', 20,
              'while the first delivery of many of them did');

SELECT * FROM finish();
ROLLBACK;
