/*
 * shapeopts.h
 *	  The "shape" argument of sync_shape_to_table: validation and the base
 *	  request URL built from it (pure C, jansson).
 */
#ifndef PS_SHAPEOPTS_H
#define PS_SHAPEOPTS_H

#include <stdbool.h>
#include <stddef.h>

#include "strbuf.h"

typedef struct ps_kv
{
	char	   *name;
	char	   *value;
} ps_kv;

typedef struct ps_shape
{
	char	   *url;			/* as given, http or https */
	char	   *table;			/* params.table */
	ps_kv	   *params;			/* query parameters, sorted by name */
	int			nparams;
	ps_kv	   *headers;		/* extra request headers */
	int			nheaders;
	bool		live_sse;		/* "live_sse": true: one event stream when live */
	bool		changes_only;	/* params.log = "changes_only": no snapshot */
	bool		offset_now;		/* "offset": "now": start at the log's end */
	bool		replica_full;	/* params.replica = "full": updates carry whole rows */
} ps_shape;

/*
 * Parse and validate the JSON text of a shape.  Returns 0, or -1 with a
 * lowercase message in err (which names the offending option).
 */
extern int	ps_shape_parse(const char *json, size_t len, ps_shape *out,
						   char *err, size_t errlen);
extern void ps_shape_free(ps_shape *s);

/* url + '?'/'&' + the shape's own query parameters. */
extern void ps_shape_base_url(const ps_shape *s, ps_strbuf *out);

/* The host part of the URL (lowercased, without port or brackets). */
extern char *ps_url_host(const char *url);

/* Is a header name an HTTP token, a value free of control characters? */
extern bool ps_header_name_ok(const char *name);
extern bool ps_header_value_ok(const char *value);

/*
 * Split params.table (sep '.') or params.columns (sep ',') into names as
 * Electric reads them: a quoted name keeps its case and may hold the
 * separator ("" is a quote), an unquoted one is downcased.  Returns how
 * many (in *names, free with ps_idents_free), or -1 if malformed.
 */
extern int	ps_idents_split(const char *s, char sep, char ***names);
extern void ps_idents_free(char **names, int n);

/* Query parameters that belong to the protocol and may not be set by hand. */
extern bool ps_param_reserved(const char *name);

/* The first query parameter name of url (decoded) that match() accepts. */
extern char *ps_url_find_param(const char *url, bool (*match) (const char *name));

#endif
