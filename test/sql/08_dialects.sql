-- Inbound dialects: Evolution API and WhatsApp Cloud API webhook bodies as
-- inbound events (pure functions, no tables). The fixtures are read by psql
-- on the client side (the server cannot read the checkout).
\set VERBOSITY terse
CREATE TEMP TABLE fixture (dialect text, name text, body jsonb);
CREATE TEMP TABLE fixture_raw (path text, body text);
\copy fixture_raw from program 'for f in test/fixtures/evolution/*.json test/fixtures/meta/*.json; do printf "%s\037" "$f"; tr -d "\n" < "$f"; echo; done' with (format csv, delimiter E'\x1f', quote E'\x01')
INSERT INTO fixture SELECT split_part(path, '/', 3), split_part(path, '/', 4), body::jsonb FROM fixture_raw;
SELECT dialect, count(*) AS fixtures FROM fixture GROUP BY 1 ORDER BY 1;

-- The output of a dialect, or its error: SQLSTATE, field (COLUMN_NAME), message.
CREATE FUNCTION pg_temp.run(dialect text, body jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE s text; c text; t text;
BEGIN
	IF dialect = 'meta' THEN
		RETURN pgwa.normalize_meta(body);
	END IF;
	RETURN pgwa.normalize_evolution(body);
EXCEPTION WHEN others THEN
	GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, c = COLUMN_NAME, t = MESSAGE_TEXT;
	RETURN jsonb_build_object('error', s || ' [' || c || '] ' || t);
END $$;

-- Every fixture, normalised.
\pset format unaligned
\pset tuples_only on
SELECT '== ' || dialect || '/' || name || E'\n' || jsonb_pretty(pg_temp.run(dialect, body))
FROM fixture ORDER BY dialect, name COLLATE "C";
\pset format aligned
\pset tuples_only off

-- Seed 000: every message envelope has id, type MESSAGE_INBOUND, instanceId,
-- and a payload with contact, message (with a type) and metadata.
WITH ev AS (
	SELECT f.name, e
	FROM fixture f, jsonb_array_elements(pg_temp.run(f.dialect, f.body)->'events') e
	WHERE e->>'kind' = 'message')
SELECT count(*) AS envelopes,
       count(*) FILTER (WHERE e->'envelope'->>'id' IS NULL OR e->'envelope'->>'type' <> 'MESSAGE_INBOUND'
                          OR e->'envelope'->>'instanceId' IS NULL
                          OR jsonb_typeof(e->'envelope'->'payload'->'contact') <> 'object'
                          OR e->'envelope'->'payload'->'message'->>'type' IS NULL
                          OR jsonb_typeof(e->'envelope'->'payload'->'metadata'->'broker') <> 'object'
                          OR e->'envelope'->'payload'->>'instanceId' <> e->'envelope'->>'instanceId') AS incomplete,
       count(*) FILTER (WHERE e->'envelope'->'payload'->'contact'->>'phone' !~ '^[0-9]{7,15}$') AS bad_phones,
       count(*) FILTER (WHERE e->'envelope'->>'timestamp' !~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$') AS bad_timestamps
FROM ev;

-- Every entry, every change, every message: 2 entries x 2 changes x 2 messages.
WITH msg AS (
	SELECT e, c, jsonb_agg(jsonb_build_object('from', '551190000000' || m, 'id', format('wamid.%s.%s.%s', e, c, m),
	                                          'timestamp', '1750000000', 'type', 'text', 'text', jsonb_build_object('body', 'hi'))) AS msgs
	FROM generate_series(0, 1) e, generate_series(0, 1) c, generate_series(0, 1) m GROUP BY e, c),
chg AS (
	SELECT e, jsonb_agg(jsonb_build_object('field', 'messages', 'value', jsonb_build_object(
		'messaging_product', 'whatsapp', 'metadata', jsonb_build_object('phone_number_id', format('pn%s%s', e, c)),
		'messages', msgs)) ORDER BY c) AS changes
	FROM msg GROUP BY e),
body AS (
	SELECT jsonb_build_object('object', 'whatsapp_business_account',
	                          'entry', jsonb_agg(jsonb_build_object('id', 'waba' || e, 'changes', changes) ORDER BY e)) AS b
	FROM chg),
r AS (SELECT pgwa.normalize_meta(b) AS r FROM body)
SELECT jsonb_array_length(r->'events') AS events,
       (SELECT string_agg(e->'envelope'->>'id' || '@' || (e->'envelope'->>'instanceId'), ' ')
        FROM jsonb_array_elements(r->'events') e) AS ids
FROM r;

-- Evolution event names in any spelling; data as an object, an array or data.messages.
SELECT ev, jsonb_array_length(r->'events') AS events, r->'ignored' AS ignored
FROM (VALUES ('messages.upsert'), ('MESSAGES_UPSERT'), ('messages-upsert'), ('Messages.Upsert')) v(ev),
     LATERAL (SELECT pgwa.normalize_evolution(jsonb_build_object('event', ev, 'instance', 'i',
              'data', '{"key":{"remoteJid":"5511999999999@s.whatsapp.net","id":"A"},"message":{"conversation":"x"}}'::jsonb)) AS r) x;
SELECT pgwa.normalize_evolution('{"event":"messages.upsert","instance":"i","data":{"messages":[]}}');
SELECT pgwa.normalize_evolution('{"event":"messages.upsert","instance":"i","data":[]}');
SELECT pgwa.normalize_evolution('{"event":"presence.update","instance":"i","data":{"id":"x"}}');
SELECT pgwa.normalize_evolution('{"event":"connection.update","instance":"i","data":{"state":"refused"}}');
SELECT pgwa.normalize_evolution('{"event":"connection.update","instance":"i","data":{"state":"connecting"}}');

-- Timestamps: seconds, milliseconds, strings, protobuf Longs; ISO fallback to date_time.
SELECT ts, pgwa.normalize_evolution(jsonb_build_object('event', 'messages.upsert', 'instance', 'i',
         'date_time', '2024-05-02T10:05:00.5-03:00',
         'data', jsonb_build_object('key', '{"remoteJid":"5511999999999@s.whatsapp.net","id":"A"}'::jsonb,
                                    'message', '{"conversation":"x"}'::jsonb, 'messageTimestamp', ts)))
         #>> '{events,0,envelope,timestamp}' AS iso
FROM (VALUES ('1714655100'::jsonb), ('"1714655100"'), ('1714655100123'), ('{"low":1714655100,"high":0,"unsigned":true}'),
             ('{"low":-1,"high":0}'), ('0'), ('null'), ('1714655100.75')) v(ts);
SELECT pgwa.normalize_evolution('{"event":"messages.update","instance":"i","date_time":"2024-02-29T23:59:59Z","data":{"keyId":"A","fromMe":true,"remoteJid":"5511999999999@s.whatsapp.net","status":"READ"}}') #>> '{events,0,timestamp}' AS leap_day;
SELECT pgwa.normalize_evolution('{"event":"messages.update","instance":"i","date_time":"not a date","data":{"keyId":"A","fromMe":true,"status":"READ"}}') #> '{events,0}' AS unreadable_date_time;

-- Malformed bodies: PW400 with the path of the field.
SELECT pg_temp.run('evolution', b)->>'error' AS evolution_error
FROM (VALUES ('[1,2]'::jsonb), ('"text"'), ('{}'), ('{"event":42,"instance":"i"}'), ('{"event":"messages.upsert"}'),
             ('{"event":"messages.upsert","instance":"i"}'), ('{"event":"messages.upsert","instance":"i","data":null}'),
             ('{"event":"messages.upsert","instance":"i","data":7}'),
             ('{"event":"messages.upsert","instance":"i","data":[{"key":{"remoteJid":"x"}}]}'),
             ('{"event":"messages.upsert","instance":"i","data":{"messages":[1]}}'),
             ('{"event":"messages.upsert","instance":"i","data":{"key":{"id":"A","remoteJid":"x","fromMe":"yes"}}}'),
             ('{"event":"messages.upsert","instance":"i","data":{"key":{"id":"A","remoteJid":"x"},"message":"hi"}}'),
             ('{"event":"messages.upsert","instance":"i","data":{"key":{"id":"A","remoteJid":"x"},"pushName":5}}'),
             ('{"event":"messages.upsert","instance":"i","data":{"key":{"id":"A","remoteJid":"x"},"messageTimestamp":-5}}'),
             ('{"event":"messages.upsert","instance":"i","data":{"key":{"id":"A","remoteJid":"x"},"messageTimestamp":[1]}}'),
             ('{"event":"messages.update","instance":"i","data":[{"keyId":5}]}'),
             ('{"event":"connection.update","instance":"i","data":[]}'),
             ('{"event":"connection.update","instance":"i","data":{"state":1}}'),
             ('{"event":"qrcode.updated","instance":"i","data":{"qrcode":"abc"}}')) v(b);
SELECT pg_temp.run('meta', b)->>'error' AS meta_error
FROM (VALUES ('[]'::jsonb), ('{}'), ('{"object":"page","entry":[]}'), ('{"object":1,"entry":[]}'),
             ('{"object":"whatsapp_business_account"}'), ('{"object":"whatsapp_business_account","entry":{}}'),
             ('{"object":"whatsapp_business_account","entry":["x"]}'),
             ('{"object":"whatsapp_business_account","entry":[{"id":"1"}]}'),
             ('{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"value":{}}]}]}'),
             ('{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages"}]}]}'),
             ('{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":[]}]}]}'),
             ('{"entry":[{"changes":[{"field":"messages","value":{"metadata":{"phone_number_id":7}}}]}]}'),
             ('{"entry":[{"changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"p"},"messages":{}}}]}]}'),
             ('{"entry":[{"changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"p"},"messages":[{"id":"w"}]}}]}]}'),
             ('{"entry":[{"changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"p"},"messages":[{"id":"w","type":"text","timestamp":"soon"}]}}]}]}'),
             ('{"entry":[{"changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"p"},"messages":[{"id":"w","type":"text","text":"hi"}]}}]}]}'),
             ('{"entry":[{"changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"p"},"statuses":[{"id":"w"}]}}]}]}'),
             ('{"entry":[{"changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"p"},"contacts":[1]}}]}]}'),
             ('{"id":"x","event":"messages","data":"hi"}'),
             ('{"id":"x","event":"messages","data":{"object":"whatsapp_business_account","entry":[{"changes":7}]}}')) v(b);

-- Large batches are walked once: 10,000 messages in one change, one Evolution array.
SELECT jsonb_array_length(r->'events') AS meta_events,
       (SELECT count(DISTINCT e->'envelope'->>'id') FROM jsonb_array_elements(r->'events') e) AS distinct_ids,
       r #>> '{events,9999,envelope,payload,contact,name}' AS last_name
FROM (SELECT pgwa.normalize_meta(jsonb_build_object('entry', jsonb_build_array(jsonb_build_object('changes', jsonb_build_array(
	jsonb_build_object('field', 'messages', 'value', jsonb_build_object(
		'metadata', '{"phone_number_id":"p"}'::jsonb,
		'contacts', (SELECT jsonb_agg(jsonb_build_object('wa_id', (5511900000000 + i)::text, 'profile', jsonb_build_object('name', 'n' || i)))
		             FROM generate_series(0, 9999) i),
		'messages', (SELECT jsonb_agg(jsonb_build_object('from', (5511900000000 + i)::text, 'id', 'wamid.' || i, 'timestamp', 1750000000 + i,
		                                                 'type', 'text', 'text', jsonb_build_object('body', 'm' || i)))
		             FROM generate_series(0, 9999) i)))))))) AS r) x;
SELECT jsonb_array_length(r->'events') AS evolution_events, jsonb_array_length(r->'ignored') AS ignored
FROM (SELECT pgwa.normalize_evolution(jsonb_build_object('event', 'messages.upsert', 'instance', 'i', 'data',
	(SELECT jsonb_agg(jsonb_build_object('key', jsonb_build_object('remoteJid', (5511900000000 + i)::text || '@s.whatsapp.net',
	                                                               'fromMe', i % 10 = 0, 'id', 'K' || i),
	                                     'message', jsonb_build_object('conversation', 'm' || i), 'messageTimestamp', 1714655100 + i))
	 FROM generate_series(0, 9999) i))) AS r) x;

-- Bodies past 32 MB are refused before they are read.
SELECT pg_temp.run('meta', jsonb_build_object('entry', '[]'::jsonb, 'pad', repeat('x', 33 * 1024 * 1024)))->>'error' AS too_large;

-- X-Hub-Signature-256 (expected values from openssl dgst -sha256 -hmac).
SELECT pgwa.verify_meta_signature('{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[]}]}',
	'sha256=72e825f64ad82a43dea3b8787d9eb99b4db43e7920737729dff44c0040e1dfd1', 'app-secret-123') AS good;
SELECT pgwa.verify_meta_signature('{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[]}]}',
	'SHA256=72E825F64AD82A43DEA3B8787D9EB99B4DB43E7920737729DFF44C0040E1DFD1', 'app-secret-123') AS upper_case_hex;
SELECT pgwa.verify_meta_signature('{"text":{"body":"Olá, café às 10h?"}}',
	'sha256=ffd13190062a802c702ca2cfd2420e6fcaa0d8d00b18c217013b9ee4265f2d96', 'app-secret-123') AS utf8_body;
SELECT pgwa.verify_meta_signature('', 'sha256=7830cd86f8a6543b14f802bcb61303606ff278d50f445177d72f7c7896b9badc', 'app-secret-123') AS empty_body;
SELECT pgwa.verify_meta_signature('what do ya want for nothing?',
	'sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843', 'Jefe') AS rfc4231_case_2;
SELECT pgwa.verify_meta_signature('{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[]}]}',
	'sha256=72e825f64ad82a43dea3b8787d9eb99b4db43e7920737729dff44c0040e1dfd1', 'app-secret-124') AS wrong_secret;
SELECT pgwa.verify_meta_signature('{"object":"whatsapp_business_account","entry":[{"id":"102290129340399","changes":[]}]}',
	'sha256=72e825f64ad82a43dea3b8787d9eb99b4db43e7920737729dff44c0040e1dfd1', 'app-secret-123') AS tampered_body;
SELECT h AS header, pgwa.verify_meta_signature('what do ya want for nothing?', h, 'Jefe') AS ok
FROM (VALUES ('5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843'),
             ('sha1=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843'),
             ('sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec384'),
             ('sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec38430'),
             ('sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec384g'),
             ('sha256='), (''), (NULL)) v(h);
SELECT pgwa.verify_meta_signature('what do ya want for nothing?',
	'sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843', '') AS empty_secret,
       pgwa.verify_meta_signature('what do ya want for nothing?',
	'sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843', NULL) AS null_secret;

-- The subscription handshake.
SELECT pgwa.meta_verify_challenge('{"hub.mode":"subscribe","hub.verify_token":"tok-1","hub.challenge":"1158201444"}', 'tok-1');
CREATE FUNCTION pg_temp.challenge(q jsonb, token text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE s text; c text; t text;
BEGIN
	RETURN pgwa.meta_verify_challenge(q, token);
EXCEPTION WHEN others THEN
	GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, c = COLUMN_NAME, t = MESSAGE_TEXT;
	RETURN s || ' [' || c || '] ' || t;
END $$;
SELECT pg_temp.challenge(q, t)
FROM (VALUES ('{"hub.mode":"subscribe","hub.verify_token":"tok-2","hub.challenge":"1"}'::jsonb, 'tok-1'),
             ('{"hub.mode":"subscribe","hub.verify_token":"tok-1x","hub.challenge":"1"}', 'tok-1'),
             ('{"hub.mode":"unsubscribe","hub.verify_token":"tok-1","hub.challenge":"1"}', 'tok-1'),
             ('{"hub.verify_token":"tok-1","hub.challenge":"1"}', 'tok-1'),
             ('{"hub.mode":"subscribe","hub.verify_token":"tok-1"}', 'tok-1'),
             ('{"hub.mode":"subscribe","hub.verify_token":"tok-1","hub.challenge":77}', 'tok-1'),
             ('{"hub.mode":"subscribe","hub.verify_token":"","hub.challenge":"1"}', ''),
             ('{"hub.mode":"subscribe","hub.verify_token":"tok-1","hub.challenge":"1"}', NULL),
             (NULL, 'tok-1')) v(q, t);
