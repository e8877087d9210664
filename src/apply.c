/*
 * apply.c
 *	  Apply a spooled batch to the target table (see apply.h).
 *
 * Every record becomes a "row": the local columns it writes and their text
 * values, from the message itself, map_columns or map_function.  A row is
 * then written by one of three paths:
 *   - SPI: prepared INSERT/UPDATE/DELETE, one plan per column set, values
 *     converted with the columns' input functions (never pasted into SQL);
 *   - copy: the COPY FROM machinery fed from the spool by a callback;
 *   - json: INSERT … SELECT from json_to_recordset, one statement per chunk.
 * copy and json only load the leading inserts of a batch that starts from
 * offset -1 (the initial snapshot, or a refetch); the rest goes through SPI.
 */
#include "apply.h"

#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_index.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "commands/copy.h"
#include "executor/executor.h"
#include "parser/parse_relation.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_node.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/regproc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/syscache.h"

#include "json.h"

#define JSON_CHUNK_ROWS		10000
#define JSON_CHUNK_BYTES	(16 * 1024 * 1024)

typedef struct PsColumn
{
	char	   *name;
	bool		writable;		/* not dropped, not generated */
	bool		identity_always;
	Oid			typid;
	int32		typmod;
	Oid			typioparam;
	FmgrInfo	input;
} PsColumn;

/* shape column name -> local attnum (chained when mapped to several) */
typedef struct NameMapEntry
{
	char		name[NAMEDATALEN];
	AttrNumber	attno;
	struct NameMapEntry *next;
} NameMapEntry;

typedef struct PlanEntry
{
	char		op;				/* I, U, D, or M: a multi-row insert */
	int			nrows;			/* rows of an M plan */
	Bitmapset  *cols;
	SPIPlanPtr	plan;
	int			nargs;
	AttrNumber *args;			/* attnum of each parameter */
} PlanEntry;

typedef struct PsRow
{
	char		op;
	const char *key;
	uint32		key_len;
	int			n;				/* columns present */
	const char **by_att;		/* [natts] text or NULL, valid for attnos in set */
	Bitmapset  *set;			/* attnos present */
} PsRow;

typedef struct PsApply
{
	PsSubscription *sub;
	Relation	rel;
	char	   *qualname;
	int			natts;
	PsColumn   *cols;			/* by attnum - 1 */
	HTAB	   *names;			/* NameMapEntry by shape column */
	bool		use_map_function;
	FmgrInfo	map_fn;
	AttrNumber *pk;
	int			npk;
	char	  **pk_eq;			/* "OPERATOR(nsp.=)" of the key's unique index */
	List	   *plans;			/* PlanEntry */
	bool		convert;		/* database encoding is not UTF8 */
	PsSpool    *spool;
	MemoryContext batch_cxt;	/* plans and per-batch state */
	MemoryContext row_cxt;		/* the current row, reset for every row */
	MemoryContext exec_cxt;		/* converted values, reset after each statement */
	MemoryContext names_cxt;	/* the field-name cache below */

	PsRow		row;
	bool		pushed_back;

	/* cache of the previous record's field names -> attnums */
	int			last_nfields;
	char	  **last_names;
	uint32	   *last_name_lens;
	AttrNumber *last_attnos;
	int			last_cap;

	/* scratch */
	Datum	   *values;
	char	   *nulls;
	StringInfoData line;

	/* consecutive inserts of one column set, sent as one statement */
	Bitmapset  *ib_cols;
	AttrNumber *ib_order;
	int			ib_ncols;
	int			ib_rows;
	int			ib_cap;
	Datum	   *ib_values;
	char	   *ib_nulls;
	MemoryContext ib_cxt;

	/* error context */
	const char *ctx_column;
	int			ctx_batch;		/* rows of the multi-row insert being sent */
} PsApply;

#define INSERT_BATCH_ROWS 100

static void find_key_operators(PsApply *a);

/* ---- error context: name the key and column being applied ------------- */

static void
apply_error_callback(void *arg)
{
	PsApply    *a = arg;
	const char *op = a->row.op == 'I' ? "insert" : a->row.op == 'U' ? "update" :
		a->row.op == 'D' ? "delete" : "change";

	if (a->ctx_batch > 0)
	{
		errcontext("applying a batch of %d inserts to table %s", a->ctx_batch, a->qualname);
		return;
	}
	if (a->row.key == NULL)
		return;
	if (a->ctx_column)
		errcontext("applying %s of key %.*s to table %s, column \"%s\"",
				   op, (int) Min(a->row.key_len, 200), a->row.key, a->qualname, a->ctx_column);
	else
		errcontext("applying %s of key %.*s to table %s",
				   op, (int) Min(a->row.key_len, 200), a->row.key, a->qualname);
}

/* ---- target table ------------------------------------------------------------ */

static void
add_name(PsApply *a, const char *shape_name, AttrNumber attno)
{
	NameMapEntry *e;
	bool		found;
	char		key[NAMEDATALEN];

	if (strlen(shape_name) >= NAMEDATALEN)
		return;					/* cannot be a column name: stays unknown */
	memset(key, 0, sizeof(key));
	strlcpy(key, shape_name, sizeof(key));
	e = hash_search(a->names, key, HASH_ENTER, &found);
	if (found)
	{
		NameMapEntry *extra = palloc(sizeof(NameMapEntry));

		*extra = *e;
		e->next = extra;
	}
	else
		e->next = NULL;
	e->attno = attno;
}

