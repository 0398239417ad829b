/*
 * call.c
 *		From a request to a pgwa.http() call and back: the query and the
 *		headers as JSON objects (lower-case names, plus the request id and
 *		the client's address), the call itself, and its answer queued as the
 *		response (a broker operation it names is made first, forward.c; the
 *		front's own metrics are added to /metrics).
 */
#define _GNU_SOURCE				/* asprintf */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <jansson.h>

#include "db.h"
#include "forward.h"
#include "metrics.h"
#include "request_internal.h"
#include "response.h"
#include "text.h"

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

enum MHD_Result
queue_db_reply(struct MHD_Connection *conn, struct request *req,
			   struct db_reply *reply)
{
	unsigned int status = reply->status;
	size_t		len;
	bool		has_content_type = false;
	struct MHD_Response *resp;

	if (status == MHD_HTTP_OK && strcmp(req->path, "/metrics") == 0)
		append_front_metrics(reply);
	/* pgwa.http()'s own answer only: never a broker's, forwarded below */
	if (!response_decode_body(reply))
	{
		free(reply->body);
		free(reply->headers);
		return queue_error(conn, req, MHD_HTTP_INTERNAL_SERVER_ERROR, "INTERNAL", "internal error");
	}
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

json_t *
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
json_t *
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

/* ---------- the call ---------- */

/* The answer to a pgwa.http() call, or the front's error when it failed. */
enum MHD_Result
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

/* pgwa.http() for this request, with `body` (NULL: none). */
db_status
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

/* The generic path: one call of pgwa.http() per request. */
enum MHD_Result
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
