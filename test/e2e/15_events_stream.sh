# GET /v1/events: the tenant's real-time events as server-sent events,
# served by pgwa-http itself. A stream starts from now with its starting id,
# delivers messages.new (id, event, data) as webhooks are applied, never
# another tenant's; a reconnection with Last-Event-ID (or ?after=) replays
# exactly the later events; errors before the stream are JSON; a second
# front with a one-second heartbeat and room for one stream sends heartbeats,
# refuses a second stream with 503 and ends its stream when it stops.
. "$(dirname "$0")/lib.sh"

HOOK=/api/integrations/whatsapp/webhook
FX="$(dirname "$0")/../fixtures/inbound"
KEY=$(new_tenant e2e-events)
OTHER=$(new_tenant e2e-events-other)
INST=$(new_instance "$KEY" events-e2e '"broker_instance_id":"e2e-events-1"')
TENANT=$(sql "SELECT tenant_id FROM pgwa.instances WHERE id = '$INST'")
req POST "/api/integrations/whatsapp/instances/$INST/webhook-secret" '{"secret":"e2e-events-secret-0001"}' "$KEY"
is "$STATUS" 201 "the instance has a webhook secret"

STREAMS=()
FRONT=
cleanup() {
	for p in "${STREAMS[@]}"; do kill "$p" 2>/dev/null; done
	[ -n "$FRONT" ] && kill "$FRONT" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$E2E_TMP"
}
trap cleanup EXIT

# open_stream NAME KEY [URL] [curl args...]: a stream in the background into $E2E_TMP/NAME.sse
open_stream() {
	local name=$1 key=$2 url=${3:-$PGWA_URL}
	shift 3 2>/dev/null || shift $#
	curl -s -N --max-time 60 -D "$E2E_TMP/$name.headers" -H "X-API-Key: $key" "$@" "$url/v1/events" \
		> "$E2E_TMP/$name.sse" 2>/dev/null &
	STREAMS+=($!)
}
# frames FILE: "id event" for each event of a stream
frames() { awk '/^id: /{id=$2} /^event: /{print id, $2}' "$1"; }
# post_message ID: a seed-000 webhook with message ID from a new contact
post_message() {
	jq -c --arg id "$1" --arg phone "55119730$(printf '%05d' $RANDOM)" \
		'.instanceId = "e2e-events-1" | .payload.instanceId = "e2e-events-1" | .id = $id | .payload.contact.phone = $phone' \
		"$FX/seed000_sample.json" > "$E2E_TMP/hook.json"
	curl -s -o /dev/null -w '%{http_code}' -X POST --max-time 30 -H 'X-API-Key: e2e-events-secret-0001' \
		-H 'Content-Type: application/json' --data-binary @"$E2E_TMP/hook.json" "$PGWA_URL$HOOK"
}
tenant_ids() { sql "SELECT string_agg(id::text, ' ' ORDER BY id) FROM pgwa.events WHERE tenant_id = '$TENANT' AND id > $1"; }

# Errors come before the stream, as JSON.
req GET /v1/events
is "$STATUS:$(j .error.code)" "401:UNAUTHORIZED" "no key: 401 UNAUTHORIZED"
ok "as JSON" grep -qi '^content-type: application/json' <<< "$HEADERS"
req GET /v1/events "" "$PGWA_ADMIN_KEY"
is "$STATUS" 403 "the admin key has no events: 403"
req GET /v1/events "" "$KEY" -H 'Last-Event-ID: yesterday'
is "$STATUS:$(j .error.field)" "400:Last-Event-ID" "a bad Last-Event-ID: 400 naming it"
req GET "/v1/events?instance_id=00000000-0000-0000-0000-000000000000" "" "$KEY"
is "$STATUS:$(j .error.field)" "404:instance_id" "another instance: 404"

# A stream from now: its starting id is the tenant's latest event.
START=$(sql "SELECT coalesce(max(id), 0) FROM pgwa.events WHERE tenant_id = '$TENANT'")
open_stream mine "$KEY"
open_stream other "$OTHER"
ok "the stream opens with its starting id" wait_for 10 grep -qx "id: $START" "$E2E_TMP/mine.sse"
ok "served as text/event-stream" grep -qi '^content-type: text/event-stream' "$E2E_TMP/mine.headers"
ok "not to be cached" grep -qi '^cache-control: no-cache' "$E2E_TMP/mine.headers"

