/*
 * launcher.c
 *	  The launcher (a static background worker) and the per-database scanner.
 *
 * The launcher is connected to no database.  At start it has each database
 * scanned once by a short-lived scanner worker, which registers that
 * database's enabled subscriptions in the slot array; afterwards the SQL
 * functions register changes at COMMIT.  The launcher then keeps one
 * dynamic worker per wanted slot, restarting dead ones with a throttle that
 * doubles while they keep dying young, so one bad subscription can never
 * make it loop.
 */
#include "pglite_sync.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "catalog.h"

#define LAUNCH_FAIL_RETRY_MS	5000

static BackgroundWorkerHandle **worker_handles;	/* by slot number */
static uint32 *handle_generation;
static BackgroundWorkerHandle *scanner_handle = NULL;
static List *scan_queue = NIL;	/* database OIDs to scan */

void
ps_register_launcher(void)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 5;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, PS_EXTENSION_NAME);
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "ps_launcher_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "pglite_sync launcher");
	snprintf(bgw.bgw_type, BGW_MAXLEN, "pglite_sync launcher");
	RegisterBackgroundWorker(&bgw);
}

/* Every database that may be connected to (never templates). */
static List *
list_databases(void)
{
	List	   *dbs = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (db->datallowconn && !db->datistemplate)
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			dbs = lappend_oid(dbs, db->oid);
			MemoryContextSwitchTo(old);
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	PopActiveSnapshot();
	CommitTransactionCommand();
	return dbs;
}

static bool
database_exists(Oid dbid)
{
	bool		exists;

	StartTransactionCommand();
	exists = SearchSysCacheExists1(DATABASEOID, ObjectIdGetDatum(dbid));
	CommitTransactionCommand();
	return exists;
}

static bool
register_worker(const char *function, const char *type, const char *name,
				Datum main_arg, void *extra, size_t extra_len,
				BackgroundWorkerHandle **handle)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, PS_EXTENSION_NAME);
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(bgw.bgw_name, BGW_MAXLEN, "%s", name);
	snprintf(bgw.bgw_type, BGW_MAXLEN, "%s", type);
	bgw.bgw_main_arg = main_arg;
	bgw.bgw_notify_pid = MyProcPid;
	if (extra)
		memcpy(bgw.bgw_extra, extra, extra_len);
	return RegisterDynamicBackgroundWorker(&bgw, handle);
}

/* The scanner is gone: DROP DATABASE waits on the condition variable. */
static void
scanner_gone(void)
{
	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	ps_shared->scanner_pid = 0;
	ps_shared->scanner_db = InvalidOid;
	LWLockRelease(ps_shared->lock);
	ConditionVariableBroadcast(&ps_shared->cv);
}

/* Start the next scanner if none is running. */
static void
run_scans(void)
{
	pid_t		pid;

	if (scanner_handle != NULL)
	{
		if (GetBackgroundWorkerPid(scanner_handle, &pid) != BGWH_STOPPED)
			return;
		pfree(scanner_handle);
		scanner_handle = NULL;
		scanner_gone();
	}
	while (scan_queue != NIL)
	{
		Oid			dbid = linitial_oid(scan_queue);
		bool		blocked;
		char		name[BGW_MAXLEN];

		LWLockAcquire(ps_shared->lock, LW_SHARED);
		blocked = ps_database_blocked(dbid);
		LWLockRelease(ps_shared->lock);
		if (blocked)
			return;				/* retried once the DROP is over */

		scan_queue = list_delete_first(scan_queue);
		snprintf(name, sizeof(name), "pglite_sync scanner for database %u", dbid);
		if (!register_worker("ps_scanner_main", "pglite_sync scanner", name,
							 ObjectIdGetDatum(dbid), NULL, 0, &scanner_handle))
		{
			/* no free bgworker slot: try again later */
			scan_queue = lcons_oid(dbid, scan_queue);
			scanner_handle = NULL;
			return;
		}
		LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
		ps_shared->scanner_db = dbid;
		LWLockRelease(ps_shared->lock);
		return;
	}
}

