/*
 * worker.c
 *	  The background worker of one subscription: attach to its slot, connect,
 *	  and run the stream (stream.c) until stopped, recording every error and
 *	  backing off instead of exiting.
 */
#include "pglite_sync.h"

#include "access/xact.h"
#include "access/htup_details.h"
#include "catalog/pg_database.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "stream.h"

static void
worker_detach(int code, Datum arg)
{
	ps_slot_detach(&ps_shared->slots[DatumGetInt32(arg)], code != 0);
}

/* Take our slot if it is still ours to take; otherwise leave quietly. */
static void
attach(PsStream *w)
{
	PsSlot	   *slot = &ps_shared->slots[w->slotno];
	bool		ok;

	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	ok = slot->in_use && slot->dbid == w->args.dbid && slot->subid == w->args.subid &&
		slot->generation == w->args.generation;
	if (ok)
		slot->launching = false;
	ok = ok && slot->wanted && slot->pid == 0 && !ps_database_blocked(w->args.dbid);
	if (ok)
	{
		ps_slot_attach(slot, false);
		w->start_seq = slot->start_seq;
	}
	else if (slot->in_use && !slot->wanted && slot->pid == 0 &&
			 slot->generation == w->args.generation)
		ps_slot_free(slot);
	LWLockRelease(ps_shared->lock);
	if (!ok)
	{
		ConditionVariableBroadcast(&ps_shared->cv);
		proc_exit(0);
	}
	w->slot = slot;
	before_shmem_exit(worker_detach, Int32GetDatum(w->slotno));
}

static bool
load(PsStream *w)
{
	PsSubscription *sub = NULL;

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (!RecoveryInProgress() && !ps_database_is_template() && ps_extension_ready())
	{
		SPI_connect();
		sub = ps_catalog_load(w->args.subid, w->worker_cxt);
		SPI_finish();
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(w->iter_cxt);
	return ps_stream_load(w, sub);
}

void
ps_worker_main(Datum main_arg)
{
	PsStream   *w;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	w = MemoryContextAllocZero(TopMemoryContext, sizeof(PsStream));
	w->slotno = DatumGetInt32(main_arg);
	memcpy(&w->args, MyBgworkerEntry->bgw_extra, sizeof(PsWorkerArgs));
	w->worker_cxt = AllocSetContextCreate(TopMemoryContext, "pglite_sync worker",
										  ALLOCSET_DEFAULT_SIZES);
	w->iter_cxt = AllocSetContextCreate(TopMemoryContext, "pglite_sync iteration",
										ALLOCSET_DEFAULT_SIZES);
	attach(w);

	BackgroundWorkerInitializeConnectionByOid(w->args.dbid, InvalidOid, 0);
	if (!load(w))
	{
		/* gone or stopped: free the slot unless a newer subscribe wants it */
		ps_slot_release(w->slotno, w->start_seq);
		proc_exit(0);
	}
	pgstat_report_appname(psprintf("pglite_sync %s", w->sub->name));
	ereport(LOG,
			(errmsg("pglite_sync: subscription \"%s\" started%s", w->sub->name,
					w->replace ? " from offset -1" : psprintf(" at offset %s", w->offset))));
	ps_stream_open(w);

	for (;;)
	{
		MemoryContextReset(w->iter_cxt);
		MemoryContextSwitchTo(w->iter_cxt);

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (ps_stream_stop_requested(w))
		{
			ps_stream_close(w);
			proc_exit(0);
		}

		PG_TRY();
		{
			ps_stream_step(w);
		}
		PG_CATCH();
		{
			ErrorData  *e;

			MemoryContextSwitchTo(w->iter_cxt);
			e = CopyErrorData();
			FlushErrorState();
			AbortOutOfAnyTransaction();
			ps_stream_failed(w, e);
		}
		PG_END_TRY();
	}
}
