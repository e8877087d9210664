/*
 * fuzz_message.c
 *	  libFuzzer target: ps_message_parse on arbitrary bytes.
 *
 * The input is one message, as is (libFuzzer's buffer has exactly the input's
 * size, so any read past len is an ASan report).  Checks:
 *  - the error text is set on failure and empty on success;
 *  - every returned pointer/length lies inside the input or the used part of
 *    the arena, a NULL pointer has length 0, and decoded strings in the arena
 *    do not overlap;
 *  - value/old_value lie inside the fields array and their counts add up;
 *  - the key, column names, string values, operation and text headers are
 *    valid UTF-8 without NUL, and raw (non-string) values are valid JSON;
 *  - a message parsed into a ps_message that was used before gives the same
 *    result as one parsed into a fresh ps_message;
 *  - differential against jansson: whatever the parser accepts, jansson
 *    accepts too (leaving out numbers beyond double/int64 range and duplicate
 *    keys, where the two legitimately differ), and every extracted field
 *    (key, each column's name/string/null/raw value, operation, control,
 *    event, lsn, op_position, last, global_last_seen_lsn, the kind) matches
 *    what jansson sees.
 */
#include <stdint.h>

#include "fuzz_common.h"
#include "json.h"
#include "message.h"
#include "ps_alloc.h"

typedef struct span
{
	const char *p;
	size_t		n;
} span;

static const char *g_in;
static size_t g_inlen;

static int
cmp_span(const void *a, const void *b)
{
	const span *x = a;
	const span *y = b;

	return x->p < y->p ? -1 : x->p > y->p;
}

/* Check one returned string; collect arena spans to check for overlap. */
static void
check_ptr(const ps_message *m, const char *what, const char *p, size_t n,
		  bool text, span *arena_spans, int *nspans)
{
	if (p == NULL)
	{
		FUZZ_CHECK(n == 0, "%s is NULL with length %zu", what, n);
		return;
	}
	if (fuzz_in(p, n, g_in, g_inlen))
		;
	else
	{
		FUZZ_CHECK(fuzz_in(p, n, m->arena, m->arena_len),
				   "%s (%p, %zu) lies neither in the input nor in the used arena", what, (void *) p, n);
		FUZZ_CHECK(m->arena_len <= m->arena_cap, "arena_len %zu > arena_cap %zu", m->arena_len, m->arena_cap);
		if (n > 0)
		{
			arena_spans[*nspans].p = p;
			arena_spans[*nspans].n = n;
			(*nspans)++;
		}
	}
	if (text)
		FUZZ_CHECK(fuzz_utf8_valid(p, n, false), "%s is not valid UTF-8 without NUL: \"%.*s\"", what, (int) n, p);
}

static void
check_fields(const ps_message *m, const char *what, const ps_field *f, int n,
			 span *sp, int *nsp)
{
	if (n > 0)
		FUZZ_CHECK(f != NULL, "%s: %d fields but no array", what, n);
	if (f == NULL)
		return;
	FUZZ_CHECK(f >= m->fields && n >= 0 && f + n <= m->fields + m->nfields,
			   "%s: fields [%ld, +%d) outside [0, %d)", what, (long) (f - m->fields), n, m->nfields);
	for (int i = 0; i < n; i++)
	{
		const ps_field *x = &f[i];

		check_ptr(m, "field name", x->name, x->name_len, true, sp, nsp);
		FUZZ_CHECK(!(x->isnull && x->is_string), "field both null and string");
		if (x->isnull)
			FUZZ_CHECK(x->data == NULL && x->len == 0, "null field with data");
		else
		{
			FUZZ_CHECK(x->data != NULL, "non-null field without data");
			check_ptr(m, "field data", x->data, x->len, true, sp, nsp);
			if (!x->is_string)
			{
				json_error_t je;
				json_t	   *j = json_loadb(x->data, x->len, JSON_DECODE_ANY, &je);

				FUZZ_CHECK(j != NULL || json_error_code(&je) == json_error_numeric_overflow,
						   "raw value \"%.*s\" is not JSON: %s", (int) x->len, x->data, je.text);
				FUZZ_CHECK(x->len > 0 && x->data[0] != '"' && x->data[0] != ' ',
						   "raw value \"%.*s\" looks like a string or has leading space", (int) x->len, x->data);
				json_decref(j);
			}
		}
		FUZZ_CHECK(ps_message_find(f, n, x->name, x->name_len) != NULL, "find cannot find field %d", i);
	}
}

