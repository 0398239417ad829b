-------------------------------------------------------------------------------
-- Inbound, part 2: applying one normalised live message to leads,
-- conversations, messages and tickets (seed 002, "messages (Novas mensagens
-- ao vivo)" and "Lead, Ticket e Origem"), and the ticket timeline both ways
-- (seed 000, "Timeline Reconciliacao").
-------------------------------------------------------------------------------

-- A chat address as leads are keyed: E.164 digits, or a LID (id@lid).
-- Groups and other JIDs have neither.
CREATE FUNCTION pgwa._remote_key(p_remote text, OUT phone text, OUT lid text)
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
	IF p_remote ~ '^[0-9]+(:[0-9]+)?@lid$' THEN
		lid := regexp_replace(p_remote, ':[0-9]+@', '@');
	ELSIF p_remote ~ '^[0-9]+(:[0-9]+)?@(s\.whatsapp\.net|c\.us)$' THEN
		phone := substring(p_remote FROM '^([0-9]+)');
	ELSIF p_remote ~ '^\+?[0-9 ().-]+$' THEN
		phone := regexp_replace(p_remote, '[^0-9]', '', 'g');
	END IF;
	IF phone !~ '^[0-9]{8,15}$' THEN
		phone := NULL;
	END IF;
END $$;

-- History leads (seed 002: imported by history or contact sync) get tickets
-- with originatedFrom history_lead and have no 24 h window.
CREATE FUNCTION pgwa._is_history_lead(p_source text) RETURNS boolean
LANGUAGE sql IMMUTABLE
RETURN p_source IN ('history_sync', 'state_sync');

