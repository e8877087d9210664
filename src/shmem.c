/*
 * shmem.c
 *	  Shared state of pglite_sync: the subscription slot array, the launcher's
 *	  latch, and the transactional signalling that tells the launcher and the
 *	  workers about subscription changes at COMMIT, never before.
 */
#include "pglite_sync.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include <signal.h>

PsShared   *ps_shared = NULL;

static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
ps_shmem_size(void)
{
	return add_size(offsetof(PsShared, slots),
					mul_size(sizeof(PsSlot), ps_max_subscriptions));
}

void
ps_shmem_request(void)
{
	RequestAddinShmemSpace(ps_shmem_size());
	RequestNamedLWLockTranche(PS_EXTENSION_NAME, 1);
}

static void
ps_shmem_startup_hook(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	ps_shared = ShmemInitStruct(PS_EXTENSION_NAME, ps_shmem_size(), &found);
	if (!found)
	{
		memset(ps_shared, 0, ps_shmem_size());
		ps_shared->lock = &(GetNamedLWLockTranche(PS_EXTENSION_NAME))->lock;
		ConditionVariableInit(&ps_shared->cv);
		ps_shared->nslots = ps_max_subscriptions;
		ps_shared->rescan = true;
	}
	LWLockRelease(AddinShmemInitLock);
}

void
ps_shmem_startup(void)
{
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = ps_shmem_startup_hook;
}

/* The SQL API and workers need the preloaded library's shared memory. */
void
ps_require_preload(void)
{
	if (ps_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pglite_sync is not loaded via shared_preload_libraries"),
				 errdetail("Subscriptions are run by background workers, which need the library loaded at server start."),
				 errhint("Add pglite_sync to shared_preload_libraries in postgresql.conf and restart the server.")));
}

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

/* ---- slots (caller holds ps_shared->lock) ------------------------------ */

PsSlot *
ps_slot_find(Oid dbid, int32 subid)
{
	for (int i = 0; i < ps_shared->nslots; i++)
	{
		PsSlot	   *s = &ps_shared->slots[i];

		if (s->in_use && s->dbid == dbid && s->subid == subid)
			return s;
	}
	return NULL;
}

int
ps_slots_in_use(void)
{
	int			n = 0;

	LWLockAcquire(ps_shared->lock, LW_SHARED);
	for (int i = 0; i < ps_shared->nslots; i++)
		if (ps_shared->slots[i].in_use)
			n++;
	LWLockRelease(ps_shared->lock);
	return n;
}

/* Free a slot (lock held); if a start found none free, rescan now. */
void
ps_slot_free(PsSlot *slot)
{
	slot->in_use = false;
	if (ps_shared->slots_exhausted)
	{
		ps_shared->slots_exhausted = false;
		ps_shared->rescan = true;
	}
}

/* A new generation for a worker run (lock held): unique across slot reuse. */
uint32
ps_slot_new_generation(PsSlot *slot)
{
	slot->generation = ++ps_shared->next_generation;
	return slot->generation;
}

/* Is a database being dropped, renamed or copied (lock held)? */
bool
ps_database_blocked(Oid dbid)
{
	for (int i = 0; i < PS_MAX_BLOCKED_DBS; i++)
		if (ps_shared->blocked_count[i] > 0 && ps_shared->blocked_dbs[i] == dbid)
			return true;
	return false;
}

/*
 * Make sure (dbid, subid) has a slot that wants a worker.  from_user means a
 * subscribe just committed: bump start_seq (so that an exiting worker of an
 * older incarnation keeps the slot) and lift any restart throttle.  Returns
 * false when every slot is taken.
 */
bool
ps_slot_start(Oid dbid, int32 subid, bool from_user)
{
	PsSlot	   *slot;

	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	slot = ps_slot_find(dbid, subid);
	if (slot == NULL)
	{
		for (int i = 0; i < ps_shared->nslots; i++)
		{
			if (!ps_shared->slots[i].in_use)
			{
				slot = &ps_shared->slots[i];
				memset(slot, 0, sizeof(PsSlot));
				slot->in_use = true;
				slot->dbid = dbid;
				slot->subid = subid;
				slot->state = PS_STATE_STARTING;
				break;
			}
		}
		if (slot == NULL)
		{
			ps_shared->slots_exhausted = true;	/* rescan once a slot frees up */
			LWLockRelease(ps_shared->lock);
			return false;
		}
	}
	else if (!from_user && slot->wanted)
	{
		LWLockRelease(ps_shared->lock);
		return true;
	}
	slot->wanted = true;
	if (from_user)
	{
		slot->start_seq++;
		slot->next_launch = 0;
		slot->restart_delay_ms = 0;
	}
	LWLockRelease(ps_shared->lock);
	return true;
}

