/*
 * align.h
 *	  Where the shapes of one subscription may commit together (pure C).
 *
 * Each shape's stream is complete up to the LSN of its latest up-to-date
 * (global_last_seen_lsn), except for a transaction it has begun sending
 * without its "last" op.  A source transaction that touched several shapes
 * lands in one local transaction when nothing commits past the lowest of
 * those points: the commit target.  A shape whose up-to-date lags data that
 * others hold beyond the target is asked again (non-live) so the group is
 * not held up by its long-poll.
 */
#ifndef PS_ALIGN_H
#define PS_ALIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PS_LSN_UNKNOWN UINT64_MAX	/* an up-to-date without global_last_seen_lsn */

typedef struct ps_align_member
{
	bool		reported;		/* an up-to-date arrived since the (re)start */
	uint64_t	ready_lsn;		/* of the latest up-to-date */
	uint64_t	open_lsn;		/* a transaction without its last op; 0 = none */
	uint64_t	max_lsn;		/* highest LSN spooled and not committed */
} ps_align_member;

/* The commit target, or false while some shape has not reported. */
extern bool ps_align_target(const ps_align_member *m, int n, uint64_t *target);

/*
 * Mark in lagging[] the shapes whose latest up-to-date is below data that
 * another shape holds beyond target; returns how many.
 */
extern int	ps_align_laggards(const ps_align_member *m, int n, uint64_t target,
							  bool *lagging);

/* The offset that resumes a stream after everything up to lsn: "<lsn>_inf". */
extern void ps_align_offset_after(uint64_t lsn, char *buf, size_t len);

#endif
