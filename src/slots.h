/*
 * slots.h
 *	  The shared slot array: one slot per subscription that should run (or
 *	  is running) anywhere in the cluster.  slots.c owns every transition of
 *	  a slot's phase (the state machine is drawn there); the launcher, the
 *	  workers, sync_now and the SQL functions only call it.
 */
#ifndef PS_SLOTS_H
#define PS_SLOTS_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/lwlock.h"

/* What a running subscription is doing, as electric.subscriptions shows it. */
typedef enum PsState
{
	PS_STATE_STARTING,
	PS_STATE_INITIAL_SYNC,
	PS_STATE_LIVE,
	PS_STATE_BACKOFF,
	PS_STATE_ERROR
} PsState;

extern const char *ps_state_name(PsState state);

typedef enum PsSlotPhase
{
	PS_SLOT_FREE = 0,
	PS_SLOT_WAITING,			/* wanted, no process: launch after next_launch */
	PS_SLOT_LAUNCHING,			/* registered with the postmaster, not attached */
	PS_SLOT_RUNNING,			/* a worker (or sync_now) is attached */
	PS_SLOT_STOPPING			/* no longer wanted; the process is leaving */
} PsSlotPhase;

/* Live progress, written by the attached process (lock held). */
typedef struct PsSlotStats
{
	uint64		requests;
	uint64		bytes_received;
	uint64		errors;			/* failed requests and rolled-back batches */
	TimestampTz last_request_at;
	TimestampTz last_up_to_date_at;
	uint64		batch_rows;		/* received, not yet committed */
	uint64		batch_bytes;
} PsSlotStats;

#define PS_LAUNCH_ERROR_LEN 256

typedef struct PsSlot
{
	PsSlotPhase phase;
	Oid			dbid;
	int32		subid;
	Oid			owner;			/* the subscription's owner: whom a worker connects as */
	uint64		start_seq;		/* bumped by every subscribe of it */
	uint64		reload_seq;		/* bumped by alter_subscription: reread the definition */
	uint64		writes_seq;		/* bumped by every committed local write */
	uint64		stop_seq;		/* start_seq when it was last unwanted */
	uint32		generation;		/* bumped by every launch or attach */
	bool		foreground;		/* held by electric.sync_now() */
	pid_t		pid;			/* attached process, 0 if none */
	Latch	   *latch;
	TimestampTz launched_at;
	TimestampTz next_launch;	/* restart throttle */
	int			restart_delay_ms;
	char		launch_error[PS_LAUNCH_ERROR_LEN];	/* why no worker could start */

	PsState		state;
	bool		up_to_date;
	PsSlotStats stats;

	/* wait_for_sync barrier: tickets handed out / satisfied */
	uint64		sync_requested;
	uint64		sync_done;
} PsSlot;

#define PS_MAX_BLOCKED_DBS 8

typedef struct PsShared
{
	LWLock	   *lock;
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
	bool		rescan;			/* launcher: scan every database again */
	bool		slots_exhausted;	/* a start found no free slot: rescan on a free */
	uint32		next_generation;	/* slot generations are unique cluster-wide */
	Oid			blocked_dbs[PS_MAX_BLOCKED_DBS];	/* DROP DATABASE etc. in progress */
	int			blocked_count[PS_MAX_BLOCKED_DBS];
	pid_t		scanner_pid;
	Oid			scanner_db;
	ConditionVariable cv;		/* slot changes (wait_for_sync, stops) */
	int			nslots;
	PsSlot		slots[FLEXIBLE_ARRAY_MEMBER];
} PsShared;

#ifdef __PGLITE__
/*
 * PGlite has no background workers, so no slots: every subscription there
 * is host-driven and its run has no slot.  These keep one engine for both.
 */
