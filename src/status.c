/*
 * status.c
 *	  What the slots say, for the electric.subscriptions view: one row per
 *	  slot of this database, copied under the lock (cheap to read often).
 */
#include "pglite_sync.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(ps_worker_status);
PG_FUNCTION_INFO_V1(ps_worker_status_v2);

/* the slots of this database (none in PGlite, which has no workers) */
static PsSlot *
copy_slots(int *n)
{
#ifdef __PGLITE__
	*n = 0;
	return NULL;
#else
	PsSlot	   *copy = palloc(sizeof(PsSlot) * Max(ps_shared->nslots, 1));

	*n = 0;
	LWLockAcquire(ps_shared->lock, LW_SHARED);
	for (int i = 0; i < ps_shared->nslots; i++)
		if (ps_shared->slots[i].phase != PS_SLOT_FREE &&
			ps_shared->slots[i].dbid == MyDatabaseId)
			copy[(*n)++] = ps_shared->slots[i];
	LWLockRelease(ps_shared->lock);
	return copy;
#endif
}

/* The 0.1.0 view's columns (before ALTER EXTENSION UPDATE). */
Datum
ps_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PsSlot	   *slots;
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	if (ps_shared == NULL)
		return (Datum) 0;
	slots = copy_slots(&n);
	for (int i = 0; i < n; i++)
	{
		PsSlot	   *s = &slots[i];
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		values[0] = Int32GetDatum(s->subid);
		if (s->pid != 0)
			values[1] = Int32GetDatum(s->pid);
		else
			nulls[1] = true;
		values[2] = CStringGetTextDatum(s->pid != 0 ? ps_state_name(s->state) : "starting");
		values[3] = BoolGetDatum(s->pid != 0 && s->up_to_date);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

static void
put_time(Datum *values, bool *nulls, int i, TimestampTz t)
{
	if (t == 0)
		nulls[i] = true;
	else
		values[i] = TimestampTzGetDatum(t);
}

Datum
ps_worker_status_v2(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PsSlot	   *slots;
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	if (ps_shared == NULL)
		return (Datum) 0;
	slots = copy_slots(&n);
	for (int i = 0; i < n; i++)
	{
		PsSlot	   *s = &slots[i];
		Datum		values[12];
		bool		nulls[12];

		memset(nulls, 0, sizeof(nulls));
		values[0] = Int32GetDatum(s->subid);
		if (s->pid != 0)
			values[1] = Int32GetDatum(s->pid);
		else
			nulls[1] = true;
		values[2] = CStringGetTextDatum(s->pid != 0 ? ps_state_name(s->state) : "starting");
		values[3] = BoolGetDatum(s->pid != 0 && s->up_to_date);
		if (s->launch_error[0] && s->pid == 0)
			values[4] = CStringGetTextDatum(s->launch_error);
		else
			nulls[4] = true;
		values[5] = Int64GetDatum((int64) s->stats.requests);
		values[6] = Int64GetDatum((int64) s->stats.bytes_received);
		values[7] = Int64GetDatum((int64) s->stats.errors);
		put_time(values, nulls, 8, s->stats.last_request_at);
		put_time(values, nulls, 9, s->stats.last_up_to_date_at);
		values[10] = Int64GetDatum((int64) s->stats.batch_rows);
		values[11] = Int64GetDatum((int64) s->stats.batch_bytes);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
