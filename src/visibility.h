/*
 * visibility.h
 *	  Which source transactions a snapshot saw (pure C): a subset snapshot
 *	  answers with xmin, xmax and xip_list (64-bit), changes carry 32-bit
 *	  txids; a change the snapshot already saw is not applied again.
 */
#ifndef PS_VISIBILITY_H
#define PS_VISIBILITY_H

#include <stdbool.h>
#include <stdint.h>

/* A 32-bit xid as the 64-bit one nearest ref (the same epoch, or a wrap). */
extern uint64_t ps_xid_widen(uint32_t xid, uint64_t ref);

/* Did the snapshot (xmin, xmax, xip) see transaction xid? */
extern bool ps_xid_visible(uint64_t xid, uint64_t xmin, uint64_t xmax,
						   const uint64_t *xip, int nxip);

#endif
