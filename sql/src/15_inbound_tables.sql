-------------------------------------------------------------------------------
-- Inbound: raw webhook events, leads, conversations, tickets, real-time events
-- and counters. Instance-scoped tables are keyed by instance_id first,
-- tenant-scoped ones by tenant_id first (ARCHITECTURE section 5); no foreign
-- key joins two of them, only the small tenants/instances tables.
-------------------------------------------------------------------------------

-- The webhook secret a broker presents (X-API-Key, Bearer or X-Authorization)
-- when it posts to the inbound webhook. Only its SHA-256 is kept. On rotation
-- the previous secret may stay valid for a grace period.
CREATE TABLE pgwa.webhook_secrets (
	instance_id         uuid PRIMARY KEY REFERENCES pgwa.instances (id) ON DELETE CASCADE,
	tenant_id           uuid NOT NULL,
	secret_hash         bytea NOT NULL,
	previous_hash       bytea,
	previous_valid_until timestamptz,
	created_at          timestamptz NOT NULL DEFAULT now(),
	rotated_at          timestamptz
);
CREATE INDEX webhook_secrets_hash ON pgwa.webhook_secrets (secret_hash);
CREATE INDEX webhook_secrets_previous ON pgwa.webhook_secrets (previous_hash)
	WHERE previous_hash IS NOT NULL;

-- Every webhook body, stored before anything else is done with it (seed 000:
-- the raw event persists first; an event whose processing fails stays and is
-- retried). Only events attributed to an instance are stored: the instance
-- is the one whose webhook secret was presented, so an unauthenticated body
-- never reaches the database.
--   received   stored, not applied yet
--   applied    applied; at least one message was new
--   duplicate  every message had been applied before (a redelivery)
--   ignored    nothing to apply (raw kinds the seed ignores)
--   deferred   holds work for a later stage (Cloud API coexistence history,
--              contact sync, app echoes); what could be applied now was
--              applied
--   failed     applying raised; retried at next_attempt_at
--   rejected   invalid (error_sqlstate/error_field/last_error say why); kept so that
--              nothing a broker sent is lost, and replayable after a fix
-- What became of a stored event. A domain rather than a table CHECK, as for
-- the outbox (see pgwa.message_status): every webhook inserts a row.
CREATE DOMAIN pgwa.webhook_event_status AS text
	CHECK (VALUE IN ('received', 'applied', 'duplicate', 'ignored', 'deferred', 'failed', 'rejected'));
CREATE TABLE pgwa.webhook_events (
	instance_id     uuid   NOT NULL,   -- no foreign key: see pgwa._drop_instance_rows
	id              bigint GENERATED ALWAYS AS IDENTITY,
	tenant_id       uuid   NOT NULL,
	dialect         text   NOT NULL,
	payload_type    text,
	received_at     timestamptz NOT NULL DEFAULT now(),
	headers         jsonb  NOT NULL DEFAULT '{}',
	body            jsonb  NOT NULL,
	status          pgwa.webhook_event_status NOT NULL DEFAULT 'received',
	attempts        int    NOT NULL DEFAULT 0,
	last_error      text,
	error_sqlstate  text,
	error_field     text,
	next_attempt_at timestamptz,
	applied_at      timestamptz,
	result          jsonb,
	PRIMARY KEY (instance_id, id)
);
CREATE INDEX webhook_events_id ON pgwa.webhook_events (id);
CREATE INDEX webhook_events_retry ON pgwa.webhook_events (next_attempt_at) WHERE status = 'failed';
CREATE INDEX webhook_events_pending ON pgwa.webhook_events (received_at, id) WHERE status = 'received';
CREATE INDEX webhook_events_received ON pgwa.webhook_events (instance_id, received_at);

-- A tenant's service queues for tickets. A new ticket goes to the default
-- queue; without one it has no queue and whatsapp.queue.missing is emitted.
CREATE TABLE pgwa.ticket_queues (
	tenant_id  uuid NOT NULL REFERENCES pgwa.tenants (id) ON DELETE CASCADE,
	id         uuid NOT NULL DEFAULT gen_random_uuid(),
	name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
	is_default boolean NOT NULL DEFAULT false,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, id),
	UNIQUE (tenant_id, name)
);
CREATE UNIQUE INDEX ticket_queues_default ON pgwa.ticket_queues (tenant_id) WHERE is_default;

