/*
 * enqueue.c: pgwa.enqueue() and pgwa.send(), the hot path of every send.
 *
 * One call validates the message (normalize.c), takes the instance's queue
 * (its instance_state row, which hands out the per-instance sequence) while
 * reading the instance, checks the instance can send the message, applies
 * idempotency, inserts the outbox row and counts it, moves head_due when the
 * message goes first, and asks for a dispatcher wake-up at commit. Without
 * an idempotency key and with a backlog that is two statements, prepared
 * once per backend and kept. pgwa.send builds its message straight into the
 * normaliser's input, without a jsonb round trip.
 *
 * The checks and their order are those of the plpgsql version this replaces;
 * errors are those pgwa._raise gives: SQLSTATE class PW, the field in
 * COLUMN_NAME. A refused call rolls back, and with it the sequence number it
 * took.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/datetime.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "pg_jansson.h"

#include "pgwa.h"

#define PGWA_ERRCODE_IDEMPOTENCY	MAKE_SQLSTATE('P','W','4','0','9')
#define PGWA_ERRCODE_NOT_CONFIGURED	MAKE_SQLSTATE('P','W','5','0','3')

/* Idempotency keys have 1-200 characters; scheduledFor is 90 days ahead at most. */
#define MAX_KEY_CHARS		200
#define MAX_SCHEDULE_DAYS	90

PG_FUNCTION_INFO_V1(pgwa_enqueue);
PG_FUNCTION_INFO_V1(pgwa_send);

/* Statements, prepared on first use and kept for the backend's life. */
static SPIPlanPtr take_queue_plan = NULL;
static SPIPlanPtr existing_plan = NULL;
static SPIPlanPtr insert_plan = NULL;
static SPIPlanPtr first_count_plan = NULL;
static SPIPlanPtr head_due_plan = NULL;
static SPIPlanPtr window_plan = NULL;

/* Result row shapes of pgwa.enqueue and pgwa.send, built once. */
static TupleDesc enqueue_desc = NULL;
static TupleDesc send_desc = NULL;

static void
prepare_plans(void)
{
	Oid			uuid_text[2] = {UUIDOID, TEXTOID};

	/*
	 * Takes the instance's queue and reads its configuration in one
	 * statement. The queue's row lock serialises an instance's enqueues: the
	 * sequence and the due times taken after it agree, and a concurrent
	 * enqueue with the same key has committed before we look for it. A call
	 * refused below gives the sequence number back when it rolls back.
	 * head_due comes back so that it is written only when the new message
	 * goes first.
	 */
	if (take_queue_plan == NULL)
		take_queue_plan = pgwa_keep_plan(
			"UPDATE pgwa.instance_state s SET next_seq = s.next_seq + 1"
			"  FROM pgwa.instances i"
			" WHERE s.instance_id = $1 AND i.id = $1"
			" RETURNING s.next_seq, s.head_due, i.tenant_id, i.provider, i.base_url,"
			"           i.broker_api_key, i.settings->>'phone_number_id', i.max_attempts",
			1, (Oid[]) {UUIDOID});

	if (existing_plan == NULL)
		existing_plan = pgwa_keep_plan(
			"SELECT o.id, o.status, o.seq, o.scheduled_for, o.request_hash"
			"  FROM pgwa.outbox o WHERE o.instance_id = $1 AND o.idempotency_key = $2",
			2, uuid_text);

	/*
	 * The message and its count for GET /metrics, in one statement. Only
	 * this instance's enqueues take its counter rows, and they already queue
	 * behind its instance_state row. A plain update, not an upsert: ON
	 * CONFLICT would lock the row first, one more WAL record per message.
	 */
	if (insert_plan == NULL)
		insert_plan = pgwa_keep_plan(
			"WITH m AS ("
			"  INSERT INTO pgwa.outbox (id, instance_id, seq, tenant_id, idempotency_key, request_hash,"
			"                           type, recipient, payload, status, due_at, scheduled_for,"
			"                           delay_message_s, max_attempts)"
			"  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14))"
			" UPDATE pgwa.enqueue_counts c SET queued = c.queued + 1"
			" WHERE c.instance_id = $2 AND c.type = $7",
			14, (Oid[]) {UUIDOID, UUIDOID, INT8OID, UUIDOID, TEXTOID, BYTEAOID,
				TEXTOID, TEXTOID, JSONBOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
			INT4OID, INT4OID});

	/* The first message of its type on the instance starts the count. */
	if (first_count_plan == NULL)
		first_count_plan = pgwa_keep_plan(
			"INSERT INTO pgwa.enqueue_counts AS c (instance_id, type, queued) VALUES ($1, $2, 1)"
			" ON CONFLICT (instance_id, type) DO UPDATE SET queued = c.queued + 1",
			2, uuid_text);

	if (head_due_plan == NULL)
		head_due_plan = pgwa_keep_plan(
			"UPDATE pgwa.instance_state s SET head_due = $2"
			" WHERE s.instance_id = $1 AND (s.head_due IS NULL OR s.head_due > $2)",
			2, (Oid[]) {UUIDOID, TIMESTAMPTZOID});

	if (window_plan == NULL)
		window_plan = pgwa_keep_plan(
			"SELECT w.state FROM pgwa.window_state($1, $2) w",
			2, uuid_text);
}

