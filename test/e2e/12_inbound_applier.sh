# The inbound appliers: webhooks are stored and answered at once, then
# applied in batches by the background workers. A burst of concurrent
# webhooks with redeliveries is applied exactly once; a backlog survives an
# applier killed with SIGKILL (PostgreSQL then restarts every process) and
# is applied once the workers are back; pgwa.inbound_workers of them run;
# an event committed long after its receipt, once the appliers' claims have
# moved past it, is still applied.
. "$(dirname "$0")/lib.sh"

HOOK=/api/integrations/whatsapp/webhook
FX="$(dirname "$0")/../fixtures/inbound"
KEY=$(new_tenant e2e-applier)
INST=$(new_instance "$KEY" app-e2e '"broker_instance_id":"e2e-applier-1"')
TENANT=$(sql "SELECT tenant_id FROM pgwa.instances WHERE id = '$INST'")
req POST "/api/integrations/whatsapp/instances/$INST/webhook-secret" '{"secret":"e2e-applier-secret-0001"}' "$KEY"
is "$STATUS" 201 "the instance has a webhook secret"

waiting() { rsql "SELECT count(*) FROM pgwa.webhook_events WHERE instance_id = '$INST' AND status IN ('received', 'failed')"; }
drained() { [ "$(waiting)" = 0 ]; }

is "$(sql "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pgwa inbound applier'")" \
	"$(sql "SHOW pgwa.inbound_workers")" "pgwa.inbound_workers appliers run"

# A burst: 300 webhooks from 16 parallel clients, every fifth one a
# redelivery of an earlier message; the 240 messages come from 48 contacts
# (the message number modulo 60, multiples of 5 aside).
mkdir -p "$E2E_TMP/burst"
for i in $(seq 1 300); do
	if [ $((i % 5)) = 0 ]; then id=$((i - 3)); else id=$i; fi
	jq -c --arg id "burst-$id" --arg phone "5511971$(printf '%06d' $((id % 60)))" \
		'.instanceId = "e2e-applier-1" | .payload.instanceId = "e2e-applier-1" | .id = $id | .payload.contact.phone = $phone' \
		"$FX/seed000_sample.json" > "$E2E_TMP/burst/$i.json"
