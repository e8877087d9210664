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
#include "utils/wait_event.h"

#include "http.h"
#include "protocol.h"

#if LIBCURL_VERSION_NUM < 0x075500
#error "pglite_sync needs libcurl 7.85 or later (CURLOPT_PROTOCOLS_STR)"
#endif

struct PsHttp
{
	CURLM	   *multi;
	CURL	   *easy;
	int			epfd;			/* the mux: every curl socket */
	WaitEventSet *wes;			/* latch + postmaster death + mux */
	bool		in_transfer;
	TimestampTz timer_at;		/* curl's next timeout, 0 = none */
	struct curl_slist *headers;
	char		errbuf[CURL_ERROR_SIZE];

	/* current transfer */
	PsHttpResponse *resp;
	PsHttpBodyCallback body_cb;
	void	   *body_arg;
	bool		body_rejected;
	bool		too_large;
	size_t		max_bytes;
	bool		legacy[PS_HDR_COUNT];	/* header value came from an old name */
};

/* ---- curl callbacks: no ereport in here, ever (we are inside libcurl) --- */

static int
socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	PsHttp	   *h = userp;
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.data.fd = s;
	if (what == CURL_POLL_REMOVE)
	{
		epoll_ctl(h->epfd, EPOLL_CTL_DEL, s, NULL);
		curl_multi_assign(h->multi, s, NULL);
		return 0;
	}
	if (what & CURL_POLL_IN)
		ev.events |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		ev.events |= EPOLLOUT;
	if (socketp == NULL)
	{
		if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, s, &ev) != 0 && errno == EEXIST)
			epoll_ctl(h->epfd, EPOLL_CTL_MOD, s, &ev);
		curl_multi_assign(h->multi, s, h);
	}
	else
		epoll_ctl(h->epfd, EPOLL_CTL_MOD, s, &ev);
	return 0;
}

static int
timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	PsHttp	   *h = userp;

	if (timeout_ms < 0)
		h->timer_at = 0;
	else
		h->timer_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	return 0;
}

static void
set_header(char *dst, size_t dstlen, bool *has, const char *v, size_t vl)
{
	if (vl >= dstlen)
		vl = dstlen - 1;		/* longer values are not valid anyway */
	memcpy(dst, v, vl);
	dst[vl] = '\0';
	*has = true;
}

static size_t
header_cb(char *buffer, size_t size, size_t nitems, void *userdata)
{
	PsHttp	   *h = userdata;
	PsHttpResponse *r = h->resp;
	size_t		len = size * nitems;
	const char *v;
	size_t		vl;
	bool		legacy;
	ps_header	which;

	/* a new status line (redirect, 100 Continue): start over */
	if (len > 5 && strncmp(buffer, "HTTP/", 5) == 0)
	{
		PsHttpOutcome keep = r->outcome;

		memset(r, 0, sizeof(*r));
		r->outcome = keep;
		r->retry_after_ms = -1;
		memset(h->legacy, 0, sizeof(h->legacy));
		return len;
	}

	which = ps_header_parse(buffer, len, &v, &vl, &legacy);
	if (which == PS_HDR_OTHER)
		return len;
	/* a current name beats an older one, whatever the order */
	switch (which)
	{
		case PS_HDR_HANDLE:
			if (!r->has_handle || !legacy || h->legacy[which])
				set_header(r->handle, sizeof(r->handle), &r->has_handle, v, vl);
			break;
		case PS_HDR_OFFSET:
			if (!r->has_offset || !legacy || h->legacy[which])
				set_header(r->offset, sizeof(r->offset), &r->has_offset, v, vl);
			break;
		case PS_HDR_CURSOR:
			if (!r->has_cursor || !legacy || h->legacy[which])
				set_header(r->cursor, sizeof(r->cursor), &r->has_cursor, v, vl);
			break;
		case PS_HDR_UP_TO_DATE:
			r->up_to_date = true;
			break;
		case PS_HDR_SCHEMA:
			r->has_schema = true;
			break;
		case PS_HDR_RETRY_AFTER:
			r->retry_after_ms = ps_retry_after_ms(v, vl, time(NULL));
			break;
		case PS_HDR_CONTENT_TYPE:
			set_header(r->content_type, sizeof(r->content_type), &r->has_content_type, v, vl);
			break;
		default:
			break;
	}
	if (!h->legacy[which] || !legacy)
		h->legacy[which] = legacy;
	return len;
}

