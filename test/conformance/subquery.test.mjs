// Subquery shapes: tags, active_conditions and move events as Electric 1.7
// sends them, consumed by the official client (which passes event messages
// through) and materialised with Electric's tag rules (tag_tracker.mjs). The
// materialised rows must always equal the where clause evaluated on the
// server's current tables.

import test from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startServer, post, control, shapeGet, waitFor, ShapeStream } from './helpers.mjs';
import { TagTracker } from './tag_tracker.mjs';

const PARENT = { name: 'parent', columns: [{ name: 'id', type: 'int4' }, { name: 'active', type: 'bool' }, { name: 'org', type: 'int4' }], primary_key: ['id'] };
const CHILD = { name: 'child', columns: [{ name: 'id', type: 'int4' }, { name: 'parent_id', type: 'int4' }, { name: 'n', type: 'int4' }], primary_key: ['id'] };
const ACTIVE = 'parent_id IN (SELECT id FROM parent WHERE active)';
const hash = (handle, value) => crypto.createHash('md5').update(`single_stack${handle}${value === null ? 'NULL' : `v:${value}`}`).digest('hex');

async function setup(t, { parents = [[1, true, 0], [2, false, 1]], children = [[10, 1, 1], [20, 2, 2]], opts } = {}) {
  const srv = await startServer(t, opts);
  await post(srv, '/tables', { ...PARENT, rows: parents.map(([id, active, org]) => ({ id, active, org })) });
  await post(srv, '/tables', { ...CHILD, rows: children.map(([id, parentId, n]) => ({ id, parent_id: parentId, n })) });
  return srv;
}

// Non-live pages to the end; returns {handle, offset, messages}.
async function catchUp(srv, query) {
  let r = await shapeGet(srv, { ...query, offset: '-1' });
  assert.equal(r.status, 200, r.text);
  const handle = r.headers.get('electric-handle');
  const messages = [...r.json];
  while (!r.headers.has('electric-up-to-date')) {
    r = await shapeGet(srv, { ...query, offset: r.headers.get('electric-offset'), handle });
    messages.push(...r.json);
  }
  return { handle, offset: r.headers.get('electric-offset'), messages };
}

const txn = (srv, ops, extra = {}) => post(srv, '/txn', { ops, ...extra });
const changesOf = (msgs) => msgs.filter((m) => m.headers.operation || m.headers.event || m.headers.control === 'snapshot-end');

test('snapshot rows and changes carry tags and active_conditions', async (t) => {
  const srv = await setup(t);
  const { handle, offset, messages } = await catchUp(srv, { table: 'child', where: ACTIVE });
  const [row] = messages.filter((m) => m.key);
  assert.deepStrictEqual(row.headers, { active_conditions: [true], tags: [hash(handle, '1')], operation: 'insert', relation: ['public', 'child'] });
  assert.deepStrictEqual(row.value, { id: '10', parent_id: '1', n: '1' });

  await txn(srv, [{ table: 'child', op: 'update', row: { id: 10, n: 5 } }, { table: 'child', op: 'insert', row: { id: 11, parent_id: 1, n: 0 } }]);
  const r = await shapeGet(srv, { table: 'child', where: ACTIVE, offset, handle });
  const [upd, ins] = r.json;
  assert.deepStrictEqual(upd.headers.tags, [hash(handle, '1')]);
  assert.deepStrictEqual(upd.headers.removed_tags, []);
  assert.deepStrictEqual(upd.headers.active_conditions, [true]);
  assert.deepStrictEqual(upd.value, { id: '10', n: '5' });
  assert.equal(ins.headers.operation, 'insert');
  assert.deepStrictEqual(ins.headers.tags, [hash(handle, '1')]);
  assert.equal(ins.headers.last, true);
  assert.deepStrictEqual(r.json.at(-1).headers.control, 'up-to-date');
});

