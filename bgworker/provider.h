/*
 * provider.h: the contract between the dispatcher and a broker adapter.
 *
 * The queue logic is the same for every provider; an adapter only turns a
 * claimed message into an HTTP request and reads the broker's answer.
 * Adapters build with jansson in the transfer's memory context.
 */
#ifndef PGWA_PROVIDER_H
#define PGWA_PROVIDER_H

#include "postgres.h"

#include <curl/curl.h>

#include "pg_jansson.h"

#include "lib/stringinfo.h"

/* One claimed message, as the adapters see it. */
typedef struct claimed_message
{
	const char *instance_id;
	int64		seq;
	const char *message_id;		/* also the Idempotency-Key of every attempt */
	int			attempt;
	const char *provider;
	const char *base_url;
	const char *api_key;
	const char *broker_instance_id;
	json_t	   *settings;
	json_t	   *payload;		/* canonical form from normalize_message */
} claimed_message;

/* What an adapter builds. */
typedef struct provider_request
{
	StringInfoData url;
	struct curl_slist *headers;
	char	   *body;
} provider_request;

typedef struct provider_ops
{
	const char *name;

	/*
	 * Fills req; returns NULL, or a reason why this message cannot be sent
	 * through this provider (a permanent failure).
	 */
	const char *(*build) (const claimed_message *msg, provider_request *req);

	/* The broker's id for an accepted message (2xx body), or NULL. */
	char	   *(*parse_id) (json_t *body);

	/* A short description of an error answer, or NULL to use the status. */
	char	   *(*parse_error) (long status, json_t *body);

	/* Whether an error answer means the WhatsApp instance is offline. */
	bool		(*is_disconnected) (long status, json_t *body);

	/*
	 * Optional: whether an error answer is transient whatever its status
	 * (some brokers report throttling as a 400). 408, 425, 429 and 5xx are
	 * always transient.
	 */
	bool		(*is_transient) (long status, json_t *body);
} provider_ops;

extern const provider_ops provider_broker;
extern const provider_ops provider_evolution;
extern const provider_ops provider_meta;

/* Helpers shared by the adapters (transfer.c). */
extern void provider_append_base(StringInfo url, const char *base_url);
extern void provider_append_escaped(StringInfo url, const char *segment);
extern struct curl_slist *provider_add_header(struct curl_slist *list, const char *name,
											  const char *value);
extern const char *json_str(json_t *obj, const char *key);
extern char *provider_dump(json_t *body);
extern char *provider_phone_digits(const char *to);

#endif							/* PGWA_PROVIDER_H */
