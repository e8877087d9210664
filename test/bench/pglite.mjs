// PGlite, both ways, in one Node process: the same shape into a fresh
// in-memory PGlite (@electric-sql/pglite from pglite/, the version the
// bundle is built for) through the seed's @electric-sql/pglite-sync (from
// test/peer) and through ours (build/pglite/: `make pglite`).
//
//   node --expose-gc test/bench/pglite.mjs --url http://127.0.0.1:PORT/v1/shape \
//        --table gen_100000 --rows 100000 --impl peer|ours --method insert|csv|json
//        [--data-dir DIR (default: in memory)] [--floor 1] [--timeout-s S]
//        [--profile FILE.cpuprofile]
//
// One sync per process (test/bench/bench.mjs runs one process per run), so
// that the peak RSS is the run's own: Node and V8 keep freed memory resident,
// and a second PGlite in the same process would hide the first one's peak.
// rss_base_mb is the RSS just before syncShapeToTable() (PGlite started, the
// table created), rss_sync_peak_mb the highest RSS sampled every 20 ms from
// then until onInitialSync, rss_hwm_mb the process's VmHWM (start-up
// included).  RSS can hide growth (memory freed after start-up stays
// resident and is reused), so live_base_mb/live_peak_mb sample V8's heapUsed +
// external (JavaScript objects, buffers, and PGlite's WASM memory) the same
// way.  PGlite's start-up is excluded from the timing.  Prints one JSON
// line: {impl, method, rows, seconds, rows_per_s, count, ok, rss_base_mb,
// rss_sync_peak_mb, rss_hwm_mb, cpu_s, versions} or {..., error}; with
// --floor, also floor_fetch_s, floor_fetch_pages, floor_insert_select_s,
// floor_copy_s and floor_copy_index_after_s (see fetchAll() and floor()).
// With --profile, V8's sampling profiler (every 200 µs) runs from
// syncShapeToTable() to onInitialSync and writes FILE for wasmprof.mjs; such
// a run is not a timed one.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { startProfiler } from './wasmprof.mjs';

const REPO = path.join(path.dirname(fileURLToPath(import.meta.url)), '../..');
const modUrl = (...p) => pathToFileURL(path.join(REPO, ...p)).href;
const { PGlite } = await import(modUrl('pglite/node_modules/@electric-sql/pglite/dist/index.js'));
const peer = await import(modUrl('test/peer/node_modules/@electric-sql/pglite-sync/dist/index.js'));
const ours = await import(modUrl('build/pglite/index.js'));
const version = (...p) => JSON.parse(readFileSync(path.join(REPO, ...p, 'package.json'), 'utf8')).version;

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const url = args.url;
const table = args.table;
const rows = Number(args.rows);
const impl = args.impl;
const method = args.method;
if (!['peer', 'ours'].includes(impl) || !method) throw new Error('--impl peer|ours and --method are required');
const timeoutS = Number(args['timeout-s'] ?? 900);
const dataDir = args['data-dir'] ?? null; // a directory on disk; default: in memory
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const mb = (b) => Math.round(b / 1048576);

// the peer applies batches in a promise nobody awaits: its failures land here
let failCurrent = null;
process.on('unhandledRejection', (e) => {
  if (failCurrent) failCurrent(e);
  else out({ unhandled: String(e?.message ?? e) });
});

const hwmMb = () => {
  const m = readFileSync('/proc/self/status', 'utf8').match(/VmHWM:\s+(\d+) kB/);
  return m ? Math.round(Number(m[1]) / 1024) : null;
};

// What fetching the shape takes, with nothing done with it: every page of
// the snapshot from offset -1 to the up-to-date, each body read whole, in
// this process after the sync (so with fetch already loaded).  With the
// loading floor of floor() it bounds what any sync in this process can reach.
async function fetchAll() {
  const t0 = performance.now();
  let offset = '-1';
  let handle = null;
  for (let pages = 1; ; pages++) {
    const u = new URL(url);
    u.searchParams.set('table', table);
    u.searchParams.set('offset', offset);
    if (handle) u.searchParams.set('handle', handle);
    const res = await fetch(u);
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`floor fetch: ${res.status} from ${u}`);
    if (res.headers.has('electric-up-to-date')) return { s: (performance.now() - t0) / 1000, pages };
    offset = res.headers.get('electric-offset');
    handle = res.headers.get('electric-handle');
  }
}

