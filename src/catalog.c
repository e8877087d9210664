/*
 * catalog.c
 *	  Catalog access through SPI.  The worker keeps its statements as saved
 *	  plans; they are revalidated automatically if the catalog changes.
 */
#include "catalog.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"

#define SUBSCRIPTION_COLUMNS \
	"s.id, s.name, s.shape_key, s.owner, s.enabled, s.version, s.relid::oid, " \
	"s.schema_name, s.table_name, s.primary_key, " \
	"pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('url', s.shape_url, " \
	"'params', s.shape_params, 'headers', s.shape_headers))::text, " \
	"s.map_columns::text, s.map_function::oid, s.initial_insert_method, " \
	"s.on_must_refetch::oid, s.target_fingerprint, " \
	"st.handle, st.\"offset\", st.target_fingerprint, coalesce(st.rows_applied, 0) " \
	"FROM " PS_SCHEMA ".subscription s " \
	"LEFT JOIN " PS_SCHEMA ".subscription_state st ON st.subid = s.id "

typedef struct SavedPlan
{
	const char *sql;
	int			nargs;
	Oid			argtypes[6];
	SPIPlanPtr	plan;
} SavedPlan;

static SavedPlan load_by_id = {"SELECT " SUBSCRIPTION_COLUMNS "WHERE s.id = $1", 1, {INT4OID}};
static SavedPlan load_by_name = {"SELECT " SUBSCRIPTION_COLUMNS "WHERE s.name = $1", 1, {TEXTOID}};
static SavedPlan lock_for_apply = {
	"SELECT enabled, version FROM " PS_SCHEMA ".subscription WHERE id = $1 FOR SHARE",
	1, {INT4OID}
};
static SavedPlan save_state = {
	"INSERT INTO " PS_SCHEMA ".subscription_state AS st "
	"(subid, handle, \"offset\", target_fingerprint, rows_applied, last_commit_at) "
	"VALUES ($1, $2, $3, $4, $5, pg_catalog.now()) "
	"ON CONFLICT (subid) DO UPDATE SET handle = EXCLUDED.handle, "
	"\"offset\" = EXCLUDED.\"offset\", target_fingerprint = EXCLUDED.target_fingerprint, "
	"rows_applied = st.rows_applied + EXCLUDED.rows_applied, last_commit_at = pg_catalog.now()",
	5, {INT4OID, TEXTOID, TEXTOID, TEXTOID, INT8OID}
};
static SavedPlan record_error = {
	"INSERT INTO " PS_SCHEMA ".subscription_state AS st (subid, last_error, last_error_at) "
	"SELECT id, $2, pg_catalog.now() FROM " PS_SCHEMA ".subscription WHERE id = $1 "
	"ON CONFLICT (subid) DO UPDATE SET last_error = EXCLUDED.last_error, "
	"last_error_at = EXCLUDED.last_error_at",
	2, {INT4OID, TEXTOID}
};

/*
 * Catalog statements run as a superuser (the worker) or the extension owner
 * (the SQL API), possibly in a transaction where the subscription owner's
 * triggers ran: pin search_path for them, so that no object of a less
 * privileged role can stand in for a catalog function or operator.
 */
int
ps_catalog_guard(void)
{
	int			level = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	return level;
}

void
ps_catalog_unguard(int level)
{
	AtEOXact_GUC(false, level);
}

