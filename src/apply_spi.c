/*
 * apply_spi.c
 *	  Rows through prepared statements: one plan per operation and column
 *	  set, values converted with the columns' input functions (never pasted
 *	  into SQL), consecutive inserts sent as multi-row INSERTs, and the holds
 *	  of tables several shapes sync into.
 */
#include "apply_int.h"

#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

/* ---- the SPI path ------------------------------------------------------------- */

static PlanEntry *
get_plan(PsApply *a, char op, Bitmapset *cols, int nrows)
{
	ListCell   *lc;
	PlanEntry  *p;
	StringInfoData sql;
	Oid		   *types;
	int			x;
	int			n = 0;
	bool		override = false;
	MemoryContext old;

	foreach(lc, a->plans)
	{
		p = lfirst(lc);
		if (p->op == op && p->nrows == nrows && bms_equal(p->cols, cols))
			return p;
	}

	old = MemoryContextSwitchTo(a->batch_cxt);
	p = palloc0(sizeof(PlanEntry));
	p->op = op;
	p->nrows = nrows;
	p->cols = bms_copy(cols);
	p->args = palloc(sizeof(AttrNumber) * (bms_num_members(cols) * Max(nrows, 1) + a->npk + 1));
	types = palloc(sizeof(Oid) * (bms_num_members(cols) * Max(nrows, 1) + a->npk + 1));
	initStringInfo(&sql);

	if (op == 'M')
	{
		int			ncols = bms_num_members(cols);

		appendStringInfo(&sql, "INSERT INTO %s (", a->qualname);
		x = -1;
		while ((x = bms_next_member(cols, x)) >= 0)
		{
			appendStringInfo(&sql, "%s%s", n ? ", " : "", quote_identifier(a->cols[x - 1].name));
			override |= a->cols[x - 1].identity_always;
			types[n++] = a->cols[x - 1].typid;
		}
		appendStringInfoString(&sql, override ? ") OVERRIDING SYSTEM VALUE VALUES " : ") VALUES ");
		for (int r = 0; r < nrows; r++)
		{
			appendStringInfoString(&sql, r ? ",(" : "(");
			for (int i = 0; i < ncols; i++)
			{
				appendStringInfo(&sql, "%s$%d", i ? ", " : "", r * ncols + i + 1);
				if (r > 0)
					types[r * ncols + i] = types[i];
			}
			appendStringInfoChar(&sql, ')');
		}
		n = ncols * nrows;
	}
	else if (op == 'I' || op == 'V')
	{
		appendStringInfo(&sql, "INSERT INTO %s (", a->qualname);
		x = -1;
		while ((x = bms_next_member(cols, x)) >= 0)
		{
			appendStringInfo(&sql, "%s%s", n ? ", " : "", quote_identifier(a->cols[x - 1].name));
			override |= a->cols[x - 1].identity_always;
			p->args[n] = x;
			types[n++] = a->cols[x - 1].typid;
		}
		appendStringInfoString(&sql, override ? ") OVERRIDING SYSTEM VALUE VALUES (" : ") VALUES (");
		for (int i = 1; i <= n; i++)
			appendStringInfo(&sql, "%s$%d", i > 1 ? ", " : "", i);
		appendStringInfoChar(&sql, ')');
		if (op == 'V')
		{
			/* the row may be there already (another shape holds it, or a move-in) */
			bool		first = true;

			appendStringInfoString(&sql, " ON CONFLICT (");
			for (int i = 0; i < a->npk; i++)
				appendStringInfo(&sql, "%s%s", i ? ", " : "",
								 quote_identifier(a->cols[a->pk[i] - 1].name));
			appendStringInfoChar(&sql, ')');
			x = -1;
			while ((x = bms_next_member(cols, x)) >= 0)
			{
				bool		is_pk = false;

				for (int i = 0; i < a->npk; i++)
					is_pk |= a->pk[i] == x;
				if (is_pk)
					continue;
				appendStringInfo(&sql, "%s%s = EXCLUDED.%s", first ? " DO UPDATE SET " : ", ",
								 quote_identifier(a->cols[x - 1].name),
								 quote_identifier(a->cols[x - 1].name));
				first = false;
			}
			if (first)
				appendStringInfoString(&sql, " DO NOTHING");
		}
	}
	else
	{
		if (op == 'U')
		{
			appendStringInfo(&sql, "UPDATE %s SET ", a->qualname);
			x = -1;
			while ((x = bms_next_member(cols, x)) >= 0)
			{
				appendStringInfo(&sql, "%s%s = $%d", n ? ", " : "",
								 quote_identifier(a->cols[x - 1].name), n + 1);
				p->args[n] = x;
				types[n++] = a->cols[x - 1].typid;
			}
		}
		else if (op == 'E')
			appendStringInfo(&sql, "SELECT 1 FROM %s", a->qualname);
		else
			appendStringInfo(&sql, "DELETE FROM %s", a->qualname);
		appendStringInfoString(&sql, " WHERE ");
		for (int i = 0; i < a->npk; i++)
		{
			AttrNumber	k = a->pk[i];

			appendStringInfo(&sql, "%s%s %s $%d", i ? " AND " : "",
							 quote_identifier(a->cols[k - 1].name), a->pk_eq[i], n + 1);
			p->args[n] = k;
			types[n++] = a->cols[k - 1].typid;
		}
	}
	p->nargs = n;
	p->plan = SPI_prepare(sql.data, n, types);
	if (p->plan == NULL)
		elog(ERROR, "pglite_sync: could not prepare \"%s\": %s", sql.data,
			 SPI_result_code_string(SPI_result));
	a->plans = lappend(a->plans, p);
	MemoryContextSwitchTo(old);
	return p;
}

