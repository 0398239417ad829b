/*
 * sql_support.c: small helpers the SQL scripts call once per row on the
 * inbound apply path, in C because a LANGUAGE sql or plpgsql function
 * called per row costs microseconds each time.
 */
#include "postgres.h"

#include "pg_jansson.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

#include "pgwa.h"

/* NOTIFY payloads must stay under 8000 bytes; a margin for the channel name. */
#define PGWA_NOTE_MAX_BYTES 7900

PG_FUNCTION_INFO_V1(pgwa_last_sfunc);
PG_FUNCTION_INFO_V1(pgwa_raise_if);
PG_FUNCTION_INFO_V1(pgwa_event_note);

/* Transition of pgwa._last_value: the newest non-null value so far. */
Datum
pgwa_last_sfunc(PG_FUNCTION_ARGS)
{
	if (!PG_ARGISNULL(1))
		PG_RETURN_DATUM(PG_GETARG_DATUM(1));
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_DATUM(PG_GETARG_DATUM(0));
}

/*
 * pgwa._raise_if(cond, sqlstate, message, field): raises the pgwa error
 * when cond holds (as pgwa._raise would: the field in COLUMN_NAME), else
 * returns true, so that a query can check each row in its WHERE clause.
 */
Datum
pgwa_raise_if(PG_FUNCTION_ARGS)
{
	char	   *state;
	char	   *field;

	if (PG_ARGISNULL(0) || !PG_GETARG_BOOL(0))
		PG_RETURN_BOOL(true);
	state = PG_ARGISNULL(1) ? "PW400" : text_to_cstring(PG_GETARG_TEXT_PP(1));
	field = PG_ARGISNULL(3) ? "" : text_to_cstring(PG_GETARG_TEXT_PP(3));
	if (strlen(state) != 5)
		state = "PW400";
	ereport(ERROR,
			(errcode(MAKE_SQLSTATE(state[0], state[1], state[2], state[3], state[4])),
			 errmsg("%s", PG_ARGISNULL(2) ? "" : text_to_cstring(PG_GETARG_TEXT_PP(2))),
			 *field ? err_generic_string(PG_DIAG_COLUMN_NAME, field) : 0));
	PG_RETURN_BOOL(false);		/* not reached */
}

/*
 * pgwa._event_note(tenant, id, event, data): the NOTIFY payload of a
 * real-time event, {"id", "data", "event", "tenant_id"} as jsonb prints
 * them, or without data ({"id", "event", "tenant_id", "truncated": true})
 * when that would pass the NOTIFY limit.
 */
Datum
pgwa_event_note(PG_FUNCTION_ARGS)
{
	char	   *tenant = DatumGetCString(DirectFunctionCall1(uuid_out, PG_GETARG_DATUM(0)));
	int64		id = PG_GETARG_INT64(1);
	char	   *event = text_to_cstring(PG_GETARG_TEXT_PP(2));
	Jsonb	   *data = PG_GETARG_JSONB_P(3);
	StringInfoData buf;
	StringInfoData tail;

	initStringInfo(&tail);
	appendStringInfoString(&tail, ", \"event\": ");
	escape_json(&tail, event);
	appendStringInfo(&tail, ", \"tenant_id\": \"%s\"", tenant);

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"id\": " INT64_FORMAT ", \"data\": ", id);
	(void) JsonbToCString(&buf, &data->root, VARSIZE(data));
	appendStringInfo(&buf, "%s}", tail.data);
	if (buf.len > PGWA_NOTE_MAX_BYTES)
	{
		resetStringInfo(&buf);
		appendStringInfo(&buf, "{\"id\": " INT64_FORMAT "%s, \"truncated\": true}", id, tail.data);
	}
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}
