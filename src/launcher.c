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
#include "catalog/pg_authid.h"
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
	MemoryContext old;
	bool		ok;

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
	/*
	 * The handle is palloc'd in the current context and kept across loop
	 * iterations, so it must not land in the loop's context, which is reset
	 * each time round (on 17+ no transaction in connect_as() switches us to
	 * TopMemoryContext first).
	 */
	old = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&bgw, handle);
	MemoryContextSwitchTo(old);
	return ok;
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
 * The role a worker connects as: its subscription's owner, unless that role
 * cannot log in and this PostgreSQL refuses such a worker connection (then
 * the bootstrap superuser, which switches to the owner restricted).
 */
static Oid
connect_as(Oid owner)
{
	HeapTuple	tup;
	bool		canlogin = false;

	if (!OidIsValid(owner))
		return InvalidOid;
	if (PS_CAN_CONNECT_AS_NOLOGIN)
		return owner;
	StartTransactionCommand();
	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(owner));
	if (HeapTupleIsValid(tup))
	{
		canlogin = ((Form_pg_authid) GETSTRUCT(tup))->rolcanlogin;
		ReleaseSysCache(tup);
	}
	CommitTransactionCommand();
	return canlogin ? owner : InvalidOid;
}

/*
 * One pass over the slots: notice workers that died before attaching, and
 * launch workers for the slots due.  Returns the time to sleep until the
 * next one is due (ms).
 */
static long
manage_slots(void)
{
	PsLaunch	launches[64];
	long		sleep_ms;
	int			n;

	/*
	 * Workers that are gone.  The postmaster tells us (bgw_notify_pid) once
	 * it has freed their background worker slot, so launches refused for
	 * lack of one are retried now rather than at their next attempt.  A
	 * launch that never attached means a crash, or its database is gone.
	 */
	for (int i = 0; i < ps_shared->nslots; i++)
	{
		pid_t		pid;
		Oid			dbid;
		bool		vanished;

		if (worker_handles[i] == NULL ||
			GetBackgroundWorkerPid(worker_handles[i], &pid) != BGWH_STOPPED)
			continue;
		LWLockAcquire(ps_shared->lock, LW_SHARED);
		vanished = ps_shared->slots[i].phase != PS_SLOT_FREE &&
			ps_shared->slots[i].generation == handle_generation[i] &&
			ps_shared->slots[i].pid == 0;
		dbid = ps_shared->slots[i].dbid;
		LWLockRelease(ps_shared->lock);
		pfree(worker_handles[i]);
		worker_handles[i] = NULL;
		ps_slot_retry_refused_launches();
		if (!vanished)
			continue;
		ps_slot_launch_vanished(i, handle_generation[i]);
		if (!database_exists(dbid))
			ps_slot_forget_database(dbid);
	}

	n = ps_slot_take_launches(launches, lengthof(launches), &sleep_ms);
	for (int k = 0; k < n; k++)
	{
		PsLaunch   *l = &launches[k];
		PsWorkerArgs args;
		char		name[BGW_MAXLEN];
		BackgroundWorkerHandle *handle;

		args.dbid = l->dbid;
		args.subid = l->subid;
		args.generation = l->generation;
		args.userid = connect_as(l->owner);
		snprintf(name, sizeof(name), "pglite_sync worker for subscription %d in database %u",
				 args.subid, args.dbid);
		if (worker_handles[l->slotno] != NULL)
		{
			pfree(worker_handles[l->slotno]);
			worker_handles[l->slotno] = NULL;
		}
		if (register_worker("ps_worker_main", "pglite_sync worker", name,
							Int32GetDatum(l->slotno), &args, sizeof(args), &handle))
		{
			worker_handles[l->slotno] = handle;
			handle_generation[l->slotno] = l->generation;
		}
		else
		{
			char		why[PS_LAUNCH_ERROR_LEN];

			snprintf(why, sizeof(why),
					 "could not start a worker: all background worker slots are in use (max_worker_processes = %d)\n"
					 "HINT: Raise max_worker_processes and restart the server; the subscription starts on its own as soon as a slot frees up.",
					 max_worker_processes);
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("pglite_sync: could not start a worker for subscription %d: all background worker slots are in use",
							args.subid),
					 errhint("Raise max_worker_processes.")));
			ps_slot_launch_failed(l->slotno, l->generation, why);
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
	LWLockRelease(ps_shared->lock);
	/* launches of a previous launcher life: their handles are gone */
	for (int i = 0; i < ps_shared->nslots; i++)
		ps_slot_launch_vanished(i, ps_shared->slots[i].generation);
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
	List	   *subs = NIL;
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
		SPI_connect();
		subs = ps_catalog_enabled();
		/* each entry outlives the transaction */
		foreach(lc, subs)
		{
			PsEnabledSub *e = MemoryContextAlloc(TopMemoryContext, sizeof(PsEnabledSub));

			*e = *(PsEnabledSub *) lfirst(lc);
			ids = lappend(ids, e);
		}
		SPI_finish();
	}
	PopActiveSnapshot();
	CommitTransactionCommand();

	foreach(lc, ids)
	{
		PsEnabledSub *e = lfirst(lc);

		if (!ps_slot_want(dbid, e->subid, e->owner, false))
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("pglite_sync: no free subscription slot for subscription %d in database %u",
							e->subid, dbid),
					 errhint("Raise pglite_sync.max_subscriptions.")));
	}

	scanner_gone();
	if (ids != NIL)
		ps_wake_launcher();
	proc_exit(0);
}
