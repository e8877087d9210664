/*
 * member.c
 *	  One shape's stream (see member.h).
 *
 *   offset -1 ─> paged catch-up ─> up-to-date ─> (commit) ─> live requests ─┐
 *                  ^ 409 / must-refetch: back to -1, replace at next commit └─┘
 *
 * A response is split into messages as it arrives and its changes go to the
 * shape's spool, where they count only once the whole response was good.
 */
#include "member.h"

#include "common/pg_prng.h"
#include "utils/memutils.h"

#include "protocol.h"
#include "run.h"

#define REFETCH_LOOP_LIMIT	3

/* ---- set-up ------------------------------------------------------------- */

static void
parse_definition(PsMember *m, PsShapeDef *def, MemoryContext cxt)
{
	char		err[512];
	MemoryContext old = MemoryContextSwitchTo(cxt);
	ps_strbuf	b;
	char	   *utf8 = ps_text_to_utf8(def->shape_json);	/* URLs carry UTF-8 */

	if (m->base_url)
		ps_shape_free(&m->shape);
	if (ps_shape_parse(utf8, strlen(utf8), &m->shape, err, sizeof(err)) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("stored shape \"%s\" of subscription \"%s\" is invalid: %s",
						def->name, m->run->sub->name, err)));
	ps_strbuf_init(&b);
	ps_shape_base_url(&m->shape, &b);
	m->base_url = b.data;
	m->host = ps_url_host(m->shape.url);
	m->nheaders = m->shape.nheaders;
	m->header_names = palloc(sizeof(char *) * (m->nheaders + 1));
	m->header_values = palloc(sizeof(char *) * (m->nheaders + 1));
	for (int i = 0; i < m->nheaders; i++)
	{
		m->header_names[i] = m->shape.headers[i].name;
		m->header_values[i] = m->shape.headers[i].value;
	}
	m->def = def;
	MemoryContextSwitchTo(old);
}

/*
 * Where a stream starts without a stored position: the snapshot (-1), whose
 * batch replaces the table's rows; or, for changes_only from "now", the log's
 * end, which replaces nothing.
 */
static void
start_over(PsMember *m)
{
	strcpy(m->offset, m->shape.offset_now ? "now" : "-1");
	m->replace = !m->shape.offset_now;
	m->from_start = !m->shape.offset_now;
}

void
ps_member_init(PsMember *m, PsRun *run, int index, PsShapeDef *def, MemoryContext cxt)
{
	MemoryContext old;

	memset(m, 0, sizeof(*m));
	m->run = run;
	m->index = index;
	parse_definition(m, def, cxt);

	/* resume only a keyed stream written for the same target and owner */
	if (run->sub->shape_key && def->handle && def->offset && def->state_fingerprint &&
		strcmp(def->state_fingerprint, def->target_fingerprint) == 0 &&
		strlen(def->handle) < sizeof(m->handle) && strlen(def->offset) < sizeof(m->offset))
	{
		strlcpy(m->handle, def->handle, sizeof(m->handle));
		strlcpy(m->offset, def->offset, sizeof(m->offset));
		strlcpy(m->committed_handle, def->handle, sizeof(m->committed_handle));
		strlcpy(m->committed_offset, def->offset, sizeof(m->committed_offset));
		/* what came before the stored position is never applied again */
		{
			ps_offset	o;

			if (ps_offset_parse(m->offset, strlen(m->offset), &o) && o.kind == PS_OFFSET_LOG)
			{
				m->last_lsn = o.tx;
				m->last_op = o.op_inf ? PG_UINT32_MAX : (uint32) o.op;
			}
		}
	}
	else
		start_over(m);
	old = MemoryContextSwitchTo(cxt);
	ps_message_init(&m->msg);
	MemoryContextSwitchTo(old);
}

void
ps_member_reload(PsMember *m, PsShapeDef *def, MemoryContext cxt)
{
	parse_definition(m, def, cxt);
}

/* ---- the request ------------------------------------------------------------ */

