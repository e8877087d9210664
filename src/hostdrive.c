/*
 * hostdrive.c
 *	  Host-driven subscriptions (worker => false): the host does the HTTP,
 *	  call by call, and the engine does everything else in the caller's
 *	  transaction.  electric.next_request() says what to fetch next;
 *	  electric.ingest_response() takes one whole response and does what a
 *	  worker does with it: spools an incomplete batch (in electric.spool_block,
 *	  so the feeding process may restart between two calls), applies a
 *	  complete one with the new positions, handles 409s, records errors and
 *	  backoff.  This is how PGlite syncs, and any server that may not reach
 *	  Electric itself.
 *
 *	  Between calls a shape's stream is a small JSON document in
 *	  electric.shape_state.stream, and the run's in subscription_state.run.
 */
#include "pglite_sync.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "run.h"
#include "jsonutil.h"

PG_FUNCTION_INFO_V1(ps_next_request);
PG_FUNCTION_INFO_V1(ps_ingest_response);
PG_FUNCTION_INFO_V1(ps_spool_unlogged);

/*
 * Whether electric.spool_block should be unlogged: on a server, yes (see the
 * 0.4.0 -> 0.5.0 update script); in PGlite, whose sessions usually end in a
 * crash image, no.  Asked by that script only.
 */
Datum
ps_spool_unlogged(PG_FUNCTION_ARGS)
{
#ifdef __PGLITE__
	PG_RETURN_BOOL(false);
#else
	PG_RETURN_BOOL(true);
#endif
}

/* ---- the state between calls ------------------------------------------------ */

