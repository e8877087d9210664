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

#include "utils/memutils.h"
#include "utils/rel.h"

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

#ifndef __PGLITE__				/* PGlite has no COPY FROM machinery to call */
	if (strcmp(method, "copy") == 0 && ps_bulk_copy_allowed(a))
	{
		a->res.method = "copy";
		a->res.bulk_rows += ps_bulk_copy(a);
	}
	else
#endif
	{
		/* json, or copy into a table COPY cannot serve (row-level security) */
		a->res.method = "json";
		a->res.bulk_rows += ps_bulk_json(a);
	}
	a->res.rows += a->res.bulk_rows;
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
			bulk_load(a);
			return;
		}
	}
	if (!a->opts.row_by_row && !a->opts.shared && a->row.op == 'I' && !a->row.move_in &&
		!a->row.tagged)
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
	old = MemoryContextSwitchTo(a->exec_cxt);
	a->res.rows += ps_spi_apply_row(a);
	ps_tags_after_change(a);
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
	*res = a->res;
	ps_target_close(a);
	ps_message_free(&a->fn_msg);
	MemoryContextDelete(a->row_cxt);
	MemoryContextDelete(a->exec_cxt);
	MemoryContextDelete(a->names_cxt);
	MemoryContextDelete(a->ib_cxt);
}
