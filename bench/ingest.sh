#!/usr/bin/env bash
# ingest: inbound webhook throughput and latency, through SQL and through
# pgwa-http, for a realistic mix of seed-000 MESSAGE_INBOUND envelopes:
#   20% redeliveries of an event already stored (duplicates),
#   40% new messages from 1,000 existing contacts (lead, conversation and
#       open ticket exist),
#   40% messages from new contacts (a lead, conversation and ticket each).
# SQL: pgbench, 8 clients, each transaction pgwa.ingest_webhook() (check and
# store raw; the inbound applier applies in batches meanwhile). HTTP: wrk, 64
# connections, POST /api/integrations/whatsapp/webhook through pgwa-http (8
# sessions). Two rates per run: stored (the callers' rate; p99 from pgbench's
# per-transaction log and wrk's latency distribution) and applied, end to
# end (events of the run / from the first received to the last applied,
# waiting for the applier to drain), with the received-to-applied p99. Then
# the HTTP latency at the target rate: bench/http_load sends 3,000
# events/s open loop over 64 connections (each request at its time, its
# latency counted from that time, waits for a free connection included).
# fsync=on.
. "$(dirname "$0")/lib.sh"
bench_cluster -o fsync=on -o pgwa.mode=disabled

DURATION=${PGWA_BENCH_DURATION:-10}
CLIENTS=8
CONNECTIONS=64
# the HTTP target rate, offered open loop (bench/http_load.c) to read the
# latency at that rate; wrk's closed loop measures the most the route takes
PACED_RATE=${PGWA_BENCH_INGEST_RATE:-3000}
# pgwa-http's sessions: each ingest waits for its commit's WAL flush, so
# more sessions than CPUs keep the flushes full (8 here; the default is 4).
FRONT_THREADS=${PGWA_BENCH_INGEST_HTTP_THREADS:-8}
SECRET=bench-ingest-secret-0001

bench_front "$FRONT_THREADS"
bench_tenant bench-ingest
INST=$(bench_instances in 1 http://127.0.0.1:9)
q "SELECT pgwa.set_webhook_secret('$INST', '$SECRET')" >/dev/null
q "CREATE FUNCTION bench_env(p_id text, p_phone text) RETURNS jsonb LANGUAGE sql STABLE
   RETURN jsonb_build_object('id', p_id, 'type', 'MESSAGE_INBOUND', 'instanceId', 'in-1',
          'timestamp', 1714655100, 'payload', jsonb_build_object(
          'contact', jsonb_build_object('phone', p_phone, 'name', 'Bench', 'pushName', 'bench'),
          'message', jsonb_build_object('conversation', 'Oi! Quero saber do meu pedido'),
          'metadata', jsonb_build_object('broker', 'baileys')))" >/dev/null
# 1,000 known contacts and 5,000 stored events to redeliver.
q "SELECT count(pgwa.ingest_webhook('broker', '{\"x-api-key\":\"$SECRET\"}',
          bench_env('seed-' || g, (5511900000000 + g % 1000)::text))) FROM generate_series(1, 5000) g" >/dev/null

cat > "$BENCH_WORK/ingest.sql" <<SQL
\set r random(1, 100)
\set dup random(1, 5000)
\set known random(0, 999)
\set fresh random(1, 999999999)
SELECT pgwa.ingest_webhook('broker', '{"x-api-key":"$SECRET"}',
	CASE WHEN :r <= 20 THEN bench_env('seed-' || :dup, (5511900000000 + :dup % 1000)::text)
	     WHEN :r <= 60 THEN bench_env('sql-' || :client_id || '-' || :fresh, (5511900000000 + :known)::text)
	     ELSE bench_env('sql-' || :client_id || '-' || :fresh, (5512000000000 + :fresh)::text) END);
SQL

cat > "$BENCH_WORK/ingest.lua" <<LUA
-- the same mix as ingest.sql, over HTTP
local n = 0
math.randomseed(os.time())
local function env(id, phone)
  return '{"id":"' .. id .. '","type":"MESSAGE_INBOUND","instanceId":"in-1","timestamp":1714655100,'
    .. '"payload":{"contact":{"phone":"' .. phone .. '","name":"Bench","pushName":"bench"},'
    .. '"message":{"conversation":"Oi! Quero saber do meu pedido"},"metadata":{"broker":"baileys"}}}'
