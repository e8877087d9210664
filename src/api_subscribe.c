/*
 * api_subscribe.c
 *	  electric.sync_shape_to_table() and electric.sync_shapes_to_tables():
 *	  check every argument (errors name the object, with the contract's
 *	  SQLSTATEs), then store the subscription and its shapes as the
 *	  extension owner.  Its worker starts at COMMIT.
 */
#include "pglite_sync.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_index.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/fmgroids.h"
#include "utils/json.h"
#include "mb/pg_wchar.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/syscache.h"

#include "catalog.h"
#include "protocol.h"
#include "shapeopts.h"
#include "jsonutil.h"
#include "ps_alloc.h"

PG_FUNCTION_INFO_V1(ps_sync_shape_to_table);
PG_FUNCTION_INFO_V1(ps_sync_shapes_to_tables);

/* One shape as given: checked, then stored. */
typedef struct ShapeSpec
{
	PsShapeDef	def;
	char	   *shape_json;		/* url, params, headers */
	char	   *target;			/* quoted name for messages */
	Datum		pk_array;		/* text[] */
} ShapeSpec;

/* The shape option, checked as the worker will read it (UTF-8 JSON text). */
static void
check_shape(json_t *shape, const char *target)
{
	char	   *text = json_dumps(shape, JSON_ENCODE_ANY | JSON_COMPACT);
	ps_shape	s;
	char		err[512];
	char	   *host;
	int			rc;

	if (text == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	rc = ps_shape_parse(text, strlen(text), &s, err, sizeof(err));
	ps_free(text);
	if (rc < 0)
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
			ps_attr_is_null(tup, Anum_pg_index_indexprs) &&
			ps_attr_is_null(tup, Anum_pg_index_indpred);
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
check_map_columns(json_t *map, Relation rel, List *pk, const char *target)
{
	Oid			relid = RelationGetRelid(rel);
	const char *k;
	json_t	   *v;
	List	   *mapped = NIL;
	ListCell   *lc;

	if (!json_is_object(map))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("map_columns must be a JSON object of {\"local_column\": \"shape_column\"}")));
	json_object_foreach(map, k, v)
	{
		char	   *local = pg_any_to_server(k, strlen(k), PG_UTF8);
		AttrNumber	att = require_column(relid, local, target);

		if (TupleDescAttr(RelationGetDescr(rel), att - 1)->attgenerated)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("map_columns maps generated column \"%s\" of %s, which cannot be written",
							local, target)));
		if (!json_is_string(v) || json_string_length(v) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("map_columns values must be shape column names (non-empty strings)")));
		mapped = lappend(mapped, local);
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

void
ps_check_function(Oid fn, const char *argname, Oid argtype, Oid rettype,
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
insert_method(const char *method, bool use_copy)
{
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

static Datum
text_array(List *items)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(items), 1));
	ListCell   *lc;

	foreach(lc, items)
		elems[foreach_current_index(lc)] = CStringGetTextDatum(lfirst(lc));
	return PointerGetDatum(construct_array(elems, list_length(items), TEXTOID, -1, false,
										   TYPALIGN_INT));
}

/* Check one shape and its target; fills spec. */
static void
check_spec(ShapeSpec *spec, const char *member, int position, json_t *shape,
		   const char *table_name, const char *schema_name, List *pk, json_t *map_columns,
		   Oid map_function, Oid on_must_refetch)
{
	PsShapeDef *def = &spec->def;
	Oid			nspoid;
	Oid			relid;
	Relation	rel;

	memset(spec, 0, sizeof(*spec));
	spec->target = quote_qualified_identifier(schema_name, table_name);
	if (map_columns != NULL && OidIsValid(map_function))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("map_columns and map_function cannot be used together")));
	check_shape(shape, spec->target);
	spec->shape_json = ps_json_text(shape);

	/* the target table, by OID from now on */
	nspoid = get_namespace_oid(schema_name, true);
	/* the worker reaches the table through its schema, as its owner */
	if (OidIsValid(nspoid) &&
		ps_namespace_aclcheck(nspoid, GetUserId(), ACL_USAGE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for schema %s", quote_identifier(schema_name)),
				 errdetail("Role \"%s\" lacks the USAGE privilege on the schema of table %s.",
						   GetUserNameFromId(GetUserId(), false), spec->target)));
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
				 errmsg("%s is not a table", spec->target),
				 errdetail("Shapes can only be synced into ordinary or partitioned tables.")));
	check_table_privileges(relid, spec->target);
	check_primary_key(rel, pk, spec->target);
	if (map_columns)
		check_map_columns(map_columns, rel, pk, spec->target);
	if (OidIsValid(map_function))
		ps_check_function(map_function, "map_function", JSONBOID, JSONBOID,
					   "(message jsonb) RETURNS jsonb");
	if (OidIsValid(on_must_refetch))
		ps_check_function(on_must_refetch, "on_must_refetch", TEXTOID, VOIDOID,
					   "(subscription text) RETURNS void");
	table_close(rel, NoLock);

	def->name = member ? pstrdup(member) : NULL;
	def->position = position;
	def->relid = relid;
	def->schema_name = pstrdup(schema_name);
	def->table_name = pstrdup(table_name);
	def->primary_key = pk;
	def->map_columns = map_columns ? ps_json_text(map_columns) : NULL;
	def->map_function = map_function;
	def->on_must_refetch = on_must_refetch;
	spec->pk_array = text_array(pk);
}

