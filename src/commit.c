/*
 * commit.c
 *	  The apply transaction of a run: every shape's changes up to the
 *	  group's commit target, in source order (LSN, then op position; the
 *	  snapshot rows of all shapes first, in declaration order), with every
 *	  shape's new position, in one transaction.  A crash at any instant
 *	  loses or duplicates nothing; a reader never sees a source transaction
 *	  half applied, nor a snapshot half loaded.
 */
#include "run.h"

#include "access/xact.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "apply.h"

typedef struct CommitShape
{
	PsMember   *m;
	PsApply    *apply;			/* NULL: nothing of this shape to apply */
	PsApplyResult res;
	bool		more;			/* changes past the target stay spooled */
	bool		clear;			/* its table is cleared first (a restart from -1) */
} CommitShape;

static bool
stop_check(void *arg)
{
	return ps_run_stop_requested((PsRun *) arg);
}

/*
 * Leave the run: the subscription was stopped, deleted or changed while the
 * batch was prepared.  The transaction is rolled back by the caller's ERROR
 * handling; a worker exits, the others report it.
 */
static void
gone(PsRun *run)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("subscription \"%s\" was stopped or changed", run->sub->name)));
}

/* The apply runs as the owner; a switch from another role is restricted. */
typedef struct ApplyUser
{
	Oid			saved_user;
	int			saved_sec;
	bool		switched;
} ApplyUser;

static void
become_owner(PsRun *run, ApplyUser *u)
{
	GetUserIdAndSecContext(&u->saved_user, &u->saved_sec);
	u->switched = u->saved_user != run->sub->owner;
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(run->sub->owner)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the owner of subscription \"%s\" (role %u) no longer exists",
						run->sub->name, run->sub->owner)));
	/*
	 * A worker connects as the owner.  Where it cannot (a role without
	 * LOGIN on PostgreSQL 15 and 16) it connects as the bootstrap superuser
	 * and runs the owner's code as a security-definer function would: SET
	 * ROLE and SET SESSION AUTHORIZATION are refused, catalog statements pin
	 * their search_path, and SET CONSTRAINTS ALL IMMEDIATE below fires every
	 * deferred trigger as the owner before the user is restored, so nothing
	 * is left to run as the superuser at COMMIT.  The session is the
	 * worker's own, so deferred constraints keep working there.
	 *
	 * For sync_now or a host driving the subscription as another role, the
	 * caller's transaction goes on after us: the owner's code runs
	 * restricted, as core's logical replication does, so that it cannot
	 * leave anything (a deferred trigger, a temporary table) to run as the
	 * caller.
	 */
	if (u->switched)
		SetUserIdAndSecContext(run->sub->owner,
							   u->saved_sec | SECURITY_LOCAL_USERID_CHANGE |
							   (run->mode == PS_RUN_WORKER ? 0 : SECURITY_RESTRICTED_OPERATION));
}

static void
restore_user(ApplyUser *u)
{
	SetUserIdAndSecContext(u->saved_user, u->saved_sec);
}

/* Pick the shape whose next record comes first in source order. */
static CommitShape *
next_in_order(CommitShape *shapes, int n)
{
	CommitShape *best = NULL;
	uint64		best_lsn = 0;
	uint32		best_pos = 0;

	for (int i = 0; i < n; i++)
	{
		uint64		lsn;
		uint32		pos;

		if (shapes[i].apply == NULL || !ps_apply_peek(shapes[i].apply, &lsn, &pos))
			continue;
		if (best == NULL || lsn < best_lsn || (lsn == best_lsn && pos < best_pos))
		{
			best = &shapes[i];
			best_lsn = lsn;
			best_pos = pos;
		}
	}
	return best;
}

/*
 * electric.syncing on for the owner's code: user triggers can tell synced
 * writes from local ones.  Capture goes by the engine's own flag, which no
 * session can set.
 */
