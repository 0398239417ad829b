/*
 * request.c
 *		From an HTTP request to a pgwa.http() call and back.
 *
 * libmicrohttpd calls request_handler() several times per request: once
 * when the headers are in, once per chunk of body, and a last time with no
 * data.  The first call checks what can be refused up front, the middle
 * ones accumulate the body under the size limit, the last one dispatches.
 * The front applies no business rules: routing, auth, validation and error
 * shaping all live in the SQL function.
 */
#define _GNU_SOURCE				/* asprintf */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "db.h"
#include "forward.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "request.h"
#include "response.h"
#include "stream.h"
#include "text.h"
#include "uploads.h"

#define REQUEST_ID_MAX	64
#define BODY_PREALLOC_MAX	65536
#define DRAIN_MAX	(1024 * 1024)

struct request
{
	struct timespec started;
	char		request_id[REQUEST_ID_MAX + 1];
	char	   *method;
	char	   *path;			/* as decoded by libmicrohttpd, made UTF-8 */
	char	   *body;
	size_t		body_len;
	size_t		body_cap;
	size_t		bytes_in;		/* body bytes received, kept or not */
	size_t		limit;			/* body limit: PGWA_HTTP_MAX_BODY, or PGWA_HTTP_MAX_UPLOAD */
	bool		too_large;
	bool		responded;
	unsigned int status;
	size_t		bytes_out;
	struct stream *stream;		/* GET /v1/events, once streaming */
	bool		observed;		/* metrics taken when the stream started */
};

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

static enum MHD_Result
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

static enum MHD_Result
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

/* The database's metrics, then the front's own (metrics.c). */
static void
append_front_metrics(struct db_reply *reply)
{
	size_t		len;
	char	   *own = metrics_render(&len);
	char	   *body = own ? realloc(reply->body, reply->body_len + len + 1) : NULL;

	if (body != NULL)
	{
		memcpy(body + reply->body_len, own, len);
		reply->body = body;
		reply->body_len += len;
		body[reply->body_len] = '\0';
	}
	free(own);
}

static enum MHD_Result
queue_db_reply(struct MHD_Connection *conn, struct request *req,
			   struct db_reply *reply)
{
	unsigned int status = reply->status;
	size_t		len;
	bool		has_content_type = false;
	struct MHD_Response *resp;

	if (status == MHD_HTTP_OK && strcmp(req->path, "/metrics") == 0)
		append_front_metrics(reply);
	if (reply->headers != NULL && strstr(reply->headers, FORWARD_HEADER) != NULL)
	{
		/* a broker operation: the front calls the broker (forward.c) */
		json_t	   *h = json_loads(reply->headers, 0, NULL);
		const char *spec = json_string_value(json_object_get(h, FORWARD_HEADER));
		bool		done = spec != NULL && forward_call(spec, reply);

		json_decref(h);
		if (!done)
		{
			free(reply->body);
			free(reply->headers);
			return queue_error(conn, req, MHD_HTTP_INTERNAL_SERVER_ERROR, "INTERNAL", "internal error");
		}
		status = reply->status;
	}
	len = reply->body_len;
	resp = response_from_reply(reply, req->request_id, &has_content_type);
	if (resp == NULL)
		return queue_error(conn, req, MHD_HTTP_INTERNAL_SERVER_ERROR,
						   "INTERNAL", "internal error");
	return queue_reply(conn, req, status, resp, has_content_type, len);
}

/* ---------- building the call ---------- */

/* Lowercased, UTF-8 copy of a header name. */
static char *
header_name(const char *key, size_t len)
{
	char	   *name = text_to_utf8(key, len);

	if (name != NULL)
		for (char *p = name; *p != '\0'; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p += 'a' - 'A';
	return name;
}

/* Repeated headers are joined with ", " as HTTP allows. */
static enum MHD_Result
collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
			   size_t key_size, const char *value, size_t value_size)
{
	json_t	   *obj = cls;
	char	   *name = header_name(key, key_size);
	char	   *text = text_to_utf8(value != NULL ? value : "",
									value != NULL ? value_size : 0);
	json_t	   *prev;

	(void) kind;
	if (name == NULL || text == NULL)
		goto done;
	prev = json_object_get(obj, name);
	if (prev != NULL)
	{
		char	   *joined;

		if (asprintf(&joined, "%s, %s", json_string_value(prev), text) >= 0)
		{
			json_string_set_nocheck(prev, joined);
			free(joined);
		}
	}
	else
		json_object_set_new_nocheck(obj, name, json_string_nocheck(text));
done:
	free(name);
	free(text);
	return MHD_YES;
}

