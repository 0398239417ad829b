/*
 * front_routes.c
 *		The routes the front serves itself, because pgwa.http() alone cannot
 *		give their answer: GET /v1/events (a stream, handed over to
 *		stream.c), POST /api/whatsapp/uploads and GET /uploads/{id} (the
 *		file's bytes, kept on disk by uploads.c).  The database still decides
 *		each of them through pgwa.http() first.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "db.h"
#include "log.h"
#include "metrics.h"
#include "request_internal.h"
#include "stream.h"
#include "uploads.h"

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
enum MHD_Result
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
enum MHD_Result
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

/*
 * GET /uploads/{id}: the database checks the signed URL, the file is sent
 * from disk. (Inline media come from the database itself: an ordinary reply.)
 */
enum MHD_Result
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
