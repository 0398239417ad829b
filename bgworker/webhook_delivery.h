/*
 * webhook_delivery.h: client webhook deliveries, sent by the dispatcher on
 * its libcurl multi handle next to the messages.
 */
#ifndef PGWA_WEBHOOK_DELIVERY_H
#define PGWA_WEBHOOK_DELIVERY_H

#include "postgres.h"

#include <curl/curl.h>

#include "nodes/pg_list.h"
#include "utils/timestamp.h"

/* The outcome of one delivery attempt, as pgwa._complete_deliveries() takes it. */
typedef struct webhook_result
{
	char	   *tenant_id;
	int64		id;
	const char *outcome;		/* delivered, retry, dead */
	int			http_status;	/* 0: no HTTP answer */
	char	   *error;
	TimestampTz started_at;
	double		duration_ms;
	int			retry_after_ms; /* 0: none given */
} webhook_result;

/*
 * The dispatcher runs each of these inside a short transaction of its own;
 * webhooks_start runs after the claim's commit, with no transaction open.
 */

/* Prepares the SPI plans. */
extern void webhooks_prepare(void);

/*
 * Claims up to room due deliveries, each in its own context under loop_cxt,
 * and sets *next_due to when the next one falls due (0: none waits).
 */
extern List *webhooks_claim(int room, MemoryContext loop_cxt, TimestampTz *next_due);

/*
 * Starts the transfers of committed claims; returns the results of those
 * that could not start, allocated in loop_cxt.
 */
extern List *webhooks_start(List *claims, MemoryContext loop_cxt);

/* Records results with one call of pgwa._complete_deliveries(). */
extern void webhooks_record(List *results);

/* Gives back expired claims (every claim with all); returns how many. */
extern int	webhooks_release_leases(bool all);

/* Turns a finished transfer (removed from the multi handle) into its result. */
extern webhook_result *webhook_finish(void *transfer, CURLcode code, MemoryContext result_cxt);

#endif							/* PGWA_WEBHOOK_DELIVERY_H */
