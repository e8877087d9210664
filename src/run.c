/*
 * run.c
 *	  A subscription being synced (see run.h): the failure policy, the
 *	  group's alignment, the request headers and the state it shows.
 */
#include "run.h"

#include "access/xact.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "jsonutil.h"
#include "protocol.h"
#include "shapeopts.h"

PsRun *
ps_run_create(PsRunMode mode, PsSubscription *sub, MemoryContext parent)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "pglite_sync run", ALLOCSET_DEFAULT_SIZES);
	PsRun	   *run = MemoryContextAllocZero(cxt, sizeof(PsRun));

	run->mode = mode;
	run->sub = sub;
	run->cxt = cxt;
	run->step_cxt = AllocSetContextCreate(cxt, "pglite_sync step", ALLOCSET_DEFAULT_SIZES);
	run->state = PS_STATE_STARTING;
	run->nmembers = sub->nshapes;
	run->members = MemoryContextAllocZero(cxt, sizeof(PsMember) * Max(run->nmembers, 1));
	for (int i = 0; i < run->nmembers; i++)
	{
		PsMember   *m = &run->members[i];

		ps_member_init(m, run, i, &sub->shapes[i], cxt);
		m->spool = ps_spool_create(cxt);
	}
	return run;
}

/*
 * alter_subscription committed: take the new URLs, headers and headers
 * function; positions, spools and everything else stay.  True if how the
 * run asks changed: then a shape waiting out a backoff or an error asks at
 * once, as the new values may be the fix.  A reload that changes none of
 * them (local writes enabled) keeps the throttling.
 */
bool
ps_run_reload(PsRun *run, PsSubscription *sub)
{
	bool		changed = run->sub->headers_function != sub->headers_function;

	for (int i = 0; i < run->nmembers; i++)
		for (int k = 0; k < sub->nshapes; k++)
		{
			PsMember   *m = &run->members[i];

			if (strcmp(m->def->name, sub->shapes[k].name) != 0)
				continue;
			changed |= strcmp(m->def->shape_json, sub->shapes[k].shape_json) != 0;
			ps_member_reload(m, &sub->shapes[k], run->cxt);
		}
	run->sub->headers_function = sub->headers_function;
	if (changed)
		for (int i = 0; i < run->nmembers; i++)
			run->members[i].retry_at = 0;
	return changed;
}

/* Release what is not memory: spool files. */
void
ps_run_close(PsRun *run)
{
	for (int i = 0; i < run->nmembers; i++)
		if (run->members[i].spool)
		{
			ps_spool_destroy(run->members[i].spool);
			run->members[i].spool = NULL;
		}
}

/* ---- state ---------------------------------------------------------------- */

const char *
ps_state_name(PsState state)
{
	switch (state)
	{
		case PS_STATE_STARTING:
			return "starting";
		case PS_STATE_INITIAL_SYNC:
			return "initial_sync";
		case PS_STATE_LIVE:
			return "live";
		case PS_STATE_BACKOFF:
			return "backoff";
		case PS_STATE_ERROR:
			return "error";
	}
	return "unknown";
}


void
ps_run_set_state(PsRun *run, PsState state)
{
	run->state = state;
	if (run->slot)
		ps_slot_set_state(run->slot, state, state == PS_STATE_LIVE && run->notified);
}

bool
ps_run_stop_requested(PsRun *run)
{
	return run->slot != NULL && ps_slot_stop_requested(run->slot, run->generation);
}

/*
 * What the members' positions say: catching up (from -1, after a refetch,
 * or before the first up-to-date of this run), or live.  A shape or a batch
 * that is failing keeps the state at backoff or error until it recovers.
 */
static PsState
progress_state(PsRun *run)
{
	if (run->failures > 0)
		return run->state;		/* a failed batch waits for its retry */
	for (int i = 0; i < run->nmembers; i++)
		if (run->members[i].failures > 0)
			return run->state;
	if (!run->notified)
		return PS_STATE_INITIAL_SYNC;
	for (int i = 0; i < run->nmembers; i++)
		if (run->members[i].from_start)
			return PS_STATE_INITIAL_SYNC;
	return PS_STATE_LIVE;
}

