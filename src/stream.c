/*
 * stream.c
 *	  The Electric protocol loop of one subscription, run by its background
 *	  worker (worker.c) or in the foreground by electric.sync_now()
 *	  (foreground.c).
 *
 *   offset -1 ─> paged catch-up ─> up-to-date ─> apply ─> live long-poll ─┐
 *                  ^ 409 / must-refetch: back to -1, replace at next apply └─┘
 *
 * Responses are split into messages as they arrive and changes are spooled
 * to a temporary file; nothing is applied before up-to-date, and then the
 * whole batch and the new stream position commit in one transaction, so a
 * crash at any instant neither loses nor duplicates a change.  No
 * transaction is open while we wait on the network.
 */
#include "pglite_sync.h"

#include "access/xact.h"
#include "commands/async.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "apply.h"
#include "bodysplit.h"
#include "catalog.h"
#include "http.h"
#include "message.h"
#include "protocol.h"
#include "shapeopts.h"
#include "spool.h"
#include "stream.h"

#define MAX_MESSAGE_BYTES	(256 * 1024 * 1024)
#define REFETCH_LOOP_LIMIT	3

#define DEBUG_LOG(w, ...) \
	do { if (ps_debug) ereport(LOG, (errmsg_internal("pglite_sync: subscription \"%s\": %s", \
		(w)->sub->name, psprintf(__VA_ARGS__)))); } while (0)

/* ---- slot bookkeeping ------------------------------------------------------ */

static void
set_state(PsStream *w, PsState state, bool up_to_date)
{
	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	w->slot->state = state;
	w->slot->up_to_date = up_to_date;
	LWLockRelease(ps_shared->lock);
}

bool
ps_stream_stop_requested(PsStream *w)
{
	bool		stop;

	LWLockAcquire(ps_shared->lock, LW_SHARED);
	stop = !w->slot->wanted || w->slot->stop_generation == w->args.generation ||
		ps_database_blocked(w->args.dbid);
	LWLockRelease(ps_shared->lock);
	return stop;
}

/* Has wait_for_sync asked for a fresh non-live request? */
static bool
sync_wanted(PsStream *w, uint64 *requested)
{
	bool		wanted;

	LWLockAcquire(ps_shared->lock, LW_SHARED);
	*requested = w->slot->sync_requested;
	wanted = w->slot->sync_requested > w->slot->sync_done;
	LWLockRelease(ps_shared->lock);
	return wanted;
}

/*
 * The subscription is gone, stopped or replaced: a worker leaves for good
 * (releasing its slot if asked), a foreground run reports it.
 */
static void
leave(PsStream *w, bool release, const char *why)
{
	if (w->foreground)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("subscription \"%s\": %s", w->sub ? w->sub->name : "?", why)));
	if (w->sub)
		DEBUG_LOG(w, "worker exiting: %s", why);
	if (release)
		ps_slot_release(w->slotno, w->start_seq);
	ps_stream_close(w);
	proc_exit(0);
}

/* ---- interrupts -------------------------------------------------------------- */

/* Latch set: true abandons the transfer or sleep in progress. */
static bool
on_latch(void *arg)
{
	PsStream   *w = arg;
	uint64		requested;

	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending && !w->foreground)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
		DEBUG_LOG(w, "configuration reloaded");
	}
	if (ps_stream_stop_requested(w))
		return true;
	if (w->request_live && sync_wanted(w, &requested) && requested > w->request_ticket)
		return true;			/* wait_for_sync: replace the long-poll */
	return false;
}

/* ---- failures ------------------------------------------------------------------ */

static void
record_error(PsStream *w, const char *message)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		StartTransactionCommand();
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (ps_extension_ready())
			ps_catalog_record_error(w->sub->id, message);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		MemoryContextSwitchTo(cxt);		/* not TopMemoryContext */
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
						w->sub->name, e->message)));
	}
	PG_END_TRY();
}

/* Does the extension still exist?  If not, this worker has nothing to do. */
static void
exit_if_extension_gone(PsStream *w)
{
	bool		ready;
	MemoryContext cxt = CurrentMemoryContext;

	StartTransactionCommand();
	ready = ps_extension_ready();
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	if (!ready)
		leave(w, true, "the extension was dropped");
}

