/*
 * webhook_delivery.c: client webhook deliveries in the dispatcher.
 *
 * Deliveries are claimed in SQL (pgwa._claim_deliveries), where their body
 * is built and signed, so the subscription secret never reaches this
 * process. Each claim becomes a POST on the dispatcher's libcurl multi
 * handle (transfer.c), counted apart from messages, and its result goes back
 * with the others of its batch to pgwa._complete_deliveries. As with
 * messages, no transaction is open while a request is in flight, and each
 * transfer owns a small memory context deleted when it finishes.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "pg_jansson.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "pgwa.h"
#include "transfer.h"
#include "webhook_delivery.h"

/* What is kept of a subscriber's answer: enough to say what went wrong. */
#define MAX_ANSWER_BYTES 512
/* A claimed delivery, then its transfer; lives in cxt. */
typedef struct webhook_transfer
{
	transfer_kind kind;			/* TRANSFER_WEBHOOK; first, see transfer.h */
	MemoryContext cxt;
	CURL	   *easy;
	struct curl_slist *headers;
	char	   *tenant_id;
	int64		id;
	int			attempt;
	char	   *url;
	char	   *event;
	int64		event_id;
	int64		sent_at;
	char	   *body;
	char	   *signature;
	StringInfoData answer;
	TimestampTz started_at;
	int			retry_after_ms;
	char		errbuf[CURL_ERROR_SIZE];
} webhook_transfer;

static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr next_due_plan = NULL;
static SPIPlanPtr complete_plan = NULL;
static SPIPlanPtr release_plan = NULL;

void
webhooks_prepare(void)
{
	Oid			claim_types[2] = {INT4OID, INT4OID};
	Oid			complete_types[1] = {JSONBOID};
	Oid			release_types[1] = {BOOLOID};

	claim_plan = pgwa_keep_plan("SELECT tenant_id::text, id, attempt, url, event, event_id, sent_at, body, "
						 "signature FROM pgwa._claim_deliveries($1, $2)", 2, claim_types);
	next_due_plan = pgwa_keep_plan("SELECT pgwa._next_delivery_due()", 0, NULL);
	complete_plan = pgwa_keep_plan("SELECT count(*) FROM pgwa._complete_deliveries($1)", 1, complete_types);
	release_plan = pgwa_keep_plan("SELECT pgwa._release_delivery_leases($1)", 1, release_types);
}

static char *
copy_col(HeapTuple tup, TupleDesc desc, int col)
{
	char	   *v = SPI_getvalue(tup, desc, col);

	return v ? pstrdup(v) : NULL;
}

List *
webhooks_claim(int room, MemoryContext loop_cxt, TimestampTz *next_due)
{
	Datum		args[2];
	List	   *claims = NIL;
	uint64		n;
	bool		isnull;
	Datum		d;

	args[0] = Int32GetDatum(room);
	args[1] = Int32GetDatum(pgwa_lease_s);
	if (SPI_execute_plan(claim_plan, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "pgwa dispatcher: claiming webhook deliveries failed");
	n = SPI_processed;
	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext cxt = AllocSetContextCreate(loop_cxt, "pgwa webhook delivery",
												  ALLOCSET_SMALL_SIZES);
		MemoryContext old = MemoryContextSwitchTo(cxt);
		webhook_transfer *w = palloc0(sizeof(webhook_transfer));

		w->kind = TRANSFER_WEBHOOK;
		w->cxt = cxt;
		w->tenant_id = copy_col(tup, desc, 1);
		w->id = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		w->attempt = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		w->url = copy_col(tup, desc, 4);
		w->event = copy_col(tup, desc, 5);
		w->event_id = DatumGetInt64(SPI_getbinval(tup, desc, 6, &isnull));
		w->sent_at = DatumGetInt64(SPI_getbinval(tup, desc, 7, &isnull));
		w->body = copy_col(tup, desc, 8);
		w->signature = copy_col(tup, desc, 9);
		initStringInfo(&w->answer);
		MemoryContextSwitchTo(loop_cxt);
		claims = lappend(claims, w);
		MemoryContextSwitchTo(old);
	}

	*next_due = 0;
	if (SPI_execute_plan(next_due_plan, NULL, NULL, true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
	{
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
			*next_due = DatumGetTimestampTz(d);
	}
	return claims;
}

static size_t
on_answer(char *data, size_t size, size_t nmemb, void *arg)
{
	webhook_transfer *w = (webhook_transfer *) arg;
	size_t		n = size * nmemb;

	if (w->answer.len < MAX_ANSWER_BYTES)
	{
		MemoryContext old = MemoryContextSwitchTo(w->cxt);

		appendBinaryStringInfo(&w->answer, data, Min(n, MAX_ANSWER_BYTES - w->answer.len));
		MemoryContextSwitchTo(old);
	}
	return n;
}

static size_t
on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	webhook_transfer *w = (webhook_transfer *) arg;
	size_t		n = size * nmemb;
	int			ms = transfer_parse_retry_after(data, n);

	if (ms >= 0)
		w->retry_after_ms = ms;
	return n;
}

static struct curl_slist *
add_header(struct curl_slist *list, const char *line)
{
	struct curl_slist *l = curl_slist_append(list, line);

	if (l == NULL)
	{
		curl_slist_free_all(list);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("pgwa dispatcher: out of memory building webhook headers")));
	}
	return l;
}

