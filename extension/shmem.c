/*
 * shmem.c: the little shared state pgwa needs: which process is the
 * dispatcher, so that committing backends can set its latch.
 *
 * Only a pgprocno is kept here, never a process-local pointer.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"

#include "pgwa.h"

typedef struct pgwa_shared
{
	slock_t		mutex;
	pid_t		dispatcher_pid;
	int			dispatcher_procno;
} pgwa_shared;

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
