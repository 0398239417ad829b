/*
 * inbound_coexistence.c: the Cloud API coexistence fields (seed 002) read
 * into flat lists that the history pipeline applies set-based
 * (sql/src/64_history_sync.sql).
 *
 *   history             {"chunks": [{"phase", "chunkOrder", "progress",
 *                        "threads", "messages": [...]} or {"errors": [...]}],
 *                        "media": [...] (messages[] sent later with media ids)}
 *   smb_app_state_sync  {"contacts": [{"action", "phone", "name", "at"}]}
 *   smb_message_echoes  {"echoes": [{"id", "to", "at", "type", "content"}]}
 *
 * A history message is {"id", "phone" (the thread's contact, E.164 digits),
 * "fromMe", "status", "at", "type", "content"}; it is the business's own when
 * history_context says so or when it comes from the business's number. Bad
 * input is refused here, naming the field, so that a webhook that cannot be
 * applied is answered 422 and changes nothing: phase 0 to 2, chunk_order a
 * whole number from 0, progress 0 to 100.
 */
#include "postgres.h"

#include "inbound_dialects.h"
#include "utils/formatting.h"

/* A whole number in [lo, hi], given as a number or a string of digits. */
static int
bounded_int(json_t *obj, const char *key, const char *prefix, int lo, int hi, bool required)
{
	json_t	   *v = json_object_get(obj, key);
	char	   *field = inb_path(prefix, key);
	double		d;

	if (v == NULL || json_is_null(v))
	{
		if (required)
			inb_invalid(field, "%s is required", field);
		return -1;
	}
	if (json_is_integer(v))
		d = (double) json_integer_value(v);
	else if (json_is_real(v))
		d = json_real_value(v);
	else if (json_is_string(v))
	{
		const char *s = json_string_value(v);
		char	   *end;

		d = strtod(s, &end);
		if (end == s || *end != '\0')
			inb_invalid(field, "%s must be a whole number", field);
	}
	else
		inb_invalid(field, "%s must be a whole number", field);
	if (d != (double) (int64) d)
		inb_invalid(field, "%s must be a whole number", field);
	if (d < lo || d > hi)
		inb_invalid(field, "%s must be between %d and %d", field, lo, hi);
	return (int) d;
}

/* E.164 digits of a phone or wa_id (8 to 15), NULL when it is none. */
static char *
phone_of(const char *s)
{
	char	   *p = s == NULL ? NULL : inb_phone(s);
	size_t		n = p == NULL ? 0 : strlen(p);

	return n >= 8 && n <= 15 ? p : NULL;
}

/* The E.164 digits of obj's required member key, or an error naming it. */
static char *
req_phone(json_t *obj, const char *key, const char *path, const char *hint)
{
	char	   *phone = phone_of(inb_req_str(obj, key, path));

	if (phone == NULL)
	{
		char	   *f = inb_path(path, key);

		inb_invalid(f, "%s must be a phone number%s", f, hint);
	}
	return phone;
}

static json_t *
history_message(json_t *m, const char *contact, const char *business, const char *path)
{
	json_t	   *out = json_object();
	json_t	   *hc;
	const char *id,
			   *type,
			   *from,
			   *status = NULL;
	char	   *from_phone;
	bool		from_me = false;
	int64		ms;

	if (!json_is_object(m))
		inb_invalid(path, "%s must be an object", path);
	id = inb_req_str(m, "id", path);
	type = inb_req_str(m, "type", path);
	from = inb_str(m, "from", path);
	hc = inb_obj(m, "history_context", path);
	if (hc != NULL)
	{
		json_t	   *fm = json_object_get(hc, "from_me");

		status = inb_str(hc, "status", inb_path(path, "history_context"));
		from_me = json_is_true(fm);
	}
	from_phone = phone_of(from);
	if (!from_me && from_phone != NULL && business != NULL && strcmp(from_phone, business) == 0)
		from_me = true;

	json_object_set_new(out, "id", json_string(id));
	json_object_set_new(out, "phone", json_string(contact));
	json_object_set_new(out, "fromMe", json_boolean(from_me));
	inb_set_str(out, "status", status ? asc_tolower(status, strlen(status)) : NULL);
	if (inb_epoch_ms(json_object_get(m, "timestamp"), inb_path(path, "timestamp"), &ms))
		json_object_set_new(out, "at", json_string(inb_iso(ms)));
	json_object_set_new(out, "type", json_string(type));
	json_object_set_new(out, "content", pgwa_meta_content(m, type, path));
	return out;
}

