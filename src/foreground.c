/*
 * foreground.c
 *	  CALL electric.sync_now(name, timeout): run a subscription's stream in
 *	  this backend until its first up-to-date batch is committed.  This is
 *	  the sync for places without background workers (single-user mode,
 *	  embeddings) and a way to catch up a subscription whose worker cannot
 *	  run.  Each batch commits like a worker's (it is a procedure), the slot
 *	  is held so the launcher starts no worker meanwhile, and unsubscribe
 *	  stops it as it stops a worker.
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

#include "catalog.h"
#include "stream.h"

PG_FUNCTION_INFO_V1(ps_sync_now);

/* the slot this backend holds, for release on a FATAL exit as well */
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

static void
take_slot(PsStream *s)
{
	PsSlot	   *slot;
	pid_t		busy = 0;

	if (!exit_callback_registered)
	{
		before_shmem_exit(release_at_exit, (Datum) 0);
		exit_callback_registered = true;
	}

	if (!ps_slot_start(MyDatabaseId, s->sub->id, false))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("no free subscription slot for subscription \"%s\"", s->sub->name),
				 errhint("Raise pglite_sync.max_subscriptions.")));
	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	slot = ps_slot_find(MyDatabaseId, s->sub->id);
	if (slot == NULL)
		busy = -1;
	else if (slot->pid != 0 || slot->launching)
		busy = slot->pid ? slot->pid : -1;
	else
	{
		ps_slot_attach(slot, true);
		s->args.dbid = MyDatabaseId;
		s->args.subid = s->sub->id;
		s->args.generation = ps_slot_new_generation(slot);
		s->start_seq = slot->start_seq;
		s->slot = slot;
		s->slotno = slot - ps_shared->slots;
		held_slot = slot;
	}
	LWLockRelease(ps_shared->lock);
	if (busy != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("subscription \"%s\" is being synced by a background worker", s->sub->name),
				 busy > 0 ? errdetail("The worker's process ID is %d.", (int) busy) : 0,
				 errhint("Use electric.wait_for_sync() to wait for it.")));
}

Datum
ps_sync_now(PG_FUNCTION_ARGS)
{
	char	   *name;
	volatile TimestampTz deadline = 0;
	Oid			caller = GetUserId();
	Oid			save_user;
	int			save_sec;
	MemoryContext cxt;
	PsStream   *volatile s;

	ps_require_preload();
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("name must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!PG_ARGISNULL(1))
		deadline = ps_timeout_deadline(PG_GETARG_INTERVAL_P(1));
	/* each batch commits: only a CALL outside a transaction block can do that */
	if (fcinfo->context == NULL || !IsA(fcinfo->context, CallContext) ||
		((CallContext *) fcinfo->context)->atomic)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_TERMINATION),
				 errmsg("electric.sync_now() must be invoked with CALL outside a transaction block")));

	cxt = AllocSetContextCreate(TopMemoryContext, "pglite_sync foreground", ALLOCSET_DEFAULT_SIZES);
	s = MemoryContextAllocZero(cxt, sizeof(PsStream));
	s->foreground = true;
	s->worker_cxt = AllocSetContextCreate(cxt, "pglite_sync stream", ALLOCSET_DEFAULT_SIZES);
	s->iter_cxt = AllocSetContextCreate(cxt, "pglite_sync step", ALLOCSET_DEFAULT_SIZES);

	SPI_connect_ext(SPI_OPT_NONATOMIC);
	GetUserIdAndSecContext(&save_user, &save_sec);
	PG_TRY();
	{
		PsSubscription *sub;

		/* catalog statements run as the extension owner, data as the subscription's */
		SetUserIdAndSecContext(ps_extension_owner(), save_sec | SECURITY_LOCAL_USERID_CHANGE);
		sub = ps_catalog_load_by_name(name, s->worker_cxt);
		if (sub == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("subscription \"%s\" does not exist", name)));
		if (!has_privs_of_role(caller, sub->owner))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("must be owner of subscription \"%s\"", name)));
		if (!ps_stream_load(s, sub))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("subscription \"%s\" is stopped", name),
					 errhint("Resume it with electric.sync_shape_to_table() first.")));
		take_slot(s);
		ps_stream_open(s);

		while (!s->notified)
		{
			MemoryContextReset(s->iter_cxt);
			MemoryContextSwitchTo(s->iter_cxt);
			CHECK_FOR_INTERRUPTS();
			if (ps_stream_stop_requested(s))
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("subscription \"%s\" was stopped during the sync", name)));
			if (deadline != 0 && GetCurrentTimestamp() >= deadline)
				ereport(ERROR,
						(errcode(ERRCODE_QUERY_CANCELED),
						 errmsg("subscription \"%s\" was not up to date before the timeout", name)));
			ps_stream_step(s);
		}
	}
	PG_FINALLY();
	{
		ps_stream_close(s);
		release_held_slot();
		SetUserIdAndSecContext(save_user, save_sec);
		MemoryContextSwitchTo(TopTransactionContext);
		MemoryContextDelete(cxt);
	}
	PG_END_TRY();

	SPI_finish();
	PG_RETURN_VOID();
}
