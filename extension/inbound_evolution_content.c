/*
 * inbound_evolution_content.c: the content of an Evolution API message.
 *
 * Evolution posts Baileys messages serialised to JSON. evo_content() turns
 * one (its wrappers taken off by evo_unwrap()) into pgwa's normalised
 * message: text, media with their sizes, location, contacts from vCards,
 * reactions, button and list replies, polls, quotes. inbound_evolution.c
 * reads the events around them.
 */
#include "postgres.h"

#include "inbound_dialects.h"

/* Wrappers whose "message" member holds the real content. */
static const char *const wrappers[] = {
	"ephemeralMessage", "viewOnceMessage", "viewOnceMessageV2",
	"viewOnceMessageV2Extension", "documentWithCaptionMessage",
	"deviceSentMessage", "editedMessage", NULL
};

/* Members of a message that carry no content of their own. */
static const char *const not_content[] = {
	"messageContextInfo", "senderKeyDistributionMessage", "base64", "mediaUrl",
	"contextInfo", NULL
};

static bool
in_list(const char *s, const char *const *list)
{
	for (int i = 0; list[i]; i++)
		if (strcmp(s, list[i]) == 0)
			return true;
	return false;
}


/* A size or duration that Baileys may write as a number, string or Long. */
static void
copy_count(json_t *out, const char *out_key, json_t *in, const char *in_key)
{
	json_t	   *v = json_object_get(in, in_key);

	if (json_is_integer(v))
		json_object_set(out, out_key, v);
	else if (json_is_string(v))
	{
		char	   *end;
		long long	n;

		errno = 0;
		n = strtoll(json_string_value(v), &end, 10);
		if (end != json_string_value(v) && *end == '\0' && errno == 0 && n >= 0)
			json_object_set_new(out, out_key, json_integer(n));
	}
	else if (json_is_object(v) && json_is_integer(json_object_get(v, "low")))
	{
		json_t	   *high = json_object_get(v, "high");
		int64		n = (uint32) json_integer_value(json_object_get(v, "low"));

		if (json_is_integer(high) && json_integer_value(high) >= 0 &&
			json_integer_value(high) < (INT64CONST(1) << 30))
			n += (int64) json_integer_value(high) << 32;
		json_object_set_new(out, out_key, json_integer(n));
	}
}

/* The text a quoted message shows, for message.quotedText. */
static const char *
quoted_text(json_t *q)
{
	static const char *const media[] = {"imageMessage", "videoMessage", "documentMessage", NULL};
	json_t	   *v;

	if (!json_is_object(q))
		return NULL;
	if (json_is_string(v = json_object_get(q, "conversation")))
		return json_string_value(v);
	if (json_is_string(v = json_object_get(json_object_get(q, "extendedTextMessage"), "text")))
		return json_string_value(v);
	for (int i = 0; media[i]; i++)
		if (json_is_string(v = json_object_get(json_object_get(q, media[i]), "caption")))
			return json_string_value(v);
	return NULL;
}

static void
add_quote(json_t *out, json_t *ctx_info)
{
	json_t	   *stanza = json_object_get(ctx_info, "stanzaId");

	if (!json_is_string(stanza) || json_string_length(stanza) == 0)
		return;
	json_object_set(out, "quotedMessageId", stanza);
	inb_set_str(out, "quotedText", quoted_text(json_object_get(ctx_info, "quotedMessage")));
	inb_copy_str(out, "quotedParticipant", ctx_info, "participant");
}

/* The WhatsApp id a vCard names (TEL;waid=5511999999999:+55 ...). */
static char *
vcard_phone(json_t *card)
{
	const char *vcard = json_is_string(json_object_get(card, "vcard"))
		? json_string_value(json_object_get(card, "vcard")) : NULL;
	const char *p = vcard ? strstr(vcard, "waid=") : NULL;
	StringInfoData buf;

	if (p == NULL)
		return NULL;
	initStringInfo(&buf);
	for (p += 5; isdigit((unsigned char) *p); p++)
		appendStringInfoChar(&buf, *p);
	return inb_phone(buf.data);
}

static json_t *
vcard_contact(json_t *card)
{
	json_t	   *c = json_object();

	inb_copy_str(c, "name", card, "displayName");
	inb_set_str(c, "phone", vcard_phone(card));
	inb_copy_str(c, "vcard", card, "vcard");
	return c;
}

static void
media(json_t *out, const char *type, json_t *m)
{
	json_object_set_new(out, "type", json_string(type));
	inb_copy_str(out, "mimetype", m, "mimetype");
	copy_count(out, "fileLength", m, "fileLength");
	inb_copy_str(out, "fileName", m, "fileName");
	inb_copy_str(out, "caption", m, "caption");
	inb_copy_str(out, "url", m, "url");
	inb_copy_str(out, "title", m, "title");
	copy_count(out, "seconds", m, "seconds");
	inb_copy_bool(out, "ptt", m, "ptt");
	inb_copy_bool(out, "gifPlayback", m, "gifPlayback");
	inb_copy_bool(out, "isAnimated", m, "isAnimated");
}

