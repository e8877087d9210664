/*
 * apply.c
 *	  One shape's part of a batch (see apply.h): open its table, clear it on
 *	  a restart from -1, then apply its records in order as commit.c asks,
 *	  through one of the paths:
 *	    - SPI: prepared INSERT/UPDATE/DELETE (apply_spi.c);
 *	    - copy or json for the leading snapshot rows of a shape that starts
 *	      from -1, when initial_insert_method says so (apply_bulk.c).
 *	  Errors name the key and column being applied.
 */
#include "apply_int.h"

#include "utils/datum.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "optimistic.h"

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

/* Run fn with the error context of a naming the row being applied. */
#define WITH_CONTEXT(a, stmt) \
	do { \
		ErrorContextCallback errcb_; \
		errcb_.callback = apply_error_callback; \
		errcb_.arg = (a); \
		errcb_.previous = error_context_stack; \
		error_context_stack = &errcb_; \
		stmt; \
		error_context_stack = errcb_.previous; \
	} while (0)

PsApply *
ps_apply_open(PsSubscription *sub, PsShapeDef *def, PsSpool *spool, const PsApplyOptions *opts)
{
	PsApply    *a = palloc0(sizeof(PsApply));

	a->sub = sub;
	a->def = def;
	a->opts = *opts;
	a->spool = spool;
	a->batch_cxt = CurrentMemoryContext;
	a->row_cxt = AllocSetContextCreate(CurrentMemoryContext, "pglite_sync apply row",
									   ALLOCSET_DEFAULT_SIZES);
	a->exec_cxt = AllocSetContextCreate(CurrentMemoryContext, "pglite_sync apply statement",
										ALLOCSET_DEFAULT_SIZES);
	a->names_cxt = AllocSetContextCreate(CurrentMemoryContext, "pglite_sync field names",
										 ALLOCSET_SMALL_SIZES);
	a->ib_cxt = AllocSetContextCreate(CurrentMemoryContext, "pglite_sync insert batch",
									  ALLOCSET_DEFAULT_SIZES);
	a->res.method = "insert";
	a->has_tags = -1;
	ps_target_open(a);

	/*
	 * Shared or not, asked only now that the table is locked: a subscription
	 * that makes the table shared backfills holds under a lock that
	 * conflicts with ours, so either it saw this batch's rows committed or
	 * this batch sees it and takes holds.
	 */
	a->opts.shared = ps_catalog_shapes_on_table(def->relid) > 1;
	/* bulk loading a shared table would collide with rows others hold */
	a->bulk_done = !opts->bulk || opts->row_by_row || a->opts.shared ||
		strcmp(opts->method, "insert") == 0;
	ps_subset_open(a);
	a->acked = ps_catalog_write_acked_txids(sub->id, &a->writes_pending);
	a->writes_sent = a->writes_pending && ps_catalog_write_any_sent(sub->id);
	ps_spool_rewind(spool);
	return a;
}

void
ps_apply_set_stop_check(PsApply *a, PsApplyStopCheck check, void *arg)
{
	a->stop_check = check;
	a->stop_arg = arg;
}

void
ps_apply_replace(PsApply *a)
{
	WITH_CONTEXT(a, ps_target_clear(a));
	a->writes_rebase |= a->writes_pending;
}

bool
ps_apply_peek(PsApply *a, uint64 *lsn, uint32 *op_position)
{
	PsSpoolRecord *rec;

	if (a->pushed_back)
	{
		*lsn = a->row.lsn;
		*op_position = a->row.op_position;
		return true;
	}
	if (!ps_spool_peek(a->spool, &rec) || rec->lsn > a->opts.limit_lsn)
		return false;
	*lsn = rec->lsn;
	*op_position = rec->op_position;
	return true;
}

static void
bulk_load(PsApply *a)
{
	const char *method pg_attribute_unused() = a->opts.method;

	if (strcmp(method, "copy") == 0 && ps_bulk_direct_allowed(a))
	{
		a->res.method = "copy";
		a->res.bulk_rows += ps_bulk_direct(a);
	}
#ifndef __PGLITE__				/* PGlite has no COPY FROM machinery to call */
	else if (strcmp(method, "copy") == 0 && ps_bulk_copy_allowed(a))
	{
		/* what COPY FROM does beyond the direct loader (triggers, partitions...) */
		a->res.method = "copy via COPY FROM";
		a->res.bulk_rows += ps_bulk_copy(a);
	}
#endif
	else
	{
		/* json, or copy into a table COPY cannot serve (row-level security) */
		a->res.method = "json";
		a->res.bulk_rows += ps_bulk_json(a);
	}
	a->res.rows += a->res.bulk_rows;
}

/* A change carrying the txid of an acknowledged local write: that write is synced. */
static void
writes_synced(PsApply *a)
{
	char		txid[24];
	ListCell   *lc;

	snprintf(txid, sizeof(txid), UINT64_FORMAT, a->row.txid);
	foreach(lc, a->acked)
		if (strcmp(lfirst(lc), txid) == 0)
		{
			ps_catalog_write_synced(a->sub->id, txid);
			a->acked = foreach_delete_current(a->acked, lc);
			a->writes_synced = true;
			break;
		}
}

