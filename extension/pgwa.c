/*
 * pgwa.c: module entry point and the small SQL-callable functions that
 * expose runtime state (dispatcher, mode) and wake the dispatcher on commit.
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "pgwa.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(pgwa_wake_dispatcher_on_commit);
PG_FUNCTION_INFO_V1(pgwa_wake_applier_on_commit);
PG_FUNCTION_INFO_V1(pgwa_applier_pid);
PG_FUNCTION_INFO_V1(pgwa_dispatcher_pid);
PG_FUNCTION_INFO_V1(pgwa_mode);

/* Whether this transaction already asked for a wake-up at commit. */
static bool wake_pending = false;
static bool wake_applier_pending = false;
static bool xact_callback_registered = false;

void
_PG_init(void)
{
	pgwa_define_gucs();

	/* The dispatcher and its shared state exist only when preloaded. */
	if (!process_shared_preload_libraries_in_progress)
		return;
	pgwa_shmem_install_hooks();
	pgwa_register_dispatcher();
	pgwa_register_applier();
}

static void
wake_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_pending)
				pgwa_shmem_wake_dispatcher();
			if (wake_applier_pending)
				pgwa_shmem_wake_applier(0);
			wake_pending = false;
			wake_applier_pending = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_pending = false;
			wake_applier_pending = false;
			break;
		default:
			break;
	}
}

/*
 * One latch wake per committing transaction, however many messages it
 * queued: the dispatcher then claims them all in one go.
 */
void
pgwa_wake_dispatcher_at_commit(void)
{
	/*
	 * In mode disabled the dispatcher claims nothing, so waking it would only
	 * cost a signal per commit; a reload to another mode makes it claim.
	 */
	if (pgwa_effective_mode() == PGWA_MODE_DISABLED)
		return;
	if (!xact_callback_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		xact_callback_registered = true;
	}
	wake_pending = true;
}

Datum
pgwa_wake_dispatcher_on_commit(PG_FUNCTION_ARGS)
{
	pgwa_wake_dispatcher_at_commit();
	PG_RETURN_VOID();
}

/* The inbound appliers, once per transaction that stored webhook events. */
void
pgwa_wake_applier_at_commit(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		xact_callback_registered = true;
	}
	wake_applier_pending = true;
}

Datum
pgwa_wake_applier_on_commit(PG_FUNCTION_ARGS)
{
	pgwa_wake_applier_at_commit();
	PG_RETURN_VOID();
}

/* An inbound applier's process id (by slot, 0 first), or NULL. */
Datum
pgwa_applier_pid(PG_FUNCTION_ARGS)
{
	int32		slot = PG_ARGISNULL(0) ? 0 : PG_GETARG_INT32(0);
	pid_t		pid = pgwa_shmem_applier_pid(slot);

	if (pid == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT32((int32) pid);
}

Datum
pgwa_dispatcher_pid(PG_FUNCTION_ARGS)
{
	pid_t		pid = pgwa_shmem_dispatcher_pid();

	if (pid == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT32((int32) pid);
}

Datum
pgwa_mode(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("pgwa.mode() must be called in a context that accepts a record")));
	tupdesc = BlessTupleDesc(tupdesc);
	values[0] = CStringGetTextDatum(pgwa_mode_name(pgwa_effective_mode()));
	values[1] = CStringGetTextDatum(pgwa_mode_raw ? pgwa_mode_raw : "http");
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
