-- pgwa 0.1: schema, SQL API, dispatcher support functions and HTTP router.
\echo Use "CREATE EXTENSION pgwa" to load this file. \quit

-------------------------------------------------------------------------------
-- Errors
--
-- Every error pgwa raises on purpose carries a SQLSTATE of class PW. The
-- table below gives each one a stable code name and the HTTP status the
-- router answers with; the offending field, when there is one, travels in the
-- COLUMN_NAME diagnostic field.
-------------------------------------------------------------------------------
CREATE TABLE pgwa.error_codes (
	sqlstate    text PRIMARY KEY,
	code        text NOT NULL UNIQUE,
	http_status int  NOT NULL
);
INSERT INTO pgwa.error_codes VALUES
	('PW400', 'VALIDATION_FAILED',       400),
	('PW401', 'UNAUTHORIZED',            401),
	('PW403', 'FORBIDDEN',               403),
	('PW404', 'NOT_FOUND',               404),
	('PW405', 'METHOD_NOT_ALLOWED',      405),
	('PW409', 'IDEMPOTENCY_CONFLICT',    409),
	('PW410', 'INSTANCE_DISCONNECTED',   409),
	('PW411', 'MESSAGE_NOT_CANCELABLE',  409),
	('PW412', 'ALREADY_EXISTS',          409),
	('PW413', 'PAYLOAD_TOO_LARGE',       413),
	('PW422', 'UNPROCESSABLE',           422),
	('PW423', 'WINDOW_CLOSED',           422),
	('PW429', 'RATE_LIMITED',            429),
	('PW503', 'WHATSAPP_NOT_CONFIGURED', 503);

-------------------------------------------------------------------------------
-- Tenants and API keys (reference tables when distributed: small, read-mostly)
-------------------------------------------------------------------------------
CREATE TABLE pgwa.tenants (
	id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
	created_at timestamptz NOT NULL DEFAULT now()
);

-- Keys are random tokens shown once; only their SHA-256 is stored.
CREATE TABLE pgwa.api_keys (
	id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	tenant_id  uuid REFERENCES pgwa.tenants (id) ON DELETE CASCADE,
	role       text NOT NULL CHECK (role IN ('admin', 'tenant')),
	key_hash   bytea NOT NULL UNIQUE,
	key_prefix text NOT NULL,
	label      text,
	created_at timestamptz NOT NULL DEFAULT now(),
	revoked_at timestamptz,
	CHECK ((role = 'admin') = (tenant_id IS NULL))
);
CREATE INDEX api_keys_tenant ON pgwa.api_keys (tenant_id);

-------------------------------------------------------------------------------
-- Instances: one WhatsApp number behind one broker.
-- Configuration lives here (read-mostly); the queue's runtime state lives in
-- instance_state so that sends never contend with configuration reads.
-------------------------------------------------------------------------------
CREATE TABLE pgwa.instances (
	id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	tenant_id          uuid NOT NULL REFERENCES pgwa.tenants (id) ON DELETE CASCADE,
	name               text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
	provider           text NOT NULL DEFAULT 'broker'
	                   CHECK (provider IN ('broker', 'evolution', 'meta')),
	base_url           text CHECK (base_url ~ '^https?://[^\s/]+(/\S*)?$'),
	broker_api_key     text,      -- credential sent to the broker; never returned or logged
	broker_instance_id text NOT NULL,
	delay_min_ms       int  NOT NULL DEFAULT 1000 CHECK (delay_min_ms BETWEEN 0 AND 600000),
	delay_max_ms       int  NOT NULL DEFAULT 3000 CHECK (delay_max_ms BETWEEN 0 AND 600000),
	max_attempts       int  NOT NULL DEFAULT 5 CHECK (max_attempts BETWEEN 1 AND 50),
	settings           jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
	created_at         timestamptz NOT NULL DEFAULT now(),
	updated_at         timestamptz NOT NULL DEFAULT now(),
	CHECK (delay_max_ms >= delay_min_ms),
	UNIQUE (tenant_id, name)
);

