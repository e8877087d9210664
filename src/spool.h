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

/* record flags */
#define PS_REC_RAW			0x01	/* whole message JSON instead of fields */
#define PS_REC_HAS_LSN		0x02	/* a live change (snapshot rows have none) */
#define PS_REC_LAST			0x04	/* last op of its transaction for this shape */
#define PS_REC_MOVE_IN		0x08	/* a row moving into the shape: an upsert */
#define PS_REC_TAGS			0x10	/* a subquery shape's row: tags follow */
#define PS_REC_TXID			0x20	/* the source transaction's id follows (last) */

/* ops besides 'I', 'U' and 'D': the move events of subquery shapes */
#define PS_OP_MOVE_OUT		'O'
#define PS_OP_MOVE_IN		'N'

typedef struct PsSpoolRecord
{
	char		op;				/* 'I', 'U', 'D', or a move event */
	bool		raw;			/* whole message JSON instead of fields */
	uint8		flags;
	uint64		lsn;			/* 0 for snapshot rows */
	uint32		op_position;
	const char *key;
	uint32		key_len;
	int			nfields;
	PsSpoolField *fields;
	const char *json;			/* raw message (NUL-terminated) */
	uint32		json_len;
	uint64		txid;			/* headers.txids[0], 0 when not sent */
	/* PS_REC_TAGS: headers.tags, removed_tags, active_conditions */
	ps_str	   *tags;
	int			ntags;
	ps_str	   *removed_tags;
	int			nremoved_tags;
	bool	   *active;			/* NULL when not sent */
	int			nactive;
	/* a move event's patterns */
	ps_pattern *patterns;
	int			npatterns;
} PsSpoolRecord;

typedef struct PsSpool PsSpool;

extern PsSpool *ps_spool_create(MemoryContext cxt);

/* Where a table-backed spool stands between two calls. */
typedef struct PsSpoolState
{
	int64		end;			/* logical end */
	int64		base;			/* logical start */
	int64		records;
} PsSpoolState;

extern PsSpool *ps_spool_create_in_table(MemoryContext cxt, int32 subid, const char *shape,
										 const PsSpoolState *state);
extern void ps_spool_get_state(PsSpool *s, PsSpoolState *state);
extern bool ps_spool_intact(PsSpool *s);
extern void ps_spool_destroy(PsSpool *s);
extern void ps_spool_add(PsSpool *s, const ps_message *m, uint64 lsn, const char *json,
						 size_t json_len, bool raw);
extern void ps_spool_add_event(PsSpool *s, const ps_message *m);

/* A response's records count only once the whole response was good. */
extern void ps_spool_response_done(PsSpool *s);
extern void ps_spool_response_failed(PsSpool *s);
extern void ps_spool_clear(PsSpool *s);
extern int64 ps_spool_count(PsSpool *s);

/* Reading back, in order; the record is valid until the next call. */
extern void ps_spool_rewind(PsSpool *s);
extern bool ps_spool_peek(PsSpool *s, PsSpoolRecord **rec);
extern void ps_spool_consume(PsSpool *s);

/* After a commit: forget the records consumed since the rewind, keep the rest
 * (changes past a group's commit target wait for the next commit). */
extern void ps_spool_drop_consumed(PsSpool *s);
extern int64 ps_spool_bytes(PsSpool *s);

/* Committed records not consumed since the rewind. */
extern int64 ps_spool_remaining(PsSpool *s);

/* Does the spool hold a committed record at or below lsn? */
extern bool ps_spool_has_upto(PsSpool *s, uint64 lsn);

#endif
