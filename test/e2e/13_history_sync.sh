# Coexistence history sync end to end (seed 002, section 5): over HTTP,
# applied by the background appliers. Consent is asked; the history arrives
# before the contacts and its chunks out of order; the sync completes; then
# a history lead writes (a ticket with originatedFrom history_lead and no
# window) and a new contact writes (new_contact, a 24 h window); the ticket
# shows the whole conversation with each message's origin; the metrics count
# the import; pg_cron gets the stalled-sync check.
. "$(dirname "$0")/lib.sh"

FX="$(dirname "$0")/../fixtures/coexistence"
KEY=$(new_tenant e2e-history)
INST=$(new_instance "$KEY" hist-e2e '"provider":"meta","settings":{"phone_number_id":"pn-e2e-hist"}')
TENANT=$(sql "SELECT tenant_id FROM pgwa.instances WHERE id = '$INST'")
req POST "/api/integrations/whatsapp/instances/$INST/webhook-secret" '{"secret":"e2e-history-secret-0001"}' "$KEY"
is "$STATUS" 201 "the Cloud API instance has a webhook secret"

# meta FILE [SED]: posts a fixture to /webhooks/meta for this instance; prints the HTTP status
meta() {
	sed "s/106540352242922/pn-e2e-hist/g; ${2:-}" "$1" > "$E2E_TMP/meta.json"
	curl -s -o "$E2E_TMP/meta.out" -w '%{http_code}' -X POST --max-time 30 -H 'X-API-Key: e2e-history-secret-0001' \
		-H 'Content-Type: application/json' --data-binary @"$E2E_TMP/meta.json" "$PGWA_URL/webhooks/meta"
}
sync_is() { req GET "/v1/instances/$INST/history-sync" "" "$KEY"; [ "$(j .status)" = "$1" ]; }

req GET "/v1/instances/$INST/history-sync" "" "$KEY"
is "$STATUS $(j .status) $(j .progress)" "200 not_supported 0" "GET history-sync: nothing asked yet"
req POST "/v1/instances/$INST/history-sync" "" "$KEY"
is "$STATUS $(j .status)" "202 pending_consent" "POST history-sync asks for it: pending consent"
req GET "/v1/instances/$INST/history-sync" "" "$(new_tenant e2e-history-other)"
is "$STATUS" 404 "another tenant cannot see it"

is "$(meta "$FX/meta_history_last.json")" 200 "the last chunk first (progress 100)"
is "$(meta "$FX/meta_history_chunk.json")" 200 "then the first chunk"
is "$(meta "$FX/meta_history_chunk.json")" 200 "and the first chunk again"
ok "the sync completes" wait_for 15 sync_is completed
req GET "/v1/instances/$INST/history-sync" "" "$KEY"
is "$(j .progress) $(j .phase) $(j .chunkOrder) $(j .chunks) $(j .messagesImported)" "100 2 3 2 8" \
	"progress 100, the place of the last chunk, 2 chunks, 8 messages"
is "$(meta "$FX/meta_state_sync.json")" 200 "the contacts after the history"
ok "contacts applied" wait_for 15 bash -c "[ \"\$(psql -X -qtA -c \"SELECT contacts_imported FROM pgwa.history_syncs WHERE instance_id = '$INST'\")\" = 3 ]"
is "$(sql "SELECT string_agg(phone || ':' || source, ' ' ORDER BY phone) FROM pgwa.leads WHERE tenant_id = '$TENANT'")" \
	"5511912345678:history_sync 5511976543210:history_sync 5511987654321:history_sync" \
	"leads from the history keep source history_sync (contacts update them)"
is "$(sql "SELECT count(*) FROM pgwa.tickets WHERE tenant_id = '$TENANT'")" 0 "no ticket from the history"

# Then live: a history lead writes, and a new contact.
is "$(meta "$(dirname "$0")/../fixtures/meta/text.json" 's/16505551234/5511987654321/g; s/wamid\./wamid.e2e-live-1./; s/1749416383/1760000000/')" 200 \
	"a history lead writes"
is "$(meta "$(dirname "$0")/../fixtures/meta/text.json" 's/16505551234/5511944443333/g; s/wamid\./wamid.e2e-live-2./; s/1749416383/1760000000/')" 200 \
	"a new contact writes"
ticket_of() { sql "SELECT t.id FROM pgwa.tickets t JOIN pgwa.leads l ON l.tenant_id = t.tenant_id AND l.id = t.lead_id
                   WHERE t.tenant_id = '$TENANT' AND l.phone = '$1'"; }
ok "both get a ticket" wait_for 15 bash -c "[ \"\$(psql -X -qtA -c \"SELECT count(*) FROM pgwa.tickets WHERE tenant_id = '$TENANT'\")\" = 2 ]"
req GET "/v1/tickets/$(ticket_of 5511987654321)" "" "$KEY"
is "$STATUS $(j .ticket.source) $(j .ticket.originatedFrom) $(j .ticket.messageWindowExpiresAt) $(j .ticket.window)" \
	"200 incoming_message history_lead null unlimited" "the history lead's ticket: history_lead, no window"
is "$(j .ticket.lead.source) $(j .ticket.lead.phoneNumber)" "history_sync +5511987654321" "with its lead's origin"
is "$(j '[.ticket.messages[].source] | join(",")')" "history,history,history,live" \
	"the conversation: three history messages, then the live one"
req GET "/v1/tickets/$(ticket_of 5511944443333)" "" "$KEY"
is "$(j .ticket.originatedFrom) $(j .ticket.window) $(j '.ticket.messageWindowExpiresAt != null') $(j .ticket.lead.source)" \
	"new_contact open true live_message" "the new contact's ticket: new_contact, a 24 h window"
req GET "/v1/tickets/$(ticket_of 5511944443333)" "" "$(new_tenant e2e-history-third)"
is "$STATUS" 404 "another tenant cannot read the ticket"

req GET /metrics "" "$PGWA_ADMIN_KEY"
ok "the metrics count the import" grep -q "pgwa_history_messages_imported_total{instance_name=\"hist-e2e\",instance_id=\"$INST\"} 8" <<< "$BODY"
ok "and the state" grep -q "pgwa_history_sync_state{instance_name=\"hist-e2e\",instance_id=\"$INST\",state=\"completed\"} 1" <<< "$BODY"

# pg_cron runs the stalled-sync check (with the other maintenance jobs).
JOBS=$(sql "SELECT pgwa.schedule_maintenance()")
JOB=$(jq -r '."pgwa-history-sync-check"' <<< "$JOBS")
is "$(sql "SELECT schedule || ' ' || command FROM cron.job WHERE jobid = $JOB")" \
	"* * * * * SELECT pgwa.check_stalled_history_syncs()" "pg_cron runs the stalled-sync check every minute"
is "$(sql "SELECT count(*) FROM cron.job WHERE jobname LIKE 'pgwa-%'")" 6 "and the other maintenance jobs"
is "$(jq -c 'keys' <<< "$(sql "SELECT pgwa.schedule_maintenance()")")" "$(jq -c 'keys' <<< "$JOBS")" \
	"scheduling again updates the same jobs"
is "$(sql "SELECT count(*) FROM cron.job WHERE jobname LIKE 'pgwa-%'")" 6 "still six"
sql "SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname LIKE 'pgwa-%'" > /dev/null
