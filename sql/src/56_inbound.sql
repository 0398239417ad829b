-------------------------------------------------------------------------------
-- Inbound, part 1: the normaliser, webhook secrets, real-time events, service
-- queues and the webhook counters. The rules that apply a message are in
-- 57_inbound_apply.sql; storing and applying webhook events in 58.
-------------------------------------------------------------------------------

-- Normalises a webhook body into MESSAGE_INBOUND envelopes (C, see
-- extension/inbound_normalize.c). dialect: broker (detects each event's
-- kind), envelope (seed-000 envelopes only) or baileys (raw upserts only).
CREATE FUNCTION pgwa.normalize_inbound(payload jsonb, dialect text DEFAULT 'broker') RETURNS jsonb[]
	AS 'MODULE_PATHNAME', 'pgwa_normalize_inbound' LANGUAGE C IMMUTABLE STRICT;

-- A time as the events and timelines write it: ISO 8601 UTC, milliseconds.
CREATE FUNCTION pgwa._iso(p timestamptz) RETURNS text
LANGUAGE sql STABLE STRICT
RETURN to_char(p AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');

-------------------------------------------------------------------------------
-- Real-time events: a durable row, announced by NOTIFY at commit
-------------------------------------------------------------------------------
-- Records an event and announces it on channel pgwa_events with
-- {tenant_id, id, event, data}. NOTIFY payloads must stay under 8000 bytes:
-- data is a summary (ids, types, short text); when even that is too long the
-- notification carries only the id, and listeners read pgwa.events.
-- The NOTIFY payload of an event: {tenant_id, id, event, data}, or
-- without data when that would pass the limit.
CREATE FUNCTION pgwa._event_note(p_tenant uuid, p_id bigint, p_event text, p_data jsonb) RETURNS text
	AS 'MODULE_PATHNAME', 'pgwa_event_note' LANGUAGE C IMMUTABLE STRICT;

-- Emits several events at once, in array order (one insert, one NOTIFY
-- each); returns the id of the last.
CREATE FUNCTION pgwa._emit_all(p_tenants uuid[], p_events text[], p_data jsonb[]) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	v_last bigint;
	v_sent bigint;
BEGIN
	WITH ins AS (
		INSERT INTO pgwa.events (tenant_id, event, payload)
		SELECT t, e, d FROM unnest(p_tenants, p_events, p_data) WITH ORDINALITY AS u(t, e, d, o) ORDER BY o
		RETURNING tenant_id, id, event, payload)
	SELECT max(n.id), count(pg_notify('pgwa_events', pgwa._event_note(n.tenant_id, n.id, n.event, n.payload)))
	INTO v_last, v_sent FROM (SELECT * FROM ins ORDER BY id OFFSET 0) n;
	RETURN v_last;
END $$;

CREATE FUNCTION pgwa._emit(p_tenant uuid, p_event text, p_data jsonb) RETURNS bigint
LANGUAGE sql AS $$
	SELECT pgwa._emit_all(ARRAY[p_tenant], ARRAY[p_event], ARRAY[p_data])
$$;

-------------------------------------------------------------------------------
-- Takes the transaction's lock of each sender ("tenant/phone-or-LID"), in
-- one order, so that writers of one lead (live batches, history chunks,
-- contact syncs) go one after the other and never deadlock.
CREATE FUNCTION pgwa._lock_leads(p_keys text[]) RETURNS void
LANGUAGE sql AS $$
	SELECT count(pg_advisory_xact_lock(h)) FROM (
		SELECT DISTINCT hashtextextended('pgwa.lead/' || k, 0) AS h FROM unnest(p_keys) k ORDER BY 1 OFFSET 0) s
$$;

-- Counters: whatsapp_webhook_events_total{result, reason, payload_type}
-------------------------------------------------------------------------------
CREATE FUNCTION pgwa._count_webhook(p_result text, p_reason text, p_payload_type text, p_n int DEFAULT 1)
RETURNS void
LANGUAGE sql AS $$
	INSERT INTO pgwa.webhook_counters AS c (result, reason, payload_type, shard, count)
	SELECT p_result, p_reason, coalesce(p_payload_type, 'unknown'), pg_backend_pid() % 8, p_n
	WHERE p_n > 0
	ON CONFLICT (result, reason, payload_type, shard) DO UPDATE SET count = c.count + excluded.count
$$;

-- The counters as Prometheus text lines (HELP, TYPE, then one line per series).
CREATE FUNCTION pgwa.webhook_metrics() RETURNS SETOF text
LANGUAGE sql STABLE AS $$
	SELECT line FROM (
		SELECT 0 AS o, '' AS k, '# HELP whatsapp_webhook_events_total Inbound webhook messages by result, reason and payload type.' AS line
		UNION ALL
		SELECT 1, '', '# TYPE whatsapp_webhook_events_total counter'
		UNION ALL
		SELECT 2, result || reason || payload_type,
		       format('whatsapp_webhook_events_total{result="%s",reason="%s",payload_type="%s"} %s',
		              result, reason, payload_type, sum(count))
		FROM pgwa.webhook_counters GROUP BY result, reason, payload_type
	) l ORDER BY o, k
$$;

-------------------------------------------------------------------------------
-- Webhook secrets
-------------------------------------------------------------------------------
-- Sets (or rotates) the secret a broker must present when it posts this
-- instance's events to POST /api/integrations/whatsapp/webhook. With
-- p_secret NULL a random one is generated. Returned once; only its SHA-256 is
-- kept. With p_grace > 0 the previous secret stays valid that long, so the
-- broker can be reconfigured without losing events. Several instances may
-- share one secret (a broker with one secret for all its instances) as long
-- as their broker_instance_id differ.
CREATE FUNCTION pgwa.set_webhook_secret(p_instance uuid, p_secret text DEFAULT NULL,
                                        p_grace interval DEFAULT '0')
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	i        pgwa.instances;
	v_secret text := coalesce(p_secret, pgwa._random_token());
	v_hash   bytea;
BEGIN
	SELECT * INTO i FROM pgwa.instances WHERE id = p_instance;
	IF NOT FOUND THEN
		PERFORM pgwa._raise('PW404', 'instance not found', 'instance_id');
	END IF;
	IF length(v_secret) NOT BETWEEN 16 AND 512 OR v_secret ~ '\s' THEN
		PERFORM pgwa._raise('PW400', 'secret must be 16 to 512 characters without spaces', 'secret');
	END IF;
	IF p_grace IS NULL OR p_grace < '0' OR p_grace > '30 days' THEN
		PERFORM pgwa._raise('PW400', 'grace must be between 0 and 30 days', 'grace');
	END IF;
	v_hash := pgwa._hash_key(v_secret);
	PERFORM 1 FROM pgwa.webhook_secrets s JOIN pgwa.instances o ON o.id = s.instance_id
	WHERE s.secret_hash = v_hash AND o.broker_instance_id = i.broker_instance_id AND o.id <> i.id;
	IF FOUND THEN
		PERFORM pgwa._raise('PW412', 'another instance with the same broker_instance_id uses this secret', 'secret');
	END IF;
	INSERT INTO pgwa.webhook_secrets AS s (instance_id, tenant_id, secret_hash)
	VALUES (i.id, i.tenant_id, v_hash)
	ON CONFLICT (instance_id) DO UPDATE SET
		previous_hash = CASE WHEN p_grace > '0' THEN s.secret_hash END,
		previous_valid_until = CASE WHEN p_grace > '0' THEN now() + p_grace END,
		secret_hash = excluded.secret_hash,
		rotated_at = now();
	RETURN v_secret;
END $$;

-- Removes an instance's webhook secret: its webhooks are refused from then on.
CREATE FUNCTION pgwa.clear_webhook_secret(p_instance uuid) RETURNS boolean
LANGUAGE sql AS $$
	WITH d AS (DELETE FROM pgwa.webhook_secrets WHERE instance_id = p_instance RETURNING 1)
	SELECT EXISTS (SELECT 1 FROM d)
$$;

-- The token a webhook presents, as seed 000 orders them: X-API-Key, then
-- Authorization: Bearer, then the legacy X-Authorization raw token.
CREATE FUNCTION pgwa._webhook_token(p_headers jsonb, OUT token text, OUT scheme text)
	AS 'MODULE_PATHNAME', 'pgwa_webhook_token' LANGUAGE C IMMUTABLE;

-- The instances whose current (or still valid previous) secret is p_token.
CREATE FUNCTION pgwa._webhook_instances(p_token text) RETURNS SETOF pgwa.instances
LANGUAGE sql STABLE AS $$
	SELECT i.* FROM pgwa.webhook_secrets s JOIN pgwa.instances i ON i.id = s.instance_id
	WHERE s.secret_hash = pgwa._hash_key(p_token)
	UNION
	SELECT i.* FROM pgwa.webhook_secrets s JOIN pgwa.instances i ON i.id = s.instance_id
	WHERE s.previous_hash = pgwa._hash_key(p_token) AND s.previous_valid_until > now()
$$;

-- The headers kept with a raw event: a fixed list, never a credential.
-- One expression, so that it is inlined where it is called, the C fast
-- path's insert among them; STABLE as jsonb_build_object is (an IMMUTABLE
-- SQL function over a STABLE body is not inlined, and each call would parse
-- its body again).
CREATE FUNCTION pgwa._webhook_headers(p_headers jsonb, p_scheme text) RETURNS jsonb
LANGUAGE sql STABLE
RETURN jsonb_strip_nulls(jsonb_build_object(
	'content-type', p_headers->'content-type', 'content-length', p_headers->'content-length',
	'user-agent', p_headers->'user-agent', 'x-request-id', p_headers->'x-request-id',
	'x-pgwa-client-addr', p_headers->'x-pgwa-client-addr', 'x-forwarded-for', p_headers->'x-forwarded-for',
	'x-real-ip', p_headers->'x-real-ip', 'x-webhook-id', p_headers->'x-webhook-id',
	'x-event-id', p_headers->'x-event-id', 'idempotency-key', p_headers->'idempotency-key', 'auth', p_scheme));

-------------------------------------------------------------------------------
-- Service queues
-------------------------------------------------------------------------------
-- Makes p_name (created if needed) the tenant's default ticket queue.
CREATE FUNCTION pgwa.set_default_ticket_queue(p_tenant uuid, p_name text) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
	v_id uuid;
BEGIN
	IF p_name IS NULL OR length(btrim(p_name)) NOT BETWEEN 1 AND 200 THEN
		PERFORM pgwa._raise('PW400', 'name must be 1 to 200 characters', 'name');
	END IF;
	PERFORM 1 FROM pgwa.tenants WHERE id = p_tenant FOR UPDATE;
	IF NOT FOUND THEN
		PERFORM pgwa._raise('PW404', 'tenant not found', 'tenant_id');
	END IF;
	UPDATE pgwa.ticket_queues SET is_default = false WHERE tenant_id = p_tenant AND is_default;
	INSERT INTO pgwa.ticket_queues AS q (tenant_id, name, is_default) VALUES (p_tenant, btrim(p_name), true)
	ON CONFLICT (tenant_id, name) DO UPDATE SET is_default = true
	RETURNING q.id INTO v_id;
	RETURN v_id;
END $$;
