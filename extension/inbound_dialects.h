/*
 * inbound.h: helpers shared by the inbound broker dialects.
 *
 * Each dialect (inbound_evolution.c, inbound_meta.c) is a pure
 * transformation: a webhook body in, {"events": [...], "ignored": [...]}
 * out. Messages become seed-000 MESSAGE_INBOUND envelopes so the inbound
 * pipeline applies every broker's messages the same way. Malformed input is
 * a PW400 error naming the path of the offending field (entry[0].changes).
 *
 * The helpers are static inline so that each dialect file carries only what
 * it uses; the dialects share no state.
 */
#ifndef PGWA_INBOUND_DIALECTS_H
#define PGWA_INBOUND_DIALECTS_H

#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/memutils.h"
#include "utils/jsonb.h"

#include "pg_jansson.h"

#include "pgwa.h"

/* The C entry points, for callers that already hold a parsed body. */
extern json_t *pgwa_evolution_events(json_t *body);
extern json_t *pgwa_meta_events(json_t *body);

/* inbound_meta.c: a Cloud API message's content in seed-000 form */
extern json_t *pgwa_meta_content(json_t *m, const char *type, const char *path);

/* inbound_coexistence.c: history, state sync and echoes as flat lists */
extern void pgwa_meta_coexistence(json_t *ev, const char *kind, json_t *value,
								  const char *display_phone, const char *path);

/* inbound_evolution_content.c: a Baileys message's wrappers, then its content */
extern json_t *evo_unwrap(json_t *msg, json_t *flags);
extern json_t *evo_content(json_t *msg, json_t *data, json_t *out, const char **kind);

/* What a dialect returns, built as it walks the body. */
typedef struct inb_result
{
	json_t	   *events;
	json_t	   *ignored;
} inb_result;

#define PGWA_ERRCODE_TOO_LARGE	MAKE_SQLSTATE('P','W','4','1','3')

/* Largest body read, and largest result (jsonb stops at 256 MB). */
#define INB_MAX_BODY_BYTES		(32 << 20)
#define INB_MAX_RESULT_BYTES	(192 << 20)

/* Latest instant an epoch may name: 9999-12-31T23:59:59.999Z. */
#define INB_MAX_EPOCH_MS	INT64CONST(253402300799999)

#define inb_invalid(field, ...)	pgwa_raise(PGWA_ERRCODE_VALIDATION, field, NULL, __VA_ARGS__)

/* "a.b" for a member, "b" at the top level. */
static inline char *
inb_path(const char *prefix, const char *key)
{
	return (prefix == NULL || prefix[0] == '\0') ? pstrdup(key) : psprintf("%s.%s", prefix, key);
}

static inline char *
inb_index(const char *prefix, const char *key, size_t i)
{
	return (prefix == NULL || prefix[0] == '\0')
		? psprintf("%s[%zu]", key, i)
		: psprintf("%s.%s[%zu]", prefix, key, i);
}

/* Optional members, refused only when present with the wrong type. */
static inline const char *
inb_str(json_t *obj, const char *key, const char *prefix)
{
	json_t	   *v = json_object_get(obj, key);

	if (v == NULL || json_is_null(v))
		return NULL;
	if (!json_is_string(v))
	{
		char	   *field = inb_path(prefix, key);

		inb_invalid(field, "%s must be a string", field);
	}
	return json_string_value(v);
}

static inline const char *
inb_req_str(json_t *obj, const char *key, const char *prefix)
{
	const char *s = inb_str(obj, key, prefix);

	if (s == NULL || s[0] == '\0')
	{
		char	   *field = inb_path(prefix, key);

		inb_invalid(field, "%s is required", field);
	}
	return s;
}

static inline json_t *
inb_obj(json_t *obj, const char *key, const char *prefix)
{
	json_t	   *v = json_object_get(obj, key);

	if (v == NULL || json_is_null(v))
		return NULL;
	if (!json_is_object(v))
	{
		char	   *field = inb_path(prefix, key);

		inb_invalid(field, "%s must be an object", field);
	}
	return v;
}