/* ---- requests ---------------------------------------------------------------- */

bool
ps_run_member_due(PsRun *run, PsMember *m, TimestampTz now)
{
	return !m->in_flight && m->retry_at <= now;
}

/*
 * Live (a long-poll) once caught up, unless wait_for_sync asked for a fresh
 * request: the ticket stamps the request for that barrier.
 */
bool
ps_run_request_live(PsRun *run, PsMember *m, uint64 *ticket)
{
	uint64		requested = 0;
	bool		sync_wanted = false;

	if (run->slot)
		sync_wanted = ps_slot_sync_wanted(run->slot, &requested);
	*ticket = requested;
	if (run->mode == PS_RUN_FOREGROUND || m->catch_up)
		return false;
	return m->live && !(sync_wanted && requested > m->sync_ticket);
}

/* Call the headers function as the owner; its jsonb result. */
static Datum
headers_function_result(PsRun *run)
{
	volatile Datum result = (Datum) 0;
	Oid			save_user;
	int			save_sec;

	GetUserIdAndSecContext(&save_user, &save_sec);
	if (save_user != run->sub->owner)
		SetUserIdAndSecContext(run->sub->owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
	PG_TRY();
	{
		if (ps_proc_aclcheck(run->sub->headers_function, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for function %s",
							format_procedure(run->sub->headers_function))));
		result = OidFunctionCall1(run->sub->headers_function, CStringGetTextDatum(run->sub->name));
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_user, save_sec);
	}
	PG_END_TRY();
	return result;
}

static void
call_headers_function(PsRun *run, List **names, List **values)
{
	json_t	   *j = ps_jsonb_load(DatumGetJsonbP(headers_function_result(run)));
	const char *key;
	json_t	   *v;

	if (!json_is_object(j))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("headers_function %s must return a JSON object of header names and string values",
						format_procedure(run->sub->headers_function))));
	json_object_foreach(j, key, v)
	{
		if (!json_is_string(v))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("headers_function %s returned a non-string value for header \"%s\"",
							format_procedure(run->sub->headers_function), key)));
		if (!ps_header_name_ok(key) || !ps_header_value_ok(json_string_value(v)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("headers_function %s returned an invalid header \"%s\"",
							format_procedure(run->sub->headers_function), key)));
		/* headers go on the wire as UTF-8 */
		*names = lappend(*names, pstrdup(key));
		*values = lappend(*values, pstrdup(json_string_value(v)));
	}
	json_decref(j);
}

void
ps_run_headers(PsRun *run, PsMember *m, bool in_txn, List **names, List **values)
{
	List	   *fn_names = NIL;
	List	   *fn_values = NIL;

	*names = NIL;
	*values = NIL;
	if (OidIsValid(run->sub->headers_function))
	{
#ifndef __PGLITE__
		MemoryContext cxt = CurrentMemoryContext;
		/* between the pages of a streamed snapshot none is active */
		bool		push = !in_txn || !ActiveSnapshotSet();

		if (!in_txn)
		{
			SetCurrentStatementStartTimestamp();
			StartTransactionCommand();
			MemoryContextSwitchTo(cxt);
		}
		if (push)
			PushActiveSnapshot(GetTransactionSnapshot());
		call_headers_function(run, &fn_names, &fn_values);
		if (push)
			PopActiveSnapshot();
		if (!in_txn)
		{
			/* the result lives in cxt, not in the transaction */
			CommitTransactionCommand();
			MemoryContextSwitchTo(cxt);
		}
#else
		call_headers_function(run, &fn_names, &fn_values);	/* always in the host's */
#endif
	}
	for (int i = 0; i < m->nheaders; i++)
	{
		*names = lappend(*names, m->header_names[i]);
		*values = lappend(*values, m->header_values[i]);
	}
	/* the function's headers win over the static ones of the same name */
	ps_headers_replace(names, values, fn_names, fn_values);
}

