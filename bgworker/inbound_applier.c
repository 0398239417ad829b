/*
 * inbound_applier.c: the "pgwa inbound applier" background worker.
 *
 * Webhooks are stored first and answered at once (seed 000: the webhook
 * feeds a queue, a worker applies it). This worker applies them: woken by
 * the commit that stored an event, it takes the waiting events in batches
 * of pgwa.inbound_batch (pgwa._apply_pending), each batch in one short
 * transaction, until none is
 * left; every few seconds it also retries the events whose application
 * failed (pgwa.retry_failed_events). An error is logged and the loop goes
 * on: the events stay stored and are taken again. There are
 * pgwa.inbound_workers of them; a commit wakes the first, and one that takes
 * a full batch wakes the next (pgwa_shmem_wake_applier), so batches grow with
 * the load instead of being split. While events keep coming, the first one
 * waits pgwa.inbound_linger between batches that were not full, so that they
 * gather: under a steady load a batch of a few events would pay a batch's
 * fixed cost (claim, planning, statements) for each few. They skip each other's batches, and the
 * locks they take by sender keep a sender's messages in one batch at a time.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "pgwa.h"
#include "worker.h"

/* How often failed events are looked at. */
#define RETRY_EVENTS_MS 3000
/* Rest after an error, so that a broken database is not hammered. */
#define ERROR_BACKOFF_MS 1000

/* How far before the oldest event of the last batch the next claim starts. */
#define CLAIM_MARGIN_MS 500

static SPIPlanPtr apply_plan = NULL;
static int	my_slot = 0;
static TimestampTz claim_from = 0;	/* 0: from the first waiting event */
static bool batch_more = false;	/* the last batch was full, or cut by size */

void
pgwa_register_applier(void)
{
	for (int i = 0; i < pgwa_inbound_workers; i++)
	{
		BackgroundWorker worker;

		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = 5;
		worker.bgw_main_arg = Int32GetDatum(i);
		snprintf(worker.bgw_library_name, BGW_MAXLEN, "pgwa");
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "pgwa_applier_main");
		snprintf(worker.bgw_name, BGW_MAXLEN, "pgwa inbound applier %d", i);
		snprintf(worker.bgw_type, BGW_MAXLEN, "pgwa inbound applier");
		RegisterBackgroundWorker(&worker);
	}
}

static void
applier_exit(int code, Datum arg)
{
	pgwa_shmem_set_applier(my_slot, false);
}

/*
 * One batch: returns how many events it took. Claims start a little before
 * the oldest event of the last batch (see pgwa._apply_pending): events are
 * committed soon after their receipt, and one committed later than that is
 * taken by the periodic retry, which looks at all of them.
 */
static int
apply_batch(void)
{
	Datum		args[2];
	char		nulls[2] = {' ', claim_from == 0 ? 'n' : ' '};
	bool		isnull;
	int			n = 0;

	batch_more = false;
	worker_begin_xact("pgwa: applying inbound events");
	if (apply_plan == NULL)
	{
		Oid			types[2] = {INT4OID, TIMESTAMPTZOID};

		apply_plan = pgwa_keep_plan("SELECT taken, oldest, more FROM pgwa._apply_pending($1, $2)", 2, types);
	}
	args[0] = Int32GetDatum(pgwa_inbound_batch);
	args[1] = TimestampTzGetDatum(claim_from);
	if (SPI_execute_plan(apply_plan, args, nulls, false, 1) == SPI_OK_SELECT && SPI_processed == 1)
	{
		Datum		oldest;

		n = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		oldest = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
		if (n > 0 && !isnull)
			claim_from = DatumGetTimestampTz(oldest) - (TimestampTz) CLAIM_MARGIN_MS * 1000;
		batch_more = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull)) && !isnull;
	}
	worker_end_xact();
	return n;
}

/*
 * Failed events whose retry time has come. Bounded so that a stuck event
 * cannot hold the loop: lock waits give up soon (the event is marked failed
 * and retried later).
 */
static int
retry_failed(void)
{
	worker_begin_xact("pgwa: retrying failed inbound events");
	SPI_execute("SELECT set_config('lock_timeout', '1s', true), "
				"set_config('statement_timeout', '10s', true)", false, 0);
	SPI_execute("SELECT pgwa.retry_failed_events(100)", false, 0);
	worker_end_xact();
	return 0;
}

/* Runs a step; an error is logged and 0 returned, the transaction undone. */
static int
run_step(int (*step) (void), const char *what, bool *failed)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile int n = 0;

	*failed = false;
	PG_TRY();
	{
		n = step();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		pgstat_report_activity(STATE_IDLE, NULL);
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("pgwa inbound applier: %s failed: %s", what, edata->message)));
		FreeErrorData(edata);
		/* A plan made in an aborted transaction may be gone with it. */
		apply_plan = NULL;
		*failed = true;
	}
	PG_END_TRY();
	return n;
}

/* Whether the first applier should look at failed events now. */
static bool
retry_due(TimestampTz last_retry)
{
	return my_slot == 0 &&
		GetCurrentTimestamp() - last_retry >= (TimestampTz) RETRY_EVENTS_MS * 1000;
}

void
pgwa_applier_main(Datum main_arg)
{
	MemoryContext loop_cxt;
	TimestampTz last_retry = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(pgwa_database, NULL, 0);

	my_slot = DatumGetInt32(main_arg);
	pgwa_use_palloc_for_jansson();
	pgwa_shmem_set_applier(my_slot, true);
	on_shmem_exit(applier_exit, (Datum) 0);

	worker_wait_for_extension();
	ereport(LOG, (errmsg("pgwa inbound applier %d started in database \"%s\"", my_slot, pgwa_database)));

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "pgwa inbound applier loop",
									 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		bool		failed = false;
		int			n;
		TimestampTz now;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);

		/* Reset first: a commit that comes while we apply wakes us again. */
		ResetLatch(MyLatch);
		for (;;)
		{
			CHECK_FOR_INTERRUPTS();
			n = run_step(apply_batch, "applying inbound events", &failed);
			MemoryContextReset(loop_cxt);
			if (failed || n == 0 || retry_due(last_retry))
				break;
			if (batch_more)
			{
				/* a full batch: more wait, let the next applier help */
				pgwa_shmem_wake_applier(my_slot + 1);
				continue;
			}
			/* a helper goes back to sleep after a batch that was not full */
			if (my_slot != 0)
				break;
			/* events keep coming: let the next ones gather into one batch */
			if (pgwa_inbound_linger_ms > 0)
				(void) WaitLatch(NULL, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 pgwa_inbound_linger_ms, PG_WAIT_EXTENSION);
		}

		now = GetCurrentTimestamp();
		if (retry_due(last_retry))
		{
			bool		retry_failed_step;

			run_step(retry_failed, "retrying failed inbound events", &retry_failed_step);
			last_retry = now;
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 failed ? ERROR_BACKOFF_MS : Min(pgwa_idle_poll_ms, RETRY_EVENTS_MS),
						 PG_WAIT_EXTENSION);
	}
}
