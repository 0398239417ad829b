# The queue's management API over HTTP against the running dispatcher: dead
# letters and their replay (same Idempotency-Key), listing, cancel and purge
# with a message held in flight by a slow broker, tenant isolation, and the
# errors that name their field.
. "$(dirname "$0")/lib.sh"

KEY=$(new_tenant e2e-queue)
OTHER=$(new_tenant e2e-queue-other)
status_is() { [ "$(message_status "$KEY" "$2")" = "$1" ]; }
send() {
	req POST "/v1/instances/$1/messages" "$2" "$KEY"
	j .message_id
}
ids() { j "[.items[].id] | join(\",\")"; }

# --- dead letters and replay ------------------------------------------------
DEAD=$(new_instance "$KEY" queue-dead)
mock /__mock/rules POST '{"rules":[{"path_prefix":"/instances/queue-dead/","responses":[{"status":400,"body":{"error":"bad request"}}],"then":"repeat_last"}]}' >/dev/null
M1=$(send "$DEAD" '{"to":"5511900000301","text":"refused once"}')
ok "a message the broker refuses with 400 becomes a dead letter" wait_for 10 status_is dead "$M1"

req GET "/v1/instances/$DEAD/dead-letters" "" "$KEY"
is "$STATUS:$(j .total):$(ids)" "200:1:$M1" "it is listed in the instance's dead letters"
is "$(j '.items[0] | "\(.last_http_status) \(.attempts) \(.last_error != null)"')" "400 1 true" \
	"with its last HTTP status, attempts and last error"

mock /__mock/rules DELETE >/dev/null
req POST "/v1/messages/$M1/replay" "" "$KEY"
is "$STATUS:$(j .id):$(j .attempts)" "200:$M1:0" "replay over HTTP: 200, same message, attempts reset"
ok "the replayed message is sent once the broker accepts it" wait_for 10 status_is sent "$M1"
REQS=$(mock "/__mock/requests?path_prefix=/instances/queue-dead/")
is "$(jq -r '[.[].headers["idempotency-key"]] | join(",")' <<< "$REQS")" "$M1,$M1" \
	"both broker requests carry the same Idempotency-Key"
req GET "/v1/instances/$DEAD/dead-letters" "" "$KEY"
is "$(j .total)" 0 "the dead-letter list is empty again"
req POST "/v1/messages/$M1/replay" "" "$KEY"
is "$STATUS:$(j .error.code)" "409:MESSAGE_NOT_REPLAYABLE" "replaying a sent message: 409"

# Replay all: every dead letter, in its original order
mock /__mock/rules POST '{"rules":[{"path_prefix":"/instances/queue-dead/","responses":[{"status":422}],"then":"repeat_last"}]}' >/dev/null
M2=$(send "$DEAD" '{"to":"5511900000301","text":"dead 2"}')
M3=$(send "$DEAD" '{"to":"5511900000301","text":"dead 3"}')
ok "two more dead letters" wait_for 10 status_is dead "$M3"
is "$(message_status "$KEY" "$M2")" dead "the first one is dead too"
mock /__mock/rules DELETE >/dev/null
since=$(mock "/__mock/requests?path_prefix=/instances/queue-dead/" | jq '.[-1].seq')
req POST "/v1/instances/$DEAD/dead-letters/replay" "" "$KEY"
is "$STATUS:$(j .replayed)" "200:2" "replaying all dead letters: 200 with the count"
ok "both are sent" wait_for 10 status_is sent "$M3"
is "$(message_status "$KEY" "$M2")" sent "the first one too"
is "$(mock "/__mock/requests?path_prefix=/instances/queue-dead/&since=$since" | jq -r '[.[].headers["idempotency-key"]] | join(",")')" \
	"$M2,$M3" "in their original order, with their own ids as Idempotency-Key"

# --- list, cancel and purge with a message in flight ------------------------
HOLD=$(new_instance "$KEY" queue-hold)
# The broker answers this instance's first request after 8 s: meanwhile that
# message stays in 'sending'.
mock /__mock/rules POST '{"rules":[{"path_prefix":"/instances/queue-hold/","responses":[{"delay_ms":8000}],"times":1}]}' >/dev/null
H1=$(send "$HOLD" '{"to":"5511900000302","text":"h1"}')
H2=$(send "$HOLD" '{"to":"5511900000302","text":"h2"}')
H3=$(send "$HOLD" '{"to":"5511900000302","text":"h3"}')
H4=$(send "$HOLD" '{"to":"5511900000302","type":"image","mediaUrl":"https://example.com/a.jpg"}')
H5=$(send "$HOLD" "{\"to\":\"5511900000302\",\"text\":\"h5\",\"scheduledFor\":\"$(date -u -d '+1 hour' +%FT%TZ)\"}")
ok "the first message is held in flight" wait_for 10 status_is sending "$H1"

req GET "/v1/instances/$HOLD/queue" "" "$KEY"
is "$STATUS:$(j .queueLength):$(j .total)" "200:5:5" "the queue lists 5 messages, the one in flight included"
is "$(ids)" "$H1,$H2,$H3,$H4,$H5" "in sending order"
is "$(j '[.items[].status] | join(",")')" "sending,queued,queued,queued,scheduled" "with their statuses"
req GET "/v1/instances/$HOLD/queue?status=queued&type=text" "" "$KEY"
is "$(ids):$(j .total)" "$H2,$H3:2" "filtered by status and type"
req GET "/v1/instances/$HOLD/queue?status=queued,failed&type=image" "" "$KEY"
is "$(ids)" "$H4" "several statuses, comma-separated"
req GET "/v1/instances/$HOLD/queue?limit=2&offset=1" "" "$KEY"
is "$(ids):$(j .limit):$(j .offset):$(j .total)" "$H2,$H3:2:1:5" "a page of 2 from offset 1"

