/*
 * apply_bulk.c
 *	  Loading the leading snapshot inserts of a shape that restarted from
 *	  -1 in bulk: the COPY FROM machinery fed from the spool by a callback
 *	  ('copy'), or INSERT ... SELECT from json_to_recordset, one statement
 *	  per chunk ('json').  Both stop at the first row that does not fit (an
 *	  update, another column set, a live change), which goes back to the
 *	  row-by-row path.
 */
#include "apply_int.h"

#include "catalog/pg_type.h"
#include "commands/copy.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_node.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/rls.h"

#define JSON_CHUNK_ROWS		10000
#define JSON_CHUNK_BYTES	(16 * 1024 * 1024)

#ifndef __PGLITE__
/* ---- bulk loading: COPY ------------------------------------------------------- */

typedef struct CopySource
{
	PsApply    *a;
	Bitmapset  *cols;
	AttrNumber *order;			/* column order of the COPY */
	int			ncols;
	bool		eof;
	int			pos;			/* consumed bytes of a->line */
	int64		rows;
} CopySource;

static CopySource *copy_source;	/* COPY's callback has no argument */

static void
append_copy_text(StringInfo b, const char *s)
{
	const char *start = s;

	for (; *s; s++)
	{
		char		esc = 0;

		switch (*s)
		{
			case '\\':
				esc = '\\';
				break;
			case '\n':
				esc = 'n';
				break;
			case '\r':
				esc = 'r';
				break;
			case '\t':
				esc = 't';
				break;
			default:
				continue;
		}
		appendBinaryStringInfo(b, start, s - start);
		appendStringInfoChar(b, '\\');
		appendStringInfoChar(b, esc);
		start = s + 1;
	}
	appendBinaryStringInfo(b, start, s - start);
}


static void
format_copy_line(CopySource *src)
{
	PsApply    *a = src->a;

	for (int i = 0; i < src->ncols; i++)
	{
		bool		present;
		const char *v = ps_row_value(a, src->order[i], &present);

		if (i > 0)
			appendStringInfoChar(&a->line, '\t');
		if (v == NULL)
			appendStringInfoString(&a->line, "\\N");
		else
			append_copy_text(&a->line, v);
	}
	appendStringInfoChar(&a->line, '\n');
	src->rows++;
}

static int
copy_read_cb(void *outbuf, int minread, int maxread)
{
	CopySource *src = copy_source;
	PsApply    *a = src->a;
	int			copied = 0;

	while (copied < minread || copied == 0)
	{
		int			avail = a->line.len - src->pos;

		if (avail > 0)
		{
			int			n = Min(avail, maxread - copied);

			memcpy((char *) outbuf + copied, a->line.data + src->pos, n);
			copied += n;
			src->pos += n;
			if (copied >= maxread)
				break;
			continue;
		}
		if (src->eof)
			break;
		resetStringInfo(&a->line);
		src->pos = 0;
		/* refill with rows up to ~64 kB */
		while (a->line.len < 65536)
		{
			if (!ps_row_next(a))
			{
				src->eof = true;
				break;
			}
			if (!ps_row_fits(a, src->cols))
			{
				a->pushed_back = true;
				src->eof = true;
				break;
			}
			format_copy_line(src);
		}
	}
	return copied;
}

/* COPY FROM refuses tables with row level security: use SQL there */
bool
ps_bulk_copy_allowed(PsApply *a)
{
	return check_enable_rls(RelationGetRelid(a->rel), InvalidOid, false) != RLS_ENABLED;
}

int64
ps_bulk_copy(PsApply *a)
{
	CopySource	src;
	List	   *names = NIL;
	CopyFromState cstate;
	ParseState *pstate;
	uint64		processed;
	int			x = -1;

	memset(&src, 0, sizeof(src));
	src.a = a;
	src.cols = bms_copy(a->row.set);
	src.ncols = bms_num_members(src.cols);
	src.order = palloc(sizeof(AttrNumber) * src.ncols);
	while ((x = bms_next_member(src.cols, x)) >= 0)
	{
		src.order[list_length(names)] = x;
		names = lappend(names, makeString(a->cols[x - 1].name));
	}
	/* the current row is the first line */
	resetStringInfo(&a->line);
	format_copy_line(&src);

	/* as DoCopy does: a range table entry, checked for INSERT on the columns */
	pstate = make_parsestate(NULL);
	ps_check_insert_columns(pstate, a->rel, src.order, src.ncols);
	copy_source = &src;
	cstate = BeginCopyFrom(pstate, a->rel, NULL, NULL, false, copy_read_cb, names,
						   list_make1(makeDefElem("encoding",
												  (Node *) makeString((char *) GetDatabaseEncodingName()), -1)));
	processed = CopyFrom(cstate);
	EndCopyFrom(cstate);
	copy_source = NULL;
	free_parsestate(pstate);
	CommandCounterIncrement();
	return (int64) processed;
}