void
ps_syncing_begin(PsSyncing *s)
{
	s->guc_level = NewGUCNestLevel();
	(void) set_config_option("electric.syncing", "true", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	s->was_applying = ps_writes_engine_begin();
}

/* (whatever the owner's code changed in settings ends with it too) */
void
ps_syncing_end(PsSyncing *s)
{
	ps_writes_engine_end(s->was_applying);
	AtEOXact_GUC(false, s->guc_level);
}

static void
apply_options(PsRun *run, PsMember *m, uint64 target, PsApplyOptions *opts)
{
	memset(opts, 0, sizeof(*opts));
	/* a streamed snapshot's later pages, once a row broke its bulk run */
	opts->bulk = m->from_start && !(run->snap_open && run->snap_res.bulk_stopped);
	opts->method = run->sub->initial_insert_method;
	opts->row_by_row = run->row_by_row;
	opts->changes_only = m->shape.changes_only;
	opts->replica_full = m->shape.replica_full;
	opts->limit_lsn = target;
}

/*
 * Everything spooled for m, applied as the owner with electric.syncing on,
 * outside the source-order merge of ps_run_commit (one shape only).
 */
static void
apply_spooled(PsRun *run, PsMember *m, const PsApplyOptions *opts, bool stoppable,
			  PsApplyResult *res)
{
	ApplyUser	u;
	PsSyncing	syncing;
	PsApply    *a;
	uint64		lsn;
	uint32		pos;

	become_owner(run, &u);
	ps_syncing_begin(&syncing);
	a = ps_apply_open(run->sub, m->def, m->spool, opts);
	if (stoppable)
		ps_apply_set_stop_check(a, stop_check, run);
	if (opts->replace)
		ps_apply_replace(a);
	while (ps_apply_peek(a, &lsn, &pos))
		ps_apply_step(a);
	ps_apply_close(a, res);
	ps_syncing_end(&syncing);
	restore_user(&u);
}

static void
add_result(PsApplyResult *to, const PsApplyResult *r)
{
	if (to->method == NULL || (to->bulk_rows == 0 && r->bulk_rows > 0))
		to->method = r->method;
	to->rows += r->rows;
	to->bulk_rows += r->bulk_rows;
	to->skipped += r->skipped;
	to->bulk_stopped |= r->bulk_stopped;
}

static int64
apply_shapes(PsRun *run, CommitShape *shapes, uint64 target)
{
	int			n = run->nmembers;
	CommitShape *prev = NULL;
	CommitShape *cs;
	int64		applied = 0;

	for (int i = 0; i < n; i++)
	{
		PsMember   *m = &run->members[i];
		PsApplyOptions opts;

		shapes[i].m = m;
		if (!m->replace && !ps_spool_has_upto(m->spool, target))
			continue;
		apply_options(run, m, target, &opts);
		opts.replace = shapes[i].clear = m->replace && !run->snap_open;
		shapes[i].apply = ps_apply_open(run->sub, m->def, m->spool, &opts);
		if (run->slot)
			ps_apply_set_stop_check(shapes[i].apply, stop_check, run);
	}

	/* children before parents: clear in reverse declaration order (a
	 * streamed snapshot's first page did it) */
	for (int i = n - 1; i >= 0; i--)
		if (shapes[i].clear)
			ps_apply_replace(shapes[i].apply);

	while ((cs = next_in_order(shapes, n)) != NULL)
	{
		/* a multi-row insert of one shape goes out before another's change */
		if (prev && prev != cs)
			ps_apply_flush(prev->apply);
		ps_apply_step(cs->apply);
		prev = cs;
	}

	for (int i = 0; i < n; i++)
	{
		if (shapes[i].apply == NULL)
			continue;
		ps_apply_close(shapes[i].apply, &shapes[i].res);
		if (run->snap_open)
		{
			/* the pages before this last one count too */
			PsApplyResult last = shapes[i].res;

			shapes[i].res = run->snap_res;
			add_result(&shapes[i].res, &last);
		}
		applied += shapes[i].res.rows;
	}
	return applied;
}

/* ---- a snapshot loaded page by page ------------------------------------------------ */

/*
 * pglite_sync.stream_snapshot: the pages of an initial snapshot are loaded
 * as they arrive (while the next one downloads), in one transaction left
 * open between requests; the up-to-date commits it with the position in
 * ps_run_commit.  Readers see the old rows until then, as with a whole
 * batch; a failure rolls all of it back and the snapshot is asked for
 * again.  Only for a worker's single shape that restarted from -1: a
 * group's snapshots land together at the common up-to-date, a shared table
 * is taken in turns, a batch being redone row by row needs it whole, and
 * local writes waiting go on top of the complete snapshot.
 */
#ifndef __PGLITE__
bool
ps_run_snapshot_streams(PsRun *run)
{
	PsMember   *m = &run->members[0];

	return ps_stream_snapshot && run->mode == PS_RUN_WORKER && run->nmembers == 1 &&
		m->from_start && m->replace && !run->row_by_row && !run->snap_declined &&
		!OidIsValid(m->def->on_must_refetch) && ps_spool_count(m->spool) > 0 &&
		run->retry_at <= GetCurrentTimestamp();
}

void
ps_run_load_page(PsRun *run)
{
	PsMember   *m = &run->members[0];
	bool		first = !run->snap_open;
	PsApplyOptions opts;
	PsApplyResult res;

	pgstat_report_activity(STATE_RUNNING,
						   psprintf("loading the snapshot of subscription %s (%lld rows so far)",
									run->sub->name, (long long) run->snap_res.rows));
	if (first)
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		run->snap_open = true;
		memset(&run->snap_res, 0, sizeof(run->snap_res));
		run->snap_changes = 0;
	}
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (first)
	{
		bool		writes_pending;

		if (!ps_catalog_is_current(run->sub->id, run->sub->version) || ps_run_stop_requested(run))
			gone(run);
		(void) ps_catalog_write_acked_txids(run->sub->id, &writes_pending);
		if (writes_pending)
		{
			PopActiveSnapshot();
			SPI_finish();
			AbortCurrentTransaction();
			run->snap_open = false;
			run->snap_declined = true;
			PS_DEBUG_LOG(run, "local writes are pending: the snapshot is loaded whole at its end");
			return;
		}
		ps_catalog_subset_lock(run->sub->id, false);
	}
	apply_options(run, m, PG_UINT64_MAX, &opts);
	opts.replace = first;
	apply_spooled(run, m, &opts, true, &res);
	PopActiveSnapshot();
	SPI_finish();
	/* loaded: the spool holds one page at a time */
	run->snap_changes += ps_spool_count(m->spool);
	ps_spool_drop_consumed(m->spool);
	add_result(&run->snap_res, &res);
	PS_DEBUG_LOG(run, "snapshot page loaded: %lld rows (%lld so far, by %s)%s",
				 (long long) res.rows, (long long) run->snap_res.rows,
				 run->snap_res.method ? run->snap_res.method : "insert",
				 first ? ", table rows replaced" : "");
	pgstat_report_activity(STATE_IDLEINTRANSACTION,
						   psprintf("snapshot of subscription %s: %lld rows loaded",
									run->sub->name, (long long) run->snap_res.rows));
}

