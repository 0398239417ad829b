# Broker dialects end to end, through pgwa-http and the dispatcher: a message
# sent through the mock Evolution API gets its receipts from Evolution's
# messages.update webhooks (delivered, then read, never backwards); a
# connection.update close pauses the instance's queue and open resumes it; a
# message sent through the mock Cloud API is marked delivered by a signed
# statuses webhook, while a bad signature is refused and stores nothing; and
# Meta's subscription handshake.
. "$(dirname "$0")/lib.sh"

FX="$(dirname "$0")/../fixtures"
KEY=$(new_tenant e2e-webhooks)
EVO_SECRET=e2e-evolution-webhook-secret-1
META_SECRET=e2e-meta-app-secret-0123456789
PHONE_ID=5550001001

# instance NAME PROVIDER [EXTRA_JSON]: prints the new instance's id (mock broker, no pacing)
instance() {
	req POST /v1/instances "{\"name\":\"$1\",\"provider\":\"$2\",\"base_url\":\"$MOCK_URL\",\"api_key\":\"broker-key-$1\",\"delay_min_ms\":0,\"delay_max_ms\":0${3:+,$3}}" "$KEY"
	j .id
}
send() {
	req POST "/v1/instances/$1/messages" "$2" "$KEY"
	j .message_id
}
status_is() { [ "$(sql "SELECT status FROM pgwa.outbox WHERE id = '$1'")" = "$2" ]; }
# post PATH BODY HEADER...: posts a webhook body as it is; sets STATUS and BODY
post() {
	local path=$1 body=$2
	shift 2
	STATUS=$(curl -s -o "$E2E_TMP/body" -w '%{http_code}' -X POST --max-time 30 \
		-H 'Content-Type: application/json' --data-binary "$body" "$@" "$PGWA_URL$path")
	BODY=$(cat "$E2E_TMP/body")
}
# evolution FIXTURE JQ_FILTER: an Evolution fixture for this test's instance, one line, no apikey
evolution() { jq -c ".instance = \"e2e-wh-evo\" | del(.apikey) | $2" "$FX/evolution/$1.json"; }
# now [SECONDS]: an ISO 8601 UTC time, SECONDS from now
now() { date -u -d "@$(( $(date +%s) + ${1:-0} ))" +%Y-%m-%dT%H:%M:%S.000Z; }

# --- Evolution API: receipts of a message pgwa sent ----------------------------------
EVO=$(instance wh-evo evolution '"broker_instance_id":"e2e-wh-evo"')
req POST "/api/integrations/whatsapp/instances/$EVO/webhook-secret" "{\"secret\":\"$EVO_SECRET\"}" "$KEY"
is "$STATUS" 201 "the tenant sets the Evolution instance's webhook secret"
M=$(send "$EVO" '{"to":"5511900001001","text":"receipts, please"}')
ok "the message is sent through the mock Evolution API" wait_for 10 status_is "$M" sent
BID=$(sql "SELECT broker_message_id FROM pgwa.outbox WHERE id = '$M'")
ok "its broker id is Evolution's key.id ($BID)" grep -q '^EVO-[0-9]*$' <<< "$BID"

post /webhooks/whatsapp "$(evolution messages_update_statuses ".data.keyId = \"$BID\" | .data.status = \"DELIVERY_ACK\" | .date_time = \"$(now)\"")" \
	-H "X-API-Key: $EVO_SECRET"
settled
is "$STATUS:$(j .status):$(j .accepted)" "200:applied:1" "messages.update DELIVERY_ACK: 200, one receipt applied"
req GET "/v1/messages/$M" "" "$KEY"
is "$(j .status):$(j '.delivered_at != null'):$(j '.read_at != null')" "delivered:true:false" "GET /v1/messages/{id}: delivered, with delivered_at"
post /webhooks/whatsapp "$(evolution messages_update_statuses ".data.keyId = \"$BID\" | .data.status = \"READ\" | .date_time = \"$(now 2)\"")" \
	-H "Authorization: Bearer $EVO_SECRET"
settled
is "$STATUS:$(j .accepted)" "200:1" "messages.update READ: 200"
req GET "/v1/messages/$M" "" "$KEY"
is "$(j .status):$(j '.read_at != null')" "read:true" "then read, with read_at"
is "$(sql "SELECT delivered_at < read_at AND sent_at IS NOT NULL FROM pgwa.outbox WHERE id = '$M'")" t "delivered_at comes before read_at"
post /webhooks/whatsapp "$(evolution messages_update_statuses ".data.keyId = \"$BID\" | .data.status = \"DELIVERY_ACK\" | .date_time = \"$(now 1)\"")" \
	-H "X-API-Key: $EVO_SECRET"
settled
req GET "/v1/messages/$M" "" "$KEY"
is "$(j .status)" read "a late DELIVERY_ACK does not move it back"
is "$(sql "SELECT count(*) FROM pgwa.events WHERE event = 'message.status' AND payload->>'messageId' = '$M'")" 2 \
	"message.status was emitted for delivered and for read, not for the late receipt"
post /webhooks/whatsapp "$(evolution messages_update_statuses ".data.keyId = \"$BID\"")" -H 'X-API-Key: not-the-secret-at-all'
is "$STATUS" 401 "a wrong webhook secret: 401"

