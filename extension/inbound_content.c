/*
 * inbound_content.c: the normalised message of a Baileys message content.
 *
 * Wrappers (ephemeral, view once, document with caption) are unwrapped; the
 * type comes from the content's main part; media keep mimetype, fileLength,
 * fileName and caption (never Baileys' encrypted URL nor thumbnails); a
 * quote becomes quotedMessageId / quotedText (seed 000, "Baileys raw
 * fallback"). A content already normalised by a broker ({type, text, ...})
 * is read as such.
 */
#include "postgres.h"

#include <ctype.h>

#include "inbound.h"

/* Wrappers whose .message holds the real content (seed 000). */
static const char *const wrappers[] = {
	"ephemeralMessage", "viewOnceMessage", "viewOnceMessageV2",
	"viewOnceMessageV2Extension", "documentWithCaptionMessage", NULL
};

json_t *
ib_unwrap(json_t *content, json_t *seen)
{
	for (int depth = 0; content != NULL && depth < 8; depth++)
	{
		json_t	   *inner = NULL;
		int			i;

		for (i = 0; wrappers[i] != NULL; i++)
			if ((inner = ib_member_obj(ib_member_obj(content, wrappers[i]), "message")) != NULL)
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
	const char *s = ib_member_str(c, "conversation");

	if (s == NULL)
		s = ib_member_str(ib_member_obj(c, "extendedTextMessage"), "text");
	for (int i = 0; s == NULL && captioned[i] != NULL; i++)
		s = ib_member_str(ib_member_obj(c, captioned[i]), "caption");
	if (s == NULL)
		s = ib_member_str(ib_member_obj(c, "buttonsMessage"), "contentText");
	return s;
}

static json_t *
media_of(json_t *m, const char *media_type)
{
	json_t	   *o = json_object();
	json_t	   *ptt = ib_member(m, "ptt");

	ib_set_str(o, "mediaType", media_type);
	ib_copy_str(o, "mimetype", m, "mimetype");
	if (ib_member(o, "mimetype") == NULL)
		ib_copy_str(o, "mimetype", m, "mimeType");
	ib_copy_num(o, "fileLength", m, "fileLength");
	ib_copy_str(o, "fileName", m, "fileName");
	ib_copy_str(o, "caption", m, "caption");
	ib_copy_num(o, "seconds", m, "seconds");
	ib_copy_num(o, "pageCount", m, "pageCount");
	if (ptt != NULL && json_is_boolean(ptt))
		json_object_set(o, "ptt", ptt);
	/* A broker that downloads media may add a plain URL; Baileys' own is encrypted. */
	ib_copy_str(o, "url", m, "mediaUrl");
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

		return ib_phone_of(line);
	}
	return NULL;
}

static json_t *
contact_card(json_t *c)
{
	json_t	   *o = json_object();

	ib_copy_str(o, "name", c, "displayName");
	ib_set_str(o, "phone", vcard_phone(ib_member_str(c, "vcard")));
	return o;
}

/* Quoted message of a content, from the contextInfo of its main part. */
static void
add_quote(json_t *out, json_t *main_part, json_t *content)
{
	json_t	   *ctx = ib_member_obj(main_part, "contextInfo");
	const char *key;
	json_t	   *v;
	json_t	   *quoted;

	if (ctx == NULL)
	{
		json_object_foreach(content, key, v)
		{
			if ((ctx = ib_member_obj(v, "contextInfo")) != NULL)
				break;
		}
	}
	if (ctx == NULL || ib_member_str(ctx, "stanzaId") == NULL)
		return;
	ib_set_str(out, "quotedMessageId", ib_member_str(ctx, "stanzaId"));
	ib_set_str(out, "quotedParticipant", ib_member_str(ctx, "participant"));
	quoted = ib_unwrap(ib_member_obj(ctx, "quotedMessage"), NULL);
	if (quoted != NULL)
		ib_set_str(out, "quotedText", text_of(quoted));
}

/*
 * The normalised message of a Baileys content (seed 000 types: text, image,
 * video, audio, document, buttons_response, list_response, poll, poll_choice;
 * plus sticker, location, contacts and reaction, which Baileys also carries).
 */
