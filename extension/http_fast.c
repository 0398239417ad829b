/*
 * http_fast.c: pgwa.http(), the entry point of pgwa-http, and its two fast
 * paths.
 *
 * Every request has one definition of its answer: the router in SQL,
 * pgwa._http_sql (sql/src/79_http_router.sql). The two requests that carry
 * the load are answered here first, in C, when everything about them is as
 * usual:
 *   - the seed-000 webhook, POST /api/integrations/whatsapp/webhook, stored
 *     by ingest.c's fast path;
 *   - a send, POST /v1/instances/{id}/messages, by a tenant key that owns
 *     the instance, enqueued by enqueue.c.
 * Anything else, and any request a fast path refuses or fails (a wrong key,
 * a body that is not a JSON object, a message the normaliser refuses, an
 * idempotency conflict...), goes to the router, whose answer is the
 * reference: a failed fast send is rolled back to its subtransaction and
 * the router serves the request again, so that errors keep their one
 * definition. Through plpgsql the send took about 2.5 times the CPU of
 * pgwa.send() under load: five nested functions, each preparing its
 * expressions again in every transaction, and a regular expression on the
 * key.
 */
#include "postgres.h"

#include <ctype.h>

#include "inbound.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

PG_FUNCTION_INFO_V1(pgwa_http);

static SPIPlanPtr router_plan = NULL;
static SPIPlanPtr owner_plan = NULL;

#define MAX_SEGMENTS 8

/* A reply of a fast path: the three columns of pgwa.http_response. */
typedef struct fast_reply
{
	int			status;
	const char *headers;		/* JSON text, made jsonb once, in the result */
	const char *body;			/* jsonb text, as the router's body is */
} fast_reply;

/*
 * The path's segments, empty ones left out (as the router splits it);
 * returns how many, or -1 beyond MAX_SEGMENTS. Each is a palloc'd string.
 */
static int
path_segments(const char *path, char **seg)
{
	int			n = 0;
	const char *p = path;

	while (*p)
	{
		const char *start;

		while (*p == '/')
			p++;
		if (*p == '\0')
			break;
		start = p;
		while (*p && *p != '/')
			p++;
		if (n == MAX_SEGMENTS)
			return -1;
		seg[n++] = pnstrdup(start, p - start);
	}
	return n;
}

/*
 * A header's string value (names come lower-cased). NULL when absent or
 * JSON null; *odd is set for any other kind of value, whose text the router
 * would read and this does not try to.
 */
static char *
header(Jsonb *headers, const char *name, bool *odd)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&headers->root, name, strlen(name), NULL);

	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (v->type != jbvString)
	{
		*odd = true;
		return NULL;
	}
	return pnstrdup(v->val.string.val, v->val.string.len);
}

static bool
is_regex_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/*
 * The API key presented, read exactly as pgwa._http_caller reads it:
 * X-API-Key, else Authorization after "Bearer" and blanks, else
 * X-Authorization as it is; spaces trimmed. NULL when there is none or it
 * cannot be read the same way here.
 */
static char *
presented_key(Jsonb *headers)
{
	bool		odd = false;
	char	   *key = header(headers, "x-api-key", &odd);
	char	   *end;

	if (key == NULL && !odd)
	{
		char	   *auth = header(headers, "authorization", &odd);

		if (auth != NULL && pg_strncasecmp(auth, "bearer", 6) == 0 && is_regex_space(auth[6]))
		{
			key = auth + 6;
			while (is_regex_space(*key))
				key++;
		}
	}
	if (key == NULL && !odd)
		key = header(headers, "x-authorization", &odd);
	if (key == NULL || odd)
		return NULL;
	while (*key == ' ')
		key++;
	end = key + strlen(key);
	while (end > key && end[-1] == ' ')
		*--end = '\0';
	return *key ? key : NULL;
}

/* Whether s is a UUID as pgwa._uuid_or_null takes it: 8-4-4-4-12 hex digits. */
static bool
is_uuid_text(const char *s)
{
	for (int i = 0; i < 36; i++)
	{
		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (s[i] != '-')
				return false;
		}
		else if (!isxdigit((unsigned char) s[i]))
			return false;
	}
	return s[36] == '\0';
}

static void
prepare_plans(void)
{
	if (router_plan != NULL)
		return;
	router_plan = pgwa_keep_plan("SELECT r.status, r.headers, r.body FROM pgwa._http_sql($1, $2, $3, $4, $5) r",
								 5, (Oid[]) {TEXTOID, TEXTOID, JSONBOID, JSONBOID, TEXTOID});
	/* pgwa._require_tenant and pgwa._tenant_instance in one lookup */
	owner_plan = pgwa_keep_plan("SELECT 1 FROM pgwa.api_keys k JOIN pgwa.instances i ON i.tenant_id = k.tenant_id"
								" WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND k.role = 'tenant' AND i.id = $2",
								2, (Oid[]) {BYTEAOID, UUIDOID});
}

/* A jsonb text in its canonical form (keys ordered as jsonb orders them). */
static const char *
canonical(const char *json)
{
	return DatumGetCString(DirectFunctionCall1(jsonb_out, DirectFunctionCall1(jsonb_in, CStringGetDatum(json))));
}