/* Ephemeral, view-once and captioned-document envelopes, taken off. */
json_t *
evo_unwrap(json_t *msg, json_t *flags)
{
	for (int depth = 0; depth < 8; depth++)
	{
		const char *w = NULL;

		for (int i = 0; wrappers[i] && w == NULL; i++)
			if (json_is_object(json_object_get(json_object_get(msg, wrappers[i]), "message")))
				w = wrappers[i];
		if (w == NULL)
			break;
		if (strncmp(w, "viewOnce", 8) == 0)
			json_object_set_new(flags, "viewOnce", json_true());
		else if (strcmp(w, "ephemeralMessage") == 0)
			json_object_set_new(flags, "ephemeral", json_true());
		msg = json_object_get(json_object_get(msg, w), "message");
	}
	return msg;
}

/* Content members in the order they are looked for. */
static const char *const content_keys[] = {
	"conversation", "extendedTextMessage", "imageMessage", "videoMessage",
	"ptvMessage", "audioMessage", "documentMessage", "stickerMessage",
	"locationMessage", "liveLocationMessage", "contactMessage",
	"contactsArrayMessage", "reactionMessage", "buttonsResponseMessage",
	"templateButtonReplyMessage", "listResponseMessage",
	"interactiveResponseMessage", "pollCreationMessage",
	"pollCreationMessageV2", "pollCreationMessageV3", "pollUpdateMessage", NULL
};

/*
 * The normalised message object of an unwrapped Baileys message (out holds
 * its flags already), or NULL when it has no content. *kind receives the
 * Baileys member it was read from.
 */
