/*
 * text.c
 *		UTF-8 validation and repair.
 *
 * PostgreSQL rejects text parameters that are not valid in the client
 * encoding (UTF8 here) and cannot store NUL bytes, so anything we pass
 * as a parameter has to be checked first.  The rules follow the server's
 * own validator: no overlong forms, no surrogates, nothing past U+10FFFF.
 */
#include <stdlib.h>
#include <string.h>

#include "text.h"

/* Length of the valid, non-NUL sequence at s, or 0 if there is none. */
static size_t
utf8_seq_len(const unsigned char *s, size_t avail)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80,
				hi = 0xBF;
	size_t		len;

	if (c < 0x80)
		return c != 0 ? 1 : 0;
	if (c >= 0xC2 && c <= 0xDF)
		len = 2;
	else if (c >= 0xE0 && c <= 0xEF)
	{
		len = 3;
		if (c == 0xE0)
			lo = 0xA0;			/* overlong */
		else if (c == 0xED)
			hi = 0x9F;			/* surrogates */
	}
	else if (c >= 0xF0 && c <= 0xF4)
	{
		len = 4;
		if (c == 0xF0)
			lo = 0x90;			/* overlong */
		else if (c == 0xF4)
			hi = 0x8F;			/* beyond U+10FFFF */
	}
	else
		return 0;

	if (avail < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if ((s[i] & 0xC0) != 0x80)
			return 0;
	return len;
}

/* Is s[0..len) valid UTF-8 without NUL bytes? */
bool
text_is_utf8(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *) s;
	const unsigned char *end = p + len;

	while (p < end)
	{
		size_t		n;

		if (*p >= 0x01 && *p < 0x80)
		{
			p++;
			continue;
		}
		n = utf8_seq_len(p, (size_t) (end - p));
		if (n == 0)
			return false;
		p += n;
	}
	return true;
}

/*
 * Return a malloc'd, NUL-terminated copy of s[0..len) in which every byte
 * that does not start a valid sequence (and every NUL) is replaced by
 * U+FFFD.  Used for values such as header fields and decoded query
 * arguments, where rejecting the request would be less useful than a
 * visible replacement character.  Returns NULL only when out of memory.
 */
char *
text_to_utf8(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *) s;
	const unsigned char *end = p + len;
	char	   *out;
	size_t		o = 0;

	if (text_is_utf8(s, len))
	{
		out = malloc(len + 1);
		if (out != NULL)
		{
			memcpy(out, s, len);
			out[len] = '\0';
		}
		return out;
	}

	/* each bad byte grows to three */
	out = malloc(len * 3 + 1);
	if (out == NULL)
		return NULL;
	while (p < end)
	{
		size_t		n = utf8_seq_len(p, (size_t) (end - p));

		if (n == 0)
		{
			memcpy(out + o, "\xEF\xBF\xBD", 3);
			o += 3;
			p++;
		}
		else
		{
			memcpy(out + o, p, n);
			o += n;
			p += n;
		}
	}
	out[o] = '\0';
	return out;
}
