/*
 * transfer.c: broker requests in flight on one libcurl multi handle.
 *
 * Each transfer owns a small memory context holding its claimed message,
 * request and response; it is deleted when the transfer finishes. Only
 * process-local state lives here: nothing of it goes to shared memory.
 * Client webhook deliveries (webhook_delivery.c) share the multi handle and
 * are counted apart.
 */
#include "postgres.h"

#include <curl/curl.h>

#include "utils/json.h"
#include "utils/memutils.h"

#include "pgwa.h"
#include "transfer.h"
#include "webhook_delivery.h"

#define MAX_RESPONSE_BYTES (1024 * 1024)
/* A request ends at least this long before its claim's lease does. */
#define LEASE_MARGIN_MS 2000L

typedef struct transfer
{
	transfer_kind kind;			/* TRANSFER_MESSAGE; first, see transfer.h */
	MemoryContext cxt;
	CURL	   *easy;
	claimed_message msg;
	const provider_ops *ops;
	provider_request req;
	StringInfoData response;
	TimestampTz started_at;
	int			retry_after_ms;
	char		errbuf[CURL_ERROR_SIZE];
} transfer;

static CURLM *multi = NULL;
static int	in_flight = 0;
static int	webhooks_in_flight = 0;

void
transfers_init(void)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("pgwa dispatcher: could not initialise libcurl")));
	multi = curl_multi_init();
	if (multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("pgwa dispatcher: could not create a libcurl multi handle")));
	/* Keep-alive connections to the brokers, reused across transfers. */
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS,
					  (long) Max(pgwa_max_in_flight + pgwa_webhook_max_in_flight, 16));
}

void
transfers_shutdown(void)
{
	if (multi != NULL)
		curl_multi_cleanup(multi);
	multi = NULL;
}

int
transfers_in_flight(void)
{
	return in_flight;
}

int
transfers_webhooks_in_flight(void)
{
	return webhooks_in_flight;
}

bool
transfers_add_webhook(CURL *easy)
{
	if (curl_multi_add_handle(multi, easy) != CURLM_OK)
		return false;
	webhooks_in_flight++;
	return true;
}

static const provider_ops *
find_provider(const char *name)
{
	if (strcmp(name, "broker") == 0)
		return &provider_broker;
	if (strcmp(name, "evolution") == 0)
		return &provider_evolution;
	if (strcmp(name, "meta") == 0)
		return &provider_meta;
	return NULL;
}

static size_t
on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	transfer   *t = (transfer *) arg;
	size_t		n = size * nmemb;

	/* A broker's answer is small; keep the first megabyte of a rogue one. */
	if (t->response.len + n <= MAX_RESPONSE_BYTES)
	{
		MemoryContext old = MemoryContextSwitchTo(t->cxt);

		appendBinaryStringInfo(&t->response, data, n);
		MemoryContextSwitchTo(old);
	}
	return n;
}

/*
 * A Retry-After header line's delay in milliseconds (at most an hour), or -1
 * when the line is another header. Delay-seconds or an HTTP date (RFC 9110
 * 10.2.3).
 */
int
transfer_parse_retry_after(const char *data, size_t n)
{
	char		line[256];
	char	   *v;
	char	   *end;
	long		secs;

	if (n <= 12 || n >= sizeof(line) || pg_strncasecmp(data, "retry-after:", 12) != 0)
		return -1;
	memcpy(line, data, n);
	line[n] = '\0';
	v = line + 12;
	while (*v == ' ' || *v == '\t')
		v++;
	v[strcspn(v, "\r\n")] = '\0';
	secs = strtol(v, &end, 10);
	if (end != v && *end == '\0' && secs >= 0)
		return (int) Min(secs, 3600) * 1000;
	else
	{
		time_t		when = curl_getdate(v, NULL);

		if (when > 0)
		{
			long		d = (long) (when - time(NULL));

			return (int) Min(Max(d, 1), 3600) * 1000;
		}
	}
	return -1;
}

static size_t
on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	transfer   *t = (transfer *) arg;
	size_t		n = size * nmemb;
	int			ms = transfer_parse_retry_after(data, n);

	if (ms >= 0)
		t->retry_after_ms = ms;
	return n;
}

static transfer_result *
new_result(transfer *t, MemoryContext result_cxt, const char *outcome)
{
	transfer_result *r = MemoryContextAllocZero(result_cxt, sizeof(transfer_result));

	r->instance_id = MemoryContextStrdup(result_cxt, t->msg.instance_id);
	r->seq = t->msg.seq;
	r->outcome = outcome;
	r->started_at = t->started_at;
	return r;
}

