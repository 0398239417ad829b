/*
 * http_load.c: an open-loop load over HTTP, for the benchmarks' latency at
 * a fixed rate.
 *
 *   http_load ingest URL API_KEY RATE SECONDS CONNECTIONS
 *   http_load send BASE_URL API_KEY RATE SECONDS CONNECTIONS IDS_FILE
 *
 * Sends RATE requests per second for SECONDS, each at its scheduled time
 * whatever the answers before it (open loop: a slow answer does not slow
 * the load, so it cannot hide itself), over at most CONNECTIONS kept-alive
 * connections; a request whose time has come while all of them are busy
 * waits, and that wait counts in its latency, which runs from its scheduled
 * time to its answer. ingest posts the ingest benchmark's mix of seed-000
 * envelopes to URL: 20% redeliveries of seed-1..5000, 40% new messages from
 * 1,000 known contacts, 40% from new contacts. send posts a text message to
 * BASE_URL/v1/instances/{id}/messages, {id} at random among the instance
 * ids of IDS_FILE (one per line), as the enqueue benchmark does. Prints one
 * line:
 *   sent N ok N bad N rate R p50 X p99 Y max Z   (latencies in ms)
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

typedef struct
{
	CURL	   *easy;
	double		scheduled;		/* ms, CLOCK_MONOTONIC */
	char		body[512];
	char		url[512];
} request;

#define MAX_IDS 10000

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec * 1000.0 + (double) ts.tv_nsec / 1e6;
}

static size_t
discard(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	(void) ptr;
	(void) userdata;
	return size * nmemb;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return (x > y) - (x < y);
}

/* One envelope of the mix, numbered n. */
static void
make_body(char *buf, size_t len, long n, unsigned *seed)
{
	int			r = rand_r(seed) % 100;
	char		id[64];
	long long	phone;

	if (r < 20)
	{
		int			d = 1 + rand_r(seed) % 5000;

		snprintf(id, sizeof(id), "seed-%d", d);
		phone = 5511900000000LL + d % 1000;
	}
	else
	{
		snprintf(id, sizeof(id), "load-%ld-%d", n, rand_r(seed));
		phone = r < 60 ? 5511900000000LL + rand_r(seed) % 1000
			: 5512000000000LL + 1 + rand_r(seed) % 999999999;
	}
	snprintf(buf, len,
			 "{\"id\":\"%s\",\"type\":\"MESSAGE_INBOUND\",\"instanceId\":\"in-1\",\"timestamp\":1714655100,"
			 "\"payload\":{\"contact\":{\"phone\":\"%lld\",\"name\":\"Bench\",\"pushName\":\"bench\"},"
			 "\"message\":{\"conversation\":\"Oi! Quero saber do meu pedido\"},\"metadata\":{\"broker\":\"baileys\"}}}",
			 id, phone);
}

