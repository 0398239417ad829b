# Client webhooks through pgwa-http, the dispatcher and the mock broker playing
# the client application: an inbound webhook's events reach the subscriber
# signed and in order, another tenant's never do; a 503 is retried with the
# same event, a 400 is dead until replayed; one delivery in flight per
# subscription; a slow subscriber never holds up WhatsApp messages; the
# dispatcher re-applies stored inbound events and survives an error there.
. "$(dirname "$0")/lib.sh"

FX="$(dirname "$0")/../fixtures/inbound"
HOOK=/api/integrations/whatsapp/webhook
KA=$(new_tenant e2e-hooks-a)
KB=$(new_tenant e2e-hooks-b)
IA=$(new_instance "$KA" hooks-e2e-a '"broker_instance_id":"hooks-e2e-a"')
IB=$(new_instance "$KB" hooks-e2e-b '"broker_instance_id":"hooks-e2e-b"')
TA=$(sql "SELECT tenant_id FROM pgwa.instances WHERE id = '$IA'")
TB=$(sql "SELECT tenant_id FROM pgwa.instances WHERE id = '$IB'")
req POST "/api/integrations/whatsapp/instances/$IA/webhook-secret" '{"secret":"hooks-e2e-inbound-secret-a"}' "$KA"
req POST "/api/integrations/whatsapp/instances/$IB/webhook-secret" '{"secret":"hooks-e2e-inbound-secret-b"}' "$KB"

# The client application: each subscription has its own path and rules.
answer() {	# answer PATH RESPONSES_JSON
	mock /__mock/rules POST "{\"rules\":[{\"path_prefix\":\"$1\",\"responses\":$2,\"then\":\"repeat_last\"}]}" >/dev/null
}
got() { mock "/__mock/requests?path_prefix=$1"; }
count() { mock "/__mock/count?path_prefix=$1" | jq -r .count; }
# inbound MESSAGE_ID PHONE INSTANCE SECRET: a seed-000 message posted by the broker
inbound() {
	jq ".instanceId = \"$3\" | .payload.instanceId = \"$3\" | .id = \"$1\" | .payload.contact.phone = \"$2\"" \
		"$FX/seed000_sample.json" > "$E2E_TMP/in.json"
	curl -s -o /dev/null -w '%{http_code}' -X POST -H "X-API-Key: $4" -H 'Content-Type: application/json' \
		--data-binary "@$E2E_TMP/in.json" "$PGWA_URL$HOOK"
}
# sig_ok RECORD SECRET: X-Pgwa-Signature is the HMAC-SHA256 of "<X-Pgwa-Timestamp>.<body>"
sig_ok() {
	local ts sig want
	ts=$(jq -r '.headers["x-pgwa-timestamp"]' <<< "$1")
	sig=$(jq -r '.headers["x-pgwa-signature"]' <<< "$1")
	want=$( { printf '%s.' "$ts"; jq -j .body <<< "$1"; } | openssl dgst -sha256 -hmac "$2" | sed 's/^.*= //')
	[ -n "$want" ] && [ "$sig" = "sha256=$want" ]
}
delivery() {	# delivery SUB_ID EVENT_ID COLUMNS
	sql "SELECT $3 FROM pgwa.webhook_deliveries WHERE subscription_id = '$1' AND event_id = $2"
}

# Subscriptions: the secret is shown once.
answer /client-hooks/e2e-all/ '[{"status":200,"body":{"ok":true}}]'
answer /client-hooks/e2e-b/ '[{"status":204}]'
req POST /v1/webhooks "{\"url\":\"$MOCK_URL/client-hooks/e2e-all/in\",\"events\":[\"*\"],\"secret\":\"hooks-e2e-signing-secret-a\"}" "$KA"
is "$STATUS:$(j .secret)" "201:hooks-e2e-signing-secret-a" "POST /v1/webhooks: 201 with the secret, once"
SA=$(j .id)
req GET "/v1/webhooks/$SA" "" "$KA"
is "$STATUS:$(j 'has("secret")')" "200:false" "GET /v1/webhooks/{id} never shows the secret"
req GET "/v1/webhooks/$SA" "" "$KB"
is "$STATUS" 404 "another tenant's subscription: 404"
req POST /v1/webhooks "{\"url\":\"$MOCK_URL/client-hooks/e2e-b/in\",\"events\":[\"messages.new\",\"ticket.message\"]}" "$KB"
SB=$(j .id)
SB_SECRET=$(j .secret)
ok "a generated secret is returned" test "${#SB_SECRET}" -ge 32

