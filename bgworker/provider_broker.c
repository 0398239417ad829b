/*
 * provider_broker.c: the seed-000 HTTP broker contract.
 *
 * Every type goes to POST {base}/instances/{id}/send-text with the
 * normalised payload { sessionId, instanceId, to, type, message, text?,
 * previewUrl?, externalId, template?, location?, mediaUrl?, mimeType?,
 * fileName?, metadata } and the headers X-API-Key and Idempotency-Key.
 */
#include "postgres.h"

#include "provider.h"

/* Structured parts pass through under their own key. */
static const char *const passthrough[] = {
	"text", "previewUrl", "template", "location", "mediaUrl", "mimeType", "fileName",
	"caption", "reaction", "contact", "poll", "linkUrl", "title", "description",
	"imageUrl", "quotedMessageId", NULL
};

static const char *
broker_build(const claimed_message *msg, provider_request *req)
{
	json_t	   *p = msg->payload;
	json_t	   *body = json_object();
	json_t	   *metadata = json_object_get(p, "metadata");
	const char *content = json_str(p, "text");

	if (content == NULL)
		content = json_str(p, "caption");

	json_object_set_new(body, "sessionId", json_string(msg->broker_instance_id));
	json_object_set_new(body, "instanceId", json_string(msg->broker_instance_id));
	json_object_set(body, "to", json_object_get(p, "to"));
	json_object_set(body, "type", json_object_get(p, "type"));
	json_object_set_new(body, "message", json_string(content ? content : ""));
	for (int i = 0; passthrough[i]; i++)
	{
		json_t	   *v = json_object_get(p, passthrough[i]);

		if (v)
			json_object_set(body, passthrough[i], v);
	}
	json_object_set_new(body, "externalId", json_string(msg->message_id));
	metadata = json_is_object(metadata) ? json_deep_copy(metadata) : json_object();
	json_object_set_new(metadata, "idempotencyKey", json_string(msg->message_id));
	json_object_set_new(body, "metadata", metadata);

	provider_append_base(&req->url, msg->base_url);
	appendStringInfoString(&req->url, "/instances/");
	provider_append_escaped(&req->url, msg->broker_instance_id);
	appendStringInfoString(&req->url, "/send-text");
	req->headers = provider_add_header(req->headers, "Content-Type", "application/json");
	req->headers = provider_add_header(req->headers, "X-API-Key", msg->api_key);
	req->body = provider_dump(body);
	return NULL;
}

static char *
broker_parse_id(json_t *body)
{
	static const char *const keys[] = {"id", "externalId", "messageId", NULL};
	json_t	   *data = json_object_get(body, "data");
	json_t	   *key = json_object_get(body, "key");

	for (int i = 0; keys[i]; i++)
	{
		const char *v = json_str(body, keys[i]);

		if (v == NULL && json_is_object(data))
			v = json_str(data, keys[i]);
		if (v)
			return pstrdup(v);
	}
	if (json_is_object(key) && json_str(key, "id"))
		return pstrdup(json_str(key, "id"));
	return NULL;
}

static char *
broker_parse_error(long status, json_t *body)
{
	json_t	   *err = json_object_get(body, "error");
	const char *code = NULL;
	const char *message = json_str(body, "message");

	if (json_is_object(err))
	{
		code = json_str(err, "code");
		if (json_str(err, "message"))
			message = json_str(err, "message");
	}
	else if (json_is_string(err))
		code = json_string_value(err);
	if (code == NULL)
		code = json_str(body, "code");
	if (code && message)
		return psprintf("HTTP %ld %s: %s", status, code, message);
	if (code || message)
		return psprintf("HTTP %ld %s", status, code ? code : message);
	return NULL;
}

/* Seed 000: 409 INSTANCE_DISCONNECTED when the instance is offline. */
static bool
broker_is_disconnected(long status, json_t *body)
{
	return status == 409;
}

const provider_ops provider_broker = {
	.name = "broker",
	.build = broker_build,
	.parse_id = broker_parse_id,
	.parse_error = broker_parse_error,
	.is_disconnected = broker_is_disconnected,
};
