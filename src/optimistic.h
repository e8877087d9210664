/*
 * optimistic.h
 *	  Local writes stay visible until the server's version of them arrives:
 *	  pending writes are applied again on top of a synced change of their
 *	  row, and a rejected write's rows return to the server's version.
 */
#ifndef PS_OPTIMISTIC_H
#define PS_OPTIMISTIC_H

#include "pglite_sync.h"

#include "nodes/pg_list.h"

/*
 * The sync changed a row that writes not synced yet touch: keep its new
 * version as the server's, then apply those writes on top, in order.  key is
 * the row's primary key as a JSON object of local columns, pk as holds store
 * it.  Runs as the applying role, with electric.syncing set.
 */
extern void ps_optimistic_synced(Oid relid, List *pk_names, const char *key, Datum pk);

/* The columns of relid that its shape carries (local names), NIL for all. */
typedef List *(*PsShapeColumnsFn) (void *arg, Oid relid);

/*
 * A write was rejected: each row it touched returns to the server's version
 * in the columns its shape carries (local-only columns keep what local
 * writes made them), with the other pending writes applied on top.
 */
extern void ps_optimistic_rejected(int64 write, PsShapeColumnsFn shape_columns, void *arg);

#endif
