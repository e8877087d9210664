/*
 * slots.c
 *	  The slot array in shared memory, and every transition of a slot.
 *
 * One slot per subscription that should run somewhere in the cluster, keyed
 * by (dbid, subid), under ps_shared->lock.  Its phase moves only here:
 *
 *                 want                      take_launches
 *   FREE ───────────────────► WAITING ─────────────────────► LAUNCHING
 *    ▲                         ▲  │ ▲   launch_failed / vanished  │
 *    │                         │  │ └────────── (throttled) ──────┤
 *    │          detach         │  │ attach_foreground             │ attach_worker
 *    │   (throttled if failed) │  ▼                               ▼
 *    │                         └─── RUNNING ◄─────────────────────┘
 *    │                                 │ unwant, release
 *    │     detach, attach, vanished    ▼
 *    └───────────────────────────── STOPPING ── want: rewanted, so the
 *                                               exit leads to WAITING
 *
 * unwant of a WAITING slot frees it at once; of a LAUNCHING one, the worker
 * finds STOPPING when it attaches and leaves.  A generation, unique across
 * the cluster, names each launch or foreground attach, so a stale process
 * can never take over a slot that has moved on.
 */
#include "pglite_sync.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include <signal.h>

PsShared   *ps_shared = NULL;

static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* restart throttle: doubles while a worker keeps dying young */
#define MAX_RESTART_DELAY_MS	60000
#define HEALTHY_RUN_MS			30000
/* a launch the postmaster refused (no bgworker slot) is retried this often,
 * and at once whenever a worker exits */
#define LAUNCH_RETRY_MS			5000

/* ---- shared memory ------------------------------------------------------ */

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

/* Workers and their management need the preloaded library's shared memory. */
void
ps_require_preload(void)
{
	if (ps_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pglite_sync is not loaded via shared_preload_libraries"),
				 errdetail("Subscriptions are run by background workers, which need the library loaded at server start."),
				 errhint("Add pglite_sync to shared_preload_libraries in postgresql.conf and restart the server, or subscribe with worker => false.")));
}

/* ---- helpers (lock held) ------------------------------------------------ */

