/*
 * dispatcher.c: the "pgwa dispatcher" background worker.
 *
 * One loop: record the results of finished transfers (one short
 * transaction), claim the head message of ready instances (another short
 * transaction), start their HTTP requests on the libcurl multi handle, and
 * wait. No transaction is ever open while HTTP is in flight. Committing
 * enqueues set our latch; with nothing in flight we sleep on it until the
 * next due time, and with transfers in flight we poll their sockets in
 * short slices so a new enqueue is still picked up within milliseconds.
 *
 * The same loop delivers client webhooks (webhook_delivery.c) on the same
 * multi handle, with their own cap and their own transactions. Their errors
 * are logged and skipped: they never stop the messages. Inbound events are
 * the inbound applier's (inbound_applier.c).
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
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "pgwa.h"
#include "transfer.h"
#include "webhook_delivery.h"
#include "worker.h"

/* Poll slice while transfers are in flight: bounds enqueue-to-claim delay. */
#define BUSY_POLL_MS 2
/* How often expired leases are looked for. */
#define LEASE_CHECK_MS 5000
/* Claims woken by commits: at most one per slice, however often they come. */
#define HOOK_CLAIM_MIN_MS 5
/* After a failed webhook step, webhooks rest this long. */
#define HOOK_BACKOFF_MS 1000

static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr complete_plan = NULL;
static SPIPlanPtr next_due_plan = NULL;

void
pgwa_register_dispatcher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pgwa");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "pgwa_dispatcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "pgwa dispatcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "pgwa dispatcher");
	RegisterBackgroundWorker(&worker);
}

static void
dispatcher_exit(int code, Datum arg)
{
	pgwa_shmem_set_dispatcher(false);
	transfers_shutdown();
}

static void
prepare_plans(void)
{
	Oid			claim_types[2] = {INT4OID, INT4OID};
	Oid			complete_types[1] = {JSONBOID};

	worker_begin_xact("pgwa: preparing");
	claim_plan = pgwa_keep_plan("SELECT instance_id::text, seq, message_id::text, attempt, provider, "
						 "base_url, broker_api_key, broker_instance_id, settings::text, payload::text "
						 "FROM pgwa._claim($1, $2)", 2, claim_types);
	complete_plan = pgwa_keep_plan("SELECT array_agg(latency_s) FILTER (WHERE latency_s IS NOT NULL) "
							"FROM pgwa._complete_batch($1)", 1, complete_types);
	next_due_plan = pgwa_keep_plan("SELECT pgwa._next_due()", 0, NULL);
	/* Claims left by a previous dispatcher: we are the only claimer. */
	SPI_execute("SELECT pgwa._release_leases(true)", false, 0);
	worker_end_xact();
}

/* Gives back claims whose lease expired; returns how many. */
static int
release_expired_leases(void)
{
	int			released = 0;
	bool		isnull;

	worker_begin_xact("pgwa: releasing expired leases");
	if (SPI_execute("SELECT pgwa._release_leases(false)", false, 0) == SPI_OK_SELECT &&
		SPI_processed == 1)
		released = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
											   1, &isnull));
	worker_end_xact();
	return released;
}

/* Counts the enqueue-to-sent latencies _complete_batch returned. */
static void
observe_latencies(void)
{
	bool		isnull;
	Datum		d;
	Datum	   *elems;
	bool	   *elem_nulls;
	int			n;

	if (SPI_processed != 1)
		return;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return;
	deconstruct_array(DatumGetArrayTypeP(d), FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL,
					  TYPALIGN_DOUBLE, &elems, &elem_nulls, &n);
	for (int i = 0; i < n; i++)
		if (!elem_nulls[i])
			pgwa_shmem_observe(PGWA_HIST_LATENCY, DatumGetFloat8(elems[i]));
}

/*
 * Records finished attempts: one call of pgwa._complete_batch() with all of
 * them, in one transaction. It also counts them in the message counters;
 * the latency histogram, in shared memory, is updated here.
 */
static void
record_results(List *results)
{
	StringInfoData buf;
	ListCell   *lc;
	Datum		arg;
	int			rc;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	foreach(lc, results)
	{
		transfer_result *r = lfirst(lc);

		if (buf.len > 1)
			appendStringInfoChar(&buf, ',');
		appendStringInfo(&buf, "{\"s\":" INT64_FORMAT, r->seq);
		json_append_field(&buf, "i", r->instance_id);
		json_append_attempt(&buf, r->outcome, r->http_status, r->error, r->started_at,
							r->duration_ms, r->retry_after_ms);
		json_append_field(&buf, "b", r->broker_id);
		if (r->error_class)
			json_append_field(&buf, "c", r->error_class);
		appendStringInfoChar(&buf, '}');
	}
	appendStringInfoChar(&buf, ']');

	worker_begin_xact("pgwa: recording results");
	arg = DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
	rc = SPI_execute_plan(complete_plan, &arg, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "pgwa dispatcher: recording results failed: %s",
			 SPI_result_code_string(rc));
	observe_latencies();
	worker_end_xact();
}

