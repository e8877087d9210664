/*
 * jsonutil.h
 *	  jsonb arguments read with jansson (server side).  PGlite exports no
 *	  jsonb iterators, and jansson is linked in every build anyway, so SQL
 *	  arguments of type jsonb are read as their text, in UTF-8.
 */
#ifndef PS_JSONUTIL_H
#define PS_JSONUTIL_H

#include "postgres.h"

#include "utils/jsonb.h"

#include "json.h"

/* A jsonb value as jansson's (a new reference), or an ERROR. */
extern json_t *ps_jsonb_load(Jsonb *j);

/* jsonb's text, in the server encoding and in UTF-8. */
extern char *ps_jsonb_text(Jsonb *j);

/* A jansson string as a server-encoding C string. */
extern char *ps_json_str(json_t *s);

/* A jansson value's JSON text, in the server encoding (for storage). */
extern char *ps_json_text(json_t *v);

#endif