PsSlot *
ps_slot_find(Oid dbid, int32 subid)
{
	for (int i = 0; i < ps_shared->nslots; i++)
	{
		PsSlot	   *s = &ps_shared->slots[i];

		if (s->phase != PS_SLOT_FREE && s->dbid == dbid && s->subid == subid)
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
		if (ps_shared->slots[i].phase != PS_SLOT_FREE)
			n++;
	LWLockRelease(ps_shared->lock);
	return n;
}

bool
ps_database_blocked(Oid dbid)
{
	for (int i = 0; i < PS_MAX_BLOCKED_DBS; i++)
		if (ps_shared->blocked_count[i] > 0 && ps_shared->blocked_dbs[i] == dbid)
			return true;
	return false;
}

static void
slot_free(PsSlot *slot)
{
	slot->phase = PS_SLOT_FREE;
	if (ps_shared->slots_exhausted)
	{
		/* a start found no free slot: have every database scanned again */
		ps_shared->slots_exhausted = false;
		ps_shared->rescan = true;
	}
}

static uint32
new_generation(PsSlot *slot)
{
	slot->generation = ++ps_shared->next_generation;
	return slot->generation;
}

static void
throttle(PsSlot *slot, TimestampTz now)
{
	if (slot->launched_at != 0 &&
		TimestampDifferenceExceeds(slot->launched_at, now, HEALTHY_RUN_MS))
		slot->restart_delay_ms = 1000;
	else
		slot->restart_delay_ms = Min(Max(slot->restart_delay_ms * 2, 1000),
									 MAX_RESTART_DELAY_MS);
	slot->next_launch = TimestampTzPlusMilliseconds(now, slot->restart_delay_ms);
}

/*
 * A STOPPING slot that was subscribed again (start_seq moved on since the
 * unwant) launches anew once its process has gone.
 */
static inline bool
rewanted(PsSlot *slot)
{
	return slot->start_seq != slot->stop_seq;
}

/* The process left a STOPPING slot, or never came: free it or launch again. */
static void
stopped(PsSlot *slot)
{
	slot->pid = 0;
	slot->latch = NULL;
	slot->foreground = false;
	slot->up_to_date = false;
	if (rewanted(slot))
	{
		slot->phase = PS_SLOT_WAITING;
		slot->next_launch = 0;
	}
	else
		slot_free(slot);
}

/* ---- want / unwant --------------------------------------------------------- */

bool
ps_slot_want(Oid dbid, int32 subid, Oid owner, bool from_user)
{
	PsSlot	   *slot;

	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	slot = ps_slot_find(dbid, subid);
	if (slot == NULL)
	{
		for (int i = 0; i < ps_shared->nslots; i++)
		{
			if (ps_shared->slots[i].phase == PS_SLOT_FREE)
			{
				slot = &ps_shared->slots[i];
				memset(slot, 0, sizeof(PsSlot));
				slot->phase = PS_SLOT_WAITING;
				slot->dbid = dbid;
				slot->subid = subid;
				slot->state = PS_STATE_STARTING;
				slot->owner = owner;
				break;
			}
		}
		if (slot == NULL)
		{
			ps_shared->slots_exhausted = true;
			LWLockRelease(ps_shared->lock);
			return false;
		}
	}
	if (from_user)
	{
		slot->owner = owner;
		slot->start_seq++;		/* a STOPPING slot relaunches after the exit */
		slot->next_launch = 0;
		slot->restart_delay_ms = 0;
	}
	LWLockRelease(ps_shared->lock);
	return true;
}

/* Subscriptions were written other than through the API: scan the databases. */
void
ps_slot_request_rescan(void)
{
	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	ps_shared->rescan = true;
	LWLockRelease(ps_shared->lock);
}

/* Bump one of a running subscription's counters and wake its worker. */
static void
slot_notify(Oid dbid, int32 subid, bool writes)
{
	PsSlot	   *slot;

	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	slot = ps_slot_find(dbid, subid);
	if (slot != NULL)
	{
		if (writes)
			slot->writes_seq++;
		else
			slot->reload_seq++;
		if (slot->latch)
			SetLatch(slot->latch);
	}
	LWLockRelease(ps_shared->lock);
}

/* alter_subscription committed: the process rereads the definition now. */
void
ps_slot_reload(Oid dbid, int32 subid)
{
	slot_notify(dbid, subid, false);
}

/* A local write committed: its subscription's worker has something to upload. */
void
ps_slot_writes(Oid dbid, int32 subid)
{
	slot_notify(dbid, subid, true);
}

/* One of a slot's counters, read under the lock (64 bits may tear without it). */
static uint64
read_counter(const uint64 *counter)
{
	uint64		seq;

	LWLockAcquire(ps_shared->lock, LW_SHARED);
	seq = *counter;
	LWLockRelease(ps_shared->lock);
	return seq;
}

uint64
ps_slot_writes_seq(PsSlot *slot)
{
	return read_counter(&slot->writes_seq);
}

uint64
ps_slot_reload_seq(PsSlot *slot)
{
	return read_counter(&slot->reload_seq);
}

static void
unwant(PsSlot *slot)
{
	slot->stop_seq = slot->start_seq;
	switch (slot->phase)
	{
		case PS_SLOT_WAITING:
			slot_free(slot);
			break;
		case PS_SLOT_LAUNCHING:
		case PS_SLOT_RUNNING:
			slot->phase = PS_SLOT_STOPPING;
			if (slot->latch)
				SetLatch(slot->latch);
			break;
		case PS_SLOT_STOPPING:
		case PS_SLOT_FREE:
			break;
	}
}

void
ps_slot_unwant(Oid dbid, int32 subid)
{
	PsSlot	   *slot;

	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	slot = ps_slot_find(dbid, subid);
	if (slot != NULL)
		unwant(slot);
	LWLockRelease(ps_shared->lock);
	ConditionVariableBroadcast(&ps_shared->cv);
}

void
ps_slot_unwant_database(Oid dbid)
{
	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < ps_shared->nslots; i++)
	{
		PsSlot	   *s = &ps_shared->slots[i];

		if (s->phase != PS_SLOT_FREE && s->dbid == dbid)
			unwant(s);
	}
	LWLockRelease(ps_shared->lock);
	ConditionVariableBroadcast(&ps_shared->cv);
}

