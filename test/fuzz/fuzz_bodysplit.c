/*
 * fuzz_bodysplit.c
 *	  libFuzzer target: ps_bodysplit_feed/finish, and ps_message_parse on every
 *	  message that comes out.
 *
 * Input: 4 parameter bytes, then the response body.
 *   byte 0: bit 7 set = max_message of 1 + (bits 0-6) * 8 bytes, else unlimited
 *   byte 1: 1..32 = the callback asks to stop after that many messages
 *   bytes 2-3: seed of the piece sizes (0..64 bytes, empty pieces included)
 *
 * The body is fed three ways: in one piece, one byte at a time, and in
 * pieces whose sizes come from the seed; every piece is a separate heap
 * block of exactly its size, so reading past a piece is an ASan report.
 * Checks:
 *  - the three feedings give the same return codes, the same error text, the
 *    same nmessages and byte-for-byte the same messages;
 *  - in one piece, each message points into the body, in order and without
 *    overlap, starts with '{' and ends with '}' or ']', respects max_message;
 *  - nmessages equals the number of callbacks, which is at most the number
 *    of '{' in the body and at most the stop count; a stop returns the
 *    callback's value;
 *  - if jansson reads the body as an array of objects (and there is no limit
 *    or stop), the splitter accepts it with exactly that many messages;
 *    conversely, if the splitter accepts the body and ps_message_parse accepts
 *    every message, jansson accepts the body as an array of that length;
 *  - ps_message_parse of every message checks the ASan/UBSan side (its own
 *    invariants are fuzz_message's job).
 */
#include <stdint.h>

#include "bodysplit.h"
#include "fuzz_common.h"
#include "json.h"
#include "message.h"
#include "ps_alloc.h"

#define STOP_RC 4242

typedef struct run
{
	/* parameters */
	int			stop_after;
	size_t		max_message;
	const char *body;			/* set only for the one-piece feeding */
	size_t		bodylen;
	/* results */
	char	  **msgs;
	size_t	   *lens;
	int			n;
	int			cap;
	size_t		last_end;
	int			nparsed_ok;
	int			rc;
	int			finish_rc;
	long		nmessages;
	char		error[160];
} run;

static ps_message g_msg;

static int
on_message(void *arg, const char *json, size_t len)
{
	run		   *r = arg;

	FUZZ_CHECK(len >= 2, "message of %zu bytes", len);
	FUZZ_CHECK(json[0] == '{', "message starts with '%c'", json[0]);
	FUZZ_CHECK(json[len - 1] == '}' || json[len - 1] == ']', "message ends with '%c'", json[len - 1]);
	if (r->max_message)
		FUZZ_CHECK(len <= r->max_message, "message of %zu bytes over the limit %zu", len, r->max_message);
	if (r->body)
	{
		FUZZ_CHECK(fuzz_in(json, len, r->body, r->bodylen), "message outside the body");
		FUZZ_CHECK((size_t) (json - r->body) >= r->last_end, "messages overlap or go backwards");
		r->last_end = (json - r->body) + len;
	}
	if (r->n == r->cap)
	{
		r->cap = r->cap ? r->cap * 2 : 16;
		r->msgs = realloc(r->msgs, sizeof(char *) * r->cap);
		r->lens = realloc(r->lens, sizeof(size_t) * r->cap);
		if (!r->msgs || !r->lens)
			abort();
	}
	r->msgs[r->n] = fuzz_copy(json, len);
	r->lens[r->n] = len;
	r->n++;

	if (ps_message_parse(&g_msg, json, len) == 0)
		r->nparsed_ok++;

	if (r->stop_after && r->n >= r->stop_after)
		return STOP_RC;
	return 0;
}

/* the parsing variant (as the worker uses it): the parser measures messages */
static bool g_parsing = false;
static ps_message g_pmsg;

#define PARSE_FAIL_RC 91

static int
on_message_parsing(void *arg, const char *data, size_t len, bool exact, size_t *used)
{
	int			rc = exact ? ps_message_parse(&g_pmsg, data, len) :
		ps_message_parse_prefix(&g_pmsg, data, len, used);

	if (rc < 0)
		return exact ? PARSE_FAIL_RC : PS_SPLIT_UNSURE;
	if (!exact)
		FUZZ_CHECK(*used >= 2 && *used <= len, "prefix parse used %zu of %zu", *used, len);
	return on_message(arg, data, exact ? len : *used);
}

