/*
 * catalog.c
 *	  Every statement on the catalog tables, through SPI.  Statements run
 *	  as the extension owner with search_path pinned to pg_catalog, so no
 *	  object of the caller (or of a subscription owner whose triggers ran in
 *	  the same transaction) can stand in for a catalog function or operator.
 *	  The worker keeps its statements as saved plans, revalidated by the
 *	  plan cache when the catalog changes (ALTER EXTENSION UPDATE).
 *
 *	  A new library may run against an extension not yet updated (the
 *	  server restarts with new binaries before ALTER EXTENSION UPDATE): the
 *	  0.1.0 layout is still read and written for running subscriptions, so
 *	  they keep syncing until the update, and after it.
 */
#include "catalog.h"

#include "access/table.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "utils/acl.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "apply.h"

/* ---- layout ------------------------------------------------------------- */

PsCatalogLayout
ps_catalog_layout(void)
{
	char	   *version;
	PsCatalogLayout layout;

	if (!ps_extension_ready())
		return PS_LAYOUT_NONE;
	version = ps_extension_version(get_extension_oid(PS_EXTENSION_NAME, false));
	layout = PS_LAYOUT_0_6;
	if (version && strcmp(version, "0.1.0") == 0)
		layout = PS_LAYOUT_0_1;
	else if (version && strcmp(version, "0.2.0") == 0)
		layout = PS_LAYOUT_0_2;
	else if (version && (strcmp(version, "0.3.0") == 0 || strcmp(version, "0.4.0") == 0 ||
						 strcmp(version, "0.5.0") == 0))
		layout = PS_LAYOUT_0_3;
	return layout;
}

void
ps_catalog_require_current(void)
{
	PsCatalogLayout layout = ps_catalog_layout();

	if (layout == PS_LAYOUT_0_1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"%s\" must be updated to version %s", PS_EXTENSION_NAME, PS_VERSION),
				 errdetail("The installed library is version %s; the extension's SQL objects are older. Running subscriptions go on syncing meanwhile.",
						   PS_VERSION),
				 errhint("Run ALTER EXTENSION %s UPDATE.", PS_EXTENSION_NAME)));
	if (layout == PS_LAYOUT_NONE)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"%s\" is not installed in this database", PS_EXTENSION_NAME)));
}

/* ---- running catalog statements ------------------------------------------- */

/* Inside one of our own catalog statements (see ps_catalog_changed). */
static bool catalog_writing = false;

bool
ps_catalog_writing(void)
{
	return catalog_writing;
}

/* At the end of a transaction: an ERROR may have skipped ps_catalog_leave. */
void
ps_catalog_writing_reset(void)
{
	catalog_writing = false;
}

void
ps_catalog_enter(PsCatalogGuard *g)
{
	g->saved_cxt = CurrentMemoryContext;
	g->saved_writing = catalog_writing;
	catalog_writing = true;
	GetUserIdAndSecContext(&g->saved_user, &g->saved_sec);
	SetUserIdAndSecContext(ps_extension_owner(), g->saved_sec | SECURITY_LOCAL_USERID_CHANGE);
	g->guc_level = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
}

void
ps_catalog_leave(PsCatalogGuard *g)
{
	AtEOXact_GUC(false, g->guc_level);
	SetUserIdAndSecContext(g->saved_user, g->saved_sec);
	catalog_writing = g->saved_writing;
	/*
	 * SPI returns in its procedure context, which lasts until SPI_finish:
	 * what the caller allocates next (a detoasted spool block, say) would
	 * pile up there for the whole call instead of going with the caller's
	 * own context.
	 */
	MemoryContextSwitchTo(g->saved_cxt);
}

typedef struct Stmt
{
	const char *sql;
	int			nargs;
	Oid			argtypes[10];
	SPIPlanPtr	plan;			/* kept for the process's life */
} Stmt;

static void
prepare(Stmt *st)
{
	PsCatalogGuard g;
	SPIPlanPtr	plan;

	if (st->plan != NULL)
		return;
	ps_catalog_enter(&g);
	plan = SPI_prepare(st->sql, st->nargs, st->argtypes);
	ps_catalog_leave(&g);
	if (plan == NULL)
		elog(ERROR, "pglite_sync: could not prepare a catalog statement: %s",
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "pglite_sync: SPI_keepplan failed");
	st->plan = plan;
}

/* Run one statement: values may be NULL for none, nulls as in SPI ('n'). */
static int
run(Stmt *st, Datum *values, const char *nulls, bool read_only, long count, int expected)
{
	PsCatalogGuard g;
	int			rc;

	prepare(st);
	ps_catalog_enter(&g);
	rc = SPI_execute_plan(st->plan, values, nulls, read_only, count);
	ps_catalog_leave(&g);
	if (rc != expected)
		elog(ERROR, "pglite_sync: catalog statement failed (%s): %s",
			 SPI_result_code_string(rc), st->sql);
	return rc;
}

static inline Datum
text_or_null(const char *s, char *null)
{
	*null = s ? ' ' : 'n';
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

static char *
col_text(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* The first column of the first row the last statement returned. */
static Datum
first_value(bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, isnull);
}

static Oid
col_oid(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? InvalidOid : DatumGetObjectId(d);
}

static List *
col_text_array(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);
	List	   *out = NIL;
	Datum	   *elems;
	bool	   *enulls;
	int			n;

	if (isnull)
		return NIL;
	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &enulls, &n);
	for (int i = 0; i < n; i++)
		if (!enulls[i])
			out = lappend(out, TextDatumGetCString(elems[i]));
	return out;
}

/* ---- loading a subscription -------------------------------------------------- */

#define SUB_COLUMNS \
	"s.id, s.name, s.shape_key, s.owner::oid, s.enabled, s.version, s.worker, " \
	"s.initial_insert_method, s.headers_function::oid, st.run::text "

#define SHAPE_COLUMNS \
	"p.shape, p.position, p.relid::oid, p.schema_name, p.table_name, p.primary_key, " \
	"pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('url', p.shape_url, " \
	"'params', p.shape_params, 'headers', p.shape_headers) " \
	"OPERATOR(pg_catalog.||) coalesce(p.shape_options, '{}'))::text, " \
	"p.map_columns::text, p.map_function::oid, p.on_must_refetch::oid, p.target_fingerprint, " \
	"x.handle, x.\"offset\", x.target_fingerprint, x.stream::text, coalesce(x.rows_applied, 0) "

static Stmt load_sub_by_id = {
	"SELECT " SUB_COLUMNS "FROM " PS_SCHEMA ".subscription s "
	"LEFT JOIN " PS_SCHEMA ".subscription_state st ON st.subid = s.id WHERE s.id = $1",
	1, {INT4OID}
};
static Stmt load_sub_by_name = {
	"SELECT " SUB_COLUMNS "FROM " PS_SCHEMA ".subscription s "
	"LEFT JOIN " PS_SCHEMA ".subscription_state st ON st.subid = s.id WHERE s.name = $1",
	1, {TEXTOID}
};
static Stmt load_shapes = {
	"SELECT " SHAPE_COLUMNS "FROM " PS_SCHEMA ".subscription_shape p "
	"LEFT JOIN " PS_SCHEMA ".shape_state x ON x.subid = p.subid AND x.shape = p.shape "
	"WHERE p.subid = $1 ORDER BY p.position",
	1, {INT4OID}
};

/* 0.1.0: the shape lives in the subscription row, the state in subscription_state */
#define LEGACY_COLUMNS \
	"s.id, s.name, s.shape_key, s.owner, s.enabled, s.version, true, " \
	"s.initial_insert_method, NULL::oid, NULL::text, " \
	"s.name, 0, s.relid::oid, s.schema_name, s.table_name, s.primary_key, " \
	"pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('url', s.shape_url, " \
	"'params', s.shape_params, 'headers', s.shape_headers))::text, " \
	"s.map_columns::text, s.map_function::oid, s.on_must_refetch::oid, s.target_fingerprint, " \
	"st.handle, st.\"offset\", st.target_fingerprint, NULL::text, coalesce(st.rows_applied, 0) " \
	"FROM " PS_SCHEMA ".subscription s " \
	"LEFT JOIN " PS_SCHEMA ".subscription_state st ON st.subid = s.id "

static Stmt legacy_by_id = {"SELECT " LEGACY_COLUMNS "WHERE s.id = $1", 1, {INT4OID}};
static Stmt legacy_by_name = {"SELECT " LEGACY_COLUMNS "WHERE s.name = $1", 1, {TEXTOID}};

static void
fill_sub(PsSubscription *s, HeapTuple tup, TupleDesc desc)
{
	bool		isnull;

	s->id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
	s->name = col_text(tup, desc, 2);
	s->shape_key = col_text(tup, desc, 3);
	s->owner = col_oid(tup, desc, 4);
	s->enabled = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
	s->version = DatumGetInt32(SPI_getbinval(tup, desc, 6, &isnull));
	s->worker = DatumGetBool(SPI_getbinval(tup, desc, 7, &isnull));
	s->initial_insert_method = col_text(tup, desc, 8);
	s->headers_function = col_oid(tup, desc, 9);
	s->run = col_text(tup, desc, 10);
}

/* The shape columns start at column `base` (1-based). */
static void
fill_shape(PsShapeDef *d, HeapTuple tup, TupleDesc desc, int base)
{
	bool		isnull;

	d->name = col_text(tup, desc, base);
	d->position = DatumGetInt32(SPI_getbinval(tup, desc, base + 1, &isnull));
	d->relid = col_oid(tup, desc, base + 2);
	d->schema_name = col_text(tup, desc, base + 3);
	d->table_name = col_text(tup, desc, base + 4);
	d->primary_key = col_text_array(tup, desc, base + 5);
	d->shape_json = col_text(tup, desc, base + 6);
	d->map_columns = col_text(tup, desc, base + 7);
	d->map_function = col_oid(tup, desc, base + 8);
	d->on_must_refetch = col_oid(tup, desc, base + 9);
	d->target_fingerprint = col_text(tup, desc, base + 10);
	d->handle = col_text(tup, desc, base + 11);
	d->offset = col_text(tup, desc, base + 12);
	d->state_fingerprint = col_text(tup, desc, base + 13);
	d->stream = col_text(tup, desc, base + 14);
	d->rows_applied = DatumGetInt64(SPI_getbinval(tup, desc, base + 15, &isnull));
}

