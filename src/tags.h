/*
 * tags.h
 *	  The rows of a subquery shape and its move events (pure C), by the
 *	  rules of Electric's own clients (the Elixir client's TagTracker):
 *
 *	  - a change gives a row its tags, one string per disjunct of the where
 *	    clause's DNF, "/" between positions ("h1/h2", "h1/", "/1"); its
 *	    entries are the (position, hash) pairs of the non-empty parts,
 *	    written "pos:hash"; removed_tags take entries away;
 *	  - a move-out with patterns (pos, value): a row with a matching entry
 *	    loses it; without active_conditions the row leaves the shape when
 *	    no entry is left; with them, the matched positions turn false and
 *	    the row leaves when no disjunct has all its positions true;
 *	  - a move-in turns the matched positions of such rows true.
 */
#ifndef PS_TAGS_H
#define PS_TAGS_H

#include <stdbool.h>
#include <stddef.h>

#include "message.h"

/* A row's tag state: entries "pos:hash", active conditions, its tags. */
typedef struct ps_tag_row
{
	char	  **entries;		/* owned: ps_malloc'd strings */
	int			nentries;
	bool	   *active;			/* NULL when the shape sends none */
	int			nactive;
	const ps_str *tags;			/* the disjuncts' positions come from these */
	int			ntags;
} ps_tag_row;

/* "pos:hash" of a pattern or of a tag part; ps_malloc'd. */
extern char *ps_tag_entry(long pos, const char *hash, size_t len);

/* The entries of a set of tags, appended to row (no duplicates). */
extern void ps_tag_add_entries(ps_tag_row *row, const ps_str *tags, int ntags);

/* Drop the entries of removed tags from row. */
extern void ps_tag_remove_entries(ps_tag_row *row, const ps_str *tags, int ntags);

/* Does the row have an entry matching one of the patterns? */
extern bool ps_tag_matches(const ps_tag_row *row, const ps_pattern *patterns, int npatterns);

/* A move-out: true when the row leaves the shape. */
extern bool ps_tag_move_out(ps_tag_row *row, const ps_pattern *patterns, int npatterns);

/* A move-in: matched positions become active. */
extern void ps_tag_move_in(ps_tag_row *row, const ps_pattern *patterns, int npatterns);

extern void ps_tag_row_free(ps_tag_row *row);

#endif
