/*
 * request.c
 *		The libmicrohttpd request lifecycle: from the first callback of a
 *		request to its access log line.
 *
 * libmicrohttpd calls request_handler() several times per request: once
 * when the headers are in, once per chunk of body, and a last time with no
 * data.  The first call checks what can be refused up front, the middle
 * ones accumulate the body under the size limit, the last one dispatches:
 * to a route the front serves itself (front_routes.c), else to one call of
 * pgwa.http() (call.c).  The front applies no business rules: routing,
 * auth, validation and error shaping all live in the SQL function.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "request.h"
#include "request_internal.h"
#include "response.h"
#include "stream.h"
#include "text.h"
#include "uploads.h"

#define BODY_PREALLOC_MAX	65536
#define DRAIN_MAX	(1024 * 1024)

static size_t max_body_size;
static size_t max_upload_size;
static atomic_bool shutting_down;
static atomic_uint in_flight;

void
request_init(size_t max_body, size_t max_upload)
{
	max_body_size = max_body;
	max_upload_size = max_upload;
}

/* From now on responses ask clients to close, so keep-alive ends cleanly. */
void
request_begin_shutdown(void)
{
	atomic_store(&shutting_down, true);
}

/* Requests that have started and whose completion was not yet reported. */
unsigned int
request_in_flight(void)
{
	return atomic_load(&in_flight);
}

/* ---------- request ids ---------- */

static bool
request_id_is_sane(const char *id)
{
	size_t		len = strlen(id);

	if (len == 0 || len > REQUEST_ID_MAX)
		return false;
	return strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
				  "0123456789._-") == len;
}

static void
new_request_id(char *out)
{
	static const char hex[] = "0123456789abcdef";
	static _Thread_local unsigned long long fallback;
	unsigned char raw[8];

	if (getrandom(raw, sizeof(raw), GRND_NONBLOCK) != (ssize_t) sizeof(raw))
	{
		/* only unique, not unpredictable: good enough for correlation */
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		fallback += (unsigned long long) ts.tv_nsec ^ ((unsigned long long) ts.tv_sec << 30);
		fallback = fallback * 6364136223846793005ULL + 1442695040888963407ULL;
		memcpy(raw, &fallback, sizeof(raw));
	}
	for (int i = 0; i < 8; i++)
	{
		out[2 * i] = hex[raw[i] >> 4];
		out[2 * i + 1] = hex[raw[i] & 0x0F];
	}
	out[16] = '\0';
}

/* ---------- responses ---------- */

enum MHD_Result
queue_reply(struct MHD_Connection *conn, struct request *req,
			unsigned int status, struct MHD_Response *resp,
			bool has_content_type, size_t body_len)
{
	enum MHD_Result ret;

	response_finish(resp, req->request_id, has_content_type,
					atomic_load(&shutting_down));
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	if (ret == MHD_YES)
	{
		req->responded = true;
		req->status = status;
		req->bytes_out = strcmp(req->method, MHD_HTTP_METHOD_HEAD) == 0 ? 0 : body_len;
	}
	return ret;
}

enum MHD_Result
queue_error(struct MHD_Connection *conn, struct request *req,
			unsigned int status, const char *code, const char *message)
{
	size_t		len;
	struct MHD_Response *resp = response_error(status, code, message, &len);

	if (resp == NULL)
		return MHD_NO;
	return queue_reply(conn, req, status, resp, false, len);
}

static enum MHD_Result
queue_too_large(struct MHD_Connection *conn, struct request *req)
{
	char		message[64];

	snprintf(message, sizeof(message), "request body exceeds %zu bytes",
			 req->limit);
	return queue_error(conn, req, MHD_HTTP_CONTENT_TOO_LARGE,
					   "PAYLOAD_TOO_LARGE", message);
}

/* ---------- rate limit ---------- */

/*
 * What the rate limit counts a request against: the API key as presented
 * (X-API-Key, else a Bearer token, else X-Authorization), else, in the
 * Z-API dialect, the instance token of /instances/{id}/token/{token}/...
 * (copied into buf). NULL for none.
 */
