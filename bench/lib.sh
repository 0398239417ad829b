# bench/lib.sh: shared by the benchmark scripts (sourced, not run).
#
# A benchmark script calls `bench_cluster -o setting=value ...` first. Outside
# a cluster that builds pgwa, installs it into a private folder (as
# scripts/test.sh does) and runs the same script again inside a throwaway
# cluster made by pg_virtualenv -t, with pg_cron and pgwa preloaded and
# pgwa.database=pgwa; inside, it creates database pgwa with both extensions.
#
# Environment:
#   PGWA_BENCH_RUNS      repetitions of each measurement (default 3; medians are reported)
#   PGWA_BENCH_RESULTS   file collecting "benchmark<TAB>figure<TAB>value" lines (bench/run.sh sets it)
#   PGWA_BENCH_DEST      an existing private install (bench/run.sh builds once and sets it)
set -euo pipefail

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_RUNS=${PGWA_BENCH_RUNS:-3}
BENCH_NAME=$(basename "$0" .sh)
BENCH_OWN_DEST=

# Builds everything a benchmark needs and installs pgwa into a private folder.
bench_build() {
	[ -n "${PGWA_BENCH_DEST:-}" ] && return 0
	(
		cd "$BENCH_ROOT"
		PGWA_BENCH_DEPS=1 bash scripts/install_deps.sh
		make -s all >/dev/null
		cc -O2 -Wall -Wextra -o bench/enqueue_client bench/enqueue_client.c \
			-I"$(pg_config --includedir)" -L"$(pg_config --libdir)" -lpq
		cc -O2 -Wall -Wextra -o bench/http_load bench/http_load.c -lcurl
	)
	PGWA_BENCH_DEST=$(mktemp -d)
	BENCH_OWN_DEST=$PGWA_BENCH_DEST
	chmod 755 "$PGWA_BENCH_DEST"
	make -s -C "$BENCH_ROOT" install DESTDIR="$PGWA_BENCH_DEST" >/dev/null
	export PGWA_BENCH_DEST
}

# bench_cluster [-o setting=value ...]: see the top of this file.
bench_cluster() {
	if [ "${PGWA_BENCH_INSIDE:-0}" = 1 ]; then
		bench_inside
		return 0
	fi
	bench_build
	local rc=0
	PGWA_BENCH_INSIDE=1 pg_virtualenv -t -v 15 \
		-o extension_destdir="$PGWA_BENCH_DEST" \
		-o "dynamic_library_path=$PGWA_BENCH_DEST$(pg_config --pkglibdir):\$libdir" \
		-o shared_preload_libraries=pg_cron,pgwa \
		-o cron.database_name=pgwa \
		-o pgwa.database=pgwa \
		-o max_connections=200 \
		"$@" bash "$0" || rc=$?
	[ -n "$BENCH_OWN_DEST" ] && rm -rf "$BENCH_OWN_DEST"
	exit "$rc"
}

BENCH_PIDS=()
bench_cleanup() {
	local p
	for p in "${BENCH_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	[ -n "${BENCH_WORK:-}" ] && rm -rf "$BENCH_WORK"
}

bench_inside() {
	export PGDATABASE=pgwa
	BENCH_WORK=$(mktemp -d)
	chmod 755 "$BENCH_WORK"
	trap bench_cleanup EXIT
	createdb pgwa
	q "CREATE EXTENSION pg_cron; CREATE EXTENSION pgwa;" >/dev/null
	local i
	for i in $(seq 100); do
		[ -n "$(q 'SELECT pgwa.dispatcher_pid()')" ] && return 0
		sleep 0.1
	done
	echo "bench: the pgwa dispatcher did not start" >&2
	exit 1
}

# q SQL: one statement in database pgwa, unaligned output.
q() { psql -X -qtA -v ON_ERROR_STOP=1 -c "$1"; }

# bench_mock [THREADS]: starts the mock broker; sets MOCK_URL.
bench_mock() {
	"$BENCH_ROOT/test/mock_broker/mock-broker" --port 0 --threads "${1:-2}" \
		--port-file "$BENCH_WORK/mock.port" > "$BENCH_WORK/mock.out" 2>&1 &
	BENCH_PIDS+=($!)
	local i
	for i in $(seq 100); do [ -s "$BENCH_WORK/mock.port" ] && break; sleep 0.05; done
	MOCK_URL="http://127.0.0.1:$(cat "$BENCH_WORK/mock.port")"
	curl -sf "$MOCK_URL/__mock/health" >/dev/null
}

