// Tables loaded from a real Postgres (from_pg) carry values exactly as
// Electric renders them, and the official client parses them.

import test from 'node:test';
import assert from 'node:assert/strict';
import { startServer, post, sync, shapeGet, startPostgres, waitFor, sleep } from './helpers.mjs';

const SETUP = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TABLE all_types (
  id int4 PRIMARY KEY,
  i2 int2, i8 int8, num numeric, num_ps numeric(10,2), f4 float4, f8 float8,
  b bool, txt text, vc varchar(10), bp char(5), blob bytea, u uuid,
  d date, tm time, tmtz timetz, ts timestamp(3), tstz timestamptz, iv interval, iv_ms interval minute to second,
  j json, jb jsonb,
  ints int4[], ints2 int8[][], txts text[], moods mood[], m mood, p posint NOT NULL, bools bool[]
);
INSERT INTO all_types VALUES (
  1, -32768, 9223372036854775807, 12345678901234567890.123456789, 42.5, 3.25, 1.1,
  true, E'quote'' dq" back\\\\ nl\\n tab\\t slash/ é 🙂', 'short', 'ab', '\\x0001fffe', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '2024-01-02', '03:04:05.678', '03:04:05+02', '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05+02', '1 year 2 mons 3 days 04:05:06.5', '3 minutes 4.5 seconds',
  '{"b": 1, "a": [1, 2]}', '{"b": 1, "a": [1, 2]}',
  '{1,NULL,3}', '{{1,2},{3,NULL}}', ARRAY['a b', 'q"uote', NULL, 'NULL', 'c,d'], '{sad,happy}', 'ok', 7, '{t,f,NULL}'
), (
  2, 0, -1, 'NaN', NULL, 'NaN', '-Infinity',
  false, '', NULL, NULL, '\\x', NULL,
  'infinity', NULL, NULL, NULL, '-infinity', '-1 days', NULL,
  'null', '[]',
  '{}', NULL, '{}', NULL, NULL, 1, NULL
), (
  3, NULL, NULL, '-0.5', NULL, 'Infinity', 'Infinity', NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 2, NULL
);
`;

let pg;
test.before(async () => {
  pg = await startPostgres();
  if (!pg.skip) pg.query(SETUP);
});
test.after(() => pg && !pg.skip && pg.stop());

test('from_pg renders every type as Electric does', async (t) => {
  if (pg.skip) return t.skip(pg.skip);
  const srv = await startServer(t);
  const info = await post(srv, '/tables/from_pg', { name: 'all_types', conninfo: pg.conninfo, source: 'public.all_types' });
  assert.deepStrictEqual(info.primary_key, ['id']);
  const r = await shapeGet(srv, { table: 'all_types', offset: '-1' });
  const schema = JSON.parse(r.headers.get('electric-schema'));
  assert.deepStrictEqual(schema.id, { not_null: true, pk_index: 0, type: 'int4' });
  assert.deepStrictEqual(schema.num_ps, { precision: 10, scale: 2, type: 'numeric' });
  assert.deepStrictEqual(schema.vc, { max_length: 10, type: 'varchar' });
  assert.deepStrictEqual(schema.bp, { length: 5, type: 'bpchar' });
  assert.deepStrictEqual(schema.ts, { precision: 3, type: 'timestamp' });
  assert.deepStrictEqual(schema.iv, { type: 'interval' });
  assert.deepStrictEqual(schema.iv_ms, { fields: 'MINUTE TO SECOND', type: 'interval' });
  assert.deepStrictEqual(schema.ints, { dims: 1, type: 'int4' });
  assert.deepStrictEqual(schema.ints2, { dims: 2, type: 'int8' });
  assert.deepStrictEqual(schema.moods, { dims: 1, type: 'mood' });
  assert.deepStrictEqual(schema.m, { type: 'mood' });
  assert.deepStrictEqual(schema.p, { not_null: true, type: 'posint' });

  const rows = Object.fromEntries(r.json.filter((m) => m.key).map((m) => [m.value.id, m.value]));
  assert.deepStrictEqual(rows['1'], {
    id: '1', i2: '-32768', i8: '9223372036854775807', num: '12345678901234567890.123456789', num_ps: '42.50',
    f4: '3.25', f8: '1.1', b: 'true', txt: 'quote\' dq" back\\ nl\n tab\t slash/ é 🙂', vc: 'short', bp: 'ab   ',
    blob: '\\x0001fffe', u: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', d: '2024-01-02', tm: '03:04:05.678',
    tmtz: '03:04:05+02', ts: '2024-01-02 03:04:05.123', tstz: '2024-01-02 01:04:05+00', iv: 'P1Y2M3DT4H5M6.5S',
    iv_ms: 'PT3M4.5S', j: '{"b": 1, "a": [1, 2]}', jb: '{"a": [1, 2], "b": 1}', ints: '{1,NULL,3}',
    ints2: '{{1,2},{3,NULL}}', txts: '{"a b","q\\"uote",NULL,"NULL","c,d"}', moods: '{sad,happy}', m: 'ok', p: '7',
    bools: '{t,f,NULL}',
  });
  assert.equal(rows['2'].num, 'NaN');
  assert.equal(rows['2'].f8, '-Infinity');
  assert.equal(rows['2'].d, 'infinity');
  assert.equal(rows['2'].tstz, '-infinity');
  assert.equal(rows['2'].iv, 'P-1D');
  assert.equal(rows['2'].blob, '\\x');
  assert.equal(rows['2'].b, 'false');
  assert.equal(rows['2'].ints, '{}');
  assert.equal(rows['3'].f4, 'Infinity');
  assert.equal(rows['3'].b, null);
});

test('the official client parses the loaded values, live changes included', async (t) => {
  if (pg.skip) return t.skip(pg.skip);
  const srv = await startServer(t);
  await post(srv, '/tables/from_pg', { name: 'all_types', conninfo: pg.conninfo, source: 'all_types', page_rows: 1 });
  const { shape, messages, errors } = sync(t, srv, { table: 'all_types' });
  const rows = Object.fromEntries((await shape.rows).map((r) => [r.id, r]));
  assert.deepStrictEqual(errors, []);
  const one = rows[1];
  assert.equal(one.i2, -32768);
  assert.equal(one.i8, 9223372036854775807n);
  assert.equal(one.num, '12345678901234567890.123456789'); // numeric stays a string
  assert.equal(one.f4, 3.25);
  assert.equal(one.b, true);
  assert.deepStrictEqual(one.j, { b: 1, a: [1, 2] });
  assert.deepStrictEqual(one.ints, [1, null, 3]);
  assert.deepStrictEqual(one.ints2, [[1n, 2n], [3n, null]]);
  assert.deepStrictEqual(one.txts, ['a b', 'q"uote', null, 'NULL', 'c,d']);
  assert.deepStrictEqual(one.moods, ['sad', 'happy']);
  assert.deepStrictEqual(one.bools, [true, false, null]);
  assert.ok(Number.isNaN(rows[2].f4));
  assert.equal(rows[2].f8, -Infinity);
  assert.equal(rows[3].f8, Infinity);

  // Live booleans arrive as t/f; the client maps both forms.
  await post(srv, '/tables/all_types/txn', { ops: [{ op: 'update', row: { id: 1, b: false, ints: '{4}' } }, { op: 'update', row: { id: 3, b: true } }] });
  await waitFor(() => shape.currentRows.find((r) => r.id === 1).b === false && shape.currentRows.find((r) => r.id === 3).b === true, { what: 'live bools' });
  const live = messages.filter((m) => m.headers.lsn);
  assert.equal(live.length, 2);
  assert.deepStrictEqual(shape.currentRows.find((r) => r.id === 1).ints, [4]);
});

test('from_pg rejects bad input with 400', async (t) => {
  if (pg.skip) return t.skip(pg.skip);
  const srv = await startServer(t);
  const res = await fetch(`${srv.url}/_control/tables/from_pg`, { method: 'POST', body: JSON.stringify({ name: 'x', conninfo: pg.conninfo, source: 'missing_table' }) });
  assert.equal(res.status, 400);
  assert.match((await res.json()).message, /not found/);
  await sleep(0);
});