static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	PsHttp	   *h = userdata;
	PsHttpResponse *r = h->resp;
	size_t		len = size * nmemb;
	long		status = 0;

	r->body_bytes += len;
	if (h->max_bytes > 0 && r->body_bytes > h->max_bytes)
	{
		h->too_large = true;
		return 0;
	}
	curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &status);
	if (status >= 200 && status < 300)
	{
		r->status = status;
		if (!h->body_cb(h->body_arg, ptr, len, r))
		{
			h->body_rejected = true;
			return 0;
		}
	}
	else if (r->error_body_len < sizeof(r->error_body) - 1)
	{
		size_t		n = Min(len, sizeof(r->error_body) - 1 - r->error_body_len);

		memcpy(r->error_body + r->error_body_len, ptr, n);
		r->error_body_len += n;
		r->error_body[r->error_body_len] = '\0';
	}
	return len;
}

/* ---- setup and teardown --------------------------------------------------- */

PsHttp *
ps_http_create(void)
{
	PsHttp	   *h = MemoryContextAllocZero(TopMemoryContext, sizeof(PsHttp));

	h->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (h->epfd < 0)
		ereport(ERROR, (errcode_for_socket_access(),
						errmsg("pglite_sync: could not create epoll set: %m")));
	h->multi = curl_multi_init();
	h->easy = curl_easy_init();
	if (h->multi == NULL || h->easy == NULL)
		ereport(ERROR, (errmsg("pglite_sync: could not initialize libcurl")));
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);

	h->wes = ps_create_wait_event_set(3);
	AddWaitEventToSet(h->wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	if (IsUnderPostmaster)		/* not in single-user mode */
		AddWaitEventToSet(h->wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(h->wes, WL_SOCKET_READABLE, h->epfd, NULL, NULL);
	return h;
}

void
ps_http_destroy(PsHttp *h)
{
	if (h == NULL)
		return;
	if (h->in_transfer)
		curl_multi_remove_handle(h->multi, h->easy);
	curl_easy_cleanup(h->easy);
	curl_multi_cleanup(h->multi);
	curl_slist_free_all(h->headers);
	FreeWaitEventSet(h->wes);
	close(h->epfd);
	pfree(h);
}

void
ps_http_set_headers(PsHttp *h, const char *const *names,
					const char *const *values, int n)
{
	struct curl_slist *list = NULL;
	StringInfoData line;

	initStringInfo(&line);
	list = curl_slist_append(list, "Accept: application/json");
	for (int i = 0; i < n && list; i++)
	{
		resetStringInfo(&line);
		/* "Name;" sends a header with an empty value in curl */
		if (values[i][0] == '\0')
			appendStringInfo(&line, "%s;", names[i]);
		else
			appendStringInfo(&line, "%s: %s", names[i], values[i]);
		list = curl_slist_append(list, line.data);
	}
	pfree(line.data);
	if (list == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY),
						errmsg("out of memory building request headers")));
	curl_slist_free_all(h->headers);
	h->headers = list;
}

/* ---- the transfer ------------------------------------------------------------ */

static void
drive_sockets(PsHttp *h)
{
	struct epoll_event evs[16];
	int			n;
	int			running;

	while ((n = epoll_wait(h->epfd, evs, lengthof(evs), 0)) > 0)
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
			curl_multi_socket_action(h->multi, evs[i].data.fd, mask, &running);
		}
		if (n < (int) lengthof(evs))
			break;
	}
}

static void
set_request_options(PsHttp *h, const char *url, bool live)
{
	CURL	   *e = h->easy;
	long		timeout = ps_http_timeout_ms;

	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	/* a redirect never leaves https: the shape's headers may hold tokens */
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR,
					 pg_strncasecmp(url, "https:", 6) == 0 ? "https" : "http,https");
	/* with an allow-list, a redirect could leave it: do not follow */
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION,
					 (ps_allowed_hosts && ps_allowed_hosts[0]) ? 0L : 1L);
	curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");	/* all curl decodes */
	curl_easy_setopt(e, CURLOPT_USERAGENT, "pglite_sync/" PS_VERSION);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h->headers);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, Min(timeout, 10000L));
	if (live)
	{
		/* a long-poll must answer within the timeout */
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout);
		curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 0L);
		curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 0L);
	}
	else
	{
		/* a catch-up chunk may be large: time out when it stalls */
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 0L);
		curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, Max(timeout / 1000, 1L));
	}
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(e, CURLOPT_CAINFO, (ps_ca_file && ps_ca_file[0]) ? ps_ca_file : NULL);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, h->errbuf);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, h);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, h);
}