# An inbound message of each tenant.
is "$(inbound hooks-e2e-wamid-a1 5511970001001 hooks-e2e-a hooks-e2e-inbound-secret-a)" 202 "tenant A's broker posts a message: 202"
is "$(inbound hooks-e2e-wamid-b1 5511970001002 hooks-e2e-b hooks-e2e-inbound-secret-b)" 202 "tenant B's broker posts a message: 202"
NA=$(sql "SELECT count(*) FROM pgwa.events WHERE tenant_id = '$TA'")
ok "tenant A's subscriber gets every event of tenant A ($NA)" wait_for 20 bash -c "[ \$(curl -s '$MOCK_URL/__mock/count?path_prefix=/client-hooks/e2e-all/' | jq -r .count) -ge $NA ]"
ok "tenant B's subscriber gets its two subscribed events" wait_for 20 bash -c "[ \$(curl -s '$MOCK_URL/__mock/count?path_prefix=/client-hooks/e2e-b/' | jq -r .count) -ge 2 ]"
sleep 0.5
REQS=$(got /client-hooks/e2e-all/)
is "$(jq length <<< "$REQS")" "$NA" "one request per event, none twice"
is "$(jq -r '[.[].json.event] | sort | join(",")' <<< "$REQS")" "messages.new,ticket.message,ticket.updated,whatsapp.queue.missing" \
	"messages.new, ticket.message, ticket.updated and whatsapp.queue.missing reached the subscriber"
is "$(jq -r '[.[].json.id] | . == sort' <<< "$REQS")" true "they arrived in event order"
is "$(jq -r '[.[].json.tenantId] | unique | join(",")' <<< "$REQS")" "$TA" "only tenant A's events reach tenant A's subscriber"
is "$(got /client-hooks/e2e-b/ | jq -r '[.[].json.tenantId] | unique | join(",")')" "$TB" "only tenant B's events reach tenant B's subscriber"
is "$(got /client-hooks/e2e-b/ | jq -r '[.[].json.event] | sort | join(",")')" "messages.new,ticket.message" "the event filter holds"
FIRST=$(jq -c '.[0]' <<< "$REQS")
is "$(jq -r '[.method, .headers["content-type"], .headers["x-pgwa-event"] == .json.event,
             .headers["x-pgwa-event-id"] == (.json.id | tostring)] | join(" ")' <<< "$FIRST")" "POST application/json true true" \
	"Content-Type, X-Pgwa-Event and X-Pgwa-Event-Id"
is "$(jq -r '[.json | has("id", "event", "tenantId", "instanceId", "createdAt", "data")] | all' <<< "$FIRST")" true \
	"the body has id, event, tenantId, instanceId, createdAt and data"
is "$(jq -r 'map(select(.json.event == "messages.new")) | .[0].json | [.instanceId, .data.brokerMessageId] | join(" ")' <<< "$REQS")" \
	"$IA hooks-e2e-wamid-a1" "messages.new names the instance and carries the message"
ok "X-Pgwa-Timestamp is the unix time of the attempt" bash -c "[ \$(( \$(date +%s) - $(jq -r '.headers["x-pgwa-timestamp"]' <<< "$FIRST") )) -lt 120 ]"
BAD=0
while read -r r; do sig_ok "$r" hooks-e2e-signing-secret-a || BAD=$((BAD + 1)); done < <(jq -c '.[]' <<< "$REQS")
is "$BAD" 0 "every delivery is signed: sha256=HMAC-SHA256(secret, timestamp.body), checked with openssl"
is "$(sig_ok "$FIRST" not-the-secret && echo yes || echo no)" no "a wrong secret does not verify"
is "$(sig_ok "$(got /client-hooks/e2e-b/ | jq -c '.[0]')" "$SB_SECRET" && echo yes || echo no)" yes \
	"tenant B's deliveries verify with its generated secret"
