#!/usr/bin/env bash
# ingest: inbound webhook throughput and latency, through SQL and through
# pgwa-http, for a realistic mix of seed-000 MESSAGE_INBOUND envelopes:
#   20% redeliveries of an event already stored (duplicates),
#   40% new messages from 1,000 existing contacts (lead, conversation and
#       open ticket exist),
#   40% messages from new contacts (a lead, conversation and ticket each).
# SQL: pgbench, 8 clients, each transaction pgwa.ingest_webhook() (store raw,
# normalise, apply). HTTP: wrk, 64 connections, POST
# /api/integrations/whatsapp/webhook through pgwa-http (4 threads). p99 from
# pgbench's per-transaction log and wrk's latency distribution. fsync=on.
. "$(dirname "$0")/lib.sh"
bench_cluster -o fsync=on -o pgwa.mode=disabled

DURATION=${PGWA_BENCH_DURATION:-10}
CLIENTS=8
CONNECTIONS=64
FRONT_THREADS=${PGWA_BENCH_HTTP_THREADS:-4}
SECRET=bench-ingest-secret-0001

bench_front "$FRONT_THREADS"
bench_tenant bench-ingest
INST=$(bench_instances in 1 http://127.0.0.1:9)
q "SELECT pgwa.set_webhook_secret('$INST', '$SECRET')" >/dev/null
q "CREATE FUNCTION bench_env(p_id text, p_phone text) RETURNS jsonb LANGUAGE sql IMMUTABLE
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
	"every event is stored raw, normalised and applied (lead, conversation, message, ticket, events row, NOTIFY) in its request;" \
	"$BENCH_RUNS runs of each, CHECKPOINT before each; wrk, pgwa-http and PostgreSQL share the CPUs"

to_ms() {
	awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; print n }'
}

sql_tps=(); sql_p99=(); http_rps=(); http_p99=(); bad=0
for r in $(seq "$BENCH_RUNS"); do
	q "CHECKPOINT" >/dev/null
	rm -f "$BENCH_WORK"/pgbench_log.*
	out=$(cd "$BENCH_WORK" && pgbench -n -M prepared -c "$CLIENTS" -j 2 -T "$DURATION" -l \
		-f "$BENCH_WORK/ingest.sql" 2>&1) || { echo "$out" | tail -5 >&2; exit 1; }
	tps=$(echo "$out" | awk '/^tps = / {print $3; exit}')
	p99=$(cat "$BENCH_WORK"/pgbench_log.* | awk '{print $3 / 1000}' | sort -g |
		awk '{v[NR]=$1} END {i = int(NR * 0.99); if (i < 1) i = 1; print v[i]}')
	sql_tps+=("$tps"); sql_p99+=("$p99")

	q "CHECKPOINT" >/dev/null
	out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$BENCH_WORK/ingest.lua" "$PGWA_URL" 2>&1)
	rps=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
	hp99=$(to_ms "$(echo "$out" | awk '$1 == "99%" {print $2}')")
	bad=$((bad + $(echo "$out" | awk '/Non-2xx or 3xx responses:/ {n += $NF} END {print n + 0}')))
	http_rps+=("$rps"); http_p99+=("$hp99")
	printf '  run %d: SQL %.0f events/s (p99 %.1f ms), HTTP %.0f events/s (p99 %.1f ms)\n' "$r" "$tps" "$p99" "$rps" "$hp99"
done

stored=$(q "SELECT count(*) FROM pgwa.webhook_events")
dups=$(q "SELECT coalesce(sum(count), 0) FROM pgwa.webhook_counters WHERE result = 'duplicate'")
failed=$(q "SELECT count(*) FROM pgwa.webhook_events WHERE status NOT IN ('applied', 'duplicate', 'ignored')")
result "SQL events/s (median)" "$(fmt "$(median "${sql_tps[@]}")") (spread $(spread "${sql_tps[@]}"); target >= 5,000)"
result "SQL p99 latency ms (median)" "$(fmt "$(median "${sql_p99[@]}")" 1) (target < 20)"
result "HTTP events/s (median)" "$(fmt "$(median "${http_rps[@]}")") (spread $(spread "${http_rps[@]}"); target >= 3,000)"
result "HTTP p99 latency ms (median)" "$(fmt "$(median "${http_p99[@]}")" 1) (target < 20)"
result "events stored / counted duplicates / not applied" "$stored / $dups / $failed (HTTP non-2xx: $bad)"
conditions_end
