#!/usr/bin/env bash
# Runs every test against the cluster described by the libpq environment
# (make test sets it up). Three kinds of tests, all counted in one line:
#   test/sql + test/expected   pg_regress, one test per file
#   test/pgtap/*.sql           pgTAP via pg_prove, one test per assertion
#   test/e2e/*.sh              end to end through pgwa-http, the dispatcher and
#                              the mock broker, one test per "ok"/"not ok" line
# Database pgwa has the dispatcher (pgwa.database); pgwa_regress has none, so
# SQL tests see the queue exactly as they leave it.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$(mktemp -d)
chmod 755 "$work"
passed=0
failed=0
pids=()

cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

only="${1:-}"   # optional: regress | pgtap | e2e

createdb pgwa && createdb pgwa_regress || { echo "could not create databases"; echo "0 passed, 1 failed"; exit 1; }
psql -X -q -d pgwa -c "CREATE EXTENSION pg_cron; CREATE EXTENSION pgwa;" || { echo "0 passed, 1 failed"; exit 1; }

# --- pg_regress -------------------------------------------------------------
if [ -z "$only" ] || [ "$only" = regress ]; then
	tests=$(cd test/sql && ls *.sql | sed 's/\.sql$//')
	echo "# pg_regress: $(echo $tests | wc -w) tests"
	"$(pg_config --pgxs | xargs dirname)/../test/regress/pg_regress" \
		--inputdir=test --outputdir=test --bindir="$(pg_config --bindir)" \
		--use-existing --dbname=pgwa_regress $tests > "$work/regress.out" 2>&1
	cat "$work/regress.out" | grep -E "^(test| *[a-z_0-9]+ +\.\.\.)|ok|FAILED" | grep -vE "^=+" || true
	p=$(grep -cE '\.\.\. ok' "$work/regress.out")
	f=$(grep -cE '\.\.\. FAILED|\.\.\. failed' "$work/regress.out")
	if [ "$p" = 0 ] && [ "$f" = 0 ]; then f=1; cat "$work/regress.out"; fi
	[ "$f" -gt 0 ] && [ -f test/regression.diffs ] && head -300 test/regression.diffs
	passed=$((passed + p)); failed=$((failed + f))
fi

# --- pgTAP ------------------------------------------------------------------
if [ -z "$only" ] || [ "$only" = pgtap ]; then
	psql -X -q -d pgwa_regress -c "CREATE EXTENSION IF NOT EXISTS pgwa; CREATE EXTENSION IF NOT EXISTS pgtap;"
	echo "# pgTAP"
	pg_prove --verbose -d pgwa_regress test/pgtap/*.sql > "$work/pgtap.out" 2>&1
	grep -E "^(not ok|ok) |^test/pgtap|Failed|Parse errors|Dubious" "$work/pgtap.out" | grep -vE "^ok [0-9]+ - *$" || true
	p=$(grep -cE '^ok [0-9]+' "$work/pgtap.out")
	f=$(grep -cE '^not ok [0-9]+' "$work/pgtap.out")
	# A file that died or planned more than it ran counts as a failure too.
	if grep -qE 'Dubious|Parse errors|Bad plan|No subtests run' "$work/pgtap.out"; then
		f=$((f + 1)); tail -20 "$work/pgtap.out"
	fi
	passed=$((passed + p)); failed=$((failed + f))
fi

# --- end to end -------------------------------------------------------------
if [ -z "$only" ] || [ "$only" = e2e ]; then
	echo "# end to end"
	export PGWA_ADMIN_KEY
	PGWA_ADMIN_KEY=$(psql -X -qtA -d pgwa -c "SELECT pgwa.create_admin_key('e2e')")
	test/mock_broker/mock-broker --port 0 --port-file "$work/mock.port" > "$work/mock.log" 2>&1 &
	pids+=($!)
	PGDATABASE=pgwa PGWA_HTTP_PORT=0 PGWA_HTTP_THREADS=4 PGWA_HTTP_UPLOAD_DIR="$work/uploads" PGWA_HTTP_UPLOAD_SWEEP=1 \
		http_front/pgwa-http > "$work/http.out" 2> "$work/http.log" &
	pids+=($!)
	export PGWA_HTTP_PID=$!
	for _ in $(seq 100); do
		[ -s "$work/mock.port" ] && grep -q "listening on" "$work/http.out" && break
		sleep 0.1
	done
	export MOCK_URL="http://127.0.0.1:$(cat "$work/mock.port" 2>/dev/null)"
	export PGWA_URL="http://$(sed -n 's/.*listening on //p' "$work/http.out" | head -1)"
	export PGWA_E2E_WORK="$work"
	# PGWA_E2E_ONLY=14_rate_limit runs one script (a glob)
	for t in test/e2e/${PGWA_E2E_ONLY:-[0-9]*}.sh; do
		echo "# $t"
		out=$(PGDATABASE=pgwa bash "$t" 2>&1)
		echo "$out" | grep -E "^(not ok|ok|#)" || true
		p=$(echo "$out" | grep -cE '^ok ')
		f=$(echo "$out" | grep -cE '^not ok ')
		if [ "$p" = 0 ] && [ "$f" = 0 ]; then
			echo "not ok - $t ran no check"; echo "$out" | tail -20; f=1
		fi
		passed=$((passed + p)); failed=$((failed + f))
	done
	# No request of the whole run may have been answered 500: bad input gets a
	# 4xx, and an internal error is a bug even when no check looked at it.
	n500=$(grep -c '"status":500' "$work/http.log" 2>/dev/null)
	if [ "${n500:-0}" -eq 0 ]; then
		echo "ok - no request was answered 500 during the end-to-end run"
		passed=$((passed + 1))
	else
		echo "not ok - $n500 requests were answered 500:"
		grep '"status":500' "$work/http.log" | head -5
		failed=$((failed + 1))
	fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
