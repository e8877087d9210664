/*
 * fuzz_protocol.c
 *	  libFuzzer target: the pure protocol helpers of protocol.c.
 *
 * Input: 1 flag byte, then segments separated by the byte 0xFF (which never
 * occurs in UTF-8 text).  Every segment goes through each single-input
 * function; consecutive segments form the pairs and triples of the others.
 *   flag bit 0: live request; bit 1: send a cache buster; bits 2-7: attempt.
 * Checks (reference implementations are written independently here):
 *  - ps_offset_parse against a reference grammar ("-1" | "now" |
 *    u64 "_" (u64 | "inf"), at most 20 digits each); a parsed log offset
 *    printed canonically parses back to an equal offset;
 *  - ps_offset_cmp: reflexive, antisymmetric, transitive on every ordering of
 *    each triple, "-1" below everything, log offsets ordered by (tx, op) with
 *    inf above every op;
 *  - ps_header_parse against a reference classifier (names case-insensitive,
 *    x- prefix and older names legacy) and value trimming;
 *  - ps_retry_after_ms: -1 or 0..3600000; delta-seconds exactly; an HTTP date
 *    is valid independently of now, its wait does not grow with now, and it
 *    has no NUL byte (nothing after the date is ignored);
 *  - ps_content_type_ok against a reference;
 *  - ps_host_allowed against a reference matcher, plus case-insensitivity;
 *  - ps_url_encode: only unreserved characters and %XX, appends to what the
 *    buffer held, decodes back to the input;
 *  - ps_request_url against a reference URL builder, into a dirty buffer;
 *  - ps_classify_status and ps_backoff_ms (within the GUC ranges) bounds.
 */
#include <stdint.h>

#include "fuzz_common.h"
#include "protocol.h"
#include "ps_alloc.h"
#include "strbuf.h"

#define MAX_SEGS 16

typedef struct seg
{
	const char *p;				/* exact-size heap copy */
	size_t		n;
	char	   *c;				/* NUL-terminated copy */
} seg;

/* ---- offsets -------------------------------------------------------- */

static bool
ref_u64(const char *s, size_t n, uint64_t *out)
{
	unsigned __int128 v = 0;

	if (n == 0 || n > 20)
		return false;
	for (size_t i = 0; i < n; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned) (s[i] - '0');
	}
	if (v > UINT64_MAX)
		return false;
	*out = (uint64_t) v;
	return true;
}

static ps_offset
ref_offset(const char *s, size_t n)
{
	ps_offset	o;
	size_t		us;

	memset(&o, 0, sizeof(o));
	o.kind = PS_OFFSET_INVALID;
	if (n == 2 && s[0] == '-' && s[1] == '1')
	{
		o.kind = PS_OFFSET_START;
		return o;
	}
	if (n == 3 && memcmp(s, "now", 3) == 0)
	{
		o.kind = PS_OFFSET_NOW;
		return o;
	}
	for (us = 0; us < n && s[us] != '_'; us++)
		;
	if (us == n || !ref_u64(s, us, &o.tx))
		return o;
	if (n - us - 1 == 3 && memcmp(s + us + 1, "inf", 3) == 0)
		o.op_inf = true;
	else if (!ref_u64(s + us + 1, n - us - 1, &o.op))
	{
		o.tx = 0;
		return o;
	}
	o.kind = PS_OFFSET_LOG;
	return o;
}

static int
sgn(int x)
{
	return (x > 0) - (x < 0);
}

