/*
 * apply.h
 *	  Writing one shape's spooled changes into its target table, through the
 *	  executor: the COPY machinery for a bulk initial load, SPI statements
 *	  otherwise, so indexes, constraints, triggers, RLS and privileges act
 *	  exactly as for the applying role's own statements.  commit.c drives
 *	  one of these per shape of a batch, record by record in source order.
 *
 *	  target.c     the table: columns, key, mapping, clearing it
 *	  rowbuild.c   a record into a row of local columns and text values
 *	  apply_spi.c  prepared INSERT/UPDATE/DELETE, multi-row inserts, holds
 *	  apply_bulk.c COPY and json_to_recordset loads of a snapshot
 */
#ifndef PS_APPLY_H
#define PS_APPLY_H

#include "catalog.h"
#include "spool.h"

#include "lib/stringinfo.h"
#include "utils/relcache.h"

typedef struct PsApply PsApply;

typedef struct PsApplyResult
{
	int64		rows;			/* rows inserted, updated or deleted */
	int64		bulk_rows;		/* of which loaded by copy/json */
	int64		skipped;		/* deletes of rows already gone */
	const char *method;			/* load path of the leading snapshot rows */
	bool		bulk_stopped;	/* a row the bulk path does not take came */
} PsApplyResult;

typedef struct PsApplyOptions
{
	bool		bulk;			/* leading snapshot inserts may use the method */
	const char *method;			/* initial_insert_method */
	bool		row_by_row;		/* one statement per change (names the key) */
	bool		shared;			/* other shapes sync into the table too */
	bool		changes_only;	/* no snapshot: rows may be unknown here */
	bool		replica_full;	/* updates carry whole rows */
	bool		replace;		/* ps_apply_replace will clear the table */
	uint64		limit_lsn;		/* apply records up to this LSN */
} PsApplyOptions;

/* In the apply transaction, as the applying role. */
extern PsApply *ps_apply_open(PsSubscription *sub, PsShapeDef *def, PsSpool *spool,
							  const PsApplyOptions *opts);

/* The stream restarted from -1: clear the rows this shape may replace. */
extern void ps_apply_replace(PsApply *a);

/* The next record within the limit: its LSN and position; false at the end. */
extern bool ps_apply_peek(PsApply *a, uint64 *lsn, uint32 *op_position);

/* Apply the next record (or a bulk-loaded run of snapshot rows). */
extern void ps_apply_step(PsApply *a);

/* Send what is batched (before another shape's record goes next). */
extern void ps_apply_flush(PsApply *a);

/* Stop, if asked, between rows: checked every this many. */
typedef bool (*PsApplyStopCheck) (void *arg);
extern void ps_apply_set_stop_check(PsApply *a, PsApplyStopCheck check, void *arg);

extern void ps_apply_close(PsApply *a, PsApplyResult *res);

/* The type's send function, or InvalidOid (keys are stored in that form). */
extern Oid	ps_type_send_function(Oid typid);

/* One key column as holds and writes store it (send form in hex, else text). */
extern void ps_key_part(StringInfo out, FmgrInfo *send, FmgrInfo *output, Datum d);

/* A row's key as holds store it, in SQL, for table alias `alias`. */
extern void ps_hold_key_expr(Relation rel, List *pk_names, const char *alias,
							 StringInfo sql);

#endif