static void
open_target(PsApply *a, PsSubscription *sub)
{
	TupleDesc	desc;
	HASHCTL		hctl;
	ListCell   *lc;

	a->rel = try_table_open(sub->relid, RowExclusiveLock);
	if (a->rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table %s of subscription \"%s\" no longer exists",
						quote_qualified_identifier(sub->schema_name, sub->table_name), sub->name),
				 errhint("Unsubscribe, then subscribe the table again.")));
	a->qualname = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(a->rel)),
											 RelationGetRelationName(a->rel));
	if (a->rel->rd_rel->relkind != RELKIND_RELATION &&
		a->rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("%s is not a table", a->qualname)));

	desc = RelationGetDescr(a->rel);
	a->natts = desc->natts;
	a->cols = palloc0(sizeof(PsColumn) * Max(a->natts, 1));
	for (int i = 0; i < a->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		PsColumn   *c = &a->cols[i];
		Oid			infunc;

		c->name = pstrdup(NameStr(att->attname));
		c->writable = !att->attisdropped && att->attgenerated == '\0';
		c->identity_always = att->attidentity == ATTRIBUTE_IDENTITY_ALWAYS;
		if (att->attisdropped)
			continue;
		c->typid = att->atttypid;
		c->typmod = att->atttypmod;
		getTypeInputInfo(c->typid, &infunc, &c->typioparam);
		fmgr_info(infunc, &c->input);
	}

	memset(&hctl, 0, sizeof(hctl));
	hctl.keysize = NAMEDATALEN;
	hctl.entrysize = sizeof(NameMapEntry);
	hctl.hcxt = CurrentMemoryContext;
	a->names = hash_create("pglite_sync column names", 64, &hctl,
						   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	if (sub->map_columns)
	{
		Jsonb	   *map = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(sub->map_columns)));
		JsonbIterator *it = JsonbIteratorInit(&map->root);
		JsonbValue	v;
		JsonbIteratorToken tok;
		char	   *local = NULL;

		while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
				local = pnstrdup(v.val.string.val, v.val.string.len);
			else if (tok == WJB_VALUE && v.type == jbvString && local)
			{
				AttrNumber	att = get_attnum(sub->relid, local);

				if (att <= 0)
					ereport(ERROR,
							(errcode(ERRCODE_UNDEFINED_COLUMN),
							 errmsg("column \"%s\" of relation %s named in map_columns does not exist",
									local, a->qualname)));
				add_name(a, pnstrdup(v.val.string.val, v.val.string.len), att);
			}
		}
	}
	else
	{
		/* shape columns (or map_function's keys) are local column names */
		for (int i = 0; i < a->natts; i++)
			if (!TupleDescAttr(desc, i)->attisdropped)
				add_name(a, a->cols[i].name, i + 1);
	}
	if (OidIsValid(sub->map_function))
	{
		if (ps_proc_aclcheck(sub->map_function, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for function %s", format_procedure(sub->map_function))));
		fmgr_info(sub->map_function, &a->map_fn);
		a->use_map_function = true;
	}

	a->npk = list_length(sub->primary_key);
	a->pk = palloc(sizeof(AttrNumber) * a->npk);
	foreach(lc, sub->primary_key)
	{
		AttrNumber	att = get_attnum(sub->relid, lfirst(lc));

		if (att <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("primary key column \"%s\" of relation %s does not exist",
							(char *) lfirst(lc), a->qualname)));
		a->pk[foreach_current_index(lc)] = att;
	}

	find_key_operators(a);

	a->row.by_att = palloc(sizeof(char *) * Max(a->natts, 1));
	a->values = palloc(sizeof(Datum) * (a->natts + a->npk + 1));
	a->nulls = palloc(sizeof(char) * (a->natts + a->npk + 1));
	a->convert = GetDatabaseEncoding() != PG_UTF8 && GetDatabaseEncoding() != PG_SQL_ASCII;
	initStringInfo(&a->line);
}

/*
 * The equality operators of the unique index that backs primary_key: rows
 * are found as the index sees them, whatever the search_path (a key of a
 * type installed outside it, such as citext, still works).
 */
