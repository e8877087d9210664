/*
 * spool.c
 *	  Temporary-file spool of change records (see spool.h).
 *
 * Record layout: uint32 length of the rest, then
 *   op (1 byte), raw flag (1), uint32 nfields, uint32 key length, key, '\0',
 *   per field: uint32 name length, name, int32 value length (-1 = NULL),
 *   value, '\0'.
 * A raw record (map_function subscriptions) has no fields and carries the
 * message JSON after the key instead.  Values keep a NUL terminator so the
 * type input functions can read them in place.
 */
#include "spool.h"

#include "lib/stringinfo.h"
#include "storage/buffile.h"
#include "utils/memutils.h"

/* a spool this large is deleted after use rather than rewound */
#define SPOOL_KEEP_BYTES (64 * 1024 * 1024)

struct PsSpool
{
	MemoryContext cxt;
	BufFile    *file;
	int64		committed;		/* records of complete responses */
	int64		pending;		/* records of the response being read */
	int			mark_fileno;	/* end of the committed records */
	off_t		mark_offset;
	int64		bytes;

	/* reading */
	int64		read_count;
	bool		have_peeked;
	StringInfoData buf;
	PsSpoolRecord rec;
	int			fields_cap;
	StringInfoData wbuf;		/* record being written */
};

PsSpool *
ps_spool_create(MemoryContext cxt)
{
	PsSpool    *s = MemoryContextAllocZero(cxt, sizeof(PsSpool));
	MemoryContext old = MemoryContextSwitchTo(cxt);

	s->cxt = cxt;
	initStringInfo(&s->buf);
	initStringInfo(&s->wbuf);
	MemoryContextSwitchTo(old);
	return s;
}

/* Close and delete the temporary file; the memory goes with its context. */
void
ps_spool_destroy(PsSpool *s)
{
	if (s->file)
		BufFileClose(s->file);
	s->file = NULL;
}

static void
ensure_file(PsSpool *s)
{
	if (s->file == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(s->cxt);

		/* interXact: the spool outlives the transactions between requests */
		s->file = BufFileCreateTemp(true);
		s->mark_fileno = 0;
		s->mark_offset = 0;
		MemoryContextSwitchTo(old);
	}
}

static inline void
put_u32(StringInfo b, uint32 v)
{
	appendBinaryStringInfo(b, (char *) &v, sizeof(v));
}

void
ps_spool_add(PsSpool *s, const ps_message *m, const char *json, size_t json_len,
			 bool raw)
{
	StringInfo	b = &s->wbuf;
	uint32		nfields = raw ? 0 : (uint32) m->nvalue;
	uint32		total;

	ensure_file(s);
	resetStringInfo(b);
	put_u32(b, 0);				/* length, patched below */
	appendStringInfoChar(b, (char) m->op);
	appendStringInfoChar(b, raw ? 1 : 0);
	appendBinaryStringInfo(b, (char *) &nfields, sizeof(nfields));
	put_u32(b, (uint32) m->key_len);
	appendBinaryStringInfo(b, m->key ? m->key : "", m->key_len);
	appendStringInfoChar(b, '\0');
	if (raw)
	{
		put_u32(b, (uint32) json_len);
		appendBinaryStringInfo(b, json, json_len);
		appendStringInfoChar(b, '\0');
	}
	else
	{
		for (int i = 0; i < m->nvalue; i++)
		{
			const ps_field *f = &m->value[i];
			int32		vlen = f->isnull ? -1 : (int32) f->len;

			put_u32(b, (uint32) f->name_len);
			appendBinaryStringInfo(b, f->name, f->name_len);
			appendBinaryStringInfo(b, (char *) &vlen, sizeof(vlen));
			if (!f->isnull)
			{
				appendBinaryStringInfo(b, f->data, f->len);
				appendStringInfoChar(b, '\0');
			}
		}
	}
	total = b->len - sizeof(uint32);
	memcpy(b->data, &total, sizeof(total));
	BufFileWrite(s->file, b->data, b->len);
	s->bytes += b->len;
	s->pending++;
}

void
ps_spool_response_done(PsSpool *s)
{
	s->committed += s->pending;
	s->pending = 0;
	if (s->file)
		BufFileTell(s->file, &s->mark_fileno, &s->mark_offset);
}

void
ps_spool_response_failed(PsSpool *s)
{
	s->pending = 0;
	if (s->file && BufFileSeek(s->file, s->mark_fileno, s->mark_offset, SEEK_SET) != 0)
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("pglite_sync: could not seek in spool file")));
}

void
ps_spool_clear(PsSpool *s)
{
	s->committed = s->pending = 0;
	s->read_count = 0;
	s->have_peeked = false;
	if (s->file)
	{
		if (s->bytes > SPOOL_KEEP_BYTES)
		{
			BufFileClose(s->file);
			s->file = NULL;
		}
		else if (BufFileSeek(s->file, 0, 0, SEEK_SET) != 0)
			ereport(ERROR, (errcode_for_file_access(),
							errmsg("pglite_sync: could not seek in spool file")));
	}
	s->bytes = 0;
	s->mark_fileno = 0;
	s->mark_offset = 0;
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
	if (s->file && BufFileSeek(s->file, 0, 0, SEEK_SET) != 0)
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("pglite_sync: could not seek in spool file")));
}

static void
read_exact(PsSpool *s, void *dst, size_t len)
{
	if (BufFileRead(s->file, dst, len) != len)
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("pglite_sync: could not read spool file")));
}

static inline uint32
get_u32(const char **p)
{
	uint32		v;

	memcpy(&v, *p, sizeof(v));
	*p += sizeof(v);
	return v;
}

static void
decode(PsSpool *s)
{
	const char *p = s->buf.data;
	PsSpoolRecord *r = &s->rec;
	uint32		nfields;

	r->op = p[0];
	r->raw = p[1] != 0;
	memcpy(&nfields, p + 2, sizeof(nfields));
	p += 2 + sizeof(nfields);
	r->key_len = get_u32(&p);
	r->key = p;
	p += r->key_len + 1;
	r->json = NULL;
	r->json_len = 0;
	r->nfields = nfields;
	if (r->raw)
	{
		r->json_len = get_u32(&p);
		r->json = p;
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
	read_exact(s, &len, sizeof(len));
	resetStringInfo(&s->buf);
	enlargeStringInfo(&s->buf, (int) len + 1);
	read_exact(s, s->buf.data, len);
	s->buf.len = len;
	decode(s);
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
}
