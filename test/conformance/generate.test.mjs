// Generated benchmark tables: pre-rendered pages must be byte-for-byte what
// the generic path renders, fast to serve, and writable at volume.

import test from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startServer, post, control, shapeGet, sync, waitFor } from './helpers.mjs';

const execFileP = promisify(execFile);

// Downloads a whole snapshot with plain HTTP; returns {rows, pages, ms, bytes}.
async function download(srv, query) {
  const started = Date.now();
  let r = await shapeGet(srv, { ...query, offset: '-1' });
  const handle = r.headers.get('electric-handle');
  const rows = [];
  let pages = 0;
  let bytes = 0;
  for (;;) {
    pages++;
    bytes += r.text.length;
    for (const m of r.json) if (m.key) rows.push(m);
    if (r.headers.has('electric-up-to-date')) break;
    r = await shapeGet(srv, { ...query, offset: r.headers.get('electric-offset'), handle });
  }
  return { rows, pages, bytes, ms: Date.now() - started };
}

test('pre-rendered pages equal the generic rendering', async (t) => {
  const srv = await startServer(t);
  await post(srv, '/config', { chunk_bytes: 64 * 1024 });
  const info = await post(srv, '/tables/bench/generate', { rows: 5000 });
  assert.equal(info.row_count, 5000);
  assert.ok(info.pages > 5, `${info.pages} pages`);
  const fast = await download(srv, { table: 'bench' });
  const generic = await download(srv, { table: 'bench', where: 'id > 0' }); // any where takes the generic path
  assert.equal(fast.rows.length, 5000);
  assert.deepStrictEqual(fast.rows, generic.rows);
  assert.equal(fast.pages, generic.pages);
  assert.deepStrictEqual(fast.rows[41].value, {
    id: '42', title: 'Item #42: lorem ipsum dolor sit', done: 'true', created_at: '2024-01-01 00:25:54+00', amount: '3325.98',
  });
});

test('serving a generated snapshot is fast', async (t) => {
  const srv = await startServer(t);
  const n = 300_000;
  await post(srv, '/tables/bench/generate', { rows: n });
  // Page offsets of a generated shape are known once it exists, so one curl
  // process can fetch every page over one connection; this measures the
  // server, not a JSON parser in this process.
  const first = await fetch(`${srv.url}/v1/shape?table=bench&offset=-1`);
  await first.arrayBuffer();
  const handle = first.headers.get('electric-handle');
  const [shape] = await control(srv, 'GET', '/shapes');
  const urls = [`${srv.url}/v1/shape?table=bench&offset=-1`];
  for (let i = 0; i < shape.snapshot_chunks - 1; i++) urls.push(`${srv.url}/v1/shape?table=bench&offset=0_${i}&handle=${handle}`);
  const args = ['-s', '-w', '%{size_download} %{http_code}\\n', ...urls.flatMap((u) => ['-o', '/dev/null', u])];
  const started = Date.now();
  let out;
  try {
    out = (await execFileP('curl', args, { maxBuffer: 1 << 20 })).stdout;
  } catch (e) {
    if (e.code === 'ENOENT') return t.skip('curl is not installed');
    throw e;
  }
  const ms = Math.max(Date.now() - started, 1);
  const lines = out.trim().split('\n').map((l) => l.split(' '));
  assert.ok(lines.every(([, code]) => code === '200'));
  const bytes = lines.reduce((a, [size]) => a + Number(size), 0);
  const rate = Math.round((n / ms) * 1000);
  t.diagnostic(`${n} rows, ${lines.length} pages, ${bytes} bytes in ${ms} ms: ${rate} rows/s`);
  assert.ok(bytes > n * 200);
  assert.ok(rate > 400_000, `${rate} rows/s`);
});

test('100,000 single-row transactions append quickly and reach live clients', async (t) => {
  const srv = await startServer(t);
  await post(srv, '/tables/bench/generate', { rows: 1000 });
  const { shape } = sync(t, srv, { table: 'bench', columns: ['id', 'title'] });
  await shape.rows;
  const txns = Array.from({ length: 100_000 }, (_, i) => ({ ops: [{ op: 'update', row: { id: (i % 1000) + 1, title: `v${i}` } }] }));
  const started = Date.now();
  const res = await post(srv, '/tables/bench/txns', { txns });
  const ms = Date.now() - started;
  t.diagnostic(`100000 transactions appended in ${ms} ms`);
  assert.equal(res.count, 100_000);
  assert.ok(ms < 5000, `${ms} ms`);
  assert.ok(BigInt(res.last.lsn) > BigInt(res.first.lsn));
  await waitFor(() => shape.currentRows.length === 1000 && shape.currentRows.every((r) => r.title === `v${99_000 + Number(r.id) - 1}`), { what: 'final titles', timeout: 20_000 });

  // A shape created after the writes sees them in its snapshot.
  const after = await download(srv, { table: 'bench' });
  assert.equal(after.rows.find((m) => m.value.id === '7').value.title, 'v99006');
  const rows = await control(srv, 'GET', '/tables/bench/rows');
  assert.equal(rows.length, 1000);
});