req GET "/v1/instances/$HOLD/queue?limit=0" "" "$KEY"
is "$STATUS:$(j .error.code):$(j .error.field)" "400:VALIDATION_FAILED:limit" "limit=0: 400 naming limit"
req GET "/v1/instances/$HOLD/queue?offset=x" "" "$KEY"
is "$STATUS:$(j .error.field)" "400:offset" "offset=x: 400 naming offset"
req GET "/v1/instances/$HOLD/queue?status=pending" "" "$KEY"
is "$STATUS:$(j .error.field)" "400:status" "an unknown status: 400 naming status"
req DELETE "/v1/instances/$HOLD/queue?olderThan=someday" "" "$KEY"
is "$STATUS:$(j .error.field)" "400:olderThan" "a bad olderThan: 400 naming olderThan"
req GET "/v1/instances/$HOLD/dead-letters?limit=501" "" "$KEY"
is "$STATUS:$(j .error.field)" "400:limit" "dead letters, limit=501: 400 naming limit"

req DELETE "/v1/messages/$H1" "" "$KEY"
is "$STATUS:$(j .error.code)" "409:MESSAGE_NOT_CANCELABLE" "canceling the message in flight: 409"
is "$(j .error.message)" "the message is being sent" "which says it is being sent"
req DELETE "/v1/messages/$H2" "" "$KEY"
is "$STATUS:$(j .id):$(j .status)" "200:$H2:canceled" "canceling a queued message: 200, canceled"
req DELETE "/v1/messages/$H2" "" "$KEY"
is "$STATUS:$(j .error.code)" "409:MESSAGE_NOT_CANCELABLE" "canceling it again: 409"
ok "naming its status" grep -q canceled <<< "$(j .error.message)"
req DELETE "/v1/messages/00000000-0000-0000-0000-000000000000" "" "$KEY"
is "$STATUS" 404 "canceling an unknown message: 404"

# Another tenant sees none of it
req GET "/v1/instances/$HOLD/queue" "" "$OTHER"
is "$STATUS" 404 "another tenant's queue: 404"
req DELETE "/v1/instances/$HOLD/queue" "" "$OTHER"
is "$STATUS" 404 "purging another tenant's queue: 404"
req DELETE "/v1/messages/$H3" "" "$OTHER"
is "$STATUS" 404 "canceling another tenant's message: 404"
req GET "/v1/instances/$DEAD/dead-letters" "" "$OTHER"
is "$STATUS" 404 "another tenant's dead letters: 404"
req POST "/v1/messages/$M1/replay" "" "$OTHER"
is "$STATUS" 404 "replaying another tenant's message: 404"
req POST "/v1/instances/$DEAD/dead-letters/replay" "" "$OTHER"
is "$STATUS" 404 "replaying another tenant's dead letters: 404"
is "$(message_status "$KEY" "$H3")" queued "and nothing changed"

req DELETE "/v1/instances/$HOLD/queue?olderThan=$(date -u -d '-1 hour' +%FT%TZ)" "" "$KEY"
is "$STATUS:$(j .canceled)" "200:0" "purging messages older than an hour ago cancels none"
req DELETE "/v1/instances/$HOLD/queue" "" "$KEY"
is "$STATUS:$(j .canceled):$(j .queueLength)" "200:3:1" "purging the queue cancels the 3 waiting; the one in flight remains"
req GET "/v1/instances/$HOLD/queue" "" "$KEY"
is "$(ids):$(j '.items[0].status')" "$H1:sending" "only the message in flight is left"
ok "the message in flight is sent when the broker answers" wait_for 20 status_is sent "$H1"
is "$(message_status "$KEY" "$H5")" canceled "the scheduled message was canceled too"
sleep 0.5
is "$(mock "/__mock/count?path_prefix=/instances/queue-hold/" | jq -r .count)" 1 \
	"canceled messages never reach the broker"

# --- what enqueue refuses up front --------------------------------------------
req POST /v1/instances '{"name":"queue-nourl","provider":"broker","api_key":"x"}' "$KEY"
NOURL=$(j .id)
req POST "/v1/instances/$NOURL/messages" '{"to":"5511900000303","text":"x"}' "$KEY"
is "$STATUS:$(j .error.code):$(j .error.field)" "503:WHATSAPP_NOT_CONFIGURED:base_url" \
	"an instance without base_url: 503 naming base_url"
req POST /v1/instances "{\"name\":\"queue-meta\",\"provider\":\"meta\",\"base_url\":\"$MOCK_URL\",\"api_key\":\"tok\"}" "$KEY"
META=$(j .id)
req POST "/v1/instances/$META/messages" '{"to":"5511900000303","text":"x"}' "$KEY"
is "$STATUS:$(j .error.field)" "503:settings.phone_number_id" "a meta instance without phone_number_id: 503 naming it"
req POST /v1/instances "{\"name\":\"queue-meta2\",\"provider\":\"meta\",\"base_url\":\"$MOCK_URL\",\"api_key\":\"tok\",\"settings\":{\"phone_number_id\":\"1001\"}}" "$KEY"
META=$(j .id)
req POST "/v1/instances/$META/messages" '{"to":"5511900000303","type":"poll","poll":{"name":"q","options":["a","b"]}}' "$KEY"
is "$STATUS:$(j .error.field)" "400:type" "a poll through the Cloud API: 400 naming type"
req POST "/v1/instances/$META/messages" '{"to":"120363000000000303@g.us","text":"x"}' "$KEY"
is "$STATUS:$(j .error.field)" "400:to" "a group JID through the Cloud API: 400 naming to"
