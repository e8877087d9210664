/*
 * message.h
 *	  Parser for one Electric shape-log message (pure C).
 *
 * A strict, allocation-light JSON parser specialised for the message shape:
 * {"key":…, "value":{col:text|null,…}, "old_value":{…}, "headers":{…}}.
 * Strings without escapes point into the input; escaped ones are decoded
 * into an arena sized once per message, so parsing a snapshot row costs no
 * allocation at all.  Everything it returns points into the input or the
 * arena and is valid until the next parse.
 */
#ifndef PS_MESSAGE_H
#define PS_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>

typedef enum ps_msg_kind
{
	PS_MSG_CHANGE,				/* insert, update or delete */
	PS_MSG_CONTROL,				/* headers.control */
	PS_MSG_EVENT,				/* headers.event (move-in/move-out) */
	PS_MSG_UNKNOWN				/* anything else: skipped */
} ps_msg_kind;

typedef enum ps_msg_op
{
	PS_OP_NONE = 0,
	PS_OP_INSERT = 'I',
	PS_OP_UPDATE = 'U',
	PS_OP_DELETE = 'D'
} ps_msg_op;

typedef enum ps_msg_control
{
	PS_CTL_NONE,
	PS_CTL_UP_TO_DATE,
	PS_CTL_MUST_REFETCH,
	PS_CTL_SNAPSHOT_END,
	PS_CTL_OTHER
} ps_msg_control;

typedef enum ps_msg_event
{
	PS_EVENT_NONE,
	PS_EVENT_MOVE_IN,
	PS_EVENT_MOVE_OUT,
	PS_EVENT_OTHER
} ps_msg_event;

/* A string inside the message (decoded, in the input or the arena). */
typedef struct ps_str
{
	const char *s;
	size_t		len;
} ps_str;

/* One pattern of a move event: rows whose tag has value at position pos. */
typedef struct ps_pattern
{
	long		pos;
	ps_str		value;
} ps_pattern;

/* One column of "value" or "old_value". */
typedef struct ps_field
{
	const char *name;
	size_t		name_len;
	const char *data;			/* decoded string, or raw JSON of a non-string */
	size_t		len;
	bool		isnull;
	bool		is_string;
} ps_field;

typedef struct ps_message
{
	ps_msg_kind kind;
	ps_msg_op	op;
	ps_msg_control control;

	const char *key;			/* NULL when absent */
	size_t		key_len;
	bool		has_value;
	ps_field   *value;
	int			nvalue;
	bool		has_old_value;
	ps_field   *old_value;
	int			nold_value;

	const char *operation;		/* headers.operation as sent (for errors) */
	size_t		operation_len;
	const char *lsn;			/* headers.lsn as text, NULL when absent */
	size_t		lsn_len;
	bool		has_op_position;
	long long	op_position;
	bool		last;
	bool		is_move_in;		/* headers.is_move_in: apply as an upsert */
	const char *global_lsn;		/* headers.global_last_seen_lsn */
	size_t		global_lsn_len;

	/* subquery shapes */
	bool		has_tags;
	ps_str	   *tags;			/* headers.tags: one string per disjunct */
	int			ntags;
	ps_str	   *removed_tags;
	int			nremoved_tags;
	bool		has_active;
	bool	   *active;			/* headers.active_conditions */
	int			nactive;
	ps_msg_event event;			/* headers.event */
	ps_pattern *patterns;		/* headers.patterns of a move event */
	int			npatterns;
	unsigned long long *txids;	/* headers.txids */
	int			ntxids;

	/* storage, reused across parses */
	char	   *arena;
	size_t		arena_cap;
	size_t		arena_len;
	ps_field   *fields;
	int			nfields;
	int			fields_cap;
	ps_str	   *strs;
	int			nstrs;
	int			strs_cap;
	bool	   *bools;
	int			nbools;
	int			bools_cap;
	ps_pattern *pats;
	int			npats;
	int			pats_cap;
	unsigned long long *ids;
	int			nids;
	int			ids_cap;

	char		error[200];
	bool		error_unstorable;	/* well-formed JSON, but a value text cannot hold */
} ps_message;

extern void ps_message_init(ps_message *m);
extern void ps_message_free(ps_message *m);

/* Returns 0 on success, -1 on malformed input (m->error says why). */
extern int	ps_message_parse(ps_message *m, const char *json, size_t len);

/*
 * Parse the message at the start of data (more may follow it): 0 with *used
 * set to its length, or -1 if it is malformed or does not end within len.
 */
extern int	ps_message_parse_prefix(ps_message *m, const char *data, size_t len,
									size_t *used);

/*
 * A subset snapshot answer {"metadata": {...}, "data": [...]}: 0 with the
 * spans of the two values (any key order, other keys ignored), or -1 if it
 * is malformed or lacks either (m->error says why).
 */
extern int	ps_subset_answer_split(ps_message *m, const char *json, size_t len,
								   ps_str *metadata, ps_str *data);

/* Find a column of value/old_value by name; NULL when absent. */
extern const ps_field *ps_message_find(const ps_field *fields, int n,
									   const char *name, size_t name_len);

#endif
