/*
 * crypto.c: SHA-256 (API keys, webhook secrets, idempotency hashes) and
 * HMAC-SHA256 for signing client webhooks.
 *
 * Deliveries are signed when they are claimed, in SQL, so that a
 * subscription's secret never leaves the database for the dispatcher.
 */
#include "postgres.h"

#include "common/cryptohash.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "pgwa.h"

PG_FUNCTION_INFO_V1(pgwa_hmac_sha256_hex);

/* The SHA-256 of len bytes, as a bytea. */
bytea *
pgwa_sha256(const char *s, size_t len)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	bytea	   *out = palloc(VARHDRSZ + PG_SHA256_DIGEST_LENGTH);

	if (ctx == NULL || pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) s, len) < 0 ||
		pg_cryptohash_final(ctx, (uint8 *) VARDATA(out), PG_SHA256_DIGEST_LENGTH) < 0)
		elog(ERROR, "pgwa: could not compute SHA-256: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
	SET_VARSIZE(out, VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
	return out;
}

/* pgwa._hmac_sha256_hex(key, data): the hex HMAC-SHA256 of data keyed by key. */
Datum
pgwa_hmac_sha256_hex(PG_FUNCTION_ARGS)
{
	static const char hex[] = "0123456789abcdef";
	text	   *key = PG_GETARG_TEXT_PP(0);
	text	   *data = PG_GETARG_TEXT_PP(1);
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char		out[PG_SHA256_DIGEST_LENGTH * 2 + 1];
	pg_hmac_ctx *ctx;

	ctx = pg_hmac_create(PG_SHA256);
	if (ctx == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	if (pg_hmac_init(ctx, (uint8 *) VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key)) < 0 ||
		pg_hmac_update(ctx, (uint8 *) VARDATA_ANY(data), VARSIZE_ANY_EXHDR(data)) < 0 ||
		pg_hmac_final(ctx, digest, sizeof(digest)) < 0)
	{
		const char *msg = pg_hmac_error(ctx);

		pg_hmac_free(ctx);
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR),
						errmsg("could not compute HMAC-SHA256: %s", msg)));
	}
	pg_hmac_free(ctx);
	for (int i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
	{
		out[2 * i] = hex[digest[i] >> 4];
		out[2 * i + 1] = hex[digest[i] & 0x0f];
	}
	out[sizeof(out) - 1] = '\0';
	PG_RETURN_TEXT_P(cstring_to_text(out));
}
