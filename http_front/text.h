/*
 * text.h
 *		UTF-8 checks shared by the request path and the logger, and the
 *		base64 the database sends inline media in.
 */
#ifndef PGWA_HTTP_TEXT_H
#define PGWA_HTTP_TEXT_H

#include <stdbool.h>
#include <stddef.h>

extern bool text_is_utf8(const char *s, size_t len);
extern char *text_to_utf8(const char *s, size_t len);
extern unsigned char *text_base64_decode(const char *s, size_t len, size_t *out_len);

#endif
