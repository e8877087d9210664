/*
 * pg_compat.h
 *	  Every difference between the PostgreSQL majors we build against (15 to
 *	  18) lives here, behind PG_VERSION_NUM, each guard naming the release
 *	  that changed what.  The other files call the ps_* names below.
 */
#ifndef PS_PG_COMPAT_H
#define PS_PG_COMPAT_H

#include "postgres.h"

#include "catalog/pg_database_d.h"
#include "catalog/pg_namespace_d.h"
#include "catalog/pg_proc_d.h"
#include "nodes/parsenodes.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "postmaster/bgworker.h"
#include "storage/latch.h"
#include "utils/acl.h"
#include "utils/rel.h"
#include "utils/wait_event.h"

#if PG_VERSION_NUM < 150000 || PG_VERSION_NUM >= 190000
#error "pglite_sync supports PostgreSQL 15, 16, 17 and 18"
#endif

/*
 * PostgreSQL 16 replaced the per-catalog pg_<object>_aclcheck and
 * pg_<object>_ownercheck functions by object_aclcheck / object_ownercheck.
 */
#if PG_VERSION_NUM >= 160000
#define ps_proc_aclcheck(proc, role, mode) \
	object_aclcheck(ProcedureRelationId, (proc), (role), (mode))
#define ps_database_ownercheck(db, role) \
	object_ownercheck(DatabaseRelationId, (db), (role))
#define ps_namespace_aclcheck(nsp, role, mode) \
	object_aclcheck(NamespaceRelationId, (nsp), (role), (mode))
#else
#define ps_proc_aclcheck(proc, role, mode) pg_proc_aclcheck((proc), (role), (mode))
#define ps_database_ownercheck(db, role) pg_database_ownercheck((db), (role))
#define ps_namespace_aclcheck(nsp, role, mode) pg_namespace_aclcheck((nsp), (role), (mode))
#endif

/*
 * Check INSERT on the given columns (attnos, not offset) of rel for the
 * current user, as DoCopy does before a COPY FROM.  PostgreSQL 16 moved
 * requiredPerms and insertedCols from RangeTblEntry to RTEPermissionInfo,
 * and ExecCheckRTPerms became ExecCheckPermissions.
 */
extern void ps_check_insert_columns(ParseState *pstate, Relation rel,
									const AttrNumber *attnos, int n);

/*
 * The executor state of a direct load (apply_direct.c), as CopyFrom sets
 * it up: PostgreSQL 16 added the permission infos to the range table, 18
 * the set of relations left after pruning; 16 also gave
 * ExecInsertIndexTuples its onlySummarizing argument, and 18 added
 * virtual generated columns beside the stored ones.
 */
#if PG_VERSION_NUM >= 180000
#define ps_exec_init_range_table(estate, pstate) \
	ExecInitRangeTable((estate), (pstate)->p_rtable, (pstate)->p_rteperminfos, bms_make_singleton(1))
#elif PG_VERSION_NUM >= 160000
#define ps_exec_init_range_table(estate, pstate) \
	ExecInitRangeTable((estate), (pstate)->p_rtable, (pstate)->p_rteperminfos)
#else
#define ps_exec_init_range_table(estate, pstate) ExecInitRangeTable((estate), (pstate)->p_rtable)
#endif
#if PG_VERSION_NUM >= 160000
#define ps_insert_index_tuples(rri, slot, estate) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, false, NULL, NIL, false)
#else
#define ps_insert_index_tuples(rri, slot, estate) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, false, NULL, NIL)
#endif
#if PG_VERSION_NUM >= 180000
#define ps_has_generated(constr) \
	((constr) != NULL && ((constr)->has_generated_stored || (constr)->has_generated_virtual))
#else
#define ps_has_generated(constr) ((constr) != NULL && (constr)->has_generated_stored)
#endif

/*
 * PostgreSQL 17 ties a WaitEventSet to a ResourceOwner instead of a memory
 * context; NULL makes it live until it is freed, like TopMemoryContext did.
 */
#if PG_VERSION_NUM >= 170000
#define ps_create_wait_event_set(nevents) CreateWaitEventSet(NULL, (nevents))
#else
#define ps_create_wait_event_set(nevents) CreateWaitEventSet(TopMemoryContext, (nevents))
#endif

/*
 * A worker connects as its subscription's owner, so that the owner's code
 * (triggers, deferred constraints, functions) runs with the owner's rights
 * and no more.  PostgreSQL 17 lets a background worker connect as a role
 * without LOGIN (BGWORKER_BYPASS_ROLELOGINCHECK); before, such an owner's
 * worker connects as the bootstrap superuser and switches to the owner in a
 * security-restricted operation (see commit.c).
 */
#if PG_VERSION_NUM >= 170000
#define PS_BGW_CONNECT_FLAGS BGWORKER_BYPASS_ROLELOGINCHECK
#define PS_CAN_CONNECT_AS_NOLOGIN true
#else
#define PS_BGW_CONNECT_FLAGS 0
#define PS_CAN_CONNECT_AS_NOLOGIN false
#endif

/*
 * Named wait events: PostgreSQL 17 lets an extension register its own
 * (WaitEventExtensionNew), shown in pg_stat_activity.wait_event; on 15 and
 * 16 every one of them reads "Extension".
 */
typedef enum PsWaitEvent
{
	PS_WAIT_LONG_POLL,			/* a live request (long-poll or SSE) */
	PS_WAIT_FETCH,				/* a catch-up request */
	PS_WAIT_BACKOFF,			/* sleeping before a retry */
	PS_WAIT_APPLY,				/* spool I/O while applying a batch */
	PS_WAIT_LAUNCHER,			/* the launcher's main loop */
	PS_WAIT_FOR_SYNC,			/* a backend in electric.wait_for_sync() */
	PS_WAIT_STOP,				/* waiting for workers to stop */
	PS_WAIT_FOR_WRITES,			/* a backend in electric.wait_for_writes() */
	PS_WAIT_COUNT
} PsWaitEvent;

extern uint32 ps_wait_event(PsWaitEvent which);

extern bool ps_attr_is_null(HeapTuple tup, int attnum);

#endif							/* PS_PG_COMPAT_H */
