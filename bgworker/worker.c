/*
 * worker.c: the transactions of pgwa's background workers, and their wait
 * for CREATE EXTENSION pgwa (worker.h).
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "worker.h"

void
worker_begin_xact(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

void
worker_end_xact(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

void
worker_wait_for_extension(void)
{
	for (;;)
	{
		bool		present;

		CHECK_FOR_INTERRUPTS();
		worker_begin_xact("pgwa: waiting for CREATE EXTENSION pgwa");
		SPI_execute("SELECT 1 FROM pg_extension WHERE extname = 'pgwa'", true, 1);
		present = SPI_processed > 0;
		worker_end_xact();
		if (present)
			return;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 5000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
}
