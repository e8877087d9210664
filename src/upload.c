/*
 * upload.c
 *	  Local writes, the worker's side: the subscription's worker uploads its
 *	  writes one at a time, in commit order, to the write URL, as one more
 *	  transfer in the pool its streams use (so neither waits for the other).
 *	  POST, JSON, Idempotency-Key: the write's id.  2xx: acknowledged (its
 *	  txid, if any, is what the sync matches); 4xx other than 408, 425 and
 *	  429: rejected, and its rows return to the server's version; anything
 *	  else: retried with the subscription's backoff, the writes after it
 *	  waiting (order is kept).  A write is sent again only under its key.
 */
#include "pglite_sync.h"

#include "access/xact.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "mb/pg_wchar.h"

#include "catalog.h"
#include "http.h"
#include "ps_alloc.h"
#include "json.h"
#include "optimistic.h"
#include "protocol.h"
#include "run.h"
#include "shapeopts.h"
#include "upload.h"

struct PsUpload
{
	PsRun	   *run;
	PsHttpXfer *xfer;
	PsResponse	resp;
	StringInfoData answer;
	bool		in_flight;
	int64		write;			/* the write in flight */
	char		write_id[40];
	bool		dirty;			/* there may be a write to send */
	uint64		seen_seq;
	TimestampTz retry_at;
	int			failures;
};

PsUpload *
ps_upload_create(PsRun *run, PsHttpPool *pool)
{
	PsUpload   *u = MemoryContextAllocZero(run->cxt, sizeof(PsUpload));
	MemoryContext old = MemoryContextSwitchTo(run->cxt);

	u->run = run;
	u->xfer = ps_http_xfer_create(pool, u);
	initStringInfo(&u->answer);
	u->dirty = true;			/* whatever an earlier run left unsent */
	MemoryContextSwitchTo(old);
	return u;
}

bool
ps_upload_owns(PsUpload *u, PsHttpXfer *x)
{
	return u && x == u->xfer;
}

/* A stop or a reload: what was in flight is sent again (same key). */
void
ps_upload_abort(PsUpload *u)
{
	if (u == NULL || !u->in_flight)
		return;
	ps_http_abort(u->xfer);
	u->in_flight = false;
	u->dirty = true;
}

/* An ERROR escaped the upload: retried with backoff, as a failed request is. */
void
ps_upload_failed(PsUpload *u)
{
	ps_upload_abort(u);
	u->dirty = true;
	u->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											  ps_backoff_ms(ps_backoff_base_ms, ps_backoff_max_ms,
															u->failures++,
															pg_prng_double(&pg_global_prng_state), 0));
}

/* ---- the request ----------------------------------------------------------------- */

/* ["schema", "table"] of the shape's source table, params.table read as Electric reads it. */
static json_t *
relation_of(PsMember *m)
{
	char	  **names;
	int			n = ps_idents_split(m->shape.table, '.', &names);
	json_t	   *r;

	if (n < 1 || n > 2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("shape \"%s\" of subscription \"%s\" has a malformed table name: %s",
						m->def->name, m->run->sub->name, m->shape.table)));
	r = json_array();
	json_array_append_new(r, json_string(n == 2 ? names[0] : "public"));
	json_array_append_new(r, json_string(names[n - 1]));
	ps_idents_free(names, n);
	return r;
}

/*
 * Local column names to the shape's: through map_columns (unmapped ones are
 * not the shape's), else those of params.columns (cols), else all.
 */
static json_t *
to_shape(json_t *local, json_t *map, json_t *cols)
{
	json_t	   *out;
	const char *k;
	json_t	   *v;

	if (local == NULL || json_is_null(local))
		return NULL;
	if (map == NULL && cols == NULL)
		return json_incref(local);
	out = ps_json_new_object();
	json_object_foreach(local, k, v)
	{
		if (map)
		{
			json_t	   *to = json_object_get(map, k);

			if (json_is_string(to))
				json_object_set(out, json_string_value(to), v);
		}
		else if (json_object_get(cols, k))
			json_object_set(out, k, v);
	}
	return out;
}