static json_t *
history_chunk(json_t *h, const char *business, const char *path)
{
	json_t	   *out = json_object();
	json_t	   *meta = inb_obj(h, "metadata", path);
	json_t	   *errors = inb_arr(h, "errors", path);
	json_t	   *threads = inb_arr(h, "threads", path);
	json_t	   *messages = json_array();
	char	   *meta_path = inb_path(path, "metadata");
	json_t	   *t;
	size_t		i;

	if (errors != NULL && json_array_size(errors) > 0)
		json_object_set(out, "errors", errors);
	else if (meta == NULL)
		inb_invalid(meta_path, "%s is required", meta_path);
	if (meta != NULL)
	{
		int			phase = bounded_int(meta, "phase", meta_path, 0, 2, errors == NULL);
		int			order = bounded_int(meta, "chunk_order", meta_path, 0, INT_MAX, errors == NULL);
		int			progress = bounded_int(meta, "progress", meta_path, 0, 100, errors == NULL);

		if (phase >= 0)
			json_object_set_new(out, "phase", json_integer(phase));
		if (order >= 0)
			json_object_set_new(out, "chunkOrder", json_integer(order));
		if (progress >= 0)
			json_object_set_new(out, "progress", json_integer(progress));
	}
	json_array_foreach(threads, i, t)
	{
		char	   *tpath = inb_index(path, "threads", i);
		char	   *contact;
		json_t	   *list,
				   *m;
		size_t		j;

		if (!json_is_object(t))
			inb_invalid(tpath, "%s must be an object", tpath);
		contact = req_phone(t, "id", tpath, " (wa_id)");
		list = inb_arr(t, "messages", tpath);
		json_array_foreach(list, j, m)
			json_array_append_new(messages,
								  history_message(m, contact, business, inb_index(tpath, "messages", j)));
	}
	json_object_set_new(out, "threads", json_integer(threads ? (json_int_t) json_array_size(threads) : 0));
	json_object_set_new(out, "messages", messages);
	return out;
}

static void
history_value(json_t *ev, json_t *value, const char *business, const char *path)
{
	json_t	   *list = inb_arr(value, "history", path);
	json_t	   *later = inb_arr(value, "messages", path);
	json_t	   *chunks = json_array();
	json_t	   *media = json_array();
	json_t	   *h;
	size_t		i;

	if (list == NULL && later == NULL)
	{
		char	   *f = inb_path(path, "history");

		inb_invalid(f, "%s is required", f);
	}
	json_array_foreach(list, i, h)
	{
		char	   *hpath = inb_index(path, "history", i);

		if (!json_is_object(h))
			inb_invalid(hpath, "%s must be an object", hpath);
		json_array_append_new(chunks, history_chunk(h, business, hpath));
	}
	/*
	 * The media of history messages come later, in history webhooks of
	 * their own that carry messages[] with the media ids: the contact is the
	 * sender, or the recipient of the business's own.
	 */
	json_array_foreach(later, i, h)
	{
		char	   *mpath = inb_index(path, "messages", i);
		const char *from,
				   *to;
		char	   *contact;

		if (!json_is_object(h))
			inb_invalid(mpath, "%s must be an object", mpath);
		from = inb_str(h, "from", mpath);
		to = inb_str(h, "to", mpath);
		contact = phone_of(from);
		if (contact != NULL && business != NULL && strcmp(contact, business) == 0)
			contact = phone_of(to);
		if (contact == NULL)
		{
			char	   *f = inb_path(mpath, "from");

			inb_invalid(f, "%s must be a phone number", f);
		}
		json_array_append_new(media, history_message(h, contact, business, mpath));
	}
	json_object_set_new(ev, "chunks", chunks);
	json_object_set_new(ev, "media", media);
}

