// SSE live mode: the wire format as Electric's Encoder.SSE writes it, the
// stream's lifetime, and the official client's liveSse mode (reconnects,
// fallback to long polling after short connections).

import test from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startServer, post, control, itemsTable, shapeGet, sync, waitFor, waitRows, sleep } from './helpers.mjs';

const row = (id, title) => ({ id, title, done: null, n: null });

async function setup(t, config = {}) {
  const srv = await startServer(t);
  await post(srv, '/tables', itemsTable([{ id: 1, title: 'a' }]));
  await post(srv, '/config', { sse_keepalive_ms: 150, sse_timeout_ms: 1200, ...config });
  return srv;
}

async function endOfLog(srv) {
  const first = await shapeGet(srv, { table: 'items', offset: '-1' });
  const handle = first.headers.get('electric-handle');
  const next = await shapeGet(srv, { table: 'items', offset: first.headers.get('electric-offset'), handle });
  return { handle, offset: next.headers.get('electric-offset') };
}

// Opens an SSE request and records the raw text and when it ended.
function openSse(srv, query) {
  const started = Date.now();
  const out = { text: '', ended: null, status: null, headers: null, error: null };
  out.done = new Promise((resolve) => {
    const req = http.get(`${srv.url}/v1/shape?${new URLSearchParams({ live: 'true', live_sse: 'true', ...query })}`, { headers: { accept: 'text/event-stream' } }, (res) => {
      out.status = res.statusCode;
      out.headers = res.headers;
      res.setEncoding('utf8');
      res.on('data', (c) => { out.text += c; });
      res.on('end', () => { out.ended = Date.now() - started; resolve(out); });
      res.on('error', (e) => { out.error = e; resolve(out); });
      res.on('aborted', () => { out.error = new Error('aborted'); resolve(out); });
    });
    req.on('error', (e) => { out.error = e; resolve(out); });
    out.close = () => req.destroy();
  });
  return out;
}

// The events of an SSE text: JSON messages and comments, in order.
function events(text) {
  return text.split('\n\n').filter((e) => e !== '').map((e) => (e.startsWith(':') ? { comment: e } : JSON.parse(e.replace(/^data: /, ''))));
}

// Checks one live SSE round trip; used again below against a broken server.
async function sseRoundTrip(t, srv) {
  const { handle, offset } = await endOfLog(srv);
  const s = openSse(srv, { table: 'items', handle, offset });
  await sleep(100);
  const res = await post(srv, '/tables/items/txn', { ops: [{ op: 'insert', row: { id: 2, title: 'b' } }, { op: 'insert', row: { id: 3, title: 'c' } }] });
  await sleep(100);
  s.close();
  await s.done;
  const evs = events(s.text).filter((e) => !e.comment);
  assert.deepStrictEqual(evs.map((e) => e.key ?? e.headers.control), ['"public"."items"/"2"', '"public"."items"/"3"', 'up-to-date']);
  assert.equal(evs[2].headers.global_last_seen_lsn, res.lsn);
  return s;
}

