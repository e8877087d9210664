/*
 * api_manage.c
 *	  Managing subscriptions: electric.unsubscribe(), delete_subscription(),
 *	  alter_subscription() and wait_for_sync().  Callers are checked here;
 *	  catalog writes run as the extension owner (catalog.c).  Workers learn
 *	  of changes at COMMIT, and never hold a lock these wait for.
 */
#include "pglite_sync.h"

#include "access/xact.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "protocol.h"
#include "jsonutil.h"
#include "shapeopts.h"

PG_FUNCTION_INFO_V1(ps_catalog_changed);
PG_FUNCTION_INFO_V1(ps_unsubscribe);
PG_FUNCTION_INFO_V1(ps_delete_subscription);
PG_FUNCTION_INFO_V1(ps_alter_subscription);
PG_FUNCTION_INFO_V1(ps_wait_for_sync);

/* Lock a subscription by name; the caller must be able to act as its owner. */
static void
lock_for_owner(const char *name, PsSubRow *row)
{
	if (!ps_catalog_lock_subscription(name, row))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("subscription \"%s\" does not exist", name)));
	if (!has_privs_of_role(GetUserId(), row->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of subscription \"%s\"", name)));
}

/*
 * Stop a subscription at commit.  forget (delete_subscription) removes it
 * with its stream state and holds; otherwise (unsubscribe) a keyed
 * subscription stays, stopped, and an unkeyed one, having nothing worth
 * keeping, goes.  Neither waits for a batch being applied: the worker
 * rolls it back when its slot says stop.
 */
static void
stop_subscription(const char *name, bool forget)
{
	PsSubRow	row;

	ps_catalog_require_current();
	SPI_connect();
	ps_catalog_lock();
	lock_for_owner(name, &row);
	if (forget || (row.enabled && !row.keyed))
	{
		ps_writes_forget(row.id);
		ps_catalog_delete(row.id);
	}
	else if (row.enabled)
		ps_catalog_disable(row.id);
	if ((forget || row.enabled) && row.worker && ps_shared)
		ps_at_commit(PS_ACTION_STOP, row.id, row.owner);
	SPI_finish();
}

Datum
ps_unsubscribe(PG_FUNCTION_ARGS)
{
	stop_subscription(ps_arg_text(fcinfo, 0, "name"), false);
	PG_RETURN_VOID();
}

Datum
ps_delete_subscription(PG_FUNCTION_ARGS)
{
	stop_subscription(ps_arg_text(fcinfo, 0, "name"), true);
	PG_RETURN_VOID();
}

/* ---- alter_subscription ---------------------------------------------------- */

/* Query parameters that define a shape: altering them is a new shape. */
static bool
defines_shape(const char *name)
{
	return strcmp(name, "table") == 0 || strcmp(name, "where") == 0 ||
		strcmp(name, "columns") == 0 || strcmp(name, "replica") == 0 ||
		strcmp(name, "log") == 0 || strncmp(name, "params", 6) == 0;
}

/* Validate a new URL and headers the way a shape's are validated. */
static void
check_url_and_headers(const char *name, const char *url, const char *headers_json)
{
	StringInfoData doc;
	ps_shape	s;
	char		err[512];
	char	   *host;

	initStringInfo(&doc);
	appendStringInfoString(&doc, "{\"url\": ");
	escape_json(&doc, url ? url : "http://localhost/");
	appendStringInfoString(&doc, ", \"params\": {\"table\": \"t\"}");
	if (headers_json)
		appendStringInfo(&doc, ", \"headers\": %s", headers_json);
	appendStringInfoChar(&doc, '}');
	if (ps_shape_parse(doc.data, doc.len, &s, err, sizeof(err)) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s for subscription \"%s\": %s", url ? "shape_url or headers" : "headers",
						name, err)));
	if (url)
	{
		/* as the server reads the names: "wh%65re" is "where" */
		char	   *param = ps_url_find_param(url, defines_shape);

		if (param)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("shape_url of subscription \"%s\" may not set \"%s\"", name, param),
					 errdetail("It is part of the shape's definition, which alter_subscription does not change."),
					 errhint("Subscribe again to sync another shape.")));
		host = ps_url_host(s.url);
		if (!ps_host_allowed(ps_allowed_hosts, host))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid shape_url for subscription \"%s\": host \"%s\" is not in pglite_sync.allowed_hosts",
							name, host)));
	}
	ps_shape_free(&s);
}

