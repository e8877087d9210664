/*
 * rowbuild.c
 *	  A spooled record into a row: the local columns it writes and their
 *	  text values, from the message's fields (through map_columns) or from
 *	  map_function's answer; values converted to the server encoding.
 */
#include "apply_int.h"

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "catalog/pg_type.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/regproc.h"

/* ---- producing rows ------------------------------------------------------------ */

static const char *
server_text(PsApply *a, const char *s, size_t len)
{
	if (s == NULL || !a->convert)
		return s;
	return pg_any_to_server(s, (int) len, PG_UTF8);
}

static void
row_add(PsApply *a, AttrNumber attno, const char *val)
{
	PsRow	   *r = &a->row;

	if (!a->cols[attno - 1].writable)
		return;					/* generated locally */
	/* the same column twice: the later value wins */
	if (!bms_is_member(attno, r->set))
	{
		r->set = bms_add_member(r->set, attno);
		r->n++;
	}
	r->by_att[attno - 1] = val;
}

static NameMapEntry *
lookup_name(PsApply *a, const char *name, uint32 len)
{
	char		key[NAMEDATALEN];

	if (len >= NAMEDATALEN)
		return NULL;
	memset(key, 0, sizeof(key));
	memcpy(key, name, len);
	return hash_search(a->names, key, HASH_FIND, NULL);
}

/* Field names -> attnums, reusing the previous record's answer when equal. */
static void
row_from_fields(PsApply *a, PsSpoolRecord *rec)
{
	bool		same = (rec->nfields == a->last_nfields);

	for (int i = 0; same && i < rec->nfields; i++)
		same = rec->fields[i].name_len == a->last_name_lens[i] &&
			memcmp(rec->fields[i].name, a->last_names[i], rec->fields[i].name_len) == 0;

	if (same && !a->def->map_columns)
	{
		for (int i = 0; i < rec->nfields; i++)
			if (a->last_attnos[i] > 0)
				row_add(a, a->last_attnos[i],
						server_text(a, rec->fields[i].value, rec->fields[i].len));
		return;
	}

	MemoryContextReset(a->names_cxt);
	a->last_cap = Max(rec->nfields, 1);
	a->last_names = MemoryContextAlloc(a->names_cxt, sizeof(char *) * a->last_cap);
	a->last_name_lens = MemoryContextAlloc(a->names_cxt, sizeof(uint32) * a->last_cap);
	a->last_attnos = MemoryContextAlloc(a->names_cxt, sizeof(AttrNumber) * a->last_cap);
	for (int i = 0; i < rec->nfields; i++)
	{
		PsSpoolField *f = &rec->fields[i];
		NameMapEntry *e = lookup_name(a, f->name, f->name_len);

		if (e == NULL && !a->def->map_columns)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%.*s\" sent by the server does not exist in table %s",
							(int) f->name_len, f->name, a->qualname),
					 errhint("Add the column, limit the shape with params.columns, or use map_columns.")));
		a->last_names[i] = MemoryContextAlloc(a->names_cxt, f->name_len + 1);
		memcpy(a->last_names[i], f->name, f->name_len);
		a->last_name_lens[i] = f->name_len;
		a->last_attnos[i] = (e && !e->next) ? e->attno : 0;
		for (; e; e = e->next)
			row_add(a, e->attno, server_text(a, f->value, f->len));
	}
	a->last_nfields = a->def->map_columns ? -1 : rec->nfields;
}

/*
 * map_function: the whole message as jsonb in, the local row out.  The
 * answer is read with the message parser, so numbers keep their exact text
 * and objects and arrays their JSON text (for json and jsonb columns).
 */