static void
check_offset(const seg *s, ps_offset *o)
{
	bool		ok = ps_offset_parse(s->p, s->n, o);
	ps_offset	r = ref_offset(s->p, s->n);

	FUZZ_CHECK(ok == (r.kind != PS_OFFSET_INVALID), "offset \"%.*s\": parse %d, reference kind %d",
			   (int) s->n, s->p, ok, r.kind);
	FUZZ_CHECK(o->kind == r.kind, "offset \"%.*s\": kind %d, reference %d", (int) s->n, s->p, o->kind, r.kind);
	if (o->kind == PS_OFFSET_LOG)
	{
		char		buf[64];
		ps_offset	back;
		int			n;

		FUZZ_CHECK(o->tx == r.tx && o->op_inf == r.op_inf && (o->op_inf || o->op == r.op),
				   "offset \"%.*s\": %llu_%llu%s, reference %llu_%llu%s", (int) s->n, s->p,
				   (unsigned long long) o->tx, (unsigned long long) o->op, o->op_inf ? "(inf)" : "",
				   (unsigned long long) r.tx, (unsigned long long) r.op, r.op_inf ? "(inf)" : "");
		if (o->op_inf)
			n = snprintf(buf, sizeof(buf), "%llu_inf", (unsigned long long) o->tx);
		else
			n = snprintf(buf, sizeof(buf), "%llu_%llu", (unsigned long long) o->tx, (unsigned long long) o->op);
		FUZZ_CHECK(ps_offset_parse(buf, n, &back) && ps_offset_cmp(o, &back) == 0 &&
				   ps_offset_cmp(&back, o) == 0, "canonical form %s does not round-trip", buf);
	}
	FUZZ_CHECK(ps_offset_cmp(o, o) == 0, "offset \"%.*s\" not equal to itself", (int) s->n, s->p);
}

/* reference order of two log offsets */
static int
ref_cmp_log(const ps_offset *a, const ps_offset *b)
{
	if (a->tx != b->tx)
		return a->tx < b->tx ? -1 : 1;
	if (a->op_inf || b->op_inf)
		return (a->op_inf && b->op_inf) ? 0 : a->op_inf ? 1 : -1;
	return a->op < b->op ? -1 : a->op > b->op;
}

static void
check_cmp(const ps_offset *a, const ps_offset *b)
{
	int			ab = sgn(ps_offset_cmp(a, b));
	int			ba = sgn(ps_offset_cmp(b, a));

	FUZZ_CHECK(ab == -ba, "cmp not antisymmetric: %d / %d (kinds %d %d)", ab, ba, a->kind, b->kind);
	if (a->kind == PS_OFFSET_START)
		FUZZ_CHECK(ab <= 0, "-1 above an offset of kind %d", b->kind);
	if (a->kind == PS_OFFSET_LOG && b->kind == PS_OFFSET_LOG)
		FUZZ_CHECK(ab == ref_cmp_log(a, b), "cmp %d, reference %d", ab, ref_cmp_log(a, b));
}

static void
check_triple(const ps_offset *x, const ps_offset *y, const ps_offset *z)
{
	const ps_offset *t[3] = {x, y, z};
	static const int perm[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};

	for (int i = 0; i < 6; i++)
	{
		const ps_offset *a = t[perm[i][0]];
		const ps_offset *b = t[perm[i][1]];
		const ps_offset *c = t[perm[i][2]];
		int			ab = sgn(ps_offset_cmp(a, b));
		int			bc = sgn(ps_offset_cmp(b, c));
		int			ac = sgn(ps_offset_cmp(a, c));

		if (ab <= 0 && bc <= 0)
			FUZZ_CHECK(ac <= 0, "cmp not transitive (<=)");
		if (ab == 0 && bc == 0)
			FUZZ_CHECK(ac == 0, "cmp not transitive (==)");
		if (ab < 0 && bc <= 0)
			FUZZ_CHECK(ac < 0, "cmp not transitive (<)");
	}
}

/* ---- headers -------------------------------------------------------- */

