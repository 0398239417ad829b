-- GET /metrics: counters kept by enqueue and _complete, failure classes,
-- backlog gauges, the exposition format and the route.
\set VERBOSITY terse
SELECT tenant_id AS t, api_key AS tkey FROM pgwa.create_tenant('metrics') \gset
SELECT pgwa.create_admin_key('metrics test') AS akey \gset
SELECT pgwa.create_instance(:'t', 'm-a', 'broker', 'http://127.0.0.1:1', 'k',
       '{"delay_min_ms":0,"delay_max_ms":0,"max_attempts":2}') AS a \gset
SELECT pgwa.create_instance(:'t', 'm-b', 'broker', 'http://127.0.0.1:1', 'k',
       '{"delay_min_ms":0,"delay_max_ms":0}') AS b \gset
-- Only this test's instances: hide the others from the claim.
UPDATE pgwa.instance_state SET head_due = NULL WHERE instance_id NOT IN (:'a', :'b');

-- The samples of pgwa.metrics(), parsed.
CREATE FUNCTION pg_temp.samples() RETURNS TABLE (metric text, labels text, value numeric)
LANGUAGE sql AS $$
	SELECT m[1], coalesce(m[2], ''), m[3]::numeric
	FROM regexp_split_to_table(pgwa.metrics(), E'\n') l,
	     regexp_match(l, '^([a-z_:]+)(?:\{(.*)\})? (\S+)$') m
$$;
-- This test's per-instance samples, instance ids shown as A and B.
CREATE FUNCTION pg_temp.mine(a uuid, b uuid) RETURNS TABLE (metric text, labels text, value numeric)
LANGUAGE sql AS $$
	SELECT metric, replace(replace(labels, a::text, 'A'), b::text, 'B'), value FROM pg_temp.samples()
	WHERE labels LIKE 'instance_name="m-_"%'
	ORDER BY 1, 2
$$;
CREATE FUNCTION pg_temp.claim() RETURNS TABLE (inst text, seq bigint, attempt int, type text)
LANGUAGE sql AS $$
	SELECT i.name, c.seq, c.attempt, c.payload->>'type'
	FROM pgwa._claim(100, 60) c JOIN pgwa.instances i ON i.id = c.instance_id ORDER BY 1, 2
$$;
CREATE FUNCTION pg_temp.time_passes(p uuid) RETURNS void LANGUAGE sql AS $$
	UPDATE pgwa.instance_state SET not_before = '-infinity' WHERE instance_id = p
$$;
CREATE FUNCTION pg_temp.done(p uuid, s bigint, outcome text, status int, class text DEFAULT NULL)
RETURNS text LANGUAGE sql AS $$
	SELECT pgwa._complete(p, s, outcome, status, CASE WHEN outcome = 'sent' THEN 'BRK-' || s END,
	                      CASE WHEN outcome <> 'sent' THEN 'failed' END, now(), 12.5, NULL, class)
$$;
-- failure counters are global: compare with what they were before this test
CREATE TEMP TABLE failures_before AS
	SELECT labels, value FROM pg_temp.samples() WHERE metric = 'pgwa_send_failures_total';

-- nothing counted yet; the backlog lists every instance, even idle ones
SELECT * FROM pg_temp.mine(:'a', :'b');

-- enqueue counts accepted messages by type; an idempotent replay is not counted
SELECT pgwa.send(:'a', '5511900000001', 'a1', '{}', 'k1'), pgwa.send(:'a', '5511900000001', 'a2'),
       pgwa.send(:'a', '5511900000001', 'a3'), pgwa.send(:'b', '5511900000001', 'b1') \gset
SELECT created FROM pgwa.enqueue(:'a', '{"to":"5511900000001","type":"image","mediaUrl":"https://example.com/a.png"}');
SELECT created FROM pgwa.enqueue(:'b', jsonb_build_object('to', '5511900000001', 'text', 'later',
                                 'scheduledFor', now() + interval '1 hour'));
SELECT created FROM pgwa.enqueue(:'a', '{"to":"5511900000001","text":"a1"}', 'k1');
SELECT * FROM pg_temp.mine(:'a', :'b') WHERE metric <> 'pgwa_send_retries_total';

-- a claimed message still counts in its instance's backlog
SELECT * FROM pg_temp.claim();
SELECT * FROM pg_temp.mine(:'a', :'b') WHERE metric = 'pgwa_instance_backlog_messages';

