/*
 * api.c
 *	  SQL-callable functions: sync_shape_to_table, unsubscribe,
 *	  delete_subscription, wait_for_sync and the worker status SRF.
 *
 * Callers are checked here; the catalog writes then run as the extension
 * owner (pg_cron's approach), so the catalog tables need no grants.
 * Workers learn about changes at COMMIT (shmem.c), never before.
 */
#include "pglite_sync.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/dbcommands.h"
#include "catalog/pg_database.h"
#include "catalog/pg_index.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/regproc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "protocol.h"
#include "shapeopts.h"

PG_FUNCTION_INFO_V1(ps_sync_shape_to_table);
PG_FUNCTION_INFO_V1(ps_unsubscribe);
PG_FUNCTION_INFO_V1(ps_delete_subscription);
PG_FUNCTION_INFO_V1(ps_wait_for_sync);
PG_FUNCTION_INFO_V1(ps_worker_status);

/* ---- running catalog statements as the extension owner ------------------ */

typedef struct OwnerSwitch
{
	Oid			saved_user;
	int			saved_sec;
} OwnerSwitch;

static void
become_extension_owner(OwnerSwitch *sw)
{
	GetUserIdAndSecContext(&sw->saved_user, &sw->saved_sec);
	SetUserIdAndSecContext(ps_extension_owner(),
						   sw->saved_sec | SECURITY_LOCAL_USERID_CHANGE);
}

static void
restore_user(OwnerSwitch *sw)
{
	SetUserIdAndSecContext(sw->saved_user, sw->saved_sec);
}

static void
spi_exec(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
		 int expected)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);

	if (rc != expected)
		elog(ERROR, "pglite_sync: catalog statement failed (%s): %s",
			 SPI_result_code_string(rc), sql);
}

/* Serialise subscription changes: table-level checks need a stable view. */
static void
lock_catalog(void)
{
	spi_exec("LOCK TABLE " PS_SCHEMA ".subscription IN SHARE ROW EXCLUSIVE MODE",
			 0, NULL, NULL, NULL, SPI_OK_UTILITY);
}

/* ---- argument checks ------------------------------------------------------ */

static void
require_arg(FunctionCallInfo fcinfo, int n, const char *name)
{
	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
}

static char *
jsonb_text(Jsonb *j)
{
	return JsonbToCString(NULL, &j->root, VARSIZE(j));
}

static void
check_shape(Jsonb *shape, const char *target)
{
	char	   *text = jsonb_text(shape);
	ps_shape	s;
	char		err[512];
	char	   *host;

	if (ps_shape_parse(text, strlen(text), &s, err, sizeof(err)) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid shape for table %s: %s", target, err)));
	host = ps_url_host(s.url);
	if (!ps_host_allowed(ps_allowed_hosts, host))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid shape for table %s: host \"%s\" is not in pglite_sync.allowed_hosts",
						target, host),
				 errhint("The server administrator sets the hosts subscriptions may use.")));
	ps_shape_free(&s);
}

/* text[] → list of column names; NULLs, empties and duplicates refused */
static List *
column_list(ArrayType *arr, const char *argname)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	List	   *cols = NIL;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a one-dimensional array of column names", argname)));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must name at least one column", argname)));
	for (int i = 0; i < n; i++)
	{
		char	   *c;
		ListCell   *lc;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not contain nulls", argname)));
		c = TextDatumGetCString(elems[i]);
		foreach(lc, cols)
			if (strcmp(lfirst(lc), c) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("%s names column \"%s\" twice", argname, c)));
		cols = lappend(cols, c);
	}
	return cols;
}

static AttrNumber
require_column(Oid relid, const char *col, const char *target)
{
	AttrNumber	att = get_attnum(relid, col);

	if (att <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation %s does not exist", col, target)));
	return att;
}

static char *
describe_columns(Oid relid, int16 *attnums, int n)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < n; i++)
		appendStringInfo(&buf, "%s%s", i ? ", " : "",
						 quote_identifier(get_attname(relid, attnums[i], false)));
	return buf.data;
}

/*
 * primary_key must equal, as a set, the primary key or the key columns of a
 * unique, non-partial, non-expression index whose columns are all NOT NULL.
 */
