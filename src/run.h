/*
 * run.h
 *	  A subscription being synced: its shapes' streams, when they may
 *	  commit together, and what a failure means.  One run is driven by a
 *	  background worker (worker.c), by electric.sync_now() in a backend
 *	  (foreground.c), or call by call by a host (hostdrive.c); the run
 *	  decides, the driver does the waiting and the HTTP.
 */
#ifndef PS_RUN_H
#define PS_RUN_H

#include "pglite_sync.h"

#include "apply.h"
#include "catalog.h"
#include "member.h"

typedef enum PsRunMode
{
	PS_RUN_WORKER,
	PS_RUN_FOREGROUND,			/* sync_now: errors are raised, not retried */
	PS_RUN_HOST					/* next_request / ingest_response */
} PsRunMode;

typedef struct PsRun
{
	PsRunMode	mode;
	PsSubscription *sub;
	MemoryContext cxt;			/* lives as long as the run */
	MemoryContext step_cxt;		/* reset for every step of the driver */

	/* the slot (worker and foreground runs) */
	PsSlot	   *slot;
	uint32		generation;
	uint64		start_seq;
	uint64		reload_seq;

	int			nmembers;
	PsMember   *members;

	PsState		state;
	bool		notified;		/* the first up-to-date of this run committed */
	bool		row_by_row;		/* the batch failed: redo it one statement per change */
	int			failures;		/* consecutive failed batches */
	TimestampTz retry_at;		/* no commit before this */
	/* a write was acknowledged without a txid by then: an up-to-date of a
	 * request started later syncs it, data or not */
	TimestampTz untxid_acked;

	/*
	 * An initial snapshot loaded page by page (commit.c): its transaction
	 * is open from the first page to the up-to-date, which commits it.
	 */
	bool		snap_open;
	bool		snap_declined;	/* this batch is loaded whole, at its end */
	PsApplyResult snap_res;		/* what the pages loaded so far */
	int64		snap_changes;	/* of how many spooled changes */

	/* the outcome of the latest step, for ingest_response */
	const char *last_error;
	int64		last_wait_ms;
	int64		last_applied;
} PsRun;

extern PsRun *ps_run_create(PsRunMode mode, PsSubscription *sub, MemoryContext parent);
/* alter_subscription committed: true if the requests change */
extern bool ps_run_reload(PsRun *run, PsSubscription *sub);
extern void ps_run_close(PsRun *run);

/* Is a member due for a request now?  Its URL and whether it is live. */
extern bool ps_run_member_due(PsRun *run, PsMember *m, TimestampTz now);
extern bool ps_run_request_live(PsRun *run, PsMember *m, uint64 *ticket);

/* Request headers: the shape's, merged with the headers function's (which
 * runs as the owner; in_txn: a transaction is open already). */
extern void ps_run_headers(PsRun *run, PsMember *m, bool in_txn, List **names,
						   List **values);
extern void ps_headers_replace(List **names, List **values, List *with_names,
							   List *with_values);

/* Show the open batch's size in the slot (batch_rows, batch_bytes). */
extern void ps_run_publish_batch(PsRun *run);

/* The engine's own changes, with electric.syncing on (commit.c) */
typedef struct PsSyncing
{
	int			guc_level;
	bool		was_applying;
} PsSyncing;

extern void ps_syncing_begin(PsSyncing *s);
extern void ps_syncing_end(PsSyncing *s);

/* Act on a member's outcome; true if a commit is due. */
extern bool ps_run_outcome(PsRun *run, PsMember *m, PsOutcome o);

/* The group's commit target, and whether there is anything to commit. */
typedef enum PsCommitDue
{
	PS_COMMIT_NOT_READY,		/* some shape has not reported, or backing off */
	PS_COMMIT_NOTHING,			/* up to date, nothing changed */
	PS_COMMIT_DUE
} PsCommitDue;

extern PsCommitDue ps_run_commit_due(PsRun *run, uint64 *target);
/*
 * The oldest of the members' up_to_date_since: every shape has been up to
 * date from a request started since (0: one has not been yet).
 */
extern TimestampTz ps_run_up_to_date_since(PsRun *run);

/* The members to ask again now (non-live), because the group waits for them. */
extern int	ps_run_laggards(PsRun *run, uint64 target, bool *lagging);

/* Commit (commit.c): in a transaction of its own (worker) or the caller's. */
extern void ps_run_commit(PsRun *run, uint64 target);

/* Streaming an initial snapshot: may its spooled pages be loaded now? */
extern bool ps_run_snapshot_streams(PsRun *run);
/* Load them, in the snapshot's transaction (started by the first page). */
extern void ps_run_load_page(PsRun *run);
/* The pid of a lock request on a relation that the snapshot holds up, or 0. */
extern int	ps_run_snapshot_blocks(PsRun *run);
/* Roll the snapshot's transaction back (if an ERROR did not already) and
 * ask for the snapshot again from -1; false if none was open. */
extern bool ps_run_snapshot_abandon(PsRun *run);

/* request_snapshot: apply the subset spooled for m in the caller's transaction. */
extern int64 ps_run_apply_subset(PsRun *run, PsMember *m);

/* An ERROR escaped a step (the transaction is aborted already). */
extern void ps_run_failed(PsRun *run, PsMember *m, ErrorData *e, bool in_commit);

/* Record a failure: state, error text, backoff. */
extern void ps_run_fail(PsRun *run, PsMember *m, PsOutcomeKind kind, int64 retry_after_ms,
						const char *message, const char *detail, bool in_txn);

/* When the run next needs attention (a retry), or 0. */
extern TimestampTz ps_run_next_wakeup(PsRun *run);

extern void ps_run_set_state(PsRun *run, PsState state);
extern bool ps_run_stop_requested(PsRun *run);

extern bool ps_error_is_transient(int sqlerrcode);

#define PS_DEBUG_LOG(run, ...) \
	do { if (ps_debug) ereport(LOG, (errmsg_internal("pglite_sync: subscription \"%s\": %s", \
		(run)->sub->name, psprintf(__VA_ARGS__)))); } while (0)

#endif
