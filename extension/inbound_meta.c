/*
 * inbound_meta.c: WhatsApp Cloud API webhooks as inbound events, and the
 * checks that come with them (signature, subscription challenge).
 *
 * pgwa.normalize_meta(body jsonb) reads every entry and every change of a
 * Cloud API webhook ({"object": "whatsapp_business_account", "entry": [...]}),
 * a 360dialog envelope ({"id", "event", "data": value}) or a bare change
 * value, and returns {"events": [...], "ignored": [...]}:
 *
 *   field "messages"      each message as a seed-000 envelope, each status
 *   field "history"       {"kind": "history", "chunks": [...]}
 *   smb_app_state_sync    {"kind": "state_sync", "contacts": [...]}
 *   smb_message_echoes    {"kind": "echoes", "echoes": [...]}
 *   (inbound_coexistence.c reads these three)
 *
 * A batch is never read only in part: some gateways read entry[0].changes[0]
 * and lose the rest, and a history chunk can carry thousands of messages, so
 * everything is walked once, with a hash of the change's contacts.
 */
#include "postgres.h"

#include "common/cryptohash.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "fmgr.h"
#include "port.h"

#include "inbound_dialects.h"

PG_FUNCTION_INFO_V1(pgwa_normalize_meta);
PG_FUNCTION_INFO_V1(pgwa_verify_meta_signature);
PG_FUNCTION_INFO_V1(pgwa_meta_verify_challenge);

#define PGWA_ERRCODE_FORBIDDEN	MAKE_SQLSTATE('P','W','4','0','3')

typedef struct meta_change
{
	const char *path;			/* of the value */
	const char *phone_number_id;
	const char *display_phone;
	const char *waba_id;
	json_t	   *names;			/* wa_id -> profile name */
	json_t	   *only_name;		/* the name when the change has one contact */
} meta_change;

static void
media(json_t *out, json_t *m, const char *type)
{
	json_object_set_new(out, "type", json_string(type));
	inb_copy_str(out, "mediaId", m, "id");
	inb_copy_str(out, "mimetype", m, "mime_type");
	inb_copy_str(out, "sha256", m, "sha256");
	inb_copy_str(out, "caption", m, "caption");
	inb_copy_str(out, "fileName", m, "filename");
	inb_copy_str(out, "url", m, "url");
	if (json_is_boolean(json_object_get(m, "voice")))
		json_object_set(out, "ptt", json_object_get(m, "voice"));
	if (json_is_boolean(json_object_get(m, "animated")))
		json_object_set(out, "isAnimated", json_object_get(m, "animated"));
}

static json_t *
shared_contact(json_t *c)
{
	json_t	   *out = json_object();
	json_t	   *phones = json_object_get(c, "phones");
	char	   *phone = NULL;
	size_t		i;
	json_t	   *p;

	inb_copy_str(out, "name", json_object_get(c, "name"), "formatted_name");
	/* The WhatsApp id of any phone first, else the first readable number. */
	json_array_foreach(phones, i, p)
		if (phone == NULL)
			phone = inb_phone(inb_loose_str(p, "wa_id"));
	json_array_foreach(phones, i, p)
		if (phone == NULL)
			phone = inb_phone(inb_loose_str(p, "phone"));
	inb_set_str(out, "phone", phone);
	if (json_is_array(phones))
		json_object_set(out, "phones", phones);
	return out;
}

