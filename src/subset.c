/*
 * subset.c
 *	  Subset snapshots (Electric's POST /v1/shape with a subset body), for
 *	  changes_only shapes above all: electric.request_snapshot() fetches one
 *	  and loads its rows as upserts in the caller's transaction, and records
 *	  its xmin/xmax/xip_list and the keys it loaded.  The apply then merges
 *	  it with the live stream as Electric's own client does: a change of a
 *	  loaded key whose transaction the snapshot saw is not applied again, and
 *	  a snapshot is retired once the stream is past it (a change at or after
 *	  its database_lsn, or of a transaction at or after its xmax).
 */
#include "apply_int.h"

#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "catalog.h"
#include "http.h"
#include "json.h"
#include "jsonutil.h"
#include "run.h"
#include "ps_alloc.h"
#include "visibility.h"

PG_FUNCTION_INFO_V1(ps_request_snapshot);

/* ---- the merge, in the apply ------------------------------------------------------ */

void
ps_subset_open(PsApply *a)
{
	a->subsets = ps_catalog_subset_load(a->sub->id, a->def->name);
}

/*
 * Should the live change being applied be left out?  Retires the snapshots
 * the stream has passed on the way.
 */
bool
ps_subset_skip(PsApply *a)
{
	PsRow	   *r = &a->row;
	ListCell   *lc;
	char	   *key = NULL;

	if (a->subsets == NIL || r->lsn == 0)
		return false;
	foreach(lc, a->subsets)
	{
		PsSubset   *s = lfirst(lc);
		uint64		xid = r->txid > PG_UINT32_MAX ? r->txid :
			ps_xid_widen((uint32) r->txid, s->xmax);

		if (r->lsn >= s->database_lsn || (r->txid != 0 && xid >= s->xmax))
		{
			/* from here on every change is newer than this snapshot */
			ps_catalog_subset_retire(a->sub->id, a->def->name, s->id);
			a->subsets = foreach_delete_current(a->subsets, lc);
			continue;
		}
		if (r->txid == 0 || !ps_xid_visible(xid, s->xmin, s->xmax, s->xip, s->nxip))
			continue;
		if (key == NULL)
			key = pnstrdup(r->key, r->key_len);
		if (ps_catalog_subset_has_key(a->sub->id, a->def->name, s->id, key))
			return true;		/* the snapshot loaded this row with the change in it */
	}
	return false;
}

/* ---- electric.request_snapshot() ----------------------------------------------------- */

#ifndef __PGLITE__
static uint64
json_uint(json_t *v, const char *what)
{
	const char *s;
	char	   *end;
	uint64		n;

	if (json_is_integer(v) && json_integer_value(v) >= 0)
		return (uint64) json_integer_value(v);
	if (!json_is_string(v))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("subset snapshot metadata lacks a valid %s", what)));
	s = json_string_value(v);
	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("subset snapshot metadata has an invalid %s \"%s\"", what, s)));
	return n;
}

/* An argument as a jansson string (jansson wants UTF-8). */
static json_t *
utf8_string(text *t)
{
	char	   *s = text_to_cstring(t);
	char	   *u = pg_server_to_any(s, strlen(s), PG_UTF8);

	return json_string(u);
}

/* JSON text in UTF-8, as Electric reads it and the message parser wants it. */
static char *
utf8_json(json_t *v)
{
	char	   *dumped = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	char	   *out;

	if (dumped == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	out = pstrdup(dumped);
	ps_free(dumped);
	return out;
}

/* The subset answer's rows, spooled one by one as the splitter finds them. */
typedef struct SubsetRows
{
	const char *name;
	PsMember   *member;
	ps_message	msg;
	ArrayBuildState *keys;		/* the keys loaded, for the merge */
} SubsetRows;

static int
spool_row(void *arg, const char *json, size_t len)
{
	SubsetRows *r = arg;
	ps_message *msg = &r->msg;

	if (ps_message_parse(msg, json, len) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("subscription \"%s\": malformed row in the subset answer: %s", r->name, msg->error)));
	if (msg->kind != PS_MSG_CHANGE || msg->op != PS_OP_INSERT || msg->key == NULL || !msg->has_value)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("subscription \"%s\": the subset answer holds something other than inserts", r->name)));
	msg->is_move_in = true;
	r->keys = accumArrayResult(r->keys,
							   PointerGetDatum(cstring_to_text_with_len(msg->key, (int) msg->key_len)),
							   false, TEXTOID, CurrentMemoryContext);
	ps_spool_add(r->member->spool, msg, 0, json, len, OidIsValid(r->member->def->map_function));
	return 0;
}

static char *
request_body(FunctionCallInfo fcinfo)
{
	json_t	   *o = ps_json_new_object();
	char	   *out;

	if (!PG_ARGISNULL(1))
		json_object_set_new(o, "where", utf8_string(PG_GETARG_TEXT_PP(1)));
	if (!PG_ARGISNULL(2))
	{
		json_t	   *params = ps_jsonb_load(PG_GETARG_JSONB_P(2));

		if (!json_is_object(params))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("params must be a JSON object such as {\"1\": \"value\"}")));
		json_object_set_new(o, "params", params);
	}
	if (!PG_ARGISNULL(3))
		json_object_set_new(o, "order_by", utf8_string(PG_GETARG_TEXT_PP(3)));
	if (!PG_ARGISNULL(4))
	{
		int32		limit = PG_GETARG_INT32(4);

		if (limit < 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("limit must be at least 1")));
		if (PG_ARGISNULL(3))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("limit needs order_by"),
					 errhint("A subset with a limit must say which rows come first.")));
		json_object_set_new(o, "limit", json_integer(limit));
	}
	/* a body without subset keys is an ordinary shape request: no filter is all rows */
	if (json_object_size(o) == 0)
		json_object_set_new(o, "where", json_string("true"));
	out = utf8_json(o);
	json_decref(o);
	return out;
}
#endif

