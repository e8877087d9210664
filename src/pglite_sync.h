/*
 * pglite_sync.h
 *	  Declarations shared by the server-side files of pglite_sync.
 */
#ifndef PGLITE_SYNC_H
#define PGLITE_SYNC_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/timestamp.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/lwlock.h"

#include "pg_compat.h"

#define PS_EXTENSION_NAME	"pglite_sync"
#define PS_VERSION			"0.1.0"
#define PS_SCHEMA			"electric"
#define PS_NOTIFY_CHANNEL	"electric_sync"

/* ---- GUCs (pglite_sync.c) --------------------------------------------- */
extern bool ps_debug;
extern int	ps_backoff_base_ms;
extern int	ps_backoff_max_ms;
extern int	ps_http_timeout_ms;
extern int	ps_max_subscriptions;
extern int	ps_max_response_size;	/* kB */
extern char *ps_allowed_hosts;
extern char *ps_ca_file;

/* ---- worker states shown in electric.subscriptions --------------------- */
typedef enum PsState
{
	PS_STATE_STARTING,
	PS_STATE_INITIAL_SYNC,
	PS_STATE_LIVE,
	PS_STATE_BACKOFF,
	PS_STATE_ERROR
} PsState;

extern const char *ps_state_name(PsState state);

/* ---- shared memory (shmem.c) ----------------------------------------- */

/*
 * One slot per subscription that should run (or is running) anywhere in the
 * cluster, keyed by (dbid, subid).  Slots are claimed at COMMIT of a
 * subscribe, by the launcher's per-database scan at startup, and released by
 * the worker when it finds its subscription gone or stopped.
 */
typedef struct PsSlot
{
	bool		in_use;
	Oid			dbid;
	int32		subid;
	bool		wanted;			/* should have a running worker */
	uint64		start_seq;		/* bumped by every START, see ps_slot_release */
	uint32		generation;		/* bumped by every launch */
	bool		launching;		/* registered with the postmaster, not attached */
	bool		foreground;		/* held by electric.sync_now() in a backend */
	pid_t		pid;			/* attached worker, 0 if none */
	Latch	   *latch;
	uint32		stop_generation;	/* the worker of this generation must stop */
	TimestampTz launched_at;
	TimestampTz next_launch;	/* restart throttle */
	int			restart_delay_ms;

	/* status, written by the worker */
	PsState		state;
	bool		up_to_date;

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
	ConditionVariable cv;		/* slot status changes (wait_for_sync, stops) */
	int			nslots;
	PsSlot		slots[FLEXIBLE_ARRAY_MEMBER];
} PsShared;

extern PsShared *ps_shared;

extern void ps_shmem_request(void);
extern void ps_shmem_startup(void);
extern void ps_require_preload(void);
extern PsSlot *ps_slot_find(Oid dbid, int32 subid);
extern bool ps_slot_start(Oid dbid, int32 subid, bool from_user);
extern void ps_slot_stop(Oid dbid, int32 subid);
extern void ps_slot_attach(PsSlot *slot, bool foreground);
extern void ps_slot_detach(PsSlot *slot, bool failed);
extern void ps_slot_release(int slotno, uint64 start_seq);
extern void ps_slot_throttle(PsSlot *slot, TimestampTz now);
extern void ps_slot_free(PsSlot *slot);
extern uint32 ps_slot_new_generation(PsSlot *slot);
extern bool ps_database_blocked(Oid dbid);
extern void ps_wake_launcher(void);
extern int	ps_slots_in_use(void);

/* transactional signalling: act at COMMIT, forget at ABORT */
typedef enum PsAction
{
	PS_ACTION_START,
	PS_ACTION_STOP,
	PS_ACTION_STOP_DATABASE		/* DROP EXTENSION */
} PsAction;

extern void ps_at_commit(PsAction action, int32 subid);
extern void ps_register_xact_callbacks(void);

/* DROP DATABASE and friends: stop this database's workers first */
extern bool ps_block_database(Oid dbid);
extern void ps_stop_database_workers(Oid dbid);
extern void ps_unblock_database(Oid dbid, bool dropped);

/* ---- background workers ------------------------------------------------ */
extern PGDLLEXPORT void ps_launcher_main(Datum main_arg);
extern PGDLLEXPORT void ps_scanner_main(Datum main_arg);
extern PGDLLEXPORT void ps_worker_main(Datum main_arg);
extern void ps_register_launcher(void);

/* bgw_extra of a sync worker */
typedef struct PsWorkerArgs
{
	Oid			dbid;
	int32		subid;
	uint32		generation;
} PsWorkerArgs;

/* ---- misc (pglite_sync.c) ---------------------------------------------- */
extern Oid	ps_extension_owner(void);
extern bool ps_extension_ready(void);
extern bool ps_database_is_template(void);
extern TimestampTz ps_timeout_deadline(Interval *iv);

#endif							/* PGLITE_SYNC_H */
