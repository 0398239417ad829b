/*
 * inbound_evolution.c: Evolution API webhooks as inbound events.
 *
 * pgwa.normalize_evolution(body jsonb) reads one webhook body of Evolution
 * API v2 ({"event": "messages.upsert", "instance": ..., "data": ...}) or v1
 * (event names such as MESSAGES_UPSERT, data.messages arrays) and returns
 * {"events": [...], "ignored": [...]}:
 *
 *   messages.upsert    received messages as seed-000 envelopes; the
 *                      instance's own messages (key.fromMe) as echoes
 *   send.message       echoes
 *   messages.update    delivery statuses
 *   connection.update  connection state
 *   qrcode.updated     the QR code to pair the instance
 *
 * It touches no table: the inbound pipeline decides what to do with each
 * event. The message bodies are Baileys protobuf objects serialised to JSON;
 * the seed-000 raw fallback rules apply (protocol messages, stubs and history
 * notifications are ignored; groups keep the participant).
 */
#include "postgres.h"

#include "fmgr.h"

#include "inbound_dialects.h"

PG_FUNCTION_INFO_V1(pgwa_normalize_evolution);

typedef struct evo_ctx
{
	const char *instance;
	const char *fallback_iso;	/* the body's date_time, when readable */
	inb_result	res;
} evo_ctx;

/* "MESSAGES_UPSERT", "messages-upsert" and "messages.upsert" are one event. */
static char *
canonical_event(const char *event)
{
	char	   *s = pstrdup(event);

	for (char *p = s; *p; p++)
	{
		if (*p == '_' || *p == '-')
			*p = '.';
		else
			*p = pg_ascii_tolower((unsigned char) *p);
	}
	return s;
}

/* A copy of the message key, for debugging without the whole payload. */
static json_t *
raw_key(json_t *key)
{
	static const char *const fields[] = {
		"remoteJid", "fromMe", "id", "participant", "senderPn", "senderLid",
		"remoteJidAlt", "participantAlt", "participantPn", "participantLid",
		"addressingMode", NULL
	};
	json_t	   *out = json_object();

	for (int i = 0; fields[i]; i++)
	{
		json_t	   *v = json_object_get(key, fields[i]);

		if (json_is_string(v) || json_is_boolean(v))
			json_object_set(out, fields[i], v);
	}
	return out;
}

/* First of several members that is a string, NULL if none is. */
static const char *
first_str(json_t *obj, const char *const *keys)
{
	for (int i = 0; keys[i]; i++)
	{
		json_t	   *v = json_object_get(obj, keys[i]);

		if (json_is_string(v) && json_string_length(v) > 0)
			return json_string_value(v);
	}
	return NULL;
}

/*
 * Who a message is from (or, for an echo, to): the phone of the chat, or of
 * the participant in a group. A LID (xxx@lid) hides the phone; Baileys and
 * Evolution give it in senderPn / remoteJidAlt / participantAlt when known.
 */
static char *
resolve_party(json_t *key, json_t *data, const char *remote_jid, bool group,
			  json_t *meta_contact)
{
	static const char *const chat_alts[] = {"senderPn", "remoteJidAlt", NULL};
	static const char *const part_alts[] = {"participantPn", "participantAlt", "senderPn", NULL};
	static const char *const part_keys[] = {"participant", NULL};
	const char *jid = remote_jid;
	const char *alt;
	char	   *phone;

	if (group)
	{
		jid = first_str(key, part_keys);
		if (jid == NULL)
			jid = first_str(data, part_keys);
		inb_set_str(meta_contact, "participantJid", jid);
		inb_set_str(meta_contact, "groupJid", remote_jid);
		if (jid == NULL)
			return NULL;
	}
	alt = first_str(key, group ? part_alts : chat_alts);
	if (alt == NULL && !group)
		alt = first_str(data, chat_alts);

	phone = inb_phone(jid);
	if (phone == NULL)
		phone = inb_phone(alt);
	if (inb_ends_with(jid, "@lid"))
		json_object_set_new(meta_contact, "lid", json_string(jid));
	else if (alt != NULL && inb_ends_with(alt, "@lid"))
		json_object_set_new(meta_contact, "lid", json_string(alt));
	return phone;
}

