/*
 * mock-broker: an HTTP server that plays the part of WhatsApp brokers
 * (seed-000 broker, Evolution API v2, Meta Cloud API) for end-to-end
 * tests and benchmarks.  Every request is recorded; responses can be
 * scripted through the /__mock/ control API.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "mock_broker.h"

#define CONNECTION_LIMIT 4096
#define MOCK_PREFIX "/__mock/"
/* Spelled out: the MHD constant was renamed between releases. */
#define HTTP_TOO_LARGE 413u

enum req_state {
    RS_RECEIVING,       /* headers seen, body may follow */
    RS_SUSPENDED,       /* answer prepared, waiting for the timer */
    RS_DONE
};

struct req_ctx {
    enum req_state state;
    char *body;
    size_t len, cap;
    int too_large;
    /* Prepared while suspended. */
    struct MHD_Response *pending;
    unsigned status;
    int drop;
};

/* Connections currently suspended; shutdown waits for them to drain. */
static int suspended_count;

/* ------------------------------------------------------------------ */
/* Responses                                                           */

static struct MHD_Response *
resp_from_buffer(char *buf, size_t len, const char *ctype)
{
    struct MHD_Response *r;

    r = MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(buf);
        return NULL;
    }
    if (ctype != NULL)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    return r;
}

/* Takes ownership of obj. */
static struct MHD_Response *
resp_from_json(json_t *obj)
{
    char *s;

    if (obj == NULL)
        return NULL;
    s = json_dumps(obj, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(obj);
    if (s == NULL)
        return NULL;
    return resp_from_buffer(s, strlen(s), "application/json");
}

static struct MHD_Response *
resp_from_literal(const char *text)
{
    struct MHD_Response *r;

    r = MHD_create_response_from_buffer(strlen(text), (void *) text,
                                        MHD_RESPMEM_PERSISTENT);
    if (r != NULL)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                "application/json");
    return r;
}

static enum MHD_Result
queue(struct MHD_Connection *conn, unsigned status, struct MHD_Response *r)
{
    enum MHD_Result ret;

    if (r == NULL)
        return MHD_NO;
    ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result
queue_literal(struct MHD_Connection *conn, unsigned status, const char *text)
{
    return queue(conn, status, resp_from_literal(text));
}

static enum MHD_Result
queue_json(struct MHD_Connection *conn, unsigned status, json_t *obj)
{
    return queue(conn, status, resp_from_json(obj));
}

/*
 * Set while a worker thread drops a connection on purpose, so the
 * "internal error" MHD logs for it does not end up on stderr.
 */
static __thread int dropping;

/* Close without answering; a zero linger turns the close into a reset. */
static enum MHD_Result
drop_connection(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci;

    dropping = 1;
    ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci != NULL) {
        struct linger lg = {1, 0};

        (void) setsockopt(ci->connect_fd, SOL_SOCKET, SO_LINGER,
                          &lg, sizeof lg);
    }
    return MHD_NO;
}

/* ------------------------------------------------------------------ */
/* Request record                                                      */

struct kv_ctx {
    json_t *obj;
    int lower;
};

static enum MHD_Result
collect_kv(void *cls, enum MHD_ValueKind kind, const char *key,
           size_t key_size, const char *value, size_t value_size)
{
    struct kv_ctx *kc = cls;
    char stackbuf[128];
    char *k = key_size < sizeof stackbuf ? stackbuf : malloc(key_size + 1);
    json_t *kj, *vj, *old;
    size_t i;

    (void) kind;
    if (k == NULL)
        return MHD_YES;
    for (i = 0; i < key_size; i++)
        k[i] = kc->lower ? (char) tolower((unsigned char) key[i]) : key[i];
    k[key_size] = '\0';

    kj = mb_json_string(k, key_size);
    if (value == NULL)
        vj = json_string("");
    else
        vj = mb_json_string(value, value_size);

    old = json_object_get(kc->obj, json_string_value(kj));
    if (old != NULL && kc->lower && json_is_string(old)) {
        /* Repeated header: join as HTTP allows for list-valued fields. */
        size_t ol = json_string_length(old), vl = json_string_length(vj);
        char *joined = malloc(ol + 2 + vl + 1);

        if (joined != NULL) {
            memcpy(joined, json_string_value(old), ol);
            memcpy(joined + ol, ", ", 2);
            memcpy(joined + ol + 2, json_string_value(vj), vl);
            json_decref(vj);
            vj = json_stringn(joined, ol + 2 + vl);
            free(joined);
        }
    }
    if (vj != NULL)
        json_object_set_new(kc->obj, json_string_value(kj), vj);
    json_decref(kj);
    if (k != stackbuf)
        free(k);
    return MHD_YES;
}

