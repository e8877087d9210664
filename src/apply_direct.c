/*
 * apply_direct.c
 *	  The 'copy' method's loader for plain tables: the leading snapshot rows
 *	  become tuples straight from their text values, through the columns'
 *	  input functions, and are written in batches by the table AM's
 *	  multi-insert with their index entries, as COPY FROM does, without
 *	  COPY text that COPY would parse again.  Constraints are checked row by
 *	  row, columns the shape does not carry get their defaults, and INSERT
 *	  is checked on the columns written, as for COPY.  In PGlite a large
 *	  load into an emptied table builds its indexes at the end instead.
 *
 *	  Where COPY FROM does more than that (triggers, row-level security,
 *	  partitions, generated columns, deferrable unique indexes, volatile
 *	  defaults), the rows go to COPY FROM itself (apply_bulk.c), or in PGlite,
 *	  which has no COPY FROM to call, to the json path.
 */
#include "apply_int.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_node.h"
#include "rewrite/rewriteHandler.h"
#include "utils/acl.h"
#include "utils/rel.h"
#include "utils/rls.h"

#define DIRECT_BATCH_ROWS	1000

/*
 * In PGlite, a large load into a table its replace has just emptied stops
 * writing index entries after this many rows and rebuilds the indexes at
 * the end, as a restore builds them after its data: one sorted build costs
 * much less than a B-tree descent per row.  Not in a server: the rebuild
 * locks the indexes until commit, and readers of the table would wait for
 * the rest of the batch.  PGlite has one session, so nobody waits.
 */
#define DEFER_INDEXES_ROWS	8192
#ifdef __PGLITE__
/* REINDEX needs MAINTAIN on the table (PostgreSQL 17 on; PGlite is 18) */
#define may_rebuild_indexes(rel) \
	(pg_class_aclcheck(RelationGetRelid(rel), GetUserId(), ACL_MAINTAIN) == ACLCHECK_OK)
#else
#define may_rebuild_indexes(rel) false
#endif

static bool
has_insert_triggers(TriggerDesc *t)
{
	return t && (t->trig_insert_before_row || t->trig_insert_after_row ||
				 t->trig_insert_instead_row || t->trig_insert_before_statement ||
				 t->trig_insert_after_statement || t->trig_insert_new_table);
}

/* Default of a column the shape does not carry: NULL when there is none. */
static Node *
column_default(Relation rel, AttrNumber attno)
{
	Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), attno - 1);

	if (att->attisdropped)
		return NULL;
	return build_column_default(rel, attno);
}

bool
ps_bulk_direct_allowed(PsApply *a)
{
	Relation	rel = a->rel;
	List	   *indexes;
	ListCell   *lc;
	bool		ok = true;

	if (rel->rd_rel->relkind != RELKIND_RELATION ||
		check_enable_rls(RelationGetRelid(rel), InvalidOid, false) == RLS_ENABLED ||
		has_insert_triggers(rel->trigdesc) || ps_has_generated(RelationGetDescr(rel)->constr))
		return false;
	/* a deferred uniqueness check needs the after-trigger queue COPY feeds */
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		Relation	ind = index_open(lfirst_oid(lc), AccessShareLock);

		ok &= ind->rd_index->indimmediate;
		index_close(ind, AccessShareLock);
	}
	list_free(indexes);
	/* a volatile default may look at the table, which batching would change */
	for (AttrNumber att = 1; ok && att <= a->natts; att++)
	{
		Node	   *def;

		if (bms_is_member(att, a->row.set) || (def = column_default(rel, att)) == NULL)
			continue;
		ok = !contain_volatile_functions(def);
	}
	return ok;
}

typedef struct DirectLoad
{
	PsApply    *a;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slots[DIRECT_BATCH_ROWS];
	int			nslots;			/* made so far */
	int			nbuffered;
	BulkInsertState bistate;
	CommandId	cid;
	bool		may_defer;		/* PGlite, an emptied table, and REINDEX allowed */
	bool		deferred;		/* index entries are no longer written */
	int64		flushed;		/* rows written so far */
} DirectLoad;

static void
insert_buffered(DirectLoad *d)
{
	MemoryContext old;

	if (d->nbuffered == 0)
		return;
	d->a->ctx_batch = d->nbuffered;
	if (d->may_defer && d->flushed >= DEFER_INDEXES_ROWS)
		d->deferred = true;
	old = MemoryContextSwitchTo(GetPerTupleMemoryContext(d->estate));
	table_multi_insert(d->rri->ri_RelationDesc, d->slots, d->nbuffered, d->cid, 0, d->bistate);
	d->flushed += d->nbuffered;
	for (int i = 0; i < d->nbuffered; i++)
	{
		if (d->rri->ri_NumIndices > 0 && !d->deferred)
			list_free(ps_insert_index_tuples(d->rri, d->slots[i], d->estate));
		ResetPerTupleExprContext(d->estate);
		ExecClearTuple(d->slots[i]);
	}
	MemoryContextSwitchTo(old);
	d->a->ctx_batch = 0;
	d->nbuffered = 0;
}