/* A repeated query argument keeps its last value. */
static enum MHD_Result
collect_argument(void *cls, enum MHD_ValueKind kind, const char *key,
				 size_t key_size, const char *value, size_t value_size)
{
	json_t	   *obj = cls;
	char	   *name = text_to_utf8(key, key_size);
	char	   *text = text_to_utf8(value != NULL ? value : "",
									value != NULL ? value_size : 0);

	(void) kind;
	if (name != NULL && text != NULL)
		json_object_set_new_nocheck(obj, name, json_string_nocheck(text));
	free(name);
	free(text);
	return MHD_YES;
}

static json_t *
query_object(struct MHD_Connection *conn)
{
	json_t	   *obj = json_object();

	if (obj != NULL)
		MHD_get_connection_values_n(conn, MHD_GET_ARGUMENT_KIND,
									collect_argument, obj);
	return obj;
}

static char *
query_json(struct MHD_Connection *conn)
{
	json_t	   *obj = query_object(conn);
	char	   *text = obj != NULL ? json_dumps(obj, JSON_COMPACT) : NULL;

	json_decref(obj);
	return text;
}

static void
client_addr(struct MHD_Connection *conn, char *buf, size_t size)
{
	const union MHD_ConnectionInfo *info;
	const struct sockaddr *sa;

	buf[0] = '\0';
	info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (info == NULL || info->client_addr == NULL)
		return;
	sa = info->client_addr;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *) sa)->sin_addr,
				  buf, (socklen_t) size);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *) sa)->sin6_addr,
				  buf, (socklen_t) size);
}

/* Request headers, plus the two the front sets itself. */
static json_t *
headers_object(struct MHD_Connection *conn, const struct request *req)
{
	json_t	   *obj = json_object();
	char		addr[INET6_ADDRSTRLEN];

	if (obj == NULL)
		return NULL;
	MHD_get_connection_values_n(conn, MHD_HEADER_KIND, collect_header, obj);
	client_addr(conn, addr, sizeof(addr));
	json_object_set_new_nocheck(obj, "x-request-id",
								json_string_nocheck(req->request_id));
	json_object_set_new_nocheck(obj, "x-pgwa-client-addr",
								json_string_nocheck(addr));
	return obj;
}

static char *
headers_json(struct MHD_Connection *conn, const struct request *req)
{
	json_t	   *obj = headers_object(conn, req);
	char	   *text = obj != NULL ? json_dumps(obj, JSON_COMPACT) : NULL;

	json_decref(obj);
	return text;
}

/* ---------- handlers ---------- */

/* The answer to a pgwa.http() call, or the front's error when it failed. */
static enum MHD_Result
queue_db_status(struct MHD_Connection *conn, struct request *req, db_status st,
				struct db_reply *reply)
{
	switch (st)
	{
		case DB_OK:
			return queue_db_reply(conn, req, reply);
		case DB_UNAVAILABLE:
			return queue_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE,
							   "DATABASE_UNAVAILABLE",
							   "database is unavailable, retry later");
		case DB_FAILED:
			break;
	}
	return queue_error(conn, req, MHD_HTTP_INTERNAL_SERVER_ERROR,
					   "INTERNAL", "internal error");
}

/* The generic path: one call of pgwa.http() per request. */
/* pgwa.http() for this request, with `body` (NULL: none). */
static db_status
call_with_body(struct MHD_Connection *conn, struct request *req, const char *body, struct db_reply *reply)
{
	struct db_call call = {.method = req->method,.path = req->path};
	char	   *query = query_json(conn);
	char	   *headers = headers_json(conn, req);
	db_status	st = DB_FAILED;

	if (query != NULL && headers != NULL)
	{
		call.query = query;
		call.headers = headers;
		call.body = body;
		st = db_call_http(&call, reply);
	}
	free(query);
	free(headers);
	return st;
}