test('move-out event for a deactivated parent, move-in rows for an activated one', async (t) => {
  const srv = await setup(t);
  const q = { table: 'child', where: ACTIVE };
  const { handle, offset } = await catchUp(srv, q);
  const a = await txn(srv, [{ table: 'parent', op: 'update', row: { id: 2, active: true } }]);
  const b = await txn(srv, [{ table: 'parent', op: 'update', row: { id: 1, active: false } }]);
  const r = await shapeGet(srv, { ...q, offset, handle });
  const snap = await control(srv, 'GET', '/snapshot');
  assert.deepStrictEqual(changesOf(r.json), [
    { headers: { event: 'move-in', patterns: [{ pos: 0, value: hash(handle, '2') }], txids: [a.xid] } },
    {
      key: '"public"."child"/"20"',
      value: { id: '20', parent_id: '2', n: '2' },
      headers: { active_conditions: [true], tags: [hash(handle, '2')], operation: 'insert', relation: ['public', 'child'], is_move_in: true },
    },
    // The move-in query's snapshot: taken right after transaction a.
    { headers: { control: 'snapshot-end', xip_list: [], xmax: String(a.xid + 1), xmin: String(a.xid + 1) } },
    { headers: { event: 'move-out', patterns: [{ pos: 0, value: hash(handle, '1') }], txids: [b.xid] } },
  ]);
  assert.ok(snap.xmax > a.xid);
  // Events take the offsets after the last item: 1_0, 1_1, ... here.
  assert.equal(r.headers.get('electric-offset'), '1_3');
  assert.equal(r.json.at(-1).headers.global_last_seen_lsn, b.lsn);
});

test('a transaction over both tables: its changes with the old view, then the move-in', async (t) => {
  const srv = await setup(t);
  const q = { table: 'child', where: ACTIVE };
  const { handle, offset } = await catchUp(srv, q);
  const res = await txn(srv, [
    { table: 'parent', op: 'insert', row: { id: 3, active: true, org: 0 } },
    { table: 'child', op: 'insert', row: { id: 30, parent_id: 3, n: 3 } }, // covered by the move-in query
    { table: 'child', op: 'update', row: { id: 10, parent_id: 2 } }, // leaves the shape
  ]);
  const r = await shapeGet(srv, { ...q, offset, handle });
  const msgs = changesOf(r.json);
  assert.deepStrictEqual(msgs.map((m) => m.headers.operation ?? m.headers.event ?? m.headers.control), ['delete', 'move-in', 'insert', 'snapshot-end']);
  assert.deepStrictEqual(msgs[0].headers, {
    active_conditions: [true], last: true, lsn: res.lsn, op_position: 4, operation: 'delete', relation: ['public', 'child'], tags: [hash(handle, '1')], txids: [res.xid],
  });
  assert.equal(msgs[2].key, '"public"."child"/"30"');
  assert.equal(msgs[2].headers.is_move_in, true);
  assert.equal(r.headers.get('electric-offset'), `${res.lsn}_7`); // 4 + event, row, snapshot-end
});

test('NOT IN: a dependency move-in is an outer move-out and vice versa', async (t) => {
  const srv = await setup(t);
  const q = { table: 'child', where: 'parent_id NOT IN (SELECT id FROM parent WHERE active)' };
  const { handle, offset, messages } = await catchUp(srv, q);
  assert.deepStrictEqual(messages.filter((m) => m.key).map((m) => m.value.id), ['20']);
  await txn(srv, [{ table: 'parent', op: 'update', row: { id: 1, active: false } }]);
  await txn(srv, [{ table: 'parent', op: 'update', row: { id: 2, active: true } }]);
  const r = await shapeGet(srv, { ...q, offset, handle });
  const msgs = changesOf(r.json);
  assert.deepStrictEqual(msgs.map((m) => m.headers.event ?? (m.headers.is_move_in ? 'row' : m.headers.control)), ['move-in', 'row', 'snapshot-end', 'move-out']);
  assert.deepStrictEqual(msgs[0].headers.patterns, [{ pos: 0, value: hash(handle, '1') }]);
  assert.equal(msgs[1].value.id, '10');
  assert.deepStrictEqual(msgs[3].headers.patterns, [{ pos: 0, value: hash(handle, '2') }]);
});