static const char *
message_iso(evo_ctx *ctx, json_t *m, const char *path)
{
	int64		ms;
	char	   *field = inb_path(path, "messageTimestamp");

	if (inb_epoch_ms(json_object_get(m, "messageTimestamp"), field, &ms))
		return inb_iso(ms);
	return ctx->fallback_iso;
}

/*
 * Why a message carries nothing for the inbox (seed 000 raw fallback rules),
 * or NULL. msg is the unwrapped message object, possibly NULL.
 */
static const char *
ignore_reason(json_t *m, const char *remote_jid, json_t *msg)
{
	json_t	   *stub = json_object_get(m, "messageStubType");

	if (stub != NULL && !json_is_null(stub) && !(json_is_integer(stub) && json_integer_value(stub) == 0))
		return "message_stub";
	if (strcmp(remote_jid, "status@broadcast") == 0)
		return "status_broadcast";
	if (inb_ends_with(remote_jid, "@broadcast") || inb_ends_with(remote_jid, "@newsletter"))
		return "broadcast_or_newsletter";
	if (msg == NULL)
		return "empty_message";
	if (json_object_get(msg, "historySyncNotification") != NULL ||
		json_object_get(json_object_get(msg, "protocolMessage"), "historySyncNotification") != NULL)
		return "history_sync_notification";
	if (json_object_get(msg, "protocolMessage") != NULL)
		return "protocol_message";
	return NULL;
}

/* The instance's own message, sent from the phone or through the API. */
static json_t *
echo_event(evo_ctx *ctx, json_t *m, json_t *key, const char *id,
		   const char *remote_jid, const char *iso, json_t *content)
{
	json_t	   *ev = json_object();
	json_t	   *scratch = json_object();

	/* The other party is the chat, never a participant; groups have no phone. */
	char	   *phone = resolve_party(key, m, remote_jid, false, scratch);

	json_decref(scratch);
	json_object_set_new(ev, "kind", json_string("echo"));
	json_object_set_new(ev, "instanceId", json_string(ctx->instance));
	json_object_set_new(ev, "brokerMessageId", json_string(id));
	json_object_set_new(ev, "to", phone ? json_string(phone) : json_null());
	json_object_set_new(ev, "remoteJid", json_string(remote_jid));
	json_object_set_new(ev, "message", content);
	json_object_set_new(ev, "timestamp", iso ? json_string(iso) : json_null());
	inb_copy_str(ev, "status", m, "status");
	json_object_set_new(ev, "rawKey", raw_key(key));
	return ev;
}

static json_t *
message_event(evo_ctx *ctx, json_t *m, json_t *key, const char *id,
			  const char *remote_jid, const char *iso, json_t *content,
			  const char *kind)
{
	bool		group = inb_ends_with(remote_jid, "@g.us");
	json_t	   *meta_contact = json_object();
	json_t	   *contact = json_object();
	json_t	   *metadata = json_object();
	json_t	   *broker = json_object();
	json_t	   *ev = json_object();
	json_t	   *push = json_object_get(m, "pushName");
	json_t	   *type = json_object_get(m, "messageType");

	json_object_set_new(meta_contact, "isGroup", json_boolean(group));
	json_object_set_new(meta_contact, "jid", json_string(remote_jid));
	inb_set_str(contact, "phone", resolve_party(key, m, remote_jid, group, meta_contact));
	if (json_is_string(push) && json_string_length(push) > 0)
	{
		/* Seed 000: the display name falls back to pushName. */
		json_object_set(contact, "name", push);
		json_object_set(contact, "pushName", push);
	}
	inb_copy_str(contact, "verifiedBizName", m, "verifiedBizName");

	json_object_set_new(broker, "type", json_string("evolution"));
	json_object_set_new(broker, "direction", json_string("inbound"));
	json_object_set_new(broker, "messageType",
						json_string(json_is_string(type) ? json_string_value(type) : kind));
	inb_copy_str(broker, "instanceUuid", m, "instanceId");
	inb_copy_str(broker, "source", m, "source");
	inb_copy_str(broker, "owner", m, "owner");
	json_object_set_new(metadata, "broker", broker);
	json_object_set_new(metadata, "source", json_string("evolution"));
	json_object_set_new(metadata, "rawKey", raw_key(key));
	inb_copy(metadata, "brokerMessageTimestamp", m, "messageTimestamp");
	json_object_set_new(metadata, "contact", meta_contact);

	json_object_set_new(ev, "kind", json_string("message"));
	json_object_set_new(ev, "envelope",
						inb_envelope(id, ctx->instance, iso, contact, content, metadata));
	return ev;
}