static void
fail(PsStream *w, PsFailureKind kind, int64 retry_after_ms, const char *message)
{
	int64		wait_ms;

	if (w->foreground)
		ereport(ERROR,
				(errcode(kind == PS_FAIL_RETRY ? ERRCODE_CONNECTION_FAILURE : ERRCODE_DATA_EXCEPTION),
				 errmsg("subscription \"%s\": %s", w->sub->name, message)));

	if (kind == PS_FAIL_RETRY)
		wait_ms = ps_backoff_ms(ps_backoff_base_ms, ps_backoff_max_ms, w->failures,
								pg_prng_double(&pg_global_prng_state), retry_after_ms);
	else
		wait_ms = Max((int64) ps_backoff_max_ms, retry_after_ms);
	w->failures++;
	set_state(w, kind == PS_FAIL_RETRY ? PS_STATE_BACKOFF : PS_STATE_ERROR, false);
	ereport(LOG,
			(errmsg("pglite_sync: subscription \"%s\": %s; retrying in %.1f s",
					w->sub->name, message, wait_ms / 1000.0)));
	record_error(w, message);
	pgstat_report_activity(STATE_IDLE, psprintf("%s, retrying in %.1f s",
												kind == PS_FAIL_RETRY ? "backoff" : "error",
												wait_ms / 1000.0));
	if (ps_http_sleep(w->http, (long) wait_ms, on_latch, w) && ps_stream_stop_requested(w))
		leave(w, false, "stop requested");
}

/* ---- the response body: messages into the spool -------------------------------- */

static int
on_message(void *arg, const char *json, size_t len, bool exact, size_t *used)
{
	PsStream   *w = arg;
	ps_message *m = &w->msg;
	MemoryContext old = MemoryContextSwitchTo(w->worker_cxt);
	int			rc = exact ? ps_message_parse(m, json, len) :
		ps_message_parse_prefix(m, json, len, used);

	/* the parser keeps its arena across messages: worker_cxt, not iter_cxt */
	MemoryContextSwitchTo(old);
	if (rc < 0 && !exact)
		return PS_SPLIT_UNSURE;		/* incomplete here, or malformed: let the splitter decide */
	if (rc < 0)
	{
		w->resp_fail_kind = PS_FAIL_RETRY;
		snprintf(w->resp_error, sizeof(w->resp_error), "malformed message in response: %s", m->error);
		return 1;
	}
	if (!exact)
		len = *used;
	switch (m->kind)
	{
		case PS_MSG_CHANGE:
			if (m->key == NULL || m->op == PS_OP_NONE || !m->has_value)
			{
				w->resp_fail_kind = PS_FAIL_FATAL;
				if (m->key == NULL)
					snprintf(w->resp_error, sizeof(w->resp_error),
							 "the server sent a change message without a key");
				else if (m->op == PS_OP_NONE)
					snprintf(w->resp_error, sizeof(w->resp_error),
							 "the server sent a change of key %.*s with unknown operation \"%.*s\"",
							 (int) Min(m->key_len, 200), m->key,
							 (int) Min(m->operation_len, 40), m->operation ? m->operation : "");
				else
					snprintf(w->resp_error, sizeof(w->resp_error),
							 "the server sent a change of key %.*s without a value",
							 (int) Min(m->key_len, 200), m->key);
				return 1;
			}
			ps_spool_add(w->spool, m, json, len, OidIsValid(w->sub->map_function));
			w->resp_changes++;
			break;
		case PS_MSG_CONTROL:
			if (m->control == PS_CTL_UP_TO_DATE)
				w->resp_up_to_date = true;
			else if (m->control == PS_CTL_MUST_REFETCH)
			{
				w->resp_must_refetch = true;
				return 1;		/* nothing after it matters */
			}
			break;
		default:
			/* events (move-in/out), unknown messages: skipped by protocol */
			break;
	}
	return 0;
}

