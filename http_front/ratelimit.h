/*
 * ratelimit.h
 *		Per-key request rate limit of pgwa-http (a token bucket per API key).
 */
#ifndef PGWA_HTTP_RATELIMIT_H
#define PGWA_HTTP_RATELIMIT_H

#include <stdbool.h>

/* rate: requests per second per key (0: no limit); burst: bucket size. */
extern void ratelimit_init(double rate, double burst);

/* Whether a limit is set (else the key need not even be looked up). */
extern bool ratelimit_active(void);

/*
 * Takes one request's token from the bucket of `key` (the credential as
 * presented). False when the bucket is empty; *retry_after is then the
 * whole seconds until a token is back.
 */
extern bool ratelimit_take(const char *key, unsigned int *retry_after);

#endif
