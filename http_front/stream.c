/*
 * stream.c
 *		Server-sent event streams of GET /v1/events.
 *
 * pgwa.http() returns one finished body, so the front serves this route
 * itself, after pgwa.http() has checked the key and said where the stream
 * starts.  Each stream has a thread of its own with a database session of
 * its own (never one of the pool's, which serve the ordinary requests): it
 * LISTENs on pgwa_events, reads the tenant's new events through pgwa.http()
 * when a notification names the tenant, and writes them as frames into the
 * stream's buffer.  The libmicrohttpd connection, on a pool thread that
 * serves other connections too, never waits: the content reader hands out
 * what is buffered, and suspends the connection when there is nothing; the
 * thread resumes it when it adds something.  A heartbeat comment after
 * heartbeat_s seconds of silence keeps proxies from closing the connection.
 * A suspended connection does not notice its client leave, so while it is
 * suspended the thread watches the socket for the client's end (POLLRDHUP)
 * and ends the stream then: its thread and session are free at once.
 *
 * A stream is freed once three references are gone: the response's (the
 * connection is done with it), the request's (its access log line is
 * written) and the thread's.  The thread only touches the connection while
 * the connection is suspended by the reader, so it cannot be gone.
 */
#define _GNU_SOURCE				/* pipe2 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "db.h"
#include "log.h"
#include "stream.h"

#define BATCH		"100"		/* events per read */
#define FETCH_SQL \
	"SELECT status, body FROM pgwa.http('GET', '/v1/events', $1::jsonb, $2::jsonb, NULL)"

struct stream
{
	pthread_mutex_t lock;
	struct MHD_Connection *conn;
	char	   *buf;			/* frames not yet handed to the connection */
	size_t		len;
	size_t		off;
	size_t		cap;
	size_t		bytes_out;
	bool		suspended;		/* by the reader, waiting for the thread */
	bool		done;			/* no more frames: end the body once drained */
	bool		closed;			/* the connection is done with the response */
	int			client_fd;		/* the connection's socket, -1 if unknown */
	int			refs;
	int			wake[2];		/* pipe waking the thread */

	/* the thread's own, fixed before it starts */
	char		tenant_id[64];
	long long	after;
	json_t	   *query;
	char	   *headers;
	struct stream *next;		/* in the registry */
	struct stream *resume_next; /* to resume, in stream_shutdown() */
};

static unsigned int max_streams;
static unsigned int heartbeat_ms;

/* How often an idle stream looks for held-back events (ms). */
#define RECHECK_MS 1000
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t registry_empty = PTHREAD_COND_INITIALIZER;
static struct stream *registry;
static unsigned int places;		/* taken, by streams and reservations */
static bool stopping;

void
stream_init(unsigned int max, unsigned int heartbeat_s)
{
	max_streams = max;
	heartbeat_ms = heartbeat_s * 1000;
}

bool
stream_reserve(void)
{
	bool		ok;

	pthread_mutex_lock(&registry_lock);
	ok = !stopping && places < max_streams;
	if (ok)
		places++;
	pthread_mutex_unlock(&registry_lock);
	return ok;
}

void
stream_unreserve(void)
{
	pthread_mutex_lock(&registry_lock);
	if (--places == 0)
		pthread_cond_broadcast(&registry_empty);
	pthread_mutex_unlock(&registry_lock);
}

unsigned int
stream_count(void)
{
	unsigned int n;

	pthread_mutex_lock(&registry_lock);
	n = places;
	pthread_mutex_unlock(&registry_lock);
	return n;
}

static void
wake_thread(struct stream *s)
{
	char		c = 1;
	ssize_t		rc = write(s->wake[1], &c, 1);

	(void) rc;					/* a full pipe already wakes it */
}

