#!/usr/bin/env bash
# enqueue_http: enqueue throughput through pgwa-http, against the same SQL
# call made directly over libpq.
#
# wrk, 64 connections, POST /v1/instances/{id}/messages spread at random
# over 100 instances (bench/enqueue_http.lua), against pgwa-http with its
# default thread pool (one database session per thread). The reference, run
# in the same cluster and interleaved with it, is pgbench with as many
# clients as pgwa-http has threads, each transaction the very statement
# pgwa-http prepares: SELECT status, headers::text, body FROM pgwa.http(...)
# with the same path, headers and body. Then the front's latency at a fixed
# rate: bench/http_load sends the same request at PGWA_BENCH_SEND_RATE
# (3,000/s) open loop over at most 64 connections, each request's latency
# counted from its scheduled time (wrk's closed loop at saturation measures
# mostly its own queue). fsync=on; pgwa.mode=disabled.
. "$(dirname "$0")/lib.sh"
bench_cluster -o fsync=on -o pgwa.mode=disabled

DURATION=${PGWA_BENCH_DURATION:-10}
CONNECTIONS=64
WRK_THREADS=2
FRONT_THREADS=${PGWA_BENCH_HTTP_THREADS:-4}
INSTANCES=100
BODY='{"to":"5511999990000","text":"bench"}'
PACED_RATE=${PGWA_BENCH_SEND_RATE:-3000}

bench_front "$FRONT_THREADS"
bench_tenant bench-http
bench_instances http "$INSTANCES" http://127.0.0.1:9 > "$BENCH_WORK/ids"
mapfile -t ids < "$BENCH_WORK/ids"
port=${PGWA_URL##*:}

sql_args=()
for i in "${!ids[@]}"; do
	headers="{\"host\": \"127.0.0.1:$port\", \"content-type\": \"application/json\", \"content-length\": \"${#BODY}\", \"x-api-key\": \"$TENANT_KEY\", \"x-request-id\": \"bench-$i\", \"x-pgwa-client-addr\": \"127.0.0.1\"}"
	echo "SELECT status, headers::text, body FROM pgwa.http('POST', '/v1/instances/${ids[$i]}/messages', '{}'::jsonb, '$headers'::jsonb, '$BODY');" \
		> "$BENCH_WORK/http_$i.sql"
	sql_args+=(-f "$BENCH_WORK/http_$i.sql")
done

# A request that works, before measuring.
status=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "X-API-Key: $TENANT_KEY" \
	-H 'Content-Type: application/json' --data-binary "$BODY" "$PGWA_URL/v1/instances/${ids[0]}/messages")
[ "$status" = 202 ] || { echo "bench: a test request got HTTP $status" >&2; exit 1; }

conditions "wrk -t$WRK_THREADS -c$CONNECTIONS -d${DURATION}s --latency; pgwa-http PGWA_HTTP_THREADS=$FRONT_THREADS (access log on, to a file);" \
	"reference: pgbench -n -M prepared -c $FRONT_THREADS -j 2 -T $DURATION calling pgwa.http() directly; $INSTANCES instances;" \
	"paced: bench/http_load send, $PACED_RATE requests/s open loop for ${DURATION}s over at most $CONNECTIONS connections;" \
	"wrk, pgwa-http and PostgreSQL share the machine's CPUs; $BENCH_RUNS runs, interleaved, CHECKPOINT before each"

# to_ms VALUE_WITH_UNIT: wrk prints 950.00us, 1.20ms, 1.05s.
to_ms() {
	awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; print n }'
}

# run_wrk: sets WRK_RPS, WRK_P50, WRK_P99 (ms) and WRK_BAD (non-2xx or socket errors).
run_wrk() {
	local out
	q "CHECKPOINT" >/dev/null
	out=$(PGWA_BENCH_IDS="$BENCH_WORK/ids" PGWA_BENCH_KEY="$TENANT_KEY" \
		wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency \
		-s "$BENCH_ROOT/bench/enqueue_http.lua" "$PGWA_URL" 2>&1)
	WRK_RPS=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
	WRK_P50=$(to_ms "$(echo "$out" | awk '$1 == "50%" {print $2}')")
	WRK_P99=$(to_ms "$(echo "$out" | awk '$1 == "99%" {print $2}')")
	WRK_BAD=$(echo "$out" | awk '/Non-2xx or 3xx responses:/ {n += $NF} /Socket errors:/ {
		for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) n += $i } END {print n + 0}')
}