/* Append the headers in with_*, in place of those of the same names (any case). */
void
ps_headers_replace(List **names, List **values, List *with_names, List *with_values)
{
	List	   *kept_names = NIL;
	List	   *kept_values = NIL;
	ListCell   *a,
			   *b,
			   *c;

	forboth(a, *names, b, *values)
	{
		bool		replaced = false;

		foreach(c, with_names)
			if (pg_strcasecmp(lfirst(c), lfirst(a)) == 0)
				replaced = true;
		if (!replaced)
		{
			kept_names = lappend(kept_names, lfirst(a));
			kept_values = lappend(kept_values, lfirst(b));
		}
	}
	*names = list_concat(kept_names, with_names);
	*values = list_concat(kept_values, with_values);
}

/* ---- outcomes ------------------------------------------------------------------- */

/*
 * batch_rows and batch_bytes: what the shapes' responses added to the open
 * batch, and the changes of responses still arriving (parsed as they come).
 */
void
ps_run_publish_batch(PsRun *run)
{
	uint64		rows = 0;
	uint64		bytes = 0;

	if (run->slot == NULL)
		return;
	for (int i = 0; i < run->nmembers; i++)
	{
		PsMember   *m = &run->members[i];

		rows += m->batch_rows;
		bytes += m->batch_bytes;
		if (m->in_flight && m->resp_changes > 0)
		{
			rows += m->resp_changes;
			bytes += m->resp_bytes - Min(m->sse_counted, m->resp_bytes);
		}
	}
	ps_slot_set_batch(run->slot, bytes, rows);
}

/* An up-to-date with nothing to commit: the run is up to date all the same. */
static void
batch_done(PsRun *run)
{
	uint64		ticket = PG_UINT64_MAX;

	for (int i = 0; i < run->nmembers; i++)
	{
		ticket = Min(ticket, run->members[i].sync_ticket);
		ps_member_batch_discarded(&run->members[i]);
	}
	run->state = PS_STATE_LIVE;
	if (run->slot)
		ps_slot_batch_done(run->slot, ticket);
}

bool
ps_run_outcome(PsRun *run, PsMember *m, PsOutcome o)
{
	uint64		target;

	switch (o.kind)
	{
		case PS_OUT_INTERRUPTED:
			return false;
		case PS_OUT_PAGE:
			ps_run_set_state(run, progress_state(run));
			return false;
		case PS_OUT_BATCH:
			switch (ps_run_commit_due(run, &target))
			{
				case PS_COMMIT_NOT_READY:
					ps_run_set_state(run, progress_state(run));
					return false;
				case PS_COMMIT_NOTHING:
					batch_done(run);
					return false;
				case PS_COMMIT_DUE:
					return true;
			}
			return false;
		case PS_OUT_REFETCH:
			PS_DEBUG_LOG(run, "shape \"%s\": must refetch (new handle %s): restarting from offset -1",
						 m->def->name, m->handle[0] ? m->handle : "none");
			if (m->refetches > 3)
				ps_run_fail(run, m, PS_OUT_RETRY, -1,
							psprintf("the server keeps answering 409 (must-refetch) without progress (%d times)",
									 m->refetches), NULL, run->mode == PS_RUN_HOST);
			else
				ps_run_set_state(run, PS_STATE_INITIAL_SYNC);
			return false;
		case PS_OUT_RETRY:
		case PS_OUT_FATAL:
			ps_run_fail(run, m, o.kind, o.retry_after_ms, o.message, o.detail, run->mode == PS_RUN_HOST);
			return false;
	}
	return false;
}

/* ---- alignment --------------------------------------------------------------------- */

static ps_align_member *
align_of(PsRun *run)
{
	ps_align_member *a = palloc(sizeof(ps_align_member) * Max(run->nmembers, 1));

	for (int i = 0; i < run->nmembers; i++)
		a[i] = run->members[i].align;
	return a;
}

