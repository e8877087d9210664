/*
 * spool.c
 *	  Temporary-file spool of change records (see spool.h).
 *
 * Record layout: uint32 length of the rest, then
 *   op (1 byte), flags (1), uint64 lsn, uint32 op_position, uint32 nfields,
 *   uint32 key length, key, '\0',
 *   per field: uint32 name length, name, int32 value length (-1 = NULL),
 *   value, '\0'.
 * A raw record (map_function subscriptions) has no fields and carries the
 * message JSON after the key instead.  Values keep a NUL terminator so the
 * type input functions can read them in place.  A row of a subquery shape
 * (PS_REC_TAGS) ends with its tags: uint32 count and (uint32 length, bytes)
 * each, the same for removed_tags, then int32 count of active_conditions
 * (-1 = none) and one byte each.  Last, with PS_REC_TXID, the uint64 id of
 * its source transaction (headers.txids[0]).  A move event (op 'O' or 'N')
 * has no key or fields and ends with its patterns: uint32 count, then
 * (uint32 pos, uint32 length, bytes) each.
 *
 * Records collect in a 1 MB buffer, written to a temporary file only when it
 * fills: a live batch never touches the disk, and a large snapshot is written
 * and read in 1 MB blocks rather than BufFile's 8 kB ones (syscalls were a
 * visible cost of the initial load).
 */
#include "spool.h"

#include "catalog.h"

#include "lib/stringinfo.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#define SPOOL_BLOCK (1024 * 1024)
/* a spool file this large is deleted after use rather than reused */
#define SPOOL_KEEP_BYTES ((off_t) 64 * 1024 * 1024)

struct PsSpool
{
	MemoryContext cxt;
	/* table-backed (host-driven subscriptions): blocks in electric.spool_block */
	bool		in_table;
	int32		subid;
	char	   *shape;
	File		file;			/* -1 until the first flush */
	off_t		file_end;		/* bytes in the file */
	StringInfoData wbuf;		/* records after file_end */
	int64		committed;		/* records of complete responses */
	int64		pending;		/* records of the response being read */
	off_t		mark;			/* logical end of the committed records */
	off_t		base;			/* logical start: records before it are dropped */
	off_t		high_water;		/* largest file size since the last delete */

	/* reading */
	int64		read_count;
	off_t		consumed_end;	/* logical end of the last consumed record */
	bool		have_peeked;
	off_t		read_pos;		/* logical position of rbuf's first byte */
	StringInfoData rbuf;
	int			rbuf_off;		/* consumed bytes of rbuf */
	PsSpoolRecord rec;
	int			fields_cap;
	int			strs_cap;		/* rec.tags and rec.removed_tags */
	bool	   *rec_active;
	int			bools_cap;
	ps_pattern *rec_patterns;
	int			patterns_cap;
};

static void file_close(PsSpool *s);
static void file_write(PsSpool *s);
static int	file_read(PsSpool *s, char *buf, int want, off_t at);

PsSpool *
ps_spool_create(MemoryContext cxt)
{
	PsSpool    *s = MemoryContextAllocZero(cxt, sizeof(PsSpool));
	MemoryContext old = MemoryContextSwitchTo(cxt);

	s->cxt = cxt;
	s->file = -1;
	initStringInfo(&s->wbuf);
	initStringInfo(&s->rbuf);
	MemoryContextSwitchTo(old);
	return s;
}

/*
 * A spool in electric.spool_block, for a host-driven shape: it outlives the
 * call (and the session) that fills it, in the same transactions as the
 * stream position, so a feeding process may restart between two calls.
 */
PsSpool *
ps_spool_create_in_table(MemoryContext cxt, int32 subid, const char *shape,
						 const PsSpoolState *state)
{
	PsSpool    *s = ps_spool_create(cxt);

	s->in_table = true;
	s->subid = subid;
	s->shape = MemoryContextStrdup(cxt, shape);
	if (state)
	{
		s->file_end = state->end;
		s->mark = state->end;
		s->base = state->base;
		s->committed = state->records;
	}
	return s;
}

