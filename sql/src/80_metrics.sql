-------------------------------------------------------------------------------
-- Metrics: GET /metrics in Prometheus text exposition format 0.0.4.
-- Counters come from pgwa.enqueue_counts / pgwa.delivery_counts (kept by
-- enqueue and the dispatcher, survive restarts), the backlog from the partial
-- index outbox_pending, and the dispatcher's live gauges and histograms from
-- shared memory (reset when the server restarts). Nothing here scans the
-- outbox as a whole.
-------------------------------------------------------------------------------

-- The shared-memory part, already formatted: pgwa_transfers_in_flight and
-- the histograms pgwa_broker_request_duration_seconds and
-- pgwa_send_latency_seconds. They belong to the one dispatcher of the server;
-- with p_served false (a database it does not serve) they read as zero.
CREATE FUNCTION pgwa._metrics_shared(p_served boolean) RETURNS text
	AS 'MODULE_PATHNAME', 'pgwa_metrics_shared' LANGUAGE C VOLATILE STRICT;

-- A label value as the format wants it: backslash, double quote and line
-- feed escaped.
CREATE FUNCTION pgwa._prom_escape(p text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
	SELECT replace(replace(replace(p, E'\\', E'\\\\'), '"', E'\\"'), E'\n', E'\\n')
$$;

-- One metric family: HELP, TYPE and its sample lines (text, may be NULL).
CREATE FUNCTION pgwa._prom_family(p_name text, p_type text, p_help text, p_samples text)
RETURNS text
LANGUAGE sql IMMUTABLE AS $$
	SELECT format(E'# HELP %s %s\n# TYPE %s %s\n', p_name, p_help, p_name, p_type)
	       || coalesce(p_samples || E'\n', '')
$$;

-- The history syncs in exposition format (pgwa.metrics): messages and
-- contacts imported, progress, state and duration per instance.
CREATE FUNCTION pgwa._history_sync_metrics() RETURNS text
LANGUAGE sql STABLE AS $$
	WITH h AS (
		SELECT format('instance_name="%s",instance_id="%s"', pgwa._prom_escape(i.name), i.id) AS labels, i.name, s.*,
		       extract(epoch FROM coalesce(s.completed_at, now()) - s.started_at) AS seconds
		FROM pgwa.history_syncs s JOIN pgwa.instances i ON i.id = s.instance_id)
	SELECT concat(
		pgwa._prom_family('pgwa_history_messages_imported_total', 'counter',
			'Messages imported by coexistence history sync (history chunks and their media).',
			(SELECT string_agg(format('pgwa_history_messages_imported_total{%s} %s', labels, messages_imported), E'\n'
			                   ORDER BY name COLLATE "C") FROM h)),
		pgwa._prom_family('pgwa_history_contacts_imported_total', 'counter',
			'Contacts added or updated by smb_app_state_sync.',
			(SELECT string_agg(format('pgwa_history_contacts_imported_total{%s} %s', labels, contacts_imported), E'\n'
			                   ORDER BY name COLLATE "C") FROM h)),
		pgwa._prom_family('pgwa_history_sync_progress_percent', 'gauge',
			'Progress of the history sync, as the last chunks said (0-100).',
			(SELECT string_agg(format('pgwa_history_sync_progress_percent{%s} %s', labels, progress), E'\n'
			                   ORDER BY name COLLATE "C") FROM h)),
		pgwa._prom_family('pgwa_history_sync_state', 'gauge',
			'The history sync state of an instance (1 for its current state).',
			(SELECT string_agg(format('pgwa_history_sync_state{%s,state="%s"} 1', labels, status), E'\n'
			                   ORDER BY name COLLATE "C") FROM h)),
		pgwa._prom_family('pgwa_history_sync_duration_seconds', 'gauge',
			'Time from the first contacts or chunk to completion (so far, while syncing).',
			(SELECT string_agg(format('pgwa_history_sync_duration_seconds{%s} %s', labels, round(seconds::numeric, 3)),
			                   E'\n' ORDER BY name COLLATE "C") FROM h WHERE started_at IS NOT NULL)))
$$;

-- Every metric of this database, in exposition format (ends with a line feed).
CREATE FUNCTION pgwa.metrics() RETURNS text
LANGUAGE sql VOLATILE AS $$
	WITH m AS (
		SELECT *, pgwa._dispatcher_serves_here() AS up FROM pgwa.mode()
	), counts AS (
		SELECT format('instance_name="%s",instance_id="%s",type="%s"', pgwa._prom_escape(i.name),
		              i.id, pgwa._prom_escape(k.type)) AS labels,
		       coalesce(q.queued, 0) AS queued, coalesce(d.sent, 0) AS sent,
		       coalesce(d.retried, 0) AS retried, coalesce(d.dead, 0) AS dead,
		       i.name, k.type
		FROM (SELECT instance_id, type FROM pgwa.enqueue_counts
		      UNION SELECT instance_id, type FROM pgwa.delivery_counts) k
		JOIN pgwa.instances i ON i.id = k.instance_id
		LEFT JOIN pgwa.enqueue_counts q ON q.instance_id = k.instance_id AND q.type = k.type
		LEFT JOIN pgwa.delivery_counts d ON d.instance_id = k.instance_id AND d.type = k.type
	), failures AS (
		SELECT f.class, f.ord, coalesce(f.n, 0) AS n
		FROM (SELECT sum(fail_timeout) AS t, sum(fail_connect) AS c, sum(fail_http_4xx) AS h4,
		             sum(fail_http_5xx) AS h5, sum(fail_http_429) AS h429,
		             sum(fail_disconnected) AS dis, sum(fail_other) AS o
		      FROM pgwa.delivery_counts) s,
		LATERAL (VALUES (1, 'timeout', s.t), (2, 'connect', s.c), (3, 'http_4xx', s.h4),
		                (4, 'http_5xx', s.h5), (5, 'http_429', s.h429),
		                (6, 'disconnected', s.dis), (7, 'other', s.o)) f(ord, class, n)
	), backlog AS (
		-- pending messages (an index-only count on outbox_pending) plus the one in flight
		SELECT format('instance_name="%s",instance_id="%s"', pgwa._prom_escape(i.name), i.id) AS labels,
		       coalesce(p.n, 0) + (s.inflight_seq IS NOT NULL)::int AS n, i.name
		FROM pgwa.instance_state s
		JOIN pgwa.instances i ON i.id = s.instance_id
		LEFT JOIN (SELECT o.instance_id, count(*) AS n FROM pgwa.outbox o
		           WHERE o.status IN ('queued', 'scheduled', 'failed')
		           GROUP BY o.instance_id) p ON p.instance_id = s.instance_id
	)
	SELECT concat(
		pgwa._prom_family('pgwa_dispatcher_up', 'gauge',
			'Whether the dispatcher is running and serving this database (1) or not (0).',
			(SELECT format('pgwa_dispatcher_up %s', m.up::int) FROM m)),
		pgwa._prom_family('pgwa_mode_info', 'gauge',
			'Delivery mode: effective mode and the raw pgwa.mode setting.',
			(SELECT format('pgwa_mode_info{mode="%s",raw="%s"} 1', pgwa._prom_escape(m.mode),
			               pgwa._prom_escape(m.raw_mode)) FROM m)),
		(SELECT pgwa._metrics_shared(m.up) FROM m),
		pgwa._prom_family('pgwa_messages_queued_total', 'counter',
			'Messages accepted into the outbox (idempotent replays excluded).',
			(SELECT string_agg(format('pgwa_messages_queued_total{%s} %s', labels, queued), E'\n'
			                   ORDER BY name COLLATE "C", type COLLATE "C") FROM counts)),
		pgwa._prom_family('pgwa_messages_sent_total', 'counter',
			'Messages accepted by the broker (or recorded as sent in mode dryrun).',
			(SELECT string_agg(format('pgwa_messages_sent_total{%s} %s', labels, sent), E'\n'
			                   ORDER BY name COLLATE "C", type COLLATE "C") FROM counts)),
		pgwa._prom_family('pgwa_send_retries_total', 'counter',
			'Failed send attempts that will be retried.',
			(SELECT string_agg(format('pgwa_send_retries_total{%s} %s', labels, retried), E'\n'
			                   ORDER BY name COLLATE "C", type COLLATE "C") FROM counts)),
		pgwa._prom_family('pgwa_messages_dead_total', 'counter',
			'Messages that became dead letters (permanent failure or attempts exhausted).',
			(SELECT string_agg(format('pgwa_messages_dead_total{%s} %s', labels, dead), E'\n'
			                   ORDER BY name COLLATE "C", type COLLATE "C") FROM counts)),
		pgwa._prom_family('pgwa_send_failures_total', 'counter',
			'Failed send attempts by class of error.',
			(SELECT string_agg(format('pgwa_send_failures_total{class="%s"} %s', class, n), E'\n'
			                   ORDER BY ord) FROM failures)),
		pgwa._prom_family('pgwa_instance_backlog_messages', 'gauge',
			'Messages of an instance not yet sent: queued, scheduled, failed awaiting retry, and in flight.',
			(SELECT string_agg(format('pgwa_instance_backlog_messages{%s} %s', labels, n), E'\n'
			                   ORDER BY name COLLATE "C") FROM backlog)),
		pgwa._prom_family('pgwa_backlog_messages', 'gauge',
			'Messages of all instances not yet sent, in flight included.',
			(SELECT format('pgwa_backlog_messages %s', coalesce(sum(n), 0)) FROM backlog)),
		-- inbound webhooks (seed 000): whatsapp_webhook_events_total{result,reason,payload_type}
		(SELECT string_agg(l, E'\n') || E'\n' FROM pgwa.webhook_metrics() l),
		pgwa._client_webhook_metrics(),
		pgwa._history_sync_metrics())
$$;
