/*
 * errors.c: raising pgwa's errors from C, as pgwa._raise does from SQL: a
 * PW SQLSTATE, the message, the offending field in COLUMN_NAME and, when
 * there is one, a detail. Also the kept SPI plans every C caller prepares.
 */
#include "postgres.h"

#include "executor/spi.h"

#include "pgwa.h"

void
pgwa_raise(int sqlstate, const char *field, const char *detail, const char *fmt,...)
{
	char		buf[512];
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	ereport(ERROR,
			(errcode(sqlstate),
			 errmsg("%s", buf),
			 detail ? errdetail_internal("%s", detail) : 0,
			 field ? err_generic_string(PG_DIAG_COLUMN_NAME, field) : 0));
	pg_unreachable();
}

/* A plan prepared once and kept for the life of the process. */
SPIPlanPtr
pgwa_keep_plan(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

	if (plan == NULL)
		elog(ERROR, "pgwa: could not prepare \"%s\": %s", sql, SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}
