#!/usr/bin/env bash
# dispatch: how fast the dispatcher drains a backlog, and whether that holds
# with many instances.
#
# For each case, a backlog of 20,000 text messages is queued while
# pgwa.mode=disabled (one transaction, instances with delay_min_ms =
# delay_max_ms = 0), then pgwa.mode is set to http (ALTER SYSTEM +
# pg_reload_conf()) and the outbox is polled every 100 ms until every
# message is sent. Throughput = messages / (last sent_at - the database time
# of the reload), both read from the database. Cases:
#   1,000 instances x 20      the main figure (target >= 3,000 messages/s)
#     100 instances x 200     fewer instances: at most 100 in flight
#  10,000 instances x 2       scale: against the 100-instance case (target >= 80%)
# Before each case the queue tables are emptied, the instances' queue state
# reset, and VACUUM ANALYZE + CHECKPOINT run, so every case starts alike.
# The mock broker answers at once (200), 2 threads. pgwa.max_in_flight and
# pgwa.claim_batch keep their defaults.
. "$(dirname "$0")/lib.sh"
bench_cluster -o fsync=on -o pgwa.mode=disabled

TOTAL=20000
MOCK_THREADS=${PGWA_BENCH_MOCK_THREADS:-2}
TIMEOUT_S=${PGWA_BENCH_DISPATCH_TIMEOUT:-120}

bench_mock "$MOCK_THREADS"
bench_tenant bench-dispatch
q "CREATE TABLE bench_set (name text, n int, id uuid, PRIMARY KEY (name, n))"
for set in 1000 100 10000; do
	q "INSERT INTO bench_set
	   SELECT 'i$set', g, pgwa.create_instance('$TENANT_ID', 'd$set-' || g, 'broker', '$MOCK_URL',
	                                          'bench-key', '{\"delay_min_ms\":0,\"delay_max_ms\":0}')
	   FROM generate_series(1, $set) g"
done
DISPATCHER=$(q "SELECT pgwa.dispatcher_pid()")

conditions "$TOTAL messages per case, queued in one transaction while disabled; delays 0;" \
	"mock broker: $MOCK_THREADS threads, answers 200 at once; outbox polled every 100 ms;" \
	"11,100 instances exist throughout (1,000 + 100 + 10,000); $BENCH_RUNS runs of each case, cases interleaved"

reset_queue() {
	q "TRUNCATE pgwa.attempts, pgwa.messages, pgwa.outbox" >/dev/null
	q "UPDATE pgwa.instance_state SET next_seq = 0, head_due = NULL, not_before = '-infinity',
	                                  inflight_seq = NULL, connection_state = 'unknown'" >/dev/null
	curl -sf -X POST "$MOCK_URL/__mock/reset" >/dev/null
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run_case INSTANCES PER_INSTANCE: prints "messages/s enqueue_ms reaction_ms dispatcher_cpu_ms problems"
run_case() {
	local set=$1 per=$2 t0 t1 left start deadline enq cpu0 cpu1 problems=""
	reset_queue
	enq=$(q "SELECT round(extract(epoch FROM clock_timestamp()) * 1000) FROM (SELECT 1) x" )
	q "SELECT count(*) FROM (SELECT b.id, g FROM bench_set b, generate_series(1, $per) g
	                         WHERE b.name = 'i$set' ORDER BY g, b.n) x,
	                        LATERAL pgwa.send(x.id, '5511999990000', 'dispatch ' || x.g) s" >/dev/null
	enq=$(( $(q "SELECT round(extract(epoch FROM clock_timestamp()) * 1000)") - enq ))
	q "VACUUM ANALYZE pgwa.outbox, pgwa.instance_state" >/dev/null
	q "CHECKPOINT" >/dev/null
	cpu0=$(cpu_ticks "$DISPATCHER")
	t0=$(set_mode http)
	start=$(date +%s)
	deadline=$((start + TIMEOUT_S))
	while :; do
		sleep 0.1
		left=$(q "SELECT count(*) FROM pgwa.outbox WHERE status NOT IN ('sent', 'dead')")
		[ "$left" = 0 ] && break
		if [ "$(date +%s)" -ge "$deadline" ]; then problems="timeout with $left left; "; break; fi
	done
	cpu1=$(cpu_ticks "$DISPATCHER")
	set_mode disabled >/dev/null
	t1=$(q "SELECT round(extract(epoch FROM max(sent_at)) * 1000, 3) FROM pgwa.outbox")
	local sent dead attempts first received
	IFS='|' read -r sent dead attempts first <<< "$(q "SELECT
		(SELECT count(*) FROM pgwa.outbox WHERE status = 'sent'),
		(SELECT count(*) FROM pgwa.outbox WHERE status = 'dead'),
		(SELECT count(*) FROM pgwa.attempts),
		(SELECT round(extract(epoch FROM min(started_at)) * 1000, 3) FROM pgwa.attempts)")"
	received=$(curl -sf "$MOCK_URL/__mock/count" | jq -r .count)
	[ "$sent" = "$TOTAL" ] || problems+="$sent of $TOTAL sent ($dead dead); "
	[ "$attempts" = "$TOTAL" ] || problems+="$attempts attempts; "
	[ "$received" = "$TOTAL" ] || problems+="the mock received $received; "
	sleep 1   # let the dispatcher read pgwa.mode=disabled before the next backlog
	awk -v n="$sent" -v t0="$t0" -v t1="$t1" -v first="$first" -v enq="$enq" \
		-v cpu=$(( (cpu1 - cpu0) * 10 )) -v p="${problems:-none}" \
		'BEGIN { printf "%.0f %d %.0f %d %s\n", n * 1000 / (t1 - t0), enq, first - t0, cpu, p }'
}

declare -A rate reaction cpu
for r in $(seq "$BENCH_RUNS"); do
	for c in "1000 20" "100 200" "10000 2"; do
		set -- $c
		read -r mps enq react dcpu problems <<< "$(run_case "$1" "$2")"
		rate[$1]+="$mps "
		reaction[$1]+="$react "
		cpu[$1]+="$(awk -v c="$dcpu" -v n="$TOTAL" 'BEGIN {printf "%.1f", c * 1000 / n}') "
		printf '  run %d, %5d instances x %3d: %5d messages/s; reload to first request %d ms; queued in %d ms;' \
			"$r" "$1" "$2" "$mps" "$react" "$enq"
		printf ' dispatcher CPU %d ms; problems: %s\n' "$dcpu" "$problems"
	done
done

m1k=$(median ${rate[1000]})
m100=$(median ${rate[100]})
m10k=$(median ${rate[10000]})
result "1,000 instances: messages/s (target >= 3,000)" "$(fmt "$m1k")"
result "100 instances: messages/s" "$(fmt "$m100")"
result "10,000 instances: messages/s" "$(fmt "$m10k")"
result "scale: 10,000 vs 100 instances (target >= 80%)" "$(awk -v a="$m10k" -v b="$m100" 'BEGIN {printf "%.0f%%", a*100/b}')"
result "dispatcher CPU us/message (1k / 100 / 10k)" "$(median ${cpu[1000]}) / $(median ${cpu[100]}) / $(median ${cpu[10000]})"
result "noise between runs (max-min)/median" "1k $(spread ${rate[1000]}), 100 $(spread ${rate[100]}), 10k $(spread ${rate[10000]})"
conditions_end
