# The contract of openapi.json against pgwa-http: every operation the file
# documents is called at least once with valid input, answers a status the
# operation documents, and its body has every field the documented schema
# marks required (with $refs resolved, nested objects and array items
# included, and the documented types). Both ways: every operation of the
# file is called, and a documented path asked with an undocumented method
# answers 405 with an Allow header naming documented methods only.
. "$(dirname "$0")/lib.sh"

SPEC="$(dirname "$0")/../../openapi.json"
FX="$(dirname "$0")/../fixtures"
CALLS="$E2E_TMP/calls"
: > "$CALLS"

# check.py SPEC OPERATION_ID PATH STATUS HEADERS_FILE BODY_FILE: prints what
# breaks the contract, one line each; nothing when the answer keeps it.
cat > "$E2E_TMP/check.py" <<'PY'
import json, re, sys

spec_file, opid, path, status, headers_file, body_file = sys.argv[1:7]
spec = json.load(open(spec_file))
problems = []

def resolve(node):
    while isinstance(node, dict) and "$ref" in node:
        target = spec
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node

TYPES = {"object": dict, "array": list, "string": str, "boolean": bool}

def check(schema, value, where, out):
    schema = resolve(schema)
    if value is None:
        if not schema.get("nullable") and "type" in schema:
            out.append(f"{where} is null")
        return
    for sub in schema.get("allOf", []):
        check(sub, value, where, out)
    for key in ("oneOf", "anyOf"):
        if key in schema:
            tries = []
            for sub in schema[key]:
                errs = []
                check(sub, value, where, errs)
                if not errs:
                    break
                tries.append(errs)
            else:
                out.append(f"{where} matches none of its {key}: " + "; ".join(e[0] for e in tries))
    t = schema.get("type")
    if t in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
           or (t == "integer" and not float(value).is_integer()):
            out.append(f"{where} is not an {t}: {json.dumps(value)[:60]}")
        return
    if t in TYPES and (not isinstance(value, TYPES[t]) or (t != "boolean" and isinstance(value, bool))):
        out.append(f"{where} is not a {t}: {json.dumps(value)[:60]}")
        return
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{where} is {json.dumps(value)}, not one of {schema['enum']}")
    if isinstance(value, dict):
        for field in schema.get("required", []):
            if field not in value:
                out.append(f"{where}.{field} is required but missing")
        for field, sub in schema.get("properties", {}).items():
            if field in value:
                check(sub, value[field], f"{where}.{field}", out)
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            check(schema["items"], item, f"{where}[{i}]", out)

found = [(p, m, o) for p, item in spec["paths"].items() for m, o in item.items()
         if isinstance(o, dict) and o.get("operationId") == opid]
if len(found) != 1:
    sys.exit(print(f"operation {opid} is documented {len(found)} times"))
template, method, op = found[0]
pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
if not re.match(pattern, path.split("?")[0]):
    problems.append(f"{path} is not a path of {template}")
resp = resolve(op["responses"].get(status))
if resp is None:
    problems.append(f"status {status} is not documented (documented: {', '.join(op['responses'])})")
else:
    ctype = ""
    for line in open(headers_file, errors="replace"):
        if line.lower().startswith("content-type:"):
            ctype = line.split(":", 1)[1].strip().lower()
    media = resp.get("content", {})
    # */* documents a body of any type (a file served as uploaded)
    if media and "*/*" not in media and not any(ctype.startswith(m) for m in media):
        problems.append(f"Content-Type {ctype} is not documented ({', '.join(media)})")
    elif "application/json" in media and ctype.startswith("application/json"):
        try:
            body = json.load(open(body_file))
        except ValueError:
            body = None
            problems.append("the body is not JSON")
        if body is not None:
            check(media["application/json"]["schema"], body, "body", problems)
    elif media and not open(body_file, "rb").read():
        problems.append("the body is empty")
for p in problems:
    print(p)
PY

# op_method OPERATION_ID: the operation's method, as documented
op_method() {
	jq -r --arg op "$1" '.paths[] | to_entries[] | select(.value.operationId? == $op) | .key | ascii_upcase' "$SPEC"
}