static void
find_key_operators(PsApply *a)
{
	List	   *indexes = RelationGetIndexList(a->rel);
	ListCell   *lc;

	a->pk_eq = palloc0(sizeof(char *) * Max(a->npk, 1));
	foreach(lc, indexes)
	{
		HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));
		Form_pg_index idx;
		bool		match;
		oidvector  *indclass;
		bool		isnull;

		if (!HeapTupleIsValid(tup))
			continue;
		idx = (Form_pg_index) GETSTRUCT(tup);
		match = idx->indisunique && idx->indisvalid && idx->indnkeyatts == a->npk &&
			heap_attisnull(tup, Anum_pg_index_indexprs, NULL) &&
			heap_attisnull(tup, Anum_pg_index_indpred, NULL);
		for (int i = 0; match && i < a->npk; i++)
		{
			bool		found = false;

			for (int k = 0; k < idx->indnkeyatts; k++)
				found |= idx->indkey.values[k] == a->pk[i];
			match = found;
		}
		if (!match)
		{
			ReleaseSysCache(tup);
			continue;
		}
		indclass = (oidvector *) DatumGetPointer(SysCacheGetAttr(INDEXRELID, tup,
																  Anum_pg_index_indclass, &isnull));
		for (int i = 0; i < a->npk; i++)
			for (int k = 0; k < idx->indnkeyatts; k++)
				if (idx->indkey.values[k] == a->pk[i])
				{
					Oid			opclass = indclass->values[k];
					Oid			intype = get_opclass_input_type(opclass);
					Oid			opr = get_opfamily_member(get_opclass_family(opclass),
														  intype, intype, BTEqualStrategyNumber);
					HeapTuple	otup = SearchSysCache1(OPEROID, ObjectIdGetDatum(opr));

					if (!HeapTupleIsValid(otup))
						elog(ERROR, "pglite_sync: no equality operator for index column %d", k + 1);
					a->pk_eq[i] = psprintf("OPERATOR(%s.%s)",
										   quote_identifier(get_namespace_name(((Form_pg_operator) GETSTRUCT(otup))->oprnamespace)),
										   NameStr(((Form_pg_operator) GETSTRUCT(otup))->oprname));
					ReleaseSysCache(otup);
				}
		ReleaseSysCache(tup);
		return;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
			 errmsg("primary_key of subscription \"%s\" no longer matches a unique index of table %s",
					a->sub->name, a->qualname),
			 errhint("Restore the table's primary key or unique index, or subscribe again.")));
}

/* ---- producing rows ------------------------------------------------------------ */

static const char *
server_text(PsApply *a, const char *s, size_t len)
{
	if (s == NULL || !a->convert)
		return s;
	return pg_any_to_server(s, (int) len, PG_UTF8);
}

static void
row_add(PsApply *a, AttrNumber attno, const char *val)
{
	PsRow	   *r = &a->row;

	if (!a->cols[attno - 1].writable)
		return;					/* generated locally */
	/* the same column twice: the later value wins */
	if (!bms_is_member(attno, r->set))
	{
		r->set = bms_add_member(r->set, attno);
		r->n++;
	}
	r->by_att[attno - 1] = val;
}

static NameMapEntry *
lookup_name(PsApply *a, const char *name, uint32 len)
{
	char		key[NAMEDATALEN];

	if (len >= NAMEDATALEN)
		return NULL;
	memset(key, 0, sizeof(key));
	memcpy(key, name, len);
	return hash_search(a->names, key, HASH_FIND, NULL);
}

/* Field names -> attnums, reusing the previous record's answer when equal. */
static void
row_from_fields(PsApply *a, PsSpoolRecord *rec)
{
	bool		same = (rec->nfields == a->last_nfields);

	for (int i = 0; same && i < rec->nfields; i++)
		same = rec->fields[i].name_len == a->last_name_lens[i] &&
			memcmp(rec->fields[i].name, a->last_names[i], rec->fields[i].name_len) == 0;

	if (same && !a->sub->map_columns)
	{
		for (int i = 0; i < rec->nfields; i++)
			if (a->last_attnos[i] > 0)
				row_add(a, a->last_attnos[i],
						server_text(a, rec->fields[i].value, rec->fields[i].len));
		return;
	}

	MemoryContextReset(a->names_cxt);
	a->last_cap = Max(rec->nfields, 1);
	a->last_names = MemoryContextAlloc(a->names_cxt, sizeof(char *) * a->last_cap);
	a->last_name_lens = MemoryContextAlloc(a->names_cxt, sizeof(uint32) * a->last_cap);
	a->last_attnos = MemoryContextAlloc(a->names_cxt, sizeof(AttrNumber) * a->last_cap);
	for (int i = 0; i < rec->nfields; i++)
	{
		PsSpoolField *f = &rec->fields[i];
		NameMapEntry *e = lookup_name(a, f->name, f->name_len);

		if (e == NULL && !a->sub->map_columns)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%.*s\" sent by the server does not exist in table %s",
							(int) f->name_len, f->name, a->qualname),
					 errhint("Add the column, limit the shape with params.columns, or use map_columns.")));
		a->last_names[i] = MemoryContextAlloc(a->names_cxt, f->name_len + 1);
		memcpy(a->last_names[i], f->name, f->name_len);
		a->last_name_lens[i] = f->name_len;
		a->last_attnos[i] = (e && !e->next) ? e->attno : 0;
		for (; e; e = e->next)
			row_add(a, e->attno, server_text(a, f->value, f->len));
	}
	a->last_nfields = a->sub->map_columns ? -1 : rec->nfields;
}

