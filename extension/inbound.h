/*
 * inbound.h: helpers shared by the inbound normaliser's files.
 *
 * inbound_util.c reads loose JSON, timestamps, phone numbers and JIDs;
 * inbound_content.c turns Baileys message content into pgwa's normalised
 * message; inbound_normalize.c reads the webhook dialects.
 */
#ifndef PGWA_INBOUND_H
#define PGWA_INBOUND_H

#include "postgres.h"

#include "pg_jansson.h"

#include "utils/jsonb.h"

#include "pgwa.h"

#define PGWA_ERRCODE_UNPROCESSABLE	MAKE_SQLSTATE('P','W','4','2','2')

/* Raise a PW error naming a field (COLUMN_NAME). */
#define invalid(field, ...)		pgwa_raise(PGWA_ERRCODE_VALIDATION, field, NULL, __VA_ARGS__)
#define unusable(field, ...)	pgwa_raise(PGWA_ERRCODE_UNPROCESSABLE, field, NULL, __VA_ARGS__)

/* inbound_util.c: loose JSON */
extern json_t *ib_member(json_t *obj, const char *key);
extern json_t *ib_member_obj(json_t *obj, const char *key);
extern const char *ib_member_str(json_t *obj, const char *key);
extern bool ib_number_of(json_t *v, double *out);
extern json_t *ib_json_number(double d);
extern void ib_set_str(json_t *obj, const char *key, const char *s);
extern void ib_copy_str(json_t *out, const char *key, json_t *in, const char *in_key);
extern void ib_copy_num(json_t *out, const char *key, json_t *in, const char *in_key);

/* inbound_util.c: timestamps (milliseconds since 1970, UTC) */
extern bool ib_timestamp_of(json_t *v, int64 *ms);
extern char *ib_iso_of(int64 ms);

/* inbound_util.c: phones and JIDs */
typedef enum jid_kind
{
	JID_NONE,					/* not a JID: maybe a phone number */
	JID_PHONE,					/* digits@s.whatsapp.net (or the old c.us) */
	JID_LID,					/* id@lid: a sender hidden behind a LID */
	JID_GROUP,					/* id@g.us */
	JID_BROADCAST,				/* status@broadcast and broadcast lists */
	JID_NEWSLETTER,				/* channels */
	JID_OTHER
} jid_kind;

/* Who sent a message: a phone number, a LID, or both. */
typedef struct sender
{
	char	   *phone;
	char	   *lid;
} sender;

extern jid_kind ib_parse_jid(const char *s, char **user);
extern char *ib_phone_of(const char *s);
extern bool ib_sender_learn(sender *s, const char *v);

/* inbound_normalize.c: raises as normalize_inbound would; the envelope count */
extern int	pgwa_inbound_check(Jsonb *in, const char *dialect);

/* ingest.c */
extern int64 pgwa_ingest_fast(const char *dialect, Jsonb *headers, Jsonb **body, const char *body_text);

/* inbound_content.c */
extern json_t *ib_unwrap(json_t *content, json_t *seen);
extern json_t *ib_message_of(json_t *content, const char *id);

#endif							/* PGWA_INBOUND_H */