/*
 * One pass over the slots: notice workers that died before attaching, and
 * launch workers for wanted slots whose throttle has expired.  Returns the
 * time to sleep until the next throttle expiry (ms).
 */
static long
manage_slots(void)
{
	TimestampTz now = GetCurrentTimestamp();
	long		sleep_ms = 10000;
	int			to_launch[64];
	int			nlaunch = 0;
	List	   *vanished = NIL;

	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < ps_shared->nslots; i++)
	{
		PsSlot	   *s = &ps_shared->slots[i];
		pid_t		pid;

		if (!s->in_use)
			continue;

		if (s->launching && worker_handles[i] != NULL &&
			handle_generation[i] == s->generation &&
			GetBackgroundWorkerPid(worker_handles[i], &pid) == BGWH_STOPPED)
		{
			/* died before attaching: missing database, or a crash */
			s->launching = false;
			ps_slot_throttle(s, now);
			vanished = lappend_int(vanished, i);
		}

		if (!s->wanted)
		{
			if (s->pid == 0 && !s->launching)
				ps_slot_free(s);
			continue;
		}
		if (s->pid != 0 || s->launching || ps_database_blocked(s->dbid))
			continue;
		if (s->next_launch > now)
		{
			long		secs;
			int			usecs;

			TimestampDifference(now, s->next_launch, &secs, &usecs);
			sleep_ms = Min(sleep_ms, secs * 1000 + usecs / 1000 + 1);
			continue;
		}
		if (nlaunch < lengthof(to_launch))
		{
			s->launching = true;
			ps_slot_new_generation(s);
			s->launched_at = now;
			to_launch[nlaunch++] = i;
		}
		else
			sleep_ms = 0;
	}
	LWLockRelease(ps_shared->lock);

	/* a worker that never attached: forget slots of dropped databases */
	{
		ListCell   *lc;

		foreach(lc, vanished)
		{
			int			i = lfirst_int(lc);
			Oid			dbid;

			LWLockAcquire(ps_shared->lock, LW_SHARED);
			dbid = ps_shared->slots[i].dbid;
			LWLockRelease(ps_shared->lock);
			if (!database_exists(dbid))
			{
				LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
				if (ps_shared->slots[i].dbid == dbid && ps_shared->slots[i].pid == 0)
					ps_slot_free(&ps_shared->slots[i]);
				LWLockRelease(ps_shared->lock);
			}
		}
	}

	for (int k = 0; k < nlaunch; k++)
	{
		int			i = to_launch[k];
		PsSlot	   *s = &ps_shared->slots[i];
		PsWorkerArgs args;
		char		name[BGW_MAXLEN];
		BackgroundWorkerHandle *handle;

		LWLockAcquire(ps_shared->lock, LW_SHARED);
		args.dbid = s->dbid;
		args.subid = s->subid;
		args.generation = s->generation;
		LWLockRelease(ps_shared->lock);

		snprintf(name, sizeof(name), "pglite_sync worker for subscription %d in database %u",
				 args.subid, args.dbid);
		if (worker_handles[i] != NULL)
		{
			pfree(worker_handles[i]);
			worker_handles[i] = NULL;
		}
		if (register_worker("ps_worker_main", "pglite_sync worker", name,
							Int32GetDatum(i), &args, sizeof(args), &handle))
		{
			worker_handles[i] = handle;
			handle_generation[i] = args.generation;
		}
		else
		{
			ereport(WARNING,
					(errmsg("pglite_sync: could not start a worker for subscription %d: out of background worker slots",
							args.subid),
					 errhint("Raise max_worker_processes.")));
			LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
			s->launching = false;
			s->next_launch = TimestampTzPlusMilliseconds(now, LAUNCH_FAIL_RETRY_MS);
			LWLockRelease(ps_shared->lock);
			sleep_ms = Min(sleep_ms, LAUNCH_FAIL_RETRY_MS);
		}
	}
	return sleep_ms;
}