/* The message object of a Cloud API message; type is its "type". */
json_t *
pgwa_meta_content(json_t *m, const char *type, const char *path)
{
	json_t	   *out = json_object();
	json_t	   *c = json_object_get(m, type);
	json_t	   *ctx = inb_obj(m, "context", path);

	if (c != NULL && !json_is_null(c) && !json_is_object(c) && strcmp(type, "contacts") != 0)
	{
		char	   *field = inb_path(path, type);

		inb_invalid(field, "%s must be an object", field);
	}

	if (strcmp(type, "text") == 0)
	{
		json_object_set_new(out, "type", json_string("text"));
		inb_copy_str(out, "text", c, "body");
	}
	else if (strcmp(type, "image") == 0 || strcmp(type, "video") == 0 ||
			 strcmp(type, "audio") == 0 || strcmp(type, "document") == 0 ||
			 strcmp(type, "sticker") == 0)
		media(out, c, type);
	else if (strcmp(type, "location") == 0)
	{
		json_t	   *loc = json_object();

		json_object_set_new(out, "type", json_string("location"));
		if (json_is_number(json_object_get(c, "latitude")))
			json_object_set(loc, "latitude", json_object_get(c, "latitude"));
		if (json_is_number(json_object_get(c, "longitude")))
			json_object_set(loc, "longitude", json_object_get(c, "longitude"));
		inb_copy_str(loc, "name", c, "name");
		inb_copy_str(loc, "address", c, "address");
		inb_copy_str(loc, "url", c, "url");
		json_object_set_new(out, "location", loc);
	}
	else if (strcmp(type, "contacts") == 0)
	{
		json_t	   *list = json_array();
		json_t	   *v;
		size_t		i;

		json_object_set_new(out, "type", json_string("contacts"));
		json_array_foreach(inb_arr(m, "contacts", path), i, v)
			if (json_is_object(v))
				json_array_append_new(list, shared_contact(v));
		json_object_set_new(out, "contacts", list);
	}
	else if (strcmp(type, "interactive") == 0)
	{
		const char *itype = json_is_string(json_object_get(c, "type"))
			? json_string_value(json_object_get(c, "type")) : "";
		json_t	   *reply = json_object_get(c, itype);
		json_t	   *r = json_object();

		if (strcmp(itype, "button_reply") == 0 || strcmp(itype, "list_reply") == 0)
		{
			bool		list = itype[0] == 'l';

			json_object_set_new(out, "type", json_string(list ? "list_response" : "buttons_response"));
			inb_copy_str(r, "id", reply, "id");
			inb_copy_str(r, "title", reply, "title");
			inb_copy_str(r, "description", reply, "description");
			inb_copy_str(out, "text", reply, "title");
			json_object_set_new(out, list ? "listResponse" : "buttonsResponse", r);
		}
		else
		{
			/* Flows (nfm_reply) and whatever interactive kind comes next. */
			json_object_set_new(out, "type", json_string("interactive"));
			json_object_set_new(r, "type", json_string(itype));
			inb_copy_str(r, "name", reply, "name");
			inb_copy_str(r, "body", reply, "body");
			inb_copy_str(r, "response", reply, "response_json");
			inb_copy_str(out, "text", reply, "body");
			json_object_set_new(out, "interactive", r);
		}
	}
	else if (strcmp(type, "button") == 0)
	{
		/* A quick-reply button of a template. */
		json_t	   *b = json_object();

		json_object_set_new(out, "type", json_string("buttons_response"));
		inb_copy_str(b, "id", c, "payload");
		inb_copy_str(b, "title", c, "text");
		inb_copy_str(out, "text", c, "text");
		json_object_set_new(out, "buttonsResponse", b);
	}
	else if (strcmp(type, "reaction") == 0)
	{
		json_t	   *r = json_object();
		json_t	   *emoji = json_object_get(c, "emoji");

		json_object_set_new(out, "type", json_string("reaction"));
		inb_copy_str(r, "messageId", c, "message_id");
		/* No emoji: the reaction was taken back. */
		json_object_set_new(r, "emoji", json_string(json_is_string(emoji) ? json_string_value(emoji) : ""));
		if (!json_is_string(emoji) || json_string_length(emoji) == 0)
			json_object_set_new(r, "removed", json_true());
		json_object_set_new(out, "reaction", r);
	}
	else if (strcmp(type, "order") == 0 || strcmp(type, "system") == 0)
	{
		json_object_set_new(out, "type", json_string(type));
		inb_copy_str(out, "text", c, type[0] == 'o' ? "text" : "body");
		if (c != NULL)
			json_object_set(out, type, c);
	}
	else
	{
		json_object_set_new(out, "type", json_string("unsupported"));
		if (strcmp(type, "unsupported") != 0 && strcmp(type, "unknown") != 0)
			json_object_set_new(out, "rawType", json_string(type));
	}

	inb_copy(out, "errors", m, "errors");
	inb_copy(out, "referral", m, "referral");
	if (ctx != NULL)
	{
		inb_copy_str(out, "quotedMessageId", ctx, "id");
		inb_copy_str(out, "quotedFrom", ctx, "from");
		if (json_is_true(json_object_get(ctx, "forwarded")) ||
			json_is_true(json_object_get(ctx, "frequently_forwarded")))
			json_object_set_new(out, "forwarded", json_true());
		inb_copy(out, "referredProduct", ctx, "referred_product");
	}
	return out;
}