static const char *
get_str(json_t *o, const char *key)
{
	json_t	   *v = json_object_get(o, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

static int64
get_int(json_t *o, const char *key)
{
	json_t	   *v = json_object_get(o, key);

	if (json_is_integer(v))
		return (int64) json_integer_value(v);
	if (json_is_string(v))
		return strtoll(json_string_value(v), NULL, 10);
	return 0;
}

static bool
get_bool(json_t *o, const char *key)
{
	return json_is_true(json_object_get(o, key));
}

static void
copy_str(char *dst, size_t len, const char *src)
{
	strlcpy(dst, src ? src : "", len);
}

/* A shape's stream from its JSON (NULL: as the catalog's position says). */
static void
restore_member(PsRun *run, PsMember *m)
{
	json_t	   *o;
	json_error_t err;
	PsSpoolState sp;

	memset(&sp, 0, sizeof(sp));
	if (m->def->stream && (o = json_loads(m->def->stream, 0, &err)) != NULL)
	{
		copy_str(m->handle, sizeof(m->handle), get_str(o, "handle"));
		copy_str(m->offset, sizeof(m->offset), get_str(o, "offset"));
		copy_str(m->cursor, sizeof(m->cursor), get_str(o, "cursor"));
		copy_str(m->buster, sizeof(m->buster), get_str(o, "buster"));
		copy_str(m->committed_handle, sizeof(m->committed_handle), get_str(o, "committed_handle"));
		copy_str(m->committed_offset, sizeof(m->committed_offset), get_str(o, "committed_offset"));
		m->live = get_bool(o, "live");
		m->replace = get_bool(o, "replace");
		m->from_start = get_bool(o, "from_start");
		m->position_dirty = get_bool(o, "dirty");
		m->catch_up = get_bool(o, "catch_up");
		m->refetches = (int) get_int(o, "refetches");
		m->failures = (int) get_int(o, "failures");
		m->retry_at = (TimestampTz) get_int(o, "retry_at");
		m->request_live = get_bool(o, "request_live");
		m->request_started = (TimestampTz) get_int(o, "request_started");
		m->request_voided = get_bool(o, "request_voided");
		m->sync_ticket = (uint64) get_int(o, "up_to_date_request");
		m->align.reported = get_bool(o, "reported");
		m->align.ready_lsn = (uint64) get_int(o, "ready_lsn");
		m->align.open_lsn = (uint64) get_int(o, "open_lsn");
		m->align.max_lsn = (uint64) get_int(o, "max_lsn");
		sp.end = get_int(o, "spool_end");
		sp.base = get_int(o, "spool_base");
		sp.records = get_int(o, "spool_records");
		json_decref(o);
	}
	m->spool = ps_spool_create_in_table(run->cxt, run->sub->id, m->def->name, &sp);
}

static void
put_str(StringInfo b, const char *key, const char *v)
{
	appendStringInfo(b, "%s\"%s\": ", b->len > 1 ? ", " : "", key);
	escape_json(b, v);
}

static void
put_int(StringInfo b, const char *key, int64 v)
{
	appendStringInfo(b, "%s\"%s\": \"" INT64_FORMAT "\"", b->len > 1 ? ", " : "", key, v);
}

static void
put_bool(StringInfo b, const char *key, bool v)
{
	appendStringInfo(b, "%s\"%s\": %s", b->len > 1 ? ", " : "", key, v ? "true" : "false");
}

static char *
member_json(PsMember *m)
{
	StringInfoData b;
	PsSpoolState sp;

	ps_spool_get_state(m->spool, &sp);
	initStringInfo(&b);
	appendStringInfoChar(&b, '{');
	put_str(&b, "handle", m->handle);
	put_str(&b, "offset", m->offset);
	put_str(&b, "cursor", m->cursor);
	put_str(&b, "buster", m->buster);
	put_str(&b, "committed_handle", m->committed_handle);
	put_str(&b, "committed_offset", m->committed_offset);
	put_bool(&b, "live", m->live);
	put_bool(&b, "replace", m->replace);
	put_bool(&b, "from_start", m->from_start);
	put_bool(&b, "dirty", m->position_dirty);
	put_bool(&b, "catch_up", m->catch_up);
	put_int(&b, "refetches", m->refetches);
	put_int(&b, "failures", m->failures);
	put_int(&b, "retry_at", m->retry_at);
	put_bool(&b, "request_live", m->request_live);
	put_int(&b, "request_started", m->request_started);
	put_bool(&b, "request_voided", m->request_voided);
	put_int(&b, "up_to_date_request", (int64) m->sync_ticket);
	put_bool(&b, "reported", m->align.reported);
	put_int(&b, "ready_lsn", (int64) m->align.ready_lsn);
	put_int(&b, "open_lsn", (int64) m->align.open_lsn);
	put_int(&b, "max_lsn", (int64) m->align.max_lsn);
	put_int(&b, "spool_end", sp.end);
	put_int(&b, "spool_base", sp.base);
	put_int(&b, "spool_records", sp.records);
	appendStringInfoChar(&b, '}');
	return b.data;
}

static void
restore_run(PsRun *run)
{
	json_t	   *o;
	json_error_t err;

	if (run->sub->run && (o = json_loads(run->sub->run, 0, &err)) != NULL)
	{
		const char *state = get_str(o, "state");

		run->notified = get_bool(o, "notified");
		run->row_by_row = get_bool(o, "row_by_row");
		run->failures = (int) get_int(o, "failures");
		run->retry_at = (TimestampTz) get_int(o, "retry_at");
		for (int s = PS_STATE_STARTING; s <= PS_STATE_ERROR; s++)
			if (state && strcmp(state, ps_state_name(s)) == 0)
				run->state = s;
		json_decref(o);
	}
}

static char *
timestamp_text(TimestampTz t)
{
	return OidOutputFunctionCall(F_TIMESTAMPTZ_OUT, TimestampTzGetDatum(t));
}

/* Write every shape's stream and the run's state, in the caller's transaction. */
static void
save(PsRun *run, TimestampTz up_to_date_since, TimestampTz last_up_to_date_at)
{
	StringInfoData b;
	bool		up_to_date = run->state == PS_STATE_LIVE && run->notified;

	for (int i = 0; i < run->nmembers; i++)
	{
		PsMember   *m = &run->members[i];

		ps_catalog_save_stream(run->sub->id, m->def->name, member_json(m));
		up_to_date &= !m->in_flight || !m->request_live;
	}
	initStringInfo(&b);
	appendStringInfoChar(&b, '{');
	put_str(&b, "state", ps_state_name(run->state));
	put_bool(&b, "notified", run->notified);
	put_bool(&b, "row_by_row", run->row_by_row);
	put_bool(&b, "up_to_date", up_to_date);
	put_int(&b, "failures", run->failures);
	put_int(&b, "retry_at", run->retry_at);
	if (up_to_date_since)
		put_str(&b, "up_to_date_since", timestamp_text(up_to_date_since));
	if (last_up_to_date_at)
		put_str(&b, "last_up_to_date_at", timestamp_text(last_up_to_date_at));
	appendStringInfoChar(&b, '}');
	ps_catalog_save_run(run->sub->id, b.data);
}

/* The previous run state's timestamps, carried over when not renewed. */
static TimestampTz
run_time(PsRun *run, const char *key)
{
	json_t	   *o;
	json_error_t err;
	TimestampTz t = 0;

	if (run->sub->run && (o = json_loads(run->sub->run, 0, &err)) != NULL)
	{
		const char *s = get_str(o, key);

		if (s)
			t = DatumGetTimestampTz(OidInputFunctionCall(F_TIMESTAMPTZ_IN, (char *) s,
														 InvalidOid, -1));
		json_decref(o);
	}
	return t;
}

/* ---- loading ------------------------------------------------------------------ */

static PsRun *
restore(PsSubscription *sub, bool with_run_state, bool *intact)
{
	PsRun	   *run = ps_run_create(PS_RUN_HOST, sub, CurrentMemoryContext);

	if (with_run_state)
		restore_run(run);
	*intact = true;
	for (int i = 0; i < run->nmembers; i++)
	{
		PsMember   *m = &run->members[i];

		/* ps_run_create gave it a file spool: this one lives in the table */
		ps_spool_destroy(m->spool);
		restore_member(run, m);
		*intact &= ps_spool_intact(m->spool);
	}
	return run;
}

/*
 * The run of subscription name, its streams restored.  When a crash or a
 * failover emptied the spool (unlogged on a server) under an incomplete
 * batch, every shape starts again as a worker does after a restart (run
 * state and positions from the catalog), and the requests handed out before
 * are voided: their answers, from any shape's loop, must not be ingested.
 */
static PsRun *
load_run(const char *name, const char *shape, PsMember **member)
{
	PsSubscription *sub;
	PsRun	   *run;
	bool		intact;

	sub = ps_catalog_load_owned(name, GetUserId(), CurrentMemoryContext);
	if (sub->worker)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("subscription \"%s\" is run by a background worker", name),
				 errhint("Host-driven subscriptions are made with worker => false.")));
	if (!sub->enabled)
		return NULL;
	run = restore(sub, true, &intact);
	if (!intact)
	{
		ereport(LOG,
				(errmsg("pglite_sync: subscription \"%s\" lost the responses it had spooled", name),
				 errdetail("The blocks its streams count are gone from electric.spool_block, which is unlogged on a server: "
						   "a crash or a failover empties it. Every shape of the subscription starts again as after a restart.")));
		for (int i = 0; i < sub->nshapes; i++)
			sub->shapes[i].stream = NULL;
		run = restore(sub, false, &intact);
		for (int i = 0; i < run->nmembers; i++)
		{
			/* whatever blocks are left go, as a cleared spool's do */
			ps_spool_clear(run->members[i].spool);
			run->members[i].request_voided = true;
		}
		save(run, run_time(run, "up_to_date_since"), run_time(run, "last_up_to_date_at"));
	}
	*member = NULL;
	for (int i = 0; i < run->nmembers; i++)
		if (shape ? strcmp(run->members[i].def->name, shape) == 0 : i == 0)
			*member = &run->members[i];
	if (*member == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("subscription \"%s\" has no shape \"%s\"", name, shape)));
	return run;
}