static void
check_primary_key(Relation rel, List *pk, const char *target)
{
	Oid			relid = RelationGetRelid(rel);
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	char	   *actual_pk = NULL;
	Bitmapset  *want = NULL;

	foreach(lc, pk)
		want = bms_add_member(want, require_column(relid, lfirst(lc), target));

	foreach(lc, indexes)
	{
		HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));
		Form_pg_index idx;
		Bitmapset  *have = NULL;
		bool		usable;
		bool		all_not_null = true;

		if (!HeapTupleIsValid(tup))
			continue;
		idx = (Form_pg_index) GETSTRUCT(tup);
		usable = idx->indisunique && idx->indisvalid && idx->indislive &&
			heap_attisnull(tup, Anum_pg_index_indexprs, NULL) &&
			heap_attisnull(tup, Anum_pg_index_indpred, NULL);
		for (int i = 0; i < idx->indnkeyatts; i++)
		{
			AttrNumber	a = idx->indkey.values[i];

			if (a <= 0)
				usable = false;
			else
			{
				have = bms_add_member(have, a);
				if (!TupleDescAttr(RelationGetDescr(rel), a - 1)->attnotnull)
					all_not_null = false;
			}
		}
		if (idx->indisprimary)
			actual_pk = describe_columns(relid, idx->indkey.values, idx->indnkeyatts);
		if (usable && (idx->indisprimary || all_not_null) && bms_equal(have, want))
		{
			ReleaseSysCache(tup);
			return;
		}
		ReleaseSysCache(tup);
	}

	{
		StringInfoData given;

		initStringInfo(&given);
		foreach(lc, pk)
			appendStringInfo(&given, "%s%s", foreach_current_index(lc) ? ", " : "",
							 quote_identifier(lfirst(lc)));
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("primary_key (%s) does not match the primary key or a unique index of table %s",
						given.data, target),
				 actual_pk ? errdetail("The primary key of %s is (%s).", target, actual_pk)
				 : errdetail("Table %s has no primary key.", target),
				 errhint("Use the table's primary key, or the columns of a unique index on NOT NULL columns.")));
	}
}

static void
check_table_privileges(Oid relid, const char *target)
{
	static const struct
	{
		AclMode		mode;
		const char *name;
	}			needed[] = {
		{ACL_SELECT, "SELECT"}, {ACL_INSERT, "INSERT"},
		{ACL_UPDATE, "UPDATE"}, {ACL_DELETE, "DELETE"}
	};

	for (int i = 0; i < lengthof(needed); i++)
		if (pg_class_aclcheck(relid, GetUserId(), needed[i].mode) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for table %s", target),
					 errdetail("Role \"%s\" lacks the %s privilege; a subscription's owner needs SELECT, INSERT, UPDATE and DELETE on its table.",
							   GetUserNameFromId(GetUserId(), false), needed[i].name)));
}

static void
check_map_columns(Jsonb *map, Oid relid, List *pk, const char *target)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	List	   *mapped = NIL;
	ListCell   *lc;

	if (!JB_ROOT_IS_OBJECT(map))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("map_columns must be a JSON object of {\"local_column\": \"shape_column\"}")));
	it = JsonbIteratorInit(&map->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			char	   *local = pnstrdup(v.val.string.val, v.val.string.len);
			AttrNumber	att = require_column(relid, local, target);

			if (get_attgenerated(relid, att))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("map_columns maps generated column \"%s\" of %s, which cannot be written",
								local, target)));
			mapped = lappend(mapped, local);
		}
		else if (tok == WJB_VALUE && (v.type != jbvString || v.val.string.len == 0))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("map_columns values must be shape column names (non-empty strings)")));
	}
	foreach(lc, pk)
	{
		bool		found = false;
		ListCell   *m;

		foreach(m, mapped)
			if (strcmp(lfirst(m), lfirst(lc)) == 0)
				found = true;
		if (!found)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("map_columns must map every primary key column; \"%s\" is missing",
							(char *) lfirst(lc))));
	}
}

