/* Unit tests: snapshot visibility and xid widening. */
#include <stdint.h>

#include "unit.h"
#include "visibility.h"

int
main(void)
{
	uint64_t	xip[] = {105, 107};
	uint64_t	e = UINT64_C(0x100000000);

	CHECK(ps_xid_visible(99, 100, 110, xip, 2));		/* committed before xmin */
	CHECK(ps_xid_visible(104, 100, 110, xip, 2));		/* between, not in progress */
	CHECK(!ps_xid_visible(105, 100, 110, xip, 2));		/* in progress */
	CHECK(!ps_xid_visible(110, 100, 110, xip, 2));		/* at xmax: not started */
	CHECK(!ps_xid_visible(200, 100, 110, xip, 2));
	CHECK(ps_xid_visible(100, 100, 100, NULL, 0) == false);

	/* widening a 32-bit xid against the snapshot's xmax */
	CHECK(ps_xid_widen(105, 110) == 105);
	CHECK(ps_xid_widen(5, 3 * e + 10) == 3 * e + 5);
	CHECK(ps_xid_widen(0xFFFFFFF0u, 3 * e + 10) == 2 * e + 0xFFFFFFF0u);	/* before the wrap */
	CHECK(ps_xid_widen(5, 3 * e + 0xFFFFFFF0u) == 4 * e + 5);		/* after the wrap */
	CHECK(ps_xid_widen(0xFFFFFFF0u, 10) == 0xFFFFFFF0u);			/* no epoch below 0 */

	return UNIT_DONE();
}