/* map_function: the whole message as jsonb in, the local row out. */
static bool
row_from_function(PsApply *a, PsSpoolRecord *rec)
{
	const char *json = server_text(a, rec->json, rec->json_len);
	Datum		msg = DirectFunctionCall1(jsonb_in, CStringGetDatum(json));
	Datum		result;
	Jsonb	   *out;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *local = NULL;
	LOCAL_FCINFO(fcinfo, 1);

	InitFunctionCallInfoData(*fcinfo, &a->map_fn, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = msg;
	fcinfo->args[0].isnull = false;
	result = FunctionCallInvoke(fcinfo);
	if (fcinfo->isnull)
		return false;			/* SQL NULL: skip this message */
	out = DatumGetJsonbP(result);
	if (!JB_ROOT_IS_OBJECT(out) || JB_ROOT_IS_SCALAR(out))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("map_function %s must return a JSON object of local columns",
						format_procedure(a->sub->map_function))));
	it = JsonbIteratorInit(&out->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		const char *val;
		AttrNumber	att;

		if (tok == WJB_KEY)
		{
			local = pnstrdup(v.val.string.val, v.val.string.len);
			continue;
		}
		if (tok != WJB_VALUE || local == NULL)
			continue;
		{
			NameMapEntry *e = lookup_name(a, local, strlen(local));

			att = e ? e->attno : InvalidAttrNumber;
		}
		if (att <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" returned by map_function does not exist in table %s",
							local, a->qualname)));
		switch (v.type)
		{
			case jbvNull:
				val = NULL;
				break;
			case jbvString:
				val = pnstrdup(v.val.string.val, v.val.string.len);
				break;
			case jbvNumeric:
				val = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v.val.numeric)));
				break;
			case jbvBool:
				val = v.val.boolean ? "true" : "false";
				break;
			default:
				/* objects and arrays: their JSON text (for json/jsonb columns) */
				val = JsonbToCString(NULL, v.val.binary.data, v.val.binary.len);
				break;
		}
		row_add(a, att, val);
	}
	return true;
}

/*
 * The next row of the batch, or false at the end.  A row pushed back by the
 * bulk loaders is returned again first.
 */
static bool
next_row(PsApply *a)
{
	PsSpoolRecord *rec;

	if (a->pushed_back)
	{
		a->pushed_back = false;
		return true;
	}
	for (;;)
	{
		bool		keep = true;

		MemoryContextReset(a->row_cxt);
		if (!ps_spool_peek(a->spool, &rec))
			return false;
		ps_spool_consume(a->spool);

		a->row.op = rec->op;
		a->row.key = rec->key;
		a->row.key_len = rec->key_len;
		a->row.n = 0;
		a->row.set = NULL;
		a->ctx_column = NULL;
		{
			MemoryContext old = MemoryContextSwitchTo(a->row_cxt);

			if (rec->raw)
				keep = row_from_function(a, rec);
			else
				row_from_fields(a, rec);
			MemoryContextSwitchTo(old);
		}
		if (keep)
			return true;
	}
}

/* ---- the SPI path ------------------------------------------------------------- */

static PlanEntry *
get_plan(PsApply *a, char op, Bitmapset *cols, int nrows)
{
	ListCell   *lc;
	PlanEntry  *p;
	StringInfoData sql;
	Oid		   *types;
	int			x;
	int			n = 0;
	bool		override = false;
	MemoryContext old;

	foreach(lc, a->plans)
	{
		p = lfirst(lc);
		if (p->op == op && p->nrows == nrows && bms_equal(p->cols, cols))
			return p;
	}

	old = MemoryContextSwitchTo(a->batch_cxt);
	p = palloc0(sizeof(PlanEntry));
	p->op = op;
	p->nrows = nrows;
	p->cols = bms_copy(cols);
	p->args = palloc(sizeof(AttrNumber) * (bms_num_members(cols) * Max(nrows, 1) + a->npk + 1));
	types = palloc(sizeof(Oid) * (bms_num_members(cols) * Max(nrows, 1) + a->npk + 1));
	initStringInfo(&sql);

	if (op == 'M')
	{
		int			ncols = bms_num_members(cols);

		appendStringInfo(&sql, "INSERT INTO %s (", a->qualname);
		x = -1;
		while ((x = bms_next_member(cols, x)) >= 0)
		{
			appendStringInfo(&sql, "%s%s", n ? ", " : "", quote_identifier(a->cols[x - 1].name));
			override |= a->cols[x - 1].identity_always;
			types[n++] = a->cols[x - 1].typid;
		}
		appendStringInfoString(&sql, override ? ") OVERRIDING SYSTEM VALUE VALUES " : ") VALUES ");
		for (int r = 0; r < nrows; r++)
		{
			appendStringInfoString(&sql, r ? ",(" : "(");
			for (int i = 0; i < ncols; i++)
			{
				appendStringInfo(&sql, "%s$%d", i ? ", " : "", r * ncols + i + 1);
				if (r > 0)
					types[r * ncols + i] = types[i];
			}
			appendStringInfoChar(&sql, ')');
		}
		n = ncols * nrows;
	}
	else if (op == 'I')
	{
		appendStringInfo(&sql, "INSERT INTO %s (", a->qualname);
		x = -1;
		while ((x = bms_next_member(cols, x)) >= 0)
		{
			appendStringInfo(&sql, "%s%s", n ? ", " : "", quote_identifier(a->cols[x - 1].name));
			override |= a->cols[x - 1].identity_always;
			p->args[n] = x;
			types[n++] = a->cols[x - 1].typid;
		}
		appendStringInfoString(&sql, override ? ") OVERRIDING SYSTEM VALUE VALUES (" : ") VALUES (");
		for (int i = 1; i <= n; i++)
			appendStringInfo(&sql, "%s$%d", i > 1 ? ", " : "", i);
		appendStringInfoChar(&sql, ')');
	}
	else
	{
		if (op == 'U')
		{
			appendStringInfo(&sql, "UPDATE %s SET ", a->qualname);
			x = -1;
			while ((x = bms_next_member(cols, x)) >= 0)
			{
				appendStringInfo(&sql, "%s%s = $%d", n ? ", " : "",
								 quote_identifier(a->cols[x - 1].name), n + 1);
				p->args[n] = x;
				types[n++] = a->cols[x - 1].typid;
			}
		}
		else if (op == 'E')
			appendStringInfo(&sql, "SELECT 1 FROM %s", a->qualname);
		else
			appendStringInfo(&sql, "DELETE FROM %s", a->qualname);
		appendStringInfoString(&sql, " WHERE ");
		for (int i = 0; i < a->npk; i++)
		{
			AttrNumber	k = a->pk[i];

			appendStringInfo(&sql, "%s%s %s $%d", i ? " AND " : "",
							 quote_identifier(a->cols[k - 1].name), a->pk_eq[i], n + 1);
			p->args[n] = k;
			types[n++] = a->cols[k - 1].typid;
		}
	}
	p->nargs = n;
	p->plan = SPI_prepare(sql.data, n, types);
	if (p->plan == NULL)
		elog(ERROR, "pglite_sync: could not prepare \"%s\": %s", sql.data,
			 SPI_result_code_string(SPI_result));
	a->plans = lappend(a->plans, p);
	MemoryContextSwitchTo(old);
	return p;
}