static PsSubscription *
load(Datum key, bool by_name, MemoryContext mcxt)
{
	PsCatalogLayout layout = ps_catalog_layout();
	PsSubscription *s = NULL;
	MemoryContext old;

	if (layout == PS_LAYOUT_NONE)
		return NULL;
	if (layout == PS_LAYOUT_0_1)
	{
		run(by_name ? &legacy_by_name : &legacy_by_id, &key, NULL, false, 1, SPI_OK_SELECT);
		if (SPI_processed != 1)
			return NULL;
		old = MemoryContextSwitchTo(mcxt);
		s = palloc0(sizeof(PsSubscription));
		fill_sub(s, SPI_tuptable->vals[0], SPI_tuptable->tupdesc);
		s->nshapes = 1;
		s->shapes = palloc0(sizeof(PsShapeDef));
		fill_shape(&s->shapes[0], SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 11);
		MemoryContextSwitchTo(old);
		return s;
	}

	run(by_name ? &load_sub_by_name : &load_sub_by_id, &key, NULL, false, 1, SPI_OK_SELECT);
	if (SPI_processed != 1)
		return NULL;
	old = MemoryContextSwitchTo(mcxt);
	s = palloc0(sizeof(PsSubscription));
	fill_sub(s, SPI_tuptable->vals[0], SPI_tuptable->tupdesc);
	MemoryContextSwitchTo(old);

	key = Int32GetDatum(s->id);
	run(&load_shapes, &key, NULL, false, 0, SPI_OK_SELECT);
	old = MemoryContextSwitchTo(mcxt);
	s->nshapes = (int) SPI_processed;
	s->shapes = palloc0(sizeof(PsShapeDef) * Max(s->nshapes, 1));
	for (int i = 0; i < s->nshapes; i++)
		fill_shape(&s->shapes[i], SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
	MemoryContextSwitchTo(old);
	return s;
}

PsSubscription *
ps_catalog_load(int32 subid, MemoryContext mcxt)
{
	return load(Int32GetDatum(subid), false, mcxt);
}

PsSubscription *
ps_catalog_load_by_name(const char *name, MemoryContext mcxt)
{
	return load(CStringGetTextDatum(name), true, mcxt);
}

/*
 * A subscription the caller (role) may manage, by name: an error when there
 * is none or the caller cannot act as its owner.
 */
PsSubscription *
ps_catalog_load_owned(const char *name, Oid role, MemoryContext mcxt)
{
	PsSubscription *sub;

	ps_catalog_require_current();
	sub = ps_catalog_load_by_name(name, mcxt);
	if (sub == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("subscription \"%s\" does not exist", name)));
	if (!has_privs_of_role(role, sub->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of subscription \"%s\"", name)));
	return sub;
}

/*
 * Is this still the running incarnation of the subscription?  A plain read,
 * no lock: unsubscribe and delete_subscription never wait for a batch (the
 * worker learns of them from its slot, and a deleted subscription makes the
 * state update at the end of the batch fail).
 */
static Stmt is_current = {
	"SELECT enabled AND version = $2 FROM " PS_SCHEMA ".subscription WHERE id = $1",
	2, {INT4OID, INT4OID}
};

bool
ps_catalog_is_current(int32 subid, int32 version)
{
	Datum		args[2] = {Int32GetDatum(subid), Int32GetDatum(version)};
	bool		isnull;

	run(&is_current, args, NULL, false, 1, SPI_OK_SELECT);
	if (SPI_processed != 1)
		return false;
	return DatumGetBool(first_value(&isnull)) && !isnull;
}

/* ---- the worker's writes, at the end of an apply transaction ----------------- */

static Stmt save_shape = {
	"INSERT INTO " PS_SCHEMA ".shape_state AS x "
	"(subid, shape, handle, \"offset\", target_fingerprint, rows_applied, rows_skipped, "
	" last_commit_at, stream) "
	"VALUES ($1, $2, $3, $4, $5, $6, $7, pg_catalog.now(), $8::jsonb) "
	"ON CONFLICT (subid, shape) DO UPDATE SET handle = EXCLUDED.handle, "
	"\"offset\" = EXCLUDED.\"offset\", target_fingerprint = EXCLUDED.target_fingerprint, "
	"rows_applied = x.rows_applied + EXCLUDED.rows_applied, "
	"rows_skipped = x.rows_skipped + EXCLUDED.rows_skipped, "
	"last_commit_at = pg_catalog.now(), stream = EXCLUDED.stream",
	8, {INT4OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT8OID, INT8OID, TEXTOID}
};
static Stmt legacy_save = {
	"INSERT INTO " PS_SCHEMA ".subscription_state AS st "
	"(subid, handle, \"offset\", target_fingerprint, rows_applied, last_commit_at) "
	"VALUES ($1, $2, $3, $4, $5, pg_catalog.now()) "
	"ON CONFLICT (subid) DO UPDATE SET handle = EXCLUDED.handle, "
	"\"offset\" = EXCLUDED.\"offset\", target_fingerprint = EXCLUDED.target_fingerprint, "
	"rows_applied = st.rows_applied + EXCLUDED.rows_applied, last_commit_at = pg_catalog.now()",
	5, {INT4OID, TEXTOID, TEXTOID, TEXTOID, INT8OID}
};

void
ps_catalog_save_shape(int32 subid, const char *shape, const char *handle,
					  const char *offset, const char *fingerprint,
					  int64 rows_added, int64 rows_skipped, const char *stream)
{
	Datum		v[8];
	char		n[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};

	if (ps_catalog_layout() == PS_LAYOUT_0_1)
	{
		v[0] = Int32GetDatum(subid);
		v[1] = text_or_null(handle, &n[1]);
		v[2] = CStringGetTextDatum(offset);
		v[3] = CStringGetTextDatum(fingerprint);
		v[4] = Int64GetDatum(rows_added);
		run(&legacy_save, v, n, false, 0, SPI_OK_INSERT);
		return;
	}
	v[0] = Int32GetDatum(subid);
	v[1] = CStringGetTextDatum(shape);
	v[2] = text_or_null(handle, &n[2]);
	v[3] = CStringGetTextDatum(offset);
	v[4] = CStringGetTextDatum(fingerprint);
	v[5] = Int64GetDatum(rows_added);
	v[6] = Int64GetDatum(rows_skipped);
	v[7] = text_or_null(stream, &n[7]);
	run(&save_shape, v, n, false, 0, SPI_OK_INSERT);
}

/* The subscription committed a batch; also checks that it still exists. */
static Stmt save_committed = {
	"INSERT INTO " PS_SCHEMA ".subscription_state AS st (subid, last_commit_at) "
	"SELECT id, pg_catalog.now() FROM " PS_SCHEMA ".subscription WHERE id = $1 "
	"ON CONFLICT (subid) DO UPDATE SET last_commit_at = EXCLUDED.last_commit_at",
	1, {INT4OID}
};

void
ps_catalog_save_committed(int32 subid)
{
	Datum		v = Int32GetDatum(subid);

	if (ps_catalog_layout() == PS_LAYOUT_0_1)
		return;					/* legacy_save set last_commit_at */
	run(&save_committed, &v, NULL, false, 0, SPI_OK_INSERT);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("subscription %d was deleted while its batch was applied", subid)));
}

static Stmt save_stream = {
	"UPDATE " PS_SCHEMA ".shape_state SET stream = $3::jsonb WHERE subid = $1 AND shape = $2",
	3, {INT4OID, TEXTOID, TEXTOID}
};
static Stmt insert_stream = {
	"INSERT INTO " PS_SCHEMA ".shape_state (subid, shape, stream) VALUES ($1, $2, $3::jsonb)",
	3, {INT4OID, TEXTOID, TEXTOID}
};

/* A host-driven shape's stream between two calls. */
void
ps_catalog_save_stream(int32 subid, const char *shape, const char *stream)
{
	Datum		v[3] = {Int32GetDatum(subid), CStringGetTextDatum(shape), CStringGetTextDatum(stream)};

	run(&save_stream, v, NULL, false, 0, SPI_OK_UPDATE);
	if (SPI_processed == 0)
		run(&insert_stream, v, NULL, false, 0, SPI_OK_INSERT);
}

static Stmt save_run = {
	"INSERT INTO " PS_SCHEMA ".subscription_state AS st (subid, run) "
	"SELECT id, $2::jsonb FROM " PS_SCHEMA ".subscription WHERE id = $1 "
	"ON CONFLICT (subid) DO UPDATE SET run = EXCLUDED.run",
	2, {INT4OID, TEXTOID}
};

void
ps_catalog_save_run(int32 subid, const char *run_json)
{
	Datum		v[2];
	char		n[2] = {' ', ' '};

	v[0] = Int32GetDatum(subid);
	v[1] = text_or_null(run_json, &n[1]);
	run(&save_run, v, n, false, 0, SPI_OK_INSERT);
}

static Stmt record_error = {
	"INSERT INTO " PS_SCHEMA ".subscription_state AS st "
	"(subid, last_error, last_error_detail, last_error_at) "
	"SELECT id, $2, $3, pg_catalog.now() FROM " PS_SCHEMA ".subscription WHERE id = $1 "
	"ON CONFLICT (subid) DO UPDATE SET last_error = EXCLUDED.last_error, "
	"last_error_detail = EXCLUDED.last_error_detail, last_error_at = EXCLUDED.last_error_at",
	3, {INT4OID, TEXTOID, TEXTOID}
};
static Stmt legacy_record_error = {
	"INSERT INTO " PS_SCHEMA ".subscription_state AS st (subid, last_error, last_error_at) "
	"SELECT id, $2, pg_catalog.now() FROM " PS_SCHEMA ".subscription WHERE id = $1 "
	"ON CONFLICT (subid) DO UPDATE SET last_error = EXCLUDED.last_error, "
	"last_error_at = EXCLUDED.last_error_at",
	2, {INT4OID, TEXTOID}
};

void
ps_catalog_record_error(int32 subid, const char *message, const char *detail)
{
	Datum		v[3];
	char		n[3] = {' ', ' ', ' '};

	v[0] = Int32GetDatum(subid);
	if (ps_catalog_layout() == PS_LAYOUT_0_1)
	{
		v[1] = CStringGetTextDatum(detail ? psprintf("%s\n%s", message, detail) : message);
		run(&legacy_record_error, v, n, false, 0, SPI_OK_INSERT);
		return;
	}
	v[1] = CStringGetTextDatum(message);
	v[2] = text_or_null(detail, &n[2]);
	run(&record_error, v, n, false, 0, SPI_OK_INSERT);
}