static void
check_header(const seg *s)
{
	const char *v = (const char *) 1;
	size_t		vl = 12345;
	bool		legacy = true;
	ps_header	h = ps_header_parse(s->p, s->n, &v, &vl, &legacy);
	const char *colon = memchr(s->p, ':', s->n);
	const char *name = s->p;
	size_t		nlen;
	ps_header	want = PS_HDR_OTHER;
	bool		want_legacy = false;
	static const struct
	{
		const char *name;
		ps_header	h;
		bool		legacy;
		bool		x_ok;
	}			names[] = {
		{"electric-handle", PS_HDR_HANDLE, false, true},
		{"electric-offset", PS_HDR_OFFSET, false, true},
		{"electric-cursor", PS_HDR_CURSOR, false, true},
		{"electric-up-to-date", PS_HDR_UP_TO_DATE, false, true},
		{"electric-schema", PS_HDR_SCHEMA, false, true},
		{"electric-has-data", PS_HDR_HAS_DATA, false, true},
		{"electric-shape-id", PS_HDR_HANDLE, true, true},
		{"electric-chunk-last-offset", PS_HDR_OFFSET, true, true},
		{"electric-next-cursor", PS_HDR_CURSOR, true, true},
		{"electric-chunk-up-to-date", PS_HDR_UP_TO_DATE, true, true},
		{"retry-after", PS_HDR_RETRY_AFTER, false, false},
		{"content-type", PS_HDR_CONTENT_TYPE, false, false},
	};

	FUZZ_CHECK(h >= PS_HDR_OTHER && h < PS_HDR_COUNT, "header %d", h);
	if (colon == NULL)
	{
		FUZZ_CHECK(h == PS_HDR_OTHER && v == NULL && vl == 0 && !legacy, "line without a colon classified");
		return;
	}
	/* the value: inside the line, trimmed, only blanks trimmed */
	FUZZ_CHECK(v != NULL && v > colon && fuzz_in(v, vl, s->p, s->n), "value outside the line");
	for (const char *p = colon + 1; p < v; p++)
		FUZZ_CHECK(*p == ' ' || *p == '\t', "non-blank 0x%02x trimmed before the value", (unsigned char) *p);
	for (const char *p = v + vl; p < s->p + s->n; p++)
		FUZZ_CHECK(*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n',
				   "non-blank 0x%02x trimmed after the value", (unsigned char) *p);
	if (vl > 0)
	{
		FUZZ_CHECK(v[0] != ' ' && v[0] != '\t', "value starts with a blank");
		FUZZ_CHECK(strchr(" \t\r\n", v[vl - 1]) == NULL || v[vl - 1] == '\0', "value ends with a blank");
	}

	nlen = colon - name;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
	{
		if (fuzz_ieq(name, nlen, names[i].name))
		{
			want = names[i].h;
			want_legacy = names[i].legacy;
		}
		else if (names[i].x_ok && nlen > 2 && fuzz_lower(name[0]) == 'x' && name[1] == '-' &&
				 fuzz_ieq(name + 2, nlen - 2, names[i].name))
		{
			want = names[i].h;
			want_legacy = true;
		}
	}
	FUZZ_CHECK(h == want, "header \"%.*s\": %d, reference %d", (int) nlen, name, h, want);
	if (h != PS_HDR_OTHER)
		FUZZ_CHECK(legacy == want_legacy, "header \"%.*s\": legacy %d", (int) nlen, name, legacy);
}

/* ---- Retry-After, content-type ------------------------------------------- */

static void
check_retry_after(const seg *s)
{
	int64_t		a = ps_retry_after_ms(s->p, s->n, 1700000000);
	int64_t		b = ps_retry_after_ms(s->p, s->n, 1700000000 + 600);
	int64_t		c = ps_retry_after_ms(s->p, s->n, 0);

	FUZZ_CHECK(a == -1 || (a >= 0 && a <= 3600 * 1000), "retry-after %lld", (long long) a);
	FUZZ_CHECK((a == -1) == (b == -1) && (a == -1) == (c == -1), "validity depends on now");
	FUZZ_CHECK(b <= a || a == -1, "wait grows with now");
	if (s->n > 0 && s->p[0] >= '0' && s->p[0] <= '9')
	{
		uint64_t	secs;
		int64_t		want = -1;

		if (s->n < 64 && ref_u64(s->p, s->n, &secs))
			want = secs > 3600 ? 3600 * 1000 : (int64_t) secs * 1000;
		FUZZ_CHECK(a == want && b == want, "retry-after \"%.*s\": %lld, want %lld",
				   (int) s->n, s->p, (long long) a, (long long) want);
	}
	else if (a != -1)
	{
		/* an HTTP date: "Day, DD Mon YYYY HH:MM:SS GMT" */
		FUZZ_CHECK(memchr(s->p, ',', s->n) != NULL, "\"%.*s\" accepted as a date", (int) s->n, s->p);
#ifndef FUZZ_SKIP_KNOWN			/* finding 4 */
		FUZZ_CHECK(memchr(s->p, '\0', s->n) == NULL, "a date with a NUL byte accepted: \"%.*s\"", (int) s->n, s->p);
#endif
	}
}

