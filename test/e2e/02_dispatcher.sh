# The dispatcher's life: woken by a commit (not a polling sleep), settings
# reloaded on SIGHUP, back after SIGTERM and after a PostgreSQL restart, and
# retries carrying the same Idempotency-Key.
. "$(dirname "$0")/lib.sh"

KEY=$(new_tenant e2e-dispatcher)
INST=$(new_instance "$KEY" disp-1)
count() { mock "/__mock/count?path_prefix=/instances/disp-1/" | jq -r .count; }
sent_within() { wait_for "$1" bash -c "[ \"\$(curl -s -H 'X-API-Key: $KEY' $PGWA_URL/v1/messages/$2 | jq -r .status)\" = sent ]"; }
set_guc() { sql "ALTER SYSTEM SET $1 = '$2'" && sql "SELECT pg_reload_conf()" >/dev/null; sleep 0.3; }
mock /__mock/reset POST >/dev/null

# Woken by the commit: with a 60 s idle poll, a send still goes out at once.
set_guc pgwa.idle_poll 60000
sleep 1.2   # let the dispatcher fall into its long sleep
req POST "/v1/instances/$INST/messages" '{"to":"5511900000101","text":"wake up"}' "$KEY"
M1=$(j .message_id)
ok "the message is sent while the dispatcher sleeps a 60 s poll" sent_within 10 "$M1"
# Timed by the database's own clocks: enqueue transaction start to request start.
elapsed_ms=$(sql "SELECT round(extract(epoch FROM a.started_at - o.created_at) * 1000)
                  FROM pgwa.outbox o JOIN pgwa.attempts a USING (instance_id, seq) WHERE o.id = '$M1'")
echo "# enqueue to broker request with a 60 s idle poll: ${elapsed_ms} ms"
ok "an enqueue's commit wakes the dispatcher (request started ${elapsed_ms} ms after the enqueue < 1000 ms)" test "${elapsed_ms:-99999}" -lt 1000

# SIGHUP: pgwa.mode = disabled holds messages, and healthz says so
set_guc pgwa.mode disabled
req GET /healthz
is "$(j .whatsapp.runtime.disabled):$(j .whatsapp.runtime.mode)" "true:disabled" "healthz reports mode disabled after a reload"
req POST "/v1/instances/$INST/messages" '{"to":"5511900000101","text":"held"}' "$KEY"
M2=$(j .message_id)
sleep 1
is "$(message_status "$KEY" "$M2")" queued "mode disabled accepts and holds"
set_guc pgwa.mode http
ok "back to mode http, the held message goes out" sent_within 5 "$M2"

# dryrun records without calling the broker
set_guc pgwa.mode dryrun
before=$(count)
req POST "/v1/instances/$INST/messages" '{"to":"5511900000101","text":"dry"}' "$KEY"
M3=$(j .message_id)
ok "dryrun marks the message sent" sent_within 5 "$M3"
is "$(count)" "$before" "dryrun sends nothing to the broker"
set_guc pgwa.mode sidecar
req GET /healthz
is "$(j .whatsapp.runtime.mode):$(j .whatsapp.runtime.effectiveMode)" "sidecar:http" "legacy sidecar is read as http; healthz shows the raw value"
set_guc pgwa.mode http

# Retries: a 503 then a success; both attempts carry the same Idempotency-Key
mock /__mock/rules POST '{"rules":[{"path_prefix":"/instances/disp-1/","responses":[{"status":503,"body":{"error":"busy"}}]}]}' >/dev/null
req POST "/v1/instances/$INST/messages" '{"to":"5511900000101","text":"retry me"}' "$KEY"
M4=$(j .message_id)
ok "a message that met a 503 is sent on retry" sent_within 6 "$M4"
REQS=$(mock "/__mock/requests?path_prefix=/instances/disp-1/")
is "$(jq --arg m "$M4" '[.[] | select(.headers["idempotency-key"] == $m)] | length' <<< "$REQS")" 2 "two attempts reached the broker"
req GET "/v1/messages/$M4" "" "$KEY"
is "$(j '[.attempt_log[].outcome] | join(",")')" "retry,sent" "the attempt log shows retry then sent"
is "$(j '.attempt_log[0].http_status')" 503 "the failed attempt records HTTP 503"

# SIGTERM: the postmaster starts the dispatcher again
PID1=$(sql "SELECT pgwa.dispatcher_pid()")
kill -TERM "$PID1"
ok "after SIGTERM a new dispatcher starts" wait_for 15 bash -c "p=\$(psql -X -qtA -c 'SELECT pgwa.dispatcher_pid()'); [ -n \"\$p\" ] && [ \"\$p\" != $PID1 ]"
req POST "/v1/instances/$INST/messages" '{"to":"5511900000101","text":"after sigterm"}' "$KEY"
ok "and it sends" sent_within 5 "$(j .message_id)"

# PostgreSQL restart: the dispatcher comes back with the cluster
sql "ALTER SYSTEM RESET pgwa.idle_poll" >/dev/null
req POST "/v1/instances/$INST/messages" "{\"to\":\"5511900000101\",\"text\":\"before restart\",\"scheduledFor\":\"$(date -u -d '+4 seconds' +%FT%T.%3NZ)\"}" "$KEY"
M5=$(j .message_id)
PID2=$(sql "SELECT pgwa.dispatcher_pid()")
pg_restart fast
ok "after a restart a new dispatcher is running" wait_for 15 bash -c "p=\$(psql -X -qtA -c 'SELECT pgwa.dispatcher_pid()' 2>/dev/null); [ -n \"\$p\" ] && [ \"\$p\" != $PID2 ]"
ok "a message scheduled before the restart is sent after it" sent_within 15 "$M5"
wait_for 10 bash -c "curl -sf $PGWA_URL/healthz" >/dev/null
req POST "/v1/instances/$INST/messages" '{"to":"5511900000101","text":"after restart"}' "$KEY"
is "$STATUS" 202 "pgwa-http serves again after the restart"
ok "and new messages are sent" sent_within 10 "$(j .message_id)"