is "$(sql "SELECT string_agg(DISTINCT status, ',') FROM pgwa.webhook_deliveries WHERE subscription_id IN ('$SA', '$SB')")" delivered \
	"the deliveries are recorded as delivered"

# A 503 then 200: retried with the same event; events behind it wait their turn.
answer /client-hooks/e2e-retry/ '[{"status":503,"body":"busy"},{"status":200}]'
req POST /v1/webhooks "{\"url\":\"$MOCK_URL/client-hooks/e2e-retry/in\",\"events\":[\"instance.status\"]}" "$KA"
SR=$(j .id)
sql "SELECT pgwa._emit('$TA', 'instance.status', jsonb_build_object('instanceId', '$IA', 'n', n)) FROM generate_series(1, 3) n" >/dev/null
ok "the three events are delivered after the retry" wait_for 20 bash -c "[ \$(curl -s '$MOCK_URL/__mock/count?path_prefix=/client-hooks/e2e-retry/' | jq -r .count) -ge 4 ]"
RR=$(got /client-hooks/e2e-retry/)
is "$(jq -r '[.[].json.data.n] | join(",")' <<< "$RR")" "1,1,2,3" "the 503 is retried first, then the others in order"
is "$(jq -r '.[0].json.id == .[1].json.id and .[0].headers["x-pgwa-event-id"] == .[1].headers["x-pgwa-event-id"]' <<< "$RR")" true \
	"the retry carries the same event id"
E1=$(jq -r '.[0].json.id' <<< "$RR")
is "$(delivery "$SR" "$E1" "status || ' ' || attempts")" "delivered 2" "the retried delivery: delivered after 2 attempts"
is "$(sql "SELECT string_agg(outcome || ':' || coalesce(http_status::text, '-'), ',' ORDER BY id) FROM pgwa.webhook_delivery_attempts
           WHERE delivery_id = (SELECT id FROM pgwa.webhook_deliveries WHERE subscription_id = '$SR' AND event_id = $E1)")" \
	"retry:503,delivered:200" "the delivery log has both attempts"
is "$(sql "SELECT (min(a2.started_at) - max(a1.started_at)) >= interval '0.9 s'
           FROM pgwa.webhook_delivery_attempts a1, pgwa.webhook_delivery_attempts a2
           WHERE a1.delivery_id = (SELECT id FROM pgwa.webhook_deliveries WHERE subscription_id = '$SR' AND event_id = $E1)
             AND a2.delivery_id = a1.delivery_id AND a1.attempt = 1 AND a2.attempt = 2")" t "the retry waited the 1 s backoff"

# A 400 is dead at once; a replay delivers it.
answer /client-hooks/e2e-dead/ '[{"status":400,"body":{"error":"unknown field"}},{"status":200}]'
req POST /v1/webhooks "{\"url\":\"$MOCK_URL/client-hooks/e2e-dead/in\",\"events\":[\"instance.qrcode\"]}" "$KA"
SD=$(j .id)
ED=$(sql "SELECT pgwa._emit('$TA', 'instance.qrcode', '{\"code\": \"dead-then-replayed\"}')")
ok "a 400 makes the delivery dead" wait_for 15 bash -c "[ \"\$(psql -X -qtA -c \"SELECT status FROM pgwa.webhook_deliveries WHERE subscription_id = '$SD' AND event_id = $ED\")\" = dead ]"
req GET "/v1/webhooks/$SD/deliveries?status=dead" "" "$KA"
is "$STATUS:$(j '.total'):$(j '.items[0].last_http_status'):$(j '.items[0].attempts')" "200:1:400:1" \
	"GET .../deliveries?status=dead lists it, with its 400, after one attempt"
