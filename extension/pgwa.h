/*
 * pgwa.h: declarations shared by the extension's files and the dispatcher.
 */
#ifndef PGWA_H
#define PGWA_H

#include "postgres.h"
#include "storage/latch.h"

/*
 * SQLSTATEs of the errors pgwa raises on purpose (class PW). Each maps to a
 * stable code name and an HTTP status in the table pgwa.error_codes.
 */
#define PGWA_ERRCODE_VALIDATION		MAKE_SQLSTATE('P','W','4','0','0')
#define PGWA_ERRCODE_NOT_FOUND		MAKE_SQLSTATE('P','W','4','0','4')
#define PGWA_ERRCODE_WINDOW_CLOSED	MAKE_SQLSTATE('P','W','4','2','3')

/* Modes of pgwa.mode, after reading legacy values. */
typedef enum pgwa_delivery_mode
{
	PGWA_MODE_HTTP,
	PGWA_MODE_DRYRUN,
	PGWA_MODE_DISABLED
} pgwa_delivery_mode;

/* pgwa.c */
extern void _PG_init(void);

/* guc.c */
extern char *pgwa_database;
extern char *pgwa_mode_raw;
extern int	pgwa_max_in_flight;
extern int	pgwa_claim_batch;
extern int	pgwa_http_timeout_ms;
extern int	pgwa_connect_timeout_ms;
extern int	pgwa_lease_s;
extern int	pgwa_idle_poll_ms;
extern void pgwa_define_gucs(void);
extern pgwa_delivery_mode pgwa_effective_mode(void);
extern const char *pgwa_mode_name(pgwa_delivery_mode mode);

/* normalize.c */
extern void pgwa_use_palloc_for_jansson(void);

/* shmem.c */
extern void pgwa_shmem_install_hooks(void);
extern void pgwa_shmem_set_dispatcher(bool running);
extern pid_t pgwa_shmem_dispatcher_pid(void);
extern void pgwa_shmem_wake_dispatcher(void);

/* dispatcher.c */
extern void pgwa_register_dispatcher(void);
PGDLLEXPORT extern void pgwa_dispatcher_main(Datum main_arg);

#endif							/* PGWA_H */
