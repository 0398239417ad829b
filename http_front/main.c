/*
 * main.c
 *		pgwa-http: the HTTP front of pgwa.
 *
 * Reads its configuration from the environment, runs libmicrohttpd with
 * an internal thread pool, and shuts down gracefully on SIGTERM/SIGINT:
 * stop accepting, let in-flight requests finish within a grace period,
 * end the event streams, then stop the pool and close the database sessions.
 */
#define _GNU_SOURCE				/* pipe2 */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "db.h"
#include "log.h"
#include "forward.h"
#include "ratelimit.h"
#include "request.h"
#include "uploads.h"
#include "stream.h"

struct config
{
	unsigned int port;
	const char *addr;
	unsigned int threads;
	unsigned int timeout;
	unsigned int max_connections;
	unsigned int shutdown_grace;
	unsigned int rate_limit;
	unsigned int broker_timeout;
	unsigned int rate_burst;
	unsigned int max_streams;
	unsigned int heartbeat;
	size_t		max_body;
	size_t		max_upload;
	const char *upload_dir;
	unsigned int upload_sweep;
	bool		access_log;
};

static int signal_pipe[2] = {-1, -1};

static void
usage(FILE *out)
{
	fprintf(out,
			"usage: pgwa-http [--port N]\n"
			"\n"
			"Environment:\n"
			"  PGWA_HTTP_ADDR             listen address (127.0.0.1)\n"
			"  PGWA_HTTP_PORT             listen port (8080)\n"
			"  PGWA_HTTP_THREADS          pool threads, one database session each (4)\n"
			"  PGWA_HTTP_MAX_BODY         request body limit in bytes (1048576)\n"
			"  PGWA_HTTP_TIMEOUT          idle connection timeout in seconds (30)\n"
			"  PGWA_HTTP_MAX_CONNECTIONS  concurrent connection limit (1024)\n"
			"  PGWA_HTTP_SHUTDOWN_GRACE   seconds to drain requests on shutdown (10)\n"
			"  PGWA_HTTP_ACCESS_LOG       0 disables the access log (1)\n"
			"  PGWA_HTTP_RATE_LIMIT       requests per second per API key, 0 for none (0)\n"
			"  PGWA_HTTP_BROKER_TIMEOUT   broker operations' timeout in milliseconds (5000)\n"
			"  PGWA_HTTP_MAX_UPLOAD       upload body limit in bytes (104857600)\n"
			"  PGWA_HTTP_UPLOAD_DIR       where uploaded files are kept (pgwa-uploads)\n"
			"  PGWA_HTTP_UPLOAD_SWEEP     seconds between deletions of expired uploads' files, 0 for none (60)\n"
			"  PGWA_HTTP_RATE_BURST       requests a key may send at once (2 x the limit)\n"
			"  PGWA_HTTP_MAX_STREAMS      concurrent GET /v1/events streams, one database\n"
			"                             session and thread each; 503 past it (16)\n"
			"  PGWA_HTTP_SSE_HEARTBEAT    seconds of silence before a stream's heartbeat (15)\n"
			"  PGWA_DSN                   libpq connection string; else PG* variables\n");
}

static void
die_config(const char *what, const char *value, const char *expected)
{
	fprintf(stderr, "pgwa-http: invalid %s \"%s\": expected %s\n",
			what, value, expected);
	exit(2);
}