/* Column `col` of the first row SPI returned, as a C string (NULL if null). */
static char *
spi_text(int col)
{
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col);
}

static Datum
spi_datum(int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, isnull);
}

/*
 * A message id: a UUID version 7 (RFC 9562), milliseconds since 1970 first
 * and random bits after, so the outbox's index on id grows at its right
 * edge instead of touching a random leaf page at every insert.
 */
static Datum
new_message_id(void)
{
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));
	TimestampTz now = GetCurrentTimestamp();
	uint64		ms = (uint64) (now / 1000) +
		(uint64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;

	if (!pg_strong_random(uuid->data + 6, UUID_LEN - 6))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random values")));
	for (int i = 0; i < 6; i++)
		uuid->data[i] = (uint8) (ms >> (40 - 8 * i));
	uuid->data[6] = (uuid->data[6] & 0x0f) | 0x70;	/* version 7 */
	uuid->data[8] = (uuid->data[8] & 0x3f) | 0x80;	/* variant 10 */
	return UUIDPGetDatum(uuid);
}

static Jsonb *
json_to_jsonb(json_t *msg)
{
	char	   *dumped = json_dumps(msg, JSON_COMPACT | JSON_REAL_PRECISION(15));

	if (dumped == NULL)
		elog(ERROR, "pgwa enqueue: could not write a message");
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(dumped)));
}

/*
 * scheduledFor as timestamptz input reads it: its bad formats and
 * overflows are a PW400, other input errors (an unknown time zone) stay
 * what they are, as with a cast.
 */
static TimestampTz
parse_schedule(const char *s)
{
	fsec_t		fsec;
	struct pg_tm tt,
			   *tm = &tt;
	int			tz;
	int			dtype;
	int			nf;
	int			dterr;
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	char		workbuf[MAXDATELEN + MAXDATEFIELDS];
	TimestampTz result;

	dterr = ParseDateTime(s, workbuf, sizeof(workbuf), field, ftype, MAXDATEFIELDS, &nf);
	if (dterr == 0)
		dterr = DecodeDateTime(field, ftype, nf, &dtype, tm, &fsec, &tz);
	if (dterr == DTERR_BAD_FORMAT || dterr == DTERR_FIELD_OVERFLOW ||
		dterr == DTERR_MD_FIELD_OVERFLOW)
		pgwa_raise(PGWA_ERRCODE_VALIDATION, "scheduledFor", NULL,
					"scheduledFor must be an ISO 8601 timestamp");
	if (dterr != 0)
		DateTimeParseError(dterr, s, "timestamp with time zone");

	switch (dtype)
	{
		case DTK_DATE:
			if (tm2timestamp(tm, fsec, &tz, &result) != 0)
				pgwa_raise(PGWA_ERRCODE_VALIDATION, "scheduledFor", NULL,
							"scheduledFor must be an ISO 8601 timestamp");
			return result;
		case DTK_EPOCH:
			return SetEpochTimestamp();
		default:
			/* infinity, -infinity: not a time to send at */
			pgwa_raise(PGWA_ERRCODE_VALIDATION, "scheduledFor", NULL,
						"scheduledFor must be an ISO 8601 timestamp");
	}
	pg_unreachable();
}

