/* Unit tests: offsets, URLs, headers, status classes, backoff. */
#include <stdlib.h>

#include "protocol.h"
#include "unit.h"

static int
cmp(const char *a, const char *b)
{
	ps_offset	x,
				y;

	if (!ps_offset_parse(a, strlen(a), &x) || !ps_offset_parse(b, strlen(b), &y))
		return 99;
	return ps_offset_cmp(&x, &y);
}

static ps_header
hdr(const char *line, const char **v, size_t *vl, int *legacy)
{
	bool		l;
	ps_header	h = ps_header_parse(line, strlen(line), v, vl, &l);

	*legacy = l;
	return h;
}

int
main(void)
{
	ps_offset	o;
	ps_strbuf	b;
	const char *v;
	size_t		vl;
	int			legacy;

	/* offsets */
	CHECK(ps_offset_parse("-1", 2, &o) && o.kind == PS_OFFSET_START);
	CHECK(ps_offset_parse("now", 3, &o) && o.kind == PS_OFFSET_NOW);
	CHECK(ps_offset_parse("0_inf", 5, &o) && o.kind == PS_OFFSET_LOG && o.op_inf);
	CHECK(ps_offset_parse("18446744073709551615_3", 22, &o) && o.tx == 18446744073709551615ULL && o.op == 3);
	CHECK(!ps_offset_parse("18446744073709551616_3", 22, &o));
	CHECK(!ps_offset_parse("1_", 2, &o));
	CHECK(!ps_offset_parse("_1", 2, &o));
	CHECK(!ps_offset_parse("1_-1", 4, &o));
	CHECK(!ps_offset_parse("abc", 3, &o));
	CHECK(!ps_offset_parse("", 0, &o));
	CHECK(cmp("-1", "0_0") < 0);
	CHECK(cmp("0_0", "0_1") < 0);
	CHECK(cmp("0_9", "0_inf") < 0);
	CHECK(cmp("0_inf", "1_0") < 0);
	CHECK(cmp("9007199254740993_0", "9007199254740992_8") > 0);	/* past 2^53 */
	CHECK(cmp("5_inf", "5_inf") == 0);
	CHECK(cmp("12_4", "12_4") == 0);

	/* URLs */
	ps_strbuf_init(&b);
	ps_url_encode(&b, "a b&c=d/é[1]~", strlen("a b&c=d/é[1]~"));
	CHECK_STR(b.data, "a%20b%26c%3Dd%2F%C3%A9%5B1%5D~");
	ps_strbuf_reset(&b);
	ps_request_url(&b, "http://h/v1/shape?table=items", "-1", "H1", false, NULL, NULL);
	CHECK_STR(b.data, "http://h/v1/shape?table=items&offset=-1");
	ps_request_url(&b, "http://h/v1/shape?table=items", "0_inf", "H1", false, NULL, NULL);
	CHECK_STR(b.data, "http://h/v1/shape?table=items&offset=0_inf&handle=H1");
	ps_request_url(&b, "http://h/v1/shape", "26_4", "H1", true, "123", "b7");
	CHECK_STR(b.data, "http://h/v1/shape?offset=26_4&handle=H1&live=true&cursor=123&cache-buster=b7");
	ps_request_url(&b, "http://h/v1/shape?", "now", "H", false, NULL, NULL);
	CHECK_STR(b.data, "http://h/v1/shape?offset=now");
	ps_strbuf_free(&b);

	/* headers, current and legacy names */
	CHECK(hdr("Electric-Handle: 123-456\r\n", &v, &vl, &legacy) == PS_HDR_HANDLE && !legacy);
	CHECK_MEM(v, vl, "123-456");
	CHECK(hdr("electric-offset:0_inf\r\n", &v, &vl, &legacy) == PS_HDR_OFFSET);
	CHECK_MEM(v, vl, "0_inf");
	CHECK(hdr("electric-up-to-date: \r\n", &v, &vl, &legacy) == PS_HDR_UP_TO_DATE && vl == 0);
	CHECK(hdr("electric-shape-id: h\r\n", &v, &vl, &legacy) == PS_HDR_HANDLE && legacy);
	CHECK(hdr("electric-chunk-last-offset: 1_2\r\n", &v, &vl, &legacy) == PS_HDR_OFFSET && legacy);
	CHECK(hdr("electric-next-cursor: 9\r\n", &v, &vl, &legacy) == PS_HDR_CURSOR && legacy);
	CHECK(hdr("electric-chunk-up-to-date: \r\n", &v, &vl, &legacy) == PS_HDR_UP_TO_DATE && legacy);
	CHECK(hdr("x-electric-shape-id: h\r\n", &v, &vl, &legacy) == PS_HDR_HANDLE && legacy);
	CHECK(hdr("x-electric-schema: {}\r\n", &v, &vl, &legacy) == PS_HDR_SCHEMA && legacy);
	CHECK(hdr("Retry-After: 7\r\n", &v, &vl, &legacy) == PS_HDR_RETRY_AFTER);
	CHECK(hdr("x-retry-after: 7\r\n", &v, &vl, &legacy) == PS_HDR_OTHER);
	CHECK(hdr("HTTP/1.1 200 OK\r\n", &v, &vl, &legacy) == PS_HDR_OTHER);
	CHECK(hdr("\r\n", &v, &vl, &legacy) == PS_HDR_OTHER);

	/* Retry-After */
	CHECK(ps_retry_after_ms("3", 1, 0) == 3000);
	CHECK(ps_retry_after_ms("99999", 5, 0) == 3600000);
	CHECK(ps_retry_after_ms("x", 1, 0) == -1);
	CHECK(ps_retry_after_ms("", 0, 0) == -1);
	CHECK(ps_retry_after_ms("Thu, 01 Jan 1970 00:00:10 GMT", 29, 4) == 6000);
	CHECK(ps_retry_after_ms("Thu, 01 Jan 1970 00:00:10 GMT", 29, 100) == 0);
	/* a real date, leap years and all (1784629800 = 2026-07-21 10:30:00 UTC) */
	CHECK(ps_retry_after_ms("Tue, 21 Jul 2026 10:30:20 GMT", 29, 1784629800) == 20000);
	CHECK(ps_retry_after_ms("tue, 21 jul 2026 10:30:20 GMT", 29, 1784629800) == 20000);
	CHECK(ps_retry_after_ms("Sat, 29 Feb 2028 00:00:30 GMT", 29, 1835395200) == 30000);
	CHECK(ps_retry_after_ms("Xyz, 21 Jul 2026 10:30:20 GMT", 29, 0) == -1);
	CHECK(ps_retry_after_ms("Tue, 21 Jly 2026 10:30:20 GMT", 29, 0) == -1);
	CHECK(ps_retry_after_ms("Tue, 21 Jul 2026 24:30:20 GMT", 29, 0) == -1);
	CHECK(ps_retry_after_ms("Tue, 21 Jul 2026 10:30:20 UTC", 29, 0) == -1);
	CHECK(ps_retry_after_ms("Tue, 21 Jul 2026 10:30:2 GMT", 28, 0) == -1);

	CHECK(ps_content_type_ok("application/json; charset=utf-8", 31));
	CHECK(ps_content_type_ok("application/json", 16));
	CHECK(!ps_content_type_ok("text/html", 9));
	CHECK(!ps_content_type_ok("application/jsonx", 17));

	/* status classes */
	CHECK(ps_classify_status(200) == PS_STATUS_OK);
	CHECK(ps_classify_status(204) == PS_STATUS_EMPTY);
	CHECK(ps_classify_status(409) == PS_STATUS_REFETCH);
	CHECK(ps_classify_status(429) == PS_STATUS_RETRY);
	CHECK(ps_classify_status(503) == PS_STATUS_RETRY);
	CHECK(ps_classify_status(400) == PS_STATUS_FATAL);
	CHECK(ps_classify_status(401) == PS_STATUS_FATAL);
	CHECK(ps_classify_status(413) == PS_STATUS_FATAL);
	CHECK(ps_classify_status(304) == PS_STATUS_RETRY);

	/* full-jitter backoff */
	CHECK(ps_backoff_ms(1000, 32000, 0, 0.5, -1) == 500);
	CHECK(ps_backoff_ms(1000, 32000, 3, 0.5, -1) == 4000);
	CHECK(ps_backoff_ms(1000, 32000, 40, 0.5, -1) == 16000);
	CHECK(ps_backoff_ms(1000, 32000, 40, 0.9999999, -1) < 32000);
	CHECK(ps_backoff_ms(1000, 32000, 0, 0.0, 2000) == 2000);	/* at least Retry-After */
	CHECK(ps_backoff_ms(1000, 32000, 5, 0.9, 100) == 28800);
	CHECK(ps_backoff_ms(0, 0, 3, 0.5, -1) >= 0);

	return UNIT_DONE();
}