/* Nothing should run for this slot any more (lock held). */
static void
request_stop(PsSlot *slot)
{
	slot->wanted = false;
	slot->stop_generation = slot->generation;
	if (slot->latch)
		SetLatch(slot->latch);
	if (slot->pid == 0 && !slot->launching)
		ps_slot_free(slot);
}

/* Ask the worker of (dbid, subid), if any, to stop; it exits on its own. */
void
ps_slot_stop(Oid dbid, int32 subid)
{
	PsSlot	   *slot;

	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	slot = ps_slot_find(dbid, subid);
	if (slot != NULL)
		request_stop(slot);
	LWLockRelease(ps_shared->lock);
	ConditionVariableBroadcast(&ps_shared->cv);
}

/* This process runs the slot's stream from now on (lock held). */
void
ps_slot_attach(PsSlot *slot, bool foreground)
{
	slot->pid = MyProcPid;
	slot->latch = MyLatch;
	slot->foreground = foreground;
	slot->state = PS_STATE_STARTING;
	slot->up_to_date = false;
}

/*
 * This process stops running the slot's stream: free the slot if nothing
 * wants it any more, else throttle its next start if this run failed.
 */
void
ps_slot_detach(PsSlot *slot, bool failed)
{
	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	if (slot->pid == MyProcPid)
	{
		slot->pid = 0;
		slot->latch = NULL;
		slot->foreground = false;
		slot->up_to_date = false;
		if (!slot->wanted)
			ps_slot_free(slot);
		else if (failed)
			ps_slot_throttle(slot, GetCurrentTimestamp());
	}
	LWLockRelease(ps_shared->lock);
	ConditionVariableBroadcast(&ps_shared->cv);
	ps_wake_launcher();
}

/*
 * Called by a worker that found its subscription gone or stopped: free the
 * slot unless a newer START arrived meanwhile (start_seq moved on).
 */
void
ps_slot_release(int slotno, uint64 start_seq)
{
	PsSlot	   *slot = &ps_shared->slots[slotno];

	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	if (slot->start_seq == start_seq)
		slot->wanted = false;
	LWLockRelease(ps_shared->lock);
}

/*
 * A worker died (or failed to start): delay its next launch, doubling while
 * it keeps dying young, so one bad subscription cannot make us spin.
 */
#define MAX_RESTART_DELAY_MS	60000
#define HEALTHY_RUN_MS			30000

void
ps_slot_throttle(PsSlot *slot, TimestampTz now)
{
	if (slot->launched_at != 0 &&
		TimestampDifferenceExceeds(slot->launched_at, now, HEALTHY_RUN_MS))
		slot->restart_delay_ms = 1000;
	else
		slot->restart_delay_ms = Min(Max(slot->restart_delay_ms * 2, 1000),
									 MAX_RESTART_DELAY_MS);
	slot->next_launch = TimestampTzPlusMilliseconds(now, slot->restart_delay_ms);
}

void
ps_wake_launcher(void)
{
	Latch	   *latch;

	LWLockAcquire(ps_shared->lock, LW_SHARED);
	latch = ps_shared->launcher_latch;
	LWLockRelease(ps_shared->lock);
	if (latch)
		SetLatch(latch);
}

/* ---- transactional signalling ----------------------------------------- */

typedef struct PendingAction
{
	PsAction	action;
	int32		subid;
	int			nest_level;
} PendingAction;

static List *pending_actions = NIL;

void
ps_at_commit(PsAction action, int32 subid)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	PendingAction *a = palloc(sizeof(PendingAction));

	a->action = action;
	a->subid = subid;
	a->nest_level = GetCurrentTransactionNestLevel();
	pending_actions = lappend(pending_actions, a);
	MemoryContextSwitchTo(old);
}

static void
ps_stop_all_in_database(Oid dbid)
{
	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < ps_shared->nslots; i++)
	{
		PsSlot	   *s = &ps_shared->slots[i];

		if (s->in_use && s->dbid == dbid)
			request_stop(s);
	}
	LWLockRelease(ps_shared->lock);
	ConditionVariableBroadcast(&ps_shared->cv);
}

