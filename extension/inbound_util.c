/*
 * inbound_util.c: what the inbound normaliser reads brokers' JSON with:
 * members of loose objects, numbers in their every writing (protobuf Longs
 * included), timestamps, phone numbers and WhatsApp JIDs.
 */
#include "postgres.h"

#include <ctype.h>
#include <math.h>

#include "lib/stringinfo.h"

#include "inbound.h"

/* 9999-12-31T23:59:59.999Z */
#define MAX_EPOCH_MS			253402300799999.0


/* ---------- reading loose JSON ---------- */

/* A member that is present and not null. */
json_t *
ib_member(json_t *obj, const char *key)
{
	json_t	   *v;

	if (obj == NULL || !json_is_object(obj))
		return NULL;
	v = json_object_get(obj, key);
	return (v == NULL || json_is_null(v)) ? NULL : v;
}

json_t *
ib_member_obj(json_t *obj, const char *key)
{
	json_t	   *v = ib_member(obj, key);

	return (v != NULL && json_is_object(v)) ? v : NULL;
}

/* A non-empty string member, or NULL. */
const char *
ib_member_str(json_t *obj, const char *key)
{
	json_t	   *v = ib_member(obj, key);

	if (v != NULL && json_is_string(v) && json_string_length(v) > 0)
		return json_string_value(v);
	return NULL;
}

/*
 * A number written as a JSON number, a numeric string, or a protobuf Long
 * ({low, high, unsigned}), which is how Baileys' timestamps and file sizes
 * often reach JSON.
 */
bool
ib_number_of(json_t *v, double *out)
{
	if (v == NULL)
		return false;
	if (json_is_number(v))
	{
		*out = json_number_value(v);
		return isfinite(*out);
	}
	if (json_is_string(v))
	{
		const char *s = json_string_value(v);
		char	   *end;

		if (*s == '\0')
			return false;
		*out = strtod(s, &end);
		return *end == '\0' && isfinite(*out);
	}
	if (json_is_object(v))
	{
		json_t	   *lo = json_object_get(v, "low");
		json_t	   *hi = json_object_get(v, "high");

		if (json_is_integer(lo) && json_is_integer(hi))
		{
			*out = (double) (uint32) json_integer_value(lo) +
				(double) json_integer_value(hi) * 4294967296.0;
			return true;
		}
	}
	return false;
}

json_t *
ib_json_number(double d)
{
	if (d == floor(d) && fabs(d) < 9.0e15)
		return json_integer((json_int_t) d);
	return json_real(d);
}

void
ib_set_str(json_t *obj, const char *key, const char *s)
{
	if (s != NULL)
		json_object_set_new(obj, key, json_string(s));
}

void
ib_copy_str(json_t *out, const char *key, json_t *in, const char *in_key)
{
	ib_set_str(out, key, ib_member_str(in, in_key));
}

void
ib_copy_num(json_t *out, const char *key, json_t *in, const char *in_key)
{
	double		d;

	if (ib_number_of(ib_member(in, in_key), &d))
		json_object_set_new(out, key, ib_json_number(d));
}

/* ---------- timestamps ---------- */

/* Days since 1970-01-01 of a civil date, and back (proleptic Gregorian). */
static int64
days_from_civil(int64 y, int m, int d)
{
	int64		era;
	int64		yoe;
	int64		doy;
	int64		doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void
civil_from_days(int64 z, int *y, int *m, int *d)
{
	int64		era;
	int64		doe;
	int64		yoe;
	int64		doy;
	int64		mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (int) (doy - (153 * mp + 2) / 5 + 1);
	*m = (int) (mp < 10 ? mp + 3 : mp - 9);
	*y = (int) (yoe + era * 400 + (*m <= 2));
}

static bool
read_digits(const char **p, int n, int *out)
{
	*out = 0;
	for (int i = 0; i < n; i++)
	{
		if (!isdigit((unsigned char) **p))
			return false;
		*out = *out * 10 + (**p - '0');
		(*p)++;
	}
	return true;
}

static bool
expect_char(const char **p, char c)
{
	if (**p != c)
		return false;
	(*p)++;
	return true;
}

/*
 * An ISO 8601 time: YYYY-MM-DD[(T| )HH:MM[:SS[.fff]][Z|(+|-)HH[:]MM]].
 * Without a zone it is read as UTC.
 */
static bool
parse_iso(const char *s, int64 *ms)
{
	const char *p = s;
	int			y, mo, d, h = 0, mi = 0, sec = 0, frac = 0, off = 0;
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int			dim;

	if (!read_digits(&p, 4, &y) || !expect_char(&p, '-') || !read_digits(&p, 2, &mo) ||
		!expect_char(&p, '-') || !read_digits(&p, 2, &d))
		return false;
	if (*p == 'T' || *p == 't' || *p == ' ')
	{
		p++;
		if (!read_digits(&p, 2, &h) || !expect_char(&p, ':') || !read_digits(&p, 2, &mi))
			return false;
		if (expect_char(&p, ':'))
		{
			if (!read_digits(&p, 2, &sec))
				return false;
			if (*p == '.' || *p == ',')
			{
				int			n = 0;

				p++;
				if (!isdigit((unsigned char) *p))
					return false;
				for (; isdigit((unsigned char) *p); p++, n++)
					if (n < 3)
						frac = frac * 10 + (*p - '0');
				for (; n < 3; n++)
					frac *= 10;
			}
		}
		if (*p == 'Z' || *p == 'z')
			p++;
		else if (*p == '+' || *p == '-')
		{
			int			sign = (*p == '-') ? -1 : 1;
			int			oh, om = 0;

			p++;
			if (!read_digits(&p, 2, &oh))
				return false;
			expect_char(&p, ':');
			if (*p != '\0' && !read_digits(&p, 2, &om))
				return false;
			if (oh > 14 || om > 59)
				return false;
			off = sign * (oh * 60 + om);
		}
	}
	if (*p != '\0')
		return false;
	if (mo < 1 || mo > 12 || y < 1970)
		return false;
	dim = mdays[mo - 1] + (mo == 2 && (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)));
	if (d < 1 || d > dim || h > 23 || mi > 59 || sec > 60)
		return false;
	if (sec == 60)
		sec = 59;				/* a leap second is read as its last normal one */
	*ms = ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec) - (int64) off * 60) * 1000 + frac;
	return *ms >= 0 && *ms <= (int64) MAX_EPOCH_MS;
}