static void
check_message(const ps_message *m, int rc)
{
	span		sp[4096];
	int			nsp = 0;

	FUZZ_CHECK(rc == 0 || rc == -1, "rc %d", rc);
	FUZZ_CHECK(memchr(m->error, '\0', sizeof(m->error)) != NULL, "error not terminated");
	if (rc != 0)
	{
		FUZZ_CHECK(m->error[0] != '\0', "failure without an error message");
		return;
	}
	FUZZ_CHECK(m->error[0] == '\0', "success with error \"%s\"", m->error);
	FUZZ_CHECK(m->nfields >= 0 && m->nfields <= m->fields_cap, "nfields %d cap %d", m->nfields, m->fields_cap);
	FUZZ_CHECK(m->nvalue >= 0 && m->nold_value >= 0 && m->nvalue + m->nold_value <= m->nfields,
			   "nvalue %d + nold_value %d > nfields %d", m->nvalue, m->nold_value, m->nfields);
	FUZZ_CHECK(m->has_value || (m->value == NULL && m->nvalue == 0), "value without has_value");
	FUZZ_CHECK(m->has_old_value || (m->old_value == NULL && m->nold_value == 0), "old_value without has_old_value");
	/* every field is a column of value or old_value: 2 fields cost >= 6 bytes */
	FUZZ_CHECK((size_t) m->nfields <= g_inlen / 4, "%d fields from %zu bytes", m->nfields, g_inlen);

	check_ptr(m, "key", m->key, m->key_len, true, sp, &nsp);
	check_ptr(m, "operation", m->operation, m->operation_len, true, sp, &nsp);
	check_ptr(m, "lsn", m->lsn, m->lsn_len, true, sp, &nsp);
	check_ptr(m, "global_lsn", m->global_lsn, m->global_lsn_len, true, sp, &nsp);
	check_fields(m, "value", m->value, m->nvalue, sp, &nsp);
	check_fields(m, "old_value", m->old_value, m->nold_value, sp, &nsp);

	FUZZ_CHECK(m->kind >= PS_MSG_CHANGE && m->kind <= PS_MSG_UNKNOWN, "kind %d", m->kind);
	FUZZ_CHECK(m->op == PS_OP_NONE || m->op == PS_OP_INSERT || m->op == PS_OP_UPDATE || m->op == PS_OP_DELETE, "op %d", m->op);
	if (m->op != PS_OP_NONE)
		FUZZ_CHECK(m->operation != NULL, "op without operation");
	if (m->control != PS_CTL_NONE)
		FUZZ_CHECK(m->kind == PS_MSG_CONTROL, "control %d but kind %d", m->control, m->kind);

	/* decoded strings never share arena bytes */
	qsort(sp, nsp, sizeof(span), cmp_span);
	for (int i = 1; i < nsp; i++)
		FUZZ_CHECK(sp[i - 1].p + sp[i - 1].n <= sp[i].p || sp[i - 1].p == sp[i].p && sp[i - 1].n == sp[i].n,
				   "arena strings overlap");
}

static bool
same_mem(const char *a, size_t al, const char *b, size_t bl)
{
	if ((a == NULL) != (b == NULL))
		return false;
	return al == bl && (al == 0 || memcmp(a, b, al) == 0);
}

static void
same_fields(const ps_field *a, int na, const ps_field *b, int nb)
{
	FUZZ_CHECK(na == nb, "field counts %d vs %d", na, nb);
	for (int i = 0; i < na; i++)
	{
		FUZZ_CHECK(same_mem(a[i].name, a[i].name_len, b[i].name, b[i].name_len), "field %d name differs", i);
		FUZZ_CHECK(a[i].isnull == b[i].isnull && a[i].is_string == b[i].is_string, "field %d flags differ", i);
		FUZZ_CHECK(same_mem(a[i].data, a[i].len, b[i].data, b[i].len), "field %d data differs", i);
	}
}

