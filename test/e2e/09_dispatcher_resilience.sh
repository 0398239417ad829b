# A transient database error while the dispatcher records results (here a
# lock timeout behind a client transaction) is retried: the result is kept,
# the message ends sent, and the dispatcher does not restart.
. "$(dirname "$0")/lib.sh"

KEY=$(new_tenant e2e-resilience)
INST=$(new_instance "$KEY" resil-1)
PGDB=$(sql "SELECT current_database()")

# The dispatcher picks up a database-level lock_timeout when it reconnects.
sql "ALTER DATABASE $PGDB SET lock_timeout = '300ms'" >/dev/null
OLD=$(sql "SELECT pgwa.dispatcher_pid()")
kill -TERM "$OLD"
wait_for 15 bash -c "p=\$(psql -X -qtA -c 'SELECT pgwa.dispatcher_pid()'); [ -n \"\$p\" ] && [ \"\$p\" != $OLD ]" >/dev/null
PID=$(sql "SELECT pgwa.dispatcher_pid()")

# Make the broker slow so the request is in flight when the client takes the lock.
mock /__mock/rules POST '{"rules":[{"path_prefix":"/instances/resil-1/","responses":[{"delay_ms":400}]}]}' >/dev/null
req POST "/v1/instances/$INST/messages" '{"to":"5511900000401","text":"held behind a lock"}' "$KEY"
MSG=$(j .message_id)
wait_for 5 bash -c "[ \"\$(psql -X -qtA -c \"SELECT status FROM pgwa.outbox WHERE id = '$MSG'\")\" = sending ]"
# A client transaction holds the instance's queue row for 1.5 s.
psql -X -q -c "BEGIN; SET LOCAL lock_timeout = 0; SELECT 1 FROM pgwa.instance_state WHERE instance_id = '$INST' FOR UPDATE; SELECT pg_sleep(1.5); COMMIT;" >/dev/null &
LOCKER=$!
wait "$LOCKER"

ok "the message is sent once the lock is released" wait_for 10 bash -c "[ \"\$(psql -X -qtA -c \"SELECT status FROM pgwa.outbox WHERE id = '$MSG'\")\" = sent ]"
is "$(sql "SELECT pgwa.dispatcher_pid()")" "$PID" "the dispatcher did not restart"
SERVER_LOG=$(ls "$(dirname "${PG_CLUSTER_CONF_ROOT:-/nonexistent}")"/log/*.log 2>/dev/null | head -1)
ok "the recording hit the lock timeout and was retried (server log)" \
	grep -q "recording results failed (canceling statement due to lock timeout); retrying" "$SERVER_LOG"
is "$(sql "SELECT count(*) FROM pgwa.attempts a JOIN pgwa.outbox o USING (instance_id, seq) WHERE o.id = '$MSG'")" 1 "one attempt recorded, once"
is "$(mock "/__mock/count?path_prefix=/instances/resil-1/" | jq -r .count)" 1 "the broker got one request"

mock /__mock/rules DELETE >/dev/null
sql "ALTER DATABASE $PGDB RESET lock_timeout" >/dev/null
kill -TERM "$PID"
wait_for 15 bash -c "p=\$(psql -X -qtA -c 'SELECT pgwa.dispatcher_pid()'); [ -n \"\$p\" ] && [ \"\$p\" != $PID ]" >/dev/null
