/*
 * Recorded requests.  Each record is kept as its final serialised JSON
 * text so that listing thousands of them is a plain memory copy.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mock_broker.h"

/* Room reserved in front of each record for {"seq":N,"t":T, */
#define PREFIX_ROOM 64

struct rec {
    char *mem;          /* allocation that holds json and path */
    const char *json;
    size_t len;
    const char *path;
};

struct cnt {
    struct cnt *next;
    uint64_t n;
    uint32_t hash;
    const char *path;   /* points into key, after "METHOD " */
    char key[];         /* "METHOD PATH" */
};

static pthread_mutex_t store_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t seq_counter;
static size_t max_records;
static struct rec *recs;
static size_t nrecs, caprecs;

static struct cnt **buckets;
static size_t nbuckets, ncounts;

/* Log file: appended under log_mu, written out by a separate thread. */
static FILE *log_fp;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t log_cv;
static char *log_buf;
static size_t log_len, log_cap;
static int log_stop;
static pthread_t log_thread;

static uint32_t
fnv1a(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    size_t i;

    for (i = 0; i < n; i++) {
        h ^= (unsigned char) s[i];
        h *= 16777619u;
    }
    return h;
}

static void
counts_grow(void)
{
    size_t nb = nbuckets ? nbuckets * 2 : 256, i;
    struct cnt **nbk = calloc(nb, sizeof *nbk);

    if (nbk == NULL)
        return;             /* keep chaining in the old table */
    for (i = 0; i < nbuckets; i++) {
        struct cnt *c = buckets[i], *next;

        for (; c != NULL; c = next) {
            next = c->next;
            c->next = nbk[c->hash & (nb - 1)];
            nbk[c->hash & (nb - 1)] = c;
        }
    }
    free(buckets);
    buckets = nbk;
    nbuckets = nb;
}

/* Caller holds store_mu. */
static struct cnt *
counts_find(const char *method, const char *path, int create)
{
    size_t ml = strlen(method), pl = strlen(path), kl = ml + 1 + pl;
    char stackkey[512];
    char *key = kl < sizeof stackkey ? stackkey : malloc(kl + 1);
    struct cnt *c = NULL;
    uint32_t h;

    if (key == NULL)
        return NULL;
    memcpy(key, method, ml);
    key[ml] = ' ';
    memcpy(key + ml + 1, path, pl + 1);
    h = fnv1a(key, kl);

    if (nbuckets != 0)
        for (c = buckets[h & (nbuckets - 1)]; c != NULL; c = c->next)
            if (c->hash == h && strcmp(c->key, key) == 0)
                break;

    if (c == NULL && create) {
        if (ncounts >= nbuckets)
            counts_grow();
        if (nbuckets != 0 && (c = malloc(sizeof *c + kl + 1)) != NULL) {
            memcpy(c->key, key, kl + 1);
            c->path = c->key + ml + 1;
            c->hash = h;
            c->n = 0;
            c->next = buckets[h & (nbuckets - 1)];
            buckets[h & (nbuckets - 1)] = c;
            ncounts++;
        }
    }
    if (key != stackkey)
        free(key);
    return c;
}

static void
counts_clear(void)
{
    size_t i;

    for (i = 0; i < nbuckets; i++) {
        struct cnt *c = buckets[i], *next;

        for (; c != NULL; c = next) {
            next = c->next;
            free(c);
        }
    }
    free(buckets);
    buckets = NULL;
    nbuckets = ncounts = 0;
}

static void *
log_main(void *arg)
{
    char *buf = NULL;
    size_t cap = 0;

    (void) arg;
    pthread_mutex_lock(&log_mu);
    for (;;) {
        int stop;
        size_t len;
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 50 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        while (!log_stop && log_len == 0)
            if (pthread_cond_timedwait(&log_cv, &log_mu, &ts) != 0)
                break;

        /* Swap buffers so appenders never wait for the disk. */
        {
            char *tb = log_buf;
            size_t tc = log_cap;

            len = log_len;
            log_buf = buf;
            log_cap = cap;
            log_len = 0;
            buf = tb;
            cap = tc;
        }
        stop = log_stop;
        pthread_mutex_unlock(&log_mu);

        if (len > 0) {
            if (fwrite(buf, 1, len, log_fp) != len)
                mb_log("log write failed");
            fflush(log_fp);
        }
        if (stop)
            break;
        /* Batch for a while; the flush interval stays below 100 ms. */
        {
            struct timespec nap = {0, 50 * 1000 * 1000};

            nanosleep(&nap, NULL);
        }
        pthread_mutex_lock(&log_mu);
    }
    free(buf);
    return NULL;
}

int
store_init(size_t maxrec, const char *log_path)
{
    max_records = maxrec;
    if (log_path != NULL) {
        pthread_condattr_t ca;

        log_fp = fopen(log_path, "a");
        if (log_fp == NULL) {
            mb_log("cannot open log file %s", log_path);
            return -1;
        }
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&log_cv, &ca);
        pthread_condattr_destroy(&ca);
        if (pthread_create(&log_thread, NULL, log_main, NULL) != 0) {
            mb_log("cannot start log thread");
            fclose(log_fp);
            log_fp = NULL;
            return -1;
        }
    }
    return 0;
}

static void
free_records(void)
{
    size_t i;

    for (i = 0; i < nrecs; i++)
        free(recs[i].mem);
    free(recs);
    recs = NULL;
    nrecs = caprecs = 0;
}

void
store_shutdown(void)
{
    if (log_fp != NULL) {
        pthread_mutex_lock(&log_mu);
        log_stop = 1;
        pthread_cond_signal(&log_cv);
        pthread_mutex_unlock(&log_mu);
        pthread_join(log_thread, NULL);
        fclose(log_fp);
        log_fp = NULL;
        free(log_buf);
        log_buf = NULL;
    }
    pthread_mutex_lock(&store_mu);
    free_records();
    counts_clear();
    pthread_mutex_unlock(&store_mu);
}

