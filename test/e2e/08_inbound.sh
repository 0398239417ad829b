# Inbound webhooks through pgwa-http: the three ways a broker presents its
# secret, 202 once the raw event is committed, redeliveries and concurrent
# deliveries applied once, the raw Baileys fallback, rejected bodies kept, and
# real-time events announced with NOTIFY pgwa_events after commit.
. "$(dirname "$0")/lib.sh"

FX="$(dirname "$0")/../fixtures/inbound"
HOOK=/api/integrations/whatsapp/webhook
KEY=$(new_tenant e2e-inbound)
ENV_INST=$(new_instance "$KEY" inb-e2e-env '"broker_instance_id":"e2e-inst-42"')
RAW_INST=$(new_instance "$KEY" inb-e2e-raw '"broker_instance_id":"e2e-raw-1","settings":{"raw_fallback":true}')
TENANT=$(sql "SELECT tenant_id FROM pgwa.instances WHERE id = '$ENV_INST'")

# post BODY_FILE HEADER...: posts a webhook, sets STATUS, BODY, HEADERS
post() {
	local file=$1
	shift
	STATUS=$(curl -s -o "$E2E_TMP/body" -D "$E2E_TMP/headers" -w '%{http_code}' -X POST --max-time 30 \
		-H 'Content-Type: application/json' --data-binary "@$file" "$@" "$PGWA_URL$HOOK")
	BODY=$(cat "$E2E_TMP/body")
	HEADERS=$(tr -d '\r' < "$E2E_TMP/headers")
}
# fixture NAME JQ_FILTER: a fixture rewritten for this test's instances
fixture() { jq "$2" "$FX/$1.json" > "$E2E_TMP/$1.$3.json"; echo "$E2E_TMP/$1.$3.json"; }

# The tenant sets each instance's webhook secret; it is shown once.
req POST "/api/integrations/whatsapp/instances/$ENV_INST/webhook-secret" '{"secret":"e2e-webhook-secret-env-1"}' "$KEY"
is "$STATUS" 201 "a tenant sets an instance's webhook secret: 201"
req POST "/api/integrations/whatsapp/instances/$RAW_INST/webhook-secret" '' "$KEY"
RAW_SECRET=$(j .secret)
ok "a generated webhook secret is returned" test "${#RAW_SECRET}" -ge 32
is "$(sql "SELECT count(*) FROM pgwa.webhook_secrets s WHERE s.instance_id = '$ENV_INST' AND s.secret_hash = sha256('e2e-webhook-secret-env-1')
          AND s::text NOT LIKE '%e2e-webhook-secret%'")" 1 "only the secret's SHA-256 is stored"

# Listen for real-time events while webhooks arrive.
PGAPPNAME=inb-e2e-listen psql -X -qtA -c "LISTEN pgwa_events" -c "SELECT pg_sleep(6)" > "$E2E_TMP/listen.out" 2>&1 &
LISTENER=$!
wait_for 5 bash -c "[ \"\$(psql -X -qtA -c \"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'inb-e2e-listen' AND query LIKE '%pg_sleep%'\")\" = 1 ]"

SEED=$(fixture seed000_sample '.instanceId = "e2e-inst-42" | .payload.instanceId = "e2e-inst-42" | .id = "e2e-wamid-1" | .payload.contact.phone = "+55 11 97000-0001"' a)
post "$SEED" -H 'X-API-Key: e2e-webhook-secret-env-1'
is "$STATUS:$(jq -r .status <<< "$BODY")" 202:received "the seed-000 sample with X-API-Key: 202, stored"
EVENT1=$(jq -r .eventId <<< "$BODY")
is "$(sql "SELECT count(*) FROM pgwa.webhook_events WHERE id = $EVENT1")" 1 "the raw event was committed before the answer"
settled
is "$(jq -c '[.status, .accepted, .duplicates, .ignored]' <<< "$BODY")" '["applied",1,0,0]' "the worker applied it: one message accepted"
post "$SEED" -H 'X-API-Key: e2e-webhook-secret-env-1'
settled
is "$STATUS:$(jq -c '[.accepted, .duplicates]' <<< "$BODY")" "202:[0,1]" "the same event redelivered: 202, a duplicate"
is "$(sql "SELECT count(*) FROM pgwa.messages WHERE instance_id = '$ENV_INST' AND broker_message_id = 'e2e-wamid-1'")" 1 \
	"the redelivery created no second message"

