/*
 * apply_int.h
 *	  What the apply files (target.c, rowbuild.c, apply_spi.c,
 *	  apply_bulk.c, apply.c) share; nothing outside them includes it.
 */
#ifndef PS_APPLY_INT_H
#define PS_APPLY_INT_H

#include "apply.h"
#include "message.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "nodes/bitmapset.h"
#include "utils/hsearch.h"
#include "utils/rel.h"

typedef struct PsColumn
{
	char	   *name;
	bool		writable;		/* not dropped, not generated */
	bool		identity_always;
	Oid			typid;
	int32		typmod;
	Oid			typioparam;
	FmgrInfo	input;
	FmgrInfo	output;			/* for the keys of held rows */
	FmgrInfo	send;
	bool		has_send;
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
	char		op;				/* I, U, D, E (exists), M (multi-row insert), V (upsert) */
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
	uint64		lsn;			/* 0: a snapshot row */
	uint64		txid;			/* its source transaction, 0 when not known */
	uint32		op_position;
	bool		move_in;
	int			n;				/* columns present */
	const char **by_att;		/* [natts] text or NULL, valid for attnos in set */
	Bitmapset  *set;			/* attnos present */
	/* a subquery shape's row (tagged) or move event: from the spool record */
	bool		tagged;
	const ps_str *tags;
	int			ntags;
	const ps_str *removed_tags;
	int			nremoved_tags;
	const bool *active;			/* NULL when not sent */
	int			nactive;
	const ps_pattern *patterns;
	int			npatterns;
} PsRow;

struct PsApply
{
	PsSubscription *sub;
	PsShapeDef *def;
	PsApplyOptions opts;
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
	ps_message	fn_msg;			/* map_function's answer, parsed */
	bool		bulk_done;		/* the leading snapshot rows were considered */
	bool		emptied;		/* the replace deleted every row: the bulk load starts empty */
	PsApplyResult res;
	int			has_tags;		/* the shape has tag state: -1 not known yet */
	List	   *subsets;		/* subset snapshots merged with the stream (PsSubset) */
	List	   *acked;			/* txids of acknowledged local writes (char *) */
	bool		writes_pending; /* local writes not synced yet: re-apply them */
	bool		writes_synced;	/* some synced in this batch: tidy up at the end */
	bool		writes_sent;	/* a write is being sent: note the txids applied */
	bool		writes_rebase;	/* table cleared or bulk-loaded: re-apply every pending row at close */
	List	   *writes_rebased; /* keys (JSON) of rows re-applied already in this batch */

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

	/* stop checks between rows */
	PsApplyStopCheck stop_check;
	void	   *stop_arg;
	int64		since_check;

	/* error context */
	const char *ctx_column;
	int			ctx_batch;		/* rows of the multi-row insert being sent */
};

#define INSERT_BATCH_ROWS 100

/* target.c */
extern void ps_target_open(PsApply *a);
extern void ps_target_clear(PsApply *a);
extern void ps_target_close(PsApply *a);

/* rowbuild.c */
extern bool ps_row_next(PsApply *a);
extern const char *ps_row_value(PsApply *a, AttrNumber attno, bool *present);
extern void ps_row_require_pk(PsApply *a);
extern bool ps_row_fits(PsApply *a, Bitmapset *cols);
extern void ps_apply_check_stop(PsApply *a);

/* target.c: a key as holds store it, in SQL, for the row alias */
extern void ps_hold_key_sql(PsApply *a, StringInfo sql, const char *alias);

/* apply_spi.c */
extern Datum ps_hold_key(PsApply *a);
extern void ps_hold_take(PsApply *a, Datum key);
extern void ps_hold_lock(PsApply *a, Datum key);
extern bool ps_hold_newer(PsApply *a, Datum key);
extern bool ps_hold_release(PsApply *a, Datum key);
extern void ps_hold_drop_shape(PsApply *a);
extern int64 ps_spi_apply_row(PsApply *a);
extern int64 ps_spi_insert_batch_add(PsApply *a);
extern int64 ps_spi_insert_batch_flush(PsApply *a);

/* apply_tags.c */
extern void ps_tags_after_change(PsApply *a);
extern int64 ps_tags_move(PsApply *a);
extern void ps_tags_clear(PsApply *a);

/* subset.c */
extern void ps_subset_open(PsApply *a);
extern bool ps_subset_skip(PsApply *a);

/*
 * SPI_execute_plan, returning in the caller's memory context: SPI returns
 * in its procedure context, which lasts until SPI_finish, so what the next
 * rows allocate would pile up there for the whole batch.
 */
static inline int
ps_apply_execute(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only, long count)
{
	MemoryContext cxt = CurrentMemoryContext;
	int			rc = SPI_execute_plan(plan, values, nulls, read_only, count);

	MemoryContextSwitchTo(cxt);
	return rc;
}

/* apply_bulk.c */
extern bool ps_bulk_direct_allowed(PsApply *a);
extern int64 ps_bulk_direct(PsApply *a);
extern bool ps_bulk_copy_allowed(PsApply *a);
extern int64 ps_bulk_copy(PsApply *a);
extern int64 ps_bulk_json(PsApply *a);

#endif
