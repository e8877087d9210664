/*
 * apply_tags.c
 *	  Subquery shapes (Electric 1.7): every row's tags and active conditions
 *	  are kept in electric.row_tags, in the batch's transaction, and move
 *	  events act on the rows they match there (tags.c holds the rules, as
 *	  Electric's own clients apply them).  A move-out deletes the rows that
 *	  leave the shape through the ordinary delete path, so a shared table
 *	  keeps a row another shape still holds.
 */
#include "apply_int.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "catalog.h"
#include "spool.h"
#include "tags.h"

static Datum
cstrings_array(char **items, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = CStringGetTextDatum(items[i]);
	return PointerGetDatum(construct_array(d, n, TEXTOID, -1, false, TYPALIGN_INT));
}

static Datum
strs_array(const ps_str *strs, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = PointerGetDatum(cstring_to_text_with_len(strs[i].s, (int) strs[i].len));
	return PointerGetDatum(construct_array(d, n, TEXTOID, -1, false, TYPALIGN_INT));
}

static Datum
bools_array(const bool *b, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = BoolGetDatum(b[i]);
	return PointerGetDatum(construct_array(d, n, BOOLOID, 1, true, TYPALIGN_CHAR));
}

/* The elements of a text[] as C strings (and as ps_str when wanted). */
static char **
array_cstrings(Datum arr, int *n, ps_str **strs)
{
	Datum	   *elems;
	bool	   *nulls;
	char	  **out;

	deconstruct_array(DatumGetArrayTypeP(arr), TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, n);
	out = palloc(sizeof(char *) * Max(*n, 1));
	if (strs)
		*strs = palloc(sizeof(ps_str) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
	{
		out[i] = TextDatumGetCString(elems[i]);
		if (strs)
		{
			(*strs)[i].s = out[i];
			(*strs)[i].len = strlen(out[i]);
		}
	}
	return out;
}

static bool *
array_bools(Datum arr, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	bool	   *out;

	deconstruct_array(DatumGetArrayTypeP(arr), BOOLOID, 1, true, TYPALIGN_CHAR, &elems, &nulls, n);
	out = palloc(sizeof(bool) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
		out[i] = !nulls[i] && DatumGetBool(elems[i]);
	return out;
}

/* A stored state as tags.c works on it. */
static void
load_row(const PsTagState *st, ps_tag_row *row)
{
	ps_str	   *tags;
	char	  **entries = array_cstrings(st->entries, &row->nentries, NULL);

	/* tags.c owns the entries: they are ps_malloc'd, like these */
	row->entries = entries;
	(void) array_cstrings(st->tags, &row->ntags, &tags);
	row->tags = tags;
	row->active = st->active_null ? NULL : array_bools(st->active, &row->nactive);
	if (st->active_null)
		row->nactive = 0;
}

static void
store_row(PsApply *a, const char *key, const ps_tag_row *row, Datum pk)
{
	PsTagState	st;

	st.entries = cstrings_array(row->entries, row->nentries);
	st.active_null = row->active == NULL;
	st.active = row->active ? bools_array(row->active, row->nactive) : (Datum) 0;
	st.tags = strs_array(row->tags, row->ntags);
	st.pk = pk;
	ps_catalog_tags_put(a->sub->id, a->def->name, key, &st);
}

/* The current row's local key as text, in the order of a->pk; 0 if incomplete. */
static Datum
row_pk(PsApply *a)
{
	char	  **vals = palloc(sizeof(char *) * a->npk);

	for (int i = 0; i < a->npk; i++)
	{
		bool		present;

		vals[i] = (char *) ps_row_value(a, a->pk[i], &present);
		if (!present || vals[i] == NULL)
			return (Datum) 0;
	}
	return cstrings_array(vals, a->npk);
}

static bool
shape_has_tags(PsApply *a)
{
	if (a->has_tags < 0)
		a->has_tags = ps_catalog_tags_any(a->sub->id, a->def->name) ? 1 : 0;
	return a->has_tags > 0;
}

/*
 * After a change was applied: the row's tag state follows it.  An insert
 * starts afresh (a move-in insert adds to what the row had), an update
 * takes removed_tags away and adds tags, a delete forgets the row.
 */
void
ps_tags_after_change(PsApply *a)
{
	PsRow	   *r = &a->row;
	char	   *key;
	PsTagState	st;
	bool		found;
	ps_tag_row	row;
	Datum		pk;

	if (!r->tagged)
	{
		/* a delete without tags may still end a tagged row's state */
		if (r->op == 'D' && shape_has_tags(a))
			ps_catalog_tags_delete(a->sub->id, a->def->name, pnstrdup(r->key, r->key_len));
		return;
	}
	a->has_tags = 1;
	key = pnstrdup(r->key, r->key_len);
	if (r->op == 'D')
	{
		ps_catalog_tags_delete(a->sub->id, a->def->name, key);
		return;
	}
	memset(&row, 0, sizeof(row));
	found = ps_catalog_tags_get(a->sub->id, a->def->name, key, &st);
	if (found && (r->op == 'U' || r->move_in))
		load_row(&st, &row);
	ps_tag_remove_entries(&row, r->removed_tags, r->nremoved_tags);
	ps_tag_add_entries(&row, r->tags, r->ntags);
	/* tags and conditions as sent, else as stored */
	if (r->ntags > 0 || !found)
	{
		row.tags = r->tags;
		row.ntags = r->ntags;
	}
	else if (row.tags == NULL)
	{
		ps_str	   *tags;

		(void) array_cstrings(st.tags, &row.ntags, &tags);
		row.tags = tags;
	}
	if (r->active)
	{
		row.active = (bool *) r->active;
		row.nactive = r->nactive;
	}
	else if (row.active == NULL && found && !st.active_null)
		row.active = array_bools(st.active, &row.nactive);
	pk = row_pk(a);
	if (pk == (Datum) 0)
	{
		if (!found)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("change of key %s to table %s does not carry the primary key",
							key, a->qualname)));
		pk = st.pk;
	}
	store_row(a, key, &row, pk);
}