static const char *
change_iso(json_t *obj, const char *path)
{
	int64		ms;

	if (inb_epoch_ms(json_object_get(obj, "timestamp"), inb_path(path, "timestamp"), &ms))
		return inb_iso(ms);
	return NULL;
}

static void
meta_message(inb_result *res, meta_change *ch, json_t *m, const char *path)
{
	const char *id;
	const char *type;
	const char *from;
	const char *iso;
	char	   *phone;
	json_t	   *name;
	json_t	   *contact = json_object();
	json_t	   *metadata = json_object();
	json_t	   *broker = json_object();
	json_t	   *raw_key = json_object();
	json_t	   *meta_contact = json_object();
	json_t	   *ev = json_object();

	if (!json_is_object(m))
		inb_invalid(path, "%s must be an object", path);
	id = inb_req_str(m, "id", path);
	type = inb_req_str(m, "type", path);
	from = inb_str(m, "from", path);
	iso = change_iso(m, path);
	phone = inb_phone(from);

	inb_set_str(contact, "phone", phone);
	name = from ? json_object_get(ch->names, from) : NULL;
	if (name == NULL)
		name = ch->only_name;
	if (name != NULL)
	{
		/* Cloud API gives only the profile name: name falls back to it. */
		json_object_set(contact, "name", name);
		json_object_set(contact, "pushName", name);
	}

	json_object_set_new(broker, "type", json_string("meta"));
	json_object_set_new(broker, "direction", json_string("inbound"));
	json_object_set_new(broker, "messageType", json_string(type));
	json_object_set_new(broker, "phoneNumberId", json_string(ch->phone_number_id));
	inb_set_str(broker, "displayPhoneNumber", ch->display_phone);
	inb_set_str(broker, "wabaId", ch->waba_id);
	json_object_set_new(raw_key, "id", json_string(id));
	inb_set_str(raw_key, "from", from);
	json_object_set_new(raw_key, "phoneNumberId", json_string(ch->phone_number_id));
	json_object_set_new(meta_contact, "isGroup", json_false());
	inb_set_str(meta_contact, "waId", from);
	json_object_set_new(metadata, "broker", broker);
	json_object_set_new(metadata, "source", json_string("meta_cloud"));
	json_object_set_new(metadata, "rawKey", raw_key);
	inb_copy(metadata, "brokerMessageTimestamp", m, "timestamp");
	json_object_set_new(metadata, "contact", meta_contact);

	json_object_set_new(ev, "kind", json_string("message"));
	json_object_set_new(ev, "envelope",
						inb_envelope(id, ch->phone_number_id, iso, contact,
									 pgwa_meta_content(m, type, path), metadata));
	inb_event(res, ev);
}

static void
meta_status(inb_result *res, meta_change *ch, json_t *s, const char *path)
{
	static const char *const known[] = {"sent", "delivered", "read", "played", "failed", NULL};
	const char *id;
	const char *status;
	const char *recipient;
	const char *iso;
	char	   *phone;
	json_t	   *errors;
	json_t	   *ev;
	bool		ok = false;

	if (!json_is_object(s))
		inb_invalid(path, "%s must be an object", path);
	id = inb_req_str(s, "id", path);
	status = inb_req_str(s, "status", path);
	recipient = inb_str(s, "recipient_id", path);
	errors = inb_arr(s, "errors", path);
	iso = change_iso(s, path);
	for (int i = 0; known[i]; i++)
		ok = ok || strcmp(status, known[i]) == 0;
	if (!ok)
	{
		inb_ignore(res, "unknown_status", id);
		return;
	}

	phone = inb_phone(recipient);
	ev = json_object();
	json_object_set_new(ev, "kind", json_string("status"));
	json_object_set_new(ev, "brokerMessageId", json_string(id));
	json_object_set_new(ev, "status", json_string(status));
	json_object_set_new(ev, "timestamp", iso ? json_string(iso) : json_null());
	/* A group id is no phone but still names the recipient. */
	json_object_set_new(ev, "recipient", phone ? json_string(phone)
						: recipient ? json_string(recipient) : json_null());
	json_object_set_new(ev, "instanceId", json_string(ch->phone_number_id));
	inb_copy(ev, "conversation", s, "conversation");
	inb_copy(ev, "pricing", s, "pricing");
	inb_copy(ev, "bizOpaqueCallbackData", s, "biz_opaque_callback_data");
	if (strcmp(status, "failed") == 0)
	{
		json_t	   *first = errors ? json_array_get(errors, 0) : NULL;

		if (json_is_object(first))
			json_object_set(ev, "error", first);
		else
			json_object_set_new(ev, "error", json_object());
		if (errors != NULL && json_array_size(errors) > 1)
			json_object_set(ev, "errors", errors);
	}
	inb_event(res, ev);
}

