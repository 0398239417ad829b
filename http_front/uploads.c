/*
 * uploads.c
 *		The files of uploads (seed 000, "Upload API Sketch"). The database
 *		decides (who, which limits, until when, the signed URL:
 *		sql/src/75_uploads.sql); this file holds the bytes, one file per
 *		upload named by its id in PGWA_HTTP_UPLOAD_DIR, written to a
 *		temporary name first so that a file only appears once the database
 *		has accepted it.
 */
#define _GNU_SOURCE				/* memmem */
#include "uploads.h"

#include <jansson.h>

#include "db.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>


static char upload_dir[PATH_MAX - 64] = "pgwa-uploads";	/* room for "/<id>" */

void
uploads_init(const char *dir)
{
	if (dir != NULL && dir[0] != '\0')
		snprintf(upload_dir, sizeof(upload_dir), "%s", dir);
	mkdir(upload_dir, 0700);
}

bool
uploads_is_post(const char *method, const char *path)
{
	return strcmp(method, "POST") == 0 && strcmp(path, "/api/whatsapp/uploads") == 0;
}

bool
uploads_is_get(const char *method, const char *path)
{
	return (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) &&
		strncmp(path, "/uploads/", 9) == 0 && strchr(path + 9, '/') == NULL;
}

/* An upload id as the database makes them: a UUID, nothing a path could abuse. */
static bool
is_uuid(const char *s)
{
	if (strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++)
		if (i == 8 || i == 13 || i == 18 || i == 23 ? s[i] != '-' : strchr("0123456789abcdef", s[i]) == NULL)
			return false;
	return true;
}

/* The value of parameter `name` in a header value (quoted or not) into out. */
static bool
header_param(const char *value, size_t vlen, const char *name, char *out, size_t out_size)
{
	size_t		nlen = strlen(name);

	for (size_t i = 0; i + nlen + 1 <= vlen; i++)
	{
		size_t		o = 0;
		const char *p;
		const char *end = value + vlen;

		if (strncasecmp(value + i, name, nlen) != 0 || value[i + nlen] != '=' ||
			(i > 0 && value[i - 1] != ' ' && value[i - 1] != ';' && value[i - 1] != '\t'))
			continue;
		p = value + i + nlen + 1;
		if (p < end && *p == '"')
			for (p++; p < end && *p != '"' && o + 1 < out_size; p++)
				out[o++] = *p;
		else
			for (; p < end && *p != ';' && *p != ' ' && *p != '\r' && o + 1 < out_size; p++)
				out[o++] = *p;
		out[o] = '\0';
		return o > 0;
	}
	return false;
}

bool
uploads_parse(const char *content_type, const char *body, size_t len, struct upload_part *out)
{
	char		boundary[128];
	char		delim[140];
	size_t		dlen;
	const char *p;
	const char *end = body + len;

	if (content_type == NULL || strncasecmp(content_type, "multipart/form-data", 19) != 0 ||
		!header_param(content_type, strlen(content_type), "boundary", boundary, sizeof(boundary)))
		return false;
	dlen = (size_t) snprintf(delim, sizeof(delim), "--%s", boundary);
	p = body == NULL ? NULL : memmem(body, len, delim, dlen);
	while (p != NULL)
	{
		const char *headers = p + dlen;
		const char *data;
		const char *next;
		char		name[64] = "";

		if (headers + 2 > end || strncmp(headers, "--", 2) == 0)
			return false;		/* the closing delimiter: no file part */
		headers += 2;			/* CRLF */
		data = memmem(headers, (size_t) (end - headers), "\r\n\r\n", 4);
		if (data == NULL)
			return false;
		data += 4;
		next = memmem(data, (size_t) (end - data), delim, dlen);
		if (next == NULL || next - data < 2)
			return false;
		memset(out, 0, sizeof(*out));
		/* the part's headers, one line at a time */
		for (const char *line = headers; line < data - 2;)
		{
			const char *eol = memmem(line, (size_t) (data - 2 - line), "\r\n", 2);
			size_t		llen = eol ? (size_t) (eol - line) : (size_t) (data - 2 - line);

			if (llen > 20 && strncasecmp(line, "Content-Disposition:", 20) == 0)
			{
				header_param(line, llen, "name", name, sizeof(name));
				header_param(line, llen, "filename", out->file_name, sizeof(out->file_name));
			}
			else if (llen > 13 && strncasecmp(line, "Content-Type:", 13) == 0)
			{
				const char *v = line + 13;
				size_t		o = 0;

				while (v < line + llen && *v == ' ')
					v++;
				while (v < line + llen && o + 1 < sizeof(out->content_type))
					out->content_type[o++] = *v++;
				out->content_type[o] = '\0';
			}
			line = eol ? eol + 2 : data;
		}
		if (strcmp(name, "file") == 0)
		{
			out->data = data;
			out->len = (size_t) (next - 2 - data);	/* the CRLF before the delimiter */
			return true;
		}
		p = next;
	}
	return false;
}

bool
uploads_store(const struct upload_part *part, const char *request_id, char *tmp, size_t tmp_size)
{
	int			fd;
	size_t		done = 0;

	snprintf(tmp, tmp_size, "%s/.tmp-%s", upload_dir, request_id);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return false;
	while (done < part->len)
	{
		ssize_t		n = write(fd, part->data + done, part->len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
		{
			close(fd);
			unlink(tmp);
			return false;
		}
		done += (size_t) n;
	}
	if (fsync(fd) != 0 || close(fd) != 0)
	{
		unlink(tmp);
		return false;
	}
	return true;
}

bool
uploads_commit(const char *tmp, const char *id)
{
	char		path[PATH_MAX];

	if (!is_uuid(id))
	{
		unlink(tmp);
		return false;
	}
	snprintf(path, sizeof(path), "%s/%s", upload_dir, id);
	if (rename(tmp, path) != 0)
	{
		unlink(tmp);
		return false;
	}
	return true;
}

void
uploads_remove(const char *id)
{
	char		path[PATH_MAX];

	if (!is_uuid(id))
		return;
	snprintf(path, sizeof(path), "%s/%s", upload_dir, id);
	unlink(path);
}

int
uploads_open(const char *id, size_t *size)
{
	char		path[PATH_MAX];
	struct stat st;
	int			fd;

	if (!is_uuid(id))
		return -1;
	snprintf(path, sizeof(path), "%s/%s", upload_dir, id);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) != 0)
	{
		close(fd);
		return -1;
	}
	*size = (size_t) st.st_size;
	return fd;
}

/*
 * Deletes the files of ended uploads: the database hands them out (POST
 * /uploads/sweep, a route only callers other than HTTP clients reach) and
 * marks them removed. Called by the main thread every
 * PGWA_HTTP_UPLOAD_SWEEP seconds, on a database session of its own.
 */
void
uploads_sweep(void)
{
	struct db_call call = {.method = "POST",.path = "/uploads/sweep",.query = "{}",
	.headers = "{\"x-request-id\": \"upload-sweep\"}",.body = NULL};
	struct db_reply reply;
	json_t	   *body;
	json_t	   *v;
	size_t		i;

	if (db_call_http(&call, &reply) != DB_OK)
		return;
	body = reply.status == 200 ? json_loads(reply.body, 0, NULL) : NULL;
	json_array_foreach(json_object_get(body, "remove"), i, v)
		if (json_is_string(v))
		uploads_remove(json_string_value(v));
	json_decref(body);
	free(reply.body);
	free(reply.headers);
}