json_t *
ib_message_of(json_t *content, const char *id)
{
	json_t	   *out = json_object();
	json_t	   *seen = json_array();
	json_t	   *part = NULL;
	json_t	   *c;
	const char *type = NULL;
	const char *text;

	ib_set_str(out, "id", id);
	c = ib_unwrap(content, seen);
	text = text_of(c);

	if ((part = ib_member_obj(c, "reactionMessage")) != NULL)
	{
		json_t	   *r = json_object();

		type = "reaction";
		ib_set_str(r, "messageId", ib_member_str(ib_member_obj(part, "key"), "id"));
		ib_set_str(r, "emoji", ib_member_str(part, "text"));
		json_object_set_new(out, "reaction", r);
		text = ib_member_str(part, "text");
	}
	else if ((part = ib_member_obj(c, "pollCreationMessage")) != NULL ||
			 (part = ib_member_obj(c, "pollCreationMessageV2")) != NULL ||
			 (part = ib_member_obj(c, "pollCreationMessageV3")) != NULL)
	{
		json_t	   *p = json_object();
		json_t	   *opts = json_array();
		json_t	   *v;
		size_t		i;

		type = "poll";
		ib_copy_str(p, "name", part, "name");
		if (json_is_array(ib_member(part, "options")))
			json_array_foreach(ib_member(part, "options"), i, v)
				if (ib_member_str(v, "optionName") != NULL)
					json_array_append_new(opts, json_string(ib_member_str(v, "optionName")));
		json_object_set_new(p, "options", opts);
		ib_copy_num(p, "selectableCount", part, "selectableOptionsCount");
		json_object_set_new(out, "poll", p);
		text = ib_member_str(part, "name");
	}
	else if ((part = ib_member_obj(c, "pollUpdateMessage")) != NULL)
	{
		json_t	   *p = json_object();
		json_t	   *vote = ib_member_obj(part, "vote");
		json_t	   *chosen = ib_member(vote, "selectedOptions");

		type = "poll_choice";
		ib_set_str(p, "pollMessageId", ib_member_str(ib_member_obj(part, "pollCreationMessageKey"), "id"));
		if (ib_member(p, "pollMessageId") == NULL)
			ib_copy_str(p, "pollMessageId", part, "pollCreationMessageId");
		/* Votes are encrypted; a broker that decrypts them lists the options. */
		if (chosen != NULL && json_is_array(chosen))
			json_object_set(p, "selectedOptions", chosen);
		json_object_set_new(out, "pollChoice", p);
		text = NULL;
	}
	else if ((part = ib_member_obj(c, "listResponseMessage")) != NULL)
	{
		json_t	   *l = json_object();

		type = "list_response";
		ib_copy_str(l, "title", part, "title");
		ib_copy_str(l, "description", part, "description");
		ib_copy_str(l, "listId", part, "listId");
		ib_copy_str(l, "selectedRowId", ib_member_obj(part, "singleSelectReply"), "selectedRowId");
		json_object_set_new(out, "listResponse", l);
		text = ib_member_str(part, "title");
		if (text == NULL)
			text = ib_member_str(ib_member_obj(part, "singleSelectReply"), "selectedRowId");
	}
	else if ((part = ib_member_obj(c, "buttonsResponseMessage")) != NULL ||
			 (part = ib_member_obj(c, "templateButtonReplyMessage")) != NULL)
	{
		json_t	   *b = json_object();

		type = "buttons_response";
		ib_set_str(b, "selectedButtonId", ib_member_str(part, "selectedButtonId") ?
				ib_member_str(part, "selectedButtonId") : ib_member_str(part, "selectedId"));
		ib_copy_str(b, "selectedDisplayText", part, "selectedDisplayText");
		json_object_set_new(out, "buttonsResponse", b);
		text = ib_member_str(part, "selectedDisplayText");
	}
	else if ((part = ib_member_obj(c, "imageMessage")) != NULL)
		type = "image";
	else if ((part = ib_member_obj(c, "stickerMessage")) != NULL)
		type = "sticker";
	else if ((part = ib_member_obj(c, "videoMessage")) != NULL ||
			 (part = ib_member_obj(c, "ptvMessage")) != NULL)
		type = "video";
	else if ((part = ib_member_obj(c, "audioMessage")) != NULL)
		type = "audio";
	else if ((part = ib_member_obj(c, "documentMessage")) != NULL)
		type = "document";
	else if ((part = ib_member_obj(c, "locationMessage")) != NULL ||
			 (part = ib_member_obj(c, "liveLocationMessage")) != NULL)
	{
		json_t	   *l = json_object();

		type = "location";
		ib_copy_num(l, "latitude", part, "degreesLatitude");
		ib_copy_num(l, "longitude", part, "degreesLongitude");
		ib_copy_str(l, "name", part, "name");
		ib_copy_str(l, "address", part, "address");
		json_object_set_new(out, "location", l);
	}
	else if ((part = ib_member_obj(c, "contactMessage")) != NULL)
	{
		json_t	   *list = json_array();

		type = "contacts";
		json_array_append_new(list, contact_card(part));
		json_object_set_new(out, "contacts", list);
		text = ib_member_str(part, "displayName");
	}
	else if ((part = ib_member_obj(c, "contactsArrayMessage")) != NULL)
	{
		json_t	   *list = json_array();
		json_t	   *v;
		size_t		i;

		type = "contacts";
		if (json_is_array(ib_member(part, "contacts")))
			json_array_foreach(ib_member(part, "contacts"), i, v)
				json_array_append_new(list, contact_card(v));
		json_object_set_new(out, "contacts", list);
		text = ib_member_str(part, "displayName");
	}
	else if (ib_member_str(c, "conversation") != NULL)
		type = "text";
	else if ((part = ib_member_obj(c, "extendedTextMessage")) != NULL)
		type = "text";

	if (type != NULL && (strcmp(type, "image") == 0 || strcmp(type, "sticker") == 0 ||
						 strcmp(type, "video") == 0 || strcmp(type, "audio") == 0 ||
						 strcmp(type, "document") == 0))
		json_object_set_new(out, "media", media_of(part, type));

	if (type == NULL)
	{
		/* Already normalised by the broker, or a kind pgwa does not know. */
		const char *t = ib_member_str(content, "type");

		text = ib_member_str(content, "text");
		if (text == NULL)
			text = ib_member_str(content, "body");
		type = t ? t : (text ? "text" : "unknown");
		if (strcmp(type, "image") == 0 || strcmp(type, "video") == 0 ||
			strcmp(type, "audio") == 0 || strcmp(type, "document") == 0)
			json_object_set_new(out, "media", media_of(content, type));
		ib_copy_str(out, "quotedMessageId", content, "quotedMessageId");
		ib_copy_str(out, "quotedText", content, "quotedText");
	}
	json_object_set_new(out, "type", json_string(type));
	ib_set_str(out, "text", text);
	if (c != NULL)
		add_quote(out, part, c);
	if (json_array_size(seen) > 0)
		json_object_set(out, "wrappers", seen);
	return out;
}