static const char *
row_value(PsApply *a, AttrNumber attno, bool *present)
{
	*present = bms_is_member(attno, a->row.set);
	return *present ? a->row.by_att[attno - 1] : NULL;
}

static void
require_pk(PsApply *a)
{
	for (int i = 0; i < a->npk; i++)
	{
		bool		present;
		const char *v = row_value(a, a->pk[i], &present);

		if (!present || v == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("change does not carry primary key column \"%s\" of table %s",
							a->cols[a->pk[i] - 1].name, a->qualname)));
	}
}

/* Returns rows affected. */
static uint64
apply_row_spi(PsApply *a, int64 *skipped)
{
	PsRow	   *r = &a->row;
	Bitmapset  *cols = NULL;
	PlanEntry  *p;
	int			rc;
	int			expected;
	char		op = r->op;

	switch (r->op)
	{
		case 'I':
			if (r->n == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("insert carries no column of table %s", a->qualname)));
			cols = r->set;
			expected = SPI_OK_INSERT;
			break;
		case 'U':
			require_pk(a);
			cols = bms_copy(r->set);
			for (int i = 0; i < a->npk; i++)
				cols = bms_del_member(cols, a->pk[i]);
			if (bms_is_empty(cols))
			{
				/* only the key: nothing to change, but the row must exist */
				cols = NULL;
			}
			expected = SPI_OK_UPDATE;
			break;
		case 'D':
			require_pk(a);
			expected = SPI_OK_DELETE;
			break;
		default:
			elog(ERROR, "pglite_sync: unexpected operation '%c' in spool", r->op);
	}

	/* an update carrying only the key changes nothing, but the row must exist */
	if (r->op == 'U' && cols == NULL)
	{
		op = 'E';
		expected = SPI_OK_SELECT;
	}

	p = get_plan(a, op, op == 'U' || op == 'I' ? cols : NULL, 0);
	for (int i = 0; i < p->nargs; i++)
	{
		bool		present;
		PsColumn   *c = &a->cols[p->args[i] - 1];
		const char *v = row_value(a, p->args[i], &present);

		a->ctx_column = c->name;
		a->values[i] = InputFunctionCall(&c->input, (char *) v, c->typioparam, c->typmod);
		a->nulls[i] = v ? ' ' : 'n';
	}
	a->ctx_column = NULL;

	rc = SPI_execute_plan(p->plan, a->values, a->nulls, op == 'E', op == 'E' ? 1 : 0);
	if (rc != expected)
		elog(ERROR, "pglite_sync: apply statement failed: %s", SPI_result_code_string(rc));
	if (op == 'E' && SPI_processed > 0)
		return 0;
	if (SPI_processed == 0)
	{
		if (r->op == 'U')
			ereport(ERROR,
					(errcode(ERRCODE_NO_DATA_FOUND),
					 errmsg("update for a row that does not exist in table %s", a->qualname),
					 errhint("The table lost a synced row, for example through a local DELETE.")));
		if (r->op == 'D')
			(*skipped)++;		/* already gone: the one thing we may skip */
	}
	return SPI_processed;
}

/* ---- multi-row inserts (the insert method, and live inserts) --------------- */

