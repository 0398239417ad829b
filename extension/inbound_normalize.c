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

#include "catalog/pg_type_d.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/jsonb.h"

#include "inbound.h"

PG_FUNCTION_INFO_V1(pgwa_normalize_inbound);

#define EVENT_INBOUND			"MESSAGE_INBOUND"
#define EVENT_UPSERT			"WHATSAPP_MESSAGES_UPSERT"

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

/* ---------- the seed-000 envelope ---------- */

static json_t *
required(json_t *obj, const char *key, const char *field, json_type type, const char *what)
{
	json_t	   *v = ib_member(obj, key);

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
	json_t	   *v = ib_member(obj, key);

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
	json_t	   *v = ib_member(obj, key);

	if (v == NULL)
		return false;
	if (!ib_timestamp_of(v, ms))
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
	json_t	   *regs = ib_member(contact, "registrations");
	const char *phone = optional_str(contact, "phone", path(prefix, "payload.contact.phone"));
	const char *name = optional_str(contact, "name", path(prefix, "payload.contact.name"));
	const char *push = optional_str(contact, "pushName", path(prefix, "payload.contact.pushName"));
	const char *key;
	json_t	   *v;

	if (phone != NULL && !ib_sender_learn(who, phone))
		unusable(path(prefix, "payload.contact.phone"),
				 "payload.contact.phone must be a phone number with 8 to 15 digits or a WhatsApp JID");
	ib_set_str(out, "name", name ? name : push);
	ib_set_str(out, "pushName", push);
	ib_set_str(out, "document", optional_str(contact, "document", path(prefix, "payload.contact.document")));
	ib_set_str(out, "avatarUrl", optional_str(contact, "avatarUrl", path(prefix, "payload.contact.avatarUrl")));
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
	ib_set_str(contact, "phone", who->phone);
	ib_set_str(contact, "lid", who->lid);
}

/* chat: where the message was written (a group, or the sender's own chat). */
static json_t *
chat_of(const sender *who, const char *group_jid, const char *participant)
{
	json_t	   *chat = json_object();

	ib_set_str(chat, "jid", group_jid ? group_jid : (who->phone ? who->phone : who->lid));
	json_object_set_new(chat, "isGroup", json_boolean(group_jid != NULL));
	ib_set_str(chat, "participantJid", group_jid ? participant : NULL);
	return chat;
}