/* wa_id -> profile name, so each message finds its sender's name at once. */
static void
read_contacts(meta_change *ch, json_t *value)
{
	json_t	   *contacts = inb_arr(value, "contacts", ch->path);
	json_t	   *c;
	size_t		i;

	ch->names = json_object();
	ch->only_name = NULL;
	json_array_foreach(contacts, i, c)
	{
		char	   *path = inb_index(ch->path, "contacts", i);
		json_t	   *name;
		const char *wa_id;

		if (!json_is_object(c))
			inb_invalid(path, "%s must be an object", path);
		wa_id = inb_str(c, "wa_id", path);
		name = json_object_get(inb_obj(c, "profile", path), "name");
		if (!json_is_string(name) || json_string_length(name) == 0)
			continue;
		if (wa_id != NULL)
			json_object_set(ch->names, wa_id, name);
		if (json_array_size(contacts) == 1)
			ch->only_name = name;
	}
}

static void
messages_change(inb_result *res, meta_change *ch, json_t *value)
{
	char	   *meta_path = inb_path(ch->path, "metadata");
	json_t	   *metadata = inb_obj(value, "metadata", ch->path);
	json_t	   *list;
	json_t	   *v;
	size_t		i;
	bool		any = false;

	if (metadata == NULL)
		inb_invalid(meta_path, "%s is required", meta_path);
	ch->phone_number_id = inb_req_str(metadata, "phone_number_id", meta_path);
	ch->display_phone = inb_str(metadata, "display_phone_number", meta_path);
	read_contacts(ch, value);

	if ((list = inb_arr(value, "messages", ch->path)) != NULL)
		json_array_foreach(list, i, v)
			meta_message(res, ch, v, inb_index(ch->path, "messages", i));
	any = any || list != NULL;
	if ((list = inb_arr(value, "statuses", ch->path)) != NULL)
		json_array_foreach(list, i, v)
			meta_status(res, ch, v, inb_index(ch->path, "statuses", i));
	any = any || list != NULL;
	/* Errors of the change itself (not of a message): recorded, not applied. */
	if ((list = inb_arr(value, "errors", ch->path)) != NULL)
		json_array_foreach(list, i, v)
		{
			json_t	   *item = json_object();
			const char *code = json_is_object(v) ? inb_loose_str(v, "code") : NULL;

			json_object_set_new(item, "reason", json_string("webhook_error"));
			json_object_set_new(item, "ref", code ? json_string(code) : json_null());
			if (json_is_object(v))
				json_object_set(item, "error", v);
			json_array_append_new(res->ignored, item);
		}
	any = any || list != NULL;
	if (!any)
		inb_ignore(res, "empty_change", ch->path[0] ? ch->path : "value");
}

/* Coexistence fields: read by inbound_coexistence.c, applied by the history pipeline. */
static void
coexistence_change(inb_result *res, meta_change *ch, json_t *value, const char *kind)
{
	char	   *meta_path = inb_path(ch->path, "metadata");
	json_t	   *metadata = inb_obj(value, "metadata", ch->path);
	const char *pnid = metadata ? inb_str(metadata, "phone_number_id", meta_path) : NULL;
	json_t	   *ev = json_object();

	json_object_set_new(ev, "kind", json_string(kind));
	json_object_set_new(ev, "phoneNumberId", pnid ? json_string(pnid) : json_null());
	inb_set_str(ev, "wabaId", ch->waba_id);
	pgwa_meta_coexistence(ev, kind, value,
						  metadata ? inb_str(metadata, "display_phone_number", meta_path) : NULL, ch->path);
	inb_event(res, ev);
}

static void
process_change(inb_result *res, const char *field, json_t *value,
			   const char *waba_id, const char *value_path)
{
	meta_change ch = {0};

	ch.path = value_path;
	ch.waba_id = waba_id;
	if (strcmp(field, "messages") == 0)
		messages_change(res, &ch, value);
	else if (strcmp(field, "history") == 0)
		coexistence_change(res, &ch, value, "history");
	else if (strcmp(field, "smb_app_state_sync") == 0)
		coexistence_change(res, &ch, value, "state_sync");
	else if (strcmp(field, "smb_message_echoes") == 0)
		coexistence_change(res, &ch, value, "echoes");
	else
		inb_ignore(res, "unsupported_field", field);
}