/* The columns of params.columns as an object's keys, or NULL: all the table's. */
static json_t *
shape_columns(PsMember *m)
{
	json_t	   *cols = NULL;

	for (int i = 0; i < m->shape.nparams; i++)
	{
		char	  **names;
		int			n;

		if (strcmp(m->shape.params[i].name, "columns") != 0)
			continue;
		n = ps_idents_split(m->shape.params[i].value, ',', &names);
		if (n < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_NAME),
					 errmsg("shape \"%s\" of subscription \"%s\" has a malformed column list: %s",
							m->def->name, m->run->sub->name, m->shape.params[i].value)));
		cols = ps_json_new_object();
		for (int k = 0; k < n; k++)
			json_object_set_new(cols, names[k], json_true());
		ps_idents_free(names, n);
	}
	return cols;
}

static PsMember *
member_named(PsRun *run, const char *shape)
{
	for (int i = 0; i < run->nmembers; i++)
		if (strcmp(run->members[i].def->name, shape) == 0)
			return &run->members[i];
	return NULL;
}

/*
 * The request body of a write, in the shape's terms (UTF-8 JSON), or NULL
 * when no mutation changes a column of its shape: nothing to send.
 */
static char *
request_body(PsUpload *u, PsWrite *w)
{
	json_t	   *body = ps_json_new_object();
	json_t	   *list = json_array();
	char	   *text;
	char	   *out;

	json_object_set_new(body, "write_id", json_string(w->write_id));
	for (int i = 0; i < w->nmutations; i++)
	{
		HeapTuple	t = w->mutations->vals[i];
		TupleDesc	d = w->mutations->tupdesc;
		char	   *op = SPI_getvalue(t, d, 1);
		char	   *shape = SPI_getvalue(t, d, 2);
		PsMember   *m = member_named(u->run, shape);
		json_t	   *map = NULL;
		json_t	   *cols = NULL;
		json_t	   *mut = ps_json_new_object();
		json_t	   *v;
		const char *fields[3] = {"key", "value", "old_value"};

		if (m == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("a write of subscription \"%s\" names shape \"%s\", which it no longer has",
							u->run->sub->name, shape)));
		if (m->def->map_columns)
			map = json_loads(m->def->map_columns, 0, NULL);
		else
			cols = shape_columns(m);
		json_object_set_new(mut, "operation", json_string(op));
		json_object_set_new(mut, "relation", relation_of(m));
		for (int f = 0; f < 3; f++)
		{
			char	   *s = SPI_getvalue(t, d, 3 + f);

			if (s == NULL)
				continue;
			/* the stored JSON is in the server encoding: UTF-8 for the wire */
			s = pg_server_to_any(s, strlen(s), PG_UTF8);
			v = to_shape(json_loads(s, 0, NULL), map, cols);
			if (v)
				json_object_set_new(mut, fields[f], v);
		}
		/* an update of local-only columns is not the server's business */
		if (strcmp(op, "update") == 0 && json_object_size(json_object_get(mut, "value")) == 0)
			json_decref(mut);
		else
			json_array_append_new(list, mut);
		if (map)
			json_decref(map);
		if (cols)
			json_decref(cols);
	}
	if (json_array_size(list) == 0)
	{
		json_decref(list);
		json_decref(body);
		return NULL;
	}
	json_object_set_new(body, "mutations", list);
	text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (text == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	out = MemoryContextStrdup(u->run->cxt, text);
	ps_free(text);
	return out;
}

static PsHttpBody
collect(void *arg, const char *data, size_t len, const PsResponse *resp)
{
	PsUpload   *u = arg;

	if (u->answer.len < 64 * 1024)
		appendBinaryStringInfo(&u->answer, data, (int) Min(len, (size_t) (64 * 1024)));
	return PS_HTTP_BODY_OK;
}