Datum
ps_alter_subscription(PG_FUNCTION_ARGS)
{
	char	   *name;
	char	   *url = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *headers = NULL;
	bool		set_function = !PG_ARGISNULL(3);
	Oid			function = set_function ? PG_GETARG_OID(3) : InvalidOid;
	PsSubRow	row;

	ps_catalog_require_current();
	name = ps_arg_text(fcinfo, 0, "name");
	if (!PG_ARGISNULL(2))
	{
		Jsonb	   *j = PG_GETARG_JSONB_P(2);

		if (!JB_ROOT_IS_OBJECT(j) || JB_ROOT_IS_SCALAR(j))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("headers of subscription \"%s\" must be a JSON object of header names and string values",
							name)));
		headers = ps_jsonb_text(j);
	}
	if (url == NULL && headers == NULL && !set_function)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("alter_subscription of \"%s\" changes nothing", name),
				 errhint("Give shape_url, headers or headers_function.")));
	/* checked as the worker will read them (UTF-8), stored as given */
	check_url_and_headers(name, url ? ps_text_to_utf8(url) : NULL,
						  headers ? ps_text_to_utf8(headers) : NULL);
	if (set_function)
		ps_check_function(function, "headers_function", TEXTOID, JSONBOID,
						  "(subscription text) RETURNS jsonb");

	SPI_connect();
	ps_catalog_lock();
	lock_for_owner(name, &row);
	ps_catalog_alter(row.id, row.worker, url, headers, set_function, function);
	SPI_finish();
	if (row.worker && ps_shared)
		ps_at_commit(PS_ACTION_RELOAD, row.id, row.owner);
	PG_RETURN_VOID();
}

/* ---- wait_for_sync ------------------------------------------------------------ */

typedef enum LookupResult
{
	SUB_RUNNING,
	SUB_STOPPED,
	SUB_CHANGED_HERE			/* created or changed by this transaction */
} LookupResult;

static LookupResult
lookup_for_wait(const char *name, int32 *subid, bool *worker, char **run_state)
{
	PsSubscription *sub;
	LookupResult result;

	SPI_connect();
	sub = ps_catalog_load_by_name(name, CurrentMemoryContext);
	if (sub == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("subscription \"%s\" does not exist", name)));
	*subid = sub->id;
	*worker = sub->worker;
	*run_state = sub->run ? pstrdup(sub->run) : NULL;
	result = sub->enabled ? SUB_RUNNING : SUB_STOPPED;
	if (ps_catalog_changed_here(sub->id))
		result = SUB_CHANGED_HERE;
	SPI_finish();
	return result;
}

/* A host-driven run: when did the request of its latest up-to-date begin? */
static TimestampTz
host_up_to_date_since(const char *run_state)
{
	json_error_t err;
	json_t	   *j = run_state ? json_loads(run_state, 0, &err) : NULL;
	json_t	   *v = j ? json_object_get(j, "up_to_date_since") : NULL;
	TimestampTz t = 0;

	if (json_is_string(v))
		t = DatumGetTimestampTz(OidInputFunctionCall(F_TIMESTAMPTZ_IN,
													 (char *) json_string_value(v), InvalidOid, -1));
	json_decref(j);
	return t;
}

/*
 * A barrier: true once the subscription has committed an up-to-date batch
 * from a request that started after this call.  A worker is woken with a
 * ticket (slot->sync_requested); it stamps each request with the counter at
 * its start and publishes it as sync_done at up-to-date.  A host-driven
 * subscription records when the requests of its latest up-to-date began.
 */
