/*
 * worker.c
 *	  The background worker of one subscription: attach to its slot,
 *	  connect as its owner, and drive its run (run.c): every shape's
 *	  requests in one pool of transfers, waited on together with the latch,
 *	  commits when the group's alignment allows.  Errors are recorded and
 *	  retried, never a reason to exit; a stop, a dropped extension or a
 *	  deleted subscription is.
 *
 *	  The same loop runs in a backend for electric.sync_now() (foreground.c),
 *	  where errors are raised instead and it ends at the first up-to-date.
 */
#include "pglite_sync.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "driver.h"
#include "http.h"
#include "run.h"
#include "upload.h"

/* a shape the group waits for is asked again after this long in a long-poll */
#define LAGGARD_NUDGE_MS 100
/* a streamed snapshot looks this often for lock requests it holds up */
#define YIELD_CHECK_MS 200

struct PsDriver
{
	PsRun	   *run;
	PsHttpPool *pool;
	PsHttpXfer **xfers;			/* by member */
	PsResponse *resps;			/* by member */
	bool		commit_pending;
	bool		in_commit;
	bool		in_upload;
	PsMember   *current;		/* the member whose request a step is handling */
	TimestampTz yield_check_at; /* next look for lock requests a snapshot holds up */
	PsUpload   *upload;			/* local writes (workers only) */
};

/* ---- set-up ------------------------------------------------------------------ */

static PsHttpBody
body_cb(void *arg, const char *data, size_t len, const PsResponse *resp)
{
	PsMember   *m = arg;
	PsBodyVerdict v = ps_member_response_body(m, data, len, resp);

	/* a paused piece comes again: count it then */
	if (m->run->slot && v != PS_BODY_PAUSE)
	{
		ps_slot_count_bytes(m->run->slot, len);
		m->resp_bytes = resp->body_bytes;
		if (m->resp_changes > 0)
			ps_run_publish_batch(m->run);
	}
	return v == PS_BODY_OK ? PS_HTTP_BODY_OK : v == PS_BODY_PAUSE ? PS_HTTP_BODY_PAUSE : PS_HTTP_BODY_STOP;
}

PsDriver *
ps_driver_create(PsRun *run)
{
	PsDriver   *d = MemoryContextAllocZero(run->cxt, sizeof(PsDriver));

	d->run = run;
	d->pool = ps_http_pool_create();
	d->xfers = MemoryContextAllocZero(run->cxt, sizeof(PsHttpXfer *) * Max(run->nmembers, 1));
	d->resps = MemoryContextAllocZero(run->cxt, sizeof(PsResponse) * Max(run->nmembers, 1));
	for (int i = 0; i < run->nmembers; i++)
		d->xfers[i] = ps_http_xfer_create(d->pool, &run->members[i]);
	if (run->mode == PS_RUN_WORKER)
		d->upload = ps_upload_create(run, d->pool);
	return d;
}

void
ps_driver_destroy(PsDriver *d)
{
	if (d == NULL)
		return;
	ps_http_pool_destroy(d->pool);
	d->pool = NULL;
	ps_run_close(d->run);
}

/* ---- requests ------------------------------------------------------------------ */

static void
start_request(PsDriver *d, PsMember *m)
{
	PsRun	   *run = d->run;
	uint64		ticket;
	bool		live = ps_run_request_live(run, m, &ticket);
	List	   *names;
	List	   *values;
	char	   *url;

	d->current = m;
	ps_run_headers(run, m, run->mode != PS_RUN_WORKER || run->snap_open, &names, &values);
	url = ps_member_request_url(m, live);
	pgstat_report_activity(STATE_RUNNING, psprintf("%s %s", m->request_sse ? "streaming" :
												   live ? "long-polling" : "fetching", url));
	PS_DEBUG_LOG(run, "GET %s", url);
	ps_member_response_begin(m, live, ticket);
	ps_http_start(d->xfers[m->index], url, names, values, live, m->request_sse, body_cb, m,
				  &d->resps[m->index]);
	d->current = NULL;
}