static void
check_content_type(const seg *s)
{
	bool		ok = ps_content_type_ok(s->p, s->n);
	bool		want;

	if (s->n == 0)
		want = true;
	else
		want = s->n >= 16 && fuzz_ieq(s->p, 16, "application/json") &&
			(s->n == 16 || s->p[16] == ';' || s->p[16] == ' ');
	FUZZ_CHECK(ok == want, "content-type \"%.*s\": %d", (int) s->n, s->p, ok);
}

/* ---- hosts ---------------------------------------------------------------- */

static bool
ref_host_allowed(const char *list, const char *host)
{
	size_t		hlen = strlen(host);
	bool		any = false;
	const char *p = list;

	for (;;)
	{
		const char *e = strchr(p, ',');
		const char *a = p;
		const char *b = e ? e : p + strlen(p);

		while (a < b && (*a == ' ' || *a == '\t'))
			a++;
		while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
			b--;
		if (b > a)
		{
			size_t		n = b - a;

			any = true;
			if (n == hlen)
			{
				bool		eq = true;

				for (size_t i = 0; i < n; i++)
					eq = eq && fuzz_lower(a[i]) == fuzz_lower(host[i]);
				if (eq)
					return true;
			}
			/* "*.suffix": a host that ends in ".suffix" with something before */
			if (n > 2 && a[0] == '*' && a[1] == '.' && hlen > n - 1)
			{
				bool		eq = true;

				for (size_t i = 0; i < n - 1; i++)
					eq = eq && fuzz_lower(a[1 + i]) == fuzz_lower(host[hlen - (n - 1) + i]);
				if (eq)
					return true;
			}
		}
		if (!e)
			break;
		p = e + 1;
	}
	return !any;
}

static void
check_hosts(const seg *list, const seg *host)
{
	bool		ok = ps_host_allowed(list->c, host->c);
	bool		want = ref_host_allowed(list->c, host->c);
	char	   *up = strdup(host->c);
	char	   *both;
	size_t		ll = strlen(list->c);

	FUZZ_CHECK(ok == want, "host \"%s\" in \"%s\": %d, reference %d", host->c, list->c, ok, want);
	for (char *p = up; *p; p++)
		if (*p >= 'a' && *p <= 'z')
			*p -= 32;
	FUZZ_CHECK(ps_host_allowed(list->c, up) == ok, "host matching is case-sensitive");
	/* a list naming the host (without blanks or commas of its own) allows it */
	if (host->c[0] && !strpbrk(host->c, ", \t"))
	{
		both = malloc(ll + strlen(host->c) + 3);
		sprintf(both, "%s ,%s", list->c, up);
		FUZZ_CHECK(ps_host_allowed(both, host->c), "host not allowed by a list naming it");
		free(both);
	}
	FUZZ_CHECK(ps_host_allowed("", host->c) && ps_host_allowed(" , ,\t", host->c), "empty list refuses");
	free(up);
}

/* ---- URLs ----------------------------------------------------------------- */

static int
hexv(char c)
{
	return (c >= '0' && c <= '9') ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
}

