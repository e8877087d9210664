/*
 * response.h
 *	  What a shape response said, whoever fetched it: the libcurl transport
 *	  of the workers (http.c) or the host of a host-driven subscription
 *	  (hostdrive.c), which hands the whole response to ingest_response().
 */
#ifndef PS_RESPONSE_H
#define PS_RESPONSE_H

#include "postgres.h"

#include "protocol.h"

/* Protocol values longer than these are refused, never truncated. */
#define PS_HANDLE_MAX	256
#define PS_OFFSET_MAX	128
#define PS_CURSOR_MAX	128

typedef enum PsTransferOutcome
{
	PS_XFER_DONE,				/* a complete response (any status) */
	PS_XFER_FAILED,				/* network error, timeout, reset, truncation */
	PS_XFER_INTERRUPTED,		/* abandoned: stop, reload or wait_for_sync */
	PS_XFER_BODY_REJECTED,		/* the body reader stopped the transfer */
	PS_XFER_TOO_LARGE,			/* over pglite_sync.max_response_size */
	PS_XFER_REFUSED				/* not sent or not followed: host, scheme, redirect */
} PsTransferOutcome;

typedef struct PsResponse
{
	PsTransferOutcome outcome;
	long		status;
	char		error[512];		/* for PS_XFER_FAILED / TOO_LARGE */

	/* electric-* headers (current names win over legacy ones) */
	bool		has_handle;
	char		handle[PS_HANDLE_MAX];
	bool		has_offset;
	char		offset[PS_OFFSET_MAX];
	bool		has_cursor;
	char		cursor[PS_CURSOR_MAX];
	bool		up_to_date;
	bool		has_schema;
	bool		snapshot;		/* electric-snapshot: a subset response */
	bool		too_long;		/* a header value exceeded its limit */
	const char *too_long_name;
	int64		retry_after_ms; /* -1 when absent or invalid */
	bool		has_content_type;
	char		content_type[128];
	char		location[1024];	/* of a redirect; empty when absent or too long */

	/* the start of a non-2xx body, for error messages */
	char		error_body[512];
	size_t		error_body_len;

	size_t		body_bytes;
	double		seconds;

	bool		legacy[PS_HDR_COUNT];	/* value came from an older name */
} PsResponse;

extern void ps_response_reset(PsResponse *r);

/* One raw header line ("Name: value\r\n"); a status line starts over. */
extern void ps_response_header_line(PsResponse *r, const char *line, size_t len);

/* One header given as name and value (host-driven responses). */
extern void ps_response_header(PsResponse *r, const char *name, const char *value);

/* Keep the start of an error body for the message. */
extern void ps_response_error_body(PsResponse *r, const char *data, size_t len);

#endif
