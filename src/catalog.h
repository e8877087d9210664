/*
 * catalog.h
 *	  Reading and writing the electric.subscription and
 *	  electric.subscription_state catalog tables (through SPI).
 */
#ifndef PS_CATALOG_H
#define PS_CATALOG_H

#include "pglite_sync.h"

#include "nodes/pg_list.h"

typedef struct PsSubscription
{
	int32		id;
	char	   *name;
	char	   *shape_key;		/* NULL for an unkeyed subscription */
	Oid			owner;
	bool		enabled;
	int32		version;
	Oid			relid;
	char	   *schema_name;	/* as given at subscribe time */
	char	   *table_name;
	List	   *primary_key;	/* of char * */
	char	   *shape_json;		/* {"url":…, "params":…, "headers":…} */
	char	   *map_columns;	/* JSON text or NULL */
	Oid			map_function;
	char	   *initial_insert_method;
	Oid			on_must_refetch;
	char	   *target_fingerprint;

	/* stored stream state */
	char	   *handle;
	char	   *offset;
	char	   *state_fingerprint;
	int64		rows_applied;
} PsSubscription;

/* Pin search_path to pg_catalog for catalog statements (see catalog.c). */
extern int	ps_catalog_guard(void);
extern void ps_catalog_unguard(int level);

/* All of these need a transaction and an SPI connection. */
extern PsSubscription *ps_catalog_load(int32 subid, MemoryContext mcxt);
extern PsSubscription *ps_catalog_load_by_name(const char *name, MemoryContext mcxt);
extern bool ps_catalog_lock_for_apply(int32 subid, int32 version);
extern void ps_catalog_save_state(int32 subid, const char *handle,
								  const char *offset, const char *fingerprint,
								  int64 rows_added);
extern void ps_catalog_record_error(int32 subid, const char *message);
extern List *ps_catalog_enabled_ids(void);

#endif
