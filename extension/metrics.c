/*
 * metrics.c: the part of GET /metrics that lives in shared memory: the
 * dispatcher's transfers in flight and its two latency histograms, in
 * Prometheus text exposition format 0.0.4. The counters live in tables and
 * are formatted in SQL (sql/src/80_metrics.sql).
 */
#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"

#include "pgwa.h"

PG_FUNCTION_INFO_V1(pgwa_metrics_shared);
PG_FUNCTION_INFO_V1(pgwa_observe_ingest);

static const struct
{
	const char *name;
	const char *help;
}			histogram_info[PGWA_HIST_COUNT] = {
	[PGWA_HIST_REQUEST] = {"pgwa_broker_request_duration_seconds",
	"Duration of broker requests made by the dispatcher, whatever their outcome."},
	[PGWA_HIST_LATENCY] = {"pgwa_send_latency_seconds",
	"Time from enqueue (outbox.created_at) until the message was recorded as sent."},
	[PGWA_HIST_INGEST] = {"pgwa_webhook_ingest_latency_seconds",
	"Time from an inbound webhook's arrival (webhook_events.received_at) until it was applied."},
};

static void
append_histogram(StringInfo buf, pgwa_histogram_id h, bool served)
{
	const char *name = histogram_info[h].name;
	uint64		cumulative[PGWA_HIST_BUCKETS + 1] = {0};
	uint64		sum_us = 0;

	if (served)
		pgwa_shmem_read_histogram(h, cumulative, &sum_us);
	appendStringInfo(buf, "# HELP %s %s\n# TYPE %s histogram\n",
					 name, histogram_info[h].help, name);
	for (int b = 0; b < PGWA_HIST_BUCKETS; b++)
		appendStringInfo(buf, "%s_bucket{le=\"%g\"} " UINT64_FORMAT "\n",
						 name, pgwa_hist_bounds[b], cumulative[b]);
	appendStringInfo(buf, "%s_bucket{le=\"+Inf\"} " UINT64_FORMAT "\n",
					 name, cumulative[PGWA_HIST_BUCKETS]);
	/* Microseconds printed as seconds without going through a double. */
	appendStringInfo(buf, "%s_sum " UINT64_FORMAT ".%06u\n",
					 name, sum_us / 1000000, (unsigned) (sum_us % 1000000));
	appendStringInfo(buf, "%s_count " UINT64_FORMAT "\n",
					 name, cumulative[PGWA_HIST_BUCKETS]);
}

/*
 * pgwa._metrics_shared(served) returns the exposition text of the
 * shared-memory metrics. They are those of the server's one dispatcher, so a
 * database it does not serve (served false) reads them as zero, as does a
 * server without pgwa in shared_preload_libraries.
 */
Datum
pgwa_metrics_shared(PG_FUNCTION_ARGS)
{
	bool		served = PG_GETARG_BOOL(0);
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf,
					 "# HELP pgwa_transfers_in_flight Broker requests the dispatcher has in flight.\n"
					 "# TYPE pgwa_transfers_in_flight gauge\n"
					 "pgwa_transfers_in_flight %d\n",
					 served ? pgwa_shmem_in_flight() : 0);
	for (int h = 0; h < PGWA_HIST_COUNT; h++)
		append_histogram(&buf, (pgwa_histogram_id) h, served);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}

/*
 * pgwa._observe_ingest(seconds) records one inbound event's received-to-
 * applied time. Atomics in shared memory: concurrent ingests never contend
 * on a row. A no-op when pgwa is not preloaded.
 */
Datum
pgwa_observe_ingest(PG_FUNCTION_ARGS)
{
	pgwa_shmem_observe(PGWA_HIST_INGEST, PG_GETARG_FLOAT8(0));
	PG_RETURN_VOID();
}