static Datum
jsonb_result(StringInfo b)
{
	return OidInputFunctionCall(F_JSONB_IN, b->data, JSONBOID, -1);
}

/* ---- next_request ---------------------------------------------------------------- */

Datum
ps_next_request(PG_FUNCTION_ARGS)
{
	char	   *name = ps_arg_text(fcinfo, 0, "name");
	char	   *shape = ps_arg_text(fcinfo, 1, NULL);
	PsMember   *m;
	PsRun	   *run;
	TimestampTz now = GetCurrentTimestamp();
	StringInfoData b;
	Datum		result;

	SPI_connect();
	run = load_run(name, shape, &m);
	if (run == NULL)
	{
		SPI_finish();
		PG_RETURN_NULL();
	}
	initStringInfo(&b);
	if (m->retry_at > now || run->retry_at > now)
	{
		TimestampTz until = Max(m->retry_at, run->retry_at);

		appendStringInfo(&b, "{\"wait_ms\": %lld, \"shape\": ",
						 (long long) ((until - now + 999) / 1000));
		escape_json(&b, m->def->name);
		appendStringInfoChar(&b, '}');
	}
	else
	{
		uint64		ticket;
		bool		live = ps_run_request_live(run, m, &ticket);
		List	   *names;
		List	   *values;
		ListCell   *a,
				   *v;
		char	   *url;

		ps_run_headers(run, m, true, &names, &values);
		url = ps_member_request_url(m, live);
		appendStringInfoString(&b, "{\"url\": ");
		escape_json(&b, url);
		appendStringInfoString(&b, ", \"headers\": {");
		forboth(a, names, v, values)
		{
			if (foreach_current_index(a) > 0)
				appendStringInfoString(&b, ", ");
			escape_json(&b, lfirst(a));
			appendStringInfoString(&b, ": ");
			escape_json(&b, lfirst(v));
		}
		appendStringInfo(&b, "}, \"live\": %s, \"timeout_ms\": %d, \"shape\": ",
						 live ? "true" : "false", ps_http_timeout_ms);
		escape_json(&b, m->def->name);
		appendStringInfoChar(&b, '}');
		m->request_live = live;
		m->request_started = now;
		m->request_voided = false;
		save(run, run_time(run, "up_to_date_since"), run_time(run, "last_up_to_date_at"));
	}
	result = jsonb_result(&b);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/* ---- ingest_response ---------------------------------------------------------------- */

static void
headers_from_jsonb(Jsonb *jb, PsResponse *resp)
{
	json_t	   *j = ps_jsonb_load(jb);
	const char *key;
	json_t	   *v;

	if (!json_is_object(j))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("headers must be a JSON object of header names and values")));
	json_object_foreach(j, key, v)
	{
		if (json_is_string(v))
			ps_response_header(resp, key, json_string_value(v));
		else if (json_is_integer(v))
			ps_response_header(resp, key, psprintf("%lld", (long long) json_integer_value(v)));
	}
	json_decref(j);
}