static SPIPlanPtr
get_plan(SavedPlan *p)
{
	if (p->plan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(p->sql, p->nargs, p->argtypes);

		if (plan == NULL)
			elog(ERROR, "pglite_sync: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "pglite_sync: SPI_keepplan failed");
		p->plan = plan;
	}
	return p->plan;
}

static int
run_plan(SavedPlan *p, Datum *values, const char *nulls, bool read_only, long count)
{
	int			level = ps_catalog_guard();
	int			rc = SPI_execute_plan(get_plan(p), values, nulls, read_only, count);

	ps_catalog_unguard(level);
	if (rc < 0)
		elog(ERROR, "pglite_sync: catalog statement failed: %s", SPI_result_code_string(rc));
	return rc;
}

static char *
get_text(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

static PsSubscription *
tuple_to_subscription(HeapTuple tup, TupleDesc desc)
{
	PsSubscription *s = palloc0(sizeof(PsSubscription));
	bool		isnull;
	Datum		d;

	s->id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
	s->name = get_text(tup, desc, 2);
	s->shape_key = get_text(tup, desc, 3);
	s->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 4, &isnull));
	s->enabled = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
	s->version = DatumGetInt32(SPI_getbinval(tup, desc, 6, &isnull));
	s->relid = DatumGetObjectId(SPI_getbinval(tup, desc, 7, &isnull));
	s->schema_name = get_text(tup, desc, 8);
	s->table_name = get_text(tup, desc, 9);
	d = SPI_getbinval(tup, desc, 10, &isnull);
	if (!isnull)
	{
		Datum	   *elems;
		bool	   *enulls;
		int			n;

		deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &enulls, &n);
		for (int i = 0; i < n; i++)
			if (!enulls[i])
				s->primary_key = lappend(s->primary_key, TextDatumGetCString(elems[i]));
	}
	s->shape_json = get_text(tup, desc, 11);
	s->map_columns = get_text(tup, desc, 12);
	d = SPI_getbinval(tup, desc, 13, &isnull);
	s->map_function = isnull ? InvalidOid : DatumGetObjectId(d);
	s->initial_insert_method = get_text(tup, desc, 14);
	d = SPI_getbinval(tup, desc, 15, &isnull);
	s->on_must_refetch = isnull ? InvalidOid : DatumGetObjectId(d);
	s->target_fingerprint = get_text(tup, desc, 16);
	s->handle = get_text(tup, desc, 17);
	s->offset = get_text(tup, desc, 18);
	s->state_fingerprint = get_text(tup, desc, 19);
	s->rows_applied = DatumGetInt64(SPI_getbinval(tup, desc, 20, &isnull));
	return s;
}

/* The result is allocated in mcxt, so it outlives SPI_finish. */
static PsSubscription *
load_one(SavedPlan *p, Datum arg, MemoryContext mcxt)
{
	PsSubscription *s = NULL;

	run_plan(p, &arg, NULL, true, 1);
	if (SPI_processed == 1)
	{
		MemoryContext old = MemoryContextSwitchTo(mcxt);

		s = tuple_to_subscription(SPI_tuptable->vals[0], SPI_tuptable->tupdesc);
		MemoryContextSwitchTo(old);
	}
	return s;
}

PsSubscription *
ps_catalog_load(int32 subid, MemoryContext mcxt)
{
	return load_one(&load_by_id, Int32GetDatum(subid), mcxt);
}

PsSubscription *
ps_catalog_load_by_name(const char *name, MemoryContext mcxt)
{
	return load_one(&load_by_name, CStringGetTextDatum(name), mcxt);
}

/*
 * First statement of every apply transaction: lock our subscription row so
 * that unsubscribe/delete/resubscribe wait for the batch, and see whether we
 * are still the current incarnation.
 */
bool
ps_catalog_lock_for_apply(int32 subid, int32 version)
{
	Datum		arg = Int32GetDatum(subid);
	bool		isnull;

	run_plan(&lock_for_apply, &arg, NULL, false, 1);
	if (SPI_processed != 1)
		return false;
	if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
		return false;
	return DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)) == version;
}

void
ps_catalog_save_state(int32 subid, const char *handle, const char *offset,
					  const char *fingerprint, int64 rows_added)
{
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	values[0] = Int32GetDatum(subid);
	if (handle)
		values[1] = CStringGetTextDatum(handle);
	else
		nulls[1] = 'n';
	values[2] = CStringGetTextDatum(offset);
	values[3] = CStringGetTextDatum(fingerprint);
	values[4] = Int64GetDatum(rows_added);
	run_plan(&save_state, values, nulls, false, 0);
}

void
ps_catalog_record_error(int32 subid, const char *message)
{
	Datum		values[2];

	values[0] = Int32GetDatum(subid);
	values[1] = CStringGetTextDatum(message);
	run_plan(&record_error, values, NULL, false, 0);
}

List *
ps_catalog_enabled_ids(void)
{
	List	   *ids = NIL;
	int			level = ps_catalog_guard();
	int			rc = SPI_execute("SELECT id FROM " PS_SCHEMA ".subscription WHERE enabled",
								 true, 0);

	ps_catalog_unguard(level);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "pglite_sync: could not list subscriptions: %s", SPI_result_code_string(rc));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		ids = lappend_int(ids, DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
														   SPI_tuptable->tupdesc, 1, &isnull)));
	}
	return ids;
}