/* ---- the scanner ------------------------------------------------------------------ */

static Stmt enabled = {
	"SELECT id, owner::oid FROM " PS_SCHEMA ".subscription WHERE enabled AND worker", 0, {0}
};
static Stmt legacy_enabled = {
	"SELECT id, owner FROM " PS_SCHEMA ".subscription WHERE enabled", 0, {0}
};

List *
ps_catalog_enabled(void)
{
	PsCatalogLayout layout = ps_catalog_layout();
	List	   *out = NIL;

	if (layout == PS_LAYOUT_NONE)
		return NIL;
	run(layout == PS_LAYOUT_0_1 ? &legacy_enabled : &enabled, NULL, NULL, false, 0, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		PsEnabledSub *e = palloc(sizeof(PsEnabledSub));
		bool		isnull;

		e->subid = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		e->owner = col_oid(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		out = lappend(out, e);
	}
	return out;
}

/* ---- subquery shapes: tag state of rows --------------------------------------------- */

static Stmt tags_get = {
	"SELECT entries, active, tags, pk FROM " PS_SCHEMA ".row_tags "
	"WHERE subid = $1 AND shape = $2 AND key = $3", 3, {INT4OID, TEXTOID, TEXTOID}
};
static Stmt tags_put = {
	"INSERT INTO " PS_SCHEMA ".row_tags (subid, shape, key, entries, active, tags, pk) "
	"VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (subid, shape, key) DO UPDATE "
	"SET entries = EXCLUDED.entries, active = EXCLUDED.active, tags = EXCLUDED.tags, pk = EXCLUDED.pk",
	7, {INT4OID, TEXTOID, TEXTOID, TEXTARRAYOID, BOOLARRAYOID, TEXTARRAYOID, TEXTARRAYOID}
};
static Stmt tags_delete = {
	"DELETE FROM " PS_SCHEMA ".row_tags WHERE subid = $1 AND shape = $2 AND key = $3",
	3, {INT4OID, TEXTOID, TEXTOID}
};
static Stmt tags_clear = {
	"DELETE FROM " PS_SCHEMA ".row_tags WHERE subid = $1 AND shape = $2", 2, {INT4OID, TEXTOID}
};
static Stmt tags_any = {
	"SELECT EXISTS (SELECT 1 FROM " PS_SCHEMA ".row_tags WHERE subid = $1 AND shape = $2)",
	2, {INT4OID, TEXTOID}
};
/* the GIN index finds the rows; the hashes hold the shape's handle, so only its rows match */
static Stmt tags_matching = {
	"SELECT key, entries, active, tags, pk FROM " PS_SCHEMA ".row_tags "
	"WHERE entries OPERATOR(pg_catalog.&&) $3 AND subid = $1 AND shape = $2",
	3, {INT4OID, TEXTOID, TEXTARRAYOID}
};

/* Tag state needs the 0.2 catalog: running on 0.1.0's, a subquery shape waits for the update. */
static void
require_tags_layout(void)
{
	if (ps_catalog_layout() < PS_LAYOUT_0_2)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"%s\" must be updated to version %s to sync a shape with a subquery",
						PS_EXTENSION_NAME, PS_VERSION),
				 errhint("Run ALTER EXTENSION %s UPDATE.", PS_EXTENSION_NAME)));
}