# run_sql: sets SQL_TPS and SQL_LAT (ms, average).
run_sql() {
	local out
	q "CHECKPOINT" >/dev/null
	out=$(pgbench -n -M prepared -c "$FRONT_THREADS" -j 2 -T "$DURATION" "${sql_args[@]}" 2>&1) || {
		echo "bench: pgbench failed:" >&2; echo "$out" | tail -5 >&2
	}
	SQL_TPS=$(echo "$out" | awk '/^tps = / {print $3; exit}')
	SQL_LAT=$(echo "$out" | awk '/^latency average = / {print $4; exit}')
}

# run_paced: sets PACED_P50 and PACED_P99 (ms) at PACED_RATE.
run_paced() {
	local out
	q "CHECKPOINT" >/dev/null
	out=$("$BENCH_ROOT/bench/http_load" send "$PGWA_URL" "$TENANT_KEY" "$PACED_RATE" "$DURATION" "$CONNECTIONS" \
		"$BENCH_WORK/ids")
	set -- $out
	[ "$6" = 0 ] || { echo "bench: $6 paced requests failed" >&2; bad=$((bad + $6)); }
	PACED_P50=${10}; PACED_P99=${12}
}

rps=(); p50=(); p99=(); tps=(); lat=(); pp50=(); pp99=(); bad=0
for r in $(seq "$BENCH_RUNS"); do
	if [ $((r % 2)) = 1 ]; then run_wrk; run_sql; else run_sql; run_wrk; fi
	run_paced
	rps+=("$WRK_RPS"); p50+=("$WRK_P50"); p99+=("$WRK_P99"); tps+=("${SQL_TPS:-0}"); lat+=("${SQL_LAT:-0}")
	pp50+=("$PACED_P50"); pp99+=("$PACED_P99")
	bad=$((bad + WRK_BAD))
	printf '  run %d: HTTP %.0f req/s (p50 %.1f ms, p99 %.1f ms), SQL pgwa.http() %.0f tx/s (avg %.2f ms); at %s/s: p50 %.1f ms, p99 %.1f ms\n' \
		"$r" "$WRK_RPS" "$WRK_P50" "$WRK_P99" "${SQL_TPS:-0}" "${SQL_LAT:-0}" "$PACED_RATE" "$PACED_P50" "$PACED_P99"
done

# Every HTTP request was a 202 and queued one message.
answered=$(grep '"method":"POST"' "$BENCH_WORK/http.log" | grep -c '/messages"' || true)
not_202=$(grep '"method":"POST"' "$BENCH_WORK/http.log" | grep '/messages"' | grep -vc '"status":202' || true)
echo "  $answered POST .../messages in the access log, $not_202 of them not 202; wrk saw $bad non-2xx or socket errors"

h=$(median "${rps[@]}")
s=$(median "${tps[@]}")
result "HTTP req/s (median)" "$(fmt "$h")"
result "HTTP latency p50 / p99 at saturation, ms (median)" "$(fmt "$(median "${p50[@]}")" 1) / $(fmt "$(median "${p99[@]}")" 1)"
result "HTTP latency p50 / p99 at ${PACED_RATE}/s, ms (median)" "$(fmt "$(median "${pp50[@]}")" 1) / $(fmt "$(median "${pp99[@]}")" 1) (open loop, $CONNECTIONS connections; target p99 < 20)"
result "SQL pgwa.http() over libpq tx/s (median)" "$(fmt "$s")"
result "ratio HTTP/SQL" "$(awk -v a="$h" -v b="$s" 'BEGIN {printf "%.0f%%", a*100/b}') (target >= 60%)"
result "noise between runs (max-min)/median" "HTTP $(spread "${rps[@]}"), SQL $(spread "${tps[@]}")"
conditions_end