-- A person the tenant talks to, one per phone number (E.164 digits). A sender
-- known only by a LID (id@lid, no phone) is a lead by its LID until a message
-- carries its phone. source (seed 002, "Campo novo: source em Lead"):
-- direct_creation | live_message | history_sync | state_sync.
-- window_expires_at is the 24 h customer-service window (seed 002 section 4):
-- NULL for a history lead means no limit; for other leads it means no window.
CREATE TABLE pgwa.leads (
	tenant_id         uuid NOT NULL,   -- no foreign key: see pgwa._drop_tenant_rows
	id                uuid NOT NULL DEFAULT gen_random_uuid(),
	phone             text CHECK (phone ~ '^[0-9]{8,15}$'),
	lid               text CHECK (lid ~ '@lid$'),
	name              text,
	push_name         text,
	document          text,
	registrations     jsonb CHECK (jsonb_typeof(registrations) = 'array'),
	avatar_url        text,
	metadata          jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
	source            text NOT NULL DEFAULT 'live_message'
	                  CHECK (source IN ('direct_creation', 'live_message', 'history_sync', 'state_sync')),
	window_expires_at timestamptz,
	first_inbound_at  timestamptz,
	last_inbound_at   timestamptz,
	last_message_at   timestamptz,
	active            boolean NOT NULL DEFAULT true,
	deleted_at        timestamptz,
	last_synced_at    timestamptz,
	created_at        timestamptz NOT NULL DEFAULT now(),
	updated_at        timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, id),
	UNIQUE (tenant_id, phone),
	UNIQUE (tenant_id, lid),
	CHECK (phone IS NOT NULL OR lid IS NOT NULL)
) WITH (fillfactor = 70);   -- room for HOT updates: every message updates its row

-- A lead's conversation on one instance (seed 002: one per lead + instance).
CREATE TABLE pgwa.conversations (
	instance_id     uuid NOT NULL,   -- no foreign key: see pgwa._drop_instance_rows
	id              uuid NOT NULL DEFAULT gen_random_uuid(),
	tenant_id       uuid NOT NULL,
	lead_id         uuid NOT NULL,
	remote          text NOT NULL,
	last_message_at timestamptz,
	last_inbound_at timestamptz,
	created_at      timestamptz NOT NULL DEFAULT now(),
	updated_at      timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (instance_id, id),
	UNIQUE (instance_id, lead_id)
) WITH (fillfactor = 70);   -- room for HOT updates: every message updates its row
CREATE INDEX conversations_lead ON pgwa.conversations (tenant_id, lead_id);

-- A service ticket. At most one open ticket per lead. Fields as seed 002
-- ("Lead, Ticket e Origem"): source incoming_message | api | manual,
-- originated_from new_contact | history_lead | existing. metadata.timeline
-- holds firstInboundAt, lastInboundAt, firstOutboundAt, lastOutboundAt
-- (seed 000, "Timeline Reconciliacao").
CREATE TABLE pgwa.tickets (
	tenant_id       uuid NOT NULL,   -- no foreign key: see pgwa._drop_tenant_rows
	id              uuid NOT NULL DEFAULT gen_random_uuid(),
	lead_id         uuid NOT NULL,
	instance_id     uuid,
	conversation_id uuid,
	queue_id        uuid,
	status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
	stage           text NOT NULL DEFAULT 'new',
	source          text NOT NULL CHECK (source IN ('incoming_message', 'api', 'manual')),
	originated_from text NOT NULL CHECK (originated_from IN ('new_contact', 'history_lead', 'existing')),
	metadata        jsonb NOT NULL DEFAULT '{"timeline": {}}' CHECK (jsonb_typeof(metadata) = 'object'),
	created_at      timestamptz NOT NULL DEFAULT now(),
	updated_at      timestamptz NOT NULL DEFAULT now(),
	closed_at       timestamptz,
	PRIMARY KEY (tenant_id, id),
	CHECK ((status = 'closed') = (closed_at IS NOT NULL))
) WITH (fillfactor = 70);   -- room for HOT updates: every message updates its row
CREATE UNIQUE INDEX tickets_one_open ON pgwa.tickets (tenant_id, lead_id) WHERE status = 'open';
CREATE INDEX tickets_id ON pgwa.tickets (id);

