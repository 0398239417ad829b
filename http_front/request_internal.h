/*
 * request_internal.h
 *		What request.c, call.c and front_routes.c share: the state of one
 *		request, the way an answer is queued, and the pgwa.http() call.
 *		Not for the rest of the front (main.c sees request.h only).
 */
#ifndef PGWA_HTTP_REQUEST_INTERNAL_H
#define PGWA_HTTP_REQUEST_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <jansson.h>
#include <microhttpd.h>

#include "db.h"

#define REQUEST_ID_MAX	64

struct stream;

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

/* request.c: queue an answer and note its status and size for the log */
extern enum MHD_Result queue_reply(struct MHD_Connection *conn, struct request *req,
								   unsigned int status, struct MHD_Response *resp,
								   bool has_content_type, size_t body_len);
extern enum MHD_Result queue_error(struct MHD_Connection *conn, struct request *req,
								   unsigned int status, const char *code, const char *message);

/* call.c: from a request to a pgwa.http() call and back */
extern json_t *query_object(struct MHD_Connection *conn);
extern json_t *headers_object(struct MHD_Connection *conn, const struct request *req);
extern db_status call_with_body(struct MHD_Connection *conn, struct request *req,
								const char *body, struct db_reply *reply);
extern enum MHD_Result call_pgwa_http(struct MHD_Connection *conn, struct request *req);
extern enum MHD_Result queue_db_reply(struct MHD_Connection *conn, struct request *req,
									  struct db_reply *reply);
extern enum MHD_Result queue_db_status(struct MHD_Connection *conn, struct request *req,
									   db_status st, struct db_reply *reply);

/* front_routes.c: the routes the front serves itself */
extern enum MHD_Result serve_events(struct MHD_Connection *conn, struct request *req);
extern enum MHD_Result serve_upload_post(struct MHD_Connection *conn, struct request *req);
extern enum MHD_Result serve_upload_get(struct MHD_Connection *conn, struct request *req);

#endif
