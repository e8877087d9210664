/* Unit tests: the commit target of a group of shapes. */
#include <string.h>

#include "align.h"
#include "unit.h"

int
main(void)
{
	ps_align_member m[3];
	uint64_t	t = 0;
	bool		lag[3];
	char		buf[40];

	memset(m, 0, sizeof(m));
	/* nobody commits before every shape has reported once */
	m[0].reported = true;
	m[0].ready_lsn = 500;
	CHECK(!ps_align_target(m, 2, &t));
	m[1].reported = true;
	m[1].ready_lsn = 300;
	CHECK(ps_align_target(m, 2, &t) && t == 300);

	/* never past a transaction whose last op has not arrived */
	m[0].open_lsn = 200;
	CHECK(ps_align_target(m, 2, &t) && t == 199);
	m[0].open_lsn = 0;

	/* an up-to-date without global_last_seen_lsn does not hold others back */
	m[1].ready_lsn = PS_LSN_UNKNOWN;
	CHECK(ps_align_target(m, 2, &t) && t == 500);
	m[1].ready_lsn = PS_LSN_UNKNOWN;
	m[0].ready_lsn = PS_LSN_UNKNOWN;
	CHECK(ps_align_target(m, 2, &t) && t == PS_LSN_UNKNOWN);

	/* a shape holding data past the target makes the lagging one a laggard */
	m[0].ready_lsn = 500;
	m[0].max_lsn = 480;
	m[1].ready_lsn = 300;
	m[1].max_lsn = 0;
	m[2].reported = true;
	m[2].ready_lsn = 600;
	CHECK(ps_align_target(m, 3, &t) && t == 300);
	CHECK(ps_align_laggards(m, 3, t, lag) == 1);
	CHECK(!lag[0] && lag[1] && !lag[2]);
	m[0].max_lsn = 250;				/* all data within the target: nobody lags */
	CHECK(ps_align_laggards(m, 3, t, lag) == 0);

	ps_align_offset_after(300, buf, sizeof(buf));
	CHECK_STR(buf, "300_inf");
	CHECK(ps_align_target(m, 0, &t) == false);

	return UNIT_DONE();
}