static int
char_length(const char *s)
{
	return pg_mbstrlen_with_len(s, strlen(s));
}

static bool
ends_with(const char *s, const char *suffix)
{
	size_t		n = strlen(s),
				m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* What enqueue needs of an instance, read with its queue. */
typedef struct instance_row
{
	int64		seq;			/* the sequence number just taken */
	bool		head_null;
	TimestampTz head_due;
	pg_uuid_t	tenant_id;
	char	   *provider;
	char	   *base_url;
	char	   *api_key;
	char	   *phone_number_id;
	int32		max_attempts;
} instance_row;

/*
 * Reads what take_queue_plan returned, or says "instance not found" when
 * it returned no row.
 */
static void
read_instance_row(instance_row *row)
{
	bool		isnull;

	if (SPI_processed != 1)
		pgwa_raise(PGWA_ERRCODE_NOT_FOUND, "instance_id", NULL, "instance not found");
	row->seq = DatumGetInt64(spi_datum(1, &isnull));
	row->head_due = DatumGetTimestampTz(spi_datum(2, &row->head_null));
	row->tenant_id = *DatumGetUUIDP(spi_datum(3, &isnull));
	row->provider = spi_text(4);
	row->base_url = spi_text(5);
	row->api_key = spi_text(6);
	row->phone_number_id = spi_text(7);
	row->max_attempts = DatumGetInt32(spi_datum(8, &isnull));
}

/*
 * Refuses at once what the dispatcher could never send: an instance without
 * what its provider needs (PW503 naming the field) and, through the Cloud
 * API (meta), polls, group or LID recipients, and anything but a template
 * outside the contact's 24 h window (WINDOW_CLOSED).
 */
static void
check_instance(instance_row *row, const char *type, const char *to)
{
	bool		meta = strcmp(row->provider, "meta") == 0;

	if (row->base_url == NULL || row->api_key == NULL || row->api_key[0] == '\0' ||
		(meta && (row->phone_number_id == NULL || row->phone_number_id[0] == '\0')))
	{
		const char *missing = row->base_url == NULL ? "base_url"
			: (row->api_key == NULL || row->api_key[0] == '\0') ? "api_key"
			: "settings.phone_number_id";

		pgwa_raise(PGWA_ERRCODE_NOT_CONFIGURED, missing, NULL,
					"the instance is not configured to send: %s is missing", missing);
	}
	if (!meta)
		return;
	if (strcmp(type, "poll") == 0)
		pgwa_raise(PGWA_ERRCODE_VALIDATION, "type", NULL, "the Cloud API has no polls");
	if (strchr(to, '@') != NULL && !ends_with(to, "@s.whatsapp.net"))
		/* a user JID is a phone number; groups and LIDs are not */
		pgwa_raise(PGWA_ERRCODE_VALIDATION, "to", NULL,
					"the Cloud API sends to phone numbers only, not to group or LID JIDs");
	if (strcmp(type, "template") != 0)
	{
		/*
		 * Cloud API rule: outside the 24 h customer service window (or to a
		 * contact who never wrote), a business may only send templates.
		 */
		Datum		args[2] = {UUIDPGetDatum(&row->tenant_id), CStringGetTextDatum(to)};
		char	   *state = NULL;

		if (SPI_execute_plan(window_plan, args, NULL, false, 1) == SPI_OK_SELECT &&
			SPI_processed == 1)
			state = spi_text(1);
		if (state != NULL && (strcmp(state, "closed") == 0 || strcmp(state, "unknown") == 0))
			pgwa_raise(PGWA_ERRCODE_WINDOW_CLOSED, "to",
						"the window opens when the contact writes to you",
						"the 24 h window with this contact is closed: only template messages can be sent");
	}
}

/* The first message of its type on the instance starts its count. */
static void
count_first(Datum instance, const char *type)
{
	Datum		args[2] = {instance, CStringGetTextDatum(type)};

	if (SPI_execute_plan(first_count_plan, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "pgwa enqueue: counting failed");
}

/*
 * head_due is the due time of the first pending message: it moves only when
 * this one goes first (an idle queue, or a head scheduled later). With a
 * backlog, the common case under load, nothing is written.
 */
static void
move_head(Datum instance, instance_row *row, TimestampTz due)
{
	Datum		args[2] = {instance, TimestampTzGetDatum(due)};

	if (!row->head_null && row->head_due <= due)
		return;
	if (SPI_execute_plan(head_due_plan, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "pgwa enqueue: head_due update failed");
}

/*
 * Enqueues the message `in` (as a client wrote it) on an instance; key is
 * the Idempotency-Key, NULL for none. Runs inside SPI.
 */
static void
enqueue_message(Datum instance, bool instance_null, json_t *in, const char *key,
				pgwa_enqueued *res)
{
	json_t	   *msg = pgwa_normalize_json(in);
	const char *type = json_string_value(json_object_get(msg, "type"));
	const char *to = json_string_value(json_object_get(msg, "to"));
	json_t	   *sched_json = json_object_get(msg, "scheduledFor");
	json_t	   *delay_json = json_object_get(msg, "delayMessage");
	int32		delay = delay_json ? (int32) json_integer_value(delay_json) : 0;
	instance_row row;
	Jsonb	   *hashed;
	Jsonb	   *payload;
	char	   *hashed_text;
	bytea	   *hash = NULL;
	TimestampTz sched = 0;
	TimestampTz due;
	bool		isnull;

	if (instance_null)
		pgwa_raise(PGWA_ERRCODE_NOT_FOUND, "instance_id", NULL, "instance not found");

	/* The queue, the instance, and whether it can send this at all. */
	if (SPI_execute_plan(take_queue_plan, &instance, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "pgwa enqueue: could not take the queue");
	read_instance_row(&row);
	check_instance(&row, type, to);

	if (key == NULL && json_object_get(msg, "messageId") != NULL)
		key = pstrdup(json_string_value(json_object_get(msg, "messageId")));
	if (key != NULL && (key[0] == '\0' || char_length(key) > MAX_KEY_CHARS))
		pgwa_raise(PGWA_ERRCODE_VALIDATION, "messageId", NULL,
					"messageId / Idempotency-Key must be 1-200 characters");
	json_object_del(msg, "messageId");

	/*
	 * Idempotency compares the message as stored, scheduledFor included.
	 * Without a key nothing is ever compared, so nothing is hashed.
	 */
	hashed = json_to_jsonb(msg);
	if (key != NULL)
	{
		hashed_text = JsonbToCString(NULL, &hashed->root, VARSIZE(hashed));
		hashed_text = pg_server_to_any(hashed_text, strlen(hashed_text), PG_UTF8);
		hash = pgwa_sha256(hashed_text, strlen(hashed_text));
	}

	if (sched_json != NULL)
	{
		TimestampTz now = GetCurrentTransactionStartTimestamp();
		Interval	horizon = {.time = 0,.day = MAX_SCHEDULE_DAYS,.month = 0};

		sched = parse_schedule(json_string_value(sched_json));
		if (sched <= now)
			pgwa_raise(PGWA_ERRCODE_VALIDATION, "scheduledFor", NULL,
						"scheduledFor must be in the future");
		if (sched > DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
															TimestampTzGetDatum(now),
															IntervalPGetDatum(&horizon))))
			pgwa_raise(PGWA_ERRCODE_VALIDATION, "scheduledFor", NULL,
						"scheduledFor must be at most 90 days ahead");
		json_object_del(msg, "scheduledFor");
		payload = json_to_jsonb(msg);
	}
	else
		payload = hashed;

	if (key != NULL)
	{
		Datum		args[2] = {instance, CStringGetTextDatum(key)};

		if (SPI_execute_plan(existing_plan, args, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "pgwa enqueue: idempotency lookup failed");
		if (SPI_processed == 1)
		{
			Datum		stored_datum = spi_datum(5, &isnull);
			bytea	   *stored = isnull ? NULL : DatumGetByteaPP(stored_datum);
			char	   *status;

			if (stored == NULL || VARSIZE_ANY_EXHDR(stored) != PG_SHA256_DIGEST_LENGTH ||
				memcmp(VARDATA_ANY(stored), VARDATA(hash), PG_SHA256_DIGEST_LENGTH) != 0)
				pgwa_raise(PGWA_ERRCODE_IDEMPOTENCY, "messageId",
							psprintf("message %s", spi_text(1)),
							"this idempotency key was already used for a different message");
			/* What is returned must outlive SPI_finish. */
			res->id = *DatumGetUUIDP(spi_datum(1, &isnull));
			status = spi_text(2);
			res->status = strcpy(SPI_palloc(strlen(status) + 1), status);
			res->seq = DatumGetInt64(spi_datum(3, &isnull));
			res->scheduled_for = DatumGetTimestampTz(spi_datum(4, &isnull));
			res->has_schedule = !isnull;
			res->created = false;
			return;
		}
	}

	/* Taken once the queue is held, so due times follow the sequence. */
	due = sched_json ? sched : GetCurrentTimestamp();
	{
		Datum		args[14];
		char		nulls[14];

		memset(nulls, ' ', sizeof(nulls));
		args[0] = new_message_id();
		args[1] = instance;
		args[2] = Int64GetDatum(row.seq);
		args[3] = UUIDPGetDatum(&row.tenant_id);
		args[4] = key ? CStringGetTextDatum(key) : (Datum) 0;
		nulls[4] = key ? ' ' : 'n';
		args[5] = PointerGetDatum(hash);
		nulls[5] = key ? ' ' : 'n';
		args[6] = CStringGetTextDatum(type);
		args[7] = CStringGetTextDatum(to);
		args[8] = JsonbPGetDatum(payload);
		res->status = sched_json ? "scheduled" : "queued";
		args[9] = CStringGetTextDatum(res->status);
		args[10] = TimestampTzGetDatum(due);
		args[11] = TimestampTzGetDatum(sched);
		nulls[11] = sched_json ? ' ' : 'n';
		args[12] = Int32GetDatum(delay);
		args[13] = Int32GetDatum(row.max_attempts);
		if (SPI_execute_plan(insert_plan, args, nulls, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "pgwa enqueue: insert failed");
		if (SPI_processed == 0)
			count_first(instance, type);
		res->id = *DatumGetUUIDP(args[0]);
	}
	res->seq = row.seq;
	res->scheduled_for = sched;
	res->has_schedule = sched_json != NULL;
	res->created = true;
	move_head(instance, &row, due);
	pgwa_wake_dispatcher_at_commit();
}

/* The row types of the results, blessed once for the backend. */
static TupleDesc
result_desc(bool send)
{
	TupleDesc  *cached = send ? &send_desc : &enqueue_desc;

	if (*cached == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
		TupleDesc	desc = CreateTemplateTupleDesc(send ? 2 : 5);

		TupleDescInitEntry(desc, 1, "message_id", UUIDOID, -1, 0);
		TupleDescInitEntry(desc, 2, "status", TEXTOID, -1, 0);
		if (!send)
		{
			TupleDescInitEntry(desc, 3, "seq", INT8OID, -1, 0);
			TupleDescInitEntry(desc, 4, "scheduled_for", TIMESTAMPTZOID, -1, 0);
			TupleDescInitEntry(desc, 5, "created", BOOLOID, -1, 0);
		}
		*cached = BlessTupleDesc(desc);
		MemoryContextSwitchTo(old);
	}
	return *cached;
}

/*
 * Runs one enqueue and returns its row. The functions are declared RETURNS
 * TABLE (one row, or an error); leaving the result set's isDone at
 * ExprSingleResult tells the executor this row is the only one.
 */
static Datum
enqueue_and_return(FunctionCallInfo fcinfo, Datum instance, bool instance_null,
				   json_t *in, const char *key, bool send)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	pgwa_enqueued res = {0};
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};
	TupleDesc	desc;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		!(rsinfo->allowedModes & SFRM_ValuePerCall))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));
	desc = result_desc(send);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pgwa enqueue: SPI_connect failed");
	prepare_plans();
	enqueue_message(instance, instance_null, in, key, &res);
	SPI_finish();

	values[0] = UUIDPGetDatum(&res.id);
	values[1] = CStringGetTextDatum(res.status);
	if (!send)
	{
		values[2] = Int64GetDatum(res.seq);
		values[3] = TimestampTzGetDatum(res.scheduled_for);
		nulls[3] = !res.has_schedule;
		values[4] = BoolGetDatum(res.created);
	}
	rsinfo->returnMode = SFRM_ValuePerCall;
	rsinfo->isDone = ExprSingleResult;
	return HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
}

