/*
 * visibility.c
 *	  Snapshot visibility of a transaction (see visibility.h), as
 *	  PostgreSQL decides it: below xmin it had committed, at or above xmax
 *	  it had not started, in between it had unless it was in progress.
 */
#include "visibility.h"

#define EPOCH	UINT64_C(0x100000000)
#define HALF	UINT64_C(0x80000000)

uint64_t
ps_xid_widen(uint32_t xid, uint64_t ref)
{
	uint64_t	full = (ref & ~(EPOCH - 1)) | xid;

	if (full > ref && full - ref > HALF && full >= EPOCH)
		full -= EPOCH;
	else if (full < ref && ref - full > HALF)
		full += EPOCH;
	return full;
}

bool
ps_xid_visible(uint64_t xid, uint64_t xmin, uint64_t xmax, const uint64_t *xip, int nxip)
{
	if (xid < xmin)
		return true;
	if (xid >= xmax)
		return false;
	for (int i = 0; i < nxip; i++)
		if (xip[i] == xid)
			return false;
	return true;
}
