-------------------------------------------------------------------------------
-- Client webhooks: applications subscribe to pgwa's real-time events and the
-- dispatcher delivers each one durably (seed 003, "Message Broker / Webhooks"
-- and "Garantias de Entrega"; ARCHITECTURE: the dispatcher also delivers
-- pgwa's own outgoing webhooks, with the same retry machinery).
--
-- Every row of pgwa.events fans out, by trigger, to one delivery per matching
-- active subscription. The dispatcher claims the head delivery of each ready
-- subscription (ordered by event id, at most one in flight per subscription),
-- POSTs it signed with HMAC-SHA256 with no transaction open, and records the
-- results of a batch in one statement. Transient failures retry with
-- exponential backoff, permanent ones and exhausted attempts are dead and can
-- be replayed. Everything is keyed by tenant_id first (ARCHITECTURE section 5).
-------------------------------------------------------------------------------

-- A client application's subscription. The secret signs every delivery, so it
-- is kept retrievable (like an instance's broker key); it is shown once, when
-- created, and never returned or logged again. instance_id limits it to one
-- instance's events. events holds event names, or '*' for all of them;
-- match, when set, narrows them to events whose payload contains it (a
-- Z-API "connected" webhook takes instance.status with state connected).
-- dialect is the API that made the subscription: pgwa's own, or zapi for
-- those set by the Z-API dialect's update-webhook-* routes (78_http_zapi.sql),
-- one per instance and dialect_kind (received, delivery, ...).
CREATE TABLE pgwa.webhook_subscriptions (
	tenant_id    uuid NOT NULL REFERENCES pgwa.tenants (id) ON DELETE CASCADE,
	id           uuid NOT NULL DEFAULT gen_random_uuid(),
	instance_id  uuid REFERENCES pgwa.instances (id) ON DELETE CASCADE,
	url          text NOT NULL CHECK (url ~ '^https?://[^\s/?#]+([/?#]\S*)?$' AND length(url) <= 2048),
	events       text[] NOT NULL CHECK (cardinality(events) > 0),
	match        jsonb CHECK (jsonb_typeof(match) = 'object'),
	secret       text NOT NULL,
	active       boolean NOT NULL DEFAULT true,
	max_attempts int NOT NULL DEFAULT 8 CHECK (max_attempts BETWEEN 1 AND 50),
	dialect      text NOT NULL DEFAULT 'pgwa' CHECK (dialect IN ('pgwa', 'zapi')),
	dialect_kind text CHECK ((dialect = 'pgwa') = (dialect_kind IS NULL)),
	created_at   timestamptz NOT NULL DEFAULT now(),
	updated_at   timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX webhook_subscriptions_dialect_kind
	ON pgwa.webhook_subscriptions (tenant_id, instance_id, dialect, dialect_kind)
	WHERE dialect_kind IS NOT NULL;
CREATE INDEX webhook_subscriptions_id ON pgwa.webhook_subscriptions (id);
CREATE INDEX webhook_subscriptions_instance ON pgwa.webhook_subscriptions (instance_id)
	WHERE instance_id IS NOT NULL;

-- One event to deliver to one subscription.
--   pending    waiting for its turn (its subscription's earlier events go first)
--   sending    claimed by the dispatcher (lease_until bounds the claim)
--   failed     the last attempt failed transiently; retried at next_attempt_at
--   delivered  the subscriber answered 2xx
--   dead       permanent failure (4xx other than 408, 425, 429) or attempts
--              exhausted; replayable
-- instance_id is the event's instance (its payload's instanceId, or its
-- ticket's instance), NULL for tenant-wide events.
CREATE TABLE pgwa.webhook_deliveries (
	tenant_id        uuid   NOT NULL,
	id               bigint GENERATED ALWAYS AS IDENTITY,
	subscription_id  uuid   NOT NULL,
	event_id         bigint NOT NULL,
	event            text   NOT NULL,
	instance_id      uuid,
	status           text   NOT NULL DEFAULT 'pending'
	                 CHECK (status IN ('pending', 'sending', 'failed', 'delivered', 'dead')),
	attempts         int    NOT NULL DEFAULT 0,
	next_attempt_at  timestamptz NOT NULL DEFAULT now(),
	lease_until      timestamptz,
	last_http_status int,
	last_error       text,
	created_at       timestamptz NOT NULL DEFAULT now(),
	updated_at       timestamptz NOT NULL DEFAULT now(),
	delivered_at     timestamptz,
	dead_at          timestamptz,
	PRIMARY KEY (tenant_id, id),
	FOREIGN KEY (tenant_id, subscription_id) REFERENCES pgwa.webhook_subscriptions (tenant_id, id)
		ON DELETE CASCADE,
	FOREIGN KEY (tenant_id, event_id) REFERENCES pgwa.events (tenant_id, id) ON DELETE CASCADE
);
-- A subscription's deliveries, newest first (listing; cascades).
CREATE INDEX webhook_deliveries_subscription ON pgwa.webhook_deliveries (tenant_id, subscription_id, id);
-- A subscription's waiting deliveries in event order: its head is the first.
CREATE INDEX webhook_deliveries_waiting ON pgwa.webhook_deliveries (tenant_id, subscription_id, event_id)
	WHERE status IN ('pending', 'failed');
-- At most one delivery in flight per subscription.
CREATE UNIQUE INDEX webhook_deliveries_sending ON pgwa.webhook_deliveries (tenant_id, subscription_id)
	WHERE status = 'sending';
CREATE INDEX webhook_deliveries_lease ON pgwa.webhook_deliveries (lease_until) WHERE status = 'sending';
CREATE INDEX webhook_deliveries_dead ON pgwa.webhook_deliveries (tenant_id, subscription_id)
	WHERE status = 'dead';
CREATE INDEX webhook_deliveries_event ON pgwa.webhook_deliveries (tenant_id, event_id);
CREATE INDEX webhook_deliveries_id ON pgwa.webhook_deliveries (id);

-- Every delivery attempt: when, how long, what came back.
CREATE TABLE pgwa.webhook_delivery_attempts (
	tenant_id   uuid   NOT NULL,
	id          bigint GENERATED ALWAYS AS IDENTITY,
	delivery_id bigint NOT NULL,
	attempt     int    NOT NULL,
	started_at  timestamptz NOT NULL,
	duration_ms double precision,
	outcome     text   NOT NULL CHECK (outcome IN ('delivered', 'retry', 'dead', 'lease_expired')),
	http_status int,
	error       text,
	PRIMARY KEY (tenant_id, id),
	FOREIGN KEY (tenant_id, delivery_id) REFERENCES pgwa.webhook_deliveries (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX webhook_delivery_attempts_delivery ON pgwa.webhook_delivery_attempts (tenant_id, delivery_id);

-- pgwa_client_webhook_deliveries_total: outcomes of attempts per
-- subscription and event. Only the dispatcher writes them, one upsert per
-- batch of results.
CREATE TABLE pgwa.webhook_delivery_counts (
	tenant_id       uuid   NOT NULL,
	subscription_id uuid   NOT NULL,
	event           text   NOT NULL,
	delivered       bigint NOT NULL DEFAULT 0,
	retried         bigint NOT NULL DEFAULT 0,
	dead            bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (tenant_id, subscription_id, event),
	FOREIGN KEY (tenant_id, subscription_id) REFERENCES pgwa.webhook_subscriptions (tenant_id, id)
		ON DELETE CASCADE
) WITH (fillfactor = 50);

-------------------------------------------------------------------------------
-- Signing
-------------------------------------------------------------------------------
-- Hex HMAC-SHA256 of data keyed by key (C, extension/crypto.c).
CREATE FUNCTION pgwa._hmac_sha256_hex(key text, data text) RETURNS text
	AS 'MODULE_PATHNAME', 'pgwa_hmac_sha256_hex' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- X-Pgwa-Signature of a delivery: "sha256=" and the hex HMAC-SHA256 of
-- "<timestamp>.<body>" keyed by the subscription's secret. A subscriber
-- recomputes it over the raw body and X-Pgwa-Timestamp, and may refuse old
-- timestamps to stop replays.
CREATE FUNCTION pgwa.webhook_signature(p_secret text, p_timestamp bigint, p_body text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN 'sha256=' || pgwa._hmac_sha256_hex(p_secret, p_timestamp::text || '.' || p_body);

-------------------------------------------------------------------------------
-- Subscriptions
-------------------------------------------------------------------------------
-- The events a subscription may name (besides '*').
CREATE FUNCTION pgwa.webhook_event_names() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ARRAY['messages.new', 'ticket.message', 'ticket.updated', 'whatsapp.queue.missing',
             'message.status', 'instance.status', 'instance.qrcode', 'whatsapp.timeline.reconciled'];

CREATE FUNCTION pgwa._delivery_statuses() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ARRAY['pending', 'sending', 'failed', 'delivered', 'dead'];

-- Validates an event list: distinct known names, or just '*'.
CREATE FUNCTION pgwa._webhook_events(p_events text[]) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
	v_bad text;
BEGIN
	IF p_events IS NULL OR cardinality(p_events) = 0 THEN
		PERFORM pgwa._raise('PW400', 'events must list at least one event name, or "*"', 'events');
	END IF;
	SELECT e INTO v_bad FROM unnest(p_events) e
	WHERE e IS NULL OR (e <> '*' AND e <> ALL (pgwa.webhook_event_names())) LIMIT 1;
	IF FOUND THEN
		PERFORM pgwa._raise('PW400', format('unknown event %s; known: *, %s', coalesce(v_bad, 'null'),
		                                    array_to_string(pgwa.webhook_event_names(), ', ')), 'events');
	END IF;
	IF '*' = ANY (p_events) THEN
		RETURN ARRAY['*'];
	END IF;
	RETURN ARRAY(SELECT DISTINCT e COLLATE "C" FROM unnest(p_events) e ORDER BY 1);
END $$;

-- A subscription as the API shows it: never its secret.
CREATE FUNCTION pgwa.webhook_subscription_json(p_subscription uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT jsonb_build_object(
		'id', s.id, 'tenant_id', s.tenant_id, 'instance_id', s.instance_id, 'url', s.url,
		'events', to_jsonb(s.events), 'active', s.active, 'max_attempts', s.max_attempts,
		'created_at', s.created_at, 'updated_at', s.updated_at,
		'backlog', (SELECT count(*) FROM pgwa.webhook_deliveries d
		            WHERE d.tenant_id = s.tenant_id AND d.subscription_id = s.id
		              AND d.status IN ('pending', 'failed', 'sending')),
		'dead', (SELECT count(*) FROM pgwa.webhook_deliveries d
		         WHERE d.tenant_id = s.tenant_id AND d.subscription_id = s.id AND d.status = 'dead'))
	|| CASE WHEN s.dialect <> 'pgwa' THEN jsonb_strip_nulls(jsonb_build_object(
		'dialect', s.dialect, 'dialect_kind', s.dialect_kind, 'match', s.match)) ELSE '{}' END
	FROM pgwa.webhook_subscriptions s WHERE s.id = p_subscription
$$;

-- Subscribes a tenant's application to events. With p_instance, only that
-- instance's events; with p_secret NULL a random secret is generated. The
-- secret is returned here once, to be kept by the subscriber.
CREATE FUNCTION pgwa.create_webhook_subscription(p_tenant uuid, p_url text, p_events text[],
                                                 p_instance uuid DEFAULT NULL, p_secret text DEFAULT NULL,
                                                 p_max_attempts int DEFAULT 8)
RETURNS TABLE (id uuid, secret text)
LANGUAGE plpgsql AS $$
DECLARE
	v_events text[] := pgwa._webhook_events(p_events);
	v_secret text := coalesce(p_secret, 'whsec_' || substr(pgwa._random_token(), 6));
BEGIN
	PERFORM 1 FROM pgwa.tenants t WHERE t.id = p_tenant;
	IF NOT FOUND THEN
		PERFORM pgwa._raise('PW404', 'tenant not found', 'tenant_id');
	END IF;
	IF p_url IS NULL OR length(p_url) > 2048 OR p_url !~ '^https?://[^\s/?#]+([/?#]\S*)?$' THEN
		PERFORM pgwa._raise('PW400', 'url must be an http or https URL of at most 2048 characters', 'url');
	END IF;
	IF p_instance IS NOT NULL THEN
		PERFORM 1 FROM pgwa.instances i WHERE i.id = p_instance AND i.tenant_id = p_tenant;
		IF NOT FOUND THEN
			PERFORM pgwa._raise('PW404', 'instance not found', 'instance_id');
		END IF;
	END IF;
	IF length(v_secret) NOT BETWEEN 16 AND 512 OR v_secret ~ '\s' THEN
		PERFORM pgwa._raise('PW400', 'secret must be 16 to 512 characters without spaces', 'secret');
	END IF;
	IF p_max_attempts IS NULL OR p_max_attempts NOT BETWEEN 1 AND 50 THEN
		PERFORM pgwa._raise('PW400', 'max_attempts must be between 1 and 50', 'max_attempts');
	END IF;
	-- A bound on the fan-out of every event of the tenant.
	PERFORM 1 FROM pgwa.tenants t WHERE t.id = p_tenant FOR UPDATE;
	IF (SELECT count(*) FROM pgwa.webhook_subscriptions s WHERE s.tenant_id = p_tenant) >= 100 THEN
		PERFORM pgwa._raise('PW422', 'a tenant has at most 100 webhook subscriptions', 'url');
	END IF;
	INSERT INTO pgwa.webhook_subscriptions (tenant_id, instance_id, url, events, secret, max_attempts)
	VALUES (p_tenant, p_instance, p_url, v_events, v_secret, p_max_attempts)
	RETURNING webhook_subscriptions.id INTO id;
	secret := v_secret;
	RETURN NEXT;
END $$;

-- A tenant's subscriptions, oldest first.
CREATE FUNCTION pgwa.list_webhook_subscriptions(p_tenant uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT coalesce(jsonb_agg(pgwa.webhook_subscription_json(s.id) ORDER BY s.created_at, s.id), '[]')
	FROM pgwa.webhook_subscriptions s WHERE s.tenant_id = p_tenant
$$;

-- Deletes a subscription with its deliveries and their log. A delivery in
-- flight finishes; its result is then ignored.
CREATE FUNCTION pgwa.delete_webhook_subscription(p_subscription uuid) RETURNS boolean
LANGUAGE sql AS $$
	WITH d AS (DELETE FROM pgwa.webhook_subscriptions WHERE id = p_subscription RETURNING 1)
	SELECT EXISTS (SELECT 1 FROM d)
$$;

-- Pauses or resumes a subscription. A paused one gets no new deliveries and
-- sends none of those waiting (the one in flight finishes); resumed, it goes
-- on with them in order.
CREATE FUNCTION pgwa._set_webhook_active(p_subscription uuid, p_active boolean) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
	UPDATE pgwa.webhook_subscriptions SET active = p_active, updated_at = now()
	WHERE id = p_subscription AND active IS DISTINCT FROM p_active;
	IF NOT FOUND THEN
		PERFORM 1 FROM pgwa.webhook_subscriptions WHERE id = p_subscription;
		IF NOT FOUND THEN
			PERFORM pgwa._raise('PW404', 'webhook subscription not found', 'webhook_id');
		END IF;
	END IF;
	IF p_active THEN
		PERFORM pgwa._wake_dispatcher_on_commit();
	END IF;
	RETURN pgwa.webhook_subscription_json(p_subscription);
END $$;

CREATE FUNCTION pgwa.pause_webhook_subscription(p_subscription uuid) RETURNS jsonb
LANGUAGE sql AS $$ SELECT pgwa._set_webhook_active(p_subscription, false) $$;

CREATE FUNCTION pgwa.resume_webhook_subscription(p_subscription uuid) RETURNS jsonb
LANGUAGE sql AS $$ SELECT pgwa._set_webhook_active(p_subscription, true) $$;

-------------------------------------------------------------------------------
-- Fan-out: every event becomes one delivery per matching active subscription
-------------------------------------------------------------------------------
-- A statement trigger on pgwa.events, so that every emitter is covered and a
-- tenant without subscriptions costs one probe of a small table (a few
-- microseconds per event). The event's
-- instance is its payload's instanceId when that is an id, else its ticket's
-- instance (ticket.updated names only the ticket).
CREATE FUNCTION pgwa._fan_out_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
	n int;
BEGIN
	-- The common case, no subscriber: one probe, no insert to plan and run.
	IF NOT EXISTS (SELECT 1 FROM new_events e
	               JOIN pgwa.webhook_subscriptions s ON s.tenant_id = e.tenant_id AND s.active) THEN
		RETURN NULL;
	END IF;
	INSERT INTO pgwa.webhook_deliveries (tenant_id, subscription_id, event_id, event, instance_id)
	SELECT m.tenant_id, m.subscription_id, m.event_id, m.event, m.inst
	FROM (
		SELECT e.tenant_id, s.id AS subscription_id, s.instance_id AS only_instance, e.id AS event_id, e.event,
		       coalesce(CASE WHEN e.payload->>'instanceId' ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
		                     THEN (e.payload->>'instanceId')::uuid END,
		                CASE WHEN e.payload->>'ticketId' ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
		                     THEN (SELECT t.instance_id FROM pgwa.tickets t
		                           WHERE t.tenant_id = e.tenant_id AND t.id = (e.payload->>'ticketId')::uuid) END) AS inst
		FROM new_events e
		JOIN pgwa.webhook_subscriptions s ON s.tenant_id = e.tenant_id
		WHERE s.active AND ('*' = ANY (s.events) OR e.event = ANY (s.events))
		  AND (s.match IS NULL OR e.payload @> s.match)
	) m
	WHERE m.only_instance IS NULL OR m.only_instance = m.inst
	ORDER BY m.event_id, m.subscription_id;
	GET DIAGNOSTICS n = ROW_COUNT;
	IF n > 0 THEN
		PERFORM pgwa._wake_dispatcher_on_commit();
	END IF;
	RETURN NULL;
END $$;

CREATE TRIGGER events_fan_out AFTER INSERT ON pgwa.events
	REFERENCING NEW TABLE AS new_events
	FOR EACH STATEMENT EXECUTE FUNCTION pgwa._fan_out_events();

-------------------------------------------------------------------------------
-- The dispatcher's side: claim, complete, leases
-------------------------------------------------------------------------------
-- The first waiting delivery of every active subscription with nothing in
-- flight, in event order: one index probe per subscription, so the cost
-- follows the number of subscriptions, not the backlog behind a failing
-- subscriber.
CREATE FUNCTION pgwa._delivery_heads()
RETURNS TABLE (tenant_id uuid, id bigint, next_attempt_at timestamptz)
LANGUAGE sql STABLE AS $$
	SELECT s.tenant_id, h.id, h.next_attempt_at
	FROM pgwa.webhook_subscriptions s
	CROSS JOIN LATERAL (
		SELECT d.id, d.next_attempt_at FROM pgwa.webhook_deliveries d
		WHERE d.tenant_id = s.tenant_id AND d.subscription_id = s.id AND d.status IN ('pending', 'failed')
		ORDER BY d.event_id LIMIT 1) h
	WHERE s.active
	  AND NOT EXISTS (SELECT 1 FROM pgwa.webhook_deliveries x
	                  WHERE x.tenant_id = s.tenant_id AND x.subscription_id = s.id AND x.status = 'sending')
$$;

-- Claims the due head delivery of up to p_limit subscriptions and returns
-- what to send: the body, its timestamp and signature (the secret never
-- leaves the database). Each claim spends an attempt and holds a lease.
CREATE FUNCTION pgwa._claim_deliveries(p_limit int, p_lease_s int)
RETURNS TABLE (tenant_id uuid, id bigint, attempt int, url text, event text, event_id bigint,
               sent_at bigint, body text, signature text)
LANGUAGE sql AS $$
	WITH heads AS (
		SELECT h.tenant_id, h.id FROM pgwa._delivery_heads() h
		WHERE h.next_attempt_at <= clock_timestamp()
		ORDER BY h.next_attempt_at
		LIMIT p_limit
	), locked AS (
		SELECT d.tenant_id, d.id FROM pgwa.webhook_deliveries d
		JOIN heads h ON h.tenant_id = d.tenant_id AND h.id = d.id
		WHERE d.status IN ('pending', 'failed')
		FOR UPDATE OF d SKIP LOCKED
	), claimed AS (
		UPDATE pgwa.webhook_deliveries d
		SET status = 'sending', attempts = d.attempts + 1, updated_at = clock_timestamp(),
		    lease_until = clock_timestamp() + make_interval(secs => p_lease_s)
		FROM locked l WHERE d.tenant_id = l.tenant_id AND d.id = l.id
		RETURNING d.tenant_id, d.id, d.attempts, d.subscription_id, d.event_id, d.instance_id
	), built AS (
		SELECT c.tenant_id, c.id, c.attempts, s.url, s.secret, e.event, e.id AS event_id,
		       floor(extract(epoch FROM clock_timestamp()))::bigint AS ts,
		       coalesce(CASE WHEN s.dialect = 'zapi'   -- Z-API's shapes (61_zapi_callbacks.sql)
		                     THEN pgwa._zapi_callback(s.dialect_kind, e.event, e.payload, c.instance_id, e.created_at) END,
		                jsonb_build_object('id', e.id, 'event', e.event, 'tenantId', e.tenant_id,
		                                   'instanceId', c.instance_id, 'createdAt', pgwa._iso(e.created_at),
		                                   'data', e.payload))::text AS body
		FROM claimed c
		JOIN pgwa.webhook_subscriptions s ON s.tenant_id = c.tenant_id AND s.id = c.subscription_id
		JOIN pgwa.events e ON e.tenant_id = c.tenant_id AND e.id = c.event_id
	)
	SELECT b.tenant_id, b.id, b.attempts, b.url, b.event, b.event_id, b.ts, b.body,
	       pgwa.webhook_signature(b.secret, b.ts, b.body)
	FROM built b
$$;

-- When the next delivery falls due (NULL: none waits).
CREATE FUNCTION pgwa._next_delivery_due() RETURNS timestamptz
LANGUAGE sql STABLE AS $$
	SELECT min(h.next_attempt_at) FROM pgwa._delivery_heads() h
$$;

-- Records the outcomes of a batch of delivery attempts in one statement.
-- p_results is a JSON array of {tn: tenant_id, i: delivery id, o: outcome
-- (delivered, retry, dead), h: HTTP status, e: error, t: started at,
-- d: duration ms, r: Retry-After ms}. A retry past the subscription's
-- max_attempts is dead; otherwise it waits 1 s, 2 s, 4 s... (at most 1 h) or
-- what Retry-After says. Results of deliveries no longer being sent (lease
-- released, subscription deleted) are stale and ignored.
CREATE FUNCTION pgwa._complete_deliveries(p_results jsonb)
RETURNS TABLE (tenant_id uuid, id bigint, outcome text)
LANGUAGE sql AS $$
	WITH r AS (
		SELECT * FROM jsonb_to_recordset(p_results)
			AS r(tn uuid, i bigint, o text, h int, e text, t timestamptz, d float8, r int)
	), cur AS (
		SELECT d.tenant_id, d.id, d.subscription_id, d.event, d.attempts, r.h, r.e, r.t, r.d, r.r,
		       CASE WHEN r.o = 'retry' AND d.attempts >= s.max_attempts THEN 'dead' ELSE r.o END AS outcome,
		       clock_timestamp() AS now
		FROM r
		JOIN pgwa.webhook_deliveries d ON d.tenant_id = r.tn AND d.id = r.i
		JOIN pgwa.webhook_subscriptions s ON s.tenant_id = d.tenant_id AND s.id = d.subscription_id
		WHERE d.status = 'sending'
		FOR UPDATE OF d
	), log AS (
		INSERT INTO pgwa.webhook_delivery_attempts (tenant_id, delivery_id, attempt, started_at, duration_ms,
		                                            outcome, http_status, error)
		SELECT c.tenant_id, c.id, c.attempts, coalesce(c.t, c.now), c.d, c.outcome, c.h, c.e FROM cur c
	), upd AS (
		UPDATE pgwa.webhook_deliveries d
		-- an unknown outcome yields NULL and fails the NOT NULL constraint
		SET status = CASE c.outcome WHEN 'delivered' THEN 'delivered' WHEN 'retry' THEN 'failed'
		                            WHEN 'dead' THEN 'dead' END,
		    next_attempt_at = CASE WHEN c.outcome <> 'retry' THEN d.next_attempt_at
		                           WHEN c.r > 0 THEN c.now + make_interval(secs => least(c.r, 3600000) / 1000.0)
		                           ELSE c.now + make_interval(secs => least(power(2, c.attempts - 1), 3600)) END,
		    lease_until = NULL,
		    last_http_status = c.h,
		    last_error = CASE WHEN c.outcome = 'delivered' THEN NULL ELSE c.e END,
		    delivered_at = CASE WHEN c.outcome = 'delivered' THEN c.now END,
		    dead_at = CASE WHEN c.outcome = 'dead' THEN c.now END,
		    updated_at = c.now
		FROM cur c
		WHERE d.tenant_id = c.tenant_id AND d.id = c.id
		RETURNING d.tenant_id, d.id, c.outcome
	), counts AS (
		INSERT INTO pgwa.webhook_delivery_counts AS k (tenant_id, subscription_id, event, delivered, retried, dead)
		SELECT c.tenant_id, c.subscription_id, c.event,
		       count(*) FILTER (WHERE c.outcome = 'delivered'),
		       count(*) FILTER (WHERE c.outcome = 'retry'),
		       count(*) FILTER (WHERE c.outcome = 'dead')
		FROM cur c GROUP BY c.tenant_id, c.subscription_id, c.event
		ON CONFLICT (tenant_id, subscription_id, event) DO UPDATE
		SET delivered = k.delivered + excluded.delivered, retried = k.retried + excluded.retried,
		    dead = k.dead + excluded.dead
	)
	SELECT u.tenant_id, u.id, u.outcome FROM upd u
$$;

-- Gives back deliveries whose lease expired (their dispatcher died or lost
-- them); with p_all every claimed one (the dispatcher does this when it
-- starts: it is the only claimer). They are due again at once and keep their
-- place; the attempt stays spent. Returns how many.
CREATE FUNCTION pgwa._release_delivery_leases(p_all boolean DEFAULT false) RETURNS int
LANGUAGE sql AS $$
	WITH rel AS (
		SELECT d.tenant_id, d.id, d.attempts, d.updated_at FROM pgwa.webhook_deliveries d
		WHERE d.status = 'sending' AND (p_all OR d.lease_until < clock_timestamp())
		FOR UPDATE SKIP LOCKED
	), log AS (
		INSERT INTO pgwa.webhook_delivery_attempts (tenant_id, delivery_id, attempt, started_at, outcome, error)
		SELECT r.tenant_id, r.id, r.attempts, r.updated_at, 'lease_expired', 'claim released without a result'
		FROM rel r
	), upd AS (
		UPDATE pgwa.webhook_deliveries d
		SET status = 'failed', lease_until = NULL, next_attempt_at = clock_timestamp(),
		    last_error = 'claim released without a result', updated_at = clock_timestamp()
		FROM rel r WHERE d.tenant_id = r.tenant_id AND d.id = r.id
		RETURNING 1
	)
	SELECT count(*)::int FROM upd
$$;

-------------------------------------------------------------------------------
-- Deliveries: listing and replay
-------------------------------------------------------------------------------
CREATE FUNCTION pgwa._delivery_json(d pgwa.webhook_deliveries, p_log boolean) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT jsonb_build_object(
		'id', d.id, 'subscription_id', d.subscription_id, 'event_id', d.event_id, 'event', d.event,
		'instance_id', d.instance_id, 'status', d.status, 'attempts', d.attempts,
		'next_attempt_at', CASE WHEN d.status IN ('pending', 'failed') THEN d.next_attempt_at END,
		'last_http_status', d.last_http_status, 'last_error', d.last_error,
		'created_at', d.created_at, 'updated_at', d.updated_at,
		'delivered_at', d.delivered_at, 'dead_at', d.dead_at)
	|| CASE WHEN p_log THEN jsonb_build_object('attempt_log', coalesce((
		SELECT jsonb_agg(jsonb_build_object(
			'attempt', a.attempt, 'started_at', a.started_at, 'duration_ms', a.duration_ms,
			'outcome', a.outcome, 'http_status', a.http_status, 'error', a.error) ORDER BY a.id)
		FROM pgwa.webhook_delivery_attempts a WHERE a.tenant_id = d.tenant_id AND a.delivery_id = d.id), '[]'))
	   ELSE '{}' END
$$;

-- One delivery with its attempt log.
CREATE FUNCTION pgwa.webhook_delivery_json(p_delivery bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT pgwa._delivery_json(d, true) FROM pgwa.webhook_deliveries d WHERE d.id = p_delivery
$$;

-- A page of a subscription's deliveries, newest first, filtered by status:
-- {items, total, limit, offset}.
CREATE FUNCTION pgwa.list_webhook_deliveries(p_subscription uuid, p_status text[] DEFAULT NULL,
                                             p_limit int DEFAULT 50, p_offset int DEFAULT 0)
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
	s pgwa.webhook_subscriptions;
	v_bad text;
BEGIN
	SELECT * INTO s FROM pgwa.webhook_subscriptions WHERE id = p_subscription;
	IF NOT FOUND THEN
		PERFORM pgwa._raise('PW404', 'webhook subscription not found', 'webhook_id');
	END IF;
	SELECT x INTO v_bad FROM unnest(p_status) x WHERE x IS NULL OR x <> ALL (pgwa._delivery_statuses()) LIMIT 1;
	IF FOUND THEN
		PERFORM pgwa._raise('PW400', format('unknown status %s; known: %s', coalesce(v_bad, 'null'),
		                                    array_to_string(pgwa._delivery_statuses(), ', ')), 'status');
	END IF;
	PERFORM pgwa._check_page(p_limit, p_offset);
	RETURN jsonb_build_object(
		'items', coalesce((
			SELECT jsonb_agg(pgwa._delivery_json(d, false) ORDER BY d.id DESC)
			FROM (SELECT * FROM pgwa.webhook_deliveries d
			      WHERE d.tenant_id = s.tenant_id AND d.subscription_id = s.id
			        AND (p_status IS NULL OR d.status = ANY (p_status))
			      ORDER BY d.id DESC LIMIT p_limit OFFSET p_offset) d), '[]'),
		'total', (SELECT count(*) FROM pgwa.webhook_deliveries d
		          WHERE d.tenant_id = s.tenant_id AND d.subscription_id = s.id
		            AND (p_status IS NULL OR d.status = ANY (p_status))),
		'limit', p_limit, 'offset', p_offset);
END $$;

-- Sends a delivery again: a dead one, a delivered one (the subscriber lost
-- it), or a failed one without waiting for its retry. Attempts start from
-- zero; it keeps its event's place, so it goes out next. A delivery waiting
-- or in flight is a DELIVERY_NOT_REPLAYABLE.
CREATE FUNCTION pgwa.replay_delivery(p_delivery bigint) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	d pgwa.webhook_deliveries;
BEGIN
	SELECT * INTO d FROM pgwa.webhook_deliveries WHERE id = p_delivery FOR UPDATE;
	IF NOT FOUND THEN
		PERFORM pgwa._raise('PW404', 'delivery not found', 'delivery_id');
	END IF;
	IF d.status NOT IN ('dead', 'delivered', 'failed') THEN
		PERFORM pgwa._raise('PW415', format('only dead, delivered or failed deliveries can be replayed: the delivery is %s',
		                                    d.status), 'delivery_id', format('status %s', d.status));
	END IF;
	UPDATE pgwa.webhook_deliveries
	SET status = 'pending', attempts = 0, next_attempt_at = clock_timestamp(), dead_at = NULL,
	    delivered_at = NULL, updated_at = clock_timestamp()
	WHERE tenant_id = d.tenant_id AND id = d.id;
	PERFORM pgwa._wake_dispatcher_on_commit();
	RETURN pgwa.webhook_delivery_json(p_delivery);
END $$;

-- Deletes delivered deliveries (and dead ones with p_include_dead) created
-- before p_older_than ago, with their attempt log; for pg_cron. Returns how
-- many went.
CREATE FUNCTION pgwa.purge_webhook_deliveries(p_older_than interval DEFAULT '30 days',
                                              p_include_dead boolean DEFAULT false)
RETURNS bigint
LANGUAGE sql AS $$
	WITH d AS (DELETE FROM pgwa.webhook_deliveries
	           WHERE created_at < now() - p_older_than
	             AND (status = 'delivered' OR (p_include_dead AND status = 'dead'))
	           RETURNING 1)
	SELECT count(*) FROM d
$$;

-------------------------------------------------------------------------------
-- Metrics (a part of pgwa.metrics())
-------------------------------------------------------------------------------
-- pgwa_client_webhook_deliveries_total{tenant_id, subscription_id, event,
-- outcome}: attempt outcomes (delivered; retried: failed, to be retried;
-- dead); pgwa_client_webhook_backlog and pgwa_client_webhook_dead: per
-- subscription, deliveries not yet delivered (in flight included) and dead
-- ones awaiting a replay. Read from counters and small partial indexes.
-- plpgsql: the formatting helpers are created later (80_metrics.sql).
CREATE FUNCTION pgwa._client_webhook_metrics() RETURNS text
LANGUAGE plpgsql STABLE AS $$
BEGIN
	RETURN (WITH subs AS (
		SELECT format('tenant_id="%s",subscription_id="%s"', s.tenant_id, s.id) AS labels, s.tenant_id, s.id,
		       (SELECT count(*) FROM pgwa.webhook_deliveries d
		        WHERE d.tenant_id = s.tenant_id AND d.subscription_id = s.id
		          AND d.status IN ('pending', 'failed', 'sending')) AS backlog,
		       (SELECT count(*) FROM pgwa.webhook_deliveries d
		        WHERE d.tenant_id = s.tenant_id AND d.subscription_id = s.id AND d.status = 'dead') AS dead
		FROM pgwa.webhook_subscriptions s
	), outcomes AS (
		SELECT format('pgwa_client_webhook_deliveries_total{%s,event="%s",outcome="%s"} %s',
		              s.labels, pgwa._prom_escape(k.event), o.outcome, o.n) AS line,
		       s.tenant_id, s.id, k.event, o.ord
		FROM pgwa.webhook_delivery_counts k
		JOIN subs s ON s.tenant_id = k.tenant_id AND s.id = k.subscription_id,
		LATERAL (VALUES (1, 'delivered', k.delivered), (2, 'retried', k.retried), (3, 'dead', k.dead)) o(ord, outcome, n)
	)
	SELECT concat(
		pgwa._prom_family('pgwa_client_webhook_deliveries_total', 'counter',
			'Client webhook delivery attempts by outcome: delivered, retried (failed, retried later), dead.',
			(SELECT string_agg(line, E'\n' ORDER BY tenant_id, id, event COLLATE "C", ord) FROM outcomes)),
		pgwa._prom_family('pgwa_client_webhook_backlog', 'gauge',
			'Client webhook deliveries of a subscription not yet delivered, in flight included.',
			(SELECT string_agg(format('pgwa_client_webhook_backlog{%s} %s', labels, backlog), E'\n'
			                   ORDER BY tenant_id, id) FROM subs)),
		pgwa._prom_family('pgwa_client_webhook_dead', 'gauge',
			'Client webhook deliveries of a subscription that are dead, awaiting a replay.',
			(SELECT string_agg(format('pgwa_client_webhook_dead{%s} %s', labels, dead), E'\n'
			                   ORDER BY tenant_id, id) FROM subs))));
END $$;

-- Deletes real-time events older than p_older_than, except those a client
-- webhook still has to deliver (pending, sending or failed): streams and
-- replays can look back that far. Their finished deliveries go with them.
-- Returns how many went.
CREATE FUNCTION pgwa.purge_events(p_older_than interval DEFAULT '7 days') RETURNS bigint
LANGUAGE sql AS $$
	WITH d AS (
		DELETE FROM pgwa.events e
		WHERE e.created_at < now() - p_older_than
		  AND NOT EXISTS (SELECT 1 FROM pgwa.webhook_deliveries w
		                  WHERE w.tenant_id = e.tenant_id AND w.event_id = e.id
		                    AND w.status IN ('pending', 'sending', 'failed'))
		RETURNING 1)
	SELECT count(*) FROM d
$$;
