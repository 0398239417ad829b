/*
 * Scripted responses.  Rules are tried in order; each matching request
 * consumes the next response of the first rule that still has one.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mock_broker.h"

struct rule {
    char *method;
    char *path_prefix;
    char *path_contains;
    struct mb_resp **resps;
    size_t nresp;
    int repeat_last;
    int64_t times;      /* -1: unlimited */
    uint64_t used;
    json_t *src;        /* as given, for GET /__mock/rules */
};

static pthread_mutex_t rules_mu = PTHREAD_MUTEX_INITIALIZER;
static struct rule **rules;
static size_t nrules, caprules;

void
resp_release(struct mb_resp *r)
{
    size_t i;

    if (r == NULL || __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    for (i = 0; i < r->nhdr; i++) {
        free(r->hname[i]);
        free(r->hval[i]);
    }
    free(r->hname);
    free(r->hval);
    free(r->body);
    free(r);
}

static void
rule_free(struct rule *ru)
{
    size_t i;

    for (i = 0; i < ru->nresp; i++)
        resp_release(ru->resps[i]);
    free(ru->resps);
    free(ru->method);
    free(ru->path_prefix);
    free(ru->path_contains);
    json_decref(ru->src);
    free(ru);
}

static int
opt_string(json_t *obj, const char *key, char **out, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);

    *out = NULL;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v)) {
        snprintf(err, errlen, "\"%s\" must be a string", key);
        return -1;
    }
    *out = strdup(json_string_value(v));
    return *out ? 0 : -1;
}

static int
valid_header_text(const char *s)
{
    return strpbrk(s, "\r\n") == NULL;
}

static struct mb_resp *
parse_resp(json_t *jr, char *err, size_t errlen)
{
    struct mb_resp *r;
    json_t *status, *body, *headers, *delay, *drop;
    int has_ctype = 0;

    if (!json_is_object(jr)) {
        snprintf(err, errlen, "each response must be an object");
        return NULL;
    }
    r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->refs = 1;

    status = json_object_get(jr, "status");
    body = json_object_get(jr, "body");
    headers = json_object_get(jr, "headers");
    delay = json_object_get(jr, "delay_ms");
    drop = json_object_get(jr, "drop");

    if (delay != NULL && !json_is_null(delay)) {
        if (!json_is_integer(delay) || json_integer_value(delay) < 0 ||
            json_integer_value(delay) > 3600 * 1000) {
            snprintf(err, errlen, "\"delay_ms\" must be 0..3600000");
            goto fail;
        }
        r->delay_ms = (unsigned) json_integer_value(delay);
    }
    if (status != NULL && !json_is_null(status)) {
        json_int_t s;

        if (!json_is_integer(status)) {
            snprintf(err, errlen, "\"status\" must be an integer");
            goto fail;
        }
        s = json_integer_value(status);
        if (s != 0 && (s < 100 || s > 599)) {
            snprintf(err, errlen, "\"status\" must be 0 or 100..599");
            goto fail;
        }
        r->status = (unsigned) s;
    }

    if ((drop != NULL && json_is_true(drop)) ||
        (status != NULL && json_is_integer(status) && r->status == 0))
        r->kind = MB_RESP_DROP;
    else if ((status != NULL && !json_is_null(status)) || body != NULL) {
        r->kind = MB_RESP_SCRIPTED;
        if (r->status == 0)
            r->status = 200;
    } else
        r->kind = MB_RESP_DEFAULT;

    if (r->kind == MB_RESP_SCRIPTED && body != NULL && !json_is_null(body)) {
        if (json_is_string(body)) {
            json_t *probe;

            r->body_len = json_string_length(body);
            r->body = malloc(r->body_len + 1);
            if (r->body == NULL)
                goto fail;
            memcpy(r->body, json_string_value(body), r->body_len + 1);
            /* A string that is itself JSON is served as JSON. */
            probe = json_loadb(r->body, r->body_len, 0, NULL);
            r->content_type = probe ? "application/json"
                                    : "text/plain; charset=utf-8";
            json_decref(probe);
        } else {
            r->body = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
            if (r->body == NULL)
                goto fail;
            r->body_len = strlen(r->body);
            r->content_type = "application/json";
        }
    }

    if (headers != NULL && !json_is_null(headers)) {
        const char *k;
        json_t *v;
        size_t n = json_object_size(headers);

        if (!json_is_object(headers)) {
            snprintf(err, errlen, "\"headers\" must be an object");
            goto fail;
        }
        r->hname = calloc(n ? n : 1, sizeof *r->hname);
        r->hval = calloc(n ? n : 1, sizeof *r->hval);
        if (r->hname == NULL || r->hval == NULL)
            goto fail;
        json_object_foreach(headers, k, v) {
            char num[32];
            const char *val;

            if (json_is_string(v))
                val = json_string_value(v);
            else if (json_is_integer(v)) {
                snprintf(num, sizeof num, "%lld",
                         (long long) json_integer_value(v));
                val = num;
            } else {
                snprintf(err, errlen, "header values must be strings");
                goto fail;
            }
            if (*k == '\0' || !valid_header_text(k) ||
                !valid_header_text(val)) {
                snprintf(err, errlen, "invalid header");
                goto fail;
            }
            r->hname[r->nhdr] = strdup(k);
            r->hval[r->nhdr] = strdup(val);
            r->nhdr++;
            if (r->hname[r->nhdr - 1] == NULL || r->hval[r->nhdr - 1] == NULL)
                goto fail;
            if (strcasecmp(k, "Content-Type") == 0)
                has_ctype = 1;
        }
    }
    if (has_ctype)
        r->content_type = NULL;
    return r;

fail:
    resp_release(r);
    return NULL;
}