/*
 * wait_for_sync asked for a fresh request, or the group waits for a shape
 * stuck in a long-poll: abandon those long-polls (they restart non-live).
 */
static void
interrupt_stale_long_polls(PsDriver *d)
{
	PsRun	   *run = d->run;
	uint64		requested = 0;
	bool		sync_wanted = run->slot && ps_slot_sync_wanted(run->slot, &requested);

	for (int i = 0; i < run->nmembers; i++)
	{
		PsMember   *m = &run->members[i];

		if (m->in_flight && m->request_live && sync_wanted && requested > m->request_ticket)
			ps_http_abort(d->xfers[i]);
	}
}

static void
nudge_laggards(PsDriver *d)
{
	PsRun	   *run = d->run;
	uint64		target;
	bool	   *lagging;
	TimestampTz now = GetCurrentTimestamp();

	if (run->nmembers < 2 || ps_run_commit_due(run, &target) == PS_COMMIT_NOT_READY)
		return;
	lagging = palloc(sizeof(bool) * run->nmembers);
	if (ps_run_laggards(run, target, lagging) == 0)
		return;
	for (int i = 0; i < run->nmembers; i++)
	{
		PsMember   *m = &run->members[i];

		if (!lagging[i])
			continue;
		m->catch_up = true;
		/* a long-poll whose answer is already arriving is let finish (a stream is
		 * asked again: its keep-alives say nothing of the group's LSN) */
		if (m->in_flight && m->request_live && (d->resps[i].body_bytes == 0 || m->request_sse) &&
			TimestampDifferenceExceeds(m->request_started, now, LAGGARD_NUDGE_MS))
		{
			PS_DEBUG_LOG(run, "shape \"%s\" lags the group: asking it again", m->def->name);
			ps_http_abort(d->xfers[i]);
		}
	}
}

/* ---- one step -------------------------------------------------------------------- */

/* A streamed snapshot is rolled back: its next page request is stale too. */
static void
abandon_snapshot(PsDriver *d)
{
	PsMember   *m = &d->run->members[0];

	if (!ps_run_snapshot_abandon(d->run))
		return;
	if (m->in_flight)
	{
		ps_http_abort(d->xfers[m->index]);
		m->in_flight = false;
	}
}

/*
 * An event stream paused at the end of a batch: the batch's outcome now;
 * the stream stays paused until the commit it may make is done.
 */
static void
handle_sse_batch(PsDriver *d, PsMember *m)
{
	PsRun	   *run = d->run;
	int64		changes = m->resp_changes;
	PsOutcome	o;

	d->current = m;
	o = ps_member_sse_batch(m, &d->resps[m->index]);
	PS_DEBUG_LOG(run, "event stream: %lld changes, up-to-date, offset %s",
				 (long long) changes, m->offset);
	if (o.kind != PS_OUT_BATCH)
	{
		/* the stream is no good: drop it, the outcome says why */
		ps_http_abort(d->xfers[m->index]);
		m->in_flight = false;
	}
	if (ps_run_outcome(run, m, o))
		d->commit_pending = true;
	d->current = NULL;
}

/* Streams paused at a batch go on once no commit waits (they may pause again). */
static void
resume_streams(PsDriver *d)
{
	for (int i = 0; i < d->run->nmembers; i++)
	{
		PsMember   *m = &d->run->members[i];

		if (!m->in_flight || !m->request_sse || m->sse_batch)
			continue;
		d->current = m;
		ps_http_resume(d->xfers[i]);
		d->current = NULL;
		if (m->sse_batch)
			handle_sse_batch(d, m);
	}
}

