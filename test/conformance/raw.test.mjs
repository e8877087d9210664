// Raw HTTP checks of protocol rules the official client does not enforce.

import test from 'node:test';
import assert from 'node:assert/strict';
import { startServer, post, control, itemsTable, shapeGet, sleep } from './helpers.mjs';

const UTD = (m) => m?.headers?.control === 'up-to-date';

async function twoRowServer(t, opts) {
  const srv = await startServer(t, opts);
  await post(srv, '/tables', itemsTable([{ id: 1, title: 'a', done: true, n: 5 }, { id: 2, title: null, done: false, n: null }]));
  return srv;
}

// Follows non-live pages to the end; returns {handle, offset, pages}.
async function catchUp(srv, query) {
  let r = await shapeGet(srv, { ...query, offset: '-1' });
  const handle = r.headers.get('electric-handle');
  const pages = [r];
  while (!r.headers.has('electric-up-to-date')) {
    r = await shapeGet(srv, { ...query, offset: r.headers.get('electric-offset'), handle });
    pages.push(r);
  }
  return { handle, offset: r.headers.get('electric-offset'), pages };
}

test('the offset=-1 response is never up-to-date, even for a tiny shape', async (t) => {
  const srv = await twoRowServer(t);
  const first = await shapeGet(srv, { table: 'items', offset: '-1' });
  assert.equal(first.status, 200);
  assert.equal(first.headers.has('electric-up-to-date'), false);
  assert.ok(!UTD(first.json.at(-1)));
  assert.equal(first.headers.get('electric-offset'), '0_0');
  // Snapshot rows carry only operation and relation; snapshot-end closes the snapshot.
  assert.deepStrictEqual(first.json[0].headers, { operation: 'insert', relation: ['public', 'items'] });
  assert.equal(first.json.at(-1).headers.control, 'snapshot-end');
  const second = await shapeGet(srv, { table: 'items', offset: '0_0', handle: first.headers.get('electric-handle') });
  assert.equal(second.headers.get('electric-up-to-date'), '');
  assert.deepStrictEqual(second.json, [{ headers: { control: 'up-to-date', global_last_seen_lsn: second.json[0].headers.global_last_seen_lsn } }]);
  assert.match(second.json[0].headers.global_last_seen_lsn, /^\d+$/);
});

test('electric-schema only on non-live 200s, electric-cursor only on live responses', async (t) => {
  const srv = await twoRowServer(t);
  const { handle, offset, pages } = await catchUp(srv, { table: 'items' });
  for (const p of pages) {
    assert.deepStrictEqual(JSON.parse(p.headers.get('electric-schema')), {
      done: { type: 'bool' },
      id: { not_null: true, pk_index: 0, type: 'int4' },
      n: { type: 'int8' },
      title: { type: 'text' },
    });
    assert.equal(p.headers.has('electric-cursor'), false);
  }
  const pending = shapeGet(srv, { table: 'items', offset, handle, live: 'true' });
  await sleep(50);
  await post(srv, '/tables/items/txn', { ops: [{ op: 'insert', row: { id: 3, title: 'c' } }] });
  const live = await pending;
  assert.equal(live.status, 200);
  assert.equal(live.headers.has('electric-schema'), false);
  assert.match(live.headers.get('electric-cursor'), /^\d+$/);
  assert.equal(live.headers.get('cache-control'), 'public, max-age=5, stale-while-revalidate=5');
});

test('long-poll timeout: only up-to-date, same offset, has-data false, a new cursor', async (t) => {
  const srv = await twoRowServer(t, { longPollMs: 1000 });
  const { handle, offset } = await catchUp(srv, { table: 'items' });
  const first = await shapeGet(srv, { table: 'items', offset, handle, live: 'true' });
  const cursor = first.headers.get('electric-cursor');
  const started = Date.now();
  const r = await shapeGet(srv, { table: 'items', offset, handle, live: 'true', cursor });
  assert.ok(Date.now() - started >= 900, 'held for the long-poll timeout');
  assert.equal(r.status, 200);
  assert.equal(r.json.length, 1);
  assert.ok(UTD(r.json[0]));
  assert.equal(r.headers.get('electric-offset'), offset);
  assert.equal(r.headers.get('electric-has-data'), 'false');
  assert.equal(r.headers.get('electric-up-to-date'), '');
  assert.notEqual(r.headers.get('electric-cursor'), cursor);
  // Empty live responses get an etag that can never revalidate.
  assert.match(r.headers.get('etag'), new RegExp(`^"${handle}:${offset}:${offset}:\\d+"$`));
});

