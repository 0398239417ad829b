-- Deterministic mutation fuzzing of the inbound dialects: every fixture of
-- test/fixtures/evolution, test/fixtures/meta and test/fixtures/coexistence
-- (Cloud API bodies too) is damaged a thousand times
-- (a node anywhere removed, replaced by a value of another type or size, a
-- member added, the body replaced). Each result must be either events of the
-- documented shapes or a PW error: never a crash, never another error.
BEGIN;
SELECT plan(12);
SELECT setseed(0.57);

CREATE TEMP TABLE fixture_raw (path text, body text);
\copy fixture_raw from program 'for f in test/fixtures/evolution/*.json test/fixtures/meta/*.json test/fixtures/coexistence/*.json; do printf "%s\037" "$f"; tr -d "\n" < "$f"; echo; done' with (format csv, delimiter E'\x1f', quote E'\x01')
CREATE TEMP TABLE fixture AS
	SELECT row_number() OVER (ORDER BY path COLLATE "C") AS id,
	       CASE split_part(path, '/', 3) WHEN 'coexistence' THEN 'meta' ELSE split_part(path, '/', 3) END AS dialect,
	       split_part(path, '/', 4) AS name, body::jsonb AS body
	FROM fixture_raw;

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

CREATE FUNCTION pg_temp.random_value() RETURNS jsonb LANGUAGE sql AS $$
	SELECT (ARRAY[
		'null', 'true', 'false', '0', '-1', '1e308', '-1e-308', '3.5', '1714655100', '1714655100123',
		'123456789012345678901234567890', '""', '" "', '"\u0001x"', '"yesterday"', '"1714655100"',
		'"5511999999999"', '"5511999999999@s.whatsapp.net"', '"120363025246125486@g.us"', '"99887766554433@lid"',
		'"status@broadcast"', '"@"', '"\ud83d\ude00"', '"é"', '[]', '[1,"a",null]', '[{}]', '[[]]', '{}',
		'{"low":1714655100,"high":0}', '{"low":"x","high":[]}', '{"conversation":"x"}', '{"protocolMessage":{}}',
		'{"id":"wamid.X","type":"text","text":{"body":"x"}}', '{"phone_number_id":"p"}', '{"remoteJid":"x","id":"y"}',
		to_jsonb(repeat('x', 5000)), to_jsonb(repeat('é', 2000)),
		'{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":[[[[[[1]]]]]]}}}}}}}}',
		'"messages"', '"history"', '"smb_app_state_sync"', '"smb_message_echoes"', '"whatsapp_business_account"',
		'"messages.upsert"', '"MESSAGES_UPDATE"', '"connection.update"', '"qrcode.updated"', '"send.message"',
		'"DELIVERY_ACK"', '"READ"', '"failed"', '"open"', '"interactive"', '"button_reply"', '"unsupported"'
	]::jsonb[])[1 + floor(random() * 55)::int]
$$;

