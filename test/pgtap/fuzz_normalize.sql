-- Deterministic mutation fuzzing of the outbound normaliser: thousands of
-- damaged messages (keys removed, values of every JSON type and size put in
-- their place, deep nesting, odd Unicode) must each be either accepted or
-- refused with a PW error: never a crash, never another kind of error.
BEGIN;
SELECT plan(5);
SELECT setseed(0.20261123);

CREATE FUNCTION pg_temp.random_value() RETURNS jsonb LANGUAGE sql AS $$
	SELECT (ARRAY[
		'null', 'true', '0', '-1', '1e308', '-1e308', '3.5', '123456789012345678901234567890',
		'""', '" "', '"\u0001x"', '"5511999999999"', '"+55 (11) 99999-9999"', '"@"', '"a@b"',
		'"https://x.test/a.jpg"', '"ftp://x"', '"\ud83d\ude00"', '"é"', '[]', '[1,"a",null]', '{}',
		'{"name":"x"}', '{"latitude":1,"longitude":2}', '{"code":"pt_BR"}',
		to_jsonb(repeat('x', 5000)), to_jsonb(repeat('é', 2000)),
		'{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":[[[[[[1]]]]]]}}}}}}}}',
		'["a","b","c","d","e","f","g","h","i","j","k","l","m"]', '"text"', '"image"', '"poll"',
		'"location"', '"template"', '"contact"', '"reaction"', '"link"', '"audio"', '"document"'
	]::jsonb[])[1 + floor(random() * 39)::int]
$$;

CREATE FUNCTION pg_temp.mutate(m jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
	keys text[] := ARRAY['to', 'type', 'text', 'mediaUrl', 'caption', 'mimeType', 'fileName',
	                     'location', 'template', 'reaction', 'contact', 'poll', 'linkUrl',
	                     'delayMessage', 'delayTyping', 'scheduledFor', 'messageId', 'metadata',
	                     'previewUrl', 'quotedMessageId', 'imageUrl', 'title'];
	k text;
	inner_key text;
BEGIN
	FOR i IN 1 .. 1 + floor(random() * 3)::int LOOP
		k := keys[1 + floor(random() * array_length(keys, 1))::int];
		CASE floor(random() * 6)::int
			WHEN 0 THEN m := m - k;
			WHEN 1, 2 THEN m := m || jsonb_build_object(k, pg_temp.random_value());
			WHEN 3 THEN
				-- damage a member of a nested object
				IF jsonb_typeof(m->k) = 'object' AND (SELECT count(*) FROM jsonb_object_keys(m->k)) > 0 THEN
					SELECT x INTO inner_key FROM jsonb_object_keys(m->k) x ORDER BY random() LIMIT 1;
					m := jsonb_set(m, ARRAY[k, inner_key], pg_temp.random_value());
				END IF;
			WHEN 4 THEN m := m || jsonb_build_object('x' || floor(random() * 100)::int, pg_temp.random_value());
			ELSE
				IF random() < 0.1 THEN m := pg_temp.random_value(); END IF;
		END CASE;
		EXIT WHEN jsonb_typeof(m) <> 'object';
	END LOOP;
	RETURN m;
END $$;

CREATE TEMP TABLE seeds (m jsonb);
INSERT INTO seeds VALUES
	('{"to":"5511999999999","text":"hi"}'),
	('{"to":"5511999999999","type":"image","mediaUrl":"https://x.test/a.jpg","caption":"c"}'),
	('{"to":"5511999999999","type":"document","mediaUrl":"https://x.test/a.pdf","fileName":"a.pdf"}'),
	('{"to":"5511999999999","type":"location","location":{"latitude":1.5,"longitude":2.5,"name":"n"}}'),
	('{"to":"5511999999999","type":"template","template":{"name":"t","language":{"code":"pt_BR"},"components":[]}}'),
	('{"to":"5511999999999","type":"reaction","reaction":{"messageId":"A","emoji":"x"}}'),
	('{"to":"5511999999999","type":"contact","contact":{"name":"Ana","phone":"5511988887777"}}'),
	('{"to":"5511999999999","type":"link","text":"t","linkUrl":"https://x.test"}'),
	('{"to":"5511999999999","type":"poll","poll":{"name":"q","options":["a","b"]}}'),
	('{"to":"120363025246125486@g.us","text":"g","delayMessage":3,"messageId":"k","metadata":{"a":1}}');

CREATE TEMP TABLE outcomes (sqlstate text);
DO $$
DECLARE
	m jsonb;
	st text;
BEGIN
	FOR i IN 1 .. 6000 LOOP
		SELECT pg_temp.mutate(s.m) INTO m FROM seeds s ORDER BY random() LIMIT 1;
		BEGIN
			PERFORM pgwa.normalize_message(m);
			st := 'accepted';
		EXCEPTION WHEN others THEN
			GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE;
		END;
		INSERT INTO outcomes VALUES (st);
	END LOOP;
END $$;

SELECT is((SELECT count(*)::int FROM outcomes), 6000, 'every mutated message was tried (no crash)');
SELECT is((SELECT count(*)::int FROM outcomes WHERE sqlstate <> 'accepted' AND sqlstate NOT LIKE 'PW%'), 0,
          'every refusal is a PW error');
SELECT cmp_ok((SELECT count(*)::int FROM outcomes WHERE sqlstate = 'accepted'), '>', 300,
              'a good share of mutations is still accepted');
SELECT cmp_ok((SELECT count(*)::int FROM outcomes WHERE sqlstate = 'PW400'), '>', 1000,
              'a good share is refused as invalid');
-- the canonical form is stable: normalising it again changes nothing
SELECT is((SELECT count(*)::int FROM seeds WHERE pgwa.normalize_message(pgwa.normalize_message(m)) <> pgwa.normalize_message(m)), 0,
          'normalisation is idempotent');

SELECT * FROM finish();
ROLLBACK;
