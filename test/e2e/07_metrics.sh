# GET /metrics through pgwa-http with the real dispatcher and mock broker:
# one message sent, one sent after a scripted 503, one dead on a 400, one
# held by a slow broker; the counters of the instance move by exactly that,
# the histograms and gauges follow, every line is valid Prometheus text, and
# the counters survive a restart.
. "$(dirname "$0")/lib.sh"

KEY=$(new_tenant e2e-metrics)
INST=$(new_instance "$KEY" metrics-1)
PREFIX=/instances/metrics-1/
L="instance_name=\"metrics-1\",instance_id=\"$INST\""
mock /__mock/reset POST >/dev/null

# scrape: fetches /metrics into $M (and $STATUS, $HEADERS)
scrape() {
	req GET /metrics "" "$PGWA_ADMIN_KEY"
	M=$BODY
	printf '%s\n' "$M" > "$E2E_TMP/metrics.txt"
}
# val SERIES [TEXT]: the value of one exact series (name{labels}), 0 if absent
val() {
	printf '%s\n' "${2:-$M}" | awk -v k="$1" 'index($0, k " ") == 1 { v = $2 } END { print (v == "" ? 0 : v) }'
}
# delta SERIES: how much SERIES moved from the snapshot $BEFORE to $M
delta() { awk -v a="$(val "$1" "$BEFORE")" -v b="$(val "$1")" 'BEGIN { print b - a }'; }
# others: activity of every other instance (sent + retried + dead) in $TEXT
others() {
	printf '%s\n' "${1:-$M}" | awk -v mine="$INST" '
		/^pgwa_(messages_sent|send_retries|messages_dead)_total[{]/ && index($0, "instance_id=\"" mine "\"") == 0 { s += $2 }
		END { print s + 0 }'
}
status_is() { [ "$(message_status "$KEY" "$2")" = "$1" ]; }

# prom_check FILE: every line is valid text format 0.0.4; a family's TYPE
# comes once and before its samples; prints the offending lines
prom_check() {
	awk '
	function bad(why) { print "#   bad line " NR " (" why "): " $0; nbad++ }
	BEGIN {
		name = "[a-zA-Z_:][a-zA-Z0-9_:]*"
		lval = "\"([^\"\\\\]|\\\\[\\\\\"n])*\""
		pair = "[a-zA-Z_][a-zA-Z0-9_]*=" lval
		value = "[-+]?(([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][-+]?[0-9]+)?|Inf|NaN)"
		sample = "^" name "([{](" pair "(," pair ")*)?[}])? " value "( -?[0-9]+)?$"
	}
	/^# HELP / { if ($0 !~ "^# HELP " name " ") bad("HELP"); next }
	/^# TYPE / {
		if ($0 !~ "^# TYPE " name " (counter|gauge|histogram|summary|untyped)$") bad("TYPE")
		if (typed[$3]++) bad("second TYPE")
		family = $3; type = $4; next
	}
	/^#/ { next }
	/^$/ { bad("empty"); next }
	{
		if ($0 !~ sample) { bad("syntax"); next }
		n = $0; sub(/[{ ].*/, "", n)
		if (type == "histogram") sub(/_(bucket|sum|count)$/, "", n)
		if (n != family) bad("outside its family " family)
		samples++
	}
	END { if (samples == 0) { print "#   no samples"; nbad++ } exit nbad > 0 }' "$1"
}

# the route
req GET /metrics
is "$STATUS" 401 "/metrics without a key: 401"
req GET /metrics "" "$KEY"
is "$STATUS" 403 "/metrics with a tenant key: 403"
scrape
is "$STATUS" 200 "/metrics with the admin key: 200"
is "$(grep -i '^content-type:' <<< "$HEADERS" | cut -d' ' -f2-)" "text/plain; version=0.0.4; charset=utf-8" \
	"Content-Type is the Prometheus text format 0.0.4"
is "$(val pgwa_dispatcher_up)" 1 "pgwa_dispatcher_up is 1"
is "$(val 'pgwa_mode_info{mode="http",raw="http"}')" 1 "pgwa_mode_info shows mode http"
is "$(val "pgwa_instance_backlog_messages{$L}")" 0 "a new instance has an empty backlog"
is "$(grep -F "instance_id=\"$INST\"" <<< "$M" | grep -c "type=")" 0 "and no counters yet"
BEFORE=$M

# one success, one 503 then success, one 400 (dead), one at a time
req POST "/v1/instances/$INST/messages" '{"to":"5511900000701","text":"ok"}' "$KEY"
M1=$(j .message_id)
ok "message 1 is sent" wait_for 10 status_is sent "$M1"
mock /__mock/rules POST "{\"rules\":[{\"path_prefix\":\"$PREFIX\",\"responses\":[{\"status\":503,\"body\":{\"error\":\"busy\"}}]}]}" >/dev/null
req POST "/v1/instances/$INST/messages" '{"to":"5511900000701","text":"retry"}' "$KEY"
M2=$(j .message_id)
ok "message 2 is sent after a 503" wait_for 10 status_is sent "$M2"
mock /__mock/rules POST "{\"rules\":[{\"path_prefix\":\"$PREFIX\",\"responses\":[{\"status\":400,\"body\":{\"error\":\"bad number\"}}]}]}" >/dev/null
req POST "/v1/instances/$INST/messages" '{"to":"5511900000701","text":"dead"}' "$KEY"
M3=$(j .message_id)
ok "message 3 is dead after a 400" wait_for 10 status_is dead "$M3"
is "$(mock "/__mock/count?path_prefix=$PREFIX" | jq -r .count)" 4 "the broker saw four requests"

