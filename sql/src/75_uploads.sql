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

-- The URL pgwa-http is reached at from outside (a broker fetching media):
-- pgwa.public_url, else the request's Host and X-Forwarded-Proto. Without
-- either: a 503 naming pgwa.public_url when p_required, else ''.
CREATE FUNCTION pgwa._public_base(p_headers jsonb, p_required boolean DEFAULT true) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
	v_url   text := rtrim(coalesce(current_setting('pgwa.public_url', true), ''), '/');
	v_proto text := lower(btrim(split_part(coalesce(p_headers->>'x-forwarded-proto', ''), ',', 1)));
BEGIN
	IF v_url <> '' THEN
		RETURN v_url;
	END IF;
	IF coalesce(p_headers->>'host', '') !~ '^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$' THEN
		IF p_required THEN
			PERFORM pgwa._raise('PW503', 'inline media need a URL the broker can fetch: set pgwa.public_url',
			                    'pgwa.public_url');
		END IF;
		RETURN '';
	END IF;
	RETURN CASE WHEN v_proto = 'https' THEN 'https' ELSE 'http' END || '://' || (p_headers->>'host');
END $$;

CREATE FUNCTION pgwa._upload_signature(p_id uuid, p_expires bigint) RETURNS text
LANGUAGE sql STABLE AS $$
	SELECT pgwa._hmac_sha256_hex(k.key, p_id::text || '.' || p_expires::text) FROM pgwa.upload_signing_key k
$$;