ok "last_error keeps the subscriber's answer" grep -q 'unknown field' <<< "$(j '.items[0].last_error')"
DID=$(j '.items[0].id')
is "$(count /client-hooks/e2e-dead/)" 1 "a dead delivery is not retried"
req POST "/v1/webhooks/$SD/deliveries/$DID/replay" "" "$KB"
is "$STATUS" 404 "another tenant cannot replay it"
req POST "/v1/webhooks/$SD/deliveries/$DID/replay" "" "$KA"
is "$STATUS:$(j .status)" "200:pending" "POST .../replay queues it again"
ok "the replay is delivered" wait_for 15 bash -c "[ \"\$(psql -X -qtA -c \"SELECT status FROM pgwa.webhook_deliveries WHERE id = $DID\")\" = delivered ]"
is "$(got /client-hooks/e2e-dead/ | jq -r '[.[].json.id] | unique | length'):$(count /client-hooks/e2e-dead/)" "1:2" "the replay carries the same event id"
req POST "/v1/webhooks/$SD/deliveries/$DID/replay" "" "$KA"
is "$STATUS" 200 "a delivered delivery can be replayed too"
ok "and is delivered again" wait_for 15 bash -c "[ \$(curl -s '$MOCK_URL/__mock/count?path_prefix=/client-hooks/e2e-dead/' | jq -r .count) -ge 3 ]"

# One delivery in flight per subscription: a subscriber that takes 300 ms per
# request gets the next event only after answering the previous one.
answer /client-hooks/e2e-slow/ '[{"status":200,"delay_ms":300}]'
req POST /v1/webhooks "{\"url\":\"$MOCK_URL/client-hooks/e2e-slow/in\",\"events\":[\"whatsapp.timeline.reconciled\"]}" "$KA"
sql "SELECT pgwa._emit('$TA', 'whatsapp.timeline.reconciled', jsonb_build_object('n', n)) FROM generate_series(1, 4) n" >/dev/null
ok "four events to a slow subscriber" wait_for 20 bash -c "[ \$(curl -s '$MOCK_URL/__mock/count?path_prefix=/client-hooks/e2e-slow/' | jq -r .count) -ge 4 ]"
SL=$(got /client-hooks/e2e-slow/)
is "$(jq -r '[.[].json.data.n] | join(",")' <<< "$SL")" "1,2,3,4" "in order"
is "$(jq -r '[range(1; length) as $i | .[$i].t - .[$i - 1].t >= 290] | all' <<< "$SL")" true \
	"each arrived after the previous one was answered (the mock's clock)"

# A subscriber that hangs never holds up WhatsApp messages.
answer /client-hooks/e2e-hang/ '[{"status":200,"delay_ms":6000}]'
req POST /v1/webhooks "{\"url\":\"$MOCK_URL/client-hooks/e2e-hang/in\",\"events\":[\"message.status\"]}" "$KA"
SH=$(j .id)
EH=$(sql "SELECT pgwa._emit('$TA', 'message.status', '{\"status\": \"hang\"}')")
wait_for 10 bash -c "[ \"\$(psql -X -qtA -c \"SELECT status FROM pgwa.webhook_deliveries WHERE subscription_id = '$SH' AND event_id = $EH\")\" = sending ]"
req POST "/v1/instances/$IA/messages" '{"to":"5511970001009","text":"not behind the webhook"}' "$KA"
MSG=$(j .message_id)
ok "a message is sent while the delivery hangs" wait_for 10 bash -c "[ \"\$(psql -X -qtA -c \"SELECT status FROM pgwa.outbox WHERE id = '$MSG'\")\" = sent ]"
is "$(sql "SELECT o.sent_at < coalesce(d.delivered_at, 'infinity') FROM pgwa.outbox o, pgwa.webhook_deliveries d
           WHERE o.id = '$MSG' AND d.subscription_id = '$SH' AND d.event_id = $EH")" t "sent before the delivery was answered"
ok "the hanging delivery is delivered in the end" wait_for 20 bash -c "[ \"\$(psql -X -qtA -c \"SELECT status FROM pgwa.webhook_deliveries WHERE subscription_id = '$SH' AND event_id = $EH\")\" = delivered ]"