static void
handle_done(PsDriver *d, PsHttpXfer *x)
{
	PsRun	   *run = d->run;
	PsMember   *m;
	PsResponse *resp;
	PsOutcome	o;

	if (ps_upload_owns(d->upload, x))
	{
		d->in_upload = true;
		ps_upload_done(d->upload);
		d->in_upload = false;
		return;
	}
	m = ps_http_xfer_owner(x);
	resp = &d->resps[m->index];

	d->current = m;
	o = ps_member_response_end(m, resp);
	PS_DEBUG_LOG(run, "response: outcome %d, status %ld, %zu bytes in %.3f s, %lld changes%s, handle %s, offset %s",
				 (int) resp->outcome, resp->status, resp->body_bytes, resp->seconds,
				 (long long) m->resp_changes, m->resp_up_to_date ? ", up-to-date" : "",
				 resp->has_handle ? resp->handle : "-", resp->has_offset ? resp->offset : "-");
	/* a rejected token: ask the headers function again at once, then back off */
	if (o.kind == PS_OUT_FATAL && o.status == 401 && OidIsValid(run->sub->headers_function) &&
		!m->auth_retried && run->mode != PS_RUN_FOREGROUND)
	{
		m->auth_retried = true;
		PS_DEBUG_LOG(run, "401: calling the headers function again");
	}
	else
	{
		/* nothing of a failed snapshot is applied: roll back, ask again */
		if (o.kind == PS_OUT_RETRY || o.kind == PS_OUT_FATAL || o.kind == PS_OUT_REFETCH)
			abandon_snapshot(d);
		if (ps_run_outcome(run, m, o))
			d->commit_pending = true;
	}
	d->current = NULL;
}

/*
 * A streamed snapshot gives way to the lock requests it holds up (DDL on
 * its table, DROP EXTENSION), as autovacuum does: rolled back, it is asked
 * for again once the other statement had its turn.  True if it gave way.
 */
static bool
yield_snapshot(PsDriver *d, TimestampTz now)
{
	PsRun	   *run = d->run;
	int			pid;

	if (!run->snap_open || now < d->yield_check_at)
		return false;
	d->yield_check_at = TimestampTzPlusMilliseconds(now, YIELD_CHECK_MS);
	pid = ps_run_snapshot_blocks(run);
	if (pid == 0)
		return false;
	ereport(LOG,
			(errmsg("pglite_sync: subscription \"%s\": the snapshot being loaded holds up a lock request of process %d: rolled back, to be asked for again",
					run->sub->name, pid)));
	abandon_snapshot(d);
	run->members[0].retry_at = TimestampTzPlusMilliseconds(now, ps_backoff_base_ms);
	return true;
}

/*
 * One step of the run: commit a complete batch, start due requests, then
 * wait for transfers, the latch or the next retry.  Returns when something
 * happened; the caller loops (and checks for stops between steps).
 */
void
ps_driver_step(PsDriver *d)
{
	PsRun	   *run = d->run;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz wake;
	PsHttpXfer *done[64];
	int			n;
	bool		latch_set;
	bool		any_live = false;
	bool		any_flight = false;
	long		timeout = -1;
	uint64		target;

	if (d->commit_pending && run->retry_at <= now)
	{
		d->in_commit = true;
		if (ps_run_commit_due(run, &target) == PS_COMMIT_DUE)
			ps_run_commit(run, target);
		d->in_commit = false;
		d->commit_pending = ps_run_commit_due(run, &target) == PS_COMMIT_DUE;
		return;
	}

	if (!d->commit_pending && yield_snapshot(d, now))
		return;

	if (!d->commit_pending)
	{
		resume_streams(d);
		if (d->commit_pending && run->retry_at <= now)
			return;				/* a batch the stream had ready: commit it first */
	}

	for (int i = 0; i < run->nmembers; i++)
	{
		PsMember   *m = &run->members[i];

		if (ps_run_member_due(run, m, now))
			start_request(d, m);
		any_flight |= m->in_flight;
		any_live |= m->in_flight && m->request_live;
	}
	nudge_laggards(d);

	/* the page that came, while the next one downloads */
	if (!d->commit_pending && run->nmembers == 1 && ps_run_snapshot_streams(run))
	{
		d->in_commit = true;
		ps_run_load_page(run);
		d->in_commit = false;
		return;
	}

	wake = ps_run_next_wakeup(run);
	/* local writes go once the snapshot they go on top of has committed */
	if (d->upload && !run->snap_open)
	{
		d->in_upload = true;
		ps_upload_step(d->upload, now, &wake);
		d->in_upload = false;
	}
	if (d->commit_pending && run->retry_at > now && (wake == 0 || run->retry_at < wake))
		wake = run->retry_at;
	if (wake != 0)
	{
		long		secs;
		int			usecs;

		TimestampDifference(now, wake, &secs, &usecs);
		timeout = secs * 1000 + usecs / 1000 + 1;
	}
	if (run->snap_open && (timeout < 0 || timeout > YIELD_CHECK_MS))
		timeout = YIELD_CHECK_MS;
	n = ps_http_wait(d->pool, timeout,
					 ps_wait_event(any_live ? PS_WAIT_LONG_POLL :
								   any_flight ? PS_WAIT_FETCH : PS_WAIT_BACKOFF),
					 done, lengthof(done), &latch_set);
	for (int i = 0; i < run->nmembers; i++)
		if (run->members[i].sse_batch && run->members[i].in_flight)
			handle_sse_batch(d, &run->members[i]);
	for (int i = 0; i < n; i++)
		handle_done(d, done[i]);
	if (latch_set)
		interrupt_stale_long_polls(d);
}