/* A fresh parse and a parse into a used ps_message must agree. */
static void
same_message(const ps_message *a, int ra, const ps_message *b, int rb)
{
	FUZZ_CHECK(ra == rb, "rc %d with a fresh message, %d with a reused one", ra, rb);
	FUZZ_CHECK(strcmp(a->error, b->error) == 0, "errors differ: \"%s\" vs \"%s\"", a->error, b->error);
	if (ra != 0)
		return;
	FUZZ_CHECK(a->kind == b->kind && a->op == b->op && a->control == b->control, "kind/op/control differ");
	FUZZ_CHECK(same_mem(a->key, a->key_len, b->key, b->key_len), "key differs");
	FUZZ_CHECK(same_mem(a->operation, a->operation_len, b->operation, b->operation_len), "operation differs");
	FUZZ_CHECK(same_mem(a->lsn, a->lsn_len, b->lsn, b->lsn_len), "lsn differs");
	FUZZ_CHECK(same_mem(a->global_lsn, a->global_lsn_len, b->global_lsn, b->global_lsn_len), "global lsn differs");
	FUZZ_CHECK(a->has_op_position == b->has_op_position && a->op_position == b->op_position && a->last == b->last,
			   "op_position/last differ");
	FUZZ_CHECK(a->has_value == b->has_value && a->has_old_value == b->has_old_value, "has_value differs");
	same_fields(a->value, a->nvalue, b->value, b->nvalue);
	same_fields(a->old_value, a->nold_value, b->old_value, b->nold_value);
}

static bool
str_is(json_t *j, const char *p, size_t n)
{
	return json_is_string(j) && p != NULL && json_string_length(j) == n &&
		memcmp(json_string_value(j), p, n) == 0;
}

/* A text header (lsn, global_last_seen_lsn) against jansson's value. */
static void
diff_text_header(const char *what, json_t *j, const char *p, size_t n)
{
	if (j == NULL || json_is_null(j))
	{
		FUZZ_CHECK(p == NULL, "%s absent/null but parser has \"%.*s\"", what, (int) n, p);
		return;
	}
	FUZZ_CHECK(!json_is_object(j) && !json_is_array(j), "%s: parser accepted a container", what);
	FUZZ_CHECK(p != NULL, "%s present but parser has none", what);
	if (json_is_string(j))
		FUZZ_CHECK(str_is(j, p, n), "%s differs: \"%.*s\"", what, (int) n, p);
	else
	{
		json_t	   *r = json_loadb(p, n, JSON_DECODE_ANY, NULL);

		FUZZ_CHECK(r != NULL && json_equal(r, j), "%s raw \"%.*s\" differs from jansson", what, (int) n, p);
		json_decref(r);
	}
}

static void
diff_row(const char *what, json_t *j, bool has, const ps_field *f, int n)
{
	if (j == NULL || json_is_null(j))
	{
		FUZZ_CHECK(!has, "%s absent/null but has_%s", what, what);
		return;
	}
	FUZZ_CHECK(json_is_object(j), "%s: parser accepted a non-object", what);
	FUZZ_CHECK(has, "%s present but not has_%s", what, what);
	FUZZ_CHECK((size_t) n == json_object_size(j), "%s: %d fields, jansson %zu", what, n, json_object_size(j));
	for (int i = 0; i < n; i++)
	{
		json_t	   *v = json_object_getn(j, f[i].name, f[i].name_len);

		FUZZ_CHECK(v != NULL, "%s: column \"%.*s\" unknown to jansson", what, (int) f[i].name_len, f[i].name);
		if (json_is_null(v))
			FUZZ_CHECK(f[i].isnull, "%s.%.*s: not null", what, (int) f[i].name_len, f[i].name);
		else if (json_is_string(v))
			FUZZ_CHECK(f[i].is_string && str_is(v, f[i].data, f[i].len),
					   "%s.%.*s: string differs: \"%.*s\"", what, (int) f[i].name_len, f[i].name,
					   (int) f[i].len, f[i].data ? f[i].data : "");
		else
		{
			json_t	   *r = json_loadb(f[i].data, f[i].len, JSON_DECODE_ANY, NULL);

			FUZZ_CHECK(!f[i].is_string && !f[i].isnull && r != NULL && json_equal(r, v),
					   "%s.%.*s: raw value differs", what, (int) f[i].name_len, f[i].name);
			json_decref(r);
		}
	}
}

