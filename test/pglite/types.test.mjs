// Type fidelity in PGlite, after test/t/007_types.pl: a source table with
// every common type and its edge values is built in PGlite, rendered as
// Electric renders a snapshot (text output under Electric's display
// settings, as the test server's from_pg does) and served by the test server;
// it is synced with every initialInsertMethod and each local table is
// compared with the server's rows value by value (`col::text` under the same
// settings).  Live changes then go through the same comparison.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { modifierFields } from '../server/pgload.js'
import {
  newPGlite, startServer, post, shapeUrl, sub, waitFor, localRows, serverRows, diffRows, assertSameRows,
  waitSameRows,
} from './helpers.mjs'

const METHODS = [
  ['insert', { initialInsertMethod: 'insert' }],
  ['csv', { initialInsertMethod: 'csv' }],
  ['json', { initialInsertMethod: 'json' }],
  ['usecopy', { initialInsertMethod: 'useCopy' }],
  ['usecopy_flag', { useCopy: true }],
]

// The values of 007_types.pl, written for this SQL (standard strings; E''
// where escapes are meant): a real backslash in the texts, and the string
// \N both as a text and as an array element.
const SOURCE = String.raw`
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'it''s "complicated"');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE SCHEMA src;
CREATE TABLE src.types (
	id int8 PRIMARY KEY,
	i2 int2, i4 int4, i8 int8,
	num numeric, num_p numeric(12, 4),
	f4 float4, f8 float8,
	b bool,
	t text, vc varchar(20), bp char(6),
	by bytea, u uuid,
	d date, tm time, ttz timetz, ts timestamp, tstz timestamptz, iv interval,
	js json, jb jsonb,
	ia int4[], ta text[], ia2 int4[][], na numeric[],
	e mood, ea mood[],
	dom posint,
	ip inet, cidr cidr,
	bits bit varying(10)
);
INSERT INTO src.types VALUES
 (1, 32767, 2147483647, 9223372036854775807,
  123456789012345678901234567890.123456789012345678901234567890, 12345678.1234,
  3.4028235e38, 1.7976931348623157e308, true,
  'plain', 'short', 'ab',
  '\x00017f80fffe', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '2024-02-29', '23:59:59.999999', '12:00:00+05:30', '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05.678+02', '1 year 2 months 3 days 04:05:06.789',
  '{"a": [1, 2.50, "x"], "b": null}', '{"nested": {"k": [true, false, null]}, "emoji": "😀"}',
  '{1,NULL,3}', '{"with space","comma,here","quote\"d","back\\slash",NULL,"NULL",""}', '{{1,2},{3,4}}', '{1.5,NaN,-0}',
  'happy', '{sad,"it''s \"complicated\""}',
  42, '192.168.0.1/24', '10.0.0.0/8', B'10101'),
 (2, -32768, -2147483648, -9223372036854775808,
  'NaN', -0.0001,
  'NaN', '-Infinity', false,
  E'tab\there, newline\nhere, cr\rhere, backslash \\ quote '' double " comma , ü 中文 😀', 'x', '',
  '\x', '00000000-0000-0000-0000-000000000000',
  'infinity', '00:00', '00:00:00-12', '-infinity', '1970-01-01 00:00:00+00', '-1 days -00:00:01',
  '[]', '"just a string"',
  '{}', '{}', '{{NULL,NULL}}', '{}',
  'it''s "complicated"', '{}',
  1, '::1', '2001:db8::/32', B''),
 (3, 0, 0, 9007199254740993,
  '0.000000000000000000000000000001', 0,
  '1.4e-45', '5e-324', NULL,
  '\N', NULL, NULL,
  NULL, NULL,
  '0001-01-01 BC', NULL, NULL, NULL, 'infinity', 'P1Y2M',
  'null', 'null',
  NULL, '{"\\N"}', NULL, NULL,
  NULL, NULL,
  NULL, NULL, NULL, NULL),
 (4, NULL, NULL, NULL, NULL, NULL, 'Infinity', -0.0, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
-- more ordinary rows, so that the snapshot spans pages
INSERT INTO src.types (id, i4, t, b, tstz, num, jb, ta, e)
SELECT g, g, 'row ' || g || E' \t \\ "x"', g % 2 = 0, '2024-01-01'::timestamptz + g * interval '1 minute',
       g * 1.25, jsonb_build_object('g', g), ARRAY['a' || g, NULL], (ARRAY['sad','ok','happy'])[1 + g % 3]::mood
FROM generate_series(10, 60) g;
`

// Column metadata as the server's from_pg reads it from the catalog.
const COLUMNS_SQL = `
SELECT a.attname AS name, a.attndims AS dims, a.atttypmod AS typmod, a.attnotnull AS not_null,
       t.typname AS type, et.typname AS elem_type,
       CASE WHEN t.typtype = 'd' THEN bt.typname END AS base_type
  FROM pg_attribute a
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
  LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
 WHERE a.attrelid = 'src.types'::regclass AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum`

async function serverColumns(pg) {
  const { rows } = await pg.query(COLUMNS_SQL)
  return rows.map((c) => {
    const isArray = c.elem_type !== null && c.dims > 0
    const type = isArray ? c.elem_type : c.type
    return { name: c.name, type, dims: isArray ? c.dims : 0, not_null: c.not_null, base_type: c.base_type, ...modifierFields(type, c.typmod) }
  })
}

let pg, srv
const subs = {}
const errors = {}
let sourceRows