void
ps_spool_get_state(PsSpool *s, PsSpoolState *state)
{
	Assert(s->pending == 0 && s->wbuf.len == 0);
	state->end = s->file_end;
	state->base = s->base;
	state->records = s->committed;
}

/*
 * Whether a table-backed spool still holds the blocks its state counts.
 * On a server electric.spool_block is unlogged: a crash or a failover
 * empties it, while the state (logged, in shape_state) still says how far
 * the blocks reached.
 */
bool
ps_spool_intact(PsSpool *s)
{
	if (!s->in_table || s->file_end <= s->base)
		return true;
	return ps_catalog_spool_end(s->subid, s->shape) == s->file_end;
}

/* Close and delete the temporary file; the memory goes with its context. */
/* ---- the temporary file (workers and sync_now; PGlite spools in tables) ---- */

static void
file_close(PsSpool *s)
{
#ifndef __PGLITE__
	if (s->file >= 0)
		FileClose(s->file);
#endif
	s->file = -1;
}

static void
file_write(PsSpool *s)
{
#ifndef __PGLITE__
	if (s->file < 0)
	{
		/* interXact: the spool outlives the transactions between requests */
		s->file = OpenTemporaryFile(true);
		s->file_end = 0;
	}
	if (FileWrite(s->file, s->wbuf.data, s->wbuf.len, s->file_end,
				  ps_wait_event(PS_WAIT_APPLY)) != s->wbuf.len)
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("pglite_sync: could not write spool file: %m")));
#else
	elog(ERROR, "pglite_sync: PGlite spools in tables only");
#endif
}

static int
file_read(PsSpool *s, char *buf, int want, off_t at)
{
#ifndef __PGLITE__
	return FileRead(s->file, buf, want, at, ps_wait_event(PS_WAIT_APPLY));
#else
	elog(ERROR, "pglite_sync: PGlite spools in tables only");
	return -1;
#endif
}

void
ps_spool_destroy(PsSpool *s)
{
	file_close(s);
	s->file_end = 0;
}

static void
flush(PsSpool *s)
{
	if (s->wbuf.len == 0)
		return;
	if (s->in_table)
	{
		/* a block row, in the caller's transaction, keyed by its offset */
		ps_catalog_spool_write(s->subid, s->shape, s->file_end, s->wbuf.data, s->wbuf.len);
		s->file_end += s->wbuf.len;
		resetStringInfo(&s->wbuf);
		return;
	}
	file_write(s);
	s->file_end += s->wbuf.len;
	s->high_water = Max(s->high_water, s->file_end);
	resetStringInfo(&s->wbuf);
}

static char *
put_u32(char *p, uint32 u)
{
	memcpy(p, &u, sizeof(u));
	return p + sizeof(u);
}

static char *
put_strs(char *p, const ps_str *strs, int n)
{
	p = put_u32(p, (uint32) n);
	for (int i = 0; i < n; i++)
	{
		p = put_u32(p, (uint32) strs[i].len);
		memcpy(p, strs[i].s, strs[i].len);
		p += strs[i].len;
	}
	return p;
}

static size_t
strs_size(const ps_str *strs, int n)
{
	size_t		need = 4;

	for (int i = 0; i < n; i++)
		need += 4 + strs[i].len;
	return need;
}

/* Start a record of at least need bytes; returns where its body goes. */
static char *
record_begin(PsSpool *s, size_t need, int *start)
{
	StringInfo	b = &s->wbuf;

	if (b->len > 0 && b->len + need > SPOOL_BLOCK)
		flush(s);
	enlargeStringInfo(b, (int) need);
	*start = b->len;
	return b->data + b->len + sizeof(uint32);	/* length, patched below */
}

static void
record_end(PsSpool *s, int start, char *p)
{
	StringInfo	b = &s->wbuf;
	uint32		u;

	b->len = p - b->data;
	b->data[b->len] = '\0';
	u = (uint32) (b->len - start - sizeof(uint32));
	memcpy(b->data + start, &u, sizeof(u));
	s->pending++;
}

