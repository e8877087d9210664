/* Unit tests: tag state of subquery shapes (the TagTracker rules). */
#include <stdlib.h>

#include "tags.h"
#include "unit.h"

static ps_str
S(const char *s)
{
	ps_str		v = {s, strlen(s)};

	return v;
}

static ps_pattern
P(long pos, const char *v)
{
	ps_pattern	p;

	p.pos = pos;
	p.value = S(v);
	return p;
}

int
main(void)
{
	ps_tag_row	r;
	ps_str		one[] = {S("h1")};
	ps_str		two[] = {S("h1/"), S("/h2")};
	ps_str		and_[] = {S("h1/1")};
	ps_pattern	p1 = P(0, "h1");
	ps_pattern	p2 = P(1, "h2");
	ps_pattern	other = P(0, "zz");
	bool		act[2];

	/* one subquery, no active_conditions: a move-out deletes */
	memset(&r, 0, sizeof(r));
	r.tags = one;
	r.ntags = 1;
	ps_tag_add_entries(&r, one, 1);
	CHECK(r.nentries == 1);
	CHECK_STR(r.entries[0], "0:h1");
	CHECK(ps_tag_matches(&r, &p1, 1));
	CHECK(!ps_tag_matches(&r, &other, 1));
	CHECK(!ps_tag_move_out(&r, &other, 1));
	CHECK(r.nentries == 1);
	CHECK(ps_tag_move_out(&r, &p1, 1));
	CHECK(r.nentries == 0);
	ps_tag_row_free(&r);

	/* two disjuncts (a IN (…) OR b IN (…)): one move-out keeps the row */
	memset(&r, 0, sizeof(r));
	r.tags = two;
	r.ntags = 2;
	ps_tag_add_entries(&r, two, 2);
	ps_tag_add_entries(&r, two, 2);		/* no duplicates */
	CHECK(r.nentries == 2);
	CHECK(!ps_tag_move_out(&r, &p1, 1));
	CHECK(r.nentries == 1);
	CHECK(ps_tag_move_out(&r, &p2, 1));
	ps_tag_row_free(&r);

	/* removed_tags take entries away */
	memset(&r, 0, sizeof(r));
	ps_tag_add_entries(&r, two, 2);
	ps_tag_remove_entries(&r, two, 1);
	CHECK(r.nentries == 1);
	CHECK_STR(r.entries[0], "1:h2");
	ps_tag_row_free(&r);

	/* with active_conditions: positions turn false, the row leaves when no
	 * disjunct has all its positions true; a move-in turns them true */
	memset(&r, 0, sizeof(r));
	act[0] = act[1] = true;
	r.tags = two;
	r.ntags = 2;
	r.active = act;
	r.nactive = 2;
	ps_tag_add_entries(&r, two, 2);
	CHECK(!ps_tag_move_out(&r, &p1, 1));
	CHECK(!act[0] && act[1]);
	CHECK(r.nentries == 2);				/* entries stay with active_conditions */
	ps_tag_move_in(&r, &p1, 1);
	CHECK(act[0]);
	CHECK(!ps_tag_move_out(&r, &p2, 1));
	CHECK(ps_tag_move_out(&r, &p1, 1));	/* both disjuncts false now */
	ps_tag_row_free(&r);

	/* one disjunct of two positions (a IN (…) AND b = 1): one false is out */
	memset(&r, 0, sizeof(r));
	act[0] = act[1] = true;
	r.tags = and_;
	r.ntags = 1;
	r.active = act;
	r.nactive = 2;
	ps_tag_add_entries(&r, and_, 1);
	CHECK(r.nentries == 2);
	CHECK(ps_tag_move_out(&r, &p1, 1));
	ps_tag_row_free(&r);

	/* a move-in of a row without active_conditions changes nothing */
	memset(&r, 0, sizeof(r));
	ps_tag_add_entries(&r, one, 1);
	ps_tag_move_in(&r, &p1, 1);
	CHECK(r.nentries == 1);
	ps_tag_row_free(&r);

	return UNIT_DONE();
}