static void
check_headers_function(Oid fn)
{
	if (OidIsValid(fn))
		ps_check_function(fn, "headers_function", TEXTOID, JSONBOID,
					   "(subscription text) RETURNS jsonb");
}

static void
check_database(bool worker)
{
	if (worker)
		ps_require_worker_support();
	if (ps_database_is_template())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot sync shapes in template database \"%s\"", get_database_name(MyDatabaseId)),
				 errdetail("Workers would keep the database busy, and copies of it would carry the subscriptions.")));
}

/*
 * Store a subscription: a new one, or a stopped one of that shape_key taken
 * up again (its shapes replaced; stored positions stay with shapes that keep
 * their name, and are resumed if their target is the same).
 */
static char *
store(const char *shape_key, const char *name_base, const char *method, Oid headers_function,
	  bool worker, ShapeSpec *specs, int nspecs)
{
	Oid			owner = GetUserId();
	PsSubRow	row;
	int32		subid;
	char	   *name = NULL;
	List	   *names = NIL;
	MemoryContext caller_cxt = CurrentMemoryContext;

	SPI_connect();
	ps_catalog_lock();
	if (shape_key && ps_catalog_lock_subscription(shape_key, &row))
	{
		if (row.enabled)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("subscription \"%s\" is already running", shape_key),
					 errhint("Call electric.unsubscribe('%s') first to change it.", shape_key)));
		/* taking it up again replaces its definition: only its owner may */
		if (!has_privs_of_role(owner, row.owner))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("must be owner of subscription \"%s\"", shape_key)));
		subid = row.id;
		ps_catalog_reenable_subscription(subid, owner, method, headers_function, worker);
		name = MemoryContextStrdup(caller_cxt, shape_key);
	}
	else
	{
		if (worker && ps_shared && ps_slots_in_use() >= ps_max_subscriptions)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("too many running subscriptions"),
					 errdetail("pglite_sync.max_subscriptions is %d.", ps_max_subscriptions),
					 errhint("Unsubscribe one, or raise pglite_sync.max_subscriptions and restart the server.")));
		subid = ps_catalog_insert_subscription(shape_key, name_base, owner, method,
											   headers_function, worker, &name);
		name = MemoryContextStrdup(caller_cxt, name);
	}

	/* sync_shapes_to_tables names its members, sync_shape_to_table does not */
	ps_catalog_set_group(subid, nspecs != 1 || specs[0].def.name != NULL);
	for (int i = 0; i < nspecs; i++)
	{
		/* a single shape takes the subscription's name */
		if (nspecs == 1 && specs[i].def.name == NULL)
			specs[i].def.name = name;
		names = lappend(names, specs[i].def.name);
		ps_catalog_share_table(specs[i].def.relid, subid, specs[i].target,
							   specs[i].def.primary_key);
		ps_catalog_put_shape(subid, &specs[i].def, specs[i].shape_json, specs[i].pk_array,
							 owner);
	}
	ps_catalog_keep_shapes(subid, text_array(names));
	SPI_finish();

	if (worker && ps_shared)
		ps_at_commit(PS_ACTION_START, subid, owner);
	return name;
}

/* ---- sync_shape_to_table ------------------------------------------------ */