static const char *
rate_key(struct MHD_Connection *conn, const char *path, char *buf, size_t size)
{
	const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-API-Key");
	const char *token;
	size_t		len;

	if (v != NULL && v[0] != '\0')
		return v;
	v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	if (v != NULL && strncasecmp(v, "Bearer ", 7) == 0)
		return v + 7;
	v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Authorization");
	if (v != NULL && v[0] != '\0')
		return v;
	if (strncmp(path, "/instances/", 11) != 0 || (token = strchr(path + 11, '/')) == NULL ||
		strncmp(token, "/token/", 7) != 0)
		return NULL;
	token += 7;
	len = strcspn(token, "/");
	if (len == 0 || len + 6 > size)
		return NULL;
	memcpy(buf, "zapi:", 5);
	memcpy(buf + 5, token, len);
	buf[len + 5] = '\0';
	return buf;
}

/*
 * 429 with Retry-After when the key has used its rate (ratelimit.c).
 * Webhooks from brokers are never limited: a refused webhook may be lost.
 */
static enum MHD_Result
queue_rate_limited(struct MHD_Connection *conn, struct request *req, unsigned int retry_after)
{
	size_t		len;
	char		seconds[16];
	struct MHD_Response *resp = response_error(MHD_HTTP_TOO_MANY_REQUESTS, "RATE_LIMITED",
											   "too many requests for this API key, retry later", &len);

	if (resp == NULL)
		return MHD_NO;
	snprintf(seconds, sizeof(seconds), "%u", retry_after > 0 ? retry_after : 1);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, seconds);
	return queue_reply(conn, req, MHD_HTTP_TOO_MANY_REQUESTS, resp, false, len);
}

static bool
is_inbound_webhook(const char *path)
{
	return strncmp(path, "/webhooks/", 10) == 0 ||
		strcmp(path, "/api/integrations/whatsapp/webhook") == 0;
}

/* ---------- lifecycle ---------- */

/*
 * Hand a fully received request to its handler.  Everything is served by
 * pgwa.http(); routes the front has to serve itself (uploads' files, and
 * streams) go to their handlers, ahead of the generic call.
 */
static enum MHD_Result
dispatch(struct MHD_Connection *conn, struct request *req)
{
	unsigned int retry_after = 0;
	char		token[256];

	if (ratelimit_active() && !is_inbound_webhook(req->path) &&
		!ratelimit_take(rate_key(conn, req->path, token, sizeof(token)), &retry_after))
		return queue_rate_limited(conn, req, retry_after);
	if (uploads_is_post(req->method, req->path))
		return serve_upload_post(conn, req);
	if (uploads_is_get(req->method, req->path))
		return serve_upload_get(conn, req);
	if (strcmp(req->path, "/v1/events") == 0 && strcmp(req->method, MHD_HTTP_METHOD_GET) == 0)
		return serve_events(conn, req);
	return call_pgwa_http(conn, req);
}

static struct request *
request_start(struct MHD_Connection *conn, const char *url, const char *method)
{
	struct request *req = calloc(1, sizeof(*req));
	const char *id;

	if (req == NULL)
		return NULL;
	clock_gettime(CLOCK_MONOTONIC, &req->started);
	req->method = text_to_utf8(method, strlen(method));
	req->path = text_to_utf8(url, strlen(url));
	if (req->method == NULL || req->path == NULL)
	{
		free(req->method);
		free(req->path);
		free(req);
		return NULL;
	}
	req->limit = uploads_is_post(req->method, req->path) ? max_upload_size : max_body_size;
	id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
	if (id != NULL && request_id_is_sane(id))
		strcpy(req->request_id, id);
	else
		new_request_id(req->request_id);
	atomic_fetch_add(&in_flight, 1);
	return req;
}

/*
 * Checks that need only the request line and headers.  A declared body
 * over the limit is refused before any of it is read.
 */
