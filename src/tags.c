/*
 * tags.c
 *	  Tag state of a subquery shape's rows (see tags.h).
 */
#include "tags.h"

#include <stdio.h>
#include <string.h>

#include "ps_alloc.h"

char *
ps_tag_entry(long pos, const char *hash, size_t len)
{
	char		head[24];
	int			hl = snprintf(head, sizeof(head), "%ld:", pos);
	char	   *e = ps_malloc(hl + len + 1);

	memcpy(e, head, hl);
	memcpy(e + hl, hash, len);
	e[hl + len] = '\0';
	return e;
}

static int
find_entry(const ps_tag_row *row, const char *e)
{
	for (int i = 0; i < row->nentries; i++)
		if (strcmp(row->entries[i], e) == 0)
			return i;
	return -1;
}

/* Call fn for each non-empty part (position, hash) of a tag string. */
static void
each_part(const ps_str *tag, void (*fn) (ps_tag_row *, long, const char *, size_t),
		  ps_tag_row *row)
{
	const char *p = tag->s;
	const char *end = tag->s + tag->len;
	long		pos = 0;

	for (;;)
	{
		const char *slash = memchr(p, '/', end - p);
		const char *stop = slash ? slash : end;

		if (stop > p)
			fn(row, pos, p, stop - p);
		if (slash == NULL)
			break;
		p = slash + 1;
		pos++;
	}
}

static void
add_one(ps_tag_row *row, long pos, const char *h, size_t len)
{
	char	   *e = ps_tag_entry(pos, h, len);

	if (find_entry(row, e) >= 0)
	{
		ps_free(e);
		return;
	}
	row->entries = ps_realloc(row->entries, sizeof(char *) * (row->nentries + 1));
	row->entries[row->nentries++] = e;
}

static void
drop_at(ps_tag_row *row, int i)
{
	ps_free(row->entries[i]);
	row->entries[i] = row->entries[--row->nentries];
}

static void
remove_one(ps_tag_row *row, long pos, const char *h, size_t len)
{
	char	   *e = ps_tag_entry(pos, h, len);
	int			i = find_entry(row, e);

	if (i >= 0)
		drop_at(row, i);
	ps_free(e);
}

void
ps_tag_add_entries(ps_tag_row *row, const ps_str *tags, int ntags)
{
	for (int i = 0; i < ntags; i++)
		each_part(&tags[i], add_one, row);
}

void
ps_tag_remove_entries(ps_tag_row *row, const ps_str *tags, int ntags)
{
	for (int i = 0; i < ntags; i++)
		each_part(&tags[i], remove_one, row);
}

bool
ps_tag_matches(const ps_tag_row *row, const ps_pattern *patterns, int npatterns)
{
	for (int k = 0; k < npatterns; k++)
	{
		char	   *e = ps_tag_entry(patterns[k].pos, patterns[k].value.s, patterns[k].value.len);
		bool		found = find_entry(row, e) >= 0;

		ps_free(e);
		if (found)
			return true;
	}
	return false;
}

/* Is the part at position pos of a tag string non-empty? */
static bool
has_position(const ps_str *tag, long pos)
{
	const char *p = tag->s;
	const char *end = tag->s + tag->len;

	for (long i = 0;; i++)
	{
		const char *slash = memchr(p, '/', end - p);
		const char *stop = slash ? slash : end;

		if (i == pos)
			return stop > p;
		if (slash == NULL)
			return false;
		p = slash + 1;
	}
}

/* Some disjunct has all of its positions active. */
static bool
visible(const ps_tag_row *row)
{
	for (int d = 0; d < row->ntags; d++)
	{
		bool		all = true;
		bool		any = false;

		for (long pos = 0; pos < row->nactive && all; pos++)
			if (has_position(&row->tags[d], pos))
			{
				any = true;
				all = row->active[pos];
			}
		if (all && any)
			return true;
	}
	return false;
}

bool
ps_tag_move_out(ps_tag_row *row, const ps_pattern *patterns, int npatterns)
{
	bool		hit = false;

	for (int k = 0; k < npatterns; k++)
	{
		char	   *e = ps_tag_entry(patterns[k].pos, patterns[k].value.s, patterns[k].value.len);
		int			i = find_entry(row, e);

		ps_free(e);
		if (i < 0)
			continue;
		hit = true;
		if (row->active == NULL)
			drop_at(row, i);
		else if (patterns[k].pos < row->nactive)
			row->active[patterns[k].pos] = false;
	}
	if (!hit)
		return false;
	return row->active == NULL ? row->nentries == 0 : !visible(row);
}

void
ps_tag_move_in(ps_tag_row *row, const ps_pattern *patterns, int npatterns)
{
	if (row->active == NULL)
		return;
	for (int k = 0; k < npatterns; k++)
	{
		char	   *e = ps_tag_entry(patterns[k].pos, patterns[k].value.s, patterns[k].value.len);

		if (find_entry(row, e) >= 0 && patterns[k].pos < row->nactive)
			row->active[patterns[k].pos] = true;
		ps_free(e);
	}
}

void
ps_tag_row_free(ps_tag_row *row)
{
	for (int i = 0; i < row->nentries; i++)
		ps_free(row->entries[i]);
	ps_free(row->entries);
	row->entries = NULL;
	row->nentries = 0;
}