-- The queue of one instance: the per-instance sequence, when it may send next
-- (pacing, backoff), which message is in flight, and whether it is connected.
-- head_due is the due time of its first pending message (NULL: nothing
-- pending), so the dispatcher finds ready instances through one small index
-- whatever the size of the backlog.
CREATE TABLE pgwa.instance_state (
	instance_id      uuid PRIMARY KEY REFERENCES pgwa.instances (id) ON DELETE CASCADE,
	connection_state text NOT NULL DEFAULT 'unknown'
	                 CHECK (connection_state IN ('unknown', 'connected', 'disconnected')),
	state_changed_at timestamptz NOT NULL DEFAULT now(),
	next_seq         bigint NOT NULL DEFAULT 0,
	head_due         timestamptz,
	not_before       timestamptz NOT NULL DEFAULT '-infinity',
	inflight_seq     bigint
);
CREATE INDEX instance_state_ready ON pgwa.instance_state ((greatest(head_due, not_before)))
	WHERE head_due IS NOT NULL AND inflight_seq IS NULL AND connection_state <> 'disconnected';

-------------------------------------------------------------------------------
-- The outbox: every outbound message, in per-instance sequence.
--   queued     waiting for its turn
--   scheduled  waiting for scheduled_for
--   sending    claimed by the dispatcher (lease_until bounds the claim)
--   failed     last attempt failed transiently; retried at next_attempt_at
--   sent, delivered, read   accepted by the broker, then receipts
--   dead       permanent failure or attempts exhausted (dead letter)
--   canceled   canceled before it was sent
-------------------------------------------------------------------------------
CREATE TABLE pgwa.outbox (
	instance_id       uuid   NOT NULL REFERENCES pgwa.instances (id) ON DELETE CASCADE,
	seq               bigint NOT NULL,
	id                uuid   NOT NULL DEFAULT gen_random_uuid(),
	tenant_id         uuid   NOT NULL,
	idempotency_key   text,
	request_hash      bytea  NOT NULL,
	type              text   NOT NULL,
	recipient         text   NOT NULL,
	payload           jsonb  NOT NULL,
	status            text   NOT NULL DEFAULT 'queued'
	                  CHECK (status IN ('queued', 'scheduled', 'sending', 'failed', 'sent',
	                                    'delivered', 'read', 'dead', 'canceled')),
	due_at            timestamptz NOT NULL,
	scheduled_for     timestamptz,
	delay_message_s   int NOT NULL DEFAULT 0,
	attempts          int NOT NULL DEFAULT 0,
	max_attempts      int NOT NULL,
	lease_until       timestamptz,
	next_attempt_at   timestamptz,
	broker_message_id text,
	last_http_status  int,
	last_error        text,
	created_at        timestamptz NOT NULL DEFAULT now(),
	updated_at        timestamptz NOT NULL DEFAULT now(),
	sent_at           timestamptz,
	delivered_at      timestamptz,
	read_at           timestamptz,
	dead_at           timestamptz,
	canceled_at       timestamptz,
	PRIMARY KEY (instance_id, seq),
	UNIQUE (instance_id, id),
	UNIQUE (instance_id, idempotency_key)
);
-- Pending messages of an instance in the order they go out.
CREATE INDEX outbox_pending ON pgwa.outbox (instance_id, due_at, seq)
	WHERE status IN ('queued', 'scheduled', 'failed');
CREATE INDEX outbox_id ON pgwa.outbox (id);
CREATE INDEX outbox_broker_id ON pgwa.outbox (instance_id, broker_message_id)
	WHERE broker_message_id IS NOT NULL;
CREATE INDEX outbox_sending ON pgwa.outbox (lease_until) WHERE status = 'sending';