SEED2=$(fixture seed000_sample '.instanceId = "e2e-inst-42" | .payload.instanceId = "e2e-inst-42" | .id = "e2e-wamid-2" | .payload.contact.phone = "+55 11 97000-0001"' b)
post "$SEED2" -H 'Authorization: Bearer e2e-webhook-secret-env-1'
settled
is "$STATUS:$(jq -r .accepted <<< "$BODY")" "202:1" "Authorization: Bearer is accepted"
SEED3=$(fixture seed000_sample '.instanceId = "e2e-inst-42" | .payload.instanceId = "e2e-inst-42" | .id = "e2e-wamid-3" | .payload.contact.phone = "+55 11 97000-0001"' c)
post "$SEED3" -H 'X-Authorization: e2e-webhook-secret-env-1'
settled
is "$STATUS:$(jq -r .accepted <<< "$BODY")" "202:1" "the legacy X-Authorization raw token is accepted"
is "$(sql "SELECT count(*) || '/' || count(DISTINCT ticket_id) FROM pgwa.messages WHERE instance_id = '$ENV_INST'")" "3/1" \
	"three messages of one contact, one ticket"

post "$SEED"
is "$STATUS" 401 "no secret: 401"
ok "401 names the scheme" grep -qi '^WWW-Authenticate: Bearer' <<< "$HEADERS"
post "$SEED" -H 'X-API-Key: not-the-secret-at-all'
is "$STATUS:$(jq -r .error.code <<< "$BODY")" "401:UNAUTHORIZED" "a wrong secret: 401"
post "$SEED" -H 'X-API-Key: not-the-secret-at-all' -H 'Authorization: Bearer e2e-webhook-secret-env-1'
is "$STATUS" 401 "X-API-Key is read first, as the seed orders them"
post "$SEED" -H "X-API-Key: $RAW_SECRET"
is "$STATUS" 401 "another instance's secret: 401"

# Raw Baileys upserts, enabled on this instance.
RAW=$(fixture baileys_text_quote '.instanceId = "e2e-raw-1"' a)
post "$RAW" -H "Authorization: Bearer $RAW_SECRET"
settled
is "$STATUS:$(jq -c '[.accepted, .ignored]' <<< "$BODY")" "202:[2,0]" "a raw upsert of two messages: both normalised"
IGN=$(fixture baileys_ignored '.instanceId = "e2e-raw-1"' a)
post "$IGN" -H "X-API-Key: $RAW_SECRET"
settled
is "$STATUS:$(jq -c '[.accepted, .ignored]' <<< "$BODY")" "202:[1,6]" "fromMe, protocol, history sync, stubs, status and key-only messages are ignored"
is "$(sql "SELECT content->>'quotedMessageId' FROM pgwa.messages WHERE instance_id = '$RAW_INST' AND broker_message_id = '3EB0RAWTEXT0000000002'")" \
	3EB0OUTBOUND00000001 "the quote is kept"
RAW_OFF=$(fixture baileys_text_quote '.instanceId = "e2e-inst-42"' b)
post "$RAW_OFF" -H 'X-API-Key: e2e-webhook-secret-env-1'
is "$STATUS:$(jq -r .error.field <<< "$BODY")" "422:event" "a raw upsert for an instance without raw_fallback: 422"

# Rejected bodies are answered with the field and kept.
BAD=$(fixture malformed_contact_string '.instanceId = "e2e-inst-42"' a)
post "$BAD" -H 'X-API-Key: e2e-webhook-secret-env-1'
is "$STATUS:$(jq -r '.error.code + " " + .error.field' <<< "$BODY")" "400:VALIDATION_FAILED payload.contact" "a malformed envelope: 400 naming the field"
BAD_ID=$(jq -r .error.eventId <<< "$BODY")
is "$(sql "SELECT status || ' ' || error_field FROM pgwa.webhook_events WHERE id = ${BAD_ID:-0}")" "rejected payload.contact" \
	"the rejected body is stored with why"
printf '{"id": "broken' > "$E2E_TMP/broken.json"
post "$E2E_TMP/broken.json" -H 'X-API-Key: e2e-webhook-secret-env-1'
is "$STATUS" 400 "a body that is not JSON: 400"