/* Epoch seconds or milliseconds (anything past 1e12 is milliseconds). */
static bool
epoch_ms(double v, int64 *ms)
{
	if (!(v > 0))
		return false;
	if (v < 1.0e12)
		v *= 1000.0;
	if (v > MAX_EPOCH_MS)
		return false;
	*ms = (int64) llround(v);
	return true;
}

/* A timestamp as ISO string, epoch number or numeric string, or a Long. */
bool
ib_timestamp_of(json_t *v, int64 *ms)
{
	double		d;

	if (v == NULL)
		return false;
	if (json_is_string(v) && parse_iso(json_string_value(v), ms))
		return true;
	return ib_number_of(v, &d) && epoch_ms(d, ms);
}

char *
ib_iso_of(int64 ms)
{
	int			y, m, d;
	int64		rem = ms % 86400000;

	civil_from_days(ms / 86400000, &y, &m, &d);
	return psprintf("%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", y, m, d,
					(int) (rem / 3600000), (int) (rem / 60000 % 60),
					(int) (rem / 1000 % 60), (int) (rem % 1000));
}

/* ---------- phones and JIDs ---------- */

/* The kind of a JID and its user part, with any device suffix (":12") cut. */
jid_kind
ib_parse_jid(const char *s, char **user)
{
	const char *at = strchr(s, '@');
	const char *domain;
	char	   *colon;

	*user = NULL;
	if (at == NULL)
		return JID_NONE;
	*user = pnstrdup(s, at - s);
	if ((colon = strchr(*user, ':')) != NULL)
		*colon = '\0';
	domain = at + 1;
	if (strcmp(domain, "s.whatsapp.net") == 0 || strcmp(domain, "c.us") == 0)
		return JID_PHONE;
	if (strcmp(domain, "lid") == 0)
		return JID_LID;
	if (strcmp(domain, "g.us") == 0)
		return JID_GROUP;
	if (strcmp(domain, "broadcast") == 0)
		return JID_BROADCAST;
	if (strcmp(domain, "newsletter") == 0)
		return JID_NEWSLETTER;
	return JID_OTHER;
}

/* E.164 digits of a phone number in any usual writing, or NULL. */
char *
ib_phone_of(const char *s)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (const char *p = s; *p; p++)
	{
		if (isdigit((unsigned char) *p))
			appendStringInfoChar(&buf, *p);
		else if (*p == '+' && buf.len == 0)
			continue;
		else if (*p != ' ' && *p != '-' && *p != '(' && *p != ')' && *p != '.')
			return NULL;
	}
	if (buf.len < 8 || buf.len > 15)
		return NULL;
	return buf.data;
}

/* Learns from one more JID or phone number; returns false if unusable. */
bool
ib_sender_learn(sender *s, const char *v)
{
	char	   *user;
	char	   *phone;

	if (v == NULL)
		return true;
	switch (ib_parse_jid(v, &user))
	{
		case JID_NONE:
			phone = ib_phone_of(v);
			break;
		case JID_PHONE:
			phone = ib_phone_of(user);
			break;
		case JID_LID:
			if (*user == '\0')
				return false;
			if (s->lid == NULL)
				s->lid = psprintf("%s@lid", user);
			return true;
		default:
			return false;
	}
	if (phone == NULL)
		return false;
	if (s->phone == NULL)
		s->phone = phone;
	return true;
}
