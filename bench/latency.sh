#!/usr/bin/env bash
# latency: enqueue-to-broker latency on an idle system.
#
# One client (bench/enqueue_client, C + libpq, one persistent connection)
# enqueues 500 messages one at a time, 20 ms apart, round robin over 10
# instances with delays 0; pgwa.mode=http, the mock broker answers at once.
# For every message:
#   commit -> broker   mock receive time t (the mock's clock, when the whole
#                      request body has arrived) minus the time the client got
#                      the reply of its autocommitted SELECT pgwa.send(): the
#                      commit is done and visible by then. Main figure.
#   call -> broker     the same minus the time the client sent the call: adds
#                      the enqueue itself and one round trip.
#   database view      attempts.started_at - outbox.created_at (transaction
#                      start of the enqueue to the dispatcher's start of the
#                      request), both from the database clock.
# The client and the mock read the same CLOCK_REALTIME. fsync=on.
. "$(dirname "$0")/lib.sh"
bench_cluster -o fsync=on -o pgwa.mode=http

COUNT=${PGWA_BENCH_LATENCY_COUNT:-500}
INTERVAL_MS=20
INSTANCES=10

bench_mock 2
bench_tenant bench-latency
mapfile -t ids < <(bench_instances lat "$INSTANCES" "$MOCK_URL")
q "CREATE TABLE bench_tx (run int, message_id uuid, t_call double precision, t_commit double precision);
   CREATE TABLE bench_rx (run int, message_id uuid, t double precision);" >/dev/null

conditions "one client, $COUNT messages, one every $INTERVAL_MS ms (after the previous reply), $INSTANCES instances, delays 0;" \
	"mock broker answers 200 at once; $BENCH_RUNS runs; percentiles over each run's $COUNT messages, medians over runs"

declare -A fig
for r in $(seq "$BENCH_RUNS"); do
	curl -sf -X POST "$MOCK_URL/__mock/reset" >/dev/null
	sleep 1   # idle: nothing in flight, the dispatcher asleep
	"$BENCH_ROOT/bench/enqueue_client" "$COUNT" "$INTERVAL_MS" "${ids[@]}" > "$BENCH_WORK/tx"
	for _ in $(seq 100); do
		[ "$(curl -sf "$MOCK_URL/__mock/count" | jq -r .count)" -ge "$COUNT" ] && break
		sleep 0.1
	done
	curl -sf "$MOCK_URL/__mock/requests?path_prefix=/instances/lat-" |
		jq -r '.[] | [.headers["idempotency-key"], .t] | @tsv' > "$BENCH_WORK/rx"
	psql -X -q -v ON_ERROR_STOP=1 <<- EOF
		CREATE TEMP TABLE tx (message_id uuid, t_call double precision, t_commit double precision);
		CREATE TEMP TABLE rx (message_id uuid, t double precision);
		\copy tx FROM '$BENCH_WORK/tx'
		\copy rx FROM '$BENCH_WORK/rx'
		INSERT INTO bench_tx SELECT $r, * FROM tx;
		INSERT INTO bench_rx SELECT $r, * FROM rx;
	EOF
	IFS='|' read -r n dup c50 c99 cmax k50 k99 d50 d99 e50 <<< "$(q "
		WITH j AS (
			SELECT r.t - x.t_commit AS commit_ms, r.t - x.t_call AS call_ms,
			       x.t_commit - x.t_call AS enqueue_ms
			FROM bench_tx x JOIN bench_rx r USING (run, message_id) WHERE x.run = $r),
		d AS (
			SELECT extract(epoch FROM a.started_at - o.created_at) * 1000 AS db_ms
			FROM bench_tx x JOIN pgwa.outbox o ON o.id = x.message_id
			JOIN pgwa.attempts a ON a.instance_id = o.instance_id AND a.seq = o.seq
			WHERE x.run = $r)
		SELECT (SELECT count(*) FROM j),
		       (SELECT count(*) - count(DISTINCT message_id) FROM bench_rx WHERE run = $r),
		       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY commit_ms)::numeric, 2),
		       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY commit_ms)::numeric, 2),
		       round(max(commit_ms)::numeric, 2),
		       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY call_ms)::numeric, 2),
		       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY call_ms)::numeric, 2),
		       (SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY db_ms)::numeric, 2) FROM d),
		       (SELECT round(percentile_cont(0.99) WITHIN GROUP (ORDER BY db_ms)::numeric, 2) FROM d),
		       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY enqueue_ms)::numeric, 2)
		FROM j")"
	[ "$n" = "$COUNT" ] || echo "  run $r: only $n of $COUNT messages reached the broker"
	[ "$dup" = 0 ] || echo "  run $r: $dup duplicate deliveries"
	printf '  run %d: commit->broker p50 %s ms, p99 %s ms, max %s ms; call->broker p50 %s, p99 %s; database view p50 %s, p99 %s; enqueue call p50 %s ms\n' \
		"$r" "$c50" "$c99" "$cmax" "$k50" "$k99" "$d50" "$d99" "$e50"
	fig[c50]+="$c50 "; fig[c99]+="$c99 "; fig[k50]+="$k50 "; fig[k99]+="$k99 "
	fig[d50]+="$d50 "; fig[d99]+="$d99 "; fig[e50]+="$e50 "
done

result "commit -> broker p50 / p99, ms (targets 5 / 25)" "$(median ${fig[c50]}) / $(median ${fig[c99]})"
result "call -> broker p50 / p99, ms" "$(median ${fig[k50]}) / $(median ${fig[k99]})"
result "database view p50 / p99, ms" "$(median ${fig[d50]}) / $(median ${fig[d99]})"
result "enqueue call (client round trip) p50, ms" "$(median ${fig[e50]})"
result "noise between runs (max-min)/median" "p50 $(spread ${fig[c50]}), p99 $(spread ${fig[c99]})"
conditions_end
