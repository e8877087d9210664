// POST /v1/writes: the write API the extension uploads local writes to.
// One transaction per request, its txid in the answer and in the synced-back
// changes, Idempotency-Key, the fault kinds and the write log.

import test from 'node:test';
import assert from 'node:assert/strict';
import { startServer, post, control, itemsTable, shapeGet, sleep } from './helpers.mjs';

const REL = ['public', 'items'];

async function setup(t) {
  const srv = await startServer(t);
  await post(srv, '/tables', itemsTable([{ id: 1, title: 'a' }, { id: 2, title: 'b' }]));
  return srv;
}

async function write(srv, mutations, { key, writeId = key ?? 'w', headers = {}, raw } = {}) {
  let res;
  try {
    res = await fetch(`${srv.url}/v1/writes`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(key ? { 'idempotency-key': key } : {}), ...headers },
      body: raw ?? JSON.stringify({ write_id: writeId, mutations }),
    });
  } catch (e) {
    return { dropped: true, error: e };
  }
  const text = await res.text();
  return { status: res.status, headers: res.headers, json: text ? JSON.parse(text) : undefined };
}

// Pages a shape to its end and returns {handle, offset}.
async function shapeEnd(srv) {
  let r = await shapeGet(srv, { table: 'items', offset: '-1' });
  const handle = r.headers.get('electric-handle');
  while (!r.headers.has('electric-up-to-date')) r = await shapeGet(srv, { table: 'items', offset: r.headers.get('electric-offset'), handle });
  return { handle, offset: r.headers.get('electric-offset') };
}

const rows = async (srv) => (await control(srv, 'GET', '/tables/items/rows')).map((r) => [r.id, r.title]);

test('one transaction per request; its txid comes back in the changes', async (t) => {
  const srv = await setup(t);
  const { handle, offset } = await shapeEnd(srv);
  const r = await write(srv, [
    { operation: 'insert', relation: REL, key: { id: '3' }, value: { id: '3', title: 'c', done: 't', n: null } },
    { operation: 'update', relation: REL, key: { id: '1' }, value: { title: 'A' }, old_value: { title: 'a' } },
    { operation: 'delete', relation: REL, key: { id: '2' } },
  ], { key: 'k1' });
  assert.equal(r.status, 200);
  assert.match(r.json.txid, /^\d+$/);
  assert.equal(r.headers.get('content-type'), 'application/json; charset=utf-8');
  const live = await shapeGet(srv, { table: 'items', offset, handle });
  const changes = live.json.filter((m) => m.key);
  assert.deepStrictEqual(changes.map((m) => [m.headers.operation, m.headers.txids]), [['insert', [Number(r.json.txid)]], ['update', [Number(r.json.txid)]], ['delete', [Number(r.json.txid)]]]);
  assert.equal(new Set(changes.map((m) => m.headers.lsn)).size, 1);
  assert.deepStrictEqual(await rows(srv), [['1', 'A'], ['3', 'c']]);

  // A primary key in value that differs from key is a key change.
  const k = await write(srv, [{ operation: 'update', relation: REL, key: { id: '3' }, value: { id: '30', title: 'cc' } }], { key: 'k2' });
  assert.equal(k.status, 200);
  assert.deepStrictEqual(await rows(srv), [['1', 'A'], ['30', 'cc']]);
});

test('all or nothing: a bad mutation is a 400 and nothing is applied', async (t) => {
  const srv = await setup(t);
  const good = { operation: 'update', relation: REL, key: { id: '1' }, value: { title: 'X' } };
  const cases = [
    [[good, { operation: 'update', relation: REL, key: { id: '9' }, value: { title: 'x' } }], /no row with key/],
    [[good, { operation: 'insert', relation: REL, value: { id: '1' } }], /duplicate key/],
    [[good, { operation: 'insert', relation: ['public', 'nope'], value: { id: '5' } }], /unknown table "public"."nope"/],
    [[good, { operation: 'insert', relation: REL, value: { id: '5', nope: 'x' } }], /unknown column nope/],
    [[good, { operation: 'upsert', relation: REL, value: { id: '5' } }], /unknown operation upsert/],
    [[good, { operation: 'delete', relation: REL }], /delete needs key/],
    [[], /mutations must be a non-empty array/],
  ];
  for (const [mutations, message] of cases) {
    const r = await write(srv, mutations);
    assert.equal(r.status, 400, JSON.stringify(mutations));
    assert.match(r.json.message, message);
  }
  assert.equal((await write(srv, null, { raw: '{' })).status, 400);
  assert.deepStrictEqual(await rows(srv), [['1', 'a'], ['2', 'b']]);
  assert.ok((await control(srv, 'GET', '/writes')).every((e) => e.applied === false));
});

