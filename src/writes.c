/*
 * writes.c
 *	  Local writes, the database side: electric.enable_writes() puts a
 *	  capture trigger on every table of the subscription; each local INSERT,
 *	  UPDATE and DELETE (not the sync's own) becomes a mutation of the
 *	  transaction's write, in the same transaction, with the server's version
 *	  of the row kept before its first local change.  At COMMIT a deferred
 *	  trigger gives the write its place in commit order and wakes the
 *	  worker, which uploads it (upload.c).  Also disable_writes, discard_write
 *	  and wait_for_writes.
 */
#include "pglite_sync.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "apply.h"
#include "catalog.h"
#include "json.h"
#include "jsonutil.h"
#include "optimistic.h"
#include "protocol.h"
#include "shapeopts.h"

PG_FUNCTION_INFO_V1(ps_enable_writes);
PG_FUNCTION_INFO_V1(ps_disable_writes);
PG_FUNCTION_INFO_V1(ps_discard_write);
PG_FUNCTION_INFO_V1(ps_wait_for_writes);
PG_FUNCTION_INFO_V1(ps_capture_write);
PG_FUNCTION_INFO_V1(ps_stamp_write);

/* ---- capture ------------------------------------------------------------------------ */

/*
 * The write of the current transaction, per subscription: the transaction's
 * end clears it.  Its row belongs to the subtransaction that created it
 * (cached_subxid): an abort of that one takes the row away, so the cache
 * goes too; a subcommit hands it to the parent.
 */
static bool cached_valid;
static SubTransactionId cached_subxid;
static int32 cached_subid;
static int64 cached_write;
static int32 cached_seq;

/*
 * The engine's own applies are not captured.  electric.syncing tells user
 * triggers about them, but any session can set it: capture goes by this
 * flag, which only the engine sets, and which an abort of the
 * (sub)transaction that set it or the transaction's end clears.
 */
static bool engine_applying;
static SubTransactionId engine_subxid;

static bool callbacks_registered;

static void
writes_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		if (cached_valid && cached_subxid == mySubid)
			cached_valid = false;
		if (engine_applying && engine_subxid == mySubid)
			engine_applying = false;
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		if (cached_valid && cached_subxid == mySubid)
			cached_subxid = parentSubid;
		if (engine_applying && engine_subxid == mySubid)
			engine_subxid = parentSubid;
	}
}

static void
writes_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
	{
		cached_valid = false;
		engine_applying = false;
	}
}

static void
register_callbacks(void)
{
	if (callbacks_registered)
		return;
	RegisterXactCallback(writes_xact_callback, NULL);
	RegisterSubXactCallback(writes_subxact_callback, NULL);
	callbacks_registered = true;
}

/* The engine starts applying; returns what to pass to ps_writes_engine_end. */
bool
ps_writes_engine_begin(void)
{
	bool		was = engine_applying;

	register_callbacks();
	if (!was)
	{
		engine_applying = true;
		engine_subxid = GetCurrentSubTransactionId();
	}
	return was;
}

void
ps_writes_engine_end(bool was)
{
	if (!was)
		engine_applying = false;
}

/* A row's columns (all, or those in cols) as a JSON object of text values. */
static char *
row_json(Relation rel, HeapTuple tup, Bitmapset *cols)
{
	TupleDesc	desc = RelationGetDescr(rel);
	StringInfoData b;
	bool		first = true;

	initStringInfo(&b);
	appendStringInfoChar(&b, '{');
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		bool		isnull;
		Datum		d;

		/* generated columns are the table's own business, on every side */
		if (att->attisdropped || att->attgenerated || (cols && !bms_is_member(att->attnum, cols)))
			continue;
		d = heap_getattr(tup, att->attnum, desc, &isnull);
		if (!first)
			appendStringInfoString(&b, ", ");
		first = false;
		escape_json(&b, NameStr(att->attname));
		appendStringInfoString(&b, ": ");
		if (isnull)
			appendStringInfoString(&b, "null");
		else
		{
			Oid			out;
			bool		varlena;

			getTypeOutputInfo(att->atttypid, &out, &varlena);
			escape_json(&b, OidOutputFunctionCall(out, d));
		}
	}
	appendStringInfoChar(&b, '}');
	return b.data;
}