test('OR and several subqueries: one tag per disjunct, one position per literal', async (t) => {
  const srv = await setup(t);
  const q = { table: 'child', where: `${ACTIVE} OR n > 1` };
  const { handle, offset, messages } = await catchUp(srv, q);
  const rows = Object.fromEntries(messages.filter((m) => m.key).map((m) => [m.value.id, m.headers]));
  assert.deepStrictEqual(rows['10'].tags, [`${hash(handle, '1')}/`, '/1']);
  assert.deepStrictEqual(rows['10'].active_conditions, [true, false]);
  assert.deepStrictEqual(rows['20'].active_conditions, [false, true]);
  // Parent 2 activated: child 20 is already in (by n > 1), so no rows, only the event.
  const a = await txn(srv, [{ table: 'parent', op: 'update', row: { id: 2, active: true } }]);
  const r = await shapeGet(srv, { ...q, offset, handle });
  assert.deepStrictEqual(changesOf(r.json), [{ headers: { event: 'move-in', patterns: [{ pos: 0, value: hash(handle, '2') }], txids: [a.xid] } }]);

  // AND over two subqueries and an OR: positions of one dependency get one pattern each.
  const two = { table: 'child', where: `${ACTIVE} AND (n < 5 OR parent_id IN (SELECT id FROM parent WHERE org = 1))` };
  const c = await catchUp(srv, two);
  const tags = c.messages.find((m) => m.key).headers.tags;
  assert.equal(tags.length, 2);
  assert.deepStrictEqual(tags.map((x) => x.split('/').length), [4, 4]); // 4 positions: sq0, n<5, sq0, sq1
  assert.match(tags[0], /^[0-9a-f]{32}\/1\/\/$/);
  assert.match(tags[1], /^\/\/[0-9a-f]{32}\/[0-9a-f]{32}$/);
  await txn(srv, [{ table: 'parent', op: 'update', row: { id: 1, active: false } }]);
  const r2 = await shapeGet(srv, { ...two, offset: c.offset, handle: c.handle });
  const out = changesOf(r2.json).find((m) => m.headers.event === 'move-out');
  assert.deepStrictEqual(out.headers.patterns.map((p) => p.pos), [0, 2]);
});

test('row-valued and nested subqueries', async (t) => {
  const srv = await setup(t);
  const rowq = { table: 'child', where: '(parent_id, n) IN (SELECT id, org FROM parent)' };
  await txn(srv, [{ table: 'child', op: 'insert', row: { id: 40, parent_id: 2, n: 1 } }]);
  const a = await catchUp(srv, rowq);
  const row = a.messages.find((m) => m.key);
  assert.equal(row.value.id, '40');
  const together = crypto.createHash('md5').update(`single_stack${a.handle}parent_id:v:2n:v:1`).digest('hex');
  assert.deepStrictEqual(row.headers.tags, [together]);

  await post(srv, '/tables', { name: 'orgs', columns: [{ name: 'id', type: 'int4' }, { name: 'ok', type: 'bool' }], primary_key: ['id'], rows: [{ id: 0, ok: true }, { id: 1, ok: false }] });
  const nested = { table: 'child', where: 'parent_id IN (SELECT id FROM parent WHERE org IN (SELECT id FROM orgs WHERE ok))' };
  const b = await catchUp(srv, nested);
  assert.deepStrictEqual(b.messages.filter((m) => m.key).map((m) => m.value.id), ['10']);
  await txn(srv, [{ table: 'orgs', op: 'update', row: { id: 1, ok: true } }]);
  const r = await shapeGet(srv, { ...nested, offset: b.offset, handle: b.handle });
  assert.deepStrictEqual(changesOf(r.json).map((m) => m.headers.event ?? m.value?.id ?? m.headers.control), ['move-in', '20', '40', 'snapshot-end']);
});

test('subquery validation errors', async (t) => {
  const srv = await setup(t);
  const cases = [
    [`${ACTIVE} AND parent_id NOT IN (SELECT id FROM parent WHERE active)`, { where: ['a subquery dependency cannot be used with both positive and negative polarity in the same filter'] }],
    ['parent_id IN (SELECT id FROM nope)', { table: ['Table "public"."nope" does not exist. If the table name contains capitals or special characters you must quote it.'] }],
    ['parent_id IN (SELECT nope FROM parent)', { columns: ['The following columns are not found on the table: nope'] }],
    ['n IN (SELECT active FROM parent)', { where: ['At location 2: left side of `IN (SELECT ...)` has type int4 but subquery returns bool'] }],
  ];
  for (const [where, errors] of cases) {
    const r = await shapeGet(srv, { table: 'child', offset: '-1', where });
    assert.equal(r.status, 400, where);
    assert.deepStrictEqual(r.json, { message: 'Invalid request', errors }, where);
  }
  // Replacing an inner table rotates the shapes that depend on it.
  const { handle, offset } = await catchUp(srv, { table: 'child', where: ACTIVE });
  await post(srv, '/tables', { ...PARENT, rows: [] });
  assert.equal((await shapeGet(srv, { table: 'child', where: ACTIVE, offset, handle })).status, 409);
});

