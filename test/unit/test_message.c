/* Unit tests: parsing one shape-log message. */
#include <stdlib.h>

#include "message.h"
#include "unit.h"

static int
parse(ps_message *m, const char *s)
{
	return ps_message_parse(m, s, strlen(s));
}

static int
split(ps_message *m, const char *s, ps_str *meta, ps_str *data)
{
	return ps_subset_answer_split(m, s, strlen(s), meta, data);
}

int
main(void)
{
	ps_message	m;
	const ps_field *f;

	ps_message_init(&m);

	/* a snapshot row */
	CHECK(parse(&m, "{\"key\":\"\\\"public\\\".\\\"items\\\"/\\\"42\\\"\","
				"\"value\":{\"id\":\"42\",\"title\":\"h\\u00e9\\n\\\"x\\\"\",\"n\":null,\"b\":\"true\"},"
				"\"headers\":{\"operation\":\"insert\",\"relation\":[\"public\",\"items\"]}}") == 0);
	CHECK(m.kind == PS_MSG_CHANGE);
	CHECK(m.op == PS_OP_INSERT);
	CHECK_MEM(m.key, m.key_len, "\"public\".\"items\"/\"42\"");
	CHECK(m.nvalue == 4);
	f = ps_message_find(m.value, m.nvalue, "title", 5);
	CHECK(f && f->is_string);
	CHECK_MEM(f->data, f->len, "h\xc3\xa9\n\"x\"");
	f = ps_message_find(m.value, m.nvalue, "n", 1);
	CHECK(f && f->isnull);
	CHECK(ps_message_find(m.value, m.nvalue, "zz", 2) == NULL);
	CHECK(m.lsn == NULL && !m.has_op_position);

	/* a live update with lsn, op_position, txids, last, old_value */
	CHECK(parse(&m, "{\"headers\":{\"operation\":\"update\",\"lsn\":\"26800584\","
				"\"op_position\":4,\"txids\":[7613],\"last\":true},"
				"\"key\":\"k\",\"value\":{\"id\":\"1\",\"done\":\"t\"},"
				"\"old_value\":{\"done\":\"f\"}}") == 0);
	CHECK(m.kind == PS_MSG_CHANGE && m.op == PS_OP_UPDATE);
	CHECK_MEM(m.lsn, m.lsn_len, "26800584");
	CHECK(m.has_op_position && m.op_position == 4);
	CHECK(m.last);
	CHECK(m.has_old_value && m.nold_value == 1);
	CHECK_MEM(m.old_value[0].data, m.old_value[0].len, "f");

	/* numeric lsn, non-string values kept as raw JSON */
	CHECK(parse(&m, "{\"key\":\"k\",\"value\":{\"a\":12.5e3,\"o\":{\"x\":[1,2]},\"t\":true},"
				"\"headers\":{\"operation\":\"delete\",\"lsn\":123}}") == 0);
	CHECK(m.op == PS_OP_DELETE);
	CHECK_MEM(m.lsn, m.lsn_len, "123");
	CHECK_MEM(m.value[0].data, m.value[0].len, "12.5e3");
	CHECK(!m.value[0].is_string);
	CHECK_MEM(m.value[1].data, m.value[1].len, "{\"x\":[1,2]}");
	CHECK_MEM(m.value[2].data, m.value[2].len, "true");

	/* control messages */
	CHECK(parse(&m, "{\"headers\":{\"control\":\"up-to-date\",\"global_last_seen_lsn\":\"99\"}}") == 0);
	CHECK(m.kind == PS_MSG_CONTROL && m.control == PS_CTL_UP_TO_DATE);
	CHECK_MEM(m.global_lsn, m.global_lsn_len, "99");
	CHECK(parse(&m, "{\"headers\":{\"control\":\"must-refetch\"}}") == 0);
	CHECK(m.control == PS_CTL_MUST_REFETCH);
	CHECK(parse(&m, "{\"headers\":{\"control\":\"snapshot-end\",\"xmin\":\"1\",\"xip_list\":[]}}") == 0);
	CHECK(m.control == PS_CTL_SNAPSHOT_END);
	CHECK(parse(&m, "{\"headers\":{\"control\":\"something-new\"}}") == 0);
	CHECK(m.control == PS_CTL_OTHER);
	CHECK(parse(&m, "{\"headers\":{\"event\":\"move-out\",\"patterns\":[{\"pos\":0,\"value\":\"x\"}]}}") == 0);
	CHECK(m.kind == PS_MSG_EVENT);
	CHECK(parse(&m, "{}") == 0 && m.kind == PS_MSG_UNKNOWN);

	/* a change with an unknown operation is still a change (op NONE) */
	CHECK(parse(&m, "{\"key\":\"k\",\"headers\":{\"operation\":\"upsert\"}}") == 0);
	CHECK(m.kind == PS_MSG_CHANGE && m.op == PS_OP_NONE);
	CHECK_MEM(m.operation, m.operation_len, "upsert");

	/* surrogate pairs and escapes */
	CHECK(parse(&m, "{\"key\":\"\\ud83d\\ude00\\/\\t\",\"headers\":{}}") == 0);
	CHECK_MEM(m.key, m.key_len, "\xf0\x9f\x98\x80/\t");

	/* malformed input is rejected, never half-read */
	CHECK(parse(&m, "{\"key\":\"a\",}") == -1);
	CHECK(parse(&m, "{\"key\":\"a\"") == -1);
	CHECK(parse(&m, "{\"key\":1}") == -1);
	CHECK(parse(&m, "{\"value\":{\"a\":\"x\"}") == -1);
	CHECK(parse(&m, "{\"value\":{\"a\":tru}}") == -1);
	CHECK(parse(&m, "{\"value\":{\"a\":01}}") == -1);
	CHECK(parse(&m, "{\"value\":{\"a\":\"\\ud800\"}}") == -1);
	CHECK(strstr(m.error, "surrogate") != NULL);
	CHECK(m.error_unstorable);
	CHECK(parse(&m, "{\"value\":{\"a\":\"\\u0000\"}}") == -1);
	CHECK(m.error_unstorable);	/* valid JSON: a data error, not a broken body */
	CHECK(parse(&m, "{\"value\":{\"a\":\"\\q\"}}") == -1);
	CHECK(!m.error_unstorable);
	CHECK(parse(&m, "{\"value\":{\"a\":\"x\ty\"}}") == -1);
	CHECK(parse(&m, "{\"value\":{\"a\":\"\xc3\x28\"}}") == -1);
	CHECK(strstr(m.error, "UTF-8") != NULL);
	CHECK(parse(&m, "{\"value\":{\"a\":\"\xed\xa0\x80\"}}") == -1);	/* encoded surrogate */
	CHECK(parse(&m, "{\"value\":{\"a\":\"\xe0\x80\x80\"}}") == -1);	/* overlong */
	CHECK(parse(&m, "[1]") == -1);
	CHECK(parse(&m, "{} x") == -1);
	CHECK(parse(&m, "{\"headers\":{\"op_position\":\"x\"},\"key\":\"k\"}") == 0);
	CHECK(!m.has_op_position);
	{
		/* deep nesting is refused rather than recursing without bound */
		char		deep[400];
		int			n = 0;

		n += sprintf(deep + n, "{\"x\":");
		for (int i = 0; i < 100; i++)
			deep[n++] = '[';
		for (int i = 0; i < 100; i++)
			deep[n++] = ']';
		deep[n++] = '}';
		deep[n] = '\0';
		CHECK(parse(&m, deep) == -1);
	}

	/* many fields (the field array grows while parsing) */
	{
		char		big[20000];
		int			n = sprintf(big, "{\"key\":\"k\",\"value\":{");

		for (int i = 0; i < 500; i++)
			n += sprintf(big + n, "%s\"c%d\":\"v\\n%d\"", i ? "," : "", i, i);
		n += sprintf(big + n, "},\"headers\":{\"operation\":\"insert\"}}");
		CHECK(parse(&m, big) == 0);
		CHECK(m.nvalue == 500);
		CHECK_MEM(m.value[499].name, m.value[499].name_len, "c499");
		CHECK_MEM(m.value[499].data, m.value[499].len, "v\n499");
	}

	/* subquery shapes: tags, removed tags, active conditions, txids */
	CHECK(parse(&m, "{\"key\":\"k\",\"value\":{\"id\":\"1\"},\"headers\":{\"operation\":\"update\","
				"\"tags\":[\"h1/\",\"/1\"],\"removed_tags\":[\"h0/\"],\"active_conditions\":[true,false],"
				"\"txids\":[7613,\"4294967296\"],\"is_move_in\":true}}") == 0);
	CHECK(m.kind == PS_MSG_CHANGE && m.has_tags && m.ntags == 2);
	CHECK_MEM(m.tags[0].s, m.tags[0].len, "h1/");
	CHECK_MEM(m.tags[1].s, m.tags[1].len, "/1");
	CHECK(m.nremoved_tags == 1);
	CHECK_MEM(m.removed_tags[0].s, m.removed_tags[0].len, "h0/");
	CHECK(m.has_active && m.nactive == 2 && m.active[0] && !m.active[1]);
	CHECK(m.ntxids == 2 && m.txids[0] == 7613 && m.txids[1] == 4294967296ULL);
	CHECK(m.is_move_in);

	/* an empty tag list is still "tagged"; the next message resets it all */
	CHECK(parse(&m, "{\"key\":\"k\",\"value\":{},\"headers\":{\"operation\":\"insert\",\"tags\":[]}}") == 0);
	CHECK(m.has_tags && m.ntags == 0 && m.tags == NULL);
	CHECK(parse(&m, "{\"key\":\"k\",\"value\":{},\"headers\":{\"operation\":\"insert\"}}") == 0);
	CHECK(!m.has_tags && !m.has_active && m.ntxids == 0 && !m.is_move_in);

	/* move events with patterns */
	CHECK(parse(&m, "{\"headers\":{\"event\":\"move-out\",\"patterns\":[{\"pos\":0,\"value\":\"abc\"},"
				"{\"value\":\"d\\\"e\",\"pos\":1}],\"txids\":[9]}}") == 0);
	CHECK(m.kind == PS_MSG_EVENT && m.event == PS_EVENT_MOVE_OUT);
	CHECK(m.npatterns == 2 && m.patterns[0].pos == 0 && m.patterns[1].pos == 1);
	CHECK_MEM(m.patterns[0].value.s, m.patterns[0].value.len, "abc");
	CHECK_MEM(m.patterns[1].value.s, m.patterns[1].value.len, "d\"e");
	CHECK(parse(&m, "{\"headers\":{\"event\":\"move-in\",\"patterns\":[]}}") == 0);
	CHECK(m.event == PS_EVENT_MOVE_IN && m.npatterns == 0);
	CHECK(parse(&m, "{\"headers\":{\"event\":\"something-new\"}}") == 0);
	CHECK(m.kind == PS_MSG_EVENT && m.event == PS_EVENT_OTHER);

	/* malformed arrays are errors, not ignored */
	CHECK(parse(&m, "{\"key\":\"k\",\"value\":{},\"headers\":{\"tags\":[1]}}") < 0);
	CHECK(parse(&m, "{\"key\":\"k\",\"value\":{},\"headers\":{\"active_conditions\":[\"t\"]}}") < 0);
	CHECK(parse(&m, "{\"headers\":{\"event\":\"move-out\",\"patterns\":[{\"pos\":0}]}}") < 0);
	CHECK(parse(&m, "{\"headers\":{\"event\":\"move-out\",\"patterns\":[{\"pos\":-1,\"value\":\"x\"}]}}") < 0);
	CHECK(parse(&m, "{\"key\":\"k\",\"value\":{},\"headers\":{\"txids\":[1.5]}}") < 0);

	/* subset answers: the spans of metadata and data, in any order */
	{
		ps_str		meta,
					data;
		const char *a = " {\"data\": [{\"key\":\"a\\\"b\"}, {}] ,\"other\":[1,{\"x\":null}],"
			"\"metadata\":{\"xmin\":\"1\",\"xip_list\":[]}} ";

		CHECK(split(&m, a, &meta, &data) == 0);
		CHECK_MEM(meta.s, meta.len, "{\"xmin\":\"1\",\"xip_list\":[]}");
		CHECK_MEM(data.s, data.len, "[{\"key\":\"a\\\"b\"}, {}]");
		CHECK(split(&m, "{\"metadata\":{},\"data\":[]}", &meta, &data) == 0);
		CHECK(meta.len == 2 && data.len == 2);
		/* a key with an escape is still recognised */
		CHECK(split(&m, "{\"met\\u0061data\":{},\"data\":[]}", &meta, &data) == 0);
		/* not an answer: the shape log, a missing or mistyped member, junk */
		CHECK(split(&m, "[{\"headers\":{\"control\":\"up-to-date\"}}]", &meta, &data) < 0);
		CHECK(split(&m, "{\"metadata\":{}}", &meta, &data) < 0);
		CHECK(strstr(m.error, "data") != NULL);
		CHECK(split(&m, "{\"data\":[]}", &meta, &data) < 0);
		CHECK(split(&m, "{\"metadata\":[],\"data\":[]}", &meta, &data) < 0);
		CHECK(split(&m, "{\"metadata\":{},\"data\":{}}", &meta, &data) < 0);
		CHECK(split(&m, "{\"metadata\":{},\"data\":[]} x", &meta, &data) < 0);
		CHECK(split(&m, "{\"metadata\":{},\"data\":[{\"a\":}]}", &meta, &data) < 0);
		CHECK(split(&m, "{\"metadata\":{},\"data\":[", &meta, &data) < 0);
		CHECK(split(&m, "", &meta, &data) < 0);
	}

	ps_message_free(&m);
	return UNIT_DONE();
}