/* The key columns of the trigger's table, named in its arguments after subid and shape. */
static Bitmapset *
key_columns(Relation rel, Trigger *tg, AttrNumber *attnos, int *n)
{
	Bitmapset  *set = NULL;

	*n = 0;
	for (int i = 2; i < tg->tgnargs; i++)
	{
		int			attno = SPI_fnumber(RelationGetDescr(rel), tg->tgargs[i]);

		if (attno <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("primary key column \"%s\" of table %s is gone: writes cannot be recorded",
							tg->tgargs[i], RelationGetRelationName(rel)),
					 errhint("Call electric.disable_writes() and enable_writes() again.")));
		attnos[(*n)++] = (AttrNumber) attno;
		set = bms_add_member(set, attno);
	}
	return set;
}

/* The key as holds store it (text[]), so that the sync finds the row's writes. */
static Datum
row_pk(Relation rel, HeapTuple tup, AttrNumber *attnos, int n)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Datum	   *elems = palloc(sizeof(Datum) * n);
	StringInfoData b;

	initStringInfo(&b);
	for (int i = 0; i < n; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, attnos[i] - 1);
		bool		isnull;
		Datum		d = heap_getattr(tup, attnos[i], desc, &isnull);
		Oid			send = ps_type_send_function(att->atttypid);
		FmgrInfo	send_fn;
		FmgrInfo	out_fn;
		Oid			out;
		bool		varlena;

		if (isnull)
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("a row of table %s has no value for key column \"%s\": writes need a key",
							RelationGetRelationName(rel), NameStr(att->attname))));
		getTypeOutputInfo(att->atttypid, &out, &varlena);
		fmgr_info(out, &out_fn);
		if (OidIsValid(send))
			fmgr_info(send, &send_fn);
		resetStringInfo(&b);
		ps_key_part(&b, OidIsValid(send) ? &send_fn : NULL, &out_fn, d);
		elems[i] = CStringGetTextDatum(b.data);
	}
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/* Columns whose values differ between old and new (by their text). */
static Bitmapset *
changed_columns(Relation rel, HeapTuple old, HeapTuple new)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Bitmapset  *changed = NULL;

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		bool		n1,
					n2;
		Datum		d1,
					d2;

		if (att->attisdropped)
			continue;
		d1 = heap_getattr(old, att->attnum, desc, &n1);
		d2 = heap_getattr(new, att->attnum, desc, &n2);
		if (n1 != n2)
			changed = bms_add_member(changed, att->attnum);
		else if (!n1)
		{
			Oid			out;
			bool		varlena;

			getTypeOutputInfo(att->atttypid, &out, &varlena);
			if (strcmp(OidOutputFunctionCall(out, d1), OidOutputFunctionCall(out, d2)) != 0)
				changed = bms_add_member(changed, att->attnum);
		}
	}
	return changed;
}

static void
record(int32 subid, const char *shape, Relation rel, const char *op, HeapTuple key_row,
	   AttrNumber *attnos, int npk, Bitmapset *pkset, const char *value, const char *old_value,
	   HeapTuple base_row, bool base_none)
{
	Datum		pk = row_pk(rel, key_row, attnos, npk);
	char	   *key = row_json(rel, key_row, pkset);

	register_callbacks();
	if (!cached_valid || cached_subid != subid)
	{
		cached_write = ps_catalog_write_open(subid);
		cached_seq = ps_catalog_write_next_seq(cached_write);
		cached_subid = subid;
		cached_subxid = GetCurrentSubTransactionId();
		cached_valid = true;
	}
	/* the server's version before this transaction's first change of the row */
	ps_catalog_write_base(RelationGetRelid(rel), pk,
						  base_none ? NULL : row_json(rel, base_row, NULL), false);
	ps_catalog_write_add(cached_write, cached_seq++, RelationGetRelid(rel), shape, op, key, pk,
						 value, old_value);
}