-- Real-time events, durable so that streams and client webhooks can resume
-- after a given id. Each insert is announced by NOTIFY pgwa_events carrying
-- {tenant_id, id, event, data} with a short summary in data.
CREATE TABLE pgwa.events (
	tenant_id  uuid   NOT NULL,
	id         bigint GENERATED ALWAYS AS IDENTITY,
	event      text   NOT NULL,
	payload    jsonb  NOT NULL,
	-- the clock right after the id was taken (not the transaction's start):
	-- pgwa._events_after relies on it to never skip an event committed late
	created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
	PRIMARY KEY (tenant_id, id)
);
CREATE INDEX events_created ON pgwa.events (created_at);

-- No planner statistics for the documents these busy tables carry: no query
-- filters on their contents, and ANALYZE would sort thousands of them on
-- every autovacuum round, taking CPU from webhooks being answered.
ALTER TABLE pgwa.webhook_events ALTER COLUMN headers SET STATISTICS 0,
	ALTER COLUMN body SET STATISTICS 0, ALTER COLUMN result SET STATISTICS 0;
ALTER TABLE pgwa.events ALTER COLUMN payload SET STATISTICS 0;
ALTER TABLE pgwa.messages ALTER COLUMN content SET STATISTICS 0, ALTER COLUMN metadata SET STATISTICS 0;

-- whatsapp_webhook_events_total{result, reason, payload_type}. Writers add to
-- one of a few shards (by backend) so concurrent webhooks do not queue on a
-- single counter row; readers sum the shards.
CREATE TABLE pgwa.webhook_counters (
	result       text   NOT NULL,
	reason       text   NOT NULL,
	payload_type text   NOT NULL,
	shard        int    NOT NULL,
	count        bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (result, reason, payload_type, shard)
);

-- The busiest tables (webhook events, messages, conversations, leads,
-- tickets) have no foreign key to their instance or tenant: a key check
-- share-locks the parent row on every insert, and every webhook of an
-- instance shares that one row, so concurrent writers would queue on it
-- (multixacts). Rows are only ever written for an instance or tenant just
-- read; deleting one deletes its rows here, by these triggers.
CREATE FUNCTION pgwa._drop_instance_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	DELETE FROM pgwa.webhook_events WHERE instance_id IN (SELECT id FROM gone);
	DELETE FROM pgwa.messages WHERE instance_id IN (SELECT id FROM gone);
	DELETE FROM pgwa.conversations WHERE instance_id IN (SELECT id FROM gone);
	RETURN NULL;
END $$;
CREATE TRIGGER instances_drop_rows AFTER DELETE ON pgwa.instances
	REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION pgwa._drop_instance_rows();

CREATE FUNCTION pgwa._drop_tenant_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	DELETE FROM pgwa.tickets WHERE tenant_id IN (SELECT id FROM gone);
	DELETE FROM pgwa.leads WHERE tenant_id IN (SELECT id FROM gone);
	RETURN NULL;
END $$;
CREATE TRIGGER tenants_drop_rows AFTER DELETE ON pgwa.tenants
	REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION pgwa._drop_tenant_rows();

-- One normalised live message on its way to the tables (pgwa._apply_live):
-- where it came from (event, position), whose it is, who wrote it and what.
-- at is when the contact wrote (the broker's time, else the arrival).
CREATE TYPE pgwa._live_msg AS (
	event_id     bigint,
	n            int,
	received_at  timestamptz,
	instance_id  uuid,
	tenant_id    uuid,
	instance_key text,
	bid          text,
	phone        text,
	lid          text,
	contact      jsonb,
	chat_jid     text,
	is_group     boolean,
	participant  text,
	ts           timestamptz,
	at           timestamptz,
	message      jsonb,
	meta         jsonb
);

-- A sender's lead as a batch resolved it (pgwa._apply_live).
CREATE TYPE pgwa._live_lead AS (
	tenant_id  uuid,
	skey       text,
	lead_id    uuid,
	created    boolean,
	source     text,
	"window"   timestamptz
);

-- What became of one live message: accepted or duplicate, with its ids.
CREATE TYPE pgwa._live_result AS (
	event_id bigint,
	n        int,
	result   jsonb
);

-- The last non-null value of an ordered aggregate, and a jsonb merge: how a
-- batch folds several messages of one sender into one lead update, as if
-- they had been applied one after the other.
CREATE FUNCTION pgwa._last_sfunc(anyelement, anyelement) RETURNS anyelement
	AS 'MODULE_PATHNAME', 'pgwa_last_sfunc' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE pgwa._last_value(anyelement) (SFUNC = pgwa._last_sfunc, STYPE = anyelement);
CREATE AGGREGATE pgwa._jsonb_merge(jsonb) (SFUNC = jsonb_concat, STYPE = jsonb, INITCOND = '{}');
