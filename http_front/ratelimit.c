/*
 * ratelimit.c
 *		Per-key request rate limit: a token bucket per API key, refilled at
 *		PGWA_HTTP_RATE_LIMIT tokens a second up to PGWA_HTTP_RATE_BURST.
 *
 * Keys are kept only as a 64-bit hash (the front never holds a credential
 * longer than its request), in a fixed table: a key that finds its slots
 * taken replaces the one idle longest, which at worst gives it a full
 * bucket. The limit is per pgwa-http process; it guards the database from
 * one client's flood, while the database decides who the key belongs to.
 */
#include "ratelimit.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#define SLOTS 4096				/* a power of two */
#define PROBES 8

struct bucket
{
	uint64_t	key;			/* 0: free */
	double		tokens;
	double		last;			/* seconds, CLOCK_MONOTONIC */
};

static struct bucket table[SLOTS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static double fill_rate = 0;
static double capacity = 0;

void
ratelimit_init(double rate, double burst)
{
	fill_rate = rate;
	capacity = burst >= 1 ? burst : 1;
}

bool
ratelimit_active(void)
{
	return fill_rate > 0;
}

static uint64_t
hash_key(const char *s)
{
	uint64_t	h = 1469598103934665603ULL;	/* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char) *s) * 1099511628211ULL;
	return h ? h : 1;
}

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

bool
ratelimit_take(const char *key, unsigned int *retry_after)
{
	uint64_t	h;
	double		now;
	struct bucket *b = NULL;
	struct bucket *oldest = NULL;
	bool		ok;

	if (fill_rate <= 0 || key == NULL || key[0] == '\0')
		return true;
	h = hash_key(key);
	now = now_seconds();
	pthread_mutex_lock(&lock);
	for (int i = 0; i < PROBES && b == NULL; i++)
	{
		struct bucket *s = &table[(h + (uint64_t) i) & (SLOTS - 1)];

		if (s->key == h)
			b = s;
		else if (oldest == NULL || s->key == 0 || (oldest->key != 0 && s->last < oldest->last))
			oldest = s;
	}
	if (b == NULL)
	{
		b = oldest;
		b->key = h;
		b->tokens = capacity;
		b->last = now;
	}
	b->tokens = fmin(capacity, b->tokens + (now - b->last) * fill_rate);
	b->last = now;
	ok = b->tokens >= 1;
	if (ok)
		b->tokens -= 1;
	else
		*retry_after = (unsigned int) ceil((1 - b->tokens) / fill_rate);
	pthread_mutex_unlock(&lock);
	return ok;
}
