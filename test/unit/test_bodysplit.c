/* Unit tests: splitting a response body into messages. */
#include <stdlib.h>

#include "bodysplit.h"
#include "message.h"
#include "unit.h"

typedef struct collected
{
	int			n;
	char		msgs[16][256];
} collected;

static int
collect(void *arg, const char *json, size_t len)
{
	collected  *c = arg;

	if (c->n < 16 && len < 256)
	{
		memcpy(c->msgs[c->n], json, len);
		c->msgs[c->n][len] = '\0';
	}
	c->n++;
	return 0;
}

/* feed the body in pieces of the given size */
static int
split(const char *body, size_t piece, collected *c, ps_bodysplit *s)
{
	size_t		len = strlen(body);
	int			rc = 0;

	memset(c, 0, sizeof(*c));
	ps_bodysplit_init(s, 0);
	for (size_t i = 0; i < len && rc == 0; i += piece)
		rc = ps_bodysplit_feed(s, body + i, (len - i < piece) ? len - i : piece, collect, c);
	if (rc == 0)
		rc = ps_bodysplit_finish(s);
	return rc;
}

/* the parsing variant: messages measured by the parser, as the worker does */
static ps_message pm;

static int
collect_parsing(void *arg, const char *data, size_t len, bool exact, size_t *used)
{
	int			rc = exact ? ps_message_parse(&pm, data, len) :
		ps_message_parse_prefix(&pm, data, len, used);

	if (rc < 0)
		return exact ? 9 : PS_SPLIT_UNSURE;
	return collect(arg, data, exact ? len : *used);
}

static int
split_parsing(const char *body, size_t piece, collected *c, ps_bodysplit *s)
{
	size_t		len = strlen(body);
	int			rc = 0;

	memset(c, 0, sizeof(*c));
	ps_bodysplit_init(s, 0);
	for (size_t i = 0; i < len && rc == 0; i += piece)
		rc = ps_bodysplit_feed_parsing(s, body + i, (len - i < piece) ? len - i : piece,
									   collect_parsing, c);
	if (rc == 0)
		rc = ps_bodysplit_finish(s);
	return rc;
}

static int
stop_after_one(void *arg, const char *json, size_t len)
{
	(void) arg;
	(void) json;
	(void) len;
	return 7;
}

int
main(void)
{
	collected	c;
	ps_bodysplit s;
	const char *body = " [ {\"key\":\"a\\\"}]\",\"value\":{\"x\":\"[{\"}} ,\n"
		"{\"headers\":{\"control\":\"up-to-date\"}} ] \n";

	/* every piece size gives the same two messages */
	for (size_t piece = 1; piece <= strlen(body); piece++)
	{
		int			rc = split(body, piece, &c, &s);

		if (rc != 0 || c.n != 2 ||
			strcmp(c.msgs[0], "{\"key\":\"a\\\"}]\",\"value\":{\"x\":\"[{\"}}") != 0 ||
			strcmp(c.msgs[1], "{\"headers\":{\"control\":\"up-to-date\"}}") != 0)
		{
			printf("# piece %zu: rc %d n %d '%s'\n", piece, rc, c.n, c.msgs[0]);
			CHECK(!"split independent of piece size");
			break;
		}
		ps_bodysplit_free(&s);
	}
	CHECK(c.n == 2);

	/* the parsing variant gives the same messages for every piece size */
	ps_message_init(&pm);
	for (size_t piece = 1; piece <= strlen(body); piece++)
	{
		collected	c2;
		int			rc = split_parsing(body, piece, &c2, &s);

		if (rc != 0 || c2.n != 2 || strcmp(c2.msgs[0], "{\"key\":\"a\\\"}]\",\"value\":{\"x\":\"[{\"}}") != 0 ||
			strcmp(c2.msgs[1], "{\"headers\":{\"control\":\"up-to-date\"}}") != 0)
		{
			printf("# parsing, piece %zu: rc %d n %d\n", piece, rc, c2.n);
			CHECK(!"parsing split independent of piece size");
			break;
		}
		ps_bodysplit_free(&s);
	}
	CHECK(split_parsing("[{\"a\":1},{\"b\":[true,null]} , {\"c\":\"\\u00e9\"}]", 5, &c, &s) == 0 && c.n == 3);
	ps_bodysplit_free(&s);
	CHECK(split_parsing("[{\"a\":tru}]", 64, &c, &s) == 9);		/* malformed: the exact parse decides */
	ps_bodysplit_free(&s);
	CHECK(split_parsing("[{\"a\":1}", 64, &c, &s) == -1 && c.n == 1);	/* truncated */
	ps_bodysplit_free(&s);
	ps_message_free(&pm);

	CHECK(split("[]", 1, &c, &s) == 0 && c.n == 0);
	ps_bodysplit_free(&s);
	CHECK(split("", 1, &c, &s) == 0 && c.n == 0);	/* empty body = [] */
	ps_bodysplit_free(&s);
	CHECK(split("  \n", 1, &c, &s) == 0 && c.n == 0);
	ps_bodysplit_free(&s);

	/* truncation anywhere is an error */
	CHECK(split("[{\"a\":1}", 3, &c, &s) == -1 && c.n == 1);
	ps_bodysplit_free(&s);
	CHECK(split("[{\"a\":\"x", 3, &c, &s) == -1);
	ps_bodysplit_free(&s);
	CHECK(split("[", 3, &c, &s) == -1);
	ps_bodysplit_free(&s);

	/* structural errors */
	CHECK(split("{\"a\":1}", 3, &c, &s) == -1);
	CHECK(strstr(s.error, "not a JSON array") != NULL);
	ps_bodysplit_free(&s);
	CHECK(split("[1,2]", 3, &c, &s) == -1);
	ps_bodysplit_free(&s);
	CHECK(split("[{},]", 3, &c, &s) == -1);
	ps_bodysplit_free(&s);
	CHECK(split("[{}] x", 3, &c, &s) == -1);
	CHECK(strstr(s.error, "after the end") != NULL);
	ps_bodysplit_free(&s);
	CHECK(split("[{}{}]", 3, &c, &s) == -1);
	ps_bodysplit_free(&s);

	/* message size limit */
	ps_bodysplit_init(&s, 10);
	CHECK(ps_bodysplit_feed(&s, "[{\"a\":\"0123456789\"}]", 20, collect, &c) == -1);
	CHECK(strstr(s.error, "maximum message size") != NULL);
	ps_bodysplit_free(&s);
	ps_bodysplit_init(&s, 10);
	CHECK(ps_bodysplit_feed(&s, "[{\"a\":\"01", 9, collect, &c) == 0);
	CHECK(ps_bodysplit_feed(&s, "23456789\"}]", 11, collect, &c) == -1);
	ps_bodysplit_free(&s);

	/* a callback can stop the split */
	ps_bodysplit_init(&s, 0);
	CHECK(ps_bodysplit_feed(&s, "[{},{}]", 7, stop_after_one, NULL) == 7);
	ps_bodysplit_free(&s);

	return UNIT_DONE();
}