/*
 * Does the open snapshot transaction hold up a lock request on a relation
 * (DDL on the table, DROP EXTENSION)?  The pid waiting, or 0.  Row locks
 * are not counted: a local write to a row the snapshot replaced waits for
 * it, as it would for any transaction.
 */
int
ps_run_snapshot_blocks(PsRun *run)
{
	int			rc;
	int			pid = 0;

	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	rc = SPI_execute("SELECT l.pid FROM pg_catalog.pg_locks l"
					 " WHERE NOT l.granted AND l.locktype = 'relation'"
					 " AND pg_catalog.pg_backend_pid() OPERATOR(pg_catalog.=) ANY (pg_catalog.pg_blocking_pids(l.pid))"
					 " LIMIT 1", true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "pglite_sync: reading pg_locks failed: %s", SPI_result_code_string(rc));
	if (SPI_processed > 0)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			pid = DatumGetInt32(d);
	}
	PopActiveSnapshot();
	SPI_finish();
	return pid;
}

bool
ps_run_snapshot_abandon(PsRun *run)
{
	if (!run->snap_open)
		return false;
	AbortOutOfAnyTransaction();
	run->snap_open = false;
	PS_DEBUG_LOG(run, "snapshot rolled back after %lld rows: asking for it again from -1",
				 (long long) run->snap_res.rows);
	ps_member_restart(&run->members[0]);
	return true;
}
#else
/* a host's snapshot is its caller's to commit: never streamed */
bool
ps_run_snapshot_streams(PsRun *run)
{
	return false;
}

