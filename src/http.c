/*
 * http.c
 *	  libcurl multi interface driven from one WaitEventSet (see http.h).
 */
#include "pglite_sync.h"

#include <curl/curl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "http.h"
#include "protocol.h"

#if LIBCURL_VERSION_NUM < 0x075500
#error "pglite_sync needs libcurl 7.85 or later (CURLOPT_PROTOCOLS_STR)"
#endif

#define MAX_REDIRECTS 5

struct PsHttpPool
{
	CURLM	   *multi;
	int			epfd;			/* the mux: every curl socket */
	WaitEventSet *wes;			/* latch + postmaster death + mux */
	TimestampTz timer_at;		/* curl's next timeout, 0 = none */
	List	   *xfers;
	bool		paused_some;	/* a body callback paused its transfer: the caller must look */
};

struct PsHttpXfer
{
	PsHttpPool *pool;
	CURL	   *easy;
	void	   *owner;
	bool		busy;			/* added to the multi handle */
	bool		finished;		/* CURLMSG_DONE seen */
	CURLcode	result;
	CURLU	   *url;			/* parsed once: what curl connects to is what we checked */
	struct curl_slist *headers;
	bool		send_headers;	/* false after a redirect to another origin */
	List	   *header_names;
	List	   *header_values;
	bool		live;
	bool		sse;			/* an event stream: no total timeout, no size limit */
	bool		paused;
	char	   *post_body;		/* a POST (request_snapshot), else a GET */
	int			redirects;
	char	   *origin;			/* scheme://host:port of the first URL */
	TimestampTz started;
	char		errbuf[CURL_ERROR_SIZE];

	PsResponse *resp;
	PsHttpBodyCallback body_cb;
	void	   *body_arg;
	bool		body_rejected;
	bool		too_large;
	size_t		max_bytes;
};

/* ---- curl callbacks: no ereport in here, ever (we are inside libcurl) --- */

static int
socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	PsHttpPool *p = userp;
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.data.fd = s;
	if (what == CURL_POLL_REMOVE)
	{
		epoll_ctl(p->epfd, EPOLL_CTL_DEL, s, NULL);
		curl_multi_assign(p->multi, s, NULL);
		return 0;
	}
	if (what & CURL_POLL_IN)
		ev.events |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		ev.events |= EPOLLOUT;
	if (socketp == NULL)
	{
		if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, s, &ev) != 0 && errno == EEXIST)
			epoll_ctl(p->epfd, EPOLL_CTL_MOD, s, &ev);
		curl_multi_assign(p->multi, s, p);
	}
	else
		epoll_ctl(p->epfd, EPOLL_CTL_MOD, s, &ev);
	return 0;
}

static int
timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	PsHttpPool *p = userp;

	if (timeout_ms < 0)
		p->timer_at = 0;
	else
		p->timer_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	return 0;
}

static size_t
header_cb(char *buffer, size_t size, size_t nitems, void *userdata)
{
	PsHttpXfer *x = userdata;
	size_t		len = size * nitems;

	ps_response_header_line(x->resp, buffer, len);
	return len;
}

static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	PsHttpXfer *x = userdata;
	PsResponse *r = x->resp;
	size_t		len = size * nmemb;
	long		status = 0;

	r->body_bytes += len;
	if (x->max_bytes > 0 && r->body_bytes > x->max_bytes)
	{
		x->too_large = true;
		return 0;
	}
	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
	r->status = status;
	if (status >= 200 && status < 300)
	{
		PsHttpBody	verdict = x->body_cb(x->body_arg, ptr, len, r);

		if (verdict == PS_HTTP_BODY_STOP)
		{
			x->body_rejected = true;
			return 0;
		}
		if (verdict == PS_HTTP_BODY_PAUSE)
		{
			/* libcurl keeps the piece and delivers it again on resume */
			r->body_bytes -= len;
			x->paused = true;
			x->pool->paused_some = true;
			return CURL_WRITEFUNC_PAUSE;
		}
	}
	else
		ps_response_error_body(r, ptr, len);
	return len;
}

/* ---- the pool ------------------------------------------------------------- */

