-------------------------------------------------------------------------------
-- Instances
-------------------------------------------------------------------------------
-- Creates an instance. p_options may carry broker_instance_id, delay_min_ms,
-- delay_max_ms, max_attempts and settings.
CREATE FUNCTION pgwa.create_instance(p_tenant uuid, p_name text, p_provider text DEFAULT 'broker',
                                     p_base_url text DEFAULT NULL, p_api_key text DEFAULT NULL,
                                     p_options jsonb DEFAULT '{}')
RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
	v_id uuid;
	v_min int;
	v_max int;
	v_attempts int;
BEGIN
	IF p_name IS NULL OR p_name !~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' THEN
		PERFORM pgwa._raise('PW400', 'name must be 1-64 characters of letters, digits, ".", "_" or "-"', 'name');
	END IF;
	IF p_provider IS NULL OR p_provider NOT IN ('broker', 'evolution', 'meta') THEN
		PERFORM pgwa._raise('PW400', 'provider must be one of broker, evolution, meta', 'provider');
	END IF;
	IF p_base_url IS NOT NULL AND p_base_url !~ '^https?://[^\s/]+(/\S*)?$' THEN
		PERFORM pgwa._raise('PW400', 'base_url must be an http or https URL', 'base_url');
	END IF;
	IF p_options IS NULL OR jsonb_typeof(p_options) <> 'object' THEN
		PERFORM pgwa._raise('PW400', 'options must be a JSON object', 'options');
	END IF;
	PERFORM pgwa._raise('PW400', format('%s must be an integer', k), k)
	FROM unnest(ARRAY['delay_min_ms', 'delay_max_ms', 'max_attempts']) k
	WHERE p_options ? k AND jsonb_typeof(p_options->k) <> 'null'
	  AND (jsonb_typeof(p_options->k) <> 'number' OR (p_options->>k)::numeric <> trunc((p_options->>k)::numeric)
	       OR abs((p_options->>k)::numeric) > 2147483647);
	v_min := coalesce((p_options->>'delay_min_ms')::int, 1000);
	v_max := coalesce((p_options->>'delay_max_ms')::int, greatest(v_min, 3000));
	v_attempts := coalesce((p_options->>'max_attempts')::int, 5);
	IF v_min NOT BETWEEN 0 AND 600000 OR v_max NOT BETWEEN v_min AND 600000 THEN
		PERFORM pgwa._raise('PW400', 'delays must satisfy 0 <= delay_min_ms <= delay_max_ms <= 600000', 'delay_min_ms');
	END IF;
	IF v_attempts NOT BETWEEN 1 AND 50 THEN
		PERFORM pgwa._raise('PW400', 'max_attempts must be between 1 and 50', 'max_attempts');
	END IF;
	IF p_options ? 'settings' AND jsonb_typeof(p_options->'settings') <> 'object' THEN
		PERFORM pgwa._raise('PW400', 'settings must be a JSON object', 'settings');
	END IF;

	BEGIN
		INSERT INTO pgwa.instances (tenant_id, name, provider, base_url, broker_api_key,
		                            broker_instance_id, delay_min_ms, delay_max_ms, max_attempts, settings)
		VALUES (p_tenant, p_name, p_provider, p_base_url, p_api_key,
		        coalesce(nullif(p_options->>'broker_instance_id', ''), p_name),
		        v_min, v_max, v_attempts, coalesce(p_options->'settings', '{}'))
		RETURNING id INTO v_id;
	EXCEPTION
		WHEN unique_violation THEN
			PERFORM pgwa._raise('PW412', format('an instance named %s already exists', p_name), 'name');
		WHEN foreign_key_violation THEN
			PERFORM pgwa._raise('PW404', 'tenant not found', 'tenant_id');
	END;
	INSERT INTO pgwa.instance_state (instance_id) VALUES (v_id);
	RETURN v_id;
END $$;

-- True when the instance has what its provider needs to send.
CREATE FUNCTION pgwa._instance_configured(i pgwa.instances) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
	SELECT i.base_url IS NOT NULL AND coalesce(i.broker_api_key, '') <> ''
	       AND (i.provider <> 'meta' OR coalesce(i.settings->>'phone_number_id', '') <> '')
