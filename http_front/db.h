/*
 * db.h
 *		One libpq connection per pool thread, calling pgwa.http().
 */
#ifndef PGWA_HTTP_DB_H
#define PGWA_HTTP_DB_H

#include <stddef.h>

#include <libpq-fe.h>

typedef enum db_status
{
	DB_OK,						/* reply filled in */
	DB_UNAVAILABLE,				/* no usable connection, or it broke mid-call */
	DB_FAILED					/* SQL error or malformed result; logged */
} db_status;

/* Parameters of pgwa.http(); body may be NULL */
struct db_call
{
	const char *method;
	const char *path;
	const char *query;			/* JSON object */
	const char *headers;		/* JSON object */
	const char *body;
};

/* Result row; headers and body are malloc'd and owned by the caller */
struct db_reply
{
	unsigned int status;
	char	   *headers;		/* JSON text, or NULL */
	char	   *body;			/* never NULL on DB_OK */
	size_t		body_len;
};

extern void db_init(const char *dsn);
extern PGconn *db_connect(void);
extern db_status db_call_http(const struct db_call *call, struct db_reply *reply);
extern void db_cancel_all(void);
extern void db_close_all(void);

#endif
