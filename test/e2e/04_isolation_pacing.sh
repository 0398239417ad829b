# The queue's promises against the real dispatcher and mock broker:
# instances are isolated (a hung or failing broker slows nobody else), each
# instance is strict FIFO with one message in flight, and sends keep a
# random human pace plus delayMessage.
. "$(dirname "$0")/lib.sh"

KEY=$(new_tenant e2e-isolation)
set_guc() { sql "ALTER SYSTEM SET $1 = '$2'" && sql "SELECT pg_reload_conf()" >/dev/null; sleep 0.3; }
reset_guc() { sql "ALTER SYSTEM RESET $1" && sql "SELECT pg_reload_conf()" >/dev/null; }
# all_sent ID...: true when all of the given messages are sent
all_sent() { local IFS=,; [ "$(sql "SELECT count(*) FROM pgwa.outbox WHERE status = 'sent' AND id = ANY ('{$*}'::uuid[])")" = $# ]; }
status_of() { sql "SELECT status FROM pgwa.outbox WHERE id = '$1'"; }
# count PREFIX: requests the mock received under a path prefix
count() { mock "/__mock/count?path_prefix=$1" | jq -r .count; }
at_least() { [ "$(count "$1")" -ge "$2" ]; }
send() {	# send INSTANCE JSON: prints the message id
	req POST "/v1/instances/$1/messages" "$2" "$KEY"
	j .message_id
}
# gaps PREFIX: the gaps in ms between the broker's receive times, one per line
gaps() { mock "/__mock/requests?path_prefix=$1" | jq -r '[.[].t] | . as $t | range(1; length) | ($t[.] - $t[. - 1]) | floor'; }
mock /__mock/rules DELETE >/dev/null

# --- Isolation ---------------------------------------------------------------
# A's broker hangs (20 s, longer than the request timeout); C's answers 500.
set_guc pgwa.http_timeout 8s
A=$(new_instance "$KEY" iso-a)
B=$(new_instance "$KEY" iso-b)
C=$(new_instance "$KEY" iso-c)
mock /__mock/rules POST '{"rules":[
	{"path_prefix":"/instances/iso-a/","responses":[{"delay_ms":20000}],"then":"repeat_last"},
	{"path_prefix":"/instances/iso-c/","responses":[{"status":500,"body":{"error":"boom"}}],"then":"repeat_last"}]}' >/dev/null
MA=$(send "$A" '{"to":"5511900000401","text":"hangs"}')
MC=$(send "$C" '{"to":"5511900000403","text":"fails"}')
ok "A's request reaches its hung broker" wait_for 5 at_least /instances/iso-a/ 1
ok "C's broker fails it and it is retried" wait_for 8 at_least /instances/iso-c/ 2