/*
 * Build and store the record; returns its seq.  *parsed receives the
 * body parsed as JSON (or NULL), owned by the caller.
 */
static uint64_t
record_request(struct MHD_Connection *conn, const char *method,
               const char *url, const struct req_ctx *ctx, json_t **parsed)
{
    json_t *rec = json_object(), *query = json_object(),
           *headers = json_object(), *body_json = NULL;
    struct kv_ctx kc;
    char *rest;
    uint64_t seq;

    if (ctx->len > 0)
        body_json = json_loadb(ctx->body, ctx->len,
                               JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);

    kc.obj = query;
    kc.lower = 0;
    MHD_get_connection_values_n(conn, MHD_GET_ARGUMENT_KIND, collect_kv, &kc);
    kc.obj = headers;
    kc.lower = 1;
    MHD_get_connection_values_n(conn, MHD_HEADER_KIND, collect_kv, &kc);

    json_object_set_new(rec, "method", mb_json_string(method, strlen(method)));
    json_object_set_new(rec, "path", mb_json_string(url, strlen(url)));
    json_object_set_new(rec, "query", query);
    json_object_set_new(rec, "headers", headers);
    json_object_set_new(rec, "body",
                        mb_json_string(ctx->body ? ctx->body : "", ctx->len));
    json_object_set(rec, "json", body_json ? body_json : json_null());

    rest = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(rec);
    if (rest == NULL) {
        /* Still count it so seq numbers and counters stay truthful. */
        static const char fallback[] = "{\"method\":null,\"path\":null}";

        seq = store_record(method, url, fallback, sizeof fallback - 1);
    } else {
        seq = store_record(method, url, rest, strlen(rest));
        free(rest);
    }
    *parsed = body_json;
    return seq;
}

/* ------------------------------------------------------------------ */
/* Default responses of the three dialects                             */

#define MAX_SEGS 6

struct seg {
    const char *p;
    size_t n;
};

/* Split "/a/b/c" into segments; a single trailing slash is ignored. */
static int
split_path(const char *path, struct seg *segs)
{
    int n = 0;
    const char *p = path;

    if (*p != '/')
        return -1;
    p++;
    for (;;) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t) (e - p) : strlen(p);

        if (e == NULL && len == 0 && n > 0)
            break;
        if (n == MAX_SEGS)
            return -1;
        segs[n].p = p;
        segs[n].n = len;
        n++;
        if (e == NULL)
            break;
        p = e + 1;
    }
    return n;
}

static int
seg_is(const struct seg *s, const char *lit)
{
    return s->n == strlen(lit) && memcmp(s->p, lit, s->n) == 0;
}

/* Meta Graph API versions look like v19.0 */
static int
seg_is_version(const struct seg *s)
{
    size_t i = 1, d1 = 0, d2 = 0;

    if (s->n < 4 || s->p[0] != 'v')
        return 0;
    while (i < s->n && isdigit((unsigned char) s->p[i]))
        i++, d1++;
    if (d1 == 0 || i >= s->n || s->p[i] != '.')
        return 0;
    i++;
    while (i < s->n && isdigit((unsigned char) s->p[i]))
        i++, d2++;
    return d2 > 0 && i == s->n;
}

static json_t *
seg_json(const struct seg *s)
{
    return mb_json_string(s->p, s->n);
}

/* String form of a scalar body member ("" when absent). */
static const char *
member_text(json_t *body, const char *key, char *buf, size_t buflen)
{
    json_t *v = json_is_object(body) ? json_object_get(body, key) : NULL;

    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_integer(v)) {
        snprintf(buf, buflen, "%lld", (long long) json_integer_value(v));
        return buf;
    }
    return "";
}