static bool
on_body(void *arg, const char *data, size_t len, const PsHttpResponse *resp)
{
	PsStream   *w = arg;
	MemoryContext cxt = CurrentMemoryContext;
	int			rc = 0;

	if (!w->resp_checked)
	{
		w->resp_checked = true;
		if (resp->has_content_type &&
			!ps_content_type_ok(resp->content_type, strlen(resp->content_type)))
		{
			w->resp_fail_kind = PS_FAIL_RETRY;
			snprintf(w->resp_error, sizeof(w->resp_error),
					 "unexpected content type \"%s\" in a shape response", resp->content_type);
			return false;
		}
	}

	/* we are inside libcurl: an ERROR must not unwind through it */
	PG_TRY();
	{
		rc = ps_bodysplit_feed_parsing(&w->split, data, len, on_message, w);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		w->cb_error = CopyErrorData();
		FlushErrorState();
		rc = 1;
	}
	PG_END_TRY();

	if (rc == -1)
	{
		w->resp_fail_kind = PS_FAIL_RETRY;
		snprintf(w->resp_error, sizeof(w->resp_error), "malformed response body: %s", w->split.error);
	}
	/* a must-refetch ends reading without being a failure */
	return rc == 0 || (rc == 1 && w->resp_must_refetch && w->resp_error[0] == '\0' && !w->cb_error);
}

/* ---- 409 and must-refetch -------------------------------------------------------- */

static void
refetch(PsStream *w, const char *new_handle)
{
	ps_spool_clear(w->spool);
	w->apply_pending = false;
	strlcpy(w->handle, new_handle ? new_handle : "", sizeof(w->handle));
	strcpy(w->offset, "-1");
	w->cursor[0] = '\0';
	w->live = false;
	w->replace = true;
	w->from_start = true;
	w->row_by_row = false;
	snprintf(w->buster, sizeof(w->buster), "%016llx",
			 (unsigned long long) pg_prng_uint64(&pg_global_prng_state));
	w->refetches++;
	set_state(w, PS_STATE_INITIAL_SYNC, false);
	DEBUG_LOG(w, "must refetch (new handle %s): restarting from offset -1",
			  new_handle ? new_handle : "none");
	if (w->refetches > REFETCH_LOOP_LIMIT)
		fail(w, PS_FAIL_RETRY, -1,
			 psprintf("the server keeps answering 409 (must-refetch) without progress (%d times)",
					  w->refetches));
}

/* ---- applying a complete batch ------------------------------------------------- */