PsHttpPool *
ps_http_pool_create(void)
{
	PsHttpPool *p = MemoryContextAllocZero(TopMemoryContext, sizeof(PsHttpPool));

	p->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (p->epfd < 0)
		ereport(ERROR, (errcode_for_socket_access(),
						errmsg("pglite_sync: could not create epoll set: %m")));
	p->multi = curl_multi_init();
	if (p->multi == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY),
						errmsg("pglite_sync: could not initialize libcurl")));
	curl_multi_setopt(p->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(p->multi, CURLMOPT_SOCKETDATA, p);
	curl_multi_setopt(p->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(p->multi, CURLMOPT_TIMERDATA, p);

	p->wes = ps_create_wait_event_set(3);
	AddWaitEventToSet(p->wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	if (IsUnderPostmaster)		/* not in single-user mode */
		AddWaitEventToSet(p->wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(p->wes, WL_SOCKET_READABLE, p->epfd, NULL, NULL);
	return p;
}

static void
xfer_detach(PsHttpXfer *x)
{
	if (x->busy)
		curl_multi_remove_handle(x->pool->multi, x->easy);
	x->busy = false;
}

void
ps_http_pool_destroy(PsHttpPool *p)
{
	ListCell   *lc;

	if (p == NULL)
		return;
	foreach(lc, p->xfers)
	{
		PsHttpXfer *x = lfirst(lc);

		xfer_detach(x);
		curl_easy_cleanup(x->easy);
		curl_slist_free_all(x->headers);
		if (x->post_body)
			pfree(x->post_body);
		if (x->url)
			curl_url_cleanup(x->url);
	}
	curl_multi_cleanup(p->multi);
	FreeWaitEventSet(p->wes);
	close(p->epfd);
}

PsHttpXfer *
ps_http_xfer_create(PsHttpPool *p, void *owner)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	PsHttpXfer *x = palloc0(sizeof(PsHttpXfer));

	x->pool = p;
	x->owner = owner;
	x->easy = curl_easy_init();
	if (x->easy == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY),
						errmsg("pglite_sync: could not initialize libcurl")));
	p->xfers = lappend(p->xfers, x);
	MemoryContextSwitchTo(old);
	return x;
}

void *
ps_http_xfer_owner(PsHttpXfer *x)
{
	return x->owner;
}

bool
ps_http_xfer_busy(PsHttpXfer *x)
{
	return x->busy;
}

/* ---- one request ------------------------------------------------------------- */

static char *
url_part(CURLU *u, CURLUPart part)
{
	char	   *v = NULL;
	char	   *out;

	if (curl_url_get(u, part, &v, part == CURLUPART_PORT ? CURLU_DEFAULT_PORT : 0) != CURLUE_OK)
		return NULL;
	out = pstrdup(v);
	curl_free(v);
	return out;
}

/* scheme://host:port, lowercased, as curl will connect to it */
static char *
origin_of(CURLU *u, char **host_out)
{
	char	   *scheme = url_part(u, CURLUPART_SCHEME);
	char	   *host = url_part(u, CURLUPART_HOST);
	char	   *port = url_part(u, CURLUPART_PORT);

	if (scheme == NULL || host == NULL)
		return NULL;
	for (char *c = host; *c; c++)
		*c = (*c >= 'A' && *c <= 'Z') ? *c + ('a' - 'A') : *c;
	if (host_out)
	{
		/* IPv6 literals come bracketed; the allow-list names them bare */
		size_t		n = strlen(host);

		*host_out = (n > 1 && host[0] == '[' && host[n - 1] == ']') ?
			pnstrdup(host + 1, n - 2) : host;
	}
	return psprintf("%s://%s:%s", scheme, host, port ? port : "");
}

static void
build_headers(PsHttpXfer *x)
{
	struct curl_slist *list = NULL;
	StringInfoData line;
	ListCell   *a,
			   *b;

	curl_slist_free_all(x->headers);
	initStringInfo(&line);
	list = curl_slist_append(list, x->sse ? "Accept: text/event-stream" : "Accept: application/json");
	if (list && x->post_body)
		list = curl_slist_append(list, "Content-Type: application/json");
	if (x->send_headers)
		forboth(a, x->header_names, b, x->header_values)
		{
			/* the protocol's own: never sent twice */
			if (pg_strcasecmp(lfirst(a), "Accept") == 0 ||
				(x->post_body && pg_strcasecmp(lfirst(a), "Content-Type") == 0))
				continue;
			resetStringInfo(&line);
			/* "Name;" sends a header with an empty value in curl */
			if (((char *) lfirst(b))[0] == '\0')
				appendStringInfo(&line, "%s;", (char *) lfirst(a));
			else
				appendStringInfo(&line, "%s: %s", (char *) lfirst(a), (char *) lfirst(b));
			if (list)
				list = curl_slist_append(list, line.data);
		}
	pfree(line.data);
	if (list == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY),
						errmsg("out of memory building request headers")));
	x->headers = list;
}

