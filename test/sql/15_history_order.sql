-- History chunks in any order, any of them twice (issue: "order and
-- repetition do not matter"): seven history webhooks (six chunks over three
-- phases, contacts spread over several chunks, a media placeholder and its
-- media sent later) are delivered in order to one instance, then in 40
-- random permutations, each with one webhook delivered twice, to one fresh
-- tenant and instance each. Every delivery must leave the same leads,
-- conversations, messages and sync state (ids and times of writing aside).
\set VERBOSITY terse
SELECT setseed(0.4242);

-- A chunk: contacts' threads of three messages each (in, out, in); the
-- chunk of phase 1 order 1 also holds a media placeholder of contact 3.
CREATE FUNCTION pg_temp.msg(c int, p_phase int, p_order int, j int) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object(
		'from', CASE WHEN j = 2 THEN '15550783881' ELSE '551190000' || lpad(c::text, 4, '0') END,
		'id', format('wamid.%s.%s.%s.%s', c, p_phase, p_order, j),
		'timestamp', (1752500000 + p_phase * 100000 + p_order * 1000 + c * 10 + j)::text,
		'type', 'text', 'text', jsonb_build_object('body', format('m %s %s %s %s', c, p_phase, p_order, j)),
		'history_context', jsonb_build_object('status', CASE j WHEN 2 THEN 'DELIVERED' ELSE 'READ' END))
$$;
CREATE FUNCTION pg_temp.chunk(p_phase int, p_order int, p_progress int, p_contacts int[]) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	threads jsonb := '[]';
	msgs    jsonb;
	c       int;
BEGIN
	FOREACH c IN ARRAY p_contacts LOOP
		SELECT jsonb_agg(pg_temp.msg(c, p_phase, p_order, j) ORDER BY j) INTO msgs FROM generate_series(1, 3) j;
		IF p_phase = 1 AND p_order = 1 AND c = 3 THEN
			msgs := msgs || jsonb_build_array(jsonb_build_object(
				'from', '5511900000003', 'id', 'wamid.media.3', 'timestamp', '1752600500',
				'type', 'media_placeholder', 'history_context', jsonb_build_object('status', 'PLAYED')));
		END IF;
		threads := threads || jsonb_build_array(jsonb_build_object('id', '551190000' || lpad(c::text, 4, '0'),
		                                                           'messages', msgs));
	END LOOP;
	RETURN jsonb_build_object('object', 'whatsapp_business_account', 'entry', jsonb_build_array(jsonb_build_object(
		'id', '102290129340398', 'changes', jsonb_build_array(jsonb_build_object('field', 'history', 'value',
		jsonb_build_object('messaging_product', 'whatsapp',
			'metadata', jsonb_build_object('display_phone_number', '15550783881', 'phone_number_id', 'PNID'),
			'history', jsonb_build_array(jsonb_build_object(
				'metadata', jsonb_build_object('phase', p_phase, 'chunk_order', p_order, 'progress', p_progress),
				'threads', threads))))))));
END $$;
CREATE TEMP TABLE hooks (k int PRIMARY KEY, body text);
INSERT INTO hooks VALUES
	(1, pg_temp.chunk(0, 1, 10, '{1,2,3}')::text),
	(2, pg_temp.chunk(0, 2, 30, '{3,4}')::text),
	(3, pg_temp.chunk(1, 1, 50, '{1,3,5}')::text),
	(4, pg_temp.chunk(1, 2, 70, '{5,6}')::text),
	(5, pg_temp.chunk(2, 1, 90, '{2,6,7}')::text),
	(6, pg_temp.chunk(2, 2, 100, '{7,8}')::text),
	(7, '{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"history","value":{'
	    '"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"PNID"},'
	    '"messages":[{"from":"5511900000003","id":"wamid.media.3","timestamp":"1752600500","type":"image",'
	    '"image":{"caption":"a foto","mime_type":"image/jpeg","id":"9911"}}]}}]}]}');

-- Delivers the webhooks in p_order to a fresh tenant and instance, each
-- applied before the next comes; returns the fingerprint of what it left.
CREATE FUNCTION pg_temp.deliver(p_name text, p_order int[]) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	t uuid := (SELECT tenant_id FROM pgwa.create_tenant(p_name));
	i uuid := pgwa.create_instance(t, p_name, 'meta', 'http://127.0.0.1:1', 'k',
	                               jsonb_build_object('settings', jsonb_build_object('phone_number_id', 'pn-' || p_name)));
	v_k int;
	r jsonb;