static void
check_url_encode(const seg *s)
{
	ps_strbuf	b;
	size_t		j = 0;
	size_t		k;

	ps_strbuf_init(&b);
	ps_strbuf_puts(&b, "pre?");
	ps_url_encode(&b, s->p, s->n);
	FUZZ_CHECK(b.len >= 4 && memcmp(b.data, "pre?", 4) == 0, "the buffer's old content changed");
	FUZZ_CHECK(b.data[b.len] == '\0' && strlen(b.data) == b.len, "encoded output not terminated");
	FUZZ_CHECK(b.len <= 4 + 3 * s->n && b.len + 1 <= b.cap, "encoded length %zu for %zu bytes", b.len, s->n);
	for (k = 4; k < b.len; j++)
	{
		unsigned char c;

		FUZZ_CHECK(j < s->n, "encoded output longer than the input");
		if (b.data[k] == '%')
		{
			FUZZ_CHECK(k + 2 < b.len && hexv(b.data[k + 1]) >= 0 && hexv(b.data[k + 2]) >= 0,
					   "bad %%XX escape at %zu", k);
			c = (unsigned char) (hexv(b.data[k + 1]) * 16 + hexv(b.data[k + 2]));
			FUZZ_CHECK(!fuzz_unreserved(c), "unreserved 0x%02x encoded", c);
			k += 3;
		}
		else
		{
			c = (unsigned char) b.data[k];
			FUZZ_CHECK(fuzz_unreserved(c), "reserved 0x%02x left unencoded", c);
			k++;
		}
		FUZZ_CHECK(c == (unsigned char) s->p[j], "decodes to 0x%02x, input 0x%02x at %zu", c,
				   (unsigned char) s->p[j], j);
	}
	FUZZ_CHECK(j == s->n, "decoded %zu of %zu bytes", j, s->n);
	ps_strbuf_free(&b);
}

static void
ref_add_param(ps_strbuf *u, const char *name, const char *value)
{
	if (memchr(u->data, '?', u->len) == NULL)
		ps_strbuf_putc(u, '?');
	else if (u->len > 0 && u->data[u->len - 1] != '?' && u->data[u->len - 1] != '&')
		ps_strbuf_putc(u, '&');
	fuzz_ref_encode(u, name);
	ps_strbuf_putc(u, '=');
	fuzz_ref_encode(u, value);
}

static void
check_request_url(const seg *base, const seg *offset, const seg *handle, const seg *cursor,
				  const seg *buster, bool live)
{
	ps_strbuf	out;
	ps_strbuf	want;
	ps_offset	o;

	ps_strbuf_init(&out);
	ps_strbuf_puts(&out, "dirty buffer?x=1&");
	ps_request_url(&out, base->c, offset->c, handle->c, live, cursor->c, buster ? buster->c : NULL);

	ps_strbuf_init(&want);
	ps_strbuf_puts(&want, base->c);
	ref_add_param(&want, "offset", offset->c);
	o = ref_offset(offset->c, strlen(offset->c));
	if (handle->c[0] && o.kind == PS_OFFSET_LOG)
		ref_add_param(&want, "handle", handle->c);
	if (live)
	{
		ref_add_param(&want, "live", "true");
		if (cursor->c[0])
			ref_add_param(&want, "cursor", cursor->c);
	}
	if (buster)
		ref_add_param(&want, "cache-buster", buster->c);
	FUZZ_CHECK(out.len == want.len && strcmp(out.data, want.data) == 0,
			   "request URL\n  got  %s\n  want %s", out.data, want.data);
	FUZZ_CHECK(strlen(out.data) == out.len, "URL length");
	/* without a NULL handle/cursor too */
	ps_request_url(&out, base->c, offset->c, NULL, live, NULL, NULL);
	FUZZ_CHECK(strncmp(out.data, base->c, strlen(base->c)) == 0, "URL does not start with the base");
	ps_strbuf_free(&out);
	ps_strbuf_free(&want);
}

/* ---- status and backoff ---------------------------------------------------- */

static uint64_t
hash(const seg *s)
{
	uint64_t	h = 1469598103934665603ull;

	for (size_t i = 0; i < s->n; i++)
		h = (h ^ (unsigned char) s->p[i]) * 1099511628211ull;
	return h;
}