# call OPERATION_ID PATH [BODY] [KEY] [curl args...]: the documented
# operation, asked with its documented method on PATH; checks the answer
# against the file and records the call.
call() {
	local op=$1 path=$2 method out
	shift 2
	method=$(op_method "$op")
	req "${method:-GET}" "$path" "$@"
	printf '%s\t%s\t%s\n' "$op" "$path" "$STATUS" >> "$CALLS"
	printf '%s' "$HEADERS" > "$E2E_TMP/check.headers"
	printf '%s' "$BODY" > "$E2E_TMP/check.body"
	out=$(python3 "$E2E_TMP/check.py" "$SPEC" "$op" "$path" "$STATUS" "$E2E_TMP/check.headers" "$E2E_TMP/check.body" 2>&1)
	if [ -z "$out" ]; then
		echo "ok - $op: $method ${path%%\?*} answers $STATUS as documented"
	else
		echo "not ok - $op: $method ${path%%\?*} answers $STATUS as documented"
		sed 's/^/#   /' <<< "$out"
		echo "#   body: ${BODY:0:300}"
	fi
}
sql_is() { [ "$(sql "$1")" = "$2" ]; }
iso() { date -u -d "@$(( $(date +%s) + $1 ))" +%Y-%m-%dT%H:%M:%SZ; }

ok "openapi.json is an OpenAPI 3 document" jq -e '.openapi | startswith("3.")' "$SPEC"
is "$(jq '[.paths[][] | objects | .operationId] | (length == (unique | length)) and all(. != null)' "$SPEC")" true \
	"every operation has an operationId of its own"

# The checker itself refuses what breaks the contract.
printf 'Content-Type: application/json\n' > "$E2E_TMP/check.headers"
printf '{"id": 1}' > "$E2E_TMP/check.body"
is "$(python3 "$E2E_TMP/check.py" "$SPEC" getInstance /v1/instances/x 200 "$E2E_TMP/check.headers" "$E2E_TMP/check.body" | grep -c .)" \
	"$(jq '.components.schemas.Instance.required | length' "$SPEC")" \
	"the checker reports each missing required field and a wrong type"
ok "and an undocumented status" test -n "$(python3 "$E2E_TMP/check.py" "$SPEC" getInstance /v1/instances/x 299 "$E2E_TMP/check.headers" "$E2E_TMP/check.body")"

# --- operations -------------------------------------------------------------------
# /healthz and /ready answer 200 once the dispatcher serves this database.
wait_for 15 test "$(curl -s -o /dev/null -w '%{http_code}' "$PGWA_URL/ready")" = 200
call getHealth /healthz
call getReady /ready
call getMetrics /metrics "" "$PGWA_ADMIN_KEY"

call createTenant /v1/tenants '{"name":"e2e-openapi"}' "$PGWA_ADMIN_KEY"
KEY=$(j .api_key)
TENANT=$(j .id)
call createInstance /v1/instances "{\"name\":\"oa-e2e\",\"provider\":\"broker\",\"base_url\":\"$MOCK_URL\",\"api_key\":\"broker-secret-oa\",\"broker_instance_id\":\"oa-e2e\",\"delay_min_ms\":0,\"delay_max_ms\":0}" "$KEY"
INST=$(j .id)
call listInstances /v1/instances "" "$KEY"
call getInstance "/v1/instances/$INST" "" "$KEY"
call setConnectionState "/v1/instances/$INST/connection" '{"state":"connected"}' "$KEY"

# Messages and the queue
call sendMessage "/v1/instances/$INST/messages" '{"to":"5511900007001","text":"openapi contract"}' "$KEY" -H 'Idempotency-Key: oa-e2e-1'
M1=$(j .message_id)
call getMessage "/v1/messages/$M1" "" "$KEY"
call listQueue "/v1/instances/$INST/queue?status=queued,sending,sent&limit=10" "" "$KEY"
call seedScheduleText /api/whatsapp/schedule-message "{\"phoneNumber\":\"5511900007001\",\"message\":\"later\",\"scheduledFor\":\"$(iso 3600)\",\"instanceId\":\"$INST\"}" "$KEY"
call cancelMessage "/v1/messages/$(j .scheduleId)" "" "$KEY"
call seedSendText /api/whatsapp/send-message "{\"phoneNumber\":\"5511900007001\",\"message\":\"seed 004\",\"instanceId\":\"$INST\"}" "$KEY"
call seedSendMessage "/integrations/whatsapp/instances/$INST/messages" '{"to":"5511900007001","content":"seed 000"}' "$KEY"
call seedSendMessageApi "/api/integrations/whatsapp/instances/$INST/messages" '{"to":"5511900007001","content":"seed 000 under /api"}' "$KEY"
call purgeQueue "/v1/instances/$INST/queue?olderThan=2000-01-01T00:00:00Z" "" "$KEY"

