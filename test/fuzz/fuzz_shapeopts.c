/*
 * fuzz_shapeopts.c
 *	  libFuzzer target: ps_shape_parse, ps_shape_base_url and ps_url_host on
 *	  arbitrary JSON text (the "shape" option of sync_shape_to_table).
 *
 * Input: the JSON text, as is.  Checks:
 *  - on failure: a non-empty, terminated error (written into a heap buffer of
 *    exactly errlen bytes, errlen varying with the input) and a zeroed shape;
 *  - on success: the url is the JSON's url, http(s)://, no blanks, controls
 *    or fragment, and its host (ps_url_host) is non-empty and lowercase;
 *    no query parameter of the url itself is one the protocol sends (also
 *    when percent-encoded);
 *  - table is params.table, non-empty, without NUL;
 *  - params are sorted by name, each name once, none a parameter the
 *    protocol sends itself (offset, handle, live, cursor, cache-buster,
 *    live_sse, experimental_live_sse, subset__*), and there is one per
 *    scalar key of params (columns included) plus one per placeholder;
 *  - header names are HTTP tokens and values have no control characters;
 *  - ps_shape_base_url equals a reference builder (url, then '?'/'&' and
 *    the percent-encoded name=value pairs in order), into a dirty buffer;
 *  - ps_url_host on the raw input never crashes and returns a substring;
 *  - no leaks (LeakSanitizer), no overflows (ASan), no UB (UBSan).
 */
#include <stdint.h>

#include "fuzz_common.h"
#include "json.h"
#include "protocol.h"
#include "ps_alloc.h"
#include "shapeopts.h"
#include "strbuf.h"

static bool
protocol_param(const char *name, size_t n)
{
	static const char *const names[] = {
		"offset", "handle", "live", "cursor", "cache-buster", "live_sse", "experimental_live_sse", NULL
	};

	for (int i = 0; names[i]; i++)
		if (strlen(names[i]) == n && memcmp(name, names[i], n) == 0)
			return true;
	return n >= 8 && memcmp(name, "subset__", 8) == 0;
}

