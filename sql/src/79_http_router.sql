-------------------------------------------------------------------------------
-- The main router and the entry point of pgwa-http. Each area's sub-router
-- lives in its own file (70_http.sql for /v1, 72_http_ops.sql, 74_http_inbound.sql
-- for /api, 76_http_seed_routes.sql for /integrations, 78_http_zapi.sql for
-- the Z-API dialect under /instances, ...).
-------------------------------------------------------------------------------
CREATE FUNCTION pgwa._route(p_method text, p_seg text[], p_query jsonb, p_headers jsonb, p_body text)
RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	r pgwa.http_response;
BEGIN
	CASE p_seg[1]
		WHEN 'v1' THEN
			r := pgwa._route_v1(p_method, p_seg, p_query, p_headers, p_body);
		WHEN 'api' THEN
			r := pgwa._route_api(p_method, p_seg, p_query, p_headers, p_body);
		WHEN 'webhooks' THEN
			r := pgwa._route_webhooks(p_method, p_seg, p_query, p_headers, p_body);
		WHEN 'integrations' THEN
			r := pgwa._route_seed_send(p_method, p_seg, p_query, p_headers, p_body);
		WHEN 'uploads' THEN
			IF coalesce(array_length(p_seg, 1), 0) = 2 AND p_seg[2] = 'sweep' AND p_method = 'POST' THEN
				r := pgwa._http_upload_sweep(p_headers);
			ELSIF coalesce(array_length(p_seg, 1), 0) = 2 AND p_method IN ('GET', 'HEAD') THEN
				r := pgwa._http_upload_file(p_seg[2], p_query);
			ELSIF coalesce(array_length(p_seg, 1), 0) = 2 THEN
				r := pgwa._not_allowed(p_method, 'GET');
			END IF;
		WHEN 'connections' THEN
			r := pgwa._route_connections(p_method, p_seg, p_query, p_headers, p_body);
		WHEN 'instances' THEN
			r := pgwa._route_zapi(p_method, p_seg, p_query, p_headers, p_body);
		ELSE
			r := pgwa._route_ops(p_method, p_seg, p_query, p_headers, p_body);
	END CASE;
	IF r IS NULL THEN
		PERFORM pgwa._raise('PW404', format('no route for %s %s', p_method,
		                                    '/' || array_to_string(p_seg, '/')));
	END IF;
	RETURN r;
END $$;

-- The router behind pgwa.http(): every request but the two that
-- pgwa.http() serves itself when all is as usual (extension/http_fast.c:
-- the seed-000 webhook and a send), which this answers the same way when
-- they come here.
CREATE FUNCTION pgwa._http_sql(p_method text, p_path text, p_query jsonb DEFAULT '{}',
                               p_headers jsonb DEFAULT '{}', p_body text DEFAULT NULL)
RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	v_seg text[] := array_remove(string_to_array(p_path, '/'), '');
	r pgwa.http_response;
	v_state text;
	v_message text;
	v_field text;
	v_detail text;
BEGIN
	BEGIN
		r := pgwa._route(upper(p_method), v_seg, coalesce(p_query, '{}'), coalesce(p_headers, '{}'), p_body);
	EXCEPTION WHEN others THEN
		GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
		                        v_field = COLUMN_NAME, v_detail = PG_EXCEPTION_DETAIL;
		r := pgwa._error_reply(v_state, v_message, v_field, v_detail, p_headers->>'x-request-id');
	END;
	RETURN r;
END $$;

-- The single entry point of pgwa-http.
CREATE FUNCTION pgwa.http(p_method text, p_path text, p_query jsonb DEFAULT '{}',
                          p_headers jsonb DEFAULT '{}', p_body text DEFAULT NULL)
RETURNS pgwa.http_response
	AS 'MODULE_PATHNAME', 'pgwa_http' LANGUAGE C VOLATILE;