static int
feed_piece(ps_bodysplit *s, const char *piece, size_t n, run *r)
{
	if (g_parsing)
		return ps_bodysplit_feed_parsing(s, piece, n, on_message_parsing, r);
	return ps_bodysplit_feed(s, piece, n, on_message, r);
}

static uint32_t
lcg(uint32_t *state)
{
	*state = *state * 1103515245u + 12345u;
	return (*state >> 16) & 0x7fff;
}

/* piece: 0 = one piece, 1 = one byte at a time, 2 = sizes from seed */
static void
feed(run *r, const char *body, size_t len, int mode, uint32_t seed)
{
	ps_bodysplit s;
	size_t		i = 0;
	int			rc = 0;

	ps_bodysplit_init(&s, r->max_message);
	if (mode == 0)
	{
		char	   *piece = fuzz_copy(body, len);

		r->body = piece;
		r->bodylen = len;
		rc = feed_piece(&s, piece, len, r);
		r->body = NULL;
		free(piece);
	}
	else if (mode == 1)
	{
		/* one heap byte, refilled: a read past it is still an ASan report */
		char	   *piece = fuzz_copy("", 1);

		for (; i < len && rc == 0; i++)
		{
			piece[0] = body[i];
			rc = feed_piece(&s, piece, 1, r);
		}
		free(piece);
	}
	else
	{
		while (i < len && rc == 0)
		{
			uint32_t	x = lcg(&seed);
			size_t		n;
			char	   *piece;

			n = (x % 8 == 0) ? 0 : (x % 4 == 0) ? 1 + x % 64 : 1 + x % 7;
			if (n > len - i)
				n = len - i;
			piece = fuzz_copy(body + i, n);
			rc = feed_piece(&s, piece, n, r);
			free(piece);
			i += n;
		}
	}
	r->rc = rc;
	r->finish_rc = (rc == 0) ? ps_bodysplit_finish(&s) : rc;
	/* a failed splitter stays failed */
	if (rc == -1)
		FUZZ_CHECK(feed_piece(&s, "[", 1, r) == -1, "feed after an error succeeded");
	r->nmessages = s.nmessages;
	memcpy(r->error, s.error, sizeof(r->error));
	FUZZ_CHECK(memchr(s.error, '\0', sizeof(s.error)) != NULL, "error not terminated");
	ps_bodysplit_free(&s);
}

static void
free_run(run *r)
{
	for (int i = 0; i < r->n; i++)
		free(r->msgs[i]);
	free(r->msgs);
	free(r->lens);
}