#endif

/* ---- bulk loading: json_to_recordset ------------------------------------------ */

int64
ps_bulk_json(PsApply *a)
{
	Bitmapset  *cols = bms_copy(a->row.set);
	AttrNumber *order = palloc(sizeof(AttrNumber) * bms_num_members(cols));
	int			ncols = 0;
	StringInfoData sql;
	StringInfoData doc;
	SPIPlanPtr	plan;
	Oid			argtype = JSONOID;
	bool		more = true;
	bool		override = false;
	int64		total = 0;
	int			x = -1;

	initStringInfo(&sql);
	while ((x = bms_next_member(cols, x)) >= 0)
	{
		order[ncols++] = x;
		override |= a->cols[x - 1].identity_always;
	}
	appendStringInfo(&sql, "INSERT INTO %s (", a->qualname);
	for (int i = 0; i < ncols; i++)
		appendStringInfo(&sql, "%s%s", i ? ", " : "", quote_identifier(a->cols[order[i] - 1].name));
	appendStringInfoString(&sql, override ? ") OVERRIDING SYSTEM VALUE SELECT " : ") SELECT ");
	/*
	 * The record definition names the columns' own types, so that
	 * json_to_recordset converts each string with the type's input function
	 * and typmod, exactly as the other paths do (a cast would truncate
	 * silently).  Only json and jsonb are read as text and cast: given a JSON
	 * string, json_to_recordset would keep it a string rather than parse it.
	 */
	for (int i = 0; i < ncols; i++)
	{
		PsColumn   *c = &a->cols[order[i] - 1];
		Oid			base = getBaseType(c->typid);

		if (base == JSONOID || base == JSONBOID)
			appendStringInfo(&sql, "%sx.%s::%s", i ? ", " : "", quote_identifier(c->name),
							 format_type_with_typemod(c->typid, c->typmod));
		else
			appendStringInfo(&sql, "%sx.%s", i ? ", " : "", quote_identifier(c->name));
	}
	appendStringInfoString(&sql, " FROM pg_catalog.json_to_recordset($1) AS x(");
	for (int i = 0; i < ncols; i++)
	{
		PsColumn   *c = &a->cols[order[i] - 1];
		Oid			base = getBaseType(c->typid);

		appendStringInfo(&sql, "%s%s %s", i ? ", " : "", quote_identifier(c->name),
						 (base == JSONOID || base == JSONBOID) ? "text" :
						 format_type_with_typemod(c->typid, c->typmod));
	}
	appendStringInfoChar(&sql, ')');
	plan = SPI_prepare(sql.data, 1, &argtype);
	if (plan == NULL)
		elog(ERROR, "pglite_sync: could not prepare \"%s\"", sql.data);

	initStringInfo(&doc);
	while (more)
	{
		int			n = 0;
		Datum		arg;
		int			rc;
		const char *text;

		resetStringInfo(&doc);
		appendStringInfoChar(&doc, '[');
		/* the current row opens each chunk */
		for (;;)
		{
			appendStringInfoString(&doc, n ? ",{" : "{");
			for (int i = 0; i < ncols; i++)
			{
				bool		present;
				const char *v = ps_row_value(a, order[i], &present);

				if (i > 0)
					appendStringInfoChar(&doc, ',');
				escape_json(&doc, a->cols[order[i] - 1].name);
				appendStringInfoChar(&doc, ':');
				if (v == NULL)
					appendStringInfoString(&doc, "null");
				else
					escape_json(&doc, v);
			}
			appendStringInfoChar(&doc, '}');
			n++;
			if (!ps_row_next(a))
			{
				more = false;
				break;
			}
			if (!ps_row_fits(a, cols))
			{
				a->pushed_back = true;
				more = false;
				break;
			}
			if (n >= JSON_CHUNK_ROWS || doc.len >= JSON_CHUNK_BYTES)
				break;
		}
		appendStringInfoChar(&doc, ']');
		/* values were converted to the server encoding already */
		text = doc.data;
		arg = PointerGetDatum(cstring_to_text_with_len(text, doc.len));
		rc = ps_apply_execute(plan, &arg, NULL, false, 0);
		if (rc != SPI_OK_INSERT)
			elog(ERROR, "pglite_sync: json load failed: %s", SPI_result_code_string(rc));
		total += SPI_processed;
		pfree(DatumGetPointer(arg));	/* a chunk is megabytes: do not keep it */
	}
	SPI_freeplan(plan);
	return total;
}
