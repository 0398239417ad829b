#!/usr/bin/env bash
# enqueue_sql: durable enqueue throughput through SQL, against a plain INSERT.
#
# pgbench, 8 clients, each transaction one SELECT pgwa.send(<instance>, ...)
# over 100 instances (one script file per instance, picked at random by
# pgbench, so no lookup is added to the transaction). The reference, run in
# the same cluster and interleaved with it, is a single-row INSERT with the
# same clients into a queue-shaped table: bigserial key, jsonb payload, one
# secondary index. fsync=on; the dispatcher runs in pgwa.mode=disabled, so it
# holds the messages and does not compete.
. "$(dirname "$0")/lib.sh"
bench_cluster -o fsync=on -o pgwa.mode=disabled

DURATION=${PGWA_BENCH_DURATION:-10}
CLIENTS=8
INSTANCES=100

bench_tenant bench-sql
mapfile -t ids < <(bench_instances sql "$INSTANCES" http://127.0.0.1:9)
q "CREATE TABLE bench_queue (id bigserial PRIMARY KEY, instance_id uuid NOT NULL,
                             payload jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
   CREATE INDEX bench_queue_instance ON bench_queue (instance_id);"

pgwa_args=()
ref_args=()
for i in "${!ids[@]}"; do
	echo "SELECT pgwa.send('${ids[$i]}', '5511999990000', 'bench');" > "$BENCH_WORK/send_$i.sql"
	echo "INSERT INTO bench_queue (instance_id, payload) VALUES ('${ids[$i]}', '{\"to\": \"5511999990000\", \"type\": \"text\", \"text\": \"bench\"}');" \
		> "$BENCH_WORK/insert_$i.sql"
	pgwa_args+=(-f "$BENCH_WORK/send_$i.sql")
	ref_args+=(-f "$BENCH_WORK/insert_$i.sql")
done

conditions "pgbench -n -M prepared -c $CLIENTS -j 2 -T $DURATION; $INSTANCES instances;" \
	"$BENCH_RUNS runs, pgwa and reference interleaved, CHECKPOINT before each"

# run_pgbench NAME ARGS...: prints the tx/s of one pgbench run (0 on errors).
run_pgbench() {
	local name=$1 out
	shift
	q "CHECKPOINT" >/dev/null
	out=$(pgbench -n -M prepared -c "$CLIENTS" -j 2 -T "$DURATION" "$@" 2>&1) || {
		echo "bench: pgbench $name failed:" >&2; echo "$out" | tail -5 >&2; echo 0; return
	}
	if ! echo "$out" | grep -q "^number of failed transactions: 0 "; then
		echo "bench: pgbench $name had failed transactions" >&2
	fi
	echo "$out" | awk '/^tps = / {print $3; exit}'
}

pgwa_tps=()
ref_tps=()
for r in $(seq "$BENCH_RUNS"); do
	# Alternate the order so a drift in the machine's load hits both sides.
	if [ $((r % 2)) = 1 ]; then
		ref_tps+=("$(run_pgbench reference "${ref_args[@]}")")
		pgwa_tps+=("$(run_pgbench pgwa.send "${pgwa_args[@]}")")
	else
		pgwa_tps+=("$(run_pgbench pgwa.send "${pgwa_args[@]}")")
		ref_tps+=("$(run_pgbench reference "${ref_args[@]}")")
	fi
	printf '  run %d: pgwa.send %.0f tx/s, reference INSERT %.0f tx/s, ratio %.0f%%\n' "$r" \
		"${pgwa_tps[-1]}" "${ref_tps[-1]}" "$(awk -v a="${pgwa_tps[-1]}" -v b="${ref_tps[-1]}" 'BEGIN {print b ? a*100/b : 0}')"
done

# Every transaction queued exactly one message.
queued=$(q "SELECT count(*) FROM pgwa.outbox WHERE status = 'queued'")
inserted=$(q "SELECT count(*) FROM bench_queue")
echo "  rows: $queued messages queued, $inserted reference rows"

p=$(median "${pgwa_tps[@]}")
ref=$(median "${ref_tps[@]}")
result "pgwa.send tx/s (median)" "$(fmt "$p")"
result "reference INSERT tx/s (median)" "$(fmt "$ref")"
result "ratio pgwa/reference (target >= 50%)" "$(awk -v a="$p" -v b="$ref" 'BEGIN {printf "%.0f%%", a*100/b}')"
result "noise between runs (max-min)/median" "pgwa $(spread "${pgwa_tps[@]}"), reference $(spread "${ref_tps[@]}")"
conditions_end