/*
 * Apply a complete batch in a subtransaction: a batch the table rejects is
 * rolled back alone (first redone row by row, so the error names the key),
 * and the failure is recorded in the caller's transaction.
 */
static bool
commit_in_subxact(PsRun *run, uint64 target)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	for (;;)
	{
		ErrorData  *e;

		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(cxt);
		PG_TRY();
		{
			ps_run_commit(run, target);
			ReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
			return true;
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(cxt);
			e = CopyErrorData();
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
		}
		PG_END_TRY();
		if (!run->row_by_row && !ps_error_is_transient(e->sqlerrcode))
		{
			run->row_by_row = true;
			continue;
		}
		run->row_by_row = false;
		ps_run_fail(run, NULL, ps_error_is_transient(e->sqlerrcode) ? PS_OUT_RETRY : PS_OUT_FATAL,
					-1, e->message ? pstrdup(e->message) : "unknown error",
					e->context ? psprintf("%s\nCONTEXT: %s", e->message, e->context) : NULL, true);
		return false;
	}
}

/*
 * Take the response to the request next_request handed out for m: apply
 * what it completes, spool what it does not; *since and *last_at move when
 * it brings the run up to date.
 */
static void
take_response(FunctionCallInfo fcinfo, PsRun *run, PsMember *m, TimestampTz *since,
			  TimestampTz *last_at)
{
	PsResponse	resp;
	PsOutcome	o;
	uint64		target;

	/* the request this answers, as next_request handed it out */
	{
		TimestampTz started = m->request_started;

		ps_member_response_begin(m, m->request_live, 0);
		m->request_started = started;
	}
	ps_response_reset(&resp);
	resp.status = PG_GETARG_INT32(1);
	if (!PG_ARGISNULL(2))
		headers_from_jsonb(PG_GETARG_JSONB_P(2), &resp);
	resp.outcome = PS_XFER_DONE;
	if (resp.status == 0)
	{
		/*
		 * No complete response (refused, reset, cut short, timed out): a
		 * network error, as a worker's failed request; the body, if any, is
		 * the host's description of it.
		 */
		resp.outcome = PS_XFER_FAILED;
		if (!PG_ARGISNULL(3))
		{
			bytea	   *body = PG_GETARG_BYTEA_PP(3);
			int			n = Min((int) VARSIZE_ANY_EXHDR(body), (int) sizeof(resp.error) - 1);

			if (pg_verifymbstr(VARDATA_ANY(body), (int) VARSIZE_ANY_EXHDR(body), true))
			{
				n = pg_mbcliplen(VARDATA_ANY(body), n, n);
				memcpy(resp.error, VARDATA_ANY(body), n);
				resp.error[n] = '\0';
			}
		}
		if (resp.error[0] == '\0')
			strlcpy(resp.error, "the host reported no complete response", sizeof(resp.error));
	}
	else if (!PG_ARGISNULL(3))
	{
		bytea	   *body = PG_GETARG_BYTEA_PP(3);
		size_t		len = VARSIZE_ANY_EXHDR(body);

		resp.body_bytes = len;
		if (ps_max_response_size > 0 && len > (size_t) ps_max_response_size * 1024)
		{
			resp.outcome = PS_XFER_TOO_LARGE;
			snprintf(resp.error, sizeof(resp.error),
					 "response exceeds pglite_sync.max_response_size (%d kB)", ps_max_response_size);
		}
		else if (resp.status >= 200 && resp.status < 300)
		{
			if (ps_member_response_body(m, VARDATA_ANY(body), len, &resp) != PS_BODY_OK)
				resp.outcome = PS_XFER_BODY_REJECTED;
		}
		else
			ps_response_error_body(&resp, VARDATA_ANY(body), len);
	}
	o = ps_member_response_end(m, &resp);
	if (o.kind == PS_OUT_BATCH)
		m->sync_ticket = (uint64) m->request_started;	/* when its request began */
	if (ps_run_outcome(run, m, o) && ps_run_commit_due(run, &target) == PS_COMMIT_DUE &&
		commit_in_subxact(run, target))
	{
		uint64		oldest = PG_UINT64_MAX;

		for (int i = 0; i < run->nmembers; i++)
			oldest = Min(oldest, run->members[i].sync_ticket);
		*since = (TimestampTz) oldest;
		*last_at = GetCurrentTimestamp();
	}
	else if (o.kind == PS_OUT_BATCH && run->state == PS_STATE_LIVE)
	{
		/* up to date with nothing to commit: the barrier holds all the same */
		*since = (TimestampTz) m->sync_ticket;
		*last_at = GetCurrentTimestamp();
	}
}