/*
 * Apply the current row with one prepared statement; returns rows affected.
 * An insert becomes an upsert where the row may exist already: a move-in,
 * or a table other shapes sync into.  There, the shape's hold on the row is
 * taken, and a delete only releases it: the row goes with the last hold.
 */
int64
ps_spi_apply_row(PsApply *a)
{
	PsRow	   *r = &a->row;
	Bitmapset  *cols = NULL;
	PlanEntry  *p;
	int			rc;
	int			expected;
	char		op = r->op;
	Datum		key = (Datum) 0;

	if (a->opts.shared && r->op != 'I')
		ps_row_require_pk(a);
	if (a->opts.shared)
	{
		key = ps_hold_key(a);
		ps_hold_lock(a, key);
		if (r->op == 'D' && ps_hold_release(a, key))
			return 0;			/* another shape still holds the row */
		if (r->op != 'D' && ps_hold_newer(a, key))
		{
			/*
			 * Another shape already wrote a later version (this one is
			 * replaying older changes, or its snapshot is older): keep that,
			 * take the hold.
			 */
			ps_hold_take(a, key);
			return 0;
		}
	}

	switch (r->op)
	{
		case 'I':
			if (r->n == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("insert carries no column of table %s", a->qualname)));
			cols = r->set;
			expected = SPI_OK_INSERT;
			/* a local write may have made the row already: its echo is an upsert */
			if (a->opts.shared || r->move_in || a->writes_pending)
			{
				ps_row_require_pk(a);
				op = 'V';
			}
			break;
		case 'U':
			ps_row_require_pk(a);
			if (a->opts.changes_only && a->opts.replica_full)
			{
				/*
				 * changes_only: the row may never have been seen here; a
				 * whole row (replica full) can be written all the same.
				 */
				cols = r->set;
				expected = SPI_OK_INSERT;
				op = 'V';
				break;
			}
			cols = bms_copy(r->set);
			for (int i = 0; i < a->npk; i++)
				cols = bms_del_member(cols, a->pk[i]);
			if (bms_is_empty(cols))
			{
				/* only the key: nothing to change, but the row must exist */
				cols = NULL;
			}
			expected = SPI_OK_UPDATE;
			break;
		case 'D':
			ps_row_require_pk(a);
			expected = SPI_OK_DELETE;
			break;
		default:
			elog(ERROR, "pglite_sync: unexpected operation '%c' in spool", r->op);
	}

	/* an update carrying only the key changes nothing, but the row must exist */
	if (r->op == 'U' && cols == NULL)
	{
		op = 'E';
		expected = SPI_OK_SELECT;
	}

	p = get_plan(a, op, op == 'U' || op == 'I' || op == 'V' ? cols : NULL, 0);
	for (int i = 0; i < p->nargs; i++)
	{
		bool		present;
		PsColumn   *c = &a->cols[p->args[i] - 1];
		const char *v = ps_row_value(a, p->args[i], &present);

		a->ctx_column = c->name;
		a->values[i] = InputFunctionCall(&c->input, (char *) v, c->typioparam, c->typmod);
		a->nulls[i] = v ? ' ' : 'n';
	}
	a->ctx_column = NULL;

	rc = ps_apply_execute(p->plan, a->values, a->nulls, op == 'E', op == 'E' ? 1 : 0);
	if (rc != expected)
		elog(ERROR, "pglite_sync: apply statement failed: %s", SPI_result_code_string(rc));
	if (op == 'E' && SPI_processed > 0)
		return 0;
	if (SPI_processed == 0)
	{
		if (r->op == 'U' && a->opts.changes_only)
			a->res.skipped++;	/* a row this changes_only shape never brought */
		else if (r->op == 'U')
			ereport(ERROR,
					(errcode(ERRCODE_NO_DATA_FOUND),
					 errmsg("update for a row that does not exist in table %s", a->qualname),
					 errhint("The table lost a synced row, for example through a local DELETE.")));
		if (r->op == 'D')
			a->res.skipped++;	/* already gone: the one thing we may skip */
	}
	if (a->opts.shared && r->op != 'D')
		ps_hold_take(a, key);
	return (int64) SPI_processed;
}