json_t *
evo_content(json_t *msg, json_t *data, json_t *out, const char **kind)
{
	json_t	   *c = NULL;
	json_t	   *ctx_info = NULL;
	const char *key = NULL;
	const char *k;
	json_t	   *v;

	for (int i = 0; content_keys[i] && key == NULL; i++)
	{
		v = json_object_get(msg, content_keys[i]);
		if (v != NULL && !json_is_null(v))
			key = content_keys[i];
	}
	/* Otherwise a type this version does not know, kept as unsupported. */
	json_object_foreach(msg, k, v)
	{
		if (key != NULL)
			break;
		if (!in_list(k, not_content) && !json_is_null(v))
			key = k;
	}
	if (key == NULL)
		return NULL;
	*kind = key;
	c = json_object_get(msg, key);
	if (json_is_object(c))
		ctx_info = json_object_get(c, "contextInfo");
	if (!json_is_object(ctx_info))
		ctx_info = json_object_get(data, "contextInfo");

	if (strcmp(key, "conversation") == 0 && json_is_string(c))
	{
		json_object_set_new(out, "type", json_string("text"));
		json_object_set(out, "text", c);
	}
	else if (!json_is_object(c))
	{
		json_object_set_new(out, "type", json_string("unsupported"));
		json_object_set_new(out, "rawType", json_string(key));
	}
	else if (strcmp(key, "extendedTextMessage") == 0)
	{
		json_object_set_new(out, "type", json_string("text"));
		inb_copy_str(out, "text", c, "text");
		inb_copy_str(out, "matchedText", c, "matchedText");
		inb_copy_str(out, "title", c, "title");
	}
	else if (strcmp(key, "imageMessage") == 0)
		media(out, "image", c);
	else if (strcmp(key, "videoMessage") == 0 || strcmp(key, "ptvMessage") == 0)
		media(out, "video", c);
	else if (strcmp(key, "audioMessage") == 0)
		media(out, "audio", c);
	else if (strcmp(key, "documentMessage") == 0)
		media(out, "document", c);
	else if (strcmp(key, "stickerMessage") == 0)
		media(out, "sticker", c);
	else if (strcmp(key, "locationMessage") == 0 || strcmp(key, "liveLocationMessage") == 0)
	{
		json_t	   *loc = json_object();

		json_object_set_new(out, "type", json_string("location"));
		if (json_is_number(json_object_get(c, "degreesLatitude")))
			json_object_set(loc, "latitude", json_object_get(c, "degreesLatitude"));
		if (json_is_number(json_object_get(c, "degreesLongitude")))
			json_object_set(loc, "longitude", json_object_get(c, "degreesLongitude"));
		inb_copy_str(loc, "name", c, "name");
		inb_copy_str(loc, "address", c, "address");
		inb_copy_str(loc, "url", c, "url");
		if (strcmp(key, "liveLocationMessage") == 0)
		{
			json_object_set_new(loc, "live", json_true());
			inb_copy_str(out, "caption", c, "caption");
		}
		json_object_set_new(out, "location", loc);
	}
	else if (strcmp(key, "contactMessage") == 0)
	{
		json_t	   *list = json_array();

		json_object_set_new(out, "type", json_string("contacts"));
		json_array_append_new(list, vcard_contact(c));
		json_object_set_new(out, "contacts", list);
	}
	else if (strcmp(key, "contactsArrayMessage") == 0)
	{
		json_t	   *list = json_array();
		json_t	   *cards = json_object_get(c, "contacts");
		size_t		i;

		json_object_set_new(out, "type", json_string("contacts"));
		json_array_foreach(cards, i, v)
			if (json_is_object(v))
				json_array_append_new(list, vcard_contact(v));
		json_object_set_new(out, "contacts", list);
	}
	else if (strcmp(key, "reactionMessage") == 0)
	{
		json_t	   *r = json_object();
		json_t	   *text = json_object_get(c, "text");

		json_object_set_new(out, "type", json_string("reaction"));
		inb_copy_str(r, "messageId", json_object_get(c, "key"), "id");
		inb_copy_bool(r, "fromMe", json_object_get(c, "key"), "fromMe");
		/* An empty reaction takes the previous one back. */
		json_object_set_new(r, "emoji", json_string(json_is_string(text) ? json_string_value(text) : ""));
		if (!json_is_string(text) || json_string_length(text) == 0)
			json_object_set_new(r, "removed", json_true());
		json_object_set_new(out, "reaction", r);
	}
	else if (strcmp(key, "buttonsResponseMessage") == 0 || strcmp(key, "templateButtonReplyMessage") == 0)
	{
		json_t	   *b = json_object();
		bool		tpl = key[0] == 't';

		json_object_set_new(out, "type", json_string("buttons_response"));
		inb_copy_str(b, "id", c, tpl ? "selectedId" : "selectedButtonId");
		inb_copy_str(b, "title", c, "selectedDisplayText");
		inb_copy_str(out, "text", c, "selectedDisplayText");
		json_object_set_new(out, "buttonsResponse", b);
	}
	else if (strcmp(key, "listResponseMessage") == 0)
	{
		json_t	   *l = json_object();

		json_object_set_new(out, "type", json_string("list_response"));
		inb_copy_str(l, "id", json_object_get(c, "singleSelectReply"), "selectedRowId");
		inb_copy_str(l, "title", c, "title");
		inb_copy_str(l, "description", c, "description");
		inb_copy_str(out, "text", c, "title");
		json_object_set_new(out, "listResponse", l);
	}
	else if (strcmp(key, "interactiveResponseMessage") == 0)
	{
		json_t	   *i = json_object();
		json_t	   *flow = json_object_get(c, "nativeFlowResponseMessage");

		json_object_set_new(out, "type", json_string("interactive"));
		json_object_set_new(i, "type", json_string("native_flow"));
		inb_copy_str(i, "name", flow, "name");
		inb_copy_str(i, "response", flow, "paramsJson");
		inb_copy_str(i, "body", json_object_get(c, "body"), "text");
		inb_copy_str(out, "text", json_object_get(c, "body"), "text");
		json_object_set_new(out, "interactive", i);
	}
	else if (strncmp(key, "pollCreationMessage", 19) == 0)
	{
		json_t	   *p = json_object();
		json_t	   *opts = json_array();
		size_t		i;

		json_object_set_new(out, "type", json_string("poll"));
		inb_copy_str(p, "name", c, "name");
		json_array_foreach(json_object_get(c, "options"), i, v)
			if (json_is_string(json_object_get(v, "optionName")))
				json_array_append(opts, json_object_get(v, "optionName"));
		json_object_set_new(p, "options", opts);
		copy_count(p, "selectableCount", c, "selectableOptionsCount");
		inb_copy_str(out, "text", c, "name");
		json_object_set_new(out, "poll", p);
	}
	else if (strcmp(key, "pollUpdateMessage") == 0)
	{
		json_t	   *p = json_object();

		/* The vote itself is encrypted; the poll it answers is not. */
		json_object_set_new(out, "type", json_string("poll_choice"));
		inb_copy_str(p, "pollMessageId", json_object_get(c, "pollCreationMessageKey"), "id");
		json_object_set_new(out, "pollChoice", p);
	}
	else
	{
		json_object_set_new(out, "type", json_string("unsupported"));
		json_object_set_new(out, "rawType", json_string(key));
	}

	if (json_is_object(ctx_info))
		add_quote(out, ctx_info);
	inb_copy_str(out, "mediaUrl", msg, "mediaUrl");
	return out;
}