static int64
insert_batch_flush(PsApply *a)
{
	PlanEntry  *p;
	int			rc;
	int64		n;

	if (a->ib_rows == 0)
		return 0;
	p = get_plan(a, 'M', a->ib_cols, a->ib_rows);
	a->ctx_batch = a->ib_rows;
	rc = SPI_execute_plan(p->plan, a->ib_values, a->ib_nulls, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "pglite_sync: apply statement failed: %s", SPI_result_code_string(rc));
	a->ctx_batch = 0;
	n = SPI_processed;
	a->ib_rows = 0;
	MemoryContextReset(a->ib_cxt);
	return n;
}

/* Add the current insert to the batch; sends it when full.  Rows applied. */
static int64
insert_batch_add(PsApply *a)
{
	int64		done = 0;
	int			base;

	if (a->ib_rows > 0 && !bms_equal(a->ib_cols, a->row.set))
		done = insert_batch_flush(a);
	if (a->row.n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("insert carries no column of table %s", a->qualname)));
	if (a->ib_rows == 0 && !bms_equal(a->ib_cols, a->row.set))
	{
		MemoryContext old = MemoryContextSwitchTo(a->batch_cxt);
		int			x = -1;

		bms_free(a->ib_cols);
		a->ib_cols = bms_copy(a->row.set);
		a->ib_ncols = bms_num_members(a->ib_cols);
		a->ib_cap = Max(1, Min(INSERT_BATCH_ROWS, 65535 / a->ib_ncols));
		if (a->ib_order)
		{
			pfree(a->ib_order);
			pfree(a->ib_values);
			pfree(a->ib_nulls);
		}
		a->ib_order = palloc(sizeof(AttrNumber) * a->ib_ncols);
		a->ib_values = palloc(sizeof(Datum) * a->ib_ncols * a->ib_cap);
		a->ib_nulls = palloc(sizeof(char) * a->ib_ncols * a->ib_cap);
		for (int i = 0; (x = bms_next_member(a->ib_cols, x)) >= 0; i++)
			a->ib_order[i] = x;
		MemoryContextSwitchTo(old);
	}

	base = a->ib_rows * a->ib_ncols;
	{
		MemoryContext old = MemoryContextSwitchTo(a->ib_cxt);

		for (int i = 0; i < a->ib_ncols; i++)
		{
			bool		present;
			PsColumn   *c = &a->cols[a->ib_order[i] - 1];
			const char *v = row_value(a, a->ib_order[i], &present);

			a->ctx_column = c->name;
			a->ib_values[base + i] = InputFunctionCall(&c->input, (char *) v, c->typioparam, c->typmod);
			a->ib_nulls[base + i] = v ? ' ' : 'n';
		}
		a->ctx_column = NULL;
		MemoryContextSwitchTo(old);
	}
	if (++a->ib_rows == a->ib_cap)
		done += insert_batch_flush(a);
	return done;
}

/* ---- bulk loading: COPY ------------------------------------------------------- */

typedef struct CopySource
{
	PsApply    *a;
	Bitmapset  *cols;
	AttrNumber *order;			/* column order of the COPY */
	int			ncols;
	bool		eof;
	int			pos;			/* consumed bytes of a->line */
	int64		rows;
} CopySource;

static CopySource *copy_source;	/* COPY's callback has no argument */

static void
append_copy_text(StringInfo b, const char *s)
{
	const char *start = s;

	for (; *s; s++)
	{
		char		esc = 0;

		switch (*s)
		{
			case '\\':
				esc = '\\';
				break;
			case '\n':
				esc = 'n';
				break;
			case '\r':
				esc = 'r';
				break;
			case '\t':
				esc = 't';
				break;
			default:
				continue;
		}
		appendBinaryStringInfo(b, start, s - start);
		appendStringInfoChar(b, '\\');
		appendStringInfoChar(b, esc);
		start = s + 1;
	}
	appendBinaryStringInfo(b, start, s - start);
}

/* Is the current row an insert of exactly the bulk column set? */
static bool
row_fits(PsApply *a, Bitmapset *cols)
{
	return a->row.op == 'I' && bms_equal(a->row.set, cols);
}

static void
format_copy_line(CopySource *src)
{
	PsApply    *a = src->a;

	for (int i = 0; i < src->ncols; i++)
	{
		bool		present;
		const char *v = row_value(a, src->order[i], &present);

		if (i > 0)
			appendStringInfoChar(&a->line, '\t');
		if (v == NULL)
			appendStringInfoString(&a->line, "\\N");
		else
			append_copy_text(&a->line, v);
	}
	appendStringInfoChar(&a->line, '\n');
	src->rows++;
}

static int
copy_read_cb(void *outbuf, int minread, int maxread)
{
	CopySource *src = copy_source;
	PsApply    *a = src->a;
	int			copied = 0;

	while (copied < minread || copied == 0)
	{
		int			avail = a->line.len - src->pos;

		if (avail > 0)
		{
			int			n = Min(avail, maxread - copied);

			memcpy((char *) outbuf + copied, a->line.data + src->pos, n);
			copied += n;
			src->pos += n;
			if (copied >= maxread)
				break;
			continue;
		}
		if (src->eof)
			break;
		resetStringInfo(&a->line);
		src->pos = 0;
		/* refill with rows up to ~64 kB */
		while (a->line.len < 65536)
		{
			if (!next_row(a))
			{
				src->eof = true;
				break;
			}
			if (!row_fits(a, src->cols))
			{
				a->pushed_back = true;
				src->eof = true;
				break;
			}
			format_copy_line(src);
		}
	}
	return copied;
}