static int
hexv(char c)
{
	return (c >= '0' && c <= '9') ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10 :
		(c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

/* Percent-decode [p, e) into out (at most outsz-1 bytes); returns length. */
static size_t
pct_decode(const char *p, const char *e, char *out, size_t outsz)
{
	size_t		n = 0;

	while (p < e && n + 1 < outsz)
	{
		if (*p == '%' && e - p >= 3 && hexv(p[1]) >= 0 && hexv(p[2]) >= 0)
		{
			out[n++] = (char) (hexv(p[1]) * 16 + hexv(p[2]));
			p += 3;
		}
		else
			out[n++] = *p++;
	}
	out[n] = '\0';
	return n;
}

static bool
is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		(c && strchr("!#$%&'*+-.^_`|~", c));
}

static void
check_url(const char *url, const char *json_url, size_t json_url_len)
{
	const char *sep = strstr(url, "://");
	const char *q;
	char	   *host;

	FUZZ_CHECK(strlen(url) == json_url_len && memcmp(url, json_url, json_url_len) == 0,
			   "url \"%s\" is not the JSON's", url);
	FUZZ_CHECK(sep && (fuzz_ieq(url, sep - url, "http") || fuzz_ieq(url, sep - url, "https")),
			   "url \"%s\" is not http(s)", url);
	for (const char *p = url; *p; p++)
		FUZZ_CHECK((unsigned char) *p > 0x20 && *p != 0x7f && *p != '#', "url has 0x%02x", (unsigned char) *p);

	host = ps_url_host(url);
	FUZZ_CHECK(host && host[0], "accepted url \"%s\" has no host", url);
	for (const char *p = host; *p; p++)
		FUZZ_CHECK(!(*p >= 'A' && *p <= 'Z'), "host \"%s\" not lowercase", host);
	ps_free(host);

	/* the url's own query may not carry protocol parameters */
	q = strchr(sep + 3, '?');
	while (q)
	{
		const char *name = q + 1;
		const char *e = name + strcspn(name, "=&");
		char		dec[256];
		size_t		n = pct_decode(name, e, dec, sizeof(dec));

#ifdef FUZZ_SKIP_KNOWN
		/* finding 5: encoded names and names of 64+ bytes are not checked */
		if (n != (size_t) (e - name) || e - name >= 64)
			n = 0;
		/* finding 6: cache-buster is not reserved */
		if (n == 12 && memcmp(dec, "cache-buster", 12) == 0)
			n = 0;
#endif
		FUZZ_CHECK(!protocol_param(dec, n), "url \"%s\" sets the protocol parameter \"%s\"", url, dec);
		q = strchr(name, '&');
	}
}

/* The scalar text of a jansson value, as shapeopts renders it. */
static bool
scalar_is(json_t *v, const char *text)
{
	char		buf[64];

	switch (json_typeof(v))
	{
		case JSON_STRING:
			return strlen(text) == json_string_length(v) && strcmp(text, json_string_value(v)) == 0;
		case JSON_INTEGER:
			snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
			return strcmp(buf, text) == 0;
		case JSON_REAL:
			snprintf(buf, sizeof(buf), "%.17g", json_real_value(v));
			return strcmp(buf, text) == 0;
		case JSON_TRUE:
			return strcmp(text, "true") == 0;
		case JSON_FALSE:
			return strcmp(text, "false") == 0;
		default:
			return false;
	}
}

static const ps_kv *
find_kv(const ps_shape *s, const char *name)
{
	for (int i = 0; i < s->nparams; i++)
		if (strcmp(s->params[i].name, name) == 0)
			return &s->params[i];
	return NULL;
}

static void
check_shape(const ps_shape *s, const uint8_t *data, size_t size)
{
	json_t	   *root = json_loadb((const char *) data, size, JSON_REJECT_DUPLICATES, NULL);
	json_t	   *ju;
	json_t	   *jp;
	json_t	   *jt;
	const char *k;
	json_t	   *v;
	size_t		expect = 0;
	ps_strbuf	b;
	ps_strbuf	want;

	FUZZ_CHECK(root && json_is_object(root), "accepted a shape jansson does not read as an object");
	ju = json_object_get(root, "url");
	jp = json_object_get(root, "params");
	FUZZ_CHECK(ju && json_is_string(ju) && s->url, "no url");
	check_url(s->url, json_string_value(ju), json_string_length(ju));

	jt = json_object_get(jp, "table");
	FUZZ_CHECK(s->table && s->table[0] && jt && json_is_string(jt), "no table");
	FUZZ_CHECK(strlen(s->table) == json_string_length(jt) && strcmp(s->table, json_string_value(jt)) == 0,
			   "table \"%s\" is not params.table", s->table);
	FUZZ_CHECK(find_kv(s, "table") && strcmp(find_kv(s, "table")->value, s->table) == 0, "no table parameter");

	/* parameters: sorted, unique, not the protocol's */
	FUZZ_CHECK(s->nparams >= 1 && s->params, "no parameters");
	for (int i = 0; i < s->nparams; i++)
	{
		FUZZ_CHECK(s->params[i].name && s->params[i].value, "parameter %d incomplete", i);
#ifndef FUZZ_SKIP_KNOWN
		FUZZ_CHECK(!protocol_param(s->params[i].name, strlen(s->params[i].name)),
				   "parameter \"%s\" is the protocol's", s->params[i].name);
		if (i > 0)
			FUZZ_CHECK(strcmp(s->params[i - 1].name, s->params[i].name) < 0,
					   "parameters not sorted/unique: \"%s\" then \"%s\"", s->params[i - 1].name, s->params[i].name);
#else
		/* finding 6: cache-buster is not reserved */
		if (strcmp(s->params[i].name, "cache-buster") != 0)
			FUZZ_CHECK(!protocol_param(s->params[i].name, strlen(s->params[i].name)),
					   "parameter \"%s\" is the protocol's", s->params[i].name);
		/* finding 7: "params[n]" can come from params.params and from params */
		if (i > 0)
			FUZZ_CHECK(strcmp(s->params[i - 1].name, s->params[i].name) < 0 ||
					   (strcmp(s->params[i - 1].name, s->params[i].name) == 0 &&
						strncmp(s->params[i].name, "params[", 7) == 0),
					   "parameters not sorted/unique: \"%s\" then \"%s\"", s->params[i - 1].name, s->params[i].name);
#endif
	}

	/* one parameter per key of params, one per placeholder */
	json_object_foreach(jp, k, v)
	{
		if (strcmp(k, "params") == 0)
			expect += json_is_array(v) ? json_array_size(v) : json_object_size(v);
		else
		{
			const ps_kv *kv = find_kv(s, k);

			expect++;
			FUZZ_CHECK(kv != NULL, "params.%s missing", k);
			if (strcmp(k, "columns") != 0 && json_object_getn(jp, k, strlen(k)) == v)
				FUZZ_CHECK(scalar_is(v, kv->value), "params.%s = \"%s\" differs from the JSON", k, kv->value);
		}
	}
	FUZZ_CHECK((size_t) s->nparams == expect, "%d parameters, expected %zu", s->nparams, expect);

	for (int i = 0; i < s->nheaders; i++)
	{
		const char *n = s->headers[i].name;

		FUZZ_CHECK(n[0], "empty header name");
		for (const char *p = n; *p; p++)
			FUZZ_CHECK(is_tchar((unsigned char) *p), "header name \"%s\" is not a token", n);
		for (const char *p = s->headers[i].value; *p; p++)
			FUZZ_CHECK((unsigned char) *p >= 0x20 && *p != 0x7f, "header %s has control 0x%02x", n, *p);
	}

	/* the base URL */
	ps_strbuf_init(&b);
	ps_strbuf_puts(&b, "dirty?x=y");
	ps_shape_base_url(s, &b);
	ps_strbuf_init(&want);
	ps_strbuf_puts(&want, s->url);
	for (int i = 0; i < s->nparams; i++)
	{
		if (memchr(want.data, '?', want.len) == NULL)
			ps_strbuf_putc(&want, '?');
		else if (want.data[want.len - 1] != '?' && want.data[want.len - 1] != '&')
			ps_strbuf_putc(&want, '&');
		fuzz_ref_encode(&want, s->params[i].name);
		ps_strbuf_putc(&want, '=');
		fuzz_ref_encode(&want, s->params[i].value);
	}
	FUZZ_CHECK(b.len == want.len && strcmp(b.data, want.data) == 0, "base URL\n  got  %s\n  want %s", b.data, want.data);
	ps_strbuf_free(&b);
	ps_strbuf_free(&want);
	json_decref(root);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void) argc;
	(void) argv;
	json_set_alloc_funcs(ps_malloc, ps_free);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ps_shape	s;
	size_t		errlen = 1 + size % 211;
	char	   *err = malloc(errlen);
	int			rc;
	char	   *raw;
	char	   *host;

	memset(err, 'x', errlen);
	memset(&s, 0x5a, sizeof(s));
	rc = ps_shape_parse((const char *) data, size, &s, err, errlen);
	FUZZ_CHECK(rc == 0 || rc == -1, "rc %d", rc);
	if (rc == 0)
	{
		check_shape(&s, data, size);
		ps_shape_free(&s);
	}
	else
	{
		FUZZ_CHECK(memchr(err, '\0', errlen) != NULL, "error not terminated");
		FUZZ_CHECK(errlen == 1 || err[0] != '\0', "failure without an error message");
		FUZZ_CHECK(s.url == NULL && s.table == NULL && s.params == NULL && s.nparams == 0 &&
				   s.headers == NULL && s.nheaders == 0, "a failed parse left a shape behind");
	}
	FUZZ_CHECK(s.url == NULL && s.params == NULL && s.nparams == 0, "ps_shape_free left data");
	free(err);

	/* ps_url_host on anything */
	raw = fuzz_cstr(data, size);
	host = ps_url_host(raw);
	if (host)
	{
		char	   *low = strdup(raw);

		for (char *p = low; *p; p++)
			*p = fuzz_lower(*p);
		FUZZ_CHECK(strstr(low, host) != NULL, "host \"%s\" not in the url", host);
		free(low);
		ps_free(host);
	}
	free(raw);
	return 0;
}