done
ls "$E2E_TMP"/burst/*.json | xargs -P 16 -I{} curl -s -o /dev/null -w '%{http_code}\n' -X POST --max-time 30 \
	-H 'X-API-Key: e2e-applier-secret-0001' -H 'Content-Type: application/json' --data-binary @{} "$PGWA_URL$HOOK" \
	> "$E2E_TMP/burst.codes"
is "$(sort -u "$E2E_TMP/burst.codes" | tr -d '\n'):$(wc -l < "$E2E_TMP/burst.codes")" "202:300" "300 concurrent webhooks: all 202"
ok "the appliers apply them all" wait_for 30 drained
is "$(sql "SELECT count(*) || '/' || count(DISTINCT broker_message_id) FROM pgwa.messages WHERE instance_id = '$INST'")" "240/240" \
	"240 messages, each once"
is "$(sql "SELECT count(*) || '/' || count(DISTINCT phone) FROM pgwa.leads WHERE tenant_id = '$TENANT'")" "48/48" "one lead per contact"
is "$(sql "SELECT count(*) FROM pgwa.tickets WHERE tenant_id = '$TENANT' AND status = 'open'")" 48 "one open ticket per lead"
is "$(sql "SELECT sum((result->>'accepted')::int) || '/' || sum((result->>'duplicates')::int) FROM pgwa.webhook_events WHERE instance_id = '$INST'")" \
	"240/60" "240 accepted, 60 redeliveries counted as duplicates"
is "$(sql "SELECT count(*) FROM pgwa.events WHERE tenant_id = '$TENANT' AND event = 'messages.new'")" 240 "one messages.new per message"

# A backlog of 3,000 stored events (one transaction), then an applier is
# killed while it works through them.
sql "SELECT count(pgwa.ingest_webhook('broker', '{\"x-api-key\":\"e2e-applier-secret-0001\"}',
       jsonb_build_object('id', 'crash-' || g, 'type', 'MESSAGE_INBOUND', 'instanceId', 'e2e-applier-1',
         'timestamp', 1714655100 + g, 'payload', jsonb_build_object(
           'contact', jsonb_build_object('phone', (5511972000000 + g % 500)::text, 'name', 'Crash'),
           'message', jsonb_build_object('conversation', 'antes da queda ' || g), 'metadata', '{}'::jsonb))))
     FROM generate_series(1, 3000) g" > /dev/null
PID=$(sql "SELECT pgwa.applier_pid(0)")
wait_for 10 bash -c "[ \"\$(psql -X -qtA -c \"SELECT count(*) FROM pgwa.webhook_events WHERE instance_id = '$INST' AND status = 'applied' AND (body->>'id') LIKE 'crash-%'\")\" -gt 0 ]" || true
BEFORE=$(waiting)
kill -9 "$PID"
ok "some events were still waiting when the applier was killed ($BEFORE)" test "$BEFORE" -gt 0
ok "the appliers come back and apply the rest" wait_for 60 drained
is "$(rsql "SELECT count(*) || '/' || count(DISTINCT broker_message_id) FROM pgwa.messages WHERE instance_id = '$INST' AND broker_message_id LIKE 'crash-%'")" \
	"3000/3000" "every stored event became one message, none twice"
is "$(rsql "SELECT count(*) FROM pgwa.leads WHERE tenant_id = '$TENANT' AND phone LIKE '5511972%'")" 500 "one lead per contact"
is "$(rsql "SELECT count(*) FROM pgwa.tickets t JOIN pgwa.leads l ON l.tenant_id = t.tenant_id AND l.id = t.lead_id
            WHERE t.tenant_id = '$TENANT' AND l.phone LIKE '5511972%' AND t.status = 'open'")" 500 "one open ticket per lead"
is "$(rsql "SELECT count(*) FROM pgwa.webhook_events WHERE instance_id = '$INST' AND status NOT IN ('applied', 'duplicate')")" 0 \
	"no event failed"

# An event whose transaction commits 3 s after its receipt, while later
# events are applied meanwhile: the appliers' claims start near their last
# batch, past it by then; the periodic sweep takes it.
psql -X -qtA -v ON_ERROR_STOP=1 >/dev/null 2>&1 <<SQL &
BEGIN;
SELECT pgwa.ingest_webhook('broker', '{"x-api-key":"e2e-applier-secret-0001"}',
       jsonb_build_object('id', 'late-1', 'type', 'MESSAGE_INBOUND', 'instanceId', 'e2e-applier-1',
         'timestamp', 1714655100, 'payload', jsonb_build_object(
           'contact', jsonb_build_object('phone', '5511973000001', 'name', 'Late'),
           'message', jsonb_build_object('conversation', 'atrasada'), 'metadata', '{}'::jsonb)));
SELECT pg_sleep(3);
COMMIT;
SQL
LATE=$!
for i in $(seq 1 12); do
	sql "SELECT count(pgwa.ingest_webhook('broker', '{\"x-api-key\":\"e2e-applier-secret-0001\"}',
	       jsonb_build_object('id', 'after-$i-' || g, 'type', 'MESSAGE_INBOUND', 'instanceId', 'e2e-applier-1',
	         'timestamp', 1714655100, 'payload', jsonb_build_object(
	           'contact', jsonb_build_object('phone', (5511973100000 + g)::text, 'name', 'After'),
	           'message', jsonb_build_object('conversation', 'depois'), 'metadata', '{}'::jsonb))))
	     FROM generate_series(1, 10) g" > /dev/null
	sleep 0.2
done
wait "$LATE"
is "$(sql "SELECT count(*) FROM pgwa.webhook_events WHERE instance_id = '$INST' AND body->>'id' = 'late-1'")" 1 \
	"the late event is stored"
late_applied() { [ "$(sql "SELECT status FROM pgwa.webhook_events WHERE instance_id = '$INST' AND body->>'id' = 'late-1'")" = applied ]; }
ok "the late event is applied" wait_for 15 late_applied
ok "and every later one" wait_for 15 drained