static struct MHD_Response *
default_response(const char *method, const char *path, json_t *body,
                 uint64_t seq, unsigned *status)
{
    struct seg segs[MAX_SEGS];
    int n = split_path(path, segs);
    int is_post = strcmp(method, "POST") == 0;
    int is_get = strcmp(method, "GET") == 0;
    unsigned long long sq = (unsigned long long) seq;
    char num[32];

    *status = MHD_HTTP_OK;

    /* seed-000 broker */
    if (n >= 1 && seg_is(&segs[0], "instances")) {
        if (n == 1 && is_post) {
            json_t *id = NULL;

            if (json_is_object(body)) {
                id = json_object_get(body, "id");
                if (id == NULL || json_is_null(id))
                    id = json_object_get(body, "name");
                if (id != NULL && json_is_null(id))
                    id = NULL;
            }
            *status = MHD_HTTP_CREATED;
            if (id != NULL)
                return resp_from_json(json_pack("{sOss}", "id", id,
                                                "status", "created"));
            snprintf(num, sizeof num, "inst-%llu", sq);
            return resp_from_json(json_pack("{ssss}", "id", num,
                                            "status", "created"));
        }
        if (n == 3 && segs[1].n > 0) {
            const struct seg *op = &segs[2];

            if (is_post && seg_is(op, "send-text")) {
                char *buf;
                int len = asprintf(&buf,
                                   "{\"id\":\"BRK-%llu\",\"externalId\":"
                                   "\"BRK-%llu\",\"status\":\"sent\"}",
                                   sq, sq);

                if (len < 0)
                    return NULL;
                return resp_from_buffer(buf, (size_t) len, "application/json");
            }
            if (is_get && seg_is(op, "status"))
                return resp_from_json(json_pack("{sossso}",
                                                "id", seg_json(&segs[1]),
                                                "status", "connected",
                                                "connected", json_true()));
            if (is_post && seg_is(op, "exists"))
                return resp_from_literal("{\"exists\":true}");
            if (is_get && seg_is(op, "groups"))
                return resp_from_literal("{\"groups\":[]}");
            if (is_get && seg_is(op, "metrics")) {
                char *p = malloc(segs[1].n + sizeof "/instances//send-text");
                uint64_t sent = 0;

                if (p != NULL) {
                    sprintf(p, "/instances/%.*s/send-text",
                            (int) segs[1].n, segs[1].p);
                    sent = store_count_exact("POST", p);
                    free(p);
                }
                return resp_from_json(json_pack("{sI}", "sent",
                                                (json_int_t) sent));
            }
        }
    }

    /* Evolution API v2: POST /message/{operation}/{instance} */
    if (is_post && n == 3 && seg_is(&segs[0], "message") &&
        segs[1].n > 0 && segs[2].n > 0) {
        const char *number = member_text(body, "number", num, sizeof num);
        char *jid, id[40];
        json_t *resp;

        if (strchr(number, '@') != NULL)
            jid = strdup(number);
        else if (asprintf(&jid, "%s@s.whatsapp.net", number) < 0)
            jid = NULL;
        if (jid == NULL)
            return NULL;
        snprintf(id, sizeof id, "EVO-%llu", sq);
        resp = json_pack("{s{sssbss}sssI}",
                         "key", "remoteJid", jid, "fromMe", 1, "id", id,
                         "status", "PENDING",
                         "messageTimestamp", (json_int_t) time(NULL));
        free(jid);
        *status = MHD_HTTP_CREATED;
        return resp_from_json(resp);
    }

    /* Meta Cloud API: POST /v19.0/{phone_number_id}/messages */
    if (is_post && n == 3 && seg_is_version(&segs[0]) && segs[1].n > 0 &&
        seg_is(&segs[2], "messages")) {
        const char *to = member_text(body, "to", num, sizeof num);
        size_t tl = strlen(to), i, o = 0;
        char *digits = malloc(tl + 1), id[48];
        json_t *resp;

        if (digits == NULL)
            return NULL;
        for (i = 0; i < tl; i++)
            if (isdigit((unsigned char) to[i]))
                digits[o++] = to[i];
        digits[o] = '\0';
        snprintf(id, sizeof id, "wamid.MOCK%llu", sq);
        resp = json_pack("{sss[{ssss}]s[{ss}]}",
                         "messaging_product", "whatsapp",
                         "contacts", "input", to, "wa_id", digits,
                         "messages", "id", id);
        free(digits);
        return resp_from_json(resp);
    }

    *status = MHD_HTTP_NOT_FOUND;
    return resp_from_literal("{\"error\":\"not found\"}");
}