/* One message of messages.upsert or send.message. */
static void
evo_message(evo_ctx *ctx, json_t *m, const char *path, bool echo)
{
	char	   *key_path = inb_path(path, "key");
	json_t	   *key;
	json_t	   *msg;
	json_t	   *from_me;
	json_t	   *content;
	const char *id;
	const char *remote_jid;
	const char *kind = NULL;
	const char *iso;
	const char *reason;

	if (!json_is_object(m))
		inb_invalid(path, "%s must be an object", path);
	key = json_object_get(m, "key");
	if (!json_is_object(key))
		inb_invalid(key_path, "%s must be an object", key_path);
	id = inb_req_str(key, "id", key_path);
	remote_jid = inb_req_str(key, "remoteJid", key_path);
	from_me = json_object_get(key, "fromMe");
	if (from_me != NULL && !json_is_null(from_me) && !json_is_boolean(from_me))
		inb_invalid(inb_path(key_path, "fromMe"), "%s.fromMe must be true or false", key_path);
	msg = inb_obj(m, "message", path);
	inb_str(m, "pushName", path);
	iso = message_iso(ctx, m, path);

	content = json_object();
	if (msg != NULL)
		msg = evo_unwrap(msg, content);
	reason = ignore_reason(m, remote_jid, msg);
	if (reason == NULL && evo_content(msg, m, content, &kind) == NULL)
		reason = "empty_message";
	if (reason != NULL)
	{
		json_decref(content);
		inb_ignore(&ctx->res, reason, id);
	}
	else if (echo || json_is_true(from_me))
		inb_event(&ctx->res, echo_event(ctx, m, key, id, remote_jid, iso, content));
	else
		inb_event(&ctx->res, message_event(ctx, m, key, id, remote_jid, iso, content, kind));
}

/* Baileys' WAMessageStatus, by number and by name. */
static const char *
map_status(json_t *v, bool *known)
{
	static const char *const names[] = {"ERROR", "PENDING", "SERVER_ACK", "DELIVERY_ACK", "READ", "PLAYED"};
	static const char *const mapped[] = {"failed", NULL, "sent", "delivered", "read", "played"};
	const char *s;

	*known = true;
	if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= 5)
		return mapped[json_integer_value(v)];
	if (json_is_string(v))
	{
		s = json_string_value(v);
		for (int i = 0; i < 6; i++)
			if (pg_strcasecmp(s, names[i]) == 0)
				return mapped[i];
	}
	*known = false;
	return NULL;
}