void
ps_spool_add(PsSpool *s, const ps_message *m, uint64 lsn, const char *json, size_t json_len,
			 bool raw)
{
	uint32		nfields = raw ? 0 : (uint32) m->nvalue;
	size_t		need = 32 + m->key_len + 1 + (raw ? json_len + 5 : 0);
	bool		tagged = m->has_tags || m->nremoved_tags > 0 || m->has_active;
	int			start;
	char	   *p;
	uint32		u;
	uint8		flags = 0;

	if (!raw)
		for (int i = 0; i < m->nvalue; i++)
			need += 9 + m->value[i].name_len + m->value[i].len;
	if (tagged)
		need += strs_size(m->tags, m->ntags) + strs_size(m->removed_tags, m->nremoved_tags) +
			4 + m->nactive;
	if (m->ntxids > 0)
		need += sizeof(uint64);
	p = record_begin(s, need, &start);
	if (raw)
		flags |= PS_REC_RAW;
	if (m->lsn)
		flags |= PS_REC_HAS_LSN;
	if (m->last)
		flags |= PS_REC_LAST;
	if (m->is_move_in)
		flags |= PS_REC_MOVE_IN;
	if (tagged)
		flags |= PS_REC_TAGS;
	if (m->ntxids > 0)
		flags |= PS_REC_TXID;

	*p++ = (char) m->op;
	*p++ = (char) flags;
	memcpy(p, &lsn, sizeof(lsn));
	p += sizeof(lsn);
	u = m->has_op_position ? (uint32) m->op_position : 0;
	memcpy(p, &u, sizeof(u));
	p += sizeof(u);
	memcpy(p, &nfields, sizeof(nfields));
	p += sizeof(nfields);
	u = (uint32) m->key_len;
	memcpy(p, &u, sizeof(u));
	p += sizeof(u);
	if (m->key_len)
		memcpy(p, m->key, m->key_len);
	p += m->key_len;
	*p++ = '\0';
	if (raw)
	{
		u = (uint32) json_len;
		memcpy(p, &u, sizeof(u));
		p += sizeof(u);
		memcpy(p, json, json_len);
		p += json_len;
		*p++ = '\0';
	}
	else
	{
		for (int i = 0; i < m->nvalue; i++)
		{
			const ps_field *f = &m->value[i];
			uint32		nlen = (uint32) f->name_len;
			int32		vlen = f->isnull ? -1 : (int32) f->len;

			memcpy(p, &nlen, sizeof(nlen));
			p += sizeof(nlen);
			memcpy(p, f->name, nlen);
			p += nlen;
			memcpy(p, &vlen, sizeof(vlen));
			p += sizeof(vlen);
			if (!f->isnull)
			{
				memcpy(p, f->data, f->len);
				p += f->len;
				*p++ = '\0';
			}
		}
	}
	if (tagged)
	{
		int32		nactive = m->has_active ? m->nactive : -1;

		p = put_strs(p, m->tags, m->ntags);
		p = put_strs(p, m->removed_tags, m->nremoved_tags);
		memcpy(p, &nactive, sizeof(nactive));
		p += sizeof(nactive);
		for (int i = 0; i < m->nactive && m->has_active; i++)
			*p++ = m->active[i] ? 1 : 0;
	}
	if (m->ntxids > 0)
	{
		uint64		txid = (uint64) m->txids[0];

		memcpy(p, &txid, sizeof(txid));
		p += sizeof(txid);
	}
	record_end(s, start, p);
}

/*
 * A move event of a subquery shape.  It carries no LSN: in the stream it
 * sits after the changes that came before it, which is where the commit's
 * merge of the shapes' records puts it.
 */