static enum MHD_Result
call_pgwa_http(struct MHD_Connection *conn, struct request *req)
{
	struct db_reply reply;
	db_status	st;

	if (req->body_len > 0 && !text_is_utf8(req->body, req->body_len))
		return queue_error(conn, req, MHD_HTTP_BAD_REQUEST, "INVALID_BODY",
						   "request body must be UTF-8 text");

	st = call_with_body(conn, req, req->body_len > 0 ? req->body : NULL, &reply);

	return queue_db_status(conn, req, st, &reply);
}

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

static double
elapsed_seconds(const struct request *req)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double) (now.tv_sec - req->started.tv_sec) +
		(double) (now.tv_nsec - req->started.tv_nsec) / 1e9;
}

/*
 * GET /v1/events as server-sent events (stream.c).  pgwa.http() answers
 * the same route with limit=0 first: its errors (401, 403, a bad
 * Last-Event-ID) are the answer, else its page says whose events these are
 * and after which id the stream starts.  That call uses the pool's session
 * like any request; the stream then has a session of its own.
 */
static enum MHD_Result
serve_events(struct MHD_Connection *conn, struct request *req)
{
	struct db_call call = {.method = req->method,.path = req->path};
	struct db_reply reply;
	json_t	   *query = query_object(conn);
	json_t	   *headers = headers_object(conn, req);
	json_t	   *page = NULL;
	char	   *query_text = NULL;
	char	   *headers_text = NULL;
	const char *tenant;
	json_t	   *last;
	struct MHD_Response *resp = NULL;
	db_status	st = DB_FAILED;
	enum MHD_Result ret;

	if (!stream_reserve())
	{
		json_decref(query);
		json_decref(headers);
		return queue_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, "TOO_MANY_STREAMS",
						   "too many event streams open, retry later");
	}
	if (query != NULL && headers != NULL &&
		json_object_set_new(query, "limit", json_string("0")) == 0)
	{
		call.query = query_text = json_dumps(query, JSON_COMPACT);
		call.headers = headers_text = json_dumps(headers, JSON_COMPACT);
		if (call.query != NULL && call.headers != NULL)
			st = db_call_http(&call, &reply);
	}
	free(query_text);
	free(headers_text);
	query_text = headers_text = NULL;
	if (st != DB_OK || reply.status != MHD_HTTP_OK)
	{
		stream_unreserve();
		json_decref(query);
		json_decref(headers);
		return queue_db_status(conn, req, st, &reply);
	}

	page = json_loadb(reply.body, reply.body_len, 0, NULL);
	free(reply.body);
	free(reply.headers);
	tenant = json_string_value(json_object_get(page, "tenantId"));
	last = json_object_get(page, "lastId");

	/* the stream's reads say where they start themselves */
	json_object_del(query, "after");
	json_object_del(query, "limit");
	json_object_del(headers, "last-event-id");
	if (tenant != NULL && json_is_integer(last))
	{
		query_text = json_dumps(query, JSON_COMPACT);
		headers_text = json_dumps(headers, JSON_COMPACT);
		if (query_text != NULL && headers_text != NULL)
			resp = stream_start(conn, tenant, json_integer_value(last), query_text, headers_text,
								&req->stream);
		else
			stream_unreserve();
	}
	else
	{
		log_error("request %s: pgwa.http gave no stream start for GET /v1/events", req->request_id);
		stream_unreserve();
	}
	free(query_text);
	free(headers_text);
	json_decref(page);
	json_decref(query);
	json_decref(headers);
	if (resp == NULL)
		return queue_error(conn, req, MHD_HTTP_INTERNAL_SERVER_ERROR, "INTERNAL", "internal error");

	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
	/* proxies that buffer responses (nginx) would hold the events back */
	MHD_add_response_header(resp, "X-Accel-Buffering", "no");
	ret = queue_reply(conn, req, MHD_HTTP_OK, resp, true, 0);
	/* a stream's duration is its client's choice: the histogram takes its start */
	if (ret == MHD_YES)
	{
		metrics_observe(req->method, req->path, MHD_HTTP_OK, elapsed_seconds(req));
		req->observed = true;
	}
	return ret;
}

/* The string member `key` of a JSON text, copied into out. */
static bool
json_text_member(const char *text, const char *key, char *out, size_t out_size)
{
	json_t	   *j = text ? json_loads(text, 0, NULL) : NULL;
	const char *v = json_string_value(json_object_get(j, key));
	bool		ok = v != NULL && strlen(v) < out_size;

	if (ok)
		strcpy(out, v);
	json_decref(j);
	return ok;
}

