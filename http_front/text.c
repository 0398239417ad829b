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

static int
base64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * Decodes base64 as PostgreSQL's encode(..., 'base64') writes it (line
 * breaks skipped, '=' padding); a malloc'd buffer, or NULL for bad input.
 */
unsigned char *
text_base64_decode(const char *s, size_t len, size_t *out_len)
{
	unsigned char *out = malloc(len / 4 * 3 + 3);
	unsigned int acc = 0;
	int			bits = 0;
	size_t		o = 0;
	bool		padded = false;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];
		int			v;

		if (c == '\n' || c == '\r' || c == ' ' || c == '\t')
			continue;
		if (c == '=')
		{
			padded = true;
			continue;
		}
		v = base64_value(c);
		if (v < 0 || padded)
		{
			free(out);
			return NULL;
		}
		acc = (acc << 6) | (unsigned int) v;
		bits += 6;
		if (bits >= 8)
		{
			bits -= 8;
			out[o++] = (unsigned char) (acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	*out_len = o;
	return out;
}