static void
apply_batch(PsStream *w)
{
	int64		count = ps_spool_count(w->spool);
	bool		moved = strcmp(w->handle, w->committed_handle) != 0 ||
		strcmp(w->offset, w->committed_offset) != 0;
	bool		need_txn = count > 0 || w->replace || moved || !w->notified;
	PsApplyResult res;

	memset(&res, 0, sizeof(res));
	if (need_txn)
	{
		char	   *activity = psprintf("applying %lld changes to %s", (long long) count,
										quote_qualified_identifier(w->sub->schema_name, w->sub->table_name));

		pgstat_report_activity(STATE_RUNNING, activity);
		if (!w->foreground)
		{
			SetCurrentStatementStartTimestamp();
			StartTransactionCommand();
			SPI_connect();
		}
		/* (foreground: inside sync_now's transaction, SPI connected) */
		PushActiveSnapshot(GetTransactionSnapshot());

		if (!ps_catalog_lock_for_apply(w->sub->id, w->sub->version))
		{
			PopActiveSnapshot();
			if (!w->foreground)
			{
				SPI_finish();
				AbortCurrentTransaction();
			}
			leave(w, true, "the subscription was stopped or changed");
		}

		if (count > 0 || w->replace)
		{
			Oid			save_user;
			int			save_sec;
			int			guc_level;

			if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(w->sub->owner)))
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_OBJECT),
						 errmsg("the owner of subscription \"%s\" (role %u) no longer exists",
								w->sub->name, w->sub->owner)));
			/* user triggers can tell synced writes from local ones */
			(void) set_config_option("electric.syncing", "true", PGC_USERSET, PGC_S_SESSION,
									 GUC_ACTION_LOCAL, true, 0, false);
			/*
			 * As the owner, in a restricted operation, as PostgreSQL applies
			 * logical replication as a table owner; whatever settings the
			 * owner's triggers change end with the batch, before our own
			 * catalog statements run.
			 */
			GetUserIdAndSecContext(&save_user, &save_sec);
			SetUserIdAndSecContext(w->sub->owner,
								   save_sec | SECURITY_LOCAL_USERID_CHANGE |
								   SECURITY_RESTRICTED_OPERATION);
			guc_level = NewGUCNestLevel();
			ps_apply_batch(w->sub, w->spool, w->replace, w->from_start, w->row_by_row, &res);
			AtEOXact_GUC(false, guc_level);
			SetUserIdAndSecContext(save_user, save_sec);
		}

		ps_catalog_save_state(w->sub->id, w->handle[0] ? w->handle : NULL, w->offset,
							  w->sub->target_fingerprint, res.rows);
		/* applied data and up to date, or the first up-to-date of this run */
		if (count > 0 || w->replace || !w->notified)
			Async_Notify(PS_NOTIFY_CHANNEL, w->sub->name);

		PopActiveSnapshot();
		if (w->foreground)
			SPI_commit();
		else
		{
			SPI_finish();
			CommitTransactionCommand();
		}
		pgstat_report_stat(false);
		DEBUG_LOG(w, "committed batch: %lld changes, %lld rows written (%lld by %s, %lld deletes already applied), handle %s, offset %s%s",
				  (long long) count, (long long) res.rows, (long long) res.bulk_rows,
				  res.method ? res.method : "insert", (long long) res.skipped,
				  w->handle, w->offset, w->replace ? ", table rows replaced" : "");
	}

	ps_spool_clear(w->spool);
	w->apply_pending = false;
	w->replace = false;
	w->from_start = false;
	w->row_by_row = false;
	w->notified = true;
	w->live = true;
	w->refetches = 0;
	w->failures = 0;
	strlcpy(w->committed_handle, w->handle, sizeof(w->committed_handle));
	strlcpy(w->committed_offset, w->offset, sizeof(w->committed_offset));

	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	w->slot->state = PS_STATE_LIVE;
	w->slot->up_to_date = true;
	if (w->batch_ticket > w->slot->sync_done)
		w->slot->sync_done = w->batch_ticket;
	LWLockRelease(ps_shared->lock);
	ConditionVariableBroadcast(&ps_shared->cv);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* ---- one request ---------------------------------------------------------------- */

static const char *
status_message(const PsHttpResponse *r)
{
	return psprintf("the server answered %ld%s%.*s", r->status,
					r->error_body_len ? ": " : "",
					(int) Min(r->error_body_len, 300), r->error_body);
}

