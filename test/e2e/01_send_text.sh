# A text message goes from an HTTP client through PostgreSQL and the
# dispatcher to the broker, and reads back as sent with the broker's id.
. "$(dirname "$0")/lib.sh"

mock /__mock/reset POST >/dev/null

req POST /v1/tenants '{"name":"e2e-acme"}' "$PGWA_ADMIN_KEY"
is "$STATUS" 201 "admin creates a tenant: 201"
KEY=$(j .api_key)
ok "the tenant's API key is returned once" test -n "$KEY"

req POST /v1/instances "{\"name\":\"acme-1\",\"provider\":\"broker\",\"base_url\":\"$MOCK_URL\",\"api_key\":\"broker-secret\",\"broker_instance_id\":\"wa-acme-1\",\"delay_min_ms\":0,\"delay_max_ms\":0}" "$KEY"
is "$STATUS" 201 "tenant creates an instance: 201"
INST=$(j .id)
is "$(j .has_api_key)" true "the instance reports a broker key without showing it"
ok "the broker key is never returned" bash -c "! grep -q broker-secret <<< '$BODY'"

req POST "/v1/instances/$INST/messages" '{"to":"+55 11 99999-0001","type":"text","text":"Olá, mundo!"}' "$KEY"
is "$STATUS" 202 "sending a text: 202"
is "$(j .status)" queued "the message is queued"
MSG=$(j .message_id)

ok "the message is sent within 5 s" wait_for 5 bash -c "[ \"\$(curl -s -H 'X-API-Key: $KEY' $PGWA_URL/v1/messages/$MSG | jq -r .status)\" = sent ]"

REQS=$(mock "/__mock/requests?path_prefix=/instances/")
is "$(jq length <<< "$REQS")" 1 "the broker received exactly one request"
is "$(jq -r '.[0].method' <<< "$REQS")" POST "it is a POST"
is "$(jq -r '.[0].path' <<< "$REQS")" /instances/wa-acme-1/send-text "to /instances/{broker id}/send-text"
is "$(jq -r '.[0].headers["x-api-key"]' <<< "$REQS")" broker-secret "with the broker's X-API-Key"
is "$(jq -r '.[0].headers["idempotency-key"]' <<< "$REQS")" "$MSG" "with the message id as Idempotency-Key"
is "$(jq -r '.[0].headers["content-type"]' <<< "$REQS")" application/json "as JSON"
is "$(jq -c '.[0].json | {sessionId, instanceId, to, type, message, text, externalId}' <<< "$REQS")" \
	"{\"sessionId\":\"wa-acme-1\",\"instanceId\":\"wa-acme-1\",\"to\":\"5511999990001\",\"type\":\"text\",\"message\":\"Olá, mundo!\",\"text\":\"Olá, mundo!\",\"externalId\":\"$MSG\"}" \
	"the body is the seed-000 normalised payload"
is "$(jq -r '.[0].json.metadata.idempotencyKey' <<< "$REQS")" "$MSG" "metadata.idempotencyKey is the message id"

req GET "/v1/messages/$MSG" "" "$KEY"
is "$STATUS" 200 "reading the message back: 200"
is "$(j .status)" sent "it reads back as sent"
is "$(j .broker_message_id)" "$(jq -r '.[0].json.externalId as $x | "BRK-" + (.[0].seq|tostring)' <<< "$REQS")" "with the broker's id"
is "$(j '.attempt_log | length')" 1 "one attempt is recorded"
is "$(j '.attempt_log[0].http_status')" 200 "the attempt records the broker's status"

# Authentication and tenant isolation
req GET "/v1/messages/$MSG" ""
is "$STATUS" 401 "no key: 401"
is "$(j .error.code)" UNAUTHORIZED "with a JSON error code"
req GET "/v1/messages/$MSG" "" "pgwa_0000000000000000000000000000000000000000"
is "$STATUS" 401 "wrong key: 401"
req GET "/v1/messages/$MSG" "" "" -H "Authorization: Bearer $KEY"
is "$STATUS" 200 "Authorization: Bearer works too"

OTHER=$(new_tenant e2e-other)
req GET "/v1/messages/$MSG" "" "$OTHER"
is "$STATUS" 404 "another tenant's message: 404"
req GET "/v1/instances/$INST" "" "$OTHER"
is "$STATUS" 404 "another tenant's instance: 404"
req POST "/v1/instances/$INST/messages" '{"to":"5511999990001","text":"intrusion"}' "$OTHER"
is "$STATUS" 404 "sending through another tenant's instance: 404"
req POST /v1/instances '{"name":"x"}' "$PGWA_ADMIN_KEY"
is "$STATUS" 403 "an admin key cannot act as a tenant: 403"
req POST /v1/tenants '{"name":"y"}' "$KEY"
is "$STATUS" 403 "a tenant key cannot create tenants: 403"

# Bad input gets a clear error naming the field
req POST "/v1/instances/$INST/messages" '{"to":"123","text":"x"}' "$KEY"
is "$STATUS:$(j .error.code):$(j .error.field)" "400:VALIDATION_FAILED:to" "a bad phone number: 400 naming 'to'"
req POST "/v1/instances/$INST/messages" '{"to":"5511999990001","type":"image"}' "$KEY"
is "$STATUS:$(j .error.field)" "400:mediaUrl" "an image without mediaUrl: 400 naming 'mediaUrl'"
req POST "/v1/instances/$INST/messages" '{not json' "$KEY"
is "$STATUS:$(j .error.field)" "400:body" "a body that is not JSON: 400"

req GET /healthz
is "$STATUS" 200 "GET /healthz: 200"
is "$(j .whatsapp.runtime.transport)" http "healthz shows the whatsapp.runtime block"
is "$(j .dispatcher.running)" true "healthz shows the dispatcher running"
req GET /ready
is "$STATUS:$(j .ready):$(j .checks.dispatcher):$(j .checks.pg_cron)" "200:true:true:true" "GET /ready: 200, dispatcher and pg_cron ready"