static void
differential(const ps_message *m, int rc, const uint8_t *data, size_t size)
{
	json_error_t je;
	json_t	   *root;
	json_t	   *h;
	json_t	   *j;
	bool		saw_headers;
	ps_msg_kind kind;

	root = json_loadb((const char *) data, size, JSON_REJECT_DUPLICATES, &je);
	if (root == NULL)
	{
		enum json_error_code code = json_error_code(&je);

		if (rc == 0)
			FUZZ_CHECK(code == json_error_duplicate_key || code == json_error_numeric_overflow,
					   "parser accepted what jansson rejects (%s at %d)", je.text, je.position);
		return;
	}
	if (rc != 0)
	{
		/* jansson accepts; the parser must have a structural or \u0000 reason */
		json_decref(root);
		return;
	}
	FUZZ_CHECK(json_is_object(root), "parser accepted a non-object");

	j = json_object_get(root, "key");
	if (j)
		FUZZ_CHECK(str_is(j, m->key, m->key_len), "key differs");
	else
		FUZZ_CHECK(m->key == NULL, "key absent but parser has one");
	diff_row("value", json_object_get(root, "value"), m->has_value, m->value, m->nvalue);
	diff_row("old_value", json_object_get(root, "old_value"), m->has_old_value, m->old_value, m->nold_value);

	h = json_object_get(root, "headers");
	saw_headers = (h != NULL);
	if (h)
		FUZZ_CHECK(json_is_object(h), "headers: parser accepted a non-object");
	else
		h = json_pack("{}");

	j = json_object_get(h, "operation");
	if (j)
	{
		const char *o = json_string_value(j);
		ps_msg_op	op = PS_OP_NONE;

		FUZZ_CHECK(str_is(j, m->operation, m->operation_len), "operation differs");
		if (strcmp(o, "insert") == 0 && json_string_length(j) == 6)
			op = PS_OP_INSERT;
		else if (strcmp(o, "update") == 0 && json_string_length(j) == 6)
			op = PS_OP_UPDATE;
		else if (strcmp(o, "delete") == 0 && json_string_length(j) == 6)
			op = PS_OP_DELETE;
		FUZZ_CHECK(m->op == op, "op %c for \"%s\"", m->op ? m->op : '0', o);
	}
	else
		FUZZ_CHECK(m->operation == NULL && m->op == PS_OP_NONE, "operation absent but parser has one");

	j = json_object_get(h, "control");
	if (j)
	{
		ps_msg_control ctl = PS_CTL_OTHER;

		FUZZ_CHECK(json_is_string(j), "control: parser accepted a non-string");
		if (json_string_length(j) == strlen(json_string_value(j)))
		{
			if (strcmp(json_string_value(j), "up-to-date") == 0)
				ctl = PS_CTL_UP_TO_DATE;
			else if (strcmp(json_string_value(j), "must-refetch") == 0)
				ctl = PS_CTL_MUST_REFETCH;
			else if (strcmp(json_string_value(j), "snapshot-end") == 0)
				ctl = PS_CTL_SNAPSHOT_END;
		}
		FUZZ_CHECK(m->control == ctl, "control %d for \"%s\"", m->control, json_string_value(j));
	}
	else
		FUZZ_CHECK(m->control == PS_CTL_NONE, "control absent but parser has %d", m->control);

	diff_text_header("lsn", json_object_get(h, "lsn"), m->lsn, m->lsn_len);
	diff_text_header("global_last_seen_lsn", json_object_get(h, "global_last_seen_lsn"),
					 m->global_lsn, m->global_lsn_len);

	j = json_object_get(h, "op_position");
	FUZZ_CHECK(m->has_op_position == (j != NULL && json_is_number(j)), "has_op_position %d", m->has_op_position);
	if (j && json_is_integer(j))
		FUZZ_CHECK(m->op_position == json_integer_value(j), "op_position %lld, jansson %lld",
				   m->op_position, (long long) json_integer_value(j));
	j = json_object_get(h, "last");
	FUZZ_CHECK(m->last == (j != NULL && json_is_true(j)), "last %d", m->last);

	/* the kind, from the documented rules */
	if (!saw_headers)
		kind = m->key ? PS_MSG_CHANGE : PS_MSG_UNKNOWN;
	else if (json_object_get(h, "control"))
		kind = PS_MSG_CONTROL;
	else if (json_object_get(h, "event"))
		kind = PS_MSG_EVENT;
	else if (json_object_get(h, "operation") || m->key)
		kind = PS_MSG_CHANGE;
	else
		kind = PS_MSG_UNKNOWN;
	FUZZ_CHECK(m->kind == kind, "kind %d, expected %d", m->kind, kind);

	if (!saw_headers)
		json_decref(h);
	json_decref(root);
}

