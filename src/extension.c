/*
 * extension.c
 *	  Facts about the installed extension and this database, used by the
 *	  SQL functions and the workers alike.
 */
#include "pglite_sync.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_database.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

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
#ifndef __PGLITE__				/* PGlite does not export CurrentExtensionObject */
	if (creating_extension && CurrentExtensionObject == extoid)
		return false;
#else
	if (creating_extension)
		return false;
#endif
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

/* schema.name of a relation, each part quoted as needed, for SQL text */
char *
ps_qualified_relname(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), get_rel_name(relid));
}

/* A required argument of a SQL function: NULL is 22004, naming it. */
void
ps_require_arg(FunctionCallInfo fcinfo, int n, const char *what)
{
	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", what)));
}

/* A text argument as a C string; NULL is allowed only when what is NULL. */
char *
ps_arg_text(FunctionCallInfo fcinfo, int n, const char *what)
{
	if (PG_ARGISNULL(n))
	{
		if (what != NULL)
			ps_require_arg(fcinfo, n, what);
		return NULL;
	}
	return text_to_cstring(PG_GETARG_TEXT_PP(n));
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