static char *
copy_col(HeapTuple tup, TupleDesc desc, int col)
{
	char	   *v = SPI_getvalue(tup, desc, col);

	return v ? pstrdup(v) : NULL;
}

/* A claimed message and the memory context holding it. */
typedef struct claim
{
	claimed_message msg;
	MemoryContext cxt;
} claim;

/*
 * Claims up to `room` messages in one transaction, and sets *next_due to when
 * the next message will be due (0 if none is pending). Each claim lives in
 * its own context under loop_cxt, so a failed transaction frees them all.
 */
static List *
claim_messages(int room, MemoryContext loop_cxt, TimestampTz *next_due)
{
	Datum		args[2];
	List	   *claims = NIL;
	uint64		n;
	bool		isnull;
	Datum		d;

	args[0] = Int32GetDatum(Min(room, pgwa_claim_batch));
	args[1] = Int32GetDatum(pgwa_lease_s);

	worker_begin_xact("pgwa: claiming");
	if (SPI_execute_plan(claim_plan, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "pgwa dispatcher: claim failed");
	n = SPI_processed;
	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext cxt = AllocSetContextCreate(loop_cxt, "pgwa transfer",
												  ALLOCSET_SMALL_SIZES);
		MemoryContext old = MemoryContextSwitchTo(cxt);
		claim	   *c = palloc0(sizeof(claim));

		c->cxt = cxt;
		c->msg.instance_id = copy_col(tup, desc, 1);
		c->msg.seq = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		c->msg.message_id = copy_col(tup, desc, 3);
		c->msg.attempt = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
		c->msg.provider = copy_col(tup, desc, 5);
		c->msg.base_url = copy_col(tup, desc, 6);
		c->msg.api_key = copy_col(tup, desc, 7);
		c->msg.broker_instance_id = copy_col(tup, desc, 8);
		c->msg.settings = json_loads(copy_col(tup, desc, 9), 0, NULL);
		c->msg.payload = json_loads(copy_col(tup, desc, 10), 0, NULL);
		MemoryContextSwitchTo(loop_cxt);
		claims = lappend(claims, c);
		MemoryContextSwitchTo(old);
	}

	*next_due = 0;
	if (SPI_execute_plan(next_due_plan, NULL, NULL, true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
	{
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
			*next_due = DatumGetTimestampTz(d);
	}
	worker_end_xact();
	return claims;
}

/*
 * Starts the transfers of committed claims (never before the commit: a claim
 * rolled back after its request went out would be sent twice). Returns the
 * results of those that finish at once (dry run, unsendable).
 */
static List *
start_transfers(List *claims, bool dryrun, MemoryContext loop_cxt)
{
	List	   *immediate = NIL;
	ListCell   *lc;

	foreach(lc, claims)
	{
		claim	   *c = lfirst(lc);
		transfer_result *r;

		/* The transfer owns the context from now on. */
		MemoryContextSetParent(c->cxt, TopMemoryContext);
		r = transfer_start(&c->msg, c->cxt, dryrun, loop_cxt);
		if (r != NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(loop_cxt);

			immediate = lappend(immediate, r);
			MemoryContextSwitchTo(old);
		}
	}
	return immediate;
}

static bool
is_transient(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED ||
		sqlerrcode == ERRCODE_T_R_SERIALIZATION_FAILURE ||
		sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE ||
		sqlerrcode == ERRCODE_QUERY_CANCELED;
}

/*
 * Runs step in its own transaction. A transient error (a deadlock with a
 * client transaction, say) rolls it back and, when retry is set, tries again
 * a few times; false means the step did not happen. Other errors end the
 * worker when fatal is set: the postmaster starts it again and leases bring
 * claims back. Steps that must never stop the messages (client webhooks)
 * are not fatal: their errors are logged and the step skipped.
 */
static bool
run_step(void (*step) (void *), void *arg, const char *what, bool retry, bool fatal)
{
	for (volatile int attempt = 1;; attempt++)
	{
		MemoryContext cxt = CurrentMemoryContext;
		volatile bool done = false;
		ErrorData  *volatile edata = NULL;
		bool		transient;
		bool		again;

		PG_TRY();
		{
			step(arg);
			done = true;
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			FlushErrorState();
			AbortCurrentTransaction();
			pgstat_report_activity(STATE_IDLE, NULL);
		}
		PG_END_TRY();
		if (done)
			return true;
		transient = is_transient(edata->sqlerrcode);
		again = retry && transient && attempt < 5;
		/* A transient error of a step tried once only skips it. */
		if (fatal && !again && (retry || !transient))
			ereport(ERROR,
					(errcode(edata->sqlerrcode),
					 errmsg("pgwa dispatcher: %s failed: %s", what, edata->message)));
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("pgwa dispatcher: %s failed (%s)%s", what, edata->message,
						again ? "; retrying" : "")));
		FreeErrorData(edata);
		if (!again)
			return false;
		pg_usleep(20000L * attempt);
	}
}

