/*
 * tokens.c: API key generation from the strong random source.
 */
#include "postgres.h"

#include "fmgr.h"
#include "port.h"
#include "utils/builtins.h"

#define TOKEN_RANDOM_BYTES 20

PG_FUNCTION_INFO_V1(pgwa_random_token);

Datum
pgwa_random_token(PG_FUNCTION_ARGS)
{
	static const char hex[] = "0123456789abcdef";
	uint8		bytes[TOKEN_RANDOM_BYTES];
	char		token[5 + TOKEN_RANDOM_BYTES * 2 + 1] = "pgwa_";

	if (!pg_strong_random(bytes, sizeof(bytes)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes for an API key")));
	for (int i = 0; i < TOKEN_RANDOM_BYTES; i++)
	{
		token[5 + 2 * i] = hex[bytes[i] >> 4];
		token[5 + 2 * i + 1] = hex[bytes[i] & 0x0f];
	}
	token[sizeof(token) - 1] = '\0';
	PG_RETURN_TEXT_P(cstring_to_text(token));
}