void
ps_spool_add_event(PsSpool *s, const ps_message *m)
{
	size_t		need = 32 + 4;
	uint64		lsn = 0;
	int			start;
	char	   *p;

	for (int i = 0; i < m->npatterns; i++)
		need += 8 + m->patterns[i].value.len;
	p = record_begin(s, need, &start);
	*p++ = m->event == PS_EVENT_MOVE_OUT ? PS_OP_MOVE_OUT : PS_OP_MOVE_IN;
	*p++ = 0;
	memcpy(p, &lsn, sizeof(lsn));
	p += sizeof(lsn);
	p = put_u32(p, 0);			/* op_position */
	p = put_u32(p, 0);			/* fields */
	p = put_u32(p, 0);			/* key */
	*p++ = '\0';
	p = put_u32(p, (uint32) m->npatterns);
	for (int i = 0; i < m->npatterns; i++)
	{
		p = put_u32(p, (uint32) m->patterns[i].pos);
		p = put_u32(p, (uint32) m->patterns[i].value.len);
		memcpy(p, m->patterns[i].value.s, m->patterns[i].value.len);
		p += m->patterns[i].value.len;
	}
	record_end(s, start, p);
}

void
ps_spool_response_done(PsSpool *s)
{
	s->committed += s->pending;
	s->pending = 0;
	/* a table-backed spool keeps nothing in memory between calls */
	if (s->in_table)
		flush(s);
	s->mark = s->file_end + s->wbuf.len;
}

/* Forget the records of a response that did not complete. */
void
ps_spool_response_failed(PsSpool *s)
{
	s->pending = 0;
	if (s->mark >= s->file_end)
		s->wbuf.len = (int) (s->mark - s->file_end);
	else
	{
		/* flushed past the mark: later writes overwrite from there */
		if (s->in_table)
			ps_catalog_spool_truncate(s->subid, s->shape, s->mark);
		s->file_end = s->mark;
		resetStringInfo(&s->wbuf);
	}
}

void
ps_spool_clear(PsSpool *s)
{
	bool		had_blocks = s->in_table && s->file_end > 0;

	s->committed = s->pending = 0;
	s->read_count = 0;
	s->have_peeked = false;
	resetStringInfo(&s->wbuf);
	resetStringInfo(&s->rbuf);
	s->rbuf_off = 0;
	s->file_end = 0;
	s->mark = 0;
	s->base = 0;
	s->consumed_end = 0;
	if (s->in_table)
		ps_catalog_spool_truncate(s->subid, s->shape, 0);
	if (had_blocks)
		ps_catalog_spool_reclaim();
	if (s->file >= 0 && s->high_water > SPOOL_KEEP_BYTES)
	{
		file_close(s);
		s->high_water = 0;
	}
}

int64
ps_spool_count(PsSpool *s)
{
	return s->committed;
}

void
ps_spool_rewind(PsSpool *s)
{
	s->read_count = 0;
	s->have_peeked = false;
	/* everything committed goes to the file, unless it all fits in memory */
	if ((s->file >= 0 || s->in_table) && s->file_end > 0)
		flush(s);
	s->read_pos = s->base;
	s->consumed_end = s->base;
	resetStringInfo(&s->rbuf);
	s->rbuf_off = 0;
}

