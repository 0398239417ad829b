/*
 * pgwa.h: declarations shared by the extension's files and the dispatcher.
 */
#ifndef PGWA_H
#define PGWA_H

#include "postgres.h"
#include "executor/spi.h"
#include "storage/latch.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

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

/* Latency histograms, in shared memory (see shmem.c). */
typedef enum pgwa_histogram_id
{
	PGWA_HIST_REQUEST,			/* duration of one broker request */
	PGWA_HIST_LATENCY,			/* enqueue (outbox.created_at) to sent */
	PGWA_HIST_INGEST,			/* inbound webhook received to applied */
	PGWA_HIST_COUNT
} pgwa_histogram_id;

#define PGWA_HIST_BUCKETS 15
#define PGWA_MAX_APPLIERS 8		/* most inbound applier processes */	/* finite buckets; +Inf comes on top */
extern const double pgwa_hist_bounds[PGWA_HIST_BUCKETS];

/* pgwa.c */
extern void _PG_init(void);

/* errors.c */
extern void pgwa_raise(int sqlstate, const char *field, const char *detail, const char *fmt,...)
			pg_attribute_printf(4, 5) pg_attribute_noreturn();
extern SPIPlanPtr pgwa_keep_plan(const char *sql, int nargs, Oid *argtypes);

/* crypto.c */
extern bytea *pgwa_sha256(const char *s, size_t len);

/* guc.c */
extern char *pgwa_database;
extern char *pgwa_mode_raw;
extern int	pgwa_max_in_flight;
extern int	pgwa_claim_batch;
extern int	pgwa_http_timeout_ms;
extern int	pgwa_connect_timeout_ms;
extern int	pgwa_lease_s;
extern int	pgwa_idle_poll_ms;
extern int	pgwa_inbound_batch;
extern int	pgwa_inbound_linger_ms;
extern int	pgwa_history_sync_stall_min;
extern int	pgwa_inbound_workers;
extern int	pgwa_webhook_max_in_flight;
extern int	pgwa_webhook_timeout_ms;
extern void pgwa_define_gucs(void);
extern pgwa_delivery_mode pgwa_effective_mode(void);
extern const char *pgwa_mode_name(pgwa_delivery_mode mode);

/* enqueue.c: what an enqueue returns */
typedef struct pgwa_enqueued
{
	pg_uuid_t	id;
	const char *status;			/* allocated outside SPI */
	int64		seq;
	TimestampTz scheduled_for;
	bool		has_schedule;
	bool		created;
} pgwa_enqueued;
extern void pgwa_enqueue_in_spi(Datum instance, Datum message, const char *key, pgwa_enqueued *res);

/* normalize.c */
struct json_t;
extern void pgwa_use_palloc_for_jansson(void);
extern struct json_t *pgwa_normalize_json(struct json_t *in);

/* shmem.c */
extern void pgwa_shmem_install_hooks(void);
extern void pgwa_shmem_set_dispatcher(bool running);
extern pid_t pgwa_shmem_dispatcher_pid(void);
extern void pgwa_shmem_wake_dispatcher(void);
extern void pgwa_shmem_set_applier(int slot, bool running);
extern pid_t pgwa_shmem_applier_pid(int slot);
extern void pgwa_shmem_wake_applier(int from);
extern bool pgwa_shmem_available(void);
extern void pgwa_shmem_set_in_flight(int n);
extern int	pgwa_shmem_in_flight(void);
extern void pgwa_shmem_observe(pgwa_histogram_id h, double seconds);
extern void pgwa_shmem_read_histogram(pgwa_histogram_id h, uint64 *cumulative, uint64 *sum_us);

/* pgwa.c */
extern void pgwa_wake_dispatcher_at_commit(void);
extern void pgwa_wake_applier_at_commit(void);

/* dispatcher.c */
extern void pgwa_register_dispatcher(void);
PGDLLEXPORT extern void pgwa_dispatcher_main(Datum main_arg);

/* inbound_applier.c */
extern void pgwa_register_applier(void);
PGDLLEXPORT extern void pgwa_applier_main(Datum main_arg);

#endif							/* PGWA_H */
