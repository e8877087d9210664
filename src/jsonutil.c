/*
 * jsonutil.c
 *	  jsonb arguments through jansson (see jsonutil.h).
 */
#include "pglite_sync.h"

#include "mb/pg_wchar.h"
#include "utils/fmgroids.h"

#include "jsonutil.h"
#include "ps_alloc.h"

char *
ps_jsonb_text(Jsonb *j)
{
	return OidOutputFunctionCall(F_JSONB_OUT, JsonbPGetDatum(j));
}

json_t *
ps_jsonb_load(Jsonb *j)
{
	char	   *utf8 = ps_text_to_utf8(ps_jsonb_text(j));
	json_error_t err;
	json_t	   *v = json_loads(utf8, JSON_DECODE_ANY, &err);

	if (v == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not read a JSON argument: %s", err.text)));
	return v;
}

char *
ps_json_str(json_t *s)
{
	const char *v = json_string_value(s);

	return v ? pg_any_to_server(v, (int) json_string_length(s), PG_UTF8) : NULL;
}

char *
ps_json_text(json_t *v)
{
	char	   *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	char	   *out;

	if (text == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	out = pg_any_to_server(text, strlen(text), PG_UTF8);
	if (out == text)
		out = pstrdup(text);
	ps_free(text);
	return out;
}