/*
 * AFTER ROW trigger on a synced table with writes on; arguments: the
 * subscription's id, the shape's name, the key columns.  The sync's own
 * writes (engine_applying) are not recorded.
 */
Datum
ps_capture_write(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;
	Trigger    *tg;
	int32		subid;
	const char *shape;
	AttrNumber	attnos[INDEX_MAX_KEYS];
	int			npk;
	Bitmapset  *pkset;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(td->tg_event) ||
		!TRIGGER_FIRED_AFTER(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("electric._capture_write() must be an AFTER ROW trigger")));
	if (engine_applying)
		return PointerGetDatum(NULL);
	rel = td->tg_relation;
	tg = td->tg_trigger;
	if (tg->tgnargs < 3)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("electric._capture_write() needs the subscription, the shape and the key columns")));
	subid = pg_strtoint32(tg->tgargs[0]);
	shape = tg->tgargs[1];
	pkset = key_columns(rel, tg, attnos, &npk);

	SPI_connect();
	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
		record(subid, shape, rel, "insert", td->tg_trigtuple, attnos, npk, pkset,
			   row_json(rel, td->tg_trigtuple, NULL), NULL, NULL, true);
	else if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
		record(subid, shape, rel, "delete", td->tg_trigtuple, attnos, npk, pkset,
			   NULL, NULL, td->tg_trigtuple, false);
	else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		HeapTuple	old = td->tg_trigtuple;
		HeapTuple	new = td->tg_newtuple;
		Bitmapset  *changed = changed_columns(rel, old, new);

		if (bms_overlap(changed, pkset))
		{
			/* a key change: a delete, then an insert */
			record(subid, shape, rel, "delete", old, attnos, npk, pkset, NULL, NULL, old, false);
			record(subid, shape, rel, "insert", new, attnos, npk, pkset,
				   row_json(rel, new, NULL), NULL, NULL, true);
		}
		else if (!bms_is_empty(changed))
			record(subid, shape, rel, "update", old, attnos, npk, pkset,
				   row_json(rel, new, changed), row_json(rel, old, changed), old, false);
	}
	SPI_finish();
	return PointerGetDatum(NULL);
}

/*
 * Deferred trigger on electric.write: at COMMIT the write takes its place
 * in commit order (serialised until the commit ends), and the worker is
 * told there is something to upload.
 */
Datum
ps_stamp_write(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	bool		isnull;
	int64		id;
	int32		subid;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("electric._stamp_write() must be called as a trigger")));
	id = DatumGetInt64(heap_getattr(td->tg_trigtuple, 1, RelationGetDescr(td->tg_relation), &isnull));
	SPI_connect();
	subid = ps_catalog_write_stamp(id);
	SPI_finish();
	if (subid != 0)
		ps_at_commit(PS_ACTION_WRITES, subid, InvalidOid);
	return PointerGetDatum(NULL);
}

/* ---- enable_writes / disable_writes --------------------------------------------------- */

static PsSubscription *
owned_subscription(const char *name, MemoryContext cxt)
{
	PsSubscription *sub;

	ps_catalog_require_current();
	if (ps_catalog_layout() < PS_LAYOUT_0_3)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"%s\" must be updated to version %s for local writes",
						PS_EXTENSION_NAME, PS_VERSION),
				 errhint("Run ALTER EXTENSION %s UPDATE.", PS_EXTENSION_NAME)));
	sub = ps_catalog_load_owned(name, GetUserId(), cxt);
	return sub;
}

static char *
trigger_name(PsSubscription *sub, PsShapeDef *def)
{
	return psprintf("pglite_sync_writes_%d_%d", sub->id, def->position);
}