/* ---- the launcher ------------------------------------------------------------ */

int
ps_slot_take_launches(PsLaunch *launches, int max, long *sleep_ms)
{
	TimestampTz now = GetCurrentTimestamp();
	int			n = 0;

	*sleep_ms = 10000;
	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < ps_shared->nslots; i++)
	{
		PsSlot	   *s = &ps_shared->slots[i];

		if (s->phase != PS_SLOT_WAITING || ps_database_blocked(s->dbid))
			continue;
		if (s->next_launch > now)
		{
			long		secs;
			int			usecs;

			TimestampDifference(now, s->next_launch, &secs, &usecs);
			*sleep_ms = Min(*sleep_ms, secs * 1000 + usecs / 1000 + 1);
			continue;
		}
		if (n == max)
		{
			*sleep_ms = 0;
			break;
		}
		s->phase = PS_SLOT_LAUNCHING;
		s->launched_at = now;
		launches[n].slotno = i;
		launches[n].generation = new_generation(s);
		launches[n].dbid = s->dbid;
		launches[n].subid = s->subid;
		launches[n].owner = s->owner;
		n++;
	}
	LWLockRelease(ps_shared->lock);
	return n;
}

/* The postmaster refused the worker: say why in the view, retry later. */
void
ps_slot_launch_failed(int slotno, uint32 generation, const char *why)
{
	PsSlot	   *s = &ps_shared->slots[slotno];

	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	if (s->generation == generation)
	{
		strlcpy(s->launch_error, why, sizeof(s->launch_error));
		if (s->phase == PS_SLOT_LAUNCHING)
		{
			s->phase = PS_SLOT_WAITING;
			s->next_launch = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), LAUNCH_RETRY_MS);
		}
		else if (s->phase == PS_SLOT_STOPPING)
			stopped(s);
	}
	LWLockRelease(ps_shared->lock);
	ConditionVariableBroadcast(&ps_shared->cv);
}

/* The worker died before attaching (a crash, or its database is gone). */
void
ps_slot_launch_vanished(int slotno, uint32 generation)
{
	PsSlot	   *s = &ps_shared->slots[slotno];

	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	if (s->generation == generation)
	{
		if (s->phase == PS_SLOT_LAUNCHING)
		{
			s->phase = PS_SLOT_WAITING;
			throttle(s, GetCurrentTimestamp());
		}
		else if (s->phase == PS_SLOT_STOPPING && s->pid == 0)
			stopped(s);
	}
	LWLockRelease(ps_shared->lock);
	ConditionVariableBroadcast(&ps_shared->cv);
}

/* A database is gone: its idle slots go with it. */
void
ps_slot_forget_database(Oid dbid)
{
	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < ps_shared->nslots; i++)
	{
		PsSlot	   *s = &ps_shared->slots[i];

		if (s->dbid == dbid && (s->phase == PS_SLOT_WAITING ||
								(s->phase == PS_SLOT_STOPPING && s->pid == 0)))
			slot_free(s);
	}
	LWLockRelease(ps_shared->lock);
}

/* ---- the attached process --------------------------------------------------- */

static void
attached(PsSlot *slot, bool foreground)
{
	slot->phase = PS_SLOT_RUNNING;
	slot->pid = MyProcPid;
	slot->latch = MyLatch;
	slot->foreground = foreground;
	slot->state = PS_STATE_STARTING;
	slot->up_to_date = false;
	slot->launch_error[0] = '\0';
	memset(&slot->stats, 0, sizeof(slot->stats));
}

