/*
 * foreground.c
 *	  CALL electric.sync_now(name, timeout): run a subscription's stream in
 *	  this backend until its first up-to-date batch is committed.  This is
 *	  the sync for places without background workers (single-user mode) and
 *	  a way to catch up a subscription whose worker cannot run.  Each batch
 *	  commits like a worker's (it is a procedure), the slot is held so that
 *	  no worker starts meanwhile, and unsubscribe stops it as it stops a
 *	  worker.  The session stays the caller's: only catalog statements and
 *	  the apply switch roles, and never across a commit.
 */
#include "pglite_sync.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/ipc.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "run.h"
#ifndef __PGLITE__
#include "driver.h"
#endif

PG_FUNCTION_INFO_V1(ps_sync_now);

#ifdef __PGLITE__
Datum
ps_sync_now(PG_FUNCTION_ARGS)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("electric.sync_now() is not available in PGlite"),
			 errhint("Subscriptions there are host-driven: electric.next_request() and electric.ingest_response().")));
	PG_RETURN_VOID();
}
#else
/* the slot this backend holds, released on a FATAL exit as well */
static PsSlot *held_slot = NULL;
static bool exit_callback_registered = false;

static void
release_held_slot(void)
{
	PsSlot	   *slot = held_slot;

	if (slot == NULL)
		return;
	held_slot = NULL;
	ps_slot_detach(slot, false);
}

static void
release_at_exit(int code, Datum arg)
{
	release_held_slot();
}

Datum
ps_sync_now(PG_FUNCTION_ARGS)
{
	char	   *name;
	volatile TimestampTz deadline = 0;
	Oid			caller = GetUserId();
	MemoryContext cxt;
	PsSubscription *sub;
	PsRun	   *volatile run = NULL;
	PsDriver   *volatile d = NULL;

	ps_require_preload();
	name = ps_arg_text(fcinfo, 0, "name");
	if (!PG_ARGISNULL(1))
		deadline = ps_timeout_deadline(PG_GETARG_INTERVAL_P(1));
	/* each batch commits: only a CALL outside a transaction block can do that */
	if (fcinfo->context == NULL || !IsA(fcinfo->context, CallContext) ||
		((CallContext *) fcinfo->context)->atomic)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_TERMINATION),
				 errmsg("electric.sync_now() must be invoked with CALL outside a transaction block")));

	cxt = AllocSetContextCreate(TopMemoryContext, "pglite_sync foreground", ALLOCSET_DEFAULT_SIZES);
	SPI_connect_ext(SPI_OPT_NONATOMIC);
	PG_TRY();
	{
		sub = ps_catalog_load_owned(name, caller, cxt);
		if (!sub->enabled)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("subscription \"%s\" is stopped", name),
					 errhint("Resume it with electric.sync_shape_to_table() first.")));
		if (!sub->worker)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("subscription \"%s\" is host-driven", name),
					 errhint("Drive it with electric.next_request() and electric.ingest_response().")));

		run = ps_run_create(PS_RUN_FOREGROUND, sub, cxt);
		if (!exit_callback_registered)
		{
			before_shmem_exit(release_at_exit, (Datum) 0);
			exit_callback_registered = true;
		}
		run->slot = ps_slot_attach_foreground(MyDatabaseId, sub->id, sub->owner, sub->name,
											  &run->generation, &run->start_seq);
		held_slot = run->slot;
		d = ps_driver_create(run);

		while (!run->notified)
		{
			MemoryContextReset(run->step_cxt);
			MemoryContextSwitchTo(run->step_cxt);
			CHECK_FOR_INTERRUPTS();
			if (ps_run_stop_requested(run))
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("subscription \"%s\" was stopped during the sync", name)));
			if (deadline != 0 && GetCurrentTimestamp() >= deadline)
				ereport(ERROR,
						(errcode(ERRCODE_QUERY_CANCELED),
						 errmsg("subscription \"%s\" was not up to date before the timeout", name)));
			ps_driver_step(d);
		}
	}
	PG_FINALLY();
	{
		ps_driver_destroy(d);
		release_held_slot();
		MemoryContextSwitchTo(TopTransactionContext);
		MemoryContextDelete(cxt);
	}
	PG_END_TRY();

	SPI_finish();
	PG_RETURN_VOID();
}
#endif