/* COPY FROM refuses tables with row level security: use SQL there */
static bool
copy_allowed(PsApply *a)
{
	return check_enable_rls(RelationGetRelid(a->rel), InvalidOid, false) != RLS_ENABLED;
}

static int64
bulk_copy(PsApply *a)
{
	CopySource	src;
	List	   *names = NIL;
	CopyFromState cstate;
	ParseState *pstate;
	uint64		processed;
	int			x = -1;

	memset(&src, 0, sizeof(src));
	src.a = a;
	src.cols = bms_copy(a->row.set);
	src.ncols = bms_num_members(src.cols);
	src.order = palloc(sizeof(AttrNumber) * src.ncols);
	while ((x = bms_next_member(src.cols, x)) >= 0)
	{
		src.order[list_length(names)] = x;
		names = lappend(names, makeString(a->cols[x - 1].name));
	}
	/* the current row is the first line */
	resetStringInfo(&a->line);
	format_copy_line(&src);

	/* as DoCopy does: a range table entry, checked for INSERT on the columns */
	pstate = make_parsestate(NULL);
	ps_check_insert_columns(pstate, a->rel, src.order, src.ncols);
	copy_source = &src;
	cstate = BeginCopyFrom(pstate, a->rel, NULL, NULL, false, copy_read_cb, names,
						   list_make1(makeDefElem("encoding",
												  (Node *) makeString((char *) GetDatabaseEncodingName()), -1)));
	processed = CopyFrom(cstate);
	EndCopyFrom(cstate);
	copy_source = NULL;
	free_parsestate(pstate);
	CommandCounterIncrement();
	return (int64) processed;
}

/* ---- bulk loading: json_to_recordset ------------------------------------------ */

static int64
bulk_json(PsApply *a)
{
	Bitmapset  *cols = bms_copy(a->row.set);
	AttrNumber *order = palloc(sizeof(AttrNumber) * bms_num_members(cols));
	int			ncols = 0;
	StringInfoData sql;
	StringInfoData doc;
	SPIPlanPtr	plan;
	Oid			argtype = JSONOID;
	bool		more = true;
	bool		override = false;
	int64		total = 0;
	int			x = -1;

	initStringInfo(&sql);
	while ((x = bms_next_member(cols, x)) >= 0)
	{
		order[ncols++] = x;
		override |= a->cols[x - 1].identity_always;
	}
	appendStringInfo(&sql, "INSERT INTO %s (", a->qualname);
	for (int i = 0; i < ncols; i++)
		appendStringInfo(&sql, "%s%s", i ? ", " : "", quote_identifier(a->cols[order[i] - 1].name));
	appendStringInfoString(&sql, override ? ") OVERRIDING SYSTEM VALUE SELECT " : ") SELECT ");
	/*
	 * The record definition names the columns' own types, so that
	 * json_to_recordset converts each string with the type's input function
	 * and typmod, exactly as the other paths do (a cast would truncate
	 * silently).  Only json and jsonb are read as text and cast: given a JSON
	 * string, json_to_recordset would keep it a string rather than parse it.
	 */
	for (int i = 0; i < ncols; i++)
	{
		PsColumn   *c = &a->cols[order[i] - 1];
		Oid			base = getBaseType(c->typid);

		if (base == JSONOID || base == JSONBOID)
			appendStringInfo(&sql, "%sx.%s::%s", i ? ", " : "", quote_identifier(c->name),
							 format_type_with_typemod(c->typid, c->typmod));
		else
			appendStringInfo(&sql, "%sx.%s", i ? ", " : "", quote_identifier(c->name));
	}
	appendStringInfoString(&sql, " FROM pg_catalog.json_to_recordset($1) AS x(");
	for (int i = 0; i < ncols; i++)
	{
		PsColumn   *c = &a->cols[order[i] - 1];
		Oid			base = getBaseType(c->typid);

		appendStringInfo(&sql, "%s%s %s", i ? ", " : "", quote_identifier(c->name),
						 (base == JSONOID || base == JSONBOID) ? "text" :
						 format_type_with_typemod(c->typid, c->typmod));
	}
	appendStringInfoChar(&sql, ')');
	plan = SPI_prepare(sql.data, 1, &argtype);
	if (plan == NULL)
		elog(ERROR, "pglite_sync: could not prepare \"%s\"", sql.data);

	initStringInfo(&doc);
	while (more)
	{
		int			n = 0;
		Datum		arg;
		int			rc;
		const char *text;

		resetStringInfo(&doc);
		appendStringInfoChar(&doc, '[');
		/* the current row opens each chunk */
		for (;;)
		{
			appendStringInfoString(&doc, n ? ",{" : "{");
			for (int i = 0; i < ncols; i++)
			{
				bool		present;
				const char *v = row_value(a, order[i], &present);

				if (i > 0)
					appendStringInfoChar(&doc, ',');
				escape_json(&doc, a->cols[order[i] - 1].name);
				appendStringInfoChar(&doc, ':');
				if (v == NULL)
					appendStringInfoString(&doc, "null");
				else
					escape_json(&doc, v);
			}
			appendStringInfoChar(&doc, '}');
			n++;
			if (!next_row(a))
			{
				more = false;
				break;
			}
			if (!row_fits(a, cols))
			{
				a->pushed_back = true;
				more = false;
				break;
			}
			if (n >= JSON_CHUNK_ROWS || doc.len >= JSON_CHUNK_BYTES)
				break;
		}
		appendStringInfoChar(&doc, ']');
		/* values were converted to the server encoding already */
		text = doc.data;
		arg = PointerGetDatum(cstring_to_text_with_len(text, doc.len));
		rc = SPI_execute_plan(plan, &arg, NULL, false, 0);
		if (rc != SPI_OK_INSERT)
			elog(ERROR, "pglite_sync: json load failed: %s", SPI_result_code_string(rc));
		total += SPI_processed;
		pfree(DatumGetPointer(arg));	/* a chunk is megabytes: do not keep it */
	}
	SPI_freeplan(plan);
	return total;
}

