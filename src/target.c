/*
 * target.c
 *	  The target table of one shape in a batch: its columns and their type
 *	  I/O, the local columns each shape column writes (map_columns), the
 *	  key's columns and equality operators, and clearing it when the shape
 *	  restarts from -1.
 */
#include "apply_int.h"

#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/relation.h"
#include "access/table.h"
#include "catalog/pg_index.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

#include "json.h"

static void find_key_operators(PsApply *a);

/* The type's send function, or InvalidOid (a domain's is its base type's). */
Oid
ps_type_send_function(Oid typid)
{
	HeapTuple	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(getBaseType(typid)));
	Oid			send = InvalidOid;

	if (HeapTupleIsValid(tup))
	{
		send = ((Form_pg_type) GETSTRUCT(tup))->typsend;
		ReleaseSysCache(tup);
	}
	return send;
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

void
ps_target_open(PsApply *a)
{
	PsShapeDef *def = a->def;
	TupleDesc	desc;
	HASHCTL		hctl;
	ListCell   *lc;

	/*
	 * A batch that will clear a shared table locks it in SHARE ROW EXCLUSIVE
	 * mode (ps_target_clear): taken now, not as an upgrade from ROW
	 * EXCLUSIVE, which deadlocks with another shape's worker doing the same
	 * (both shapes refetching at once).  Whether the table is shared is
	 * asked again under the lock; a table that became shared meanwhile is
	 * upgraded later, as before.
	 */
	a->rel = try_relation_open(def->relid,
							   a->opts.replace && ps_catalog_shapes_on_table(def->relid) > 1 ?
							   ShareRowExclusiveLock : RowExclusiveLock);
	if (a->rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table %s of subscription \"%s\" no longer exists",
						quote_qualified_identifier(def->schema_name, def->table_name), a->sub->name),
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
		{
			Oid			outfunc;
			bool		varlena;

			Oid			sendfunc;

			getTypeOutputInfo(c->typid, &outfunc, &varlena);
			fmgr_info(outfunc, &c->output);
			sendfunc = ps_type_send_function(c->typid);
			c->has_send = OidIsValid(sendfunc);
			if (c->has_send)
				fmgr_info(sendfunc, &c->send);
		}
	}

	memset(&hctl, 0, sizeof(hctl));
	hctl.keysize = NAMEDATALEN;
	hctl.entrysize = sizeof(NameMapEntry);
	hctl.hcxt = CurrentMemoryContext;
	a->names = hash_create("pglite_sync column names", 64, &hctl,
						   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	if (def->map_columns)
	{
		json_error_t err;
		json_t	   *map = json_loads(ps_text_to_utf8(def->map_columns), 0, &err);
		const char *local;
		json_t	   *v;

		if (!json_is_object(map))
			elog(ERROR, "pglite_sync: stored map_columns of subscription \"%s\" is not an object",
				 a->sub->name);
		json_object_foreach(map, local, v)
		{
			char	   *col = pg_any_to_server(local, strlen(local), PG_UTF8);
			AttrNumber	att = get_attnum(def->relid, col);

			if (!json_is_string(v))
				continue;
			if (att <= 0)
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_COLUMN),
						 errmsg("column \"%s\" of relation %s named in map_columns does not exist",
								col, a->qualname)));
			/* shape column names are compared as the server sends them: UTF-8 */
			add_name(a, pstrdup(json_string_value(v)), att);
		}
		json_decref(map);
	}
	else
	{
		/* shape columns (or map_function's keys) are local column names,
		 * compared in UTF-8 as the server sends them */
		for (int i = 0; i < a->natts; i++)
			if (!TupleDescAttr(desc, i)->attisdropped)
				add_name(a, ps_text_to_utf8(a->cols[i].name), i + 1);
	}
	if (OidIsValid(def->map_function))
	{
		if (ps_proc_aclcheck(def->map_function, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for function %s", format_procedure(def->map_function))));
		fmgr_info(def->map_function, &a->map_fn);
		a->use_map_function = true;
	}

	a->npk = list_length(def->primary_key);
	a->pk = palloc(sizeof(AttrNumber) * a->npk);
	foreach(lc, def->primary_key)
	{
		AttrNumber	att = get_attnum(def->relid, lfirst(lc));

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
			ps_attr_is_null(tup, Anum_pg_index_indexprs) &&
			ps_attr_is_null(tup, Anum_pg_index_indpred);
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

/* ---- clearing ------------------------------------------------------------------ */

/*
 * The shape restarts from -1: its old rows go in the same transaction that
 * loads the new snapshot.  on_must_refetch, when set, does the clearing (in
 * any language: a void result is fine).  In a table other shapes sync into
 * too, only the rows no other shape holds go, and this shape's holds are
 * dropped (the snapshot takes them again).
 */
void
ps_target_clear(PsApply *a)
{
	PsShapeDef *def = a->def;

	if (OidIsValid(def->on_must_refetch))
	{
		FmgrInfo	fn;
		LOCAL_FCINFO(fcinfo, 1);

		if (ps_proc_aclcheck(def->on_must_refetch, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for function %s",
							format_procedure(def->on_must_refetch))));
		fmgr_info(def->on_must_refetch, &fn);
		InitFunctionCallInfoData(*fcinfo, &fn, 1, InvalidOid, NULL, NULL);
		fcinfo->args[0].value = CStringGetTextDatum(a->sub->name);
		fcinfo->args[0].isnull = false;
		(void) FunctionCallInvoke(fcinfo);
	}
	else
	{
		StringInfoData sql;
		int			rc;

		initStringInfo(&sql);
		appendStringInfo(&sql, "DELETE FROM %s", a->qualname);
		if (a->opts.shared)
		{
			/*
			 * Only rows no other shape holds.  Other workers' writes (and so
			 * their holds) wait until this commits, and the DELETE sees every
			 * hold they committed before.
			 */
			resetStringInfo(&sql);
			appendStringInfo(&sql, "LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE", a->qualname);
			rc = SPI_execute(sql.data, false, 0);
			if (rc != SPI_OK_UTILITY)
				elog(ERROR, "pglite_sync: could not lock %s: %s", a->qualname,
					 SPI_result_code_string(rc));
			resetStringInfo(&sql);
			appendStringInfo(&sql, "DELETE FROM %s", a->qualname);
			appendStringInfo(&sql, " t WHERE NOT " PS_SCHEMA "._held_elsewhere(%u, ",
							 RelationGetRelid(a->rel));
			ps_hold_key_sql(a, &sql, "t");
			appendStringInfo(&sql, ", %d, %s)", a->sub->id, quote_literal_cstr(def->name));
		}
		rc = SPI_execute(sql.data, false, 0);
		if (rc != SPI_OK_DELETE)
			elog(ERROR, "pglite_sync: could not clear %s: %s", a->qualname,
				 SPI_result_code_string(rc));
		a->emptied = !a->opts.shared;
	}
	if (a->opts.shared)
		ps_hold_drop_shape(a);
	ps_tags_clear(a);
	ps_catalog_subset_clear(a->sub->id, a->def->name);
	a->subsets = NIL;
	CommandCounterIncrement();
}

/*
 * The key of row `alias` of rel as holds store it (see ps_hold_key): the
 * hex of each key column's send function, so that it does not depend on
 * the settings of the session that computes it.
 */
void
ps_hold_key_expr(Relation rel, List *pk_names, const char *alias, StringInfo sql)
{
	ListCell   *lc;

	appendStringInfoString(sql, "ARRAY[");
	foreach(lc, pk_names)
	{
		const char *col = quote_identifier(lfirst(lc));
		AttrNumber	att = get_attnum(RelationGetRelid(rel), lfirst(lc));
		Oid			typid = TupleDescAttr(RelationGetDescr(rel), att - 1)->atttypid;
		Oid			sendfunc;

		if (foreach_current_index(lc) > 0)
			appendStringInfoString(sql, ", ");
		sendfunc = ps_type_send_function(typid);
		if (OidIsValid(sendfunc))
			appendStringInfo(sql, "pg_catalog.encode(%s(%s.%s), 'hex')",
							 quote_qualified_identifier(get_namespace_name(get_func_namespace(sendfunc)),
														get_func_name(sendfunc)),
							 alias, col);
		else
			appendStringInfo(sql, "%s.%s::text", alias, col);
	}
	appendStringInfoString(sql, "]::text[]");
}

void
ps_hold_key_sql(PsApply *a, StringInfo sql, const char *alias)
{
	ps_hold_key_expr(a->rel, a->def->primary_key, alias, sql);
}

void
ps_target_close(PsApply *a)
{
	if (a->rel)
		table_close(a->rel, NoLock);
	a->rel = NULL;
}