before(async () => {
  srv = await startServer(null)
  pg = await newPGlite()
  await pg.exec(SOURCE)
  sourceRows = await localRows(pg, 'types', 'src')
  await post(srv, '/tables', { name: 'alltypes', columns: await serverColumns(pg), primary_key: ['id'], rows: sourceRows, page_rows: 10 })
  for (const [m] of METHODS) await pg.exec(`CREATE TABLE t_${m} (LIKE src.types INCLUDING ALL)`)
})
after(async () => {
  await pg?.close()
  await srv?.close()
})

test('the server holds the source as Electric renders it', async () => {
  const rows = await serverRows(srv, 'alltypes')
  assert.equal(rows.length, 55)
  assert.deepEqual(diffRows(rows, sourceRows), [])
  const r = (id) => rows.find((x) => x.id === id)
  // a few renderings the comparison below depends on
  assert.equal(r('1').bp, 'ab    ', 'char(n) keeps its padding')
  assert.equal(r('1').b, 'true')
  assert.equal(r('1').by, '\\x00017f80fffe')
  assert.equal(r('1').iv, 'P1Y2M3DT4H5M6.789S')
  assert.equal(r('1').tstz, '2024-01-02 01:04:05.678+00')
  assert.equal(r('3').t, '\\N')
  assert.equal(r('3').ta, '{"\\\\N"}')
  assert.equal(r('3').b, null)
})

test('initial sync of every type with every method', { timeout: 90_000 }, async (t) => {
  for (const [m, opts] of METHODS) {
    errors[m] = []
    subs[m] = await pg.electric.syncShapeToTable({
      shape: { url: shapeUrl(srv), params: { table: 'alltypes' } },
      table: `t_${m}`,
      primaryKey: ['id'],
      shapeKey: `types_${m}`,
      onError: (e) => errors[m].push(e.message),
      ...opts,
    })
  }
  for (const [m] of METHODS) {
    await t.test(m, async () => {
      await waitFor(() => subs[m].isUpToDate, { what: `types_${m} up to date`, timeout: 60_000 })
      const local = await localRows(pg, `t_${m}`)
      assert.deepEqual(Object.keys(local[0]).sort(), Object.keys(sourceRows[0]).sort(), 'every column compared')
      await assertSameRows(pg, srv, 'alltypes', { local: `t_${m}` })
      const s = await sub(pg, `types_${m}`)
      assert.equal(s.state, 'live')
      assert.equal(s.last_error, null)
      assert.equal(Number(s.rows_applied), 55)
      assert.deepEqual(errors[m], [])
    })
  }
})

test('the comparison sees a single changed value', async () => {
  // guards the comparison itself: one local value off, in a rolled-back transaction
  await pg.transaction(async (tx) => {
    await tx.exec("UPDATE t_json SET ea = '{ok}' WHERE id = 1")
    const d = diffRows(await localRows(tx, 't_json'), await serverRows(srv, 'alltypes'))
    assert.deepEqual(d, ['key "1" column ea: local "{ok}", server "{sad,\\"it\'s \\\\\\"complicated\\\\\\"\\"}"'])
    await tx.rollback()
  })
  await assertSameRows(pg, srv, 'alltypes', { local: 't_json' })
})

test('live changes of every type reach every table', { timeout: 60_000 }, async () => {
  // the change is made to the source, rendered, and sent as Electric would
  await pg.exec(String.raw`
    UPDATE src.types SET t = E'changed\n"live" \\ ,', jb = '{"live": [1, {"x": "y"}]}', ta = '{"a,b",NULL}', iv = '2 hours',
                         e = 'sad', ea = '{happy,ok}', b = false, f8 = 'Infinity', by = '\xdeadbeef', tstz = '2030-06-01 12:00:00-07'
     WHERE id = 1;
    UPDATE src.types SET i8 = 1 WHERE id = 2;
    UPDATE src.types SET t = NULL, jb = '[1, "two", null, {"k": []}]', b = true, num = '-1.000' WHERE id = 10;
    DELETE FROM src.types WHERE id = 3;
    INSERT INTO src.types (id, t, num, d, bp, ia2) VALUES (100, 'new', 'NaN', '2000-01-01', 'x', '{{1},{2}}');`)
  const now = new Map((await localRows(pg, 'types', 'src')).map((r) => [r.id, r]))
  const pick = (id, cols) => Object.fromEntries(['id', ...cols].map((c) => [c, now.get(id)[c]]))
  const { lsn } = await post(srv, '/tables/alltypes/txn', { ops: [
    { op: 'update', row: pick('1', ['t', 'jb', 'ta', 'iv', 'e', 'ea', 'b', 'f8', 'by', 'tstz']) },
    { op: 'update', row: pick('2', ['i8']) },
    { op: 'update', row: pick('10', ['t', 'jb', 'b', 'num']) },
    { op: 'delete', row: { id: '3' } },
    { op: 'insert', row: now.get('100') },
  ] })
  assert.ok(lsn)
  assert.deepEqual(diffRows(await serverRows(srv, 'alltypes'), [...now.values()]), [], 'the server took the source rows')
  for (const [m] of METHODS) {
    await waitSameRows(pg, srv, 'alltypes', { local: `t_${m}` })
    const s = await sub(pg, `types_${m}`)
    assert.equal(Number(s.rows_applied), 55 + 5, `${m}: five changes applied once each`)
    assert.deepEqual(errors[m], [])
  }
})