static struct rule *
parse_rule(json_t *jr, char *err, size_t errlen)
{
    struct rule *ru;
    json_t *resps, *then, *times;
    size_t i;

    if (!json_is_object(jr)) {
        snprintf(err, errlen, "each rule must be an object");
        return NULL;
    }
    ru = calloc(1, sizeof *ru);
    if (ru == NULL)
        return NULL;
    ru->times = -1;
    ru->src = json_incref(jr);

    if (opt_string(jr, "method", &ru->method, err, errlen) < 0 ||
        opt_string(jr, "path_prefix", &ru->path_prefix, err, errlen) < 0 ||
        opt_string(jr, "path_contains", &ru->path_contains, err, errlen) < 0)
        goto fail;

    then = json_object_get(jr, "then");
    if (then != NULL && !json_is_null(then)) {
        const char *t = json_string_value(then);

        if (t != NULL && strcmp(t, "repeat_last") == 0)
            ru->repeat_last = 1;
        else if (t == NULL || strcmp(t, "default") != 0) {
            snprintf(err, errlen, "\"then\" must be \"default\" or \"repeat_last\"");
            goto fail;
        }
    }
    times = json_object_get(jr, "times");
    if (times != NULL && !json_is_null(times)) {
        if (!json_is_integer(times) || json_integer_value(times) < 0) {
            snprintf(err, errlen, "\"times\" must be a non-negative integer");
            goto fail;
        }
        ru->times = json_integer_value(times);
    }

    resps = json_object_get(jr, "responses");
    if (resps != NULL && !json_is_array(resps)) {
        snprintf(err, errlen, "\"responses\" must be an array");
        goto fail;
    }
    /* No responses: the rule just serves the default response. */
    ru->nresp = resps ? json_array_size(resps) : 0;
    ru->resps = calloc(ru->nresp ? ru->nresp : 1, sizeof *ru->resps);
    if (ru->resps == NULL)
        goto fail;
    if (ru->nresp == 0) {
        json_t *empty = json_object();

        ru->resps[0] = parse_resp(empty, err, errlen);
        json_decref(empty);
        if (ru->resps[0] == NULL)
            goto fail;
        ru->nresp = 1;
    } else {
        for (i = 0; i < ru->nresp; i++) {
            ru->resps[i] = parse_resp(json_array_get(resps, i), err, errlen);
            if (ru->resps[i] == NULL) {
                ru->nresp = i;
                goto fail;
            }
        }
    }
    return ru;

fail:
    rule_free(ru);
    return NULL;
}

