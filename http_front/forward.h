/*
 * forward.h
 *		Calls a broker on pgwa.http()'s behalf (the seed-000 complementary
 *		operations), with a bounded timeout.
 */
#ifndef PGWA_HTTP_FORWARD_H
#define PGWA_HTTP_FORWARD_H

#include <stdbool.h>

#include "db.h"

/* The internal response header that asks for a forward; never sent on. */
#define FORWARD_HEADER "X-Pgwa-Forward"

extern void forward_init(unsigned int timeout_ms);

/*
 * Performs the call `spec` describes ({"method","url","headers","body"})
 * and replaces *reply with what the client gets: the broker's 2xx answer as
 * it is, or an error (502 BROKER_ERROR / BROKER_UNAVAILABLE, 504
 * BROKER_TIMEOUT). False when the spec cannot be read.
 */
extern bool forward_call(const char *spec, struct db_reply *reply);

#endif
