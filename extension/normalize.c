/*
 * normalize.c: validation and canonical form of outbound messages.
 *
 * pgwa.normalize_message(jsonb) takes a message as a client writes it and
 * returns the canonical object the queue stores and the provider adapters
 * read. Every refusal is a PW400 error whose COLUMN_NAME is the offending
 * field, so the HTTP layer can point at it. Keys it does not know are
 * dropped rather than refused: clients of other gateways send extra fields.
 */
#include "postgres.h"


#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/jsonb.h"

#include "pg_jansson.h"

#include "pgwa.h"

PG_FUNCTION_INFO_V1(pgwa_normalize_message);

#define MAX_TEXT_CHARS		4096
#define MAX_CAPTION_CHARS	1024
#define MAX_URL_BYTES		2048

#define invalid(field, ...)	pgwa_raise(PGWA_ERRCODE_VALIDATION, field, NULL, __VA_ARGS__)

/* Jansson allocates from the current memory context, so an error frees it. */
static void *
palloc_for_jansson(size_t size)
{
	return palloc(size);
}

static void
pfree_for_jansson(void *ptr)
{
	if (ptr)
		pfree(ptr);
}

void
pgwa_use_palloc_for_jansson(void)
{
	json_set_alloc_funcs(palloc_for_jansson, pfree_for_jansson);
}

static int
utf8_chars(const char *s)
{
	return pg_mbstrlen_with_len(s, strlen(s));
}

/* A string field: required or optional, length bounds in characters. */
static const char *
get_string(json_t *obj, const char *key, const char *field, bool required,
		   int min_chars, int max_chars)
{
	json_t	   *v = json_object_get(obj, key);
	const char *s;
	int			n;

	if (v == NULL || json_is_null(v))
	{
		if (required)
			invalid(field, "%s is required", field);
		return NULL;
	}
	if (!json_is_string(v))
		invalid(field, "%s must be a string", field);
	s = json_string_value(v);
	if (strlen(s) != json_string_length(v))
		invalid(field, "%s must not contain NUL characters", field);
	n = utf8_chars(s);
	if (n < min_chars)
		invalid(field, min_chars == 1 ? "%s must not be empty" : "%s is too short", field);
	if (n > max_chars)
		invalid(field, "%s must be at most %d characters", field, max_chars);
	return s;
}

static void
copy_string(json_t *out, json_t *in, const char *key, const char *field,
			bool required, int min_chars, int max_chars)
{
	const char *s = get_string(in, key, field, required, min_chars, max_chars);

	if (s != NULL)
		json_object_set_new(out, key, json_string(s));
}

static const char *
get_url(json_t *obj, const char *key, const char *field, bool required)
{
	const char *s = get_string(obj, key, field, required, 1, MAX_URL_BYTES);

	if (s != NULL && strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0)
		invalid(field, "%s must be an http or https URL", field);
	if (s != NULL && strpbrk(s, " \t\r\n") != NULL)
		invalid(field, "%s must not contain whitespace", field);
	return s;
}

static void
copy_url(json_t *out, json_t *in, const char *key, const char *field, bool required)
{
	const char *s = get_url(in, key, field, required);

	if (s != NULL)
		json_object_set_new(out, key, json_string(s));
}

/* A number in [min, max], returned as written (no re-rounding). */
static json_t *
get_number(json_t *obj, const char *key, const char *field, double min, double max)
{
	json_t	   *v = json_object_get(obj, key);
	double		d;

	if (v == NULL || json_is_null(v))
		invalid(field, "%s is required", field);
	if (!json_is_number(v))
		invalid(field, "%s must be a number", field);
	d = json_number_value(v);
	if (!(d >= min && d <= max))
		invalid(field, "%s must be between %g and %g", field, min, max);
	return v;
}