-- The 24 h window of a lead (seed 002 section 4, "Lógica de Janela de
-- Mensagem"): unlimited for history leads, open until window_expires_at for
-- the others, closed without one.
CREATE FUNCTION pgwa._window_state(l pgwa.leads) RETURNS text
LANGUAGE sql STABLE
RETURN CASE WHEN pgwa._is_history_lead(l.source) THEN 'unlimited'
            WHEN l.window_expires_at > now() THEN 'open'
            ELSE 'closed' END;

-- The window towards a chat address of a tenant: unlimited, open, closed, or
-- unknown when no lead has that address.
CREATE FUNCTION pgwa.window_state(p_tenant uuid, p_remote text,
                                  OUT state text, OUT expires_at timestamptz)
LANGUAGE plpgsql STABLE AS $$
DECLARE
	k record := pgwa._remote_key(p_remote);
	l pgwa.leads;
BEGIN
	SELECT * INTO l FROM pgwa.leads
	WHERE tenant_id = p_tenant AND (phone = k.phone OR lid = k.lid)
	ORDER BY phone = k.phone DESC NULLS LAST LIMIT 1;
	IF l.id IS NULL THEN
		state := 'unknown';
	ELSE
		state := pgwa._window_state(l);
		expires_at := l.window_expires_at;
	END IF;
END $$;

-- Moves a ticket's timeline (first/last Inbound/Outbound At) to cover p_at and
-- returns what changed ('{}' when nothing did). Taking the earliest first and
-- the latest last makes replays and out-of-order deliveries harmless.
CREATE FUNCTION pgwa._timeline_touch(p_tenant uuid, p_ticket uuid, p_direction text, p_at timestamptz)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	v_first text := CASE p_direction WHEN 'inbound' THEN 'firstInboundAt' ELSE 'firstOutboundAt' END;
	v_last  text := CASE p_direction WHEN 'inbound' THEN 'lastInboundAt' ELSE 'lastOutboundAt' END;
	v_tl    jsonb;
	v_delta jsonb := '{}';
	v       text;
BEGIN
	SELECT coalesce(metadata->'timeline', '{}') INTO v_tl FROM pgwa.tickets
	WHERE tenant_id = p_tenant AND id = p_ticket FOR UPDATE;
	v := pgwa._iso(least((v_tl->>v_first)::timestamptz, p_at));
	IF v_tl->>v_first IS DISTINCT FROM v THEN
		v_delta := v_delta || jsonb_build_object(v_first, v);
	END IF;
	v := pgwa._iso(greatest((v_tl->>v_last)::timestamptz, p_at));
	IF v_tl->>v_last IS DISTINCT FROM v THEN
		v_delta := v_delta || jsonb_build_object(v_last, v);
	END IF;
	IF v_delta <> '{}' THEN
		UPDATE pgwa.tickets SET metadata = jsonb_set(metadata, '{timeline}', v_tl || v_delta),
		       updated_at = now()
		WHERE tenant_id = p_tenant AND id = p_ticket;
	END IF;
	RETURN v_delta;
END $$;

-- Outbound side of the timeline, for the dispatcher to call when the broker
-- accepts a message (p_remote as the outbox writes recipients): updates the
-- lead's and conversation's last message time and the open ticket's
-- firstOutboundAt / lastOutboundAt, and emits ticket.updated with the change.
-- Returns the open ticket's id, or NULL when the address has no lead or the
-- lead no open ticket.
CREATE FUNCTION pgwa._timeline_outbound(p_instance uuid, p_remote text, p_at timestamptz DEFAULT now())
RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
	v_tenant uuid;
	k        record := pgwa._remote_key(p_remote);
	v_lead   uuid;
	v_ticket uuid;
	v_delta  jsonb;
BEGIN
	SELECT tenant_id INTO v_tenant FROM pgwa.instances WHERE id = p_instance;
	IF v_tenant IS NULL OR (k.phone IS NULL AND k.lid IS NULL) THEN
		RETURN NULL;
	END IF;
	UPDATE pgwa.leads SET last_message_at = greatest(last_message_at, p_at)
	WHERE id = (SELECT id FROM pgwa.leads WHERE tenant_id = v_tenant AND (phone = k.phone OR lid = k.lid)
	            ORDER BY phone = k.phone DESC NULLS LAST LIMIT 1)
	  AND tenant_id = v_tenant
	RETURNING id INTO v_lead;
	IF v_lead IS NULL THEN
		RETURN NULL;
	END IF;
	UPDATE pgwa.conversations SET last_message_at = greatest(last_message_at, p_at), updated_at = now()
	WHERE instance_id = p_instance AND lead_id = v_lead;
	SELECT id INTO v_ticket FROM pgwa.tickets
	WHERE tenant_id = v_tenant AND lead_id = v_lead AND status = 'open';
	IF v_ticket IS NULL THEN
		RETURN NULL;
	END IF;
	v_delta := pgwa._timeline_touch(v_tenant, v_ticket, 'outbound', p_at);
	IF v_delta <> '{}' THEN
		PERFORM pgwa._emit(v_tenant, 'ticket.updated',
		                   jsonb_build_object('ticketId', v_ticket, 'leadId', v_lead, 'timeline', v_delta));
	END IF;
	RETURN v_ticket;
END $$;

-- Closes an open ticket; the lead's next live message opens a new one.
CREATE FUNCTION pgwa.close_ticket(p_ticket uuid) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
	t pgwa.tickets;
BEGIN
	UPDATE pgwa.tickets SET status = 'closed', closed_at = now(), updated_at = now()
	WHERE id = p_ticket AND status = 'open'
	RETURNING * INTO t;
	IF t.id IS NULL THEN
		RETURN false;
	END IF;
	PERFORM pgwa._emit(t.tenant_id, 'ticket.updated',
	                   jsonb_build_object('ticketId', t.id, 'leadId', t.lead_id, 'status', 'closed'));
	RETURN true;
END $$;

-- A ticket as seed 002 shows it ("API RESPONSES - Incluir Origem").
CREATE FUNCTION pgwa.ticket_json(p_ticket uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT jsonb_build_object(
		'id', t.id, 'status', t.status, 'stage', t.stage, 'source', t.source,
		'originatedFrom', t.originated_from, 'queueId', t.queue_id,
		'instanceId', t.instance_id, 'conversationId', t.conversation_id,
		'messageWindowExpiresAt', l.window_expires_at, 'window', pgwa._window_state(l),
		'timeline', coalesce(t.metadata->'timeline', '{}'),
		'createdAt', t.created_at, 'closedAt', t.closed_at,
		'lead', jsonb_build_object('id', l.id, 'phoneNumber', l.phone, 'lid', l.lid, 'name', l.name,
		                           'pushName', l.push_name, 'source', l.source,
		                           'createdAt', l.created_at, 'lastMessageAt', l.last_message_at))
	FROM pgwa.tickets t JOIN pgwa.leads l ON l.tenant_id = t.tenant_id AND l.id = t.lead_id
	WHERE t.id = p_ticket
$$;

-- A short summary of a message for real-time events (NOTIFY stays small).
CREATE FUNCTION pgwa._message_summary(m jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
	SELECT jsonb_strip_nulls(jsonb_build_object(
		'media', CASE WHEN m ? 'media' THEN (m->'media') - 'url' - 'caption' END,
		'location', m->'location',
		'contacts', CASE WHEN jsonb_typeof(m->'contacts') = 'array' THEN
			(SELECT jsonb_agg(x) FROM (SELECT x FROM jsonb_array_elements(m->'contacts') x LIMIT 5) s) END))
$$;

-- A normalised envelope (normalize_inbound's form) as a live message of
-- event p_event received on p_inst.
CREATE FUNCTION pgwa._live_msg(p_inst pgwa.instances, p_event bigint, p_received timestamptz, p_n int,
                               e jsonb)
RETURNS pgwa._live_msg
LANGUAGE sql STABLE AS $$
	SELECT ROW(p_event, p_n, p_received, p_inst.id, p_inst.tenant_id, e->>'instanceId',
	           e->'payload'->'message'->>'id',
	           e->'payload'->'contact'->>'phone', e->'payload'->'contact'->>'lid', e->'payload'->'contact',
	           e->'payload'->'chat'->>'jid', coalesce((e->'payload'->'chat'->>'isGroup')::boolean, false),
	           e->'payload'->'chat'->>'participantJid',
	           (e->>'timestamp')::timestamptz, coalesce((e->>'timestamp')::timestamptz, p_received),
	           e->'payload'->'message', coalesce(e->'payload'->'metadata', '{}'))::pgwa._live_msg
$$;

-- Applies live messages (seed 002, "messages (Novas mensagens ao vivo)")
-- exactly once, a whole batch in a few set-based statements: 1. the lead
-- of each sender, found by phone (or LID) or created with source
-- live_message, refreshed with what the messages say (seed 000: name falls
-- back to pushName, unknown contact keys in metadata; a LID-only lead learns
-- its phone); 2. the conversation per lead and instance; 3. the ticket, only
-- when the lead has no open one (originatedFrom new_contact, history_lead or
-- existing), and its timeline; 4. the messages (source live), a broker id
-- the instance already has being a duplicate; 5. the real-time events. The
-- 24 h window: a new live contact gets 24 h from its message's arrival,
-- every later live message extends it to 24 h from its own; history leads
-- have none (no limit). Group messages refresh the sender's lead and are
-- stored, but open no conversation, ticket or window.
-- The result is what applying the messages one after the other, in order,
-- gives, except that a ticket changed by several messages of the batch gets
-- one ticket.updated. Where a batch cannot tell (two senders that turn out
-- to be one lead, a lead or ticket created meanwhile by someone else) it
-- raises PW5B1 and the caller applies the messages one by one.
CREATE FUNCTION pgwa._apply_live(p_rows pgwa._live_msg[]) RETURNS SETOF pgwa._live_result
LANGUAGE plpgsql
-- planned for each batch: a kept plan sizes every array at ten rows and
-- joins hundreds by nested loops; never JIT-compiled (the nested loops it
-- turns off inflate the costs past jit_above_cost)
SET plan_cache_mode = force_custom_plan SET jit = off AS $$
DECLARE
	v_new    pgwa._live_msg[];
	v_leads  pgwa._live_lead[];
	v_res    pgwa._live_result[];
	v_tl     jsonb;
	v_ev_tenants uuid[];
	v_ev_names   text[];
	v_ev_data    jsonb[];
	v_nl     text := current_setting('enable_nestloop');
	n_expect int;
	n_got    int;
	n_tk_exp int;
	n_tk_got int;
BEGIN
	-- One writer per sender, then per message, always in that order.
	PERFORM pgwa._lock_leads(ARRAY(SELECT r.tenant_id || '/' || coalesce(r.phone, r.lid) FROM unnest(p_rows) r));
	PERFORM pg_advisory_xact_lock(h) FROM (
		SELECT DISTINCT hashtextextended('pgwa.message/' || r.instance_id || '/' || r.bid, 0) AS h
		FROM unnest(p_rows) r ORDER BY 1 OFFSET 0) s;

	-- The first of each broker id that the instance does not have yet.
	SELECT array_agg(r ORDER BY r.event_id, r.n) INTO v_new FROM (
		SELECT DISTINCT ON (r.instance_id, r.bid) r.*
		FROM unnest(p_rows) r ORDER BY r.instance_id, r.bid, r.event_id, r.n) r
	WHERE NOT EXISTS (SELECT 1 FROM pgwa.messages m
	                  WHERE m.instance_id = r.instance_id AND m.broker_message_id = r.bid);
	IF v_new IS NULL THEN
		RETURN QUERY SELECT r.event_id, r.n, jsonb_build_object('result', 'duplicate', 'brokerMessageId', r.bid)
		             FROM unnest(p_rows) r;
		RETURN;
	END IF;

	-- 1. Leads. A sender is a phone, else a LID; what several messages say
	-- about it is folded in their order (last value wins, metadata merged).
	-- Two senders of the batch that are one lead (a phone and its LID), or
	-- one LID claimed by two senders: only one after the other can tell.
	WITH s AS (
		SELECT r.tenant_id, r.phone, coalesce(r.phone, r.lid) AS skey,
		       (array_agg(r.lid ORDER BY r.at, r.event_id, r.n) FILTER (WHERE r.lid IS NOT NULL))[1] AS lid,
		       pgwa._last_value(r.contact->>'name' ORDER BY r.at, r.event_id, r.n) AS name,
		       pgwa._last_value(r.contact->>'pushName' ORDER BY r.at, r.event_id, r.n) AS push_name,
		       pgwa._last_value(r.contact->>'document' ORDER BY r.at, r.event_id, r.n) AS document,
		       pgwa._last_value(r.contact->'registrations' ORDER BY r.at, r.event_id, r.n) AS registrations,
		       pgwa._last_value(r.contact->>'avatarUrl' ORDER BY r.at, r.event_id, r.n) AS avatar_url,
		       pgwa._jsonb_merge(r.contact->'metadata' ORDER BY r.at, r.event_id, r.n) AS metadata,
		       min(r.at) AS first_at, max(r.at) AS last_at,
		       max(r.received_at) FILTER (WHERE NOT r.is_group) AS window_from
		FROM unnest(v_new) r GROUP BY r.tenant_id, r.phone, coalesce(r.phone, r.lid)),
	found AS MATERIALIZED (
		SELECT s.*, l.id AS lead_id
		FROM s LEFT JOIN LATERAL (
			SELECT l.id FROM pgwa.leads l
			WHERE l.tenant_id = s.tenant_id
			  AND (l.phone = s.phone OR (l.lid = s.lid AND (l.phone IS NULL OR s.phone IS NULL)))
			ORDER BY l.phone = s.phone DESC NULLS LAST LIMIT 1 FOR UPDATE) l ON true),
	checked AS MATERIALIZED (
		SELECT f.*,
		       -- a LID already held by another lead stays there
		       CASE WHEN f.lid IS NOT NULL AND EXISTS (
		                SELECT 1 FROM pgwa.leads o WHERE o.tenant_id = f.tenant_id AND o.lid = f.lid
		                AND o.id IS DISTINCT FROM f.lead_id) THEN NULL ELSE f.lid END AS new_lid
		FROM found f
		WHERE pgwa._raise_if((SELECT count(DISTINCT x.lead_id) <> count(x.lead_id) OR count(DISTINCT x.lid) <> count(x.lid)
		                      FROM found x),
		                     'PW5B1', 'messages of this batch must be applied one by one')),
	ins AS (
		INSERT INTO pgwa.leads (tenant_id, phone, lid, name, push_name, document, registrations, avatar_url,
		                        metadata, source, first_inbound_at, last_inbound_at, last_message_at,
		                        window_expires_at)
		SELECT c.tenant_id, c.phone, c.new_lid, c.name, c.push_name, c.document, c.registrations, c.avatar_url,
		       coalesce(c.metadata, '{}'), 'live_message', c.first_at, c.last_at, c.last_at,
		       c.window_from + interval '24 hours'
		FROM checked c WHERE c.lead_id IS NULL
		ORDER BY c.tenant_id, c.skey
		ON CONFLICT DO NOTHING
		RETURNING tenant_id, coalesce(phone, lid) AS skey, id, source, window_expires_at),
	upd AS (
		UPDATE pgwa.leads l SET
			phone = coalesce(l.phone, c.phone),
			lid = coalesce(l.lid, c.new_lid),
			name = coalesce(c.name, l.name),
			push_name = coalesce(c.push_name, l.push_name),
			document = coalesce(c.document, l.document),
			registrations = coalesce(c.registrations, l.registrations),
			avatar_url = coalesce(c.avatar_url, l.avatar_url),
			metadata = l.metadata || coalesce(c.metadata, '{}'),
			first_inbound_at = least(l.first_inbound_at, c.first_at),
			last_inbound_at = greatest(l.last_inbound_at, c.last_at),
			last_message_at = greatest(l.last_message_at, c.last_at),
			window_expires_at = CASE WHEN c.window_from IS NOT NULL AND NOT pgwa._is_history_lead(l.source)
			                         THEN greatest(l.window_expires_at, c.window_from + interval '24 hours')
			                         ELSE l.window_expires_at END,
			active = true, deleted_at = NULL, updated_at = now()
		FROM checked c WHERE c.lead_id IS NOT NULL AND l.tenant_id = c.tenant_id AND l.id = c.lead_id
		RETURNING l.tenant_id, c.skey, l.id, l.source, l.window_expires_at)
	SELECT (SELECT count(*) FROM checked WHERE lead_id IS NULL), (SELECT count(*) FROM ins),
	       array_agg(ROW(x.tenant_id, x.skey, x.id, x.created, x.source, x.window_expires_at)::pgwa._live_lead)
	INTO n_expect, n_got, v_leads
	FROM (SELECT i.tenant_id, i.skey, i.id, true AS created, i.source, i.window_expires_at FROM ins i
	      UNION ALL
	      SELECT u.tenant_id, u.skey, u.id, false, u.source, u.window_expires_at FROM upd u) x;
	IF n_got < n_expect THEN
		-- created meanwhile by someone else (history sync, another event)
		PERFORM pgwa._raise('PW5B1', 'a lead of this batch was created concurrently', NULL);
	END IF;

	-- 2. Conversations (one per lead and instance), 3. tickets (the lead's
	-- open one, else a new one on the instance and conversation of its first
	-- message here, seed 002 "NÃO CRIAR TICKET AUTOMATICAMENTE" and "ORIGEM
	-- DO TICKET") with their timeline, 4. the messages, then 5. their
	-- events (pgwa._emit_all, announced at commit). Group messages have no conversation nor ticket.
	-- Its joins are between sets of this batch (a few hundred rows, sized
	-- at one by the planner): hash joins; tables are reached through their
	-- indexes by ON CONFLICT and LATERAL, which nested loops do not need.
	PERFORM set_config('enable_nestloop', 'off', true);
	WITH m0 AS MATERIALIZED (
		SELECT r.*, l.lead_id, l.created, l.source, l."window"
		FROM unnest(v_new) r JOIN unnest(v_leads) l ON l.tenant_id = r.tenant_id AND l.skey = coalesce(r.phone, r.lid)),
	c AS (
		SELECT m.instance_id, m.tenant_id, m.lead_id,
		       pgwa._last_value(m.chat_jid ORDER BY m.event_id, m.n) AS remote, max(m.at) AS last_at
		FROM m0 m WHERE NOT m.is_group GROUP BY m.instance_id, m.tenant_id, m.lead_id),
	conv AS (
		INSERT INTO pgwa.conversations AS cv (instance_id, tenant_id, lead_id, remote, last_message_at,
		                                      last_inbound_at)
		SELECT c.instance_id, c.tenant_id, c.lead_id, c.remote, c.last_at, c.last_at FROM c
		ORDER BY c.instance_id, c.lead_id
		ON CONFLICT (instance_id, lead_id) DO UPDATE SET
			remote = excluded.remote,
			last_message_at = greatest(cv.last_message_at, excluded.last_message_at),
			last_inbound_at = greatest(cv.last_inbound_at, excluded.last_inbound_at),
			updated_at = now()
		RETURNING cv.instance_id, cv.lead_id, cv.id),
	t AS (
		SELECT m.tenant_id, m.lead_id, bool_or(m.created) AS created, min(m.source) AS source,
		       (array_agg(m.instance_id ORDER BY m.event_id, m.n))[1] AS instance_id,
		       min(m.at) AS first_at, max(m.at) AS last_at
		FROM m0 m WHERE NOT m.is_group GROUP BY m.tenant_id, m.lead_id),
	open AS MATERIALIZED (
		SELECT t.*, o.id AS ticket_id, o.status, o.originated_from, o.tl
		FROM t LEFT JOIN LATERAL (
			SELECT k.id, k.status, k.originated_from, coalesce(k.metadata->'timeline', '{}') AS tl
			FROM pgwa.tickets k WHERE k.tenant_id = t.tenant_id AND k.lead_id = t.lead_id AND k.status = 'open'
			FOR UPDATE) o ON true),
	tins AS (
		INSERT INTO pgwa.tickets (tenant_id, lead_id, instance_id, conversation_id, queue_id, source,
		                          originated_from, metadata)
		SELECT o.tenant_id, o.lead_id, o.instance_id, cv.id,
		       (SELECT q.id FROM pgwa.ticket_queues q WHERE q.tenant_id = o.tenant_id AND q.is_default),
		       'incoming_message',
		       CASE WHEN o.created THEN 'new_contact' WHEN pgwa._is_history_lead(o.source) THEN 'history_lead'
		            ELSE 'existing' END,
		       jsonb_build_object('timeline', jsonb_build_object('firstInboundAt', pgwa._iso(o.first_at),
		                                                         'lastInboundAt', pgwa._iso(o.last_at)))
		FROM open o JOIN conv cv ON cv.instance_id = o.instance_id AND cv.lead_id = o.lead_id
		WHERE o.ticket_id IS NULL
		ORDER BY o.tenant_id, o.lead_id
		ON CONFLICT DO NOTHING
		RETURNING tenant_id, lead_id, id, status, originated_from, queue_id, metadata->'timeline' AS delta),
	delta AS MATERIALIZED (
		SELECT o.tenant_id, o.lead_id, o.ticket_id, o.status, o.originated_from, o.tl,
		       (CASE WHEN o.tl->>'firstInboundAt' IS DISTINCT FROM
		                  pgwa._iso(least((o.tl->>'firstInboundAt')::timestamptz, o.first_at))
		             THEN jsonb_build_object('firstInboundAt',
		                  pgwa._iso(least((o.tl->>'firstInboundAt')::timestamptz, o.first_at)))
		             ELSE '{}' END)
		       || (CASE WHEN o.tl->>'lastInboundAt' IS DISTINCT FROM
		                  pgwa._iso(greatest((o.tl->>'lastInboundAt')::timestamptz, o.last_at))
		             THEN jsonb_build_object('lastInboundAt',
		                  pgwa._iso(greatest((o.tl->>'lastInboundAt')::timestamptz, o.last_at)))
		             ELSE '{}' END) AS delta
		FROM open o WHERE o.ticket_id IS NOT NULL),
	tk AS MATERIALIZED (
		SELECT i.tenant_id, i.lead_id, i.id AS ticket_id, i.status, i.originated_from, true AS created,
		       i.queue_id IS NULL AS no_queue, i.delta FROM tins i
		UNION ALL
		SELECT d.tenant_id, d.lead_id, d.ticket_id, d.status, d.originated_from, false, false, d.delta FROM delta d),
	m AS MATERIALIZED (
		SELECT r.*, cv.id AS conv_id, tk.ticket_id, tk.status AS ticket_status, tk.created AS ticket_created,
		       tk.originated_from, tk.no_queue, tk.delta,
		       row_number() OVER (PARTITION BY tk.ticket_id ORDER BY r.event_id DESC, r.n DESC) = 1 AS last_of_ticket
		FROM m0 r
		LEFT JOIN conv cv ON NOT r.is_group AND cv.instance_id = r.instance_id AND cv.lead_id = r.lead_id
		LEFT JOIN tk ON NOT r.is_group AND tk.tenant_id = r.tenant_id AND tk.lead_id = r.lead_id),
	mins AS (
		INSERT INTO pgwa.messages (instance_id, tenant_id, direction, broker_message_id, remote, type, content,
		                           status, source, broker_timestamp, conversation_id, lead_id, ticket_id,
		                           event_id, participant, quoted_message_id, metadata)
		SELECT m.instance_id, m.tenant_id, 'inbound', m.bid, m.chat_jid, m.message->>'type', m.message,
		       'received', 'live', m.ts, m.conv_id, m.lead_id, m.ticket_id, m.event_id, m.participant,
		       m.message->>'quotedMessageId', m.meta
		FROM m ORDER BY m.event_id, m.n
		ON CONFLICT (instance_id, broker_message_id) DO NOTHING
		RETURNING instance_id, broker_message_id, id),
	mm AS MATERIALIZED (
		SELECT m.*, i.id AS message_id
		FROM m LEFT JOIN mins i ON i.instance_id = m.instance_id AND i.broker_message_id = m.bid),
	ev AS (
		SELECT m.event_id AS o1, m.n AS o2, 1 AS o3, m.tenant_id, 'messages.new' AS event,
		       jsonb_strip_nulls(jsonb_build_object(
		           'messageId', m.message_id, 'instanceId', m.instance_id, 'brokerMessageId', m.bid,
		           'direction', 'inbound', 'source', 'live', 'leadId', m.lead_id, 'conversationId', m.conv_id,
		           'ticketId', m.ticket_id, 'remote', m.chat_jid, 'isGroup', m.is_group,
		           'type', m.message->>'type', 'text', left(m.message->>'text', 280),
		           'timestamp', pgwa._iso(m.at))) AS payload
		FROM mm m
		UNION ALL
		SELECT m.event_id, m.n, 2, m.tenant_id, 'ticket.message',
		       jsonb_strip_nulls(jsonb_build_object(
		           'ticketId', m.ticket_id, 'messageId', m.message_id, 'leadId', m.lead_id,
		           'instanceId', m.instance_id, 'direction', 'inbound', 'type', m.message->>'type',
		           'text', left(m.message->>'text', 280), 'timestamp', pgwa._iso(m.at),
		           'metadata', jsonb_build_object('broker',
		               CASE jsonb_typeof(m.meta->'broker') WHEN 'object' THEN m.meta->'broker'
		                    WHEN 'string' THEN jsonb_build_object('type', m.meta->'broker') ELSE '{}' END
		               || jsonb_strip_nulls(jsonb_build_object(
		                    'messageId', m.bid, 'instanceId', m.instance_key,
		                    'brokerMessageTimestamp', m.meta->'brokerMessageTimestamp',
		                    'normalizedTimestamp', m.meta->'normalizedTimestamp')))
		               || CASE WHEN m.message ?| ARRAY['media', 'location', 'contacts']
		                       THEN pgwa._message_summary(m.message) ELSE '{}' END))
		FROM mm m WHERE m.ticket_id IS NOT NULL
		UNION ALL
		SELECT m.event_id, m.n, 3, m.tenant_id, 'ticket.updated',
		       jsonb_strip_nulls(jsonb_build_object(
		           'ticketId', m.ticket_id, 'leadId', m.lead_id, 'status', m.ticket_status,
		           'created', CASE WHEN m.ticket_created THEN true END,
		           'originatedFrom', CASE WHEN m.ticket_created THEN m.originated_from END,
		           'messageWindowExpiresAt', pgwa._iso(m."window"), 'timeline', m.delta))
		FROM mm m
		WHERE m.ticket_id IS NOT NULL AND m.last_of_ticket AND (m.ticket_created OR m.delta <> '{}')
		UNION ALL
		SELECT m.event_id, m.n, 4, m.tenant_id, 'whatsapp.queue.missing',
		       jsonb_build_object('tenantId', m.tenant_id, 'instanceId', m.instance_id, 'ticketId', m.ticket_id,
		                          'reason', 'the tenant has no default ticket queue')
		FROM mm m WHERE m.ticket_created AND m.no_queue AND m.last_of_ticket)
	SELECT (SELECT count(*) FROM open WHERE ticket_id IS NULL), (SELECT count(*) FROM tins),
	       (SELECT count(*) FROM m), (SELECT count(*) FROM mins),
	       array_agg(ROW(mm.event_id, mm.n, jsonb_strip_nulls(jsonb_build_object(
	                     'result', 'accepted', 'messageId', mm.message_id, 'brokerMessageId', mm.bid,
	                     'ticketId', mm.ticket_id, 'leadId', mm.lead_id)))::pgwa._live_result),
	       (SELECT jsonb_agg(jsonb_build_object('t', d.tenant_id, 'k', d.ticket_id, 'tl', d.tl || d.delta))
	        FROM delta d WHERE d.delta <> '{}'),
	       (SELECT array_agg(e.tenant_id ORDER BY e.o1, e.o2, e.o3) FROM ev e),
	       (SELECT array_agg(e.event ORDER BY e.o1, e.o2, e.o3) FROM ev e),
	       (SELECT array_agg(e.payload ORDER BY e.o1, e.o2, e.o3) FROM ev e)
	INTO n_tk_exp, n_tk_got, n_expect, n_got, v_res, v_tl, v_ev_tenants, v_ev_names, v_ev_data
	FROM mm;
	PERFORM set_config('enable_nestloop', v_nl, true);
	PERFORM pgwa._emit_all(v_ev_tenants, v_ev_names, v_ev_data);
	-- the timelines that moved, each through the ticket's key
	UPDATE pgwa.tickets k SET metadata = jsonb_set(k.metadata, '{timeline}', d.tl), updated_at = now()
	FROM jsonb_to_recordset(v_tl) AS d(t uuid, k uuid, tl jsonb) WHERE k.tenant_id = d.t AND k.id = d.k;
	IF n_tk_got < n_tk_exp THEN
		PERFORM pgwa._raise('PW5B1', 'a ticket of this batch was opened concurrently', NULL);
	ELSIF n_got < n_expect THEN
		-- only an outbound row could hold such an id: undo, let a retry sort it out
		RAISE EXCEPTION 'a message of this batch appeared while being applied';
	END IF;

	RETURN QUERY
	SELECT r.event_id, r.n, coalesce(a.result, jsonb_build_object('result', 'duplicate', 'brokerMessageId', r.bid))
	FROM unnest(p_rows) r LEFT JOIN unnest(v_res) a ON a.event_id = r.event_id AND a.n = r.n;
END $$;
