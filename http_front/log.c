/*
 * log.c
 *		Access and diagnostic log, one JSON object per line on stderr.
 *
 * Lines are assembled in memory and written with a single write(2) so that
 * lines from different pool threads never interleave.  Request headers,
 * bodies and query strings are never logged: they carry API keys and
 * tokens.  For the same reason a path segment following a segment named
 * "token" is masked.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* Growable line buffer; on allocation failure the line is dropped. */
struct line
{
	char	   *data;
	size_t		len;
	size_t		cap;
	bool		failed;
};

static bool access_log_enabled = true;

void
log_init(bool access_log)
{
	access_log_enabled = access_log;
}

static void
line_reserve(struct line *l, size_t extra)
{
	size_t		need = l->len + extra + 1;
	char	   *p;

	if (l->failed || need <= l->cap)
		return;
	if (need < 256)
		need = 256;
	else if (need < l->cap * 2)
		need = l->cap * 2;
	p = realloc(l->data, need);
	if (p == NULL)
	{
		l->failed = true;
		return;
	}
	l->data = p;
	l->cap = need;
}

static void
line_append(struct line *l, const char *s, size_t n)
{
	line_reserve(l, n);
	if (l->failed)
		return;
	memcpy(l->data + l->len, s, n);
	l->len += n;
	l->data[l->len] = '\0';
}

static void
line_printf(struct line *l, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));

static void
line_printf(struct line *l, const char *fmt,...)
{
	char		buf[256];
	va_list		ap;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0)
		line_append(l, buf, (size_t) n < sizeof(buf) ? (size_t) n : sizeof(buf) - 1);
}

/* Append s[0..n) as the inside of a JSON string. */
static void
line_escape(struct line *l, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c == '"' || c == '\\')
		{
			char		esc[2] = {'\\', (char) c};

			line_append(l, esc, 2);
		}
		else if (c < 0x20 || c == 0x7F)
			line_printf(l, "\\u%04x", c);
		else
			line_append(l, (const char *) &c, 1);
	}
}

static void
line_string(struct line *l, const char *s)
{
	line_append(l, "\"", 1);
	if (s != NULL)
		line_escape(l, s, strlen(s));
	line_append(l, "\"", 1);
}

/* Append the path as a JSON string, masking the segment after "token". */
static void
line_redacted_path(struct line *l, const char *path)
{
	const char *p = path;
	bool		mask_next = false;

	line_append(l, "\"", 1);
	while (*p != '\0')
	{
		size_t		seg = strcspn(p, "/");

		if (mask_next && seg > 0)
			line_append(l, "***", 3);
		else
			line_escape(l, p, seg);
		mask_next = (seg == 5 && strncasecmp(p, "token", 5) == 0);
		p += seg;
		if (*p == '/')
		{
			line_append(l, "/", 1);
			p++;
		}
	}
	line_append(l, "\"", 1);
}

static void
line_timestamp(struct line *l)
{
	struct timespec now;
	struct tm	tm;
	char		buf[32];

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	line_printf(l, "{\"ts\":\"%s.%03ldZ\"", buf, now.tv_nsec / 1000000);
}

static void
line_emit(struct line *l)
{
	line_append(l, "}\n", 2);
	if (!l->failed)
	{
		const char *p = l->data;
		size_t		left = l->len;

		while (left > 0)
		{
			ssize_t		n = write(STDERR_FILENO, p, left);

			if (n <= 0)
				break;
			p += n;
			left -= (size_t) n;
		}
	}
	free(l->data);
}

void
log_access(const struct access_entry *e)
{
	struct line l = {0};

	if (!access_log_enabled)
		return;
	line_timestamp(&l);
	line_append(&l, ",\"request_id\":", 14);
	line_string(&l, e->request_id);
	line_append(&l, ",\"method\":", 10);
	line_string(&l, e->method);
	line_append(&l, ",\"path\":", 8);
	line_redacted_path(&l, e->path);
	line_printf(&l, ",\"status\":%u,\"duration_ms\":%.2f,\"bytes_in\":%zu,\"bytes_out\":%zu",
				e->status, e->duration_ms, e->bytes_in, e->bytes_out);
	line_emit(&l);
}

void
log_vmessage(const char *level, const char *fmt, va_list ap)
{
	struct line l = {0};
	char		buf[2048];
	int			n;

	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	if (n < 0)
		return;
	if ((size_t) n >= sizeof(buf))
	{
		/* do not leave half a UTF-8 character behind */
		n = sizeof(buf) - 1;
		while (n > 0 && ((unsigned char) buf[n - 1] & 0xC0) == 0x80)
			n--;
		if (n > 0 && (unsigned char) buf[n - 1] >= 0xC0)
			n--;
	}
	/* libpq and libmicrohttpd messages end with a newline; drop it */
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		n--;

	line_timestamp(&l);
	line_append(&l, ",\"level\":", 9);
	line_string(&l, level);
	line_append(&l, ",\"message\":\"", 12);
	line_escape(&l, buf, (size_t) n);
	line_append(&l, "\"", 1);
	line_emit(&l);
}

void
log_message(const char *level, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	log_vmessage(level, fmt, ap);
	va_end(ap);
}
