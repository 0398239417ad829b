/*
 * request.h
 *		libmicrohttpd callbacks turning HTTP requests into pgwa.http() calls.
 */
#ifndef PGWA_HTTP_REQUEST_H
#define PGWA_HTTP_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

#include <microhttpd.h>

extern void request_init(size_t max_body, size_t max_upload);
extern void request_begin_shutdown(void);
extern unsigned int request_in_flight(void);

extern enum MHD_Result request_handler(void *cls,
									   struct MHD_Connection *conn,
									   const char *url,
									   const char *method,
									   const char *version,
									   const char *upload_data,
									   size_t *upload_data_size,
									   void **req_cls);
extern void request_completed(void *cls, struct MHD_Connection *conn,
							  void **req_cls,
							  enum MHD_RequestTerminationCode toe);

#endif
