/* Unit tests: validating the shape option and building its base URL. */
#include <stdlib.h>

#include "json.h"
#include "ps_alloc.h"
#include "shapeopts.h"
#include "unit.h"

static char err[256];

static int
parse(ps_shape *s, const char *json)
{
	err[0] = '\0';
	return ps_shape_parse(json, strlen(json), s, err, sizeof(err));
}

static bool
is_where(const char *name)
{
	return strcmp(name, "where") == 0;
}

/* The name ps_url_find_param finds with is_where, or "-" for none. */
static void
check_find(const char *url, const char *want)
{
	char	   *got = ps_url_find_param(url, is_where);

	CHECK_STR(got ? got : "-", want);
	ps_free(got);
}

static void
check_refused(const char *json, const char *needle)
{
	ps_shape	s;
	int			rc = parse(&s, json);

	unit_count++;
	if (rc == -1 && strstr(err, needle))
		printf("ok %d - refused: %s\n", unit_count, err);
	else
	{
		unit_failed++;
		printf("not ok %d - %s: rc %d err \"%s\", want \"%s\"\n", unit_count, json, rc, err, needle);
		if (rc == 0)
			ps_shape_free(&s);
	}
}

/* ps_idents_split gives want (up to three names) */
static void
check_split(const char *s, char sep, int want, const char *n0, const char *n1, const char *n2)
{
	const char *names_want[3] = {n0, n1, n2};
	char	  **names;
	int			n = ps_idents_split(s, sep, &names);
	bool		same = n == want;

	for (int i = 0; same && i < n; i++)
		same = strcmp(names[i], names_want[i]) == 0;
	unit_count++;
	if (same)
		printf("ok %d - split %s: %d names\n", unit_count, s, n);
	else
	{
		unit_failed++;
		printf("not ok %d - split %s: %d names, %s first, want %d\n", unit_count, s, n,
			   n > 0 ? names[0] : "none", want);
	}
	if (n > 0)
		ps_idents_free(names, n);
}