$$;

-- An instance as the API shows it (never with its broker credential).
CREATE FUNCTION pgwa.instance_json(p_instance uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT jsonb_build_object(
		'id', i.id, 'tenant_id', i.tenant_id, 'name', i.name, 'provider', i.provider,
		'base_url', i.base_url, 'broker_instance_id', i.broker_instance_id,
		'has_api_key', coalesce(i.broker_api_key, '') <> '',
		'configured', pgwa._instance_configured(i),
		'connection_state', s.connection_state, 'state_changed_at', s.state_changed_at,
		'delay_min_ms', i.delay_min_ms, 'delay_max_ms', i.delay_max_ms,
		'max_attempts', i.max_attempts, 'settings', i.settings,
		'created_at', i.created_at, 'updated_at', i.updated_at)
	FROM pgwa.instances i JOIN pgwa.instance_state s ON s.instance_id = i.id
	WHERE i.id = p_instance
$$;

-- Records the instance's connection state. 'disconnected' pauses its queue
-- (no attempt is spent while paused); 'connected' resumes it.
CREATE FUNCTION pgwa.set_connection_state(p_instance uuid, p_state text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	IF p_state IS NULL OR p_state NOT IN ('unknown', 'connected', 'disconnected') THEN
		PERFORM pgwa._raise('PW400', 'state must be one of unknown, connected, disconnected', 'state');
	END IF;
	UPDATE pgwa.instance_state
	SET connection_state = p_state, state_changed_at = now(),
	    not_before = CASE WHEN p_state = 'connected' THEN '-infinity' ELSE not_before END
	WHERE instance_id = p_instance AND connection_state IS DISTINCT FROM p_state;
	IF NOT FOUND THEN
		PERFORM 1 FROM pgwa.instance_state WHERE instance_id = p_instance;
		IF NOT FOUND THEN
			PERFORM pgwa._raise('PW404', 'instance not found', 'instance_id');
		END IF;
	END IF;
	PERFORM pgwa._wake_dispatcher_on_commit();
END $$;

-------------------------------------------------------------------------------
-- Deleting an instance (SQL API)
-------------------------------------------------------------------------------
-- Deletes an instance with everything that is only its own: its queue and
-- attempts, its conversation log, stored webhook events, QR code, webhook
-- secrets and subscriptions, history sync, counters (by cascade or by the
-- triggers of 10_tables.sql and 15_inbound_tables.sql). The tenant's leads
-- and tickets stay: they belong to the tenant, and a ticket keeps the id of
-- the instance it came through.
--
-- A message in flight (claimed by the dispatcher, its broker request under
-- way) cannot be taken back: the broker may deliver it, and its result would
-- find no row to land in. The deletion is then refused (PW411, 409) and can
-- be retried once the attempt is over, seconds later. Waiting messages
-- (queued, scheduled, failed) go with the instance; their number is
-- returned. Recorded in pgwa.audit_log.
CREATE FUNCTION pgwa.delete_instance(p_instance uuid) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
	s    pgwa.instance_state;
	inst pgwa.instances;
	n    int;
BEGIN
	-- The queue's lock: the dispatcher's claim skips a locked queue and
	-- enqueue waits for it, so nothing starts while the instance goes.
	SELECT * INTO s FROM pgwa.instance_state WHERE instance_id = p_instance FOR UPDATE;
	IF NOT FOUND THEN
		PERFORM pgwa._raise('PW404', 'instance not found', 'instance_id');
	END IF;
	IF s.inflight_seq IS NOT NULL THEN
		PERFORM pgwa._raise('PW411', 'a message is being sent; retry once its attempt is over',
		                    'instance_id', format('message seq %s in flight', s.inflight_seq));
	END IF;
	SELECT count(*) INTO n FROM pgwa.outbox o
	WHERE o.instance_id = p_instance AND o.status IN ('queued', 'scheduled', 'failed');
	DELETE FROM pgwa.instances WHERE id = p_instance RETURNING * INTO inst;
	PERFORM pgwa._audit(inst.tenant_id, inst.id, 'instance.deleted',
	                    jsonb_build_object('name', inst.name, 'discardedMessages', n));
	RETURN n;
END $$;
