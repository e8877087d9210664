// Every fault kind does what it says on the wire, and the official client
// reacts to the recoverable ones as Electric documents.

import test from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import zlib from 'node:zlib';
import { startServer, post, control, itemsTable, shapeGet, sync, waitRows, waitFor, sleep } from './helpers.mjs';

async function setup(t, opts) {
  const srv = await startServer(t, opts);
  await post(srv, '/tables', itemsTable([{ id: 1, title: 'a' }, { id: 2, title: 'b' }]));
  return srv;
}
const fault = (srv, spec) => post(srv, '/faults', spec);
const first = { table: 'items', offset: '-1' };

// Raw GET keeping the exact bytes (no decompression, no UTF-8 decoding).
function rawGet(srv, query, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get(`${srv.url}/v1/shape?${new URLSearchParams(query)}`, { headers }, (res) => {
      const chunks = [];
      const times = [];
      res.on('data', (c) => {
        chunks.push(c);
        times.push(Date.now());
      });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks), chunks: chunks.length, times, complete: true }));
      res.on('error', (e) => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks), error: e }));
      res.on('aborted', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks), error: new Error('aborted') }));
    });
    req.on('error', reject);
  });
}

test('delay holds the answer', async (t) => {
  const srv = await setup(t);
  await fault(srv, { kind: 'delay', ms: 300 });
  const started = Date.now();
  const r = await shapeGet(srv, first);
  assert.ok(Date.now() - started >= 280);
  assert.equal(r.status, 200);
  assert.equal(r.json.length, 3);
});

test('status answers with the given status, Retry-After and body', async (t) => {
  const srv = await setup(t);
  await fault(srv, { kind: 'status', status: 503, retry_after: 2 });
  const r = await shapeGet(srv, first);
  assert.equal(r.status, 503);
  assert.equal(r.headers.get('retry-after'), '2');
  assert.equal(r.headers.get('cache-control'), 'no-store');
  assert.deepStrictEqual(r.json, { message: 'injected 503 fault' });
  await fault(srv, { kind: 'status', status: 401, body: { message: 'Unauthorized - Invalid API secret' } });
  const u = await shapeGet(srv, first);
  assert.equal(u.status, 401);
  assert.deepStrictEqual(u.json, { message: 'Unauthorized - Invalid API secret' });
  assert.equal((await shapeGet(srv, first)).status, 200, 'count 1 is consumed');
});

test('the client retries 5xx and 429 and fails on other 4xx', async (t) => {
  const srv = await setup(t);
  await fault(srv, { kind: 'status', status: 503, count: 2 });
  await fault(srv, { kind: 'status', status: 429, count: 1 });
  const a = sync(t, srv, { table: 'items' });
  await waitRows(a.shape, [{ id: 1, title: 'a', done: null, n: null }, { id: 2, title: 'b', done: null, n: null }], assert);
  const statuses = (await control(srv, 'GET', '/requests')).map((r) => r.status);
  assert.deepStrictEqual(statuses.slice(0, 4), [503, 503, 429, 200]);

  await fault(srv, { kind: 'status', status: 403, when: 'initial' });
  const b = sync(t, srv, { table: 'items' }, { onError: undefined });
  await waitFor(() => b.errors.length > 0, { what: 'client error' });
  assert.equal(b.errors[0].status, 403);
});

test('reset_mid_body sends headers and part of the body, then drops the connection', async (t) => {
  const srv = await setup(t);
  await fault(srv, { kind: 'reset_mid_body' });
  const r = await rawGet(srv, first);
  assert.equal(r.status, 200);
  assert.ok(r.headers['electric-handle']);
  assert.ok(r.error, 'the body must not complete');
  assert.ok(r.body.length > 0);
  assert.throws(() => JSON.parse(r.body.toString()));
});

test('truncate_json ends the body cleanly in the middle of the JSON', async (t) => {
  const srv = await setup(t);
  const full = await shapeGet(srv, first);
  await fault(srv, { kind: 'truncate_json' });
  const r = await shapeGet(srv, first);
  assert.equal(r.status, 200);
  assert.ok(full.text.startsWith(r.text) && r.text.length < full.text.length);
  assert.throws(() => JSON.parse(r.text));
});

