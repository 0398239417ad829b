/*
 * metrics.h
 *		pgwa-http's own metrics: requests by route and status, latency.
 */
#ifndef PGWA_HTTP_METRICS_H
#define PGWA_HTTP_METRICS_H

#include <stddef.h>

/* Counts one answered request. */
extern void metrics_observe(const char *method, const char *path, unsigned int status, double seconds);

/* The front's families in Prometheus text format (malloc'd), for GET /metrics. */
extern char *metrics_render(size_t *len);

#endif
