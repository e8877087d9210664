// The seed peer: @electric-sql/pglite (in memory) + @electric-sql/pglite-sync
// in Node, syncing the same shape from the same test server.
//
//   node test/bench/peer.mjs --url http://127.0.0.1:PORT/v1/shape --table gen_100000 \
//        --rows 100000 [--methods insert,csv,json] [--repeat K] [--server-pid PID]
//
// Prints one JSON line per method and round: {method, round, rows, seconds, rows_per_s, count, cpu_s}
// and a final {"done": true, startup_s, peak_rss_mb}. PGlite start-up is
// excluded from every timing (it is measured and reported separately).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

// test/peer is its own npm project; load its packages' ES module builds.
const peerModules = path.join(path.dirname(fileURLToPath(import.meta.url)), '../peer/node_modules/@electric-sql');
const load = (pkg) => import(pathToFileURL(path.join(peerModules, pkg, 'dist/index.js')).href);
const { PGlite } = await load('pglite');
const { electricSync } = await load('pglite-sync');

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const url = args.url;
const table = args.table;
const rows = Number(args.rows);
const methods = (args.methods ?? 'insert,csv,json').split(',');
const repeat = Number(args.repeat ?? 1);
const timeoutS = Number(args['timeout-s'] ?? 1800);
const serverPid = args['server-pid'] ? Number(args['server-pid']) : null;
const ticks = (pid) => {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // USER_HZ, 100 on Linux
  } catch {
    return null;
  }
};
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const peakRssMb = () => {
  const m = readFileSync('/proc/self/status', 'utf8').match(/VmHWM:\s+(\d+) kB/);
  return m ? Math.round(Number(m[1]) / 1024) : null;
};

// pglite-sync applies batches in a promise nobody awaits: its failures surface
// here, and fail the method being timed.
let failCurrent = null;
process.on('unhandledRejection', (e) => {
  if (failCurrent) failCurrent(e);
  else out({ unhandled: String(e?.message ?? e) });
});

const t0 = performance.now();
const pg = await PGlite.create({ extensions: { electric: electricSync() } });
await pg.query('SELECT 1');
const startupS = (performance.now() - t0) / 1000;
out({ startup_s: startupS });

const plan = [];
for (let round = 1; round <= repeat; round++) for (const method of methods) plan.push([round, method]);
for (const [round, method] of plan) {
  const local = `peer_${method}_${round}`;
  await pg.exec(`CREATE TABLE ${local} (id int8 PRIMARY KEY, title text, done bool, created_at timestamptz, amount numeric)`);
  let resolveSync;
  let rejectSync;
  const synced = new Promise((res, rej) => {
    resolveSync = res;
    rejectSync = rej;
  });
  failCurrent = rejectSync;
  const cpu0 = process.cpuUsage();
  const srv0 = serverPid ? ticks(serverPid) : null;
  const started = performance.now();
  let sub;
  const timer = setTimeout(() => rejectSync(new Error(`timeout after ${timeoutS} s`)), timeoutS * 1000);
  try {
    sub = await pg.electric.syncShapeToTable({
      shape: { url, params: { table } },
      table: local,
      primaryKey: ['id'],
      shapeKey: null,
      initialInsertMethod: method,
      onInitialSync: () => resolveSync(),
      onError: (e) => rejectSync(e),
    });
    await synced;
    const seconds = (performance.now() - started) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const srv1 = serverPid ? ticks(serverPid) : null;
    const count = Number((await pg.query(`SELECT count(*) AS n FROM ${local}`)).rows[0].n);
    out({ method, round, rows, seconds, rows_per_s: rows / seconds, count, ok: count === rows,
      cpu_s: (cpu.user + cpu.system) / 1e6, server_cpu_s: srv0 != null && srv1 != null ? srv1 - srv0 : null });
  } catch (e) {
    out({ method, round, rows, error: String(e?.message ?? e) });
  } finally {
    clearTimeout(timer);
    sub?.unsubscribe();
  }
  await pg.exec(`DROP TABLE ${local}`);
}
out({ done: true, startup_s: startupS, peak_rss_mb: peakRssMb() });
await pg.close();
process.exit(0);
