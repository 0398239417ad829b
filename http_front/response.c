/*
 * response.c
 *		Responses: the front's own errors and the rows of pgwa.http().
 *
 * The SQL function chooses status, headers and body; the front only makes
 * sure the result is well-formed HTTP and adds the headers it owns.
 */
#define _GNU_SOURCE				/* asprintf */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "log.h"
#include "response.h"
#include "text.h"

/*
 * A {"error":{...}} response.  code and message are fixed strings of ours
 * and need no JSON escaping.  Returns NULL when out of memory.
 */
struct MHD_Response *
response_error(unsigned int status, const char *code, const char *message,
			   size_t *body_len)
{
	struct MHD_Response *resp;
	char	   *body;
	int			len;

	len = asprintf(&body, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}",
				   code, message);
	if (len < 0)
		return NULL;
	resp = MHD_create_response_from_buffer((size_t) len, body,
										   MHD_RESPMEM_MUST_FREE);
	if (resp == NULL)
	{
		free(body);
		return NULL;
	}
	if (status == MHD_HTTP_SERVICE_UNAVAILABLE)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
	*body_len = (size_t) len;
	return resp;
}

static bool
is_header_token(const char *s)
{
	size_t		len = strlen(s);

	return len > 0 &&
		strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			   "0123456789!#$%&'*+-.^_`|~") == len;
}

static bool
is_header_value(const char *s)
{
	for (; *s != '\0'; s++)
		if (((unsigned char) *s < 0x20 && *s != '\t') || *s == 0x7F)
			return false;
	return true;
}

/*
 * Copy the function's response headers onto resp.  Headers that would
 * break framing or are not valid HTTP are skipped and logged: a bad header
 * is a bug on the SQL side, not a reason to fail the response.
 */
static bool
add_reply_headers(struct MHD_Response *resp, const char *headers_json,
				  const char *request_id)
{
	json_t	   *obj;
	const char *name;
	json_t	   *value;
	bool		has_content_type = false;

	if (headers_json == NULL)
		return false;
	obj = json_loads(headers_json, 0, NULL);
	if (!json_is_object(obj))
	{
		log_error("request %s: pgwa.http headers are not a JSON object",
				  request_id);
		json_decref(obj);
		return false;
	}
	json_object_foreach(obj, name, value)
	{
		char		num[32];
		const char *text = NULL;

		/* the front sets its own; X-Pgwa-* are between pgwa.http() and the front */
		if (strcasecmp(name, "X-Request-Id") == 0 || strncasecmp(name, "X-Pgwa-", 7) == 0)
			continue;
		if (json_is_string(value))
			text = json_string_value(value);
		else if (json_is_integer(value))
		{
			snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
					 json_integer_value(value));
			text = num;
		}
		if (text == NULL || !is_header_token(name) || !is_header_value(text) ||
			MHD_add_response_header(resp, name, text) != MHD_YES)
		{
			log_error("request %s: ignoring response header \"%s\"",
					  request_id, name);
			continue;
		}
		if (strcasecmp(name, MHD_HTTP_HEADER_CONTENT_TYPE) == 0)
			has_content_type = true;
	}
	json_decref(obj);
	return has_content_type;
}

/*
 * Response for a pgwa.http() row.  Takes ownership of reply's buffers,
 * also on failure (NULL, out of memory).
 */
struct MHD_Response *
response_from_reply(struct db_reply *reply, const char *request_id,
					bool *has_content_type)
{
	struct MHD_Response *resp;

	resp = MHD_create_response_from_buffer(reply->body_len, reply->body,
										   MHD_RESPMEM_MUST_FREE);
	if (resp == NULL)
		free(reply->body);
	else
		*has_content_type = add_reply_headers(resp, reply->headers, request_id);
	free(reply->headers);
	reply->body = reply->headers = NULL;
	return resp;
}

/*
 * A body pgwa.http() sent in base64 because it is not text (inline media, a
 * QR code image), marked by the internal header X-Pgwa-Body-Encoding:
 * decoded in place. False if it is marked and not valid base64.
 */
bool
response_decode_body(struct db_reply *reply)
{
	unsigned char *bytes;
	size_t		len;

	/* pgwa.http() writes its headers as jsonb text: "name": "value" */
	if (reply->headers == NULL || strstr(reply->headers, "\"X-Pgwa-Body-Encoding\": \"base64\"") == NULL)
		return true;
	bytes = text_base64_decode(reply->body, reply->body_len, &len);
	if (bytes == NULL)
		return false;
	free(reply->body);
	reply->body = (char *) bytes;
	reply->body_len = len;
	return true;
}

/* Headers every response carries. */
void
response_finish(struct MHD_Response *resp, const char *request_id,
				bool has_content_type, bool closing)
{
	if (!has_content_type)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
								"application/json");
	MHD_add_response_header(resp, "X-Request-Id", request_id);
	/* while draining, end keep-alive connections after this response */
	if (closing)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
}