# --- Evolution API: connection.update pauses and resumes the queue ---------------------
post /webhooks/whatsapp "$(evolution CONNECTION_UPDATE_close '.data.instance = "e2e-wh-evo"')" -H "X-API-Key: $EVO_SECRET"
settled
is "$STATUS:$(j .accepted)" "200:1" "connection.update close: 200"
req GET "/v1/instances/$EVO" "" "$KEY"
is "$(j .connection_state)" disconnected "the instance is disconnected"
SENT_BEFORE=$(mock "/__mock/count?path_prefix=/message/sendText/e2e-wh-evo" | jq .count)
M2=$(send "$EVO" '{"to":"5511900001001","text":"while the phone is away"}')
sleep 1.5
is "$(sql "SELECT status || ':' || attempts FROM pgwa.outbox WHERE id = '$M2'")" "queued:0" "a new message stays queued while closed"
is "$(mock "/__mock/count?path_prefix=/message/sendText/e2e-wh-evo" | jq .count)" "$SENT_BEFORE" "and the broker gets nothing"
post /webhooks/whatsapp "$(evolution connection_update_open '.data.instance = "e2e-wh-evo"')" -H "X-Authorization: $EVO_SECRET"
settled
is "$STATUS:$(j .accepted)" "200:1" "connection.update open: 200"
ok "once open, the waiting message is sent" wait_for 10 status_is "$M2" sent
req GET "/v1/instances/$EVO" "" "$KEY"
is "$(j .connection_state)" connected "the instance is connected"
is "$(sql "SELECT string_agg(payload->>'state', ',' ORDER BY id) FROM pgwa.events WHERE event = 'instance.status' AND payload->>'instanceId' = '$EVO'")" \
	"disconnected,connected" "instance.status was emitted for close and open"

# --- Cloud API: a signed statuses webhook ---------------------------------------------
META=$(instance wh-meta meta "\"settings\":{\"phone_number_id\":\"$PHONE_ID\"}")
req POST "/api/integrations/whatsapp/instances/$META/meta-app-secret" "{\"app_secret\":\"$META_SECRET\"}" "$KEY"
is "$STATUS:$(j .app_secret_set):$(j 'has("app_secret")')" "200:true:false" "the tenant sets the Meta app secret; it is not shown back"
# The contact wrote in, so its 24 h window is open (else only templates).
sql "INSERT INTO pgwa.leads (tenant_id, phone, window_expires_at)
     SELECT tenant_id, '5511900001002', now() + interval '1 day' FROM pgwa.instances WHERE id = '$META'
     ON CONFLICT DO NOTHING" >/dev/null
MM=$(send "$META" '{"to":"5511900001002","text":"hello from the Cloud API"}')
ok "the message is sent through the mock Cloud API" wait_for 10 status_is "$MM" sent
WAMID=$(sql "SELECT broker_message_id FROM pgwa.outbox WHERE id = '$MM'")
STATUSES=$(jq -c --arg id "$WAMID" --arg pn "$PHONE_ID" --arg ts "$(date +%s)" '
	.entry[0].changes[0].value.metadata.phone_number_id = $pn
	| .entry[0].changes[0].value.statuses = [.entry[0].changes[0].value.statuses[0] | .id = $id | .timestamp = $ts | .recipient_id = "5511900001002"]' \
	"$FX/meta/status_delivered_read.json")
SIG=$(printf %s "$STATUSES" | openssl dgst -sha256 -hmac "$META_SECRET" -r | cut -c1-64)
STORED=$(sql "SELECT count(*) FROM pgwa.webhook_events WHERE instance_id = '$META'")
post /webhooks/meta "$STATUSES" -H "X-Hub-Signature-256: sha256=$(tr 0-9a-f 1-9a-f0 <<< "$SIG")"
is "$STATUS" 401 "a bad X-Hub-Signature-256: 401"
post /webhooks/meta "$STATUSES"
is "$STATUS" 401 "no X-Hub-Signature-256: 401"
is "$(sql "SELECT count(*) FROM pgwa.webhook_events WHERE instance_id = '$META'")" "$STORED" "refused bodies store nothing"
req GET "/v1/messages/$MM" "" "$KEY"
is "$(j .status)" sent "the message is still only sent"
post /webhooks/meta "$STATUSES" -H "X-Hub-Signature-256: sha256=$SIG"
settled
is "$STATUS:$(j .status):$(j .accepted)" "200:applied:1" "a statuses webhook signed with the app secret: 200"
req GET "/v1/messages/$MM" "" "$KEY"
is "$(j .status):$(j '.delivered_at != null')" "delivered:true" "GET /v1/messages/{id}: delivered"
is "$(sql "SELECT status || ':' || dialect FROM pgwa.webhook_events WHERE instance_id = '$META' ORDER BY id DESC LIMIT 1")" "applied:meta" \
	"the raw body was stored, as dialect meta, and applied"

# --- Cloud API: the subscription handshake ---------------------------------------------
req POST "/api/integrations/whatsapp/instances/$META/meta-verify-token" '{"verify_token":"e2e-verify-token-1"}' "$KEY"
is "$STATUS" 201 "the tenant sets the verify token"
req GET "/webhooks/meta?hub.mode=subscribe&hub.verify_token=e2e-verify-token-1&hub.challenge=1158201444" ""
is "$STATUS:$BODY" "200:1158201444" "the handshake answers the challenge as it came"
ok "as plain text" grep -qi '^Content-Type: text/plain' <<< "$HEADERS"
req GET "/webhooks/meta?hub.mode=subscribe&hub.verify_token=not-our-token&hub.challenge=1158201444" ""
is "$STATUS:$(j .error.code)" "403:FORBIDDEN" "another verify token: 403"
