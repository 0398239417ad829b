-------------------------------------------------------------------------------
-- Uploads (seed 000, "Upload API Sketch"): POST /api/whatsapp/uploads takes a
-- multipart file, which pgwa-http stores on its disk (http_front/uploads.c);
-- the database keeps what is known of it, decides the limits and signs the
-- expiring URL the front serves it under, GET /uploads/{id}?expires=&signature=
-- (a message's mediaUrl can point there). pgwa.expire_uploads(), run by
-- pg_cron, ends expired uploads; pgwa-http deletes their files when it next
-- sweeps (POST /uploads/sweep, every PGWA_HTTP_UPLOAD_SWEEP seconds).
-------------------------------------------------------------------------------

CREATE TABLE pgwa.uploads (
	tenant_id    uuid NOT NULL REFERENCES pgwa.tenants (id) ON DELETE CASCADE,
	id           uuid NOT NULL DEFAULT gen_random_uuid(),
	file_name    text NOT NULL,
	content_type text NOT NULL,
	media_type   text NOT NULL CHECK (media_type IN ('image', 'video', 'audio', 'document')),
	size         bigint NOT NULL CHECK (size >= 0),
	created_at   timestamptz NOT NULL DEFAULT now(),
	expires_at   timestamptz NOT NULL,
	ended_at     timestamptz,       -- expired (no longer served)
	file_removed boolean NOT NULL DEFAULT false,
	PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX uploads_id ON pgwa.uploads (id);
CREATE INDEX uploads_expiring ON pgwa.uploads (expires_at) WHERE ended_at IS NULL;
CREATE INDEX uploads_to_remove ON pgwa.uploads (ended_at) WHERE ended_at IS NOT NULL AND NOT file_removed;

-- The key that signs upload URLs, made at install; never leaves the database.
CREATE TABLE pgwa.upload_signing_key (
	id  int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
	key text NOT NULL
);
INSERT INTO pgwa.upload_signing_key (key)
VALUES (encode(sha256((gen_random_uuid()::text || gen_random_uuid()::text || clock_timestamp()::text)::bytea), 'hex'));

-- What WhatsApp takes of each kind of media, in bytes.
CREATE FUNCTION pgwa._upload_limit(p_media_type text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE p_media_type WHEN 'image' THEN 5 * 1048576 WHEN 'audio' THEN 16 * 1048576
                         WHEN 'video' THEN 16 * 1048576 ELSE 100 * 1048576 END;

CREATE FUNCTION pgwa._upload_signature(p_id uuid, p_expires bigint) RETURNS text
LANGUAGE sql STABLE AS $$
	SELECT pgwa._hmac_sha256_hex(k.key, p_id::text || '.' || p_expires::text) FROM pgwa.upload_signing_key k
$$;

CREATE FUNCTION pgwa._upload_json(u pgwa.uploads) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT jsonb_build_object(
		'uploadId', u.id,
		'resourceUrl', format('/uploads/%s?expires=%s&signature=%s', u.id,
		                      extract(epoch FROM u.expires_at)::bigint,
		                      pgwa._upload_signature(u.id, extract(epoch FROM u.expires_at)::bigint)),
		'expiresAt', pgwa._iso(u.expires_at), 'mediaType', u.media_type, 'size', u.size,
		'fileName', u.file_name, 'contentType', u.content_type)
$$;

-- POST /api/whatsapp/uploads, as pgwa-http calls it once it holds the file:
-- the body is what it read of it {"fileName","contentType","size"}, the
-- query may say expiresIn (seconds, 60 to 7 days; 1 day by default). 413
-- past the media type's limit.
CREATE FUNCTION pgwa._http_upload(p_headers jsonb, p_query jsonb, p_body text) RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	v_tenant uuid := pgwa._require_tenant(p_headers);
	b        jsonb := pgwa._json_body(p_body);
	v_ctype  text := lower(coalesce(nullif(b->>'contentType', ''), 'application/octet-stream'));
	v_media  text := CASE split_part(v_ctype, '/', 1) WHEN 'image' THEN 'image' WHEN 'video' THEN 'video'
	                                                  WHEN 'audio' THEN 'audio' ELSE 'document' END;
	v_size   bigint := (b->>'size')::bigint;
	v_ttl    int := pgwa._query_int(p_query, 'expiresIn', 86400);
	v_name   text := left(regexp_replace(coalesce(nullif(b->>'fileName', ''), 'file'), '[/\\\u0001-\u001f]', '_', 'g'), 200);
	u        pgwa.uploads;
BEGIN
	IF v_size IS NULL THEN
		PERFORM pgwa._raise('PW400', 'a multipart/form-data body with a part named file is required', 'file');
	END IF;
	IF v_size = 0 THEN
		PERFORM pgwa._raise('PW400', 'file is empty', 'file');
	END IF;
	IF v_size > pgwa._upload_limit(v_media) THEN
		PERFORM pgwa._raise('PW413', format('file is larger than the %s limit of %s bytes', v_media,
		                                    pgwa._upload_limit(v_media)), 'file');
	END IF;
	IF v_ttl NOT BETWEEN 60 AND 7 * 86400 THEN
		PERFORM pgwa._raise('PW400', 'expiresIn must be between 60 and 604800 seconds', 'expiresIn');
	END IF;
	INSERT INTO pgwa.uploads (tenant_id, file_name, content_type, media_type, size, expires_at)
	VALUES (v_tenant, v_name, v_ctype, v_media, v_size, date_trunc('second', now()) + make_interval(secs => v_ttl))
	RETURNING * INTO u;
	PERFORM pgwa._audit(v_tenant, NULL, 'upload.created',
	                    jsonb_build_object('uploadId', u.id, 'fileName', u.file_name, 'size', u.size,
	                                       'mediaType', u.media_type));
	RETURN pgwa._reply(201, pgwa._upload_json(u));
END $$;

-- GET /uploads/{id}?expires=&signature=: no key, the signature is the
-- credential. Answers 200 with the internal X-Pgwa-File header, from which
-- pgwa-http serves the file; 403 for a wrong signature, 404 once expired.
CREATE FUNCTION pgwa._http_upload_file(p_id text, p_query jsonb) RETURNS pgwa.http_response
LANGUAGE plpgsql STABLE AS $$
DECLARE
	u         pgwa.uploads;
	v_expires bigint;
BEGIN
	BEGIN
		v_expires := (p_query->>'expires')::bigint;
	EXCEPTION WHEN others THEN
		v_expires := NULL;
	END;
	SELECT * INTO u FROM pgwa.uploads WHERE id = pgwa._uuid_or_null(p_id);
	IF u.id IS NULL OR v_expires IS NULL OR p_query->>'signature' IS NULL
	   OR p_query->>'signature' <> pgwa._upload_signature(u.id, v_expires) THEN
		PERFORM pgwa._raise('PW403', 'the upload URL is not valid', 'signature');
	END IF;
	IF u.ended_at IS NOT NULL OR u.expires_at <= now() OR to_timestamp(v_expires) <= now() THEN
		PERFORM pgwa._raise('PW404', 'the upload has expired', 'uploadId');
	END IF;
	RETURN pgwa._reply(200, '{}', jsonb_build_object('X-Pgwa-File', jsonb_build_object(
		'id', u.id, 'contentType', u.content_type, 'fileName', u.file_name, 'size', u.size)::text));
END $$;

-- Ends the uploads past their expiry (pg_cron: pgwa.schedule_maintenance);
-- pgwa-http deletes their files. Returns how many ended.
CREATE FUNCTION pgwa.expire_uploads() RETURNS bigint
LANGUAGE sql AS $$
	WITH e AS (UPDATE pgwa.uploads SET ended_at = now() WHERE ended_at IS NULL AND expires_at <= now() RETURNING 1)
	SELECT count(*) FROM e
$$;

-- POST /uploads/sweep: the files pgwa-http may delete now (ended uploads),
-- marked removed as they are handed out: {"remove": [ids]}. Only for the
-- front's own timer: a request that came from an HTTP client carries the
-- x-pgwa-client-addr header the front sets, and finds no such route.
CREATE FUNCTION pgwa._http_upload_sweep(p_headers jsonb) RETURNS pgwa.http_response
LANGUAGE plpgsql AS $$
DECLARE
	v jsonb;
BEGIN
	IF p_headers ? 'x-pgwa-client-addr' THEN
		RETURN NULL;
	END IF;
	WITH r AS (
		UPDATE pgwa.uploads x SET file_removed = true
		WHERE (x.tenant_id, x.id) IN (SELECT y.tenant_id, y.id FROM pgwa.uploads y
		                              WHERE y.ended_at IS NOT NULL AND NOT y.file_removed LIMIT 1000)
		RETURNING x.id)
	SELECT coalesce(jsonb_agg(r.id), '[]') INTO v FROM r;
	RETURN pgwa._reply(200, jsonb_build_object('remove', v));
END $$;
