#!/usr/bin/env bash
# make bench: every benchmark, each on its own throwaway cluster, then a
# summary of the figures. Benchmarks are measurements, not tests: they print
# figures with their conditions and never fail on a target. They fail only
# when they could not measure. See BENCHMARKS.md.
#
#   bash bench/run.sh                  all of them (about 8 minutes)
#   bash bench/run.sh dispatch latency some of them
#   PGWA_BENCH_RUNS=1 bash bench/run.sh    one run each instead of 3
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

benches=("$@")
[ ${#benches[@]} -gt 0 ] || benches=(enqueue_sql enqueue_http dispatch latency scheduled ingest history)

started=$(date +%s)
bench_build
trap 'rm -rf "$BENCH_OWN_DEST" "$PGWA_BENCH_RESULTS"' EXIT
export PGWA_BENCH_RESULTS
PGWA_BENCH_RESULTS=$(mktemp)

failed=()
for b in "${benches[@]}"; do
	bash "bench/$b.sh" 2>&1 | grep -vE '^(Creating new PostgreSQL cluster|Dropping cluster)' || failed+=("$b")
	echo
done

echo "== summary ($(date -u +%FT%TZ), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo);" \
	"medians of ${PGWA_BENCH_RUNS:-3} runs; $(( $(date +%s) - started )) s in all)"
awk -F'\t' '$2 != "conditions" { printf "  %-13s %-46s %s\n", $1, $2, $3 }' "$PGWA_BENCH_RESULTS"
if [ ${#failed[@]} -gt 0 ]; then
	echo "could not measure: ${failed[*]}"
	exit 1
fi