static struct MHD_Response *
scripted_response(const struct mb_resp *plan)
{
    struct MHD_Response *r;
    char *copy = NULL;

    if (plan->body_len > 0) {
        copy = malloc(plan->body_len);
        if (copy == NULL)
            return NULL;
        memcpy(copy, plan->body, plan->body_len);
    }
    r = MHD_create_response_from_buffer(plan->body_len, copy,
                                        MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(copy);
        return NULL;
    }
    if (plan->content_type != NULL)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                plan->content_type);
    return r;
}

static enum MHD_Result
handle_broker(struct MHD_Connection *conn, const char *method,
              const char *url, struct req_ctx *ctx)
{
    json_t *body = NULL;
    uint64_t seq = record_request(conn, method, url, ctx, &body);
    struct mb_resp *plan = rules_match(method, url);
    struct MHD_Response *r = NULL;
    unsigned status = MHD_HTTP_OK, delay_ms = 0;
    int drop = 0;
    size_t i;

    if (plan == NULL || plan->kind == MB_RESP_DEFAULT)
        r = default_response(method, url, body, seq, &status);
    else if (plan->kind == MB_RESP_SCRIPTED) {
        r = scripted_response(plan);
        status = plan->status;
    } else
        drop = 1;
    json_decref(body);

    if (plan != NULL) {
        if (r != NULL)
            for (i = 0; i < plan->nhdr; i++) {
                /* A rule header replaces the default one of that name. */
                const char *cur = MHD_get_response_header(r, plan->hname[i]);

                if (cur != NULL)
                    MHD_del_response_header(r, plan->hname[i], cur);
                MHD_add_response_header(r, plan->hname[i], plan->hval[i]);
            }
        delay_ms = plan->delay_ms;
        resp_release(plan);
    }
    if (r == NULL && !drop)
        return MHD_NO;

    /* The body buffer is no longer needed; free it before any wait. */
    free(ctx->body);
    ctx->body = NULL;
    ctx->len = ctx->cap = 0;

    if (delay_ms > 0) {
        ctx->pending = r;
        ctx->status = status;
        ctx->drop = drop;
        ctx->state = RS_SUSPENDED;
        __atomic_add_fetch(&suspended_count, 1, __ATOMIC_SEQ_CST);
        if (delay_suspend(conn, delay_ms) == 0)
            return MHD_YES;
        /* Shutting down: answer right away. */
        __atomic_sub_fetch(&suspended_count, 1, __ATOMIC_SEQ_CST);
        ctx->pending = NULL;
        ctx->state = RS_DONE;
    }
    ctx->state = RS_DONE;
    if (drop)
        return drop_connection(conn);
    return queue(conn, status, r);
}

/* ------------------------------------------------------------------ */
/* Control API                                                         */

static enum MHD_Result
bad_request(struct MHD_Connection *conn, const char *msg)
{
    return queue_json(conn, MHD_HTTP_BAD_REQUEST,
                      json_pack("{sbss}", "ok", 0, "error", msg));
}

static enum MHD_Result
method_not_allowed(struct MHD_Connection *conn)
{
    return queue_literal(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                         "{\"error\":\"method not allowed\"}");
}

static int
query_u64(struct MHD_Connection *conn, const char *key, uint64_t *out)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND,
                                                key);

    if (v == NULL || *v == '\0')
        return 0;
    return mb_parse_u64(v, out) == 0 ? 0 : -1;
}