int
main(void)
{
	ps_shape	s;
	ps_strbuf	b;
	char	   *h;

	json_set_alloc_funcs(ps_malloc, ps_free);
	ps_strbuf_init(&b);

	CHECK(parse(&s, "{\"url\":\"http://localhost:3000/v1/shape\",\"params\":{\"table\":\"todo\"}}") == 0);
	CHECK_STR(s.table, "todo");
	ps_shape_base_url(&s, &b);
	CHECK_STR(b.data, "http://localhost:3000/v1/shape?table=todo");
	ps_shape_free(&s);

	CHECK(parse(&s, "{\"url\":\"https://e.example/v1/shape?source_id=abc\","
				"\"params\":{\"table\":\"public.items\",\"where\":\"id > $1 AND t = 'x y'\","
				"\"columns\":[\"id\",\"Title\",\"a\\\"b\"],\"replica\":\"full\",\"params\":{\"1\":5,\"2\":\"z\"},"
				"\"log\":\"full\",\"custom\":true},"
				"\"headers\":{\"Authorization\":\"Bearer t0k\"}}") == 0);
	ps_shape_base_url(&s, &b);
	CHECK_STR(b.data, "https://e.example/v1/shape?source_id=abc&columns=id%2C%22Title%22%2C%22a%22%22b%22"
			  "&custom=true&log=full&params%5B1%5D=5&params%5B2%5D=z&replica=full&table=public.items"
			  "&where=id%20%3E%20%241%20AND%20t%20%3D%20%27x%20y%27");
	CHECK(s.nheaders == 1);
	CHECK_STR(s.headers[0].name, "Authorization");
	CHECK_STR(s.headers[0].value, "Bearer t0k");
	ps_shape_free(&s);

	CHECK(parse(&s, "{\"url\":\"http://h/v1/shape\",\"params\":{\"table\":\"t\",\"columns\":\"id,title\",\"params\":[\"a\",\"b\"]}}") == 0);
	ps_shape_base_url(&s, &b);
	CHECK_STR(b.data, "http://h/v1/shape?columns=id%2Ctitle&params%5B1%5D=a&params%5B2%5D=b&table=t");
	ps_shape_free(&s);

	check_refused("[1]", "must be a JSON object");
	check_refused("{", "not valid JSON");
	check_refused("{\"params\":{\"table\":\"t\"}}", "\"url\" is required");
	check_refused("{\"url\":\"ftp://h/x\",\"params\":{\"table\":\"t\"}}", "scheme \"ftp\" is not supported");
	check_refused("{\"url\":\"file:///etc/passwd\",\"params\":{\"table\":\"t\"}}", "scheme \"file\"");
	check_refused("{\"url\":\"localhost:3000/v1/shape\",\"params\":{\"table\":\"t\"}}", "not an absolute");
	check_refused("{\"url\":\"http:///v1/shape\",\"params\":{\"table\":\"t\"}}", "has no host");
	check_refused("{\"url\":\"http://h /x\",\"params\":{\"table\":\"t\"}}", "spaces");
	check_refused("{\"url\":\"http://h/x#f\",\"params\":{\"table\":\"t\"}}", "fragment");
	check_refused("{\"url\":\"http://h/x?offset=3\",\"params\":{\"table\":\"t\"}}", "\"offset\" is reserved");
	/* names as the server reads them: percent-decoded, '+' as a space */
	check_refused("{\"url\":\"http://h/x?a=1&%6Fffset=3\",\"params\":{\"table\":\"t\"}}", "\"offset\" is reserved");
	check_refused("{\"url\":\"http://h/x?HANDLE=1&h%61ndle=2\",\"params\":{\"table\":\"t\"}}", "\"handle\" is reserved");
	check_find("http://h/v1/shape?wh%65re=id%3E100", "where");
	check_find("http://h/v1/shape?x=where&%77%68%65%72%65", "where");
	check_find("http://h/v1/shape?wh%2", "-");
	check_find("http://h/v1/shape?wh+ere=1&where2=1&Where=1", "-");
	check_find("http://h/v1/shape", "-");
	check_refused("{\"url\":1,\"params\":{\"table\":\"t\"}}", "non-empty string");
	check_refused("{\"url\":\"http://h/x\"}", "\"params\" is required");
	check_refused("{\"url\":\"http://h/x\",\"params\":{}}", "params.table is required");
	check_refused("{\"url\":\"http://h/x\",\"params\":{\"table\":\"\"}}", "non-empty string");
	/* names Electric could not read either: refused at subscribe, not in every upload */
	check_refused("{\"url\":\"http://h/x\",\"params\":{\"table\":\"a.b.c\"}}", "optionally schema-qualified");
	check_refused("{\"url\":\"http://h/x\",\"params\":{\"table\":\"\\\"open\"}}", "quotes paired");
	check_refused("{\"url\":\"http://h/x\",\"params\":{\"table\":\"s.\"}}", "optionally schema-qualified");
	check_refused("{\"url\":\"http://h/x\",\"params\":{\"table\":\"t\",\"columns\":\"id,,title\"}}", "separated by commas");
	check_refused("{\"url\":\"http://h/x\",\"params\":{\"table\":\"t\",\"columns\":\"id,\\\"ti\"}}", "quotes paired");
	check_refused("{\"url\":\"http://h/x\",\"params\":{\"table\":\"t\",\"offset\":\"-1\"}}", "params.offset is reserved");
	check_refused("{\"url\":\"http://h/x\",\"params\":{\"table\":\"t\",\"handle\":\"h\"}}", "params.handle is reserved");
	check_refused("{\"url\":\"http://h/x\",\"params\":{\"table\":\"t\",\"live\":true}}", "params.live is reserved");
	check_refused("{\"url\":\"http://h/x\",\"params\":{\"table\":\"t\",\"cursor\":\"1\"}}", "params.cursor is reserved");
	check_refused("{\"url\":\"http://h/x\",\"params\":{\"table\":\"t\",\"live_sse\":true}}", "params.live_sse is reserved");
	check_refused("{\"url\":\"http://h/x\",\"params\":{\"table\":\"t\",\"subset__limit\":1}}", "params.subset__limit is reserved");
	check_refused("{\"url\":\"http://h/x\",\"params\":{\"table\":\"t\",\"replica\":\"half\"}}", "replica must be");
	check_refused("{\"url\":\"http://h/x\",\"params\":{\"table\":\"t\",\"columns\":[]}}", "must not be empty");
	check_refused("{\"url\":\"http://h/x\",\"params\":{\"table\":\"t\"},\"live_sse\":1}", "\"live_sse\" must be true or false");
	check_refused("{\"url\":\"http://h/x\",\"params\":{\"table\":\"t\"},\"offset\":\"now\"}", "needs params.log = \"changes_only\"");
	check_refused("{\"url\":\"http://h/x\",\"params\":{\"table\":\"t\",\"log\":\"changes_only\"},\"offset\":\"-1\"}", "\"offset\" must be \"now\"");
	check_refused("{\"url\":\"http://h/x\",\"params\":{\"table\":\"t\",\"log\":\"some\"}}", "params.log must be");
	check_refused("{\"url\":\"http://h/x\",\"params\":{\"table\":\"t\",\"columns\":[1]}}", "columns[0]");
	check_refused("{\"url\":\"http://h/x\",\"params\":{\"table\":\"t\",\"params\":{\"x\":1}}}", "placeholder number");
	check_refused("{\"url\":\"http://h/x\",\"params\":{\"table\":\"t\",\"params\":{\"1\":null}}}", "params.params.1");
	check_refused("{\"url\":\"http://h/x\",\"params\":{\"table\":\"t\",\"other\":{}}}", "params.other must be");
	check_refused("{\"url\":\"http://h/x\",\"params\":{\"table\":\"t\"},\"headers\":[]}", "\"headers\" must be an object");
	check_refused("{\"url\":\"http://h/x\",\"params\":{\"table\":\"t\"},\"headers\":{\"a b\":\"x\"}}", "not a valid HTTP header name");
	check_refused("{\"url\":\"http://h/x\",\"params\":{\"table\":\"t\"},\"headers\":{\"a\":1}}", "string value");
	check_refused("{\"url\":\"http://h/x\",\"params\":{\"table\":\"t\"},\"headers\":{\"a\":\"x\\r\\nInjected: 1\"}}", "control characters");
	check_refused("{\"url\":\"http://h/x\",\"params\":{\"table\":\"t\"},\"signal\":1}", "unknown shape option \"signal\"");
	check_refused("{\"url\":\"http://h/x\",\"url\":\"http://h/y\",\"params\":{\"table\":\"t\"}}", "not valid JSON");

	/* live_sse, changes_only from now, replica full: flags of the shape */
	CHECK(parse(&s, "{\"url\":\"http://h/x\",\"params\":{\"table\":\"t\",\"log\":\"changes_only\",\"replica\":\"full\"},"
				"\"live_sse\":true,\"offset\":\"now\"}") == 0);
	CHECK(s.live_sse && s.changes_only && s.offset_now && s.replica_full);
	ps_shape_free(&s);
	CHECK(parse(&s, "{\"url\":\"http://h/x\",\"params\":{\"table\":\"t\"},\"live_sse\":false}") == 0);
	CHECK(!s.live_sse && !s.changes_only && !s.offset_now && !s.replica_full);
	ps_shape_free(&s);

	h = ps_url_host("http://user:pw@Example.COM:8080/x");
	CHECK_STR(h, "example.com");
	ps_free(h);
	h = ps_url_host("https://[::1]:3000/v1/shape");
	CHECK_STR(h, "::1");
	ps_free(h);
	h = ps_url_host("http://127.0.0.1/v1/shape");
	CHECK_STR(h, "127.0.0.1");
	ps_free(h);

	/* names as Electric reads params.table and params.columns */
	check_split("Public.Todo", '.', 2, "public", "todo", NULL);
	check_split("\"MixedCase\"", '.', 1, "MixedCase", NULL, NULL);
	check_split("\"My Schema\".\"a.\"\"b\"\"\"", '.', 2, "My Schema", "a.\"b\"", NULL);
	check_split("id,\"Title\",\"a,b\"", ',', 3, "id", "Title", "a,b");
	check_split("\"open", '.', -1, NULL, NULL, NULL);
	check_split("a.", '.', -1, NULL, NULL, NULL);
	check_split("\"a\"b", '.', -1, NULL, NULL, NULL);
	check_split("a\"b", '.', -1, NULL, NULL, NULL);
	check_split("", ',', -1, NULL, NULL, NULL);

	ps_strbuf_free(&b);
	return UNIT_DONE();
}