scrape
ok "every line of /metrics is valid Prometheus text" prom_check "$E2E_TMP/metrics.txt"
is "$(delta "pgwa_messages_queued_total{$L,type=\"text\"}")" 3 "queued +3"
is "$(delta "pgwa_messages_sent_total{$L,type=\"text\"}")" 2 "sent +2"
is "$(delta "pgwa_send_retries_total{$L,type=\"text\"}")" 1 "retries +1 (the 503)"
is "$(delta "pgwa_messages_dead_total{$L,type=\"text\"}")" 1 "dead +1 (the 400)"
is "$(val "pgwa_instance_backlog_messages{$L}")" 0 "the instance's backlog is empty again"
# Global series are exact when no other instance did anything meanwhile.
if [ "$(others "$BEFORE")" = "$(others)" ]; then
	cmp=exact
	want() { [ "$1" = "$2" ]; }
else
	cmp="at least (other instances were active)"
	want() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }
fi
F='pgwa_send_failures_total{class='
ok "failures http_5xx +1, $cmp" want "$(delta "${F}\"http_5xx\"}")" 1
ok "failures http_4xx +1, $cmp" want "$(delta "${F}\"http_4xx\"}")" 1
if [ "$cmp" = exact ]; then
	for c in timeout connect http_429 disconnected other; do
		is "$(delta "${F}\"$c\"}")" 0 "failures $c +0"
	done
fi
ok "broker request histogram +4 observations, $cmp" want "$(delta pgwa_broker_request_duration_seconds_count)" 4
ok "send latency histogram +2 observations, $cmp" want "$(delta pgwa_send_latency_seconds_count)" 2
is "$(delta 'pgwa_broker_request_duration_seconds_bucket{le="+Inf"}')" "$(delta pgwa_broker_request_duration_seconds_count)" \
	"the +Inf bucket equals the count"
ok "the latency sum grew by at least the retry backoff (1 s)" \
	awk -v d="$(delta pgwa_send_latency_seconds_sum)" 'BEGIN { exit !(d >= 1) }'

# A slow broker: the request shows in flight and in the backlog, then lands
# in the duration histogram above 1 s.
BEFORE=$M
mock /__mock/rules POST "{\"rules\":[{\"path_prefix\":\"$PREFIX\",\"responses\":[{\"delay_ms\":1500}]}]}" >/dev/null
req POST "/v1/instances/$INST/messages" '{"to":"5511900000701","text":"slow"}' "$KEY"
M4=$(j .message_id)
in_flight() { scrape; [ "$(val pgwa_transfers_in_flight)" -ge 1 ] && [ "$(val "pgwa_instance_backlog_messages{$L}")" = 1 ]; }
ok "while the broker is slow: transfers in flight >= 1 and the instance's backlog is 1" wait_for 5 in_flight
ok "message 4 is sent" wait_for 10 status_is sent "$M4"
scrape
is "$(val "pgwa_instance_backlog_messages{$L}")" 0 "after it the backlog is empty"
is "$(delta "pgwa_messages_sent_total{$L,type=\"text\"}")" 1 "sent +1"
is "$(delta 'pgwa_broker_request_duration_seconds_bucket{le="1"}')" 0 "the slow request is not in the 1 s bucket"
ok "it is in the +Inf bucket" want "$(delta 'pgwa_broker_request_duration_seconds_bucket{le="+Inf"}')" 1
ok "transfers in flight go back to 0" wait_for 5 bash -c "curl -s -H 'X-API-Key: $PGWA_ADMIN_KEY' $PGWA_URL/metrics | grep -qx 'pgwa_transfers_in_flight 0'"

# The front's own: requests by method, route (ids taken out) and status, and its latency.
scrape
BEFORE=$M
req GET "/v1/instances/$INST" "" "$KEY"
req GET "/v1/instances/00000000-0000-0000-0000-000000000000" "" "$KEY"
scrape
R='pgwa_http_requests_total{method="GET",route="/v1/instances/{id}"'
is "$(delta "$R,status=\"200\"}") $(delta "$R,status=\"404\"}")" "1 1" \
	"pgwa_http_requests_total counts each route and status once, ids taken out"
ok "pgwa_http_request_duration_seconds counts every request" \
	test "$(delta pgwa_http_request_duration_seconds_count)" -ge 3
ok "and /metrics with them is valid" prom_check "$E2E_TMP/metrics.txt"

# Counters live in tables: a restart keeps them.
scrape
BEFORE=$M
pg_ctlcluster 15 regress restart -m fast
ok "after a restart the dispatcher is running" wait_for 15 bash -c "[ -n \"\$(psql -X -qtA -c 'SELECT pgwa.dispatcher_pid()')\" ]"
wait_for 10 bash -c "curl -sf $PGWA_URL/healthz" >/dev/null
scrape
for s in messages_queued_total messages_sent_total send_retries_total messages_dead_total; do
	is "$(val "pgwa_$s{$L,type=\"text\"}")" "$(val "pgwa_$s{$L,type=\"text\"}" "$BEFORE")" "pgwa_$s survives the restart"
done
ok "and /metrics is still valid after it" prom_check "$E2E_TMP/metrics.txt"
