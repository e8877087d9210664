/*
 * shapeopts.c
 *	  Validation of the "shape" option and the base request URL (pure C).
 *
 * The shape is the JSON form of the seed plugin's ShapeStream options:
 * {"url": …, "params": {"table": …, "where": …, "columns": …, "replica": …,
 * "log": …, "params": {"1": …}, …}, "headers": {…}, "live_sse": bool,
 * "offset": "now"}.  Parameters the protocol owns
 * (offset, handle, live, cursor, live_sse, subset__*) are refused, as are
 * unknown top-level keys, so that nothing a user wrote is silently ignored.
 */
#include "shapeopts.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "protocol.h"
#include "scan.h"
#include "ps_alloc.h"

static int
fail(char *err, size_t errlen, const char *fmt,...)
	__attribute__((format(printf, 3, 4)));

static int
fail(char *err, size_t errlen, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

bool
ps_param_reserved(const char *name)
{
	static const char *const reserved[] = {
		"offset", "handle", "live", "cursor", "live_sse",
		"experimental_live_sse", "cache-buster", NULL
	};

	for (int i = 0; reserved[i]; i++)
		if (strcmp(name, reserved[i]) == 0)
			return true;
	return strncmp(name, "subset__", 8) == 0;
}

static void
add_kv(ps_kv **arr, int *n, const char *name, const char *value)
{
	*arr = ps_realloc(*arr, sizeof(ps_kv) * (*n + 1));
	(*arr)[*n].name = ps_strdup(name);
	(*arr)[*n].value = ps_strdup(value);
	(*n)++;
}

static int
cmp_kv(const void *a, const void *b)
{
	return strcmp(((const ps_kv *) a)->name, ((const ps_kv *) b)->name);
}

/* A scalar parameter value as text; NULL for objects, arrays and null. */
static char *
scalar_text(json_t *v)
{
	char		buf[64];

	switch (json_typeof(v))
	{
		case JSON_STRING:
			return ps_strndup(json_string_value(v), json_string_length(v));
		case JSON_INTEGER:
			snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
			return ps_strdup(buf);
		case JSON_REAL:
			snprintf(buf, sizeof(buf), "%.17g", json_real_value(v));
			return ps_strdup(buf);
		case JSON_TRUE:
			return ps_strdup("true");
		case JSON_FALSE:
			return ps_strdup("false");
		default:
			return NULL;
	}
}

static bool
has_ctl(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char) s[i] < 0x20 || s[i] == 0x7f)
			return true;
	return false;
}

/* Append a column name, quoted unless it is a plain lowercase identifier. */
static void
append_column(ps_strbuf *b, const char *name)
{
	bool		plain = (name[0] == '_' || (name[0] >= 'a' && name[0] <= 'z'));

	for (const char *p = name; *p && plain; p++)
		plain = (*p == '_' || *p == '$' || (*p >= 'a' && *p <= 'z') ||
				 (*p >= '0' && *p <= '9'));
	if (plain)
	{
		ps_strbuf_puts(b, name);
		return;
	}
	ps_strbuf_putc(b, '"');
	for (const char *p = name; *p; p++)
	{
		if (*p == '"')
			ps_strbuf_putc(b, '"');
		ps_strbuf_putc(b, *p);
	}
	ps_strbuf_putc(b, '"');
}

/*
 * The first query parameter of url whose name passes match(), the name
 * decoded as the server reads it (percent-escapes, '+' as a space), so that
 * "wh%65re" is "where"; NULL if none.  The caller frees the name.
 */
char *
ps_url_find_param(const char *url, bool (*match) (const char *name))
{
	const char *q = strchr(url, '?');

	while (q)
	{
		const char *name = q + 1;
		size_t		nlen = strcspn(name, "=&#");
		char	   *buf = ps_malloc(nlen + 1);
		size_t		n = 0;
		int			hi,
					lo;

		for (size_t i = 0; i < nlen; i++)
		{
			if (name[i] == '%' && i + 2 < nlen &&
				(hi = ps_hex_digit(name[i + 1])) >= 0 && (lo = ps_hex_digit(name[i + 2])) >= 0)
			{
				buf[n++] = (char) (hi * 16 + lo);
				i += 2;
			}
			else
				buf[n++] = name[i] == '+' ? ' ' : name[i];
		}
		buf[n] = '\0';
		if (nlen > 0 && match(buf))
			return buf;
		ps_free(buf);
		q = name[nlen] == '#' ? NULL : strchr(name, '&');
	}
	return NULL;
}

