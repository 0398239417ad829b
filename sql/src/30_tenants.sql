-------------------------------------------------------------------------------
-- Tenants and keys
-------------------------------------------------------------------------------
CREATE FUNCTION pgwa._hash_key(p_key text) RETURNS bytea
	LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
	RETURN sha256(convert_to(p_key, 'UTF8'));

CREATE FUNCTION pgwa._issue_key(p_tenant uuid, p_role text, p_label text)
RETURNS TABLE (key_id uuid, api_key text)
LANGUAGE plpgsql AS $$
DECLARE
	v_key text := pgwa._random_token();
BEGIN
	INSERT INTO pgwa.api_keys (tenant_id, role, key_hash, key_prefix, label)
	VALUES (p_tenant, p_role, pgwa._hash_key(v_key), left(v_key, 12), p_label)
	RETURNING id INTO key_id;
	api_key := v_key;
	RETURN NEXT;
END $$;

-- An admin key manages tenants. Returned once; only its hash is kept.
CREATE FUNCTION pgwa.create_admin_key(p_label text DEFAULT 'admin') RETURNS text
LANGUAGE sql AS $$ SELECT api_key FROM pgwa._issue_key(NULL, 'admin', p_label) $$;

-- A new tenant and its first API key (shown once).
CREATE FUNCTION pgwa.create_tenant(p_name text)
RETURNS TABLE (tenant_id uuid, api_key text)
LANGUAGE plpgsql AS $$
BEGIN
	IF p_name IS NULL OR length(btrim(p_name)) = 0 OR length(p_name) > 200 THEN
		PERFORM pgwa._raise('PW400', 'name must be a non-empty string of at most 200 characters', 'name');
	END IF;
	INSERT INTO pgwa.tenants (name) VALUES (btrim(p_name)) RETURNING id INTO tenant_id;
	SELECT k.api_key INTO api_key FROM pgwa._issue_key(tenant_id, 'tenant', 'initial') k;
	RETURN NEXT;
END $$;

-- Another key for a tenant (for rotation).
CREATE FUNCTION pgwa.create_api_key(p_tenant uuid, p_label text DEFAULT NULL)
RETURNS TABLE (key_id uuid, api_key text)
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM 1 FROM pgwa.tenants WHERE id = p_tenant;
	IF NOT FOUND THEN
		PERFORM pgwa._raise('PW404', 'tenant not found', 'tenant_id');
	END IF;
	RETURN QUERY SELECT * FROM pgwa._issue_key(p_tenant, 'tenant', p_label);
END $$;

CREATE FUNCTION pgwa.revoke_api_key(p_key_id uuid) RETURNS boolean
LANGUAGE sql AS $$
	WITH r AS (UPDATE pgwa.api_keys SET revoked_at = now()
	           WHERE id = p_key_id AND revoked_at IS NULL RETURNING 1)
	SELECT EXISTS (SELECT 1 FROM r)
$$;

-- The live key matching a presented token, if any.
CREATE FUNCTION pgwa.authenticate(p_key text)
RETURNS TABLE (key_id uuid, tenant_id uuid, role text)
LANGUAGE sql STABLE AS $$
	SELECT k.id, k.tenant_id, k.role FROM pgwa.api_keys k
	WHERE k.key_hash = pgwa._hash_key(p_key) AND k.revoked_at IS NULL
$$;
