# The broker's complementary operations of seed 000 (status, recipient check,
# groups, metrics, creating the instance at the broker), passed through by
# pgwa-http to the mock broker with the instance's credential, which the
# client never sees; broker errors are 502, a slow broker 504 after
# PGWA_HTTP_BROKER_TIMEOUT; nothing is done for another tenant's instance or
# an instance without a broker.
. "$(dirname "$0")/lib.sh"

KEY=$(new_tenant e2e-brokerops)
INST=$(new_instance "$KEY" ops-1)
OPS=/integrations/whatsapp/instances/$INST

req GET "$OPS/status" "" "$KEY"
is "$STATUS $(j .status) $(j .connected)" "200 connected true" "status: the broker's answer"
last=$(mock "/__mock/requests?path_prefix=/instances/ops-1/status")
is "$(jq -r '.[-1].method + " " + .[-1].headers["x-api-key"]' <<< "$last")" "GET broker-secret-ops-1" \
	"asked at the broker with the instance's credential"
ok "the internal forward header never reaches the client" bash -c "! grep -qi 'x-pgwa-forward' <<< '$HEADERS'"

req POST "$OPS/exists" '{"phone":"+55 11 99999-0001"}' "$KEY"
is "$STATUS $(j .exists)" "200 true" "exists: the broker's answer"
is "$(mock "/__mock/requests?path_prefix=/instances/ops-1/exists" | jq -c '.[-1].json.numbers')" '["+55 11 99999-0001"]' \
	"the numbers are passed on"
req POST "$OPS/exists" '{"phone":"call me"}' "$KEY"
is "$STATUS $(j .error.field)" "400 phone" "a recipient that is no phone number: 400 naming phone"

req GET "$OPS/groups" "" "$KEY"
is "$STATUS $(j '.groups | length')" "200 0" "groups"
req GET "$OPS/metrics" "" "$KEY"
is "$STATUS $(j '.sent | type')" "200 number" "the broker's metrics"
req POST "$OPS/broker" '{"webhookUrl":"http://127.0.0.1:9/hook"}' "$KEY"
is "$STATUS $(j .id) $(j .status)" "201 ops-1 created" "creating the instance at the broker: its answer and status"
is "$(mock "/__mock/requests?path_prefix=/instances" | jq -c '[.[] | select(.method == "POST" and .path == "/instances")][-1].json')" \
	'{"id":"ops-1","name":"ops-1","webhookUrl":"http://127.0.0.1:9/hook"}' "with the instance's broker id and the client's fields"
req GET "/api$OPS/status" "" "$KEY"
is "$STATUS" 200 "also under /api"

# Broker errors and a slow broker.
mock /__mock/rules POST '{"rules":[{"path_prefix":"/instances/ops-1/groups","responses":[{"status":500,"body":{"error":"boom"}}],"times":1},
	{"path_prefix":"/instances/ops-1/metrics","responses":[{"status":200,"body":{"sent":1},"delay_ms":7000}],"times":1}]}' >/dev/null
req GET "$OPS/groups" "" "$KEY"
is "$STATUS $(j .error.code) $(j .error.brokerStatus) $(j .error.brokerBody.error)" "502 BROKER_ERROR 500 boom" \
	"a broker error: 502 with the broker's status and body"
start=$(date +%s%N)
req GET "$OPS/metrics" "" "$KEY"
took=$(( ($(date +%s%N) - start) / 1000000 ))
is "$STATUS $(j .error.code)" "504 BROKER_TIMEOUT" "a slow broker: 504 after the timeout"
ok "after about 5 s ($took ms)" test "$took" -ge 4500 -a "$took" -lt 6900
mock /__mock/rules DELETE >/dev/null

# Nothing for another tenant, nor for an instance without a broker.
req GET "$OPS/status" "" "$(new_tenant e2e-brokerops-other)"
is "$STATUS" 404 "another tenant's instance: 404"
req POST /v1/instances '{"name":"ops-bare","provider":"broker"}' "$KEY"
req GET "/integrations/whatsapp/instances/$(j .id)/status" "" "$KEY"
is "$STATUS $(j .error.code) $(j .error.field)" "503 WHATSAPP_NOT_CONFIGURED base_url" "an instance without a broker: 503"
req POST "$OPS/status" "" "$KEY"
is "$STATUS" 405 "status is a GET"
ok "the broker's credential is not in the access log" bash -c "! grep -q 'broker-secret-ops-1' '$PGWA_E2E_WORK/http.log'"