static bool
row_from_function(PsApply *a, PsSpoolRecord *rec)
{
	const char *json = server_text(a, rec->json, rec->json_len);
	Datum		msg = OidInputFunctionCall(F_JSONB_IN, (char *) json, JSONBOID, -1);
	Datum		result;
	char	   *out;
	StringInfoData wrapped;
	ps_message *m = &a->fn_msg;
	MemoryContext old;
	int			parsed;
	LOCAL_FCINFO(fcinfo, 1);

	InitFunctionCallInfoData(*fcinfo, &a->map_fn, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = msg;
	fcinfo->args[0].isnull = false;
	result = FunctionCallInvoke(fcinfo);
	if (fcinfo->isnull)
		return false;			/* SQL NULL: skip this message */
	out = OidOutputFunctionCall(F_JSONB_OUT, result);
	if (a->convert)
		out = ps_text_to_utf8(out);
	initStringInfo(&wrapped);
	appendStringInfo(&wrapped, "{\"value\": %s}", out);
	/* the parser keeps its storage across rows: allocate it per batch */
	old = MemoryContextSwitchTo(a->batch_cxt);
	parsed = ps_message_parse(m, wrapped.data, wrapped.len);
	MemoryContextSwitchTo(old);
	if (parsed < 0 || !m->has_value)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("map_function %s must return a JSON object of local columns",
						format_procedure(a->def->map_function))));
	for (int i = 0; i < m->nvalue; i++)
	{
		const ps_field *f = &m->value[i];
		/* the names map is keyed in UTF-8, as the answer is read */
		NameMapEntry *e = lookup_name(a, f->name, f->name_len);
		const char *val;

		if (e == NULL || e->attno <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" returned by map_function does not exist in table %s",
							server_text(a, pnstrdup(f->name, f->name_len), f->name_len),
							a->qualname)));
		if (f->isnull)
			val = NULL;
		else if (f->is_string)
			val = server_text(a, pnstrdup(f->data, f->len), f->len);
		else
			val = pnstrdup(f->data, f->len);	/* number, boolean, object, array */
		row_add(a, e->attno, val);
	}
	return true;
}

/*
 * Stop between rows when asked (unsubscribe, SIGTERM): the batch rolls back
 * at once rather than running to its end.  Checked every STOP_CHECK_ROWS.
 */
#define STOP_CHECK_ROWS 1000

void
ps_apply_check_stop(PsApply *a)
{
	CHECK_FOR_INTERRUPTS();
	if (++a->since_check < STOP_CHECK_ROWS)
		return;
	a->since_check = 0;
	if (a->stop_check && a->stop_check(a->stop_arg))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("subscription \"%s\" was stopped while a batch was applied", a->sub->name),
				 errdetail("The batch was rolled back.")));
}

/*
 * The next row of the shape's batch, or false at its end or at the first
 * record past the commit target.  A row pushed back by the bulk loaders is
 * returned again first.
 */
bool
ps_row_next(PsApply *a)
{
	PsSpoolRecord *rec;

	if (a->pushed_back)
	{
		a->pushed_back = false;
		return true;
	}
	for (;;)
	{
		bool		keep = true;

		MemoryContextReset(a->row_cxt);
		if (!ps_spool_peek(a->spool, &rec) || rec->lsn > a->opts.limit_lsn)
			return false;
		ps_spool_consume(a->spool);
		ps_apply_check_stop(a);

		a->row.op = rec->op;
		a->row.key = rec->key;
		a->row.key_len = rec->key_len;
		a->row.lsn = rec->lsn;
		a->row.txid = rec->txid;
		a->row.op_position = rec->op_position;
		a->row.move_in = (rec->flags & PS_REC_MOVE_IN) != 0;
		a->row.n = 0;
		a->row.set = NULL;
		a->row.tagged = (rec->flags & PS_REC_TAGS) != 0;
		a->row.tags = rec->tags;
		a->row.ntags = rec->ntags;
		a->row.removed_tags = rec->removed_tags;
		a->row.nremoved_tags = rec->nremoved_tags;
		a->row.active = rec->active;
		a->row.nactive = rec->nactive;
		a->row.patterns = rec->patterns;
		a->row.npatterns = rec->npatterns;
		a->ctx_column = NULL;
		if (rec->op == PS_OP_MOVE_OUT || rec->op == PS_OP_MOVE_IN)
			return true;		/* no row: ps_tags_move applies it */
		{
			MemoryContext old = MemoryContextSwitchTo(a->row_cxt);

			if (rec->raw)
				keep = row_from_function(a, rec);
			else
				row_from_fields(a, rec);
			MemoryContextSwitchTo(old);
		}
		if (keep)
			return true;
	}
}

const char *
ps_row_value(PsApply *a, AttrNumber attno, bool *present)
{
	*present = bms_is_member(attno, a->row.set);
	return *present ? a->row.by_att[attno - 1] : NULL;
}

void
ps_row_require_pk(PsApply *a)
{
	for (int i = 0; i < a->npk; i++)
	{
		bool		present;
		const char *v = ps_row_value(a, a->pk[i], &present);

		if (!present || v == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("change does not carry primary key column \"%s\" of table %s",
							a->cols[a->pk[i] - 1].name, a->qualname)));
	}
}

/* Is the current row a snapshot insert of exactly the bulk column set? */
bool
ps_row_fits(PsApply *a, Bitmapset *cols)
{
	return a->row.op == 'I' && a->row.lsn == 0 && !a->row.move_in && !a->row.tagged &&
		bms_equal(a->row.set, cols);
}