-- Every delivery attempt, for audit and debugging.
CREATE TABLE pgwa.attempts (
	instance_id       uuid   NOT NULL,
	id                bigint GENERATED ALWAYS AS IDENTITY,
	seq               bigint NOT NULL,
	attempt           int    NOT NULL,
	started_at        timestamptz NOT NULL,
	duration_ms       double precision,
	outcome           text NOT NULL CHECK (outcome IN ('sent', 'retry', 'dead', 'disconnected',
	                                                  'lease_expired', 'dryrun')),
	http_status       int,
	error             text,
	broker_message_id text,
	PRIMARY KEY (instance_id, id),
	FOREIGN KEY (instance_id, seq) REFERENCES pgwa.outbox (instance_id, seq) ON DELETE CASCADE
);
CREATE INDEX attempts_message ON pgwa.attempts (instance_id, seq);

-- The conversation log: every WhatsApp message of an instance, both ways.
-- Outbound messages enter when the broker accepts them.
CREATE TABLE pgwa.messages (
	instance_id       uuid NOT NULL REFERENCES pgwa.instances (id) ON DELETE CASCADE,
	id                uuid NOT NULL DEFAULT gen_random_uuid(),
	tenant_id         uuid NOT NULL,
	direction         text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
	broker_message_id text,
	outbox_seq        bigint,
	remote            text NOT NULL,
	type              text NOT NULL,
	content           jsonb NOT NULL DEFAULT '{}',
	status            text NOT NULL,
	source            text NOT NULL DEFAULT 'live',
	broker_timestamp  timestamptz,
	created_at        timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (instance_id, id),
	UNIQUE (instance_id, broker_message_id)
);
CREATE INDEX messages_outbox ON pgwa.messages (instance_id, outbox_seq) WHERE outbox_seq IS NOT NULL;

-------------------------------------------------------------------------------
-- C functions
-------------------------------------------------------------------------------
-- A fresh API key: "pgwa_" and 40 hex digits from the strong random source.
CREATE FUNCTION pgwa._random_token() RETURNS text
	AS 'MODULE_PATHNAME', 'pgwa_random_token' LANGUAGE C VOLATILE STRICT;

-- Validates an outbound message and returns its canonical form; errors name
-- the field (COLUMN_NAME) and use SQLSTATE PW400.
CREATE FUNCTION pgwa.normalize_message(message jsonb) RETURNS jsonb
	AS 'MODULE_PATHNAME', 'pgwa_normalize_message' LANGUAGE C IMMUTABLE STRICT;

-- Wakes the dispatcher when the calling transaction commits (once per
-- transaction however often it is called).
CREATE FUNCTION pgwa._wake_dispatcher_on_commit() RETURNS void
	AS 'MODULE_PATHNAME', 'pgwa_wake_dispatcher_on_commit' LANGUAGE C VOLATILE;

-- The dispatcher's process id, NULL when it is not running.
CREATE FUNCTION pgwa.dispatcher_pid() RETURNS int
	AS 'MODULE_PATHNAME', 'pgwa_dispatcher_pid' LANGUAGE C VOLATILE;

-- The effective mode (http, dryrun, disabled) and the raw setting.
CREATE FUNCTION pgwa.mode(OUT mode text, OUT raw_mode text)
	AS 'MODULE_PATHNAME', 'pgwa_mode' LANGUAGE C STABLE;