test('booleans: true/false in snapshot rows, t/f in live changes', async (t) => {
  const srv = await twoRowServer(t);
  const { handle, offset, pages } = await catchUp(srv, { table: 'items' });
  const rows = pages.flatMap((p) => p.json).filter((m) => m.key);
  assert.deepStrictEqual(rows.map((m) => m.value.done), ['true', 'false']);
  assert.deepStrictEqual(rows[0].value, { id: '1', title: 'a', done: 'true', n: '5' }); // values are strings
  assert.equal(rows[1].value.title, null);
  const pending = shapeGet(srv, { table: 'items', offset, handle, live: 'true' });
  await sleep(30);
  await post(srv, '/tables/items/txn', { ops: [{ op: 'insert', row: { id: 3, done: true } }, { op: 'update', row: { id: 1, done: false } }] });
  const live = await pending;
  const [ins, upd] = live.json;
  assert.equal(ins.value.done, 't');
  assert.deepStrictEqual(upd.value, { done: 'f', id: '1' });
  assert.deepStrictEqual(Object.keys(ins.headers).sort(), ['lsn', 'op_position', 'operation', 'relation', 'txids']);
  assert.deepStrictEqual(Object.keys(upd.headers).sort(), ['last', 'lsn', 'op_position', 'operation', 'relation', 'txids']);
  assert.ok(Number.isInteger(ins.headers.txids[0]));
});

test('400 bodies match Electric', async (t) => {
  const srv = await twoRowServer(t);
  const cases = [
    [{ table: 'items' }, { offset: ["can't be blank"] }],
    [{ table: 'items', offset: '1_2_3' }, { offset: ['has invalid format'] }],
    [{ table: 'items', offset: 'abc' }, { offset: ['has invalid format'] }],
    [{ table: 'items', offset: '0_0' }, { handle: ["can't be blank when offset != -1"] }],
    [{ table: 'items', offset: '-1', live: 'true' }, { live: ["can't be true when offset == -1"] }],
    [{ table: 'items', offset: 'now', live: 'true' }, { live: ["can't be true when offset is 'now'"] }],
    [{ offset: '-1' }, { table: ["can't be blank"] }],
    [{ table: 'nope', offset: '-1' }, { table: ['Table "public"."nope" does not exist. If the table name contains capitals or special characters you must quote it.'] }],
    [{ table: 'Items', offset: '-1' }, null], // unquoted names are downcased: fine
    [{ table: '"Items"', offset: '-1' }, { table: ['Table "public"."Items" does not exist. If the table name contains capitals or special characters you must quote it.'] }],
    [{ table: 'items', offset: '-1', columns: 'title' }, { columns: ['The list of columns must include all primary key columns, missing: id'] }],
    [{ table: 'items', offset: '-1', columns: 'id,nope' }, { columns: ['The following columns are not found on the table: nope'] }],
    [{ table: 'items', offset: '-1', columns: 'id,' }, { columns: ['Invalid zero-length delimited identifier'] }],
    [{ table: 'items', offset: '-1', where: 'id >' }, { where: ['At location 20: syntax error at end of input'] }],
    [{ table: 'items', offset: '-1', where: 'nope = 1' }, { where: ['At location 0: unknown reference nope'] }],
    [{ table: 'items', offset: '-1', where: 'id = $1' }, { where: ['At location 5: parameter $1 was not provided'] }],
    [{ table: 'items', offset: '-1', where: 'id = $1', 'params[2]': '1' }, { params: ['Parameters must be numbered sequentially, starting from 1'] }],
    [{ table: 'items', offset: '-1', where: 'title' }, { where: ['WHERE clause must return a boolean'] }],
    [{ table: 'items', offset: '-1', replica: 'partial' }, { replica: ['is invalid'] }],
  ];
  for (const [query, errors] of cases) {
    const r = await shapeGet(srv, query);
    if (errors === null) {
      assert.equal(r.status, 200, JSON.stringify(query));
      continue;
    }
    assert.equal(r.status, 400, JSON.stringify(query));
    assert.deepStrictEqual(r.json, { message: 'Invalid request', errors }, JSON.stringify(query));
    assert.equal(r.headers.get('cache-control'), 'no-store');
    assert.equal(r.headers.get('content-type'), 'application/json; charset=utf-8');
    assert.equal(r.headers.has('electric-handle'), false);
  }
});