/* Delete the row with this local key, as a delete from the shape would. */
static int64
delete_row(PsApply *a, const char *key, Datum pk)
{
	char	  **vals;
	int			n;
	int64		done;
	MemoryContext old;

	vals = array_cstrings(pk, &n, NULL);
	if (n != a->npk)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("stored tag state of key %s in table %s has %d key columns, not %d",
						key, a->qualname, n, a->npk)));
	a->row.op = 'D';
	a->row.key = key;
	a->row.key_len = strlen(key);
	a->row.lsn = 0;
	a->row.move_in = false;
	a->row.tagged = false;
	a->row.set = NULL;
	a->row.n = 0;
	for (int i = 0; i < a->npk; i++)
	{
		a->row.by_att[a->pk[i] - 1] = vals[i];
		a->row.set = bms_add_member(a->row.set, a->pk[i]);
		a->row.n++;
	}
	old = MemoryContextSwitchTo(a->exec_cxt);
	done = ps_spi_apply_row(a);
	MemoryContextSwitchTo(old);
	MemoryContextReset(a->exec_cxt);
	return done;
}

/*
 * A move event: the rows with an entry matching its patterns, found through
 * the index, a thousand at a time.  A move-out deletes those that leave the
 * shape and updates the others; a move-in reactivates positions.  Returns
 * the rows deleted.
 */
int64
ps_tags_move(PsApply *a)
{
	bool		out = a->row.op == PS_OP_MOVE_OUT;
	int			np = a->row.npatterns;
	ps_pattern *patterns = palloc(sizeof(ps_pattern) * Max(np, 1));
	char	  **want = palloc(sizeof(char *) * Max(np, 1));
	MemoryContext cxt;
	MemoryContext old;
	SPITupleTable *tt;
	Portal		portal;
	int64		deleted = 0;

	/* the record goes with the next one read: keep the patterns */
	for (int i = 0; i < np; i++)
	{
		patterns[i].pos = a->row.patterns[i].pos;
		patterns[i].value.s = pnstrdup(a->row.patterns[i].value.s, a->row.patterns[i].value.len);
		patterns[i].value.len = a->row.patterns[i].value.len;
		want[i] = ps_tag_entry(patterns[i].pos, patterns[i].value.s, patterns[i].value.len);
	}
	if (np == 0)
		return 0;
	cxt = AllocSetContextCreate(CurrentMemoryContext, "pglite_sync move event", ALLOCSET_DEFAULT_SIZES);
	portal = ps_catalog_tags_open(a->sub->id, a->def->name, cstrings_array(want, np));
	while ((tt = ps_catalog_tags_fetch(portal)) != NULL)
	{
		for (uint64 i = 0; i < tt->numvals; i++)
		{
			HeapTuple	t = tt->vals[i];
			bool		isnull;
			char	   *key;
			PsTagState	st;
			ps_tag_row	row;

			old = MemoryContextSwitchTo(cxt);
			key = TextDatumGetCString(SPI_getbinval(t, tt->tupdesc, 1, &isnull));
			st.entries = SPI_getbinval(t, tt->tupdesc, 2, &isnull);
			st.active = SPI_getbinval(t, tt->tupdesc, 3, &st.active_null);
			st.tags = SPI_getbinval(t, tt->tupdesc, 4, &isnull);
			st.pk = SPI_getbinval(t, tt->tupdesc, 5, &isnull);
			memset(&row, 0, sizeof(row));
			load_row(&st, &row);
			if (out && ps_tag_move_out(&row, patterns, np))
			{
				ps_catalog_tags_delete(a->sub->id, a->def->name, key);
				deleted += delete_row(a, key, st.pk);
			}
			else
			{
				if (!out)
					ps_tag_move_in(&row, patterns, np);
				store_row(a, key, &row, st.pk);
			}
			MemoryContextSwitchTo(old);
			MemoryContextReset(cxt);
		}
		SPI_freetuptable(tt);
	}
	ps_catalog_tags_close(portal);
	MemoryContextDelete(cxt);
	return deleted;
}

/* The shape starts again from -1: its rows' tag state goes with them. */
void
ps_tags_clear(PsApply *a)
{
	ps_catalog_tags_clear(a->sub->id, a->def->name);
	a->has_tags = 0;
}