static void
finish_transfer(PsHttp *h)
{
	if (h->in_transfer)
	{
		curl_multi_remove_handle(h->multi, h->easy);
		h->in_transfer = false;
	}
	h->timer_at = 0;
}

void
ps_http_get(PsHttp *h, const char *url, bool live,
			PsHttpBodyCallback body_cb, void *body_arg,
			PsHttpInterruptCallback intr_cb, void *intr_arg,
			PsHttpResponse *resp)
{
	CURLcode	result = CURLE_OK;
	bool		done = false;
	TimestampTz started = GetCurrentTimestamp();
	int			running;

	/* an ERROR may have left the previous transfer behind */
	finish_transfer(h);

	memset(resp, 0, sizeof(*resp));
	resp->retry_after_ms = -1;
	h->resp = resp;
	h->body_cb = body_cb;
	h->body_arg = body_arg;
	h->body_rejected = false;
	h->too_large = false;
	h->max_bytes = (size_t) ps_max_response_size * 1024;
	h->errbuf[0] = '\0';
	memset(h->legacy, 0, sizeof(h->legacy));

	set_request_options(h, url, live);
	if (curl_multi_add_handle(h->multi, h->easy) != CURLM_OK)
		elog(ERROR, "pglite_sync: curl_multi_add_handle failed");
	h->in_transfer = true;
	curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);

	while (!done)
	{
		CURLMsg    *msg;
		int			queued;
		long		wait_ms = -1;	/* no curl timer: sockets and the latch wake us */
		WaitEvent	events[3];
		int			nev;
		TimestampTz now;

		while ((msg = curl_multi_info_read(h->multi, &queued)) != NULL)
		{
			if (msg->msg == CURLMSG_DONE && msg->easy_handle == h->easy)
			{
				result = msg->data.result;
				done = true;
			}
		}
		if (done)
			break;

		now = GetCurrentTimestamp();
		if (h->timer_at != 0)
		{
			if (h->timer_at <= now)
			{
				h->timer_at = 0;
				curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
				continue;
			}
			wait_ms = (long) ((h->timer_at - now + 999) / 1000);
		}

		nev = WaitEventSetWait(h->wes, wait_ms, events, lengthof(events),
							   ps_wait_event(live ? PS_WAIT_LONG_POLL : PS_WAIT_FETCH));
		for (int i = 0; i < nev; i++)
		{
			if (events[i].events & WL_LATCH_SET)
			{
				ResetLatch(MyLatch);
				if (intr_cb && intr_cb(intr_arg))
				{
					finish_transfer(h);
					resp->outcome = PS_HTTP_INTERRUPTED;
					return;
				}
			}
			if (events[i].events & WL_SOCKET_READABLE)
				drive_sockets(h);
		}
	}

	curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &resp->status);
	finish_transfer(h);
	resp->seconds = (double) (GetCurrentTimestamp() - started) / USECS_PER_SEC;

	if (h->too_large)
	{
		resp->outcome = PS_HTTP_TOO_LARGE;
		snprintf(resp->error, sizeof(resp->error),
				 "response exceeds pglite_sync.max_response_size (%d kB)", ps_max_response_size);
	}
	else if (h->body_rejected)
		resp->outcome = PS_HTTP_BODY_REJECTED;
	else if (result != CURLE_OK)
	{
		resp->outcome = PS_HTTP_FAILED;
		snprintf(resp->error, sizeof(resp->error), "%s (after %.3f s, %zu bytes received)",
				 h->errbuf[0] ? h->errbuf : curl_easy_strerror(result),
				 resp->seconds, resp->body_bytes);
	}
	else
		resp->outcome = PS_HTTP_DONE;
}

bool
ps_http_sleep(PsHttp *h, long ms, PsHttpInterruptCallback intr_cb, void *intr_arg)
{
	TimestampTz end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);

	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		WaitEvent	events[3];
		int			nev;
		long		left;

		if (now >= end)
			return false;
		left = (long) ((end - now + 999) / 1000);
		/* the mux is idle between transfers; only the latch can fire */
		nev = WaitEventSetWait(h->wes, left, events, lengthof(events),
							   ps_wait_event(PS_WAIT_BACKOFF));
		for (int i = 0; i < nev; i++)
		{
			if (events[i].events & WL_LATCH_SET)
			{
				ResetLatch(MyLatch);
				if (intr_cb && intr_cb(intr_arg))
					return true;
			}
			if (events[i].events & WL_SOCKET_READABLE)
				drive_sockets(h);	/* idle keep-alive connection closing */
		}
	}
}