/* Abandon every transfer (a reload of the definition, a stop). */
void
ps_driver_abort_all(PsDriver *d)
{
	ps_upload_abort(d->upload);
	for (int i = 0; i < d->run->nmembers; i++)
		if (d->run->members[i].in_flight)
		{
			ps_http_abort(d->xfers[i]);
			d->run->members[i].in_flight = false;
		}
}

/* An ERROR escaped a step: where was it? */
void
ps_driver_failed(PsDriver *d, ErrorData *e)
{
	PsMember   *m = d->current;
	bool		in_commit = d->in_commit;

	if (d->in_upload)
	{
		/* the write goes again later, with its key; the stream is not at fault */
		d->in_upload = false;
		ps_upload_failed(d->upload);
		ereport(LOG,
				(errmsg("pglite_sync: subscription \"%s\": uploading a write failed: %s",
						d->run->sub->name, e->message)));
		return;
	}
	d->current = NULL;
	d->in_commit = false;
	if (m && m->in_flight)
	{
		ps_http_abort(d->xfers[m->index]);
		m->in_flight = false;
	}
	abandon_snapshot(d);		/* the ERROR rolled it back already */
	if (in_commit)
		d->commit_pending = true;
	ps_run_failed(d->run, m, e, in_commit);
}

/* ---- the background worker -------------------------------------------------------- */

static PsSlot *my_slot = NULL;

static void
worker_detach(int code, Datum arg)
{
	if (my_slot)
		ps_slot_detach(my_slot, code != 0);
	my_slot = NULL;
}

static PsSubscription *
load_subscription(int32 subid, MemoryContext cxt)
{
	PsSubscription *sub = NULL;

	/* a streamed snapshot's transaction goes on (a fresh snapshot sees the change) */
	bool		own_txn = !IsTransactionState();

	if (own_txn)
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
	}
	PushActiveSnapshot(GetTransactionSnapshot());
	if (!RecoveryInProgress() && !ps_database_is_template() && ps_extension_ready())
	{
		SPI_connect();
		sub = ps_catalog_load(subid, cxt);
		SPI_finish();
	}
	PopActiveSnapshot();
	if (own_txn)
		CommitTransactionCommand();
	return sub;
}

/* Does the extension still exist?  If not, this worker has nothing to do. */
static bool
extension_gone(void)
{
	bool		ready;

	StartTransactionCommand();
	ready = ps_extension_ready();
	CommitTransactionCommand();
	return !ready;
}

static void
leave(PsDriver *d, const char *why, bool release, uint64 start_seq)
{
	PS_DEBUG_LOG(d->run, "worker exiting: %s", why);
	if (d->run->snap_open)
		AbortOutOfAnyTransaction(); /* a snapshot half loaded: none of it */
	if (release && my_slot)
		ps_slot_release(my_slot, start_seq);
	ps_driver_destroy(d);
	proc_exit(0);
}