/* ---- the batch ----------------------------------------------------------------- */

static void
clear_table(PsApply *a, PsSubscription *sub)
{
	if (OidIsValid(sub->on_must_refetch))
	{
		if (ps_proc_aclcheck(sub->on_must_refetch, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for function %s",
							format_procedure(sub->on_must_refetch))));
		OidFunctionCall1(sub->on_must_refetch, CStringGetTextDatum(sub->name));
	}
	else
	{
		StringInfoData sql;
		int			rc;

		initStringInfo(&sql);
		appendStringInfo(&sql, "DELETE FROM %s", a->qualname);
		rc = SPI_execute(sql.data, false, 0);
		if (rc != SPI_OK_DELETE)
			elog(ERROR, "pglite_sync: could not clear %s: %s", a->qualname,
				 SPI_result_code_string(rc));
	}
	CommandCounterIncrement();
}

void
ps_apply_batch(PsSubscription *sub, PsSpool *spool, bool replace, bool snapshot,
			   bool row_by_row, PsApplyResult *res)
{
	bool		bulk = snapshot && !row_by_row;
	PsApply		a;
	ErrorContextCallback errcb;

	memset(res, 0, sizeof(*res));
	memset(&a, 0, sizeof(a));
	a.sub = sub;
	a.spool = spool;
	a.batch_cxt = CurrentMemoryContext;
	a.row_cxt = AllocSetContextCreate(CurrentMemoryContext, "pglite_sync apply row",
									  ALLOCSET_DEFAULT_SIZES);
	a.exec_cxt = AllocSetContextCreate(CurrentMemoryContext, "pglite_sync apply statement",
									   ALLOCSET_DEFAULT_SIZES);
	a.names_cxt = AllocSetContextCreate(CurrentMemoryContext, "pglite_sync field names",
										ALLOCSET_SMALL_SIZES);
	a.ib_cxt = AllocSetContextCreate(CurrentMemoryContext, "pglite_sync insert batch",
									 ALLOCSET_DEFAULT_SIZES);
	open_target(&a, sub);

	errcb.callback = apply_error_callback;
	errcb.arg = &a;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	if (replace)
		clear_table(&a, sub);

	ps_spool_rewind(spool);
	res->method = "insert";
	if (next_row(&a))
	{
		if (bulk && a.row.op == 'I' && strcmp(sub->initial_insert_method, "insert") != 0)
		{
			if (strcmp(sub->initial_insert_method, "copy") == 0 && copy_allowed(&a))
			{
				res->method = "copy";
				res->bulk_rows = bulk_copy(&a);
			}
			else if (strcmp(sub->initial_insert_method, "json") == 0 ||
					 strcmp(sub->initial_insert_method, "copy") == 0)
			{
				/* json, or copy on a table COPY cannot serve (RLS) */
				res->method = "json";
				res->bulk_rows = bulk_json(&a);
			}
			res->rows += res->bulk_rows;
		}
		else
			a.pushed_back = true;

		while (next_row(&a))
		{
			MemoryContext old;

			if (!row_by_row && a.row.op == 'I')
			{
				res->rows += insert_batch_add(&a);
				continue;
			}
			res->rows += insert_batch_flush(&a);
			old = MemoryContextSwitchTo(a.exec_cxt);
			res->rows += apply_row_spi(&a, &res->skipped);
			MemoryContextSwitchTo(old);
			MemoryContextReset(a.exec_cxt);
		}
		res->rows += insert_batch_flush(&a);
	}

	error_context_stack = errcb.previous;
	table_close(a.rel, NoLock);
	MemoryContextDelete(a.row_cxt);
	MemoryContextDelete(a.exec_cxt);
	MemoryContextDelete(a.names_cxt);
	MemoryContextDelete(a.ib_cxt);
}
