#!/usr/bin/env bash
# scheduled: how late scheduled messages reach the broker.
#
# 1,000 messages with scheduledFor spread evenly over the next 20 s (one
# every 20 ms, starting 2 s ahead), round robin over 100 instances with
# delays 0, queued in one statement through pgwa.enqueue(); pgwa.mode=http,
# the mock broker answers at once. Lateness = mock receive time t (when the
# whole request body has arrived) - scheduledFor; negative would mean sent
# early. fsync=on.
. "$(dirname "$0")/lib.sh"
bench_cluster -o fsync=on -o pgwa.mode=http

COUNT=1000
SPREAD_MS=20000
LEAD_MS=2000
INSTANCES=100

bench_mock 2
bench_tenant bench-scheduled
q "CREATE TABLE bench_set AS
   SELECT g AS n, pgwa.create_instance('$TENANT_ID', 'sch-' || g, 'broker', '$MOCK_URL', 'bench-key',
                                       '{\"delay_min_ms\":0,\"delay_max_ms\":0}') AS id
   FROM generate_series(1, $INSTANCES) g" >/dev/null
q "CREATE TABLE bench_rx (run int, message_id uuid, t double precision)" >/dev/null

conditions "$COUNT messages, scheduledFor from now+$((LEAD_MS / 1000)) s every $((SPREAD_MS / COUNT)) ms over $((SPREAD_MS / 1000)) s, $INSTANCES instances, delays 0;" \
	"mock broker answers 200 at once; $BENCH_RUNS runs; percentiles over each run's $COUNT messages, medians over runs"

declare -A fig
for r in $(seq "$BENCH_RUNS"); do
	curl -sf -X POST "$MOCK_URL/__mock/reset" >/dev/null
	q "TRUNCATE pgwa.attempts, pgwa.messages, pgwa.outbox" >/dev/null
	q "SELECT count(*) FROM (
	     SELECT b.id, g, clock_timestamp() + make_interval(secs => ($LEAD_MS + g * $SPREAD_MS / $COUNT) / 1000.0) AS at
	     FROM generate_series(0, $COUNT - 1) g JOIN bench_set b ON b.n = g % $INSTANCES + 1 ORDER BY g) x,
	   LATERAL pgwa.enqueue(x.id, jsonb_build_object('to', '5511999990000', 'text', 'scheduled ' || x.g,
	                                                 'scheduledFor', x.at)) e" >/dev/null
	sleep $(( (LEAD_MS + SPREAD_MS) / 1000 ))
	for _ in $(seq 100); do
		[ "$(curl -sf "$MOCK_URL/__mock/count" | jq -r .count)" -ge "$COUNT" ] && break
		sleep 0.1
	done
	curl -sf "$MOCK_URL/__mock/requests?path_prefix=/instances/sch-" |
		jq -r --arg r "$r" '.[] | [$r, .headers["idempotency-key"], .t] | @tsv' > "$BENCH_WORK/rx"
	psql -X -q -v ON_ERROR_STOP=1 -c "\\copy bench_rx FROM '$BENCH_WORK/rx'"
	IFS='|' read -r n dup l0 l50 l99 lmax <<< "$(q "
		WITH j AS (
			SELECT r.t - extract(epoch FROM o.scheduled_for) * 1000 AS late_ms
			FROM bench_rx r JOIN pgwa.outbox o ON o.id = r.message_id WHERE r.run = $r)
		SELECT count(*),
		       (SELECT count(*) - count(DISTINCT message_id) FROM bench_rx WHERE run = $r),
		       round(min(late_ms)::numeric, 2),
		       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY late_ms)::numeric, 2),
		       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY late_ms)::numeric, 2),
		       round(max(late_ms)::numeric, 2)
		FROM j")"
	[ "$n" = "$COUNT" ] || echo "  run $r: only $n of $COUNT messages reached the broker"
	[ "$dup" = 0 ] || echo "  run $r: $dup duplicate deliveries"
	printf '  run %d: lateness min %s ms, p50 %s ms, p99 %s ms, max %s ms\n' "$r" "$l0" "$l50" "$l99" "$lmax"
	fig[min]+="$l0 "; fig[p50]+="$l50 "; fig[p99]+="$l99 "; fig[max]+="$lmax "
done

result "lateness p50 / p99, ms (target p99 <= 100)" "$(median ${fig[p50]}) / $(median ${fig[p99]})"
result "lateness min / max, ms (median of runs)" "$(median ${fig[min]}) / $(median ${fig[max]})"
result "noise between runs (max-min)/median" "p50 $(spread ${fig[p50]}), p99 $(spread ${fig[p99]})"
conditions_end
