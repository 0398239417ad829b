/*
 * mock-broker: HTTP server that stands in for WhatsApp brokers in
 * end-to-end tests and benchmarks.  Shared declarations.
 */
#ifndef MOCK_BROKER_H
#define MOCK_BROKER_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

struct MHD_Connection;

/* Largest request body we keep; anything bigger is answered with 413. */
#define MB_MAX_BODY ((size_t) 10 * 1024 * 1024)

/* ---- util.c ---- */
double mb_now_ms(void);
uint64_t mb_mono_ns(void);
int mb_parse_u64(const char *s, uint64_t *out);
/* Always returns a JSON string; invalid UTF-8 is replaced by U+FFFD. */
json_t *mb_json_string(const char *s, size_t len);
void mb_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- store.c: recorded requests, per-path counters, JSON-lines log ---- */
int store_init(size_t max_records, const char *log_path);
void store_shutdown(void);
/*
 * Record one request.  'rest' is a serialised JSON object without the
 * "seq" and "t" members; they are prepended under the store lock so that
 * seq order, t order and list order agree.  Returns the assigned seq.
 */
uint64_t store_record(const char *method, const char *path,
                      const char *rest, size_t rest_len);
void store_reset(void);
/* JSON array of records with seq > since, at most 'limit' (0: all). */
char *store_dump(const char *path_prefix, uint64_t since, uint64_t limit,
                 size_t *len_out);
/* Total when path_prefix is NULL, else requests whose path has the prefix. */
uint64_t store_count(const char *path_prefix);
uint64_t store_count_exact(const char *method, const char *path);

/* ---- rules.c: scripted responses ---- */
enum mb_resp_kind {
    MB_RESP_DEFAULT,   /* dialect default, possibly delayed / extra headers */
    MB_RESP_SCRIPTED,  /* status + body given by the rule */
    MB_RESP_DROP       /* close the connection without answering */
};

struct mb_resp {
    int refs;
    enum mb_resp_kind kind;
    unsigned status;
    char *body;
    size_t body_len;
    const char *content_type;   /* NULL when the rule sets Content-Type */
    size_t nhdr;
    char **hname;
    char **hval;
    unsigned delay_ms;
};

int rules_add(json_t *root, char *err, size_t errlen);   /* -1 on error */
void rules_clear(void);
/* Returns a referenced response or NULL when no rule applies. */
struct mb_resp *rules_match(const char *method, const char *path);
void resp_release(struct mb_resp *r);
json_t *rules_describe(void);

/* ---- delay.c: timer that resumes suspended connections ---- */
int delay_init(void);
/*
 * Suspend 'conn' and resume it after delay_ms.  Must be called from the
 * access handler.  Returns -1 (connection not suspended) once shutdown
 * has begun.
 */
int delay_suspend(struct MHD_Connection *conn, unsigned delay_ms);
/* Resume everything still waiting and stop the timer thread. */
void delay_shutdown(void);

#endif