char *
ps_member_request_url(PsMember *m, bool live)
{
	ps_strbuf	url;

	ps_strbuf_init(&url);
	ps_request_url(&url, m->base_url, m->offset, m->handle, live, m->cursor,
				   m->buster[0] ? m->buster : NULL);
	/*
	 * live_sse: the live stream as one event stream, for workers (a host
	 * feeds whole responses, sync_now stops at the first up-to-date); older
	 * servers know the parameter by its experimental name.
	 */
	m->request_sse = live && m->shape.live_sse && !m->sse_off && m->run->mode == PS_RUN_WORKER;
	if (m->request_sse)
	{
		ps_url_add_param(&url, "live_sse", "true");
		ps_url_add_param(&url, "experimental_live_sse", "true");
	}
	return url.data;
}

/* ---- reading a response ------------------------------------------------------- */

void
ps_member_response_begin(PsMember *m, bool live, uint64 ticket)
{
	PsSlot	   *slot = m->run->slot;
	bool		was_counted = m->resp_changes > 0;

	ps_spool_response_failed(m->spool); /* whatever an ERROR left half-read */
	ps_bodysplit_free(&m->split);	/* in the run's memory */
	ps_bodysplit_init(&m->split, ps_max_response_size > 0 ?
					  (size_t) ps_max_response_size * 1024 : 0);
	m->in_flight = true;
	m->request_live = live;
	m->request_ticket = ticket;
	m->request_started = GetCurrentTimestamp();
	m->resp_checked = false;
	m->resp_up_to_date = false;
	m->resp_must_refetch = false;
	m->resp_has_global_lsn = false;
	m->resp_global_lsn = 0;
	m->resp_changes = 0;
	m->resp_bytes = 0;
	m->resp_max_lsn = m->align.max_lsn;
	m->resp_open_lsn = m->align.open_lsn;
	m->resp_error[0] = '\0';
	m->cb_error = NULL;
	m->resp_last_lsn = m->last_lsn;
	m->resp_last_op = m->last_op;
	if (m->request_sse)
	{
		ps_sse_free(&m->sse);
		ps_sse_init(&m->sse, ps_max_response_size > 0 ? (size_t) ps_max_response_size * 1024 : 0);
	}
	m->sse_skip = 0;
	m->sse_batch = false;
	m->sse_counted = 0;
	if (slot)
		ps_slot_count_request(slot);
	/* an abandoned response's changes are no longer arriving */
	if (was_counted)
		ps_run_publish_batch(m->run);
}