# bench_front THREADS: starts pgwa-http (access log to a file); sets PGWA_URL.
bench_front() {
	PGWA_HTTP_PORT=0 PGWA_HTTP_THREADS="$1" \
		"$BENCH_ROOT/http_front/pgwa-http" > "$BENCH_WORK/http.out" 2> "$BENCH_WORK/http.log" &
	BENCH_PIDS+=($!)
	local i
	for i in $(seq 100); do grep -q "listening on" "$BENCH_WORK/http.out" && break; sleep 0.05; done
	PGWA_URL="http://$(sed -n 's/.*listening on //p' "$BENCH_WORK/http.out" | head -1)"
	curl -sf "$PGWA_URL/healthz" >/dev/null
}

# set_mode MODE: pgwa.mode through ALTER SYSTEM and a reload; prints the
# database time of the reload (epoch ms).
set_mode() {
	q "ALTER SYSTEM SET pgwa.mode = '$1'" >/dev/null
	q "SELECT round(extract(epoch FROM clock_timestamp()) * 1000, 3) FROM (SELECT pg_reload_conf()) r"
}

# bench_tenant NAME: creates a tenant; sets TENANT_ID and TENANT_KEY.
bench_tenant() {
	local row
	row=$(q "SELECT tenant_id || ' ' || api_key FROM pgwa.create_tenant('$1')")
	TENANT_ID=${row% *}
	TENANT_KEY=${row#* }
}

# bench_instances PREFIX COUNT BASE_URL: COUNT instances PREFIX-1..COUNT with
# no pacing (delays 0) on the broker provider; prints their ids in order.
bench_instances() {
	q "SELECT pgwa.create_instance('$TENANT_ID', '$1-' || g, 'broker', '$3', 'bench-key',
	                               '{\"delay_min_ms\":0,\"delay_max_ms\":0}')
	   FROM generate_series(1, $2) g ORDER BY g"
}

# median VALUE...: the median (the mean of the middle two for an even count).
median() {
	printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {
		if (NR == 0) exit; if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2] + v[NR/2+1]) / 2 }'
}

# spread VALUE...: (max - min) / median, in percent: the noise between runs.
spread() {
	local m
	[ $# -ge 2 ] || { echo "n/a (1 run)"; return; }
	m=$(median "$@")
	printf '%s\n' "$@" | sort -g | awk -v m="$m" 'NR==1 {lo=$1} {hi=$1} END {
		if (m == 0) print "n/a"; else printf "%.0f%%\n", (hi - lo) * 100 / m }'
}

# fmt NUMBER [DECIMALS]
fmt() { printf "%.${2:-0}f" "$1"; }

# result FIGURE VALUE: one figure of this benchmark, printed and collected.
result() {
	printf '  %-46s %s\n' "$1" "$2"
	if [ -n "${PGWA_BENCH_RESULTS:-}" ]; then
		printf '%s\t%s\t%s\n' "$BENCH_NAME" "$1" "$2" >> "$PGWA_BENCH_RESULTS"
	fi
}

# conditions DESCRIPTION...: prints the machine and server conditions.
conditions() {
	echo "== $BENCH_NAME"
	echo "  machine: $(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)),"\
		"$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) memory,"\
		"load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
	echo "  server: $(q "SELECT 'PostgreSQL ' || current_setting('server_version')
		|| ', fsync=' || current_setting('fsync')
		|| ', synchronous_commit=' || current_setting('synchronous_commit')
		|| ', shared_buffers=' || current_setting('shared_buffers')
		|| ', pgwa.mode=' || current_setting('pgwa.mode')
		|| ', pgwa.max_in_flight=' || current_setting('pgwa.max_in_flight')
		|| ', pgwa.claim_batch=' || current_setting('pgwa.claim_batch')")"
	local line
	for line in "$@"; do echo "  $line"; done
	if [ -n "${PGWA_BENCH_RESULTS:-}" ]; then
		printf '%s\t%s\t%s\n' "$BENCH_NAME" "conditions" "fsync=$(q "SHOW fsync"); $*" >> "$PGWA_BENCH_RESULTS"
	fi
}

conditions_end() {
	echo "  load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
}