is "$(post_message events-1)" 202 "a webhook"
ok "its messages.new arrives" wait_for 10 grep -q '^event: messages.new' "$E2E_TMP/mine.sse"
E1=$(frames "$E2E_TMP/mine.sse" | awk '$2 == "messages.new" {print $1; exit}')
is "$E1" "$(sql "SELECT min(id) FROM pgwa.events WHERE tenant_id = '$TENANT' AND event = 'messages.new' AND id > $START")" \
	"with the event's id"
DATA=$(awk -v id="$E1" '/^id: /{cur=$2} /^data: / && cur == id {sub(/^data: /, ""); print; exit}' "$E2E_TMP/mine.sse")
is "$(jq -r '[.id, .event, .instanceId, .data.instanceId, (.data.messageId != null)] | map(tostring) | join(" ")' <<< "$DATA")" \
	"$E1 messages.new $INST $INST true" "data is the event as client webhooks get it"

is "$(post_message events-2)" 202 "a second webhook"
# count PATTERN FILE: lines of FILE matching PATTERN (for wait_for, which runs a command again and again)
count() { grep -c "$1" "$2"; }
at_least() { [ "$(count "$2" "$3")" -ge "$1" ]; }

# An event whose id was taken before a later one's but committed after it
# reached the stream: the stream must not move past its id.
LATE0=$(sql "SELECT coalesce(max(id), 0) FROM pgwa.events WHERE tenant_id = '$TENANT'")
psql -X -qtA -v ON_ERROR_STOP=1 >/dev/null 2>&1 <<SQL &
BEGIN;
SELECT pgwa._emit('$TENANT', 'e2e.late', '{"n": 1}');
SELECT pg_sleep(2);
COMMIT;
SQL
LATEPID=$!
sleep 0.5
sql "SELECT pgwa._emit('$TENANT', 'e2e.early', '{\"n\": 2}')" > /dev/null
wait "$LATEPID"
ok "both reach the stream" wait_for 10 bash -c "grep -q '^event: e2e.late' '$E2E_TMP/mine.sse' && grep -q '^event: e2e.early' '$E2E_TMP/mine.sse'"
is "$(frames "$E2E_TMP/mine.sse" | awk '$2 ~ /^e2e\./ {print $2}' | tr '\n' ' ')" "e2e.late e2e.early " \
	"in id order: the late commit's smaller id first"
ok "its messages.new arrives too" wait_for 10 at_least 2 '^event: messages.new' "$E2E_TMP/mine.sse"
is "$(count '^event: messages.new' "$E2E_TMP/mine.sse")" 2 "once"
ids_of() { frames "$1" | awk '{print $1}' | tr '\n' ' ' | sed 's/ $//'; }
carried() { [ "$(ids_of "$E2E_TMP/mine.sse")" = "$(tenant_ids "$START")" ]; }
wait_for 5 carried
is "$(ids_of "$E2E_TMP/mine.sse")" "$(tenant_ids "$START")" "the stream carried every event of the tenant, in id order"
is "$(frames "$E2E_TMP/other.sse" | wc -l)" 0 "another tenant's stream sees none of them"

# Reconnecting after the first one replays exactly the later ones.
curl -s -N --max-time 2 -H "X-API-Key: $KEY" -H "Last-Event-ID: $E1" "$PGWA_URL/v1/events?after=0" > "$E2E_TMP/resume.sse"
LATER=$(tenant_ids "$E1")
is "$(ids_of "$E2E_TMP/resume.sse")" "$LATER" \
	"Last-Event-ID (winning over after) replays the later events ($LATER), nothing before"