/* The field a bare value belongs to, from the members it carries. */
static const char *
infer_field(json_t *value)
{
	if (json_object_get(value, "history") != NULL)
		return "history";
	if (json_object_get(value, "state_sync") != NULL)
		return "smb_app_state_sync";
	if (json_object_get(value, "message_echoes") != NULL)
		return "smb_message_echoes";
	return "messages";
}

static bool
known_field(const char *s)
{
	return s != NULL && (strcmp(s, "messages") == 0 || strcmp(s, "history") == 0 ||
						 strcmp(s, "smb_app_state_sync") == 0 ||
						 strcmp(s, "smb_message_echoes") == 0);
}

static void
walk_entries(inb_result *res, json_t *body, const char *prefix)
{
	json_t	   *object = json_object_get(body, "object");
	char	   *entry_field = inb_path(prefix, "entry");
	json_t	   *entries;
	json_t	   *e;
	size_t		i;

	if (object != NULL && (!json_is_string(object) ||
						   strcmp(json_string_value(object), "whatsapp_business_account") != 0))
	{
		char	   *field = inb_path(prefix, "object");

		inb_invalid(field, "%s must be \"whatsapp_business_account\"", field);
	}
	entries = inb_arr(body, "entry", prefix);
	if (entries == NULL)
		inb_invalid(entry_field, "%s is required", entry_field);

	json_array_foreach(entries, i, e)
	{
		char	   *epath = inb_index(prefix, "entry", i);
		json_t	   *changes;
		json_t	   *c;
		size_t		j;
		const char *waba_id;

		if (!json_is_object(e))
			inb_invalid(epath, "%s must be an object", epath);
		waba_id = inb_loose_str(e, "id");
		changes = inb_arr(e, "changes", epath);
		if (changes == NULL)
		{
			char	   *field = inb_path(epath, "changes");

			inb_invalid(field, "%s is required", field);
		}
		json_array_foreach(changes, j, c)
		{
			char	   *cpath = inb_index(epath, "changes", j);
			char	   *vpath = inb_path(cpath, "value");
			const char *field;
			json_t	   *value;

			if (!json_is_object(c))
				inb_invalid(cpath, "%s must be an object", cpath);
			field = inb_req_str(c, "field", cpath);
			value = inb_obj(c, "value", cpath);
			if (value == NULL)
				inb_invalid(vpath, "%s is required", vpath);
			process_change(res, field, value, waba_id, vpath);
		}
	}
}

json_t *
pgwa_meta_events(json_t *body)
{
	inb_result	res;

	if (!json_is_object(body))
		inb_invalid("body", "the body must be a JSON object");
	res.events = json_array();
	res.ignored = json_array();

	if (json_object_get(body, "object") != NULL || json_object_get(body, "entry") != NULL)
		walk_entries(&res, body, NULL);
	else if (json_object_get(body, "data") != NULL)
	{
		/* 360dialog: {"id", "event", "data"}, data being a value or a body. */
		json_t	   *data = inb_obj(body, "data", NULL);
		const char *event = inb_str(body, "event", NULL);

		if (data == NULL)
			inb_invalid("data", "data must be an object");
		if (json_object_get(data, "object") != NULL || json_object_get(data, "entry") != NULL)
			walk_entries(&res, data, "data");
		else
			process_change(&res, known_field(event) ? event : infer_field(data), data, NULL, "data");
	}
	else if (json_object_get(body, "messaging_product") != NULL ||
			 json_object_get(body, "metadata") != NULL)
		process_change(&res, infer_field(body), body, NULL, "");
	else
		inb_invalid("entry", "entry is required");
	return inb_result_json(&res);
}