static void
record_step(void *arg)
{
	record_results((List *) arg);
}

typedef struct claim_args
{
	int			room;
	MemoryContext loop_cxt;
	TimestampTz *next_due;
	List	   *claims;
} claim_args;

static void
claim_step(void *arg)
{
	claim_args *a = arg;

	a->claims = claim_messages(a->room, a->loop_cxt, a->next_due);
}

/* Results are never dropped: transient failures are retried. */
static void
record_reliably(List *results)
{
	run_step(record_step, results, "recording results", true, true);
}

/* Client webhooks: each step in its own transaction, none of them fatal. */
static void
hook_init_step(void *arg)
{
	worker_begin_xact("pgwa: preparing webhook deliveries");
	webhooks_prepare();
	/* Claims left by a previous dispatcher: we are the only claimer. */
	webhooks_release_leases(true);
	worker_end_xact();
}

typedef struct hook_claim_args
{
	int			room;
	MemoryContext loop_cxt;
	TimestampTz *next_due;
	List	   *claims;
} hook_claim_args;

static void
hook_claim_step(void *arg)
{
	hook_claim_args *a = arg;

	worker_begin_xact("pgwa: claiming webhook deliveries");
	a->claims = webhooks_claim(a->room, a->loop_cxt, a->next_due);
	worker_end_xact();
}

static void
hook_record_step(void *arg)
{
	worker_begin_xact("pgwa: recording webhook deliveries");
	webhooks_record((List *) arg);
	worker_end_xact();
}

/*
 * A delivery result that cannot be recorded is lost, not the worker: its
 * lease expires and the delivery goes out again (at least once).
 */
static bool
record_hooks(List *results)
{
	return run_step(hook_record_step, results, "recording webhook deliveries", true, false);
}

static void
hook_release_step(void *arg)
{
	worker_begin_xact("pgwa: releasing expired webhook leases");
	*(int *) arg = webhooks_release_leases(false);
	worker_end_xact();
}

static long
ms_until(TimestampTz t)
{
	TimestampTz now = GetCurrentTimestamp();

	if (t <= now)
		return 0;
	return (long) ((t - now + 999) / 1000);
}

