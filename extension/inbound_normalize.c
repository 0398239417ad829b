/*
 * inbound_normalize.c: the inbound webhook normaliser.
 *
 * pgwa.normalize_inbound(payload jsonb, dialect text) turns what a broker
 * posts to the webhook into normalised MESSAGE_INBOUND envelopes, one per
 * WhatsApp message (seed 000, "Inbound Contract"):
 *
 *   - the broker's envelope {id, type: "MESSAGE_INBOUND", instanceId,
 *     timestamp, payload: {contact, message, metadata}}, alone or in an array;
 *   - a raw Baileys WHATSAPP_MESSAGES_UPSERT event (seed 000, "Baileys raw
 *     fallback"): each of its messages becomes one envelope, or an IGNORED
 *     marker for the kinds the seed ignores (fromMe, protocol messages,
 *     history sync notifications, stubs).
 *
 * Every envelope comes out in one shape, so the rules that apply it (SQL)
 * never look at a broker's dialect:
 *
 *   {id, type, instanceId, timestamp (ISO or null), payloadType,
 *    payload: {instanceId, timestamp,
 *              contact: {phone?, lid?, name?, pushName?, document?,
 *                        registrations?, avatarUrl?, metadata?},
 *              chat: {jid, isGroup, participantJid?},
 *              message: {id, type, text?, media?, location?, contacts?,
 *                        quotedMessageId?, quotedText?, ...},
 *              metadata: {..., brokerMessageTimestamp?, normalizedTimestamp?}}}
 *
 * Refusals are PW400 (a field is missing or has the wrong JSON type) or PW422
 * (well formed but unusable), with the field's path in COLUMN_NAME.
 */
#include "postgres.h"

#include <ctype.h>
#include <math.h>

#include "catalog/pg_type_d.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/jsonb.h"

#include "pg_jansson.h"

#include "pgwa.h"

PG_FUNCTION_INFO_V1(pgwa_normalize_inbound);

#define ERRCODE_UNPROCESSABLE	MAKE_SQLSTATE('P','W','4','2','2')
#define EVENT_INBOUND			"MESSAGE_INBOUND"
#define EVENT_UPSERT			"WHATSAPP_MESSAGES_UPSERT"
/* 9999-12-31T23:59:59.999Z */
#define MAX_EPOCH_MS			253402300799999.0

static void reject(int code, const char *field, const char *fmt,...) pg_attribute_printf(3, 4) pg_attribute_noreturn();

static void
reject(int code, const char *field, const char *fmt,...)
{
	char		buf[512];
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	ereport(ERROR,
			(errcode(code),
			 errmsg("%s", buf),
			 err_generic_string(PG_DIAG_COLUMN_NAME, field)));
}

#define invalid(field, ...)		reject(PGWA_ERRCODE_VALIDATION, field, __VA_ARGS__)
#define unusable(field, ...)	reject(ERRCODE_UNPROCESSABLE, field, __VA_ARGS__)

/* A field's path under a prefix such as "[2]." or "payload.messages[0]." */
static char *
path(const char *prefix, const char *name)
{
	return psprintf("%s%s", prefix, name);
}

/* The field naming an event itself: "body", or "[2]" inside a list. */
static char *
event_field(const char *prefix)
{
	size_t		n = strlen(prefix);

	return n == 0 ? pstrdup("body") : pnstrdup(prefix, n - 1);
}

/* ---------- reading loose JSON ---------- */

/* A member that is present and not null. */
static json_t *
member(json_t *obj, const char *key)
{
	json_t	   *v;

	if (obj == NULL || !json_is_object(obj))
		return NULL;
	v = json_object_get(obj, key);
	return (v == NULL || json_is_null(v)) ? NULL : v;
}

static json_t *
member_obj(json_t *obj, const char *key)
{
	json_t	   *v = member(obj, key);

	return (v != NULL && json_is_object(v)) ? v : NULL;
}

/* A non-empty string member, or NULL. */
static const char *
member_str(json_t *obj, const char *key)
{
	json_t	   *v = member(obj, key);

	if (v != NULL && json_is_string(v) && json_string_length(v) > 0)
		return json_string_value(v);
	return NULL;
}

/*
 * A number written as a JSON number, a numeric string, or a protobuf Long
 * ({low, high, unsigned}), which is how Baileys' timestamps and file sizes
 * often reach JSON.
 */
static bool
number_of(json_t *v, double *out)
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

static json_t *
json_number(double d)
{
	if (d == floor(d) && fabs(d) < 9.0e15)
		return json_integer((json_int_t) d);
	return json_real(d);
}

static void
set_str(json_t *obj, const char *key, const char *s)
{
	if (s != NULL)
		json_object_set_new(obj, key, json_string(s));
}

static void
copy_str(json_t *out, const char *key, json_t *in, const char *in_key)
{
	set_str(out, key, member_str(in, in_key));
}