/* The reply pgwa._http_send gives to an enqueue. */
static void
send_reply(const pgwa_enqueued *res, fast_reply *out)
{
	char	   *id = DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&res->id)));
	StringInfoData body;

	initStringInfo(&body);
	appendStringInfo(&body, "{\"message_id\": \"%s\", \"seq\": " INT64_FORMAT ", \"status\": ", id, res->seq);
	escape_json(&body, res->status);
	appendStringInfoString(&body, ", \"scheduled_for\": ");
	if (res->has_schedule)
	{
		char		buf[MAXDATELEN + 1];

		JsonEncodeDateTime(buf, TimestampTzGetDatum(res->scheduled_for), TIMESTAMPTZOID, NULL);
		escape_json(&body, buf);
	}
	else
		appendStringInfoString(&body, "null");
	appendStringInfoChar(&body, '}');

	out->status = res->created ? 202 : 200;
	out->body = canonical(body.data);
	out->headers = res->created
		? psprintf("{\"Content-Type\": \"application/json\", \"Location\": \"/v1/messages/%s\"}", id)
		: "{\"Content-Type\": \"application/json\", \"Idempotent-Replayed\": \"true\"}";
}

/*
 * POST /v1/instances/{id}/messages: enqueues when the key is a tenant's that
 * owns the instance and the enqueue succeeds, and returns true with the
 * reply; else returns false with nothing done. SPI must be connected.
 */
static bool
send_fast(const char *instance_text, Jsonb *headers, const char *body, fast_reply *out)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	bool		odd = false;
	char	   *key = presented_key(headers);
	const char *utf8;
	char	   *idempotency_key = header(headers, "idempotency-key", &odd);
	Datum		args[2];
	volatile bool ok = true;
	pgwa_enqueued res = {0};

	if (key == NULL || odd || !is_uuid_text(instance_text))
		return false;
	utf8 = pg_server_to_any(key, strlen(key), PG_UTF8);
	args[0] = PointerGetDatum(pgwa_sha256(utf8, strlen(utf8)));	/* pgwa._hash_key */
	args[1] = DirectFunctionCall1(uuid_in, CStringGetDatum(instance_text));
	if (SPI_execute_plan(owner_plan, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "pgwa: the key lookup failed");
	if (SPI_processed != 1)
		return false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		Datum		message = DirectFunctionCall1(jsonb_in, CStringGetDatum(body));

		if (!JB_ROOT_IS_OBJECT(DatumGetJsonbP(message)))
			ok = false;
		else
			pgwa_enqueue_in_spi(args[1], message, idempotency_key, &res);
		if (ok)
			ReleaseCurrentSubTransaction();
		else
			RollbackAndReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		CurrentResourceOwner = owner;
		/* a cancel is not the request's answer: the router would not catch it either */
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			ReThrowError(edata);
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	if (ok)
		send_reply(&res, out);
	return ok;
}

/* The webhook fast path's reply. */
static void
webhook_reply(int64 event_id, fast_reply *out)
{
	out->status = 202;
	out->headers = "{\"Content-Type\": \"application/json\"}";
	out->body = canonical(psprintf("{\"status\": \"received\", \"eventId\": " INT64_FORMAT ", \"ignored\": 0, "
								   "\"accepted\": 0, \"duplicates\": 0}", event_id));
}

/* Which fast path answers the request, if one does; fills *out. */
static bool
answer_fast(FunctionCallInfo fcinfo, fast_reply *out)
{
	char	   *seg[MAX_SEGMENTS];
	int			n;
	Jsonb	   *headers;
	char	   *body;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(3) || PG_ARGISNULL(4) ||
		pg_strcasecmp(text_to_cstring(PG_GETARG_TEXT_PP(0)), "POST") != 0)
		return false;
	headers = PG_GETARG_JSONB_P(3);
	if (!JB_ROOT_IS_OBJECT(headers))
		return false;
	n = path_segments(text_to_cstring(PG_GETARG_TEXT_PP(1)), seg);
	body = text_to_cstring(PG_GETARG_TEXT_PP(4));

	if (n == 4 && strcmp(seg[0], "v1") == 0 && strcmp(seg[1], "instances") == 0 &&
		strcmp(seg[3], "messages") == 0)
		return send_fast(seg[2], headers, body, out);

	if (n == 4 && strcmp(seg[0], "api") == 0 && strcmp(seg[1], "integrations") == 0 &&
		strcmp(seg[2], "whatsapp") == 0 && strcmp(seg[3], "webhook") == 0)
	{
		Jsonb	   *parsed = NULL;
		int64		event_id = pgwa_ingest_fast("broker", headers, &parsed, body);

		if (event_id != 0)
			webhook_reply(event_id, out);
		return event_id != 0;
	}
	return false;
}

/*
 * pgwa.http(method, path, query, headers, body) -> pgwa.http_response:
 * a fast path's answer, else the router's.
 */
Datum
pgwa_http(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	fast_reply	fast;
	bool		isnull;
	MemoryContext caller = CurrentMemoryContext;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "pgwa.http must return a composite");
	desc = BlessTupleDesc(desc);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pgwa: SPI_connect failed");
	prepare_plans();

	if (answer_fast(fcinfo, &fast))
	{
		/* the reply outlives SPI's memory */
		MemoryContext spi = MemoryContextSwitchTo(caller);

		values[0] = Int32GetDatum(fast.status);
		values[1] = DirectFunctionCall1(jsonb_in, CStringGetDatum(fast.headers));
		values[2] = CStringGetTextDatum(fast.body);
		MemoryContextSwitchTo(spi);
		SPI_finish();
		PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
	}

	{
		Datum		args[5];
		char		argnulls[5];

		for (int i = 0; i < 5; i++)
		{
			args[i] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
			argnulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
		}
		if (SPI_execute_plan(router_plan, args, argnulls, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "pgwa: pgwa._http_sql returned no row");
	}
	for (int i = 0; i < 3; i++)
	{
		values[i] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i + 1, &isnull);
		nulls[i] = isnull;
		if (!isnull && i > 0)
			values[i] = SPI_datumTransfer(values[i], false, -1);
	}
	SPI_finish();
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
