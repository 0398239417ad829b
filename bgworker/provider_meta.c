/*
 * provider_meta.c: WhatsApp Cloud API (Graph).
 *
 * POST {base}/{version}/{phone_number_id}/messages with a Bearer token; the
 * id of an accepted message is messages[0].id; errors come as a Graph error
 * object {"error":{"message","type","code","error_subcode","fbtrace_id"}}.
 * The instance's settings give phone_number_id and api_version.
 */
#include "postgres.h"

#include "provider.h"

#define DEFAULT_GRAPH_VERSION "v21.0"

static json_t *
media_object(json_t *p, const char *type)
{
	json_t	   *m = json_object();

	json_object_set(m, "link", json_object_get(p, "mediaUrl"));
	if (strcmp(type, "audio") != 0 && json_str(p, "caption"))
		json_object_set(m, "caption", json_object_get(p, "caption"));
	if (strcmp(type, "document") == 0 && json_str(p, "fileName"))
		json_object_set(m, "filename", json_object_get(p, "fileName"));
	return m;
}

static const char *
meta_build(const claimed_message *msg, provider_request *req)
{
	json_t	   *p = msg->payload;
	json_t	   *body = json_object();
	const char *type = json_str(p, "type");
	const char *to = provider_phone_digits(json_str(p, "to"));
	const char *phone_id = json_str(msg->settings, "phone_number_id");
	const char *version = json_str(msg->settings, "api_version");
	const char *quoted = json_str(p, "quotedMessageId");

	if (phone_id == NULL)
		return "instance settings lack phone_number_id";
	if (to == NULL)
		return "the Cloud API sends to phone numbers only, not to group or LID JIDs";

	json_object_set_new(body, "messaging_product", json_string("whatsapp"));
	json_object_set_new(body, "recipient_type", json_string("individual"));
	json_object_set_new(body, "to", json_string(to));

	if (strcmp(type, "text") == 0 || strcmp(type, "link") == 0)
	{
		const char *text = json_str(p, "text");
		const char *link = json_str(p, "linkUrl");

		if (link && strstr(text, link) == NULL)
			text = psprintf("%s\n%s", text, link);
		json_object_set_new(body, "type", json_string("text"));
		json_object_set_new(body, "text",
							json_pack("{s:s, s:b}", "body", text, "preview_url",
									  link != NULL || json_is_true(json_object_get(p, "previewUrl"))));
	}
	else if (strcmp(type, "image") == 0 || strcmp(type, "video") == 0 ||
			 strcmp(type, "document") == 0 || strcmp(type, "audio") == 0)
	{
		json_object_set_new(body, "type", json_string(type));
		json_object_set_new(body, type, media_object(p, type));
	}
	else if (strcmp(type, "location") == 0)
	{
		json_object_set_new(body, "type", json_string("location"));
		json_object_set(body, "location", json_object_get(p, "location"));
	}
	else if (strcmp(type, "template") == 0)
	{
		json_t	   *tpl = json_object_get(p, "template");
		json_t	   *t = json_object();

		json_object_set(t, "name", json_object_get(tpl, "name"));
		json_object_set_new(t, "language",
							json_pack("{s:O}", "code", json_object_get(tpl, "language")));
		if (json_object_get(tpl, "components"))
			json_object_set(t, "components", json_object_get(tpl, "components"));
		json_object_set_new(body, "type", json_string("template"));
		json_object_set_new(body, "template", t);
	}
	else if (strcmp(type, "reaction") == 0)
	{
		json_t	   *r = json_object_get(p, "reaction");

		json_object_set_new(body, "type", json_string("reaction"));
		json_object_set_new(body, "reaction",
							json_pack("{s:O, s:O}", "message_id", json_object_get(r, "messageId"),
									  "emoji", json_object_get(r, "emoji")));
	}
	else if (strcmp(type, "contact") == 0)
	{
		json_t	   *c = json_object_get(p, "contact");
		const char *phone = provider_phone_digits(json_str(c, "phone"));

		if (phone == NULL)
			return "the Cloud API shares contacts by phone number only";

		json_object_set_new(body, "type", json_string("contacts"));
		json_object_set_new(body, "contacts",
							json_pack("[{s:{s:O, s:O}, s:[{s:s, s:s}]}]",
									  "name", "formatted_name", json_object_get(c, "name"),
									  "first_name", json_object_get(c, "name"),
									  "phones", "phone", psprintf("+%s", phone), "wa_id", phone));
	}
	else
		return "message type not supported by the Cloud API";

	if (quoted)
		json_object_set_new(body, "context", json_pack("{s:s}", "message_id", quoted));

	provider_append_base(&req->url, msg->base_url);
	appendStringInfoChar(&req->url, '/');
	provider_append_escaped(&req->url, version ? version : DEFAULT_GRAPH_VERSION);
	appendStringInfoChar(&req->url, '/');
	provider_append_escaped(&req->url, phone_id);
	appendStringInfoString(&req->url, "/messages");
	req->headers = provider_add_header(req->headers, "Content-Type", "application/json");
	req->headers = provider_add_header(req->headers, "Authorization",
									   psprintf("Bearer %s", msg->api_key));
	req->body = provider_dump(body);
	return NULL;
}

static char *
meta_parse_id(json_t *body)
{
	json_t	   *messages = json_object_get(body, "messages");
	json_t	   *first = json_is_array(messages) ? json_array_get(messages, 0) : NULL;

	if (first && json_str(first, "id"))
		return pstrdup(json_str(first, "id"));
	return NULL;
}

static char *
meta_parse_error(long status, json_t *body)
{
	json_t	   *err = json_object_get(body, "error");
	json_t	   *code;
	json_t	   *data;
	const char *details = NULL;

	if (!json_is_object(err))
		return NULL;
	code = json_object_get(err, "code");
	data = json_object_get(err, "error_data");
	if (json_is_object(data))
		details = json_str(data, "details");
	return psprintf("HTTP %ld Graph error %lld (%s): %s%s%s", status,
					json_is_integer(code) ? (long long) json_integer_value(code) : 0LL,
					json_str(err, "type") ? json_str(err, "type") : "unknown",
					json_str(err, "message") ? json_str(err, "message") : "no message",
					details ? " - " : "", details ? details : "");
}

static bool
meta_is_disconnected(long status, json_t *body)
{
	return false;
}

/*
 * Graph reports throttling and passing outages with HTTP 400 as often as
 * with 429 or 5xx; its error code (or is_transient) tells them apart from
 * permanent errors.
 */
static bool
meta_is_transient(long status, json_t *body)
{
	json_t	   *err = json_object_get(body, "error");
	json_t	   *code;

	if (!json_is_object(err))
		return false;
	if (json_is_true(json_object_get(err, "is_transient")))
		return true;
	code = json_object_get(err, "code");
	if (!json_is_integer(code))
		return false;
	switch (json_integer_value(code))
	{
		case 1:					/* API Unknown: possibly a server error */
		case 2:					/* API Service: temporary downtime */
		case 4:					/* API Too Many Calls */
		case 80007:				/* rate limit issues */
		case 130429:			/* throughput rate limit hit */
		case 131000:			/* something went wrong */
		case 131016:			/* service unavailable */
		case 131056:			/* pair rate limit hit */
		case 133004:			/* server temporarily unavailable */
			return true;
		default:
			return false;
	}
}

const provider_ops provider_meta = {
	.name = "meta",
	.build = meta_build,
	.parse_id = meta_parse_id,
	.parse_error = meta_parse_error,
	.is_disconnected = meta_is_disconnected,
	.is_transient = meta_is_transient,
};
