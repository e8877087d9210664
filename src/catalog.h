/*
 * catalog.h
 *	  Every statement on the extension's catalog tables (schema electric)
 *	  lives in catalog.c.  They run through SPI as the extension owner with
 *	  search_path pinned, whoever the caller is.
 */
#ifndef PS_CATALOG_H
#define PS_CATALOG_H

#include "pglite_sync.h"

#include "executor/spi.h"

#include "nodes/pg_list.h"

/* One shape of a subscription (a group has several). */
typedef struct PsShapeDef
{
	char	   *name;			/* member name; the subscription's name if single */
	int			position;
	Oid			relid;
	char	   *schema_name;	/* as given at subscribe time */
	char	   *table_name;
	List	   *primary_key;	/* of char * */
	char	   *shape_json;		/* {"url":…, "params":…, "headers":…} */
	char	   *map_columns;	/* JSON text or NULL */
	Oid			map_function;
	Oid			on_must_refetch;
	char	   *target_fingerprint;

	/* stored stream state */
	char	   *handle;
	char	   *offset;
	char	   *state_fingerprint;
	char	   *stream;			/* host-driven: position between calls (JSON) */
	int64		rows_applied;
} PsShapeDef;

typedef struct PsSubscription
{
	int32		id;
	char	   *name;
	char	   *shape_key;		/* NULL for an unkeyed subscription */
	Oid			owner;
	bool		enabled;
	int32		version;
	bool		worker;			/* false: host-driven */
	char	   *initial_insert_method;
	Oid			headers_function;
	char	   *run;			/* host-driven: run state between calls (JSON) */
	int			nshapes;
	PsShapeDef *shapes;			/* by position */
} PsSubscription;

/* The catalog layout of the installed extension version. */
typedef enum PsCatalogLayout
{
	PS_LAYOUT_NONE,				/* not installed (or mid-CREATE) */
	PS_LAYOUT_0_1,				/* 0.1.0: one shape per subscription row */
	PS_LAYOUT_0_2,				/* 0.2.0: several shapes, holds, tags, subsets */
	PS_LAYOUT_0_3,				/* 0.3.0 to 0.5.0: local writes */
	PS_LAYOUT_0_6				/* 0.6.0 and later: subscription.is_group */
} PsCatalogLayout;

extern PsCatalogLayout ps_catalog_layout(void);
extern void ps_catalog_require_current(void);
extern void ps_catalog_set_group(int32 subid, bool is_group);

/*
 * Pin search_path and become the extension owner for catalog statements;
 * leaving also returns to the caller's memory context, which SPI leaves for
 * its own procedure context.
 */
typedef struct PsCatalogGuard
{
	int			guc_level;
	Oid			saved_user;
	int			saved_sec;
	bool		saved_writing;
	MemoryContext saved_cxt;
} PsCatalogGuard;

extern void ps_catalog_enter(PsCatalogGuard *g);
extern void ps_catalog_leave(PsCatalogGuard *g);
extern bool ps_catalog_writing(void);
extern void ps_catalog_writing_reset(void);

/* All of these need a transaction and an SPI connection. */
extern PsSubscription *ps_catalog_load(int32 subid, MemoryContext mcxt);
extern PsSubscription *ps_catalog_load_by_name(const char *name, MemoryContext mcxt);
extern PsSubscription *ps_catalog_load_owned(const char *name, Oid role, MemoryContext mcxt);
extern bool ps_catalog_is_current(int32 subid, int32 version);
extern void ps_catalog_save_shape(int32 subid, const char *shape, const char *handle,
								  const char *offset, const char *fingerprint,
								  int64 rows_added, int64 rows_skipped,
								  const char *stream);
extern void ps_catalog_save_committed(int32 subid);
extern void ps_catalog_save_run(int32 subid, const char *run);
extern void ps_catalog_save_stream(int32 subid, const char *shape, const char *stream);
extern void ps_catalog_record_error(int32 subid, const char *message, const char *detail);

/* (subid, owner) of every enabled, worker-run subscription */
typedef struct PsEnabledSub
{
	int32		subid;
	Oid			owner;
} PsEnabledSub;
extern List *ps_catalog_enabled(void);

/* ---- shared tables --------------------------------------------------------- */
extern int	ps_catalog_shapes_on_table(Oid relid);
extern void ps_catalog_share_table(Oid relid, int32 subid, const char *target, List *pk);
extern void ps_catalog_hold_take(Oid relid, Datum key, int32 subid, const char *shape, uint64 lsn);
extern void ps_catalog_hold_lock(Oid relid, Datum key);
extern bool ps_catalog_hold_newer(Oid relid, Datum key, int32 subid, const char *shape, uint64 lsn);
extern bool ps_catalog_hold_release(Oid relid, Datum key, int32 subid, const char *shape);
extern void ps_catalog_hold_drop(Oid relid, int32 subid, const char *shape);

/* local writes */
typedef struct PsWrite
{
	int64		id;
	char	   *write_id;
	int32		attempts;
	SPITupleTable *mutations;	/* operation, shape, key, value, old_value (text) */
	int			nmutations;
} PsWrite;

extern void ps_catalog_write_target_set(int32 subid, const char *url, const char *headers_json);
extern void ps_catalog_write_target_drop(int32 subid);
extern bool ps_catalog_write_target_get(int32 subid, char **url, char **headers_json);
extern int64 ps_catalog_write_open(int32 subid);
extern int32 ps_catalog_write_next_seq(int64 write);
extern void ps_catalog_write_add(int64 write, int32 seq, Oid relid, const char *shape,
								 const char *op, const char *key, Datum pk, const char *value,
								 const char *old_value);