test('cache-control values', async (t) => {
  const srv = await twoRowServer(t);
  const first = await shapeGet(srv, { table: 'items', offset: '-1' });
  assert.equal(first.headers.get('cache-control'), 'public, max-age=604800, s-maxage=3600, stale-while-revalidate=2629746');
  const handle = first.headers.get('electric-handle');
  const second = await shapeGet(srv, { table: 'items', offset: '0_0', handle });
  assert.equal(second.headers.get('cache-control'), 'public, max-age=60, stale-while-revalidate=300');
  const conflict = await shapeGet(srv, { table: 'items', offset: '0_0', handle: 'nope-1' });
  assert.equal(conflict.status, 409);
  assert.equal(conflict.headers.get('cache-control'), 'public, max-age=60, must-revalidate');
  assert.deepStrictEqual(conflict.json, [{ headers: { control: 'must-refetch' } }]);
  assert.equal(conflict.headers.get('electric-handle'), handle);
  const bad = await shapeGet(srv, { table: 'items', offset: 'x' });
  assert.equal(bad.headers.get('cache-control'), 'no-store');
});

test('If-None-Match answers 304', async (t) => {
  const srv = await twoRowServer(t);
  const first = await shapeGet(srv, { table: 'items', offset: '-1' });
  const etag = first.headers.get('etag');
  assert.equal(etag, `"${first.headers.get('electric-handle')}:-1:0_0"`);
  const again = await shapeGet(srv, { table: 'items', offset: '-1' }, { 'if-none-match': `"other", ${etag}` });
  assert.equal(again.status, 304);
  assert.equal(again.text, '');
  assert.equal(again.headers.get('etag'), etag);
  const miss = await shapeGet(srv, { table: 'items', offset: '-1' }, { 'if-none-match': '"other"' });
  assert.equal(miss.status, 200);
});

test('keys: escaping, composite keys, tables without a primary key', async (t) => {
  const srv = await startServer(t);
  await post(srv, '/tables', {
    schema: 'my.schema',
    name: 'a/b',
    columns: [{ name: 'k1', type: 'text' }, { name: 'k2', type: 'int4' }, { name: 'v', type: 'text' }],
    primary_key: ['k1', 'k2'],
    rows: [{ k1: 'x/y"z', k2: 1, v: 'q' }],
  });
  await post(srv, '/tables', {
    name: 'nopk',
    columns: [{ name: 'b', type: 'text' }, { name: 'a', type: 'text' }],
    rows: [{ b: 'B', a: null }],
  });
  const r = await shapeGet(srv, { table: '"my.schema"."a/b"', offset: '-1' });
  assert.equal(r.json[0].key, '"my..schema"."a//b"/"x//y"z"/"1"');
  const n = await shapeGet(srv, { table: 'nopk', offset: '-1' });
  assert.equal(n.json[0].key, '"public"."nopk"/_/"B"'); // every column, sorted by name; NULL is _
});

test('offset=now, out-of-bounds offsets and handle/definition mismatch', async (t) => {
  const srv = await twoRowServer(t, { longPollMs: 400 });
  const { handle, offset } = await catchUp(srv, { table: 'items' });
  const now = await shapeGet(srv, { table: 'items', offset: 'now' });
  assert.equal(now.status, 200);
  assert.equal(now.headers.get('electric-offset'), offset);
  assert.equal(now.headers.get('electric-handle'), handle);
  assert.ok(now.headers.has('electric-up-to-date'));
  assert.ok(UTD(now.json[0]) && now.json.length === 1);

  const started = Date.now();
  const oob = await shapeGet(srv, { table: 'items', offset: '99999999999_0', handle });
  assert.ok(Date.now() - started >= 150, 'waits for the offset to appear first');
  assert.equal(oob.status, 400);
  assert.deepStrictEqual(oob.json, { message: 'Invalid request', errors: { offset: ['out of bounds for this shape'] } });

  // The handle names the unfiltered shape but the request has a where clause.
  const mismatch = await shapeGet(srv, { table: 'items', offset, handle, where: 'id = 1' });
  assert.equal(mismatch.status, 409);
  assert.notEqual(mismatch.headers.get('electric-handle'), handle);
  assert.match(mismatch.headers.get('electric-handle'), /^\d+-\d{16}$/);
});

