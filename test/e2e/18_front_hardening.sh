# pgwa-http's defences, on a front of its own with small limits: a body over
# PGWA_HTTP_MAX_BODY is refused with 413 before it is read; a client that
# stops sending is cut off after PGWA_HTTP_TIMEOUT; connections past
# PGWA_HTTP_MAX_CONNECTIONS are not served; the access log is one JSON line
# per request with its request id and no credential; SIGTERM lets the
# request in flight finish (a broker operation held 2 s by the mock broker)
# while new connections are refused, then the front exits.
. "$(dirname "$0")/lib.sh"

KEY=$(new_tenant e2e-hardening)
INST=$(new_instance "$KEY" harden-1)

PGDATABASE=pgwa PGWA_HTTP_PORT=0 PGWA_HTTP_THREADS=2 PGWA_HTTP_MAX_BODY=1024 PGWA_HTTP_TIMEOUT=2 \
	PGWA_HTTP_MAX_CONNECTIONS=4 PGWA_HTTP_SHUTDOWN_GRACE=10 \
	"$(dirname "$0")/../../http_front/pgwa-http" > "$E2E_TMP/hard.out" 2> "$E2E_TMP/hard.log" &
FRONT=$!
trap 'kill $FRONT 2>/dev/null; wait $FRONT 2>/dev/null' EXIT
for _ in $(seq 100); do grep -q "listening on" "$E2E_TMP/hard.out" && break; sleep 0.05; done
ADDR=$(sed -n 's/.*listening on //p' "$E2E_TMP/hard.out" | head -1)
URL="http://$ADDR"
PORT=${ADDR##*:}

# 413: a declared body over the limit, and a chunked one that grows past it
big=$(head -c 2000 /dev/zero | tr '\0' 'x')
code=$(curl -s -o "$E2E_TMP/413.json" -w '%{http_code}' -X POST -H "X-API-Key: $KEY" -H 'Content-Type: application/json' \
	--data-binary "{\"to\":\"5511999990000\",\"text\":\"$big\"}" "$URL/v1/instances/$INST/messages")
is "$code $(jq -r .error.code "$E2E_TMP/413.json")" "413 PAYLOAD_TOO_LARGE" "a body over PGWA_HTTP_MAX_BODY: 413"
code=$(printf '{"to":"5511999990000","text":"%s"}' "$big" | curl -s -o /dev/null -w '%{http_code}' -X POST \
	-H "X-API-Key: $KEY" -H 'Content-Type: application/json' -H 'Transfer-Encoding: chunked' --data-binary @- \
	"$URL/v1/instances/$INST/messages")
is "$code" 413 "a chunked body that grows past it: 413"
is "$(sql "SELECT count(*) FROM pgwa.outbox WHERE instance_id = '$INST'")" 0 "and nothing was queued"

# A slow client: half a request line, then silence; the front closes the connection.
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n' >&3
start=$(date +%s%N)
timeout 10 cat <&3 > /dev/null || true	# returns when the server closes the connection
took=$(( ($(date +%s%N) - start) / 1000000 ))
exec 3<&-
ok "a client that stops sending is cut off after PGWA_HTTP_TIMEOUT ($took ms)" test "$took" -ge 1800 -a "$took" -lt 6000

# The connection limit: idle connections take every place (six, as the pool's
# threads share the four places out among them); another is not served.
for fd in 4 5 6 7 8 9; do eval "exec $fd<>/dev/tcp/127.0.0.1/$PORT"; done
sleep 0.2
# (within the idle timeout, after which the idle ones are closed and it would be)
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$URL/healthz" || true)
ok "past PGWA_HTTP_MAX_CONNECTIONS a connection is not served (got '$code')" test "$code" != 200
for fd in 4 5 6 7 8 9; do eval "exec $fd<&-"; done
ok "served again once they are gone" wait_for 5 curl -sf -o /dev/null "$URL/healthz"

# The access log: JSON lines with the request id, no credential.
curl -s -o /dev/null -H "X-API-Key: $KEY" -H 'X-Request-Id: hardening-req-1' "$URL/v1/instances"
ok "every access log line is JSON" bash -c "grep '^{' '$E2E_TMP/hard.log' | jq -e . > /dev/null"
is "$(grep -c '"request_id":"hardening-req-1"' "$E2E_TMP/hard.log")" 1 "with the request id the client gave"
ok "and no API key" bash -c "! grep -q '$KEY' '$E2E_TMP/hard.log'"

# Graceful shutdown: a request in flight finishes, new ones are refused.
mock /__mock/rules POST '{"rules":[{"path_prefix":"/instances/harden-1/status","responses":[{"status":200,"body":{"status":"connected","connected":true},"delay_ms":2000}],"times":1}]}' >/dev/null
curl -s -o "$E2E_TMP/inflight.json" -w '%{http_code}' -H "X-API-Key: $KEY" \
	"$URL/integrations/whatsapp/instances/$INST/status" > "$E2E_TMP/inflight.code" &
CURL=$!
sleep 0.5
kill -TERM $FRONT
sleep 0.3
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$URL/healthz" || true)
ok "while draining, new connections are refused (got '$code')" test "$code" != 200
wait $CURL
is "$(cat "$E2E_TMP/inflight.code") $(jq -r .status "$E2E_TMP/inflight.json")" "200 connected" \
	"the request in flight finished with its answer"
ok "and the front exits" wait_for 10 bash -c "! kill -0 $FRONT 2>/dev/null"
mock /__mock/rules DELETE >/dev/null