int
ps_idents_split(const char *s, char sep, char ***names)
{
	char	  **out = NULL;
	int			n = 0;
	const char *p = s;
	ps_strbuf	b;

	for (;;)
	{
		ps_strbuf_init(&b);
		if (*p == '"')
		{
			for (p++;; p++)
			{
				if (*p == '\0')
					goto bad;
				if (*p == '"' && p[1] != '"')
					break;
				if (*p == '"')
					p++;
				ps_strbuf_putc(&b, *p);
			}
			p++;
		}
		else
			for (; *p && *p != sep; p++)
			{
				if (*p == '"')
					goto bad;
				ps_strbuf_putc(&b, (*p >= 'A' && *p <= 'Z') ? *p + ('a' - 'A') : *p);
			}
		if (b.len == 0)
			goto bad;
		out = ps_realloc(out, sizeof(char *) * (n + 1));
		out[n++] = b.data;
		if (*p == '\0')
			break;
		if (*p != sep)
		{
			b.data = NULL;
			goto bad;
		}
		p++;
	}
	*names = out;
	return n;

bad:
	ps_strbuf_free(&b);
	ps_idents_free(out, n);
	*names = NULL;
	return -1;
}

void
ps_idents_free(char **names, int n)
{
	for (int i = 0; i < n; i++)
		ps_free(names[i]);
	ps_free(names);
}

#ifndef Min
#define Min(a, b) ((a) < (b) ? (a) : (b))
#endif

static int
check_url(const char *url, size_t len, char *err, size_t errlen)
{
	const char *sep = strstr(url, "://");
	const char *auth;
	const char *auth_end;
	char	   *reserved;

	if (has_ctl(url, len) || strchr(url, ' '))
		return fail(err, errlen, "url must not contain spaces or control characters");
	if (sep == NULL)
		return fail(err, errlen, "url \"%s\" is not an absolute http or https URL", url);
	if (!((sep - url == 4 && strncasecmp(url, "http", 4) == 0) ||
		  (sep - url == 5 && strncasecmp(url, "https", 5) == 0)))
		return fail(err, errlen, "url scheme \"%.*s\" is not supported: use http or https",
					(int) (sep - url), url);
	auth = sep + 3;
	auth_end = auth + strcspn(auth, "/?#");
	if (auth_end == auth)
		return fail(err, errlen, "url \"%s\" has no host", url);
	if (strchr(url, '#'))
		return fail(err, errlen, "url must not contain a fragment (#)");

	/* the URL's own query may not set protocol parameters either */
	reserved = ps_url_find_param(auth_end, ps_param_reserved);
	if (reserved)
	{
		int			rc = fail(err, errlen,
						  "url query parameter \"%.80s\" is reserved for the sync protocol",
						  reserved);

		ps_free(reserved);
		return rc;
	}
	{
		char	   *host = ps_url_host(url);
		bool		empty = (host == NULL || host[0] == '\0');

		ps_free(host);
		if (empty)
			return fail(err, errlen, "url \"%s\" has no host", url);
	}
	return 0;
}

char *
ps_url_host(const char *url)
{
	const char *sep = strstr(url, "://");
	const char *auth;
	const char *auth_end;
	const char *at;
	const char *h;
	const char *he;
	char	   *out;

	if (sep == NULL)
		return NULL;
	auth = sep + 3;
	auth_end = auth + strcspn(auth, "/?#");
	at = NULL;
	for (const char *p = auth; p < auth_end; p++)
		if (*p == '@')
			at = p;
	h = at ? at + 1 : auth;
	if (h < auth_end && *h == '[')
	{
		h++;
		he = memchr(h, ']', auth_end - h);
		if (he == NULL)
			return NULL;
	}
	else
	{
		he = memchr(h, ':', auth_end - h);
		if (he == NULL)
			he = auth_end;
	}
	out = ps_strndup(h, he - h);
	for (char *p = out; *p; p++)
		*p = (char) tolower((unsigned char) *p);
	return out;
}

static int
parse_placeholders(json_t *v, ps_shape *out, char *err, size_t errlen)
{
	char		name[48];

	if (json_is_array(v))
	{
		size_t		i;
		json_t	   *e;

		json_array_foreach(v, i, e)
		{
			char	   *t = scalar_text(e);

			if (t == NULL)
				return fail(err, errlen, "params.params[%zu] must be a string, number or boolean", i);
			snprintf(name, sizeof(name), "params[%zu]", i + 1);
			add_kv(&out->params, &out->nparams, name, t);
			ps_free(t);
		}
		return 0;
	}
	if (json_is_object(v))
	{
		const char *k;
		json_t	   *e;

		json_object_foreach(v, k, e)
		{
			char	   *end;
			long		n = strtol(k, &end, 10);
			char	   *t;

			if (k[0] < '1' || k[0] > '9' || *end != '\0' || n > 100000)
				return fail(err, errlen,
							"params.params key \"%s\" is not a placeholder number ($1 is \"1\")", k);
			t = scalar_text(e);
			if (t == NULL)
				return fail(err, errlen, "params.params.%s must be a string, number or boolean", k);
			snprintf(name, sizeof(name), "params[%ld]", n);
			add_kv(&out->params, &out->nparams, name, t);
			ps_free(t);
		}
		return 0;
	}
	return fail(err, errlen, "params.params must be an object such as {\"1\": \"value\"} or an array");
}