static webhook_result *
new_result(webhook_transfer *w, MemoryContext result_cxt, const char *outcome)
{
	webhook_result *r = MemoryContextAllocZero(result_cxt, sizeof(webhook_result));

	r->tenant_id = MemoryContextStrdup(result_cxt, w->tenant_id);
	r->id = w->id;
	r->outcome = outcome;
	r->started_at = w->started_at;
	return r;
}

static void
release(webhook_transfer *w)
{
	if (w->easy)
		curl_easy_cleanup(w->easy);
	curl_slist_free_all(w->headers);
	MemoryContextDelete(w->cxt);
}

/* Starts one delivery; returns its result when it could not start. */
static webhook_result *
start_one(webhook_transfer *w, MemoryContext result_cxt)
{
	MemoryContext old = MemoryContextSwitchTo(w->cxt);
	webhook_result *r;

	w->started_at = GetCurrentTimestamp();
	w->headers = add_header(w->headers, "Content-Type: application/json");
	/* Event names come from pgwa.events: keep a stray one from breaking the header. */
	for (char *p = w->event; *p; p++)
		if ((unsigned char) *p < 0x20 || (unsigned char) *p == 0x7f)
			*p = ' ';
	w->headers = add_header(w->headers, psprintf("X-Pgwa-Event: %s", w->event));
	w->headers = add_header(w->headers, psprintf("X-Pgwa-Event-Id: " INT64_FORMAT, w->event_id));
	w->headers = add_header(w->headers, psprintf("X-Pgwa-Delivery-Id: " INT64_FORMAT, w->id));
	w->headers = add_header(w->headers, psprintf("X-Pgwa-Attempt: %d", w->attempt));
	w->headers = add_header(w->headers, psprintf("X-Pgwa-Timestamp: " INT64_FORMAT, w->sent_at));
	w->headers = add_header(w->headers, psprintf("X-Pgwa-Signature: %s", w->signature));
	/* An "Expect: 100-continue" round trip would only add latency. */
	w->headers = add_header(w->headers, "Expect:");

	w->easy = curl_easy_init();
	if (w->easy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("pgwa dispatcher: could not create a libcurl handle")));
	transfer_prepare_post(w->easy, w->url, w->body, w->headers, pgwa_webhook_timeout_ms,
						  on_answer, on_header, w, w->errbuf, "pgwa-webhooks/0.1");
	MemoryContextSwitchTo(old);

	if (!transfers_add_webhook(w->easy))
	{
		r = new_result(w, result_cxt, "retry");
		r->error = MemoryContextStrdup(result_cxt, "could not start the transfer");
		release(w);
		return r;
	}
	return NULL;
}

