/*
 * spool.h
 *	  The changes of a batch that is not complete yet, kept in a temporary
 *	  file until up-to-date (as core's streamed apply does with BufFile), so
 *	  no transaction stays open across HTTP requests and memory does not
 *	  grow with the batch.
 */
#ifndef PS_SPOOL_H
#define PS_SPOOL_H

#include "pglite_sync.h"

#include "message.h"

typedef struct PsSpoolField
{
	const char *name;
	uint32		name_len;
	const char *value;			/* NUL-terminated; NULL for SQL NULL */
	uint32		len;
} PsSpoolField;

typedef struct PsSpoolRecord
{
	char		op;				/* 'I', 'U' or 'D' */
	bool		raw;			/* whole message JSON instead of fields */
	const char *key;
	uint32		key_len;
	int			nfields;
	PsSpoolField *fields;
	const char *json;			/* raw message (NUL-terminated) */
	uint32		json_len;
} PsSpoolRecord;

typedef struct PsSpool PsSpool;

extern PsSpool *ps_spool_create(MemoryContext cxt);
extern void ps_spool_destroy(PsSpool *s);
extern void ps_spool_add(PsSpool *s, const ps_message *m, const char *json,
						 size_t json_len, bool raw);

/* A response's records count only once the whole response was good. */
extern void ps_spool_response_done(PsSpool *s);
extern void ps_spool_response_failed(PsSpool *s);
extern void ps_spool_clear(PsSpool *s);
extern int64 ps_spool_count(PsSpool *s);

/* Reading back, in order; the record is valid until the next call. */
extern void ps_spool_rewind(PsSpool *s);
extern bool ps_spool_peek(PsSpool *s, PsSpoolRecord **rec);
extern void ps_spool_consume(PsSpool *s);

#endif