static unsigned long long
parse_number(const char *what, const char *text,
			 unsigned long long min, unsigned long long max)
{
	char		expected[96];
	unsigned long long v;
	char	   *end;

	snprintf(expected, sizeof(expected), "an integer from %llu to %llu",
			 min, max);
	errno = 0;
	if (text[0] < '0' || text[0] > '9')
		die_config(what, text, expected);
	v = strtoull(text, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		die_config(what, text, expected);
	return v;
}

/* An unset or empty variable means the default. */
static unsigned long long
env_number(const char *name, unsigned long long dflt,
		   unsigned long long min, unsigned long long max)
{
	const char *text = getenv(name);

	if (text == NULL || text[0] == '\0')
		return dflt;
	return parse_number(name, text, min, max);
}

static void
read_config(struct config *cfg, int argc, char **argv)
{
	const char *log_flag;

	cfg->addr = getenv("PGWA_HTTP_ADDR");
	if (cfg->addr == NULL || cfg->addr[0] == '\0')
		cfg->addr = "127.0.0.1";
	cfg->port = (unsigned int) env_number("PGWA_HTTP_PORT", 8080, 0, 65535);
	cfg->threads = (unsigned int) env_number("PGWA_HTTP_THREADS", 4, 1, 256);
	cfg->max_body = (size_t) env_number("PGWA_HTTP_MAX_BODY", 1048576, 0,
										(unsigned long long) 1 << 30);
	cfg->max_upload = (size_t) env_number("PGWA_HTTP_MAX_UPLOAD", 100ULL << 20, 0,
										  (unsigned long long) 1 << 32);
	cfg->upload_dir = getenv("PGWA_HTTP_UPLOAD_DIR");
	cfg->upload_sweep = (unsigned int) env_number("PGWA_HTTP_UPLOAD_SWEEP", 60, 0, 86400);
	cfg->timeout = (unsigned int) env_number("PGWA_HTTP_TIMEOUT", 30, 1, 86400);
	cfg->max_connections = (unsigned int)
		env_number("PGWA_HTTP_MAX_CONNECTIONS", 1024, 1, 1000000);
	cfg->shutdown_grace = (unsigned int)
		env_number("PGWA_HTTP_SHUTDOWN_GRACE", 10, 0, 3600);
	cfg->rate_limit = (unsigned int) env_number("PGWA_HTTP_RATE_LIMIT", 0, 0, 1000000);
	cfg->broker_timeout = (unsigned int) env_number("PGWA_HTTP_BROKER_TIMEOUT", 5000, 100, 120000);
	cfg->rate_burst = (unsigned int)
		env_number("PGWA_HTTP_RATE_BURST", 2ULL * cfg->rate_limit, 0, 2000000);
	cfg->max_streams = (unsigned int) env_number("PGWA_HTTP_MAX_STREAMS", 16, 0, 10000);
	cfg->heartbeat = (unsigned int) env_number("PGWA_HTTP_SSE_HEARTBEAT", 15, 1, 3600);

	log_flag = getenv("PGWA_HTTP_ACCESS_LOG");
	cfg->access_log = true;
	if (log_flag != NULL && log_flag[0] != '\0')
	{
		if (strcmp(log_flag, "0") == 0)
			cfg->access_log = false;
		else if (strcmp(log_flag, "1") != 0)
			die_config("PGWA_HTTP_ACCESS_LOG", log_flag, "0 or 1");
	}

	for (int i = 1; i < argc; i++)
	{
		const char *arg = argv[i];

		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)
		{
			usage(stdout);
			exit(0);
		}
		else if (strcmp(arg, "--port") == 0 && i + 1 < argc)
			cfg->port = (unsigned int) parse_number("--port", argv[++i], 0, 65535);
		else if (strncmp(arg, "--port=", 7) == 0)
			cfg->port = (unsigned int) parse_number("--port", arg + 7, 0, 65535);
		else if (strcmp(arg, "--port") == 0)
		{
			fprintf(stderr, "pgwa-http: --port requires a value\n");
			exit(2);
		}
		else
		{
			fprintf(stderr, "pgwa-http: unrecognized argument \"%s\"\n", arg);
			usage(stderr);
			exit(2);
		}
	}

	/* libmicrohttpd splits the limit across pool threads */
	if (cfg->max_connections < cfg->threads)
	{
		fprintf(stderr, "pgwa-http: PGWA_HTTP_MAX_CONNECTIONS (%u) must be at least PGWA_HTTP_THREADS (%u)\n",
				cfg->max_connections, cfg->threads);
		exit(2);
	}
}

/* Fill in the listen address; false if cfg->addr is not a numeric address. */
static bool
make_sockaddr(const struct config *cfg, struct sockaddr_storage *ss)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *) ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, cfg->addr, &in4->sin_addr) == 1)
	{
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t) cfg->port);
		return true;
	}
	if (inet_pton(AF_INET6, cfg->addr, &in6->sin6_addr) == 1)
	{
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t) cfg->port);
		return true;
	}
	return false;
}

static void
on_signal(int signo)
{
	int			save_errno = errno;
	char		c = (char) signo;
	ssize_t		rc;

	rc = write(signal_pipe[1], &c, 1);
	(void) rc;
	errno = save_errno;
}

/*
 * Route SIGTERM/SIGINT to the self-pipe.  They are blocked while the pool
 * starts so that only the main thread, which unblocks them, runs the
 * handler.
 */
static void
setup_signals(sigset_t *stop_set)
{
	struct sigaction sa;

	if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
	{
		fprintf(stderr, "pgwa-http: cannot create pipe: %s\n", strerror(errno));
		exit(1);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	/* peers that vanish must not kill the process */
	signal(SIGPIPE, SIG_IGN);

	sigemptyset(stop_set);
	sigaddset(stop_set, SIGTERM);
	sigaddset(stop_set, SIGINT);
	pthread_sigmask(SIG_BLOCK, stop_set, NULL);
}

/* Wait up to timeout_ms for a signal; true if one arrived. */
static bool
wait_signal(int timeout_ms)
{
	struct pollfd pfd = {.fd = signal_pipe[0],.events = POLLIN};
	char		buf[16];

	if (poll(&pfd, 1, timeout_ms) <= 0)
		return false;
	while (read(signal_pipe[0], buf, sizeof(buf)) > 0)
		;
	return true;
}

static void
mhd_logger(void *cls, const char *fmt, va_list ap)
{
	(void) cls;
	log_vmessage("warning", fmt, ap);
}

static double
elapsed_since(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double) (now.tv_sec - start->tv_sec) +
		(double) (now.tv_nsec - start->tv_nsec) / 1e9;
}

