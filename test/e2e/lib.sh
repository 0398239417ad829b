# test/e2e/lib.sh: helpers for end-to-end tests. Each check prints one TAP
# line ("ok - ..." or "not ok - ..."); run_suite.sh counts them.
# Environment: PGWA_URL, MOCK_URL, PGWA_ADMIN_KEY, libpq variables.
set -u
E2E_TMP=$(mktemp -d)
trap 'rm -rf "$E2E_TMP"' EXIT

# req METHOD PATH [BODY] [API_KEY] [extra curl args...]: sets STATUS, BODY, HEADERS
req() {
	local method=$1 path=$2 body=${3:-} key=${4:-}
	shift 4 2>/dev/null || shift $#
	local args=(-s -o "$E2E_TMP/body" -D "$E2E_TMP/headers" -w '%{http_code}' -X "$method"
		--max-time 30 "$PGWA_URL$path")
	[ -n "$key" ] && args+=(-H "X-API-Key: $key")
	[ -n "$body" ] && args+=(-H 'Content-Type: application/json' --data-binary "$body")
	STATUS=$(curl "${args[@]}" "$@")
	BODY=$(cat "$E2E_TMP/body")
	HEADERS=$(tr -d '\r' < "$E2E_TMP/headers")
}

# j FILTER: jq over the last response body
j() { printf '%s' "$BODY" | jq -r "$1" 2>/dev/null; }

is() {
	if [ "$1" == "$2" ]; then
		echo "ok - $3"
	else
		echo "not ok - $3"
		echo "#   got:      '$1'"
		echo "#   expected: '$2'"
	fi
}

# ok DESCRIPTION COMMAND...: passes when COMMAND succeeds
ok() {
	local desc=$1
	shift
	if "$@" >/dev/null 2>&1; then echo "ok - $desc"; else echo "not ok - $desc"; fi
}

# mock PATH [METHOD] [BODY]: talk to the mock broker's control API
mock() {
	local path=$1 method=${2:-GET} body=${3:-}
	if [ -n "$body" ]; then
		curl -s -X "$method" -H 'Content-Type: application/json' --data-binary "$body" "$MOCK_URL$path"
	else
		curl -s -X "$method" "$MOCK_URL$path"
	fi
}

# wait_for SECONDS COMMAND...: polls COMMAND every 50 ms until it succeeds
wait_for() {
	local deadline=$(( $(date +%s%N) + $1 * 1000000000 ))
	shift
	while [ "$(date +%s%N)" -lt "$deadline" ]; do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	return 1
}

sql() { psql -X -qtA -v ON_ERROR_STOP=1 -c "$1"; }

# rsql SQL: as sql, tried again for 30 s while the cluster restarts
rsql() {
	local out i
	for i in $(seq 1 150); do
		out=$(sql "$1" 2>/dev/null) && { echo "$out"; return 0; }
		sleep 0.2
	done
	return 1
}

# settled: the webhook events the last answer stored (its eventId or
# eventIds) are applied by the inbound applier, asynchronously; waits until
# none is left waiting, then sets BODY to their outcome (pgwa._event_result,
# counts summed when there are several). STATUS keeps the HTTP status.
settled() {
	local ids
	ids=$(printf '%s' "$BODY" | jq -r '[.eventId // empty, (.eventIds // [])[]] | unique | join(",")' 2>/dev/null)
	[ -n "$ids" ] || return 0
	wait_for 10 test "$(sql "SELECT count(*) FROM pgwa.webhook_events WHERE id IN ($ids) AND status = 'received'")" = 0
	BODY=$(sql "SELECT jsonb_build_object('status', (array_agg(r->>'status' ORDER BY (r->>'eventId')::bigint))[1],
	                                      'accepted', sum((r->>'accepted')::int), 'duplicates', sum((r->>'duplicates')::int),
	                                      'ignored', sum((r->>'ignored')::int), 'eventIds', jsonb_agg(r->'eventId'))
	            FROM (SELECT pgwa._event_result(w) AS r FROM pgwa.webhook_events w WHERE w.id IN ($ids)) s")
}

# new_tenant NAME: prints the new tenant's API key
new_tenant() {
	req POST /v1/tenants "{\"name\":\"$1\"}" "$PGWA_ADMIN_KEY"
	j .api_key
}

# new_instance KEY NAME [EXTRA_JSON]: prints the new instance's id (mock broker, no pacing)
new_instance() {
	local extra=${3:-}
	req POST /v1/instances "{\"name\":\"$2\",\"provider\":\"broker\",\"base_url\":\"$MOCK_URL\",\"api_key\":\"broker-secret-$2\",\"delay_min_ms\":0,\"delay_max_ms\":0${extra:+,$extra}}" "$1"
	j .id
}

message_status() {
	req GET "/v1/messages/$2" "" "$1"
	j .status
}

# pg_restart MODE: restarts the cluster (fast or immediate) with pg_ctl itself:
# pg_ctlcluster decides whether the cluster runs from an external pid file
# that concurrent throwaway clusters of the same name share, so it may refuse.
pg_restart() {
	local mode=$1 datadir log bin owner
	datadir=$(sql "SHOW data_directory")
	log=$(pg_lsclusters -h "${PGVERSION:-15}" regress 2>/dev/null | awk '{print $7}')
	bin=$("${PG_CONFIG:-pg_config}" --bindir)
	owner=$(stat -c %U "$datadir")
	if [ "$(id -un)" = "$owner" ]; then
		"$bin/pg_ctl" -D "$datadir" -l "${log:-/dev/null}" -m "$mode" -w restart
	else
		runuser -u "$owner" -- "$bin/pg_ctl" -D "$datadir" -l "${log:-/dev/null}" -m "$mode" -w restart
	fi </dev/null >/dev/null 2>&1
}