# Dead letters: the broker refuses this instance's messages
DEAD=$(new_instance "$KEY" oa-e2e-dead)
mock /__mock/rules POST '{"rules":[{"path_prefix":"/instances/oa-e2e-dead/","responses":[{"status":400,"body":{"error":"bad request"}}],"then":"repeat_last"}]}' >/dev/null
req POST "/v1/instances/$DEAD/messages" '{"to":"5511900007003","text":"refused"}' "$KEY"
MD=$(j .message_id)
ok "a refused message becomes a dead letter" wait_for 10 sql_is "SELECT status FROM pgwa.outbox WHERE id = '$MD'" dead
call listDeadLetters "/v1/instances/$DEAD/dead-letters?limit=5" "" "$KEY"
call replayMessage "/v1/messages/$MD/replay" "" "$KEY"
mock /__mock/rules DELETE >/dev/null
call replayDeadLetters "/v1/instances/$DEAD/dead-letters/replay" "" "$KEY"

# Client webhooks, before the inbound events that feed them
mock /__mock/rules POST '{"rules":[{"path_prefix":"/client-hooks/oa-e2e/","responses":[{"status":200,"body":{"ok":true}}],"then":"repeat_last"}]}' >/dev/null
call createWebhook /v1/webhooks "{\"url\":\"$MOCK_URL/client-hooks/oa-e2e/in\",\"events\":[\"*\"],\"instance_id\":\"$INST\"}" "$KEY"
W=$(j .id)
call listWebhooks /v1/webhooks "" "$KEY"
call getWebhook "/v1/webhooks/$W" "" "$KEY"
call pauseWebhook "/v1/webhooks/$W/pause" "" "$KEY"
call resumeWebhook "/v1/webhooks/$W/resume" "" "$KEY"

# Inbound: the broker's webhook (seed 000) and Evolution's
call setWebhookSecret "/api/integrations/whatsapp/instances/$INST/webhook-secret" '{"secret":"oa-e2e-inbound-secret-1"}' "$KEY"
call receiveBrokerWebhook /api/integrations/whatsapp/webhook \
	"$(jq -c '.instanceId = "oa-e2e" | .payload.instanceId = "oa-e2e" | .id = "oa-e2e-wamid-1" | .payload.contact.phone = "5511970007001"' "$FX/inbound/seed000_sample.json")" \
	oa-e2e-inbound-secret-1
call receiveEvolutionWebhook /webhooks/whatsapp \
	"$(jq -c '.instance = "oa-e2e" | del(.apikey) | .data.key.id = "OA-E2E-EVO-1"' "$FX/evolution/messages_upsert_text.json")" \
	oa-e2e-inbound-secret-1
call receiveEvolutionWebhookByEvent /webhooks/whatsapp/qrcode-updated \
	"$(jq -c '.instance = "oa-e2e" | .data.qrcode.instance = "oa-e2e" | del(.apikey)' "$FX/evolution/qrcode_updated.json")" \
	oa-e2e-inbound-secret-1
settled
call getQrCode "/api/integrations/whatsapp/instances/$INST/qrcode" "" "$KEY"
call getConnectionQr "/connections/$INST/qr" "" "$KEY"
curl -s -o "$E2E_TMP/qr.png" -D "$E2E_TMP/qr.h" -H "X-API-Key: $KEY" "$PGWA_URL/connections/$INST/qr?format=png"
ok "the QR code as a PNG (?format=png): image/png" grep -qi '^content-type: image/png' "$E2E_TMP/qr.h"
is "$(head -c 8 "$E2E_TMP/qr.png" | od -An -tx1 | tr -d ' \n')" 89504e470d0a1a0a "the very PNG bytes the broker sent"
ok "no internal header leaks" bash -c "! grep -qi '^x-pgwa' '$E2E_TMP/qr.h'"

