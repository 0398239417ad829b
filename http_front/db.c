/*
 * db.c
 *		Per-thread libpq connections.
 *
 * libmicrohttpd runs every request of a connection on the pool thread that
 * accepted it, so each pool thread owns one PGconn, opened on its first
 * request and kept for the life of the process.  The single statement is
 * prepared once per session.  Connections are also kept in a list so the
 * main thread can close them after the pool has been joined.
 *
 * A call is retried only when nothing can have run yet: a connection found
 * dead before sending (including one the server closed while idle) is
 * reset and used; a connection that breaks while the call is in flight
 * yields DB_UNAVAILABLE, since pgwa.http() may have had side effects.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "db.h"
#include "log.h"

#define STMT_NAME	"pgwa_http"
#define STMT_SQL \
	"SELECT status, headers::text, body " \
	"FROM pgwa.http($1::text, $2::text, $3::jsonb, $4::jsonb, $5::text)"

struct db_conn
{
	PGconn	   *conn;
	bool		prepared;		/* statement exists in this session */
	bool		broken;			/* reset before next use */
	bool		down;			/* last connection attempt failed (logged) */
	PGcancel   *cancel;			/* for db_cancel_all(); under registry_lock */
	struct db_conn *next;
};

static const char *conn_dsn;
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct db_conn *registry;
static __thread struct db_conn *thread_conn;

void
db_init(const char *dsn)
{
	conn_dsn = dsn;
}

/* Server notices are not ours to surface; failures are logged as detected. */
static void
ignore_notice(void *arg, const char *message)
{
	(void) arg;
	(void) message;
}

/* A new session set up like the pool's; also for the event streams' own. */
PGconn *
db_connect(void)
{
	/* later entries override what an expanded dbname connection string sets */
	const char *const keywords[] = {
		"connect_timeout", "fallback_application_name", "dbname",
		"client_encoding", NULL
	};
	const char *values[] = {
		getenv("PGCONNECT_TIMEOUT") ? NULL : "10", "pgwa-http", conn_dsn,
		"UTF8", NULL
	};
	PGconn	   *conn = PQconnectdbParams(keywords, values, 1);

	if (conn != NULL)
		PQsetNoticeProcessor(conn, ignore_notice, NULL);
	return conn;
}

static struct db_conn *
get_thread_conn(void)
{
	struct db_conn *dc = thread_conn;

	if (dc != NULL)
		return dc;
	dc = calloc(1, sizeof(*dc));
	if (dc == NULL)
		return NULL;
	pthread_mutex_lock(&registry_lock);
	dc->next = registry;
	registry = dc;
	pthread_mutex_unlock(&registry_lock);
	thread_conn = dc;
	return dc;
}

/*
 * Is an idle connection still usable?  The server tells an idle session it
 * is going away (shutdown, restart, terminated backend) by sending an error
 * and closing the socket, so anything readable while idle is consumed to
 * let libpq notice.
 */
static bool
conn_alive(PGconn *conn)
{
	for (int i = 0; i < 4; i++)
	{
		struct pollfd pfd = {.fd = PQsocket(conn),.events = POLLIN};
		int			rc;

		if (PQstatus(conn) != CONNECTION_OK || pfd.fd < 0)
			return false;
		rc = poll(&pfd, 1, 0);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc <= 0)
			return rc == 0;
		if (!PQconsumeInput(conn))
			return false;
	}
	return PQstatus(conn) == CONNECTION_OK;
}

/* Keep the cancel handle in step with the session it belongs to. */
static void
update_cancel(struct db_conn *dc)
{
	PGcancel   *cancel = NULL;

	if (dc->conn != NULL && PQstatus(dc->conn) == CONNECTION_OK)
		cancel = PQgetCancel(dc->conn);
	pthread_mutex_lock(&registry_lock);
	if (dc->cancel != NULL)
		PQfreeCancel(dc->cancel);
	dc->cancel = cancel;
	pthread_mutex_unlock(&registry_lock);
}

/* Make sure dc has an open session; false means the database is unreachable */
static bool
ensure_connected(struct db_conn *dc)
{
	if (dc->conn == NULL)
		dc->conn = db_connect();
	else if (dc->broken || !conn_alive(dc->conn))
		PQreset(dc->conn);
	else
		return true;

	dc->prepared = false;
	dc->broken = false;
	update_cancel(dc);
	if (dc->conn == NULL)
	{
		log_error("database connection failed: out of memory");
		return false;
	}
	if (PQstatus(dc->conn) != CONNECTION_OK)
	{
		if (!dc->down)
			log_error("database connection failed: %s", PQerrorMessage(dc->conn));
		dc->down = true;
		return false;
	}
	if (dc->down)
		log_info("database connection restored");
	dc->down = false;
	return true;
}

/*
 * Did this failure come from the connection rather than from the SQL?
 * Errors raised by libpq itself carry no SQLSTATE.
 */
static bool
connection_failure(PGconn *conn, const PGresult *res)
{
	const char *state;

	if (PQstatus(conn) != CONNECTION_OK || res == NULL)
		return true;
	state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	if (state == NULL)
		return true;
	return strncmp(state, "08", 2) == 0 ||	/* connection exception */
		strcmp(state, "57P01") == 0 ||	/* admin_shutdown */
		strcmp(state, "57P02") == 0 ||	/* crash_shutdown */
		strcmp(state, "57P03") == 0;	/* cannot_connect_now */
}