/* One item of messages.update: {keyId, remoteJid, status} or {key, update}. */
static void
evo_status(evo_ctx *ctx, json_t *u, const char *path)
{
	json_t	   *key;
	json_t	   *update;
	json_t	   *status;
	json_t	   *from_me;
	json_t	   *ev;
	const char *id;
	const char *remote_jid;
	const char *mapped;
	const char *reason = NULL;
	const char *iso = ctx->fallback_iso;
	char	   *phone;
	bool		known;
	int64		ms;

	if (!json_is_object(u))
		inb_invalid(path, "%s must be an object", path);
	key = inb_obj(u, "key", path);
	update = inb_obj(u, "update", path);
	id = inb_str(u, "keyId", path);
	if (id == NULL && key != NULL)
		id = inb_str(key, "id", inb_path(path, "key"));
	remote_jid = inb_str(u, "remoteJid", path);
	if (remote_jid == NULL && key != NULL)
		remote_jid = inb_str(key, "remoteJid", inb_path(path, "key"));
	from_me = json_object_get(u, "fromMe");
	if (from_me == NULL && key != NULL)
		from_me = json_object_get(key, "fromMe");
	status = json_object_get(u, "status");
	if (status == NULL && update != NULL)
		status = json_object_get(update, "status");
	if (inb_epoch_ms(json_object_get(u, "datetime"), inb_path(path, "datetime"), &ms))
		iso = inb_iso(ms);

	mapped = map_status(status, &known);
	if (id == NULL || id[0] == '\0')
		reason = "missing_message_id";
	else if (status == NULL || json_is_null(status))
		reason = "no_status";
	else if (json_is_false(from_me))
		reason = "status_of_inbound_message";	/* our own read marks */
	else if (!known)
		reason = json_is_string(status) && pg_strcasecmp(json_string_value(status), "DELETED") == 0
			? "message_deleted" : "unknown_status";
	else if (mapped == NULL)
		reason = "status_pending";
	if (reason != NULL)
	{
		inb_ignore(&ctx->res, reason, id && id[0] ? id : path);
		return;
	}

	phone = remote_jid ? inb_phone(remote_jid) : NULL;
	ev = json_object();
	json_object_set_new(ev, "kind", json_string("status"));
	json_object_set_new(ev, "brokerMessageId", json_string(id));
	json_object_set_new(ev, "status", json_string(mapped));
	json_object_set_new(ev, "timestamp", iso ? json_string(iso) : json_null());
	json_object_set_new(ev, "recipient", phone ? json_string(phone) : json_null());
	inb_set_str(ev, "remoteJid", remote_jid);
	json_object_set_new(ev, "instanceId", json_string(ctx->instance));
	if (strcmp(mapped, "failed") == 0)
	{
		json_t	   *err = json_object();

		json_object_set_new(err, "code", json_string("ERROR"));
		json_object_set_new(err, "title", json_string("the broker reported an error status"));
		json_object_set_new(ev, "error", err);
	}
	inb_event(&ctx->res, ev);
}

static void
evo_connection(evo_ctx *ctx, json_t *data)
{
	const char *state = inb_str(data, "state", "data");
	json_t	   *ev;
	json_t	   *reason = json_object_get(data, "statusReason");

	if (state == NULL || (strcmp(state, "open") != 0 && strcmp(state, "close") != 0 &&
						  strcmp(state, "connecting") != 0))
	{
		inb_ignore(&ctx->res, "unknown_connection_state", state);
		return;
	}
	ev = json_object();
	json_object_set_new(ev, "kind", json_string("connection"));
	json_object_set_new(ev, "instanceId", json_string(ctx->instance));
	json_object_set_new(ev, "state", json_string(state));
	json_object_set(ev, "statusReason", reason && (json_is_integer(reason) || json_is_string(reason))
					? reason : json_null());
	inb_set_str(ev, "phone", inb_phone(json_is_string(json_object_get(data, "wuid"))
									   ? json_string_value(json_object_get(data, "wuid")) : NULL));
	inb_copy_str(ev, "profileName", data, "profileName");
	inb_event(&ctx->res, ev);
}

