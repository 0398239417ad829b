/*
 * guc.c: every pgwa setting, defined in one place.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/guc.h"

#include "pgwa.h"

char	   *pgwa_database = NULL;
char	   *pgwa_mode_raw = NULL;
static char *pgwa_public_url = NULL;	/* read by SQL only */
int			pgwa_max_in_flight = 1000;
int			pgwa_claim_batch = 500;
int			pgwa_http_timeout_ms = 15000;
int			pgwa_connect_timeout_ms = 5000;
int			pgwa_lease_s = 120;
int			pgwa_idle_poll_ms = 1000;
int			pgwa_inbound_batch = 200;
int			pgwa_inbound_linger_ms = 20;
int			pgwa_history_sync_stall_min = 30;
int			pgwa_inbound_workers = 2;
int			pgwa_webhook_max_in_flight = 100;
int			pgwa_webhook_timeout_ms = 10000;

static bool
check_mode(char **newval, void **extra, GucSource source)
{
	const char *v = *newval;

	if (strcmp(v, "http") == 0 || strcmp(v, "dryrun") == 0 ||
		strcmp(v, "disabled") == 0 || strcmp(v, "sidecar") == 0)
		return true;
	GUC_check_errdetail("pgwa.mode must be one of http, dryrun, disabled (legacy: sidecar).");
	return false;
}

static void
assign_mode(const char *newval, void *extra)
{
	/* Legacy deployments still say sidecar; they get the HTTP broker. */
	if (strcmp(newval, "sidecar") == 0)
		ereport(WARNING,
				(errmsg("pgwa.mode 'sidecar' is retired; using 'http'"),
				 errhint("Set pgwa.mode = 'http' to silence this warning.")));
}

pgwa_delivery_mode
pgwa_effective_mode(void)
{
	if (pgwa_mode_raw == NULL)
		return PGWA_MODE_HTTP;
	if (strcmp(pgwa_mode_raw, "dryrun") == 0)
		return PGWA_MODE_DRYRUN;
	if (strcmp(pgwa_mode_raw, "disabled") == 0)
		return PGWA_MODE_DISABLED;
	return PGWA_MODE_HTTP;
}

const char *
pgwa_mode_name(pgwa_delivery_mode mode)
{
	switch (mode)
	{
		case PGWA_MODE_DRYRUN:
			return "dryrun";
		case PGWA_MODE_DISABLED:
			return "disabled";
		default:
			return "http";
	}
}

void
pgwa_define_gucs(void)
{
	/*
	 * A postmaster-level setting can only be defined while preloading; a
	 * backend that loads the library later (no dispatcher) does without it.
	 */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomStringVariable("pgwa.database",
								   "Database the dispatcher serves (where CREATE EXTENSION pgwa ran).",
								   NULL, &pgwa_database, "postgres",
								   PGC_POSTMASTER, 0, NULL, NULL, NULL);

	DefineCustomStringVariable("pgwa.mode",
							   "Delivery mode: http (send through brokers), dryrun (record without sending), disabled (accept and hold).",
							   "The legacy value sidecar is read as http.",
							   &pgwa_mode_raw, "http",
							   PGC_SIGHUP, 0, check_mode, assign_mode, NULL);

	/* read by SQL (pgwa._public_base) */
	DefineCustomStringVariable("pgwa.public_url",
							   "URL at which pgwa-http is reached from outside, such as https://gw.example.com.",
							   "Brokers fetch inline media from it; empty: the request's Host.",
							   &pgwa_public_url, "",
							   PGC_SUSET, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("pgwa.max_in_flight",
							"Most HTTP requests the dispatcher keeps in flight at once.",
							NULL, &pgwa_max_in_flight, 1000, 1, 100000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("pgwa.claim_batch",
							"Most messages claimed in one transaction.",
							NULL, &pgwa_claim_batch, 500, 1, 10000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("pgwa.http_timeout",
							"Timeout of one request to a broker.",
							NULL, &pgwa_http_timeout_ms, 15000, 100, 600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable("pgwa.connect_timeout",
							"Timeout for connecting to a broker.",
							NULL, &pgwa_connect_timeout_ms, 5000, 100, 600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable("pgwa.lease",
							"How long a claimed message stays claimed without a result before it is given back.",
							"Must exceed pgwa.http_timeout.",
							&pgwa_lease_s, 120, 5, 86400,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);

	DefineCustomIntVariable("pgwa.idle_poll",
							"Longest the dispatcher sleeps when it has nothing due (commits wake it sooner).",
							NULL, &pgwa_idle_poll_ms, 1000, 10, 60000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable("pgwa.inbound_batch",
							"Most stored webhook events an inbound applier applies in one transaction.",
							"Larger batches cost less per event and hold their locks longer.",
							&pgwa_inbound_batch, 200, 1, 10000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("pgwa.inbound_linger",
							"How long the first inbound applier lets events gather after a batch that was not full.",
							"Under a steady load, batches of a few events each pay a batch's fixed cost; a short wait "
							"makes them larger. An event that arrives while the appliers are idle is applied at once. "
							"0 takes the next batch at once.",
							&pgwa_inbound_linger_ms, 20, 0, 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable("pgwa.history_sync_stall",
							"How long after a history sync was requested, with no history received, it is marked failed.",
							"pgwa.check_stalled_history_syncs() (run by pg_cron) marks it and emits "
							"whatsapp.history_sync.stalled.",
							&pgwa_history_sync_stall_min, 30, 1, 10080,
							PGC_SIGHUP, GUC_UNIT_MIN, NULL, NULL, NULL);

	DefineCustomIntVariable("pgwa.inbound_workers",
							"Number of inbound applier processes.",
							"They take disjoint batches of waiting events; set at server start.",
							&pgwa_inbound_workers, 2, 1, PGWA_MAX_APPLIERS,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("pgwa.webhook_max_in_flight",
							"Most client webhook deliveries the dispatcher keeps in flight at once.",
							"Counted apart from pgwa.max_in_flight, so deliveries never take the place of messages.",
							&pgwa_webhook_max_in_flight, 100, 0, 10000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("pgwa.webhook_timeout",
							"Timeout of one client webhook delivery.",
							NULL, &pgwa_webhook_timeout_ms, 10000, 100, 600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	MarkGUCPrefixReserved("pgwa");
}