PsCommitDue
ps_run_commit_due(PsRun *run, uint64 *target)
{
	ps_align_member *a = align_of(run);

	if (!ps_align_target(a, run->nmembers, target))
		return PS_COMMIT_NOT_READY;
	if (run->retry_at > GetCurrentTimestamp())
		return PS_COMMIT_NOT_READY;
	if (!run->notified)
		return PS_COMMIT_DUE;	/* the first up-to-date of a run is announced */
	for (int i = 0; i < run->nmembers; i++)
	{
		PsMember   *m = &run->members[i];

		if (m->replace || ps_spool_has_upto(m->spool, *target) ||
			(m->position_dirty && ps_spool_count(m->spool) == 0))
			return PS_COMMIT_DUE;
	}
	/* nothing to apply, but writes acknowledged without a txid to sync */
	if (run->untxid_acked != 0 && ps_run_up_to_date_since(run) > run->untxid_acked)
		return PS_COMMIT_DUE;
	return PS_COMMIT_NOTHING;
}

TimestampTz
ps_run_up_to_date_since(PsRun *run)
{
	TimestampTz oldest = 0;

	for (int i = 0; i < run->nmembers; i++)
	{
		TimestampTz t = run->members[i].up_to_date_since;

		/* a shape not up to date yet holds every such write back */
		if (t == 0)
			return 0;
		if (oldest == 0 || t < oldest)
			oldest = t;
	}
	return oldest;
}

int
ps_run_laggards(PsRun *run, uint64 target, bool *lagging)
{
	return ps_align_laggards(align_of(run), run->nmembers, target, lagging);
}

TimestampTz
ps_run_next_wakeup(PsRun *run)
{
	TimestampTz t = run->retry_at;

	for (int i = 0; i < run->nmembers; i++)
	{
		PsMember   *m = &run->members[i];

		if (!m->in_flight && m->retry_at != 0 && (t == 0 || m->retry_at < t))
			t = m->retry_at;
	}
	return t;
}

/* ---- failures ------------------------------------------------------------------------ */

/*
 * SQLSTATE classes that retrying alone may fix: deadlocks and serialization
 * failures (40), lock timeouts (55P03), cancels (57014), lack of resources
 * (53: memory, disk), connections (08) and system errors (58).  Data errors
 * and the like need a fix elsewhere.
 */
bool
ps_error_is_transient(int sqlerrcode)
{
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_TRANSACTION_ROLLBACK:
		case ERRCODE_INSUFFICIENT_RESOURCES:
		case ERRCODE_CONNECTION_EXCEPTION:
		case ERRCODE_SYSTEM_ERROR:
			return true;
		default:
			break;
	}
	return sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE || sqlerrcode == ERRCODE_QUERY_CANCELED ||
		sqlerrcode == ERRCODE_OBJECT_IN_USE;
}

#ifndef __PGLITE__
static void record_error_in_own_transaction(PsRun *run, const char *message, const char *detail);
#endif

static void
record_error(PsRun *run, const char *message, const char *detail, bool in_txn)
{
	if (in_txn)
	{
		ps_catalog_record_error(run->sub->id, message, detail);
		return;
	}
#ifndef __PGLITE__
	record_error_in_own_transaction(run, message, detail);
#endif
}

#ifndef __PGLITE__
/* A worker records errors in a transaction of its own (the batch's aborted). */
static void
record_error_in_own_transaction(PsRun *run, const char *message, const char *detail)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		/* now() in it is last_error_at: not the time of the last commit */
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (ps_catalog_layout() != PS_LAYOUT_NONE)
			ps_catalog_record_error(run->sub->id, message, detail);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		MemoryContextSwitchTo(cxt);
	}
	PG_CATCH();
	{
		ErrorData  *e;

		MemoryContextSwitchTo(cxt);
		e = CopyErrorData();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		ereport(WARNING,
				(errmsg("pglite_sync: subscription \"%s\": could not record an error: %s",
						run->sub->name, e->message)));
	}
	PG_END_TRY();
}
#endif

/*
 * A failure of one shape's request (m) or of the batch (m NULL): the state
 * says backoff or error, last_error says why, and the next attempt waits
 * full-jitter backoff (retryable) or the cap (error), never less than the
 * server's Retry-After.  sync_now raises it instead.
 */