/* Optional integer in [min, max]; integral reals (3.0) are accepted. */
static bool
get_int(json_t *obj, const char *key, const char *field, int min, int max, int *result)
{
	json_t	   *v = json_object_get(obj, key);
	double		d;

	if (v == NULL || json_is_null(v))
		return false;
	if (json_is_string(v))
	{
		/* Z-API clients often send numbers as strings. */
		char	   *end;

		d = strtod(json_string_value(v), &end);
		if (end == json_string_value(v) || *end != '\0')
			invalid(field, "%s must be an integer", field);
	}
	else if (json_is_number(v))
		d = json_number_value(v);
	else
		invalid(field, "%s must be an integer", field);
	if (d != (double) (long) d)
		invalid(field, "%s must be an integer", field);
	if (d < min || d > max)
		invalid(field, "%s must be between %d and %d", field, min, max);
	*result = (int) d;
	return true;
}

static json_t *
get_object(json_t *obj, const char *key, const char *field, bool required)
{
	json_t	   *v = json_object_get(obj, key);

	if (v == NULL || json_is_null(v))
	{
		if (required)
			invalid(field, "%s is required", field);
		return NULL;
	}
	if (!json_is_object(v))
		invalid(field, "%s must be an object", field);
	return v;
}

/*
 * A phone number in any usual writing ("+55 (11) 99999-9999") becomes its
 * E.164 digits; JIDs are kept, with the old c.us domain rewritten.
 */
static char *
normalize_recipient(const char *s, const char *field)
{
	const char *at = strchr(s, '@');
	StringInfoData buf;

	initStringInfo(&buf);
	if (at != NULL)
	{
		const char *domain = at + 1;
		const char *p;

		if (at == s)
			invalid(field, "%s must have a user part before @", field);
		for (p = s; p < at; p++)
			if (!isdigit((unsigned char) *p) && *p != '-' && *p != ':' && *p != '.')
				invalid(field, "%s must be a phone number or a WhatsApp JID (digits@s.whatsapp.net, id@g.us, id@lid)", field);
		if (strcmp(domain, "c.us") == 0)
			domain = "s.whatsapp.net";
		if (strcmp(domain, "s.whatsapp.net") != 0 && strcmp(domain, "g.us") != 0 &&
			strcmp(domain, "lid") != 0 && strcmp(domain, "newsletter") != 0 &&
			strcmp(domain, "broadcast") != 0)
			invalid(field, "%s has an unknown WhatsApp domain \"%s\"", field, domain);
		appendBinaryStringInfo(&buf, s, at - s);
		appendStringInfo(&buf, "@%s", domain);
		return buf.data;
	}

	for (const char *p = s; *p; p++)
	{
		if (isdigit((unsigned char) *p))
			appendStringInfoChar(&buf, *p);
		else if (*p == '+' && buf.len == 0)
			continue;
		else if (*p == ' ' || *p == '-' || *p == '(' || *p == ')' || *p == '.')
			continue;
		else
			invalid(field, "%s must be a phone number or a WhatsApp JID", field);
	}
	if (buf.len < 8 || buf.len > 15)
		invalid(field, "%s must have 8 to 15 digits (E.164, with country code)", field);
	return buf.data;
}

static void
normalize_media(json_t *out, json_t *in, const char *type)
{
	copy_url(out, in, "mediaUrl", "mediaUrl", true);
	if (strcmp(type, "audio") != 0)
		copy_string(out, in, "caption", "caption", false, 0, MAX_CAPTION_CHARS);
	copy_string(out, in, "mimeType", "mimeType", false, 3, 255);
	copy_string(out, in, "fileName", "fileName", false, 1, 240);
}

static void
normalize_location(json_t *out, json_t *in)
{
	json_t	   *loc = get_object(in, "location", "location", true);
	json_t	   *o = json_object();

	json_object_set(o, "latitude", get_number(loc, "latitude", "location.latitude", -90, 90));
	json_object_set(o, "longitude", get_number(loc, "longitude", "location.longitude", -180, 180));
	copy_string(o, loc, "name", "location.name", false, 0, 1000);
	copy_string(o, loc, "address", "location.address", false, 0, 1000);
	json_object_set_new(out, "location", o);
}