/* s splits into names at sep as Electric reads them; at most max (0: any) */
static bool
idents_ok(const char *s, char sep, int max)
{
	char	  **names;
	int			n = ps_idents_split(s, sep, &names);

	if (n < 0)
		return false;
	ps_idents_free(names, n);
	return max == 0 || n <= max;
}

static int
parse_params(json_t *params, ps_shape *out, char *err, size_t errlen)
{
	const char *k;
	json_t	   *v;
	json_t	   *table;

	if (!json_is_object(params))
		return fail(err, errlen, "shape option \"params\" must be an object");
	table = json_object_get(params, "table");
	if (table == NULL)
		return fail(err, errlen, "params.table is required");
	if (!json_is_string(table) || json_string_length(table) == 0)
		return fail(err, errlen, "params.table must be a non-empty string");
	if (!idents_ok(json_string_value(table), '.', 2))
		return fail(err, errlen,
					"params.table must be a table name, optionally schema-qualified, with any quotes paired (\"Schema\".\"Table\")");

	json_object_foreach(params, k, v)
	{
		if (ps_param_reserved(k))
			return fail(err, errlen,
						"params.%s is reserved for the sync protocol and cannot be set", k);
		if (strncmp(k, "params[", 7) == 0)
			return fail(err, errlen,
						"params.%s: give placeholder values in params.params", k);
		if (strcmp(k, "params") == 0)
		{
			if (parse_placeholders(v, out, err, errlen) < 0)
				return -1;
		}
		else if (strcmp(k, "columns") == 0)
		{
			ps_strbuf	b;

			ps_strbuf_init(&b);
			if (json_is_array(v))
			{
				size_t		i;
				json_t	   *e;

				if (json_array_size(v) == 0)
					return fail(err, errlen, "params.columns must not be empty");
				json_array_foreach(v, i, e)
				{
					if (!json_is_string(e) || json_string_length(e) == 0 ||
						strlen(json_string_value(e)) != json_string_length(e))
					{
						ps_strbuf_free(&b);
						return fail(err, errlen, "params.columns[%zu] must be a non-empty string", i);
					}
					if (i > 0)
						ps_strbuf_putc(&b, ',');
					append_column(&b, json_string_value(e));
				}
			}
			else if (json_is_string(v) && json_string_length(v) > 0)
				ps_strbuf_puts(&b, json_string_value(v));
			else
				return fail(err, errlen, "params.columns must be an array of column names or a comma-separated string");
			if (!idents_ok(b.data, ',', 0))
			{
				ps_strbuf_free(&b);
				return fail(err, errlen,
							"params.columns must name columns separated by commas, with any quotes paired");
			}
			add_kv(&out->params, &out->nparams, "columns", b.data);
			ps_strbuf_free(&b);
		}
		else
		{
			char	   *t = scalar_text(v);

			if (t == NULL)
				return fail(err, errlen, "params.%s must be a string, number or boolean", k);
			if (strlen(t) != (json_is_string(v) ? json_string_length(v) : strlen(t)))
			{
				ps_free(t);
				return fail(err, errlen, "params.%s must not contain NUL characters", k);
			}
			if (strcmp(k, "table") == 0)
				out->table = ps_strdup(t);
			else if (strcmp(k, "replica") == 0 &&
					 strcmp(t, "default") != 0 && strcmp(t, "full") != 0)
			{
				ps_free(t);
				return fail(err, errlen, "params.replica must be \"default\" or \"full\"");
			}
			else if (strcmp(k, "log") == 0 && strcmp(t, "full") != 0 &&
					 strcmp(t, "changes_only") != 0)
			{
				ps_free(t);
				return fail(err, errlen, "params.log must be \"full\" or \"changes_only\"");
			}
			if (strcmp(k, "log") == 0)
				out->changes_only = strcmp(t, "changes_only") == 0;
			if (strcmp(k, "replica") == 0)
				out->replica_full = strcmp(t, "full") == 0;
			add_kv(&out->params, &out->nparams, k, t);
			ps_free(t);
		}
	}
	qsort(out->params, out->nparams, sizeof(ps_kv), cmp_kv);
	for (int i = 1; i < out->nparams; i++)
		if (strcmp(out->params[i - 1].name, out->params[i].name) == 0)
			return fail(err, errlen, "query parameter \"%s\" is given twice", out->params[i].name);
	return 0;
}

bool
ps_header_name_ok(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!(isalnum((unsigned char) *s) || strchr("!#$%&'*+-.^_`|~", *s)))
			return false;
	return true;
}