static inline json_t *
inb_arr(json_t *obj, const char *key, const char *prefix)
{
	json_t	   *v = json_object_get(obj, key);

	if (v == NULL || json_is_null(v))
		return NULL;
	if (!json_is_array(v))
	{
		char	   *field = inb_path(prefix, key);

		inb_invalid(field, "%s must be an array", field);
	}
	return v;
}

/* A string member as a string, a number as its decimal writing; else NULL. */
static inline const char *
inb_loose_str(json_t *obj, const char *key)
{
	json_t	   *v = json_object_get(obj, key);

	if (json_is_string(v))
		return json_string_value(v);
	if (json_is_integer(v))
		return psprintf(INT64_FORMAT, (int64) json_integer_value(v));
	return NULL;
}

static inline void
inb_set_str(json_t *obj, const char *key, const char *s)
{
	if (s != NULL)
		json_object_set_new(obj, key, json_string(s));
}

/* Copies a member as it is, when present and not null. */
static inline void
inb_copy(json_t *out, const char *out_key, json_t *in, const char *in_key)
{
	json_t	   *v = json_object_get(in, in_key);

	if (v != NULL && !json_is_null(v))
		json_object_set(out, out_key, v);
}

/* Copies a member when it has the expected type, under another name. */
static inline void
inb_copy_str(json_t *out, const char *out_key, json_t *in, const char *in_key)
{
	json_t	   *v = json_object_get(in, in_key);

	if (json_is_string(v))
		json_object_set(out, out_key, v);
}

static inline void
inb_copy_bool(json_t *out, const char *out_key, json_t *in, const char *in_key)
{
	json_t	   *v = json_object_get(in, in_key);

	if (json_is_boolean(v))
		json_object_set(out, out_key, v);
}

static inline void
inb_ignore(inb_result *res, const char *reason, const char *ref)
{
	json_t	   *o = json_object();

	json_object_set_new(o, "reason", json_string(reason));
	json_object_set_new(o, "ref", ref ? json_string(ref) : json_null());
	json_array_append_new(res->ignored, o);
}

static inline void
inb_event(inb_result *res, json_t *event)
{
	json_array_append_new(res->events, event);
}