int
rules_add(json_t *root, char *err, size_t errlen)
{
    json_t *list;
    struct rule **parsed;
    size_t n, i;
    int total;

    err[0] = '\0';
    /* Accept {"rules":[...]}, a bare array, or a single rule object. */
    if (json_is_object(root) && json_object_get(root, "rules") != NULL)
        list = json_incref(json_object_get(root, "rules"));
    else if (json_is_array(root))
        list = json_incref(root);
    else if (json_is_object(root)) {
        list = json_array();
        json_array_append(list, root);
    } else {
        snprintf(err, errlen, "expected {\"rules\":[...]}");
        return -1;
    }
    if (!json_is_array(list)) {
        json_decref(list);
        snprintf(err, errlen, "\"rules\" must be an array");
        return -1;
    }

    n = json_array_size(list);
    parsed = calloc(n ? n : 1, sizeof *parsed);
    if (parsed == NULL) {
        json_decref(list);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* All or nothing: a bad rule leaves the active set untouched. */
    for (i = 0; i < n; i++) {
        parsed[i] = parse_rule(json_array_get(list, i), err, errlen);
        if (parsed[i] == NULL) {
            size_t j;

            if (err[0] == '\0')
                snprintf(err, errlen, "out of memory");
            for (j = 0; j < i; j++)
                rule_free(parsed[j]);
            free(parsed);
            json_decref(list);
            return -1;
        }
    }
    json_decref(list);

    pthread_mutex_lock(&rules_mu);
    if (nrules + n > caprules) {
        size_t nc = caprules ? caprules : 16;
        struct rule **nr;

        while (nc < nrules + n)
            nc *= 2;
        nr = realloc(rules, nc * sizeof *nr);
        if (nr == NULL) {
            pthread_mutex_unlock(&rules_mu);
            for (i = 0; i < n; i++)
                rule_free(parsed[i]);
            free(parsed);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        rules = nr;
        caprules = nc;
    }
    for (i = 0; i < n; i++)
        rules[nrules++] = parsed[i];
    total = (int) nrules;
    pthread_mutex_unlock(&rules_mu);
    free(parsed);
    return total;
}

void
rules_clear(void)
{
    size_t i;

    pthread_mutex_lock(&rules_mu);
    for (i = 0; i < nrules; i++)
        rule_free(rules[i]);
    free(rules);
    rules = NULL;
    nrules = caprules = 0;
    pthread_mutex_unlock(&rules_mu);
}

static int
rule_matches(const struct rule *ru, const char *method, const char *path)
{
    if (ru->method && strcasecmp(ru->method, method) != 0)
        return 0;
    if (ru->path_prefix &&
        strncmp(path, ru->path_prefix, strlen(ru->path_prefix)) != 0)
        return 0;
    if (ru->path_contains && strstr(path, ru->path_contains) == NULL)
        return 0;
    return 1;
}

struct mb_resp *
rules_match(const char *method, const char *path)
{
    struct mb_resp *r = NULL;
    size_t i;

    pthread_mutex_lock(&rules_mu);
    for (i = 0; i < nrules; i++) {
        struct rule *ru = rules[i];
        size_t idx;

        if (ru->times >= 0 && ru->used >= (uint64_t) ru->times)
            continue;
        if (ru->used >= ru->nresp && !ru->repeat_last)
            continue;
        if (!rule_matches(ru, method, path))
            continue;
        idx = ru->used < ru->nresp ? (size_t) ru->used : ru->nresp - 1;
        ru->used++;
        r = ru->resps[idx];
        __atomic_add_fetch(&r->refs, 1, __ATOMIC_ACQ_REL);
        break;
    }
    pthread_mutex_unlock(&rules_mu);
    return r;
}

json_t *
rules_describe(void)
{
    json_t *arr = json_array();
    size_t i;

    pthread_mutex_lock(&rules_mu);
    for (i = 0; i < nrules; i++) {
        json_t *o = json_deep_copy(rules[i]->src);

        if (o == NULL)
            continue;
        json_object_set_new(o, "used", json_integer((json_int_t) rules[i]->used));
        json_array_append_new(arr, o);
    }
    pthread_mutex_unlock(&rules_mu);
    return arr;
}