Datum
ps_sync_shape_to_table(PG_FUNCTION_ARGS)
{
	/* 0.1.0 declared ten arguments; headers_function and worker came later */
	int			nargs = PG_NARGS();
	Oid			headers_function = nargs > 10 && !PG_ARGISNULL(10) ? PG_GETARG_OID(10) : InvalidOid;
	bool		worker = nargs > 11 && !PG_ARGISNULL(11) ? PG_GETARG_BOOL(11) : ps_default_worker();
	char	   *shape_key = PG_ARGISNULL(6) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(6));
	const char *method;
	ShapeSpec	spec;
	char	   *name;

	ps_catalog_require_current();
	check_database(worker);
	ps_require_arg(fcinfo, 0, "shape");
	ps_require_arg(fcinfo, 1, "table_name");
	ps_require_arg(fcinfo, 2, "primary_key");
	ps_require_arg(fcinfo, 3, "schema_name");
	ps_require_arg(fcinfo, 7, "initial_insert_method");
	method = insert_method(text_to_cstring(PG_GETARG_TEXT_PP(7)),
						   !PG_ARGISNULL(8) && PG_GETARG_BOOL(8));
	if (shape_key != NULL && shape_key[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("shape_key must not be empty"),
				 errhint("Pass NULL for a subscription whose stream state is not persisted.")));
	check_spec(&spec, NULL, 0, ps_jsonb_load(PG_GETARG_JSONB_P(0)),
			   text_to_cstring(PG_GETARG_TEXT_PP(1)), text_to_cstring(PG_GETARG_TEXT_PP(3)),
			   column_list(PG_GETARG_ARRAYTYPE_P(2), "primary_key"),
			   PG_ARGISNULL(4) ? NULL : ps_jsonb_load(PG_GETARG_JSONB_P(4)),
			   PG_ARGISNULL(5) ? InvalidOid : PG_GETARG_OID(5),
			   PG_ARGISNULL(9) ? InvalidOid : PG_GETARG_OID(9));
	spec.def.name = NULL;		/* the subscription's name, once known */
	check_headers_function(headers_function);

	name = store(shape_key, text_to_cstring(PG_GETARG_TEXT_PP(1)), method, headers_function,
				 worker, &spec, 1);
	PG_RETURN_TEXT_P(cstring_to_text(name));
}

/* ---- sync_shapes_to_tables ----------------------------------------------- */

static bool
member_name_ok(const char *s)
{
	size_t		n = strlen(s);

	if (n < 1 || n > 63)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '_'))
			return false;
	return true;
}

static char *
string_of(json_t *v, const char *member, const char *key)
{
	if (!json_is_string(v))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("shape \"%s\": \"%s\" must be a string", member, key)));
	return ps_json_str(v);
}

/*
 * sync_shapes_to_tables runs with search_path pinned (see there), but the
 * functions its members name are found the way the caller would find them,
 * as sync_shape_to_table's regprocedure arguments are.
 */
static char *caller_search_path;

static Oid
function_of(json_t *v, const char *member, const char *key)
{
	char	   *text = string_of(v, member, key);
	int			level = NewGUCNestLevel();
	Oid			oid;

	(void) set_config_option("search_path", caller_search_path, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	oid = DatumGetObjectId(DirectFunctionCall1(regprocedurein, CStringGetDatum(text)));
	AtEOXact_GUC(false, level);
	return oid;
}

/* A JSON array of column names, as the text[] of sync_shape_to_table. */
static List *
columns_of(json_t *v, const char *member)
{
	List	   *out = NIL;
	ListCell   *lc;
	size_t		i;
	json_t	   *e;

	if (!json_is_array(v))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("shape \"%s\": \"primary_key\" must be a JSON array of column names", member)));
	json_array_foreach(v, i, e)
	{
		char	   *c;

		if (!json_is_string(e) || json_string_length(e) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("shape \"%s\": \"primary_key\" must hold non-empty column names", member)));
		c = ps_json_str(e);
		foreach(lc, out)
			if (strcmp(lfirst(lc), c) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("shape \"%s\": primary_key names column \"%s\" twice", member, c)));
		out = lappend(out, c);
	}
	if (out == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("shape \"%s\": primary_key must name at least one column", member)));
	return out;
}

static void
parse_member(ShapeSpec *spec, const char *member, int position, json_t *obj)
{
	const char *key;
	json_t	   *v;
	json_t	   *shape = NULL;
	char	   *table = NULL;
	char	   *schema = "public";
	List	   *pk = NIL;
	json_t	   *map_columns = NULL;
	Oid			map_function = InvalidOid;
	Oid			on_must_refetch = InvalidOid;

	if (!member_name_ok(member))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid shape name \"%s\"", member),
				 errdetail("Shape names are 1 to 63 characters of letters, digits and underscores.")));
	if (!json_is_object(obj))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("shape \"%s\" must be a JSON object", member)));
	json_object_foreach(obj, key, v)
	{
		if (strcmp(key, "shape") == 0)
		{
			if (!json_is_object(v))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("shape \"%s\": \"shape\" must be a JSON object", member)));
			shape = v;
		}
		else if (strcmp(key, "table_name") == 0)
			table = string_of(v, member, key);
		else if (strcmp(key, "schema_name") == 0)
			schema = string_of(v, member, key);
		else if (strcmp(key, "primary_key") == 0)
			pk = columns_of(v, member);
		else if (strcmp(key, "map_columns") == 0)
			map_columns = json_is_null(v) ? NULL : v;
		else if (strcmp(key, "map_function") == 0)
			map_function = json_is_null(v) ? InvalidOid : function_of(v, member, key);
		else if (strcmp(key, "on_must_refetch") == 0)
			on_must_refetch = json_is_null(v) ? InvalidOid : function_of(v, member, key);
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("shape \"%s\": unknown key \"%s\"", member, key),
					 errhint("A shape takes shape, table_name, primary_key, schema_name, map_columns, map_function and on_must_refetch.")));
	}
	if (shape == NULL || table == NULL || pk == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("shape \"%s\" lacks \"%s\"", member,
						shape == NULL ? "shape" : table == NULL ? "table_name" : "primary_key")));
	check_spec(spec, member, position, shape, table, schema, pk, map_columns, map_function,
			   on_must_refetch);
}