Datum
pgwa_normalize_meta(PG_FUNCTION_ARGS)
{
	Jsonb	   *in = PG_GETARG_JSONB_P(0);

	PG_RETURN_DATUM(inb_run(in, pgwa_meta_events));
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * X-Hub-Signature-256: "sha256=" and the hex HMAC-SHA256 of the raw body
 * keyed by the app secret. Any doubt (no header, no secret, bad hex) is
 * false; the comparison takes the same time wherever the digests differ.
 */
Datum
pgwa_verify_meta_signature(PG_FUNCTION_ARGS)
{
	text	   *body;
	char	   *header;
	text	   *secret;
	uint8		given[PG_SHA256_DIGEST_LENGTH];
	uint8		computed[PG_SHA256_DIGEST_LENGTH];
	pg_hmac_ctx *ctx;
	char	   *hex;
	bool		ok;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_BOOL(false);
	body = PG_GETARG_TEXT_PP(0);
	header = text_to_cstring(PG_GETARG_TEXT_PP(1));
	secret = PG_GETARG_TEXT_PP(2);
	if (VARSIZE_ANY_EXHDR(secret) == 0)
		PG_RETURN_BOOL(false);

	hex = header;
	while (*hex == ' ' || *hex == '\t')
		hex++;
	if (pg_strncasecmp(hex, "sha256=", 7) != 0)
		PG_RETURN_BOOL(false);
	hex += 7;
	for (int i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
	{
		int			hi = hex_value(hex[2 * i]);
		int			lo = hi < 0 ? -1 : hex_value(hex[2 * i + 1]);

		if (lo < 0)
			PG_RETURN_BOOL(false);
		given[i] = (uint8) (hi << 4 | lo);
	}
	hex += 2 * PG_SHA256_DIGEST_LENGTH;
	while (*hex == ' ' || *hex == '\t')
		hex++;
	if (*hex != '\0')
		PG_RETURN_BOOL(false);

	ctx = pg_hmac_create(PG_SHA256);
	if (ctx == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	if (pg_hmac_init(ctx, (uint8 *) VARDATA_ANY(secret), VARSIZE_ANY_EXHDR(secret)) < 0 ||
		pg_hmac_update(ctx, (uint8 *) VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body)) < 0 ||
		pg_hmac_final(ctx, computed, sizeof(computed)) < 0)
	{
		const char *msg = pg_hmac_error(ctx);

		pg_hmac_free(ctx);
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR),
						errmsg("could not compute HMAC-SHA256: %s", msg)));
	}
	pg_hmac_free(ctx);
	ok = timingsafe_bcmp(given, computed, sizeof(computed)) == 0;
	PG_RETURN_BOOL(ok);
}

/* Compares two strings in time that depends only on the given one's length. */
static bool
same_secret(const char *given, const char *expected)
{
	size_t		n = strlen(given);
	size_t		m = strlen(expected);
	unsigned char diff = n != m;

	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char) given[i] ^ (unsigned char) (m ? expected[i % m] : 0);
	return diff == 0;
}

/*
 * The subscription handshake: GET ?hub.mode=subscribe&hub.verify_token=...
 * &hub.challenge=... answers the challenge when the token is ours.
 */
Datum
pgwa_meta_verify_challenge(PG_FUNCTION_ARGS)
{
	char	   *expected;
	json_t	   *q;
	const char *mode;
	const char *token;
	const char *challenge;

	if (PG_ARGISNULL(1) || VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(1)) == 0)
		ereport(ERROR,
				(errcode(PGWA_ERRCODE_FORBIDDEN),
				 errmsg("no verify token is configured"),
				 err_generic_string(PG_DIAG_COLUMN_NAME, "hub.verify_token")));
	expected = text_to_cstring(PG_GETARG_TEXT_PP(1));

	pgwa_use_palloc_for_jansson();
	q = PG_ARGISNULL(0) ? json_object() : inb_load(PG_GETARG_JSONB_P(0));
	mode = inb_loose_str(q, "hub.mode");
	token = inb_loose_str(q, "hub.verify_token");
	challenge = inb_loose_str(q, "hub.challenge");
	if (mode == NULL || strcmp(mode, "subscribe") != 0)
		ereport(ERROR,
				(errcode(PGWA_ERRCODE_FORBIDDEN),
				 errmsg("hub.mode must be \"subscribe\""),
				 err_generic_string(PG_DIAG_COLUMN_NAME, "hub.mode")));
	if (token == NULL || !same_secret(token, expected))
		ereport(ERROR,
				(errcode(PGWA_ERRCODE_FORBIDDEN),
				 errmsg("hub.verify_token does not match"),
				 err_generic_string(PG_DIAG_COLUMN_NAME, "hub.verify_token")));
	if (challenge == NULL || challenge[0] == '\0')
		inb_invalid("hub.challenge", "hub.challenge is required");
	PG_RETURN_TEXT_P(cstring_to_text(challenge));
}
