/* Unit tests: the text/event-stream parser. */
#include <stdlib.h>

#include "sse.h"
#include "unit.h"

static char got[16][256];
static int	ngot;
static int	stop_after = -1;

static int
on_event(void *arg, const char *data, size_t len)
{
	(void) arg;
	if (ngot < 16)
		snprintf(got[ngot], sizeof(got[0]), "%.*s", (int) len, data);
	ngot++;
	return ngot == stop_after ? 7 : 0;
}

static int
feed_all(ps_sse *s, const char *text, size_t piece)
{
	size_t		len = strlen(text);
	int			rc = 0;

	for (size_t i = 0; i < len && rc == 0; i += piece)
	{
		size_t		n = len - i < piece ? len - i : piece;

		rc = ps_sse_feed(s, text + i, n, on_event, NULL, NULL);
	}
	return rc;
}

int
main(void)
{
	ps_sse		s;
	const char *stream = ": keep-alive\n\ndata: {\"a\":1}\n\n: keep-alive\n"
		"data:{\"b\":2}\r\n\r\ndata: x\ndata: y\n\nid: 7\nevent: m\ndata: z\r\rdata: partial";
	size_t		consumed;

	/* the same events whatever the piece size, byte by byte included */
	for (size_t piece = 1; piece <= strlen(stream); piece += (piece < 8 ? 1 : 13))
	{
		ngot = 0;
		ps_sse_init(&s, 0);
		CHECK(feed_all(&s, stream, piece) == 0);
		CHECK(ngot == 4);
		CHECK_STR(got[0], "{\"a\":1}");
		CHECK_STR(got[1], "{\"b\":2}");
		CHECK_STR(got[2], "x\ny");
		CHECK_STR(got[3], "z");
		CHECK(s.ncomments == 2);
		CHECK(ps_sse_partial(&s));		/* "data: partial" was never ended */
		ps_sse_free(&s);
	}

	/* a callback stops the feed right after its event: the rest is left */
	ngot = 0;
	stop_after = 1;
	ps_sse_init(&s, 0);
	CHECK(ps_sse_feed(&s, "data: 1\n\ndata: 2\n\n", 18, on_event, NULL, &consumed) == 7);
	CHECK(consumed == 9);
	stop_after = -1;
	CHECK(ps_sse_feed(&s, "data: 1\n\ndata: 2\n\n" + consumed, 18 - consumed, on_event, NULL, &consumed) == 0);
	CHECK(ngot == 2);
	CHECK_STR(got[1], "2");
	CHECK(!ps_sse_partial(&s));
	ps_sse_free(&s);

	/* an empty data line is an event with empty data; no data, no event */
	ngot = 0;
	ps_sse_init(&s, 0);
	CHECK(feed_all(&s, "data\n\n\n\nevent: only\n\n", 100) == 0);
	CHECK(ngot == 1);
	CHECK_STR(got[0], "");
	ps_sse_free(&s);

	/* the size limit */
	ps_sse_init(&s, 10);
	CHECK(feed_all(&s, "data: 0123456789abcdef\n\n", 4) == -1);
	CHECK(strstr(s.error, "larger than 10") != NULL);
	ps_sse_free(&s);

	return UNIT_DONE();
}