void
ps_worker_main(Datum main_arg)
{
	PsWorkerArgs args;
	PsSlot	   *slot;
	uint64		start_seq = 0;
	PsSubscription *sub;
	PsRun	   *run;
	PsDriver   *d;
	MemoryContext worker_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(PsWorkerArgs));
	slot = ps_slot_attach_worker(DatumGetInt32(main_arg), args.dbid, args.subid,
								 args.generation, &start_seq);
	if (slot == NULL)
		proc_exit(0);			/* unwanted or superseded meanwhile */
	my_slot = slot;
	before_shmem_exit(worker_detach, (Datum) 0);

	/* as the owner where PostgreSQL allows it (see pg_compat.h) */
	BackgroundWorkerInitializeConnectionByOid(args.dbid, args.userid, PS_BGW_CONNECT_FLAGS);

	worker_cxt = AllocSetContextCreate(TopMemoryContext, "pglite_sync worker",
									   ALLOCSET_DEFAULT_SIZES);
	sub = load_subscription(args.subid, worker_cxt);
	if (sub == NULL || !sub->enabled || !sub->worker)
	{
		/* gone or stopped: free the slot unless a newer subscribe wants it */
		ps_slot_release(slot, start_seq);
		proc_exit(0);
	}
	run = ps_run_create(PS_RUN_WORKER, sub, worker_cxt);
	run->slot = slot;
	run->generation = args.generation;
	run->start_seq = start_seq;
	run->reload_seq = ps_slot_reload_seq(slot);
	ps_run_set_state(run, PS_STATE_STARTING);
	pgstat_report_appname(psprintf("pglite_sync %s", sub->name));
	ereport(LOG,
			(errmsg("pglite_sync: subscription \"%s\" started (%d shape%s)", sub->name,
					sub->nshapes, sub->nshapes == 1 ? "" : "s")));
	d = ps_driver_create(run);

	for (;;)
	{
		uint64		reload;

		MemoryContextReset(run->step_cxt);
		MemoryContextSwitchTo(run->step_cxt);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			PS_DEBUG_LOG(run, "configuration reloaded");
		}
		if (ps_run_stop_requested(run))
			leave(d, "stop requested", false, start_seq);
		reload = ps_slot_reload_seq(slot);
		if (reload != run->reload_seq)
		{
			PsSubscription *fresh = load_subscription(args.subid, worker_cxt);
			bool		changed;

			run->reload_seq = reload;
			if (fresh == NULL || !fresh->enabled || fresh->version != sub->version)
				leave(d, "the subscription was stopped or changed", true, start_seq);
			changed = ps_run_reload(run, fresh);
			ps_driver_abort_all(d);
			PS_DEBUG_LOG(run, "definition reread (alter_subscription)%s",
						 changed ? ": asking again now" : ", unchanged");
		}

		PG_TRY();
		{
			/* a cancel is an error like any other: recorded, then retried */
			CHECK_FOR_INTERRUPTS();
			ps_driver_step(d);
		}
		PG_CATCH();
		{
			ErrorData  *e;

			/* as long-lived core processes do after an error */
			HOLD_INTERRUPTS();
			MemoryContextSwitchTo(run->cxt);
			e = CopyErrorData();
			FlushErrorState();
			AbortOutOfAnyTransaction();
			LWLockReleaseAll();
			ConditionVariableCancelSleep();
			pgstat_report_wait_end();
			RESUME_INTERRUPTS();
			if (extension_gone())
				leave(d, "the extension was dropped", true, start_seq);
			if (e->sqlerrcode == ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE &&
				ps_run_stop_requested(run))
				leave(d, "stopped while a batch was applied", false, start_seq);
			MemoryContextSwitchTo(run->step_cxt);
			ps_driver_failed(d, e);
		}
		PG_END_TRY();
	}
}