static void
set_request_options(PsHttpXfer *x)
{
	CURL	   *e = x->easy;
	long		timeout = ps_http_timeout_ms;

	curl_easy_reset(e);
	curl_easy_setopt(e, CURLOPT_CURLU, x->url);
	if (x->post_body)
	{
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->post_body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long) strlen(x->post_body));
	}
	else
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	/* redirects are ours to check and follow (see finish_or_redirect) */
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");	/* all curl decodes */
	curl_easy_setopt(e, CURLOPT_USERAGENT, "pglite_sync/" PS_VERSION);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, Min(timeout, 10000L));
	if (x->sse)
	{
		/*
		 * An event stream lasts as long as the server keeps it (Electric's
		 * sse_timeout): it only times out when it stays silent, keep-alives
		 * included, for the timeout.
		 */
		curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, Max(timeout / 1000, 1L));
	}
	else if (x->live)
	{
		/* a long-poll must answer within the timeout */
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout);
	}
	else
	{
		/*
		 * A catch-up chunk may be large: it times out when it stalls, and
		 * as a whole after a generous multiple of the timeout.
		 */
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout * 10L);
		curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, Max(timeout / 1000, 1L));
	}
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(e, CURLOPT_CAINFO, (ps_ca_file && ps_ca_file[0]) ? ps_ca_file : NULL);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
}

static void
refuse(PsHttpXfer *x, const char *fmt,...) pg_attribute_printf(2, 3);

static void
refuse(PsHttpXfer *x, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(x->resp->error, sizeof(x->resp->error), fmt, ap);
	va_end(ap);
	x->resp->outcome = PS_XFER_REFUSED;
	x->finished = true;
}

static void
launch(PsHttpXfer *x)
{
	int			running;

	x->errbuf[0] = '\0';
	x->finished = false;
	x->body_rejected = false;
	x->too_large = false;
	set_request_options(x);
	if (curl_multi_add_handle(x->pool->multi, x->easy) != CURLM_OK)
		elog(ERROR, "pglite_sync: curl_multi_add_handle failed");
	x->busy = true;
	curl_multi_socket_action(x->pool->multi, CURL_SOCKET_TIMEOUT, 0, &running);
}

void
ps_http_start(PsHttpXfer *x, const char *url, List *header_names, List *header_values,
			  bool live, bool sse, PsHttpBodyCallback body_cb, void *body_arg, PsResponse *resp)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	char	   *host = NULL;

	xfer_detach(x);				/* an ERROR may have left the previous one */
	ps_response_reset(resp);
	x->resp = resp;
	x->body_cb = body_cb;
	x->body_arg = body_arg;
	/* an event stream is limited event by event (see member.c) */
	x->max_bytes = sse ? 0 : (size_t) ps_max_response_size * 1024;
	x->live = live;
	x->sse = sse;
	x->paused = false;
	x->redirects = 0;
	x->send_headers = true;
	x->started = GetCurrentTimestamp();
	list_free_deep(x->header_names);
	list_free_deep(x->header_values);
	x->header_names = NIL;
	x->header_values = NIL;
	{
		ListCell   *a,
				   *b;

		forboth(a, header_names, b, header_values)
		{
			x->header_names = lappend(x->header_names, pstrdup(lfirst(a)));
			x->header_values = lappend(x->header_values, pstrdup(lfirst(b)));
		}
	}
	if (x->url)
		curl_url_cleanup(x->url);
	x->url = curl_url();
	if (x->url == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	if (x->origin)
		pfree(x->origin);
	x->origin = NULL;
	if (curl_url_set(x->url, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
		(x->origin = origin_of(x->url, &host)) == NULL)
		refuse(x, "shape URL \"%s\" cannot be parsed", url);
	else if (!ps_host_allowed(ps_allowed_hosts, host))
		refuse(x, "host \"%s\" is not in pglite_sync.allowed_hosts", host);
	else
	{
		build_headers(x);
		launch(x);
	}
	MemoryContextSwitchTo(old);
}

void
ps_http_abort(PsHttpXfer *x)
{
	if (!x->busy)
		return;
	xfer_detach(x);
	x->resp->outcome = PS_XFER_INTERRUPTED;
	x->finished = true;
}

void
ps_http_resume(PsHttpXfer *x)
{
	int			running;

	if (!x->busy || !x->paused)
		return;
	x->paused = false;
	/* the paused piece may be delivered (and the body pause again) right here */
	curl_easy_pause(x->easy, CURLPAUSE_CONT);
	curl_multi_socket_action(x->pool->multi, CURL_SOCKET_TIMEOUT, 0, &running);
}

/*
 * A 3xx with a Location: follow it ourselves, to the same origin with the
 * shape's headers, or to an allowed host without them (they may hold
 * tokens); never from https to http.  Returns true if a new request began.
 */
static bool follow_redirect_in(PsHttpXfer *x);

static bool
follow_redirect(PsHttpXfer *x)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	bool		followed = follow_redirect_in(x);

	MemoryContextSwitchTo(old);
	return followed;
}

