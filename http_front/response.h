/*
 * response.h
 *		Building libmicrohttpd responses.
 */
#ifndef PGWA_HTTP_RESPONSE_H
#define PGWA_HTTP_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>

#include <microhttpd.h>

#include "db.h"

extern struct MHD_Response *response_error(unsigned int status,
										   const char *code,
										   const char *message,
										   size_t *body_len);
extern struct MHD_Response *response_from_reply(struct db_reply *reply,
												const char *request_id,
												bool *has_content_type);
extern bool response_decode_body(struct db_reply *reply);
extern void response_finish(struct MHD_Response *resp, const char *request_id,
							bool has_content_type, bool closing);

#endif
