# Crash safety: thousands of messages over many instances, and while they
# are being dispatched the dispatcher is killed with SIGKILL (PostgreSQL then
# restarts the whole cluster), and in a second batch PostgreSQL itself is
# stopped in immediate mode. Nothing may be lost, each instance's order at
# the broker must hold, and a repeat may only be the same request again.
. "$(dirname "$0")/lib.sh"

N_INST=50
PER_INST=60
N=$((N_INST * PER_INST))

sent_count() { rsql "SELECT count(*) FROM pgwa.outbox o JOIN pgwa.instances i ON i.id = o.instance_id
                      WHERE i.tenant_id = '$TENANT' AND i.name LIKE '$1-%' AND o.status = 'sent'"; }
all_sent() { [ "$(sent_count "$1")" = "$N" ]; }
requests() { mock "/__mock/count?path_prefix=/instances/$1-" | jq -r .count; }
requests_at_least() { [ "$(requests "$1")" -ge "$2" ]; }
dispatcher_up() { local p; p=$(sql "SELECT pgwa.dispatcher_pid()" 2>/dev/null) && [ -n "$p" ] && [ "$p" != "$1" ]; }

TENANT=$(sql "SELECT tenant_id FROM pgwa.create_tenant('e2e-crash')")
RUN=$(printf '%04x' $((RANDOM % 65536)))	# instance names (and broker paths) unique to this run
# Each answer takes a few ms, so that about one request per instance is in
# flight at any moment, as with a real broker.
mock /__mock/rules POST '{"path_prefix":"/instances/","path_contains":"'"$RUN"'-","responses":[{"delay_ms":5}],"then":"repeat_last"}' >/dev/null

# enqueue PREFIX: N_INST instances, PER_INST messages each, enqueued in one
# transaction, interleaved across instances; text = the message's number
enqueue() {
	sql "SELECT count(pgwa.create_instance('$TENANT', '$1-' || lpad(g::text, 2, '0'), 'broker', '$MOCK_URL',
	                                     'crash-key', '{\"delay_min_ms\":0,\"delay_max_ms\":0}'))
	     FROM generate_series(1, $N_INST) g" >/dev/null
	sql "DO \$\$
	     DECLARE r record;
	     BEGIN
	       FOR n IN 1..$PER_INST LOOP
	         FOR r IN SELECT id FROM pgwa.instances WHERE tenant_id = '$TENANT' AND name LIKE '$1-%' ORDER BY name LOOP
	           PERFORM pgwa.send(r.id, '55119' || lpad(n::text, 8, '0'), n::text);
	         END LOOP;
	       END LOOP;
	     END \$\$"
}

