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

-- The lead of a live message's sender: found by phone (or LID), created with
-- source live_message, else refreshed with what the message says about it
-- (seed 000: name falls back to pushName; unknown contact keys go to
-- metadata). A LID-only lead learns its phone when a message carries both.
CREATE FUNCTION pgwa._upsert_live_lead(p_tenant uuid, c jsonb, p_at timestamptz,
                                       OUT lead pgwa.leads, OUT created boolean)
LANGUAGE plpgsql AS $$
DECLARE
	v_phone text := c->>'phone';
	v_lid   text := c->>'lid';
BEGIN
	created := false;
	IF v_phone IS NOT NULL THEN
		SELECT * INTO lead FROM pgwa.leads WHERE tenant_id = p_tenant AND phone = v_phone FOR UPDATE;
	END IF;
	IF lead.id IS NULL AND v_lid IS NOT NULL THEN
		SELECT * INTO lead FROM pgwa.leads
		WHERE tenant_id = p_tenant AND lid = v_lid AND (phone IS NULL OR v_phone IS NULL) FOR UPDATE;
	END IF;
	-- A LID already held by another lead stays there.
	IF v_lid IS NOT NULL AND EXISTS (SELECT 1 FROM pgwa.leads WHERE tenant_id = p_tenant AND lid = v_lid
	                                 AND id IS DISTINCT FROM lead.id) THEN
		v_lid := NULL;
	END IF;
	IF lead.id IS NULL THEN
		INSERT INTO pgwa.leads (tenant_id, phone, lid, name, push_name, document, registrations,
		                        avatar_url, metadata, source, first_inbound_at, last_inbound_at,
		                        last_message_at)
		VALUES (p_tenant, v_phone, v_lid, c->>'name', c->>'pushName', c->>'document', c->'registrations',
		        c->>'avatarUrl', coalesce(c->'metadata', '{}'), 'live_message', p_at, p_at, p_at)
		ON CONFLICT DO NOTHING
		RETURNING * INTO lead;
		IF lead.id IS NOT NULL THEN
			created := true;
			RETURN;
		END IF;
		-- Someone else (history sync, a concurrent event) created it meanwhile.
		SELECT * INTO lead FROM pgwa.leads
		WHERE tenant_id = p_tenant AND (phone = v_phone OR (v_phone IS NULL AND lid = v_lid)) FOR UPDATE;
		IF lead.id IS NULL THEN
			RAISE EXCEPTION 'lead of % could not be created nor found', coalesce(v_phone, v_lid);
		END IF;
	END IF;
	UPDATE pgwa.leads l SET
		phone = coalesce(l.phone, v_phone),
		lid = coalesce(l.lid, v_lid),
		name = coalesce(c->>'name', l.name),
		push_name = coalesce(c->>'pushName', l.push_name),
		document = coalesce(c->>'document', l.document),
		registrations = coalesce(c->'registrations', l.registrations),
		avatar_url = coalesce(c->>'avatarUrl', l.avatar_url),
		metadata = l.metadata || coalesce(c->'metadata', '{}'),
		first_inbound_at = least(l.first_inbound_at, p_at),
		last_inbound_at = greatest(l.last_inbound_at, p_at),
		last_message_at = greatest(l.last_message_at, p_at),
		active = true, deleted_at = NULL, updated_at = now()
	WHERE l.tenant_id = p_tenant AND l.id = lead.id
	RETURNING * INTO lead;
END $$;