BEGIN
	PERFORM pgwa.set_webhook_secret(i, 'order-secret-' || p_name);
	FOREACH v_k IN ARRAY p_order LOOP
		r := pgwa.ingest_meta(jsonb_build_object('x-api-key', 'order-secret-' || p_name),
		                      replace((SELECT h.body FROM hooks h WHERE h.k = v_k), 'PNID', 'pn-' || p_name));
		IF r->>'status' <> 'received' THEN
			RAISE EXCEPTION 'webhook % of % was %', v_k, p_name, r;
		END IF;
		PERFORM pgwa.apply_pending();
	END LOOP;
	IF EXISTS (SELECT 1 FROM pgwa.webhook_events WHERE instance_id = i AND status NOT IN ('applied', 'duplicate')) THEN
		RAISE EXCEPTION 'an event of % was not applied', p_name;
	END IF;
	RETURN md5(concat_ws(' | ',
		(SELECT string_agg(concat_ws(',', l.phone, l.source, l.active, l.last_message_at, l.window_expires_at,
		                             l.first_inbound_at, l.last_inbound_at), ';' ORDER BY l.phone)
		 FROM pgwa.leads l WHERE l.tenant_id = t),
		(SELECT string_agg(concat_ws(',', l.phone, c.remote, c.last_message_at, c.last_inbound_at), ';' ORDER BY l.phone)
		 FROM pgwa.conversations c JOIN pgwa.leads l ON l.tenant_id = c.tenant_id AND l.id = c.lead_id
		 WHERE c.instance_id = i),
		(SELECT string_agg(concat_ws(',', m.broker_message_id, m.direction, m.type, m.status, m.source,
		                             m.broker_timestamp, m.remote, m.content::text, m.metadata::text, l.phone,
		                             cl.phone, m.ticket_id), ';' ORDER BY m.broker_message_id)
		 FROM pgwa.messages m JOIN pgwa.leads l ON l.tenant_id = m.tenant_id AND l.id = m.lead_id
		 JOIN pgwa.conversations c ON c.instance_id = m.instance_id AND c.id = m.conversation_id
		 JOIN pgwa.leads cl ON cl.tenant_id = c.tenant_id AND cl.id = c.lead_id
		 WHERE m.instance_id = i),
		(SELECT concat_ws(',', s.status, s.progress, s.phase, s.chunk_order, s.chunks, s.messages_imported,
		                  s.contacts_imported, s.completed_at IS NOT NULL)
		 FROM pgwa.history_syncs s WHERE s.instance_id = i),
		(SELECT count(*) FROM pgwa.tickets WHERE tenant_id = t)));
END $$;

-- In order, once.
SELECT pg_temp.deliver('order-ref', '{1,2,3,4,5,6,7}') AS ref \gset
SELECT s.status, s.progress, s.phase, s.chunk_order, s.chunks, s.messages_imported,
       (SELECT count(*) FROM pgwa.leads l WHERE l.tenant_id = s.tenant_id AND l.source = 'history_sync') AS leads,
       (SELECT count(*) FROM pgwa.messages m WHERE m.instance_id = s.instance_id) AS messages,
       (SELECT count(*) FROM pgwa.messages m WHERE m.instance_id = s.instance_id AND m.direction = 'outbound') AS outbound,
       (SELECT count(*) FROM pgwa.tickets k WHERE k.tenant_id = s.tenant_id) AS tickets,
       (SELECT m.type || ' ' || (m.content->'media'->>'mediaId') || ' ' || m.status FROM pgwa.messages m
        WHERE m.instance_id = s.instance_id AND m.broker_message_id = 'wamid.media.3') AS media
FROM pgwa.history_syncs s JOIN pgwa.instances i ON i.id = s.instance_id WHERE i.name = 'order-ref';

-- 40 permutations, each with one webhook twice.
CREATE TEMP TABLE runs AS
SELECT n, (SELECT array_agg(k ORDER BY random()) FROM (
             SELECT k FROM generate_series(1, 7) k
             UNION ALL SELECT 1 + floor(random() * 7)::int + 0 * n) x) AS seq
FROM generate_series(1, 40) n;
SELECT count(*) AS runs, count(DISTINCT seq) AS distinct_orders,
       count(*) FILTER (WHERE seq[1:7] <> '{1,2,3,4,5,6,7}') AS out_of_order
FROM runs;
SELECT count(*) FILTER (WHERE pg_temp.deliver('order-' || n, seq) = :'ref') AS same_rows,
       count(*) AS delivered
FROM runs;
-- and a delivery that misses one webhook does not (the check can fail)
SELECT pg_temp.deliver('order-partial', '{1,2,3,4,5,6}') <> :'ref' AS without_the_media_rows_differ;