List *
webhooks_start(List *claims, MemoryContext loop_cxt)
{
	List	   *immediate = NIL;
	ListCell   *lc;

	foreach(lc, claims)
	{
		webhook_transfer *w = lfirst(lc);
		webhook_result *r;

		/* The transfer owns its context from now on. */
		MemoryContextSetParent(w->cxt, TopMemoryContext);
		r = start_one(w, loop_cxt);
		if (r != NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(loop_cxt);

			immediate = lappend(immediate, r);
			MemoryContextSwitchTo(old);
		}
	}
	return immediate;
}

/*
 * The start of the subscriber's answer for last_error: printable ASCII only,
 * so that whatever it sent makes valid text.
 */
static char *
answer_excerpt(webhook_transfer *w)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < w->answer.len && buf.len < 200; i++)
	{
		unsigned char c = (unsigned char) w->answer.data[i];

		appendStringInfoChar(&buf, (c >= 0x20 && c < 0x7f) ? (char) c : c < 0x20 ? ' ' : '?');
	}
	return buf.data;
}

/*
 * 2xx delivered; 408, 425, 429, 5xx and failures without an answer retried;
 * anything else (other 4xx, redirects, which are not followed) dead.
 */
webhook_result *
webhook_finish(void *transfer, CURLcode code, MemoryContext result_cxt)
{
	webhook_transfer *w = (webhook_transfer *) transfer;
	long		status = 0;
	webhook_result *r;
	MemoryContext old;
	char	   *detail = NULL;

	curl_easy_getinfo(w->easy, CURLINFO_RESPONSE_CODE, &status);
	old = MemoryContextSwitchTo(w->cxt);
	if (code != CURLE_OK)
	{
		r = new_result(w, result_cxt, "retry");
		detail = psprintf("%s (%s): %s", curl_easy_strerror(code), transfer_error_class(code),
						  w->errbuf[0] ? w->errbuf : "no detail");
		status = 0;
	}
	else if (status >= 200 && status < 300)
		r = new_result(w, result_cxt, "delivered");
	else
	{
		bool		transient = status == 408 || status == 425 || status == 429 || status >= 500;
		char	   *excerpt = answer_excerpt(w);

		r = new_result(w, result_cxt, transient ? "retry" : "dead");
		detail = excerpt[0] ? psprintf("HTTP %ld: %s", status, excerpt) : psprintf("HTTP %ld", status);
		if (transient)
			r->retry_after_ms = w->retry_after_ms;
	}
	r->http_status = (int) status;
	if (detail)
		r->error = MemoryContextStrdup(result_cxt, detail);
	r->duration_ms = (double) (GetCurrentTimestamp() - w->started_at) / 1000.0;
	MemoryContextSwitchTo(old);
	release(w);
	return r;
}

void
webhooks_record(List *results)
{
	StringInfoData buf;
	ListCell   *lc;
	Datum		arg;
	int			rc;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	foreach(lc, results)
	{
		webhook_result *r = lfirst(lc);

		if (buf.len > 1)
			appendStringInfoChar(&buf, ',');
		appendStringInfo(&buf, "{\"i\":" INT64_FORMAT, r->id);
		json_append_field(&buf, "tn", r->tenant_id);
		json_append_attempt(&buf, r->outcome, r->http_status, r->error, r->started_at,
							r->duration_ms, r->retry_after_ms);
		appendStringInfoChar(&buf, '}');
	}
	appendStringInfoChar(&buf, ']');

	arg = DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
	rc = SPI_execute_plan(complete_plan, &arg, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "pgwa dispatcher: recording webhook deliveries failed: %s",
			 SPI_result_code_string(rc));
}

int
webhooks_release_leases(bool all)
{
	Datum		arg = BoolGetDatum(all);
	bool		isnull;

	if (SPI_execute_plan(release_plan, &arg, NULL, false, 0) == SPI_OK_SELECT &&
		SPI_processed == 1)
		return DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										   1, &isnull));
	return 0;
}