static void
do_request(PsStream *w)
{
	ps_strbuf	url;
	PsHttpResponse resp;
	uint64		requested;
	bool		live;

	if (!ps_host_allowed(ps_allowed_hosts, w->host))
	{
		fail(w, PS_FAIL_FATAL, -1,
			 psprintf("host \"%s\" is not in pglite_sync.allowed_hosts", w->host));
		return;
	}

	/* one look at the tickets: a sync asked for now gets a fresh request */
	LWLockAcquire(ps_shared->lock, LW_SHARED);
	requested = w->slot->sync_requested;
	live = w->live && !w->foreground && requested <= w->slot->sync_done;
	w->request_ticket = requested;
	LWLockRelease(ps_shared->lock);
	w->request_live = live;

	ps_strbuf_init(&url);
	ps_request_url(&url, w->base_url, w->offset, w->handle, live, w->cursor,
				   w->buster[0] ? w->buster : NULL);
	pgstat_report_activity(STATE_RUNNING,
						   psprintf("%s %s", live ? "long-polling" : "fetching", url.data));
	DEBUG_LOG(w, "GET %s", url.data);

	/* per-response state; the splitter's buffer lives in iter_cxt */
	ps_spool_response_failed(w->spool);	/* whatever an ERROR left half-read */
	ps_bodysplit_init(&w->split, MAX_MESSAGE_BYTES);
	w->resp_up_to_date = false;
	w->resp_must_refetch = false;
	w->resp_checked = false;
	w->resp_changes = 0;
	w->resp_error[0] = '\0';
	w->cb_error = NULL;

	ps_http_get(w->http, url.data, live, on_body, w, on_latch, w, &resp);
	w->request_live = false;

	if (resp.outcome == PS_HTTP_DONE && resp.status >= 200 && resp.status < 300 &&
		!w->resp_must_refetch && ps_bodysplit_finish(&w->split) != 0)
	{
		resp.outcome = PS_HTTP_BODY_REJECTED;
		w->resp_fail_kind = PS_FAIL_RETRY;
		snprintf(w->resp_error, sizeof(w->resp_error),
				 "truncated response body: %s", w->split.error);
	}

	/* only a complete 200 keeps what it spooled */
	if (resp.outcome != PS_HTTP_DONE || w->resp_must_refetch || resp.status != 200)
		ps_spool_response_failed(w->spool);

	DEBUG_LOG(w, "response: outcome %d, status %ld, %zu bytes in %.3f s, %lld changes%s, handle %s, offset %s",
			  (int) resp.outcome, resp.status, resp.body_bytes, resp.seconds,
			  (long long) w->resp_changes, w->resp_up_to_date ? ", up-to-date" : "",
			  resp.has_handle ? resp.handle : "-", resp.has_offset ? resp.offset : "-");

	if (w->cb_error)
		ReThrowError(w->cb_error);

	switch (resp.outcome)
	{
		case PS_HTTP_INTERRUPTED:
			return;				/* stop or wait_for_sync: the loop decides */
		case PS_HTTP_FAILED:
			fail(w, PS_FAIL_RETRY, -1, psprintf("request failed: %s", resp.error));
			return;
		case PS_HTTP_TOO_LARGE:
			fail(w, PS_FAIL_FATAL, -1, resp.error);
			return;
		case PS_HTTP_BODY_REJECTED:
			if (w->resp_must_refetch)
				break;
			fail(w, w->resp_fail_kind, -1, w->resp_error);
			return;
		case PS_HTTP_DONE:
			break;
	}

	switch (ps_classify_status(resp.status))
	{
		case PS_STATUS_REFETCH:
			refetch(w, resp.has_handle ? resp.handle : NULL);
			return;
		case PS_STATUS_RETRY:
			fail(w, PS_FAIL_RETRY, resp.retry_after_ms, status_message(&resp));
			return;
		case PS_STATUS_FATAL:
			fail(w, PS_FAIL_FATAL, resp.retry_after_ms, status_message(&resp));
			return;
		case PS_STATUS_EMPTY:
			/* legacy live timeout: up to date, nothing new */
			if (resp.has_offset)
				strlcpy(w->offset, resp.offset, sizeof(w->offset));
			if (resp.has_cursor)
				strlcpy(w->cursor, resp.cursor, sizeof(w->cursor));
			w->resp_up_to_date = true;
			break;
		case PS_STATUS_OK:
			if (w->resp_must_refetch)
			{
				refetch(w, NULL);
				return;
			}
			if (!resp.has_handle || !resp.has_offset || (live && !resp.has_cursor))
			{
				ps_spool_response_failed(w->spool);
				fail(w, PS_FAIL_RETRY, -1,
					 psprintf("response lacks the %s header (a proxy may be hiding electric-* headers)",
							  !resp.has_handle ? "electric-handle" :
							  !resp.has_offset ? "electric-offset" : "electric-cursor"));
				return;
			}
			{
				ps_offset	o;

				if (!ps_offset_parse(resp.offset, strlen(resp.offset), &o) ||
					o.kind != PS_OFFSET_LOG)
				{
					ps_spool_response_failed(w->spool);
					fail(w, PS_FAIL_RETRY, -1,
						 psprintf("response has an invalid electric-offset \"%s\"", resp.offset));
					return;
				}
			}
			ps_spool_response_done(w->spool);
			strlcpy(w->handle, resp.handle, sizeof(w->handle));
			strlcpy(w->offset, resp.offset, sizeof(w->offset));
			if (resp.has_cursor)
				strlcpy(w->cursor, resp.cursor, sizeof(w->cursor));
			break;
	}

	/* a good response */
	w->buster[0] = '\0';
	w->failures = 0;
	if (w->resp_up_to_date)
	{
		w->apply_pending = true;
		w->batch_ticket = w->request_ticket;
		apply_batch(w);
	}
	else if (w->live)
		set_state(w, PS_STATE_LIVE, false);		/* a batch is open */
	else
		set_state(w, PS_STATE_INITIAL_SYNC, false);
}


