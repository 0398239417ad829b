/*
 * transfer.h: HTTP transfers on one libcurl multi handle: messages to
 * brokers, and client webhook deliveries (webhook_delivery.c).
 */
#ifndef PGWA_TRANSFER_H
#define PGWA_TRANSFER_H

#include "postgres.h"

#include "nodes/pg_list.h"
#include "utils/timestamp.h"

#include "provider.h"

/*
 * What a transfer on the multi handle is. The CURLOPT_PRIVATE of every easy
 * handle points to a struct whose first member is its kind.
 */
typedef enum transfer_kind
{
	TRANSFER_MESSAGE = 1,
	TRANSFER_WEBHOOK
} transfer_kind;

/* The outcome of one attempt, as pgwa._complete() takes it. */
typedef struct transfer_result
{
	char	   *instance_id;
	int64		seq;
	const char *outcome;		/* sent, retry, dead, disconnected, dryrun */
	int			http_status;	/* 0: no HTTP answer */
	char	   *broker_id;
	char	   *error;
	TimestampTz started_at;
	double		duration_ms;
	int			retry_after_ms; /* 0: none given */
	const char *error_class;	/* timeout, connect, other: no HTTP answer */
} transfer_result;

extern void transfers_init(void);
extern void transfers_shutdown(void);
/* Messages in flight (pgwa.max_in_flight counts these). */
extern int	transfers_in_flight(void);
/* Client webhook deliveries in flight (pgwa.webhook_max_in_flight). */
extern int	transfers_webhooks_in_flight(void);

/*
 * Starts sending msg, whose strings live in cxt; the transfer owns cxt from
 * then on. When no HTTP call is needed (dry run, or a message the provider
 * cannot express) the result is returned at once, allocated in result_cxt,
 * and NULL otherwise.
 */
extern transfer_result *transfer_start(const claimed_message *msg, MemoryContext cxt,
									   bool dryrun, MemoryContext result_cxt);

/* Waits up to timeout_ms for socket activity on the transfers. */
extern void transfers_wait(int timeout_ms);

/*
 * Drives the transfers and returns the results of finished messages; those
 * of finished webhook deliveries are appended to *webhook_results.
 */
extern List *transfers_collect(MemoryContext result_cxt, List **webhook_results);

/* Adds a webhook delivery's easy handle to the multi handle; false if not. */
extern bool transfers_add_webhook(CURL *easy);

/* Helpers shared with webhook_delivery.c. */
extern int	transfer_parse_retry_after(const char *data, size_t n);
extern const char *transfer_error_class(CURLcode code);

/* Milliseconds until libcurl needs attention for timeouts (-1: none). */
extern long transfers_timeout_ms(void);

/*
 * JSON of recorded results, as pgwa._complete_batch() and the webhook
 * delivery recorder read them: ,"key":value and the fields every attempt has.
 */
extern void json_append_field(StringInfo buf, const char *key, const char *value);
extern void json_append_attempt(StringInfo buf, const char *outcome, int http_status,
								const char *error, TimestampTz started_at,
								double duration_ms, int retry_after_ms);

/* A POST with the options every request shares; timeout capped by the lease. */
extern void transfer_prepare_post(CURL *easy, const char *url, const char *body,
								  struct curl_slist *headers, int timeout_ms,
								  curl_write_callback on_body_fn, curl_write_callback on_header_fn,
								  void *arg, char *errbuf, const char *user_agent);

#endif							/* PGWA_TRANSFER_H */
