#!/usr/bin/env bash
# history: importing a coexistence history sync (seed 002) through SQL:
# 100,000 messages in 100 Cloud API history webhooks of 1,000 messages
# each (50 threads of 20 messages, 2,000 contacts spread over several
# chunks, three phases), stored one per transaction in a random order by
# pgwa.ingest_meta(), applied by the inbound appliers. The rate counts the
# messages imported over the time from the first webhook received to the
# last applied; the ingest call's own time is reported too (a webhook must
# be answered fast however large). Each run imports into a fresh tenant and
# instance. fsync=on.
. "$(dirname "$0")/lib.sh"
bench_cluster -o fsync=on -o pgwa.mode=disabled

CHUNKS=100
PER_CHUNK=1000

q "CREATE FUNCTION bench_chunk(k int, p_threads int, p_per int) RETURNS text LANGUAGE plpgsql AS \$\$
DECLARE
	v_phase int := CASE WHEN k <= 20 THEN 0 WHEN k <= 60 THEN 1 ELSE 2 END;
	v_order int := k - CASE WHEN k <= 20 THEN 0 WHEN k <= 60 THEN 20 ELSE 60 END;
	threads jsonb := '[]';
	msgs    jsonb;
	c       text;
BEGIN
	FOR t IN 1..p_threads LOOP
		c := (5511800000000 + (k * 37 + t) % 2000)::text;
		SELECT jsonb_agg(jsonb_build_object(
			'from', CASE WHEN j % 3 = 0 THEN '15550783881' ELSE c END,
			'id', format('wamid.bench.%s.%s.%s', k, t, j),
			'timestamp', (1740000000 + k * 3600 + t * 60 + j)::text,
			'type', 'text', 'text', jsonb_build_object('body', format('Mensagem %s do historico, conversa %s', j, t)),
			'history_context', jsonb_build_object('status', CASE WHEN j % 3 = 0 THEN 'DELIVERED' ELSE 'READ' END))
			ORDER BY j) INTO msgs FROM generate_series(1, p_per) j;
		threads := threads || jsonb_build_array(jsonb_build_object('id', c, 'messages', msgs));
	END LOOP;
	RETURN jsonb_build_object('object', 'whatsapp_business_account', 'entry', jsonb_build_array(jsonb_build_object(
		'id', '102290129340398', 'changes', jsonb_build_array(jsonb_build_object('field', 'history', 'value',
		jsonb_build_object('messaging_product', 'whatsapp',
			'metadata', jsonb_build_object('display_phone_number', '15550783881', 'phone_number_id', 'PNID'),
			'history', jsonb_build_array(jsonb_build_object(
				'metadata', jsonb_build_object('phase', v_phase, 'chunk_order', v_order, 'progress', k),
				'threads', threads))))))))::text;
END \$\$" >/dev/null
q "CREATE TABLE bench_chunks AS SELECT k, bench_chunk(k, 50, $((PER_CHUNK / 50))) AS body FROM generate_series(1, $CHUNKS) k" >/dev/null
q "CREATE TABLE bench_calls (run int, k int, ms double precision)" >/dev/null
size=$(q "SELECT pg_size_pretty(avg(octet_length(body))::bigint) FROM bench_chunks")

conditions "$CHUNKS history webhooks of $PER_CHUNK messages (50 threads of 20, about $size each), phases 0-2, 2,000 contacts;" \
	"stored in a random order, one pgwa.ingest_meta() per transaction from one session, applied by" \
	"pgwa.inbound_workers=$(q "SHOW pgwa.inbound_workers") appliers; a fresh tenant and instance per run; $BENCH_RUNS runs, CHECKPOINT before each"

rates=(); p50s=(); p99s=()
for r in $(seq "$BENCH_RUNS"); do
	tenant=$(q "SELECT tenant_id FROM pgwa.create_tenant('bench-history-$r')")
	inst=$(q "SELECT pgwa.create_instance('$tenant', 'hist-$r', 'meta', 'http://127.0.0.1:9', 'k',
	          '{\"settings\":{\"phone_number_id\":\"pn-bench-$r\"}}')")
	q "SELECT pgwa.set_webhook_secret('$inst', 'bench-history-secret-$r')" >/dev/null
	q "CHECKPOINT" >/dev/null
	psql -X -q -v ON_ERROR_STOP=1 -c "DO \$\$
	DECLARE c record; t0 timestamptz; res jsonb;
	BEGIN
		FOR c IN SELECT k, replace(body, 'PNID', 'pn-bench-$r') AS body FROM bench_chunks ORDER BY random() LOOP
			t0 := clock_timestamp();
			res := pgwa.ingest_meta('{\"x-api-key\":\"bench-history-secret-$r\"}', c.body);
			IF res->>'status' <> 'received' THEN RAISE EXCEPTION 'chunk % was %', c.k, res; END IF;
			INSERT INTO bench_calls VALUES ($r, c.k, 1000 * extract(epoch FROM clock_timestamp() - t0));
			COMMIT;
		END LOOP;
	END \$\$"
	for i in $(seq 1200); do
		[ "$(q "SELECT count(*) FROM pgwa.webhook_events WHERE instance_id = '$inst' AND status IN ('received', 'failed')")" = 0 ] && break
		sleep 0.1
	done
	read -r rate p50 p99 sync n <<< "$(q "SELECT round(s.messages_imported / extract(epoch FROM (SELECT max(applied_at) - min(received_at)
	            FROM pgwa.webhook_events WHERE instance_id = '$inst'))) || ' ' ||
	          (SELECT round(percentile_disc(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1) || ' ' ||
	                  round(percentile_disc(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1) FROM bench_calls WHERE run = $r) || ' ' ||
	          s.status || ' ' || (SELECT count(*) FROM pgwa.messages WHERE instance_id = '$inst')
	   FROM pgwa.history_syncs s WHERE s.instance_id = '$inst'")"
	[ "$sync" = completed ] && [ "$n" = $((CHUNKS * PER_CHUNK)) ] ||
		{ echo "bench: run $r ended $sync with $n messages" >&2; exit 1; }
	rates+=("$rate"); p50s+=("$p50"); p99s+=("$p99")
	printf '  run %d: %s messages/s imported end to end; ingest call p50 %s ms, p99 %s ms; %s, %s messages\n' \
		"$r" "$rate" "$p50" "$p99" "$sync" "$n"
done
result "history messages/s, end to end (median)" "$(fmt "$(median "${rates[@]}")") (spread $(spread "${rates[@]}"); target >= 20,000)"
result "ingest call per 1,000-message webhook, ms" "p50 $(fmt "$(median "${p50s[@]}")" 1), p99 $(fmt "$(median "${p99s[@]}")" 1)"
conditions_end
