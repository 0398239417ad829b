-------------------------------------------------------------------------------
-- Coexistence history sync (seed 002): the Cloud API's history,
-- smb_app_state_sync and smb_message_echoes webhooks, stored raw like every
-- webhook, read by the C normaliser (extension/inbound_coexistence.c) and
-- applied here by the inbound appliers, one chunk per statement group.
--
-- Order and repetition do not matter: messages are keyed by wamid, leads by
-- phone and conversations by lead and instance; every value a chunk sets is
-- the earliest or latest of what all chunks say, and the sync's state is
-- derived from the chunks seen (pgwa.history_chunks), so any permutation of
-- the chunks, any of them delivered twice, leaves the same rows.
-------------------------------------------------------------------------------

-- seed 002 "Modelo de Dados" and D4: not_supported (not a Cloud API
-- instance, or nothing asked yet), pending_consent (asked, the business has
-- to approve in the app), pending_history (contacts arrived, history not
-- yet), syncing, completed (a chunk said progress 100), declined (the
-- business refused), failed (nothing arrived in time; a later chunk resumes).
CREATE DOMAIN pgwa.history_sync_state AS text
	CHECK (VALUE IN ('not_supported', 'pending_consent', 'pending_history', 'syncing', 'completed',
	                 'declined', 'failed'));