# Five concurrent deliveries of one new message: applied once.
CONC=$(fixture seed000_sample '.instanceId = "e2e-inst-42" | .payload.instanceId = "e2e-inst-42" | .id = "e2e-wamid-conc" | .payload.contact.phone = "5511970000099"' d)
CURLS=()
for i in 1 2 3 4 5; do
	curl -s -o "$E2E_TMP/conc.$i" -w '%{http_code}\n' -X POST -H 'X-API-Key: e2e-webhook-secret-env-1' \
		--data-binary "@$CONC" "$PGWA_URL$HOOK" > "$E2E_TMP/conc.$i.status" &
	CURLS+=($!)
done
wait "${CURLS[@]}"
is "$(cat "$E2E_TMP"/conc.*.status | sort -u | tr -d '\n')" 202 "five concurrent deliveries: all 202"
CONC_IDS=$(cat "$E2E_TMP"/conc.[0-9] | jq -rs 'map(.eventId) | join(",")')
wait_for 10 test "$(sql "SELECT count(*) FROM pgwa.webhook_events WHERE id IN ($CONC_IDS) AND status = 'received'")" = 0
is "$(sql "SELECT sum((result->>'accepted')::int) || '/' || sum((result->>'duplicates')::int) FROM pgwa.webhook_events WHERE id IN ($CONC_IDS)")" 1/4 \
	"exactly one of them applied the message, four were duplicates"
is "$(sql "SELECT count(*) || '/' || (SELECT count(*) FROM pgwa.tickets t JOIN pgwa.leads l ON l.id = t.lead_id AND l.tenant_id = t.tenant_id WHERE l.tenant_id = '$TENANT' AND l.phone = '5511970000099') FROM pgwa.messages WHERE instance_id = '$ENV_INST' AND broker_message_id = 'e2e-wamid-conc'")" "1/1" \
	"one message, one ticket"

# Real time: every event was announced after its commit.
wait "$LISTENER"
sed -n 's/^Asynchronous notification "pgwa_events" with payload "\(.*\)" received from server process with PID [0-9]*\.$/\1/p' \
	"$E2E_TMP/listen.out" | jq -c "select(.tenant_id == \"$TENANT\")" > "$E2E_TMP/notes" 2>/dev/null
for ev in messages.new ticket.message ticket.updated whatsapp.queue.missing; do
	ok "NOTIFY pgwa_events carried $ev" grep -q "\"event\":\"$ev\"" "$E2E_TMP/notes"
done
is "$(jq -r 'select(.event == "ticket.message" and .data.metadata.broker.messageId == "e2e-wamid-1") | .data.metadata.media.mediaType' "$E2E_TMP/notes")" image \
	"ticket.message carries metadata.broker and the media summary"
NOTE_IDS=$(jq -r .id "$E2E_TMP/notes" | sort -n | paste -sd, -)
is "$(sql "SELECT count(*) FROM pgwa.events WHERE tenant_id = '$TENANT' AND id IN (${NOTE_IDS:-0})")" "$(jq -s length "$E2E_TMP/notes")" \
	"each notification's id is a row of pgwa.events (streams can resume from it)"
is "$(sql "SELECT count(*) FROM pgwa.events WHERE tenant_id = '$TENANT' AND event = 'messages.new'")" 7 \
	"one messages.new per new message, none for duplicates"
ok "the counters read as Prometheus lines" bash -c "psql -X -qtA -c 'SELECT * FROM pgwa.webhook_metrics()' | grep -q 'whatsapp_webhook_events_total{result=\"accepted\",reason=\"raw_inbound_normalized\",payload_type=\"WHATSAPP_MESSAGES_UPSERT\"}'"
req GET /metrics "" "$PGWA_ADMIN_KEY"
ok "GET /metrics carries whatsapp_webhook_events_total" grep -q 'whatsapp_webhook_events_total{result="accepted",reason="raw_inbound_normalized",payload_type="WHATSAPP_MESSAGES_UPSERT"}' <<< "$BODY"
ok "GET /metrics counts applied events in pgwa_webhook_ingest_latency_seconds" \
	bash -c "grep -E '^pgwa_webhook_ingest_latency_seconds_count [1-9]' <<< '$(printf '%s' "$BODY" | grep '^pgwa_webhook_ingest_latency_seconds_count')'"