extern void ps_catalog_write_base(Oid relid, Datum pk, const char *row, bool replace);
extern bool ps_catalog_write_base_get(Oid relid, Datum pk, char **row);
extern int32 ps_catalog_write_stamp(int64 write);
extern bool ps_catalog_write_next(int32 subid, PsWrite *w);
extern void ps_catalog_write_sent(int64 id);
extern void ps_catalog_write_answered(int64 id, char state, int status, const char *txid,
									  const char *error, const char *response);
extern List *ps_catalog_write_acked_txids(int32 subid, bool *any_pending);
extern bool ps_catalog_write_any_sent(int32 subid);
extern void ps_catalog_write_seen(int32 subid, const char *txid);
extern bool ps_catalog_write_ack_seen(int32 subid, int64 write, const char *txid);
extern bool ps_catalog_write_synced(int32 subid, const char *txid);
extern void ps_catalog_write_synced_before(int32 subid, TimestampTz before);
extern void ps_catalog_write_forget(int64 write);
extern void ps_catalog_write_bases_cleanup(void);
extern bool ps_catalog_write_row_pending(Oid relid, Datum pk);
extern SPITupleTable *ps_catalog_write_row_mutations(Oid relid, Datum pk);
extern SPITupleTable *ps_catalog_write_keys(int64 write);
extern SPITupleTable *ps_catalog_write_rel_keys(Oid relid);
extern int	ps_catalog_write_lookup(const char *write_id, char **state, Oid *owner);
extern void ps_catalog_write_discard(const char *write_id);
extern int64 ps_catalog_write_mark(int32 subid);
extern int	ps_catalog_write_left(int32 subid, int64 mark, int *rejected);

/* subset snapshots (request_snapshot) */
typedef struct PsSubset
{
	int64		id;
	uint64		xmin;
	uint64		xmax;
	uint64	   *xip;
	int			nxip;
	uint64		database_lsn;
} PsSubset;

extern int64 ps_catalog_subset_add(int32 subid, const char *shape, const PsSubset *snap, Datum keys,
								   int64 rows);
extern List *ps_catalog_subset_load(int32 subid, const char *shape);
extern bool ps_catalog_subset_has_key(int32 subid, const char *shape, int64 snapshot, const char *key);
extern void ps_catalog_subset_retire(int32 subid, const char *shape, int64 snapshot);
extern void ps_catalog_subset_clear(int32 subid, const char *shape);
extern void ps_catalog_subset_lock(int32 subid, bool exclusive);

/* subquery shapes: the tag state of a row (row_tags), as arrays */
typedef struct PsTagState
{
	Datum		entries;		/* text[] "pos:hash" */
	Datum		active;			/* boolean[], unless active_null */
	bool		active_null;
	Datum		tags;			/* text[] */
	Datum		pk;				/* text[] */
} PsTagState;

extern bool ps_catalog_tags_get(int32 subid, const char *shape, const char *key, PsTagState *st);
extern void ps_catalog_tags_put(int32 subid, const char *shape, const char *key, const PsTagState *st);
extern void ps_catalog_tags_delete(int32 subid, const char *shape, const char *key);
extern void ps_catalog_tags_clear(int32 subid, const char *shape);
extern bool ps_catalog_tags_any(int32 subid, const char *shape);
extern Portal ps_catalog_tags_open(int32 subid, const char *shape, Datum entries);
extern SPITupleTable *ps_catalog_tags_fetch(Portal portal);
extern void ps_catalog_tags_close(Portal portal);

/* ---- table-backed spools (host-driven shapes) ---------------------------------- */
extern void ps_catalog_spool_write(int32 subid, const char *shape, int64 at, const char *data,
								   int len);
extern int	ps_catalog_spool_read(int32 subid, const char *shape, int64 at, char *buf, int want);
extern void ps_catalog_spool_truncate(int32 subid, const char *shape, int64 at);
extern void ps_catalog_spool_drop_before(int32 subid, const char *shape, int64 base);
extern int64 ps_catalog_spool_end(int32 subid, const char *shape);
extern void ps_catalog_spool_reclaim(void);

/* ---- the SQL API's writes -------------------------------------------------- */
extern void ps_catalog_lock(void);

typedef struct PsSubRow
{
	int32		id;
	char	   *name;
	Oid			owner;
	bool		enabled;
	bool		keyed;
	bool		worker;
	int			nshapes;
} PsSubRow;

extern bool ps_catalog_lock_subscription(const char *name, PsSubRow *row);
extern int32 ps_catalog_insert_subscription(const char *shape_key, const char *name_base,
											Oid owner, const char *method, Oid headers_function,
											bool worker, char **name_out);
extern void ps_catalog_reenable_subscription(int32 subid, Oid owner, const char *method,
											 Oid headers_function, bool worker);
extern void ps_catalog_put_shape(int32 subid, const PsShapeDef *def, const char *shape_json,
								 Datum primary_key, Oid owner);
extern void ps_catalog_keep_shapes(int32 subid, Datum names);
extern void ps_catalog_disable(int32 subid);
extern void ps_catalog_delete(int32 subid);
extern void ps_catalog_alter(int32 subid, bool worker, const char *shape_url, const char *headers_json,
							 bool set_headers_function, Oid headers_function);
extern bool ps_catalog_changed_here(int32 subid);

#endif