/*
 * The worker launched for (slotno, generation) takes its slot.  NULL when
 * the slot has moved on or was unwanted meanwhile: the worker then leaves.
 */
PsSlot *
ps_slot_attach_worker(int slotno, Oid dbid, int32 subid, uint32 generation,
					  uint64 *start_seq)
{
	PsSlot	   *s = &ps_shared->slots[slotno];
	PsSlot	   *result = NULL;

	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	if (s->dbid == dbid && s->subid == subid && s->generation == generation)
	{
		if (s->phase == PS_SLOT_LAUNCHING && !ps_database_blocked(dbid))
		{
			attached(s, false);
			*start_seq = s->start_seq;
			result = s;
		}
		else if (s->phase == PS_SLOT_STOPPING || s->phase == PS_SLOT_LAUNCHING)
			stopped(s);
	}
	LWLockRelease(ps_shared->lock);
	if (result == NULL)
		ConditionVariableBroadcast(&ps_shared->cv);
	return result;
}

/* sync_now runs the stream in this backend: the slot must be idle. */
PsSlot *
ps_slot_attach_foreground(Oid dbid, int32 subid, Oid owner, const char *name,
						  uint32 *generation, uint64 *start_seq)
{
	PsSlot	   *s;
	pid_t		busy = 0;

	if (!ps_slot_want(dbid, subid, owner, false))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("no free subscription slot for subscription \"%s\"", name),
				 errdetail("pglite_sync.max_subscriptions is %d.", ps_max_subscriptions),
				 errhint("Raise pglite_sync.max_subscriptions and restart the server.")));
	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	s = ps_slot_find(dbid, subid);
	if (s == NULL || s->phase != PS_SLOT_WAITING)
		busy = (s && s->pid) ? s->pid : -1;
	else
	{
		attached(s, true);
		*generation = new_generation(s);
		*start_seq = s->start_seq;
	}
	LWLockRelease(ps_shared->lock);
	if (busy != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("subscription \"%s\" is being synced by a background worker", name),
				 busy > 0 ? errdetail("The worker's process ID is %d.", (int) busy) : 0,
				 errhint("Use electric.wait_for_sync() to wait for it.")));
	return s;
}

/* A background worker slot was freed: launches refused for lack of one, now. */
void
ps_slot_retry_refused_launches(void)
{
	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < ps_shared->nslots; i++)
		if (ps_shared->slots[i].phase == PS_SLOT_WAITING &&
			ps_shared->slots[i].launch_error[0])
			ps_shared->slots[i].next_launch = 0;
	LWLockRelease(ps_shared->lock);
}

/*
 * The attached process leaves: the slot waits for a relaunch (throttled if
 * the run failed), or is freed if nothing wants it.  The launcher retries
 * refused launches once the postmaster has freed this worker's slot.
 */
void
ps_slot_detach(PsSlot *slot, bool failed)
{
	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	if (slot->pid == MyProcPid &&
		(slot->phase == PS_SLOT_RUNNING || slot->phase == PS_SLOT_STOPPING))
	{
		if (slot->phase == PS_SLOT_STOPPING)
			stopped(slot);
		else
		{
			slot->phase = PS_SLOT_WAITING;
			slot->pid = 0;
			slot->latch = NULL;
			slot->foreground = false;
			slot->up_to_date = false;
			if (failed)
				throttle(slot, GetCurrentTimestamp());
		}
	}
	LWLockRelease(ps_shared->lock);
	ConditionVariableBroadcast(&ps_shared->cv);
	ps_wake_launcher();
}

/*
 * The process found its subscription gone or stopped in the catalog: stop
 * wanting the slot, unless a newer subscribe (start_seq) wants it again.
 */
