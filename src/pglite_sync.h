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
#define PS_VERSION			"0.6.0"
#define PS_SCHEMA			"electric"
#define PS_NOTIFY_CHANNEL	"electric_sync"

/* ---- GUCs (pglite_sync.c) --------------------------------------------- */
extern bool ps_debug;
extern bool ps_stream_snapshot;
extern int	ps_backoff_base_ms;
extern int	ps_backoff_max_ms;
extern int	ps_http_timeout_ms;
extern int	ps_max_subscriptions;
extern int	ps_max_response_size;	/* kB */
extern char *ps_allowed_hosts;
extern char *ps_ca_file;

#include "slots.h"

/* transactional signalling: act at COMMIT, forget at ABORT */
typedef enum PsAction
{
	PS_ACTION_START,
	PS_ACTION_STOP,
	PS_ACTION_RELOAD,			/* alter_subscription: reread the definition */
	PS_ACTION_STOP_DATABASE,	/* DROP EXTENSION */
	PS_ACTION_SCAN,				/* subscriptions written directly (pg_restore) */
	PS_ACTION_WRITES			/* a local write committed: the worker uploads it */
} PsAction;

#ifdef __PGLITE__
static inline void ps_at_commit(PsAction action, int32 subid, Oid owner) {}	/* no workers */
#else
extern void ps_at_commit(PsAction action, int32 subid, Oid owner);
#endif
extern void ps_register_xact_callbacks(void);

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
	Oid			userid;			/* whom to connect as: the owner, or InvalidOid */
} PsWorkerArgs;

extern void ps_install_utility_hook(void);

/* ---- the extension and this database (extension.c) ---------------------- */
extern Oid	ps_extension_owner(void);
extern bool ps_extension_ready(void);
extern char *ps_extension_version(Oid extoid);
extern bool ps_database_is_template(void);
extern TimestampTz ps_timeout_deadline(Interval *iv);
extern void ps_require_arg(FunctionCallInfo fcinfo, int n, const char *what);
extern char *ps_arg_text(FunctionCallInfo fcinfo, int n, const char *what);
extern char *ps_qualified_relname(Oid relid);

/* writes.c: a deleted subscription's capture triggers go too */
extern void ps_writes_forget(int32 subid);
/* around the engine's own applies, which capture skips */
extern bool ps_writes_engine_begin(void);
extern void ps_writes_engine_end(bool was);
extern char *ps_text_to_utf8(const char *s);
extern bool ps_default_worker(void);
extern void ps_require_worker_support(void);
extern void ps_check_function(Oid fn, const char *argname, Oid argtype, Oid rettype,
							  const char *signature);

#endif							/* PGLITE_SYNC_H */