test('the log is chunked by chunk_bytes like the snapshot', async (t) => {
  const srv = await startServer(t);
  await post(srv, '/tables', itemsTable([{ id: 1, title: 'a' }, { id: 2, title: 'b' }], { chunk_bytes: 300 }));
  const { handle, offset, pages } = await catchUp(srv, { table: 'items' });
  assert.equal(pages.length, 2); // the two small rows stay under 300 bytes: one chunk, then up-to-date
  const long = 'x'.repeat(200);
  await post(srv, '/tables/items/txn', { ops: [{ op: 'insert', row: { id: 3, title: long } }, { op: 'insert', row: { id: 4, title: long } }, { op: 'insert', row: { id: 5, title: 'short' } }] });
  // Each 200-byte row reaches the 300-byte threshold alone: one row per chunk,
  // even inside one transaction, and no up-to-date before the last chunk.
  const a = await shapeGet(srv, { table: 'items', offset, handle });
  assert.deepStrictEqual(a.json.map((m) => m.value.id), ['3']);
  assert.equal(a.headers.has('electric-up-to-date'), false);
  let r = a;
  const ids = a.json.map((m) => m.value.id);
  while (!r.headers.has('electric-up-to-date')) {
    r = await shapeGet(srv, { table: 'items', offset: r.headers.get('electric-offset'), handle });
    ids.push(...r.json.filter((m) => m.key).map((m) => m.value.id));
  }
  assert.deepStrictEqual(ids, ['3', '4', '5']);
});

test('request log records the exchange', async (t) => {
  const srv = await twoRowServer(t);
  await shapeGet(srv, { table: 'items', offset: '-1', 'params[1]': 'x' });
  const [entry] = await control(srv, 'GET', '/requests?table=items');
  assert.equal(entry.method, 'GET');
  assert.equal(entry.path, '/v1/shape');
  assert.deepStrictEqual(entry.query, { table: 'items', offset: '-1', params: { 1: 'x' } });
  assert.equal(entry.status, 200);
  assert.equal(entry.offset_out, '0_0');
  assert.equal(entry.live, false);
  assert.match(entry.handle_out, /^\d+-\d+$/);
  assert.equal(typeof entry.t, 'number');
  await control(srv, 'DELETE', '/requests');
  assert.deepStrictEqual(await control(srv, 'GET', '/requests'), []);
});

test('replacing a table rotates its shapes', async (t) => {
  const srv = await twoRowServer(t);
  const { handle, offset } = await catchUp(srv, { table: 'items' });
  await post(srv, '/tables', itemsTable([{ id: 7, title: 'new' }]));
  const r = await shapeGet(srv, { table: 'items', offset, handle });
  assert.equal(r.status, 409);
  const next = r.headers.get('electric-handle');
  assert.notEqual(next, handle);
  const fresh = await shapeGet(srv, { table: 'items', offset: '-1', handle: next });
  assert.equal(fresh.headers.get('electric-handle'), next);
  assert.deepStrictEqual(fresh.json.filter((m) => m.key).map((m) => m.value.id), ['7']);
});

test('a pending long-poll gets a 409 when its shape is rotated', async (t) => {
  const srv = await twoRowServer(t, { longPollMs: 5000 });
  const { handle, offset } = await catchUp(srv, { table: 'items' });
  const pending = shapeGet(srv, { table: 'items', offset, handle, live: 'true' });
  await sleep(50);
  await post(srv, '/tables/items/rotate');
  const r = await pending;
  assert.equal(r.status, 409);
  assert.deepStrictEqual(r.json, [{ headers: { control: 'must-refetch' } }]);
  // Like Electric, no new handle is known at that moment: short cache, no handle.
  assert.equal(r.headers.has('electric-handle'), false);
  assert.equal(r.headers.get('cache-control'), 'public, max-age=1, must-revalidate');
});

