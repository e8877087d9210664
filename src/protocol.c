/*
 * protocol.c
 *	  Pure pieces of the Electric shape protocol (see protocol.h).
 */
#include "protocol.h"

#include <ctype.h>
#include <string.h>

/* ---- offsets ---------------------------------------------------------- */

static bool
parse_u64(const char *s, size_t len, uint64_t *out)
{
	uint64_t	v = 0;

	if (len == 0 || len > 20)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		unsigned	d;

		if (s[i] < '0' || s[i] > '9')
			return false;
		d = (unsigned) (s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

/* ASCII case folding only: header names are ASCII, and a locale's rules
 * (Turkish dotless i) must not make two names equal. */
static bool
ascii_caseeq(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
	{
		char		x = a[i] >= 'A' && a[i] <= 'Z' ? a[i] + ('a' - 'A') : a[i];
		char		y = b[i] >= 'A' && b[i] <= 'Z' ? b[i] + ('a' - 'A') : b[i];

		if (x != y)
			return false;
	}
	return true;
}

bool
ps_offset_parse(const char *s, size_t len, ps_offset *out)
{
	const char *us;

	memset(out, 0, sizeof(*out));
	out->kind = PS_OFFSET_INVALID;
	if (len == 2 && memcmp(s, "-1", 2) == 0)
	{
		out->kind = PS_OFFSET_START;
		return true;
	}
	if (len == 3 && memcmp(s, "now", 3) == 0)
	{
		out->kind = PS_OFFSET_NOW;
		return true;
	}
	us = memchr(s, '_', len);
	if (us == NULL)
		return false;
	if (!parse_u64(s, us - s, &out->tx))
		return false;
	us++;
	if ((size_t) (s + len - us) == 3 && memcmp(us, "inf", 3) == 0)
		out->op_inf = true;
	else if (!parse_u64(us, s + len - us, &out->op))
		return false;
	out->kind = PS_OFFSET_LOG;
	return true;
}

int
ps_offset_cmp(const ps_offset *a, const ps_offset *b)
{
	if (a->kind != PS_OFFSET_LOG || b->kind != PS_OFFSET_LOG)
	{
		int			ra = a->kind == PS_OFFSET_START ? 0 : a->kind == PS_OFFSET_LOG ? 1 : 2;
		int			rb = b->kind == PS_OFFSET_START ? 0 : b->kind == PS_OFFSET_LOG ? 1 : 2;

		return ra < rb ? -1 : ra > rb;
	}
	if (a->tx != b->tx)
		return a->tx < b->tx ? -1 : 1;
	if (a->op_inf || b->op_inf)
		return a->op_inf == b->op_inf ? 0 : (a->op_inf ? 1 : -1);
	if (a->op != b->op)
		return a->op < b->op ? -1 : 1;
	return 0;
}

/* ---- request URLs ----------------------------------------------------- */

void
ps_url_encode(ps_strbuf *out, const char *s, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";

	ps_strbuf_reserve(out, len * 3);
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~')
			out->data[out->len++] = (char) c;
		else
		{
			out->data[out->len++] = '%';
			out->data[out->len++] = hex[c >> 4];
			out->data[out->len++] = hex[c & 15];
		}
	}
	out->data[out->len] = '\0';
}

void
ps_url_add_param(ps_strbuf *url, const char *name, const char *value)
{
	bool		has_query = url->len > 0 && memchr(url->data, '?', url->len) != NULL;
	char		last = url->len > 0 ? url->data[url->len - 1] : '\0';

	if (!has_query)
		ps_strbuf_putc(url, '?');
	else if (last != '?' && last != '&')
		ps_strbuf_putc(url, '&');
	ps_url_encode(url, name, strlen(name));
	ps_strbuf_putc(url, '=');
	ps_url_encode(url, value, strlen(value));
}

void
ps_request_url(ps_strbuf *out, const char *base, const char *offset,
			   const char *handle, bool live, const char *cursor,
			   const char *buster)
{
	ps_offset	o;

	ps_strbuf_reset(out);
	ps_strbuf_puts(out, base);
	ps_url_add_param(out, "offset", offset);
	if (handle && handle[0] &&
		ps_offset_parse(offset, strlen(offset), &o) && o.kind == PS_OFFSET_LOG)
		ps_url_add_param(out, "handle", handle);
	if (live)
	{
		ps_url_add_param(out, "live", "true");
		if (cursor && cursor[0])
			ps_url_add_param(out, "cursor", cursor);
	}
	if (buster)
		ps_url_add_param(out, "cache-buster", buster);
}

/* ---- response headers ------------------------------------------------- */

static bool
name_is(const char *name, size_t len, const char *lit)
{
	size_t		n = strlen(lit);

	return len == n && ascii_caseeq(name, lit, n);
}

ps_header
ps_header_parse(const char *line, size_t len, const char **value, size_t *vlen,
				bool *legacy)
{
	const char *colon = memchr(line, ':', len);
	const char *name = line;
	size_t		nlen;
	const char *v;
	const char *e;
	ps_header	h = PS_HDR_OTHER;

	*legacy = false;
	*value = NULL;
	*vlen = 0;
	if (colon == NULL)
		return PS_HDR_OTHER;
	nlen = colon - line;
	v = colon + 1;
	e = line + len;
	while (v < e && (*v == ' ' || *v == '\t'))
		v++;
	while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t'))
		e--;
	*value = v;
	*vlen = e - v;

	if (nlen > 11 && ascii_caseeq(name, "x-electric-", 11))
	{
		name += 2;
		nlen -= 2;
		*legacy = true;
	}

	if (name_is(name, nlen, "electric-handle"))
		h = PS_HDR_HANDLE;
	else if (name_is(name, nlen, "electric-offset"))
		h = PS_HDR_OFFSET;
	else if (name_is(name, nlen, "electric-cursor"))
		h = PS_HDR_CURSOR;
	else if (name_is(name, nlen, "electric-up-to-date"))
		h = PS_HDR_UP_TO_DATE;
	else if (name_is(name, nlen, "electric-schema"))
		h = PS_HDR_SCHEMA;
	else if (name_is(name, nlen, "electric-has-data"))
		h = PS_HDR_HAS_DATA;
	else if (name_is(name, nlen, "electric-snapshot"))
		h = PS_HDR_SNAPSHOT;
	else if (name_is(name, nlen, "electric-shape-id"))
		h = PS_HDR_HANDLE, *legacy = true;
	else if (name_is(name, nlen, "electric-chunk-last-offset"))
		h = PS_HDR_OFFSET, *legacy = true;
	else if (name_is(name, nlen, "electric-next-cursor"))
		h = PS_HDR_CURSOR, *legacy = true;
	else if (name_is(name, nlen, "electric-chunk-up-to-date"))
		h = PS_HDR_UP_TO_DATE, *legacy = true;
	else if (!*legacy && name_is(name, nlen, "retry-after"))
		h = PS_HDR_RETRY_AFTER;
	else if (!*legacy && name_is(name, nlen, "content-type"))
		h = PS_HDR_CONTENT_TYPE;
	else if (!*legacy && name_is(name, nlen, "location"))
		h = PS_HDR_LOCATION;
	return h;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's method). */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
	int64_t		era;
	int			yoe;
	int			doy;
	int			doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (int) (y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int
digits(const char *p, int n)
{
	int			v = 0;

	for (int i = 0; i < n; i++)
	{
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (p[i] - '0');
	}
	return v;
}

/*
 * An IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") as seconds since the
 * epoch, or INT64_MIN.  Written out rather than strptime/timegm, which are
 * neither everywhere (PGlite) nor strict.
 */
static int64_t
http_date(const char *s, size_t len)
{
	static const char *const days[] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};
	static const char *const months[] = {"jan", "feb", "mar", "apr", "may", "jun",
	"jul", "aug", "sep", "oct", "nov", "dec"};
	int			day,
				month = -1,
				year,
				hh,
				mm,
				ss;
	bool		known = false;

	if (len != 29 || s[3] != ',' || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' ||
		s[16] != ' ' || s[19] != ':' || s[22] != ':' || memcmp(s + 25, " GMT", 4) != 0)
		return INT64_MIN;
	for (int i = 0; i < 7; i++)
		known |= ascii_caseeq(s, days[i], 3);
	for (int i = 0; i < 12; i++)
		if (ascii_caseeq(s + 8, months[i], 3))
			month = i + 1;
	day = digits(s + 5, 2);
	year = digits(s + 12, 4);
	hh = digits(s + 17, 2);
	mm = digits(s + 20, 2);
	ss = digits(s + 23, 2);
	if (!known || month < 0 || day < 1 || day > 31 || year < 0 || hh < 0 || hh > 23 ||
		mm < 0 || mm > 59 || ss < 0 || ss > 60)
		return INT64_MIN;
	return days_from_civil(year, month, day) * 86400 + hh * 3600 + mm * 60 + ss;
}

int64_t
ps_retry_after_ms(const char *value, size_t len, time_t now)
{
	char		buf[64];
	int64_t		secs;
	int64_t		ms;

	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, value, len);
	buf[len] = '\0';

	if (isdigit((unsigned char) buf[0]))
	{
		uint64_t	secs;

		if (!parse_u64(buf, len, &secs))
			return -1;
		ms = secs > 3600 ? 3600 * 1000 : (int64_t) secs * 1000;
		return ms;
	}
	secs = http_date(buf, len);
	if (secs == INT64_MIN)
		return -1;
	ms = (secs - (int64_t) now) * 1000;
	if (ms < 0)
		ms = 0;
	if (ms > 3600 * 1000)
		ms = 3600 * 1000;
	return ms;
}

bool
ps_content_type_ok(const char *value, size_t len)
{
	static const char json[] = "application/json";

	if (len == 0)
		return true;
	if (len < sizeof(json) - 1 || !ascii_caseeq(value, json, sizeof(json) - 1))
		return false;
	return len == sizeof(json) - 1 || value[sizeof(json) - 1] == ';' ||
		value[sizeof(json) - 1] == ' ';
}

/* ---- status and retry policy ------------------------------------------ */

ps_status_class
ps_classify_status(long status)
{
	if (status == 200)
		return PS_STATUS_OK;
	if (status == 204)
		return PS_STATUS_EMPTY;
	if (status == 409)
		return PS_STATUS_REFETCH;
	if (status == 429 || status == 408 || status >= 500)
		return PS_STATUS_RETRY;
	if (status >= 400 && status < 500)
		return PS_STATUS_FATAL;
	/* 1xx/3xx left after redirects, 201, 304 (we never revalidate)... */
	return PS_STATUS_RETRY;
}

int64_t
ps_backoff_ms(int64_t base_ms, int64_t cap_ms, int attempt, double rnd,
			  int64_t retry_after_ms)
{
	int64_t		ceiling = base_ms > 0 ? base_ms : 1;
	int64_t		wait;

	if (cap_ms < ceiling)
		cap_ms = ceiling;
	for (int i = 0; i < attempt && ceiling < cap_ms; i++)
		ceiling *= 2;
	if (ceiling > cap_ms)
		ceiling = cap_ms;
	if (rnd < 0)
		rnd = 0;
	if (rnd >= 1)
		rnd = 0.999999;
	wait = (int64_t) (rnd * (double) ceiling);
	if (retry_after_ms > wait)
		wait = retry_after_ms;
	return wait;
}

bool
ps_host_allowed(const char *list, const char *host)
{
	const char *p = list;
	size_t		hlen = strlen(host);
	bool		empty = true;

	while (p && *p)
	{
		const char *e = strchr(p, ',');
		size_t		n = e ? (size_t) (e - p) : strlen(p);

		/* trim */
		while (n > 0 && (*p == ' ' || *p == '\t'))
			p++, n--;
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (n > 0)
		{
			empty = false;
			if (n == hlen && ascii_caseeq(p, host, n))
				return true;
			if (n > 2 && p[0] == '*' && p[1] == '.' && hlen > n - 1 &&
				ascii_caseeq(host + hlen - (n - 1), p + 1, n - 1))
				return true;
		}
		p = e ? e + 1 : NULL;
	}
	return empty;
}