static void
not_an_object(void)
{
	pgwa_raise(PGWA_ERRCODE_VALIDATION, "message", NULL, "the message must be a JSON object");
}

/* A jsonb message as the normaliser's input. */
static json_t *
json_from_jsonb(Jsonb *jb)
{
	char	   *text = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
	json_error_t err;
	json_t	   *parsed = json_loads(text, JSON_DECODE_ANY, &err);

	if (parsed == NULL)
		pgwa_raise(PGWA_ERRCODE_VALIDATION, "message", NULL,
					"the message could not be read: %s", err.text);
	return parsed;
}

/*
 * Enqueues a jsonb message as pgwa.enqueue() does, for a caller already in
 * SPI: pgwa.http()'s fast path for POST /v1/instances/{id}/messages.
 */
void
pgwa_enqueue_in_spi(Datum instance, Datum message, const char *key, pgwa_enqueued *res)
{
	pgwa_use_palloc_for_jansson();
	prepare_plans();
	enqueue_message(instance, false, json_from_jsonb(DatumGetJsonbP(message)), key, res);
}

/*
 * pgwa.enqueue(instance uuid, message jsonb, idempotency_key text)
 * RETURNS TABLE (message_id uuid, status text, seq bigint,
 *                scheduled_for timestamptz, created boolean)
 */
