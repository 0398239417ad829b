-- Exhaustive mutation of the inbound fixtures: every value of every fixture
-- replaced by values of each JSON type (and removed), each result either
-- normalised envelopes that keep the output's invariants or a PW400/PW422
-- naming a field; never a crash, never another kind of error.
BEGIN;
SELECT plan(6);

CREATE TEMP TABLE fx (name text, body jsonb);
\set f `cat test/fixtures/inbound/seed000_sample.json`
INSERT INTO fx VALUES ('seed000_sample', :'f');
\set f `cat test/fixtures/inbound/envelope_contact_fields.json`
INSERT INTO fx VALUES ('envelope_contact_fields', :'f');
\set f `cat test/fixtures/inbound/envelope_lid.json`
INSERT INTO fx VALUES ('envelope_lid', :'f');
\set f `cat test/fixtures/inbound/envelope_batch.json`
INSERT INTO fx VALUES ('envelope_batch', :'f');
\set f `cat test/fixtures/inbound/baileys_text_quote.json`
INSERT INTO fx VALUES ('baileys_text_quote', :'f');
\set f `cat test/fixtures/inbound/baileys_media.json`
INSERT INTO fx VALUES ('baileys_media', :'f');
\set f `cat test/fixtures/inbound/baileys_interactive.json`
INSERT INTO fx VALUES ('baileys_interactive', :'f');
\set f `cat test/fixtures/inbound/baileys_wrappers.json`
INSERT INTO fx VALUES ('baileys_wrappers', :'f');
\set f `cat test/fixtures/inbound/baileys_group_lid.json`
INSERT INTO fx VALUES ('baileys_group_lid', :'f');
\set f `cat test/fixtures/inbound/baileys_ignored.json`
INSERT INTO fx VALUES ('baileys_ignored', :'f');

-- every path of a JSON value
CREATE FUNCTION pg_temp.paths(j jsonb, p text[] DEFAULT '{}') RETURNS SETOF text[] LANGUAGE sql AS $$
	SELECT p WHERE p <> '{}'
	UNION ALL
	SELECT q FROM jsonb_each(CASE WHEN jsonb_typeof(j) = 'object' THEN j ELSE '{}' END) e,
	              pg_temp.paths(e.value, p || e.key) q
	UNION ALL
	SELECT q FROM jsonb_array_elements(CASE WHEN jsonb_typeof(j) = 'array' THEN j ELSE '[]' END)
	              WITH ORDINALITY a(v, n), pg_temp.paths(a.v, p || (n - 1)::text) q
$$;
CREATE FUNCTION pg_temp.try(b jsonb, OUT state text, OUT field text, OUT envs jsonb[])
LANGUAGE plpgsql AS $$
BEGIN
	envs := pgwa.normalize_inbound(b);
	state := 'ok';
EXCEPTION WHEN others THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, field = COLUMN_NAME;
END $$;
CREATE TEMP TABLE runs AS
	SELECT fx.name, p, t.*
	FROM fx, pg_temp.paths(fx.body) p,
	     unnest(ARRAY['null', 'true', '0', '-1', '1e300', '3.5', '""', '"x"', '"@"', '"5511999999999"',
	                  '"5511999999999@s.whatsapp.net"', '"118827364519283@lid"', '"120363025246125486@g.us"',
	                  '"status@broadcast"', '"2024-13-01"', '"MESSAGE_INBOUND"', '"WHATSAPP_MESSAGES_UPSERT"',
	                  '[]', '[[[[[[1]]]]]]', '{}', '{"low":1,"high":2}', '{"message":{"conversation":"x"}}']::jsonb[]
	            || NULL::jsonb) v,
	     LATERAL pg_temp.try(CASE WHEN v IS NULL THEN fx.body #- p ELSE jsonb_set(fx.body, p, v) END) t;

SELECT cmp_ok((SELECT count(*)::int FROM runs), '>', 5000, 'thousands of mutations were tried');
SELECT is((SELECT count(*)::int FROM runs WHERE state NOT IN ('ok', 'PW400', 'PW422')), 0,
          'every mutation is normalised or refused with PW400 / PW422');
SELECT is((SELECT count(*)::int FROM runs WHERE state <> 'ok' AND coalesce(field, '') = ''), 0,
          'every refusal names its field');
SELECT ok((SELECT count(DISTINCT state) = 3 FROM runs), 'mutations are both accepted and refused, with both codes');
SELECT is((SELECT count(*)::int FROM runs, unnest(envs) e
           WHERE e->>'type' NOT IN ('MESSAGE_INBOUND', 'IGNORED')
              OR (e->>'type' = 'MESSAGE_INBOUND' AND (
                  coalesce(e->'payload'->'message'->>'id', '') = ''
                  OR coalesce(e->'payload'->'message'->>'type', '') = ''
                  OR (e->'payload'->'contact'->>'phone' IS NULL AND e->'payload'->'contact'->>'lid' IS NULL)
                  OR e->'payload'->'contact'->>'phone' !~ '^[0-9]{8,15}$'
                  OR coalesce(e->'payload'->'chat'->>'jid', '') = ''
                  OR (e->>'timestamp' IS NOT NULL AND e->>'timestamp' !~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$')))),
          0, 'every envelope has a message id and type, a sender, a chat and an ISO time or none');
SELECT is((SELECT count(*)::int FROM runs, unnest(envs) e
           WHERE e->>'type' = 'MESSAGE_INBOUND' AND e->>'timestamp' IS NOT NULL
             AND (e->>'timestamp')::timestamptz IS NULL), 0, 'every normalised time reads as a timestamptz');

SELECT * FROM finish();
ROLLBACK;