static void
normalize_template(json_t *out, json_t *in)
{
	json_t	   *tpl = get_object(in, "template", "template", true);
	json_t	   *o = json_object();
	json_t	   *components = json_object_get(tpl, "components");
	json_t	   *lang = json_object_get(tpl, "language");

	copy_string(o, tpl, "name", "template.name", true, 1, 512);
	/* Cloud API writes language as {"code": "pt_BR"}; accept both shapes. */
	json_object_set_new(o, "language",
						json_string(json_is_object(lang)
									? get_string(lang, "code", "template.language", true, 2, 15)
									: get_string(tpl, "language", "template.language", true, 2, 15)));
	if (components != NULL && !json_is_null(components))
	{
		if (!json_is_array(components))
			invalid("template.components", "template.components must be an array");
		json_object_set(o, "components", components);
	}
	json_object_set_new(out, "template", o);
}

static void
normalize_reaction(json_t *out, json_t *in)
{
	json_t	   *r = get_object(in, "reaction", "reaction", true);
	json_t	   *o = json_object();

	copy_string(o, r, "messageId", "reaction.messageId", true, 1, 200);
	/* An empty emoji removes a reaction. */
	copy_string(o, r, "emoji", "reaction.emoji", true, 0, 16);
	json_object_set_new(out, "reaction", o);
}

static void
normalize_contact(json_t *out, json_t *in)
{
	json_t	   *c = get_object(in, "contact", "contact", true);
	json_t	   *o = json_object();

	copy_string(o, c, "name", "contact.name", true, 1, 200);
	json_object_set_new(o, "phone",
						json_string(normalize_recipient(get_string(c, "phone", "contact.phone", true, 1, 40),
														"contact.phone")));
	json_object_set_new(out, "contact", o);
}

static void
normalize_link(json_t *out, json_t *in)
{
	copy_string(out, in, "text", "text", true, 1, MAX_TEXT_CHARS);
	copy_url(out, in, "linkUrl", "linkUrl", true);
	copy_string(out, in, "title", "title", false, 0, 500);
	copy_string(out, in, "description", "description", false, 0, 1000);
	copy_url(out, in, "imageUrl", "imageUrl", false);
}

static void
normalize_poll(json_t *out, json_t *in)
{
	json_t	   *p = get_object(in, "poll", "poll", true);
	json_t	   *o = json_object();
	json_t	   *opts = json_object_get(p, "options");
	json_t	   *clean = json_array();
	size_t		i;
	json_t	   *v;
	int			selectable = 1;

	copy_string(o, p, "name", "poll.name", true, 1, 255);
	if (opts == NULL || !json_is_array(opts))
		invalid("poll.options", "poll.options must be an array of 2 to 12 strings");
	if (json_array_size(opts) < 2 || json_array_size(opts) > 12)
		invalid("poll.options", "poll.options must have 2 to 12 options");
	json_array_foreach(opts, i, v)
	{
		const char *s;

		/* Z-API writes options as {"name": "..."}; accept both shapes. */
		if (json_is_object(v))
			v = json_object_get(v, "name");
		if (v == NULL || !json_is_string(v))
			invalid("poll.options", "each of poll.options must be a string");
		s = json_string_value(v);
		if (utf8_chars(s) < 1 || utf8_chars(s) > 100)
			invalid("poll.options", "each of poll.options must be 1 to 100 characters");
		for (size_t j = 0; j < json_array_size(clean); j++)
			if (strcmp(json_string_value(json_array_get(clean, j)), s) == 0)
				invalid("poll.options", "poll.options must not repeat \"%s\"", s);
		json_array_append_new(clean, json_string(s));
	}
	json_object_set_new(o, "options", clean);
	get_int(p, "selectableCount", "poll.selectableCount", 0, (int) json_array_size(clean), &selectable);
	json_object_set_new(o, "selectableCount", json_integer(selectable));
	json_object_set_new(out, "poll", o);
}

