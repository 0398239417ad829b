/* Small helpers shared by the mock broker sources. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mock_broker.h"

double
mb_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (double) ts.tv_sec * 1000.0 + (double) ts.tv_nsec / 1e6;
}

uint64_t
mb_mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

int
mb_parse_u64(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

/* Length of the valid UTF-8 sequence at p, or 0 if it is not valid. */
static size_t
utf8_seq_len(const unsigned char *p, size_t avail)
{
    unsigned c = p[0];
    size_t n, i;
    unsigned cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
    } else
        return 0;
    if (avail < n)
        return 0;
    for (i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

json_t *
mb_json_string(const char *s, size_t len)
{
    json_t *j;
    char *buf;
    size_t i = 0, o = 0;

    j = json_stringn(s, len);
    if (j != NULL)
        return j;

    /* Not valid UTF-8: keep what we can so the record stays readable. */
    buf = malloc(len * 3 + 1);
    if (buf == NULL)
        return json_string("");
    while (i < len) {
        size_t n = utf8_seq_len((const unsigned char *) s + i, len - i);

        if (n == 0) {
            memcpy(buf + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        } else {
            memcpy(buf + o, s + i, n);
            o += n;
            i += n;
        }
    }
    j = json_stringn(buf, o);
    free(buf);
    return j != NULL ? j : json_string("");
}

void
mb_log(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("mock-broker: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