/* What a stream holds, once nothing refers to it (or it never started). */
static void
stream_free(struct stream *s)
{
	if (s->wake[0] >= 0)
	{
		close(s->wake[0]);
		close(s->wake[1]);
	}
	json_decref(s->query);
	free(s->headers);
	free(s->buf);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

void
stream_unref(struct stream *s)
{
	bool		last;

	pthread_mutex_lock(&s->lock);
	last = --s->refs == 0;
	pthread_mutex_unlock(&s->lock);
	if (!last)
		return;

	pthread_mutex_lock(&registry_lock);
	for (struct stream **p = &registry; *p != NULL; p = &(*p)->next)
		if (*p == s)
		{
			*p = s->next;
			break;
		}
	pthread_mutex_unlock(&registry_lock);
	stream_unreserve();
	stream_free(s);
}

size_t
stream_bytes_out(struct stream *s)
{
	size_t		n;

	pthread_mutex_lock(&s->lock);
	n = s->bytes_out;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/*
 * Let a suspended connection go on.  Called without s->lock: the
 * connection stays suspended, hence alive, until this resumes it.
 */
static void
resume_if(struct stream *s, bool resume)
{
	if (resume)
		MHD_resume_connection(s->conn);
}

/* Take the connection out of suspension, under s->lock; true if it was. */
static bool
take_suspension(struct stream *s)
{
	bool		was = s->suspended && !s->closed;

	s->suspended = false;
	return was;
}

/* ---------- the connection's side ---------- */

static ssize_t
read_frames(void *cls, uint64_t pos, char *out, size_t max)
{
	struct stream *s = cls;
	size_t		n;
	bool		drained;

	(void) pos;
	pthread_mutex_lock(&s->lock);
	n = s->len - s->off;
	if (n == 0)
	{
		if (s->done)
		{
			pthread_mutex_unlock(&s->lock);
			return MHD_CONTENT_READER_END_OF_STREAM;
		}
		/* under the lock, so that the thread cannot resume it first */
		s->suspended = true;
		MHD_suspend_connection(s->conn);
		pthread_mutex_unlock(&s->lock);
		wake_thread(s);			/* to watch the client's socket meanwhile */
		return 0;
	}
	if (n > max)
		n = max;
	memcpy(out, s->buf + s->off, n);
	s->off += n;
	s->bytes_out += n;
	drained = s->off == s->len;
	if (drained)
		s->off = s->len = 0;
	pthread_mutex_unlock(&s->lock);
	if (drained)
		wake_thread(s);
	return (ssize_t) n;
}

/* The connection is done with the response: closed by the client, or ended. */
static void
response_gone(void *cls)
{
	struct stream *s = cls;

	pthread_mutex_lock(&s->lock);
	s->closed = true;
	s->done = true;
	pthread_mutex_unlock(&s->lock);
	wake_thread(s);
	stream_unref(s);
}

/* ---------- the thread's side ---------- */

/* Add text to the buffer and wake the connection; false when out of memory. */
static bool
emit(struct stream *s, const char *text, size_t len)
{
	bool		resume;

	pthread_mutex_lock(&s->lock);
	if (s->len + len > s->cap)
	{
		size_t		cap = s->cap > 0 ? s->cap : 4096;
		char	   *p;

		while (cap < s->len + len)
			cap *= 2;
		p = realloc(s->buf, cap);
		if (p == NULL)
		{
			pthread_mutex_unlock(&s->lock);
			return false;
		}
		s->buf = p;
		s->cap = cap;
	}
	memcpy(s->buf + s->len, text, len);
	s->len += len;
	resume = take_suspension(s);
	pthread_mutex_unlock(&s->lock);
	resume_if(s, resume);
	return true;
}

static bool
pending(struct stream *s, bool *ended)
{
	bool		left;

	pthread_mutex_lock(&s->lock);
	left = s->len > s->off;
	*ended = s->closed || s->done;
	pthread_mutex_unlock(&s->lock);
	return left;
}

/*
 * The client's socket while the connection is suspended, else -1. Only this
 * thread resumes a suspended connection (but at shutdown), so the socket
 * stays open while it waits on it.
 */
static int
watched_socket(struct stream *s)
{
	int			fd;

	pthread_mutex_lock(&s->lock);
	fd = s->suspended && !s->closed ? s->client_fd : -1;
	pthread_mutex_unlock(&s->lock);
	return fd;
}

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One frame per event of a page; false when the page is not one. */
static bool
emit_page(struct stream *s, json_t *page, bool *more)
{
	json_t	   *events = json_object_get(page, "events");
	json_t	   *last = json_object_get(page, "lastId");
	json_t	   *ev;
	size_t		i;

	if (!json_is_array(events) || !json_is_integer(last))
		return false;
	json_array_foreach(events, i, ev)
	{
		json_t	   *id = json_object_get(ev, "id");
		const char *name = json_string_value(json_object_get(ev, "event"));
		char	   *data = json_dumps(ev, JSON_COMPACT);
		char	   *frame = NULL;
		int			len = -1;

		/* compact JSON has no line breaks; a name with one would break the framing */
		if (json_is_integer(id) && name != NULL && strpbrk(name, "\r\n") == NULL && data != NULL)
			len = asprintf(&frame, "id: %" JSON_INTEGER_FORMAT "\nevent: %s\ndata: %s\n\n",
						   json_integer_value(id), name, data);
		free(data);
		if (len < 0 || !emit(s, frame, (size_t) len))
		{
			free(frame);
			return false;
		}
		free(frame);
	}
	s->after = json_integer_value(last);
	*more = json_is_true(json_object_get(page, "more"));
	return true;
}

/*
 * Read the next page of events after s->after into frames.  False ends the
 * stream: the session broke, or pgwa.http() refused (a revoked key, an
 * instance deleted).
 */
static bool
fetch(struct stream *s, PGconn *pg, bool *more)
{
	char		after[32];
	char	   *query;
	const char *params[2];
	PGresult   *res;
	json_t	   *page = NULL;
	bool		ok = false;

	snprintf(after, sizeof(after), "%lld", s->after);
	json_object_set_new(s->query, "after", json_string(after));
	json_object_set_new(s->query, "limit", json_string(BATCH));
	query = json_dumps(s->query, JSON_COMPACT);
	if (query == NULL)
		return false;
	params[0] = query;
	params[1] = s->headers;
	res = PQexecParams(pg, FETCH_SQL, 2, NULL, params, NULL, NULL, 0);
	free(query);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		log_error("event stream of tenant %s: cannot read events: %s", s->tenant_id,
				  PQerrorMessage(pg));
	else if (strcmp(PQgetvalue(res, 0, 0), "200") != 0)
		log_info("event stream of tenant %s ends: status %s", s->tenant_id, PQgetvalue(res, 0, 0));
	else if ((page = json_loads(PQgetvalue(res, 0, 1), 0, NULL)) == NULL || !emit_page(s, page, more))
		log_error("event stream of tenant %s: unusable page of events", s->tenant_id);
	else
		ok = true;
	json_decref(page);
	PQclear(res);
	return ok;
}

/* Do the notifications read name this stream's tenant? False if the session broke. */
static bool
read_notifications(struct stream *s, PGconn *pg, bool *mine)
{
	PGnotify   *n;

	if (!PQconsumeInput(pg))
	{
		log_error("event stream of tenant %s: database session lost: %s", s->tenant_id,
				  PQerrorMessage(pg));
		return false;
	}
	while ((n = PQnotifies(pg)) != NULL)
	{
		json_t	   *note = json_loads(n->extra, 0, NULL);
		const char *tenant = json_string_value(json_object_get(note, "tenant_id"));

		/* a note it cannot read may be anyone's: read to be sure */
		if (tenant == NULL || strcmp(tenant, s->tenant_id) == 0)
			*mine = true;
		json_decref(note);
		PQfreemem(n);
	}
	return true;
}

static PGconn *
listen_session(struct stream *s)
{
	PGconn	   *pg = db_connect();
	PGresult   *res;

	if (pg == NULL || PQstatus(pg) != CONNECTION_OK)
	{
		log_error("event stream of tenant %s: database connection failed: %s", s->tenant_id,
				  pg != NULL ? PQerrorMessage(pg) : "out of memory");
		PQfinish(pg);
		return NULL;
	}
	res = PQexec(pg, "LISTEN pgwa_events");
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		log_error("event stream of tenant %s: cannot listen: %s", s->tenant_id, PQerrorMessage(pg));
		PQclear(res);
		PQfinish(pg);
		return NULL;
	}
	PQclear(res);
	return pg;
}

static void *
stream_main(void *arg)
{
	struct stream *s = arg;
	PGconn	   *pg = listen_session(s);

	/* listening first, then reading: nothing committed in between is missed */
	bool		want = true;
	long long	last_out = now_ms();
	bool		resume;

	while (pg != NULL)
	{
		bool		ended;
		bool		busy = pending(s, &ended);
		struct pollfd pfd[3] = {
			{.fd = s->wake[0],.events = POLLIN},
			{.fd = PQsocket(pg),.events = POLLIN},
			{.fd = watched_socket(s),.events = POLLRDHUP},
		};
		int			timeout = -1;
		int			n_ready;
		char		drain[64];

		if (ended)
			break;
		if (!busy && want)
		{
			if (!fetch(s, pg, &want))
				break;
			if (pending(s, &ended))
				last_out = now_ms();
			continue;
		}
		if (!busy)
		{
			long long	quiet = now_ms() - last_out;

			if (quiet >= heartbeat_ms)
			{
				if (!emit(s, ": heartbeat\n\n", 13))
					break;
				last_out = now_ms();
				continue;
			}
			timeout = (int) (heartbeat_ms - quiet);
			/*
			 * look again each second: a page holds back events of a
			 * transaction younger than one still writing (an earlier id may
			 * commit later), and that writer may end without a notification
			 */
			if (timeout > RECHECK_MS)
				timeout = RECHECK_MS;
		}
		/* a full buffer waits for the client; notifications are still read */
		n_ready = poll(pfd, 3, timeout);
		if (n_ready < 0 && errno != EINTR)
			break;
		if (n_ready > 0 && (pfd[2].revents & (POLLRDHUP | POLLHUP | POLLERR)) && watched_socket(s) >= 0)
		{
			log_info("event stream of tenant %s ends: the client left", s->tenant_id);
			break;
		}
		if (n_ready == 0 && !busy)
			want = true;
		if (pfd[0].revents != 0)
			while (read(s->wake[0], drain, sizeof(drain)) > 0)
				;
		if (pfd[1].revents != 0 && !read_notifications(s, pg, &want))
			break;
	}
	PQfinish(pg);

	pthread_mutex_lock(&s->lock);
	s->done = true;
	resume = take_suspension(s);
	pthread_mutex_unlock(&s->lock);
	resume_if(s, resume);
	stream_unref(s);
	return NULL;
}

struct MHD_Response *
stream_start(struct MHD_Connection *conn, const char *tenant_id, long long after,
			 const char *query, const char *headers, struct stream **out)
{
	struct stream *s = calloc(1, sizeof(*s));
	struct MHD_Response *resp = NULL;
	pthread_attr_t attr;
	pthread_t	thread;
	char		opening[48];
	int			len;

	if (s == NULL)
		goto fail;
	s->wake[0] = s->wake[1] = -1;
	pthread_mutex_init(&s->lock, NULL);
	s->conn = conn;
	s->client_fd = -1;
	{
		const union MHD_ConnectionInfo *info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

		if (info != NULL)
			s->client_fd = info->connect_fd;
	}
	s->after = after;
	snprintf(s->tenant_id, sizeof(s->tenant_id), "%s", tenant_id);
	s->query = json_loads(query, 0, NULL);
	s->headers = strdup(headers);
	if (!json_is_object(s->query) || s->headers == NULL ||
		pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) != 0)
		goto fail;

	/* the starting id first: a client that reconnects before any event resumes there */
	len = snprintf(opening, sizeof(opening), "id: %lld\n\n", after);
	if (!emit(s, opening, (size_t) len))
		goto fail;
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, read_frames, s,
											 response_gone);
	if (resp == NULL)
		goto fail;
	s->refs = 3;				/* response, request, thread */

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&thread, &attr, stream_main, s) != 0)
	{
		pthread_attr_destroy(&attr);
		/* destroying the response drops its reference */
		s->refs = 2;
		MHD_destroy_response(resp);
		stream_unref(s);		/* the request's; this frees it */
		return NULL;
	}
	pthread_attr_destroy(&attr);

	pthread_mutex_lock(&registry_lock);
	s->next = registry;
	registry = s;
	if (stopping)
	{
		/* shutdown began during the handshake: the stream ends at once */
		pthread_mutex_lock(&s->lock);
		s->done = true;
		pthread_mutex_unlock(&s->lock);
		wake_thread(s);
	}
	pthread_mutex_unlock(&registry_lock);
	*out = s;
	return resp;

