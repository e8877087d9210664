/*
 * protocol.h
 *	  Pure pieces of the Electric shape protocol: offsets, request URLs,
 *	  response headers, status classification and retry timing.
 */
#ifndef PS_PROTOCOL_H
#define PS_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "strbuf.h"

/* ---- offsets ---------------------------------------------------------- */

typedef enum ps_offset_kind
{
	PS_OFFSET_INVALID,
	PS_OFFSET_START,			/* "-1": before everything */
	PS_OFFSET_NOW,				/* "now" */
	PS_OFFSET_LOG				/* "<tx>_<op>", op may be "inf" */
} ps_offset_kind;

typedef struct ps_offset
{
	ps_offset_kind kind;
	uint64_t	tx;
	uint64_t	op;
	bool		op_inf;
} ps_offset;

extern bool ps_offset_parse(const char *s, size_t len, ps_offset *out);
extern int	ps_offset_cmp(const ps_offset *a, const ps_offset *b);

/* ---- request URLs ----------------------------------------------------- */

/* Percent-encode everything but RFC 3986 unreserved characters. */
extern void ps_url_encode(ps_strbuf *out, const char *s, size_t len);

/* Append "?name=value" or "&name=value" as appropriate. */
extern void ps_url_add_param(ps_strbuf *url, const char *name, const char *value);

/*
 * The URL of one shape request: base (the shape URL with its own query
 * parameters already appended) plus the protocol's parameters.  handle is
 * sent only with a real offset (the server drops it with -1/now), live and
 * cursor only for a live request, buster (a cache buster after a 409) when
 * not NULL.
 */
extern void ps_request_url(ps_strbuf *out, const char *base, const char *offset,
						   const char *handle, bool live, const char *cursor,
						   const char *buster);

/* ---- response headers ------------------------------------------------- */

typedef enum ps_header
{
	PS_HDR_OTHER = 0,
	PS_HDR_HANDLE,
	PS_HDR_OFFSET,
	PS_HDR_CURSOR,
	PS_HDR_UP_TO_DATE,
	PS_HDR_SCHEMA,
	PS_HDR_HAS_DATA,
	PS_HDR_SNAPSHOT,
	PS_HDR_RETRY_AFTER,
	PS_HDR_CONTENT_TYPE,
	PS_HDR_LOCATION,
	PS_HDR_COUNT
} ps_header;

/*
 * Classify one raw header line ("Name: value\r\n").  Returns the header and
 * sets *value and *vlen to the trimmed value and *legacy to true for an older
 * name (electric-shape-id, electric-chunk-last-offset, electric-next-cursor,
 * electric-chunk-up-to-date and x- prefixed forms), which a current name in
 * the same response overrides.
 */
extern ps_header ps_header_parse(const char *line, size_t len,
								 const char **value, size_t *vlen,
								 bool *legacy);

/* Retry-After: delta-seconds or an HTTP-date; milliseconds, -1 if invalid. */
extern int64_t ps_retry_after_ms(const char *value, size_t len, time_t now);

/* Is content-type acceptable for a shape body (JSON or absent)? */
extern bool ps_content_type_ok(const char *value, size_t len);

/* ---- status and retry policy ------------------------------------------ */

typedef enum ps_status_class
{
	PS_STATUS_OK,				/* 200: process the body */
	PS_STATUS_EMPTY,			/* 204: legacy "up to date, nothing new" */
	PS_STATUS_REFETCH,			/* 409: restart from -1 */
	PS_STATUS_RETRY,			/* 429, 5xx and the unexpected: back off */
	PS_STATUS_FATAL				/* 400, 401, 403, 404, 413, other 4xx */
} ps_status_class;

extern ps_status_class ps_classify_status(long status);

/*
 * Full-jitter exponential backoff: the attempt-th consecutive failure
 * (0-based) waits rnd * min(cap, base * 2^attempt), and never less than
 * retry_after_ms (-1 when the server sent none).  rnd is in [0, 1).
 */
extern int64_t ps_backoff_ms(int64_t base_ms, int64_t cap_ms, int attempt,
							 double rnd, int64_t retry_after_ms);

/*
 * Is host in the comma-separated allow-list?  An empty list allows every
 * host; an entry "*.example.com" allows subdomains of example.com.
 * Comparison is case-insensitive.
 */
extern bool ps_host_allowed(const char *list, const char *host);

#endif