void
ps_run_fail(PsRun *run, PsMember *m, PsOutcomeKind kind, int64 retry_after_ms,
			const char *message, const char *detail, bool in_txn)
{
	int			attempt = m ? m->failures : run->failures;
	int64		wait_ms;

	if (run->mode == PS_RUN_FOREGROUND)
		ereport(ERROR,
				(errcode(kind == PS_OUT_RETRY ? ERRCODE_CONNECTION_FAILURE : ERRCODE_DATA_EXCEPTION),
				 errmsg("subscription \"%s\": %s", run->sub->name, message),
				 detail ? errdetail_internal("%s", detail) : 0));

	if (kind == PS_OUT_RETRY)
		wait_ms = ps_backoff_ms(ps_backoff_base_ms, ps_backoff_max_ms, attempt,
								pg_prng_double(&pg_global_prng_state), retry_after_ms);
	else
		wait_ms = Max((int64) ps_backoff_max_ms, retry_after_ms);
	if (m)
	{
		m->failures++;
		m->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms);
	}
	else
	{
		run->failures++;
		run->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms);
		/*
		 * The batch was rolled back; what the shapes spooled of it stays,
		 * received and not committed, until the retry applies it (or a
		 * restart from -1 drops it).
		 */
		ps_run_publish_batch(run);
	}
	if (run->slot)
		ps_slot_count_error(run->slot);
	ps_run_set_state(run, kind == PS_OUT_RETRY ? PS_STATE_BACKOFF : PS_STATE_ERROR);
	run->last_error = message;
	run->last_wait_ms = wait_ms;
	ereport(LOG,
			(errmsg("pglite_sync: subscription \"%s\"%s%s%s: %s; retrying in %.1f s",
					run->sub->name, m && run->nmembers > 1 ? ", shape \"" : "",
					m && run->nmembers > 1 ? m->def->name : "",
					m && run->nmembers > 1 ? "\"" : "", message, wait_ms / 1000.0)));
	record_error(run, message, detail, in_txn);
	if (run->mode != PS_RUN_HOST)
		pgstat_report_activity(STATE_IDLE, psprintf("%s, retrying in %.1f s",
													kind == PS_OUT_RETRY ? "backoff" : "error",
													wait_ms / 1000.0));
}

/*
 * An ERROR escaped a step.  A failed batch is first redone row by row, so
 * that the error names its key and column; transient errors (deadlocks,
 * resources) back off, others wait at the cap.
 */
void
ps_run_failed(PsRun *run, PsMember *m, ErrorData *e, bool in_commit)
{
	StringInfoData detail;
	bool		transient = ps_error_is_transient(e->sqlerrcode);

	if (!in_commit && m)
		ps_spool_response_failed(m->spool); /* keep complete responses only */
	ps_run_publish_batch(run);	/* without a response the ERROR cut short */
	/* the owner sees all of it; the details may quote data */
	initStringInfo(&detail);
	appendStringInfoString(&detail, e->message ? e->message : "unknown error");
	if (e->detail)
		appendStringInfo(&detail, "\nDETAIL: %s", e->detail);
	if (e->hint)
		appendStringInfo(&detail, "\nHINT: %s", e->hint);
	if (e->context)
		appendStringInfo(&detail, "\nCONTEXT: %s", e->context);

	if (in_commit && !run->row_by_row && !transient && run->mode != PS_RUN_FOREGROUND)
	{
		/* COPY, json and multi-row inserts name no key: redo it row by row */
		run->row_by_row = true;
		ereport(LOG,
				(errmsg("pglite_sync: subscription \"%s\": batch failed, retrying it row by row: %s",
						run->sub->name, e->message)));
		return;
	}
	ps_run_fail(run, in_commit ? NULL : m, transient ? PS_OUT_RETRY : PS_OUT_FATAL, -1,
				e->message ? pstrdup(e->message) : "unknown error", detail.data, false);
}
