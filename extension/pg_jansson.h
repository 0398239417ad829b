/*
 * pg_jansson.h: include PostgreSQL's builtins and jansson together.
 *
 * utils/fmgrprotos.h declares the SQL function json_object(), which clashes
 * with jansson's json_object(); rename the former while it is declared.
 */
#ifndef PGWA_PG_JANSSON_H
#define PGWA_PG_JANSSON_H

#define json_object pg_sql_json_object
#include "utils/builtins.h"
#undef json_object

#include <jansson.h>

/*
 * At run time the same clash bites again: the postgres executable exports
 * its json_object(), and the dynamic linker binds our calls to it instead of
 * jansson's. Calls made inside libjansson bind to its own, so empty objects
 * are built through json_pack().
 */
#define json_object() json_pack("{}")

#endif							/* PGWA_PG_JANSSON_H */
