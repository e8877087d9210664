/*
 * align.c
 *	  The commit target of a group of shapes (see align.h).
 */
#include "align.h"

#include <inttypes.h>
#include <stdio.h>

bool
ps_align_target(const ps_align_member *m, int n, uint64_t *target)
{
	uint64_t	t = PS_LSN_UNKNOWN;

	for (int i = 0; i < n; i++)
	{
		uint64_t	ready = m[i].ready_lsn;

		if (!m[i].reported)
			return false;
		/* never past a transaction whose last op has not arrived */
		if (m[i].open_lsn != 0 && m[i].open_lsn - 1 < ready)
			ready = m[i].open_lsn - 1;
		if (ready < t)
			t = ready;
	}
	*target = t;
	return n > 0;
}

int
ps_align_laggards(const ps_align_member *m, int n, uint64_t target, bool *lagging)
{
	uint64_t	held = 0;
	int			count = 0;

	for (int i = 0; i < n; i++)
		if (m[i].max_lsn > target && m[i].max_lsn > held)
			held = m[i].max_lsn;
	for (int i = 0; i < n; i++)
	{
		lagging[i] = held != 0 && m[i].reported && m[i].ready_lsn != PS_LSN_UNKNOWN &&
			m[i].ready_lsn < held && m[i].max_lsn <= target;
		if (lagging[i])
			count++;
	}
	return count;
}

void
ps_align_offset_after(uint64_t lsn, char *buf, size_t len)
{
	snprintf(buf, len, "%" PRIu64 "_inf", lsn);
}