/* The sync changed a row: local writes not synced yet go on top of it again. */
static void
writes_reapply(PsApply *a)
{
	Datum		pk;
	StringInfoData key;
	List	   *names = NIL;

	for (int i = 0; i < a->npk; i++)
	{
		bool		present;

		if (ps_row_value(a, a->pk[i], &present) == NULL)
			return;				/* no key: not a row a write can have touched */
	}
	pk = ps_hold_key(a);
	if (!ps_catalog_write_row_pending(RelationGetRelid(a->rel), pk))
		return;
	initStringInfo(&key);
	appendStringInfoChar(&key, '{');
	for (int i = 0; i < a->npk; i++)
	{
		bool		present;
		PsColumn   *c = &a->cols[a->pk[i] - 1];

		if (i > 0)
			appendStringInfoString(&key, ", ");
		escape_json(&key, c->name);
		appendStringInfoString(&key, ": ");
		escape_json(&key, ps_row_value(a, a->pk[i], &present));
		names = lappend(names, c->name);
	}
	appendStringInfoChar(&key, '}');
	ps_optimistic_synced(RelationGetRelid(a->rel), names, key.data, pk);
	if (a->writes_rebase)
	{
		MemoryContext old = MemoryContextSwitchTo(a->names_cxt);

		a->writes_rebased = lappend(a->writes_rebased, pstrdup(key.data));
		MemoryContextSwitchTo(old);
	}
}

/*
 * After the table was cleared for a refetch or bulk-loaded, the rows local
 * writes touched are the snapshot's (or gone): their writes go on top again,
 * except for rows the stream changed after the load (done in step()).
 */
static void
writes_rebase(PsApply *a)
{
	SPITupleTable *tt;
	int			n;
	List	   *names = NIL;
	char	  **keys;
	Datum	   *pks;

	for (int i = 0; i < a->npk; i++)
		names = lappend(names, a->cols[a->pk[i] - 1].name);
	tt = ps_catalog_write_rel_keys(RelationGetRelid(a->rel));
	n = (int) SPI_processed;
	keys = palloc(sizeof(char *) * Max(n, 1));
	pks = palloc(sizeof(Datum) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		bool		isnull;

		pks[i] = datumCopy(SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull), false, -1);
		keys[i] = SPI_getvalue(tt->vals[i], tt->tupdesc, 2);
	}
	SPI_freetuptable(tt);
	for (int i = 0; i < n; i++)
	{
		bool		done = false;
		ListCell   *lc;

		foreach(lc, a->writes_rebased)
			if (strcmp(lfirst(lc), keys[i]) == 0)
				done = true;
		if (!done)
			ps_optimistic_synced(RelationGetRelid(a->rel), names, keys[i], pks[i]);
	}
}

static void
step(PsApply *a)
{
	MemoryContext old;

	if (!ps_row_next(a))
		return;
	if (!a->bulk_done)
	{
		/* the leading snapshot inserts of a shape that started from -1 */
		a->bulk_done = true;
		if (a->row.op == 'I' && a->row.lsn == 0 && !a->row.move_in && !a->row.tagged)
		{
			a->writes_rebase |= a->writes_pending;
			bulk_load(a);
			return;
		}
	}
	/* a later page of a streamed snapshot is not bulk loaded after this */
	a->res.bulk_stopped |= a->opts.bulk;
	if (!a->opts.row_by_row && !a->opts.shared && a->row.op == 'I' && !a->row.move_in &&
		!a->row.tagged && !a->writes_pending)
	{
		a->res.rows += ps_spi_insert_batch_add(a);
		return;
	}
	a->res.rows += ps_spi_insert_batch_flush(a);
	if (a->row.op == PS_OP_MOVE_OUT || a->row.op == PS_OP_MOVE_IN)
	{
		a->res.rows += ps_tags_move(a);
		return;
	}
	if (ps_subset_skip(a))
		return;					/* a subset snapshot brought this change already */
	if (a->writes_sent && a->row.txid != 0)
	{
		char		txid[24];

		/* its answer may come after this change: then the write is synced at once */
		snprintf(txid, sizeof(txid), UINT64_FORMAT, a->row.txid);
		ps_catalog_write_seen(a->sub->id, txid);
	}
	if (a->acked != NIL && a->row.txid != 0)
		writes_synced(a);
	old = MemoryContextSwitchTo(a->exec_cxt);
	a->res.rows += ps_spi_apply_row(a);
	ps_tags_after_change(a);
	if (a->writes_pending)
		writes_reapply(a);
	MemoryContextSwitchTo(old);
	MemoryContextReset(a->exec_cxt);
}

void
ps_apply_step(PsApply *a)
{
	WITH_CONTEXT(a, step(a));
}

void
ps_apply_flush(PsApply *a)
{
	WITH_CONTEXT(a, a->res.rows += ps_spi_insert_batch_flush(a));
}

void
ps_apply_close(PsApply *a, PsApplyResult *res)
{
	ps_apply_flush(a);
	if (a->writes_rebase)
		WITH_CONTEXT(a, writes_rebase(a));
	if (a->writes_synced)
		ps_catalog_write_bases_cleanup();
	*res = a->res;
	ps_target_close(a);
	ps_message_free(&a->fn_msg);
	MemoryContextDelete(a->row_cxt);
	MemoryContextDelete(a->exec_cxt);
	MemoryContextDelete(a->names_cxt);
	MemoryContextDelete(a->ib_cxt);
}