-- p_base (pgwa._public_base) makes resourceUrl absolute, so that a
-- message's mediaUrl can name it as it is.
CREATE FUNCTION pgwa._upload_json(u pgwa.uploads, p_base text DEFAULT '') RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT jsonb_build_object(
		'uploadId', u.id,
		'resourceUrl', format('%s/uploads/%s?expires=%s&signature=%s', p_base, u.id,
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
	RETURN pgwa._reply(201, pgwa._upload_json(u, pgwa._public_base(p_headers, false)));
END $$;

-- Media sent inline (a data: URI or bare base64, as Z-API clients may send
-- it, seed 001) become uploads whose bytes the database keeps, and the
-- message names their signed URL, which pgwa-http serves from the database
-- like a file. The same bytes for the same tenant give the same upload while
-- it has a day or more to live, so a repeated send (an idempotent retry)
-- names the same URL. Deleted with their upload when it expires.
CREATE TABLE pgwa.upload_blobs (
	upload_id uuid PRIMARY KEY REFERENCES pgwa.uploads (id) ON DELETE CASCADE,
	tenant_id uuid NOT NULL,
	sha256    bytea NOT NULL,
	data      bytea NOT NULL
);
CREATE INDEX upload_blobs_sha ON pgwa.upload_blobs (tenant_id, sha256);

-- The media field of a send as the message should name it: a URL (or
-- anything that is not inline media, left to the normaliser) as it came; a
-- data: URI or bare base64 stored as an upload of p_media_type, named by its
-- absolute signed URL. Errors name p_field. p_file_name names a document.
CREATE FUNCTION pgwa._inline_media(p_tenant uuid, p_headers jsonb, p_value jsonb, p_media_type text,
                                   p_field text, p_file_name text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	v      text := p_value #>> '{}';
	m      text[];
	v_ctype text;
	v_b64  text;
	v_data bytea;
	v_sha  bytea;
	v_ext  text;
	v_name text := left(regexp_replace(coalesce(p_file_name, p_media_type), '[/\\\u0001-\u001f]', '_', 'g'), 200);
	u      pgwa.uploads;
BEGIN
	IF jsonb_typeof(p_value) IS DISTINCT FROM 'string' OR v ~* '^https?://' THEN
		RETURN p_value;
	END IF;
	m := regexp_match(v, '^data:([^;,]*)((;[^;,]*)*),(.*)$', 's');
	IF m IS NOT NULL THEN
		IF m[2] !~* '(^|;)base64$' THEN
			PERFORM pgwa._raise('PW400', format('%s: only base64 data URIs are taken', p_field), p_field);
		END IF;
		v_ctype := lower(btrim(m[1]));
		v_b64 := m[4];
	ELSIF length(v) >= 16 AND v ~ '^[A-Za-z0-9+/=\s]+$' THEN
		v_b64 := v;
	ELSE
		RETURN p_value;
	END IF;
	BEGIN
		v_data := decode(v_b64, 'base64');
	EXCEPTION WHEN others THEN
		PERFORM pgwa._raise('PW400', format('%s is neither a URL nor valid base64', p_field), p_field);
	END;
	IF length(v_data) = 0 THEN
		PERFORM pgwa._raise('PW400', format('%s is empty', p_field), p_field);
	END IF;
	IF length(v_data) > pgwa._upload_limit(p_media_type) THEN
		PERFORM pgwa._raise('PW413', format('%s is larger than the %s limit of %s bytes', p_field, p_media_type,
		                                    pgwa._upload_limit(p_media_type)), p_field);
	END IF;
	v_ext := lower(substring(coalesce(p_file_name, '') FROM '\.([A-Za-z0-9]{1,10})$'));
	IF coalesce(v_ctype, '') !~ '^[a-z0-9.+-]+/[a-z0-9.+-]+$' THEN
		v_ctype := CASE p_media_type WHEN 'image' THEN 'image/jpeg' WHEN 'audio' THEN 'audio/ogg'
		                             WHEN 'video' THEN 'video/mp4'
		           ELSE CASE v_ext WHEN 'pdf' THEN 'application/pdf' WHEN 'txt' THEN 'text/plain'
		                           WHEN 'csv' THEN 'text/csv' WHEN 'zip' THEN 'application/zip'
		                           WHEN 'doc' THEN 'application/msword'
		                           WHEN 'docx' THEN 'application/vnd.openxmlformats-officedocument.wordprocessingml.document'
		                           WHEN 'xls' THEN 'application/vnd.ms-excel'
		                           WHEN 'xlsx' THEN 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet'
		                           ELSE 'application/octet-stream' END END;
	END IF;
	v_sha := sha256(v_data);
	SELECT x.* INTO u FROM pgwa.upload_blobs b JOIN pgwa.uploads x ON x.id = b.upload_id
	WHERE b.tenant_id = p_tenant AND b.sha256 = v_sha AND x.ended_at IS NULL
	  AND x.expires_at > now() + interval '1 day' AND x.content_type = v_ctype AND x.media_type = p_media_type
	  AND x.file_name = v_name
	LIMIT 1;
	IF u.id IS NULL THEN
		-- no file on the front's disk: nothing for its sweep to remove
		INSERT INTO pgwa.uploads (tenant_id, file_name, content_type, media_type, size, expires_at, file_removed)
		VALUES (p_tenant, v_name, v_ctype, p_media_type, length(v_data), date_trunc('second', now()) + interval '7 days', true)
		RETURNING * INTO u;
		INSERT INTO pgwa.upload_blobs (upload_id, tenant_id, sha256, data) VALUES (u.id, p_tenant, v_sha, v_data);
		PERFORM pgwa._audit(p_tenant, NULL, 'upload.created',
		                    jsonb_build_object('uploadId', u.id, 'fileName', u.file_name, 'size', u.size,
		                                       'mediaType', u.media_type, 'inline', true));
	END IF;
	RETURN pgwa._upload_json(u, pgwa._public_base(p_headers))->'resourceUrl';
END $$;

-- GET /uploads/{id}?expires=&signature=: no key, the signature is the
-- credential. Answers 200 with the internal X-Pgwa-File header, from which
-- pgwa-http serves the file, or for inline media the bytes in base64 with
-- X-Pgwa-Body-Encoding; 403 for a wrong signature, 404 once expired.
CREATE FUNCTION pgwa._http_upload_file(p_id text, p_query jsonb) RETURNS pgwa.http_response
LANGUAGE plpgsql STABLE AS $$
DECLARE
	u         pgwa.uploads;
	v_expires bigint;
	v_inline  text;
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
	-- inline media: the bytes themselves, in base64, which pgwa-http decodes
	SELECT encode(b.data, 'base64') INTO v_inline FROM pgwa.upload_blobs b WHERE b.upload_id = u.id;
	IF v_inline IS NOT NULL THEN
		RETURN ROW(200, jsonb_build_object('Content-Type', u.content_type,
			'Content-Disposition', format('inline; filename="%s"', translate(u.file_name, '"', '_')),
			'Cache-Control', 'private, max-age=60', 'X-Content-Type-Options', 'nosniff',
			'X-Pgwa-Body-Encoding', 'base64'), v_inline)::pgwa.http_response;
	END IF;
	RETURN pgwa._reply(200, '{}', jsonb_build_object('X-Pgwa-File', jsonb_build_object(
		'id', u.id, 'contentType', u.content_type, 'fileName', u.file_name, 'size', u.size)::text));
END $$;

-- Ends the uploads past their expiry (pg_cron: pgwa.schedule_maintenance);
-- pgwa-http deletes their files. Returns how many ended.
CREATE FUNCTION pgwa.expire_uploads() RETURNS bigint
LANGUAGE sql AS $$
	WITH e AS (UPDATE pgwa.uploads SET ended_at = now() WHERE ended_at IS NULL AND expires_at <= now() RETURNING id),
	     b AS (DELETE FROM pgwa.upload_blobs WHERE upload_id IN (SELECT id FROM e))
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
