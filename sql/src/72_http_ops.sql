-------------------------------------------------------------------------------
-- Operational HTTP routes: /healthz, /ready, /metrics.
-------------------------------------------------------------------------------
CREATE FUNCTION pgwa._http_healthz() RETURNS pgwa.http_response
LANGUAGE plpgsql STABLE AS $$
DECLARE
	m record;
	-- the dispatcher is cluster-wide but serves one database: ours?
	v_pid int := CASE WHEN pgwa._dispatcher_serves_here() THEN pgwa.dispatcher_pid() END;
	v_status text;
	v_metrics jsonb;
BEGIN
	SELECT * INTO m FROM pgwa.mode();
	SELECT jsonb_build_object(
		'instances', (SELECT count(*) FROM pgwa.instances),
		'instancesDisconnected', (SELECT count(*) FROM pgwa.instance_state WHERE connection_state = 'disconnected'),
		'inFlight', (SELECT count(*) FROM pgwa.instance_state WHERE inflight_seq IS NOT NULL),
		'backlog', (SELECT count(*) FROM pgwa.outbox WHERE status IN ('queued', 'scheduled', 'failed')))
	INTO v_metrics;
	v_status := CASE WHEN m.mode = 'disabled' THEN 'disabled'
	                 WHEN v_pid IS NULL THEN 'degraded'
	                 ELSE 'ok' END;
	RETURN pgwa._reply(CASE WHEN v_status = 'degraded' THEN 503 ELSE 200 END, jsonb_build_object(
		'status', v_status,
		'database', 'ok',
		'dispatcher', jsonb_build_object('running', v_pid IS NOT NULL, 'pid', v_pid),
		'whatsapp', jsonb_build_object('runtime', jsonb_build_object(
			'mode', m.raw_mode, 'effectiveMode', m.mode, 'transport', 'http',
			'status', v_status, 'disabled', m.mode = 'disabled', 'metrics', v_metrics))));
END $$;

-- Readiness (seed 003 section 11: /ready checks the database and the
-- workers): 200 when this can serve, 503 otherwise, with the same body
-- {ready, checks: {database, dispatcher, pg_cron}}. database: this answer
-- comes from it (pgwa-http answers 503 itself when it has no session).
-- dispatcher: it runs and serves this database; in mode disabled nothing is
-- sent or delivered, so readiness does not need it there (it is still
-- reported). pg_cron: the extension is installed here (the periodic checks
-- and purges run through it).
CREATE FUNCTION pgwa._http_ready() RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	v_dispatcher boolean := pgwa._dispatcher_serves_here();
	v_cron boolean := EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron');
	v_ready boolean := (v_dispatcher OR (pgwa.mode()).mode = 'disabled') AND v_cron;
BEGIN
	RETURN pgwa._reply(CASE WHEN v_ready THEN 200 ELSE 503 END,
		jsonb_build_object('ready', v_ready, 'checks', jsonb_build_object(
			'database', true, 'dispatcher', v_dispatcher, 'pg_cron', v_cron)),
		'{"Cache-Control": "no-store"}');
END $$;

-- Prometheus scrape. It names every tenant's instances, so it needs an admin
-- key (Prometheus: authorization: {credentials: <admin key>}).
CREATE FUNCTION pgwa._http_metrics(p_headers jsonb) RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pgwa._require_admin(p_headers);
	RETURN ROW(200, jsonb_build_object('Content-Type', 'text/plain; version=0.0.4; charset=utf-8',
	                                   'Cache-Control', 'no-store'),
	           pgwa.metrics())::pgwa.http_response;
END $$;

-- Operational routes at the top level.
CREATE FUNCTION pgwa._route_ops(p_method text, p_seg text[], p_query jsonb, p_headers jsonb, p_body text)
RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
BEGIN
	IF array_length(p_seg, 1) = 1 AND p_seg[1] = 'healthz' THEN
		IF p_method IN ('GET', 'HEAD') THEN
			RETURN pgwa._http_healthz();
		END IF;
		RETURN pgwa._not_allowed(p_method, 'GET');
	END IF;
	IF array_length(p_seg, 1) = 1 AND p_seg[1] = 'ready' THEN
		IF p_method IN ('GET', 'HEAD') THEN
			RETURN pgwa._http_ready();
		END IF;
		RETURN pgwa._not_allowed(p_method, 'GET');
	END IF;
	IF array_length(p_seg, 1) = 1 AND p_seg[1] = 'metrics' THEN
		IF p_method IN ('GET', 'HEAD') THEN
			RETURN pgwa._http_metrics(p_headers);
		END IF;
		RETURN pgwa._not_allowed(p_method, 'GET');
	END IF;
	RETURN NULL;
END $$;