/* ---- set-up and the step ------------------------------------------------------- */

bool
ps_stream_load(PsStream *w, PsSubscription *sub)
{
	char		err[512];
	MemoryContext old;

	if (sub == NULL || !sub->enabled)
		return false;
	w->sub = sub;

	old = MemoryContextSwitchTo(w->worker_cxt);
	if (ps_shape_parse(sub->shape_json, strlen(sub->shape_json), &w->shape, err, sizeof(err)) < 0)
		elog(ERROR, "pglite_sync: stored shape of subscription \"%s\" is invalid: %s", sub->name, err);
	{
		ps_strbuf	b;

		ps_strbuf_init(&b);
		ps_shape_base_url(&w->shape, &b);
		w->base_url = b.data;
	}
	w->host = ps_url_host(w->shape.url);
	MemoryContextSwitchTo(old);

	/* resume only a keyed stream written for the same target and owner */
	if (sub->shape_key && sub->handle && sub->offset && sub->state_fingerprint &&
		strcmp(sub->state_fingerprint, sub->target_fingerprint) == 0)
	{
		strlcpy(w->handle, sub->handle, sizeof(w->handle));
		strlcpy(w->offset, sub->offset, sizeof(w->offset));
		strlcpy(w->committed_handle, sub->handle, sizeof(w->committed_handle));
		strlcpy(w->committed_offset, sub->offset, sizeof(w->committed_offset));
	}
	else
	{
		strcpy(w->offset, "-1");
		w->replace = true;
		w->from_start = true;
	}
	return true;
}

void
ps_stream_open(PsStream *w)
{
	MemoryContext old = MemoryContextSwitchTo(w->worker_cxt);
	const char **names = palloc(sizeof(char *) * (w->shape.nheaders + 1));
	const char **values = palloc(sizeof(char *) * (w->shape.nheaders + 1));

	for (int i = 0; i < w->shape.nheaders; i++)
	{
		names[i] = w->shape.headers[i].name;
		values[i] = w->shape.headers[i].value;
	}
	w->http = ps_http_create();
	ps_http_set_headers(w->http, names, values, w->shape.nheaders);
	w->spool = ps_spool_create(w->worker_cxt);
	ps_message_init(&w->msg);
	MemoryContextSwitchTo(old);
}

/* Release what is not memory: the curl handles and sockets, the spool file. */
void
ps_stream_close(PsStream *w)
{
	if (w->http)
		ps_http_destroy(w->http);
	w->http = NULL;
	if (w->spool)
		ps_spool_destroy(w->spool);
	w->spool = NULL;
}

void
ps_stream_step(PsStream *w)
{
	if (w->apply_pending)
		apply_batch(w);
	else
		do_request(w);
}

/*
 * A worker's step raised an ERROR (the transaction is already aborted).
 * A failed bulk load is retried row by row at once, so that the error names
 * the key and column; anything else is recorded and retried at the cap.
 */
void
ps_stream_failed(PsStream *w, ErrorData *e)
{
	StringInfoData msg;
	bool		was_apply = w->apply_pending;

	if (!was_apply)
		ps_spool_response_failed(w->spool);	/* keep complete responses only */
	exit_if_extension_gone(w);

	initStringInfo(&msg);
	appendStringInfoString(&msg, e->message ? e->message : "unknown error");
	if (e->detail)
		appendStringInfo(&msg, "\nDETAIL: %s", e->detail);
	if (e->hint)
		appendStringInfo(&msg, "\nHINT: %s", e->hint);
	if (e->context)
		appendStringInfo(&msg, "\nCONTEXT: %s", e->context);

	if (was_apply && !w->row_by_row && !w->foreground)
	{
		/* COPY, json and multi-row inserts name no key: redo it row by row */
		w->row_by_row = true;
		ereport(LOG,
				(errmsg("pglite_sync: subscription \"%s\": batch failed, retrying it row by row: %s",
						w->sub->name, e->message)));
	}
	else
		fail(w, PS_FAIL_FATAL, -1, msg.data);
}