static enum MHD_Result
check_headers(struct MHD_Connection *conn, struct request *req)
{
	const char *cl;
	unsigned long long declared;
	char	   *end;

	cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
									 MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl == NULL)
		return MHD_YES;
	declared = strtoull(cl, &end, 10);
	if (declared > req->limit)
	{
		req->too_large = true;
		return queue_too_large(conn, req);
	}
	/* size the buffer once, but do not let a bare header reserve much */
	if (end != cl && declared > 0)
	{
		size_t		cap = declared < BODY_PREALLOC_MAX ? declared + 1 : BODY_PREALLOC_MAX;

		req->body = malloc(cap);
		if (req->body == NULL)
			return MHD_NO;
		req->body_cap = cap;
	}
	return MHD_YES;
}

/* Keep a chunk of body; false once the limit is crossed. */
static bool
body_append(struct request *req, const char *data, size_t size)
{
	req->bytes_in += size;
	if (req->too_large)
		return false;
	if (size > req->limit - req->body_len)
	{
		req->too_large = true;
		free(req->body);
		req->body = NULL;
		req->body_len = req->body_cap = 0;
		return false;
	}
	if (req->body_len + size + 1 > req->body_cap)
	{
		size_t		cap = req->body_cap > 0 ? req->body_cap : 4096;
		char	   *p;

		while (cap < req->body_len + size + 1)
			cap *= 2;
		if (cap > req->limit + 1)
			cap = req->limit + 1;
		p = realloc(req->body, cap);
		if (p == NULL)
			return false;
		req->body = p;
		req->body_cap = cap;
	}
	memcpy(req->body + req->body_len, data, size);
	req->body_len += size;
	req->body[req->body_len] = '\0';
	return true;
}

enum MHD_Result
request_handler(void *cls, struct MHD_Connection *conn, const char *url,
				const char *method, const char *version,
				const char *upload_data, size_t *upload_data_size,
				void **req_cls)
{
	struct request *req = *req_cls;

	(void) cls;
	(void) version;

	if (req == NULL)
	{
		req = request_start(conn, url, method);
		if (req == NULL)
			return MHD_NO;
		*req_cls = req;
		return check_headers(conn, req);
	}

	if (*upload_data_size > 0)
	{
		size_t		size = *upload_data_size;

		*upload_data_size = 0;
		if (req->responded)
			return MHD_YES;
		if (!body_append(req, upload_data, size) && !req->too_large)
			return MHD_NO;		/* out of memory */

		/*
		 * libmicrohttpd cannot answer until the body has been read, so an
		 * oversized body without Content-Length is drained and refused at
		 * its end; one that goes on far past the limit is cut off.
		 */
		if (req->too_large && req->bytes_in - req->limit > DRAIN_MAX)
		{
			log_error("request %s: body far over the limit, closing connection",
					  req->request_id);
			return MHD_NO;
		}
		return MHD_YES;
	}

	if (req->responded)
		return MHD_YES;
	if (req->too_large)
		return queue_too_large(conn, req);
	return dispatch(conn, req);
}

void
request_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
				  enum MHD_RequestTerminationCode toe)
{
	struct request *req = *req_cls;
	struct timespec now;
	struct access_entry entry;

	(void) cls;
	(void) conn;
	(void) toe;
	if (req == NULL)
		return;
	*req_cls = NULL;

	clock_gettime(CLOCK_MONOTONIC, &now);
	entry.request_id = req->request_id;
	entry.method = req->method;
	entry.path = req->path;
	entry.status = req->status;
	entry.duration_ms = (double) (now.tv_sec - req->started.tv_sec) * 1000.0 +
		(double) (now.tv_nsec - req->started.tv_nsec) / 1e6;
	entry.bytes_in = req->bytes_in;
	entry.bytes_out = req->bytes_out;
	if (req->stream != NULL)
	{
		entry.bytes_out = stream_bytes_out(req->stream);
		stream_unref(req->stream);
	}
	log_access(&entry);
	if (req->status != 0 && !req->observed)
		metrics_observe(req->method, req->path, req->status, entry.duration_ms / 1000.0);

	free(req->method);
	free(req->path);
	free(req->body);
	free(req);
	atomic_fetch_sub(&in_flight, 1);
}