static void
state_sync_value(json_t *ev, json_t *value, const char *path)
{
	json_t	   *list = inb_arr(value, "state_sync", path);
	json_t	   *contacts = json_array();
	json_t	   *s;
	size_t		i;

	json_array_foreach(list, i, s)
	{
		char	   *spath = inb_index(path, "state_sync", i);
		char	   *cpath = inb_path(spath, "contact");
		json_t	   *out = json_object();
		json_t	   *c;
		const char *action,
				   *type,
				   *name;
		char	   *phone;
		int64		ms;

		if (!json_is_object(s))
			inb_invalid(spath, "%s must be an object", spath);
		type = inb_str(s, "type", spath);
		if (type != NULL && strcmp(type, "contact") != 0)
			continue;			/* other kinds of state: not contacts */
		action = inb_req_str(s, "action", spath);
		if (strcmp(action, "add") != 0 && strcmp(action, "remove") != 0 && strcmp(action, "delete") != 0)
		{
			char	   *f = inb_path(spath, "action");

			inb_invalid(f, "%s must be add or remove", f);
		}
		c = inb_obj(s, "contact", spath);
		if (c == NULL)
			inb_invalid(cpath, "%s is required", cpath);
		phone = req_phone(c, "phone_number", cpath, "");
		name = inb_str(c, "full_name", cpath);
		if (name == NULL || name[0] == '\0')
			name = inb_str(c, "first_name", cpath);
		json_object_set_new(out, "action", json_string(strcmp(action, "add") == 0 ? "add" : "remove"));
		json_object_set_new(out, "phone", json_string(phone));
		inb_set_str(out, "name", name && name[0] ? name : NULL);
		if (inb_epoch_ms(json_object_get(inb_obj(s, "metadata", spath), "timestamp"),
						 inb_path(spath, "metadata.timestamp"), &ms))
			json_object_set_new(out, "at", json_string(inb_iso(ms)));
		json_array_append_new(contacts, out);
	}
	json_object_set_new(ev, "contacts", contacts);
}

static void
echoes_value(json_t *ev, json_t *value, const char *path)
{
	json_t	   *list = inb_arr(value, "message_echoes", path);
	json_t	   *echoes = json_array();
	json_t	   *m;
	size_t		i;

	json_array_foreach(list, i, m)
	{
		char	   *mpath = inb_index(path, "message_echoes", i);
		json_t	   *out = json_object();
		const char *type;
		char	   *to;
		int64		ms;

		if (!json_is_object(m))
			inb_invalid(mpath, "%s must be an object", mpath);
		type = inb_req_str(m, "type", mpath);
		to = req_phone(m, "to", mpath, "");
		json_object_set_new(out, "id", json_string(inb_req_str(m, "id", mpath)));
		json_object_set_new(out, "to", json_string(to));
		if (inb_epoch_ms(json_object_get(m, "timestamp"), inb_path(mpath, "timestamp"), &ms))
			json_object_set_new(out, "at", json_string(inb_iso(ms)));
		json_object_set_new(out, "type", json_string(type));
		json_object_set_new(out, "content", pgwa_meta_content(m, type, mpath));
		json_array_append_new(echoes, out);
	}
	json_object_set_new(ev, "echoes", echoes);
}

void
pgwa_meta_coexistence(json_t *ev, const char *kind, json_t *value,
					  const char *display_phone, const char *path)
{
	char	   *business = phone_of(display_phone);

	if (strcmp(kind, "history") == 0)
		history_value(ev, value, business, path);
	else if (strcmp(kind, "state_sync") == 0)
		state_sync_value(ev, value, path);
	else
		echoes_value(ev, value, path);
}
