/*
 * shmem.c: the little shared state pgwa needs: which processes are the
 * dispatcher and the inbound applier, so that committing backends can set
 * their latches, and the dispatcher's live metrics (transfers in flight, two latency histograms).
 *
 * Only a pgprocno and plain counters are kept here, never a process-local
 * pointer. The metrics are atomics: the dispatcher updates them without a
 * lock and any backend reads them for GET /metrics. They start from zero at
 * each server start, which Prometheus treats as a counter reset.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"

#include "pgwa.h"

/* Observations per bucket (not cumulative) and their sum in microseconds. */
typedef struct pgwa_histogram
{
	pg_atomic_uint64 buckets[PGWA_HIST_BUCKETS + 1];	/* the last is +Inf */
	pg_atomic_uint64 sum_us;
} pgwa_histogram;

typedef struct pgwa_shared
{
	slock_t		mutex;
	pid_t		dispatcher_pid;
	int			dispatcher_procno;
	pid_t		applier_pid[PGWA_MAX_APPLIERS];
	int			applier_procno[PGWA_MAX_APPLIERS];
	pg_atomic_uint32 in_flight;
	pgwa_histogram histograms[PGWA_HIST_COUNT];
} pgwa_shared;

/* Upper bounds of the histogram buckets, in seconds: 1 ms .. 60 s. */
const double pgwa_hist_bounds[PGWA_HIST_BUCKETS] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60
};

static pgwa_shared *shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
pgwa_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(pgwa_shared)));
}

static void
pgwa_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("pgwa", sizeof(pgwa_shared), &found);
	if (!found)
	{
		SpinLockInit(&shared->mutex);
		shared->dispatcher_pid = 0;
		shared->dispatcher_procno = -1;
		for (int i = 0; i < PGWA_MAX_APPLIERS; i++)
		{
			shared->applier_pid[i] = 0;
			shared->applier_procno[i] = -1;
		}
		pg_atomic_init_u32(&shared->in_flight, 0);
		for (int h = 0; h < PGWA_HIST_COUNT; h++)
		{
			for (int b = 0; b <= PGWA_HIST_BUCKETS; b++)
				pg_atomic_init_u64(&shared->histograms[h].buckets[b], 0);
			pg_atomic_init_u64(&shared->histograms[h].sum_us, 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

void
pgwa_shmem_install_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = pgwa_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = pgwa_shmem_startup;
}

void
pgwa_shmem_set_dispatcher(bool running)
{
	if (shared == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	shared->dispatcher_pid = running ? MyProcPid : 0;
	shared->dispatcher_procno = running ? MyProc->pgprocno : -1;
	SpinLockRelease(&shared->mutex);
	/* A dispatcher that stops has nothing in flight any more. */
	pg_atomic_write_u32(&shared->in_flight, 0);
}

pid_t
pgwa_shmem_dispatcher_pid(void)
{
	pid_t		pid;

	if (shared == NULL)
		return 0;
	SpinLockAcquire(&shared->mutex);
	pid = shared->dispatcher_pid;
	SpinLockRelease(&shared->mutex);
	return pid;
}

void
pgwa_shmem_wake_dispatcher(void)
{
	int			procno;

	if (shared == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	procno = shared->dispatcher_procno;
	SpinLockRelease(&shared->mutex);
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

void
pgwa_shmem_set_applier(int slot, bool running)
{
	if (shared == NULL || slot < 0 || slot >= PGWA_MAX_APPLIERS)
		return;
	SpinLockAcquire(&shared->mutex);
	shared->applier_pid[slot] = running ? MyProcPid : 0;
	shared->applier_procno[slot] = running ? MyProc->pgprocno : -1;
	SpinLockRelease(&shared->mutex);
}

pid_t
pgwa_shmem_applier_pid(int slot)
{
	pid_t		pid;

	if (shared == NULL || slot < 0 || slot >= PGWA_MAX_APPLIERS)
		return 0;
	SpinLockAcquire(&shared->mutex);
	pid = shared->applier_pid[slot];
	SpinLockRelease(&shared->mutex);
	return pid;
}

/*
 * Wakes the first running applier from slot `from` on. A commit wakes the
 * first one only, so that while it applies a batch the next events gather
 * for its next one (one applier taking them in turns would split them into
 * small batches, each paying a batch's fixed cost); an applier that took a
 * full batch wakes the next one, so all of them work through a backlog.
 * Setting a latch that is already set costs no signal.
 */
void
pgwa_shmem_wake_applier(int from)
{
	int			procnos[PGWA_MAX_APPLIERS];

	if (shared == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	memcpy(procnos, shared->applier_procno, sizeof(procnos));
	SpinLockRelease(&shared->mutex);
	for (int i = Max(from, 0); i < PGWA_MAX_APPLIERS; i++)
		if (procnos[i] >= 0)
		{
			SetLatch(&ProcGlobal->allProcs[procnos[i]].procLatch);
			break;
		}
}

bool
pgwa_shmem_available(void)
{
	return shared != NULL;
}

void
pgwa_shmem_set_in_flight(int n)
{
	if (shared != NULL)
		pg_atomic_write_u32(&shared->in_flight, (uint32) Max(n, 0));
}

int
pgwa_shmem_in_flight(void)
{
	return shared ? (int) pg_atomic_read_u32(&shared->in_flight) : 0;
}

/* Counts one observation of `seconds` (clamped at zero) in histogram h. */
void
pgwa_shmem_observe(pgwa_histogram_id h, double seconds)
{
	pgwa_histogram *hist;
	int			b = 0;

	if (shared == NULL)
		return;
	if (!(seconds > 0))			/* also NaN */
		seconds = 0;
	hist = &shared->histograms[h];
	while (b < PGWA_HIST_BUCKETS && seconds > pgwa_hist_bounds[b])
		b++;
	pg_atomic_fetch_add_u64(&hist->buckets[b], 1);
	pg_atomic_fetch_add_u64(&hist->sum_us, (uint64) Min(seconds * 1e6, 1e15));
}

/*
 * Reads histogram h: cumulative[b] counts the observations <= bound b (the
 * last entry, +Inf, is the total). Buckets are read one by one while the
 * dispatcher may add to them, so a read can be a few observations behind,
 * but it is always cumulative, as Prometheus requires.
 */
void
pgwa_shmem_read_histogram(pgwa_histogram_id h, uint64 *cumulative, uint64 *sum_us)
{
	uint64		total = 0;

	for (int b = 0; b <= PGWA_HIST_BUCKETS; b++)
	{
		if (shared != NULL)
			total += pg_atomic_read_u64(&shared->histograms[h].buckets[b]);
		cumulative[b] = total;
	}
	*sum_us = shared ? pg_atomic_read_u64(&shared->histograms[h].sum_us) : 0;
}