static void
check_status_backoff(const seg *s, int attempt, int64_t retry_after)
{
	uint64_t	h = hash(s);
	long		status = (long) (h % 1200) - 100;
	ps_status_class sc = ps_classify_status(status);
	int64_t		base = 1 + (int64_t) ((h >> 11) % (3600 * 1000));
	int64_t		cap = 1 + (int64_t) ((h >> 33) % (24 * 3600 * 1000));
	double		rnd = (double) ((h >> 45) & 0xfffff) / 1048576.0;
	int64_t		w;
	int64_t		ceiling;

	if (status == 200)
		FUZZ_CHECK(sc == PS_STATUS_OK, "200 -> %d", sc);
	else if (status == 204)
		FUZZ_CHECK(sc == PS_STATUS_EMPTY, "204 -> %d", sc);
	else if (status == 409)
		FUZZ_CHECK(sc == PS_STATUS_REFETCH, "409 -> %d", sc);
	else if (status == 429 || status == 408 || status >= 500)
		FUZZ_CHECK(sc == PS_STATUS_RETRY, "%ld -> %d", status, sc);
	else if (status >= 400 && status < 500)
		FUZZ_CHECK(sc == PS_STATUS_FATAL, "%ld -> %d", status, sc);
	else
		FUZZ_CHECK(sc == PS_STATUS_RETRY, "%ld -> %d", status, sc);

	if (h & 1)
		base = 1 + (int64_t) ((h >> 11) % 4000);
	w = ps_backoff_ms(base, cap, attempt, rnd, retry_after);
	ceiling = base;
	for (int i = 0; i < attempt && ceiling < (cap > base ? cap : base); i++)
		ceiling *= 2;
	if (ceiling > (cap > base ? cap : base))
		ceiling = cap > base ? cap : base;
	FUZZ_CHECK(w >= 0 && w >= retry_after, "backoff %lld below retry-after %lld", (long long) w, (long long) retry_after);
	FUZZ_CHECK(w < ceiling || w == retry_after, "backoff %lld not below the ceiling %lld (base %lld cap %lld attempt %d rnd %g)",
			   (long long) w, (long long) ceiling, (long long) base, (long long) cap, attempt, rnd);
	FUZZ_CHECK(w == (retry_after > (int64_t) (rnd * (double) ceiling) ? retry_after : (int64_t) (rnd * (double) ceiling)),
			   "backoff %lld", (long long) w);
	/* out-of-range rnd is clamped */
	w = ps_backoff_ms(base, cap, attempt, -1.0, -1);
	FUZZ_CHECK(w == 0, "rnd < 0 gives %lld", (long long) w);
	w = ps_backoff_ms(base, cap, attempt, 7.5, -1);
	FUZZ_CHECK(w >= 0 && w < ceiling, "rnd > 1 gives %lld (ceiling %lld)", (long long) w, (long long) ceiling);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	seg			segs[MAX_SEGS];
	ps_offset	offs[MAX_SEGS];
	int			n = 0;
	size_t		start = 1;
	int			flags;

	if (size < 1)
		return 0;
	flags = data[0];
	for (size_t i = 1; i <= size && n < MAX_SEGS; i++)
	{
		if (i == size || data[i] == 0xFF)
		{
			segs[n].p = fuzz_copy(data + start, i - start);
			segs[n].n = i - start;
			segs[n].c = fuzz_cstr(data + start, i - start);
			n++;
			start = i + 1;
		}
	}

	for (int i = 0; i < n; i++)
	{
		check_offset(&segs[i], &offs[i]);
		check_header(&segs[i]);
		check_retry_after(&segs[i]);
		check_content_type(&segs[i]);
		check_url_encode(&segs[i]);
	}
	for (int i = 0; i < n; i++)
	{
		const ps_offset *a = &offs[i];
		const ps_offset *b = &offs[(i + 1) % n];
		const ps_offset *c = &offs[(i + 2) % n];

		check_cmp(a, b);
		check_triple(a, b, c);
		check_hosts(&segs[i], &segs[(i + 1) % n]);
		check_status_backoff(&segs[i], flags >> 2,
							 ps_retry_after_ms(segs[(i + 1) % n].p, segs[(i + 1) % n].n, 1700000000));
	}
	for (int i = 0; i < n; i++)
		check_request_url(&segs[i], &segs[(i + 1) % n], &segs[(i + 2) % n], &segs[(i + 3) % n],
						  (flags & 2) ? &segs[(i + 4) % n] : NULL, flags & 1);

	for (int i = 0; i < n; i++)
	{
		free((void *) segs[i].p);
		free(segs[i].c);
	}
	return 0;
}
