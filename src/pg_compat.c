/*
 * pg_compat.c
 *	  The functions of pg_compat.h that differ by PostgreSQL major.
 */
#include "pg_compat.h"

#include "access/htup_details.h"
#include "access/sysattr.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "pgstat.h"

void
ps_check_insert_columns(ParseState *pstate, Relation rel,
						const AttrNumber *attnos, int n)
{
	ParseNamespaceItem *nsitem = addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock,
															   NULL, false, false);
#if PG_VERSION_NUM >= 160000
	RTEPermissionInfo *perm = nsitem->p_perminfo;
#else
	RangeTblEntry *perm = nsitem->p_rte;
#endif

	perm->requiredPerms = ACL_INSERT;
	for (int i = 0; i < n; i++)
		perm->insertedCols = bms_add_member(perm->insertedCols,
											attnos[i] - FirstLowInvalidHeapAttributeNumber);
#if defined(__PGLITE__)
	/* PGlite does not export ExecCheckPermissions: the same test by its parts */
	if (pg_class_aclcheck(RelationGetRelid(rel), GetUserId(), ACL_INSERT) != ACLCHECK_OK)
		for (int i = 0; i < n; i++)
			if (pg_attribute_aclcheck(RelationGetRelid(rel), attnos[i], GetUserId(),
									  ACL_INSERT) != ACLCHECK_OK)
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("permission denied for table %s", RelationGetRelationName(rel))));
#elif PG_VERSION_NUM >= 160000
	ExecCheckPermissions(pstate->p_rtable, list_make1(perm), true);
#else
	ExecCheckRTPerms(pstate->p_rtable, true);
#endif
}

/*
 * Is attribute attnum of a catalog tuple NULL?  heap_attisnull without its
 * tuple descriptor (no missing attributes in the catalogs we read), which
 * PGlite does not export.
 */
bool
ps_attr_is_null(HeapTuple tup, int attnum)
{
	if (attnum > (int) HeapTupleHeaderGetNatts(tup->t_data))
		return true;
	return HeapTupleHasNulls(tup) && att_isnull(attnum - 1, tup->t_data->t_bits);
}

static const char *const wait_event_names[PS_WAIT_COUNT] = {
	[PS_WAIT_LONG_POLL] = "PgliteSyncLongPoll",
	[PS_WAIT_FETCH] = "PgliteSyncFetch",
	[PS_WAIT_BACKOFF] = "PgliteSyncBackoff",
	[PS_WAIT_APPLY] = "PgliteSyncApply",
	[PS_WAIT_LAUNCHER] = "PgliteSyncLauncher",
	[PS_WAIT_FOR_SYNC] = "PgliteSyncWaitForSync",
	[PS_WAIT_STOP] = "PgliteSyncStop",
	[PS_WAIT_FOR_WRITES] = "PgliteSyncWaitForWrites",
};

uint32
ps_wait_event(PsWaitEvent which)
{
#if PG_VERSION_NUM >= 170000
	/* registered once per process; the names are shared cluster-wide */
	static uint32 ids[PS_WAIT_COUNT];

	if (ids[which] == 0)
		ids[which] = WaitEventExtensionNew(wait_event_names[which]);
	return ids[which];
#else
	(void) wait_event_names;
	return PG_WAIT_EXTENSION;
#endif
}