static enum MHD_Result
handle_control(struct MHD_Connection *conn, const char *method,
               const char *what, struct req_ctx *ctx)
{
    int is_get = strcmp(method, "GET") == 0;
    int is_post = strcmp(method, "POST") == 0;

    if (strcmp(what, "health") == 0)
        return queue_literal(conn, MHD_HTTP_OK, "{\"ok\":true}");

    if (strcmp(what, "reset") == 0) {
        if (!is_post)
            return method_not_allowed(conn);
        rules_clear();
        store_reset();
        return queue_literal(conn, MHD_HTTP_OK, "{\"ok\":true}");
    }

    if (strcmp(what, "rules") == 0) {
        if (strcmp(method, "DELETE") == 0) {
            rules_clear();
            return queue_literal(conn, MHD_HTTP_OK, "{\"ok\":true}");
        }
        if (is_get)
            return queue_json(conn, MHD_HTTP_OK,
                              json_pack("{so}", "rules", rules_describe()));
        if (is_post) {
            json_error_t jerr;
            json_t *root;
            char err[160];
            int total;

            root = json_loadb(ctx->body ? ctx->body : "", ctx->len, 0, &jerr);
            if (root == NULL)
                return bad_request(conn, "body is not valid JSON");
            total = rules_add(root, err, sizeof err);
            json_decref(root);
            if (total < 0)
                return bad_request(conn, err);
            return queue_json(conn, MHD_HTTP_OK,
                              json_pack("{sbsi}", "ok", 1, "rules", total));
        }
        return method_not_allowed(conn);
    }

    if (strcmp(what, "requests") == 0) {
        uint64_t since = 0, limit = 0;
        size_t len;
        char *out;

        if (!is_get)
            return method_not_allowed(conn);
        if (query_u64(conn, "since", &since) < 0 ||
            query_u64(conn, "limit", &limit) < 0)
            return bad_request(conn, "since and limit must be integers");
        out = store_dump(MHD_lookup_connection_value(conn,
                                                     MHD_GET_ARGUMENT_KIND,
                                                     "path_prefix"),
                         since, limit, &len);
        if (out == NULL)
            return MHD_NO;
        return queue(conn, MHD_HTTP_OK,
                     resp_from_buffer(out, len, "application/json"));
    }

    if (strcmp(what, "count") == 0) {
        const char *pp;

        if (!is_get)
            return method_not_allowed(conn);
        pp = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND,
                                         "path_prefix");
        return queue_json(conn, MHD_HTTP_OK,
                          json_pack("{sI}", "count",
                                    (json_int_t) store_count(pp)));
    }

    return queue_literal(conn, MHD_HTTP_NOT_FOUND,
                         "{\"error\":\"not found\"}");
}

/* ------------------------------------------------------------------ */
/* MHD callbacks                                                       */

static const char too_large_json[] = "{\"error\":\"payload too large\"}";

static enum MHD_Result
access_handler(void *cls, struct MHD_Connection *conn, const char *url,
               const char *method, const char *version,
               const char *upload_data, size_t *upload_data_size,
               void **con_cls)
{
    struct req_ctx *ctx = *con_cls;

    (void) cls;
    (void) version;

    if (ctx == NULL) {
        const char *cl;
        uint64_t n;

        ctx = calloc(1, sizeof *ctx);
        if (ctx == NULL)
            return MHD_NO;
        *con_cls = ctx;
        cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                         MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl != NULL && mb_parse_u64(cl, &n) == 0) {
            if (n > MB_MAX_BODY) {
                /* Refuse before reading (and before any 100-continue). */
                ctx->too_large = 1;
                ctx->state = RS_DONE;
                return queue_literal(conn, HTTP_TOO_LARGE,
                                     too_large_json);
            }
            if (n > 0) {
                ctx->body = malloc((size_t) n);
                if (ctx->body != NULL)
                    ctx->cap = (size_t) n;
            }
        }
        return MHD_YES;
    }

    if (ctx->state == RS_SUSPENDED) {
        struct MHD_Response *r = ctx->pending;

        __atomic_sub_fetch(&suspended_count, 1, __ATOMIC_SEQ_CST);
        ctx->pending = NULL;
        ctx->state = RS_DONE;
        if (ctx->drop)
            return drop_connection(conn);
        return queue(conn, ctx->status, r);
    }

    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;

        *upload_data_size = 0;
        if (ctx->too_large)
            return MHD_YES;
        if (ctx->len + n > MB_MAX_BODY) {
            /* Keep draining so the 413 can go out on a sane connection. */
            ctx->too_large = 1;
            free(ctx->body);
            ctx->body = NULL;
            ctx->len = ctx->cap = 0;
            return MHD_YES;
        }
        if (ctx->len + n > ctx->cap) {
            size_t nc = ctx->cap ? ctx->cap : 4096;
            char *nb;

            while (nc < ctx->len + n)
                nc *= 2;
            if (nc > MB_MAX_BODY)
                nc = MB_MAX_BODY;
            nb = realloc(ctx->body, nc);
            if (nb == NULL)
                return MHD_NO;
            ctx->body = nb;
            ctx->cap = nc;
        }
        memcpy(ctx->body + ctx->len, upload_data, n);
        ctx->len += n;
        return MHD_YES;
    }

    if (ctx->state == RS_DONE)
        return MHD_NO;
    if (ctx->too_large) {
        ctx->state = RS_DONE;
        return queue_literal(conn, HTTP_TOO_LARGE, too_large_json);
    }

    if (strncmp(url, MOCK_PREFIX, sizeof MOCK_PREFIX - 1) == 0) {
        ctx->state = RS_DONE;
        return handle_control(conn, method, url + sizeof MOCK_PREFIX - 1, ctx);
    }
    return handle_broker(conn, method, url, ctx);
}