# The inbound applier applies stored inbound events that wait (received, or failed and due).
jq '.instanceId = "hooks-e2e-a" | .payload.instanceId = "hooks-e2e-a" | .id = "hooks-e2e-stored" | .payload.contact.phone = "5511970001003"' \
	"$FX/seed000_sample.json" > "$E2E_TMP/stored.json"
WE=$(sql "INSERT INTO pgwa.webhook_events (instance_id, tenant_id, dialect, body, status, attempts, next_attempt_at, last_error)
          VALUES ('$IA', '$TA', 'broker', \$j\$$(cat "$E2E_TMP/stored.json")\$j\$, 'failed', 1, now(), 'simulated') RETURNING id")
ok "a failed inbound event is re-applied by the inbound applier" wait_for 20 bash -c "[ \"\$(psql -X -qtA -c \"SELECT status FROM pgwa.webhook_events WHERE id = $WE\")\" = applied ]"
ok "and its messages.new reaches the subscriber" wait_for 15 bash -c "curl -s '$MOCK_URL/__mock/requests?path_prefix=/client-hooks/e2e-all/' | jq -e 'map(select(.json.data.brokerMessageId == \"hooks-e2e-stored\")) | length == 1'"

# An error in that step is logged and skipped; the workers go on.
PID=$(sql "SELECT pgwa.dispatcher_pid()")
APID=$(sql "SELECT pgwa.applier_pid()")
restore() {
	sql "DO \$\$ BEGIN IF to_regprocedure('pgwa.retry_failed_events_gone(int)') IS NOT NULL THEN
	     ALTER FUNCTION pgwa.retry_failed_events_gone(int) RENAME TO retry_failed_events; END IF; END \$\$" >/dev/null
}
trap 'restore; rm -rf "$E2E_TMP"' EXIT
sql "ALTER FUNCTION pgwa.retry_failed_events(int) RENAME TO retry_failed_events_gone" >/dev/null
SERVER_LOG=$(ls "$(dirname "${PG_CLUSTER_CONF_ROOT:-/nonexistent}")"/log/*.log 2>/dev/null | head -1)
ok "the failing step is logged as a warning" wait_for 10 grep -q "WARNING:  pgwa inbound applier: retrying failed inbound events failed" "$SERVER_LOG"
req POST "/v1/instances/$IA/messages" '{"to":"5511970001009","text":"still sending"}' "$KA"
MSG2=$(j .message_id)
ok "messages are still sent" wait_for 10 bash -c "[ \"\$(psql -X -qtA -c \"SELECT status FROM pgwa.outbox WHERE id = '$MSG2'\")\" = sent ]"
restore
is "$(sql "SELECT pgwa.dispatcher_pid()")" "$PID" "the dispatcher did not restart"
is "$(sql "SELECT pgwa.applier_pid()")" "$APID" "nor did the inbound applier"

# Metrics and cleanup.
req GET /metrics "" "$PGWA_ADMIN_KEY"
is "$(grep -F "pgwa_client_webhook_deliveries_total{tenant_id=\"$TA\",subscription_id=\"$SR\",event=\"instance.status\",outcome=\"retried\"}" <<< "$BODY" | awk '{print $2}')" 1 \
	"GET /metrics counts the retried attempt"
is "$(grep -F "pgwa_client_webhook_deliveries_total{tenant_id=\"$TA\",subscription_id=\"$SR\",event=\"instance.status\",outcome=\"delivered\"}" <<< "$BODY" | awk '{print $2}')" 3 \
	"and the delivered ones"
is "$(grep -F "pgwa_client_webhook_dead{tenant_id=\"$TA\",subscription_id=\"$SD\"}" <<< "$BODY" | awk '{print $2}')" 0 "no dead delivery left after the replay"
req DELETE "/v1/webhooks/$SA" "" "$KA"
is "$STATUS:$(j .deleted)" "200:true" "DELETE /v1/webhooks/{id}"
is "$(sql "SELECT count(*) FROM pgwa.webhook_deliveries WHERE subscription_id = '$SA'")" 0 "its deliveries went with it"
