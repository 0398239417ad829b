/*
 * uploads.h
 *		The files of POST /api/whatsapp/uploads: read from the multipart body,
 *		kept in PGWA_HTTP_UPLOAD_DIR, served by GET /uploads/{id}.
 */
#ifndef PGWA_HTTP_UPLOADS_H
#define PGWA_HTTP_UPLOADS_H

#include <stdbool.h>
#include <stddef.h>

struct upload_part
{
	char		file_name[256];
	char		content_type[128];
	const char *data;
	size_t		len;
};

extern void uploads_init(const char *dir);
extern bool uploads_is_post(const char *method, const char *path);
extern bool uploads_is_get(const char *method, const char *path);

/* The part named "file" of a multipart/form-data body. */
extern bool uploads_parse(const char *content_type, const char *body, size_t len, struct upload_part *out);

/* Writes the part to a temporary file; its path goes to tmp (size PATH_MAX). */
extern bool uploads_store(const struct upload_part *part, const char *request_id, char *tmp, size_t tmp_size);
/* Gives the temporary file the upload's id; false (and no file) otherwise. */
extern bool uploads_commit(const char *tmp, const char *id);
extern void uploads_remove(const char *id);
/* The upload's file, open for reading (-1 when gone); its size in *size. */
extern int	uploads_open(const char *id, size_t *size);
/* Deletes the files of ended uploads the database names. */
extern void uploads_sweep(void);

#endif
