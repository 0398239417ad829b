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

-- Connection states of an instance, and statuses of an outbound message
-- (listed with the outbox below). Domains rather than table CHECKs: a CHECK
-- is read and compiled again by every statement that writes the table,
-- however few columns it changes, and instance_state and outbox are written
-- on every enqueue and every dispatch; a domain is checked only where a
-- value is assigned, with its expression cached by the backend.
CREATE DOMAIN pgwa.connection_state AS text
	CHECK (VALUE IN ('unknown', 'connected', 'disconnected'));
CREATE DOMAIN pgwa.message_status AS text
	CHECK (VALUE IN ('queued', 'scheduled', 'sending', 'failed', 'sent',
	                 'delivered', 'read', 'dead', 'canceled'));

-- The queue of one instance: the per-instance sequence, when it may send next
-- (pacing, backoff), which message is in flight, and whether it is connected.
-- head_due is the due time of its first pending message (NULL: nothing
-- pending), so the dispatcher finds ready instances through one small index
-- whatever the size of the backlog.
CREATE TABLE pgwa.instance_state (
	instance_id      uuid PRIMARY KEY REFERENCES pgwa.instances (id) ON DELETE CASCADE,
	connection_state pgwa.connection_state NOT NULL DEFAULT 'unknown',
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
-- instance_id has no foreign key: pgwa.enqueue is the only writer of new
-- rows, and it holds the instance's instance_state row (locked by the update
-- that hands out seq) until it commits, so the row cannot go away under it.
-- A key check would only lock that row once more: a query and a WAL record
-- per message, 15% of an enqueue's CPU. The trigger below keeps the cascade:
-- deleting an instance (instance_state cascades from instances) deletes its
-- outbox, and with it the attempts.
CREATE TABLE pgwa.outbox (
	instance_id       uuid   NOT NULL,
	seq               bigint NOT NULL,
	id                uuid   NOT NULL DEFAULT gen_random_uuid(),
	tenant_id         uuid   NOT NULL,
	idempotency_key   text,
	request_hash      bytea,          -- SHA-256 of the message, kept with an idempotency key
	type              text   NOT NULL,
	recipient         text   NOT NULL,
	payload           jsonb  NOT NULL,
	status            pgwa.message_status NOT NULL DEFAULT 'queued',
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
	PRIMARY KEY (instance_id, seq)
);
-- Idempotency keys are unique per instance; most messages have none, and
-- NULLs never conflict, so they stay out of the index.
CREATE UNIQUE INDEX outbox_idempotency ON pgwa.outbox (instance_id, idempotency_key)
	WHERE idempotency_key IS NOT NULL;
-- Pending messages of an instance in the order they go out.
CREATE INDEX outbox_pending ON pgwa.outbox (instance_id, due_at, seq)
	WHERE status IN ('queued', 'scheduled', 'failed');
-- Messages by id (the API's message_id). Ids are UUID version 7 made by
-- enqueue: time-ordered, so this index grows at its right edge, and with 74
-- random bits per millisecond they do not repeat. The index is not unique:
-- a unique index without instance_id could not be kept once the table is
-- distributed by instance_id.
CREATE INDEX outbox_id ON pgwa.outbox (id);
CREATE INDEX outbox_broker_id ON pgwa.outbox (instance_id, broker_message_id)
	WHERE broker_message_id IS NOT NULL;
CREATE INDEX outbox_sending ON pgwa.outbox (lease_until) WHERE status = 'sending';

CREATE FUNCTION pgwa._delete_instance_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	DELETE FROM pgwa.outbox WHERE instance_id = OLD.instance_id;
	RETURN NULL;
END $$;
CREATE TRIGGER instance_state_delete_outbox AFTER DELETE ON pgwa.instance_state
	FOR EACH ROW EXECUTE FUNCTION pgwa._delete_instance_outbox();

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
-- Outbound messages enter when the broker accepts them; inbound ones when
-- their webhook event is applied (event_id), exactly once per broker id.
--   remote       the chat: E.164 digits, id@lid, or a group's id@g.us
--   participant  the sender's JID inside a group
--   content      the normalised message (type, text, media, location,
--                contacts, quotedMessageId/quotedText, ...)
--   metadata     the broker's metadata: broker {...}, rawKey, source,
--                brokerMessageTimestamp and normalizedTimestamp (seed 000)
--   broker_timestamp  the message's own time as the broker reported it
--   source       live | history | app_echo (seed 002), api for sends
CREATE TABLE pgwa.messages (
	instance_id       uuid NOT NULL,   -- no foreign key: see pgwa._drop_instance_rows
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
	conversation_id   uuid,
	lead_id           uuid,
	ticket_id         uuid,
	event_id          bigint,
	participant       text,
	quoted_message_id text,
	metadata          jsonb NOT NULL DEFAULT '{}',
	PRIMARY KEY (instance_id, id),
	UNIQUE (instance_id, broker_message_id)
);
CREATE INDEX messages_outbox ON pgwa.messages (instance_id, outbox_seq) WHERE outbox_seq IS NOT NULL;
CREATE INDEX messages_conversation ON pgwa.messages (instance_id, conversation_id, created_at)
	WHERE conversation_id IS NOT NULL;
