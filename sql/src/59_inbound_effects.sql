-------------------------------------------------------------------------------
-- Inbound, part 4: the broker dialects (Evolution API, WhatsApp Cloud API and
-- its 360dialog envelope) in the same pipeline as seed-000 webhooks. Their
-- bodies are stored first (58_inbound_ingest.sql), normalised in C
-- (57_inbound_dialects.sql), and each event is applied by kind:
--   message     the seed-000 envelope path (57_inbound_apply.sql)
--   status      receipts of outbound messages: sent, delivered, read, failed
--   echo        a message the instance itself sent (phone app, API)
--   connection  the instance's connection state: pauses or resumes its queue
--   qrcode      the latest pairing QR code
--   history, state_sync, echoes   Cloud API coexistence (seed 002), applied
--               by the history pipeline (64_history_sync.sql)
-------------------------------------------------------------------------------

-- What a Cloud API webhook is checked against, per instance. The app secret
-- keys the X-Hub-Signature-256 HMAC, so it must be kept as it is (like the
-- broker's API key); no function or route returns it and nothing logs it.
-- The verify token of the GET handshake only has to be recognised: only its
-- SHA-256 is kept.
CREATE TABLE pgwa.meta_webhook_credentials (
	instance_id       uuid PRIMARY KEY REFERENCES pgwa.instances (id) ON DELETE CASCADE,
	tenant_id         uuid NOT NULL,
	app_secret        text,
	verify_token_hash bytea,
	updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX meta_webhook_credentials_token ON pgwa.meta_webhook_credentials (verify_token_hash)
	WHERE verify_token_hash IS NOT NULL;

-- The latest QR code a broker published to pair an instance (Evolution
-- qrcode.updated); it is gone once the instance connects. received_at orders
-- redeliveries and retries: an older code never replaces a newer one.
CREATE TABLE pgwa.instance_qrcodes (
	instance_id  uuid PRIMARY KEY REFERENCES pgwa.instances (id) ON DELETE CASCADE,
	tenant_id    uuid NOT NULL,
	code         text,
	base64       text,
	pairing_code text,
	received_at  timestamptz NOT NULL,
	event_id     bigint
);


-------------------------------------------------------------------------------
-- Cloud API credentials
-------------------------------------------------------------------------------
-- Sets the Meta app secret that signs this instance's webhooks (NULL removes
-- it). Returns whether one is set; the secret itself is never shown again.
CREATE FUNCTION pgwa.set_meta_app_secret(p_instance uuid, p_secret text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
	i pgwa.instances;
BEGIN
	SELECT * INTO i FROM pgwa.instances WHERE id = p_instance;
	IF NOT FOUND THEN
		PERFORM pgwa._raise('PW404', 'instance not found', 'instance_id');
	END IF;
	IF p_secret IS NOT NULL AND (length(p_secret) NOT BETWEEN 16 AND 512 OR p_secret ~ '\s') THEN
		PERFORM pgwa._raise('PW400', 'app_secret must be 16 to 512 characters without spaces', 'app_secret');
	END IF;
	INSERT INTO pgwa.meta_webhook_credentials AS c (instance_id, tenant_id, app_secret)
	VALUES (i.id, i.tenant_id, p_secret)
	ON CONFLICT (instance_id) DO UPDATE SET app_secret = excluded.app_secret, updated_at = now();
	RETURN p_secret IS NOT NULL;
END $$;

-- Sets the verify token Meta presents in the GET subscription handshake (a
-- random one when p_token is NULL); returned once, only its SHA-256 kept. One
-- Meta app serves several numbers: give its instances the same token.
CREATE FUNCTION pgwa.set_meta_verify_token(p_instance uuid, p_token text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	i       pgwa.instances;
	v_token text := coalesce(p_token, pgwa._random_token());
BEGIN
	SELECT * INTO i FROM pgwa.instances WHERE id = p_instance;
	IF NOT FOUND THEN
		PERFORM pgwa._raise('PW404', 'instance not found', 'instance_id');
	END IF;
	IF length(v_token) NOT BETWEEN 8 AND 256 OR v_token ~ '\s' THEN
		PERFORM pgwa._raise('PW400', 'verify_token must be 8 to 256 characters without spaces', 'verify_token');
	END IF;
	INSERT INTO pgwa.meta_webhook_credentials AS c (instance_id, tenant_id, verify_token_hash)
	VALUES (i.id, i.tenant_id, pgwa._hash_key(v_token))
	ON CONFLICT (instance_id) DO UPDATE SET verify_token_hash = excluded.verify_token_hash, updated_at = now();
	RETURN v_token;
END $$;

-- The phone_number_id values a Cloud API body names: every entry and change,
-- a 360dialog envelope's data, a bare change value. Read without the
-- normaliser, which refuses malformed bodies that must still be attributed.
CREATE FUNCTION pgwa._meta_phone_number_ids(p_body jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
	SELECT coalesce(array_agg(DISTINCT v #>> '{}'), '{}') FROM (
		SELECT jsonb_path_query(p_body, 'lax $.entry[*].changes[*].value.metadata.phone_number_id') v
		UNION ALL
		SELECT jsonb_path_query(p_body, 'lax $.data.metadata.phone_number_id')
		UNION ALL
		SELECT jsonb_path_query(p_body, 'lax $.metadata.phone_number_id')) p
	WHERE jsonb_typeof(v) = 'string'
$$;

-------------------------------------------------------------------------------
-- Messages
-------------------------------------------------------------------------------
-- Media fields a dialect writes at the top of a message; the seed-000 path
-- keeps them under message.media, and so does this one.
CREATE FUNCTION pgwa._media_keys() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ARRAY['mimetype', 'fileLength', 'fileName', 'caption', 'seconds', 'pageCount', 'ptt', 'url',
             'mediaId', 'sha256', 'isAnimated', 'title', 'width', 'height'];

-- A dialect's normalised message as the messages table stores contents: its
-- broker id, media under media {mediaType, ...}, a caption as its text.
CREATE FUNCTION pgwa._dialect_content(m jsonb, p_id text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
	v_media jsonb;
BEGIN
	m := coalesce(m, '{}');
	IF m->>'type' IN ('image', 'video', 'audio', 'document', 'sticker') THEN
		SELECT jsonb_build_object('mediaType', m->>'type') || coalesce(jsonb_object_agg(key, value), '{}')
		INTO v_media FROM jsonb_each(m) WHERE key = ANY (pgwa._media_keys());
		m := (m - pgwa._media_keys()) || jsonb_build_object('media', v_media);
	END IF;
	RETURN jsonb_strip_nulls(jsonb_build_object('id', p_id, 'type', coalesce(m->>'type', 'unknown'),
	                                            'text', coalesce(m->>'text', v_media->>'caption')))
	       || (m - 'id' - 'type' - 'text');
END $$;

-- A dialect's message envelope in the form the apply path reads (that of
-- normalize_inbound): payload.chat, the sender's phone or LID in
-- payload.contact, the content with its id. What cannot make a lead (no phone
-- nor LID, a phone that is not one) is PW422: kept, not retried.
CREATE FUNCTION pgwa._dialect_envelope(e jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
	mc      jsonb := coalesce(e->'payload'->'metadata'->'contact', '{}');
	c       jsonb := coalesce(e->'payload'->'contact', '{}');
	v_group boolean := coalesce(mc->'isGroup' = 'true', false);
	v_jid   text;
BEGIN
	IF c->>'lid' IS NULL AND mc->>'lid' ~ '^[0-9]+(:[0-9]+)?@lid$' THEN
		c := c || jsonb_build_object('lid', regexp_replace(mc->>'lid', ':[0-9]+@', '@'));
	END IF;
	IF c->>'phone' !~ '^[0-9]{8,15}$' THEN
		PERFORM pgwa._raise('PW422', 'payload.contact.phone must be a phone number with 8 to 15 digits',
		                    'payload.contact.phone');
	END IF;
	IF c->>'phone' IS NULL AND c->>'lid' IS NULL THEN
		PERFORM pgwa._raise('PW422', 'the sender has no phone number nor LID', 'payload.contact.phone');
	END IF;
	v_jid := CASE WHEN v_group THEN coalesce(mc->>'groupJid', mc->>'jid') ELSE coalesce(c->>'phone', c->>'lid') END;
	IF v_jid IS NULL THEN
		PERFORM pgwa._raise('PW422', 'the group of a group message is unknown', 'payload.metadata.contact.groupJid');
	END IF;
	RETURN jsonb_build_object(
		'id', e->'id', 'type', 'MESSAGE_INBOUND', 'instanceId', e->'instanceId', 'timestamp', e->'timestamp',
		'payload', jsonb_build_object(
			'instanceId', e->'instanceId', 'timestamp', e->'timestamp', 'contact', c,
			'chat', jsonb_strip_nulls(jsonb_build_object('jid', v_jid, 'isGroup', v_group,
				'participantJid', CASE WHEN v_group THEN mc->>'participantJid' END)),
			'message', pgwa._dialect_content(e->'payload'->'message', e->>'id'),
			'metadata', coalesce(e->'payload'->'metadata', '{}')
			            || jsonb_strip_nulls(jsonb_build_object('normalizedTimestamp', e->'timestamp'))));
END $$;

-- An echo: a message the instance sent itself (Evolution send.message, or
-- messages.upsert with key.fromMe). One pgwa sent is already in the outbox
-- (the dispatcher recorded its broker id) and in the conversation log; so is
-- one to the recipient of the message in flight: Evolution posts send.message
-- before it answers the send, and the dispatcher records it with the answer.
-- Any other was written on the phone: it enters the log as an outbound
-- message with source app_echo (seed 002), touches the ticket's outbound
-- timeline, and is announced as messages.new. Never twice for one broker id.
CREATE FUNCTION pgwa._apply_echo(inst pgwa.instances, ev pgwa.webhook_events, e jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	v_bid    text := e->>'brokerMessageId';
	v_remote text := coalesce(e->>'to', e->>'remoteJid');
	v_ts     timestamptz := (e->>'timestamp')::timestamptz;
	v_status text := CASE e->>'status' WHEN 'DELIVERY_ACK' THEN 'delivered' WHEN 'READ' THEN 'read'
	                                   WHEN 'PLAYED' THEN 'read' ELSE 'sent' END;
	v_content jsonb := pgwa._dialect_content(e->'message', e->>'brokerMessageId');
	k        record;
	v_lead   uuid;
	v_conv   uuid;
	v_ticket uuid;
	v_msg    uuid;
BEGIN
	IF v_bid IS NULL OR v_remote IS NULL THEN
		RETURN jsonb_build_object('result', 'ignored', 'reason', 'incomplete_echo', 'brokerMessageId', v_bid);
	END IF;
	-- the lock _apply_message takes for a broker id
	PERFORM pg_advisory_xact_lock(hashtextextended('pgwa.message/' || inst.id || '/' || v_bid, 0));
	IF EXISTS (SELECT 1 FROM pgwa.outbox WHERE instance_id = inst.id AND broker_message_id = v_bid)
	   OR EXISTS (SELECT 1 FROM pgwa.messages WHERE instance_id = inst.id AND broker_message_id = v_bid) THEN
		RETURN jsonb_build_object('result', 'duplicate', 'reason', 'duplicate_message', 'brokerMessageId', v_bid);
	END IF;
	k := pgwa._remote_key(v_remote);
	IF EXISTS (SELECT 1 FROM pgwa.instance_state s
	           JOIN pgwa.outbox o ON o.instance_id = s.instance_id AND o.seq = s.inflight_seq
	           WHERE s.instance_id = inst.id AND o.status = 'sending'
	             AND (o.recipient = v_remote OR (pgwa._remote_key(o.recipient)).phone = k.phone)) THEN
		RETURN jsonb_build_object('result', 'duplicate', 'reason', 'echo_in_flight', 'brokerMessageId', v_bid);
	END IF;
	SELECT id INTO v_lead FROM pgwa.leads
	WHERE tenant_id = inst.tenant_id AND (phone = k.phone OR lid = k.lid)
	ORDER BY phone = k.phone DESC NULLS LAST LIMIT 1;
	SELECT id INTO v_conv FROM pgwa.conversations WHERE instance_id = inst.id AND lead_id = v_lead;
	v_ticket := pgwa._timeline_outbound(inst.id, v_remote, coalesce(v_ts, ev.received_at));
	INSERT INTO pgwa.messages (instance_id, tenant_id, direction, broker_message_id, remote, type, content,
	                           status, source, broker_timestamp, conversation_id, lead_id, ticket_id, event_id,
	                           metadata)
	VALUES (inst.id, inst.tenant_id, 'outbound', v_bid, v_remote, v_content->>'type', v_content, v_status,
	        'app_echo', v_ts, v_conv, v_lead, v_ticket, ev.id,
	        jsonb_strip_nulls(jsonb_build_object(
	            'broker', jsonb_build_object('type', ev.dialect, 'direction', 'outbound'),
	            'rawKey', e->'rawKey', 'source', 'app_echo')))
	ON CONFLICT (instance_id, broker_message_id) DO NOTHING
	RETURNING id INTO v_msg;
	IF v_msg IS NULL THEN
		-- the dispatcher recorded it meanwhile: undo, let a retry see it
		RAISE EXCEPTION 'message % appeared while its echo was being applied', v_bid;
	END IF;
	PERFORM pgwa._emit(inst.tenant_id, 'messages.new', jsonb_strip_nulls(jsonb_build_object(
		'messageId', v_msg, 'instanceId', inst.id, 'brokerMessageId', v_bid, 'direction', 'outbound',
		'source', 'app_echo', 'leadId', v_lead, 'conversationId', v_conv, 'ticketId', v_ticket,
		'remote', v_remote, 'type', v_content->>'type', 'text', left(v_content->>'text', 280),
		'timestamp', pgwa._iso(coalesce(v_ts, ev.received_at)))));
	RETURN jsonb_build_object('result', 'accepted', 'reason', 'outbound_echo', 'brokerMessageId', v_bid,
	                          'messageId', v_msg);
END $$;

-------------------------------------------------------------------------------
-- Receipts
-------------------------------------------------------------------------------
-- The order of receipts. A message's status only moves forward: read after
-- delivered after sent, and a late 'delivered' after 'read' changes nothing.
-- 'played' (a voice note listened to) is read. Statuses outside the
-- receipts (waiting, in flight, dead, canceled) have no rank: receipts leave
-- them alone.
CREATE FUNCTION pgwa._receipt_rank(p_status text) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE p_status WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2 WHEN 'read' THEN 3 WHEN 'played' THEN 3 END;

-- A receipt of an outbound message, found by its broker id within the
-- instance: in the outbox (the API's message: status, delivered_at, read_at)
-- and in the conversation log (status). sent/delivered/read move the status
-- forward; a read receipt without a delivered one sets delivered_at too.
-- failed records the broker's error as last_error and makes a message that
-- was only sent a dead letter (it can be replayed); one already delivered or
-- read keeps its status. An unknown broker id is ignored (unknown_message),
-- a receipt that changes nothing is a duplicate (stale_status). Every change
-- emits message.status.
CREATE FUNCTION pgwa._apply_status(inst pgwa.instances, ev pgwa.webhook_events, s jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	v_bid     text := s->>'brokerMessageId';
	v_receipt text := s->>'status';
	v_status  text := CASE s->>'status' WHEN 'played' THEN 'read' ELSE s->>'status' END;
	v_at      timestamptz := coalesce((s->>'timestamp')::timestamptz, ev.received_at);
	v_error   text;
	o         pgwa.outbox;
	m         record;
	v_new     text;
	v_changed boolean := false;
BEGIN
	IF v_bid IS NULL OR v_status IS NULL OR v_status NOT IN ('sent', 'delivered', 'read', 'failed') THEN
		RETURN jsonb_build_object('result', 'ignored', 'reason', 'unknown_status', 'brokerMessageId', v_bid);
	END IF;
	IF v_status = 'failed' THEN
		v_error := left(concat_ws(': ',
			nullif(concat_ws(' ', s->'error'->>'code', coalesce(s->'error'->>'title', s->'error'->>'message')), ''),
			s->'error'->'error_data'->>'details'), 1000);
		v_error := coalesce(nullif(v_error, ''), 'the broker reported the message as failed');
	END IF;

	SELECT * INTO o FROM pgwa.outbox
	WHERE instance_id = inst.id AND broker_message_id = v_bid
	ORDER BY seq DESC LIMIT 1 FOR UPDATE;
	SELECT id, status INTO m FROM pgwa.messages
	WHERE instance_id = inst.id AND broker_message_id = v_bid AND direction = 'outbound' FOR UPDATE;
	IF o.id IS NULL AND m.id IS NULL THEN
		RETURN jsonb_build_object('result', 'ignored', 'reason', 'unknown_message', 'brokerMessageId', v_bid);
	END IF;

	IF o.id IS NOT NULL THEN
		v_new := o.status;
		IF v_status = 'failed' THEN
			v_new := CASE WHEN o.status = 'sent' THEN 'dead' ELSE o.status END;
			IF v_new <> o.status OR o.last_error IS DISTINCT FROM v_error THEN
				UPDATE pgwa.outbox SET status = v_new, last_error = v_error, updated_at = now(),
				       dead_at = CASE WHEN v_new = 'dead' THEN v_at ELSE dead_at END
				WHERE instance_id = o.instance_id AND seq = o.seq;
				v_changed := true;
			END IF;
		ELSIF pgwa._receipt_rank(v_status) > pgwa._receipt_rank(o.status) THEN
			v_new := v_status;
			UPDATE pgwa.outbox SET status = v_new, updated_at = now(),
			       delivered_at = coalesce(delivered_at, v_at),
			       read_at = CASE WHEN v_new = 'read' THEN coalesce(read_at, v_at) ELSE read_at END
			WHERE instance_id = o.instance_id AND seq = o.seq;
			v_changed := true;
		END IF;
	END IF;
	IF m.id IS NOT NULL THEN
		IF (v_status = 'failed' AND m.status = 'sent')
		   OR pgwa._receipt_rank(v_status) > pgwa._receipt_rank(m.status) THEN
			UPDATE pgwa.messages SET status = v_status WHERE instance_id = inst.id AND id = m.id;
			v_new := coalesce(v_new, v_status);
			v_changed := true;
		END IF;
	END IF;

	IF NOT v_changed THEN
		RETURN jsonb_build_object('result', 'duplicate', 'reason', 'stale_status', 'brokerMessageId', v_bid);
	END IF;
	PERFORM pgwa._emit(inst.tenant_id, 'message.status', jsonb_strip_nulls(jsonb_build_object(
		'messageId', coalesce(o.id, m.id), 'instanceId', inst.id, 'brokerMessageId', v_bid,
		'status', v_new, 'previousStatus', coalesce(o.status, m.status), 'receipt', v_receipt,
		'recipient', s->>'recipient', 'timestamp', pgwa._iso(v_at), 'error', v_error)));
	RETURN jsonb_build_object('result', 'accepted', 'reason', 'message_status', 'brokerMessageId', v_bid,
	                          'status', v_new);
END $$;

-------------------------------------------------------------------------------
-- Connection and pairing
-------------------------------------------------------------------------------
-- connection.update: open is connected (the queue resumes at once), close is
-- disconnected (the queue pauses without spending attempts), connecting is
-- unknown (the queue may try; a broker 409 pauses it again). An event older
-- than the last recorded change (a retry, a replay) changes nothing. A change
-- emits instance.status; once connected, the stored QR code is dropped.
CREATE FUNCTION pgwa._apply_connection(inst pgwa.instances, ev pgwa.webhook_events, e jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	v_state text := CASE e->>'state' WHEN 'open' THEN 'connected' WHEN 'close' THEN 'disconnected' ELSE 'unknown' END;
	s       pgwa.instance_state;
BEGIN
	SELECT * INTO s FROM pgwa.instance_state WHERE instance_id = inst.id FOR UPDATE;
	IF s.state_changed_at > ev.received_at THEN
		RETURN jsonb_build_object('result', 'duplicate', 'reason', 'stale_state', 'state', v_state);
	ELSIF s.connection_state = v_state THEN
		RETURN jsonb_build_object('result', 'duplicate', 'reason', 'same_state', 'state', v_state);
	END IF;
	PERFORM pgwa.set_connection_state(inst.id, v_state);
	IF v_state = 'connected' THEN
		DELETE FROM pgwa.instance_qrcodes WHERE instance_id = inst.id;
	END IF;
	PERFORM pgwa._emit(inst.tenant_id, 'instance.status', jsonb_strip_nulls(jsonb_build_object(
		'instanceId', inst.id, 'state', v_state, 'previousState', s.connection_state,
		'brokerState', e->>'state', 'statusReason', e->'statusReason',
		'timestamp', pgwa._iso(ev.received_at))));
	RETURN jsonb_build_object('result', 'accepted', 'reason', 'connection_update', 'state', v_state);
END $$;

-- qrcode.updated: the newest QR code of the instance is kept, for the tenant
-- to show (pgwa.instance_qrcode); a redelivery of the one kept is a duplicate. instance.qrcode says a new one is there but
-- carries none of it: events are stored and broadcast, a QR code is a
-- credential for a minute.
CREATE FUNCTION pgwa._apply_qrcode(inst pgwa.instances, ev pgwa.webhook_events, e jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	q jsonb := coalesce(e->'qrcode', '{}');
	n int;
BEGIN
	IF q->>'base64' IS NULL AND q->>'code' IS NULL AND q->>'pairingCode' IS NULL THEN
		RETURN jsonb_build_object('result', 'ignored', 'reason', 'empty_qrcode');
	END IF;
	INSERT INTO pgwa.instance_qrcodes AS c (instance_id, tenant_id, code, base64, pairing_code, received_at, event_id)
	VALUES (inst.id, inst.tenant_id, q->>'code', q->>'base64', q->>'pairingCode', ev.received_at, ev.id)
	ON CONFLICT (instance_id) DO UPDATE SET code = excluded.code, base64 = excluded.base64,
		pairing_code = excluded.pairing_code, received_at = excluded.received_at, event_id = excluded.event_id
	WHERE c.received_at <= excluded.received_at
	  AND (c.code, c.base64, c.pairing_code) IS DISTINCT FROM (excluded.code, excluded.base64, excluded.pairing_code);
	GET DIAGNOSTICS n = ROW_COUNT;
	IF n = 0 THEN
		RETURN jsonb_build_object('result', 'duplicate', 'reason',
			CASE WHEN EXISTS (SELECT 1 FROM pgwa.instance_qrcodes c WHERE c.instance_id = inst.id
			                  AND (c.code, c.base64, c.pairing_code) IS NOT DISTINCT FROM (q->>'code', q->>'base64', q->>'pairingCode'))
			     THEN 'same_qrcode' ELSE 'stale_qrcode' END);
	END IF;
	PERFORM pgwa._emit(inst.tenant_id, 'instance.qrcode', jsonb_build_object(
		'instanceId', inst.id, 'receivedAt', pgwa._iso(ev.received_at),
		'hasPairingCode', q->>'pairingCode' IS NOT NULL));
	RETURN jsonb_build_object('result', 'accepted', 'reason', 'qrcode_update');
END $$;

-- The instance's latest QR code: {instanceId, code, base64, pairingCode,
-- receivedAt}, or NULL when there is none (never received, or connected since).
CREATE FUNCTION pgwa.instance_qrcode(p_instance uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT jsonb_build_object('instanceId', q.instance_id, 'code', q.code, 'base64', q.base64,
	                          'pairingCode', q.pairing_code, 'receivedAt', pgwa._iso(q.received_at))
	FROM pgwa.instance_qrcodes q WHERE q.instance_id = p_instance
$$;

-------------------------------------------------------------------------------
-- One stored dialect body
-------------------------------------------------------------------------------
-- Normalises a stored Evolution or Cloud API body into its items, in the
-- order they are applied: messages first, by sender (so concurrent events
-- lock senders in one order), then echoes by recipient, then receipts by
-- broker id, then the rest as they came; the normaliser's ignored ones
-- last. A message item carries its envelope in normalize_inbound's form
-- (raising PW422 when it cannot make a lead). An event of another instance
-- (a Cloud API batch naming several phone numbers is stored once per
-- instance) is skipped here: it is applied with that instance's copy.
CREATE FUNCTION pgwa._dialect_items(ev pgwa.webhook_events, inst pgwa.instances) RETURNS SETOF jsonb
LANGUAGE plpgsql AS $$
DECLARE
	v_key text := CASE ev.dialect WHEN 'meta' THEN inst.settings->>'phone_number_id'
	                              ELSE inst.broker_instance_id END;
	r     jsonb;
BEGIN
	r := CASE ev.dialect WHEN 'meta' THEN pgwa.normalize_meta(ev.body) ELSE pgwa.normalize_evolution(ev.body) END;
	RETURN QUERY
	SELECT CASE
	           WHEN coalesce(x->'envelope'->>'instanceId', x->>'instanceId', x->>'phoneNumberId') IS DISTINCT FROM v_key
	               THEN jsonb_build_object('result', 'skipped', 'reason', 'other_instance')
	           WHEN x->>'kind' = 'message'
	               THEN x || jsonb_build_object('envelope', pgwa._dialect_envelope(x->'envelope'))
	           ELSE x END
	       || jsonb_build_object('kind', x->>'kind', 'payloadType', ev.dialect || '.' || (x->>'kind'))
	FROM jsonb_array_elements(r->'events') WITH ORDINALITY AS u(x, n)
	ORDER BY CASE x->>'kind' WHEN 'message' THEN 1 WHEN 'echo' THEN 2 WHEN 'status' THEN 3 ELSE 4 END,
	         CASE x->>'kind'
	             WHEN 'message' THEN coalesce(x->'envelope'->'payload'->'contact'->>'phone',
	                                          x->'envelope'->'payload'->'metadata'->'contact'->>'lid', '')
	             WHEN 'echo' THEN coalesce(x->>'to', x->>'remoteJid')
	             WHEN 'status' THEN x->>'brokerMessageId' END,
	         n;
	RETURN QUERY
	SELECT jsonb_build_object('result', 'ignored', 'reason', x->>'reason', 'ref', x->'ref', 'payloadType', ev.dialect)
	FROM jsonb_array_elements(r->'ignored') x;
END $$;

-- Applies one item of a dialect body that is not a live message (those go
-- through pgwa._apply_live with the rest of their batch).
CREATE FUNCTION pgwa._apply_item(inst pgwa.instances, ev pgwa.webhook_events, e jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
	IF e ? 'result' THEN
		RETURN e;
	END IF;
	RETURN CASE e->>'kind'
		WHEN 'status' THEN pgwa._apply_status(inst, ev, e)
		WHEN 'echo' THEN pgwa._apply_echo(inst, ev, e)
		WHEN 'connection' THEN pgwa._apply_connection(inst, ev, e)
		WHEN 'qrcode' THEN pgwa._apply_qrcode(inst, ev, e)
		WHEN 'history' THEN pgwa._apply_history(inst, ev, e)
		WHEN 'state_sync' THEN pgwa._apply_state_sync(inst, ev, e)
		WHEN 'echoes' THEN pgwa._apply_smb_echoes(inst, ev, e)
		ELSE jsonb_build_object('result', 'ignored', 'reason', 'unknown_kind') END
	       || jsonb_build_object('kind', e->>'kind', 'payloadType', e->>'payloadType');
END $$;
