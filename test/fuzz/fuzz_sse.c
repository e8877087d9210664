/*
 * fuzz_sse.c
 *	  libFuzzer target: ps_sse_feed, and ps_message_parse plus the tag rules
 *	  (ps_tag_*) on every event that comes out.
 *
 * Input: 3 parameter bytes, then the stream.
 *   byte 0: bit 7 set = max_event of 1 + (bits 0-6) * 8 bytes, else unlimited
 *   bytes 1-2: seed of the piece sizes (0..64 bytes, empty pieces included)
 *
 * The stream is fed in one piece, one byte at a time, and in seeded pieces,
 * each piece its own heap block.  Checks:
 *  - the three feedings give the same return code, the same events (byte
 *    for byte) and the same comment count;
 *  - an event's data never holds a CR, and never more bytes than the input;
 *  - a reference parser written here, line by line, agrees when no limit is
 *    set;
 *  - each event that parses as a message with tags and patterns goes
 *    through the tag rules: entries never duplicate, a move-out leaving no
 *    entries (without active conditions) says the row leaves the shape.
 */
#include <stdint.h>

#include "fuzz_common.h"
#include "message.h"
#include "ps_alloc.h"
#include "sse.h"
#include "tags.h"

typedef struct run
{
	char	  **ev;
	size_t	   *len;
	int			n;
	int			rc;
	long		comments;
} run;

static ps_message g_msg;

static void
check_tags(const ps_message *m)
{
	ps_tag_row	r;
	bool		act[64];
	bool		out;

	if (!m->has_tags)
		return;
	memset(&r, 0, sizeof(r));
	r.tags = m->tags;
	r.ntags = m->ntags;
	/* an empty active_conditions leaves m->active NULL: nothing to copy */
	if (m->has_active && m->nactive > 0 && m->nactive <= 64)
	{
		memcpy(act, m->active, sizeof(bool) * m->nactive);
		r.active = act;
		r.nactive = m->nactive;
	}
	ps_tag_add_entries(&r, m->tags, m->ntags);
	for (int i = 0; i < r.nentries; i++)
		for (int k = i + 1; k < r.nentries; k++)
			FUZZ_CHECK(strcmp(r.entries[i], r.entries[k]) != 0, "duplicate entry %s", r.entries[i]);
	ps_tag_remove_entries(&r, m->removed_tags, m->nremoved_tags);
	if (m->npatterns > 0)
	{
		bool		matched = ps_tag_matches(&r, m->patterns, m->npatterns);

		out = ps_tag_move_out(&r, m->patterns, m->npatterns);
		FUZZ_CHECK(matched || !out, "a row left on a move-out that matched nothing");
		if (r.active == NULL)
			FUZZ_CHECK(out == (matched && r.nentries == 0), "leaving != no entries left");
		ps_tag_move_in(&r, m->patterns, m->npatterns);
	}
	ps_tag_row_free(&r);
}

static int
collect(void *arg, const char *data, size_t len)
{
	run		   *r = arg;

	for (size_t i = 0; i < len; i++)
		FUZZ_CHECK(data[i] != '\r', "CR in event data");
	r->ev = realloc(r->ev, sizeof(char *) * (r->n + 1));
	r->len = realloc(r->len, sizeof(size_t) * (r->n + 1));
	r->ev[r->n] = malloc(len + 1);
	memcpy(r->ev[r->n], data, len);
	r->len[r->n] = len;
	r->n++;
	if (ps_message_parse(&g_msg, data, len) == 0)
		check_tags(&g_msg);
	return 0;
}

static void
feed(run *r, const uint8_t *p, size_t n, size_t max, int mode, uint16_t seed)
{
	ps_sse		s;
	size_t		i = 0;
	int			empties = 0;

	memset(r, 0, sizeof(*r));
	ps_sse_init(&s, max);
	while (i < n && r->rc == 0)
	{
		size_t		piece = mode == 0 ? n : mode == 1 ? 1 : (seed = seed * 31 + 7) % 65;
		char	   *blk;

		if (piece > n - i)
			piece = n - i;
		/* empty pieces are fed too, but not forever */
		if (piece == 0 && ++empties > 3)
			piece = 1;
		if (piece > 0)
			empties = 0;
		blk = malloc(piece ? piece : 1);
		memcpy(blk, p + i, piece);
		r->rc = ps_sse_feed(&s, blk, piece, collect, r, NULL);
		free(blk);
		i += piece;
	}
	r->comments = s.ncomments;
	ps_sse_free(&s);
}

/* The reference: split into lines on CRLF/CR/LF, then the standard's rules. */
static void
reference(run *r, const uint8_t *p, size_t n)
{
	ps_strbuf	data;
	size_t		i = 0;
	bool		has = false;

	memset(r, 0, sizeof(*r));
	ps_strbuf_init(&data);
	while (i < n)
	{
		size_t		start = i;
		size_t		end;

		while (i < n && p[i] != '\r' && p[i] != '\n')
			i++;
		if (i == n)
			break;				/* an unterminated line never counts */
		end = i;
		if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
			i++;
		i++;
		if (end == start)
		{
			if (has)
			{
				size_t		dl = data.len;

				if (dl && data.data[dl - 1] == '\n')
					dl--;
				collect(r, data.data ? data.data : "", dl);
			}
			ps_strbuf_reset(&data);
			has = false;
		}
		else if (p[start] == ':')
			r->comments++;
		else if (end - start >= 4 && memcmp(p + start, "data", 4) == 0 &&
				 (end - start == 4 || p[start + 4] == ':'))
		{
			size_t		v = end - start > 4 ? start + 5 : end;

			if (v < end && p[v] == ' ')
				v++;
			ps_strbuf_append(&data, (const char *) p + v, end - v);
			ps_strbuf_putc(&data, '\n');
			has = true;
		}
	}
	ps_strbuf_free(&data);
}

static void
same(const run *a, const run *b, const char *what)
{
	FUZZ_CHECK(a->rc == b->rc, "%s: rc %d vs %d", what, a->rc, b->rc);
	FUZZ_CHECK(a->n == b->n, "%s: %d vs %d events", what, a->n, b->n);
	for (int i = 0; i < a->n; i++)
		FUZZ_CHECK(a->len[i] == b->len[i] && memcmp(a->ev[i], b->ev[i], a->len[i]) == 0,
				   "%s: event %d differs", what, i);
	if (a->rc == 0 && b->rc == 0)
		FUZZ_CHECK(a->comments == b->comments, "%s: comments %ld vs %ld", what, a->comments, b->comments);
}

static void
release(run *r)
{
	for (int i = 0; i < r->n; i++)
		free(r->ev[i]);
	free(r->ev);
	free(r->len);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t		max;
	uint16_t	seed;
	run			one,
				bytes,
				pieces,
				ref;

	if (size < 3)
		return 0;
	max = (data[0] & 0x80) ? 1 + (size_t) (data[0] & 0x7f) * 8 : 0;
	seed = (uint16_t) (data[1] | (data[2] << 8));
	data += 3;
	size -= 3;

	feed(&one, data, size, max, 0, seed);
	feed(&bytes, data, size, max, 1, seed);
	feed(&pieces, data, size, max, 2, seed);
	same(&one, &bytes, "one piece vs bytes");
	same(&one, &pieces, "one piece vs pieces");
	for (int i = 0; i < one.n; i++)
		FUZZ_CHECK(one.len[i] <= size, "event longer than the input");
	if (max == 0)
	{
		reference(&ref, data, size);
		same(&one, &ref, "parser vs reference");
		release(&ref);
	}
	release(&one);
	release(&bytes);
	release(&pieces);
	return 0;
}