static void
check_function(Oid fn, const char *argname, Oid argtype, Oid rettype,
			   const char *signature)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	Form_pg_proc proc;
	bool		ok;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("%s function %u does not exist", argname, fn)));
	proc = (Form_pg_proc) GETSTRUCT(tup);
	ok = proc->prokind == PROKIND_FUNCTION && !proc->proretset &&
		proc->pronargs == 1 && proc->proargtypes.values[0] == argtype &&
		proc->prorettype == rettype;
	ReleaseSysCache(tup);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s %s must be a function %s", argname,
						format_procedure(fn), signature)));
	if (ps_proc_aclcheck(fn, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function %s", format_procedure(fn))));
}

static const char *
insert_method(FunctionCallInfo fcinfo)
{
	char	   *method;
	bool		use_copy = !PG_ARGISNULL(8) && PG_GETARG_BOOL(8);

	require_arg(fcinfo, 7, "initial_insert_method");
	method = text_to_cstring(PG_GETARG_TEXT_PP(7));
	if (strcmp(method, "csv") == 0)
		method = "copy";
	if (strcmp(method, "insert") != 0 && strcmp(method, "copy") != 0 &&
		strcmp(method, "json") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid initial_insert_method \"%s\"", method),
				 errhint("Use 'insert', 'copy' (or its alias 'csv') or 'json'.")));
	if (use_copy)
	{
		if (strcmp(method, "json") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("use_copy => true conflicts with initial_insert_method => 'json'"),
					 errhint("use_copy is deprecated: use initial_insert_method => 'copy'.")));
		method = "copy";
	}
	return method;
}

/* ---- sync_shape_to_table ------------------------------------------------ */