test('malformed_message puts a broken message in the array', async (t) => {
  const srv = await setup(t);
  await fault(srv, { kind: 'malformed_message' });
  const syntax = await shapeGet(srv, first);
  assert.equal(syntax.status, 200);
  assert.throws(() => JSON.parse(syntax.text));
  await fault(srv, { kind: 'malformed_message', variant: 'structure' });
  const structure = await shapeGet(srv, first);
  assert.equal(structure.json[0].key, 42);
  assert.equal(structure.json[0].headers.operation, 'upsert');
  assert.equal(structure.json.length, 4);
});

test('missing_headers strips electric-* headers', async (t) => {
  const srv = await setup(t);
  await fault(srv, { kind: 'missing_headers' });
  const r = await shapeGet(srv, first);
  assert.equal(r.status, 200);
  assert.deepStrictEqual([...r.headers.keys()].filter((h) => h.startsWith('electric-') && h !== 'electric-server'), []);
  await fault(srv, { kind: 'missing_headers', headers: ['electric-schema'] });
  const s = await shapeGet(srv, first);
  assert.equal(s.headers.has('electric-schema'), false);
  assert.ok(s.headers.has('electric-handle') && s.headers.has('electric-offset'));
});

test('repeat_409 answers must-refetch with a new handle every time', async (t) => {
  const srv = await setup(t);
  await fault(srv, { kind: 'repeat_409', count: 2 });
  const a = await shapeGet(srv, first);
  const b = await shapeGet(srv, { ...first, handle: a.headers.get('electric-handle') });
  for (const r of [a, b]) {
    assert.equal(r.status, 409);
    assert.deepStrictEqual(r.json, [{ headers: { control: 'must-refetch' } }]);
  }
  assert.notEqual(a.headers.get('electric-handle'), b.headers.get('electric-handle'));
  const c = await shapeGet(srv, first);
  assert.equal(c.status, 200);
  assert.equal(c.headers.get('electric-handle'), b.headers.get('electric-handle'), 'the last redirect names the live shape');
});

test('slow_drip writes the body in small pieces', async (t) => {
  const srv = await setup(t);
  const full = await shapeGet(srv, first);
  await fault(srv, { kind: 'slow_drip', bytes: 64, interval_ms: 25 });
  const started = Date.now();
  const r = await rawGet(srv, first);
  assert.equal(r.body.toString(), full.text);
  const pieces = Math.ceil(full.text.length / 64);
  assert.ok(r.chunks >= pieces - 1, `${r.chunks} reads for ${pieces} pieces`);
  assert.ok(Date.now() - started >= (pieces - 1) * 25 * 0.8);
});

test('bad_utf8 puts invalid UTF-8 in a string value', async (t) => {
  const srv = await setup(t);
  await fault(srv, { kind: 'bad_utf8' });
  const r = await rawGet(srv, first);
  assert.ok(r.body.includes(Buffer.from([0xff, 0xfe])));
  assert.throws(() => new TextDecoder('utf-8', { fatal: true }).decode(r.body));
});

test('wrong_content_type changes the content type', async (t) => {
  const srv = await setup(t);
  await fault(srv, { kind: 'wrong_content_type' });
  const r = await shapeGet(srv, first);
  assert.equal(r.headers.get('content-type'), 'text/html; charset=utf-8');
  assert.equal(r.json.length, 3);
  await fault(srv, { kind: 'wrong_content_type', content_type: 'text/plain', body: '<html>proxy error</html>' });
  const p = await shapeGet(srv, first);
  assert.equal(p.headers.get('content-type'), 'text/plain');
  assert.equal(p.text, '<html>proxy error</html>');
});

test('must_refetch_in_body answers 200 with a must-refetch message', async (t) => {
  const srv = await setup(t);
  const start = await shapeGet(srv, first);
  const handle = start.headers.get('electric-handle');
  await fault(srv, { kind: 'must_refetch_in_body' });
  const r = await shapeGet(srv, { table: 'items', offset: '0_0', handle });
  assert.equal(r.status, 200);
  assert.deepStrictEqual(r.json, [{ headers: { control: 'must-refetch' } }]);
  assert.equal(r.headers.has('electric-up-to-date'), false);
  assert.equal(r.headers.get('electric-handle'), handle);
});

