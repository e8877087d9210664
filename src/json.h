/*
 * json.h
 *	  The one and only includer of <jansson.h>.
 *
 * PostgreSQL's utils/fmgrprotos.h declares SQL-callable json_object() and
 * json_typeof(), which clash with jansson at compile time; worse, at run
 * time a call to jansson's json_object() from this library binds to the
 * server's exported json_object() and crashes the backend.  So: in server
 * code include this after the PostgreSQL headers; jansson's declaration of
 * json_object is renamed away, and every build creates empty objects with
 * json_pack("{}"), which stays inside libjansson.
 */
#ifndef PS_JSON_H
#define PS_JSON_H

#define json_object ps_jansson_json_object_do_not_call
#include <jansson.h>
#undef json_object

#define ps_json_new_object() json_pack("{}")

#endif