Datum
ps_sync_shape_to_table(PG_FUNCTION_ARGS)
{
	Jsonb	   *shape;
	char	   *table_name;
	char	   *schema_name;
	List	   *pk;
	Jsonb	   *map_columns = PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4);
	Oid			map_function = PG_ARGISNULL(5) ? InvalidOid : PG_GETARG_OID(5);
	char	   *shape_key = PG_ARGISNULL(6) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(6));
	const char *method;
	Oid			on_must_refetch = PG_ARGISNULL(9) ? InvalidOid : PG_GETARG_OID(9);
	Oid			nspoid;
	Oid			relid;
	Relation	rel;
	char	   *target;
	OwnerSwitch sw;
	int32		subid = 0;
	char	   *name = NULL;
	bool		exists = false;
	MemoryContext caller_cxt = CurrentMemoryContext;
	Oid			owner = GetUserId();

	ps_require_preload();
	if (ps_database_is_template())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot sync shapes in template database \"%s\"", get_database_name(MyDatabaseId)),
				 errdetail("Workers would keep the database busy, and copies of it would carry the subscriptions.")));
	require_arg(fcinfo, 0, "shape");
	require_arg(fcinfo, 1, "table_name");
	require_arg(fcinfo, 2, "primary_key");
	require_arg(fcinfo, 3, "schema_name");
	shape = PG_GETARG_JSONB_P(0);
	table_name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	schema_name = text_to_cstring(PG_GETARG_TEXT_PP(3));
	target = quote_qualified_identifier(schema_name, table_name);
	pk = column_list(PG_GETARG_ARRAYTYPE_P(2), "primary_key");
	method = insert_method(fcinfo);

	if (shape_key != NULL && shape_key[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("shape_key must not be empty"),
				 errhint("Pass NULL for a subscription whose stream state is not persisted.")));
	if (map_columns != NULL && OidIsValid(map_function))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("map_columns and map_function cannot be used together")));

	check_shape(shape, target);

	/* the target table, by OID from now on */
	nspoid = get_namespace_oid(schema_name, true);
	relid = OidIsValid(nspoid) ? get_relname_relid(table_name, nspoid) : InvalidOid;
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"%s.%s\" does not exist", schema_name, table_name)));
	rel = table_open(relid, AccessShareLock);
	if (rel->rd_rel->relkind != RELKIND_RELATION &&
		rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("%s is not a table", target),
				 errdetail("Shapes can only be synced into ordinary or partitioned tables.")));
	check_table_privileges(relid, target);
	check_primary_key(rel, pk, target);
	if (map_columns)
		check_map_columns(map_columns, relid, pk, target);
	if (OidIsValid(map_function))
		check_function(map_function, "map_function", JSONBOID, JSONBOID,
					   "(message jsonb) RETURNS jsonb");
	if (OidIsValid(on_must_refetch))
		check_function(on_must_refetch, "on_must_refetch", TEXTOID, VOIDOID,
					   "(subscription text) RETURNS void");
	table_close(rel, NoLock);

	SPI_connect();
	become_extension_owner(&sw);
	lock_catalog();

	/* an existing subscription of that name: resume it if it is stopped */
	if (shape_key)
	{
		Datum		arg = CStringGetTextDatum(shape_key);
		Oid			type = TEXTOID;

		spi_exec("SELECT id, enabled, owner FROM " PS_SCHEMA ".subscription WHERE name = $1 FOR UPDATE",
				 1, &type, &arg, NULL, SPI_OK_SELECT);
		if (SPI_processed == 1)
		{
			bool		isnull;

			exists = true;
			subid = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
			if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)))
				ereport(ERROR,
						(errcode(ERRCODE_DUPLICATE_OBJECT),
						 errmsg("subscription \"%s\" is already running", shape_key),
						 errhint("Call electric.unsubscribe('%s') first to change it.", shape_key)));
			/* resuming replaces its definition: only its owner may */
			if (!has_privs_of_role(owner,
								   DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull))))
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("must be owner of subscription \"%s\"", shape_key)));
		}
	}

	/* one running subscription per table, unless all set on_must_refetch */
	{
		Oid			types[2] = {OIDOID, INT4OID};
		Datum		args[2] = {ObjectIdGetDatum(relid), Int32GetDatum(subid)};

		spi_exec("SELECT name, on_must_refetch IS NOT NULL FROM " PS_SCHEMA ".subscription "
				 "WHERE enabled AND relid = $1 AND id <> $2 ORDER BY id",
				 2, types, args, NULL, SPI_OK_SELECT);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			bool		isnull;
			char	   *other = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
			bool		other_refetch = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i],
																   SPI_tuptable->tupdesc, 2, &isnull));

			if (!other_refetch || !OidIsValid(on_must_refetch))
				ereport(ERROR,
						(errcode(ERRCODE_DUPLICATE_OBJECT),
						 errmsg("table %s is already synced by subscription \"%s\"", target, other),
						 errhint("Unsubscribe it first, or give every subscription on this table an on_must_refetch function that clears only its own rows.")));
		}
	}

	if (ps_slots_in_use() >= ps_max_subscriptions)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many running subscriptions"),
				 errdetail("pglite_sync.max_subscriptions is %d.", ps_max_subscriptions),
				 errhint("Unsubscribe one, or raise pglite_sync.max_subscriptions and restart the server.")));

	{
		Oid			types[12] = {TEXTOID, OIDOID, OIDOID, TEXTOID, TEXTOID, TEXTARRAYOID,
			JSONBOID, JSONBOID, OIDOID, TEXTOID, OIDOID, INT4OID};
		Datum		args[12];
		char		nulls[12];
		const char *sql;

		memset(nulls, ' ', sizeof(nulls));
		args[0] = shape_key ? CStringGetTextDatum(shape_key) : (Datum) 0;
		nulls[0] = shape_key ? ' ' : 'n';
		args[1] = ObjectIdGetDatum(owner);
		args[2] = ObjectIdGetDatum(relid);
		args[3] = CStringGetTextDatum(schema_name);
		args[4] = CStringGetTextDatum(table_name);
		args[5] = PG_GETARG_DATUM(2);
		args[6] = JsonbPGetDatum(shape);
		args[7] = map_columns ? JsonbPGetDatum(map_columns) : (Datum) 0;
		nulls[7] = map_columns ? ' ' : 'n';
		args[8] = ObjectIdGetDatum(map_function);
		nulls[8] = OidIsValid(map_function) ? ' ' : 'n';
		args[9] = CStringGetTextDatum(method);
		args[10] = ObjectIdGetDatum(on_must_refetch);
		nulls[10] = OidIsValid(on_must_refetch) ? ' ' : 'n';
		args[11] = Int32GetDatum(subid);

#define FINGERPRINT "pg_catalog.md5(concat_ws('|', $3::text, $6::text, $8::text, $9::text, $2::text))"
		if (exists)
			sql = "UPDATE " PS_SCHEMA ".subscription SET owner = $2, enabled = true, "
				"version = version + 1, relid = $3, schema_name = $4, table_name = $5, "
				"primary_key = $6, shape_url = $7->>'url', shape_params = $7->'params', "
				"shape_headers = $7->'headers', map_columns = $8, map_function = $9, "
				"initial_insert_method = $10, on_must_refetch = $11, "
				"target_fingerprint = " FINGERPRINT " "
				"WHERE id = $12 RETURNING id, name";
		else
			sql = "WITH n AS (SELECT pg_catalog.nextval('" PS_SCHEMA ".subscription_id_seq')::integer AS id) "
				"INSERT INTO " PS_SCHEMA ".subscription (id, name, shape_key, owner, relid, "
				"schema_name, table_name, primary_key, shape_url, shape_params, shape_headers, "
				"map_columns, map_function, initial_insert_method, on_must_refetch, target_fingerprint) "
				"SELECT n.id, coalesce($1, CASE WHEN EXISTS (SELECT 1 FROM " PS_SCHEMA ".subscription s "
				"  WHERE s.name = $5 || '_' || n.id) "
				"  THEN $5 || '_' || n.id || '_' || pg_catalog.substr(pg_catalog.md5(pg_catalog.random()::text), 1, 6) "
				"  ELSE $5 || '_' || n.id END), "
				"$1, $2, $3, $4, $5, $6, $7->>'url', $7->'params', $7->'headers', $8, $9, $10, $11, "
				FINGERPRINT " FROM n "
				"RETURNING id, name";
		spi_exec(sql, 12, types, args, nulls, exists ? SPI_OK_UPDATE_RETURNING : SPI_OK_INSERT_RETURNING);
		if (SPI_processed != 1)
			elog(ERROR, "pglite_sync: could not store subscription");
		{
			bool		isnull;

			subid = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
			name = MemoryContextStrdup(caller_cxt,
									   SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2));
		}
	}

	restore_user(&sw);
	SPI_finish();

	ps_at_commit(PS_ACTION_START, subid);
	PG_RETURN_TEXT_P(cstring_to_text(name));
}