CREATE FUNCTION pg_temp.mutate(body jsonb, paths jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
	p text[];
BEGIN
	FOR i IN 1 .. 1 + floor(random() * 3)::int LOOP
		p := ARRAY(SELECT jsonb_array_elements_text(paths->floor(random() * jsonb_array_length(paths))::int));
		BEGIN
			CASE floor(random() * 6)::int
				WHEN 0 THEN body := body #- p;
				WHEN 1, 2 THEN body := jsonb_set(body, p, pg_temp.random_value());
				WHEN 3 THEN body := jsonb_set(body, p[1:cardinality(p) - 1] || ('x' || floor(random() * 9)::text),
				                              pg_temp.random_value(), true);
				WHEN 4 THEN body := jsonb_set(body, p, jsonb_build_array(body #> p, body #> p));
				ELSE IF random() < 0.05 THEN body := pg_temp.random_value(); END IF;
			END CASE;
		EXCEPTION WHEN others THEN
			NULL;	-- a path made stale by an earlier mutation of this round
		END;
	END LOOP;
	RETURN body;
END $$;

CREATE TEMP TABLE seed AS
SELECT f.id, f.name, f.dialect, f.body, n.paths
FROM fixture f JOIN node n USING (id);

CREATE TEMP TABLE outcome (id bigint, dialect text, sqlstate text, shape_ok boolean, envelopes_ok boolean);
DO $$
DECLARE
	s record;
	b jsonb;
	r jsonb;
	st text;
BEGIN
	FOR s IN SELECT * FROM seed ORDER BY id LOOP
		FOR i IN 1 .. 1000 LOOP
			b := pg_temp.mutate(s.body, s.paths);
			r := NULL;
			BEGIN
				IF s.dialect = 'meta' THEN
					r := pgwa.normalize_meta(b);
				ELSE
					r := pgwa.normalize_evolution(b);
				END IF;
				st := 'accepted';
			EXCEPTION WHEN others THEN
				GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE;
			END;
			INSERT INTO outcome VALUES (s.id, s.dialect, st,
				r IS NULL OR (jsonb_typeof(r->'events') = 'array' AND jsonb_typeof(r->'ignored') = 'array'
				              AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(r->'events') e
				                              WHERE e->>'kind' NOT IN ('message', 'status', 'connection', 'qrcode', 'echo',
				                                                       'history', 'state_sync', 'echoes')
				                                 OR (e->>'kind' = 'status' AND e->>'status' NOT IN
				                                     ('sent', 'delivered', 'read', 'played', 'failed'))
				                                 OR (e->>'kind' = 'history' AND EXISTS (
				                                     SELECT 1 FROM jsonb_array_elements(e->'chunks') c,
				                                                   jsonb_array_elements(c->'messages') m
				                                     WHERE m->>'phone' !~ '^[0-9]{7,15}$'
				                                        OR (c->>'progress')::int NOT BETWEEN 0 AND 100)))
				              AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(r->'ignored') g
				                              WHERE jsonb_typeof(g->'reason') <> 'string')),
				r IS NULL OR NOT EXISTS (
					SELECT 1 FROM jsonb_array_elements(r->'events') e
					WHERE e->>'kind' = 'message'
					  AND (jsonb_typeof(e->'envelope'->'id') <> 'string' OR e->'envelope'->>'type' <> 'MESSAGE_INBOUND'
					       OR jsonb_typeof(e->'envelope'->'instanceId') <> 'string'
					       OR jsonb_typeof(e->'envelope'->'payload'->'contact') <> 'object'
					       OR jsonb_typeof(e->'envelope'->'payload'->'message'->'type') <> 'string'
					       OR jsonb_typeof(e->'envelope'->'payload'->'metadata') <> 'object'
					       OR coalesce(e->'envelope'->'payload'->'contact'->>'phone', '0000000') !~ '^[0-9]{7,15}$')));
		END LOOP;
	END LOOP;
END $$;

SELECT cmp_ok((SELECT count(DISTINCT dialect)::int FROM seed), '=', 2, 'fixtures of both dialects were loaded');
SELECT is((SELECT count(*)::int FROM outcome), (SELECT count(*)::int * 1000 FROM seed),
          'every mutated body was tried (no crash)');
SELECT is((SELECT count(*)::int FROM outcome WHERE sqlstate <> 'accepted' AND sqlstate NOT LIKE 'PW%'), 0,
          'every refusal is a PW error');
SELECT is((SELECT string_agg(DISTINCT sqlstate, ',') FROM outcome WHERE sqlstate <> 'accepted'), 'PW400',
          'refusals are validation errors');
SELECT cmp_ok((SELECT count(*)::int FROM outcome WHERE sqlstate = 'accepted'), '>',
              (SELECT count(*)::int / 4 FROM outcome), 'a good share of mutations is still accepted');
SELECT cmp_ok((SELECT count(*)::int FROM outcome WHERE sqlstate = 'PW400'), '>', 2000,
              'a good share is refused as invalid');
SELECT is((SELECT count(*)::int FROM outcome WHERE NOT shape_ok), 0,
          'accepted bodies give events and ignored entries of the documented shapes');
SELECT is((SELECT count(*)::int FROM outcome WHERE NOT envelopes_ok), 0,
          'every message event is a complete seed-000 envelope with an E.164 phone or none');
SELECT is((SELECT count(*)::int FROM seed s
           WHERE name NOT LIKE 'malformed%'
             AND NOT EXISTS (SELECT 1 FROM outcome o WHERE o.id = s.id AND o.sqlstate = 'accepted')), 0,
          'every well-formed fixture survives some of its mutations');
SELECT is((SELECT count(*)::int FROM seed
           WHERE name NOT LIKE 'malformed%'
             AND CASE WHEN dialect = 'meta' THEN pgwa.normalize_meta(body) IS DISTINCT FROM pgwa.normalize_meta(body)
                      ELSE pgwa.normalize_evolution(body) IS DISTINCT FROM pgwa.normalize_evolution(body) END), 0,
          'the dialects are deterministic');

-- The signature check answers true or false for any input, never an error.
CREATE TEMP TABLE sig (ok boolean);
DO $$
BEGIN
	FOR i IN 1 .. 3000 LOOP
		INSERT INTO sig SELECT pgwa.verify_meta_signature(
			CASE WHEN random() < 0.1 THEN NULL ELSE repeat(chr(32 + floor(random() * 90)::int), floor(random() * 50)::int) END,
			CASE floor(random() * 4)::int
				WHEN 0 THEN 'sha256=' || substr(md5(random()::text) || md5(random()::text), 1, floor(random() * 70)::int)
				WHEN 1 THEN repeat(chr(32 + floor(random() * 90)::int), floor(random() * 80)::int)
				WHEN 2 THEN NULL
				ELSE 'sha256=' || md5(random()::text) || md5(random()::text) END,
			CASE WHEN random() < 0.1 THEN '' ELSE md5(random()::text) END);
	END LOOP;
END $$;
SELECT is((SELECT count(*)::int FROM sig WHERE ok IS NOT false), 0, 'random signatures never verify and never fail');
SELECT is(pgwa.verify_meta_signature('x', 'sha256=' || encode(sha256(''), 'hex'), 'k'), false, 'a digest of something else is refused');

SELECT * FROM finish();
ROLLBACK;
