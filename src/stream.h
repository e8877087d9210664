/*
 * stream.h
 *	  One subscription's Electric stream: the protocol loop shared by the
 *	  background worker (worker.c) and the foreground procedure
 *	  electric.sync_now() (foreground.c).
 */
#ifndef PS_STREAM_H
#define PS_STREAM_H

#include "pglite_sync.h"

#include "bodysplit.h"
#include "catalog.h"
#include "http.h"
#include "message.h"
#include "shapeopts.h"
#include "spool.h"

typedef enum PsFailureKind
{
	PS_FAIL_RETRY,				/* backoff: retrying alone may fix it */
	PS_FAIL_FATAL				/* error: needs a fix elsewhere, retried at the cap */
} PsFailureKind;

typedef struct PsStream
{
	bool		foreground;		/* run by sync_now() inside a CALL */
	int			slotno;
	PsSlot	   *slot;
	PsWorkerArgs args;
	uint64		start_seq;
	MemoryContext worker_cxt;	/* lives as long as the stream */
	MemoryContext iter_cxt;		/* reset for every step */
	Oid			catalog_user;	/* foreground: runs catalog statements */

	PsSubscription *sub;
	ps_shape	shape;
	char	   *base_url;
	char	   *host;
	PsHttp	   *http;
	PsSpool    *spool;

	/* stream position in memory; the catalog has the committed one */
	char		handle[256];
	char		offset[128];
	char		cursor[128];
	char		committed_handle[256];
	char		committed_offset[128];
	bool		live;			/* caught up once: long-poll next */
	bool		replace;		/* next commit replaces the table's rows */
	bool		from_start;		/* the open batch began at -1 (bulk load ok) */
	bool		row_by_row;	/* a batch failed: redo it one statement per change */
	bool		notified;		/* first up-to-date of this run committed */
	char		buster[32];
	int			failures;		/* consecutive retryable failures */
	int			refetches;		/* 409s without an up-to-date in between */
	bool		apply_pending;	/* spool holds a complete batch */
	uint64		request_ticket; /* sync_requested when the request began */
	uint64		batch_ticket;	/* ticket of the request that completed it */
	bool		request_live;

	/* the response being read */
	ps_bodysplit split;
	ps_message	msg;
	bool		resp_up_to_date;
	bool		resp_must_refetch;
	bool		resp_checked;
	int64		resp_changes;
	PsFailureKind resp_fail_kind;
	char		resp_error[600];
	ErrorData  *cb_error;
} PsStream;

/* Read the subscription and decide where the stream starts; false if it is
 * gone (or stopped, when require_enabled). Needs a transaction and SPI. */
extern bool ps_stream_load(PsStream *s, PsSubscription *sub);
extern void ps_stream_open(PsStream *s);
extern void ps_stream_close(PsStream *s);

/* One step: apply a complete batch, or make one request. */
extern void ps_stream_step(PsStream *s);

/* Worker only: an ERROR escaped a step; record it, then back off. */
extern void ps_stream_failed(PsStream *s, ErrorData *e);

extern bool ps_stream_stop_requested(PsStream *s);

#endif
