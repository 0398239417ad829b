# Z-API media sent inline (base64, seed 001): pgwa keeps the bytes as an
# upload, the broker gets a signed URL of pgwa-http in mediaUrl, and that URL
# serves the very bytes; a wrong signature does not.
. "$(dirname "$0")/lib.sh"

KEY=$(new_tenant e2e-zapi-media)
INST=$(new_instance "$KEY" zapi-media '"broker_instance_id":"e2e-zapi-media-1"')
sql "SELECT pgwa.set_zapi_token('$INST', 'e2e-zapi-media-token-1')" > /dev/null
Z="/instances/$INST/token/e2e-zapi-media-token-1"

# a PNG header and random bytes, as a data: URI
{ printf '\x89PNG\r\n\x1a\n'; head -c 3000 /dev/urandom; } > "$E2E_TMP/inline.png"
B64=$(base64 -w0 "$E2E_TMP/inline.png")
req POST "$Z/send-image" "{\"phone\":\"5511975550101\",\"image\":\"data:image/png;base64,$B64\",\"caption\":\"inline\"}"
is "$STATUS" 200 "send-image with a base64 image: 200"
ZAAP=$(j .zaapId)
ok "it is queued with its zaapId" test -n "$ZAAP"

ok "the broker gets it within 5 s" wait_for 5 bash -c \
	"[ \"\$(curl -s '$MOCK_URL/__mock/requests?path_prefix=/instances/e2e-zapi-media-1/' | jq length)\" -ge 1 ]"
REQS=$(mock "/__mock/requests?path_prefix=/instances/e2e-zapi-media-1/")
URL=$(jq -r '.[0].json.mediaUrl' <<< "$REQS")
is "$(jq -r '.[0].json.type' <<< "$REQS")" image "as an image"
ok "mediaUrl is a signed URL of pgwa-http ($URL)" grep -qE "^$PGWA_URL/uploads/[0-9a-f-]{36}\?expires=[0-9]+&signature=[0-9a-f]{64}$" <<< "$URL"
ok "the message carries no base64" bash -c "! grep -q '$(head -c 40 <<< "$B64")' <<< '$(jq -c '.[0].json' <<< "$REQS")'"

code=$(curl -s -D "$E2E_TMP/inline.headers" -o "$E2E_TMP/inline.got" -w '%{http_code}' "$URL")
is "$code" 200 "the URL answers 200"
ok "with the very bytes" cmp -s "$E2E_TMP/inline.png" "$E2E_TMP/inline.got"
ok "as image/png" grep -qi '^content-type: image/png' "$E2E_TMP/inline.headers"
is "$(curl -s -o /dev/null -w '%{http_code}' "${URL%?????}00000")" 403 "a wrong signature: 403"
