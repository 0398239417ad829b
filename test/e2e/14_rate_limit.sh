# The per-key rate limit of pgwa-http (PGWA_HTTP_RATE_LIMIT): a second front
# with 5 requests a second per key and a burst of 5. A key past its burst
# gets 429 RATE_LIMITED with Retry-After; another key is not held back by
# it; the bucket refills; webhooks from brokers are never limited; in the
# Z-API dialect the instance token in the path is the key.
. "$(dirname "$0")/lib.sh"

KEY=$(new_tenant e2e-rate)
OTHER=$(new_tenant e2e-rate-other)
INST=$(new_instance "$KEY" rate-e2e '"broker_instance_id":"e2e-rate-1"')
req POST "/api/integrations/whatsapp/instances/$INST/webhook-secret" '{"secret":"e2e-rate-secret-0001"}' "$KEY"
is "$STATUS" 201 "the instance has a webhook secret"

PGDATABASE=pgwa PGWA_HTTP_PORT=0 PGWA_HTTP_THREADS=2 PGWA_HTTP_RATE_LIMIT=5 PGWA_HTTP_RATE_BURST=5 \
	"$(dirname "$0")/../../http_front/pgwa-http" > "$E2E_TMP/rate.out" 2> "$E2E_TMP/rate.log" &
FRONT=$!
trap 'kill $FRONT 2>/dev/null; wait $FRONT 2>/dev/null' EXIT
for _ in $(seq 100); do grep -q "listening on" "$E2E_TMP/rate.out" && break; sleep 0.05; done
URL="http://$(sed -n 's/.*listening on //p' "$E2E_TMP/rate.out" | head -1)"

# codes KEY N: N GETs of the instance list, one after the other; prints their codes
codes() {
	local i
	for i in $(seq "$2"); do
		curl -s -o /dev/null -w '%{http_code} ' -H "X-API-Key: $1" "$URL/v1/instances"
	done
}
out=$(codes "$KEY" 12)
is "$(tr ' ' '\n' <<< "$out" | grep -c 200)" 5 "a burst of 5 is served ($out)"
ok "then 429" grep -q 429 <<< "$out"
curl -s -D "$E2E_TMP/rl.headers" -o "$E2E_TMP/rl.body" -H "X-API-Key: $KEY" "$URL/v1/instances" > /dev/null
is "$(jq -r .error.code "$E2E_TMP/rl.body")" RATE_LIMITED "the error names the limit"
ok "with Retry-After" grep -qi '^retry-after: [1-9]' "$E2E_TMP/rl.headers"
is "$(codes "$OTHER" 3)" "200 200 200 " "another key is served meanwhile"
is "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" "$URL/v1/instances")" 429 \
	"the same key as a Bearer token shares the bucket"

# webhooks are never limited, whatever their rate
hooks=""
for i in $(seq 12); do
	hooks+=$(curl -s -o /dev/null -w '%{http_code} ' -X POST -H 'X-API-Key: e2e-rate-secret-0001' \
		-H 'Content-Type: application/json' \
		--data-binary "{\"id\":\"rate-$i\",\"type\":\"MESSAGE_INBOUND\",\"instanceId\":\"e2e-rate-1\",\"timestamp\":1714655100,\"payload\":{\"contact\":{\"phone\":\"5511975550001\"},\"message\":{\"conversation\":\"oi $i\"},\"metadata\":{}}}" \
		"$URL/api/integrations/whatsapp/webhook")
done
is "$(tr ' ' '\n' <<< "$hooks" | grep -c 202)" 12 "12 webhooks in a row are all taken"

# Z-API: the token in the path is counted like a key, each token on its own
OTHER_INST=$(new_instance "$OTHER" rate-e2e-other)
sql "SELECT pgwa.set_zapi_token('$INST', 'e2e-rate-zapi-token-1'), pgwa.set_zapi_token('$OTHER_INST', 'e2e-rate-zapi-token-2')" > /dev/null
zcodes() {
	local i
	for i in $(seq "$3"); do
		curl -s -o /dev/null -w '%{http_code} ' "$URL/instances/$1/token/$2/status"
	done
}
out=$(zcodes "$INST" e2e-rate-zapi-token-1 8)
is "$(tr ' ' '\n' <<< "$out" | grep -c 200)" 5 "Z-API: a burst of 5 on one token is served ($out)"
ok "Z-API: then 429" grep -q 429 <<< "$out"
is "$(zcodes "$OTHER_INST" e2e-rate-zapi-token-2 2)" "200 200 " "Z-API: another token is served meanwhile"

sleep 1.3
is "$(codes "$KEY" 2)" "200 200 " "a second later the bucket has refilled"
ok "the front logs no secret" bash -c "! grep -q '$KEY' '$E2E_TMP/rate.log'"
ok "nor a Z-API token" bash -c "! grep -q 'e2e-rate-zapi-token' '$E2E_TMP/rate.log'"