# Deliveries of those events
ok "the subscriber got an event" wait_for 15 sql_is "SELECT count(*) > 0 FROM pgwa.webhook_deliveries WHERE subscription_id = '$W' AND status = 'delivered'" t
call listDeliveries "/v1/webhooks/$W/deliveries?status=delivered&limit=5" "" "$KEY"
DL=$(j '.items[0].id')
call getDelivery "/v1/webhooks/$W/deliveries/$DL" "" "$KEY"
call replayDelivery "/v1/webhooks/$W/deliveries/$DL/replay" "" "$KEY"

# The Cloud API: credentials, the handshake, a signed webhook, the history sync
META=$(new_instance "$KEY" oa-e2e-meta '"provider":"meta","settings":{"phone_number_id":"pn-oa-e2e"}')
call setMetaAppSecret "/api/integrations/whatsapp/instances/$META/meta-app-secret" '{"app_secret":"oa-e2e-meta-app-secret-1"}' "$KEY"
call setMetaVerifyToken "/api/integrations/whatsapp/instances/$META/meta-verify-token" '{"verify_token":"oa-e2e-verify-token-1"}' "$KEY"
call verifyMetaWebhook "/webhooks/meta?hub.mode=subscribe&hub.verify_token=oa-e2e-verify-token-1&hub.challenge=4242"
META_BODY=$(sed "s/106540352242922/pn-oa-e2e/g; s/wamid\./wamid.oa-e2e./; s/1749416383/$(date +%s)/" "$FX/meta/text.json" | jq -c .)
SIG=$(printf %s "$META_BODY" | openssl dgst -sha256 -hmac oa-e2e-meta-app-secret-1 -r | cut -c1-64)
call receiveMetaWebhook /webhooks/meta "$META_BODY" "" -H "X-Hub-Signature-256: sha256=$SIG"
settled
call requestHistorySync "/v1/instances/$META/history-sync" "" "$KEY"
call getHistorySync "/v1/instances/$META/history-sync" "" "$KEY"

# Tickets and leads the inbound messages made
ok "the inbound messages made a ticket" wait_for 15 sql_is "SELECT count(*) > 0 FROM pgwa.tickets WHERE tenant_id = '$TENANT'" t
call getTicket "/v1/tickets/$(sql "SELECT id FROM pgwa.tickets WHERE tenant_id = '$TENANT' LIMIT 1")" "" "$KEY"
call getLead "/v1/leads/$(sql "SELECT id FROM pgwa.leads WHERE tenant_id = '$TENANT' LIMIT 1")" "" "$KEY"

# Connections (seed 003)
call createConnection /connections "{\"label\":\"OpenAPI e2e\",\"webhookUrl\":\"$MOCK_URL/client-hooks/oa-e2e/conn\",\"config\":{\"base_url\":\"$MOCK_URL\",\"api_key\":\"broker-secret-oa-c\",\"delay_min_ms\":0,\"delay_max_ms\":0}}" "$KEY"
CONN=$(j .sessionId)
call listConnections /connections "" "$KEY"
call getConnection "/connections/$CONN" "" "$KEY"
call connectionSend "/connections/$CONN/send" '{"messageId":"oa-e2e-c1","to":"5511900007004","body":"hello"}' "$KEY"

# Broker operations (seed 000): the mock broker's answers, passed through
OPS="/integrations/whatsapp/instances/$INST"
call getBrokerStatus "$OPS/status" "" "$KEY"
call checkBrokerExists "$OPS/exists" '{"phone":"+55 11 90000-7005"}' "$KEY"
call listBrokerGroups "$OPS/groups" "" "$KEY"
call getBrokerMetrics "$OPS/metrics" "" "$KEY"
call createBrokerInstance "$OPS/broker" '{"webhookUrl":"http://127.0.0.1:9/hook"}' "$KEY"
call getBrokerStatusApi "/api$OPS/status" "" "$KEY"
call checkBrokerExistsApi "/api$OPS/exists" '{"numbers":["5511900007005"]}' "$KEY"
call getBrokerMetricsApi "/api$OPS/metrics" "" "$KEY"
call createBrokerInstanceApi "/api$OPS/broker" '{}' "$KEY"
mock /__mock/rules POST '{"rules":[{"path_prefix":"/instances/oa-e2e/groups","responses":[{"status":500,"body":{"error":"boom"}}],"times":1}]}' >/dev/null
call listBrokerGroupsApi "/api$OPS/groups" "" "$KEY"
is "$STATUS $(j .error.code)" "502 BROKER_ERROR" "a broker error is a 502"
mock /__mock/rules DELETE >/dev/null
req POST /v1/instances '{"name":"oa-e2e-bare","provider":"broker"}' "$KEY"
call getBrokerStatus "/integrations/whatsapp/instances/$(j .id)/status" "" "$KEY"
is "$STATUS" 503 "an instance without a broker: 503"