/* Make len bytes available at rbuf + rbuf_off; returns a pointer to them. */
static const char *
read_bytes(PsSpool *s, size_t len)
{
	if ((s->file < 0 && !s->in_table) || s->file_end == 0)
	{
		/* never flushed: read straight from the write buffer */
		const char *p = s->wbuf.data + s->read_pos;

		if (s->read_pos + (off_t) len > s->wbuf.len)
			ereport(ERROR, (errmsg("pglite_sync: spool is shorter than its records")));
		s->read_pos += len;
		return p;
	}
	if (s->rbuf_off + len > (size_t) s->rbuf.len)
	{
		/* keep the unread tail, then fill up from the file */
		int			tail = s->rbuf.len - s->rbuf_off;
		off_t		file_pos = s->read_pos + s->rbuf.len;
		int			want = (int) Max((size_t) SPOOL_BLOCK, len);
		int			got;

		memmove(s->rbuf.data, s->rbuf.data + s->rbuf_off, tail);
		s->read_pos += s->rbuf_off;
		s->rbuf.len = tail;
		s->rbuf_off = 0;
		enlargeStringInfo(&s->rbuf, want);
		if (file_pos + want > s->file_end)
			want = (int) (s->file_end - file_pos);
		if (s->in_table)
			got = want > 0 ? ps_catalog_spool_read(s->subid, s->shape, file_pos,
												   s->rbuf.data + tail, want) : 0;
		else
			got = want > 0 ? file_read(s, s->rbuf.data + tail, want, file_pos) : 0;
		if (got < 0 || (size_t) (tail + got) < len)
			ereport(ERROR, (errcode_for_file_access(),
							errmsg("pglite_sync: could not read spool file: %m")));
		s->rbuf.len = tail + got;
	}
	s->rbuf_off += len;
	return s->rbuf.data + s->rbuf_off - len;
}

static inline uint32
get_u32(const char **p)
{
	uint32		v;

	memcpy(&v, *p, sizeof(v));
	*p += sizeof(v);
	return v;
}

/* n strings, into *arr (grown in the spool's context) */
static const char *
get_strs(PsSpool *s, const char *p, ps_str **arr, int *n, int offset)
{
	uint32		count = get_u32(&p);

	if (offset + (int) count > s->strs_cap)
	{
		int			cap = Max(offset + (int) count, 16) * 2;

		if (s->rec.tags == NULL)
			s->rec.tags = MemoryContextAlloc(s->cxt, sizeof(ps_str) * cap);
		else
			s->rec.tags = repalloc(s->rec.tags, sizeof(ps_str) * cap);
		s->strs_cap = cap;
	}
	*arr = s->rec.tags + offset;
	for (uint32 i = 0; i < count; i++)
	{
		(*arr)[i].len = get_u32(&p);
		(*arr)[i].s = p;
		p += (*arr)[i].len;
	}
	*n = (int) count;
	return p;
}

/* The tags section of a PS_REC_TAGS record at p; returns its end. */
static const char *
decode_tags(PsSpool *s, const char *p)
{
	PsSpoolRecord *r = &s->rec;
	ps_str	   *tags;
	ps_str	   *removed;
	int32		nactive;

	p = get_strs(s, p, &tags, &r->ntags, 0);
	p = get_strs(s, p, &removed, &r->nremoved_tags, r->ntags);
	/* both live in rec.tags, which get_strs may have moved */
	r->tags = s->rec.tags;
	r->removed_tags = s->rec.tags + r->ntags;
	memcpy(&nactive, p, sizeof(nactive));
	p += sizeof(nactive);
	r->nactive = Max(nactive, 0);
	if (nactive < 0)
	{
		r->active = NULL;
		return p;
	}
	if (nactive > s->bools_cap)
	{
		s->bools_cap = Max(nactive, 16);
		s->rec_active = MemoryContextAlloc(s->cxt, sizeof(bool) * s->bools_cap);
	}
	r->active = s->rec_active;
	for (int i = 0; i < nactive; i++)
		r->active[i] = p[i] != 0;
	return p + nactive;
}

static void
decode_event(PsSpool *s, const char *p)
{
	PsSpoolRecord *r = &s->rec;
	uint32		n = get_u32(&p);

	if ((int) n > s->patterns_cap)
	{
		s->patterns_cap = Max((int) n, 16);
		s->rec_patterns = MemoryContextAlloc(s->cxt, sizeof(ps_pattern) * s->patterns_cap);
	}
	r->patterns = s->rec_patterns;
	r->npatterns = (int) n;
	for (uint32 i = 0; i < n; i++)
	{
		r->patterns[i].pos = (long) get_u32(&p);
		r->patterns[i].value.len = get_u32(&p);
		r->patterns[i].value.s = p;
		p += r->patterns[i].value.len;
	}
}

