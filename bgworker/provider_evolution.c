/*
 * provider_evolution.c: Evolution API v2.
 *
 * POST {base}/message/<endpoint>/{instance} with header apikey; the id of
 * an accepted message is key.id of the answer.
 */
#include "postgres.h"

#include "provider.h"

static char *
remote_jid(const char *to)
{
	return strchr(to, '@') ? pstrdup(to) : psprintf("%s@s.whatsapp.net", to);
}

static const char *
evolution_build(const claimed_message *msg, provider_request *req)
{
	json_t	   *p = msg->payload;
	json_t	   *body = json_object();
	const char *type = json_str(p, "type");
	const char *to = json_str(p, "to");
	const char *endpoint;
	const char *quoted = json_str(p, "quotedMessageId");
	json_t	   *typing = json_object_get(p, "delayTyping");

	json_object_set_new(body, "number", json_string(to));
	if (json_is_integer(typing))
		json_object_set_new(body, "delay", json_integer(json_integer_value(typing) * 1000));

	if (strcmp(type, "text") == 0 || strcmp(type, "link") == 0)
	{
		const char *text = json_str(p, "text");
		const char *link = json_str(p, "linkUrl");

		endpoint = "sendText";
		if (link && strstr(text, link) == NULL)
			json_object_set_new(body, "text", json_string(psprintf("%s\n%s", text, link)));
		else
			json_object_set_new(body, "text", json_string(text));
		if (link || json_is_true(json_object_get(p, "previewUrl")))
			json_object_set_new(body, "linkPreview", json_true());
	}
	else if (strcmp(type, "audio") == 0)
	{
		endpoint = "sendWhatsAppAudio";
		json_object_set(body, "audio", json_object_get(p, "mediaUrl"));
	}
	else if (strcmp(type, "image") == 0 || strcmp(type, "video") == 0 ||
			 strcmp(type, "document") == 0)
	{
		endpoint = "sendMedia";
		json_object_set_new(body, "mediatype", json_string(type));
		json_object_set(body, "media", json_object_get(p, "mediaUrl"));
		if (json_str(p, "mimeType"))
			json_object_set(body, "mimetype", json_object_get(p, "mimeType"));
		if (json_str(p, "caption"))
			json_object_set(body, "caption", json_object_get(p, "caption"));
		if (json_str(p, "fileName"))
			json_object_set(body, "fileName", json_object_get(p, "fileName"));
	}
	else if (strcmp(type, "location") == 0)
	{
		json_t	   *loc = json_object_get(p, "location");
		const char *key;
		json_t	   *v;

		endpoint = "sendLocation";
		json_object_foreach(loc, key, v)
			json_object_set(body, key, v);
	}
	else if (strcmp(type, "contact") == 0)
	{
		json_t	   *c = json_object_get(p, "contact");
		json_t	   *card = json_object();
		const char *phone = provider_phone_digits(json_str(c, "phone"));

		if (phone == NULL)
			return "Evolution API shares contacts by phone number only";
		endpoint = "sendContact";
		json_object_set(card, "fullName", json_object_get(c, "name"));
		json_object_set_new(card, "wuid", json_string(phone));
		json_object_set_new(card, "phoneNumber", json_string(psprintf("+%s", phone)));
		json_object_set_new(body, "contact", json_pack("[o]", card));
	}
	else if (strcmp(type, "reaction") == 0)
	{
		json_t	   *r = json_object_get(p, "reaction");

		endpoint = "sendReaction";
		json_object_del(body, "number");
		json_object_set_new(body, "key",
							json_pack("{s:s, s:b, s:s}", "remoteJid", remote_jid(to),
									  "fromMe", 1, "id", json_str(r, "messageId")));
		json_object_set(body, "reaction", json_object_get(r, "emoji"));
	}
	else if (strcmp(type, "poll") == 0)
	{
		json_t	   *poll = json_object_get(p, "poll");

		endpoint = "sendPoll";
		json_object_set(body, "name", json_object_get(poll, "name"));
		json_object_set(body, "selectableCount", json_object_get(poll, "selectableCount"));
		json_object_set(body, "values", json_object_get(poll, "options"));
	}
	else if (strcmp(type, "template") == 0)
	{
		json_t	   *tpl = json_object_get(p, "template");

		endpoint = "sendTemplate";
		json_object_set(body, "name", json_object_get(tpl, "name"));
		json_object_set(body, "language", json_object_get(tpl, "language"));
		if (json_object_get(tpl, "components"))
			json_object_set(body, "components", json_object_get(tpl, "components"));
	}
	else
		return "message type not supported by the Evolution API adapter";

	if (quoted)
		json_object_set_new(body, "quoted",
							json_pack("{s:{s:s}}", "key", "id", quoted));

	provider_append_base(&req->url, msg->base_url);
	appendStringInfo(&req->url, "/message/%s/", endpoint);
	provider_append_escaped(&req->url, msg->broker_instance_id);
	req->headers = provider_add_header(req->headers, "Content-Type", "application/json");
	req->headers = provider_add_header(req->headers, "apikey", msg->api_key);
	req->body = provider_dump(body);
	return NULL;
}

static char *
evolution_parse_id(json_t *body)
{
	json_t	   *key = json_object_get(body, "key");

	if (json_is_object(key) && json_str(key, "id"))
		return pstrdup(json_str(key, "id"));
	return NULL;
}

/* {"status":400,"error":"Bad Request","response":{"message":[...]}} */
static char *
evolution_parse_error(long status, json_t *body)
{
	json_t	   *resp = json_object_get(body, "response");
	json_t	   *msgs = json_is_object(resp) ? json_object_get(resp, "message") : NULL;
	const char *err = json_str(body, "error");
	char	   *text = NULL;

	if (json_is_array(msgs) && json_array_size(msgs) > 0)
	{
		json_t	   *first = json_array_get(msgs, 0);

		text = json_is_string(first) ? pstrdup(json_string_value(first))
			: provider_dump(first);
	}
	else if (json_is_string(msgs))
		text = pstrdup(json_string_value(msgs));
	if (text && err)
		return psprintf("HTTP %ld %s: %s", status, err, text);
	if (text || err)
		return psprintf("HTTP %ld %s", status, text ? text : err);
	return NULL;
}

static bool
evolution_is_disconnected(long status, json_t *body)
{
	char	   *text;

	if (status == 409)
		return true;
	text = body ? evolution_parse_error(status, body) : NULL;
	return text != NULL && (strstr(text, "Connection Closed") != NULL ||
							strstr(text, "not connected") != NULL);
}

const provider_ops provider_evolution = {
	.name = "evolution",
	.build = evolution_build,
	.parse_id = evolution_parse_id,
	.parse_error = evolution_parse_error,
	.is_disconnected = evolution_is_disconnected,
};