Datum
ps_wait_for_sync(PG_FUNCTION_ARGS)
{
	char	   *name;
	int32		subid;
	bool		worker;
	char	   *run_state;
	TimestampTz deadline = 0;
	TimestampTz called = GetCurrentTimestamp();
	bool		forever = PG_ARGISNULL(1);
	uint64		ticket pg_attribute_unused() = 0;	/* a worker's barrier */
	uint32		ticket_generation pg_attribute_unused() = 0;
	bool		result = false;
	TimestampTz next_lookup;

	name = ps_arg_text(fcinfo, 0, "name");
	if (!forever)
		deadline = ps_timeout_deadline(PG_GETARG_INTERVAL_P(1));

	switch (lookup_for_wait(name, &subid, &worker, &run_state))
	{
		case SUB_STOPPED:
			PG_RETURN_BOOL(false);
		case SUB_CHANGED_HERE:
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("subscription \"%s\" was changed by the current transaction", name),
					 errdetail("Its worker starts when the transaction commits."),
					 errhint("Commit first, then wait for the subscription.")));
		case SUB_RUNNING:
			break;
	}
	if (worker)
		ps_require_preload();
#ifdef __PGLITE__
	/* the host drives the sync in this very process: nothing can arrive */
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("wait_for_sync cannot wait in PGlite, where the host drives subscription \"%s\"", name),
			 errhint("Watch is_up_to_date in electric.subscriptions, or the isUpToDate of the JavaScript API.")));
#endif
	next_lookup = TimestampTzPlusMilliseconds(called, worker ? 1000 : 100);

	for (;;)
	{
		long		sleep_ms = worker ? 1000 : 100;
		TimestampTz now;

#ifndef __PGLITE__
		if (worker)
		{
			PsSlot	   *slot;

			LWLockAcquire(ps_shared->lock, LW_EXCLUSIVE);
			slot = ps_slot_find(MyDatabaseId, subid);
			if (slot != NULL && slot->phase == PS_SLOT_RUNNING && slot->pid != 0)
			{
				if (ticket == 0 || ticket_generation != slot->generation)
				{
					/* a new worker's first request starts after our call anyway */
					ticket = ++slot->sync_requested;
					ticket_generation = slot->generation;
					if (slot->latch)
						SetLatch(slot->latch);
				}
				else if (slot->sync_done >= ticket)
					result = true;
			}
			LWLockRelease(ps_shared->lock);
		}
		else
#endif
		if (host_up_to_date_since(run_state) >= called)
			result = true;
		if (result)
			break;

		now = GetCurrentTimestamp();
		if (!forever)
		{
			if (now >= deadline)
				break;
			sleep_ms = Min(sleep_ms, (deadline - now + 999) / 1000);
		}
		if (now >= next_lookup)
		{
			/* stopped by someone else meanwhile? */
			if (lookup_for_wait(name, &subid, &worker, &run_state) == SUB_STOPPED)
				break;
			next_lookup = TimestampTzPlusMilliseconds(now, worker ? 1000 : 100);
		}
#ifndef __PGLITE__
		if (worker)
			ConditionVariableTimedSleep(&ps_shared->cv, Max(sleep_ms, 1),
										ps_wait_event(PS_WAIT_FOR_SYNC));
		else
#endif
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 Max(sleep_ms, 1), ps_wait_event(PS_WAIT_FOR_SYNC));
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
#ifndef __PGLITE__
	if (worker)
		ConditionVariableCancelSleep();
#endif
	PG_RETURN_BOOL(result);
}

/*
 * Statement trigger on electric.subscription: rows written other than by
 * this extension's functions (pg_restore's COPY, a hand-made INSERT) are
 * found by a scan of the databases at COMMIT, so restored subscriptions
 * start without a server restart.  Our own writes tell the launcher
 * exactly what changed already.
 */
Datum
ps_catalog_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("electric._catalog_changed() must be called as a trigger")));
	if (!ps_catalog_writing())
		ps_at_commit(PS_ACTION_SCAN, 0, InvalidOid);
	return PointerGetDatum(NULL);
}
