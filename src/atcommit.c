/*
 * atcommit.c
 *	  Transactional signalling: the SQL functions queue what the workers and
 *	  the launcher must learn (start, stop, reread a subscription), and it
 *	  happens at COMMIT, never before; an abort, a rolled-back subtransaction
 *	  or a refused PREPARE forget it.
 */
#include "pglite_sync.h"

#include "catalog.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "utils/memutils.h"

/* ---- transactional signalling ----------------------------------------- */

typedef struct PendingAction
{
	PsAction	action;
	int32		subid;
	Oid			owner;
	int			nest_level;
} PendingAction;

static List *pending_actions = NIL;

void
ps_at_commit(PsAction action, int32 subid, Oid owner)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	PendingAction *a = palloc(sizeof(PendingAction));

	a->action = action;
	a->subid = subid;
	a->owner = owner;
	a->nest_level = GetCurrentTransactionNestLevel();
	pending_actions = lappend(pending_actions, a);
	MemoryContextSwitchTo(old);
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
				if (!ps_slot_want(MyDatabaseId, a->subid, a->owner, true))
					ereport(WARNING,
							(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
							 errmsg("no free subscription slot (pglite_sync.max_subscriptions = %d); the subscription starts when one frees up",
									ps_max_subscriptions)));
				wake = true;
				break;
			case PS_ACTION_STOP:
				ps_slot_unwant(MyDatabaseId, a->subid);
				break;
			case PS_ACTION_RELOAD:
				ps_slot_reload(MyDatabaseId, a->subid);
				break;
			case PS_ACTION_STOP_DATABASE:
				ps_slot_unwant_database(MyDatabaseId);
				break;
			case PS_ACTION_SCAN:
				ps_slot_request_rescan();
				wake = true;
				break;
			case PS_ACTION_WRITES:
				ps_slot_writes(MyDatabaseId, a->subid);
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
			ps_catalog_writing_reset();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			pending_actions = NIL;	/* memory goes with TopTransactionContext */
			ps_catalog_writing_reset();
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