static void
same_run(const run *a, const run *b, const char *how)
{
	FUZZ_CHECK(a->rc == b->rc, "%s: rc %d, one piece %d", how, b->rc, a->rc);
	FUZZ_CHECK(a->finish_rc == b->finish_rc, "%s: finish %d, one piece %d", how, b->finish_rc, a->finish_rc);
	FUZZ_CHECK(a->nmessages == b->nmessages, "%s: %ld messages, one piece %ld", how, b->nmessages, a->nmessages);
	FUZZ_CHECK(strcmp(a->error, b->error) == 0, "%s: error \"%s\", one piece \"%s\"", how, b->error, a->error);
	FUZZ_CHECK(a->n == b->n, "%s: %d callbacks, one piece %d", how, b->n, a->n);
	for (int i = 0; i < a->n; i++)
		FUZZ_CHECK(a->lens[i] == b->lens[i] && memcmp(a->msgs[i], b->msgs[i], a->lens[i]) == 0,
				   "%s: message %d differs: \"%.*s\" vs \"%.*s\"", how, i,
				   (int) b->lens[i], b->msgs[i], (int) a->lens[i], a->msgs[i]);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void) argc;
	(void) argv;
	json_set_alloc_funcs(ps_malloc, ps_free);
	ps_message_init(&g_msg);
	ps_message_init(&g_pmsg);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	run			one = {0},
				bytes = {0},
				pieces = {0};
	const char *body;
	size_t		len;
	uint32_t	seed;
	size_t		nbraces = 0;

	if (size < 4)
		return 0;
	body = (const char *) data + 4;
	len = size - 4;
	seed = data[2] | (data[3] << 8);
	one.max_message = (data[0] & 0x80) ? 1 + (size_t) (data[0] & 0x7f) * 8 : 0;
	one.stop_after = (data[1] >= 1 && data[1] <= 32) ? data[1] : 0;
	bytes.max_message = pieces.max_message = one.max_message;
	bytes.stop_after = pieces.stop_after = one.stop_after;

	feed(&one, body, len, 0, seed);
	feed(&bytes, body, len, 1, seed);
	feed(&pieces, body, len, 2, seed);
	same_run(&one, &bytes, "byte by byte");
	same_run(&one, &pieces, "in pieces");

	/* counts */
	for (size_t i = 0; i < len; i++)
		nbraces += (body[i] == '{');
	FUZZ_CHECK(one.nmessages == one.n, "nmessages %ld but %d callbacks", one.nmessages, one.n);
	FUZZ_CHECK((size_t) one.n <= nbraces, "%d messages from %zu '{'", one.n, nbraces);
	FUZZ_CHECK(one.rc == 0 || one.rc == -1 || one.rc == STOP_RC, "rc %d", one.rc);
	if (one.stop_after)
	{
		FUZZ_CHECK(one.n <= one.stop_after, "%d messages after a stop at %d", one.n, one.stop_after);
		FUZZ_CHECK((one.rc == STOP_RC) == (one.n == one.stop_after), "stop rc %d with %d messages", one.rc, one.n);
	}
	if (one.rc == -1 || one.finish_rc == -1)
		FUZZ_CHECK(one.error[0] != '\0', "failure without an error message");
	else
		FUZZ_CHECK(one.error[0] == '\0', "error \"%s\" without a failure", one.error);

	/* differential against jansson */
	if (one.max_message == 0 && one.stop_after == 0)
	{
		json_error_t je;
		json_t	   *root = json_loadb(body, len, 0, &je);
		bool		all_objects = root && json_is_array(root);

		for (size_t i = 0; all_objects && i < json_array_size(root); i++)
			all_objects = json_is_object(json_array_get(root, i));
		if (all_objects)
			FUZZ_CHECK(one.rc == 0 && one.finish_rc == 0 && (size_t) one.n == json_array_size(root),
					   "jansson reads an array of %zu objects; splitter rc %d/%d with %d messages (%s)",
					   json_array_size(root), one.rc, one.finish_rc, one.n, one.error);
		if (one.rc == 0 && one.finish_rc == 0 && one.n > 0 && one.nparsed_ok == one.n)
		{
			FUZZ_CHECK(root != NULL || json_error_code(&je) == json_error_numeric_overflow,
					   "splitter and message parser accept a body jansson rejects: %s", je.text);
			if (root)
				FUZZ_CHECK(json_is_array(root) && json_array_size(root) == (size_t) one.n,
						   "jansson sees %zu elements, splitter %d", json_array_size(root), one.n);
		}
		json_decref(root);
	}

	/*
	 * The parsing variant: when every message is valid, the same messages in
	 * every feeding; otherwise it fails where a message is malformed.
	 */
	{
		run			p_one = {0},
					p_bytes = {0},
					p_pieces = {0};

		p_one.max_message = p_bytes.max_message = p_pieces.max_message = one.max_message;
		p_one.stop_after = p_bytes.stop_after = p_pieces.stop_after = one.stop_after;
		g_parsing = true;
		feed(&p_one, body, len, 0, seed);
		feed(&p_bytes, body, len, 1, seed);
		feed(&p_pieces, body, len, 2, seed);
		g_parsing = false;
		same_run(&p_one, &p_bytes, "parsing, byte by byte");
		same_run(&p_one, &p_pieces, "parsing, in pieces");
		if (one.nparsed_ok == one.n && one.rc != PARSE_FAIL_RC)
			same_run(&one, &p_one, "parsing variant");
		else
			FUZZ_CHECK(p_one.rc == PARSE_FAIL_RC || p_one.rc == -1 || p_one.rc == STOP_RC || p_one.n <= one.n,
					   "parsing variant accepted an invalid message (rc %d)", p_one.rc);
		free_run(&p_one);
		free_run(&p_bytes);
		free_run(&p_pieces);
	}

	free_run(&one);
	free_run(&bytes);
	free_run(&pieces);
	return 0;
}