# Uploads: the file, then its signed URL
head -c 2048 /dev/urandom > "$E2E_TMP/oa.png"
call createUpload /api/whatsapp/uploads "" "$KEY" -F "file=@$E2E_TMP/oa.png;type=image/png"
UP_URL=$(j .resourceUrl)
UP_URL=${UP_URL#"$PGWA_URL"}
call createUpload /api/whatsapp/uploads "" "$KEY" -F "other=@$E2E_TMP/oa.png"
call getUploadFile "$UP_URL"
ok "the file as uploaded" grep -qi '^content-type: image/png' <<< "$HEADERS"
call getUploadFile "${UP_URL%?}x"

# Event streams: a stream (cut after 2 s), its errors
call streamEvents /v1/events "" "$KEY" --max-time 2
ok "the stream is text/event-stream" grep -qi '^content-type: text/event-stream' <<< "$HEADERS"
call streamEvents /v1/events "" "" --max-time 2
call streamEvents /v1/events "" "$KEY" --max-time 2 -H 'Last-Event-ID: yesterday'

# The Z-API dialect, on an instance that is not connected: its sends wait in the queue
ZI=$(new_instance "$KEY" oa-e2e-zapi)
req PUT "/v1/instances/$ZI/connection" '{"state":"disconnected"}' "$KEY"
is "$STATUS" 200 "the Z-API instance is disconnected"
sql "SELECT pgwa.set_zapi_token('$ZI', 'oa-e2e-zapi-token-1')" > /dev/null
Z="/instances/$ZI/token/oa-e2e-zapi-token-1"
ZP='"phone":"5511900007010"'
call zapiSendText "$Z/send-text" "{$ZP,\"message\":\"z-api\"}"
ZAAP=$(j .zaapId)
call zapiSendImage "$Z/send-image" "{$ZP,\"image\":\"https://cdn.example/a.jpg\",\"caption\":\"c\"}"
call zapiSendVideo "$Z/send-video" "{$ZP,\"video\":\"https://cdn.example/a.mp4\"}"
call zapiSendAudio "$Z/send-audio" "{$ZP,\"audio\":\"https://cdn.example/a.ogg\"}"
call zapiSendDocument "$Z/send-document/pdf" "{$ZP,\"document\":\"https://cdn.example/r\",\"fileName\":\"report\"}"
call zapiSendLink "$Z/send-link" "{$ZP,\"message\":\"see https://z.example\",\"linkUrl\":\"https://z.example\"}"
call zapiSendLocation "$Z/send-location" "{$ZP,\"latitude\":\"-23.56\",\"longitude\":\"-46.65\",\"title\":\"Office\"}"
call zapiSendContact "$Z/send-contact" "{$ZP,\"contactName\":\"Ana\",\"contactPhone\":\"5511900007011\"}"
call zapiSendReaction "$Z/send-reaction" "{$ZP,\"reaction\":\"+1\",\"messageId\":\"3EB0OA\"}"
call zapiSendPoll "$Z/send-poll" "{$ZP,\"message\":\"Lunch?\",\"poll\":[{\"name\":\"Yes\"},{\"name\":\"No\"}]}"
call zapiSendOptionList "$Z/send-option-list" "{$ZP,\"message\":\"Pick\",\"optionList\":{\"options\":[{\"title\":\"Basic\"}]}}"
call zapiSendButtonList "$Z/send-button-list" "{$ZP,\"message\":\"Coming?\",\"buttonList\":{\"buttons\":[{\"label\":\"Yes\"}]}}"
call zapiSendText "$Z/send-text" "{$ZP}"
call zapiSendText "/instances/$ZI/token/oa-e2e-wrong-token-1/send-text" "{$ZP,\"message\":\"z-api\"}"
call zapiListQueue "$Z/queue?page=1&pageSize=5"
call zapiQueueCount "$Z/queue/count"
call zapiCancelMessage "$Z/queue/$ZAAP"
call zapiCancelMessage "$Z/queue/$ZAAP"
call zapiPurgeQueue "$Z/queue"
call zapiGetStatus "$Z/status"
call zapiGetQrCode "$Z/qr-code"
sql "INSERT INTO pgwa.instance_qrcodes (instance_id, tenant_id, code, base64, received_at)
     SELECT id, tenant_id, '2@oa-e2e', 'iVBORw0KGgoAAAANSUhEUg==', now() FROM pgwa.instances WHERE id = '$ZI'
     ON CONFLICT (instance_id) DO UPDATE SET code = excluded.code, base64 = excluded.base64" > /dev/null
call zapiGetQrCode "$Z/qr-code"
call zapiGetQrCodeImage "$Z/qr-code/image"
is "$(j .value)" "data:image/png;base64,iVBORw0KGgoAAAANSUhEUg==" "Z-API: the QR code image as a data: URI"
for kind in received received-delivery delivery message-status connected disconnected; do
	op=zapiUpdateWebhook$(sed -E 's/(^|-)(.)/\U\2/g' <<< "$kind")
	call "$op" "$Z/update-webhook-$kind" "{\"value\":\"$MOCK_URL/client-hooks/oa-e2e/zapi\"}"
done
call zapiUpdateEveryWebhook "$Z/update-every-webhooks" '{"value":""}'

# --- both ways: an undocumented method on each documented path is a 405 ----------
# Each path is asked as it was called (its ids real), before anything is deleted.
bad=""
while IFS=$'\t' read -r template concrete; do
	req PATCH "$concrete" "" "$KEY"
	allow=$(sed -n 's/^Allow: *//Ip' <<< "$HEADERS" | tr -d ' ')
	documented=$(jq -r --arg p "$template" '.paths[$p] | keys | map(ascii_upcase) | join(",")' "$SPEC")
	extra=$(tr ',' '\n' <<< "$allow" | grep -vxF -f <(tr ',' '\n' <<< "$documented,HEAD") | tr '\n' ' ')
	if [ "$STATUS" != 405 ] || [ -z "$allow" ] || [ -n "$extra" ]; then
		bad+="$template: PATCH answered $STATUS, Allow '$allow' (documented: $documented) "
	fi
done < <(jq -r --rawfile calls "$CALLS" '
	($calls | split("\n") | map(select(. != "") | split("\t") | {op: .[0], path: .[1]})) as $c
	| .paths | to_entries[] | .key as $p
	| [.value[] | objects | .operationId] as $ops
	| first($c[] | select(.op as $o | $ops | any(. == $o)) | .path) // empty
	| "\($p)\t\(. | split("?")[0])"' "$SPEC")
is "$bad" "" "every documented path answers another method with 405 and an Allow of documented methods"

# Deletions last
req POST /connections '{"label":"OpenAPI e2e to delete"}' "$KEY"
call deleteConnection "/connections/$(j .sessionId)" "" "$KEY"
call deleteWebhook "/v1/webhooks/$W" "" "$KEY"
mock /__mock/rules DELETE >/dev/null

# --- coverage: every documented operation was called ---------------------------------
documented=$(jq -r '[.paths[][] | objects | .operationId] | .[]' "$SPEC" | sort -u)
called=$(cut -f1 "$CALLS" | sort -u)
missing=$(comm -23 <(echo "$documented") <(echo "$called") | tr '\n' ' ')
unknown=$(comm -13 <(echo "$documented") <(echo "$called") | tr '\n' ' ')
is "$missing" "" "every documented operation was called"
is "$unknown" "" "every call was of a documented operation"
is "$(wc -l <<< "$called")" "$(wc -l <<< "$documented")" "as many operations called as documented ($(wc -l <<< "$documented"))"