MB=()
for i in 1 2 3 4 5; do MB+=("$(send "$B" "{\"to\":\"5511900000402\",\"text\":\"b$i\"}")"); done
ok "B's 5 messages are all sent while A hangs and C fails" wait_for 10 all_sent "${MB[@]}"
is "$(status_of "$MA")" sending "A's message is still in flight (sending)"
is "$(count /instances/iso-a/)" 1 "A's broker got one request: no second one while the first is in flight"
is "$(sql "SELECT status IN ('failed', 'sending') FROM pgwa.outbox WHERE id = '$MC'")" t "C's message is not sent: it is being retried"
is "$(mock /__mock/requests?path_prefix=/instances/iso-b/ | jq -r '[.[].json.text] | join(",")')" "b1,b2,b3,b4,b5" "B's messages reach the broker in order"
# Database clocks: enqueue transaction start to sent, per message of B.
lat=$(sql "SELECT round(max(extract(epoch FROM sent_at - created_at)) * 1000) FROM pgwa.outbox
           WHERE id = ANY ('{$(IFS=,; echo "${MB[*]}")}'::uuid[])")
echo "# B's slowest enqueue-to-sent time while A hangs and C fails: ${lat} ms"
ok "B is not slowed by A or C (slowest enqueue-to-sent ${lat} ms < 2000 ms, A's timeout is 8 s)" test "${lat:-99999}" -lt 2000

# A and C recover once their brokers answer: A after its timeout, C on retry.
mock /__mock/rules DELETE >/dev/null
reset_guc pgwa.http_timeout
T_RECOVER=$(date +%s)

# --- FIFO, one in flight --------------------------------------------------------
# 30 messages to one instance; each answer takes 50 ms, so if two were ever
# in flight their requests would arrive less than 50 ms apart.
F=$(new_instance "$KEY" fifo-1)
mock /__mock/rules POST '{"rules":[{"path_prefix":"/instances/fifo-1/","responses":[{"delay_ms":50}],"then":"repeat_last"}]}' >/dev/null
MF=()
for i in $(seq 1 30); do MF+=("$(send "$F" "{\"to\":\"5511900000404\",\"text\":\"$i\"}")"); done
ok "the 30 messages are sent" wait_for 20 all_sent "${MF[@]}"
REQS=$(mock "/__mock/requests?path_prefix=/instances/fifo-1/")
is "$(jq length <<< "$REQS")" 30 "the broker received 30 requests"
is "$(jq -r '[.[].json.text] | join(",")' <<< "$REQS")" "$(seq -s, 1 30)" "in exactly enqueue order (1..30)"
is "$(jq -r '[.[].headers["idempotency-key"]] | join(",")' <<< "$REQS")" "$(IFS=,; echo "${MF[*]}")" "each with its own message id as Idempotency-Key, in order"
min_gap=$(gaps /instances/fifo-1/ | sort -n | head -1)
echo "# FIFO: smallest gap between two requests with 50 ms answers: ${min_gap} ms"
ok "never two in flight: requests at least 50 ms apart (smallest gap ${min_gap} ms)" test "${min_gap:-0}" -ge 49
mock /__mock/rules DELETE >/dev/null

# --- Human pace ----------------------------------------------------------------
# delay 400-800 ms after each send, plus delayMessage=1 after the third.
P=$(new_instance "$KEY" pace-1 '"delay_min_ms":400,"delay_max_ms":800')
MP=()
for i in $(seq 1 9); do
	extra=""
	[ "$i" = 3 ] && extra=',"delayMessage":1'
	MP+=("$(send "$P" "{\"to\":\"5511900000405\",\"text\":\"p$i\"$extra}")")
done
ok "the 9 paced messages are sent" wait_for 30 all_sent "${MP[@]}"
mapfile -t G < <(gaps /instances/pace-1/)
echo "# pace gaps (ms): ${G[*]}"
is "${#G[@]}" 8 "8 gaps between 9 requests"
plain=("${G[@]:0:2}" "${G[@]:3}")
low=$(printf '%s\n' "${plain[@]}" | sort -n | head -1)
high=$(printf '%s\n' "${plain[@]}" | sort -n | tail -1)
ok "every gap is at least delay_min_ms (smallest ${low} ms >= 400)" test "${low:-0}" -ge 400
ok "every gap is at most delay_max_ms plus slack (largest ${high} ms <= 800 + 500)" test "${high:-99999}" -le 1300
ok "the gap after delayMessage=1 is at least 1.4 s (${G[2]} ms)" test "${G[2]:-0}" -ge 1400
ok "and at most 1.8 s plus slack (${G[2]} ms <= 2300)" test "${G[2]:-99999}" -le 2300
ok "gaps are random, not all the same (spread $((high - low)) ms > 50 ms)" test $((high - low)) -gt 50

# --- A and C recovered -------------------------------------------------------
ok "A's message is sent after its timed-out attempt (same key retried)" wait_for 20 all_sent "$MA"
is "$(mock /__mock/requests?path_prefix=/instances/iso-a/ | jq -r --arg m "$MA" '[.[].headers["idempotency-key"] == $m] | all')" true "every attempt of A carried its message id"
req GET "/v1/messages/$MA" "" "$KEY"
is "$(j '.attempt_log[0].outcome')" retry "A's first attempt is recorded as a retry"
ok "its error names the timeout" bash -c "grep -qi 'timeout\|timed out' <<< '$(j '.attempt_log[0].error')'"
ok "C's message is sent once its broker answers" wait_for 20 all_sent "$MC"
echo "# A and C recovered $(( $(date +%s) - T_RECOVER )) s after their brokers did"

# --- A request never outlives its claim -------------------------------------------
# With a lease shorter than the request timeout, the request is cut short
# before its claim expires, so the message is never given back and sent a
# second time while its first request is still in flight.
set_guc pgwa.lease 5
set_guc pgwa.http_timeout 60s
L=$(new_instance "$KEY" lease-1)
mock /__mock/rules POST '{"rules":[{"path_prefix":"/instances/lease-1/","responses":[{"delay_ms":30000}],"then":"repeat_last"}]}' >/dev/null
ML=$(send "$L" '{"to":"5511900000406","text":"slow broker, short lease"}')
first_attempt() { sql "SELECT a.outcome || ':' || coalesce((a.duration_ms < 5000)::text, 'no result') FROM pgwa.attempts a JOIN pgwa.outbox o USING (instance_id, seq)
                       WHERE o.id = '$ML' ORDER BY a.attempt, a.started_at LIMIT 1"; }
has_attempt() { [ -n "$(first_attempt)" ]; }
ok "the hung request ends" wait_for 15 has_attempt
is "$(first_attempt)" "retry:true" "it timed out within its 5 s lease: a retry, not a claim given back"
is "$(count /instances/lease-1/)" 1 "no second request was made while the first was in flight"
mock /__mock/rules DELETE >/dev/null
reset_guc pgwa.lease
reset_guc pgwa.http_timeout
ok "the message is sent once its broker answers" wait_for 15 all_sent "$ML"
