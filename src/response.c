/*
 * response.c
 *	  Collecting the headers of a shape response (see response.h).
 */
#include "response.h"

#include <time.h>

#include "lib/stringinfo.h"

void
ps_response_reset(PsResponse *r)
{
	memset(r, 0, sizeof(*r));
	r->retry_after_ms = -1;
}

/* A value longer than its buffer is refused: stored truncated, it would be
 * a different handle, offset or cursor. */
static void
set_value(PsResponse *r, const char *name, char *dst, size_t dstlen, bool *has,
		  const char *v, size_t vl)
{
	if (vl >= dstlen)
	{
		r->too_long = true;
		r->too_long_name = name;
		return;
	}
	memcpy(dst, v, vl);
	dst[vl] = '\0';
	*has = true;
}

static void
add_header(PsResponse *r, ps_header which, const char *v, size_t vl, bool legacy)
{
	/* a current name beats an older one, whatever the order */
	bool		take = !legacy || r->legacy[which];

	switch (which)
	{
		case PS_HDR_HANDLE:
			if (!r->has_handle || take)
				set_value(r, "electric-handle", r->handle, sizeof(r->handle), &r->has_handle, v, vl);
			break;
		case PS_HDR_OFFSET:
			if (!r->has_offset || take)
				set_value(r, "electric-offset", r->offset, sizeof(r->offset), &r->has_offset, v, vl);
			break;
		case PS_HDR_CURSOR:
			if (!r->has_cursor || take)
				set_value(r, "electric-cursor", r->cursor, sizeof(r->cursor), &r->has_cursor, v, vl);
			break;
		case PS_HDR_UP_TO_DATE:
			r->up_to_date = true;
			break;
		case PS_HDR_SCHEMA:
			r->has_schema = true;
			break;
		case PS_HDR_SNAPSHOT:
			r->snapshot = vl == 4 && pg_strncasecmp(v, "true", 4) == 0;
			break;
		case PS_HDR_RETRY_AFTER:
			r->retry_after_ms = ps_retry_after_ms(v, vl, time(NULL));
			break;
		case PS_HDR_LOCATION:
			if (vl < sizeof(r->location))
			{
				memcpy(r->location, v, vl);
				r->location[vl] = '\0';
			}
			break;
		case PS_HDR_CONTENT_TYPE:
			vl = Min(vl, sizeof(r->content_type) - 1);
			memcpy(r->content_type, v, vl);
			r->content_type[vl] = '\0';
			r->has_content_type = true;
			break;
		default:
			break;
	}
	if (!r->legacy[which] || !legacy)
		r->legacy[which] = legacy;
}

void
ps_response_header_line(PsResponse *r, const char *line, size_t len)
{
	const char *v;
	size_t		vl;
	bool		legacy;
	ps_header	which;

	/* a new status line (a redirect, 100 Continue): start over */
	if (len > 5 && strncmp(line, "HTTP/", 5) == 0)
	{
		PsTransferOutcome keep = r->outcome;
		size_t		bytes = r->body_bytes;

		ps_response_reset(r);
		r->outcome = keep;
		r->body_bytes = bytes;
		return;
	}
	which = ps_header_parse(line, len, &v, &vl, &legacy);
	if (which != PS_HDR_OTHER)
		add_header(r, which, v, vl, legacy);
}

void
ps_response_header(PsResponse *r, const char *name, const char *value)
{
	StringInfoData line;

	initStringInfo(&line);
	appendStringInfo(&line, "%s: %s", name, value);
	ps_response_header_line(r, line.data, line.len);
	pfree(line.data);
}

void
ps_response_error_body(PsResponse *r, const char *data, size_t len)
{
	if (r->error_body_len < sizeof(r->error_body) - 1)
	{
		size_t		n = Min(len, sizeof(r->error_body) - 1 - r->error_body_len);

		memcpy(r->error_body + r->error_body_len, data, n);
		r->error_body_len += n;
		r->error_body[r->error_body_len] = '\0';
	}
}