curl -s -N --max-time 2 -H "X-API-Key: $KEY" "$PGWA_URL/v1/events?after=$E1&events=messages.new" > "$E2E_TMP/after.sse"
is "$(frames "$E2E_TMP/after.sse" | tr '\n' ' ')" \
	"$(sql "SELECT string_agg(id || ' messages.new', ' ' ORDER BY id) || ' ' FROM pgwa.events WHERE tenant_id = '$TENANT' AND id > $E1 AND event = 'messages.new'")" \
	"?after= with ?events= replays only those events"

# stream sessions: a stream's reads are its own statement, in a session of its own
streaming() { sql "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND application_name = 'pgwa-http'
                   AND query LIKE 'SELECT status, body FROM pgwa.http(''GET'', ''/v1/events''%'"; }
streaming_is() { [ "$(streaming)" = "$1" ]; }

# A client that leaves is noticed at once, not at the next heartbeat (15 s
# here): the stream's database session ends.
BEFORE=$(streaming)
curl -s -N --max-time 60 -H "X-API-Key: $KEY" "$PGWA_URL/v1/events" > "$E2E_TMP/leave.sse" 2>/dev/null &
LEAVER=$!
ok "a stream starts" wait_for 5 at_least 1 '^id: ' "$E2E_TMP/leave.sse"
is "$(streaming)" $((BEFORE + 1)) "with its own database session"
kill "$LEAVER"
wait "$LEAVER" 2>/dev/null
ok "its client leaves: the session ends within 2 s" wait_for 2 streaming_is "$BEFORE"

# A second front: heartbeat every second, one stream at most.
PGDATABASE=pgwa PGWA_HTTP_PORT=0 PGWA_HTTP_THREADS=2 PGWA_HTTP_SSE_HEARTBEAT=1 PGWA_HTTP_MAX_STREAMS=1 \
	"$(dirname "$0")/../../http_front/pgwa-http" > "$E2E_TMP/sse.out" 2> "$E2E_TMP/sse.log" &
FRONT=$!
for _ in $(seq 100); do grep -q "listening on" "$E2E_TMP/sse.out" && break; sleep 0.05; done
URL="http://$(sed -n 's/.*listening on //p' "$E2E_TMP/sse.out" | head -1)"
BEFORE=$(streaming)
curl -s -N --max-time 60 -H "X-API-Key: $KEY" "$URL/v1/events" > "$E2E_TMP/beat.sse" 2>/dev/null &
BEAT=$!
ok "a quiet stream gets heartbeats" wait_for 5 at_least 2 '^: heartbeat' "$E2E_TMP/beat.sse"
is "$(curl -s -o "$E2E_TMP/full.json" -w '%{http_code}' --max-time 5 -H "X-API-Key: $KEY" "$URL/v1/events"):$(jq -r .error.code "$E2E_TMP/full.json")" \
	"503:TOO_MANY_STREAMS" "past PGWA_HTTP_MAX_STREAMS: 503"
is "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "X-API-Key: $KEY" "$URL/v1/instances")" 200 \
	"ordinary requests are served meanwhile"
is "$(curl -s --max-time 5 -H "X-API-Key: $PGWA_ADMIN_KEY" "$URL/metrics" | grep '^pgwa_http_event_streams ')" \
	"pgwa_http_event_streams 1" "the open stream is counted"
is "$(streaming)" $((BEFORE + 1)) "the stream has a database session of its own"
# a client that goes away gives its place back
kill "$BEAT"
wait "$BEAT" 2>/dev/null
# opens: a stream into beat.sse that has started, or false
opens() {
	curl -s -N --max-time 60 -H "X-API-Key: $KEY" "$URL/v1/events" > "$E2E_TMP/beat.sse" 2>/dev/null &
	BEAT=$!
	wait_for 1 at_least 1 '^id: ' "$E2E_TMP/beat.sse" && return 0
	kill "$BEAT" 2>/dev/null
	wait "$BEAT" 2>/dev/null
	return 1
}
ok "a client gone frees its place for another stream" wait_for 6 opens
kill -TERM "$FRONT"
T0=$(date +%s)
wait "$BEAT"
is "$?" 0 "stopping the front ends the stream cleanly"
wait "$FRONT"
is "$?" 0 "and the front exits"
ok "within a few seconds" test $(( $(date +%s) - T0 )) -le 5
FRONT=
