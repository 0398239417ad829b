/*
 * metrics.c
 *		pgwa-http's own metrics, appended to GET /metrics (the database's):
 *		pgwa_http_requests_total{method,route,status} and the histogram
 *		pgwa_http_request_duration_seconds, from arrival to the answer's end
 *		(to the start of an event stream), and the gauge pgwa_http_event_streams.
 *
 * A route is the path with what varies taken out: segments that are ids,
 * numbers or tokens become {id}, so that the series stay few; past
 * MAX_SERIES distinct ones, the rest count as route "other". Counts live in
 * this process and restart with it, which Prometheus reads as a reset.
 */
#include "metrics.h"

#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream.h"

#define MAX_SERIES 256
#define ROUTE_LEN 96

static const double bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
#define NBOUNDS (sizeof(bounds) / sizeof(bounds[0]))

struct series
{
	char		method[8];
	char		route[ROUTE_LEN];
	unsigned int status;
	unsigned long long count;
};

static struct series table[MAX_SERIES];
static int nseries = 0;
static unsigned long long buckets[NBOUNDS + 1];
static unsigned long long total = 0;
static double sum = 0;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* An id, a number or a token: anything with a digit and 8 or more characters, or all digits. */
static bool
varies(const char *s, size_t n)
{
	bool		digit = false,
				all_digits = n > 0;

	for (size_t i = 0; i < n; i++)
	{
		digit |= isdigit((unsigned char) s[i]) != 0;
		all_digits &= isdigit((unsigned char) s[i]) != 0;
	}
	return all_digits || (digit && n >= 8);
}

static void
route_of(const char *path, char *out)
{
	size_t		o = 0;
	const char *p = path;

	while (*p == '/' && o + 1 < ROUTE_LEN)
	{
		const char *seg = ++p;
		size_t		n = strcspn(seg, "/?");
		const char *piece = varies(seg, n) ? "{id}" : seg;
		size_t		len = piece == seg ? n : 4;

		if (o + 1 + len + 1 >= ROUTE_LEN)
			break;
		out[o++] = '/';
		for (size_t i = 0; i < len; i++)
		{
			char		c = piece[i];

			/* nothing a label value cannot hold as is */
			out[o++] = (isalnum((unsigned char) c) || strchr("-_.{}", c)) ? c : '_';
		}
		p = seg + n;
		if (*p == '?')
			break;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = '\0';
}

void
metrics_observe(const char *method, const char *path, unsigned int status, double seconds)
{
	char		route[ROUTE_LEN];
	struct series *s = NULL;
	size_t		b = 0;

	route_of(path, route);
	while (b < NBOUNDS && seconds > bounds[b])
		b++;
	pthread_mutex_lock(&lock);
	for (int i = 0; i < nseries && s == NULL; i++)
		if (table[i].status == status && strcmp(table[i].route, route) == 0 &&
			strncmp(table[i].method, method, sizeof(table[i].method) - 1) == 0)
			s = &table[i];
	if (s == NULL)
	{
		if (nseries == MAX_SERIES - 1)
			strcpy(route, "other");
		for (int i = 0; i < nseries && s == NULL; i++)
			if (table[i].status == status && strcmp(table[i].route, route) == 0 &&
				strncmp(table[i].method, method, sizeof(table[i].method) - 1) == 0)
				s = &table[i];
		if (s == NULL)
		{
			s = &table[nseries++];
			snprintf(s->method, sizeof(s->method), "%s", method);
			snprintf(s->route, sizeof(s->route), "%s", route);
			s->status = status;
		}
	}
	s->count++;
	buckets[b]++;
	total++;
	sum += seconds;
	pthread_mutex_unlock(&lock);
}

char *
metrics_render(size_t *len)
{
	size_t		cap = 4096 + (size_t) MAX_SERIES * (ROUTE_LEN + 96);
	char	   *out = malloc(cap);
	size_t		o = 0;
	unsigned long long cum = 0;

	if (out == NULL)
		return NULL;
	pthread_mutex_lock(&lock);
	o += snprintf(out + o, cap - o,
				  "# HELP pgwa_http_requests_total Requests answered by pgwa-http, by method, route and status.\n"
				  "# TYPE pgwa_http_requests_total counter\n");
	for (int i = 0; i < nseries; i++)
		o += snprintf(out + o, cap - o, "pgwa_http_requests_total{method=\"%s\",route=\"%s\",status=\"%u\"} %llu\n",
					  table[i].method, table[i].route, table[i].status, table[i].count);
	o += snprintf(out + o, cap - o,
				  "# HELP pgwa_http_request_duration_seconds Time from a request's arrival in pgwa-http to its answer.\n"
				  "# TYPE pgwa_http_request_duration_seconds histogram\n");
	for (size_t b = 0; b < NBOUNDS; b++)
	{
		cum += buckets[b];
		o += snprintf(out + o, cap - o, "pgwa_http_request_duration_seconds_bucket{le=\"%g\"} %llu\n", bounds[b], cum);
	}
	o += snprintf(out + o, cap - o,
				  "pgwa_http_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
				  "pgwa_http_request_duration_seconds_sum %.6f\n"
				  "pgwa_http_request_duration_seconds_count %llu\n", total, sum, total);
	pthread_mutex_unlock(&lock);
	o += snprintf(out + o, cap - o,
				  "# HELP pgwa_http_event_streams GET /v1/events streams open.\n"
				  "# TYPE pgwa_http_event_streams gauge\n"
				  "pgwa_http_event_streams %u\n", stream_count());
	*len = o;
	return out;
}