/* ---- multi-row inserts (the insert method, and live inserts) --------------- */

int64
ps_spi_insert_batch_flush(PsApply *a)
{
	PlanEntry  *p;
	int			rc;
	int64		n;

	if (a->ib_rows == 0)
		return 0;
	p = get_plan(a, 'M', a->ib_cols, a->ib_rows);
	a->ctx_batch = a->ib_rows;
	rc = ps_apply_execute(p->plan, a->ib_values, a->ib_nulls, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "pglite_sync: apply statement failed: %s", SPI_result_code_string(rc));
	a->ctx_batch = 0;
	n = SPI_processed;
	a->ib_rows = 0;
	MemoryContextReset(a->ib_cxt);
	return n;
}

/* Add the current insert to the batch; sends it when full.  Rows applied. */
int64
ps_spi_insert_batch_add(PsApply *a)
{
	int64		done = 0;
	int			base;

	if (a->ib_rows > 0 && !bms_equal(a->ib_cols, a->row.set))
		done = ps_spi_insert_batch_flush(a);
	if (a->row.n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("insert carries no column of table %s", a->qualname)));
	if (a->ib_rows == 0 && !bms_equal(a->ib_cols, a->row.set))
	{
		MemoryContext old = MemoryContextSwitchTo(a->batch_cxt);
		int			x = -1;

		bms_free(a->ib_cols);
		a->ib_cols = bms_copy(a->row.set);
		a->ib_ncols = bms_num_members(a->ib_cols);
		a->ib_cap = Max(1, Min(INSERT_BATCH_ROWS, 65535 / a->ib_ncols));
		if (a->ib_order)
		{
			pfree(a->ib_order);
			pfree(a->ib_values);
			pfree(a->ib_nulls);
		}
		a->ib_order = palloc(sizeof(AttrNumber) * a->ib_ncols);
		a->ib_values = palloc(sizeof(Datum) * a->ib_ncols * a->ib_cap);
		a->ib_nulls = palloc(sizeof(char) * a->ib_ncols * a->ib_cap);
		for (int i = 0; (x = bms_next_member(a->ib_cols, x)) >= 0; i++)
			a->ib_order[i] = x;
		MemoryContextSwitchTo(old);
	}

	base = a->ib_rows * a->ib_ncols;
	{
		MemoryContext old = MemoryContextSwitchTo(a->ib_cxt);

		for (int i = 0; i < a->ib_ncols; i++)
		{
			bool		present;
			PsColumn   *c = &a->cols[a->ib_order[i] - 1];
			const char *v = ps_row_value(a, a->ib_order[i], &present);

			a->ctx_column = c->name;
			a->ib_values[base + i] = InputFunctionCall(&c->input, (char *) v, c->typioparam, c->typmod);
			a->ib_nulls[base + i] = v ? ' ' : 'n';
		}
		a->ctx_column = NULL;
		MemoryContextSwitchTo(old);
	}
	if (++a->ib_rows == a->ib_cap)
		done += ps_spi_insert_batch_flush(a);
	return done;
}