static bool
follow_redirect_in(PsHttpXfer *x)
{
	PsResponse *r = x->resp;
	char	   *host = NULL;
	char	   *origin;
	char	   *scheme;

	/* a POST is not sent again elsewhere: its 3xx is its answer */
	if (r->status < 300 || r->status > 399 || r->status == 304 || r->location[0] == '\0' ||
		x->post_body)
		return false;
	if (++x->redirects > MAX_REDIRECTS)
	{
		refuse(x, "too many redirects (more than %d)", MAX_REDIRECTS);
		return false;
	}
	{
		/* only http and https, whatever libcurl could do */
		size_t		n = strcspn(r->location, ":/?#");

		if (r->location[n] == ':' &&
			!((n == 4 && pg_strncasecmp(r->location, "http", 4) == 0) ||
			  (n == 5 && pg_strncasecmp(r->location, "https", 5) == 0)))
		{
			refuse(x, "redirect refused: protocol \"%.*s\" not supported (only http and https)",
				   (int) Min(n, 20), r->location);
			return false;
		}
	}
	if (curl_url_set(x->url, CURLUPART_URL, r->location, 0) != CURLUE_OK ||
		(origin = origin_of(x->url, &host)) == NULL)
	{
		refuse(x, "the server redirected to a URL that cannot be parsed");
		return false;
	}
	scheme = url_part(x->url, CURLUPART_SCHEME);
	if (scheme == NULL || (pg_strcasecmp(scheme, "http") != 0 && pg_strcasecmp(scheme, "https") != 0))
	{
		refuse(x, "the server redirected to a scheme other than http or https");
		return false;
	}
	if (strncmp(x->origin, "https:", 6) == 0 && pg_strcasecmp(scheme, "https") != 0)
	{
		refuse(x, "the server redirected from https to %s", scheme);
		return false;
	}
	if (strcmp(origin, x->origin) != 0)
	{
		if (!(ps_allowed_hosts && ps_allowed_hosts[0] && ps_host_allowed(ps_allowed_hosts, host)))
		{
			refuse(x, "the server redirected to another host (%s), which pglite_sync.allowed_hosts does not allow",
				   host);
			return false;
		}
		x->send_headers = false;
		pfree(x->origin);
		x->origin = origin;
	}
	xfer_detach(x);
	{
		size_t		bytes = r->body_bytes;

		ps_response_reset(r);
		r->body_bytes = bytes;
	}
	build_headers(x);
	launch(x);
	return true;
}

/* A transfer has finished: settle its response, or follow its redirect. */
static bool
settle(PsHttpXfer *x)
{
	PsResponse *r = x->resp;

	if (r->outcome == PS_XFER_REFUSED || r->outcome == PS_XFER_INTERRUPTED)
		return true;
	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &r->status);
	if (x->result == CURLE_OK && !x->too_large && !x->body_rejected && follow_redirect(x))
		return false;
	if (r->outcome == PS_XFER_REFUSED)
	{
		xfer_detach(x);
		return true;
	}
	xfer_detach(x);
	r->seconds = (double) (GetCurrentTimestamp() - x->started) / USECS_PER_SEC;
	if (x->too_large)
	{
		r->outcome = PS_XFER_TOO_LARGE;
		snprintf(r->error, sizeof(r->error),
				 "response exceeds pglite_sync.max_response_size (%d kB)", ps_max_response_size);
	}
	else if (x->body_rejected)
		r->outcome = PS_XFER_BODY_REJECTED;
	else if (x->result != CURLE_OK)
	{
		r->outcome = PS_XFER_FAILED;
		snprintf(r->error, sizeof(r->error), "%s (after %.3f s, %zu bytes received)",
				 x->errbuf[0] ? x->errbuf : curl_easy_strerror(x->result),
				 r->seconds, r->body_bytes);
	}
	else if (r->status >= 300 && r->status <= 399 && r->status != 304)
	{
		r->outcome = PS_XFER_REFUSED;
		snprintf(r->error, sizeof(r->error), "the server answered %ld without a usable Location",
				 r->status);
	}
	else
		r->outcome = PS_XFER_DONE;
	return true;
}