/* ---- unsubscribe / delete_subscription ----------------------------------- */

/*
 * Look up and lock a subscription by name and check that the caller may
 * manage it (its owner, a member of the owner role, or a superuser).
 */
static void
lock_subscription(const char *name, Oid caller, int32 *subid, bool *enabled,
				  bool *keyed)
{
	Datum		arg = CStringGetTextDatum(name);
	Oid			type = TEXTOID;
	bool		isnull;
	HeapTuple	tup;
	TupleDesc	desc;
	Oid			owner;

	spi_exec("SELECT id, owner, enabled, shape_key IS NOT NULL FROM " PS_SCHEMA ".subscription "
			 "WHERE name = $1 FOR UPDATE", 1, &type, &arg, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("subscription \"%s\" does not exist", name)));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	*subid = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
	owner = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
	*enabled = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
	*keyed = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
	if (!has_privs_of_role(caller, owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of subscription \"%s\"", name)));
}

/*
 * Stop a subscription at commit.  forget (delete_subscription) removes it
 * with its stream state; otherwise (unsubscribe) a keyed subscription stays,
 * stopped, and an unkeyed one, having nothing worth keeping, goes.
 */
static void
stop_subscription(const char *name, bool forget)
{
	OwnerSwitch sw;
	int32		subid;
	bool		enabled;
	bool		keyed;
	Oid			caller = GetUserId();
	Datum		arg;
	Oid			type = INT4OID;

	ps_require_preload();
	SPI_connect();
	become_extension_owner(&sw);
	lock_catalog();
	lock_subscription(name, caller, &subid, &enabled, &keyed);
	arg = Int32GetDatum(subid);
	if (forget || (enabled && !keyed))
		spi_exec("DELETE FROM " PS_SCHEMA ".subscription WHERE id = $1",
				 1, &type, &arg, NULL, SPI_OK_DELETE);
	else if (enabled)
		spi_exec("UPDATE " PS_SCHEMA ".subscription SET enabled = false WHERE id = $1",
				 1, &type, &arg, NULL, SPI_OK_UPDATE);
	if (forget || enabled)
		ps_at_commit(PS_ACTION_STOP, subid);
	restore_user(&sw);
	SPI_finish();
}

Datum
ps_unsubscribe(PG_FUNCTION_ARGS)
{
	stop_subscription(text_to_cstring(PG_GETARG_TEXT_PP(0)), false);
	PG_RETURN_VOID();
}

Datum
ps_delete_subscription(PG_FUNCTION_ARGS)
{
	stop_subscription(text_to_cstring(PG_GETARG_TEXT_PP(0)), true);
	PG_RETURN_VOID();
}

/* ---- wait_for_sync --------------------------------------------------------- */

typedef enum LookupResult
{
	SUB_RUNNING,
	SUB_STOPPED,
	SUB_CHANGED_HERE			/* created or changed by this transaction */
} LookupResult;