#define ps_shared ((PsShared *) NULL)
static inline void ps_require_preload(void) {}
static inline bool ps_slot_stop_requested(PsSlot *slot, uint32 generation) { return false; }
static inline void ps_slot_set_state(PsSlot *slot, PsState state, bool up_to_date) {}
static inline void ps_slot_count_request(PsSlot *slot) {}
static inline void ps_slot_count_bytes(PsSlot *slot, uint64 bytes) {}
static inline void ps_slot_set_batch(PsSlot *slot, uint64 bytes, uint64 rows) {}
static inline void ps_slot_count_error(PsSlot *slot) {}
static inline void ps_slot_batch_done(PsSlot *slot, uint64 ticket) {}
static inline bool ps_slot_sync_wanted(PsSlot *slot, uint64 *requested) { *requested = 0; return false; }
static inline int ps_slots_in_use(void) { return 0; }
#else
extern PsShared *ps_shared;

/* shared memory */
extern void ps_shmem_request(void);
extern void ps_shmem_startup(void);
extern void ps_require_preload(void);

/* ---- transitions (see the state machine in slots.c) -------------------- */

/* A subscription should run: claim or keep its slot; false if none is free.
 * from_user: a subscribe committed (lifts the restart throttle). */
extern bool ps_slot_want(Oid dbid, int32 subid, Oid owner, bool from_user);
extern void ps_slot_reload(Oid dbid, int32 subid);
extern uint64 ps_slot_reload_seq(PsSlot *slot);
extern void ps_slot_writes(Oid dbid, int32 subid);
extern uint64 ps_slot_writes_seq(PsSlot *slot);

/* Nothing should run any more: the attached process is asked to leave. */
extern void ps_slot_unwant(Oid dbid, int32 subid);
extern void ps_slot_unwant_database(Oid dbid);
extern void ps_slot_request_rescan(void);

/* The launcher: slots due for a launch become LAUNCHING (returns how many,
 * filling slotnos/generations); *sleep_ms is the time to the next one due. */
typedef struct PsLaunch
{
	int			slotno;
	uint32		generation;
	Oid			dbid;
	int32		subid;
	Oid			owner;
} PsLaunch;

extern int	ps_slot_take_launches(PsLaunch *launches, int max, long *sleep_ms);
extern void ps_slot_launch_failed(int slotno, uint32 generation, const char *why);
extern void ps_slot_launch_vanished(int slotno, uint32 generation);
extern void ps_slot_forget_database(Oid dbid);

/* The attached process.  A worker attaches to the launch it was started for;
 * sync_now attaches to a slot nobody runs (ERROR otherwise). */
extern PsSlot *ps_slot_attach_worker(int slotno, Oid dbid, int32 subid,
									 uint32 generation, uint64 *start_seq);
extern PsSlot *ps_slot_attach_foreground(Oid dbid, int32 subid, Oid owner,
										 const char *name, uint32 *generation,
										 uint64 *start_seq);
extern void ps_slot_retry_refused_launches(void);
extern void ps_slot_detach(PsSlot *slot, bool failed);
extern void ps_slot_release(PsSlot *slot, uint64 start_seq);
extern bool ps_slot_stop_requested(PsSlot *slot, uint32 generation);

/* Status of the attached process. */
extern void ps_slot_set_state(PsSlot *slot, PsState state, bool up_to_date);
extern void ps_slot_count_request(PsSlot *slot);
extern void ps_slot_count_bytes(PsSlot *slot, uint64 bytes);
extern void ps_slot_set_batch(PsSlot *slot, uint64 bytes, uint64 rows);
extern void ps_slot_count_error(PsSlot *slot);
extern void ps_slot_batch_done(PsSlot *slot, uint64 ticket);

/* wait_for_sync */
extern uint64 ps_slot_sync_ticket(PsSlot *slot);
extern bool ps_slot_sync_wanted(PsSlot *slot, uint64 *requested);

extern PsSlot *ps_slot_find(Oid dbid, int32 subid);	/* lock held */
extern int	ps_slots_in_use(void);

/* DROP DATABASE and friends */
extern bool ps_database_blocked(Oid dbid);	/* lock held */
extern bool ps_block_database(Oid dbid);
extern void ps_stop_database_workers(Oid dbid);
extern void ps_unblock_database(Oid dbid, bool dropped);

extern void ps_wake_launcher(void);
#endif							/* !__PGLITE__ */

#endif							/* PS_SLOTS_H */
