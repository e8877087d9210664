/*
 * pglite_sync.c
 *	  Module load: settings, shared memory, the launcher, and the utility
 *	  hook that stops our workers before DROP DATABASE.
 */
#include "pglite_sync.h"

#include <curl/curl.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_database.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/ipc.h"
#include "tcop/utility.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "mb/pg_wchar.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "json.h"
#include "ps_alloc.h"

PG_MODULE_MAGIC;

bool		ps_debug = false;
int			ps_backoff_base_ms = 1000;
int			ps_backoff_max_ms = 32000;
int			ps_http_timeout_ms = 60000;
int			ps_max_subscriptions = 32;
int			ps_max_response_size = 256 * 1024;	/* kB */
char	   *ps_allowed_hosts = NULL;
char	   *ps_ca_file = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

void		_PG_init(void);

static void
ps_shmem_request_hook(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	ps_shmem_request();
}

static void
define_gucs(bool preloading)
{
	DefineCustomBoolVariable("pglite_sync.debug",
							 "Logs every request, response and applied batch of every subscription.",
							 NULL, &ps_debug, false, PGC_SUSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("pglite_sync.backoff_base",
							"First retry delay after a failed request (full-jitter exponential backoff).",
							NULL, &ps_backoff_base_ms, 1000, 1, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pglite_sync.backoff_max",
							"Longest retry delay; failures that retrying alone will not fix are retried at this interval.",
							NULL, &ps_backoff_max_ms, 32000, 1, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pglite_sync.http_timeout",
							"Timeout of a live long-poll, and the longest a catch-up request may go without receiving data.",
							"Must exceed the sync service's long-poll timeout (20 s by default).",
							&ps_http_timeout_ms, 60000, 100, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pglite_sync.max_response_size",
							"Largest response body accepted from the sync service; 0 means no limit.",
							NULL, &ps_max_response_size, 256 * 1024, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_KB, NULL, NULL, NULL);
	DefineCustomStringVariable("pglite_sync.allowed_hosts",
							   "Comma-separated host names that shape URLs may use; empty allows any host.",
							   NULL, &ps_allowed_hosts, "", PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("pglite_sync.tls_ca_file",
							   "File of trusted certificate authorities for https shape URLs; empty uses the system store.",
							   NULL, &ps_ca_file, "", PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	if (preloading)
		DefineCustomIntVariable("pglite_sync.max_subscriptions",
								"Maximum number of subscriptions running at once in the whole cluster.",
								"Each running subscription also uses one of max_worker_processes.",
								&ps_max_subscriptions, 32, 1, 10000,
								PGC_POSTMASTER, 0, NULL, NULL, NULL);
	MarkGUCPrefixReserved("pglite_sync");
}

/* ---- extension catalog helpers ------------------------------------------ */

static HeapTuple
fetch_extension_tuple(Relation rel, SysScanDesc *scan)
{
	ScanKeyData key;

	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum(PS_EXTENSION_NAME));
	*scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	return systable_getnext(*scan);
}

/* Owner of the extension: catalog writes run as this role (like pg_cron). */
Oid
ps_extension_owner(void)
{
	Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
	SysScanDesc scan;
	HeapTuple	tup = fetch_extension_tuple(rel, &scan);
	Oid			owner = InvalidOid;

	if (HeapTupleIsValid(tup))
		owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (!OidIsValid(owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"%s\" is not installed in this database", PS_EXTENSION_NAME)));
	return owner;
}

/* extversion of the extension with OID extoid, or NULL */
char *
ps_extension_version(Oid extoid)
{
	Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	char	   *version = NULL;

	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(extoid));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);

		if (!isnull)
			version = TextDatumGetCString(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return version;
}

/* Inside a transaction: is the extension installed and not mid-CREATE? */
bool
ps_extension_ready(void)
{
	Oid			extoid = get_extension_oid(PS_EXTENSION_NAME, true);

	if (!OidIsValid(extoid))
		return false;
	if (creating_extension && CurrentExtensionObject == extoid)
		return false;
	return true;
}

/*
 * Is the current database a template?  Subscriptions never run there:
 * workers would keep it busy, and CREATE DATABASE would copy them.
 */
bool
ps_database_is_template(void)
{
	HeapTuple	tup = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(MyDatabaseId));
	bool		is_template = false;

	if (HeapTupleIsValid(tup))
	{
		is_template = ((Form_pg_database) GETSTRUCT(tup))->datistemplate;
		ReleaseSysCache(tup);
	}
	return is_template;
}

/*
 * The deadline of a timeout argument: now + interval, refusing negative
 * intervals and saturating absurd ones instead of overflowing.
 */
TimestampTz
ps_timeout_deadline(Interval *iv)
{
	double		usecs = (double) iv->time + (double) iv->day * USECS_PER_DAY +
		(double) iv->month * DAYS_PER_MONTH * USECS_PER_DAY;
	TimestampTz now = GetCurrentTimestamp();

	if (usecs < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must not be negative")));
	if (usecs >= (double) (PG_INT64_MAX - now))
		return PG_INT64_MAX;
	return now + (int64) usecs;
}

/* ---- utility hook -------------------------------------------------------- */

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
_PG_init(void)
{
	bool		preloading = process_shared_preload_libraries_in_progress;

	define_gucs(preloading);

	/* the pure C parts and jansson allocate through the same hooks */
	json_set_alloc_funcs(ps_malloc, ps_free);

	if (!preloading || IsBinaryUpgrade)
		return;

	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		ereport(ERROR, (errmsg("pglite_sync: could not initialize libcurl")));

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = ps_shmem_request_hook;
	ps_shmem_startup();

	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = ps_process_utility;

	ps_register_xact_callbacks();
	ps_register_launcher();
}

/* Text in the server encoding as UTF-8 (what URLs, JSON and HTTP carry). */
char *
ps_text_to_utf8(const char *s)
{
	return pg_server_to_any(s, strlen(s), PG_UTF8);
}

/*
 * Subscriptions are run by workers, unless asked otherwise; in PGlite there
 * are none, and the host drives every subscription.
 */
bool
ps_default_worker(void)
{
#ifdef __PGLITE__
	return false;
#else
	return true;
#endif
}

void
ps_require_worker_support(void)
{
#ifdef __PGLITE__
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("PGlite has no background workers"),
			 errhint("Subscribe with worker => false and drive the subscription with electric.next_request() and electric.ingest_response().")));
#else
	ps_require_preload();
#endif
}