static void
set_times(json_t *env, json_t *payload, json_t *metadata, bool have_ts, int64 ts, json_t *broker_ts)
{
	json_t	   *iso = have_ts ? json_string(ib_iso_of(ts)) : json_null();

	json_object_set(env, "timestamp", iso);
	json_object_set(payload, "timestamp", iso);
	if (broker_ts != NULL)
	{
		double		d;

		/* as the broker reported it, with Longs and numeric strings read as numbers */
		if (ib_number_of(broker_ts, &d))
			json_object_set_new(metadata, "brokerMessageTimestamp", ib_json_number(d));
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

	ib_set_str(env, "id", id);
	ib_set_str(env, "type", EVENT_INBOUND);
	ib_set_str(env, "instanceId", instance);
	ib_set_str(env, "payloadType", payload_type);
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
	key = ib_member_obj(message, "key");
	content = ib_member_obj(message, "message") ? ib_member_obj(message, "message") : message;

	have_ts = optional_time(payload, "timestamp", path(prefix, "payload.timestamp"), &ts);
	if (!have_ts)
		have_ts = optional_time(ev, "timestamp", path(prefix, "timestamp"), &ts);
	if (!have_ts)
		have_ts = ib_timestamp_of(ib_member(message, "messageTimestamp"), &ts) ||
			ib_timestamp_of(ib_member(metadata, "timestamp"), &ts);
	broker_ts = ib_member(message, "messageTimestamp") ? ib_member(message, "messageTimestamp") :
		ib_member(metadata, "timestamp") ? ib_member(metadata, "timestamp") :
		ib_member(payload, "timestamp") ? ib_member(payload, "timestamp") : ib_member(ev, "timestamp");

	out_contact = envelope_contact(contact, prefix, &who);

	/* A group chat: the sender is the participant. */
	meta_contact = ib_member_obj(metadata, "contact");
	remote = ib_member_str(key, "remoteJid");
	if (remote != NULL && ib_parse_jid(remote, &user) == JID_GROUP)
		group = remote;
	else if ((remote = ib_member_str(meta_contact, "jid")) != NULL &&
			 ib_parse_jid(remote, &user) == JID_GROUP)
		group = remote;
	else if ((remote = ib_member_str(meta_contact, "remoteJid")) != NULL &&
			 ib_parse_jid(remote, &user) == JID_GROUP)
		group = remote;
	if (group != NULL)
	{
		participant = ib_member_str(key, "participant");
		if (participant == NULL)
			participant = ib_member_str(meta_contact, "participantJid");
	}

	/*
	 * A @lid sender is resolved through senderPn / remoteJidAlt when present;
	 * what contact.phone said comes first, the rest only fills what it lacks.
	 */
	{
		json_t	   *places[] = {contact, key, metadata, meta_contact};

		for (int i = 0; i < lengthof(places); i++)
		{
			ib_sender_learn(&who, ib_member_str(places[i], "senderPn"));
			ib_sender_learn(&who, ib_member_str(places[i], "remoteJidAlt"));
			ib_sender_learn(&who, ib_member_str(places[i], "participantPn"));
			ib_sender_learn(&who, ib_member_str(places[i], "participantAlt"));
		}
		ib_sender_learn(&who, group ? participant : ib_member_str(key, "remoteJid"));
	}
	if (who.phone == NULL && who.lid == NULL)
		unusable(path(prefix, "payload.contact.phone"),
				 "payload.contact.phone is required: the sender has no phone number or WhatsApp id");
	set_sender(out_contact, &who);

	msg_id = ib_member_str(key, "id");
	if (msg_id == NULL)
		msg_id = ib_member_str(message, "id");
	if (msg_id == NULL)
		msg_id = ib_member_str(message, "messageId");
	if (msg_id == NULL)
		msg_id = ib_member_str(metadata, "messageId");
	if (msg_id == NULL)
		msg_id = id;

	out_meta = json_deep_copy(metadata);
	json_object_set_new(out_payload, "instanceId", json_string(instance));
	json_object_set_new(out_payload, "contact", out_contact);
	json_object_set_new(out_payload, "chat", chat_of(&who, group, participant));
	json_object_set_new(out_payload, "message", ib_message_of(content, msg_id));
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
	json_t	   *from_me = ib_member(key, "fromMe");
	json_t	   *stub = ib_member(entry, "messageStubType");
	const char *k;
	json_t	   *v;
	bool		has_content = false;

	if (from_me != NULL && json_is_true(from_me))
		return "from_me";
	if (content != NULL && ib_member(content, "protocolMessage") != NULL)
		return "protocol_message";
	if (content != NULL && ib_member(content, "historySyncNotification") != NULL)
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

	ib_set_str(o, "type", "IGNORED");
	ib_set_str(o, "payloadType", EVENT_UPSERT);
	ib_set_str(o, "instanceId", instance);
	ib_set_str(o, "id", id);
	json_object_set_new(o, "index", json_integer(index));
	ib_set_str(o, "reason", reason);
	return o;
}

/* Digits of a JID's user part (rawKey.remoteJid / participant in the seed). */
static const char *
jid_user(const char *jid)
{
	char	   *user;

	if (jid == NULL)
		return NULL;
	ib_parse_jid(jid, &user);
	return user ? user : jid;
}

/* What the messages of one upsert share. */
typedef struct upsert_context
{
	const char *instance;
	json_t	   *fallback_ts;		/* the event's time, for messages without one */
	const char *owner;
	const char *source;
	const char *broker_id;
	const char *session_id;
} upsert_context;

static json_t *
normalize_raw_message(json_t *entry, const char *fp, int index, const upsert_context *cx)
{
	const char *instance = cx->instance;
	json_t	   *fallback_ts = cx->fallback_ts;
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
	id = ib_member_str(key, "id");
	remote = ib_member_str(key, "remoteJid");
	kind = remote ? ib_parse_jid(remote, &user) : JID_NONE;
	content = ib_unwrap(ib_member_obj(entry, "message"), NULL);
	if (content == NULL)
		reason = (ib_member(key, "fromMe") && json_is_true(ib_member(key, "fromMe"))) ? "from_me" :
			ib_member(entry, "messageStubType") ? "message_stub" : "empty_message";
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
	participant = ib_member_str(key, "participant");
	if (participant == NULL)
		participant = ib_member_str(entry, "participant");
	if (group)
	{
		if (participant == NULL)
			unusable(path(fp, "key.participant"), "%skey.participant is required in a group", fp);
		if (!ib_sender_learn(&who, participant))
			unusable(path(fp, "key.participant"), "%skey.participant is not a WhatsApp user", fp);
		ib_sender_learn(&who, ib_member_str(key, "participantPn"));
		ib_sender_learn(&who, ib_member_str(key, "participantAlt"));
		ib_sender_learn(&who, ib_member_str(entry, "participantPn"));
	}
	else
	{
		if (!ib_sender_learn(&who, remote))
			unusable(path(fp, "key.remoteJid"), "%skey.remoteJid is not a WhatsApp user", fp);
		/* @lid senders: the phone travels in senderPn (Baileys 6) or remoteJidAlt (7). */
		ib_sender_learn(&who, ib_member_str(key, "senderPn"));
		ib_sender_learn(&who, ib_member_str(key, "remoteJidAlt"));
		ib_sender_learn(&who, ib_member_str(entry, "senderPn"));
	}

	ts_value = ib_member(entry, "messageTimestamp");
	if (ts_value != NULL && !(have_ts = ib_timestamp_of(ts_value, &ts)))
		invalid(path(fp, "messageTimestamp"), "%smessageTimestamp must be epoch seconds", fp);
	if (ts_value == NULL && fallback_ts != NULL)
	{
		ts_value = fallback_ts;
		have_ts = ib_timestamp_of(fallback_ts, &ts);
	}

	push = ib_member_str(entry, "pushName");
	if (push == NULL)
		push = ib_member_str(entry, "notifyName");
	if (push == NULL)
		push = ib_member_str(entry, "verifiedBizName");
	ib_set_str(contact, "name", push);
	ib_set_str(contact, "pushName", push);
	set_sender(contact, &who);

	message = ib_message_of(ib_member_obj(entry, "message"), id);

	ib_set_str(broker, "type", "baileys");
	ib_set_str(broker, "direction", "inbound");
	json_object_set_new(broker, "normalized", json_true());
	json_object_set(broker, "messageType", ib_member(message, "type"));
	ib_set_str(broker, "messageId", id);
	ib_set_str(broker, "owner", cx->owner);
	ib_set_str(broker, "source", cx->source);
	ib_set_str(broker, "brokerId", cx->broker_id);
	ib_set_str(broker, "sessionId", cx->session_id);
	ib_set_str(raw_key, "remoteJid", jid_user(remote));
	ib_set_str(raw_key, "participant", jid_user(participant));
	ib_set_str(raw_key, "jid", remote);
	ib_set_str(raw_key, "participantJid", participant);
	json_object_set_new(meta_contact, "isGroup", json_boolean(group));
	ib_set_str(meta_contact, "participantJid", group ? participant : NULL);
	ib_set_str(meta_contact, "jid", remote);
	ib_set_str(meta_contact, "pushName", push);
	ib_set_str(meta, "source", "raw_normalized");
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

/* A string of the event, else of its payload. */
static const char *
event_str(json_t *ev, json_t *payload, const char *key)
{
	const char *s = ib_member_str(ev, key);

	return s ? s : ib_member_str(payload, key);
}

static void
normalize_upsert(json_t *ev, const char *prefix, bool strict_type, json_t *out)
{
	json_t	   *payload = ib_member_obj(ev, "payload");
	json_t	   *raw = ib_member_obj(payload, "raw");
	json_t	   *messages;
	const char *event = ib_member_str(ev, "event") ? ib_member_str(ev, "event") : ib_member_str(ev, "type");
	upsert_context cx;
	json_t	   *entry;
	size_t		i;

	if (!json_is_object(ev))
		invalid(event_field(prefix), "each event must be a JSON object");
	if (strict_type && event != NULL && strcmp(event, EVENT_UPSERT) != 0)
		unusable(path(prefix, "event"), "event must be WHATSAPP_MESSAGES_UPSERT, not \"%s\"", event);
	cx.instance = event_str(ev, payload, "instanceId");
	if (cx.instance == NULL)
		invalid(path(prefix, "instanceId"), "instanceId is required");
	cx.fallback_ts = ib_member(payload, "timestamp") ? ib_member(payload, "timestamp") : ib_member(ev, "timestamp");
	cx.owner = event_str(ev, payload, "owner");
	cx.source = event_str(ev, payload, "source");
	/* iid is the broker's own id of the session, not pgwa's instance */
	cx.broker_id = event_str(ev, payload, "brokerId") ? event_str(ev, payload, "brokerId") : event_str(ev, payload, "iid");
	cx.session_id = event_str(ev, payload, "sessionId");

	messages = ib_member(payload, "messages");
	if (messages == NULL)
		messages = ib_member(ev, "messages");
	if (messages == NULL)
		messages = ib_member(raw, "messages");
	if (messages == NULL)
		messages = ib_member(ib_member_obj(raw, "payload"), "messages");
	if (messages == NULL || !json_is_array(messages))
		invalid(path(prefix, "payload.messages"), "payload.messages must be an array of Baileys messages");

	json_array_foreach(messages, i, entry)
		json_array_append_new(out, normalize_raw_message(entry,
							  psprintf("%spayload.messages[%d].", prefix, (int) i), (int) i, &cx));
}

/* ---------- dialects ---------- */

static void
normalize_one(json_t *ev, const char *prefix, const char *dialect, json_t *out)
{
	const char *type = ib_member_str(ev, "type");
	const char *event = ib_member_str(ev, "event");

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
	else if (json_is_object(body) && ib_member_str(body, "type") == NULL &&
			 ib_member_str(body, "event") == NULL && json_is_array(ib_member(body, "events")))
	{
		list = ib_member(body, "events");
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

/*
 * Normalises a body only to see whether it can be: raises as
 * normalize_inbound does, returns how many envelopes it holds.
 */
int
pgwa_inbound_check(Jsonb *in, const char *dialect)
{
	char	   *text;
	json_error_t err;
	json_t	   *parsed;

	text = JsonbToCString(NULL, &in->root, VARSIZE(in));
	pgwa_use_palloc_for_jansson();
	parsed = json_loads(text, JSON_DECODE_ANY, &err);
	if (parsed == NULL)
		invalid("body", "the body could not be read: %s", err.text);
	if (!json_is_object(parsed) && !json_is_array(parsed))
		invalid("body", "the body must be a JSON object or an array of them");
	return (int) json_array_size(normalize_body(parsed, dialect));
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
