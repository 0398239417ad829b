/*
 * worker.h: what pgwa's background workers (the dispatcher, the inbound
 * appliers) share: their short transactions and the wait for the extension.
 */
#ifndef PGWA_WORKER_H
#define PGWA_WORKER_H

#include "postgres.h"

/* Starts a transaction with SPI connected and a snapshot, and says what it does. */
extern void worker_begin_xact(const char *activity);
/* Commits it and reports the writes (so autovacuum keeps the queue tables lean). */
extern void worker_end_xact(void);
/* Waits until CREATE EXTENSION pgwa has run in the worker's database. */
extern void worker_wait_for_extension(void);

#endif							/* PGWA_WORKER_H */