// Random transactions over parent and child; the tag-tracked client rows
// must equal the where clause on the server's rows after every batch.
const SHAPES = {
  in: [ACTIVE, (c, P) => P.some((p) => p.id === c.parent_id && p.active)],
  'not in': ['parent_id NOT IN (SELECT id FROM parent WHERE active)', (c, P) => !P.some((p) => p.id === c.parent_id && p.active)],
  or: [`${ACTIVE} OR n > 4`, (c, P) => P.some((p) => p.id === c.parent_id && p.active) || c.n > 4],
  'and-or': [
    `${ACTIVE} AND (n < 5 OR parent_id IN (SELECT id FROM parent WHERE org = 1))`,
    (c, P) => P.some((p) => p.id === c.parent_id && p.active) && (c.n < 5 || P.some((p) => p.id === c.parent_id && p.org === 1)),
  ],
};

function prng(seed) {
  let x = seed >>> 0;
  return (n) => {
    x = (x + 0x6d2b79f5) >>> 0;
    let v = Math.imul(x ^ (x >>> 15), x | 1);
    v ^= v + Math.imul(v ^ (v >>> 7), v | 61);
    return ((v ^ (v >>> 14)) >>> 0) % n;
  };
}

async function converge(t, { where, truth, liveSse = false, lag = false, seed }) {
  const rnd = prng(seed);
  const srv = await setup(t, {
    parents: [1, 2, 3, 4].map((id) => [id, id % 2 === 0, id % 2]),
    children: [1, 2, 3, 4, 5, 6].map((id) => [id, 1 + (id % 4), id]),
    opts: { longPollMs: 500 },
  });
  if (liveSse) await post(srv, '/config', { sse_timeout_ms: 700 });
  const tracker = new TagTracker();
  const errors = [];
  const abort = new AbortController();
  t.after(() => abort.abort());
  const stream = new ShapeStream({
    url: `${srv.url}/v1/shape`, params: { table: 'child', where }, liveSse, signal: abort.signal, warnOnHttp: false,
    backoffOptions: { initialDelay: 20, maxDelay: 200, multiplier: 2 }, onError: (e) => { errors.push(e); },
  });
  stream.subscribe((batch) => tracker.apply(batch), (e) => errors.push(e));
  const num = (r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v === 'true' ? true : v === 'false' ? false : Number(v)]));
  const check = async (label) => {
    const P = (await control(srv, 'GET', '/tables/parent/rows')).map(num);
    const C = (await control(srv, 'GET', '/tables/child/rows')).map(num);
    const want = C.filter((c) => truth(c, P)).map((c) => c.id).sort((a, b) => a - b).join(',');
    const got = () => tracker.values().map((v) => Number(v.id)).sort((a, b) => a - b).join(',');
    try {
      await waitFor(() => got() === want && stream.isUpToDate && srv.store.unpublished.length === 0, { timeout: 5000, what: label });
    } catch {
      assert.equal(got(), want, `${label} (seed ${seed})`);
    }
  };
  await check('initial');
  let nextId = 100;
  let moves = 0;
  for (let step = 0; step < 25; step++) {
    const ops = [];
    for (let i = 1 + rnd(3); i > 0; i--) {
      const r = rnd(6);
      if (r === 0) ops.push({ table: 'parent', op: 'update', row: { id: 1 + rnd(4), active: rnd(2) === 1 } });
      else if (r === 1) ops.push({ table: 'parent', op: 'update', row: { id: 1 + rnd(4), org: rnd(2) } });
      else if (r === 2) ops.push({ table: 'child', op: 'insert', row: { id: nextId++, parent_id: 1 + rnd(5), n: rnd(8) } });
      else if (r === 3) ops.push({ table: 'child', op: 'update', row: { id: 1 + rnd(6), parent_id: 1 + rnd(5) } });
      else ops.push({ table: 'child', op: 'update', row: { id: 1 + rnd(6), n: rnd(8) } });
    }
    moves += ops.filter((o) => o.table === 'parent').length;
    await txn(srv, ops, { publish_delay_ms: lag ? rnd(3) * 30 : 0 });
    if (rnd(3) === 0) await check(`step ${step}`);
  }
  await check('end');
  assert.ok(moves > 0);
  assert.deepStrictEqual(errors, []);
}

for (const [name, [where, truth]] of Object.entries(SHAPES)) {
  test(`random transactions converge: ${name}, long-polling`, (t) => converge(t, { where, truth, seed: 7 }));
}
test('random transactions converge: and-or over SSE with replication lag', (t) => converge(t, { where: SHAPES['and-or'][0], truth: SHAPES['and-or'][1], liveSse: true, lag: true, seed: 11 }));
test('random transactions converge: not in with replication lag', (t) => converge(t, { where: SHAPES['not in'][0], truth: SHAPES['not in'][1], lag: true, seed: 5 }));