# check PREFIX WHAT: the promises, from the mock's records and the outbox
check() {
	local prefix=$1 what=$2 f=$E2E_TMP/$1.tsv res
	mock "/__mock/requests?path_prefix=/instances/$prefix-" |
		jq -r '.[] | [.seq, .path, .headers["idempotency-key"], (.json | tojson)] | @tsv' > "$f"
	res=$(psql -X -qtA -v ON_ERROR_STOP=1 <<-EOF
		CREATE TEMP TABLE r (mseq bigint, path text, key uuid, body jsonb);
		\copy r FROM '$f'
		CREATE TEMP TABLE m AS
		  SELECT o.id, o.instance_id, o.seq, o.status, o.payload, i.broker_instance_id
		  FROM pgwa.outbox o JOIN pgwa.instances i ON i.id = o.instance_id
		  WHERE i.tenant_id = '$TENANT' AND i.name LIKE '$prefix-%';
		CREATE TEMP TABLE firsts AS
		  SELECT m.instance_id, m.seq, min(r.mseq) AS first_mseq
		  FROM m JOIN r ON r.key = m.id GROUP BY 1, 2;
		SELECT json_build_object(
		  'messages', (SELECT count(*) FROM m),
		  'sent', (SELECT count(*) FROM m WHERE status = 'sent'),
		  'requests', (SELECT count(*) FROM r),
		  'received', (SELECT count(DISTINCT key) FROM r),
		  'unknown', (SELECT count(*) FROM r WHERE key IS NULL OR key NOT IN (SELECT id FROM m)),
		  'out_of_order', (SELECT count(*) FROM (
		      SELECT first_mseq < lag(first_mseq) OVER (PARTITION BY instance_id ORDER BY seq) AS bad
		      FROM firsts) x WHERE bad),
		  'repeated', (SELECT count(*) FROM (SELECT key FROM r GROUP BY key HAVING count(*) > 1) x),
		  'max_copies', (SELECT coalesce(max(c), 0) FROM (SELECT count(*) AS c FROM r GROUP BY key) x),
		  'repeats_differing', (SELECT count(*) FROM (SELECT key FROM r GROUP BY key
		                                              HAVING count(DISTINCT body) > 1 OR count(DISTINCT path) > 1) x),
		  'wrong_message', (SELECT count(*) FROM r JOIN m ON m.id = r.key
		                    WHERE r.path <> '/instances/' || m.broker_instance_id || '/send-text'
		                       OR r.body->>'externalId' <> m.id::text
		                       OR r.body->>'text' IS DISTINCT FROM m.payload->>'text'),
		  'released', (SELECT count(*) FROM pgwa.attempts a JOIN m USING (instance_id, seq)
		               WHERE a.outcome = 'lease_expired'),
		  'repeated_unreleased', (SELECT count(*) FROM (SELECT key FROM r GROUP BY key HAVING count(*) > 1) x
		                          JOIN m ON m.id = x.key
		                          WHERE NOT EXISTS (SELECT 1 FROM pgwa.attempts a
		                                            WHERE (a.instance_id, a.seq) = (m.instance_id, m.seq)
		                                              AND a.outcome = 'lease_expired')))
		EOF
	)
	echo "# $what: $res"
	is "$(jq -r .sent <<< "$res")/$(jq -r .messages <<< "$res")" "$N/$N" "$what: no message lost, all $N sent"
	is "$(jq -r .received <<< "$res")" "$N" "$what: every message reached the broker"
	is "$(jq -r .unknown <<< "$res")" 0 "$what: the broker got nothing but these messages"
	is "$(jq -r .out_of_order <<< "$res")" 0 "$what: each instance's messages first reached the broker in seq order"
	is "$(jq -r .repeats_differing <<< "$res")" 0 "$what: every repeat is the same request again (same key, path and body)"
	is "$(jq -r .wrong_message <<< "$res")" 0 "$what: every request carries its own message (path, externalId, text)"
	ok "$what: only messages in flight at the crash were repeated ($(jq -r .repeated <<< "$res") <= $N_INST, at most twice each)" \
		test "$(jq -r .repeated <<< "$res")" -le "$N_INST" -a "$(jq -r .max_copies <<< "$res")" -le 2
	is "$(jq -r .repeated_unreleased <<< "$res")" 0 "$what: every repeated message had its claim given back at the restart"
	ok "$what: claims in flight at the crash were given back ($(jq -r .released <<< "$res")) and sent again" \
		test "$(jq -r .released <<< "$res")" -gt 0
}

# --- kill -9 of the dispatcher ------------------------------------------------------
t0=$(date +%s%N)
enqueue "k$RUN"
echo "# batch 1: $N messages over $N_INST instances enqueued in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
wait_for 20 requests_at_least "k$RUN" $((N / 5))
PID=$(sql "SELECT pgwa.dispatcher_pid()")
at_kill=$(requests "k$RUN")
kill -9 "$PID"
echo "# killed the dispatcher (pid $PID) after at least $at_kill broker requests"
ok "the dispatcher was killed mid-batch ($at_kill of $N requests made)" test "$at_kill" -lt "$N"
ok "a new dispatcher starts after crash recovery" wait_for 30 dispatcher_up "$PID"
ok "all $N messages are sent after the crash" wait_for 60 all_sent "k$RUN"
echo "# batch 1 done $(( ($(date +%s%N) - t0) / 1000000 )) ms after the enqueue began"
check "k$RUN" "kill -9"

# --- PostgreSQL stopped in immediate mode ---------------------------------------------
t0=$(date +%s%N)
enqueue "r$RUN"
wait_for 20 requests_at_least "r$RUN" $((N / 5))
PID=$(sql "SELECT pgwa.dispatcher_pid()")
at_stop=$(requests "r$RUN")
ok "PostgreSQL restarts in immediate mode" pg_restart immediate
echo "# restarted PostgreSQL (immediate) after at least $at_stop broker requests"
ok "PostgreSQL was stopped mid-batch ($at_stop of $N requests made)" test "$at_stop" -lt "$N"
ok "the dispatcher is back after the restart" wait_for 30 dispatcher_up "$PID"
ok "all $N messages are sent after the restart" wait_for 60 all_sent "r$RUN"
echo "# batch 2 done $(( ($(date +%s%N) - t0) / 1000000 )) ms after the enqueue began"
check "r$RUN" "restart -m immediate"
mock /__mock/rules DELETE >/dev/null
wait_for 10 bash -c "curl -sf $PGWA_URL/healthz" >/dev/null
req GET /healthz
is "$STATUS" 200 "pgwa-http serves again after both crashes"