end
request = function()
  n = n + 1
  local r = math.random(1, 100)
  local body
  if r <= 20 then
    local d = math.random(1, 5000)
    body = env("seed-" .. d, tostring(5511900000000 + d % 1000))
  else
    local id = "http-" .. tostring(math.random(1, 999999999)) .. "-" .. n
    if r <= 60 then body = env(id, tostring(5511900000000 + math.random(0, 999)))
    else body = env(id, tostring(5512000000000 + math.random(1, 999999999))) end
  end
  return wrk.format("POST", "/api/integrations/whatsapp/webhook",
    { ["Content-Type"] = "application/json", ["X-API-Key"] = "$SECRET" }, body)
end
LUA

# A request that works, before measuring.
status=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "X-API-Key: $SECRET" -H 'Content-Type: application/json' \
	--data-binary "$(q "SELECT bench_env('probe', '5511900000001')")" "$PGWA_URL/api/integrations/whatsapp/webhook")
[ "$status" = 202 ] || { echo "bench: a test webhook got HTTP $status" >&2; exit 1; }

conditions "mix: 20% duplicates, 40% existing contacts (1,000), 40% new contacts; seed-000 envelopes, text messages;" \
	"SQL: pgbench -n -M prepared -c $CLIENTS -j 2 -T $DURATION, one pgwa.ingest_webhook() per transaction;" \
	"HTTP: wrk -t2 -c$CONNECTIONS -d${DURATION}s through pgwa-http PGWA_HTTP_THREADS=$FRONT_THREADS (access log to a file);" \
	"HTTP paced: bench/http_load, $PACED_RATE requests/s open loop for ${DURATION}s over at most $CONNECTIONS connections;" \
	"every event is checked and stored raw in its request, then applied by the inbound applier (lead, conversation, message, ticket, events rows, NOTIFY);" \
	"$BENCH_RUNS runs of each, CHECKPOINT before each; wrk, pgwa-http and PostgreSQL share the CPUs"

to_ms() {
	awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; print n }'
}

# drain FROM_ID: waits until the applier has applied every event after
# FROM_ID, then prints "applied_per_s p99_ms" for them: the events over the
# time from the first received to the last applied, and the 99th percentile
# of received-to-applied.
drain() {
	local i
	for i in $(seq 600); do
		[ "$(q "SELECT count(*) FROM pgwa.webhook_events WHERE id > $1 AND status IN ('received', 'failed')")" = 0 ] && break
		sleep 0.2
	done
	q "SELECT round(count(*) / extract(epoch FROM max(applied_at) - min(received_at))) || ' ' ||
	          round(1000 * extract(epoch FROM percentile_disc(0.99) WITHIN GROUP (ORDER BY applied_at - received_at))::numeric, 1)
	   FROM pgwa.webhook_events WHERE id > $1"
}