void
ps_slot_release(PsSlot *slot, uint64 start_seq)
{
	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	if (slot->start_seq == start_seq && slot->phase == PS_SLOT_RUNNING)
	{
		slot->stop_seq = slot->start_seq;
		slot->phase = PS_SLOT_STOPPING;
	}
	LWLockRelease(ps_shared->lock);
}

/* Must the process attached with this generation stop now? */
bool
ps_slot_stop_requested(PsSlot *slot, uint32 generation)
{
	bool		stop;

	LWLockAcquire(ps_shared->lock, LW_SHARED);
	stop = slot->phase != PS_SLOT_RUNNING || slot->generation != generation ||
		slot->pid != MyProcPid || ps_database_blocked(slot->dbid);
	LWLockRelease(ps_shared->lock);
	return stop;
}

/* ---- status of the attached process ---------------------------------------- */

void
ps_slot_set_state(PsSlot *slot, PsState state, bool up_to_date)
{
	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	slot->state = state;
	slot->up_to_date = up_to_date;
	LWLockRelease(ps_shared->lock);
}

void
ps_slot_count_request(PsSlot *slot)
{
	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	slot->stats.requests++;
	slot->stats.last_request_at = GetCurrentTimestamp();
	LWLockRelease(ps_shared->lock);
}

/* bytes received (the open batch's size is set by ps_slot_set_batch) */
void
ps_slot_count_bytes(PsSlot *slot, uint64 bytes)
{
	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	slot->stats.bytes_received += bytes;
	LWLockRelease(ps_shared->lock);
}

/* The size of the open batch: set, not added, so a discarded one leaves none. */
void
ps_slot_set_batch(PsSlot *slot, uint64 bytes, uint64 rows)
{
	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	slot->stats.batch_bytes = bytes;
	slot->stats.batch_rows = rows;
	LWLockRelease(ps_shared->lock);
}

void
ps_slot_count_error(PsSlot *slot)
{
	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	slot->stats.errors++;
	LWLockRelease(ps_shared->lock);
}

/* An up-to-date batch committed: a request of ticket `ticket` is satisfied. */
void
ps_slot_batch_done(PsSlot *slot, uint64 ticket)
{
	LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
	slot->state = PS_STATE_LIVE;
	slot->up_to_date = true;
	slot->stats.batch_rows = 0;
	slot->stats.batch_bytes = 0;
	slot->stats.last_up_to_date_at = GetCurrentTimestamp();
	if (ticket > slot->sync_done)
		slot->sync_done = ticket;
	LWLockRelease(ps_shared->lock);
	ConditionVariableBroadcast(&ps_shared->cv);
}

/* ---- wait_for_sync ----------------------------------------------------------- */

/* The counter a request started now is stamped with. */
uint64
ps_slot_sync_ticket(PsSlot *slot)
{
	return read_counter(&slot->sync_requested);
}

/* Has wait_for_sync asked for a fresh non-live request? */
bool
ps_slot_sync_wanted(PsSlot *slot, uint64 *requested)
{
	bool		wanted;

	LWLockAcquire(ps_shared->lock, LW_SHARED);
	*requested = slot->sync_requested;
	wanted = slot->sync_requested > slot->sync_done;
	LWLockRelease(ps_shared->lock);
	return wanted;
}

/* ---- DROP DATABASE and friends ------------------------------------------------ */

/*
 * PostgreSQL 15 and 16 do not stop background workers connected to a
 * database being dropped (it waits 5 s and fails), nor for RENAME, SET
 * TABLESPACE or a copy by CREATE DATABASE.  ps_block_database() stops new
 * starts there (a count, so concurrent statements do not unblock each
 * other), then ps_stop_database_workers() terminates our workers and scanner
 * there and waits for them.  Returns false when too many are blocked.
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
			if (s->phase != PS_SLOT_FREE && s->dbid == dbid && !s->foreground &&
				(s->pid != 0 || s->phase == PS_SLOT_LAUNCHING))
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
	LWLockRelease(ps_shared->lock);
	if (dropped)
		ps_slot_forget_database(dbid);
	ps_wake_launcher();
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