test('legacy_204 answers a long-poll timeout with 204, which the client accepts', async (t) => {
  const srv = await setup(t, { longPollMs: 300 });
  await fault(srv, { kind: 'legacy_204', count: -1 });
  // Only a live request that times out consumes it.
  assert.equal((await shapeGet(srv, first)).status, 200);
  const r = await shapeGet(srv, { table: 'items', offset: '0_0', handle: (await shapeGet(srv, first)).headers.get('electric-handle'), live: 'true' });
  assert.equal(r.status, 204);
  assert.equal(r.text, '');
  assert.equal(r.headers.get('electric-offset'), '0_0');
  assert.ok(r.headers.has('electric-cursor'));

  const { shape, errors } = sync(t, srv, { table: 'items' });
  await shape.rows;
  await sleep(700);
  await post(srv, '/tables/items/txn', { ops: [{ op: 'insert', row: { id: 3, title: 'c' } }] });
  await waitRows(shape, [1, 2, 3].map((id) => ({ id, title: 'abc'[id - 1], done: null, n: null })), assert);
  assert.deepStrictEqual(errors, []);
  assert.ok((await control(srv, 'GET', '/requests')).filter((e) => e.status === 204).length >= 2);
});

test('legacy_headers uses the pre-1.0 header names', async (t) => {
  const srv = await setup(t);
  await fault(srv, { kind: 'legacy_headers', count: 2 });
  const a = await shapeGet(srv, first);
  assert.ok(a.headers.get('electric-shape-id'));
  assert.equal(a.headers.get('electric-chunk-last-offset'), '0_0');
  assert.equal(a.headers.has('electric-handle') || a.headers.has('electric-offset'), false);
  const b = await shapeGet(srv, { table: 'items', offset: '0_0', handle: a.headers.get('electric-shape-id') });
  assert.equal(b.headers.get('electric-chunk-up-to-date'), '');
  assert.equal(b.headers.has('electric-up-to-date'), false);
});

test('gzip encodes the body for clients that accept it', async (t) => {
  const srv = await setup(t);
  const plain = await shapeGet(srv, first);
  await fault(srv, { kind: 'gzip', count: 2 });
  const r = await rawGet(srv, first, { 'accept-encoding': 'gzip, deflate' });
  assert.equal(r.headers['content-encoding'], 'gzip');
  assert.equal(zlib.gunzipSync(r.body).toString(), plain.text);
  const n = await rawGet(srv, first); // no Accept-Encoding: sent as is
  assert.equal(n.headers['content-encoding'], undefined);
  assert.equal(n.body.toString(), plain.text);

  await fault(srv, { kind: 'gzip', count: -1 });
  const { shape } = sync(t, srv, { table: 'items' });
  assert.equal((await shape.rows).length, 2);
});

test('fault matching: table, when, count, list and clear', async (t) => {
  const srv = await setup(t);
  await post(srv, '/tables', { name: 'other', columns: [{ name: 'id', type: 'int4' }], primary_key: ['id'] });
  const f = await fault(srv, { kind: 'status', status: 500, table: 'other', when: 'nonlive', count: -1 });
  assert.equal(f.kind, 'status');
  assert.equal((await shapeGet(srv, first)).status, 200);
  assert.equal((await shapeGet(srv, { table: 'other', offset: '-1' })).status, 500);
  assert.equal((await shapeGet(srv, { table: 'public.other', offset: '-1' })).status, 500);
  assert.equal((await control(srv, 'GET', '/faults')).length, 1);
  await control(srv, 'DELETE', '/faults');
  assert.deepStrictEqual(await control(srv, 'GET', '/faults'), []);
  assert.equal((await shapeGet(srv, { table: 'other', offset: '-1' })).status, 200);
  const bad = await fetch(`${srv.url}/_control/faults`, { method: 'POST', body: JSON.stringify({ kind: 'nope' }) });
  assert.equal(bad.status, 400);
  assert.match((await bad.json()).message, /unknown fault kind/);
});