/* ---- holds: which shapes delivered a row of a shared table --------------------- */

static void
hex(StringInfo out, const char *p, size_t len)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++)
	{
		appendStringInfoChar(out, digits[((unsigned char) p[i]) >> 4]);
		appendStringInfoChar(out, digits[((unsigned char) p[i]) & 15]);
	}
}

/* One key column as holds (and writes) store it: its send form in hex, else its text. */
void
ps_key_part(StringInfo out, FmgrInfo *send, FmgrInfo *output, Datum d)
{
	if (send)
	{
		bytea	   *bin = DatumGetByteaP(FunctionCall1(send, d));

		hex(out, VARDATA(bin), VARSIZE(bin) - VARHDRSZ);
	}
	else
		appendStringInfoString(out, OutputFunctionCall(output, d));
}

/*
 * The current row's key as holds store it: each key column's binary send
 * form in hex, so that it does not depend on DateStyle, TimeZone or any
 * other setting of the session that computes it (ps_hold_key_sql in SQL).
 */
Datum
ps_hold_key(PsApply *a)
{
	Datum	   *elems = palloc(sizeof(Datum) * a->npk);
	StringInfoData b;

	initStringInfo(&b);
	for (int i = 0; i < a->npk; i++)
	{
		PsColumn   *c = &a->cols[a->pk[i] - 1];
		bool		present;
		const char *v = ps_row_value(a, a->pk[i], &present);
		Datum		d = InputFunctionCall(&c->input, (char *) v, c->typioparam, c->typmod);

		resetStringInfo(&b);
		ps_key_part(&b, c->has_send ? &c->send : NULL, &c->output, d);
		elems[i] = CStringGetTextDatum(b.data);
	}
	return PointerGetDatum(construct_array(elems, a->npk, TEXTOID, -1, false, TYPALIGN_INT));
}

void
ps_hold_take(PsApply *a, Datum key)
{
	ps_catalog_hold_take(RelationGetRelid(a->rel), key, a->sub->id, a->def->name, a->row.lsn);
}

void
ps_hold_lock(PsApply *a, Datum key)
{
	ps_catalog_hold_lock(RelationGetRelid(a->rel), key);
}

/* The row's version from another shape is newer than the one being applied. */
bool
ps_hold_newer(PsApply *a, Datum key)
{
	return ps_catalog_hold_newer(RelationGetRelid(a->rel), key, a->sub->id, a->def->name,
								 a->row.lsn);
}

/* Release this shape's hold; true if another shape still holds the row. */
bool
ps_hold_release(PsApply *a, Datum key)
{
	return ps_catalog_hold_release(RelationGetRelid(a->rel), key, a->sub->id, a->def->name);
}

void
ps_hold_drop_shape(PsApply *a)
{
	ps_catalog_hold_drop(RelationGetRelid(a->rel), a->sub->id, a->def->name);
}