fail:
	log_error("cannot start an event stream: out of resources");
	if (s != NULL)
		stream_free(s);
	stream_unreserve();
	return NULL;
}

/*
 * Suspended connections are resumed once the registry is unlocked: the
 * connection's end takes the registry lock (stream_unref), and a suspended
 * one cannot end before it is resumed.
 */
void
stream_shutdown(void)
{
	struct stream *resume = NULL;

	pthread_mutex_lock(&registry_lock);
	stopping = true;
	for (struct stream *s = registry; s != NULL; s = s->next)
	{
		pthread_mutex_lock(&s->lock);
		s->done = true;
		if (take_suspension(s))
		{
			s->resume_next = resume;
			resume = s;
		}
		pthread_mutex_unlock(&s->lock);
		wake_thread(s);
	}
	pthread_mutex_unlock(&registry_lock);
	while (resume != NULL)
	{
		struct stream *s = resume;

		resume = s->resume_next;
		MHD_resume_connection(s->conn);
	}
}

bool
stream_wait(unsigned int seconds)
{
	struct timespec deadline;
	bool		empty;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += seconds;
	pthread_mutex_lock(&registry_lock);
	while (places > 0)
		if (pthread_cond_timedwait(&registry_empty, &registry_lock, &deadline) != 0)
			break;
	empty = places == 0;
	pthread_mutex_unlock(&registry_lock);
	return empty;
}