test('Idempotency-Key: a repeat gets the same answer and is not applied again', async (t) => {
  const srv = await setup(t);
  const m = [{ operation: 'insert', relation: REL, value: { id: '7', title: 'g' } }];
  const a = await write(srv, m, { key: 'same' });
  const b = await write(srv, m, { key: 'same' });
  assert.deepStrictEqual([b.status, b.json], [a.status, a.json]);
  const bad = [{ operation: 'delete', relation: REL, key: { id: '99' } }];
  const c = await write(srv, bad, { key: 'bad' });
  const d = await write(srv, bad, { key: 'bad' });
  assert.deepStrictEqual([c.status, d.status, d.json], [400, 400, c.json]);
  const log = await control(srv, 'GET', '/writes');
  assert.deepStrictEqual(log.map((e) => [e.idempotency_key, e.status, e.applied, e.repeat]), [
    ['same', 200, true, false], ['same', 200, false, true], ['bad', 400, false, false], ['bad', 400, false, true],
  ]);
  assert.equal(log[1].txid, a.json.txid);
  assert.deepStrictEqual(log[0].body, { write_id: 'same', mutations: m });
  assert.equal(log[0].headers['content-type'], 'application/json');
  assert.equal((await rows(srv)).length, 3);
});

test('faults: reject, 5xx then retry, apply-then-drop, no txid', async (t) => {
  const srv = await setup(t);
  const m = (id) => [{ operation: 'insert', relation: REL, value: { id: String(id) } }];
  await post(srv, '/write_faults', { kind: 'status', status: 422, body: { message: 'title is required' } });
  const rej = await write(srv, m(10), { key: 'r' });
  assert.deepStrictEqual([rej.status, rej.json], [422, { message: 'title is required' }]);
  assert.equal((await write(srv, m(10), { key: 'r' })).status, 422, 'a rejection is remembered');

  await post(srv, '/write_faults', { kind: 'status', status: 503, retry_after: 1 });
  const busy = await write(srv, m(11), { key: 's' });
  assert.deepStrictEqual([busy.status, busy.headers.get('retry-after')], [503, '1']);
  assert.equal((await write(srv, m(11), { key: 's' })).status, 200, 'a 5xx is not remembered: the retry applies');

  await post(srv, '/write_faults', { kind: 'apply_then_drop' });
  assert.equal((await write(srv, m(12), { key: 'd' })).dropped, true);
  assert.ok((await rows(srv)).some(([id]) => id === '12'), 'applied before the drop');
  const retry = await write(srv, m(12), { key: 'd' });
  assert.equal(retry.status, 200);
  assert.match(retry.json.txid, /^\d+$/);

  await post(srv, '/write_faults', { kind: 'no_txid' });
  const none = await write(srv, m(13), { key: 'n' });
  assert.deepStrictEqual([none.status, none.json], [200, {}]);

  const log = await control(srv, 'GET', '/writes');
  assert.deepStrictEqual(log.map((e) => [e.idempotency_key, e.status, e.applied, e.fault]), [
    ['r', 422, false, 'status'], ['r', 422, false, null], ['s', 503, false, 'status'], ['s', 200, true, null],
    ['d', null, true, 'apply_then_drop'], ['d', 200, false, null], ['n', 200, true, 'no_txid'],
  ]);
  assert.equal(log[4].dropped, true);
  assert.deepStrictEqual(await control(srv, 'GET', '/write_faults'), []);
});

test('delay_sync: applied and answered now, synced back later', async (t) => {
  const srv = await setup(t);
  const { handle, offset } = await shapeEnd(srv);
  await post(srv, '/write_faults', { kind: 'delay_sync', ms: 400 });
  const started = Date.now();
  const r = await write(srv, [{ operation: 'update', relation: REL, key: { id: '2' }, value: { title: 'B' } }], { key: 'late' });
  assert.equal(r.status, 200);
  assert.ok(Date.now() - started < 300);
  assert.deepStrictEqual(await rows(srv), [['1', 'a'], ['2', 'B']]); // committed
  const early = await shapeGet(srv, { table: 'items', offset, handle });
  assert.deepStrictEqual(early.json.filter((m) => m.key), [], 'not synced back yet');
  await sleep(450);
  const late = await shapeGet(srv, { table: 'items', offset, handle });
  assert.deepStrictEqual(late.json.filter((m) => m.key).map((m) => m.headers.txids), [[Number(r.json.txid)]]);
});

test('faults: drop before applying, txid as a number', async (t) => {
  const srv = await setup(t);
  const m = [{ operation: 'insert', relation: REL, value: { id: '20' } }];
  await post(srv, '/write_faults', [{ kind: 'drop' }, { kind: 'txid_as_number', table: 'items' }]);
  assert.equal((await write(srv, m, { key: 'x' })).dropped, true);
  assert.equal((await rows(srv)).length, 2, 'nothing applied');
  const r = await write(srv, m, { key: 'x' });
  assert.equal(r.status, 200);
  assert.equal(typeof r.json.txid, 'number');
  assert.deepStrictEqual((await control(srv, 'GET', '/writes')).map((e) => [e.fault, e.applied, e.dropped ?? false]), [['drop', false, true], ['txid_as_number', true, false]]);
});