Datum
pgwa_enqueue(PG_FUNCTION_ARGS)
{
	json_t	   *in;

	pgwa_use_palloc_for_jansson();
	if (PG_ARGISNULL(1))
		not_an_object();
	in = json_from_jsonb(PG_GETARG_JSONB_P(1));
	return enqueue_and_return(fcinfo, PG_ARGISNULL(0) ? (Datum) 0 : PG_GETARG_DATUM(0),
							  PG_ARGISNULL(0), in,
							  PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2)),
							  false);
}

/* A text argument as a JSON string, JSON null when SQL NULL. */
static void
set_text(json_t *obj, const char *key, FunctionCallInfo fcinfo, int arg)
{
	json_t	   *v;

	if (PG_ARGISNULL(arg))
		v = json_null();
	else
	{
		text	   *t = PG_GETARG_TEXT_PP(arg);

		v = json_stringn(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
		if (v == NULL)
			pgwa_raise(PGWA_ERRCODE_VALIDATION, key, NULL, "%s must be valid UTF-8", key);
	}
	json_object_set_new(obj, key, v);
}

/*
 * pgwa.send(instance uuid, to text, text text, options jsonb,
 *           idempotency_key text) RETURNS TABLE (message_id uuid, status text)
 *
 * The message is options with to, type text and text set over them.
 */
Datum
pgwa_send(PG_FUNCTION_ARGS)
{
	json_t	   *in;

	pgwa_use_palloc_for_jansson();
	if (PG_ARGISNULL(3))
		in = json_object();
	else
	{
		Jsonb	   *options = PG_GETARG_JSONB_P(3);

		/* options || object: anything but an object makes an array */
		if (!JB_ROOT_IS_OBJECT(options))
			not_an_object();
		in = JB_ROOT_COUNT(options) == 0 ? json_object() : json_from_jsonb(options);
	}
	set_text(in, "to", fcinfo, 1);
	json_object_set_new(in, "type", json_string("text"));
	set_text(in, "text", fcinfo, 2);
	return enqueue_and_return(fcinfo, PG_ARGISNULL(0) ? (Datum) 0 : PG_GETARG_DATUM(0),
							  PG_ARGISNULL(0), in,
							  PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4)),
							  true);
}