/* Canceled by db_cancel_all() or by a statement timeout */
static bool
query_canceled(const PGresult *res)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	return state != NULL && strcmp(state, "57014") == 0;
}

static const char *
result_error(PGconn *conn, const PGresult *res)
{
	const char *msg = res != NULL ? PQresultErrorMessage(res) : "";

	return *msg != '\0' ? msg : PQerrorMessage(conn);
}

/* Prepare the statement if this session lacks it; DB_OK when ready */
static db_status
ensure_prepared(struct db_conn *dc)
{
	PGresult   *res;
	db_status	st = DB_OK;

	if (dc->prepared)
		return DB_OK;
	res = PQprepare(dc->conn, STMT_NAME, STMT_SQL, 5, NULL);
	if (res != NULL && PQresultStatus(res) == PGRES_COMMAND_OK)
		dc->prepared = true;
	else if (connection_failure(dc->conn, res))
	{
		dc->broken = true;
		st = DB_UNAVAILABLE;
	}
	else
	{
		log_error("cannot prepare pgwa.http call: %s", result_error(dc->conn, res));
		st = DB_FAILED;
	}
	PQclear(res);
	return st;
}

static char *
copy_value(const PGresult *res, int col, size_t *len)
{
	size_t		n = (size_t) PQgetlength(res, 0, col);
	char	   *s = malloc(n + 1);

	if (s != NULL)
	{
		memcpy(s, PQgetvalue(res, 0, col), n);
		s[n] = '\0';
	}
	if (len != NULL)
		*len = n;
	return s;
}

/* Turn the result row into a reply; DB_FAILED if it is not usable */
static db_status
read_reply(const PGresult *res, struct db_reply *reply)
{
	const char *status_text;
	char	   *end;
	long		status;

	if (PQntuples(res) != 1 || PQnfields(res) != 3)
	{
		log_error("pgwa.http returned %d rows of %d columns, expected 1 row",
				  PQntuples(res), PQnfields(res));
		return DB_FAILED;
	}
	status_text = PQgetvalue(res, 0, 0);
	errno = 0;
	status = strtol(status_text, &end, 10);
	if (PQgetisnull(res, 0, 0) || *end != '\0' || errno != 0 ||
		status < 200 || status > 599)
	{
		log_error("pgwa.http returned unusable status \"%s\"", status_text);
		return DB_FAILED;
	}

	reply->status = (unsigned int) status;
	reply->headers = PQgetisnull(res, 0, 1) ? NULL : copy_value(res, 1, NULL);
	reply->body = copy_value(res, 2, &reply->body_len);
	if (reply->body == NULL || (reply->headers == NULL && !PQgetisnull(res, 0, 1)))
	{
		free(reply->headers);
		free(reply->body);
		log_error("out of memory reading pgwa.http result");
		return DB_FAILED;
	}
	return DB_OK;
}

db_status
db_call_http(const struct db_call *call, struct db_reply *reply)
{
	struct db_conn *dc = get_thread_conn();
	const char *params[5] = {
		call->method, call->path, call->query, call->headers, call->body
	};
	PGresult   *res;
	db_status	st;

	memset(reply, 0, sizeof(*reply));
	if (dc == NULL)
		return DB_UNAVAILABLE;

	/* a failure while preparing means the call never ran: one more try */
	for (int attempt = 0;; attempt++)
	{
		if (!ensure_connected(dc))
			return DB_UNAVAILABLE;
		st = ensure_prepared(dc);
		if (st == DB_OK)
			break;
		if (st != DB_UNAVAILABLE || attempt > 0)
			return st;
	}

	res = PQexecPrepared(dc->conn, STMT_NAME, 5, params, NULL, NULL, 0);
	if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK)
		st = read_reply(res, reply);
	else if (connection_failure(dc->conn, res))
	{
		log_error("database connection lost during call: %s",
				  result_error(dc->conn, res));
		dc->broken = true;
		st = DB_UNAVAILABLE;
	}
	else if (query_canceled(res))
	{
		/* rolled back, so the client may safely retry */
		log_error("pgwa.http canceled: %s", result_error(dc->conn, res));
		st = DB_UNAVAILABLE;
	}
	else
	{
		log_error("pgwa.http failed: %s", result_error(dc->conn, res));
		st = DB_FAILED;
	}
	PQclear(res);

	/* the call is a single autocommit statement; anything else is suspect */
	if (!dc->broken && PQtransactionStatus(dc->conn) != PQTRANS_IDLE)
		dc->broken = true;
	return st;
}

/*
 * Ask the server to cancel whatever each session is running, so that pool
 * threads blocked in a call return and the pool can be stopped.
 */
void
db_cancel_all(void)
{
	char		errbuf[256];

	pthread_mutex_lock(&registry_lock);
	for (struct db_conn *dc = registry; dc != NULL; dc = dc->next)
		if (dc->cancel != NULL && !PQcancel(dc->cancel, errbuf, sizeof(errbuf)))
			log_error("cannot cancel database call: %s", errbuf);
	pthread_mutex_unlock(&registry_lock);
}

/* Close every session; only once the pool threads have been joined. */
void
db_close_all(void)
{
	pthread_mutex_lock(&registry_lock);
	while (registry != NULL)
	{
		struct db_conn *dc = registry;

		registry = dc->next;
		if (dc->cancel != NULL)
			PQfreeCancel(dc->cancel);
		PQfinish(dc->conn);
		free(dc);
	}
	pthread_mutex_unlock(&registry_lock);
}