-------------------------------------------------------------------------------
-- Raising pgwa errors from SQL
-------------------------------------------------------------------------------
CREATE FUNCTION pgwa._raise(p_sqlstate text, p_message text, p_field text DEFAULT NULL,
                            p_detail text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION USING ERRCODE = p_sqlstate, MESSAGE = p_message,
		COLUMN = coalesce(p_field, ''), DETAIL = coalesce(p_detail, '');
END $$;

-------------------------------------------------------------------------------
-- Tenants and keys
-------------------------------------------------------------------------------
CREATE FUNCTION pgwa._hash_key(p_key text) RETURNS bytea
	LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
	RETURN sha256(convert_to(p_key, 'UTF8'));

CREATE FUNCTION pgwa._issue_key(p_tenant uuid, p_role text, p_label text)
RETURNS TABLE (key_id uuid, api_key text)
LANGUAGE plpgsql AS $$
DECLARE
	v_key text := pgwa._random_token();
BEGIN
	INSERT INTO pgwa.api_keys (tenant_id, role, key_hash, key_prefix, label)
	VALUES (p_tenant, p_role, pgwa._hash_key(v_key), left(v_key, 12), p_label)
	RETURNING id INTO key_id;
	api_key := v_key;
	RETURN NEXT;
END $$;

-- An admin key manages tenants. Returned once; only its hash is kept.
CREATE FUNCTION pgwa.create_admin_key(p_label text DEFAULT 'admin') RETURNS text
LANGUAGE sql AS $$ SELECT api_key FROM pgwa._issue_key(NULL, 'admin', p_label) $$;

-- A new tenant and its first API key (shown once).
CREATE FUNCTION pgwa.create_tenant(p_name text)
RETURNS TABLE (tenant_id uuid, api_key text)
LANGUAGE plpgsql AS $$
BEGIN
	IF p_name IS NULL OR length(btrim(p_name)) = 0 OR length(p_name) > 200 THEN
		PERFORM pgwa._raise('PW400', 'name must be a non-empty string of at most 200 characters', 'name');
	END IF;
	INSERT INTO pgwa.tenants (name) VALUES (btrim(p_name)) RETURNING id INTO tenant_id;
	SELECT k.api_key INTO api_key FROM pgwa._issue_key(tenant_id, 'tenant', 'initial') k;
	RETURN NEXT;
END $$;

-- Another key for a tenant (for rotation).
CREATE FUNCTION pgwa.create_api_key(p_tenant uuid, p_label text DEFAULT NULL)
RETURNS TABLE (key_id uuid, api_key text)
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM 1 FROM pgwa.tenants WHERE id = p_tenant;
	IF NOT FOUND THEN
		PERFORM pgwa._raise('PW404', 'tenant not found', 'tenant_id');
	END IF;
	RETURN QUERY SELECT * FROM pgwa._issue_key(p_tenant, 'tenant', p_label);
END $$;

CREATE FUNCTION pgwa.revoke_api_key(p_key_id uuid) RETURNS boolean
LANGUAGE sql AS $$
	WITH r AS (UPDATE pgwa.api_keys SET revoked_at = now()
	           WHERE id = p_key_id AND revoked_at IS NULL RETURNING 1)
	SELECT EXISTS (SELECT 1 FROM r)
$$;

-- The live key matching a presented token, if any.
CREATE FUNCTION pgwa.authenticate(p_key text)
RETURNS TABLE (key_id uuid, tenant_id uuid, role text)
LANGUAGE sql STABLE AS $$
	SELECT k.id, k.tenant_id, k.role FROM pgwa.api_keys k
	WHERE k.key_hash = pgwa._hash_key(p_key) AND k.revoked_at IS NULL
$$;

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
	BEGIN
		v_min := coalesce((p_options->>'delay_min_ms')::int, 1000);
		v_max := coalesce((p_options->>'delay_max_ms')::int, greatest(v_min, 3000));
		v_attempts := coalesce((p_options->>'max_attempts')::int, 5);
	EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
		PERFORM pgwa._raise('PW400', 'delay_min_ms, delay_max_ms and max_attempts must be integers', 'options');
	END;
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
-- Enqueue
-------------------------------------------------------------------------------
-- Queues one outbound message. p_message is validated by normalize_message;
-- it may carry scheduledFor (ISO time, future, at most 90 days ahead),
-- delayMessage (1-15 s) and messageId (used as idempotency key when
-- p_idempotency_key is NULL). The same key with the same message returns
-- the message already queued; with a different message it is a PW409.
CREATE FUNCTION pgwa.enqueue(p_instance uuid, p_message jsonb, p_idempotency_key text DEFAULT NULL)
RETURNS TABLE (message_id uuid, status text, seq bigint, scheduled_for timestamptz, created boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
	v_msg      jsonb;
	v_inst     pgwa.instances;
	v_key      text;
	v_hash     bytea;
	v_sched    timestamptz;
	v_due      timestamptz;
	v_seq      bigint;
	v_existing record;
BEGIN
	v_msg := pgwa.normalize_message(p_message);
	SELECT * INTO v_inst FROM pgwa.instances WHERE id = p_instance;
	IF NOT FOUND THEN
		PERFORM pgwa._raise('PW404', 'instance not found', 'instance_id');
	END IF;

	v_key := coalesce(p_idempotency_key, v_msg->>'messageId');
	IF v_key IS NOT NULL AND (length(v_key) = 0 OR length(v_key) > 200) THEN
		PERFORM pgwa._raise('PW400', 'messageId / Idempotency-Key must be 1-200 characters', 'messageId');
	END IF;
	v_msg := v_msg - 'messageId';
	v_hash := sha256(convert_to(v_msg::text, 'UTF8'));

	IF v_msg ? 'scheduledFor' THEN
		v_sched := (v_msg->>'scheduledFor')::timestamptz;
		IF v_sched <= now() THEN
			PERFORM pgwa._raise('PW400', 'scheduledFor must be in the future', 'scheduledFor');
		ELSIF v_sched > now() + interval '90 days' THEN
			PERFORM pgwa._raise('PW400', 'scheduledFor must be at most 90 days ahead', 'scheduledFor');
		END IF;
	END IF;

	-- Taking the instance's row lock serialises enqueues per instance: the
	-- sequence and the due time below then agree, and a concurrent enqueue
	-- with the same key has committed before we look for it.
	UPDATE pgwa.instance_state s SET next_seq = s.next_seq + 1
	WHERE s.instance_id = p_instance RETURNING s.next_seq INTO v_seq;

	IF v_key IS NOT NULL THEN
		SELECT o.id, o.status, o.seq, o.scheduled_for, o.request_hash INTO v_existing
		FROM pgwa.outbox o WHERE o.instance_id = p_instance AND o.idempotency_key = v_key;
		IF FOUND THEN
			IF v_existing.request_hash <> v_hash THEN
				PERFORM pgwa._raise('PW409', 'this idempotency key was already used for a different message',
				                    'messageId', format('message %s', v_existing.id));
			END IF;
			RETURN QUERY SELECT v_existing.id, v_existing.status, v_existing.seq,
			                    v_existing.scheduled_for, false;
			RETURN;
		END IF;
	END IF;

	v_due := coalesce(v_sched, clock_timestamp());
	INSERT INTO pgwa.outbox AS o (instance_id, seq, tenant_id, idempotency_key, request_hash, type,
	                              recipient, payload, status, due_at, scheduled_for,
	                              delay_message_s, max_attempts)
	VALUES (p_instance, v_seq, v_inst.tenant_id, v_key, v_hash, v_msg->>'type', v_msg->>'to',
	        v_msg - 'scheduledFor',
	        CASE WHEN v_sched IS NULL THEN 'queued' ELSE 'scheduled' END,
	        v_due, v_sched, coalesce((v_msg->>'delayMessage')::int, 0), v_inst.max_attempts)
	RETURNING o.id, o.status, o.seq, o.scheduled_for, true
	INTO message_id, status, seq, scheduled_for, created;

	UPDATE pgwa.instance_state s SET head_due = least(s.head_due, v_due)
	WHERE s.instance_id = p_instance AND (s.head_due IS NULL OR s.head_due > v_due);
	PERFORM pgwa._wake_dispatcher_on_commit();
	RETURN NEXT;
END $$;

-- A text message: the simplest send.
CREATE FUNCTION pgwa.send(p_instance uuid, p_to text, p_text text, p_options jsonb DEFAULT '{}',
                          p_idempotency_key text DEFAULT NULL)
RETURNS TABLE (message_id uuid, status text)
LANGUAGE sql AS $$
	SELECT e.message_id, e.status
	FROM pgwa.enqueue(p_instance,
	                  coalesce(p_options, '{}') || jsonb_build_object('to', p_to, 'type', 'text', 'text', p_text),
	                  p_idempotency_key) e
$$;

-- A message as the API shows it, with its attempts.
CREATE FUNCTION pgwa.message_json(p_message uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT jsonb_build_object(
		'id', o.id, 'instance_id', o.instance_id, 'seq', o.seq, 'status', o.status,
		'type', o.type, 'to', o.recipient, 'message', o.payload,
		'idempotency_key', o.idempotency_key, 'scheduled_for', o.scheduled_for,
		'attempts', o.attempts, 'max_attempts', o.max_attempts,
		'next_attempt_at', o.next_attempt_at, 'broker_message_id', o.broker_message_id,
		'last_http_status', o.last_http_status, 'last_error', o.last_error,
		'created_at', o.created_at, 'updated_at', o.updated_at, 'sent_at', o.sent_at,
		'delivered_at', o.delivered_at, 'read_at', o.read_at, 'dead_at', o.dead_at,
		'canceled_at', o.canceled_at,
		'attempt_log', coalesce((
			SELECT jsonb_agg(jsonb_build_object(
				'attempt', a.attempt, 'started_at', a.started_at, 'duration_ms', a.duration_ms,
				'outcome', a.outcome, 'http_status', a.http_status, 'error', a.error)
				ORDER BY a.id)
			FROM pgwa.attempts a WHERE a.instance_id = o.instance_id AND a.seq = o.seq), '[]'))
	FROM pgwa.outbox o WHERE o.id = p_message
$$;

-------------------------------------------------------------------------------
-- Dispatcher support. The background worker calls these through prepared
-- SPI plans: _claim in one short transaction, HTTP with no transaction open,
-- _complete for the results in a second short transaction.
-------------------------------------------------------------------------------

-- The first pending message of an instance, in sending order.
CREATE FUNCTION pgwa._head_due(p_instance uuid) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
	SELECT o.due_at FROM pgwa.outbox o
	WHERE o.instance_id = p_instance AND o.status IN ('queued', 'scheduled', 'failed')
	ORDER BY o.due_at, o.seq LIMIT 1
$$;

-- Claims the head message of up to p_limit ready instances, in one statement.
-- An instance whose head is not due yet (or that has none left) only gets its
-- head_due corrected, so it drops out of the ready index until then.
CREATE FUNCTION pgwa._claim(p_limit int, p_lease_s int)
RETURNS TABLE (instance_id uuid, seq bigint, message_id uuid, attempt int, provider text,
               base_url text, broker_api_key text, broker_instance_id text, settings jsonb,
               payload jsonb)
LANGUAGE sql AS $$
	WITH ready AS (
		SELECT s.instance_id FROM pgwa.instance_state s
		WHERE s.head_due IS NOT NULL AND s.inflight_seq IS NULL
		  AND s.connection_state <> 'disconnected'
		  AND greatest(s.head_due, s.not_before) <= clock_timestamp()
		ORDER BY greatest(s.head_due, s.not_before)
		LIMIT p_limit
		FOR UPDATE SKIP LOCKED
	), heads AS (
		SELECT r.instance_id, h.seq, h.due_at, coalesce(h.due_at <= clock_timestamp(), false) AS due
		FROM ready r
		LEFT JOIN LATERAL (
			SELECT o.seq, o.due_at FROM pgwa.outbox o
			WHERE o.instance_id = r.instance_id AND o.status IN ('queued', 'scheduled', 'failed')
			ORDER BY o.due_at, o.seq LIMIT 1) h ON true
	), state AS (
		UPDATE pgwa.instance_state s
		SET head_due = CASE WHEN h.due THEN s.head_due ELSE h.due_at END,
		    inflight_seq = CASE WHEN h.due THEN h.seq END
		FROM heads h WHERE s.instance_id = h.instance_id
	)
	UPDATE pgwa.outbox o
	SET status = 'sending', attempts = o.attempts + 1, updated_at = clock_timestamp(),
	    lease_until = clock_timestamp() + make_interval(secs => p_lease_s)
	FROM heads h, pgwa.instances i
	WHERE h.due AND o.instance_id = h.instance_id AND o.seq = h.seq AND i.id = o.instance_id
	RETURNING o.instance_id, o.seq, o.id, o.attempts, i.provider, i.base_url, i.broker_api_key,
	          i.broker_instance_id, i.settings, o.payload
$$;

-- Records the outcome of one attempt.
--   sent          the broker accepted it (p_broker_id is its id)
--   retry         transient failure: retried with backoff (p_retry_after_ms
--                 overrides the backoff), dead once attempts are exhausted
--   dead          permanent failure
--   disconnected  the broker says the instance is offline: the attempt is
--                 given back and the instance's queue pauses
--   dryrun        mode dryrun: recorded as sent without a broker call
CREATE FUNCTION pgwa._complete(p_instance uuid, p_seq bigint, p_outcome text, p_http_status int,
                               p_broker_id text, p_error text, p_started_at timestamptz,
                               p_duration_ms double precision, p_retry_after_ms int)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	o        pgwa.outbox;
	i        pgwa.instances;
	v_now    timestamptz := clock_timestamp();
	v_next   timestamptz;
	v_result text := p_outcome;
	v_pace   interval;
BEGIN
	SELECT * INTO o FROM pgwa.outbox WHERE instance_id = p_instance AND seq = p_seq FOR UPDATE;
	IF NOT FOUND OR o.status <> 'sending' THEN
		-- Reclaimed after its lease expired, or canceled: this result is stale.
		RETURN 'stale';
	END IF;
	SELECT * INTO i FROM pgwa.instances WHERE id = p_instance;

	IF p_outcome = 'retry' AND o.attempts >= o.max_attempts THEN
		v_result := 'dead';
	END IF;

	INSERT INTO pgwa.attempts (instance_id, seq, attempt, started_at, duration_ms, outcome,
	                           http_status, error, broker_message_id)
	VALUES (p_instance, p_seq, o.attempts, p_started_at, p_duration_ms, v_result,
	        p_http_status, p_error, p_broker_id);

	IF v_result IN ('sent', 'dryrun') THEN
		UPDATE pgwa.outbox SET status = 'sent', sent_at = v_now, updated_at = v_now,
		       broker_message_id = p_broker_id, last_http_status = p_http_status,
		       last_error = NULL, lease_until = NULL, next_attempt_at = NULL
		WHERE instance_id = p_instance AND seq = p_seq;
		INSERT INTO pgwa.messages (instance_id, tenant_id, direction, broker_message_id, outbox_seq,
		                           remote, type, content, status, source)
		VALUES (p_instance, o.tenant_id, 'outbound', p_broker_id, p_seq, o.recipient, o.type,
		        o.payload, 'sent', 'api')
		ON CONFLICT (instance_id, broker_message_id) DO NOTHING;
		-- Human pace: a random pause in [min, max] plus the message's delayMessage.
		v_pace := make_interval(secs => (i.delay_min_ms + random() * (i.delay_max_ms - i.delay_min_ms)) / 1000.0
		                                + o.delay_message_s);
		UPDATE pgwa.instance_state SET inflight_seq = NULL, not_before = v_now + v_pace,
		       head_due = pgwa._head_due(p_instance)
		WHERE instance_id = p_instance;
	ELSIF v_result = 'retry' THEN
		v_next := v_now + CASE WHEN p_retry_after_ms IS NOT NULL AND p_retry_after_ms > 0
		                       THEN make_interval(secs => least(p_retry_after_ms, 3600000) / 1000.0)
		                       ELSE make_interval(secs => power(2, o.attempts - 1)) END;
		UPDATE pgwa.outbox SET status = 'failed', updated_at = v_now, next_attempt_at = v_next,
		       last_http_status = p_http_status, last_error = p_error, lease_until = NULL
		WHERE instance_id = p_instance AND seq = p_seq;
		-- The message keeps its place at the head: its instance waits for it.
		UPDATE pgwa.instance_state SET inflight_seq = NULL, not_before = v_next,
		       head_due = pgwa._head_due(p_instance)
		WHERE instance_id = p_instance;
	ELSIF v_result = 'dead' THEN
		UPDATE pgwa.outbox SET status = 'dead', dead_at = v_now, updated_at = v_now,
		       last_http_status = p_http_status, last_error = p_error, lease_until = NULL,
		       next_attempt_at = NULL
		WHERE instance_id = p_instance AND seq = p_seq;
		UPDATE pgwa.instance_state SET inflight_seq = NULL, head_due = pgwa._head_due(p_instance)
		WHERE instance_id = p_instance;
	ELSIF v_result = 'disconnected' THEN
		UPDATE pgwa.outbox SET status = 'queued', attempts = attempts - 1, updated_at = v_now,
		       last_http_status = p_http_status, last_error = p_error, lease_until = NULL
		WHERE instance_id = p_instance AND seq = p_seq;
		UPDATE pgwa.instance_state SET inflight_seq = NULL, connection_state = 'disconnected',
		       state_changed_at = v_now, head_due = pgwa._head_due(p_instance)
		WHERE instance_id = p_instance;
	ELSE
		RAISE EXCEPTION 'unknown outcome %', p_outcome;
	END IF;
	RETURN v_result;
END $$;

-- Gives back messages whose lease expired (their dispatcher died or lost
-- them). They are sent again with the same Idempotency-Key. With p_all,
-- every claimed message is given back: the dispatcher does this when it
-- starts, since it is the only one that claims.
CREATE FUNCTION pgwa._release_leases(p_all boolean DEFAULT false) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
	r record;
	n int := 0;
BEGIN
	FOR r IN SELECT o.instance_id, o.seq FROM pgwa.outbox o
	         WHERE o.status = 'sending' AND (p_all OR o.lease_until < clock_timestamp())
	         ORDER BY o.instance_id, o.seq
	         FOR UPDATE SKIP LOCKED
	LOOP
		INSERT INTO pgwa.attempts (instance_id, seq, attempt, started_at, outcome, error)
		SELECT r.instance_id, r.seq, o.attempts, o.updated_at, 'lease_expired', 'claim released without a result'
		FROM pgwa.outbox o WHERE o.instance_id = r.instance_id AND o.seq = r.seq;
		UPDATE pgwa.outbox SET status = 'failed', lease_until = NULL, updated_at = clock_timestamp(),
		       last_error = 'claim released without a result'
		WHERE instance_id = r.instance_id AND seq = r.seq;
		UPDATE pgwa.instance_state SET inflight_seq = NULL, head_due = pgwa._head_due(r.instance_id)
		WHERE instance_id = r.instance_id;
		n := n + 1;
	END LOOP;
	RETURN n;
END $$;

-- When the dispatcher next has something to do (NULL: nothing pending).
CREATE FUNCTION pgwa._next_due() RETURNS timestamptz
LANGUAGE sql STABLE AS $$
	SELECT min(greatest(s.head_due, s.not_before)) FROM pgwa.instance_state s
	WHERE s.head_due IS NOT NULL AND s.inflight_seq IS NULL AND s.connection_state <> 'disconnected'
$$;