-- sent; transient 503 (retried); a timeout (retried); 429 with attempts
-- exhausted (dead, not retried); 400 (dead)
SELECT pg_temp.done(:'a', 1, 'sent', 200), pg_temp.done(:'b', 1, 'retry', 503);
SELECT * FROM pg_temp.claim();
SELECT pg_temp.done(:'a', 2, 'retry', NULL, 'timeout');
SELECT pg_temp.time_passes(:'a');
SELECT * FROM pg_temp.claim();
SELECT pg_temp.done(:'a', 2, 'retry', 429);
SELECT * FROM pg_temp.claim();
SELECT pg_temp.done(:'a', 3, 'dead', 400);
-- disconnected: a failure of its own class, neither retried nor dead
SELECT * FROM pg_temp.claim();
SELECT pg_temp.done(:'a', 4, 'disconnected', 409);
SELECT pgwa.set_connection_state(:'a', 'connected');
SELECT * FROM pg_temp.claim();
-- dry run counts as sent
SELECT pg_temp.done(:'a', 4, 'dryrun', NULL);
-- b: sent on retry; a late result for it is stale and not counted
SELECT pg_temp.time_passes(:'b');
SELECT * FROM pg_temp.claim();
SELECT pg_temp.done(:'b', 1, 'sent', 200);
SELECT pg_temp.done(:'b', 1, 'sent', 200) AS late_result;
-- connection refused (retried), then a failure without an HTTP answer or class (dead)
SELECT pgwa.send(:'b', '5511900000001', 'b3') \gset
SELECT * FROM pg_temp.claim();
SELECT pg_temp.done(:'b', 3, 'retry', NULL, 'connect');
SELECT pg_temp.time_passes(:'b');
SELECT * FROM pg_temp.claim();
SELECT pg_temp.done(:'b', 3, 'dead', NULL);

SELECT * FROM pg_temp.mine(:'a', :'b');
SELECT f.labels, f.value - coalesce(b.value, 0) AS increase
FROM pg_temp.samples() f LEFT JOIN failures_before b USING (labels)
WHERE f.metric = 'pgwa_send_failures_total' ORDER BY 1;
-- stored per (instance, type), one row written per batch
SELECT type, sent, retried, dead, fail_timeout, fail_connect, fail_http_4xx, fail_http_5xx,
       fail_http_429, fail_disconnected, fail_other
FROM pgwa.delivery_counts WHERE instance_id = :'b';

-- the global backlog is the sum of the instances'
SELECT (SELECT value FROM pg_temp.samples() WHERE metric = 'pgwa_backlog_messages')
     = (SELECT sum(value) FROM pg_temp.samples() WHERE metric = 'pgwa_instance_backlog_messages')
       AS global_backlog_is_the_sum;

-- this database has no dispatcher: its live metrics read as zero
SELECT metric, labels, value FROM pg_temp.samples()
WHERE metric NOT LIKE 'pgwa\_messages%' AND metric NOT IN ('pgwa_send_retries_total',
      'pgwa_send_failures_total', 'pgwa_instance_backlog_messages', 'pgwa_backlog_messages')
ORDER BY metric, CASE WHEN labels LIKE 'le=%' THEN replace(substr(labels, 5), '"', '')::float8 END;

-- the format: every line is a comment or a sample; one HELP and TYPE per
-- family, before its samples; label values escaped; a final line feed
SELECT pgwa._prom_escape(E'a\\b"c\nd') AS escaped;
WITH l AS (
	SELECT line, n FROM regexp_split_to_table(pgwa.metrics(), E'\n') WITH ORDINALITY AS x(line, n)
)
SELECT count(*) FILTER (WHERE line !~ '^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* \S'
                          AND line !~ '^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram)$'
                          AND line !~ '^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\[\\"n])*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\[\\"n])*")*\})? -?[0-9]+(\.[0-9]+)?$'
                          AND n < (SELECT max(n) FROM l)) AS bad_lines,
       (SELECT line FROM l ORDER BY n DESC LIMIT 1) = '' AS ends_with_line_feed,
       count(*) FILTER (WHERE line LIKE '# TYPE %') AS families,
       count(DISTINCT split_part(line, ' ', 3)) FILTER (WHERE line LIKE '# TYPE %') AS distinct_families,
       count(*) FILTER (WHERE line LIKE '# HELP %') AS helps
FROM l;
-- each sample follows the TYPE line of its family (histograms: _bucket, _sum, _count)
WITH l AS (
	SELECT line, n FROM regexp_split_to_table(pgwa.metrics(), E'\n') WITH ORDINALITY AS x(line, n)
), typed AS (
	SELECT n, CASE WHEN line LIKE '# TYPE %' THEN split_part(line, ' ', 3) END AS family,
	       substring(line FROM '^([a-zA-Z_:][a-zA-Z0-9_:]*)') AS sample
	FROM l
), current AS (
	SELECT sample, (SELECT t2.family FROM typed t2 WHERE t2.n < t.n AND t2.family IS NOT NULL
	                ORDER BY t2.n DESC LIMIT 1) AS family
	FROM typed t WHERE sample IS NOT NULL
)
SELECT count(*) > 0 AS has_samples,
       count(*) FILTER (WHERE sample <> family AND regexp_replace(sample, '_(bucket|sum|count)$', '') <> family)
       AS outside_their_family
FROM current;

-- the route: an admin key is needed; text/plain version 0.0.4
SELECT (pgwa.http('GET', '/metrics')).status AS no_key;
SELECT (pgwa.http('GET', '/metrics', '{}', jsonb_build_object('x-api-key', :'tkey'))).status AS tenant_key;
SELECT r.status, r.headers->>'Content-Type' AS content_type, r.body = pgwa.metrics() AS body_is_metrics
FROM pgwa.http('GET', '/metrics', '{}', jsonb_build_object('authorization', 'Bearer ' || :'akey')) r;
SELECT (pgwa.http('HEAD', '/metrics', '{}', jsonb_build_object('x-api-key', :'akey'))).status AS head;
SELECT r.status, r.headers->>'Allow' AS allow FROM pgwa.http('POST', '/metrics', '{}', jsonb_build_object('x-api-key', :'akey')) r;