bool
ps_header_value_ok(const char *s)
{
	return !has_ctl(s, strlen(s));
}

static int
parse_headers(json_t *h, ps_shape *out, char *err, size_t errlen)
{
	const char *k;
	json_t	   *v;

	if (!json_is_object(h))
		return fail(err, errlen, "shape option \"headers\" must be an object of header names and string values");
	json_object_foreach(h, k, v)
	{
		if (!ps_header_name_ok(k))
			return fail(err, errlen, "header name \"%s\" is not a valid HTTP header name", k);
		if (!json_is_string(v))
			return fail(err, errlen, "header \"%s\" must have a string value", k);
		if (has_ctl(json_string_value(v), json_string_length(v)) ||
			strlen(json_string_value(v)) != json_string_length(v))
			return fail(err, errlen, "header \"%s\" must not contain control characters", k);
		add_kv(&out->headers, &out->nheaders, k, json_string_value(v));
	}
	return 0;
}

int
ps_shape_parse(const char *json, size_t len, ps_shape *out, char *err, size_t errlen)
{
	json_t	   *root;
	json_error_t jerr;
	const char *k;
	json_t	   *v;
	int			rc = 0;

	memset(out, 0, sizeof(*out));
	root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
		return fail(err, errlen, "shape is not valid JSON: %s", jerr.text);
	if (!json_is_object(root))
	{
		json_decref(root);
		return fail(err, errlen, "shape must be a JSON object with \"url\" and \"params\"");
	}

	json_object_foreach(root, k, v)
	{
		if (strcmp(k, "url") != 0 && strcmp(k, "params") != 0 &&
			strcmp(k, "headers") != 0 && strcmp(k, "live_sse") != 0 &&
			strcmp(k, "offset") != 0)
		{
			rc = fail(err, errlen, "unknown shape option \"%s\" (expected \"url\", \"params\", \"headers\", \"live_sse\" and \"offset\")", k);
			goto done;
		}
	}

	v = json_object_get(root, "live_sse");
	if (v != NULL && !json_is_boolean(v))
	{
		rc = fail(err, errlen, "shape option \"live_sse\" must be true or false");
		goto done;
	}
	out->live_sse = v != NULL && json_is_true(v);

	v = json_object_get(root, "url");
	if (v == NULL)
	{
		rc = fail(err, errlen, "shape option \"url\" is required");
		goto done;
	}
	if (!json_is_string(v) || json_string_length(v) == 0)
	{
		rc = fail(err, errlen, "shape option \"url\" must be a non-empty string");
		goto done;
	}
	if ((rc = check_url(json_string_value(v), json_string_length(v), err, errlen)) < 0)
		goto done;
	out->url = ps_strdup(json_string_value(v));

	v = json_object_get(root, "params");
	if (v == NULL)
	{
		rc = fail(err, errlen, "shape option \"params\" is required (at least {\"table\": …})");
		goto done;
	}
	if ((rc = parse_params(v, out, err, errlen)) < 0)
		goto done;

	v = json_object_get(root, "headers");
	if (v != NULL && !json_is_null(v) && (rc = parse_headers(v, out, err, errlen)) < 0)
		goto done;

	/* where to start: the snapshot (-1), or the log's end for changes_only */
	v = json_object_get(root, "offset");
	if (v != NULL && !json_is_null(v))
	{
		if (!json_is_string(v) || strcmp(json_string_value(v), "now") != 0)
		{
			rc = fail(err, errlen, "shape option \"offset\" must be \"now\" (the default starts from the snapshot)");
			goto done;
		}
		if (!out->changes_only)
		{
			rc = fail(err, errlen, "shape option \"offset\": \"now\" needs params.log = \"changes_only\": a full shape starts from its snapshot");
			goto done;
		}
		out->offset_now = true;
	}

done:
	json_decref(root);
	if (rc < 0)
		ps_shape_free(out);
	return rc;
}

void
ps_shape_free(ps_shape *s)
{
	for (int i = 0; i < s->nparams; i++)
	{
		ps_free(s->params[i].name);
		ps_free(s->params[i].value);
	}
	for (int i = 0; i < s->nheaders; i++)
	{
		ps_free(s->headers[i].name);
		ps_free(s->headers[i].value);
	}
	ps_free(s->params);
	ps_free(s->headers);
	ps_free(s->url);
	ps_free(s->table);
	memset(s, 0, sizeof(*s));
}

void
ps_shape_base_url(const ps_shape *s, ps_strbuf *out)
{
	ps_strbuf_reset(out);
	ps_strbuf_puts(out, s->url);
	for (int i = 0; i < s->nparams; i++)
		ps_url_add_param(out, s->params[i].name, s->params[i].value);
}