static void
copy_num(json_t *out, const char *key, json_t *in, const char *in_key)
{
	double		d;

	if (number_of(member(in, in_key), &d))
		json_object_set_new(out, key, json_number(d));
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
static bool
timestamp_of(json_t *v, int64 *ms)
{
	double		d;

	if (v == NULL)
		return false;
	if (json_is_string(v) && parse_iso(json_string_value(v), ms))
		return true;
	return number_of(v, &d) && epoch_ms(d, ms);
}

static char *
iso_of(int64 ms)
{
	int			y, m, d;
	int64		rem = ms % 86400000;

	civil_from_days(ms / 86400000, &y, &m, &d);
	return psprintf("%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", y, m, d,
					(int) (rem / 3600000), (int) (rem / 60000 % 60),
					(int) (rem / 1000 % 60), (int) (rem % 1000));
}

/* ---------- phones and JIDs ---------- */

typedef enum jid_kind
{
	JID_NONE,					/* not a JID: maybe a phone number */
	JID_PHONE,					/* digits@s.whatsapp.net (or the old c.us) */
	JID_LID,					/* id@lid: a sender hidden behind a LID */
	JID_GROUP,					/* id@g.us */
	JID_BROADCAST,				/* status@broadcast and broadcast lists */
	JID_NEWSLETTER,				/* channels */
	JID_OTHER
} jid_kind;

/* The kind of a JID and its user part, with any device suffix (":12") cut. */
static jid_kind
parse_jid(const char *s, char **user)
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
static char *
phone_of(const char *s)
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

/* Who sent a message: a phone number, a LID, or both. */
typedef struct sender
{
	char	   *phone;
	char	   *lid;
} sender;

/* Learns from one more JID or phone number; returns false if unusable. */
static bool
sender_learn(sender *s, const char *v)
{
	char	   *user;
	char	   *phone;

	if (v == NULL)
		return true;
	switch (parse_jid(v, &user))
	{
		case JID_NONE:
			phone = phone_of(v);
			break;
		case JID_PHONE:
			phone = phone_of(user);
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

/* ---------- Baileys message content ---------- */

/* Wrappers whose .message holds the real content (seed 000). */
static const char *const wrappers[] = {
	"ephemeralMessage", "viewOnceMessage", "viewOnceMessageV2",
	"viewOnceMessageV2Extension", "documentWithCaptionMessage", NULL
};

static json_t *
unwrap(json_t *content, json_t *seen)
{
	for (int depth = 0; content != NULL && depth < 8; depth++)
	{
		json_t	   *inner = NULL;
		int			i;

		for (i = 0; wrappers[i] != NULL; i++)
			if ((inner = member_obj(member_obj(content, wrappers[i]), "message")) != NULL)
				break;
		if (inner == NULL)
			break;
		if (seen != NULL)
			json_array_append_new(seen, json_string(wrappers[i]));
		content = inner;
	}
	return content;
}

/* The text a content shows: its body, or a media caption. */
static const char *
text_of(json_t *c)
{
	static const char *const captioned[] = {"imageMessage", "videoMessage", "documentMessage", NULL};
	const char *s = member_str(c, "conversation");

	if (s == NULL)
		s = member_str(member_obj(c, "extendedTextMessage"), "text");
	for (int i = 0; s == NULL && captioned[i] != NULL; i++)
		s = member_str(member_obj(c, captioned[i]), "caption");
	if (s == NULL)
		s = member_str(member_obj(c, "buttonsMessage"), "contentText");
	return s;
}

static json_t *
media_of(json_t *m, const char *media_type)
{
	json_t	   *o = json_object();
	json_t	   *ptt = member(m, "ptt");

	set_str(o, "mediaType", media_type);
	copy_str(o, "mimetype", m, "mimetype");
	if (member(o, "mimetype") == NULL)
		copy_str(o, "mimetype", m, "mimeType");
	copy_num(o, "fileLength", m, "fileLength");
	copy_str(o, "fileName", m, "fileName");
	copy_str(o, "caption", m, "caption");
	copy_num(o, "seconds", m, "seconds");
	copy_num(o, "pageCount", m, "pageCount");
	if (ptt != NULL && json_is_boolean(ptt))
		json_object_set(o, "ptt", ptt);
	/* A broker that downloads media may add a plain URL; Baileys' own is encrypted. */
	copy_str(o, "url", m, "mediaUrl");
	return o;
}

/* The phone of a vCard: its waid, else the digits of its first TEL line. */
static char *
vcard_phone(const char *vcard)
{
	const char *p;

	if (vcard == NULL)
		return NULL;
	if ((p = strstr(vcard, "waid=")) != NULL)
	{
		const char *end = p += 5;

		while (isdigit((unsigned char) *end))
			end++;
		return end > p ? pnstrdup(p, end - p) : NULL;
	}
	if ((p = strstr(vcard, "TEL")) != NULL && (p = strchr(p, ':')) != NULL)
	{
		const char *end = strpbrk(p, "\r\n");
		char	   *line = end ? pnstrdup(p + 1, end - p - 1) : pstrdup(p + 1);

		return phone_of(line);
	}
	return NULL;
}

static json_t *
contact_card(json_t *c)
{
	json_t	   *o = json_object();

	copy_str(o, "name", c, "displayName");
	set_str(o, "phone", vcard_phone(member_str(c, "vcard")));
	return o;
}

/* Quoted message of a content, from the contextInfo of its main part. */
static void
add_quote(json_t *out, json_t *main_part, json_t *content)
{
	json_t	   *ctx = member_obj(main_part, "contextInfo");
	const char *key;
	json_t	   *v;
	json_t	   *quoted;

	if (ctx == NULL)
	{
		json_object_foreach(content, key, v)
		{
			if ((ctx = member_obj(v, "contextInfo")) != NULL)
				break;
		}
	}
	if (ctx == NULL || member_str(ctx, "stanzaId") == NULL)
		return;
	set_str(out, "quotedMessageId", member_str(ctx, "stanzaId"));
	set_str(out, "quotedParticipant", member_str(ctx, "participant"));
	quoted = unwrap(member_obj(ctx, "quotedMessage"), NULL);
	if (quoted != NULL)
		set_str(out, "quotedText", text_of(quoted));
}

/*
 * The normalised message of a Baileys content (seed 000 types: text, image,
 * video, audio, document, buttons_response, list_response, poll, poll_choice;
 * plus sticker, location, contacts and reaction, which Baileys also carries).
 */
static json_t *
message_of(json_t *content, const char *id)
{
	json_t	   *out = json_object();
	json_t	   *seen = json_array();
	json_t	   *part = NULL;
	json_t	   *c;
	const char *type = NULL;
	const char *text;

	set_str(out, "id", id);
	c = unwrap(content, seen);
	text = text_of(c);

	if ((part = member_obj(c, "reactionMessage")) != NULL)
	{
		json_t	   *r = json_object();

		type = "reaction";
		set_str(r, "messageId", member_str(member_obj(part, "key"), "id"));
		set_str(r, "emoji", member_str(part, "text"));
		json_object_set_new(out, "reaction", r);
		text = member_str(part, "text");
	}
	else if ((part = member_obj(c, "pollCreationMessage")) != NULL ||
			 (part = member_obj(c, "pollCreationMessageV2")) != NULL ||
			 (part = member_obj(c, "pollCreationMessageV3")) != NULL)
	{
		json_t	   *p = json_object();
		json_t	   *opts = json_array();
		json_t	   *v;
		size_t		i;

		type = "poll";
		copy_str(p, "name", part, "name");
		if (json_is_array(member(part, "options")))
			json_array_foreach(member(part, "options"), i, v)
				if (member_str(v, "optionName") != NULL)
					json_array_append_new(opts, json_string(member_str(v, "optionName")));
		json_object_set_new(p, "options", opts);
		copy_num(p, "selectableCount", part, "selectableOptionsCount");
		json_object_set_new(out, "poll", p);
		text = member_str(part, "name");
	}
	else if ((part = member_obj(c, "pollUpdateMessage")) != NULL)
	{
		json_t	   *p = json_object();
		json_t	   *vote = member_obj(part, "vote");
		json_t	   *chosen = member(vote, "selectedOptions");

		type = "poll_choice";
		set_str(p, "pollMessageId", member_str(member_obj(part, "pollCreationMessageKey"), "id"));
		if (member(p, "pollMessageId") == NULL)
			copy_str(p, "pollMessageId", part, "pollCreationMessageId");
		/* Votes are encrypted; a broker that decrypts them lists the options. */
		if (chosen != NULL && json_is_array(chosen))
			json_object_set(p, "selectedOptions", chosen);
		json_object_set_new(out, "pollChoice", p);
		text = NULL;
	}
	else if ((part = member_obj(c, "listResponseMessage")) != NULL)
	{
		json_t	   *l = json_object();

		type = "list_response";
		copy_str(l, "title", part, "title");
		copy_str(l, "description", part, "description");
		copy_str(l, "listId", part, "listId");
		copy_str(l, "selectedRowId", member_obj(part, "singleSelectReply"), "selectedRowId");
		json_object_set_new(out, "listResponse", l);
		text = member_str(part, "title");
		if (text == NULL)
			text = member_str(member_obj(part, "singleSelectReply"), "selectedRowId");
	}
	else if ((part = member_obj(c, "buttonsResponseMessage")) != NULL ||
			 (part = member_obj(c, "templateButtonReplyMessage")) != NULL)
	{
		json_t	   *b = json_object();

		type = "buttons_response";
		set_str(b, "selectedButtonId", member_str(part, "selectedButtonId") ?
				member_str(part, "selectedButtonId") : member_str(part, "selectedId"));
		copy_str(b, "selectedDisplayText", part, "selectedDisplayText");
		json_object_set_new(out, "buttonsResponse", b);
		text = member_str(part, "selectedDisplayText");
	}
	else if ((part = member_obj(c, "imageMessage")) != NULL)
		type = "image";
	else if ((part = member_obj(c, "stickerMessage")) != NULL)
		type = "sticker";
	else if ((part = member_obj(c, "videoMessage")) != NULL ||
			 (part = member_obj(c, "ptvMessage")) != NULL)
		type = "video";
	else if ((part = member_obj(c, "audioMessage")) != NULL)
		type = "audio";
	else if ((part = member_obj(c, "documentMessage")) != NULL)
		type = "document";
	else if ((part = member_obj(c, "locationMessage")) != NULL ||
			 (part = member_obj(c, "liveLocationMessage")) != NULL)
	{
		json_t	   *l = json_object();

		type = "location";
		copy_num(l, "latitude", part, "degreesLatitude");
		copy_num(l, "longitude", part, "degreesLongitude");
		copy_str(l, "name", part, "name");
		copy_str(l, "address", part, "address");
		json_object_set_new(out, "location", l);
	}
	else if ((part = member_obj(c, "contactMessage")) != NULL)
	{
		json_t	   *list = json_array();

		type = "contacts";
		json_array_append_new(list, contact_card(part));
		json_object_set_new(out, "contacts", list);
		text = member_str(part, "displayName");
	}
	else if ((part = member_obj(c, "contactsArrayMessage")) != NULL)
	{
		json_t	   *list = json_array();
		json_t	   *v;
		size_t		i;

		type = "contacts";
		if (json_is_array(member(part, "contacts")))
			json_array_foreach(member(part, "contacts"), i, v)
				json_array_append_new(list, contact_card(v));
		json_object_set_new(out, "contacts", list);
		text = member_str(part, "displayName");
	}
	else if (member_str(c, "conversation") != NULL)
		type = "text";
	else if ((part = member_obj(c, "extendedTextMessage")) != NULL)
		type = "text";

	if (type != NULL && (strcmp(type, "image") == 0 || strcmp(type, "sticker") == 0 ||
						 strcmp(type, "video") == 0 || strcmp(type, "audio") == 0 ||
						 strcmp(type, "document") == 0))
		json_object_set_new(out, "media", media_of(part, type));

	if (type == NULL)
	{
		/* Already normalised by the broker, or a kind pgwa does not know. */
		const char *t = member_str(content, "type");

		text = member_str(content, "text");
		if (text == NULL)
			text = member_str(content, "body");
		type = t ? t : (text ? "text" : "unknown");
		if (strcmp(type, "image") == 0 || strcmp(type, "video") == 0 ||
			strcmp(type, "audio") == 0 || strcmp(type, "document") == 0)
			json_object_set_new(out, "media", media_of(content, type));
		copy_str(out, "quotedMessageId", content, "quotedMessageId");
		copy_str(out, "quotedText", content, "quotedText");
	}
	json_object_set_new(out, "type", json_string(type));
	set_str(out, "text", text);
	if (c != NULL)
		add_quote(out, part, c);
	if (json_array_size(seen) > 0)
		json_object_set(out, "wrappers", seen);
	return out;
}

/* ---------- the seed-000 envelope ---------- */

static json_t *
required(json_t *obj, const char *key, const char *field, json_type type, const char *what)
{
	json_t	   *v = member(obj, key);

	if (v == NULL)
		invalid(field, "%s is required", field);
	if (json_typeof(v) != type)
		invalid(field, "%s must be %s", field, what);
	return v;
}

/* An optional string (NULL when absent or null); numbers are read as text. */
static const char *
optional_str(json_t *obj, const char *key, const char *field)
{
	json_t	   *v = member(obj, key);

	if (v == NULL)
		return NULL;
	if (json_is_integer(v))
		return psprintf("%lld", (long long) json_integer_value(v));
	if (!json_is_string(v))
		invalid(field, "%s must be a string", field);
	return json_string_length(v) > 0 ? json_string_value(v) : NULL;
}

/* A timestamp field: absent is fine, unreadable is not. */
static bool
optional_time(json_t *obj, const char *key, const char *field, int64 *ms)
{
	json_t	   *v = member(obj, key);

	if (v == NULL)
		return false;
	if (!timestamp_of(v, ms))
		invalid(field, "%s must be an ISO 8601 time or epoch seconds or milliseconds", field);
	return true;
}

static const char *const contact_keys[] = {
	"phone", "name", "document", "registrations", "avatarUrl", "pushName", NULL
};

/* contact: the six attributes of seed 000; any other key goes to metadata. */
static json_t *
envelope_contact(json_t *contact, const char *prefix, sender *who)
{
	json_t	   *out = json_object();
	json_t	   *extra = json_object();
	json_t	   *regs = member(contact, "registrations");
	const char *phone = optional_str(contact, "phone", path(prefix, "payload.contact.phone"));
	const char *name = optional_str(contact, "name", path(prefix, "payload.contact.name"));
	const char *push = optional_str(contact, "pushName", path(prefix, "payload.contact.pushName"));
	const char *key;
	json_t	   *v;

	if (phone != NULL && !sender_learn(who, phone))
		unusable(path(prefix, "payload.contact.phone"),
				 "payload.contact.phone must be a phone number with 8 to 15 digits or a WhatsApp JID");
	set_str(out, "name", name ? name : push);
	set_str(out, "pushName", push);
	set_str(out, "document", optional_str(contact, "document", path(prefix, "payload.contact.document")));
	set_str(out, "avatarUrl", optional_str(contact, "avatarUrl", path(prefix, "payload.contact.avatarUrl")));
	if (regs != NULL)
	{
		json_t	   *clean = json_array();
		size_t		i;

		if (!json_is_array(regs))
			invalid(path(prefix, "payload.contact.registrations"),
					"payload.contact.registrations must be an array of strings");
		json_array_foreach(regs, i, v)
		{
			if (!json_is_string(v))
				invalid(path(prefix, "payload.contact.registrations"),
						"payload.contact.registrations must be an array of strings");
			json_array_append(clean, v);
		}
		json_object_set_new(out, "registrations", clean);
	}
	json_object_foreach(contact, key, v)
	{
		bool		known = false;

		for (int i = 0; contact_keys[i] != NULL; i++)
			known |= strcmp(key, contact_keys[i]) == 0;
		if (!known)
			json_object_set(extra, key, v);
	}
	if (json_object_size(extra) > 0)
		json_object_set_new(out, "metadata", extra);
	else
		json_decref(extra);
	return out;
}

static void
set_sender(json_t *contact, const sender *who)
{
	set_str(contact, "phone", who->phone);
	set_str(contact, "lid", who->lid);
}

/* chat: where the message was written (a group, or the sender's own chat). */
static json_t *
chat_of(const sender *who, const char *group_jid, const char *participant)
{
	json_t	   *chat = json_object();

	set_str(chat, "jid", group_jid ? group_jid : (who->phone ? who->phone : who->lid));
	json_object_set_new(chat, "isGroup", json_boolean(group_jid != NULL));
	set_str(chat, "participantJid", group_jid ? participant : NULL);
	return chat;
}

static void
set_times(json_t *env, json_t *payload, json_t *metadata, bool have_ts, int64 ts, json_t *broker_ts)
{
	json_t	   *iso = have_ts ? json_string(iso_of(ts)) : json_null();

	json_object_set(env, "timestamp", iso);
	json_object_set(payload, "timestamp", iso);
	if (broker_ts != NULL)
	{
		double		d;

		/* as the broker reported it, with Longs and numeric strings read as numbers */
		if (number_of(broker_ts, &d))
			json_object_set_new(metadata, "brokerMessageTimestamp", json_number(d));
		else
			json_object_set(metadata, "brokerMessageTimestamp", broker_ts);
	}
	if (have_ts)
		json_object_set(metadata, "normalizedTimestamp", iso);
	json_decref(iso);
}

static json_t *
new_envelope(const char *id, const char *instance, const char *payload_type, json_t *payload)
{
	json_t	   *env = json_object();

	set_str(env, "id", id);
	set_str(env, "type", EVENT_INBOUND);
	set_str(env, "instanceId", instance);
	set_str(env, "payloadType", payload_type);
	json_object_set_new(env, "payload", payload);
	return env;
}

static json_t *
normalize_envelope(json_t *ev, const char *prefix)
{
	const char *id;
	const char *type;
	const char *instance;
	const char *inner_instance;
	json_t	   *payload, *contact, *message, *metadata, *key, *content;
	json_t	   *out_payload = json_object();
	json_t	   *out_contact;
	json_t	   *out_meta;
	json_t	   *meta_contact;
	json_t	   *broker_ts;
	sender		who = {0};
	int64		ts = 0;
	bool		have_ts;
	const char *msg_id;
	const char *group = NULL;
	const char *participant = NULL;
	const char *remote;
	char	   *user;

	if (!json_is_object(ev))
		invalid(event_field(prefix), "each event must be a JSON object");
	id = json_string_value(required(ev, "id", path(prefix, "id"), JSON_STRING, "a string"));
	type = json_string_value(required(ev, "type", path(prefix, "type"), JSON_STRING, "a string"));
	if (strcmp(type, EVENT_INBOUND) != 0)
		unusable(path(prefix, "type"), "type must be MESSAGE_INBOUND, not \"%s\"", type);
	instance = json_string_value(required(ev, "instanceId", path(prefix, "instanceId"), JSON_STRING, "a string"));
	if (*id == '\0')
		invalid(path(prefix, "id"), "id must not be empty");
	if (*instance == '\0')
		invalid(path(prefix, "instanceId"), "instanceId must not be empty");
	payload = required(ev, "payload", path(prefix, "payload"), JSON_OBJECT, "an object");
	contact = required(payload, "contact", path(prefix, "payload.contact"), JSON_OBJECT, "an object");
	message = required(payload, "message", path(prefix, "payload.message"), JSON_OBJECT, "a JSON object");
	metadata = required(payload, "metadata", path(prefix, "payload.metadata"), JSON_OBJECT, "an object");
	inner_instance = optional_str(payload, "instanceId", path(prefix, "payload.instanceId"));
	if (inner_instance != NULL && strcmp(inner_instance, instance) != 0)
		unusable(path(prefix, "payload.instanceId"), "payload.instanceId does not match instanceId");

	/* The message may be a whole Baileys WAMessage ({key, message}) or its content. */
	key = member_obj(message, "key");
	content = member_obj(message, "message") ? member_obj(message, "message") : message;

	have_ts = optional_time(payload, "timestamp", path(prefix, "payload.timestamp"), &ts);
	if (!have_ts)
		have_ts = optional_time(ev, "timestamp", path(prefix, "timestamp"), &ts);
	if (!have_ts)
		have_ts = timestamp_of(member(message, "messageTimestamp"), &ts) ||
			timestamp_of(member(metadata, "timestamp"), &ts);
	broker_ts = member(message, "messageTimestamp") ? member(message, "messageTimestamp") :
		member(metadata, "timestamp") ? member(metadata, "timestamp") :
		member(payload, "timestamp") ? member(payload, "timestamp") : member(ev, "timestamp");

	out_contact = envelope_contact(contact, prefix, &who);

	/* A group chat: the sender is the participant. */
	meta_contact = member_obj(metadata, "contact");
	remote = member_str(key, "remoteJid");
	if (remote != NULL && parse_jid(remote, &user) == JID_GROUP)
		group = remote;
	else if ((remote = member_str(meta_contact, "jid")) != NULL &&
			 parse_jid(remote, &user) == JID_GROUP)
		group = remote;
	else if ((remote = member_str(meta_contact, "remoteJid")) != NULL &&
			 parse_jid(remote, &user) == JID_GROUP)
		group = remote;
	if (group != NULL)
	{
		participant = member_str(key, "participant");
		if (participant == NULL)
			participant = member_str(meta_contact, "participantJid");
	}

	/* A @lid sender is resolved through senderPn / remoteJidAlt when present. */
	if (who.phone == NULL)
	{
		json_t	   *places[] = {contact, key, metadata, meta_contact};

		for (int i = 0; i < lengthof(places); i++)
		{
			sender_learn(&who, member_str(places[i], "senderPn"));
			sender_learn(&who, member_str(places[i], "remoteJidAlt"));
			sender_learn(&who, member_str(places[i], "participantPn"));
			sender_learn(&who, member_str(places[i], "participantAlt"));
		}
		sender_learn(&who, group ? participant : member_str(key, "remoteJid"));
	}
	if (who.phone == NULL && who.lid == NULL)
		unusable(path(prefix, "payload.contact.phone"),
				 "payload.contact.phone is required: the sender has no phone number or WhatsApp id");
	set_sender(out_contact, &who);

	msg_id = member_str(key, "id");
	if (msg_id == NULL)
		msg_id = member_str(message, "id");
	if (msg_id == NULL)
		msg_id = member_str(message, "messageId");
	if (msg_id == NULL)
		msg_id = member_str(metadata, "messageId");
	if (msg_id == NULL)
		msg_id = id;

	out_meta = json_deep_copy(metadata);
	json_object_set_new(out_payload, "instanceId", json_string(instance));
	json_object_set_new(out_payload, "contact", out_contact);
	json_object_set_new(out_payload, "chat", chat_of(&who, group, participant));
	json_object_set_new(out_payload, "message", message_of(content, msg_id));
	json_object_set_new(out_payload, "metadata", out_meta);
	{
		json_t	   *env = new_envelope(id, instance, EVENT_INBOUND, out_payload);

		set_times(env, out_payload, out_meta, have_ts, ts, broker_ts);
		return env;
	}
}

/* ---------- raw Baileys WHATSAPP_MESSAGES_UPSERT ---------- */

/* Why a raw message is not a new inbound message, or NULL (seed 000). */
static const char *
ignore_reason(json_t *entry, json_t *key, json_t *content, jid_kind chat_kind)
{
	json_t	   *from_me = member(key, "fromMe");
	json_t	   *stub = member(entry, "messageStubType");
	const char *k;
	json_t	   *v;
	bool		has_content = false;

	if (from_me != NULL && json_is_true(from_me))
		return "from_me";
	if (content != NULL && member(content, "protocolMessage") != NULL)
		return "protocol_message";
	if (content != NULL && member(content, "historySyncNotification") != NULL)
		return "history_sync_notification";
	if (stub != NULL && !(json_is_integer(stub) && json_integer_value(stub) == 0))
		return "message_stub";
	if (chat_kind == JID_BROADCAST)
		return "broadcast";
	if (chat_kind == JID_NEWSLETTER)
		return "newsletter";
	/* Group key distribution and context alone carry nothing to show. */
	json_object_foreach(content, k, v)
		if (strcmp(k, "senderKeyDistributionMessage") != 0 &&
			strcmp(k, "messageContextInfo") != 0 && !json_is_null(v))
			has_content = true;
	if (!has_content)
		return "empty_message";
	return NULL;
}

static json_t *
ignored(const char *instance, const char *id, int index, const char *reason)
{
	json_t	   *o = json_object();

	set_str(o, "type", "IGNORED");
	set_str(o, "payloadType", EVENT_UPSERT);
	set_str(o, "instanceId", instance);
	set_str(o, "id", id);
	json_object_set_new(o, "index", json_integer(index));
	set_str(o, "reason", reason);
	return o;
}

/* Digits of a JID's user part (rawKey.remoteJid / participant in the seed). */
static const char *
jid_user(const char *jid)
{
	char	   *user;

	if (jid == NULL)
		return NULL;
	parse_jid(jid, &user);
	return user ? user : jid;
}

static json_t *
normalize_raw_message(json_t *entry, const char *fp, int index, const char *instance,
					  json_t *fallback_ts, const char *owner, const char *source)
{
	json_t	   *key;
	json_t	   *content;
	json_t	   *payload = json_object();
	json_t	   *contact = json_object();
	json_t	   *meta = json_object();
	json_t	   *broker = json_object();
	json_t	   *raw_key = json_object();
	json_t	   *meta_contact = json_object();
	json_t	   *message;
	json_t	   *ts_value;
	const char *id;
	const char *remote;
	const char *participant;
	const char *push;
	const char *reason;
	jid_kind	kind;
	char	   *user;
	sender		who = {0};
	int64		ts = 0;
	bool		have_ts = false;
	bool		group;

	if (!json_is_object(entry))
		invalid(event_field(fp), "each of payload.messages must be an object");
	key = required(entry, "key", path(fp, "key"), JSON_OBJECT, "an object");
	id = member_str(key, "id");
	remote = member_str(key, "remoteJid");
	kind = remote ? parse_jid(remote, &user) : JID_NONE;
	content = unwrap(member_obj(entry, "message"), NULL);
	if (content == NULL)
		reason = (member(key, "fromMe") && json_is_true(member(key, "fromMe"))) ? "from_me" :
			member(entry, "messageStubType") ? "message_stub" : "empty_message";
	else
		reason = ignore_reason(entry, key, content, kind);
	if (reason != NULL)
		return ignored(instance, id, index, reason);

	if (id == NULL)
		invalid(path(fp, "key.id"), "%skey.id is required", fp);
	if (remote == NULL)
		invalid(path(fp, "key.remoteJid"), "%skey.remoteJid is required", fp);
	if (kind != JID_PHONE && kind != JID_LID && kind != JID_GROUP)
		unusable(path(fp, "key.remoteJid"), "%skey.remoteJid is not a WhatsApp chat", fp);
	group = kind == JID_GROUP;
	participant = member_str(key, "participant");
	if (participant == NULL)
		participant = member_str(entry, "participant");
	if (group)
	{
		if (participant == NULL)
			unusable(path(fp, "key.participant"), "%skey.participant is required in a group", fp);
		if (!sender_learn(&who, participant))
			unusable(path(fp, "key.participant"), "%skey.participant is not a WhatsApp user", fp);
		sender_learn(&who, member_str(key, "participantPn"));
		sender_learn(&who, member_str(key, "participantAlt"));
		sender_learn(&who, member_str(entry, "participantPn"));
	}
	else
	{
		if (!sender_learn(&who, remote))
			unusable(path(fp, "key.remoteJid"), "%skey.remoteJid is not a WhatsApp user", fp);
		/* @lid senders: the phone travels in senderPn (Baileys 6) or remoteJidAlt (7). */
		sender_learn(&who, member_str(key, "senderPn"));
		sender_learn(&who, member_str(key, "remoteJidAlt"));
		sender_learn(&who, member_str(entry, "senderPn"));
	}

	ts_value = member(entry, "messageTimestamp");
	if (ts_value != NULL && !(have_ts = timestamp_of(ts_value, &ts)))
		invalid(path(fp, "messageTimestamp"), "%smessageTimestamp must be epoch seconds", fp);
	if (ts_value == NULL && fallback_ts != NULL)
	{
		ts_value = fallback_ts;
		have_ts = timestamp_of(fallback_ts, &ts);
	}

	push = member_str(entry, "pushName");
	if (push == NULL)
		push = member_str(entry, "notifyName");
	if (push == NULL)
		push = member_str(entry, "verifiedBizName");
	set_str(contact, "name", push);
	set_str(contact, "pushName", push);
	set_sender(contact, &who);

	message = message_of(member_obj(entry, "message"), id);

	set_str(broker, "type", "baileys");
	set_str(broker, "direction", "inbound");
	json_object_set_new(broker, "normalized", json_true());
	json_object_set(broker, "messageType", member(message, "type"));
	set_str(broker, "messageId", id);
	set_str(broker, "owner", owner);
	set_str(broker, "source", source);
	set_str(raw_key, "remoteJid", jid_user(remote));
	set_str(raw_key, "participant", jid_user(participant));
	set_str(raw_key, "jid", remote);
	set_str(raw_key, "participantJid", participant);
	json_object_set_new(meta_contact, "isGroup", json_boolean(group));
	set_str(meta_contact, "participantJid", group ? participant : NULL);
	set_str(meta_contact, "jid", remote);
	set_str(meta_contact, "pushName", push);
	set_str(meta, "source", "raw_normalized");
	json_object_set_new(meta, "broker", broker);
	json_object_set_new(meta, "rawKey", raw_key);
	json_object_set_new(meta, "contact", meta_contact);
	json_object_set_new(meta, "messageIndex", json_integer(index));

	json_object_set_new(payload, "instanceId", json_string(instance));
	json_object_set_new(payload, "contact", contact);
	json_object_set_new(payload, "chat", chat_of(&who, group ? remote : NULL, participant));
	json_object_set_new(payload, "message", message);
	json_object_set_new(payload, "metadata", meta);
	{
		json_t	   *env = new_envelope(id, instance, EVENT_UPSERT, payload);

		set_times(env, payload, meta, have_ts, ts, ts_value);
		return env;
	}
}

static void
normalize_upsert(json_t *ev, const char *prefix, bool strict_type, json_t *out)
{
	json_t	   *payload = member_obj(ev, "payload");
	json_t	   *raw = member_obj(payload, "raw");
	json_t	   *messages;
	json_t	   *fallback_ts;
	const char *event = member_str(ev, "event") ? member_str(ev, "event") : member_str(ev, "type");
	const char *instance = NULL;
	const char *from[] = {"instanceId", "iid"};
	json_t	   *entry;
	size_t		i;

	if (!json_is_object(ev))
		invalid(event_field(prefix), "each event must be a JSON object");
	if (strict_type && event != NULL && strcmp(event, EVENT_UPSERT) != 0)
		unusable(path(prefix, "event"), "event must be WHATSAPP_MESSAGES_UPSERT, not \"%s\"", event);
	for (int k = 0; instance == NULL && k < lengthof(from); k++)
		if ((instance = member_str(ev, from[k])) == NULL)
			instance = member_str(payload, from[k]);
	if (instance == NULL)
		invalid(path(prefix, "instanceId"), "instanceId is required");

	messages = member(payload, "messages");
	if (messages == NULL)
		messages = member(ev, "messages");
	if (messages == NULL)
		messages = member(raw, "messages");
	if (messages == NULL)
		messages = member(member_obj(raw, "payload"), "messages");
	if (messages == NULL || !json_is_array(messages))
		invalid(path(prefix, "payload.messages"), "payload.messages must be an array of Baileys messages");
	fallback_ts = member(payload, "timestamp") ? member(payload, "timestamp") : member(ev, "timestamp");

	json_array_foreach(messages, i, entry)
		json_array_append_new(out, normalize_raw_message(entry,
							  psprintf("%spayload.messages[%d].", prefix, (int) i), (int) i,
							  instance, fallback_ts,
							  member_str(payload, "owner") ? member_str(payload, "owner") : member_str(ev, "owner"),
							  member_str(payload, "source") ? member_str(payload, "source") : member_str(ev, "source")));
}

/* ---------- dialects ---------- */

static void
normalize_one(json_t *ev, const char *prefix, const char *dialect, json_t *out)
{
	const char *type = member_str(ev, "type");
	const char *event = member_str(ev, "event");

	if (strcmp(dialect, "envelope") == 0)
		json_array_append_new(out, normalize_envelope(ev, prefix));
	else if (strcmp(dialect, "baileys") == 0)
		normalize_upsert(ev, prefix, true, out);
	else if (!json_is_object(ev))
		invalid(event_field(prefix), "each event must be a JSON object");
	else if (type != NULL && strcmp(type, EVENT_INBOUND) == 0)
		json_array_append_new(out, normalize_envelope(ev, prefix));
	else if ((event != NULL && strcmp(event, EVENT_UPSERT) == 0) ||
			 (type != NULL && strcmp(type, EVENT_UPSERT) == 0))
		normalize_upsert(ev, prefix, false, out);
	else if (type != NULL || event != NULL)
		unusable(path(prefix, "type"), "type \"%s\" is not an inbound message event (MESSAGE_INBOUND or WHATSAPP_MESSAGES_UPSERT)",
				 type ? type : event);
	else
		invalid(path(prefix, "type"), "type is required (MESSAGE_INBOUND or WHATSAPP_MESSAGES_UPSERT)");
}

static json_t *
normalize_body(json_t *body, const char *dialect)
{
	json_t	   *out = json_array();
	json_t	   *list = NULL;
	const char *list_prefix = "";
	json_t	   *ev;
	size_t		i;

	if (json_is_array(body))
		list = body;
	else if (json_is_object(body) && member_str(body, "type") == NULL &&
			 member_str(body, "event") == NULL && json_is_array(member(body, "events")))
	{
		list = member(body, "events");
		list_prefix = "events";
	}
	if (list == NULL)
	{
		normalize_one(body, "", dialect, out);
		return out;
	}
	if (json_array_size(list) == 0)
		invalid("body", "the body holds no event");
	json_array_foreach(list, i, ev)
		normalize_one(ev, psprintf("%s[%d].", list_prefix, (int) i), dialect, out);
	return out;
}

Datum
pgwa_normalize_inbound(PG_FUNCTION_ARGS)
{
	Jsonb	   *in = PG_GETARG_JSONB_P(0);
	char	   *dialect = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *text;
	json_error_t err;
	json_t	   *parsed;
	json_t	   *out;
	json_t	   *ev;
	size_t		i;
	Datum	   *elems;

	if (strcmp(dialect, "broker") != 0 && strcmp(dialect, "envelope") != 0 &&
		strcmp(dialect, "baileys") != 0)
		invalid("dialect", "dialect must be one of broker, envelope, baileys");
	text = JsonbToCString(NULL, &in->root, VARSIZE(in));
	pgwa_use_palloc_for_jansson();
	parsed = json_loads(text, JSON_DECODE_ANY, &err);
	if (parsed == NULL)
		invalid("body", "the body could not be read: %s", err.text);
	if (!json_is_object(parsed) && !json_is_array(parsed))
		invalid("body", "the body must be a JSON object or an array of them");

	out = normalize_body(parsed, dialect);
	elems = palloc(sizeof(Datum) * Max(json_array_size(out), 1));
	json_array_foreach(out, i, ev)
		elems[i] = DirectFunctionCall1(jsonb_in,
									   CStringGetDatum(json_dumps(ev, JSON_COMPACT | JSON_REAL_PRECISION(15))));
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, (int) json_array_size(out), JSONBOID, -1, false, TYPALIGN_INT));
}