/*
 * Build again every index of the table the load stopped writing entries
 * to: REINDEX reads the heap, our new rows included, and checks uniqueness
 * and exclusion as the entries would have been checked row by row.
 */
static void
rebuild_indexes(PsApply *a, int64 rows)
{
	List	   *indexes = RelationGetIndexList(a->rel);
	ListCell   *lc;
	StringInfoData sql;

	initStringInfo(&sql);
	a->ctx_batch = (int) Min(rows, PG_INT32_MAX);
	foreach(lc, indexes)
	{
		Oid			ind = lfirst_oid(lc);
		int			rc;

		resetStringInfo(&sql);
		appendStringInfo(&sql, "REINDEX INDEX %s", ps_qualified_relname(ind));
		rc = SPI_execute(sql.data, false, 0);
		if (rc != SPI_OK_UTILITY)
			elog(ERROR, "pglite_sync: could not rebuild the indexes of %s: %s", a->qualname,
				 SPI_result_code_string(rc));
	}
	a->ctx_batch = 0;
	list_free(indexes);
	pfree(sql.data);
}

int64
ps_bulk_direct(PsApply *a)
{
	Relation	rel = a->rel;
	TupleDesc	desc = RelationGetDescr(rel);
	Bitmapset  *cols = bms_copy(a->row.set);
	int			ncols = bms_num_members(cols);
	AttrNumber *order = palloc(sizeof(AttrNumber) * Max(ncols, 1));
	ExprState **defaults = palloc0(sizeof(ExprState *) * Max(a->natts, 1));
	DirectLoad *d = palloc0(sizeof(DirectLoad));
	ParseState *pstate;
	ExprContext *econtext;
	int64		rows = 0;
	int			x = -1;
	int			n = 0;

	while ((x = bms_next_member(cols, x)) >= 0)
		order[n++] = x;

	/* as DoCopy and CopyFrom do: the range table, checked for INSERT */
	pstate = make_parsestate(NULL);
	ps_check_insert_columns(pstate, rel, order, ncols);
	d->a = a;
	d->estate = CreateExecutorState();
	ps_exec_init_range_table(d->estate, pstate);
	d->rri = makeNode(ResultRelInfo);
	ExecInitResultRelation(d->estate, d->rri, 1);
	ExecOpenIndices(d->rri, false);
	d->bistate = GetBulkInsertState();
	d->cid = GetCurrentCommandId(true);
	d->may_defer = a->emptied && may_rebuild_indexes(rel);
	a->emptied = false;
	econtext = GetPerTupleExprContext(d->estate);
	for (AttrNumber att = 1; att <= a->natts; att++)
	{
		Node	   *def;

		if (!bms_is_member(att, cols) && (def = column_default(rel, att)) != NULL)
			defaults[att - 1] = ExecInitExpr(expression_planner((Expr *) def), NULL);
	}

	/* the current row is the first */
	for (;;)
	{
		TupleTableSlot *slot;
		MemoryContext old;

		if (d->nbuffered == d->nslots)
			d->slots[d->nslots++] = MakeSingleTupleTableSlot(desc, table_slot_callbacks(rel));
		slot = d->slots[d->nbuffered];
		ExecClearTuple(slot);
		old = MemoryContextSwitchTo(GetPerTupleMemoryContext(d->estate));
		memset(slot->tts_isnull, true, sizeof(bool) * desc->natts);
		for (int i = 0; i < ncols; i++)
		{
			PsColumn   *c = &a->cols[order[i] - 1];
			bool		present;
			const char *v = ps_row_value(a, order[i], &present);

			/* NULL goes through the input function too: a domain may refuse it */
			a->ctx_column = c->name;
			slot->tts_values[order[i] - 1] = InputFunctionCall(&c->input, (char *) v,
															   c->typioparam, c->typmod);
			slot->tts_isnull[order[i] - 1] = v == NULL;
		}
		a->ctx_column = NULL;
		for (int i = 0; i < a->natts; i++)
			if (defaults[i])
				slot->tts_values[i] = ExecEvalExpr(defaults[i], econtext, &slot->tts_isnull[i]);
		ExecStoreVirtualTuple(slot);
		if (desc->constr)
			ExecConstraints(d->rri, slot, d->estate);
		/* the values are in the per-tuple context; the batch outlives it */
		ExecMaterializeSlot(slot);
		MemoryContextSwitchTo(old);
		ResetPerTupleExprContext(d->estate);
		rows++;
		if (++d->nbuffered == DIRECT_BATCH_ROWS)
			insert_buffered(d);

		if (!ps_row_next(a))
			break;
		if (!ps_row_fits(a, cols))
		{
			a->pushed_back = true;
			break;
		}
	}
	insert_buffered(d);

	for (int i = 0; i < d->nslots; i++)
		ExecDropSingleTupleTableSlot(d->slots[i]);
	FreeBulkInsertState(d->bistate);
	ExecCloseResultRelations(d->estate);
	ExecCloseRangeTableRelations(d->estate);
	FreeExecutorState(d->estate);
	free_parsestate(pstate);
	CommandCounterIncrement();
	if (d->deferred)
		rebuild_indexes(a, rows);
	return rows;
}