/* Stop accepting, drain in-flight requests, then stop the pool. */
static void
shutdown_daemon(struct MHD_Daemon *daemon, unsigned int grace)
{
	MHD_socket	listen_fd = MHD_quiesce_daemon(daemon);
	struct timespec start;
	unsigned int pending;

	if (listen_fd == MHD_INVALID_SOCKET)
		log_error("cannot stop accepting connections; stopping at once");
	request_begin_shutdown();
	/* streams never finish by themselves: end them, clients resume later */
	stream_shutdown();
	clock_gettime(CLOCK_MONOTONIC, &start);
	log_info("shutting down, %u request(s) in flight", request_in_flight());

	/* a second signal cuts the grace period short */
	while (listen_fd != MHD_INVALID_SOCKET &&
		   (pending = request_in_flight()) > 0)
	{
		if (elapsed_since(&start) >= grace || wait_signal(20))
		{
			/* the pool cannot stop while a thread waits on the database */
			log_info("grace period over, canceling %u request(s)", pending);
			db_cancel_all();
			break;
		}
	}

	/* streams' connections are resumed by now, as MHD_stop_daemon() requires */
	stream_shutdown();
	MHD_stop_daemon(daemon);
	/* ours to close, but only once the pool is gone */
	if (listen_fd != MHD_INVALID_SOCKET)
		close(listen_fd);
	if (!stream_wait(5))
		log_error("event stream threads still busy at exit");
	db_close_all();
}

int
main(int argc, char **argv)
{
	struct config cfg;
	struct sockaddr_storage ss;
	sigset_t	stop_set;
	unsigned int flags;
	struct MHD_Daemon *daemon;
	const union MHD_DaemonInfo *info;
	unsigned int port;
	const char *dsn;

	read_config(&cfg, argc, argv);
	if (!make_sockaddr(&cfg, &ss))
		die_config("PGWA_HTTP_ADDR", cfg.addr, "a numeric IPv4 or IPv6 address");

	log_init(cfg.access_log);
	request_init(cfg.max_body, cfg.max_upload);
	uploads_init(cfg.upload_dir);
	ratelimit_init(cfg.rate_limit, cfg.rate_burst);
	forward_init(cfg.broker_timeout);
	stream_init(cfg.max_streams, cfg.heartbeat);
	dsn = getenv("PGWA_DSN");
	db_init(dsn != NULL && dsn[0] != '\0' ? dsn : NULL);
	json_object_seed(0);
	setup_signals(&stop_set);

	/* event streams suspend their connection while they wait (stream.c) */
	flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG |
		MHD_ALLOW_SUSPEND_RESUME;
	flags |= MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES ?
		MHD_USE_EPOLL : MHD_USE_POLL;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;

	daemon = MHD_start_daemon(flags, (uint16_t) cfg.port, NULL, NULL,
							  request_handler, NULL,
							  MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
							  MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &ss,
							  MHD_OPTION_THREAD_POOL_SIZE, cfg.threads,
							  MHD_OPTION_CONNECTION_TIMEOUT, cfg.timeout,
							  MHD_OPTION_CONNECTION_LIMIT, cfg.max_connections,
							  MHD_OPTION_NOTIFY_COMPLETED, request_completed, NULL,
							  MHD_OPTION_END);
	if (daemon == NULL)
	{
		log_error("cannot listen on %s port %u", cfg.addr, cfg.port);
		return 1;
	}
	pthread_sigmask(SIG_UNBLOCK, &stop_set, NULL);

	info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
	port = info != NULL && info->port != 0 ? info->port : cfg.port;
	if (ss.ss_family == AF_INET6)
		printf("pgwa-http listening on [%s]:%u\n", cfg.addr, port);
	else
		printf("pgwa-http listening on %s:%u\n", cfg.addr, port);
	fflush(stdout);

	/* between signals, the files of ended uploads go (uploads.c) */
	while (!wait_signal(cfg.upload_sweep > 0 ? (int) cfg.upload_sweep * 1000 : -1))
		uploads_sweep();
	shutdown_daemon(daemon, cfg.shutdown_grace);
	log_info("stopped");
	return 0;
}