transfer_result *
transfer_start(const claimed_message *msg, MemoryContext cxt, bool dryrun,
			   MemoryContext result_cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	transfer   *t = palloc0(sizeof(transfer));
	const char *problem;
	transfer_result *r;

	t->kind = TRANSFER_MESSAGE;
	t->cxt = cxt;
	t->msg = *msg;
	t->started_at = GetCurrentTimestamp();
	t->ops = find_provider(msg->provider);
	initStringInfo(&t->req.url);
	initStringInfo(&t->response);

	if (dryrun)
		problem = NULL;
	else if (t->ops == NULL)
		problem = "unknown provider";
	else if (msg->base_url == NULL || msg->api_key == NULL)
		problem = "instance has incomplete broker settings";
	else
		problem = t->ops->build(msg, &t->req);

	if (dryrun || problem != NULL)
	{
		r = new_result(t, result_cxt, dryrun ? "dryrun" : "dead");
		if (problem)
			r->error = MemoryContextStrdup(result_cxt, problem);
		MemoryContextSwitchTo(old);
		curl_slist_free_all(t->req.headers);
		MemoryContextDelete(cxt);
		return r;
	}

	t->req.headers = provider_add_header(t->req.headers, "Idempotency-Key", msg->message_id);
	t->easy = curl_easy_init();
	if (t->easy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("pgwa dispatcher: could not create a libcurl handle")));
	/* An "Expect: 100-continue" round trip would only add latency. */
	t->req.headers = curl_slist_append(t->req.headers, "Expect:");
	transfer_prepare_post(t->easy, t->req.url.data, t->req.body, t->req.headers,
						  pgwa_http_timeout_ms, on_body, on_header, t, t->errbuf, "pgwa/0.1");
	MemoryContextSwitchTo(old);

	if (curl_multi_add_handle(multi, t->easy) != CURLM_OK)
	{
		r = new_result(t, result_cxt, "retry");
		r->error = MemoryContextStrdup(result_cxt, "could not start the transfer");
		curl_easy_cleanup(t->easy);
		curl_slist_free_all(t->req.headers);
		MemoryContextDelete(cxt);
		return r;
	}
	in_flight++;
	pgwa_shmem_set_in_flight(in_flight);
	return NULL;
}

/*
 * The failure class (GET /metrics) of a transfer that got no HTTP answer;
 * answers are classed by their status in SQL.
 */
const char *
transfer_error_class(CURLcode code)
{
	switch (code)
	{
		case CURLE_OPERATION_TIMEDOUT:
			return "timeout";
		case CURLE_COULDNT_RESOLVE_PROXY:
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_CONNECT:
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_SEND_ERROR:
		case CURLE_RECV_ERROR:
		case CURLE_GOT_NOTHING:
			return "connect";
		default:
			return "other";
	}
}

/* Turns a finished transfer into the outcome the queue records. */
static transfer_result *
finish(transfer *t, CURLcode code, MemoryContext result_cxt)
{
	long		status = 0;
	json_t	   *body = NULL;
	transfer_result *r;
	MemoryContext old;
	char	   *detail = NULL;

	curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
	old = MemoryContextSwitchTo(t->cxt);
	if (code == CURLE_OK && t->response.len > 0)
		body = json_loadb(t->response.data, t->response.len, JSON_DECODE_ANY, NULL);

	if (code != CURLE_OK)
	{
		r = new_result(t, result_cxt, "retry");
		r->error_class = transfer_error_class(code);
		detail = psprintf("%s: %s", curl_easy_strerror(code),
						  t->errbuf[0] ? t->errbuf : "no detail");
	}
	else if (status >= 200 && status < 300)
	{
		char	   *id = body ? t->ops->parse_id(body) : NULL;

		r = new_result(t, result_cxt, "sent");
		if (id)
			r->broker_id = MemoryContextStrdup(result_cxt, id);
	}
	else
	{
		const char *outcome;

		if (t->ops->is_disconnected(status, body))
			outcome = "disconnected";
		else if (status == 408 || status == 425 || status == 429 || status >= 500 ||
				 (body && t->ops->is_transient && t->ops->is_transient(status, body)))
			outcome = "retry";
		else
			outcome = "dead";
		r = new_result(t, result_cxt, outcome);
		detail = body ? t->ops->parse_error(status, body) : NULL;
		if (detail == NULL)
			detail = psprintf("HTTP %ld", status);
		if (strcmp(outcome, "retry") == 0)
			r->retry_after_ms = t->retry_after_ms;
	}
	r->http_status = (int) status;
	if (detail)
		r->error = MemoryContextStrdup(result_cxt, detail);
	r->duration_ms = (double) (GetCurrentTimestamp() - t->started_at) / 1000.0;
	pgwa_shmem_observe(PGWA_HIST_REQUEST, r->duration_ms / 1000.0);
	MemoryContextSwitchTo(old);
	return r;
}