Datum
ps_request_snapshot(PG_FUNCTION_ARGS)
{
#ifdef __PGLITE__
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("electric.request_snapshot() is not available in PGlite"),
			 errhint("It needs HTTP from the database server; in PGlite the host does HTTP.")));
	PG_RETURN_NULL();
#else
	char	   *name;
	char	   *body;
	PsSubscription *sub;
	PsRun	   *run;
	PsMember   *m;
	List	   *names;
	List	   *values;
	char	   *url;
	PsResponse	resp;
	StringInfoData out;
	ps_message	answer;
	ps_str		meta_text;
	ps_str		data_text;
	json_t	   *meta;
	json_t	   *v;
	json_error_t jerr;
	PsSubset	snap;
	SubsetRows	r;
	ps_bodysplit split;
	int			split_rc;
	size_t		i;
	int64		rows;
	MemoryContext cxt = CurrentMemoryContext;

	name = ps_arg_text(fcinfo, 0, "name");
	body = request_body(fcinfo);

	SPI_connect();
	sub = ps_catalog_load_owned(name, GetUserId(), cxt);
	if (!sub->enabled)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("subscription \"%s\" is stopped", name)));
	if (sub->nshapes != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("subscription \"%s\" has %d shapes: a subset snapshot loads into a single-shape subscription",
						name, sub->nshapes)));

	/* no batch of this subscription commits until we have */
	ps_catalog_subset_lock(sub->id, true);
	run = ps_run_create(PS_RUN_FOREGROUND, sub, cxt);
	m = &run->members[0];
	if (m->handle[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("subscription \"%s\" has no shape handle yet", name),
				 errhint("Wait until it has synced once (electric.wait_for_sync)."))) ;

	ps_run_headers(run, m, true, &names, &values);
	url = ps_member_request_url(m, false);
	initStringInfo(&out);
	PS_DEBUG_LOG(run, "POST %s %s", url, body);
	ps_http_post(url, names, values, body, &resp, &out);

	if (resp.outcome != PS_XFER_DONE)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("subscription \"%s\": the subset request failed: %s", name,
						resp.error[0] ? resp.error : "no response")));
	if (resp.status == 409)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("subscription \"%s\": the server rotated the shape (409)", name),
				 errhint("The subscription refetches it; request the subset again once it is up to date.")));
	if (resp.status != 200)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("subscription \"%s\": the server answered %ld to the subset request", name, resp.status),
				 resp.error_body_len ? errdetail_internal("%.*s", (int) resp.error_body_len, resp.error_body) : 0));

	/* no tree of the whole answer: its data can be the whole shape */
	ps_message_init(&answer);
	if (ps_subset_answer_split(&answer, out.data, out.len, &meta_text, &data_text) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("subscription \"%s\": the subset answer is not {\"metadata\": {...}, \"data\": [...]}", name),
				 errdetail_internal("%s", answer.error)));
	ps_message_free(&answer);
	meta = json_loadb(meta_text.s, meta_text.len, 0, &jerr);
	if (meta == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("subscription \"%s\": malformed subset snapshot metadata", name),
				 errdetail_internal("%s", jerr.text)));
	memset(&snap, 0, sizeof(snap));
	snap.xmin = json_uint(json_object_get(meta, "xmin"), "xmin");
	snap.xmax = json_uint(json_object_get(meta, "xmax"), "xmax");
	snap.database_lsn = json_uint(json_object_get(meta, "database_lsn"), "database_lsn");
	v = json_object_get(meta, "xip_list");
	if (!json_is_array(v))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("subset snapshot metadata lacks xip_list")));
	snap.nxip = (int) json_array_size(v);
	snap.xip = palloc(sizeof(uint64) * Max(snap.nxip, 1));
	for (i = 0; i < json_array_size(v); i++)
		snap.xip[i] = json_uint(json_array_get(v, i), "xip_list entry");
	json_decref(meta);

	/* the rows, as move-in inserts (upserts), through the batch's spool */
	r.name = name;
	r.member = m;
	r.keys = NULL;
	ps_message_init(&r.msg);
	ps_bodysplit_init(&split, 0);
	PG_TRY();
	{
		split_rc = ps_bodysplit_feed(&split, data_text.s, data_text.len, spool_row, &r);
		if (split_rc == 0)
			split_rc = ps_bodysplit_finish(&split);
		if (split_rc != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("subscription \"%s\": malformed subset answer: %s", name, split.error)));
	}
	PG_FINALLY();
	{
		ps_bodysplit_free(&split);
		ps_message_free(&r.msg);
	}
	PG_END_TRY();
	ps_spool_response_done(m->spool);

	rows = ps_run_apply_subset(run, m);
	ps_catalog_subset_add(sub->id, m->def->name, &snap,
						  r.keys ? makeArrayResult(r.keys, CurrentMemoryContext) :
						  PointerGetDatum(construct_empty_array(TEXTOID)),
						  rows);
	PS_DEBUG_LOG(run, "subset snapshot: %lld rows loaded (xmin %llu, xmax %llu, %d in progress, database_lsn %llu)",
				 (long long) rows, (unsigned long long) snap.xmin, (unsigned long long) snap.xmax,
				 snap.nxip, (unsigned long long) snap.database_lsn);
	ps_run_close(run);
	SPI_finish();
	PG_RETURN_INT64(rows);
#endif
}