/* Does a foreign key of table child reference table parent? */
static bool
references(Oid child, Oid parent)
{
	Oid			types[2] = {OIDOID, OIDOID};
	Datum		args[2] = {ObjectIdGetDatum(child), ObjectIdGetDatum(parent)};
	bool		found;

	SPI_connect();
	if (SPI_execute_with_args("SELECT 1 FROM pg_catalog.pg_constraint "
							  "WHERE contype = 'f' AND conrelid = $1 AND confrelid = $2",
							  2, types, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "pglite_sync: could not read foreign keys");
	found = SPI_processed > 0;
	SPI_finish();
	return found;
}

/*
 * Order the shapes parents first, by the foreign keys between their tables
 * (a JSON object keeps no order): snapshots load in this order and clear in
 * the reverse one, so immediate foreign keys hold too.  Shapes in a cycle,
 * or unrelated, keep their name order.
 */
static void
order_by_foreign_keys(ShapeSpec *specs, int n)
{
	bool	   *placed = palloc0(sizeof(bool) * n);
	int			pos = 0;

	while (pos < n)
	{
		int			pick = -1;

		for (int i = 0; i < n && pick < 0; i++)
		{
			bool		ready = !placed[i];

			for (int k = 0; k < n && ready; k++)
				if (k != i && !placed[k] && specs[i].def.relid != specs[k].def.relid &&
					references(specs[i].def.relid, specs[k].def.relid))
					ready = false;
			if (ready)
				pick = i;
		}
		if (pick < 0)			/* a cycle: the first one left goes next */
			for (int i = 0; i < n && pick < 0; i++)
				if (!placed[i])
					pick = i;
		placed[pick] = true;
		specs[pick].def.position = pos++;
	}
}

Datum
ps_sync_shapes_to_tables(PG_FUNCTION_ARGS)
{
	char	   *shape_key = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	Oid			headers_function = PG_ARGISNULL(3) ? InvalidOid : PG_GETARG_OID(3);
	bool		worker = PG_ARGISNULL(4) ? ps_default_worker() : PG_GETARG_BOOL(4);
	json_t	   *shapes;
	const char *key;
	json_t	   *v;
	ShapeSpec  *specs;
	int			n = 0;
	int			cap;
	const char *method;
	char	   *name;
	int			level;

	/*
	 * Declared without SET search_path, so that member functions resolve in
	 * the caller's; everything else runs with it pinned, as if it were set.
	 */
	caller_search_path = GetConfigOptionByName("search_path", NULL, false);
	level = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	ps_catalog_require_current();
	check_database(worker);
	ps_require_arg(fcinfo, 0, "shapes");
	ps_require_arg(fcinfo, 2, "initial_insert_method");
	method = insert_method(text_to_cstring(PG_GETARG_TEXT_PP(2)), false);
	if (shape_key != NULL && shape_key[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("shape_key must not be empty"),
				 errhint("Pass NULL for a subscription whose stream state is not persisted.")));
	shapes = ps_jsonb_load(PG_GETARG_JSONB_P(0));
	if (!json_is_object(shapes) || json_object_size(shapes) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("shapes must be a JSON object of at least one {\"name\": {shape, table_name, primary_key, ...}}")));
	cap = (int) json_object_size(shapes);
	specs = palloc0(sizeof(ShapeSpec) * cap);
	json_object_foreach(shapes, key, v)
	{
		/* names are checked to be ASCII letters, digits and underscores */
		char	   *member = pstrdup(key);

		parse_member(&specs[n], member, n, v);
		for (int k = 0; k < n; k++)
			if (specs[k].def.relid == specs[n].def.relid)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("shapes \"%s\" and \"%s\" both sync into table %s",
								specs[k].def.name, member, specs[n].target),
						 errhint("Give each table one shape of the group; several subscriptions may share a table.")));
		n++;
	}
	order_by_foreign_keys(specs, n);
	check_headers_function(headers_function);
	name = store(shape_key, "group", method, headers_function, worker, specs, n);
	AtEOXact_GUC(true, level);
	PG_RETURN_TEXT_P(cstring_to_text(name));
}