int
main(int argc, char **argv)
{
	const char *url;
	double		rate,
				seconds,
				start,
				*lat;
	int			conns,
				running = 0,
				free_n;
	long		total,
				sent = 0,
				done = 0,
				ok = 0,
				bad = 0;
	request    *reqs,
			  **free_list;
	struct curl_slist *headers = NULL;
	char		key_header[256];
	CURLM	   *multi;
	unsigned	seed = (unsigned) time(NULL);
	bool		send_mode;
	char	  **ids = NULL;
	int			nids = 0;

	if (argc < 7 || (strcmp(argv[1], "ingest") != 0 && strcmp(argv[1], "send") != 0) ||
		(strcmp(argv[1], "send") == 0) != (argc == 8))
	{
		fprintf(stderr, "usage: %s ingest URL API_KEY RATE SECONDS CONNECTIONS\n"
				"       %s send BASE_URL API_KEY RATE SECONDS CONNECTIONS IDS_FILE\n", argv[0], argv[0]);
		return 2;
	}
	send_mode = strcmp(argv[1], "send") == 0;
	url = argv[2];
	rate = atof(argv[4]);
	seconds = atof(argv[5]);
	conns = atoi(argv[6]);
	if (send_mode)
	{
		FILE	   *f = fopen(argv[7], "r");
		char		line[128];

		if (f == NULL)
		{
			fprintf(stderr, "http_load: cannot read %s\n", argv[7]);
			return 2;
		}
		ids = calloc(MAX_IDS, sizeof(char *));
		while (ids != NULL && nids < MAX_IDS && fgets(line, sizeof(line), f) != NULL)
		{
			line[strcspn(line, "\r\n")] = '\0';
			if (line[0] != '\0')
				ids[nids++] = strdup(line);
		}
		fclose(f);
		if (nids == 0)
		{
			fprintf(stderr, "http_load: no instance id in %s\n", argv[7]);
			return 2;
		}
	}
	if (rate <= 0 || seconds <= 0 || conns <= 0)
	{
		fprintf(stderr, "http_load: RATE, SECONDS and CONNECTIONS must be positive\n");
		return 2;
	}
	total = (long) (rate * seconds);
	lat = calloc(total, sizeof(double));
	reqs = calloc(conns, sizeof(request));
	free_list = calloc(conns, sizeof(request *));
	if (lat == NULL || reqs == NULL || free_list == NULL)
		return 1;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	snprintf(key_header, sizeof(key_header), "X-API-Key: %s", argv[3]);
	headers = curl_slist_append(headers, "Content-Type: application/json");
	headers = curl_slist_append(headers, key_header);
	headers = curl_slist_append(headers, "Expect:");
	multi = curl_multi_init();
	curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long) conns);
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long) conns);
	for (int i = 0; i < conns; i++)
	{
		CURL	   *e = curl_easy_init();

		reqs[i].easy = e;
		curl_easy_setopt(e, CURLOPT_URL, url);
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
		curl_easy_setopt(e, CURLOPT_PRIVATE, &reqs[i]);
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 30000L);
		free_list[i] = &reqs[i];
	}
	free_n = conns;

	start = now_ms();
	while (done < total)
	{
		double		now = now_ms();
		int			msgs;
		CURLMsg    *m;

		/* every request whose time has come, as far as connections allow */
		while (sent < total && free_n > 0 && start + sent * 1000.0 / rate <= now)
		{
			request    *r = free_list[--free_n];

			r->scheduled = start + sent * 1000.0 / rate;
			if (send_mode)
			{
				snprintf(r->url, sizeof(r->url), "%s/v1/instances/%s/messages", url, ids[rand_r(&seed) % nids]);
				snprintf(r->body, sizeof(r->body), "{\"to\":\"5511999990000\",\"text\":\"bench %ld\"}", sent);
				curl_easy_setopt(r->easy, CURLOPT_URL, r->url);
			}
			else
				make_body(r->body, sizeof(r->body), sent, &seed);
			curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body);
			curl_multi_add_handle(multi, r->easy);
			sent++;
		}
		curl_multi_perform(multi, &running);
		while ((m = curl_multi_info_read(multi, &msgs)) != NULL)
		{
			request    *r;
			long		code = 0;

			if (m->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **) &r);
			curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &code);
			if (m->data.result == CURLE_OK && code >= 200 && code < 300)
				ok++;
			else
				bad++;
			lat[done++] = now_ms() - r->scheduled;
			curl_multi_remove_handle(multi, m->easy_handle);
			free_list[free_n++] = r;
		}
		/* wait for an answer, or until the next request is due */
		{
			double		next = sent < total ? start + sent * 1000.0 / rate - now_ms() : 50;
			int			wait = next <= 0 ? 0 : next >= 50 ? 50 : (int) next + 1;

			if (free_n == 0 || wait > 0)
				curl_multi_poll(multi, NULL, 0, free_n == 0 ? 50 : wait, NULL);
		}
	}
	{
		double		elapsed = (now_ms() - start) / 1000.0;

		qsort(lat, done, sizeof(double), cmp_double);
		printf("sent %ld ok %ld bad %ld rate %.0f p50 %.2f p99 %.2f max %.2f\n",
			   sent, ok, bad, done / elapsed, lat[done / 2], lat[(long) (done * 0.99)], lat[done - 1]);
	}
	for (int i = 0; i < conns; i++)
		curl_easy_cleanup(reqs[i].easy);
	curl_multi_cleanup(multi);
	curl_slist_free_all(headers);
	curl_global_cleanup();
	return 0;
}