static void
request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                  enum MHD_RequestTerminationCode toe)
{
    struct req_ctx *ctx = *con_cls;

    (void) cls;
    (void) conn;
    (void) toe;
    if (ctx == NULL)
        return;
    if (ctx->state == RS_SUSPENDED)
        __atomic_sub_fetch(&suspended_count, 1, __ATOMIC_SEQ_CST);
    if (ctx->pending != NULL)
        MHD_destroy_response(ctx->pending);
    free(ctx->body);
    free(ctx);
    *con_cls = NULL;
}

static void
mhd_logger(void *cls, const char *fmt, va_list ap)
{
    char msg[1024];

    (void) cls;
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (dropping) {
        dropping = 0;
        if (strstr(msg, "Application reported internal error") != NULL)
            return;
    }
    fprintf(stderr, "mock-broker: %s", msg);
}

/* ------------------------------------------------------------------ */
/* Startup                                                             */

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: mock-broker --port N [--addr 127.0.0.1] [--threads N]\n"
            "                   [--log FILE] [--max-records N] [--port-file FILE]\n");
}

static int
write_port_file(const char *path, unsigned port)
{
    char *tmp;
    FILE *f;
    int ok;

    if (asprintf(&tmp, "%s.tmp.%ld", path, (long) getpid()) < 0)
        return -1;
    f = fopen(tmp, "w");
    if (f == NULL) {
        free(tmp);
        return -1;
    }
    ok = fprintf(f, "%u\n", port) > 0;
    ok = (fclose(f) == 0) && ok;
    /* rename() makes the file appear complete or not at all. */
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

static void
raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void) setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int
parse_uint_arg(const char *name, const char *s, uint64_t min, uint64_t max,
               uint64_t *out)
{
    if (mb_parse_u64(s, out) != 0 || *out < min || *out > max) {
        mb_log("invalid value for --%s: %s", name, s);
        return -1;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"port", required_argument, NULL, 'p'},
        {"addr", required_argument, NULL, 'a'},
        {"threads", required_argument, NULL, 't'},
        {"log", required_argument, NULL, 'l'},
        {"max-records", required_argument, NULL, 'm'},
        {"port-file", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}
    };
    const char *addr = "127.0.0.1", *log_path = NULL, *port_file = NULL;
    uint64_t port = 0, threads = 2, max_records = 2000000, v;
    int have_port = 0, c, sig;
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
    struct sockaddr *sa;
    unsigned flags;
    const union MHD_DaemonInfo *info;
    struct MHD_Daemon *d;
    struct MHD_OptionItem pool_opt[2];
    sigset_t sigs;
    unsigned bound_port = 0;
    int waited;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            if (parse_uint_arg("port", optarg, 0, 65535, &port) < 0)
                return 2;
            have_port = 1;
            break;
        case 'a':
            addr = optarg;
            break;
        case 't':
            if (parse_uint_arg("threads", optarg, 1, 256, &threads) < 0)
                return 2;
            break;
        case 'l':
            log_path = optarg;
            break;
        case 'm':
            if (parse_uint_arg("max-records", optarg, 0, UINT64_MAX / 64, &v) < 0)
                return 2;
            max_records = v;
            break;
        case 'f':
            port_file = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!have_port || optind != argc) {
        usage(stderr);
        return 2;
    }

    /*
     * Turbo skips MHD's shutdown(SHUT_WR) before close, which is what lets
     * a scripted drop reach the client as a reset instead of a clean EOF.
     */
    flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_ALLOW_SUSPEND_RESUME |
            MHD_USE_ERROR_LOG | MHD_USE_TURBO;
    flags |= MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES
             ? MHD_USE_EPOLL : MHD_USE_POLL;

    memset(&sin, 0, sizeof sin);
    memset(&sin6, 0, sizeof sin6);
    if (inet_pton(AF_INET, addr, &sin.sin_addr) == 1) {
        sin.sin_family = AF_INET;
        sin.sin_port = htons((uint16_t) port);
        sa = (struct sockaddr *) &sin;
    } else if (inet_pton(AF_INET6, addr, &sin6.sin6_addr) == 1) {
        sin6.sin6_family = AF_INET6;
        sin6.sin6_port = htons((uint16_t) port);
        sa = (struct sockaddr *) &sin6;
        flags |= MHD_USE_IPv6;
    } else {
        mb_log("invalid --addr: %s", addr);
        return 2;
    }

    raise_fd_limit();
    signal(SIGPIPE, SIG_IGN);
    /* Every thread inherits this mask; only main receives the signals. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    json_object_seed(0);
    if (store_init((size_t) max_records, log_path) < 0)
        return 1;
    if (delay_init() < 0)
        return 1;

    /* A pool of one is no pool; MHD warns if asked for it. */
    pool_opt[0].option = threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE
                                     : MHD_OPTION_END;
    pool_opt[0].value = (intptr_t) threads;
    pool_opt[0].ptr_value = NULL;
    pool_opt[1].option = MHD_OPTION_END;
    pool_opt[1].value = 0;
    pool_opt[1].ptr_value = NULL;

    d = MHD_start_daemon(flags, (uint16_t) port, NULL, NULL,
                         access_handler, NULL,
                         MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
                         MHD_OPTION_SOCK_ADDR, sa,
                         MHD_OPTION_ARRAY, pool_opt,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned) CONNECTION_LIMIT,
                         MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
                         MHD_OPTION_CONNECTION_TIMEOUT, 0u,
                         MHD_OPTION_NOTIFY_COMPLETED, request_completed, NULL,
                         MHD_OPTION_END);
    if (d == NULL) {
        mb_log("cannot listen on %s:%u", addr, (unsigned) port);
        delay_shutdown();
        store_shutdown();
        return 1;
    }

    info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    if (info != NULL && info->port != 0)
        bound_port = info->port;
    else {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;

        info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_LISTEN_FD);
        if (info != NULL &&
            getsockname(info->listen_fd, (struct sockaddr *) &ss, &sl) == 0)
            bound_port = ntohs(ss.ss_family == AF_INET6
                               ? ((struct sockaddr_in6 *) &ss)->sin6_port
                               : ((struct sockaddr_in *) &ss)->sin_port);
    }

    if (port_file != NULL && write_port_file(port_file, bound_port) < 0)
        mb_log("cannot write port file %s: %s", port_file, strerror(errno));
    if (strchr(addr, ':') != NULL)
        printf("listening on [%s]:%u\n", addr, bound_port);
    else
        printf("listening on %s:%u\n", addr, bound_port);
    fflush(stdout);

    while (sigwait(&sigs, &sig) != 0)
        ;

    /*
     * MHD must not be stopped with suspended connections: resume them
     * all (they answer at once) and give the workers a moment to run.
     */
    delay_shutdown();
    for (waited = 0; waited < 200 &&
         __atomic_load_n(&suspended_count, __ATOMIC_SEQ_CST) > 0; waited++) {
        struct timespec ts = {0, 10 * 1000 * 1000};

        nanosleep(&ts, NULL);
    }
    MHD_stop_daemon(d);
    rules_clear();
    store_shutdown();
    return 0;
}