static const char *const message_types[] = {
	"text", "image", "video", "document", "audio", "location", "template",
	"reaction", "contact", "link", "poll", NULL
};

static json_t *
normalize(json_t *in)
{
	json_t	   *out = json_object();
	const char *type;
	int			n;
	bool		known = false;
	json_t	   *meta;

	if (!json_is_object(in))
		invalid("message", "the message must be a JSON object");

	json_object_set_new(out, "to",
						json_string(normalize_recipient(get_string(in, "to", "to", true, 1, 64), "to")));

	type = get_string(in, "type", "type", false, 1, 32);
	if (type == NULL)
		type = "text";
	for (int i = 0; message_types[i]; i++)
		if (strcmp(type, message_types[i]) == 0)
			known = true;
	if (!known)
		invalid("type", "type must be one of text, image, video, document, audio, location, template, reaction, contact, link, poll");
	json_object_set_new(out, "type", json_string(type));

	if (strcmp(type, "text") == 0)
	{
		json_t	   *preview = json_object_get(in, "previewUrl");

		copy_string(out, in, "text", "text", true, 1, MAX_TEXT_CHARS);
		if (preview != NULL && !json_is_null(preview))
		{
			if (!json_is_boolean(preview))
				invalid("previewUrl", "previewUrl must be true or false");
			json_object_set(out, "previewUrl", preview);
		}
	}
	else if (strcmp(type, "image") == 0 || strcmp(type, "video") == 0 ||
			 strcmp(type, "document") == 0 || strcmp(type, "audio") == 0)
		normalize_media(out, in, type);
	else if (strcmp(type, "location") == 0)
		normalize_location(out, in);
	else if (strcmp(type, "template") == 0)
		normalize_template(out, in);
	else if (strcmp(type, "reaction") == 0)
		normalize_reaction(out, in);
	else if (strcmp(type, "contact") == 0)
		normalize_contact(out, in);
	else if (strcmp(type, "link") == 0)
		normalize_link(out, in);
	else
		normalize_poll(out, in);

	if (get_int(in, "delayMessage", "delayMessage", 1, 15, &n))
		json_object_set_new(out, "delayMessage", json_integer(n));
	if (get_int(in, "delayTyping", "delayTyping", 1, 15, &n))
		json_object_set_new(out, "delayTyping", json_integer(n));
	copy_string(out, in, "scheduledFor", "scheduledFor", false, 1, 64);
	copy_string(out, in, "messageId", "messageId", false, 1, 200);
	copy_string(out, in, "quotedMessageId", "quotedMessageId", false, 1, 200);
	meta = get_object(in, "metadata", "metadata", false);
	if (meta != NULL)
		json_object_set(out, "metadata", meta);
	return out;
}

/* For callers in C that build or parse the message themselves (enqueue.c). */
json_t *
pgwa_normalize_json(json_t *in)
{
	return normalize(in);
}

Datum
pgwa_normalize_message(PG_FUNCTION_ARGS)
{
	Jsonb	   *in = PG_GETARG_JSONB_P(0);
	char	   *text = JsonbToCString(NULL, &in->root, VARSIZE(in));
	json_error_t err;
	json_t	   *parsed;
	json_t	   *out;
	char	   *dumped;

	pgwa_use_palloc_for_jansson();
	parsed = json_loads(text, JSON_DECODE_ANY, &err);
	if (parsed == NULL)
		invalid("message", "the message could not be read: %s", err.text);
	out = normalize(parsed);
	dumped = json_dumps(out, JSON_COMPACT | JSON_REAL_PRECISION(15));
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(dumped)));
}
