/*
 * enqueue_client.c: one client enqueuing one message at a time over a
 * persistent libpq connection, for the latency benchmark.
 *
 *   enqueue_client COUNT INTERVAL_MS INSTANCE_UUID...
 *
 * Connects with the usual PG* variables, prepares
 *   SELECT message_id FROM pgwa.send($1::uuid, $2, $3)
 * and runs it COUNT times (autocommit: each call is its own transaction),
 * cycling over the instances and sleeping INTERVAL_MS between calls. For
 * every message it prints one tab-separated line
 *   message_id  t_call_ms  t_commit_ms
 * where t_call_ms is the Unix time (CLOCK_REALTIME, fractional milliseconds)
 * just before the call is sent and t_commit_ms the time its result, and
 * therefore its commit, is back. The mock broker stamps its records with
 * the same clock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double) ts.tv_sec * 1000.0 + (double) ts.tv_nsec / 1e6;
}

static void
sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000,.tv_nsec = (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0)
		;
}

int
main(int argc, char **argv)
{
	PGconn	   *conn;
	PGresult   *res;
	long		count;
	long		interval;
	int			ninstances;

	if (argc < 4)
	{
		fprintf(stderr, "usage: %s COUNT INTERVAL_MS INSTANCE_UUID...\n", argv[0]);
		return 2;
	}
	count = strtol(argv[1], NULL, 10);
	interval = strtol(argv[2], NULL, 10);
	ninstances = argc - 3;

	conn = PQconnectdb("");
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "enqueue_client: %s", PQerrorMessage(conn));
		return 1;
	}
	res = PQprepare(conn, "send", "SELECT message_id FROM pgwa.send($1::uuid, $2, $3)", 3, NULL);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		fprintf(stderr, "enqueue_client: prepare: %s", PQerrorMessage(conn));
		return 1;
	}
	PQclear(res);

	for (long i = 0; i < count; i++)
	{
		char		text[64];
		const char *params[3];
		double		t_call;
		double		t_commit;

		snprintf(text, sizeof(text), "latency %ld", i);
		params[0] = argv[3 + i % ninstances];
		params[1] = "5511999990000";
		params[2] = text;
		t_call = now_ms();
		res = PQexecPrepared(conn, "send", 3, params, NULL, NULL, 0);
		t_commit = now_ms();
		if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		{
			fprintf(stderr, "enqueue_client: send: %s", PQerrorMessage(conn));
			return 1;
		}
		printf("%s\t%.3f\t%.3f\n", PQgetvalue(res, 0, 0), t_call, t_commit);
		PQclear(res);
		if (interval > 0)
			sleep_ms(interval);
	}
	fflush(stdout);
	PQfinish(conn);
	return 0;
}