test('log=changes_only has an empty snapshot and then the changes', async (t) => {
  const srv = await twoRowServer(t);
  const { handle, offset, pages } = await catchUp(srv, { table: 'items', log: 'changes_only' });
  assert.deepStrictEqual(pages[0].json.map((m) => m.headers.control), ['snapshot-end']);
  await post(srv, '/tables/items/txn', { ops: [{ op: 'update', row: { id: 2, title: 'x' } }] });
  const r = await shapeGet(srv, { table: 'items', log: 'changes_only', offset, handle });
  assert.deepStrictEqual(r.json[0].value, { id: '2', title: 'x' });
});

test('one transaction over two tables shares its LSN and op positions', async (t) => {
  const srv = await twoRowServer(t);
  await post(srv, '/tables', { name: 'tags', columns: [{ name: 'id', type: 'int4' }], primary_key: ['id'] });
  const a = await catchUp(srv, { table: 'items' });
  const b = await catchUp(srv, { table: 'tags' });
  const res = await post(srv, '/txn', { xid: 4242, ops: [{ table: 'tags', op: 'insert', row: { id: 1 } }, { table: 'items', op: 'delete', row: { id: 1 } }] });
  assert.equal(res.xid, 4242);
  const ra = await shapeGet(srv, { table: 'items', offset: a.offset, handle: a.handle });
  const rb = await shapeGet(srv, { table: 'tags', offset: b.offset, handle: b.handle });
  assert.deepStrictEqual(rb.json[0].headers, { last: true, lsn: res.lsn, op_position: 0, operation: 'insert', relation: ['public', 'tags'], txids: [4242] });
  assert.deepStrictEqual(ra.json[0].headers, { last: true, lsn: res.lsn, op_position: 2, operation: 'delete', relation: ['public', 'items'], txids: [4242] });
  assert.equal(ra.headers.get('electric-offset'), `${res.lsn}_2`);
  assert.equal(ra.json.at(-1).headers.global_last_seen_lsn, res.lsn);
});

test('HEAD is answered like GET without a body', async (t) => {
  const srv = await twoRowServer(t);
  const res = await fetch(`${srv.url}/v1/shape?table=items&offset=-1`, { method: 'HEAD' });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('electric-offset'), '0_0');
  assert.equal(await res.text(), '');
});

test('control API rejects bad input with 400 and a message', async (t) => {
  const srv = await twoRowServer(t);
  const bad = [
    ['/tables', { name: 'x', columns: [] }],
    ['/tables', { name: 'x', columns: [{ name: 'a', type: 'int4' }], primary_key: ['b'] }],
    ['/tables/items/txn', { ops: [{ op: 'insert', row: { id: 1 } }] }], // duplicate key
    ['/tables/items/txn', { ops: [{ op: 'update', row: { id: 99, title: 'x' } }] }], // no such row
    ['/tables/items/txn', { ops: [{ op: 'upsert', row: { id: 1 } }] }],
    ['/tables/items/txn', { ops: [{ op: 'insert', row: { id: 5, nope: 1 } }] }],
    ['/tables/items/txn', { ops: [{ op: 'insert', row: { id: 5, done: 'maybe' } }] }],
    ['/tables/items/txn', { ops: [{ op: 'insert', row: { id: null } }] }], // NOT NULL
    ['/config', { long_poll_ms: -5 }],
    ['/config', { nope: 1 }],
  ];
  for (const [p, body] of bad) {
    const res = await fetch(`${srv.url}/_control${p}`, { method: 'POST', body: JSON.stringify(body) });
    assert.equal(res.status, 400, `${p} ${JSON.stringify(body)}`);
    assert.equal(typeof (await res.json()).message, 'string');
  }
  const notJson = await fetch(`${srv.url}/_control/tables`, { method: 'POST', body: '{' });
  assert.equal(notJson.status, 400);
  // A failed transaction leaves nothing behind.
  const rows = await control(srv, 'GET', '/tables/items/rows');
  assert.deepStrictEqual(rows.map((r) => r.id), ['1', '2']);
  const partial = await fetch(`${srv.url}/_control/tables/items/txn`, { method: 'POST', body: JSON.stringify({ ops: [{ op: 'insert', row: { id: 3 } }, { op: 'insert', row: { id: 3 } }] }) });
  assert.equal(partial.status, 400);
  assert.deepStrictEqual((await control(srv, 'GET', '/tables/items/rows')).map((r) => r.id), ['1', '2']);
});