/*
 * POST /api/whatsapp/uploads: the file part is written to a temporary
 * file, the database decides with what was read of it (75_uploads.sql),
 * and the file takes the upload's id once accepted.
 */
static enum MHD_Result
serve_upload_post(struct MHD_Connection *conn, struct request *req)
{
	struct upload_part part;
	struct db_reply reply;
	char		tmp[PATH_MAX] = "";
	char		id[64];
	char	   *meta;
	db_status	st;

	if (uploads_parse(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE),
					  req->body, req->body_len, &part))
	{
		if (!uploads_store(&part, req->request_id, tmp, sizeof(tmp)))
			return queue_error(conn, req, MHD_HTTP_INSUFFICIENT_STORAGE, "UPLOAD_NOT_STORED",
							   "the file could not be stored");
		meta = json_dumps(json_pack("{s:s,s:s,s:I}", "fileName", part.file_name,
									"contentType", part.content_type,
									"size", (json_int_t) part.len), JSON_COMPACT);
	}
	else
		meta = strdup("{}");	/* the database names what is missing */
	st = call_with_body(conn, req, meta, &reply);
	free(meta);
	if (st != DB_OK)
	{
		if (tmp[0])
			unlink(tmp);
		return queue_db_status(conn, req, st, &reply);
	}
	if (tmp[0])
	{
		if (reply.status == MHD_HTTP_CREATED && json_text_member(reply.body, "uploadId", id, sizeof(id)))
		{
			if (!uploads_commit(tmp, id))
			{
				free(reply.body);
				free(reply.headers);
				return queue_error(conn, req, MHD_HTTP_INSUFFICIENT_STORAGE, "UPLOAD_NOT_STORED",
								   "the file could not be stored");
			}
		}
		else
			unlink(tmp);
	}
	return queue_db_reply(conn, req, &reply);
}

/* A header value made safe to send (quotes and controls replaced). */
static void
safe_header_value(const char *in, char *out, size_t out_size)
{
	size_t		o = 0;

	for (; *in && o + 1 < out_size; in++)
		out[o++] = ((unsigned char) *in < 0x20 || *in == 0x7F || *in == '"' || *in == '\\') ? '_' : *in;
	out[o] = '\0';
}

/* GET /uploads/{id}: the database checks the signed URL, the file is sent from disk. */
static enum MHD_Result
serve_upload_get(struct MHD_Connection *conn, struct request *req)
{
	struct db_reply reply;
	db_status	st = call_with_body(conn, req, NULL, &reply);
	char		id[64];
	char		ctype[160];
	char		name[300];
	char		disposition[340];
	json_t	   *h;
	json_t	   *f;
	size_t		size = 0;
	int			fd;
	struct MHD_Response *resp;

	if (st != DB_OK)
		return queue_db_status(conn, req, st, &reply);
	h = reply.status == MHD_HTTP_OK && reply.headers ? json_loads(reply.headers, 0, NULL) : NULL;
	f = json_loads(json_string_value(json_object_get(h, "X-Pgwa-File")) ?
				   json_string_value(json_object_get(h, "X-Pgwa-File")) : "null", 0, NULL);
	json_decref(h);
	if (!json_is_object(f))
	{
		json_decref(f);
		return queue_db_reply(conn, req, &reply);
	}
	snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(f, "id")) ?: "");
	safe_header_value(json_string_value(json_object_get(f, "contentType")) ?: "application/octet-stream",
					  ctype, sizeof(ctype));
	safe_header_value(json_string_value(json_object_get(f, "fileName")) ?: "file", name, sizeof(name));
	json_decref(f);
	free(reply.body);
	free(reply.headers);
	fd = uploads_open(id, &size);
	if (fd < 0)
		return queue_error(conn, req, MHD_HTTP_NOT_FOUND, "NOT_FOUND", "the upload's file is gone");
	resp = MHD_create_response_from_fd(size, fd);
	if (resp == NULL)
	{
		close(fd);
		return MHD_NO;
	}
	snprintf(disposition, sizeof(disposition), "inline; filename=\"%s\"", name);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_DISPOSITION, disposition);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "private, max-age=60");
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	return queue_reply(conn, req, MHD_HTTP_OK, resp, true, size);
}

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