static void
decode_txid(PsSpoolRecord *r, const char *p)
{
	r->txid = 0;
	if (r->flags & PS_REC_TXID)
		memcpy(&r->txid, p, sizeof(r->txid));
}

static void
decode(PsSpool *s, const char *p)
{
	PsSpoolRecord *r = &s->rec;
	uint32		nfields;

	r->op = p[0];
	r->flags = (uint8) p[1];
	r->raw = (r->flags & PS_REC_RAW) != 0;
	p += 2;
	memcpy(&r->lsn, p, sizeof(r->lsn));
	p += sizeof(r->lsn);
	r->op_position = get_u32(&p);
	nfields = get_u32(&p);
	r->key_len = get_u32(&p);
	r->key = p;
	p += r->key_len + 1;
	r->json = NULL;
	r->json_len = 0;
	r->nfields = nfields;
	r->ntags = r->nremoved_tags = r->nactive = r->npatterns = 0;
	r->active = NULL;
	r->txid = 0;
	if (r->op == PS_OP_MOVE_OUT || r->op == PS_OP_MOVE_IN)
	{
		decode_event(s, p);
		return;
	}
	if (r->raw)
	{
		r->json_len = get_u32(&p);
		r->json = p;
		p += r->json_len + 1;
		if (r->flags & PS_REC_TAGS)
			p = decode_tags(s, p);
		decode_txid(r, p);
		return;
	}
	if ((int) nfields > s->fields_cap)
	{
		s->fields_cap = Max((int) nfields, 16);
		r->fields = MemoryContextAlloc(s->cxt, sizeof(PsSpoolField) * s->fields_cap);
	}
	for (int i = 0; i < nfields; i++)
	{
		PsSpoolField *f = &r->fields[i];
		int32		vlen;

		f->name_len = get_u32(&p);
		f->name = p;
		p += f->name_len;
		memcpy(&vlen, p, sizeof(vlen));
		p += sizeof(vlen);
		if (vlen < 0)
		{
			f->value = NULL;
			f->len = 0;
		}
		else
		{
			f->value = p;
			f->len = (uint32) vlen;
			p += vlen + 1;
		}
	}
	if (r->flags & PS_REC_TAGS)
		p = decode_tags(s, p);
	decode_txid(r, p);
}

bool
ps_spool_peek(PsSpool *s, PsSpoolRecord **rec)
{
	uint32		len;

	if (s->have_peeked)
	{
		*rec = &s->rec;
		return true;
	}
	if (s->read_count >= s->committed)
		return false;
	memcpy(&len, read_bytes(s, sizeof(len)), sizeof(len));
	decode(s, read_bytes(s, len));
	s->have_peeked = true;
	*rec = &s->rec;
	return true;
}

void
ps_spool_consume(PsSpool *s)
{
	Assert(s->have_peeked);
	s->have_peeked = false;
	s->read_count++;
	s->consumed_end = s->read_pos + s->rbuf_off;
}

void
ps_spool_drop_consumed(PsSpool *s)
{
	if (s->read_count == 0)
		return;
	if (s->read_count >= s->committed && s->pending == 0)
	{
		ps_spool_clear(s);
		return;
	}
	s->committed -= s->read_count;
	s->base = s->consumed_end;
	s->read_count = 0;
	s->have_peeked = false;
	if (s->in_table)
		ps_catalog_spool_drop_before(s->subid, s->shape, s->base);
}

int64
ps_spool_remaining(PsSpool *s)
{
	return s->committed - s->read_count;
}

int64
ps_spool_bytes(PsSpool *s)
{
	return (int64) (s->file_end + s->wbuf.len - s->base);
}

bool
ps_spool_has_upto(PsSpool *s, uint64 lsn)
{
	PsSpoolRecord *rec;

	if (s->committed == 0)
		return false;
	/* records are in log order: the first one is the lowest */
	ps_spool_rewind(s);
	return ps_spool_peek(s, &rec) && rec->lsn <= lsn;
}