test('a live SSE stream: headers, one data event per message, up-to-date with the batch LSN', async (t) => {
  const srv = await setup(t);
  const s = await sseRoundTrip(t, srv);
  assert.equal(s.status, 200);
  assert.equal(s.headers['content-type'], 'text/event-stream');
  assert.equal(s.headers.connection, 'keep-alive');
  assert.equal(s.headers['cache-control'], 'public, max-age=1'); // sse_timeout_ms 1200
  assert.match(s.headers['electric-cursor'], /^\d+$/);
  assert.ok(s.headers['electric-handle']);
  assert.equal(s.headers['electric-has-data'], 'true');
  assert.equal(s.headers['electric-up-to-date'], '');
  assert.equal(s.headers['electric-schema'], undefined);
  assert.match(s.text, /^data: \{/);
  assert.ok(!s.text.includes('event:') && !s.text.includes('id:'));
  await post(srv, '/config', { sse_timeout_ms: 60000 });
  const { handle, offset } = await endOfLog(srv);
  const d = openSse(srv, { table: 'items', handle, offset });
  await waitFor(() => d.headers);
  assert.equal(d.headers['cache-control'], 'public, max-age=59'); // Electric's default
  assert.equal(d.headers['electric-offset'], offset);
  d.close();
});

test('keep-alive comments when idle, and the server closes after sse_timeout_ms', async (t) => {
  const srv = await setup(t, { sse_keepalive_ms: 100, sse_timeout_ms: 700 });
  const { handle, offset } = await endOfLog(srv);
  const s = await openSse(srv, { table: 'items', handle, offset }).done;
  assert.equal(s.error, null);
  assert.ok(s.ended >= 650 && s.ended < 2000, `closed after ${s.ended} ms`);
  const evs = events(s.text);
  assert.ok(evs.length >= 4 && evs.every((e) => e.comment === ': keep-alive'), s.text);
});

test('the stream ends on rotation; a client that is behind gets the messages and the end', async (t) => {
  const srv = await setup(t);
  const { handle, offset } = await endOfLog(srv);
  const s = openSse(srv, { table: 'items', handle, offset });
  await sleep(100);
  await post(srv, '/tables/items/rotate');
  await s.done;
  assert.ok(s.ended < 1000);
  assert.deepStrictEqual(events(s.text), []);
  assert.equal((await shapeGet(srv, { table: 'items', handle, offset, live: 'true', live_sse: 'true' })).status, 409);

  const b = await endOfLog(srv);
  const res = await post(srv, '/tables/items/txn', { ops: [{ op: 'update', row: { id: 1, title: 'x' } }] });
  const behind = await openSse(srv, { table: 'items', handle: b.handle, offset: b.offset, experimental_live_sse: 'true', live_sse: undefined }).done;
  assert.ok(behind.ended < 500);
  assert.deepStrictEqual(events(behind.text).map((e) => e.headers.operation ?? e.headers.control), ['update', 'up-to-date']);
  assert.equal(behind.headers['electric-offset'], `${res.lsn}_0`);
  assert.equal(behind.headers['content-type'], 'text/event-stream');
  // live_sse without live is refused, as Electric does.
  const bad = await shapeGet(srv, { table: 'items', handle: b.handle, offset: b.offset, live_sse: 'true' });
  assert.equal(bad.status, 400);
  assert.deepStrictEqual(bad.json.errors, { live_sse: ["can't be true unless live is also true"] });
});

test('the official client in liveSse mode', async (t) => {
  const srv = await setup(t, { sse_timeout_ms: 600 });
  const c = sync(t, srv, { table: 'items' }, { liveSse: true });
  await c.shape.rows;
  await post(srv, '/tables/items/txn', { ops: [{ op: 'insert', row: { id: 2, title: 'b' } }] });
  await waitRows(c.shape, [row(1, 'a'), row(2, 'b')], assert);
  await sleep(800); // past one server-side close: the client reconnects
  await post(srv, '/tables/items/txn', { ops: [{ op: 'update', row: { id: 2, title: 'B' } }] });
  await waitRows(c.shape, [row(1, 'a'), row(2, 'B')], assert);
  const live = (await control(srv, 'GET', '/requests')).filter((r) => r.live);
  assert.ok(live.length >= 2 && live.every((r) => r.sse && r.query.live_sse === 'true' && r.query.experimental_live_sse === 'true'));
  assert.deepStrictEqual(c.errors, []);
});

test('sse_cut_mid_event: the client reconnects and loses nothing', async (t) => {
  const srv = await setup(t);
  const { handle, offset } = await endOfLog(srv);
  await post(srv, '/faults', { kind: 'sse_cut_mid_event', after_events: 1 });
  const s = openSse(srv, { table: 'items', handle, offset });
  await sleep(100);
  await post(srv, '/tables/items/txn', { ops: [{ op: 'insert', row: { id: 2, title: 'b' } }, { op: 'insert', row: { id: 3, title: 'c' } }] });
  await s.done;
  assert.ok(s.error, 'the connection must break');
  assert.match(s.text, /^data: \{.*\}\n\ndata: \{/s);
  assert.ok(!s.text.endsWith('\n\n'));

  // The official client: its stream is cut in the middle of the next event.
  // (A cut inside a response for a client that is behind would lose those
  // messages: the client takes the offset from the response headers.)
  const c = sync(t, srv, { table: 'items' }, { liveSse: true });
  await c.shape.rows;
  await post(srv, '/faults', { kind: 'sse_cut_mid_event', after_events: 0 });
  await waitFor(async () => (await control(srv, 'GET', '/requests')).some((r) => r.fault === 'sse_cut_mid_event' && r.offset_out === r.query.offset));
  await sleep(50);
  await post(srv, '/tables/items/txn', { ops: [{ op: 'insert', row: { id: 4, title: 'd' } }] });
  await waitRows(c.shape, [row(1, 'a'), row(2, 'b'), row(3, 'c'), row(4, 'd')], assert);
});

test('three short SSE connections make the official client fall back to long polling', async (t) => {
  const srv = await setup(t);
  await post(srv, '/faults', { kind: 'sse_short', count: -1 });
  const c = sync(t, srv, { table: 'items' }, { liveSse: true });
  await c.shape.rows;
  await waitFor(async () => (await control(srv, 'GET', '/requests')).some((r) => r.live && !r.sse), { timeout: 15000, what: 'a long-poll' });
  const live = (await control(srv, 'GET', '/requests')).filter((r) => r.live);
  const firstPoll = live.findIndex((r) => !r.sse);
  assert.equal(firstPoll, 3, JSON.stringify(live.map((r) => [r.sse, r.fault])));
  assert.ok(live.slice(0, 3).every((r) => r.fault === 'sse_short'));
  await post(srv, '/tables/items/txn', { ops: [{ op: 'insert', row: { id: 2, title: 'b' } }] });
  await waitRows(c.shape, [row(1, 'a'), row(2, 'b')], assert);
});

test('a server with broken SSE framing is caught', async (t) => {
  // The same round trip, against a server whose events end with one newline.
  const srv = await setup(t);
  await post(srv, '/debug', { sse_bad_framing: true });
  await assert.rejects(sseRoundTrip(t, srv));
  // The official client sees broken events and never gets the new rows.
  await post(srv, '/tables/items/txn', { ops: [{ op: 'delete', row: { id: 2 } }, { op: 'delete', row: { id: 3 } }] });
  const c = sync(t, srv, { table: 'items' }, { liveSse: true });
  await c.shape.rows;
  await waitFor(async () => (await control(srv, 'GET', '/requests')).some((r) => r.sse));
  await post(srv, '/tables/items/txn', { ops: [{ op: 'insert', row: { id: 5, title: 'e' } }, { op: 'insert', row: { id: 6, title: 'f' } }] });
  await assert.rejects(waitFor(() => c.shape.currentRows.length === 3, { timeout: 2000, what: 'the new rows' }));
  assert.deepStrictEqual(c.shape.currentRows, [row(1, 'a')]);
});