-- A short summary of a message for real-time events (NOTIFY stays small).
CREATE FUNCTION pgwa._message_summary(m jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
	SELECT jsonb_strip_nulls(jsonb_build_object(
		'media', CASE WHEN m ? 'media' THEN (m->'media') - 'url' - 'caption' END,
		'location', m->'location',
		'contacts', CASE WHEN jsonb_typeof(m->'contacts') = 'array' THEN
			(SELECT jsonb_agg(x) FROM (SELECT x FROM jsonb_array_elements(m->'contacts') x LIMIT 5) s) END))
$$;

-- Applies one normalised live message (an envelope from normalize_inbound)
-- received on p_inst, exactly once: a message whose broker id the instance
-- already has is a duplicate and changes nothing. Seed 002, "messages (Novas
-- mensagens ao vivo)": 1. upsert the lead, 2. upsert the conversation,
-- 3. the message (source live), 4. only now a ticket when the lead has no open
-- one. Group messages refresh the sender's lead and are stored, but neither
-- join the sender's one-to-one conversation nor open tickets or windows.
-- Returns {result: accepted | duplicate, messageId, brokerMessageId, ticketId}.
CREATE FUNCTION pgwa._apply_message(p_inst pgwa.instances, p_event bigint, p_received timestamptz, e jsonb)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	p         jsonb := e->'payload';
	m         jsonb := e->'payload'->'message';
	v_meta    jsonb := coalesce(e->'payload'->'metadata', '{}');
	v_bid     text  := e->'payload'->'message'->>'id';
	v_group   boolean := coalesce((e->'payload'->'chat'->>'isGroup')::boolean, false);
	v_ts      timestamptz := (e->>'timestamp')::timestamptz;
	v_at      timestamptz;
	v_tenant  uuid := p_inst.tenant_id;
	v_lead    pgwa.leads;
	v_created boolean;
	v_upsert  record;
	v_conv    uuid;
	v_ticket  pgwa.tickets;
	v_new_ticket boolean := false;
	v_queue   uuid;
	v_msg     uuid;
	v_delta   jsonb := '{}';
	v_broker  jsonb;
	v_text    text := left(e->'payload'->'message'->>'text', 280);
