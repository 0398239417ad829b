/*
 * forward.c
 *		The broker's complementary operations of seed 000 (status, recipient
 *		check, groups, metrics, instance creation), passed through.
 *
 * pgwa.http() decides everything (the instance, its broker, the credential,
 * the provider's path) and answers with the internal header X-Pgwa-Forward;
 * the front makes the call, so that no database session ever waits for a
 * broker, and bounds it by PGWA_HTTP_BROKER_TIMEOUT. The credential lives
 * only in this call: it is not logged and never reaches the client.
 */
#include "forward.h"

#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#define MAX_ANSWER (1 << 20)

static long timeout_ms = 5000;

struct buffer
{
	char	   *data;
	size_t		len;
	bool		too_long;
};

void
forward_init(unsigned int ms)
{
	timeout_ms = ms;
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t
collect(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct buffer *b = userdata;
	size_t		n = size * nmemb;
	char	   *more;

	if (b->len + n > MAX_ANSWER)
	{
		b->too_long = true;
		return 0;
	}
	more = realloc(b->data, b->len + n + 1);
	if (more == NULL)
		return 0;
	memcpy(more + b->len, ptr, n);
	b->data = more;
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

/* reply := status, a JSON body and no extra header. */
static void
set_reply(struct db_reply *reply, unsigned int status, json_t *body)
{
	free(reply->body);
	free(reply->headers);
	reply->status = status;
	reply->headers = NULL;
	reply->body = json_dumps(body, JSON_COMPACT);
	reply->body_len = reply->body ? strlen(reply->body) : 0;
	json_decref(body);
}

static json_t *
error_body(const char *code, const char *message)
{
	return json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message);
}

bool
forward_call(const char *spec_text, struct db_reply *reply)
{
	json_t	   *spec = json_loads(spec_text, 0, NULL);
	const char *method = json_string_value(json_object_get(spec, "method"));
	const char *url = json_string_value(json_object_get(spec, "url"));
	const char *body = json_string_value(json_object_get(spec, "body"));
	json_t	   *headers = json_object_get(spec, "headers");
	struct curl_slist *list = NULL;
	struct buffer answer = {0};
	CURL	   *curl;
	CURLcode	rc;
	long		status = 0;
	const char *name;
	json_t	   *value;

	if (method == NULL || url == NULL || (curl = curl_easy_init()) == NULL)
	{
		json_decref(spec);
		return false;
	}
	json_object_foreach(headers, name, value)
	{
		char		line[1024];

		if (json_is_string(value))
		{
			snprintf(line, sizeof(line), "%s: %s", name, json_string_value(value));
			list = curl_slist_append(list, line);
		}
	}
	list = curl_slist_append(list, "Accept: application/json");
	if (body != NULL)
	{
		list = curl_slist_append(list, "Content-Type: application/json");
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
	}
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 3000 ? timeout_ms : 3000L);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	rc = curl_easy_perform(curl);
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(curl);
	curl_slist_free_all(list);
	json_decref(spec);

	if (rc == CURLE_OPERATION_TIMEDOUT)
		set_reply(reply, 504, error_body("BROKER_TIMEOUT", "the broker did not answer in time"));
	else if (rc != CURLE_OK && !answer.too_long)
		set_reply(reply, 502, error_body("BROKER_UNAVAILABLE", curl_easy_strerror(rc)));
	else if (answer.too_long)
		set_reply(reply, 502, error_body("BROKER_ERROR", "the broker's answer is too long"));
	else
	{
		json_t	   *parsed = answer.data ? json_loads(answer.data, 0, NULL) : json_object();

		if (parsed == NULL)
			parsed = json_pack("{s:s}", "raw", answer.data);
		if (status >= 200 && status < 300)
			set_reply(reply, (unsigned int) status, parsed);
		else
		{
			json_t	   *e = error_body("BROKER_ERROR", "the broker refused the operation");

			json_object_set_new(json_object_get(e, "error"), "brokerStatus", json_integer(status));
			json_object_set_new(json_object_get(e, "error"), "brokerBody", parsed);
			set_reply(reply, 502, e);
		}
	}
	free(answer.data);
	return true;
}