static void
launcher_detach(int code, Datum arg)
{
	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	ps_shared->launcher_pid = 0;
	ps_shared->launcher_latch = NULL;
	LWLockRelease(ps_shared->lock);
}

void
ps_launcher_main(Datum main_arg)
{
	MemoryContext loop_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* shared catalogs only: we read pg_database */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("pglite_sync launcher");

	worker_handles = MemoryContextAllocZero(TopMemoryContext,
											sizeof(BackgroundWorkerHandle *) * ps_shared->nslots);
	handle_generation = MemoryContextAllocZero(TopMemoryContext,
											   sizeof(uint32) * ps_shared->nslots);

	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	ps_shared->launcher_pid = MyProcPid;
	ps_shared->launcher_latch = MyLatch;
	ps_shared->rescan = true;
	/* slots of a previous launcher life: their handles are gone */
	for (int i = 0; i < ps_shared->nslots; i++)
		ps_shared->slots[i].launching = false;
	LWLockRelease(ps_shared->lock);
	before_shmem_exit(launcher_detach, (Datum) 0);

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "pglite_sync launcher loop",
									 ALLOCSET_DEFAULT_SIZES);
	ereport(LOG, (errmsg("pglite_sync launcher started")));

	for (;;)
	{
		bool		rescan;
		long		sleep_ms;

		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
		rescan = ps_shared->rescan;
		ps_shared->rescan = false;
		LWLockRelease(ps_shared->lock);
		if (rescan)
		{
			List	   *dbs = list_databases();
			ListCell   *lc;

			MemoryContextSwitchTo(TopMemoryContext);
			foreach(lc, dbs)
				if (!list_member_oid(scan_queue, lfirst_oid(lc)))
					scan_queue = lappend_oid(scan_queue, lfirst_oid(lc));
			MemoryContextSwitchTo(loop_cxt);
		}
		MemoryContextSwitchTo(TopMemoryContext);
		run_scans();
		MemoryContextSwitchTo(loop_cxt);

		sleep_ms = manage_slots();
		if (scan_queue != NIL || scanner_handle != NULL)
			sleep_ms = Min(sleep_ms, 1000);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms, ps_wait_event(PS_WAIT_LAUNCHER));
		ResetLatch(MyLatch);
	}
}

/*
 * Scanner: connect to one database, and if it has the extension, make sure
 * every enabled subscription there has a slot.
 */
void
ps_scanner_main(Datum main_arg)
{
	Oid			dbid = DatumGetObjectId(main_arg);
	List	   *ids = NIL;
	ListCell   *lc;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	if (ps_database_blocked(dbid))
	{
		LWLockRelease(ps_shared->lock);
		proc_exit(0);
	}
	ps_shared->scanner_pid = MyProcPid;
	ps_shared->scanner_db = dbid;
	LWLockRelease(ps_shared->lock);

	BackgroundWorkerInitializeConnectionByOid(dbid, InvalidOid, 0);
	pgstat_report_appname("pglite_sync scanner");

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (!RecoveryInProgress() && ps_extension_ready())
	{
		MemoryContext outer = CurrentMemoryContext;

		SPI_connect();
		ids = ps_catalog_enabled_ids();
		MemoryContextSwitchTo(TopMemoryContext);	/* outlives the transaction */
		ids = list_copy(ids);
		MemoryContextSwitchTo(outer);
		SPI_finish();
	}
	PopActiveSnapshot();
	CommitTransactionCommand();

	foreach(lc, ids)
		if (!ps_slot_start(dbid, lfirst_int(lc), false))
			ereport(WARNING,
					(errmsg("pglite_sync: no free subscription slot for subscription %d in database %u",
							lfirst_int(lc), dbid),
					 errhint("Raise pglite_sync.max_subscriptions.")));

	scanner_gone();
	if (ids != NIL)
		ps_wake_launcher();
	proc_exit(0);
}
