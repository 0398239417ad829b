# The provider adapters against the mock broker's three dialects: the
# paths, headers and bodies each broker expects, the broker's id read back
# from its answer, and how its errors are classified (dead, retried, or the
# instance paused as disconnected).
. "$(dirname "$0")/lib.sh"

KEY=$(new_tenant e2e-providers)
mock /__mock/rules DELETE >/dev/null
all_sent() { local IFS=,; [ "$(sql "SELECT count(*) FROM pgwa.outbox WHERE status = 'sent' AND id = ANY ('{$*}'::uuid[])")" = $# ]; }
status_is() { [ "$(sql "SELECT status FROM pgwa.outbox WHERE id = '$1'")" = "$2" ]; }
# instance NAME PROVIDER API_KEY [EXTRA_JSON]: prints the new instance's id
instance() {
	req POST /v1/instances "{\"name\":\"$1\",\"provider\":\"$2\",\"base_url\":\"$MOCK_URL\",\"api_key\":\"$3\",\"delay_min_ms\":0,\"delay_max_ms\":0${4:+,$4}}" "$KEY"
	j .id
}
send() {
	req POST "/v1/instances/$1/messages" "$2" "$KEY"
	j .message_id
}
# broker_ids ID...: the broker ids recorded for these messages, in order
broker_ids() { for m in "$@"; do sql "SELECT broker_message_id FROM pgwa.outbox WHERE id = '$m'"; done | paste -sd,; }

# --- Evolution API v2 ------------------------------------------------------------
EVO=$(instance evo-1 evolution evo-secret '"broker_instance_id":"business"')
ME=()
ME+=("$(send "$EVO" '{"to":"+55 11 90000-0501","text":"Olá https://example.com","previewUrl":true,"delayTyping":2}')")
ME+=("$(send "$EVO" '{"to":"5511900000501","type":"image","mediaUrl":"https://example.com/a.png","caption":"a photo","mimeType":"image/png"}')")
ME+=("$(send "$EVO" '{"to":"5511900000501","type":"audio","mediaUrl":"https://example.com/a.ogg"}')")
ME+=("$(send "$EVO" '{"to":"5511900000501","type":"location","location":{"latitude":-23.5614,"longitude":-46.6559,"name":"MASP","address":"Av. Paulista, 1578"}}')")
ME+=("$(send "$EVO" '{"to":"5511900000501","type":"poll","poll":{"name":"Lunch?","options":["pizza","sushi"],"selectableCount":1}}')")
ME+=("$(send "$EVO" '{"to":"5511900000501","type":"contact","contact":{"name":"Ana Souza","phone":"5511988887777@c.us"}}')")
ok "Evolution: text, image, audio, location, poll and contact are sent" wait_for 10 all_sent "${ME[@]}"
REQS=$(mock "/__mock/requests?path_prefix=/message/" | jq '[.[] | select(.path | endswith("/business"))]')
is "$(jq -r '[.[].path] | join(" ")' <<< "$REQS")" \
	"/message/sendText/business /message/sendMedia/business /message/sendWhatsAppAudio/business /message/sendLocation/business /message/sendPoll/business /message/sendContact/business" \
	"Evolution: one request per message, to /message/{endpoint}/{instance}"
is "$(jq -r '[.[].headers.apikey] | unique | join(",")' <<< "$REQS")" evo-secret "Evolution: header apikey carries the broker key"
is "$(jq -r '[.[].headers | has("x-api-key") or has("authorization")] | any' <<< "$REQS")" false "Evolution: no X-API-Key or Authorization header"
is "$(jq -r '[.[].headers["idempotency-key"]] | join(",")' <<< "$REQS")" "$(IFS=,; echo "${ME[*]}")" "Evolution: each request's Idempotency-Key is its message id"
is "$(jq -cS '.[0].json' <<< "$REQS")" '{"delay":2000,"linkPreview":true,"number":"5511900000501","text":"Olá https://example.com"}' "Evolution sendText body"
is "$(jq -cS '.[1].json' <<< "$REQS")" '{"caption":"a photo","media":"https://example.com/a.png","mediatype":"image","mimetype":"image/png","number":"5511900000501"}' "Evolution sendMedia body"
is "$(jq -cS '.[2].json' <<< "$REQS")" '{"audio":"https://example.com/a.ogg","number":"5511900000501"}' "Evolution sendWhatsAppAudio body"
is "$(jq -cS '.[3].json' <<< "$REQS")" '{"address":"Av. Paulista, 1578","latitude":-23.5614,"longitude":-46.6559,"name":"MASP","number":"5511900000501"}' "Evolution sendLocation body"
is "$(jq -cS '.[4].json' <<< "$REQS")" '{"name":"Lunch?","number":"5511900000501","selectableCount":1,"values":["pizza","sushi"]}' "Evolution sendPoll body"
is "$(jq -cS '.[5].json' <<< "$REQS")" '{"contact":[{"fullName":"Ana Souza","phoneNumber":"+5511988887777","wuid":"5511988887777"}],"number":"5511900000501"}' "Evolution sendContact body: a JID phone becomes digits"
is "$(broker_ids "${ME[@]}")" "$(jq -r '[.[] | "EVO-\(.seq)"] | join(",")' <<< "$REQS")" "Evolution: broker_message_id is the answer's key.id"

# --- Meta Cloud API ----------------------------------------------------------------
# The Cloud API sends free-form messages only inside a contact's 24 h window:
# these contacts wrote in (their leads have an open window).
sql "INSERT INTO pgwa.leads (tenant_id, phone, window_expires_at)
     SELECT t.id, p, now() + interval '1 day' FROM pgwa.tenants t,
            unnest(ARRAY['5511900000502', '5511900000503', '5511900000506', '5511900000507']) p
     WHERE t.id = (SELECT tenant_id FROM pgwa.authenticate('$KEY'))
     ON CONFLICT DO NOTHING" >/dev/null
META=$(instance meta-1 meta meta-token '"settings":{"phone_number_id":"1234567890","api_version":"v21.0"}')
MM=()
MM+=("$(send "$META" '{"to":"+55 (11) 90000-0502","text":"Hello from pgwa"}')")
MM+=("$(send "$META" '{"to":"5511900000502","type":"image","mediaUrl":"https://example.com/b.jpg","caption":"look"}')")
MM+=("$(send "$META" '{"to":"5511900000502","type":"template","template":{"name":"order_update","language":{"code":"pt_BR"},"components":[{"type":"body","parameters":[{"type":"text","text":"42"}]}]}}')")
MM+=("$(send "$META" '{"to":"5511900000502","type":"reaction","reaction":{"messageId":"wamid.ABC","emoji":"👍"}}')")
ok "Meta: text, image, template and reaction are sent" wait_for 10 all_sent "${MM[@]}"
REQS=$(mock "/__mock/requests?path_prefix=/v21.0/1234567890/")
is "$(jq -r '[.[].path] | join(" ")' <<< "$REQS")" "$(printf '/v21.0/1234567890/messages %.0s' 1 2 3 4 | sed 's/ $//')" "Meta: four requests to /{version}/{phone_number_id}/messages"
is "$(jq -r '[.[].headers.authorization] | unique | join(",")' <<< "$REQS")" "Bearer meta-token" "Meta: Authorization: Bearer with the instance's token"
is "$(jq -r '[.[].headers | has("x-api-key") or has("apikey")] | any' <<< "$REQS")" false "Meta: no X-API-Key or apikey header"
is "$(jq -r '[.[].headers["idempotency-key"]] | join(",")' <<< "$REQS")" "$(IFS=,; echo "${MM[*]}")" "Meta: each request's Idempotency-Key is its message id"
is "$(jq -cS '.[0].json' <<< "$REQS")" '{"messaging_product":"whatsapp","recipient_type":"individual","text":{"body":"Hello from pgwa","preview_url":false},"to":"5511900000502","type":"text"}' "Meta text body"
is "$(jq -cS '.[1].json' <<< "$REQS")" '{"image":{"caption":"look","link":"https://example.com/b.jpg"},"messaging_product":"whatsapp","recipient_type":"individual","to":"5511900000502","type":"image"}' "Meta image body"
is "$(jq -cS '.[2].json' <<< "$REQS")" '{"messaging_product":"whatsapp","recipient_type":"individual","template":{"components":[{"parameters":[{"text":"42","type":"text"}],"type":"body"}],"language":{"code":"pt_BR"},"name":"order_update"},"to":"5511900000502","type":"template"}' "Meta template body"
is "$(jq -cS '.[3].json' <<< "$REQS")" '{"messaging_product":"whatsapp","reaction":{"emoji":"👍","message_id":"wamid.ABC"},"recipient_type":"individual","to":"5511900000502","type":"reaction"}' "Meta reaction body"
is "$(broker_ids "${MM[@]}")" "$(jq -r '[.[] | "wamid.MOCK\(.seq)"] | join(",")' <<< "$REQS")" "Meta: broker_message_id is messages[0].id"

# A Graph error that is permanent: dead at once, with Graph's own words.
META2=$(instance meta-2 meta meta-token '"settings":{"phone_number_id":"2222222222"}')
mock /__mock/rules POST '{"path_prefix":"/v21.0/2222222222/","responses":[{"status":400,"body":{"error":{"message":"(#131030) Recipient phone number not in allowed list","type":"OAuthException","code":131030,"fbtrace_id":"x"}}}]}' >/dev/null
M=$(send "$META2" '{"to":"5511900000503","text":"not allowed"}')
ok "Meta: a Graph 400 error makes the message dead" wait_for 10 status_is "$M" dead
req GET "/v1/messages/$M" "" "$KEY"
ok "last_error carries the Graph error text: $(j .last_error)" grep -qF '(#131030) Recipient phone number not in allowed list' <<< "$(j .last_error)"
is "$(j .last_http_status):$(j '.attempt_log | length')" "400:1" "one attempt, HTTP 400 recorded, no retry"

# Graph 429 and 503 are transient: retried with the same key, then sent.
META3=$(instance meta-3 meta meta-token '"settings":{"phone_number_id":"3333333333","api_version":"v21.0"}')
mock /__mock/rules POST '{"path_prefix":"/v21.0/3333333333/","responses":[
	{"status":429,"body":{"error":{"message":"(#130429) Rate limit hit","type":"OAuthException","code":130429,"fbtrace_id":"y"}}},
	{"status":503,"body":{"error":{"message":"Service temporarily unavailable","type":"OAuthException","code":2,"is_transient":true}}}]}' >/dev/null
M=$(send "$META3" '{"to":"5511900000503","text":"retry me"}')
ok "Meta: after a Graph 429 and a 503 the message is sent" wait_for 15 status_is "$M" sent
req GET "/v1/messages/$M" "" "$KEY"
is "$(j '[.attempt_log[] | "\(.outcome)/\(.http_status)"] | join(",")')" "retry/429,retry/503,sent/200" "the attempt log shows retry, retry, sent"
is "$(mock /__mock/requests?path_prefix=/v21.0/3333333333/ | jq -r --arg m "$M" '[.[].headers["idempotency-key"] == $m] | (length|tostring) + ":" + (all|tostring)')" "3:true" "three requests, all with the same Idempotency-Key"

# Graph reports throttling as HTTP 400 too: code 130429 is retried, not dead.
# A user JID is a phone number to the Cloud API; a group is not.
META4=$(instance meta-4 meta meta-token '"settings":{"phone_number_id":"4444444444"}')
mock /__mock/rules POST '{"path_prefix":"/v21.0/4444444444/","responses":[{"status":400,"body":{"error":{"message":"(#130429) Rate limit hit","type":"OAuthException","code":130429,"fbtrace_id":"z"}}}]}' >/dev/null
M1=$(send "$META4" '{"to":"5511900000506","text":"throttled"}')
M2=$(send "$META4" '{"to":"5511900000507@c.us","text":"to a JID"}')
req POST "/v1/instances/$META4/messages" '{"to":"120363000000000001@g.us","text":"to a group"}' "$KEY"
is "$STATUS:$(j .error.field):$(j .error.message)" "400:to:the Cloud API sends to phone numbers only, not to group or LID JIDs" "Meta: a message to a group is refused at enqueue, naming 'to'"
ok "Meta: a Graph 400 throttling error (130429) is retried and sent" wait_for 10 status_is "$M1" sent
req GET "/v1/messages/$M1" "" "$KEY"
is "$(j '[.attempt_log[] | "\(.outcome)/\(.http_status)"] | join(",")')" "retry/400,sent/200" "the attempt log shows retry (400), then sent"
ok "Meta: a message to a user JID is sent" wait_for 10 status_is "$M2" sent
is "$(mock /__mock/requests?path_prefix=/v21.0/4444444444/ | jq -r '.[-1].json.to')" 5511900000507 "to the JID's phone number"
is "$(mock /__mock/count?path_prefix=/v21.0/4444444444/ | jq .count)" 3 "Meta: three requests in all (throttled, sent, the JID one); none for the group"

# --- seed-000 broker: 409 INSTANCE_DISCONNECTED pauses the instance -------------
BRK=$(new_instance "$KEY" brk-disc)
mock /__mock/rules POST '{"path_prefix":"/instances/brk-disc/","responses":[{"status":409,"body":{"error":{"code":"INSTANCE_DISCONNECTED"},"status":"disconnected","connected":false}}]}' >/dev/null
M=$(send "$BRK" '{"to":"5511900000504","text":"when back online"}')
ok "a broker 409 marks the instance disconnected" wait_for 10 bash -c "[ \"\$(psql -X -qtA -c \"SELECT connection_state FROM pgwa.instance_state WHERE instance_id = '$BRK'\")\" = disconnected ]"
is "$(sql "SELECT status || ':' || attempts FROM pgwa.outbox WHERE id = '$M'")" "queued:0" "the message is queued again with no attempt spent"
req GET "/v1/instances/$BRK" "" "$KEY"
is "$(j .connection_state)" disconnected "the API shows the instance disconnected"
sleep 1.5
is "$(mock /__mock/count?path_prefix=/instances/brk-disc/ | jq .count)" 1 "while disconnected the broker gets no more requests"
req PUT "/v1/instances/$BRK/connection" '{"state":"connected"}' "$KEY"
is "$STATUS:$(j .connection_state)" "200:connected" "PUT /connection {state: connected}: 200"
ok "the paused message is sent once the instance is connected" wait_for 10 status_is "$M" sent
req GET "/v1/messages/$M" "" "$KEY"
is "$(j '[.attempt_log[].outcome] | join(",")')" "disconnected,sent" "the attempt log shows disconnected, then sent"
is "$(sql "SELECT attempts FROM pgwa.outbox WHERE id = '$M'")" 1 "only the successful attempt counts against max_attempts"
mock /__mock/rules DELETE >/dev/null