static void
evo_qrcode(evo_ctx *ctx, json_t *data)
{
	json_t	   *qr = inb_obj(data, "qrcode", "data");
	json_t	   *out = json_object();
	json_t	   *ev;

	/* v2 nests the code in data.qrcode; some versions put it in data. */
	if (qr == NULL)
		qr = data;
	inb_copy_str(out, "base64", qr, "base64");
	inb_copy_str(out, "code", qr, "code");
	inb_copy_str(out, "pairingCode", qr, "pairingCode");
	if (json_object_size(out) == 0)
	{
		json_decref(out);
		inb_ignore(&ctx->res, "empty_qrcode", ctx->instance);
		return;
	}
	ev = json_object();
	json_object_set_new(ev, "kind", json_string("qrcode"));
	json_object_set_new(ev, "instanceId", json_string(ctx->instance));
	json_object_set_new(ev, "qrcode", out);
	inb_event(&ctx->res, ev);
}

typedef void (*evo_item_fn) (evo_ctx *ctx, json_t *item, const char *path);

static void
upsert_item(evo_ctx *ctx, json_t *item, const char *path)
{
	evo_message(ctx, item, path, false);
}

static void
send_item(evo_ctx *ctx, json_t *item, const char *path)
{
	evo_message(ctx, item, path, true);
}

/* data is one item, {"messages": [items]} (v1) or an array of items. */
static void
each_item(evo_ctx *ctx, json_t *data, evo_item_fn fn)
{
	json_t	   *list = NULL;
	const char *name = "data";
	size_t		i;
	json_t	   *v;

	if (json_is_array(data))
		list = data;
	else if (json_is_object(data) && json_is_array(json_object_get(data, "messages")))
	{
		list = json_object_get(data, "messages");
		name = "data.messages";
	}
	else if (json_is_object(data))
	{
		fn(ctx, data, "data");
		return;
	}
	else
		inb_invalid("data", "data must be an object or an array");

	json_array_foreach(list, i, v)
		fn(ctx, v, psprintf("%s[%zu]", name, i));
}

json_t *
pgwa_evolution_events(json_t *body)
{
	evo_ctx		ctx;
	const char *event;
	const char *date_time;
	char	   *canon;
	json_t	   *data;
	int64		ms;

	if (!json_is_object(body))
		inb_invalid("body", "the body must be a JSON object");
	event = inb_req_str(body, "event", NULL);
	ctx.instance = inb_req_str(body, "instance", NULL);
	ctx.res.events = json_array();
	ctx.res.ignored = json_array();
	date_time = json_is_string(json_object_get(body, "date_time"))
		? json_string_value(json_object_get(body, "date_time")) : NULL;
	ctx.fallback_iso = inb_parse_iso(date_time, &ms) ? inb_iso(ms) : NULL;
	data = json_object_get(body, "data");
	canon = canonical_event(event);

	if (strcmp(canon, "messages.upsert") == 0 || strcmp(canon, "send.message") == 0 ||
		strcmp(canon, "messages.update") == 0 || strcmp(canon, "connection.update") == 0 ||
		strcmp(canon, "qrcode.updated") == 0)
	{
		if (data == NULL || json_is_null(data))
			inb_invalid("data", "data is required");
	}

	if (strcmp(canon, "messages.upsert") == 0)
		each_item(&ctx, data, upsert_item);
	else if (strcmp(canon, "send.message") == 0)
		each_item(&ctx, data, send_item);
	else if (strcmp(canon, "messages.update") == 0)
		each_item(&ctx, data, evo_status);
	else if (strcmp(canon, "connection.update") == 0 || strcmp(canon, "qrcode.updated") == 0)
	{
		if (!json_is_object(data))
			inb_invalid("data", "data must be an object");
		if (canon[0] == 'c')
			evo_connection(&ctx, data);
		else
			evo_qrcode(&ctx, data);
	}
	else
		inb_ignore(&ctx.res, "unsupported_event", event);
	return inb_result_json(&ctx.res);
}

Datum
pgwa_normalize_evolution(PG_FUNCTION_ARGS)
{
	Jsonb	   *in = PG_GETARG_JSONB_P(0);

	PG_RETURN_DATUM(inb_run(in, pgwa_evolution_events));
}