static inline bool
inb_ends_with(const char *s, const char *suffix)
{
	size_t		n = strlen(s);
	size_t		m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/*
 * E.164 digits from a phone number or a personal JID
 * ("5511999999999:12@s.whatsapp.net"); NULL for group, LID and other JIDs.
 */
static inline char *
inb_phone(const char *s)
{
	const char *at;
	const char *end;
	StringInfoData buf;

	if (s == NULL)
		return NULL;
	at = strchr(s, '@');
	if (at != NULL && strcmp(at, "@s.whatsapp.net") != 0 && strcmp(at, "@c.us") != 0)
		return NULL;
	end = at ? at : s + strlen(s);
	initStringInfo(&buf);
	for (const char *p = s; p < end && *p != ':'; p++)
	{
		if (isdigit((unsigned char) *p))
			appendStringInfoChar(&buf, *p);
		else if (at != NULL || !(*p == '+' || *p == ' ' || *p == '-' || *p == '(' || *p == ')'))
			return NULL;
	}
	if (buf.len < 7 || buf.len > 15)
		return NULL;
	return buf.data;
}

/* Days since 1970-01-01 of a civil date, and back (proleptic Gregorian). */
static inline int64
inb_days_from_civil(int64 y, int m, int d)
{
	int64		era;
	int64		yoe;
	int64		doy;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	return era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
}

/* ISO-8601 UTC with milliseconds, as seed 000 writes it. */
static inline char *
inb_iso(int64 ms)
{
	int64		days = ms / 86400000;
	int64		rem = ms % 86400000;
	int64		z = days + 719468;
	int64		era = z / 146097;
	int64		doe = z - era * 146097;
	int64		yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64		doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64		mp = (5 * doy + 2) / 153;
	int			d = (int) (doy - (153 * mp + 2) / 5 + 1);
	int			m = (int) (mp < 10 ? mp + 3 : mp - 9);
	int64		y = yoe + era * 400 + (m <= 2);

	return psprintf("%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (int) y, m, d,
					(int) (rem / 3600000), (int) (rem / 60000 % 60),
					(int) (rem / 1000 % 60), (int) (rem % 1000));
}

/*
 * An epoch instant: a number, a string of digits, or a protobuf Long
 * {"low", "high"} as Baileys serialises it. Seconds or milliseconds (values
 * past 10^11 are milliseconds, as seed 000 says). Absent: false.
 */
static inline bool
inb_epoch_ms(json_t *v, const char *field, int64 *ms)
{
	double		d;

	if (v == NULL || json_is_null(v))
		return false;
	if (json_is_integer(v))
		d = (double) json_integer_value(v);
	else if (json_is_real(v))
		d = json_real_value(v);
	else if (json_is_string(v))
	{
		const char *s = json_string_value(v);
		char	   *end;

		errno = 0;
		d = strtod(s, &end);
		if (end == s || *end != '\0' || errno != 0 || !isdigit((unsigned char) s[0]))
			inb_invalid(field, "%s must be an epoch in seconds or milliseconds", field);
	}
	else if (json_is_object(v) && json_is_integer(json_object_get(v, "low")))
	{
		json_t	   *high = json_object_get(v, "high");

		d = (double) (uint32) json_integer_value(json_object_get(v, "low"));
		if (json_is_integer(high))
			d += (double) json_integer_value(high) * 4294967296.0;
	}
	else
		inb_invalid(field, "%s must be an epoch in seconds or milliseconds", field);

	if (!(d >= 0 && d <= (double) INB_MAX_EPOCH_MS))
		inb_invalid(field, "%s is out of range", field);
	*ms = d < 1e11 ? (int64) (d * 1000) : (int64) d;
	return true;
}

static inline int
inb_digits_at(const char **p, int n)
{
	int			v = 0;

	for (int i = 0; i < n; i++, (*p)++)
	{
		if (!isdigit((unsigned char) **p))
			return -1;
		v = v * 10 + (**p - '0');
	}
	return v;
}

/*
 * Reads "YYYY-MM-DDTHH:MM:SS[.fff][Z|+HH:MM|+HHMM]" (no zone means UTC);
 * false for anything else, so a broker's odd clock never fails a webhook.
 */
static inline bool
inb_parse_iso(const char *s, int64 *ms)
{
	const char *p = s;
	int			y, mo, d, h, mi, sec, frac = 0, off = 0;

	if (s == NULL)
		return false;
	if ((y = inb_digits_at(&p, 4)) < 0 || *p++ != '-' ||
		(mo = inb_digits_at(&p, 2)) < 1 || mo > 12 || *p++ != '-' ||
		(d = inb_digits_at(&p, 2)) < 1 || d > 31 || (*p != 'T' && *p != ' '))
		return false;
	p++;
	if ((h = inb_digits_at(&p, 2)) < 0 || h > 23 || *p++ != ':' ||
		(mi = inb_digits_at(&p, 2)) < 0 || mi > 59 || *p++ != ':' ||
		(sec = inb_digits_at(&p, 2)) < 0 || sec > 60)
		return false;
	if (*p == '.')
	{
		int			scale = 100;

		p++;
		if (!isdigit((unsigned char) *p))
			return false;
		for (; isdigit((unsigned char) *p); p++, scale /= 10)
			frac += (*p - '0') * scale;
	}
	if (*p == 'Z')
		p++;
	else if (*p == '+' || *p == '-')
	{
		int			sign = *p++ == '-' ? -1 : 1;
		int			oh, om;

		if ((oh = inb_digits_at(&p, 2)) < 0 || oh > 23)
			return false;
		if (*p == ':')
			p++;
		if ((om = inb_digits_at(&p, 2)) < 0 || om > 59)
			return false;
		off = sign * (oh * 60 + om);
	}
	if (*p != '\0')
		return false;
	*ms = ((inb_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off * 60) * 1000) + frac;
	return *ms >= 0 && *ms <= INB_MAX_EPOCH_MS;
}

/* A seed-000 MESSAGE_INBOUND envelope. */
static inline json_t *
inb_envelope(const char *id, const char *instance, const char *iso,
			 json_t *contact, json_t *message, json_t *metadata)
{
	json_t	   *env = json_object();
	json_t	   *payload = json_object();

	json_object_set_new(env, "id", json_string(id));
	json_object_set_new(env, "type", json_string("MESSAGE_INBOUND"));
	json_object_set_new(env, "instanceId", json_string(instance));
	inb_set_str(env, "timestamp", iso);
	json_object_set_new(payload, "instanceId", json_string(instance));
	inb_set_str(payload, "timestamp", iso);
	json_object_set_new(payload, "contact", contact);
	json_object_set_new(payload, "message", message);
	json_object_set_new(payload, "metadata", metadata);
	json_object_set_new(env, "payload", payload);
	return env;
}

/* jsonb in, jansson tree out; the caller has set the palloc allocator. */
static inline json_t *
inb_load(Jsonb *in)
{
	char	   *text = JsonbToCString(NULL, &in->root, VARSIZE(in));
	json_error_t err;
	json_t	   *parsed;

	/* Webhook bodies are a few MB at most; the events take about 10x more. */
	if (strlen(text) > INB_MAX_BODY_BYTES)
		ereport(ERROR,
				(errcode(PGWA_ERRCODE_TOO_LARGE),
				 errmsg("the body is larger than %d MB", INB_MAX_BODY_BYTES >> 20),
				 err_generic_string(PG_DIAG_COLUMN_NAME, "body")));
	parsed = json_loads(text, JSON_DECODE_ANY, &err);
	pfree(text);
	if (parsed == NULL)
		inb_invalid("body", "the body could not be read: %s", err.text);
	if (!json_is_object(parsed))
		inb_invalid("body", "the body must be a JSON object");
	return parsed;
}

/*
 * Runs a dialect over a jsonb body. The jansson trees live in a context of
 * their own, dropped as a whole before the result is turned into jsonb: a
 * batch of thousands of messages costs one pass and no piecemeal frees.
 */
static inline Datum
inb_run(Jsonb *in, json_t *(*dialect) (json_t *body))
{
	MemoryContext tmp = AllocSetContextCreate(CurrentMemoryContext, "pgwa inbound dialect",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(tmp);
	char	   *dumped;
	char	   *result;

	pgwa_use_palloc_for_jansson();
	dumped = json_dumps(dialect(inb_load(in)), JSON_COMPACT | JSON_REAL_PRECISION(15));
	if (dumped == NULL || strlen(dumped) > INB_MAX_RESULT_BYTES)
		ereport(ERROR,
				(errcode(PGWA_ERRCODE_TOO_LARGE),
				 errmsg("the events of this body exceed %d MB: send smaller batches",
						INB_MAX_RESULT_BYTES >> 20),
				 err_generic_string(PG_DIAG_COLUMN_NAME, "body")));
	MemoryContextSwitchTo(old);
	result = pstrdup(dumped);
	MemoryContextDelete(tmp);
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(result));
}

static inline json_t *
inb_result_json(inb_result *res)
{
	json_t	   *out = json_object();

	json_object_set_new(out, "events", res->events);
	json_object_set_new(out, "ignored", res->ignored);
	return out;
}

#endif							/* PGWA_INBOUND_DIALECTS_H */