/* Start the next write, if there is one and it is time. */
void
ps_upload_step(PsUpload *u, TimestampTz now, TimestampTz *wake)
{
	PsRun	   *run = u->run;
	PsWrite		w;
	char	   *url = NULL;
	char	   *headers = NULL;
	char	   *body = NULL;
	List	   *names;
	List	   *values;
	MemoryContext cxt = CurrentMemoryContext;
	bool		found;

	if (u->in_flight)
		return;
	if (run->slot)
	{
		uint64		seq = ps_slot_writes_seq(run->slot);

		if (seq != u->seen_seq)
		{
			u->seen_seq = seq;
			u->dirty = true;
		}
	}
	if (!u->dirty)
		return;
	if (u->retry_at > now)
	{
		if (*wake == 0 || u->retry_at < *wake)
			*wake = u->retry_at;
		return;
	}

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	found = ps_catalog_write_target_get(run->sub->id, &url, &headers);
	/* a write that changes nothing of its shapes has nothing to wait for: synced */
	while (found && (found = ps_catalog_write_next(run->sub->id, &w)) &&
		   (body = request_body(u, &w)) == NULL)
	{
		PS_DEBUG_LOG(run, "write %s changes no column of its shapes: synced without a request", w.write_id);
		ps_catalog_write_forget(w.id);
	}
	if (!found)
		u->dirty = false;		/* until the next committed write */
	else
	{
		MemoryContext old = MemoryContextSwitchTo(run->cxt);

		url = pstrdup(url);
		headers = headers ? pstrdup(headers) : NULL;
		MemoryContextSwitchTo(old);
		u->write = w.id;
		strlcpy(u->write_id, w.write_id, sizeof(u->write_id));
		ps_catalog_write_sent(w.id);
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	if (!found)
		return;

	/* the subscription's headers (and headers function); the write's own replace them */
	ps_run_headers(run, &run->members[0], false, &names, &values);
	if (headers)
	{
		json_t	   *h = json_loads(headers, 0, NULL);
		const char *k;
		json_t	   *v;
		List	   *write_names = NIL;
		List	   *write_values = NIL;

		json_object_foreach(h, k, v)
		{
			write_names = lappend(write_names, pstrdup(k));
			write_values = lappend(write_values, pstrdup(json_string_value(v)));
		}
		json_decref(h);
		ps_headers_replace(&names, &values, write_names, write_values);
	}
	/* the write's own: it replaces a configured header of that name */
	ps_headers_replace(&names, &values, list_make1(pstrdup("Idempotency-Key")),
					   list_make1(pstrdup(u->write_id)));

	resetStringInfo(&u->answer);
	PS_DEBUG_LOG(run, "POST %s (write %s)", url, u->write_id);
	ps_http_set_body(u->xfer, body);
	ps_http_start(u->xfer, url, names, values, false, false, collect, u, &u->resp);
	u->in_flight = true;
}

/* ---- the answer -------------------------------------------------------------------- */

/* "txid" of a 2xx answer (a string of digits or a number), or NULL. */
static char *
answer_txid(PsUpload *u)
{
	json_t	   *o = json_loadb(u->answer.data, u->answer.len, 0, NULL);
	json_t	   *t;
	char	   *out = NULL;

	if (o == NULL)
		return NULL;
	t = json_is_object(o) ? json_object_get(o, "txid") : NULL;
	if (json_is_integer(t) && json_integer_value(t) >= 0)
		out = psprintf("%lld", (long long) json_integer_value(t));
	else if (json_is_string(t) && json_string_length(t) > 0 &&
			 strspn(json_string_value(t), "0123456789") == json_string_length(t))
		out = pstrdup(json_string_value(t));
	json_decref(o);
	return out;
}

/* The local columns of relid that its shape carries; NIL: all of them. */
static List *
local_shape_columns(void *arg, Oid relid)
{
	PsRun	   *run = arg;
	List	   *out = NIL;

	for (int i = 0; i < run->nmembers; i++)
	{
		PsMember   *m = &run->members[i];
		json_t	   *cols;
		const char *k;
		json_t	   *v;

		if (m->def->relid != relid)
			continue;
		/* map_columns is {local: shape}, params.columns names both */
		cols = m->def->map_columns ? json_loads(m->def->map_columns, 0, NULL) : shape_columns(m);
		if (cols == NULL)
			return NIL;
		json_object_foreach(cols, k, v)
			out = lappend(out, pstrdup(k));
		json_decref(cols);
		return out;				/* never NIL: both hold the key */
	}
	return NIL;
}

/* The rejected write's rows go back to the server's version, as the owner. */
static void
restore(PsUpload *u, int64 write)
{
	Oid			save_user;
	int			save_sec;
	PsSyncing	syncing;

	GetUserIdAndSecContext(&save_user, &save_sec);
	if (save_user != u->run->sub->owner)
		SetUserIdAndSecContext(u->run->sub->owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	ps_syncing_begin(&syncing);
	ps_optimistic_rejected(write, local_shape_columns, u->run);
	/* nothing deferred may run as someone else at COMMIT (see commit.c) */
	if (SPI_execute("SET CONSTRAINTS ALL IMMEDIATE", false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "pglite_sync: SET CONSTRAINTS failed");
	ps_syncing_end(&syncing);
	SetUserIdAndSecContext(save_user, save_sec);
}

void
ps_upload_done(PsUpload *u)
{
	PsRun	   *run = u->run;
	PsResponse *r = &u->resp;
	bool		ok = r->outcome == PS_XFER_DONE && r->status >= 200 && r->status < 300;
	bool		rejected = r->outcome == PS_XFER_DONE && r->status >= 400 && r->status < 500 &&
		r->status != 408 && r->status != 425 && r->status != 429;
	char	   *txid = ok ? answer_txid(u) : NULL;
	char	   *error = NULL;
	char	   *answer = NULL;
	MemoryContext cxt = CurrentMemoryContext;

	u->in_flight = false;
	if (r->outcome == PS_XFER_INTERRUPTED)
	{
		u->dirty = true;
		return;
	}
	if (!ok)
	{
		answer = r->error_body_len ? pnstrdup(r->error_body, r->error_body_len) : NULL;
		error = r->outcome == PS_XFER_DONE ?
			psprintf("the write API answered %ld%s%s", r->status, answer ? ": " : "", answer ? answer : "") :
			psprintf("write request failed: %s", r->error);
	}

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (ok)
	{
		ps_catalog_write_answered(u->write, 'a', (int) r->status, txid, NULL, NULL);
		if (txid)
			(void) ps_catalog_write_ack_seen(run->sub->id, u->write, txid);
	}
	else if (rejected)
	{
		ps_catalog_write_answered(u->write, 'r', (int) r->status, NULL, error, answer);
		restore(u, u->write);
	}
	else
		ps_catalog_write_answered(u->write, 'f', (int) r->status, NULL, error, NULL);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	/* after its acknowledged_at: the sync knows which up-to-dates sync it */
	if (ok && txid == NULL)
		run->untxid_acked = GetCurrentTimestamp();

	PS_DEBUG_LOG(run, "write %s: %s%s%s", u->write_id,
				 ok ? "acknowledged" : rejected ? "rejected: " : "failed: ",
				 ok ? (txid ? ", txid " : ", no txid") : error, ok && txid ? txid : "");
	u->dirty = true;
	if (ok || rejected)
	{
		u->failures = 0;
		u->retry_at = 0;
	}
	else
	{
		int64		wait_ms = ps_backoff_ms(ps_backoff_base_ms, ps_backoff_max_ms, u->failures++,
											pg_prng_double(&pg_global_prng_state), r->retry_after_ms);

		u->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms);
		ereport(LOG,
				(errmsg("pglite_sync: subscription \"%s\": write %s: %s; retrying in %.1f s",
						run->sub->name, u->write_id, error, wait_ms / 1000.0)));
	}
}