/* The tag state of one row; false when it has none. */
bool
ps_catalog_tags_get(int32 subid, const char *shape, const char *key, PsTagState *st)
{
	Datum		v[3] = {Int32GetDatum(subid), CStringGetTextDatum(shape), CStringGetTextDatum(key)};
	HeapTuple	t;
	TupleDesc	d;
	bool		isnull;

	require_tags_layout();
	run(&tags_get, v, NULL, false, 1, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;
	t = SPI_tuptable->vals[0];
	d = SPI_tuptable->tupdesc;
	st->entries = SPI_getbinval(t, d, 1, &isnull);
	st->active = SPI_getbinval(t, d, 2, &st->active_null);
	st->tags = SPI_getbinval(t, d, 3, &isnull);
	st->pk = SPI_getbinval(t, d, 4, &isnull);
	return true;
}

void
ps_catalog_tags_put(int32 subid, const char *shape, const char *key, const PsTagState *st)
{
	Datum		v[7] = {Int32GetDatum(subid), CStringGetTextDatum(shape), CStringGetTextDatum(key),
	st->entries, st->active, st->tags, st->pk};
	char		nulls[8] = "       ";

	require_tags_layout();
	if (st->active_null)
		nulls[4] = 'n';
	run(&tags_put, v, nulls, false, 0, SPI_OK_INSERT);
}

void
ps_catalog_tags_delete(int32 subid, const char *shape, const char *key)
{
	Datum		v[3] = {Int32GetDatum(subid), CStringGetTextDatum(shape), CStringGetTextDatum(key)};

	if (ps_catalog_layout() < PS_LAYOUT_0_2)
		return;
	run(&tags_delete, v, NULL, false, 0, SPI_OK_DELETE);
}

void
ps_catalog_tags_clear(int32 subid, const char *shape)
{
	Datum		v[2] = {Int32GetDatum(subid), CStringGetTextDatum(shape)};

	if (ps_catalog_layout() < PS_LAYOUT_0_2)
		return;
	run(&tags_clear, v, NULL, false, 0, SPI_OK_DELETE);
}

bool
ps_catalog_tags_any(int32 subid, const char *shape)
{
	Datum		v[2] = {Int32GetDatum(subid), CStringGetTextDatum(shape)};
	bool		isnull;

	if (ps_catalog_layout() < PS_LAYOUT_0_2)
		return false;
	run(&tags_any, v, NULL, false, 0, SPI_OK_SELECT);
	return DatumGetBool(first_value(&isnull));
}

/*
 * The rows with an entry among entries (text[]), read through a cursor in
 * batches, so that a move-out of a million rows does not hold them all:
 * ps_catalog_tags_fetch returns the next batch (an SPI tuple table of key,
 * entries, active, tags, pk for the caller to free), NULL at the end.
 */
Portal
ps_catalog_tags_open(int32 subid, const char *shape, Datum entries)
{
	Datum		v[3] = {Int32GetDatum(subid), CStringGetTextDatum(shape), entries};
	PsCatalogGuard g;
	Portal		portal;

	require_tags_layout();
	/*
	 * Planned here, not kept (PGlite exports no SPI_cursor_open), and not
	 * read-only: it must see the tag state this batch wrote so far.
	 */
	ps_catalog_enter(&g);
	portal = SPI_cursor_open_with_args(NULL, tags_matching.sql, tags_matching.nargs,
									   tags_matching.argtypes, v, NULL, false, 0);
	ps_catalog_leave(&g);
	return portal;
}

SPITupleTable *
ps_catalog_tags_fetch(Portal portal)
{
	PsCatalogGuard g;

	ps_catalog_enter(&g);
	SPI_cursor_fetch(portal, true, 1000);
	ps_catalog_leave(&g);
	if (SPI_processed == 0)
	{
		SPI_freetuptable(SPI_tuptable);
		return NULL;
	}
	return SPI_tuptable;
}

void
ps_catalog_tags_close(Portal portal)
{
	SPI_cursor_close(portal);
}

/* ---- local writes ------------------------------------------------------------------ */

static bool
have_writes(void)
{
	return ps_catalog_layout() >= PS_LAYOUT_0_3;
}

static Stmt wt_set = {
	"INSERT INTO " PS_SCHEMA ".write_target (subid, write_url, headers) VALUES ($1, $2, $3::jsonb) "
	"ON CONFLICT (subid) DO UPDATE SET write_url = EXCLUDED.write_url, headers = EXCLUDED.headers",
	3, {INT4OID, TEXTOID, TEXTOID}
};
static Stmt wt_drop = {
	"DELETE FROM " PS_SCHEMA ".write_target WHERE subid = $1", 1, {INT4OID}
};
static Stmt wt_get = {
	"SELECT write_url, headers::text FROM " PS_SCHEMA ".write_target WHERE subid = $1", 1, {INT4OID}
};
static Stmt w_open = {
	"INSERT INTO " PS_SCHEMA ".write (write_id, subid, local_xid) "
	"VALUES (pg_catalog.gen_random_uuid(), $1, pg_catalog.pg_current_xact_id()) "
	"ON CONFLICT (subid, local_xid) DO UPDATE SET subid = EXCLUDED.subid RETURNING id",
	1, {INT4OID}
};
static Stmt w_next_seq = {
	"SELECT coalesce(max(seq), 0) + 1 FROM " PS_SCHEMA ".write_mutation WHERE write = $1", 1, {INT8OID}
};
static Stmt w_add = {
	"INSERT INTO " PS_SCHEMA ".write_mutation (write, seq, relid, shape, operation, key, pk, value, old_value) "
	"VALUES ($1, $2, $3::oid::regclass, $4, $5, $6::jsonb, $7, $8::jsonb, $9::jsonb)",
	9, {INT8OID, INT4OID, OIDOID, TEXTOID, TEXTOID, TEXTOID, TEXTARRAYOID, TEXTOID, TEXTOID}
};
static Stmt w_base_keep = {
	"INSERT INTO " PS_SCHEMA ".write_base (relid, pk, row) VALUES ($1::oid::regclass, $2, $3::jsonb) "
	"ON CONFLICT (relid, pk) DO NOTHING", 3, {OIDOID, TEXTARRAYOID, TEXTOID}
};
static Stmt w_base_set = {
	"INSERT INTO " PS_SCHEMA ".write_base (relid, pk, row) VALUES ($1::oid::regclass, $2, $3::jsonb) "
	"ON CONFLICT (relid, pk) DO UPDATE SET row = EXCLUDED.row", 3, {OIDOID, TEXTARRAYOID, TEXTOID}
};
static Stmt w_base_get = {
	"SELECT row::text FROM " PS_SCHEMA ".write_base WHERE relid = $1::oid::regclass AND pk = $2",
	2, {OIDOID, TEXTARRAYOID}
};
/* at COMMIT, one committer at a time until its end: commit_seq follows commit order */
static Stmt w_stamp = {
	"WITH l AS (SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pglite_sync write order'))) "
	"UPDATE " PS_SCHEMA ".write w SET commit_seq = pg_catalog.nextval('" PS_SCHEMA ".write_commit_seq') "
	"FROM l WHERE w.id = $1 RETURNING w.subid", 1, {INT8OID}
};
static Stmt w_next = {
	"SELECT id, write_id::text, attempts FROM " PS_SCHEMA ".write WHERE subid = $1 "
	"AND commit_seq IS NOT NULL AND state IN ('pending', 'sent') ORDER BY commit_seq LIMIT 1",
	1, {INT4OID}
};
static Stmt w_mutations = {
	"SELECT m.operation, m.shape, m.key::text, m.value::text, m.old_value::text "
	"FROM " PS_SCHEMA ".write_mutation m WHERE m.write = $1 ORDER BY m.seq", 1, {INT8OID}
};
static Stmt w_sent = {
	"UPDATE " PS_SCHEMA ".write SET state = 'sent', attempts = attempts + 1, sent_at = pg_catalog.now() "
	"WHERE id = $1", 1, {INT8OID}
};
static Stmt w_acked = {
	"UPDATE " PS_SCHEMA ".write SET state = 'acknowledged', txid = $2, acknowledged_at = pg_catalog.now(), "
	"last_error = NULL, status = $3 WHERE id = $1", 3, {INT8OID, TEXTOID, INT4OID}
};
static Stmt w_failed = {
	"UPDATE " PS_SCHEMA ".write SET last_error = $2, status = $3 WHERE id = $1", 3, {INT8OID, TEXTOID, INT4OID}
};
static Stmt w_rejected = {
	"UPDATE " PS_SCHEMA ".write SET state = 'rejected', last_error = $2, status = $3, response = $4 "
	"WHERE id = $1", 4, {INT8OID, TEXTOID, INT4OID, TEXTOID}
};
static Stmt w_any_sent = {
	"SELECT EXISTS (SELECT 1 FROM " PS_SCHEMA ".write WHERE subid = $1 AND state = 'sent')",
	1, {INT4OID}
};
static Stmt w_seen = {
	"INSERT INTO " PS_SCHEMA ".write_seen (subid, txid) VALUES ($1, $2) ON CONFLICT DO NOTHING",
	2, {INT4OID, TEXTOID}
};
static Stmt w_seen_take = {
	"DELETE FROM " PS_SCHEMA ".write_seen WHERE subid = $1 AND txid = $2", 2, {INT4OID, TEXTOID}
};
static Stmt w_seen_forget = {
	"DELETE FROM " PS_SCHEMA ".write_seen WHERE subid = $1 AND NOT EXISTS (SELECT 1 FROM " PS_SCHEMA ".write "
	"WHERE subid = $1 AND state = 'sent')", 1, {INT4OID}
};
static Stmt w_synced_id = {
	"DELETE FROM " PS_SCHEMA ".write WHERE id = $1", 1, {INT8OID}
};
static Stmt w_acked_txids = {
	"SELECT txid FROM " PS_SCHEMA ".write WHERE subid = $1 AND state = 'acknowledged' AND txid IS NOT NULL",
	1, {INT4OID}
};
static Stmt w_any_pending = {
	"SELECT EXISTS (SELECT 1 FROM " PS_SCHEMA ".write WHERE subid = $1 AND state <> 'rejected')",
	1, {INT4OID}
};
static Stmt w_synced_txid = {
	"DELETE FROM " PS_SCHEMA ".write WHERE subid = $1 AND state = 'acknowledged' AND txid = $2",
	2, {INT4OID, TEXTOID}
};
static Stmt w_synced_untxid = {
	"DELETE FROM " PS_SCHEMA ".write WHERE subid = $1 AND state = 'acknowledged' AND txid IS NULL "
	"AND acknowledged_at <= $2", 2, {INT4OID, TIMESTAMPTZOID}
};
static Stmt w_bases_cleanup = {
	"DELETE FROM " PS_SCHEMA ".write_base b WHERE NOT EXISTS (SELECT 1 FROM " PS_SCHEMA ".write_mutation m "
	"JOIN " PS_SCHEMA ".write w ON w.id = m.write WHERE m.relid = b.relid AND m.pk = b.pk AND w.state <> 'rejected')",
	0, {0}
};
static Stmt w_row_pending = {
	"SELECT EXISTS (SELECT 1 FROM " PS_SCHEMA ".write_mutation m JOIN " PS_SCHEMA ".write w ON w.id = m.write "
	"WHERE m.relid = $1::oid::regclass AND m.pk = $2 AND w.state <> 'rejected')", 2, {OIDOID, TEXTARRAYOID}
};
/* committed ones in commit order, then this transaction's own (not stamped yet) */
static Stmt w_row_mutations = {
	"SELECT m.operation, m.key::text, m.value::text FROM " PS_SCHEMA ".write_mutation m "
	"JOIN " PS_SCHEMA ".write w ON w.id = m.write "
	"WHERE m.relid = $1::oid::regclass AND m.pk = $2 AND w.state <> 'rejected' "
	"ORDER BY w.commit_seq NULLS LAST, m.seq", 2, {OIDOID, TEXTARRAYOID}
};
/* the rows of a table that local writes not synced yet touch */
static Stmt w_rel_keys = {
	"SELECT DISTINCT ON (m.pk) m.pk, m.key::text FROM " PS_SCHEMA ".write_mutation m "
	"JOIN " PS_SCHEMA ".write w ON w.id = m.write "
	"WHERE m.relid = $1::oid::regclass AND w.state <> 'rejected' ORDER BY m.pk, w.commit_seq NULLS LAST, m.seq",
	1, {OIDOID}
};
static Stmt w_keys = {
	"SELECT DISTINCT ON (m.relid, m.pk) m.relid::oid, m.pk, m.key::text FROM " PS_SCHEMA ".write_mutation m "
	"WHERE m.write = $1 ORDER BY m.relid, m.pk, m.seq", 1, {INT8OID}
};

void
ps_catalog_write_target_set(int32 subid, const char *url, const char *headers_json)
{
	Datum		v[3] = {Int32GetDatum(subid), CStringGetTextDatum(url),
	headers_json ? CStringGetTextDatum(headers_json) : (Datum) 0};
	char		nulls[4] = {' ', ' ', headers_json ? ' ' : 'n', '\0'};

	run(&wt_set, v, nulls, false, 0, SPI_OK_INSERT);
}

void
ps_catalog_write_target_drop(int32 subid)
{
	Datum		v = Int32GetDatum(subid);

	run(&wt_drop, &v, NULL, false, 0, SPI_OK_DELETE);
}

/* Where the subscription's writes go; false when writes are off. */
bool
ps_catalog_write_target_get(int32 subid, char **url, char **headers_json)
{
	Datum		v = Int32GetDatum(subid);

	if (!have_writes())
		return false;
	run(&wt_get, &v, NULL, false, 1, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;
	*url = col_text(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	*headers_json = col_text(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	return true;
}

/* The write of the current transaction for the subscription, created on first use. */
int64
ps_catalog_write_open(int32 subid)
{
	Datum		v = Int32GetDatum(subid);
	bool		isnull;

	run(&w_open, &v, NULL, false, 0, SPI_OK_INSERT_RETURNING);
	return DatumGetInt64(first_value(&isnull));
}

int32
ps_catalog_write_next_seq(int64 write)
{
	Datum		v = Int64GetDatum(write);
	bool		isnull;

	run(&w_next_seq, &v, NULL, false, 0, SPI_OK_SELECT);
	return DatumGetInt32(first_value(&isnull));
}

void
ps_catalog_write_add(int64 write, int32 seq, Oid relid, const char *shape, const char *op,
					 const char *key, Datum pk, const char *value, const char *old_value)
{
	Datum		v[9] = {Int64GetDatum(write), Int32GetDatum(seq), ObjectIdGetDatum(relid),
		CStringGetTextDatum(shape), CStringGetTextDatum(op), CStringGetTextDatum(key), pk,
		value ? CStringGetTextDatum(value) : (Datum) 0,
	old_value ? CStringGetTextDatum(old_value) : (Datum) 0};
	char		nulls[10] = "         ";

	if (!value)
		nulls[7] = 'n';
	if (!old_value)
		nulls[8] = 'n';
	run(&w_add, v, nulls, false, 0, SPI_OK_INSERT);
}

/* The server's version of a row, kept before its first local change (row NULL: none). */
void
ps_catalog_write_base(Oid relid, Datum pk, const char *row, bool replace)
{
	Datum		v[3] = {ObjectIdGetDatum(relid), pk, row ? CStringGetTextDatum(row) : (Datum) 0};
	char		nulls[4] = {' ', ' ', row ? ' ' : 'n', '\0'};

	run(replace ? &w_base_set : &w_base_keep, v, nulls, false, 0, SPI_OK_INSERT);
}

/* The kept server version of a row: false when none is kept; *row NULL: no such row. */
bool
ps_catalog_write_base_get(Oid relid, Datum pk, char **row)
{
	Datum		v[2] = {ObjectIdGetDatum(relid), pk};

	run(&w_base_get, v, NULL, false, 1, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;
	*row = col_text(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	return true;
}

/* At COMMIT: the write's place in commit order; returns its subscription. */
int32
ps_catalog_write_stamp(int64 write)
{
	Datum		v = Int64GetDatum(write);
	bool		isnull;

	run(&w_stamp, &v, NULL, false, 0, SPI_OK_UPDATE_RETURNING);
	return SPI_processed ? DatumGetInt32(first_value(&isnull)) : 0;
}

/* The next write to upload, with its mutations (an SPI table: op, shape, key, value, old_value). */
bool
ps_catalog_write_next(int32 subid, PsWrite *w)
{
	Datum		v = Int32GetDatum(subid);
	bool		isnull;

	if (!have_writes())
		return false;
	run(&w_next, &v, NULL, false, 1, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;
	w->id = DatumGetInt64(first_value(&isnull));
	w->write_id = col_text(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	w->attempts = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	v = Int64GetDatum(w->id);
	run(&w_mutations, &v, NULL, false, 0, SPI_OK_SELECT);
	w->mutations = SPI_tuptable;
	w->nmutations = (int) SPI_processed;
	return true;
}

void
ps_catalog_write_sent(int64 id)
{
	Datum		v = Int64GetDatum(id);

	run(&w_sent, &v, NULL, false, 0, SPI_OK_UPDATE);
}

void
ps_catalog_write_answered(int64 id, char state, int status, const char *txid, const char *error,
						  const char *response)
{
	Datum		v[4] = {Int64GetDatum(id), (Datum) 0, Int32GetDatum(status), (Datum) 0};
	char		nulls[5] = "    ";

	if (state == 'a')
	{
		v[1] = txid ? CStringGetTextDatum(txid) : (Datum) 0;
		nulls[1] = txid ? ' ' : 'n';
		run(&w_acked, v, nulls, false, 0, SPI_OK_UPDATE);
	}
	else if (state == 'r')
	{
		v[1] = CStringGetTextDatum(error);
		v[3] = response ? CStringGetTextDatum(response) : (Datum) 0;
		nulls[3] = response ? ' ' : 'n';
		run(&w_rejected, v, nulls, false, 0, SPI_OK_UPDATE);
	}
	else
	{
		v[1] = CStringGetTextDatum(error);
		run(&w_failed, v, nulls, false, 0, SPI_OK_UPDATE);
	}
}

/* Is a write of the subscription being sent (its answer not recorded yet)? */
bool
ps_catalog_write_any_sent(int32 subid)
{
	Datum		v = Int32GetDatum(subid);
	bool		isnull;

	run(&w_any_sent, &v, NULL, false, 0, SPI_OK_SELECT);
	return DatumGetBool(first_value(&isnull));
}

/* A change with this txid was applied while a write was being sent. */
void
ps_catalog_write_seen(int32 subid, const char *txid)
{
	Datum		v[2] = {Int32GetDatum(subid), CStringGetTextDatum(txid)};

	run(&w_seen, v, NULL, false, 0, SPI_OK_INSERT);
}

/*
 * A write was acknowledged with txid: if its change was applied already
 * (before the answer came), it is synced now.  Returns whether it was.
 */
bool
ps_catalog_write_ack_seen(int32 subid, int64 write, const char *txid)
{
	Datum		v[2] = {Int32GetDatum(subid), CStringGetTextDatum(txid)};
	Datum		id = Int64GetDatum(write);
	bool		seen;

	run(&w_seen_take, v, NULL, false, 0, SPI_OK_DELETE);
	seen = SPI_processed > 0;
	if (seen)
	{
		run(&w_synced_id, &id, NULL, false, 0, SPI_OK_DELETE);
		ps_catalog_write_bases_cleanup();
	}
	/* nothing in flight any more: what was seen meanwhile can go */
	run(&w_seen_forget, v, NULL, false, 0, SPI_OK_DELETE);
	return seen;
}

/* txids of acknowledged writes waiting for their change (a List of char *). */
List *
ps_catalog_write_acked_txids(int32 subid, bool *any_pending)
{
	Datum		v = Int32GetDatum(subid);
	List	   *out = NIL;
	bool		isnull;

	*any_pending = false;
	if (!have_writes())
		return NIL;
	run(&w_any_pending, &v, NULL, false, 0, SPI_OK_SELECT);
	*any_pending = DatumGetBool(first_value(&isnull));
	if (!*any_pending)
		return NIL;
	run(&w_acked_txids, &v, NULL, false, 0, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
		out = lappend(out, col_text(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
	return out;
}

/* A change with this txid was applied: its write is synced. */
bool
ps_catalog_write_synced(int32 subid, const char *txid)
{
	Datum		v[2] = {Int32GetDatum(subid), CStringGetTextDatum(txid)};

	run(&w_synced_txid, v, NULL, false, 0, SPI_OK_DELETE);
	return SPI_processed > 0;
}

/* A write with nothing to upload: synced as it is. */
void
ps_catalog_write_forget(int64 write)
{
	Datum		id = Int64GetDatum(write);

	run(&w_synced_id, &id, NULL, false, 0, SPI_OK_DELETE);
	ps_catalog_write_bases_cleanup();
}

/* An up-to-date committed: writes acknowledged without a txid before it are synced. */
void
ps_catalog_write_synced_before(int32 subid, TimestampTz before)
{
	Datum		v[2] = {Int32GetDatum(subid), TimestampTzGetDatum(before)};

	if (!have_writes())
		return;
	run(&w_synced_untxid, v, NULL, false, 0, SPI_OK_DELETE);
	if (SPI_processed > 0)
		ps_catalog_write_bases_cleanup();
}

/* Server versions no write needs any more. */
void
ps_catalog_write_bases_cleanup(void)
{
	run(&w_bases_cleanup, NULL, NULL, false, 0, SPI_OK_DELETE);
}

bool
ps_catalog_write_row_pending(Oid relid, Datum pk)
{
	Datum		v[2] = {ObjectIdGetDatum(relid), pk};
	bool		isnull;

	run(&w_row_pending, v, NULL, false, 0, SPI_OK_SELECT);
	return DatumGetBool(first_value(&isnull));
}

/* Pending mutations of one row, in write order: an SPI table (op, key, value). */
SPITupleTable *
ps_catalog_write_row_mutations(Oid relid, Datum pk)
{
	Datum		v[2] = {ObjectIdGetDatum(relid), pk};

	run(&w_row_mutations, v, NULL, false, 0, SPI_OK_SELECT);
	return SPI_tuptable;
}

/* The rows a write touched: an SPI table (relid, pk, key). */
SPITupleTable *
ps_catalog_write_keys(int64 write)
{
	Datum		v = Int64GetDatum(write);

	run(&w_keys, &v, NULL, false, 0, SPI_OK_SELECT);
	return SPI_tuptable;
}

/* Rows of a table with pending writes: an SPI table (pk text[], key json text). */
SPITupleTable *
ps_catalog_write_rel_keys(Oid relid)
{
	Datum		v = ObjectIdGetDatum(relid);

	run(&w_rel_keys, &v, NULL, false, 0, SPI_OK_SELECT);
	return SPI_tuptable;
}

static Stmt w_lookup = {
	"SELECT w.state, s.owner::oid FROM " PS_SCHEMA ".write w JOIN " PS_SCHEMA ".subscription s ON s.id = w.subid "
	"WHERE w.write_id = $1::uuid", 1, {TEXTOID}
};
static Stmt w_discard = {
	"DELETE FROM " PS_SCHEMA ".write WHERE write_id = $1::uuid AND state = 'rejected'", 1, {TEXTOID}
};
static Stmt w_mark = {
	"SELECT coalesce(max(commit_seq), 0) FROM " PS_SCHEMA ".write WHERE subid = $1", 1, {INT4OID}
};
static Stmt w_left = {
	"SELECT count(*) FILTER (WHERE state <> 'rejected'), count(*) FILTER (WHERE state = 'rejected') "
	"FROM " PS_SCHEMA ".write WHERE subid = $1 AND commit_seq <= $2", 2, {INT4OID, INT8OID}
};

/* A write's state and its subscription's owner; 0 if there is no such write. */
int
ps_catalog_write_lookup(const char *write_id, char **state, Oid *owner)
{
	Datum		v = CStringGetTextDatum(write_id);
	bool		isnull;

	run(&w_lookup, &v, NULL, false, 1, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return 0;
	*state = col_text(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	*owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	return 1;
}

void
ps_catalog_write_discard(const char *write_id)
{
	Datum		v = CStringGetTextDatum(write_id);

	run(&w_discard, &v, NULL, false, 0, SPI_OK_DELETE);
	ps_catalog_write_bases_cleanup();
}

/* The commit order position of the last write committed so far. */
int64
ps_catalog_write_mark(int32 subid)
{
	Datum		v = Int32GetDatum(subid);
	bool		isnull;

	run(&w_mark, &v, NULL, false, 0, SPI_OK_SELECT);
	return DatumGetInt64(first_value(&isnull));
}

/* Writes up to mark not synced yet; *rejected: those of them rejected. */
int
ps_catalog_write_left(int32 subid, int64 mark, int *rejected)
{
	Datum		v[2] = {Int32GetDatum(subid), Int64GetDatum(mark)};
	bool		isnull;

	run(&w_left, v, NULL, false, 0, SPI_OK_SELECT);
	*rejected = (int) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	return (int) DatumGetInt64(first_value(&isnull));
}

/* ---- subset snapshots ------------------------------------------------------------- */

static Stmt subset_add = {
	"WITH s AS (INSERT INTO " PS_SCHEMA ".subset_snapshot (subid, shape, snap_xmin, snap_xmax, snap_xip, database_lsn) "
	"  VALUES ($1, $2, $3, $4, $5, $6) RETURNING id), "
	"k AS (INSERT INTO " PS_SCHEMA ".subset_key (subid, shape, snapshot, key) "
	"  SELECT DISTINCT $1, $2, s.id, k FROM s, pg_catalog.unnest($7::text[]) k RETURNING 1), "
	/* rows_applied counts a subset's rows like any others */
	"c AS (UPDATE " PS_SCHEMA ".shape_state SET rows_applied = rows_applied + $8 "
	"  WHERE subid = $1 AND shape = $2) "
	"SELECT id, (SELECT count(*) FROM k) FROM s",
	8, {INT4OID, TEXTOID, INT8OID, INT8OID, INT8ARRAYOID, INT8OID, TEXTARRAYOID, INT8OID}
};
static Stmt subset_load = {
	"SELECT id, snap_xmin, snap_xmax, snap_xip, database_lsn FROM " PS_SCHEMA ".subset_snapshot "
	"WHERE subid = $1 AND shape = $2 ORDER BY id", 2, {INT4OID, TEXTOID}
};
static Stmt subset_has_key = {
	"SELECT EXISTS (SELECT 1 FROM " PS_SCHEMA ".subset_key "
	"WHERE subid = $1 AND shape = $2 AND key = $3 AND snapshot = $4)", 4, {INT4OID, TEXTOID, TEXTOID, INT8OID}
};
static Stmt subset_retire = {
	"DELETE FROM " PS_SCHEMA ".subset_snapshot WHERE subid = $1 AND shape = $2 AND id = $3",
	3, {INT4OID, TEXTOID, INT8OID}
};
static Stmt subset_clear = {
	"DELETE FROM " PS_SCHEMA ".subset_snapshot WHERE subid = $1 AND shape = $2",
	2, {INT4OID, TEXTOID}
};

static Stmt subset_lock = {
	"SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pglite_sync subset'), $1)",
	1, {INT4OID}
};
static Stmt subset_lock_shared = {
	"SELECT pg_catalog.pg_advisory_xact_lock_shared(pg_catalog.hashtext('pglite_sync subset'), $1)",
	1, {INT4OID}
};

/*
 * request_snapshot takes it exclusively, every commit of a batch shared:
 * while a subset is fetched and loaded no batch of that subscription
 * commits, so the subset is never older than what the table holds.
 */
void
ps_catalog_subset_lock(int32 subid, bool exclusive)
{
	Datum		v = Int32GetDatum(subid);

	run(exclusive ? &subset_lock : &subset_lock_shared, &v, NULL, false, 0, SPI_OK_SELECT);
}

/* Record a subset snapshot and the keys it loaded; returns its id. */
int64
ps_catalog_subset_add(int32 subid, const char *shape, const PsSubset *snap, Datum keys,
					  int64 rows)
{
	Datum	   *xip = palloc(sizeof(Datum) * Max(snap->nxip, 1));
	Datum		v[8];
	bool		isnull;

	for (int i = 0; i < snap->nxip; i++)
		xip[i] = Int64GetDatum((int64) snap->xip[i]);
	v[0] = Int32GetDatum(subid);
	v[1] = CStringGetTextDatum(shape);
	v[2] = Int64GetDatum((int64) snap->xmin);
	v[3] = Int64GetDatum((int64) snap->xmax);
	v[4] = PointerGetDatum(construct_array(xip, snap->nxip, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	v[5] = Int64GetDatum((int64) snap->database_lsn);
	v[6] = keys;
	v[7] = Int64GetDatum(rows);
	run(&subset_add, v, NULL, false, 0, SPI_OK_SELECT);
	return DatumGetInt64(first_value(&isnull));
}

/* The shape's snapshots still merged with its stream, oldest first (a list of PsSubset). */
List *
ps_catalog_subset_load(int32 subid, const char *shape)
{
	Datum		v[2] = {Int32GetDatum(subid), CStringGetTextDatum(shape)};
	List	   *out = NIL;

	if (ps_catalog_layout() < PS_LAYOUT_0_2)
		return NIL;
	run(&subset_load, v, NULL, false, 0, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;
		PsSubset   *snap = palloc0(sizeof(PsSubset));
		bool		isnull;
		Datum	   *elems;
		bool	   *nulls;

		snap->id = DatumGetInt64(SPI_getbinval(t, d, 1, &isnull));
		snap->xmin = (uint64) DatumGetInt64(SPI_getbinval(t, d, 2, &isnull));
		snap->xmax = (uint64) DatumGetInt64(SPI_getbinval(t, d, 3, &isnull));
		deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(t, d, 4, &isnull)), INT8OID, 8,
						  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &elems, &nulls, &snap->nxip);
		snap->xip = palloc(sizeof(uint64) * Max(snap->nxip, 1));
		for (int k = 0; k < snap->nxip; k++)
			snap->xip[k] = (uint64) DatumGetInt64(elems[k]);
		snap->database_lsn = (uint64) DatumGetInt64(SPI_getbinval(t, d, 5, &isnull));
		out = lappend(out, snap);
	}
	return out;
}

bool
ps_catalog_subset_has_key(int32 subid, const char *shape, int64 snapshot, const char *key)
{
	Datum		v[4] = {Int32GetDatum(subid), CStringGetTextDatum(shape), CStringGetTextDatum(key),
	Int64GetDatum(snapshot)};
	bool		isnull;

	run(&subset_has_key, v, NULL, false, 0, SPI_OK_SELECT);
	return DatumGetBool(first_value(&isnull));
}

void
ps_catalog_subset_retire(int32 subid, const char *shape, int64 snapshot)
{
	Datum		v[3] = {Int32GetDatum(subid), CStringGetTextDatum(shape), Int64GetDatum(snapshot)};

	run(&subset_retire, v, NULL, false, 0, SPI_OK_DELETE);
}

/* A start from -1 replaces every row: no snapshot is merged any more. */
void
ps_catalog_subset_clear(int32 subid, const char *shape)
{
	Datum		v[2] = {Int32GetDatum(subid), CStringGetTextDatum(shape)};

	if (ps_catalog_layout() < PS_LAYOUT_0_2)
		return;
	run(&subset_clear, v, NULL, false, 0, SPI_OK_DELETE);
}

/* ---- shared tables ----------------------------------------------------------------- */

static Stmt shapes_on_table = {
	"SELECT count(*)::integer FROM " PS_SCHEMA ".subscription_shape WHERE relid = $1::oid::regclass",
	1, {OIDOID}
};

/* How many shapes of any subscription, running or not, sync into relid. */
int
ps_catalog_shapes_on_table(Oid relid)
{
	Datum		v = ObjectIdGetDatum(relid);
	bool		isnull;

	if (ps_catalog_layout() < PS_LAYOUT_0_2)
		return 1;
	run(&shapes_on_table, &v, NULL, false, 1, SPI_OK_SELECT);
	return DatumGetInt32(first_value(&isnull));
}

/* ---- holds ---------------------------------------------------------------------- */

static Stmt hold_take = {
	"INSERT INTO " PS_SCHEMA ".row_hold (relid, key, subid, shape, lsn) VALUES ($1, $2, $3, $4, $5) "
	"ON CONFLICT (relid, key, subid, shape) DO UPDATE SET lsn = GREATEST(row_hold.lsn, EXCLUDED.lsn)",
	5, {OIDOID, TEXTARRAYOID, INT4OID, TEXTOID, INT8OID}
};
static Stmt hold_lock = {
	"SELECT pg_catalog.pg_advisory_xact_lock(($1::pg_catalog.int8 << 32) | "
	"(pg_catalog.hashtext($2::pg_catalog.text)::pg_catalog.int8 & 4294967295))",
	2, {OIDOID, TEXTARRAYOID}
};
static Stmt hold_newer = {
	"SELECT EXISTS (SELECT 1 FROM " PS_SCHEMA ".row_hold WHERE relid = $1 AND key = $2 "
	"  AND (subid, shape) <> ($3, $4) AND lsn > $5)", 5, {OIDOID, TEXTARRAYOID, INT4OID, TEXTOID, INT8OID}
};
static Stmt hold_release = {
	"WITH gone AS (DELETE FROM " PS_SCHEMA ".row_hold WHERE relid = $1 AND key = $2 "
	"  AND subid = $3 AND shape = $4) "
	"SELECT EXISTS (SELECT 1 FROM " PS_SCHEMA ".row_hold WHERE relid = $1 AND key = $2 "
	"  AND (subid, shape) <> ($3, $4))", 4, {OIDOID, TEXTARRAYOID, INT4OID, TEXTOID}
};
static Stmt hold_drop = {
	"DELETE FROM " PS_SCHEMA ".row_hold WHERE relid = $1 AND subid = $2 AND shape = $3",
	3, {OIDOID, INT4OID, TEXTOID}
};

void
ps_catalog_hold_take(Oid relid, Datum key, int32 subid, const char *shape, uint64 lsn)
{
	Datum		v[5] = {ObjectIdGetDatum(relid), key, Int32GetDatum(subid), CStringGetTextDatum(shape),
	Int64GetDatum((int64) lsn)};

	run(&hold_take, v, NULL, false, 0, SPI_OK_INSERT);
}

/*
 * Serialise the shapes of a shared table on one row, until commit: a hold
 * is checked and changed by one worker at a time, each seeing the others'
 * committed holds (a separate statement, so a fresh snapshot, after the
 * lock).  Without it two workers could each keep a row for the other, or
 * delete one the other had just taken.
 */
void
ps_catalog_hold_lock(Oid relid, Datum key)
{
	Datum		v[2] = {ObjectIdGetDatum(relid), key};

	run(&hold_lock, v, NULL, false, 0, SPI_OK_SELECT);
}

/* Does another shape hold a version of the row newer than lsn? */
bool
ps_catalog_hold_newer(Oid relid, Datum key, int32 subid, const char *shape, uint64 lsn)
{
	Datum		v[5] = {ObjectIdGetDatum(relid), key, Int32GetDatum(subid), CStringGetTextDatum(shape),
	Int64GetDatum((int64) lsn)};
	bool		isnull;

	run(&hold_newer, v, NULL, false, 0, SPI_OK_SELECT);
	return DatumGetBool(first_value(&isnull));
}

bool
ps_catalog_hold_release(Oid relid, Datum key, int32 subid, const char *shape)
{
	Datum		v[4] = {ObjectIdGetDatum(relid), key, Int32GetDatum(subid), CStringGetTextDatum(shape)};
	bool		isnull;

	run(&hold_release, v, NULL, false, 0, SPI_OK_SELECT);
	return DatumGetBool(first_value(&isnull));
}

void
ps_catalog_hold_drop(Oid relid, int32 subid, const char *shape)
{
	Datum		v[3] = {ObjectIdGetDatum(relid), Int32GetDatum(subid), CStringGetTextDatum(shape)};

	run(&hold_drop, v, NULL, false, 0, SPI_OK_DELETE);
}

static Stmt other_shapes = {
	"SELECT subid, shape, primary_key, "
	"  EXISTS (SELECT 1 FROM " PS_SCHEMA ".subscription_shape WHERE relid = $1::oid::regclass AND subid = $2) "
	"FROM " PS_SCHEMA ".subscription_shape "
	"WHERE relid = $1::oid::regclass AND subid <> $2", 2, {OIDOID, INT4OID}
};

/*
 * A shape of subscription subid is about to sync into relid.  If exactly
 * one other shape syncs there, the table becomes shared now: that shape
 * holds every row the table has (its stale holds from an earlier time
 * shared are dropped first), taken while the table is locked against its
 * worker.  Not when subid already had a shape there (taken up again after
 * unsubscribe): the table has been shared all along, with every hold kept.
 * Every shape of a shared table must use the same key.
 */
void
ps_catalog_share_table(Oid relid, int32 subid, const char *target, List *pk)
{
	Datum		v[2] = {ObjectIdGetDatum(relid), Int32GetDatum(subid)};
	int32		other_subid;
	char	   *other_shape;
	List	   *other_pk;
	bool		isnull;
	StringInfoData sql;
	Relation	rel;
	int			rc;

	run(&other_shapes, v, NULL, false, 0, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		List	   *theirs = col_text_array(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3);
		bool		same = list_length(theirs) == list_length(pk);
		ListCell   *lc;

		foreach(lc, theirs)
		{
			ListCell   *k;
			bool		found = false;

			foreach(k, pk)
				found |= strcmp(lfirst(k), lfirst(lc)) == 0;
			same &= found;
		}
		if (!same)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
					 errmsg("primary_key does not match the key that subscription %d uses for table %s",
							DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull)),
							target),
					 errhint("Shapes that sync into one table must identify rows by the same columns.")));
	}
	if (SPI_processed != 1 ||
		DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull)))
		return;
	other_subid = DatumGetInt32(first_value(&isnull));
	other_shape = col_text(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	other_pk = col_text_array(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);

	rel = table_open(relid, ShareLock);
	ps_catalog_hold_drop(relid, other_subid, other_shape);
	initStringInfo(&sql);
	/*
	 * Its rows are as new as its committed position (the LSN of its offset):
	 * a newcomer replaying older changes must not overwrite them.
	 */
	appendStringInfo(&sql, "INSERT INTO " PS_SCHEMA ".row_hold (relid, key, subid, shape, lsn) "
					 "SELECT %u, ", relid);
	ps_hold_key_expr(rel, other_pk, "t", &sql);
	appendStringInfo(&sql, ", %d, %s, COALESCE((SELECT pg_catalog.split_part(\"offset\", '_', 1)::pg_catalog.int8 "
					 "FROM " PS_SCHEMA ".shape_state WHERE subid = %d AND shape = %s AND \"offset\" ~ '^[0-9]+_'), 0) "
					 "FROM %s t ON CONFLICT DO NOTHING", other_subid,
					 quote_literal_cstr(other_shape), other_subid, quote_literal_cstr(other_shape),
					 quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												RelationGetRelationName(rel)));
	{
		PsCatalogGuard g;

		ps_catalog_enter(&g);
		rc = SPI_execute(sql.data, false, 0);
		ps_catalog_leave(&g);
	}
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "pglite_sync: could not record the rows of table %s: %s", target,
			 SPI_result_code_string(rc));
	table_close(rel, NoLock);
}

/* ---- table-backed spools (host-driven shapes) --------------------------------------- */

static Stmt spool_write = {
	"INSERT INTO " PS_SCHEMA ".spool_block (subid, shape, seq, data) VALUES ($1, $2, $3, $4)",
	4, {INT4OID, TEXTOID, INT8OID, BYTEAOID}
};
static Stmt spool_read = {
	"SELECT seq, data FROM " PS_SCHEMA ".spool_block WHERE subid = $1 AND shape = $2 "
	"AND seq <= $3 ORDER BY seq DESC LIMIT 1", 3, {INT4OID, TEXTOID, INT8OID}
};
static Stmt spool_truncate = {
	"WITH cut AS (UPDATE " PS_SCHEMA ".spool_block SET data = pg_catalog.substring(data, 1, ($3 - seq)::integer) "
	"  WHERE subid = $1 AND shape = $2 AND seq < $3 AND seq + pg_catalog.length(data) > $3) "
	"DELETE FROM " PS_SCHEMA ".spool_block WHERE subid = $1 AND shape = $2 AND seq >= $3",
	3, {INT4OID, TEXTOID, INT8OID}
};
static Stmt spool_end = {
	"SELECT seq + pg_catalog.length(data) FROM " PS_SCHEMA ".spool_block WHERE subid = $1 AND shape = $2 "
	"ORDER BY seq DESC LIMIT 1", 2, {INT4OID, TEXTOID}
};
static Stmt spool_drop_before = {
	"DELETE FROM " PS_SCHEMA ".spool_block WHERE subid = $1 AND shape = $2 "
	"AND seq + pg_catalog.length(data) <= $3", 3, {INT4OID, TEXTOID, INT8OID}
};

void
ps_catalog_spool_write(int32 subid, const char *shape, int64 at, const char *data, int len)
{
	bytea	   *b = palloc(VARHDRSZ + len);
	Datum		v[4];

	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), data, len);
	v[0] = Int32GetDatum(subid);
	v[1] = CStringGetTextDatum(shape);
	v[2] = Int64GetDatum(at);
	v[3] = PointerGetDatum(b);
	run(&spool_write, v, NULL, false, 0, SPI_OK_INSERT);
	pfree(b);
}

/*
 * Read want bytes at logical offset at, across blocks; returns bytes read.
 * Each block is detoasted in a context of its own and freed with its SPI
 * result, so reading a large spool costs one block of memory, not all.
 */
int
ps_catalog_spool_read(int32 subid, const char *shape, int64 at, char *buf, int want)
{
	int			got = 0;
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "pglite_sync spool block",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);

	while (got < want)
	{
		Datum		v[3] = {Int32GetDatum(subid), CStringGetTextDatum(shape), Int64GetDatum(at + got)};
		bool		isnull;
		int64		seq;
		bytea	   *data;
		int64		skip;
		int			n;

		run(&spool_read, v, NULL, false, 1, SPI_OK_SELECT);
		if (SPI_processed != 1)
			break;
		seq = DatumGetInt64(first_value(&isnull));
		data = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		skip = at + got - seq;
		if (skip >= VARSIZE_ANY_EXHDR(data))
			break;
		n = (int) Min((int64) (want - got), (int64) VARSIZE_ANY_EXHDR(data) - skip);
		memcpy(buf + got, VARDATA_ANY(data) + skip, n);
		got += n;
		SPI_freetuptable(SPI_tuptable);
		MemoryContextReset(cxt);
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	return got;
}

void
ps_catalog_spool_truncate(int32 subid, const char *shape, int64 at)
{
	Datum		v[3] = {Int32GetDatum(subid), CStringGetTextDatum(shape), Int64GetDatum(at)};

	run(&spool_truncate, v, NULL, false, 0, SPI_OK_DELETE);
}

/* The logical end of a shape's last spooled block; 0 when it has none. */
int64
ps_catalog_spool_end(int32 subid, const char *shape)
{
	Datum		v[2] = {Int32GetDatum(subid), CStringGetTextDatum(shape)};
	bool		isnull;

	run(&spool_end, v, NULL, true, 1, SPI_OK_SELECT);
	return SPI_processed == 1 ? DatumGetInt64(first_value(&isnull)) : 0;
}

#ifdef __PGLITE__
static Stmt spool_empty = {
	"SELECT NOT EXISTS (SELECT FROM " PS_SCHEMA ".spool_block)", 0, {0}
};
static Stmt spool_reset = {
	"TRUNCATE " PS_SCHEMA ".spool_block", 0, {0}
};
#endif

/*
 * Once nothing is spooled any more, give the table's space back.  PGlite
 * runs no autovacuum: the blocks of every applied batch would stay in
 * electric.spool_block (and its TOAST table) as dead rows for good, about
 * 20 MB per 100,000-row snapshot, and a growing file costs more to extend.
 * A server's autovacuum reclaims them without the exclusive lock.
 */
void
ps_catalog_spool_reclaim(void)
{
#ifdef __PGLITE__
	bool		isnull;

	/* not read-only: it must see the DELETE just run in this transaction */
	run(&spool_empty, NULL, NULL, false, 1, SPI_OK_SELECT);
	if (DatumGetBool(first_value(&isnull)))
		run(&spool_reset, NULL, NULL, false, 0, SPI_OK_UTILITY);
#endif
}

void
ps_catalog_spool_drop_before(int32 subid, const char *shape, int64 base)
{
	Datum		v[3] = {Int32GetDatum(subid), CStringGetTextDatum(shape), Int64GetDatum(base)};

	run(&spool_drop_before, v, NULL, false, 0, SPI_OK_DELETE);
}

/* ---- the SQL API's writes ---------------------------------------------------------- */

static Stmt lock_catalog = {
	"LOCK TABLE " PS_SCHEMA ".subscription IN SHARE ROW EXCLUSIVE MODE", 0, {0}
};

/*
 * Serialise subscription changes (checks across rows need a stable view).
 * Workers never take this lock, nor any row lock on subscription, while
 * they apply a batch: management never waits for one.
 */
void
ps_catalog_lock(void)
{
	run(&lock_catalog, NULL, NULL, false, 0, SPI_OK_UTILITY);
}

static Stmt lock_sub = {
	"SELECT s.id, s.name, s.owner::oid, s.enabled, s.shape_key IS NOT NULL, s.worker, "
	"(SELECT count(*)::integer FROM " PS_SCHEMA ".subscription_shape p WHERE p.subid = s.id) "
	"FROM " PS_SCHEMA ".subscription s WHERE s.name = $1 FOR UPDATE",
	1, {TEXTOID}
};

bool
ps_catalog_lock_subscription(const char *name, PsSubRow *row)
{
	Datum		v = CStringGetTextDatum(name);
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;

	run(&lock_sub, &v, NULL, false, 1, SPI_OK_SELECT);
	if (SPI_processed != 1)
		return false;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	row->id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
	row->name = col_text(tup, desc, 2);
	row->owner = col_oid(tup, desc, 3);
	row->enabled = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
	row->keyed = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
	row->worker = DatumGetBool(SPI_getbinval(tup, desc, 6, &isnull));
	row->nshapes = DatumGetInt32(SPI_getbinval(tup, desc, 7, &isnull));
	return true;
}

static Stmt insert_sub = {
	"WITH n AS (SELECT pg_catalog.nextval('" PS_SCHEMA ".subscription_id_seq')::integer AS id) "
	"INSERT INTO " PS_SCHEMA ".subscription (id, name, shape_key, owner, initial_insert_method, "
	"  headers_function, worker) "
	"SELECT n.id, coalesce($1, CASE WHEN EXISTS (SELECT 1 FROM " PS_SCHEMA ".subscription s "
	"  WHERE s.name = $2 || '_' || n.id) "
	"  THEN $2 || '_' || n.id || '_' || pg_catalog.substr(pg_catalog.md5(pg_catalog.random()::text), 1, 6) "
	"  ELSE $2 || '_' || n.id END), "
	"$1, $3::oid::regrole, $4, $5::oid::regprocedure, $6 FROM n RETURNING id, name",
	6, {TEXTOID, TEXTOID, OIDOID, TEXTOID, OIDOID, BOOLOID}
};

int32
ps_catalog_insert_subscription(const char *shape_key, const char *name_base, Oid owner,
							   const char *method, Oid headers_function, bool worker,
							   char **name_out)
{
	Datum		v[6];
	char		n[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;

	v[0] = text_or_null(shape_key, &n[0]);
	v[1] = CStringGetTextDatum(name_base);
	v[2] = ObjectIdGetDatum(owner);
	v[3] = CStringGetTextDatum(method);
	v[4] = ObjectIdGetDatum(headers_function);
	n[4] = OidIsValid(headers_function) ? ' ' : 'n';
	v[5] = BoolGetDatum(worker);
	run(&insert_sub, v, n, false, 0, SPI_OK_INSERT_RETURNING);
	*name_out = col_text(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	return DatumGetInt32(first_value(&isnull));
}

/*
 * Whether it is a group (sync_shapes_to_tables), even of one member: the
 * view shows a group's shapes only in subscription_shapes.
 */
static Stmt set_group = {
	"UPDATE " PS_SCHEMA ".subscription SET is_group = $2 WHERE id = $1", 2, {INT4OID, BOOLOID}
};

void
ps_catalog_set_group(int32 subid, bool is_group)
{
	Datum		v[2] = {Int32GetDatum(subid), BoolGetDatum(is_group)};

	if (ps_catalog_layout() < PS_LAYOUT_0_6)
		return;					/* older SQL objects tell a group by its shape count */
	run(&set_group, v, NULL, false, 0, SPI_OK_UPDATE);
}

static Stmt reenable_sub = {
	"UPDATE " PS_SCHEMA ".subscription SET owner = $2::oid::regrole, enabled = true, "
	"version = version + 1, initial_insert_method = $3, "
	"headers_function = $4::oid::regprocedure, worker = $5 WHERE id = $1",
	5, {INT4OID, OIDOID, TEXTOID, OIDOID, BOOLOID}
};

void
ps_catalog_reenable_subscription(int32 subid, Oid owner, const char *method,
								 Oid headers_function, bool worker)
{
	Datum		v[5];
	char		n[5] = {' ', ' ', ' ', ' ', ' '};

	v[0] = Int32GetDatum(subid);
	v[1] = ObjectIdGetDatum(owner);
	v[2] = CStringGetTextDatum(method);
	v[3] = ObjectIdGetDatum(headers_function);
	n[3] = OidIsValid(headers_function) ? ' ' : 'n';
	v[4] = BoolGetDatum(worker);
	run(&reenable_sub, v, n, false, 0, SPI_OK_UPDATE);
}

/*
 * A resubscribe replaces the shape definitions.  Stored stream state stays
 * with the shapes that come back under the same name (their fingerprint
 * decides whether it is resumed); shapes that go are deleted with their
 * state and holds.
 */
static Stmt upsert_shape = {
	"INSERT INTO " PS_SCHEMA ".subscription_shape AS p (subid, shape, position, relid, "
	" schema_name, table_name, primary_key, shape_url, shape_params, shape_headers, shape_options, "
	" map_columns, map_function, on_must_refetch, target_fingerprint) "
	"SELECT $1, d->>'shape', (d->>'position')::integer, (d->>'relid')::oid::regclass, "
	" d->>'schema_name', d->>'table_name', $3, $2::jsonb->>'url', $2::jsonb->'params', "
	" $2::jsonb->'headers', "
	" NULLIF($2::jsonb OPERATOR(pg_catalog.-) ARRAY['url', 'params', 'headers'], '{}'::jsonb), "
	" d->'map_columns', (d->>'map_function')::oid::regprocedure, "
	" (d->>'on_must_refetch')::oid::regprocedure, "
	/* the 0.1.0 fingerprint, so that an upgraded subscription resumes */
	" pg_catalog.md5(pg_catalog.concat_ws('|', d->>'relid', $3::text, (d->'map_columns')::text, "
	"  d->>'map_function', $5::text)) "
	"FROM (SELECT $4::jsonb AS d) x "
	"ON CONFLICT (subid, shape) DO UPDATE SET position = EXCLUDED.position, "
	" relid = EXCLUDED.relid, schema_name = EXCLUDED.schema_name, "
	" table_name = EXCLUDED.table_name, primary_key = EXCLUDED.primary_key, "
	" shape_url = EXCLUDED.shape_url, shape_params = EXCLUDED.shape_params, "
	" shape_headers = EXCLUDED.shape_headers, shape_options = EXCLUDED.shape_options, "
	" map_columns = EXCLUDED.map_columns, "
	" map_function = EXCLUDED.map_function, on_must_refetch = EXCLUDED.on_must_refetch, "
	" target_fingerprint = EXCLUDED.target_fingerprint",
	5, {INT4OID, TEXTOID, TEXTARRAYOID, TEXTOID, OIDOID}
};
static Stmt delete_other_shapes = {
	"DELETE FROM " PS_SCHEMA ".subscription_shape WHERE subid = $1 AND shape <> ALL ($2)",
	2, {INT4OID, TEXTARRAYOID}
};

void
ps_catalog_put_shape(int32 subid, const PsShapeDef *def, const char *shape_json,
					 Datum primary_key, Oid owner)
{
	StringInfoData d;
	Datum		v[5];

	/* one JSON document for the scalars: fewer parameters to keep in order */
	initStringInfo(&d);
	appendStringInfoString(&d, "{\"shape\": ");
	escape_json(&d, def->name);
	appendStringInfo(&d, ", \"position\": %d, \"relid\": %u, \"schema_name\": ",
					 def->position, def->relid);
	escape_json(&d, def->schema_name);
	appendStringInfoString(&d, ", \"table_name\": ");
	escape_json(&d, def->table_name);
	if (def->map_columns)
		appendStringInfo(&d, ", \"map_columns\": %s", def->map_columns);
	if (OidIsValid(def->map_function))
		appendStringInfo(&d, ", \"map_function\": %u", def->map_function);
	if (OidIsValid(def->on_must_refetch))
		appendStringInfo(&d, ", \"on_must_refetch\": %u", def->on_must_refetch);
	appendStringInfoChar(&d, '}');

	v[0] = Int32GetDatum(subid);
	v[1] = CStringGetTextDatum(shape_json);
	v[2] = primary_key;
	v[3] = CStringGetTextDatum(d.data);
	v[4] = ObjectIdGetDatum(owner);
	run(&upsert_shape, v, NULL, false, 0, SPI_OK_INSERT);
}

void
ps_catalog_keep_shapes(int32 subid, Datum names)
{
	Datum		v[2] = {Int32GetDatum(subid), names};

	run(&delete_other_shapes, v, NULL, false, 0, SPI_OK_DELETE);
}

static Stmt disable_sub = {
	"UPDATE " PS_SCHEMA ".subscription SET enabled = false WHERE id = $1", 1, {INT4OID}
};
static Stmt delete_sub = {
	"DELETE FROM " PS_SCHEMA ".subscription WHERE id = $1", 1, {INT4OID}
};

void
ps_catalog_disable(int32 subid)
{
	Datum		v = Int32GetDatum(subid);

	run(&disable_sub, &v, NULL, false, 0, SPI_OK_UPDATE);
}

void
ps_catalog_delete(int32 subid)
{
	Datum		v = Int32GetDatum(subid);

	run(&delete_sub, &v, NULL, false, 0, SPI_OK_DELETE);
}

static Stmt alter_url = {
	"UPDATE " PS_SCHEMA ".subscription_shape SET shape_url = $2 WHERE subid = $1 "
	"AND shape_url IS DISTINCT FROM $2",
	2, {INT4OID, TEXTOID}
};
static Stmt alter_headers = {
	"UPDATE " PS_SCHEMA ".subscription_shape SET shape_headers = "
	"CASE WHEN $2::jsonb = '{}'::jsonb THEN NULL ELSE $2::jsonb END WHERE subid = $1 "
	"AND shape_headers IS DISTINCT FROM CASE WHEN $2::jsonb = '{}'::jsonb THEN NULL ELSE $2::jsonb END",
	2, {INT4OID, TEXTOID}
};
static Stmt alter_function = {
	"UPDATE " PS_SCHEMA ".subscription SET headers_function = $2::oid::regprocedure "
	"WHERE id = $1 AND headers_function IS DISTINCT FROM $2::oid::regprocedure", 2, {INT4OID, OIDOID}
};
/* a host-driven subscription asks at once with new values, as a worker does */
static Stmt alter_wakes_host = {
	"UPDATE " PS_SCHEMA ".shape_state SET stream = pg_catalog.jsonb_set(stream, '{retry_at}', '0') "
	"WHERE subid = $1 AND stream ? 'retry_at'", 1, {INT4OID}
};
/*
 * alter_subscription: where and how the worker asks.  The version stays: a
 * batch the worker is applying meanwhile still commits, and the position is
 * kept (the fingerprint does not change).  The worker rereads at COMMIT; a
 * host-driven subscription's next request waits no more if a value changed.
 */
void
ps_catalog_alter(int32 subid, bool worker, const char *shape_url, const char *headers_json,
				 bool set_headers_function, Oid headers_function)
{
	Datum		v[2];
	char		n[2] = {' ', ' '};
	uint64		changed = 0;

	v[0] = Int32GetDatum(subid);
	if (shape_url)
	{
		v[1] = CStringGetTextDatum(shape_url);
		run(&alter_url, v, NULL, false, 0, SPI_OK_UPDATE);
		changed += SPI_processed;
	}
	if (headers_json)
	{
		v[1] = CStringGetTextDatum(headers_json);
		run(&alter_headers, v, NULL, false, 0, SPI_OK_UPDATE);
		changed += SPI_processed;
	}
	if (set_headers_function)
	{
		v[1] = ObjectIdGetDatum(headers_function);
		n[1] = OidIsValid(headers_function) ? ' ' : 'n';
		run(&alter_function, v, n, false, 0, SPI_OK_UPDATE);
		changed += SPI_processed;
	}
	if (changed > 0 && !worker)
		run(&alter_wakes_host, v, NULL, false, 0, SPI_OK_UPDATE);
}

/* Was the subscription row written by the current transaction? */
static Stmt row_xmin = {
	"SELECT xmin::text::bigint FROM " PS_SCHEMA ".subscription WHERE id = $1", 1, {INT4OID}
};

bool
ps_catalog_changed_here(int32 subid)
{
	Datum		v = Int32GetDatum(subid);
	bool		isnull;

	run(&row_xmin, &v, NULL, false, 1, SPI_OK_SELECT);
	if (SPI_processed != 1)
		return false;
	return TransactionIdIsCurrentTransactionId((TransactionId)
											   DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
																		   SPI_tuptable->tupdesc, 1, &isnull)));
}
