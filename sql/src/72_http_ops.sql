-------------------------------------------------------------------------------
-- Operational HTTP routes: /healthz, /metrics (and later /ready).
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
	IF array_length(p_seg, 1) = 1 AND p_seg[1] = 'metrics' THEN
		IF p_method IN ('GET', 'HEAD') THEN
			RETURN pgwa._http_metrics(p_headers);
		END IF;
		RETURN pgwa._not_allowed(p_method, 'GET');
	END IF;
	RETURN NULL;
END $$;