CREATE TABLE pgwa.history_syncs (
	instance_id       uuid PRIMARY KEY REFERENCES pgwa.instances (id) ON DELETE CASCADE,
	tenant_id         uuid NOT NULL,
	status            pgwa.history_sync_state NOT NULL,
	progress          int NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
	phase             int CHECK (phase BETWEEN 0 AND 2),
	chunk_order       int CHECK (chunk_order >= 0),
	chunks            int NOT NULL DEFAULT 0,
	messages_imported bigint NOT NULL DEFAULT 0,
	contacts_imported bigint NOT NULL DEFAULT 0,
	requested_at      timestamptz,     -- consent asked (pgwa.request_history_sync)
	started_at        timestamptz,     -- first contacts or chunk
	completed_at      timestamptz,
	last_payload_at   timestamptz,
	error_code        text,
	error_message     text,
	alerted_at        timestamptz,     -- the stalled alert went out
	updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Every chunk applied once: its place, what it said, what it brought.
CREATE TABLE pgwa.history_chunks (
	instance_id uuid NOT NULL REFERENCES pgwa.instances (id) ON DELETE CASCADE,
	phase       int NOT NULL,
	chunk_order int NOT NULL,
	progress    int NOT NULL,
	threads     int NOT NULL,
	messages    int NOT NULL,
	event_id    bigint,
	applied_at  timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (instance_id, phase, chunk_order)
);

-- Audit trail of operations worth a human's look (seed 002: the start and
-- end of a sync in WhatsAppAuditLog).
CREATE TABLE pgwa.audit_log (
	id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	tenant_id   uuid NOT NULL,
	instance_id uuid,
	action      text NOT NULL,
	details     jsonb NOT NULL DEFAULT '{}',
	at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_tenant ON pgwa.audit_log (tenant_id, at);

CREATE FUNCTION pgwa._audit(p_tenant uuid, p_instance uuid, p_action text, p_details jsonb) RETURNS void
LANGUAGE sql AS $$
	INSERT INTO pgwa.audit_log (tenant_id, instance_id, action, details)
	VALUES (p_tenant, p_instance, p_action, p_details)
$$;

-- The sync's row, created as not_supported when missing, locked.
CREATE FUNCTION pgwa._history_sync_row(inst pgwa.instances) RETURNS pgwa.history_syncs
LANGUAGE plpgsql AS $$
DECLARE
	s pgwa.history_syncs;
BEGIN
	INSERT INTO pgwa.history_syncs (instance_id, tenant_id, status)
	VALUES (inst.id, inst.tenant_id, 'not_supported')
	ON CONFLICT (instance_id) DO NOTHING;
	SELECT * INTO s FROM pgwa.history_syncs WHERE instance_id = inst.id FOR UPDATE;
	RETURN s;
END $$;

-- The sync as the instance card shows it (seed 002 "UX - InstanceCard").
CREATE FUNCTION pgwa._history_sync_json(s pgwa.history_syncs) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT jsonb_build_object(
		'instanceId', s.instance_id, 'status', s.status, 'progress', s.progress, 'phase', s.phase,
		'chunkOrder', s.chunk_order, 'chunks', s.chunks,
		'messagesImported', s.messages_imported, 'contactsImported', s.contacts_imported,
		'requestedAt', pgwa._iso(s.requested_at), 'startedAt', pgwa._iso(s.started_at),
		'completedAt', pgwa._iso(s.completed_at), 'lastPayloadAt', pgwa._iso(s.last_payload_at),
		'durationSeconds', CASE WHEN s.completed_at IS NOT NULL AND s.started_at IS NOT NULL
		                        THEN round(extract(epoch FROM s.completed_at - s.started_at)::numeric, 3) END,
		'error', CASE WHEN s.error_code IS NOT NULL OR s.error_message IS NOT NULL
		              THEN jsonb_build_object('code', s.error_code, 'message', s.error_message) END)
$$;

-- The history sync of an instance: not_supported when nothing was asked or
-- received. PW404 for an unknown instance.
CREATE FUNCTION pgwa.history_sync_status(p_instance uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
	i pgwa.instances;
	s pgwa.history_syncs;
BEGIN
	SELECT * INTO i FROM pgwa.instances WHERE id = p_instance;
	IF i.id IS NULL THEN
		PERFORM pgwa._raise('PW404', 'instance not found', 'instance_id');
	END IF;
	SELECT * INTO s FROM pgwa.history_syncs WHERE instance_id = p_instance;
	IF s.instance_id IS NULL THEN
		s := ROW(i.id, i.tenant_id, 'not_supported', 0, NULL, NULL, 0, 0, 0, NULL, NULL, NULL, NULL,
		         NULL, NULL, NULL, now())::pgwa.history_syncs;
	END IF;
	RETURN pgwa._history_sync_json(s);
END $$;

-- Asks for the history (seed 002: the business approved sharing at
-- onboarding and must confirm in the app): the sync waits for consent, and
-- the stalled check starts counting. Only Cloud API instances have history
-- to share (PW409 otherwise); a running or completed sync is left as it is.
CREATE FUNCTION pgwa.request_history_sync(p_instance uuid) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	i pgwa.instances;
	s pgwa.history_syncs;
BEGIN
	SELECT * INTO i FROM pgwa.instances WHERE id = p_instance;
	IF i.id IS NULL THEN
		PERFORM pgwa._raise('PW404', 'instance not found', 'instance_id');
	END IF;
	IF i.provider <> 'meta' THEN
		PERFORM pgwa._raise('PW409', 'history sync needs a Cloud API (meta) instance in coexistence', 'instance_id');
	END IF;
	s := pgwa._history_sync_row(i);
	IF s.status IN ('not_supported', 'declined', 'failed') THEN
		UPDATE pgwa.history_syncs SET status = 'pending_consent', requested_at = now(), alerted_at = NULL,
		       error_code = NULL, error_message = NULL, updated_at = now()
		WHERE instance_id = i.id RETURNING * INTO s;
		PERFORM pgwa._audit(i.tenant_id, i.id, 'history_sync.requested', '{}');
		PERFORM pgwa._emit(i.tenant_id, 'history_sync.updated', pgwa._history_sync_json(s));
	END IF;
	RETURN pgwa._history_sync_json(s);
END $$;

-------------------------------------------------------------------------------
-- Applying
-------------------------------------------------------------------------------
-- History messages (a chunk's, or media sent later) into leads,
-- conversations and messages: no ticket, no window (seed 002 D1, D2).
-- Returns the messages and leads it created, and the messages it completed
-- (media, status or time a first delivery lacked).
CREATE FUNCTION pgwa._import_history(inst pgwa.instances, p_event bigint, p_msgs jsonb,
                                     OUT new_messages int, OUT new_leads int, OUT updated int)
LANGUAGE plpgsql AS $$
BEGIN
	-- one writer per contact, as live messages take it (pgwa._apply_live)
	PERFORM pgwa._lock_leads(ARRAY(SELECT inst.tenant_id || '/' || (m->>'phone') FROM jsonb_array_elements(p_msgs) m));

	WITH m AS MATERIALIZED (
		SELECT DISTINCT ON (x->>'id') x->>'id' AS bid, x->>'phone' AS phone, (x->>'fromMe')::boolean AS from_me,
		       x->>'status' AS status, (x->>'at')::timestamptz AS at, x->>'type' AS type,
		       pgwa._dialect_content(x->'content', x->>'id') AS content
		FROM jsonb_array_elements(p_msgs) x
		ORDER BY x->>'id', (x->'content' ? 'mediaId') DESC),
	c AS (
		SELECT m.phone, max(m.at) AS last_at, min(m.at) FILTER (WHERE NOT m.from_me) AS first_in,
		       max(m.at) FILTER (WHERE NOT m.from_me) AS last_in
		FROM m GROUP BY m.phone),
	l AS (
		INSERT INTO pgwa.leads AS k (tenant_id, phone, source, last_message_at, last_synced_at)
		SELECT inst.tenant_id, c.phone, 'history_sync', c.last_at, now() FROM c ORDER BY c.phone
		ON CONFLICT (tenant_id, phone) DO UPDATE SET
			last_message_at = greatest(k.last_message_at, excluded.last_message_at),
			last_synced_at = now(), updated_at = now()
		RETURNING k.id, k.phone, (xmax = 0) AS created),
	cv AS (
		INSERT INTO pgwa.conversations AS v (instance_id, tenant_id, lead_id, remote, last_message_at,
		                                     last_inbound_at)
		SELECT inst.id, inst.tenant_id, l.id, l.phone || '@s.whatsapp.net', c.last_at, c.last_in
		FROM l JOIN c ON c.phone = l.phone ORDER BY l.id
		ON CONFLICT (instance_id, lead_id) DO UPDATE SET
			last_message_at = greatest(v.last_message_at, excluded.last_message_at),
			last_inbound_at = greatest(v.last_inbound_at, excluded.last_inbound_at),
			updated_at = now()
		RETURNING v.id, v.lead_id),
	ins AS (
		INSERT INTO pgwa.messages AS g (instance_id, tenant_id, direction, broker_message_id, remote, type,
		                                content, status, source, broker_timestamp, conversation_id, lead_id,
		                                event_id, metadata)
		SELECT inst.id, inst.tenant_id, CASE WHEN m.from_me THEN 'outbound' ELSE 'inbound' END, m.bid,
		       m.phone || '@s.whatsapp.net', coalesce(m.content->>'type', m.type), m.content,
		       coalesce(m.status, CASE WHEN m.from_me THEN 'sent' ELSE 'received' END), 'history', m.at,
		       cv.id, l.id, p_event,
		       jsonb_strip_nulls(jsonb_build_object('source', 'history', 'historyStatus', m.status,
		           'broker', jsonb_build_object('type', 'meta', 'direction',
		                                        CASE WHEN m.from_me THEN 'outbound' ELSE 'inbound' END)))
		FROM m JOIN l ON l.phone = m.phone JOIN cv ON cv.lead_id = l.id
		ORDER BY m.bid
		ON CONFLICT (instance_id, broker_message_id) DO UPDATE SET
			-- a history message seen twice (its chunk, then its media, in
			-- either order): the content with the media id wins, the status
			-- from history_context wins, the earliest time wins
			content = CASE WHEN excluded.content->'media' ? 'mediaId'
			                    AND NOT coalesce(g.content->'media' ? 'mediaId', false)
			               THEN excluded.content ELSE g.content END,
			type = CASE WHEN excluded.content->'media' ? 'mediaId'
			                 AND NOT coalesce(g.content->'media' ? 'mediaId', false)
			            THEN excluded.type ELSE g.type END,
			status = CASE WHEN g.metadata ? 'historyStatus' THEN g.status ELSE excluded.status END,
			metadata = CASE WHEN g.metadata ? 'historyStatus' THEN g.metadata ELSE excluded.metadata END,
			broker_timestamp = least(g.broker_timestamp, excluded.broker_timestamp)
			WHERE g.source = 'history'
			  AND ((excluded.content->'media' ? 'mediaId' AND NOT coalesce(g.content->'media' ? 'mediaId', false))
			       OR (excluded.metadata ? 'historyStatus' AND NOT g.metadata ? 'historyStatus')
			       OR excluded.broker_timestamp < g.broker_timestamp)
		RETURNING (xmax = 0) AS created)
	SELECT (SELECT count(*) FILTER (WHERE created) FROM ins), (SELECT count(*) FILTER (WHERE created) FROM l),
	       (SELECT count(*) FILTER (WHERE NOT created) FROM ins)
	INTO new_messages, new_leads, updated;
END $$;

-- The sync's state from the chunks seen: progress and place are the
-- highest any chunk gave, completed once one said 100.
CREATE FUNCTION pgwa._history_sync_refresh(inst pgwa.instances) RETURNS pgwa.history_syncs
LANGUAGE plpgsql AS $$
DECLARE
	s   pgwa.history_syncs;
	was text;
BEGIN
	SELECT status INTO was FROM pgwa.history_syncs WHERE instance_id = inst.id;
	UPDATE pgwa.history_syncs h SET
		progress = k.progress, phase = k.phase, chunk_order = k.chunk_order, chunks = k.chunks,
		status = CASE WHEN k.progress = 100 THEN 'completed' ELSE 'syncing' END,
		started_at = coalesce(h.started_at, now()),
		completed_at = CASE WHEN k.progress = 100 THEN coalesce(h.completed_at, now()) END,
		last_payload_at = now(), error_code = NULL, error_message = NULL, updated_at = now()
	FROM (SELECT max(c.progress) AS progress, count(*)::int AS chunks,
	             (array_agg(c.phase ORDER BY c.phase DESC, c.chunk_order DESC))[1] AS phase,
	             (array_agg(c.chunk_order ORDER BY c.phase DESC, c.chunk_order DESC))[1] AS chunk_order
	      FROM pgwa.history_chunks c WHERE c.instance_id = inst.id) k
	WHERE h.instance_id = inst.id
	RETURNING h.* INTO s;
	IF was IS DISTINCT FROM s.status THEN
		PERFORM pgwa._audit(inst.tenant_id, inst.id,
		                    CASE s.status WHEN 'completed' THEN 'history_sync.completed' ELSE 'history_sync.started' END,
		                    pgwa._history_sync_json(s));
	END IF;
	RETURN s;
END $$;

-- A history webhook's item: its chunks (or the business's refusal) and
-- the media sent later.
CREATE FUNCTION pgwa._apply_history(inst pgwa.instances, ev pgwa.webhook_events, e jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	s       pgwa.history_syncs := pgwa._history_sync_row(inst);
	ch      jsonb;
	prev    pgwa.history_chunks;
	r       record;
	n_new   int := 0;
	n_dup   int := 0;
	n_msgs  int := 0;
	n_leads int := 0;
	n_upd   int := 0;
	v_news  boolean := false;	-- a decline recorded now
BEGIN
	FOR ch IN SELECT x FROM jsonb_array_elements(e->'chunks') x LOOP
		IF ch ? 'errors' THEN
			-- the business declined to share its history
			IF s.status = 'declined' THEN
				CONTINUE;	-- said before
			ELSIF s.status IN ('syncing', 'completed') THEN
				PERFORM pgwa._raise('PW409', format('history sharing declined after the sync was %s', s.status),
				                    'history.errors');
			END IF;
			UPDATE pgwa.history_syncs SET status = 'declined', error_code = ch->'errors'->0->>'code',
			       error_message = coalesce(ch->'errors'->0->>'message', ch->'errors'->0->>'title'),
			       last_payload_at = now(), updated_at = now()
			WHERE instance_id = inst.id RETURNING * INTO s;
			v_news := true;
			PERFORM pgwa._audit(inst.tenant_id, inst.id, 'history_sync.declined', ch->'errors');
			PERFORM pgwa._emit(inst.tenant_id, 'history_sync.updated', pgwa._history_sync_json(s));
			CONTINUE;
		END IF;
		IF s.status = 'declined' THEN
			PERFORM pgwa._raise('PW409', 'a history chunk arrived for a sync the business declined', 'history');
		END IF;
		SELECT * INTO prev FROM pgwa.history_chunks
		WHERE instance_id = inst.id AND phase = (ch->>'phase')::int AND chunk_order = (ch->>'chunkOrder')::int;
		IF prev.instance_id IS NOT NULL AND prev.progress <> (ch->>'progress')::int THEN
			PERFORM pgwa._raise('PW409', format('chunk %s of phase %s came before with progress %s, now %s',
			                                    ch->>'chunkOrder', ch->>'phase', prev.progress, ch->>'progress'),
			                    'history.metadata.progress');
		END IF;
		r := pgwa._import_history(inst, ev.id, ch->'messages');
		n_msgs := n_msgs + r.new_messages;
		n_leads := n_leads + r.new_leads;
		n_upd := n_upd + r.updated;
		IF prev.instance_id IS NULL THEN
			INSERT INTO pgwa.history_chunks (instance_id, phase, chunk_order, progress, threads, messages, event_id)
			VALUES (inst.id, (ch->>'phase')::int, (ch->>'chunkOrder')::int, (ch->>'progress')::int,
			        (ch->>'threads')::int, jsonb_array_length(ch->'messages'), ev.id);
			n_new := n_new + 1;
		ELSE
			n_dup := n_dup + 1;
		END IF;
	END LOOP;
	IF jsonb_array_length(coalesce(e->'media', '[]')) > 0 THEN
		r := pgwa._import_history(inst, ev.id, e->'media');
		n_msgs := n_msgs + r.new_messages;
		n_leads := n_leads + r.new_leads;
		n_upd := n_upd + r.updated;
	END IF;
	IF n_new + n_dup > 0 THEN
		UPDATE pgwa.history_syncs SET messages_imported = messages_imported + n_msgs
		WHERE instance_id = inst.id;
		s := pgwa._history_sync_refresh(inst);
		IF n_new + n_msgs > 0 THEN
			PERFORM pgwa._emit(inst.tenant_id, 'history_sync.updated',
			                   pgwa._history_sync_json(s) || jsonb_build_object('newMessages', n_msgs));
		END IF;
	ELSIF n_msgs > 0 THEN
		UPDATE pgwa.history_syncs SET messages_imported = messages_imported + n_msgs, last_payload_at = now()
		WHERE instance_id = inst.id;
	END IF;
	RETURN jsonb_build_object('result', CASE WHEN n_new + n_msgs + n_upd > 0 OR v_news THEN 'accepted'
	                                          ELSE 'duplicate' END,
	                          'reason', 'history', 'chunks', n_new, 'repeatedChunks', n_dup,
	                          'messages', n_msgs, 'completedMessages', n_upd, 'leads', n_leads, 'sync', s.status);
END $$;

-- Contacts of the business app (smb_app_state_sync): add upserts the lead
-- (source state_sync when new, the name as pushName), remove marks it
-- inactive; no ticket. A change not newer than the last one applied to that
-- contact is stale and left out, so redeliveries and reordering are harmless.
CREATE FUNCTION pgwa._apply_state_sync(inst pgwa.instances, ev pgwa.webhook_events, e jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	s      pgwa.history_syncs := pgwa._history_sync_row(inst);
	n_add  int;
	n_rm   int;
	n_new  int;
BEGIN
	PERFORM pgwa._lock_leads(ARRAY(SELECT inst.tenant_id || '/' || (c->>'phone') FROM jsonb_array_elements(e->'contacts') c));
	WITH c AS (
		-- the latest change of each contact in this webhook
		SELECT DISTINCT ON (x->>'phone') x->>'phone' AS phone, x->>'action' AS action, x->>'name' AS name,
		       coalesce((x->>'at')::timestamptz, ev.received_at) AS at
		FROM jsonb_array_elements(e->'contacts') WITH ORDINALITY AS u(x, n)
		ORDER BY x->>'phone', coalesce((x->>'at')::timestamptz, ev.received_at) DESC, n DESC),
	adds AS (
		INSERT INTO pgwa.leads AS k (tenant_id, phone, push_name, name, source, last_synced_at, metadata)
		SELECT inst.tenant_id, c.phone, c.name, c.name, 'state_sync', now(),
		       jsonb_build_object('stateSyncAt', pgwa._iso(c.at))
		FROM c WHERE c.action = 'add' ORDER BY c.phone
		ON CONFLICT (tenant_id, phone) DO UPDATE SET
			push_name = coalesce(excluded.push_name, k.push_name),
			name = coalesce(k.name, excluded.name),
			active = true, deleted_at = NULL, last_synced_at = now(), updated_at = now(),
			metadata = k.metadata || jsonb_build_object('stateSyncAt', excluded.metadata->'stateSyncAt')
			WHERE coalesce((k.metadata->>'stateSyncAt')::timestamptz, '-infinity') < (excluded.metadata->>'stateSyncAt')::timestamptz
		RETURNING (xmax = 0) AS created),
	rms AS (
		UPDATE pgwa.leads k SET active = false, deleted_at = c.at, last_synced_at = now(), updated_at = now(),
		       metadata = k.metadata || jsonb_build_object('stateSyncAt', pgwa._iso(c.at))
		FROM c WHERE c.action = 'remove' AND k.tenant_id = inst.tenant_id AND k.phone = c.phone
		  AND coalesce((k.metadata->>'stateSyncAt')::timestamptz, '-infinity') < c.at
		RETURNING k.id)
	SELECT (SELECT count(*) FROM adds), (SELECT count(*) FILTER (WHERE created) FROM adds), (SELECT count(*) FROM rms)
	INTO n_add, n_new, n_rm;

	UPDATE pgwa.history_syncs SET
		contacts_imported = contacts_imported + n_add,
		status = CASE WHEN status IN ('not_supported', 'pending_consent', 'failed') THEN 'pending_history'
		              ELSE status END,
		started_at = coalesce(started_at, now()), last_payload_at = now(), updated_at = now()
	WHERE instance_id = inst.id RETURNING * INTO s;
	IF n_add + n_rm > 0 THEN
		PERFORM pgwa._emit(inst.tenant_id, 'history_sync.updated', pgwa._history_sync_json(s));
	END IF;
	RETURN jsonb_build_object('result', CASE WHEN n_add + n_rm > 0 OR jsonb_array_length(e->'contacts') = 0
	                                          THEN 'accepted' ELSE 'duplicate' END,
	                          'reason', 'state_sync', 'added', n_add, 'newLeads', n_new, 'removed', n_rm,
	                          'sync', s.status);
END $$;

-- Messages the business sent from the app after onboarding
-- (smb_message_echoes): the matching outbound message is confirmed as sent
-- by the app (source app_echo, a receipt never moves back), or recorded if
-- pgwa never had it, as any echo (pgwa._apply_echo).
CREATE FUNCTION pgwa._apply_smb_echoes(inst pgwa.instances, ev pgwa.webhook_events, e jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	x       jsonb;
	r       jsonb;
	v_msg   uuid;
	n_conf  int := 0;
	n_new   int := 0;
	n_dup   int := 0;
BEGIN
	FOR x IN SELECT y FROM jsonb_array_elements(e->'echoes') y LOOP
		PERFORM pg_advisory_xact_lock(hashtextextended('pgwa.message/' || inst.id || '/' || (x->>'id'), 0));
		UPDATE pgwa.messages SET source = 'app_echo',
		       status = CASE WHEN coalesce(pgwa._receipt_rank(status), 0) < 1 AND status NOT IN ('dead', 'canceled')
		                     THEN 'sent' ELSE status END,
		       metadata = metadata || jsonb_build_object('metaConfirmedAt', pgwa._iso(now()))
		WHERE instance_id = inst.id AND broker_message_id = x->>'id' AND direction = 'outbound'
		  AND source <> 'app_echo'
		RETURNING id INTO v_msg;
		IF v_msg IS NOT NULL THEN
			n_conf := n_conf + 1;
			PERFORM pgwa._emit(inst.tenant_id, 'message.status', jsonb_build_object(
				'messageId', v_msg, 'instanceId', inst.id, 'brokerMessageId', x->>'id',
				'status', 'sent', 'source', 'app_echo'));
			CONTINUE;
		END IF;
		r := pgwa._apply_echo(inst, ev, jsonb_build_object(
			'brokerMessageId', x->>'id', 'to', x->>'to', 'timestamp', x->>'at', 'status', 'SERVER_ACK',
			'message', x->'content'));
		IF r->>'result' = 'accepted' THEN
			n_new := n_new + 1;
		ELSE
			n_dup := n_dup + 1;
		END IF;
	END LOOP;
	RETURN jsonb_build_object('result', CASE WHEN n_conf + n_new > 0 OR n_dup = 0 THEN 'accepted' ELSE 'duplicate' END,
	                          'reason', 'app_echo', 'confirmed', n_conf, 'recorded', n_new, 'duplicates', n_dup);
END $$;

-------------------------------------------------------------------------------
-- Operations
-------------------------------------------------------------------------------
-- Instances whose consent was asked more than pgwa.history_sync_stall ago
-- (30 min by default) and that received no history: marked failed, with an
-- alert event (whatsapp.history_sync.stalled) and an audit entry, once.
-- pg_cron runs it every minute (pgwa.schedule_maintenance). Returns how many
-- it marked.
CREATE FUNCTION pgwa.check_stalled_history_syncs() RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
	v_minutes int := coalesce(extract(epoch FROM current_setting('pgwa.history_sync_stall', true)::interval)::int / 60,
	                          30);
	s pgwa.history_syncs;
	n int := 0;
BEGIN
	FOR s IN
		UPDATE pgwa.history_syncs SET status = 'failed', alerted_at = now(), error_code = 'history_timeout',
		       error_message = format('no history arrived within %s minutes of the request', v_minutes),
		       updated_at = now()
		WHERE status IN ('pending_consent', 'pending_history') AND alerted_at IS NULL
		  AND requested_at < now() - make_interval(mins => v_minutes)
		  AND NOT EXISTS (SELECT 1 FROM pgwa.history_chunks c WHERE c.instance_id = history_syncs.instance_id)
		RETURNING *
	LOOP
		PERFORM pgwa._emit(s.tenant_id, 'whatsapp.history_sync.stalled',
		                   pgwa._history_sync_json(s) || jsonb_build_object('minutes', v_minutes));
		PERFORM pgwa._audit(s.tenant_id, s.instance_id, 'history_sync.stalled',
		                    jsonb_build_object('minutes', v_minutes));
		n := n + 1;
	END LOOP;
	RETURN n;
END $$;


-------------------------------------------------------------------------------
-- Origins in the API (seed 002 section 6)
-------------------------------------------------------------------------------
-- A lead as the API shows it, with its source. PW404 outside the tenant.
CREATE FUNCTION pgwa.lead_json(p_tenant uuid, p_lead text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
	l pgwa.leads;
BEGIN
	SELECT * INTO l FROM pgwa.leads WHERE tenant_id = p_tenant AND id = pgwa._uuid_or_null(p_lead);
	IF l.id IS NULL THEN
		PERFORM pgwa._raise('PW404', 'lead not found', 'lead_id');
	END IF;
	RETURN jsonb_build_object(
		'id', l.id, 'phoneNumber', CASE WHEN l.phone IS NOT NULL THEN '+' || l.phone END, 'lid', l.lid,
		'name', l.name, 'pushName', l.push_name, 'source', l.source, 'active', l.active,
		'window', pgwa._window_state(l), 'messageWindowExpiresAt', pgwa._iso(l.window_expires_at),
		'createdAt', pgwa._iso(l.created_at), 'lastMessageAt', pgwa._iso(l.last_message_at),
		'lastSyncedAt', pgwa._iso(l.last_synced_at), 'deletedAt', pgwa._iso(l.deleted_at));
END $$;

-- A ticket as seed 002 shows it: its origin, its lead's, and the
-- conversations' messages with theirs (history, live, app_echo), the last
-- p_limit of them in time order. PW404 outside the tenant.
CREATE FUNCTION pgwa.ticket_detail(p_tenant uuid, p_ticket text, p_limit int DEFAULT 100) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
	t pgwa.tickets;
BEGIN
	SELECT * INTO t FROM pgwa.tickets WHERE tenant_id = p_tenant AND id = pgwa._uuid_or_null(p_ticket);
	IF t.id IS NULL THEN
		PERFORM pgwa._raise('PW404', 'ticket not found', 'ticket_id');
	END IF;
	RETURN jsonb_build_object('ticket', pgwa.ticket_json(t.id)
		|| jsonb_build_object('lead', pgwa.lead_json(p_tenant, t.lead_id::text))
		|| jsonb_build_object('messages', coalesce((
			SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
			           'id', m.id, 'source', m.source, 'direction', m.direction, 'type', m.type,
			           'status', m.status, 'brokerMessageId', m.broker_message_id,
			           'timestamp', pgwa._iso(coalesce(m.broker_timestamp, m.created_at)),
			           'body', m.content->>'text')) ORDER BY coalesce(m.broker_timestamp, m.created_at), m.id)
			FROM (SELECT m.* FROM pgwa.conversations c
			      CROSS JOIN LATERAL (SELECT * FROM pgwa.messages m
			                          WHERE m.instance_id = c.instance_id AND m.conversation_id = c.id
			                          ORDER BY m.created_at DESC LIMIT p_limit) m
			      WHERE c.tenant_id = p_tenant AND c.lead_id = t.lead_id
			      ORDER BY coalesce(m.broker_timestamp, m.created_at) DESC LIMIT p_limit) m), '[]')));
END $$;