static void
drive_sockets(PsHttpPool *p)
{
	struct epoll_event evs[32];
	int			n;
	int			running;

	while ((n = epoll_wait(p->epfd, evs, lengthof(evs), 0)) > 0)
	{
		for (int i = 0; i < n; i++)
		{
			int			mask = 0;

			if (evs[i].events & EPOLLIN)
				mask |= CURL_CSELECT_IN;
			if (evs[i].events & EPOLLOUT)
				mask |= CURL_CSELECT_OUT;
			if (evs[i].events & (EPOLLERR | EPOLLHUP))
				mask |= CURL_CSELECT_ERR;
			curl_multi_socket_action(p->multi, evs[i].data.fd, mask, &running);
		}
		if (n < (int) lengthof(evs))
			break;
	}
}

/* Collect finished transfers; refused ones finished without curl. */
static int
collect(PsHttpPool *p, PsHttpXfer **done, int max)
{
	CURLMsg    *msg;
	int			queued;
	int			n = 0;
	ListCell   *lc;

	while ((msg = curl_multi_info_read(p->multi, &queued)) != NULL)
	{
		if (msg->msg != CURLMSG_DONE)
			continue;
		foreach(lc, p->xfers)
		{
			PsHttpXfer *x = lfirst(lc);

			if (x->easy == msg->easy_handle && x->busy)
			{
				x->result = msg->data.result;
				x->finished = true;
			}
		}
	}
	foreach(lc, p->xfers)
	{
		PsHttpXfer *x = lfirst(lc);

		if (x->finished && n < max)
		{
			x->finished = false;
			if (settle(x))
				done[n++] = x;
		}
	}
	return n;
}

int
ps_http_wait(PsHttpPool *p, long timeout_ms, uint32 wait_event, PsHttpXfer **done, int max,
			 bool *latch_set)
{
	TimestampTz end = timeout_ms < 0 ? 0 :
		TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);

	*latch_set = false;
	for (;;)
	{
		int			n = collect(p, done, max);
		long		wait_ms = -1;
		TimestampTz now;
		WaitEvent	events[3];
		int			nev;

		/* a paused event stream has a batch for the caller to commit */
		if (n > 0 || p->paused_some)
		{
			p->paused_some = false;
			return n;
		}
		now = GetCurrentTimestamp();
		if (end != 0)
		{
			if (now >= end)
				return 0;
			wait_ms = (long) ((end - now + 999) / 1000);
		}
		if (p->timer_at != 0)
		{
			int			running;

			if (p->timer_at <= now)
			{
				p->timer_at = 0;
				curl_multi_socket_action(p->multi, CURL_SOCKET_TIMEOUT, 0, &running);
				continue;
			}
			wait_ms = Min(wait_ms < 0 ? LONG_MAX : wait_ms, (long) ((p->timer_at - now + 999) / 1000));
		}

		nev = WaitEventSetWait(p->wes, wait_ms, events, lengthof(events), wait_event);
		for (int i = 0; i < nev; i++)
		{
			if (events[i].events & WL_LATCH_SET)
			{
				ResetLatch(MyLatch);
				*latch_set = true;
			}
			if (events[i].events & WL_SOCKET_READABLE)
				drive_sockets(p);
		}
		if (*latch_set)
			return collect(p, done, max);
	}
}

void
ps_http_set_body(PsHttpXfer *x, const char *body)
{
	if (x->post_body)
		pfree(x->post_body);
	x->post_body = body ? MemoryContextStrdup(TopMemoryContext, body) : NULL;
}

/* ---- one request in a backend (request_snapshot) --------------------------------- */

static PsHttpBody
collect_body(void *arg, const char *data, size_t len, const PsResponse *resp)
{
	appendBinaryStringInfo((StringInfo) arg, data, (int) len);
	return PS_HTTP_BODY_OK;
}

/*
 * POST body (JSON) to url and wait for the whole answer, interruptibly: the
 * 2xx body goes to out (up to pglite_sync.max_response_size), resp says the
 * rest.  Redirects are not followed.
 */
void
ps_http_post(const char *url, List *header_names, List *header_values, const char *body,
			 PsResponse *resp, StringInfo out)
{
	PsHttpPool *volatile pool = ps_http_pool_create();

	PG_TRY();
	{
		PsHttpXfer *x = ps_http_xfer_create(pool, NULL);
		PsHttpXfer *done[1];
		bool		latch_set;

		ps_http_set_body(x, body);
		ps_http_start(x, url, header_names, header_values, false, false, collect_body, out, resp);
		while (ps_http_xfer_busy(x) || !x->finished)
		{
			CHECK_FOR_INTERRUPTS();
			if (ps_http_wait(pool, 1000, PG_WAIT_EXTENSION, done, 1, &latch_set) > 0)
				break;
		}
	}
	PG_FINALLY();
	{
		ps_http_pool_destroy(pool);
	}
	PG_END_TRY();
}