/* Caller holds store_mu (keeps log order equal to seq order). */
static void
log_append(const char *json, size_t len)
{
    pthread_mutex_lock(&log_mu);
    if (log_len + len + 1 > log_cap) {
        size_t nc = log_cap ? log_cap : 65536;
        char *nb;

        while (nc < log_len + len + 1)
            nc *= 2;
        nb = realloc(log_buf, nc);
        if (nb == NULL) {
            pthread_mutex_unlock(&log_mu);
            mb_log("out of memory, log line dropped");
            return;
        }
        log_buf = nb;
        log_cap = nc;
    }
    memcpy(log_buf + log_len, json, len);
    log_buf[log_len + len] = '\n';
    log_len += len + 1;
    pthread_mutex_unlock(&log_mu);
}

uint64_t
store_record(const char *method, const char *path,
             const char *rest, size_t rest_len)
{
    size_t plen = strlen(path);
    char *mem;
    char prefix[PREFIX_ROOM];
    int pl;
    uint64_t seq;
    struct cnt *c;
    int keep;

    /* rest is "{...}"; its opening brace is replaced by our prefix. */
    mem = malloc(PREFIX_ROOM + rest_len + plen + 2);
    if (mem != NULL) {
        memcpy(mem + PREFIX_ROOM, rest + 1, rest_len - 1);
        mem[PREFIX_ROOM + rest_len - 1] = '\0';
        memcpy(mem + PREFIX_ROOM + rest_len, path, plen + 1);
    }

    pthread_mutex_lock(&store_mu);
    seq = ++seq_counter;
    c = counts_find(method, path, 1);
    if (c != NULL)
        c->n++;
    if (mem == NULL) {
        pthread_mutex_unlock(&store_mu);
        mb_log("out of memory, request %llu not kept",
               (unsigned long long) seq);
        return seq;
    }

    pl = snprintf(prefix, sizeof prefix, "{\"seq\":%llu,\"t\":%.3f,",
                  (unsigned long long) seq, mb_now_ms());
    memcpy(mem + PREFIX_ROOM - pl, prefix, (size_t) pl);

    keep = nrecs < max_records;
    if (keep && nrecs == caprecs) {
        size_t nc = caprecs ? caprecs * 2 : 4096;
        struct rec *nr;

        if (nc > max_records)
            nc = max_records;
        nr = realloc(recs, nc * sizeof *nr);
        if (nr == NULL)
            keep = 0;
        else {
            recs = nr;
            caprecs = nc;
        }
    }
    if (log_fp != NULL)
        log_append(mem + PREFIX_ROOM - pl, (size_t) pl + rest_len - 1);
    if (keep) {
        struct rec *r = &recs[nrecs++];

        r->mem = mem;
        r->json = mem + PREFIX_ROOM - pl;
        r->len = (size_t) pl + rest_len - 1;
        r->path = mem + PREFIX_ROOM + rest_len;
        mem = NULL;
    }
    pthread_mutex_unlock(&store_mu);
    free(mem);
    return seq;
}

void
store_reset(void)
{
    pthread_mutex_lock(&store_mu);
    free_records();
    counts_clear();
    seq_counter = 0;
    pthread_mutex_unlock(&store_mu);
}

static int
has_prefix(const char *s, const char *prefix, size_t plen)
{
    return strncmp(s, prefix, plen) == 0;
}

char *
store_dump(const char *path_prefix, uint64_t since, uint64_t limit,
           size_t *len_out)
{
    size_t pfl = path_prefix ? strlen(path_prefix) : 0;
    size_t i, start, total = 2, n = 0, o = 0;
    char *out;

    pthread_mutex_lock(&store_mu);
    /* recs[i] has seq i + 1, so seq > since starts at index since. */
    start = since < nrecs ? (size_t) since : nrecs;

    for (i = start; i < nrecs && (limit == 0 || n < limit); i++) {
        if (path_prefix && !has_prefix(recs[i].path, path_prefix, pfl))
            continue;
        total += recs[i].len + 1;
        n++;
    }
    out = malloc(total + 1);
    if (out == NULL) {
        pthread_mutex_unlock(&store_mu);
        return NULL;
    }
    out[o++] = '[';
    n = 0;
    for (i = start; i < nrecs && (limit == 0 || n < limit); i++) {
        if (path_prefix && !has_prefix(recs[i].path, path_prefix, pfl))
            continue;
        if (n > 0)
            out[o++] = ',';
        memcpy(out + o, recs[i].json, recs[i].len);
        o += recs[i].len;
        n++;
    }
    pthread_mutex_unlock(&store_mu);
    out[o++] = ']';
    out[o] = '\0';
    *len_out = o;
    return out;
}

uint64_t
store_count(const char *path_prefix)
{
    uint64_t total = 0;
    size_t i, pfl;

    pthread_mutex_lock(&store_mu);
    if (path_prefix == NULL)
        total = seq_counter;
    else {
        pfl = strlen(path_prefix);
        for (i = 0; i < nbuckets; i++) {
            struct cnt *c;

            for (c = buckets[i]; c != NULL; c = c->next)
                if (has_prefix(c->path, path_prefix, pfl))
                    total += c->n;
        }
    }
    pthread_mutex_unlock(&store_mu);
    return total;
}

uint64_t
store_count_exact(const char *method, const char *path)
{
    struct cnt *c;
    uint64_t n;

    pthread_mutex_lock(&store_mu);
    c = counts_find(method, path, 0);
    n = c ? c->n : 0;
    pthread_mutex_unlock(&store_mu);
    return n;
}