static void
ps_run_pending_actions(void)
{
	ListCell   *lc;
	bool		wake = false;

	foreach(lc, pending_actions)
	{
		PendingAction *a = lfirst(lc);

		switch (a->action)
		{
			case PS_ACTION_START:
				if (!ps_slot_start(MyDatabaseId, a->subid, true))
					elog(WARNING, "pglite_sync: no free subscription slot (pglite_sync.max_subscriptions = %d); the subscription starts when one frees up",
						 ps_max_subscriptions);
				wake = true;
				break;
			case PS_ACTION_STOP:
				ps_slot_stop(MyDatabaseId, a->subid);
				break;
			case PS_ACTION_STOP_DATABASE:
				ps_stop_all_in_database(MyDatabaseId);
				break;
		}
	}
	if (wake)
		ps_wake_launcher();
}

static void
ps_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (pending_actions != NIL)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that changed pglite_sync subscriptions")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (pending_actions != NIL && ps_shared != NULL)
				ps_run_pending_actions();
			pending_actions = NIL;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			pending_actions = NIL;	/* memory goes with TopTransactionContext */
			break;
		default:
			break;
	}
}

static void
ps_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();
	ListCell   *lc;

	if (pending_actions == NIL)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		foreach(lc, pending_actions)
		{
			PendingAction *a = lfirst(lc);

			if (a->nest_level >= level)
				pending_actions = foreach_delete_current(pending_actions, lc);
		}
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		foreach(lc, pending_actions)
		{
			PendingAction *a = lfirst(lc);

			if (a->nest_level >= level)
				a->nest_level = level - 1;
		}
	}
}

void
ps_register_xact_callbacks(void)
{
	RegisterXactCallback(ps_xact_callback, NULL);
	RegisterSubXactCallback(ps_subxact_callback, NULL);
}

/* ---- DROP DATABASE ------------------------------------------------------ */

/*
 * PostgreSQL 15 does not stop background workers connected to a database
 * being dropped (it waits 5 s and fails), nor for RENAME, SET TABLESPACE or
 * a copy of it by CREATE DATABASE.  ps_block_database() stops new starts in
 * that database (a set, so concurrent statements do not unblock each other),
 * then ps_stop_database_workers() terminates our workers and scanner there
 * and waits for them.  Returns false when too many databases are blocked.
 */
bool
ps_block_database(Oid dbid)
{
	int			free_i = -1;

	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < PS_MAX_BLOCKED_DBS; i++)
	{
		if (ps_shared->blocked_count[i] > 0 && ps_shared->blocked_dbs[i] == dbid)
		{
			ps_shared->blocked_count[i]++;
			LWLockRelease(ps_shared->lock);
			return true;
		}
		if (ps_shared->blocked_count[i] == 0 && free_i < 0)
			free_i = i;
	}
	if (free_i >= 0)
	{
		ps_shared->blocked_dbs[free_i] = dbid;
		ps_shared->blocked_count[free_i] = 1;
	}
	LWLockRelease(ps_shared->lock);
	return free_i >= 0;
}

void
ps_stop_database_workers(Oid dbid)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 10000);

	for (;;)
	{
		bool		busy = false;

		LWLockAcquire(ps_shared->lock, LW_SHARED);
		for (int i = 0; i < ps_shared->nslots; i++)
		{
			PsSlot	   *s = &ps_shared->slots[i];

			/* a session running sync_now() is the statement's to refuse */
			if (s->in_use && s->dbid == dbid && !s->foreground &&
				(s->pid != 0 || s->launching))
			{
				busy = true;
				if (s->pid != 0)
					kill(s->pid, SIGTERM);
			}
		}
		if (ps_shared->scanner_pid != 0 && ps_shared->scanner_db == dbid)
		{
			busy = true;
			kill(ps_shared->scanner_pid, SIGTERM);
		}
		LWLockRelease(ps_shared->lock);

		if (!busy || GetCurrentTimestamp() > deadline)
			break;
		ConditionVariableTimedSleep(&ps_shared->cv, 100, ps_wait_event(PS_WAIT_STOP));
	}
	ConditionVariableCancelSleep();
}

void
ps_unblock_database(Oid dbid, bool dropped)
{
	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < PS_MAX_BLOCKED_DBS; i++)
		if (ps_shared->blocked_count[i] > 0 && ps_shared->blocked_dbs[i] == dbid)
			ps_shared->blocked_count[i]--;
	if (dropped)
	{
		for (int i = 0; i < ps_shared->nslots; i++)
		{
			PsSlot	   *s = &ps_shared->slots[i];

			if (s->in_use && s->dbid == dbid && s->pid == 0 && !s->launching)
				ps_slot_free(s);
		}
	}
	LWLockRelease(ps_shared->lock);
	ps_wake_launcher();
}
