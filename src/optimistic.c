/*
 * optimistic.c
 *	  The optimistic state of local writes (see optimistic.h).  Rows are
 *	  found by their primary key given as JSON (jsonb_populate_record turns
 *	  it into the key columns' types), so every statement uses the key's
 *	  index.  A write's values are re-applied as upserts, updates of the
 *	  columns it changed, and deletes.
 */
#include "pglite_sync.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "catalog.h"
#include "json.h"
#include "optimistic.h"

/* The writable columns named in a JSON object, quoted, comma-separated; *n how many. */
static char *
column_list(Oid relid, const char *json, List **names, const char *prefix)
{
	json_t	   *o = json_loads(json, 0, NULL);
	StringInfoData b;
	const char *k;
	json_t	   *v;
	Relation	rel;
	TupleDesc	desc;

	initStringInfo(&b);
	*names = NIL;
	if (o == NULL || !json_is_object(o))
		elog(ERROR, "pglite_sync: a stored write is not a JSON object: %s", json);
	rel = table_open(relid, AccessShareLock);
	desc = RelationGetDescr(rel);
	json_object_foreach(o, k, v)
	{
		int			attno = SPI_fnumber(desc, k);

		/* a column dropped since, or one the table computes itself */
		if (attno <= 0 || TupleDescAttr(desc, attno - 1)->attgenerated)
			continue;
		*names = lappend(*names, pstrdup(k));
		appendStringInfo(&b, "%s%s%s", b.len ? ", " : "", prefix, quote_identifier(k));
	}
	json_decref(o);
	table_close(rel, AccessShareLock);
	return b.data;
}

/* "(k1, k2) = (SELECT k1, k2 FROM jsonb_populate_record(NULL::t, $n))" */
static void
key_match(StringInfo sql, Oid relid, const char *key, int param)
{
	List	   *names;
	char	   *cols = column_list(relid, key, &names, "");

	appendStringInfo(sql, "(%s) = (SELECT %s FROM pg_catalog.jsonb_populate_record(NULL::%s, $%d::jsonb))",
					 cols, cols, ps_qualified_relname(relid), param);
}

static void
execute(const char *sql, int nargs, const char *a1, const char *a2)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {a1 ? CStringGetTextDatum(a1) : (Datum) 0, a2 ? CStringGetTextDatum(a2) : (Datum) 0};
	MemoryContext cxt = CurrentMemoryContext;
	int			rc = SPI_execute_with_args(sql, nargs, types, values, NULL, false, 0);

	MemoryContextSwitchTo(cxt);	/* SPI returns in its procedure context */
	if (rc < 0)
		elog(ERROR, "pglite_sync: re-applying a local write failed: %s", SPI_result_code_string(rc));
}

static bool
named(List *names, const char *name)
{
	ListCell   *lc;

	foreach(lc, names)
		if (strcmp(lfirst(lc), name) == 0)
			return true;
	return false;
}

/*
 * The row as given (all its columns): an upsert by its key.  An existing
 * row takes only the columns in only (NIL: all).
 */
static void
upsert(Oid relid, const char *key, const char *row, List *only)
{
	List	   *cols;
	List	   *keycols;
	char	   *list = column_list(relid, row, &cols, "");
	char	   *keylist = column_list(relid, key, &keycols, "");
	StringInfoData sql;
	StringInfoData set;
	StringInfoData excluded;
	ListCell   *lc;

	initStringInfo(&set);
	initStringInfo(&excluded);
	foreach(lc, cols)
		if (!named(keycols, lfirst(lc)) && (only == NIL || named(only, lfirst(lc))))
		{
			appendStringInfo(&set, "%s%s", set.len ? ", " : "", quote_identifier(lfirst(lc)));
			appendStringInfo(&excluded, "%sEXCLUDED.%s", excluded.len ? ", " : "", quote_identifier(lfirst(lc)));
		}
	initStringInfo(&sql);
	appendStringInfo(&sql, "INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s "
					 "FROM pg_catalog.jsonb_populate_record(NULL::%s, $1::jsonb) ON CONFLICT (%s) ",
					 ps_qualified_relname(relid), list, list, ps_qualified_relname(relid), keylist);
	if (set.len)
		appendStringInfo(&sql, "DO UPDATE SET (%s) = ROW(%s)", set.data, excluded.data);
	else
		appendStringInfoString(&sql, "DO NOTHING");
	execute(sql.data, 1, row, NULL);
}