void
pgwa_dispatcher_main(Datum main_arg)
{
	MemoryContext loop_cxt;
	TimestampTz next_due = 0;
	TimestampTz last_lease_check = 0;
	bool		claim_wanted = true;
	TimestampTz hooks_due = 0;
	TimestampTz hooks_not_before = 0;
	bool		hooks_wanted = true;
	bool		hooks_ready;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(pgwa_database, NULL, 0);

	pgwa_use_palloc_for_jansson();
	transfers_init();
	pgwa_shmem_set_dispatcher(true);
	on_shmem_exit(dispatcher_exit, (Datum) 0);

	worker_wait_for_extension();
	prepare_plans();
	ereport(LOG, (errmsg("pgwa dispatcher started in database \"%s\" (mode %s)",
						 pgwa_database, pgwa_mode_raw)));

	/* Without them (an error), messages go on and this is tried again later. */
	hooks_ready = run_step(hook_init_step, NULL, "preparing webhook deliveries", false, false);
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "pgwa dispatcher loop",
									 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		List	   *results;
		List	   *hook_results = NIL;
		pgwa_delivery_mode	mode;
		long		timeout;
		TimestampTz now;
		bool		hooks_possible;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			claim_wanted = true;
			hooks_wanted = true;
		}
		MemoryContextReset(loop_cxt);
		mode = pgwa_effective_mode();

		/* 1. Results of finished transfers. */
		results = transfers_collect(loop_cxt, &hook_results);
		if (results != NIL)
		{
			record_reliably(results);
			/* Freed instances may have more to send. */
			claim_wanted = true;
		}
		if (hook_results != NIL)
		{
			record_hooks(hook_results);
			/* Their subscriptions may have more to deliver: claim at once. */
			hooks_wanted = true;
			hooks_not_before = 0;
		}

		/* 2. New claims, unless mode disabled holds everything. */
		now = GetCurrentTimestamp();
		if (next_due != 0 && next_due <= now)
			claim_wanted = true;
		if (mode != PGWA_MODE_DISABLED && claim_wanted &&
			transfers_in_flight() < pgwa_max_in_flight)
		{
			claim_args ca = {pgwa_max_in_flight - transfers_in_flight(), loop_cxt, &next_due, NIL};

			claim_wanted = false;
			if (!run_step(claim_step, &ca, "claiming", false, true))
				claim_wanted = true;	/* try again next round */
			else if (ca.claims != NIL)
			{
				List	   *immediate = start_transfers(ca.claims, mode == PGWA_MODE_DRYRUN, loop_cxt);

				if (immediate != NIL)
				{
					record_reliably(immediate);
					claim_wanted = true;
					continue;
				}
			}
		}

		/* 3. Client webhook deliveries, after the messages and apart from them. */
		if (hooks_due != 0 && hooks_due <= now)
			hooks_wanted = true;
		hooks_possible = hooks_ready && mode != PGWA_MODE_DISABLED &&
			transfers_webhooks_in_flight() < pgwa_webhook_max_in_flight;
		if (hooks_possible && hooks_wanted && now >= hooks_not_before)
		{
			hook_claim_args ha = {Min(pgwa_webhook_max_in_flight - transfers_webhooks_in_flight(),
									  pgwa_claim_batch), loop_cxt, &hooks_due, NIL};

			hooks_wanted = false;
			hooks_not_before = now + (TimestampTz) HOOK_CLAIM_MIN_MS * 1000;
			if (!run_step(hook_claim_step, &ha, "claiming webhook deliveries", false, false))
			{
				hooks_wanted = true;
				hooks_not_before = now + (TimestampTz) HOOK_BACKOFF_MS * 1000;
			}
			else if (ha.claims != NIL)
			{
				List	   *failed;

				/* A full batch: more may be due. */
				if (list_length(ha.claims) >= ha.room)
					hooks_wanted = true;
				failed = webhooks_start(ha.claims, loop_cxt);
				if (failed != NIL)
				{
					record_hooks(failed);
					hooks_wanted = true;
				}
			}
		}

		/* 4. Claims of a dead dispatcher or a lost transfer come back. */
		if (now - last_lease_check >= (TimestampTz) LEASE_CHECK_MS * 1000)
		{
			int			hooks_released = 0;

			/* Released claims are due again at once. */
			if (release_expired_leases() > 0)
				claim_wanted = true;
			if (!hooks_ready)
				hooks_ready = run_step(hook_init_step, NULL, "preparing webhook deliveries", false, false);
			else if (run_step(hook_release_step, &hooks_released, "releasing webhook leases", false, false) &&
					 hooks_released > 0)
				hooks_wanted = true;
			last_lease_check = now;
		}

		/* 5. Wait for a commit, a due message or delivery, or socket activity. */
		timeout = pgwa_idle_poll_ms;
		if (next_due != 0)
			timeout = Min(timeout, ms_until(next_due));
		if (hooks_possible)
		{
			if (hooks_wanted)
				timeout = Min(timeout, ms_until(hooks_not_before));
			else if (hooks_due != 0)
				timeout = Min(timeout, ms_until(Max(hooks_due, hooks_not_before)));
		}
		if (transfers_in_flight() + transfers_webhooks_in_flight() > 0)
		{
			long		curl_ms = transfers_timeout_ms();

			timeout = Min(timeout, BUSY_POLL_MS);
			if (curl_ms >= 0)
				timeout = Min(timeout, curl_ms);
			if (timeout > 0)
				transfers_wait((int) timeout);
			if (MyLatch->is_set)
			{
				ResetLatch(MyLatch);
				claim_wanted = true;
				hooks_wanted = true;
			}
		}
		else if (timeout > 0)
		{
			int			rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
									   timeout, PG_WAIT_EXTENSION);

			if (rc & WL_LATCH_SET)
			{
				ResetLatch(MyLatch);
				claim_wanted = true;
				hooks_wanted = true;
			}
			if (rc & WL_TIMEOUT)
				claim_wanted = true;
		}
		else
			claim_wanted = true;
	}
}