Datum
ps_ingest_response(PG_FUNCTION_ARGS)
{
	char	   *name = ps_arg_text(fcinfo, 0, "name");
	char	   *shape = ps_arg_text(fcinfo, 4, NULL);
	PsMember   *m;
	PsRun	   *run;
	StringInfoData b;
	Datum		result;
	TimestampTz since;
	TimestampTz last_at;

	ps_require_arg(fcinfo, 1, "status");
	SPI_connect();
	run = load_run(name, shape, &m);
	if (run == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("subscription \"%s\" is stopped", name)));
	since = run_time(run, "up_to_date_since");
	last_at = run_time(run, "last_up_to_date_at");
	run->last_error = NULL;
	run->last_wait_ms = 0;
	run->last_applied = 0;

	/* an answer to a request of a lost batch: next_request asks again */
	if (!m->request_voided)
		take_response(fcinfo, run, m, &since, &last_at);
	m->in_flight = false;
	save(run, since, last_at);

	initStringInfo(&b);
	appendStringInfo(&b, "{\"state\": \"%s\", \"is_up_to_date\": %s, \"applied\": %lld, \"wait_ms\": %lld, \"error\": ",
					 ps_state_name(run->state),
					 run->state == PS_STATE_LIVE && run->notified ? "true" : "false",
					 (long long) run->last_applied, (long long) run->last_wait_ms);
	if (run->last_error)
		escape_json(&b, run->last_error);
	else
		appendStringInfoString(&b, "null");
	appendStringInfoString(&b, ", \"shape\": ");
	escape_json(&b, m->def->name);
	appendStringInfoChar(&b, '}');
	result = jsonb_result(&b);
	SPI_finish();
	PG_RETURN_DATUM(result);
}
