/*
 * dbhook.c
 *	  A utility hook that stops this extension's workers before DROP
 *	  DATABASE (and the statements that need a database free of other
 *	  connections), which would otherwise wait for them and fail; and stops
 *	  a database's workers when the extension is dropped there.
 */
#include "pglite_sync.h"

#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/acl.h"

static ProcessUtility_hook_type prev_ProcessUtility = NULL;

static bool
is_our_extension_drop(Node *parsetree)
{
	DropStmt   *stmt;
	ListCell   *lc;

	if (!IsA(parsetree, DropStmt))
		return false;
	stmt = (DropStmt *) parsetree;
	if (stmt->removeType != OBJECT_EXTENSION)
		return false;
	foreach(lc, stmt->objects)
	{
		Node	   *obj = lfirst(lc);

		if (IsA(obj, String) && strcmp(strVal(obj), PS_EXTENSION_NAME) == 0)
			return true;
	}
	return false;
}

/* Database a statement needs free of other connections, or InvalidOid. */
static Oid
database_needing_exclusivity(Node *parsetree, bool *is_drop)
{
	ListCell   *lc;

	*is_drop = false;
	if (IsA(parsetree, DropdbStmt))
	{
		*is_drop = true;
		return get_database_oid(((DropdbStmt *) parsetree)->dbname, true);
	}
	if (IsA(parsetree, RenameStmt) &&
		((RenameStmt *) parsetree)->renameType == OBJECT_DATABASE)
		return get_database_oid(((RenameStmt *) parsetree)->subname, true);
	if (IsA(parsetree, AlterDatabaseStmt))
	{
		AlterDatabaseStmt *stmt = (AlterDatabaseStmt *) parsetree;

		foreach(lc, stmt->options)
			if (strcmp(((DefElem *) lfirst(lc))->defname, "tablespace") == 0)
				return get_database_oid(stmt->dbname, true);
	}
	if (IsA(parsetree, CreatedbStmt))
	{
		foreach(lc, ((CreatedbStmt *) parsetree)->options)
		{
			DefElem    *d = lfirst(lc);

			if (strcmp(d->defname, "template") == 0 && d->arg)
				return get_database_oid(defGetString(d), true);
		}
		return get_database_oid("template1", true);
	}
	return InvalidOid;
}

static void
ps_process_utility(PlannedStmt *pstmt, const char *queryString,
				   bool readOnlyTree, ProcessUtilityContext context,
				   ParamListInfo params, QueryEnvironment *queryEnv,
				   DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	volatile Oid dbid = InvalidOid;
	bool		is_drop = false;
	volatile bool is_drop_volatile;
	volatile bool blocked = false;

	if (ps_shared != NULL)
		dbid = database_needing_exclusivity(parsetree, &is_drop);
	is_drop_volatile = is_drop;

	/* only for whoever may run the statement: others fail in it as usual */
	if (OidIsValid(dbid) && !ps_database_ownercheck(dbid, GetUserId()))
		dbid = InvalidOid;

	PG_TRY();
	{
		if (OidIsValid(dbid))
		{
			blocked = ps_block_database(dbid);
			if (blocked)
				ps_stop_database_workers(dbid);
		}
		if (prev_ProcessUtility)
			prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
									params, queryEnv, dest, qc);
	}
	PG_CATCH();
	{
		if (blocked)
			ps_unblock_database(dbid, false);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (blocked)
		ps_unblock_database(dbid, is_drop_volatile);
	if (ps_shared != NULL && is_our_extension_drop(parsetree))
		ps_at_commit(PS_ACTION_STOP_DATABASE, 0, InvalidOid);
}

void
ps_install_utility_hook(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = ps_process_utility;
}
