-------------------------------------------------------------------------------
-- Maintenance: timeline reconciliation and backfill (seed 000, "Timeline
-- Reconciliacao"), retention of sent messages, and the pg_cron jobs that run
-- them with the other periodic work (pgwa.schedule_maintenance).
-------------------------------------------------------------------------------

-- Rebuilds the timeline of tickets updated within p_since (seed 000: a job
-- that iterates recent tickets and rebuilds ticket.metadata.timeline from
-- the stored message times, for legacy data too: pass a long p_since to
-- backfill). A timeline only grows to cover its messages (earliest first,
-- latest last, as pgwa._timeline_touch keeps it), so running it again, or
-- while messages arrive, changes nothing it should not. Each tenant with a
-- ticket changed gets whatsapp.timeline.reconciled {tenantId, tickets,
-- changed}. Returns the tickets changed.
CREATE FUNCTION pgwa.reconcile_timelines(p_since interval DEFAULT '2 days', p_limit int DEFAULT 10000)
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
	r record;
	n int := 0;
BEGIN
	IF p_since IS NULL OR p_since < interval '0' THEN
		PERFORM pgwa._raise('PW400', 'since must be a positive interval', 'since');
	END IF;
	FOR r IN
		WITH t AS (
			SELECT k.tenant_id, k.id, k.instance_id, k.conversation_id, coalesce(k.metadata->'timeline', '{}') AS tl
			FROM pgwa.tickets k
			WHERE k.updated_at >= now() - p_since AND k.conversation_id IS NOT NULL
			ORDER BY k.updated_at DESC LIMIT p_limit),
		m AS (
			-- the ticket's messages, through the conversation's index
			SELECT t.tenant_id, t.id,
			       min(coalesce(g.broker_timestamp, g.created_at)) FILTER (WHERE g.direction = 'inbound') AS fi,
			       max(coalesce(g.broker_timestamp, g.created_at)) FILTER (WHERE g.direction = 'inbound') AS li,
			       min(coalesce(g.broker_timestamp, g.created_at)) FILTER (WHERE g.direction = 'outbound') AS fo,
			       max(coalesce(g.broker_timestamp, g.created_at)) FILTER (WHERE g.direction = 'outbound') AS lo,
			       t.tl
			FROM t JOIN pgwa.messages g ON g.instance_id = t.instance_id AND g.conversation_id = t.conversation_id
			                           AND g.ticket_id = t.id
			GROUP BY t.tenant_id, t.id, t.tl),
		n AS (
			SELECT m.tenant_id, m.id, m.tl, jsonb_strip_nulls(jsonb_build_object(
			           'firstInboundAt', pgwa._iso(least((m.tl->>'firstInboundAt')::timestamptz, m.fi)),
			           'lastInboundAt', pgwa._iso(greatest((m.tl->>'lastInboundAt')::timestamptz, m.li)),
			           'firstOutboundAt', pgwa._iso(least((m.tl->>'firstOutboundAt')::timestamptz, m.fo)),
			           'lastOutboundAt', pgwa._iso(greatest((m.tl->>'lastOutboundAt')::timestamptz, m.lo)))) AS rebuilt
			FROM m),
		u AS (
			UPDATE pgwa.tickets k SET metadata = jsonb_set(k.metadata, '{timeline}', n.tl || n.rebuilt),
			       updated_at = now()
			FROM n WHERE k.tenant_id = n.tenant_id AND k.id = n.id AND n.tl || n.rebuilt <> n.tl
			RETURNING k.tenant_id)
		SELECT t.tenant_id, count(*) AS tickets, (SELECT count(*) FROM u WHERE u.tenant_id = t.tenant_id) AS changed
		FROM t GROUP BY t.tenant_id
	LOOP
		IF r.changed > 0 THEN
			PERFORM pgwa._emit(r.tenant_id, 'whatsapp.timeline.reconciled',
			                   jsonb_build_object('tenantId', r.tenant_id, 'tickets', r.tickets, 'changed', r.changed,
			                                      'since', pgwa._iso(now() - p_since)));
			n := n + r.changed;
		END IF;
	END LOOP;
	RETURN n;
END $$;

-- Deletes messages of the outbox that reached the end of their life
-- (sent, delivered, read, canceled) more than p_older_than ago, with their
-- attempt log. Dead letters stay until replayed or purged on purpose; a
-- message still waiting is never touched. An idempotency key goes with its
-- message: after this, the same key sends again. Returns how many went.
CREATE FUNCTION pgwa.purge_outbox(p_older_than interval DEFAULT '30 days') RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	n bigint;
BEGIN
	IF p_older_than IS NULL OR p_older_than < interval '1 hour' THEN
		PERFORM pgwa._raise('PW400', 'older_than must be at least 1 hour', 'older_than');
	END IF;
	WITH d AS (
		DELETE FROM pgwa.outbox o
		WHERE o.status IN ('sent', 'delivered', 'read', 'canceled')
		  AND o.updated_at < now() - p_older_than
		RETURNING 1)
	SELECT count(*) INTO n FROM d;
	RETURN n;
END $$;

-- Registers the periodic jobs with pg_cron (in the database pg_cron serves,
-- cron.database_name): reconciling the timelines of the last two days each
-- night, the retention of sent messages, raw webhook bodies, client webhook
-- deliveries and real-time events each hour, the stalled history-sync
-- check each minute, and the expiry of uploads every five minutes. Jobs keep their names, so calling it again updates
-- them. Returns {job name: job id}.
CREATE FUNCTION pgwa.schedule_maintenance(p_outbox_retention interval DEFAULT '30 days',
                                          p_webhook_retention interval DEFAULT '30 days',
                                          p_events_retention interval DEFAULT '7 days')
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	j record;
	v jsonb := '{}';
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
		PERFORM pgwa._raise('PW503', 'pg_cron is not installed in this database', NULL);
	END IF;
	FOR j IN SELECT * FROM (VALUES
		('pgwa-timeline-reconcile', '17 3 * * *', 'SELECT pgwa.reconcile_timelines(''2 days'')'),
		('pgwa-outbox-retention', '7 * * * *', format('SELECT pgwa.purge_outbox(%L)', p_outbox_retention)),
		('pgwa-webhook-retention', '27 * * * *',
		 format('SELECT pgwa.purge_webhook_events(%L), pgwa.purge_webhook_deliveries(%L)',
		        p_webhook_retention, p_webhook_retention)),
		('pgwa-events-retention', '37 * * * *', format('SELECT pgwa.purge_events(%L)', p_events_retention)),
		('pgwa-history-sync-check', '* * * * *', 'SELECT pgwa.check_stalled_history_syncs()'),
		('pgwa-upload-expiry', '*/5 * * * *', 'SELECT pgwa.expire_uploads()')) AS x(name, schedule, command)
	LOOP
		v := v || jsonb_build_object(j.name, (SELECT cron.schedule(j.name, j.schedule, j.command)));
	END LOOP;
	RETURN v;
END $$;
