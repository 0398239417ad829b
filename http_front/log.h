/*
 * log.h
 *		JSON-lines logging on stderr.
 */
#ifndef PGWA_HTTP_LOG_H
#define PGWA_HTTP_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

struct access_entry
{
	const char *request_id;
	const char *method;
	const char *path;			/* valid UTF-8, not yet redacted */
	unsigned int status;
	double		duration_ms;
	size_t		bytes_in;
	size_t		bytes_out;
};

extern void log_init(bool access_log);
extern void log_access(const struct access_entry *entry);
extern void log_message(const char *level, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));
extern void log_vmessage(const char *level, const char *fmt, va_list ap)
			__attribute__((format(printf, 2, 0)));

#define log_error(...)	log_message("error", __VA_ARGS__)
#define log_info(...)	log_message("info", __VA_ARGS__)

#endif