BEGIN
	-- When the contact wrote: the broker's time, else when the webhook came.
	v_at := coalesce(v_ts, p_received);
	-- One writer per sender, then per message, always in that order.
	PERFORM pg_advisory_xact_lock(hashtextextended(
		'pgwa.lead/' || v_tenant || '/' || coalesce(p->'contact'->>'phone', p->'contact'->>'lid'), 0));
	PERFORM pg_advisory_xact_lock(hashtextextended('pgwa.message/' || p_inst.id || '/' || v_bid, 0));
	PERFORM 1 FROM pgwa.messages WHERE instance_id = p_inst.id AND broker_message_id = v_bid;
	IF FOUND THEN
		RETURN jsonb_build_object('result', 'duplicate', 'brokerMessageId', v_bid);
	END IF;

	-- 1. the lead
	v_upsert := pgwa._upsert_live_lead(v_tenant, p->'contact', v_at);
	v_lead := v_upsert.lead;
	v_created := v_upsert.created;

	IF NOT v_group THEN
		-- 2. the conversation
		INSERT INTO pgwa.conversations AS cv (instance_id, tenant_id, lead_id, remote, last_message_at, last_inbound_at)
		VALUES (p_inst.id, v_tenant, v_lead.id, p->'chat'->>'jid', v_at, v_at)
		ON CONFLICT (instance_id, lead_id) DO UPDATE SET
			remote = excluded.remote,
			last_message_at = greatest(cv.last_message_at, excluded.last_message_at),
			last_inbound_at = greatest(cv.last_inbound_at, excluded.last_inbound_at),
			updated_at = now()
		RETURNING cv.id INTO v_conv;

		-- 4. the ticket, only for a live message and only when none is open
		-- (seed 002, "NÃO CRIAR TICKET AUTOMATICAMENTE": history never opens one).
		SELECT * INTO v_ticket FROM pgwa.tickets
		WHERE tenant_id = v_tenant AND lead_id = v_lead.id AND status = 'open' FOR UPDATE;
		IF v_ticket.id IS NULL THEN
			SELECT id INTO v_queue FROM pgwa.ticket_queues WHERE tenant_id = v_tenant AND is_default;
			INSERT INTO pgwa.tickets (tenant_id, lead_id, instance_id, conversation_id, queue_id, source,
			                          originated_from)
			VALUES (v_tenant, v_lead.id, p_inst.id, v_conv, v_queue, 'incoming_message',
			        -- seed 002, "ORIGEM DO TICKET": history leads keep their origin visible
			        CASE WHEN v_created THEN 'new_contact'
			             WHEN pgwa._is_history_lead(v_lead.source) THEN 'history_lead'
			             ELSE 'existing' END)
			ON CONFLICT DO NOTHING
			RETURNING * INTO v_ticket;
			IF v_ticket.id IS NULL THEN
				SELECT * INTO v_ticket FROM pgwa.tickets
				WHERE tenant_id = v_tenant AND lead_id = v_lead.id AND status = 'open' FOR UPDATE;
			ELSE
				v_new_ticket := true;
			END IF;
		END IF;

		-- The 24 h window (seed 002 section 4, "Lógica de Janela de Mensagem",
		-- and decision D2): a new live contact gets 24 h from the arrival of
		-- its message, every later live message extends it to 24 h from its
		-- own arrival (a retried event keeps its first arrival time); history
		-- leads have none, which means no limit.
		IF NOT pgwa._is_history_lead(v_lead.source) THEN
			UPDATE pgwa.leads SET window_expires_at = greatest(window_expires_at, p_received + interval '24 hours')
			WHERE tenant_id = v_tenant AND id = v_lead.id
			RETURNING * INTO v_lead;
		END IF;
	END IF;

	-- 3. the message (stored once the ticket is known)
	INSERT INTO pgwa.messages (instance_id, tenant_id, direction, broker_message_id, remote, type, content,
	                           status, source, broker_timestamp, conversation_id, lead_id, ticket_id,
	                           event_id, participant, quoted_message_id, metadata)
	VALUES (p_inst.id, v_tenant, 'inbound', v_bid, p->'chat'->>'jid', m->>'type', m, 'received', 'live',
	        v_ts, v_conv, v_lead.id, v_ticket.id, p_event, p->'chat'->>'participantJid',
	        m->>'quotedMessageId', v_meta)
	ON CONFLICT (instance_id, broker_message_id) DO NOTHING
	RETURNING id INTO v_msg;
	IF v_msg IS NULL THEN
		-- Only an outbound row could hold this id: undo, let a retry sort it out.
		RAISE EXCEPTION 'message % appeared while being applied', v_bid;
	END IF;

	IF v_ticket.id IS NOT NULL THEN
		v_delta := pgwa._timeline_touch(v_tenant, v_ticket.id, 'inbound', v_at);
	END IF;

	-- Real time: the events go out when the transaction commits.
	PERFORM pgwa._emit(v_tenant, 'messages.new', jsonb_strip_nulls(jsonb_build_object(
		'messageId', v_msg, 'instanceId', p_inst.id, 'brokerMessageId', v_bid, 'direction', 'inbound',
		'source', 'live', 'leadId', v_lead.id, 'conversationId', v_conv, 'ticketId', v_ticket.id,
		'remote', p->'chat'->>'jid', 'isGroup', v_group, 'type', m->>'type', 'text', v_text,
		'timestamp', pgwa._iso(v_at))));
	IF v_ticket.id IS NOT NULL THEN
		v_broker := CASE jsonb_typeof(v_meta->'broker') WHEN 'object' THEN v_meta->'broker'
		                 WHEN 'string' THEN jsonb_build_object('type', v_meta->'broker')
		                 ELSE '{}' END
		            || jsonb_strip_nulls(jsonb_build_object(
		                 'messageId', v_bid, 'instanceId', e->>'instanceId',
		                 'brokerMessageTimestamp', v_meta->'brokerMessageTimestamp',
		                 'normalizedTimestamp', v_meta->'normalizedTimestamp'));
		PERFORM pgwa._emit(v_tenant, 'ticket.message', jsonb_strip_nulls(jsonb_build_object(
			'ticketId', v_ticket.id, 'messageId', v_msg, 'leadId', v_lead.id, 'instanceId', p_inst.id,
			'direction', 'inbound', 'type', m->>'type', 'text', v_text, 'timestamp', pgwa._iso(v_at),
			'metadata', jsonb_build_object('broker', v_broker) || pgwa._message_summary(m))));
		IF v_new_ticket OR v_delta <> '{}' THEN
			PERFORM pgwa._emit(v_tenant, 'ticket.updated', jsonb_strip_nulls(jsonb_build_object(
				'ticketId', v_ticket.id, 'leadId', v_lead.id, 'status', v_ticket.status,
				'created', CASE WHEN v_new_ticket THEN true END,
				'originatedFrom', CASE WHEN v_new_ticket THEN v_ticket.originated_from END,
				'messageWindowExpiresAt', pgwa._iso(v_lead.window_expires_at),
				'timeline', v_delta)));
		END IF;
		IF v_new_ticket AND v_queue IS NULL THEN
			PERFORM pgwa._emit(v_tenant, 'whatsapp.queue.missing', jsonb_build_object(
				'tenantId', v_tenant, 'instanceId', p_inst.id, 'ticketId', v_ticket.id,
				'reason', 'the tenant has no default ticket queue'));
		END IF;
	END IF;
	RETURN jsonb_strip_nulls(jsonb_build_object('result', 'accepted', 'messageId', v_msg,
		'brokerMessageId', v_bid, 'ticketId', v_ticket.id, 'leadId', v_lead.id));
END $$;