// What PGlite itself takes to load the same rows, with no network and no
// JSON: INSERT ... SELECT from the synced table, COPY FROM of its CSV (the
// seed's csv method ends in that COPY), and that COPY into the table without
// its primary key, the key added after (one sorted index build, as our
// loader does past 8,192 rows): no loader from text does better than that.
async function floor(pg) {
  const fetched = await fetchAll();
  const { blob } = await pg.query("COPY bench TO '/dev/blob' (FORMAT csv)");
  const timed = async (sql, opts) => {
    await pg.exec('DROP TABLE IF EXISTS floor; CREATE TABLE floor (LIKE bench INCLUDING ALL)');
    const t0 = performance.now();
    for (const q of sql) await pg.query(q, [], opts);
    return (performance.now() - t0) / 1000;
  };
  const insertSelect = await timed(['INSERT INTO floor SELECT * FROM bench']);
  const copy = await timed(["COPY floor FROM '/dev/blob' (FORMAT csv)"], { blob });
  const copyIndexAfter = await timed(['ALTER TABLE floor DROP CONSTRAINT floor_pkey', "COPY floor FROM '/dev/blob' (FORMAT csv)",
    'ALTER TABLE floor ADD PRIMARY KEY (id)'], { blob });
  await pg.exec('DROP TABLE floor');
  return { floor_fetch_s: fetched.s, floor_fetch_pages: fetched.pages, floor_insert_select_s: insertSelect, floor_copy_s: copy, floor_copy_index_after_s: copyIndexAfter };
}

async function run() {
  const electricSync = impl === 'peer' ? peer.electricSync : ours.electricSync;
  globalThis.gc?.();
  const pg = await PGlite.create({ ...(dataDir ? { dataDir } : {}), extensions: { electric: electricSync() } });
  const result = { impl, method, rows };
  let sampler = null;
  let timer = null;
  let sub = null;
  try {
    await pg.exec('CREATE TABLE bench (id int8 PRIMARY KEY, title text, done bool, created_at timestamptz, amount numeric)');
    if (impl === 'ours') await pg.electric.initMetadataTables(); // CREATE EXTENSION: not part of the sync
    globalThis.gc?.();
    const live = (u) => u.heapUsed + u.external; // JS objects, buffers and PGlite's WASM memory
    const u0 = process.memoryUsage();
    const base = u0.rss;
    const liveBase = live(u0);
    let peak = base;
    let livePeak = liveBase;
    const sample = () => {
      const u = process.memoryUsage();
      peak = Math.max(peak, u.rss);
      livePeak = Math.max(livePeak, live(u));
    };
    sampler = setInterval(sample, 20);
    const stopProfiler = args.profile ? await startProfiler(200) : null;
    const synced = new Promise((resolve, reject) => {
      failCurrent = reject;
      timer = setTimeout(() => reject(new Error(`timeout after ${timeoutS} s`)), timeoutS * 1000);
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      pg.electric.syncShapeToTable({
        shape: { url, params: { table } },
        table: 'bench',
        primaryKey: ['id'],
        shapeKey: null,
        initialInsertMethod: method,
        onInitialSync: () => {
          const cpu = process.cpuUsage(cpu0);
          resolve({ seconds: (performance.now() - t0) / 1000, cpu_s: (cpu.user + cpu.system) / 1e6 });
        },
        onError: (e) => reject(e),
      }).then((s) => {
        sub = s;
      }, reject);
    });
    const t = await synced;
    if (stopProfiler) writeFileSync(args.profile, JSON.stringify(await stopProfiler()));
    clearInterval(sampler);
    sample();
    const count = Number((await pg.query('SELECT count(*) AS n FROM bench')).rows[0].n);
    Object.assign(result, t, { rows_per_s: rows / t.seconds, count, ok: count === rows, rss_base_mb: mb(base), rss_sync_peak_mb: mb(peak), rss_hwm_mb: hwmMb(),
      live_base_mb: mb(liveBase), live_peak_mb: mb(livePeak) });
    if (args.floor) Object.assign(result, await floor(pg));
  } catch (e) {
    result.error = String(e?.message ?? e);
  } finally {
    clearInterval(sampler);
    clearTimeout(timer);
    failCurrent = null;
    await Promise.resolve(sub?.unsubscribe()).catch(() => {});
    await pg.close().catch(() => {});
  }
  result.versions = {
    pglite: version('pglite/node_modules/@electric-sql/pglite'),
    pglite_sync_peer: version('test/peer/node_modules/@electric-sql/pglite-sync'),
    client_peer: version('test/peer/node_modules/@electric-sql/client'),
  };
  out(result);
}

await run();
process.exit(0);