List *
transfers_collect(MemoryContext result_cxt, List **webhook_results)
{
	List	   *results = NIL;
	int			running;
	int			queued;
	CURLMsg    *m;

	if (in_flight + webhooks_in_flight == 0)
		return NIL;
	curl_multi_perform(multi, &running);
	while ((m = curl_multi_info_read(multi, &queued)) != NULL)
	{
		void	   *priv;
		transfer   *t;
		MemoryContext old;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **) &priv);
		if (*(transfer_kind *) priv == TRANSFER_WEBHOOK)
		{
			CURL	   *easy = m->easy_handle;
			CURLcode	code = m->data.result;

			/* m is invalid once its handle leaves the multi handle. */
			curl_multi_remove_handle(multi, easy);
			webhooks_in_flight--;
			old = MemoryContextSwitchTo(result_cxt);
			*webhook_results = lappend(*webhook_results,
									   webhook_finish(priv, code, result_cxt));
			MemoryContextSwitchTo(old);
			continue;
		}
		t = (transfer *) priv;
		old = MemoryContextSwitchTo(result_cxt);
		results = lappend(results, finish(t, m->data.result, result_cxt));
		MemoryContextSwitchTo(old);
		curl_multi_remove_handle(multi, t->easy);
		curl_easy_cleanup(t->easy);
		curl_slist_free_all(t->req.headers);
		in_flight--;
		MemoryContextDelete(t->cxt);
	}
	pgwa_shmem_set_in_flight(in_flight);
	return results;
}

void
transfers_wait(int timeout_ms)
{
	int			numfds;

	/*
	 * SIGTERM interrupts the poll; a latch wake-up does not (SetLatch only
	 * signals a process sleeping in WaitLatch), so callers keep it short.
	 */
	curl_multi_poll(multi, NULL, 0, Max(timeout_ms, 0), &numfds);
}

long
transfers_timeout_ms(void)
{
	long		ms = -1;

	curl_multi_timeout(multi, &ms);
	return ms;
}

/* Helpers for the adapters. */

void
provider_append_base(StringInfo url, const char *base_url)
{
	size_t		n = strlen(base_url);

	while (n > 0 && base_url[n - 1] == '/')
		n--;
	appendBinaryStringInfo(url, base_url, n);
}

void
provider_append_escaped(StringInfo url, const char *segment)
{
	static const char hex[] = "0123456789ABCDEF";

	for (const unsigned char *p = (const unsigned char *) segment; *p; p++)
	{
		if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~')
			appendStringInfoChar(url, (char) *p);
		else
		{
			appendStringInfoChar(url, '%');
			appendStringInfoChar(url, hex[*p >> 4]);
			appendStringInfoChar(url, hex[*p & 15]);
		}
	}
}

struct curl_slist *
provider_add_header(struct curl_slist *list, const char *name, const char *value)
{
	char	   *line = psprintf("%s: %s", name, value);
	struct curl_slist *l = curl_slist_append(list, line);

	pfree(line);
	if (l == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("pgwa dispatcher: out of memory building request headers")));
	return l;
}

const char *
json_str(json_t *obj, const char *key)
{
	json_t	   *v = obj ? json_object_get(obj, key) : NULL;

	return json_is_string(v) ? json_string_value(v) : NULL;
}

/*
 * The phone number of a recipient written as digits or as a user JID
 * (digits@s.whatsapp.net, maybe with a :device suffix), or NULL for a
 * group, LID or other JID that names no phone number.
 */
char *
provider_phone_digits(const char *to)
{
	size_t		n = strspn(to, "0123456789");
	const char *rest = to + n;

	if (n == 0)
		return NULL;
	if (*rest == ':')
		rest += 1 + strspn(rest + 1, "0123456789");
	if (*rest != '\0' && strcmp(rest, "@s.whatsapp.net") != 0)
		return NULL;
	return pnstrdup(to, n);
}

char *
provider_dump(json_t *body)
{
	char	   *s = json_dumps(body, JSON_COMPACT);

	if (s == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("pgwa dispatcher: could not serialise a request body")));
	return s;
}

void
json_append_field(StringInfo buf, const char *key, const char *value)
{
	appendStringInfo(buf, ",\"%s\":", key);
	if (value)
		escape_json(buf, value);
	else
		appendStringInfoString(buf, "null");
}

/* o: outcome, h: HTTP status (absent: none), e: error, t: start, d: ms, r: Retry-After ms */
void
json_append_attempt(StringInfo buf, const char *outcome, int http_status, const char *error,
					TimestampTz started_at, double duration_ms, int retry_after_ms)
{
	json_append_field(buf, "o", outcome);
	if (http_status != 0)
		appendStringInfo(buf, ",\"h\":%d", http_status);
	json_append_field(buf, "e", error);
	json_append_field(buf, "t", timestamptz_to_str(started_at));
	appendStringInfo(buf, ",\"d\":%.3f", duration_ms);
	if (retry_after_ms > 0)
		appendStringInfo(buf, ",\"r\":%d", retry_after_ms);
}

/*
 * A POST on easy with the options every pgwa request shares. The timeout
 * never outlives the claim's lease: once a lease expires the work is given
 * back and sent again, and two requests would be in flight for it.
 */
void
transfer_prepare_post(CURL *easy, const char *url, const char *body,
					  struct curl_slist *headers, int timeout_ms,
					  curl_write_callback on_body_fn, curl_write_callback on_header_fn,
					  void *arg, char *errbuf, const char *user_agent)
{
	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_POST, 1L);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long) strlen(body));
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS,
					 Min((long) timeout_ms, Max(pgwa_lease_s * 1000L - LEASE_MARGIN_MS, 1000L)));
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) pgwa_connect_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body_fn);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, arg);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header_fn);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, arg);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, arg);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, user_agent);
}