/* Fills a ps_message's storage and every output before the real parse. */
static const char dirty[] =
	"{\"key\":\"\\u00e9\\\"dirty\\\"\",\"value\":{\"a\\n\":\"x\\ty\",\"b\":null,\"c\":[1,{\"d\":\"\\u1234\"}],"
	"\"e1\":\"1\",\"e2\":\"2\",\"e3\":\"3\",\"e4\":\"4\",\"e5\":\"5\",\"e6\":\"6\",\"e7\":\"7\",\"e8\":\"8\","
	"\"e9\":\"9\",\"f1\":\"1\",\"f2\":\"2\",\"f3\":\"3\",\"f4\":\"4\",\"f5\":\"5\",\"f6\":\"6\",\"f7\":\"7\","
	"\"f8\":\"8\",\"f9\":\"9\",\"g1\":\"1\",\"g2\":\"2\",\"g3\":\"3\",\"g4\":\"4\",\"g5\":\"5\",\"g6\":\"6\","
	"\"g7\":\"7\",\"g8\":\"8\",\"g9\":\"9\",\"h1\":\"\\\\\"},\"old_value\":{\"z\":\"\\/\"},"
	"\"headers\":{\"operation\":\"\\u0075pdate\",\"control\":\"up-to-date\",\"lsn\":\"\\u0031\","
	"\"global_last_seen_lsn\":7,\"op_position\":99,\"last\":true,\"event\":{}}}";

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
	ps_message	fresh;
	ps_message	used;
	int			rc;
	int			rc2;

#ifdef FUZZ_SKIP_KNOWN
	/* finding 1: op_position is read by strtoll past the end of the input */
	char	   *copy = fuzz_cstr(data, size);

	data = (const uint8_t *) copy;
#endif
	g_in = (const char *) data;
	g_inlen = size;

	ps_message_init(&fresh);
#ifdef FUZZ_SKIP_KNOWN
	/* finding 2: value/old_value of a never-grown fields array is NULL + 0 */
	FUZZ_CHECK(ps_message_parse(&fresh, "{\"value\":{\"a\":\"b\"}}", 19) == 0, "warm-up");
#endif
	rc = ps_message_parse(&fresh, (const char *) data, size);
#ifdef FUZZ_SKIP_KNOWN
	/* finding 3: "lsn": null leaves lsn NULL with lsn_len 4 */
	if (rc == 0 && fresh.lsn == NULL)
		fresh.lsn_len = 0;
	if (rc == 0 && fresh.global_lsn == NULL)
		fresh.global_lsn_len = 0;
#endif
	check_message(&fresh, rc);

	ps_message_init(&used);
	rc2 = ps_message_parse(&used, dirty, sizeof(dirty) - 1);
	FUZZ_CHECK(rc2 == 0, "the warm-up message does not parse: %s", used.error);
	rc2 = ps_message_parse(&used, (const char *) data, size);
#ifdef FUZZ_SKIP_KNOWN
	if (rc2 == 0 && used.lsn == NULL)
		used.lsn_len = 0;
	if (rc2 == 0 && used.global_lsn == NULL)
		used.global_lsn_len = 0;
#endif
	same_message(&fresh, rc, &used, rc2);

	differential(&fresh, rc, data, size);

	/* the same input as a subset answer: spans inside it, of the right kind */
	{
		ps_str		meta,
					rows;
		const char *in = (const char *) data;

		if (ps_subset_answer_split(&used, in, size, &meta, &rows) == 0)
		{
			FUZZ_CHECK(meta.s >= in && meta.s + meta.len <= in + size &&
					   rows.s >= in && rows.s + rows.len <= in + size, "a span outside the input");
			FUZZ_CHECK(meta.len >= 2 && meta.s[0] == '{' && meta.s[meta.len - 1] == '}',
					   "metadata is not an object span");
			FUZZ_CHECK(rows.len >= 2 && rows.s[0] == '[' && rows.s[rows.len - 1] == ']',
					   "data is not an array span");
		}
		else
			FUZZ_CHECK(used.error[0] != '\0', "a failed split without an error");
	}

	ps_message_free(&fresh);
	ps_message_free(&used);
#ifdef FUZZ_SKIP_KNOWN
	free(copy);
#endif
	return 0;
}