/* (a catalog query: PGlite does not export get_trigger_oid) */
static bool
trigger_exists(Oid relid, const char *name)
{
	Oid			types[2] = {OIDOID, TEXTOID};
	Datum		values[2] = {ObjectIdGetDatum(relid), CStringGetTextDatum(name)};

	if (SPI_execute_with_args("SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = $1 AND tgname = $2::pg_catalog.name",
							  2, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "pglite_sync: could not look up the capture trigger");
	return SPI_processed > 0;
}

/*
 * Our capture triggers go as the extension's owner: dropping a trigger takes
 * the table's ownership, which the subscription's owner may not have (it
 * needed TRIGGER to make them).
 */
static void
drop_triggers(PsSubscription *sub)
{
	PsCatalogGuard g;

	ps_catalog_enter(&g);
	for (int i = 0; i < sub->nshapes; i++)
	{
		PsShapeDef *def = &sub->shapes[i];
		char	   *rel = get_rel_name(def->relid);

		/* only ours that exist: no NOTICE for a subscription that never wrote */
		if (rel == NULL || !trigger_exists(def->relid, trigger_name(sub, def)))
			continue;
		if (SPI_execute(psprintf("DROP TRIGGER %s ON %s",
								 quote_identifier(trigger_name(sub, def)),
								 ps_qualified_relname(def->relid)),
						false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "pglite_sync: could not drop the capture trigger");
	}
	ps_catalog_leave(&g);
}

/* delete_subscription: its capture triggers go with it (its writes cascade). */
void
ps_writes_forget(int32 subid)
{
	PsSubscription *sub;

	if (ps_catalog_layout() < PS_LAYOUT_0_3)
		return;
	sub = ps_catalog_load(subid, CurrentMemoryContext);
	if (sub)
		drop_triggers(sub);
}

Datum
ps_enable_writes(PG_FUNCTION_ARGS)
{
#ifdef __PGLITE__
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("local writes are not available in PGlite yet"),
			 errhint("Writes are uploaded by the subscription's worker.")));
	PG_RETURN_VOID();
#else
	char	   *name;
	char	   *url;
	char	   *headers = NULL;
	PsSubscription *sub;
	char	   *host;

	name = ps_arg_text(fcinfo, 0, "name");
	url = ps_arg_text(fcinfo, 1, "write_url");
	if (pg_strncasecmp(url, "http://", 7) != 0 && pg_strncasecmp(url, "https://", 8) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("write_url must be an http or https URL")));
	host = ps_url_host(url);
	if (host == NULL || host[0] == '\0' || !ps_host_allowed(ps_allowed_hosts, host))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("write_url host \"%s\" is not allowed", host ? host : ""),
				 errhint("The server administrator sets the hosts in pglite_sync.allowed_hosts.")));
	if (!PG_ARGISNULL(2))
	{
		json_t	   *h = ps_jsonb_load(PG_GETARG_JSONB_P(2));
		const char *k;
		json_t	   *v;

		if (!json_is_object(h))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("headers must be a JSON object of strings")));
		json_object_foreach(h, k, v)
		{
			if (!json_is_string(v) || !ps_header_name_ok(k) || !ps_header_value_ok(json_string_value(v)))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("header \"%s\" must be a valid HTTP header name with a string value", k)));
		}
		headers = ps_jsonb_text(PG_GETARG_JSONB_P(2));
	}

	SPI_connect();
	sub = owned_subscription(name, CurrentMemoryContext);
	if (!sub->worker)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("subscription \"%s\" is host-driven: its writes would have no worker to upload them", name)));
	for (int i = 0; i < sub->nshapes; i++)
		if (OidIsValid(sub->shapes[i].map_function))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("subscription \"%s\" maps rows with map_function %s, which cannot be inverted for writes",
							name, format_procedure(sub->shapes[i].map_function)),
					 errhint("Use map_columns, or write through your own API.")));

	ps_catalog_write_target_set(sub->id, url, headers);
	/* the capture triggers, made by the owner (who needs TRIGGER on the tables) */
	drop_triggers(sub);
	for (int i = 0; i < sub->nshapes; i++)
	{
		PsShapeDef *def = &sub->shapes[i];
		StringInfoData sql;
		ListCell   *lc;

		initStringInfo(&sql);
		appendStringInfo(&sql, "CREATE TRIGGER %s AFTER INSERT OR UPDATE OR DELETE ON %s "
						 "FOR EACH ROW EXECUTE FUNCTION " PS_SCHEMA "._capture_write(%s, %s",
						 quote_identifier(trigger_name(sub, def)),
						 ps_qualified_relname(def->relid),
						 quote_literal_cstr(psprintf("%d", sub->id)), quote_literal_cstr(def->name));
		foreach(lc, def->primary_key)
			appendStringInfo(&sql, ", %s", quote_literal_cstr(lfirst(lc)));
		appendStringInfoChar(&sql, ')');
		if (SPI_execute(sql.data, false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "pglite_sync: could not create the capture trigger");
	}
	SPI_finish();
	ps_at_commit(PS_ACTION_RELOAD, sub->id, sub->owner);
	PG_RETURN_VOID();
#endif
}