void
ps_run_load_page(PsRun *run)
{
	elog(ERROR, "pglite_sync: no streamed snapshots in PGlite");
}

bool
ps_run_snapshot_abandon(PsRun *run)
{
	return false;
}

int
ps_run_snapshot_blocks(PsRun *run)
{
	return 0;
}
#endif

void
ps_run_commit(PsRun *run, uint64 target)
{
	PsSubscription *sub = run->sub;
	int			n = run->nmembers;
	CommitShape *shapes = palloc0(sizeof(CommitShape) * Max(n, 1));
	int64		count = 0;
	int64		applied = 0;
	bool		replaced = false;
	bool		own_txn pg_attribute_unused() = run->mode == PS_RUN_WORKER;
	ApplyUser	u;
	PsSyncing	syncing;
	TimestampTz oldest;

	for (int i = 0; i < n; i++)
	{
		count += ps_spool_count(run->members[i].spool);
		replaced |= run->members[i].replace;
	}
	if (run->snap_open)
		count += run->snap_changes;	/* the pages loaded already */
	pgstat_report_activity(STATE_RUNNING,
						   psprintf("applying %lld changes of subscription %s",
									(long long) count, sub->name));
#ifndef __PGLITE__
	if (own_txn)
	{
		if (!run->snap_open)
		{
			SetCurrentStatementStartTimestamp();
			StartTransactionCommand();
		}
		SPI_connect();
	}
#endif
	PushActiveSnapshot(GetTransactionSnapshot());

	/* still the running incarnation?  (a plain read: management never waits) */
	if (!ps_catalog_is_current(sub->id, sub->version) || ps_run_stop_requested(run))
		gone(run);
	/* a request_snapshot under way holds batches back until it committed */
	ps_catalog_subset_lock(sub->id, false);

	become_owner(run, &u);
	ps_syncing_begin(&syncing);
	applied = apply_shapes(run, shapes, target);
	/* local writes acknowledged without a txid are synced by this up-to-date */
	oldest = ps_run_up_to_date_since(run);
	if (oldest != 0)
		ps_catalog_write_synced_before(sub->id, oldest);
	/*
	 * Deferred constraints and constraint triggers are checked here, as the
	 * owner and inside the batch: a violation rolls the batch back with the
	 * constraint named.  A worker always does it (see become_owner: nothing
	 * deferred may outlive the owner's turn).  Not for a host's transaction:
	 * its own deferred checks keep their timing, and run at its COMMIT.
	 */
	if (run->mode == PS_RUN_WORKER || (run->mode != PS_RUN_HOST && !u.switched))
	{
		int			rc = SPI_execute("SET CONSTRAINTS ALL IMMEDIATE", false, 0);

		if (rc != SPI_OK_UTILITY)
			elog(ERROR, "pglite_sync: SET CONSTRAINTS failed: %s", SPI_result_code_string(rc));
	}
	/* whatever the owner's code changed in settings ends with the batch */
	ps_syncing_end(&syncing);
	restore_user(&u);

	for (int i = 0; i < n; i++)
	{
		PsMember   *m = &run->members[i];
		const char *handle;
		const char *offset;
		char		buf[PS_OFFSET_MAX];

		shapes[i].more = ps_spool_remaining(m->spool) > 0;
		ps_member_commit_position(m, target, shapes[i].more, &handle, &offset, buf, sizeof(buf));
		ps_catalog_save_shape(sub->id, m->def->name, handle, offset, m->def->target_fingerprint,
							  shapes[i].res.rows, shapes[i].res.skipped, NULL);
	}
	ps_catalog_save_committed(sub->id);
	/* applied data and up to date, or the first up-to-date of this run */
	if (applied > 0 || replaced || !run->notified)
		Async_Notify(PS_NOTIFY_CHANNEL, sub->name);

	PopActiveSnapshot();
#ifndef __PGLITE__
	if (own_txn)
	{
		SPI_finish();
		CommitTransactionCommand();
	}
	else if (run->mode == PS_RUN_FOREGROUND)
		SPI_commit();
	/* a background worker's writes reach autovacuum only if reported */
	pgstat_report_stat(false);
#endif

	run->snap_open = false;
	run->snap_declined = false;
	if (run->untxid_acked != 0 && oldest > run->untxid_acked)
		run->untxid_acked = 0;	/* synced above */

	/* committed: now the spools may forget */
	for (int i = 0; i < n; i++)
		ps_member_committed(&run->members[i]);
	if (ps_debug)
	{
		StringInfoData how;

		/* per shape: rows bulk loaded and by which path, deletes skipped */
		initStringInfo(&how);
		for (int i = 0; i < n; i++)
		{
			PsApplyResult *r = &shapes[i].res;

			if (shapes[i].apply == NULL)
				continue;
			appendStringInfo(&how, "%s%s%s%s%lld by %s, %lld deletes already applied",
							 how.len ? "; " : "", n > 1 ? "shape " : "",
							 n > 1 ? run->members[i].def->name : "", n > 1 ? ": " : "",
							 (long long) r->bulk_rows, r->method ? r->method : "insert",
							 (long long) r->skipped);
		}
		PS_DEBUG_LOG(run, "committed batch: %lld changes, %lld rows written (%s), up to lsn %llu%s",
					 (long long) count, (long long) applied, how.len ? how.data : "nothing applied",
					 (unsigned long long) target, replaced ? ", table rows replaced" : "");
	}
	{
		uint64		ticket = PG_UINT64_MAX;

		for (int i = 0; i < n; i++)
			ticket = Min(ticket, run->members[i].sync_ticket);
		run->notified = true;
		run->row_by_row = false;
		run->failures = 0;
		run->retry_at = 0;
		run->last_applied = applied;
		run->state = PS_STATE_LIVE;
		for (int i = 0; i < n && run->state == PS_STATE_LIVE; i++)
			if (run->members[i].failures > 0)
				run->state = PS_STATE_BACKOFF;
		if (run->slot)
			ps_slot_batch_done(run->slot, ticket);
		/* changes spooled past the target are still received, not committed */
		ps_run_publish_batch(run);
	}
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * request_snapshot: the subset spooled in m's spool, applied in the
 * caller's transaction as upserts, as the owner; returns the rows written.
 */
int64
ps_run_apply_subset(PsRun *run, PsMember *m)
{
	PsApplyOptions opts;
	PsApplyResult res;

	memset(&opts, 0, sizeof(opts));
	opts.method = "insert";
	opts.changes_only = m->shape.changes_only;
	opts.replica_full = m->shape.replica_full;
	opts.limit_lsn = PG_UINT64_MAX;
	apply_spooled(run, m, &opts, false, &res);
	ps_spool_clear(m->spool);
	return res.rows;
}