static bool
parse_lsn(const char *s, size_t len, uint64 *out)
{
	uint64		v = 0;

	if (s == NULL || len == 0 || len > 20)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		if (s[i] < '0' || s[i] > '9' || v > (PG_UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

static int
fail_message(PsMember *m, PsOutcomeKind kind, const char *fmt,...)
	pg_attribute_printf(3, 4);

static int
fail_message(PsMember *m, PsOutcomeKind kind, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(m->resp_error, sizeof(m->resp_error), fmt, ap);
	va_end(ap);
	m->resp_fail_kind = kind;
	return 1;
}

/* One message of the body: changes to the spool, control messages noted. */
static int
on_message(void *arg, const char *json, size_t len, bool exact, size_t *used)
{
	PsMember   *m = arg;
	ps_message *msg = &m->msg;
	MemoryContext old = MemoryContextSwitchTo(m->run->cxt);
	int			rc = exact ? ps_message_parse(msg, json, len) :
		ps_message_parse_prefix(msg, json, len, used);
	uint64		lsn = 0;

	/* the parser keeps its arena across messages: the run's context */
	MemoryContextSwitchTo(old);
	if (rc < 0 && !exact)
		return PS_SPLIT_UNSURE; /* incomplete here, or malformed: the splitter decides */
	if (rc < 0)
		return fail_message(m, msg->error_unstorable ? PS_OUT_FATAL : PS_OUT_RETRY,
							"malformed message in response: %s", msg->error);
	if (!exact)
		len = *used;
	switch (msg->kind)
	{
		case PS_MSG_CHANGE:
			if (msg->key == NULL)
				return fail_message(m, PS_OUT_FATAL, "the server sent a change message without a key");
			if (msg->op == PS_OP_NONE)
				return fail_message(m, PS_OUT_FATAL,
									"the server sent a change of key %.*s with unknown operation \"%.*s\"",
									(int) Min(msg->key_len, 200), msg->key,
									(int) Min(msg->operation_len, 40), msg->operation ? msg->operation : "");
			if (!msg->has_value)
				return fail_message(m, PS_OUT_FATAL, "the server sent a change of key %.*s without a value",
									(int) Min(msg->key_len, 200), msg->key);
			if (msg->lsn && !parse_lsn(msg->lsn, msg->lsn_len, &lsn))
				return fail_message(m, PS_OUT_RETRY, "the server sent a change of key %.*s with an invalid lsn \"%.*s\"",
									(int) Min(msg->key_len, 200), msg->key,
									(int) Min(msg->lsn_len, 40), msg->lsn);
			if (lsn != 0 && msg->has_op_position)
			{
				uint32		op = (uint32) msg->op_position;

				/* sent again after a reconnect (an event stream resumes at <lsn>_0) */
				if (lsn < m->resp_last_lsn || (lsn == m->resp_last_lsn && op <= m->resp_last_op))
					break;
				m->resp_last_lsn = lsn;
				m->resp_last_op = op;
			}
			ps_spool_add(m->spool, msg, lsn, json, len, OidIsValid(m->def->map_function));
			m->resp_changes++;
			if (lsn > m->resp_max_lsn)
				m->resp_max_lsn = lsn;
			/* a transaction without its last op so far holds the group back */
			if (lsn != 0 && !msg->last)
				m->resp_open_lsn = lsn;
			else if (lsn != 0 && lsn == m->resp_open_lsn)
				m->resp_open_lsn = 0;
			break;
		case PS_MSG_CONTROL:
			if (msg->control == PS_CTL_UP_TO_DATE)
			{
				m->resp_up_to_date = true;
				m->up_to_date_since = m->request_sse ? GetCurrentTimestamp() : m->request_started;
				if (msg->global_lsn && parse_lsn(msg->global_lsn, msg->global_lsn_len, &lsn))
				{
					m->resp_global_lsn = lsn;
					m->resp_has_global_lsn = true;
				}
			}
			else if (msg->control == PS_CTL_MUST_REFETCH)
			{
				m->resp_must_refetch = true;
				return 1;		/* nothing after it matters */
			}
			break;
		case PS_MSG_EVENT:
			/* move-in/move-out of subquery shapes; any other event would be ignored silently */
			if (msg->event != PS_EVENT_MOVE_OUT && msg->event != PS_EVENT_MOVE_IN)
				return fail_message(m, PS_OUT_FATAL,
									"the server sent an event this version does not know (headers.event other than move-in and move-out)");
			ps_spool_add_event(m->spool, msg);
			m->resp_changes++;
			break;
		default:
			/* unknown messages: skipped, as the protocol says */
			break;
	}
	return 0;
}

/* One event of a stream: a message, and a stop (2) once it ends a batch. */
static int
sse_event(void *arg, const char *data, size_t len)
{
	PsMember   *m = arg;
	int			rc = on_message(m, data, len, true, NULL);

	if (rc != 0)
		return 1;
	return m->resp_up_to_date ? 2 : 0;
}

/*
 * A transport may call us from inside a library: no ERROR unwinds from a
 * parser's feed; it is kept in m->cb_error and the feed returns 1.  The
 * parsers keep what is split across pieces in the run's memory: a response
 * outlives the driver's steps.
 */
typedef int (*FeedFn) (PsMember *m, const char *data, size_t len, size_t *consumed);

static int
feed_catching(PsMember *m, FeedFn feed, const char *data, size_t len, size_t *consumed)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile int rc = 0;

	PG_TRY();
	{
		MemoryContextSwitchTo(m->run->cxt);
		rc = feed(m, data, len, consumed);
		MemoryContextSwitchTo(cxt);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		m->cb_error = CopyErrorData();
		FlushErrorState();
		rc = 1;
	}
	PG_END_TRY();
	return rc;
}

static int
feed_sse(PsMember *m, const char *data, size_t len, size_t *consumed)
{
	return ps_sse_feed(&m->sse, data, len, sse_event, m, consumed);
}

static int
feed_body(PsMember *m, const char *data, size_t len, size_t *consumed)
{
	return ps_bodysplit_feed_parsing(&m->split, data, len, on_message, m);
}

/*
 * A piece of an event stream.  At an up-to-date the batch is complete: the
 * transfer pauses (libcurl delivers the same piece again later, whose first
 * sse_skip bytes are read already) until the driver has committed it.
 */
static PsBodyVerdict
sse_body(PsMember *m, const char *data, size_t len)
{
	size_t		skip = Min(m->sse_skip, len);
	size_t		consumed = 0;
	int			rc = feed_catching(m, feed_sse, data + skip, len - skip, &consumed);

	if (rc == 2)
	{
		m->sse_skip = skip + consumed;
		m->sse_batch = true;
		return PS_BODY_PAUSE;
	}
	m->sse_skip = 0;
	if (rc == -1)
		fail_message(m, PS_OUT_RETRY, "malformed event stream: %s", m->sse.error);
	if (rc != 0)
		return PS_BODY_REJECT;
	return PS_BODY_OK;
}

PsBodyVerdict
ps_member_response_body(PsMember *m, const char *data, size_t len, const PsResponse *resp)
{
	int			rc;

	if (!m->resp_checked)
	{
		static const char sse_type[] = "text/event-stream";

		m->resp_checked = true;
		if (resp->has_content_type && !(m->request_sse ?
										 pg_strncasecmp(resp->content_type, sse_type, sizeof(sse_type) - 1) == 0 :
										 ps_content_type_ok(resp->content_type, strlen(resp->content_type))))
		{
			fail_message(m, PS_OUT_RETRY, "unexpected content type \"%s\" in a shape response",
						 resp->content_type);
			return PS_BODY_REJECT;
		}
	}
	if (m->request_sse)
		return sse_body(m, data, len);

	rc = feed_catching(m, feed_body, data, len, NULL);

	if (rc == -1)
		fail_message(m, PS_OUT_RETRY, "malformed response body: %s", m->split.error);
	/* a must-refetch ends reading without being a failure */
	return rc == 0 || (rc == 1 && m->resp_must_refetch && m->resp_error[0] == '\0' && !m->cb_error) ?
		PS_BODY_OK : PS_BODY_REJECT;
}

static PsOutcome
outcome(PsOutcomeKind kind, int64 retry_after_ms, const char *message, const char *detail)
{
	PsOutcome	o;

	o.kind = kind;
	o.retry_after_ms = retry_after_ms;
	o.message = message;
	o.detail = detail;
	o.status = 0;
	return o;
}

/* For the owner only: the start of the server's answer, which may say more. */
static const char *
error_body(const PsResponse *r)
{
	return r->error_body_len ? psprintf("the server answered %ld: %.*s", r->status,
										(int) Min(r->error_body_len, 300), r->error_body) : NULL;
}

static const char *
status_text(long status)
{
	switch (status)
	{
		case 400:
			return " Bad Request";
		case 401:
			return " Unauthorized";
		case 403:
			return " Forbidden";
		case 404:
			return " Not Found";
		case 413:
			return " Payload Too Large";
		case 429:
			return " Too Many Requests";
		case 500:
			return " Internal Server Error";
		case 502:
			return " Bad Gateway";
		case 503:
			return " Service Unavailable";
		case 504:
			return " Gateway Timeout";
	}
	return "";
}

static PsOutcome read_response(PsMember *m, PsResponse *resp);
static PsOutcome sse_end(PsMember *m, PsResponse *resp);
static void keep_records(PsMember *m, size_t bytes);
static void set_position(PsMember *m, const char *handle, const char *offset);
static PsOutcome good_response(PsMember *m);
static const char *bad_headers(PsMember *m, PsResponse *resp, bool need_cursor, PsOutcomeKind *kind);

PsOutcome
ps_member_response_end(PsMember *m, PsResponse *resp)
{
	PsOutcome	out = read_response(m, resp);

	/* what arrived of it is now kept in the batch, or dropped */
	if (m->resp_changes > 0)
		ps_run_publish_batch(m->run);
	out.status = resp->status;
	return out;
}

static PsOutcome
read_response(PsMember *m, PsResponse *resp)
{
	bool		ok_status = resp->status >= 200 && resp->status < 300;
	ps_offset	o;

	m->in_flight = false;
	if (m->request_sse && resp->status == 200 && !m->resp_must_refetch)
		return sse_end(m, resp);
	if (resp->outcome == PS_XFER_DONE && ok_status && !m->resp_must_refetch &&
		ps_bodysplit_finish(&m->split) != 0)
	{
		resp->outcome = PS_XFER_BODY_REJECTED;
		fail_message(m, PS_OUT_RETRY, "truncated response body: %s", m->split.error);
	}
	/* only a complete 200 keeps what it spooled */
	if (resp->outcome != PS_XFER_DONE || m->resp_must_refetch || resp->status != 200)
		ps_spool_response_failed(m->spool);

	if (m->cb_error)
	{
		ErrorData  *e = m->cb_error;

		m->cb_error = NULL;
		ReThrowError(e);
	}

	switch (resp->outcome)
	{
		case PS_XFER_INTERRUPTED:
			return outcome(PS_OUT_INTERRUPTED, -1, NULL, NULL);
		case PS_XFER_FAILED:
			return outcome(PS_OUT_RETRY, -1, psprintf("request failed: %s", resp->error), NULL);
		case PS_XFER_REFUSED:
			return outcome(PS_OUT_FATAL, -1, pstrdup(resp->error), NULL);
		case PS_XFER_TOO_LARGE:
			return outcome(PS_OUT_FATAL, -1, pstrdup(resp->error), NULL);
		case PS_XFER_BODY_REJECTED:
			if (m->resp_must_refetch)
				break;
			return outcome(m->resp_fail_kind, -1, pstrdup(m->resp_error), NULL);
		case PS_XFER_DONE:
			break;
	}

	switch (ps_classify_status(resp->status))
	{
		case PS_STATUS_REFETCH:
			ps_member_refetch(m, resp->has_handle && !resp->too_long ? resp->handle : NULL);
			return outcome(PS_OUT_REFETCH, -1, NULL, NULL);
		case PS_STATUS_RETRY:
			return outcome(PS_OUT_RETRY, resp->retry_after_ms,
						   psprintf("the server answered %ld%s", resp->status, status_text(resp->status)),
						   error_body(resp));
		case PS_STATUS_FATAL:
			return outcome(PS_OUT_FATAL, resp->retry_after_ms,
						   psprintf("the server answered %ld%s", resp->status, status_text(resp->status)),
						   error_body(resp));
		case PS_STATUS_EMPTY:
			/* legacy live timeout: up to date, nothing new */
			if (resp->has_offset && !resp->too_long && strcmp(m->offset, resp->offset) != 0)
			{
				strlcpy(m->offset, resp->offset, sizeof(m->offset));
				m->position_dirty = true;
			}
			if (resp->has_cursor && !resp->too_long)
				strlcpy(m->cursor, resp->cursor, sizeof(m->cursor));
			m->resp_up_to_date = true;
			m->up_to_date_since = m->request_started;
			break;
		case PS_STATUS_OK:
			if (m->resp_must_refetch)
			{
				ps_member_refetch(m, NULL);
				return outcome(PS_OUT_REFETCH, -1, NULL, NULL);
			}
			{
				PsOutcomeKind kind;
				const char *bad = bad_headers(m, resp, m->request_live, &kind);

				if (bad == NULL && (!ps_offset_parse(resp->offset, strlen(resp->offset), &o) ||
									o.kind != PS_OFFSET_LOG))
					bad = psprintf("response has an invalid electric-offset \"%s\"", resp->offset);
				if (bad)
				{
					ps_spool_response_failed(m->spool);
					return outcome(kind, -1, bad, NULL);
				}
			}
			keep_records(m, resp->body_bytes);
			set_position(m, resp->handle, resp->offset);
			if (resp->has_cursor)
				strlcpy(m->cursor, resp->cursor, sizeof(m->cursor));
			break;
	}
	return good_response(m);
}

/*
 * The response's records are good: they count, and so does its alignment.
 * Its changes (and bytes, unless it brought none) join the open batch.
 */
static void
keep_records(PsMember *m, size_t bytes)
{
	ps_spool_response_done(m->spool);
	if (m->resp_changes > 0)
	{
		m->batch_rows += m->resp_changes;
		m->batch_bytes += bytes;
	}
	m->align.max_lsn = m->resp_max_lsn;
	m->align.open_lsn = m->resp_open_lsn;
	m->last_lsn = m->resp_last_lsn;
	m->last_op = m->resp_last_op;
}

static void
set_position(PsMember *m, const char *handle, const char *offset)
{
	if (strcmp(m->handle, handle) != 0 || strcmp(m->offset, offset) != 0)
		m->position_dirty = true;
	strlcpy(m->handle, handle, sizeof(m->handle));
	strlcpy(m->offset, offset, sizeof(m->offset));
}

/* A good response (or a batch of an event stream): a page, or caught up. */
static PsOutcome
good_response(PsMember *m)
{
	m->buster[0] = '\0';
	m->failures = 0;
	m->auth_retried = false;
	if (!m->resp_up_to_date)
		return outcome(PS_OUT_PAGE, -1, NULL, NULL);
	/* caught up: long-poll from now on, unless the group needs a fresh answer */
	m->live = true;
	m->catch_up = false;
	m->align.reported = true;
	m->align.ready_lsn = m->resp_has_global_lsn ? m->resp_global_lsn : PS_LSN_UNKNOWN;
	m->sync_ticket = m->request_ticket;
	return outcome(PS_OUT_BATCH, -1, NULL, NULL);
}

/* Checks of a 200's headers that every good response must pass; NULL if it does. */
static const char *
bad_headers(PsMember *m, PsResponse *resp, bool need_cursor, PsOutcomeKind *kind)
{
	*kind = PS_OUT_RETRY;
	if (resp->too_long)
	{
		*kind = PS_OUT_FATAL;
		return psprintf("the response's %s header is longer than this version accepts",
						resp->too_long_name);
	}
	if (!resp->has_handle || !resp->has_offset || (need_cursor && !resp->has_cursor))
		return psprintf("response lacks the %s header (a proxy may be hiding electric-* headers)",
						!resp->has_handle ? "electric-handle" :
						!resp->has_offset ? "electric-offset" : "electric-cursor");
	/* a stale cache or a misrouted answer: only a 409 changes the handle */
	if (m->handle[0] && strcmp(m->handle, resp->handle) != 0)
		return psprintf("response is for shape handle \"%s\", not the requested \"%s\"",
						resp->handle, m->handle);
	return NULL;
}

/*
 * An event stream paused at an up-to-date: its batch counts, and the stream
 * resumes after <global_last_seen_lsn>_<op> (the position the headers of a
 * long-poll would give; changes a reconnect sends again are dropped).
 */
PsOutcome
ps_member_sse_batch(PsMember *m, PsResponse *resp)
{
	PsOutcomeKind kind;
	const char *bad = bad_headers(m, resp, false, &kind);
	PsOutcome	o;

	m->sse_batch = false;
	if (m->cb_error)
	{
		ErrorData  *e = m->cb_error;

		m->cb_error = NULL;
		ReThrowError(e);
	}
	if (bad)
	{
		/* the stream goes: the driver abandons it as failed */
		ps_spool_response_failed(m->spool);
		o = outcome(kind, -1, bad, NULL);
		o.status = resp->status;
		return o;
	}
	keep_records(m, resp->body_bytes - m->sse_counted);
	m->sse_counted = resp->body_bytes;
	if (m->resp_has_global_lsn)
	{
		char		offset[PS_OFFSET_MAX];

		snprintf(offset, sizeof(offset), UINT64_FORMAT "_%u", m->resp_global_lsn,
				 m->last_lsn == m->resp_global_lsn ? m->last_op : 0);
		set_position(m, resp->handle, offset);
	}
	o = good_response(m);
	o.status = resp->status;
	/* the next batch of the stream starts afresh */
	m->resp_up_to_date = false;
	m->resp_has_global_lsn = false;
	m->resp_changes = 0;
	ps_run_publish_batch(m->run);
	return o;
}

/*
 * The end of an event stream: the server closes it (after its sse_timeout,
 * or on rotation), or it broke.  What came after the last up-to-date is
 * dropped; the stream is asked for again from the last batch's position.
 * Three streams in a row that last under a second: long-polling from now on,
 * as Electric's own client does.
 */
static PsOutcome
sse_end(PsMember *m, PsResponse *resp)
{
	bool		brief = GetCurrentTimestamp() - m->request_started < USECS_PER_SEC;
	PsOutcomeKind kind;
	const char *bad;

	ps_spool_response_failed(m->spool);
	if (m->cb_error)
	{
		ErrorData  *e = m->cb_error;

		m->cb_error = NULL;
		ReThrowError(e);
	}
	m->sse_short = brief ? m->sse_short + 1 : 0;
	if (m->sse_short >= 3 && !m->sse_off)
	{
		m->sse_off = true;
		ereport(LOG,
				(errmsg("pglite_sync: subscription \"%s\"%s%s%s: three event streams in a row lasted under a second; long-polling from now on",
						m->run->sub->name, m->run->nmembers > 1 ? ", shape \"" : "",
						m->run->nmembers > 1 ? m->def->name : "", m->run->nmembers > 1 ? "\"" : "")));
	}
	switch (resp->outcome)
	{
		case PS_XFER_INTERRUPTED:
			return outcome(PS_OUT_INTERRUPTED, -1, NULL, NULL);
		case PS_XFER_DONE:
			bad = bad_headers(m, resp, false, &kind);
			if (bad)
				return outcome(kind, -1, bad, NULL);
			/* closed by the server: ask again (a page, with nothing in it) */
			m->failures = 0;
			return outcome(PS_OUT_PAGE, -1, NULL, NULL);
		case PS_XFER_BODY_REJECTED:
			return outcome(m->resp_fail_kind, -1, pstrdup(m->resp_error), NULL);
		default:
			return outcome(PS_OUT_RETRY, -1, psprintf("event stream failed: %s", resp->error), NULL);
	}
}

/* ---- 409 and must-refetch ------------------------------------------------------ */

void
ps_member_refetch(PsMember *m, const char *new_handle)
{
	strlcpy(m->handle, new_handle ? new_handle : "", sizeof(m->handle));
	ps_member_restart(m);
	snprintf(m->buster, sizeof(m->buster), "%016llx",
			 (unsigned long long) pg_prng_uint64(&pg_global_prng_state));
	m->refetches++;
}

void
ps_member_restart(PsMember *m)
{
	ps_spool_clear(m->spool);
	/* what it had received is gone: a batch read again counts once */
	ps_member_batch_discarded(m);
	ps_run_publish_batch(m->run);
	start_over(m);
	m->last_lsn = 0;
	m->last_op = 0;
	m->cursor[0] = '\0';
	m->live = false;
	memset(&m->align, 0, sizeof(m->align));
}

/* The open batch is committed or dropped: this shape's part of it is none. */
void
ps_member_batch_discarded(PsMember *m)
{
	m->batch_rows = 0;
	m->batch_bytes = 0;
}

/* ---- after a commit ------------------------------------------------------------- */

void
ps_member_commit_position(PsMember *m, uint64 target, bool more, const char **handle,
						  const char **offset, char *offset_buf, size_t buflen)
{
	if (more)
	{
		/* changes past the target wait in the spool: resume right after it */
		ps_align_offset_after(target, offset_buf, buflen);
		*offset = offset_buf;
	}
	else
		*offset = m->offset;
	*handle = m->handle[0] ? m->handle : NULL;
	strlcpy(m->saved_offset, *offset, sizeof(m->saved_offset));
}

void
ps_member_committed(PsMember *m)
{
	int64		remaining;

	strlcpy(m->committed_handle, m->handle, sizeof(m->committed_handle));
	strlcpy(m->committed_offset, m->saved_offset, sizeof(m->committed_offset));
	ps_spool_drop_consumed(m->spool);
	/* with changes still waiting, the position stored is the target's */
	m->position_dirty = ps_spool_count(m->spool) > 0;
	/* what a group's commit left spooled past its target stays in the batch */
	remaining = ps_spool_count(m->spool);
	if (remaining > 0 && m->batch_rows > 0)
	{
		m->batch_bytes = (int64) ((double) m->batch_bytes * Min(remaining, m->batch_rows) / m->batch_rows);
		m->batch_rows = Min(remaining, m->batch_rows);
	}
	else
		ps_member_batch_discarded(m);
	m->replace = false;
	m->from_start = false;
	m->refetches = 0;
	m->live = true;
	if (ps_spool_count(m->spool) == 0)
		m->align.max_lsn = 0;
}