Datum
ps_disable_writes(PG_FUNCTION_ARGS)
{
	PsSubscription *sub;
	char	   *name = ps_arg_text(fcinfo, 0, "name");

	SPI_connect();
	sub = owned_subscription(name, CurrentMemoryContext);
	drop_triggers(sub);
	ps_catalog_write_target_drop(sub->id);
	SPI_finish();
	ps_at_commit(PS_ACTION_RELOAD, sub->id, sub->owner);
	PG_RETURN_VOID();
}

/* ---- discard_write / wait_for_writes ------------------------------------------------- */

Datum
ps_discard_write(PG_FUNCTION_ARGS)
{
	char	   *id;
	int			rc;
	char	   *state;
	Oid			owner;
	bool		isnull;
	Datum		v[1];

	ps_require_arg(fcinfo, 0, "write_id");
	id = DatumGetCString(DirectFunctionCall1(uuid_out, PG_GETARG_DATUM(0)));
	SPI_connect();
	ps_catalog_require_current();
	v[0] = CStringGetTextDatum(id);
	rc = ps_catalog_write_lookup(id, &state, &owner);
	if (rc == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("write %s does not exist", id)));
	if (!has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of the subscription of write %s", id)));
	if (strcmp(state, "rejected") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("write %s is %s: only a rejected write can be discarded", id, state),
				 errhint("A write that is not rejected is uploaded, then synced.")));
	ps_catalog_write_discard(id);
	SPI_finish();
	(void) isnull;
	(void) v;
	PG_RETURN_VOID();
}

Datum
ps_wait_for_writes(PG_FUNCTION_ARGS)
{
	char	   *name;
	PsSubscription *sub;
	int64		mark;
	TimestampTz deadline = 0;
	bool		result = false;

	name = ps_arg_text(fcinfo, 0, "name");
	if (!PG_ARGISNULL(1))
		deadline = ps_timeout_deadline(PG_GETARG_INTERVAL_P(1));
	SPI_connect();
	sub = owned_subscription(name, CurrentMemoryContext);
	/* everything committed before the call */
	mark = ps_catalog_write_mark(sub->id);
	for (;;)
	{
		int			rejected;
		int			left = ps_catalog_write_left(sub->id, mark, &rejected);

		if (rejected > 0)
			break;
		if (left == 0)
		{
			result = true;
			break;
		}
		if (deadline != 0 && GetCurrentTimestamp() >= deadline)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 100,
						 ps_wait_event(PS_WAIT_FOR_WRITES));
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_finish();
	PG_RETURN_BOOL(result);
}