sql_tps=(); sql_p99=(); sql_app=(); sql_lat=(); http_rps=(); http_p99=(); http_app=(); http_lat=(); bad=0
paced_rate=(); paced_p50=(); paced_p99=(); paced_lat=()
for r in $(seq "$BENCH_RUNS"); do
	q "CHECKPOINT" >/dev/null
	rm -f "$BENCH_WORK"/pgbench_log.*
	from=$(q "SELECT coalesce(max(id), 0) FROM pgwa.webhook_events")
	out=$(cd "$BENCH_WORK" && pgbench -n -M prepared -c "$CLIENTS" -j 2 -T "$DURATION" -l \
		-f "$BENCH_WORK/ingest.sql" 2>&1) || { echo "$out" | tail -5 >&2; exit 1; }
	tps=$(echo "$out" | awk '/^tps = / {print $3; exit}')
	p99=$(cat "$BENCH_WORK"/pgbench_log.* | awk '{print $3 / 1000}' | sort -g |
		awk '{v[NR]=$1} END {i = int(NR * 0.99); if (i < 1) i = 1; print v[i]}')
	read -r app lat <<< "$(drain "$from")"
	sql_tps+=("$tps"); sql_p99+=("$p99"); sql_app+=("$app"); sql_lat+=("$lat")

	q "CHECKPOINT" >/dev/null
	from=$(q "SELECT coalesce(max(id), 0) FROM pgwa.webhook_events")
	out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$BENCH_WORK/ingest.lua" "$PGWA_URL" 2>&1)
	rps=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
	hp99=$(to_ms "$(echo "$out" | awk '$1 == "99%" {print $2}')")
	bad=$((bad + $(echo "$out" | awk '/Non-2xx or 3xx responses:/ {n += $NF} END {print n + 0}')))
	read -r happ hlat <<< "$(drain "$from")"
	http_rps+=("$rps"); http_p99+=("$hp99"); http_app+=("$happ"); http_lat+=("$hlat")

	# the same route at the target rate, open loop: latency at 3,000 events/s
	q "CHECKPOINT" >/dev/null
	from=$(q "SELECT coalesce(max(id), 0) FROM pgwa.webhook_events")
	out=$("$BENCH_ROOT/bench/http_load" ingest "$PGWA_URL/api/integrations/whatsapp/webhook" "$SECRET" \
		"$PACED_RATE" "$DURATION" "$CONNECTIONS")
	set -- $out
	[ "$6" = 0 ] || { echo "bench: $6 paced requests failed" >&2; bad=$((bad + $6)); }
	read -r papp plat <<< "$(drain "$from")"
	paced_rate+=("$8"); paced_p50+=("${10}"); paced_p99+=("${12}"); paced_lat+=("$plat")
	printf '  run %d: SQL stored %.0f/s (p99 %.1f ms), applied %.0f/s (p99 %.0f ms after receipt); HTTP stored %.0f/s (p99 %.1f ms), applied %.0f/s (p99 %.0f ms); HTTP at %s/s: p50 %.1f ms, p99 %.1f ms (applied p99 %.0f ms after receipt)\n' \
		"$r" "$tps" "$p99" "$app" "$lat" "$rps" "$hp99" "$happ" "$hlat" "$8" "${10}" "${12}" "$plat"
done

stored=$(q "SELECT count(*) FROM pgwa.webhook_events")
dups=$(q "SELECT coalesce(sum(count), 0) FROM pgwa.webhook_counters WHERE result = 'duplicate'")
failed=$(q "SELECT count(*) FROM pgwa.webhook_events WHERE status NOT IN ('applied', 'duplicate', 'ignored')")
result "SQL applied events/s, end to end (median)" "$(fmt "$(median "${sql_app[@]}")") (spread $(spread "${sql_app[@]}"); target >= 5,000)"
result "SQL stored events/s (median)" "$(fmt "$(median "${sql_tps[@]}")") (spread $(spread "${sql_tps[@]}"))"
result "SQL p99 ingest call ms (median)" "$(fmt "$(median "${sql_p99[@]}")" 1) (target < 20)"
result "SQL p99 received to applied ms (median)" "$(fmt "$(median "${sql_lat[@]}")")"
result "HTTP applied events/s, end to end (median)" "$(fmt "$(median "${http_app[@]}")") (spread $(spread "${http_app[@]}"); target >= 3,000)"
result "HTTP stored events/s (median)" "$(fmt "$(median "${http_rps[@]}")") (spread $(spread "${http_rps[@]}"))"
result "HTTP p99 request ms at saturation (median)" "$(fmt "$(median "${http_p99[@]}")" 1)"
result "HTTP paced: events/s sent (median)" "$(fmt "$(median "${paced_rate[@]}")") (open loop, $CONNECTIONS connections)"
result "HTTP paced: p50 request ms (median)" "$(fmt "$(median "${paced_p50[@]}")" 1)"
result "HTTP paced: p99 request ms (median)" "$(fmt "$(median "${paced_p99[@]}")" 1) (target < 20 at 3,000/s)"
result "HTTP paced: p99 received to applied ms (median)" "$(fmt "$(median "${paced_lat[@]}")")"
result "HTTP p99 received to applied ms (median)" "$(fmt "$(median "${http_lat[@]}")")"
result "events stored / counted duplicates / not applied" "$stored / $dups / $failed (HTTP non-2xx: $bad)"
conditions_end
