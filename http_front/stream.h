/*
 * stream.h
 *		Server-sent event streams of GET /v1/events.
 */
#ifndef PGWA_HTTP_STREAM_H
#define PGWA_HTTP_STREAM_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>
#include <microhttpd.h>

struct stream;

extern void stream_init(unsigned int max_streams, unsigned int heartbeat_s);

/* Takes one of the max_streams places; false when none is left or shutting down. */
extern bool stream_reserve(void);
/* Gives back a place taken by stream_reserve() that stream_start() did not use. */
extern void stream_unreserve(void);

/*
 * Starts the stream of a tenant's events after `after` on a reserved place:
 * a thread with its own database session fetches them with pgwa.http()
 * (query and headers as JSON texts, without after, limit or Last-Event-ID).
 * The response is to be queued on conn; *out is a reference for the request,
 * released with stream_unref(). NULL when out of resources (the place is then
 * given back).
 */
extern struct MHD_Response *stream_start(struct MHD_Connection *conn, const char *tenant_id,
										 long long after, const char *query, const char *headers,
										 struct stream **out);
extern size_t stream_bytes_out(struct stream *s);
extern void stream_unref(struct stream *s);

/* Ends every stream (their clients see the end of the body) and refuses new ones. */
extern void stream_shutdown(void);
/* Waits up to `seconds` for the streams' threads to be gone; false if some remain. */
extern bool stream_wait(unsigned int seconds);
/* Streams open now. */
extern unsigned int stream_count(void);

#endif
