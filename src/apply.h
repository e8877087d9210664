/*
 * apply.h
 *	  Applying a spooled batch to the target table, through the executor:
 *	  COPY machinery for a bulk initial load, SPI statements otherwise, so
 *	  indexes, constraints, triggers, RLS and privileges act exactly as for
 *	  the subscription owner's own statements.
 */
#ifndef PS_APPLY_H
#define PS_APPLY_H

#include "catalog.h"
#include "spool.h"

typedef struct PsApplyResult
{
	int64		rows;			/* rows inserted, updated or deleted */
	int64		bulk_rows;		/* of which loaded by copy/json */
	int64		skipped;		/* deletes of rows already gone */
	const char *method;			/* load path of the leading inserts */
} PsApplyResult;

/*
 * Apply every record of the spool to sub's table.  Runs inside the apply
 * transaction, with SPI connected and the current user switched to the
 * subscription owner.  replace: the stream restarted from -1, so the old
 * rows are cleared first (or on_must_refetch is called).  snapshot: the
 * batch began at -1, so its leading inserts may use
 * sub->initial_insert_method.  row_by_row: one statement per change and no
 * bulk load, so that an error names its key and column (a retry after a
 * failed batch).
 */
extern void ps_apply_batch(PsSubscription *sub, PsSpool *spool, bool replace,
						   bool snapshot, bool row_by_row, PsApplyResult *res);

#endif