static LookupResult
lookup_for_wait(const char *name, int32 *subid)
{
	OwnerSwitch sw;
	Datum		arg = CStringGetTextDatum(name);
	Oid			type = TEXTOID;
	LookupResult result;
	bool		isnull;
	TransactionId xmin;

	SPI_connect();
	become_extension_owner(&sw);
	spi_exec("SELECT id, enabled, xmin::text::bigint FROM " PS_SCHEMA ".subscription WHERE name = $1",
			 1, &type, &arg, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("subscription \"%s\" does not exist", name)));
	*subid = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	result = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull))
		? SUB_RUNNING : SUB_STOPPED;
	xmin = (TransactionId) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	if (TransactionIdIsCurrentTransactionId(xmin))
		result = SUB_CHANGED_HERE;
	restore_user(&sw);
	SPI_finish();
	return result;
}

/*
 * A barrier: true once the worker has committed an up-to-date batch from a
 * request that started after this call.  Tickets: we take the next value of
 * slot->sync_requested and wake the worker, which stamps each request with
 * the counter at its start and publishes it as sync_done at up-to-date.
 */
Datum
ps_wait_for_sync(PG_FUNCTION_ARGS)
{
	char	   *name;
	int32		subid;
	TimestampTz deadline = 0;
	bool		forever = PG_ARGISNULL(1);
	uint64		ticket = 0;
	uint32		ticket_generation = 0;
	bool		result = false;
	TimestampTz next_lookup;

	ps_require_preload();
	require_arg(fcinfo, 0, "name");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!forever)
		deadline = ps_timeout_deadline(PG_GETARG_INTERVAL_P(1));

	switch (lookup_for_wait(name, &subid))
	{
		case SUB_STOPPED:
			PG_RETURN_BOOL(false);
		case SUB_CHANGED_HERE:
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("subscription \"%s\" was changed by the current transaction", name),
					 errdetail("Its worker starts when the transaction commits."),
					 errhint("Commit first, then wait for the subscription.")));
		case SUB_RUNNING:
			break;
	}
	next_lookup = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1000);

	for (;;)
	{
		PsSlot	   *slot;
		long		sleep_ms = 1000;
		TimestampTz now;

		LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
		slot = ps_slot_find(MyDatabaseId, subid);
		if (slot != NULL && slot->wanted && slot->pid != 0)
		{
			if (ticket == 0 || ticket_generation != slot->generation)
			{
				/* a new worker's first request starts after our call anyway */
				ticket = ++slot->sync_requested;
				ticket_generation = slot->generation;
				if (slot->latch)
					SetLatch(slot->latch);
			}
			else if (slot->sync_done >= ticket)
				result = true;
		}
		LWLockRelease(ps_shared->lock);
		if (result)
			break;

		now = GetCurrentTimestamp();
		if (!forever)
		{
			if (now >= deadline)
				break;
			sleep_ms = Min(sleep_ms, (deadline - now + 999) / 1000);
		}
		if (now >= next_lookup)
		{
			/* stopped by someone else meanwhile? */
			if (lookup_for_wait(name, &subid) == SUB_STOPPED)
				break;
			next_lookup = TimestampTzPlusMilliseconds(now, 1000);
		}
		ConditionVariableTimedSleep(&ps_shared->cv, Max(sleep_ms, 1), ps_wait_event(PS_WAIT_FOR_SYNC));
	}
	ConditionVariableCancelSleep();
	PG_RETURN_BOOL(result);
}

/* ---- worker status ------------------------------------------------------- */

Datum
ps_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	if (ps_shared == NULL)
		return (Datum) 0;

	LWLockAcquire(ps_shared->lock, LW_SHARED);
	for (int i = 0; i < ps_shared->nslots; i++)
	{
		PsSlot	   *s = &ps_shared->slots[i];
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		if (!s->in_use || s->dbid != MyDatabaseId)
			continue;
		values[0] = Int32GetDatum(s->subid);
		if (s->pid != 0)
			values[1] = Int32GetDatum(s->pid);
		else
			nulls[1] = true;
		values[2] = CStringGetTextDatum(s->pid != 0 ? ps_state_name(s->state) : "starting");
		values[3] = BoolGetDatum(s->pid != 0 && s->up_to_date);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(ps_shared->lock);
	return (Datum) 0;
}