static void
delete_row(Oid relid, const char *key)
{
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfo(&sql, "DELETE FROM %s WHERE ", ps_qualified_relname(relid));
	key_match(&sql, relid, key, 1);
	execute(sql.data, 1, key, NULL);
}

static void
update_row(Oid relid, const char *key, const char *value)
{
	List	   *cols;
	char	   *list = column_list(relid, value, &cols, "");
	StringInfoData sql;

	if (cols == NIL)
		return;
	initStringInfo(&sql);
	appendStringInfo(&sql, "UPDATE %s SET (%s) = (SELECT %s FROM pg_catalog.jsonb_populate_record(NULL::%s, $1::jsonb)) WHERE ",
					 ps_qualified_relname(relid), list, list, ps_qualified_relname(relid));
	key_match(&sql, relid, key, 2);
	execute(sql.data, 2, value, key);
}

typedef struct Mutation
{
	char	   *op;
	char	   *key;
	char	   *value;
} Mutation;

/* The pending writes of one row, again, in order. */
static void
reapply(Oid relid, Datum pk)
{
	SPITupleTable *tt = ps_catalog_write_row_mutations(relid, pk);
	int			n = (int) SPI_processed;
	Mutation   *ms = palloc(sizeof(Mutation) * Max(n, 1));

	/* copied first: the statements below reuse SPI's result */
	for (int i = 0; i < n; i++)
	{
		ms[i].op = SPI_getvalue(tt->vals[i], tt->tupdesc, 1);
		ms[i].key = SPI_getvalue(tt->vals[i], tt->tupdesc, 2);
		ms[i].value = SPI_getvalue(tt->vals[i], tt->tupdesc, 3);
	}
	SPI_freetuptable(tt);
	for (int i = 0; i < n; i++)
	{
		if (strcmp(ms[i].op, "insert") == 0)
			upsert(relid, ms[i].key, ms[i].value, NIL);
		else if (strcmp(ms[i].op, "update") == 0)
			update_row(relid, ms[i].key, ms[i].value);
		else
			delete_row(relid, ms[i].key);
	}
}

/* The row as it is now, as JSON (NULL when there is none). */
static char *
current_row(Oid relid, const char *key)
{
	StringInfoData sql;
	Oid			type = TEXTOID;
	Datum		v = CStringGetTextDatum(key);
	MemoryContext cxt = CurrentMemoryContext;
	int			rc;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT pg_catalog.to_jsonb(t)::text FROM %s t WHERE ", ps_qualified_relname(relid));
	key_match(&sql, relid, key, 1);
	rc = SPI_execute_with_args(sql.data, 1, &type, &v, NULL, false, 1);
	MemoryContextSwitchTo(cxt);	/* SPI returns in its procedure context */
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "pglite_sync: reading a row for its writes failed: %s", SPI_result_code_string(rc));
	return SPI_processed ? SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1) : NULL;
}

void
ps_optimistic_synced(Oid relid, List *pk_names, const char *key, Datum pk)
{
	char	   *row = current_row(relid, key);

	ps_catalog_write_base(relid, pk, row, true);
	reapply(relid, pk);
}

void
ps_optimistic_rejected(int64 write, PsShapeColumnsFn shape_columns, void *arg)
{
	SPITupleTable *tt = ps_catalog_write_keys(write);
	int			n = (int) SPI_processed;
	Oid		   *relids = palloc(sizeof(Oid) * Max(n, 1));
	Datum	   *pks = palloc(sizeof(Datum) * Max(n, 1));
	char	  **keys = palloc(sizeof(char *) * Max(n, 1));

	for (int i = 0; i < n; i++)
	{
		bool		isnull;

		relids[i] = DatumGetObjectId(SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull));
		pks[i] = datumCopy(SPI_getbinval(tt->vals[i], tt->tupdesc, 2, &isnull), false, -1);
		keys[i] = SPI_getvalue(tt->vals[i], tt->tupdesc, 3);
	}
	SPI_freetuptable(tt);
	for (int i = 0; i < n; i++)
	{
		char	   *base;

		if (!ps_catalog_write_base_get(relids[i], pks[i], &base))
			continue;			/* nothing kept: the row was never the server's */
		if (base == NULL)
			delete_row(relids[i], keys[i]);
		else
			upsert(relids[i], keys[i], base, shape_columns(arg, relids[i]));
		reapply(relids[i], pks[i]);
	}
	ps_catalog_write_bases_cleanup();
}
