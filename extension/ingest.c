/*
 * ingest.c: pgwa.ingest_webhook(), the seed-000 webhook's way in by SQL,
 * and its fast path, which pgwa.http() shares (http_fast.c).
 *
 * Every webhook body is checked and stored in the request, and applied
 * later by the inbound appliers (sql/src/58_inbound_ingest.sql). The usual
 * body (one JSON object naming its instanceId, a secret header, a body the
 * normaliser takes) goes through here: one lookup of the secret's instance,
 * the normaliser run to check the body, one insert, a wake-up of the
 * appliers at commit. Whatever else (no or a wrong secret, a body that names
 * no instance, a refusal to store and answer) is answered by the same rules
 * in SQL, pgwa._ingest_webhook_sql, so that there is one definition of them.
 * plpgsql would do the fast path too, at three times the CPU: it prepares
 * each of its expressions again in every transaction.
 */
#include "postgres.h"

#include "inbound.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

PG_FUNCTION_INFO_V1(pgwa_ingest_webhook);
PG_FUNCTION_INFO_V1(pgwa_webhook_token);

static SPIPlanPtr lookup_plan = NULL;
static SPIPlanPtr insert_plan = NULL;
static SPIPlanPtr slow_plan = NULL;

/* The string value of a top-level key of a jsonb object, or NULL. */
static char *
jsonb_str(Jsonb *j, const char *key)
{
	JsonbValue *v;

	if (j == NULL || !JB_ROOT_IS_OBJECT(j))
		return NULL;
	v = getKeyJsonValueFromContainer(&j->root, key, strlen(key), NULL);
	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

static char *
trimmed(char *s)
{
	char	   *end;

	if (s == NULL)
		return NULL;
	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	return *s ? s : NULL;
}

/* s without a leading "Bearer " (any case, any blanks), or NULL. */
static char *
after_bearer(char *s)
{
	if (s == NULL || pg_strncasecmp(s, "bearer", 6) != 0 || (s[6] != ' ' && s[6] != '\t'))
		return NULL;
	return trimmed(s + 7);
}

/*
 * The secret a broker presents and how, in the seed's order: X-API-Key,
 * Authorization: Bearer, X-Authorization (raw, or with Bearer). The one
 * reading of it: pgwa._webhook_token() is this function too.
 */
static char *
webhook_token(Jsonb *headers, const char **scheme)
{
	char	   *t;

	if ((t = trimmed(jsonb_str(headers, "x-api-key"))) != NULL)
	{
		*scheme = "x-api-key";
		return t;
	}
	if ((t = after_bearer(trimmed(jsonb_str(headers, "authorization")))) != NULL)
	{
		*scheme = "bearer";
		return t;
	}
	if ((t = trimmed(jsonb_str(headers, "x-authorization"))) != NULL)
	{
		char	   *b = after_bearer(t);

		*scheme = "x-authorization";
		return b ? b : t;
	}
	return NULL;
}

/* pgwa._webhook_token(headers) -> (token, scheme), both NULL without one. */
Datum
pgwa_webhook_token(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[2] = {0, 0};
	bool		nulls[2] = {true, true};
	const char *scheme = NULL;
	char	   *token = PG_ARGISNULL(0) ? NULL : webhook_token(PG_GETARG_JSONB_P(0), &scheme);

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "pgwa._webhook_token must return a composite");
	if (token != NULL)
	{
		values[0] = CStringGetTextDatum(token);
		values[1] = CStringGetTextDatum(scheme);
		nulls[0] = nulls[1] = false;
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/*
 * The body as jsonb (parsed from text when *body is NULL), if the
 * normaliser takes it: false for a body that is not JSON or that the
 * normaliser refuses, leaving it to the slow path to answer and store.
 */
static bool
body_checks(Jsonb **body, const char *text, const char *dialect)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool ok = true;
	Jsonb	   *volatile parsed = *body;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		if (parsed == NULL)
			parsed = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
		(void) pgwa_inbound_check(parsed, dialect);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	*body = parsed;
	return ok;
}

static void
prepare_plans(void)
{
	Oid			lookup_types[2] = {BYTEAOID, TEXTOID};
	Oid			insert_types[7] = {UUIDOID, UUIDOID, TEXTOID, TEXTOID, JSONBOID, TEXTOID, JSONBOID};
	Oid			slow_types[3] = {TEXTOID, JSONBOID, JSONBOID};

	if (lookup_plan != NULL)
		return;
	lookup_plan = pgwa_keep_plan("SELECT i.id, i.tenant_id, coalesce(i.settings->>'raw_fallback', 'false') = 'true' "
					   "FROM pgwa.instances i "
					   "WHERE i.id IN (SELECT s.instance_id FROM pgwa.webhook_secrets s "
					   "               WHERE s.secret_hash = $1 "
					   "                  OR (s.previous_hash = $1 AND s.previous_valid_until > now())) "
					   "  AND i.broker_instance_id = $2 LIMIT 2", 2, lookup_types);
	insert_plan = pgwa_keep_plan("INSERT INTO pgwa.webhook_events (instance_id, tenant_id, dialect, payload_type, headers, body) "
								 "VALUES ($1, $2, $3, $4, pgwa._webhook_headers($5, $6), $7) RETURNING id",
								 7, insert_types);
	slow_plan = pgwa_keep_plan("SELECT pgwa._ingest_webhook_sql($1, $2, $3)", 3, slow_types);
}

/* The same call answered by the SQL definition. */
static Datum
ingest_slowly(FunctionCallInfo fcinfo)
{
	Datum		args[3];
	char		nulls[3];
	bool		isnull;
	Datum		result;

	for (int i = 0; i < 3; i++)
	{
		args[i] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
	}
	if (SPI_execute_plan(slow_plan, args, nulls, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "pgwa: pgwa._ingest_webhook_sql returned no row");
	result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	result = isnull ? (Datum) 0 : SPI_datumTransfer(result, false, -1);
	SPI_finish();
	if (isnull)
		PG_RETURN_NULL();
	return result;
}

/*
 * The fast path: stores the body when everything about it is as usual and
 * returns its event id, else 0 (nothing done). SPI must be connected. The
 * body comes as jsonb or, when *body is NULL, as text. pgwa.http() takes
 * the usual webhook this way too (http_fast.c).
 */
int64
pgwa_ingest_fast(const char *dialect, Jsonb *headers, Jsonb **body, const char *body_text)
{
	char	   *instance_key;
	char	   *token;
	const char *scheme = NULL;
	const char *type;
	const char *event;
	const char *payload_type;
	bool		raw;
	Datum		args[7];
	bool		isnull;
	Datum		instance_id;
	Datum		tenant_id;
	bool		raw_fallback;

	prepare_plans();
	if (strcmp(dialect, "broker") != 0 && strcmp(dialect, "envelope") != 0 && strcmp(dialect, "baileys") != 0)
		return 0;
	token = webhook_token(headers, &scheme);
	if (token == NULL || !body_checks(body, body_text, dialect))
		return 0;
	instance_key = jsonb_str(*body, "instanceId");
	if (instance_key == NULL || jsonb_str(*body, "events") != NULL)
		return 0;

	/* the one instance whose secret this is and whose instanceId the body names */
	args[0] = PointerGetDatum(pgwa_sha256(token, strlen(token)));
	args[1] = CStringGetTextDatum(instance_key);
	if (SPI_execute_plan(lookup_plan, args, NULL, true, 2) != SPI_OK_SELECT || SPI_processed != 1)
		return 0;
	instance_id = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	tenant_id = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	raw_fallback = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));

	/* payload_type, as pgwa._payload_type reads a one-event body */
	type = jsonb_str(*body, "type");
	event = jsonb_str(*body, "event");
	raw = strcmp(dialect, "baileys") == 0 ||
		(type && strcmp(type, "WHATSAPP_MESSAGES_UPSERT") == 0) ||
		(event && strcmp(event, "WHATSAPP_MESSAGES_UPSERT") == 0);
	if (raw)
		payload_type = "WHATSAPP_MESSAGES_UPSERT";
	else if (strcmp(dialect, "envelope") == 0 || (type && strcmp(type, "MESSAGE_INBOUND") == 0))
		payload_type = "MESSAGE_INBOUND";
	else
		payload_type = "unknown";
	if (raw && !raw_fallback)
		return 0;

	args[0] = instance_id;
	args[1] = tenant_id;
	args[2] = CStringGetTextDatum(dialect);
	args[3] = CStringGetTextDatum(payload_type);
	args[4] = PointerGetDatum(headers);
	args[5] = CStringGetTextDatum(scheme);
	args[6] = PointerGetDatum(*body);
	if (SPI_execute_plan(insert_plan, args, NULL, false, 1) != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "pgwa: storing a webhook event failed");
	pgwa_wake_applier_at_commit();
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

Datum
pgwa_ingest_webhook(PG_FUNCTION_ARGS)
{
	Jsonb	   *body;
	int64		event_id;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pgwa: SPI_connect failed");
	prepare_plans();
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		return ingest_slowly(fcinfo);
	body = PG_GETARG_JSONB_P(2);
	event_id = pgwa_ingest_fast(text_to_cstring(PG_GETARG_TEXT_PP(0)), PG_GETARG_JSONB_P(1), &body, NULL);
	if (event_id == 0)
		return ingest_slowly(fcinfo);
	SPI_finish();
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(psprintf(
		"{\"eventId\": " INT64_FORMAT ", \"status\": \"received\", \"attempts\": 0, \"accepted\": 0, "
		"\"duplicates\": 0, \"ignored\": 0, \"httpStatus\": 202}", event_id))));
}
