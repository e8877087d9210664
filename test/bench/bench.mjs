#!/usr/bin/env node
// pglite_sync benchmark. Run through test/bench/run (as root), which installs
// what is missing, builds and installs the extension, then runs this file.
//
// In one run on one machine it starts a throwaway PostgreSQL 15 (as the
// unprivileged user, with pglite_sync preloaded) and the Electric-compatible
// test server (a separate process), and measures:
//
//   1. initial sync of an N-row generated shape for each initial_insert_method,
//      next to native COPY ... FROM of the same rows and to the seed peer
//      (@electric-sql/pglite + @electric-sql/pglite-sync in Node);
//   2. the worker's peak private memory (RssAnon) during those syncs;
//   3. live apply of many single-row update transactions appended at once;
//   4. the CPU cost of idle live subscriptions;
//   5. latency: isolated single-row transactions, one per response,
//      response received → commit (p50, p99);
//   6. group: one group of N shapes (one worker) against N single
//      subscriptions: initial sync, idle CPU, memory, live apply;
//   7. scale: many single-shape subscriptions on one server: memory per
//      worker and in total, idle CPU, time until all are live after a restart;
//   8. PGlite: the same shape into PGlite through the seed's plugin and
//      through ours (build/pglite/), rows/s and memory (test/bench/pglite.mjs).
//
// It prints Markdown tables and verdicts, writes them (plus raw JSON) to
// test/bench/results/, and writes BENCHMARKS.md at the top of the repository
// (not in --quick mode unless --md is given).

import pg from 'pg';
import { spawn, execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { analyze as analyzeProfile, pgliteModules, report as profileText } from './wasmprof.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '../..');
const execFileAsync = promisify(execFile);
const PG_MAJOR = 15;
const PGBIN = `/usr/lib/postgresql/${PG_MAJOR}/bin`;
const OS_USER = process.env.TEST_USER || 'postgres';
// a `_whole` method runs with pglite_sync.stream_snapshot off: spooled whole, loaded at the end;
// a `_paced` one with every page of the snapshot answered after --page-delay ms, as a
// remote service producing its pages would (not counted against the targets)
const ALL_METHODS = ['insert', 'copy', 'json', 'copy_whole', 'copy_paced', 'copy_whole_paced'];
const baseMethod = (m) => m.replace(/_paced$/, '').replace(/_whole$/, '');
const PEER_METHODS = ['insert', 'csv', 'json'];
// PGlite both ways: the same, and csv with the server taking --page-delay ms per page
const PGLITE_METHODS = [...PEER_METHODS, 'csv_paced'];
const isPaced = (m) => m.endsWith('_paced');
const LONG_POLL_MS = 20000;
const PHASES = ['initial', 'peer', 'live', 'idle', 'latency', 'group', 'scale', 'pglite'];
const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

// ---- options ------------------------------------------------------------------

const USAGE = `usage: test/bench/run [options]        (as root)
  --rows N           rows of the large initial-sync shape (default 1000000; --quick 100000)
  --peer-rows N      rows for the pglite-sync peer comparison (default 100000; --quick 20000)
  --live-txns N      single-row update transactions for live apply (default 100000; --quick 10000)
  --idle-subs N      idle live subscriptions (default 50)
  --idle-seconds S   idle measuring window (default 60; --quick 10)
  --methods LIST     initial_insert_method values (default insert,copy,json,copy_whole,
                     copy_paced,copy_whole_paced; _whole: pglite_sync.stream_snapshot off;
                     _paced: each snapshot page answered after --page-delay ms)
  --page-delay MS    the server's time per page for the _paced methods (default 100)
  --peer-methods L   pglite-sync initialInsertMethod values (default insert,csv,json)
  --repeat K         timed runs of each initial sync, native COPY, peer method and live
                     apply (debug off); the median is reported (default 3; --quick 1)
  --pglite-rows L    row counts for the PGlite comparison (default 100000,300000; --quick 20000,60000)
  --pglite-methods L initialInsertMethod values there (default insert,csv,json,csv_paced;
                     _paced: each snapshot page answered after --page-delay ms)
  --pglite-ours-rows L larger row counts where only ours runs (its methods but _paced), for
                     the memory target (default 1000000; --quick none; '' for none)
  --latency-txns N   isolated single-row transactions for the latency phase (default 1000; --quick 100)
  --latency-rate R   their rate per second, one POST at a time on a timer (default 200)
  --group-shapes N   members of the group (and single subscriptions to compare) (default 50; --quick 10)
  --group-rows N     rows of each member's table (default 1000; --quick 100)
  --group-txns N     transactions touching every member table, for group live apply (default 200; --quick 20)
  --group-seconds S  idle measuring window of the group phase (default 30; --quick 5)
  --scale-subs N     single-shape subscriptions of the scale phase (default 200; --quick 20)
  --scale-rows N     rows of each of their tables (default 100)
  --scale-seconds S  idle measuring window of the scale phase (default 60; --quick 10)
  --only LIST        phases to run: initial,peer,live,idle,latency,group,scale,pglite (default all)
  --profile          also profile the worker with perf during an extra, untimed
                     sync of --rows per method (results/perf-<method>.txt), and
                     ours in PGlite (csv, first --pglite-rows) with V8's profiler
  --quick            small sizes for fast iteration
  --md PATH          write the Markdown report there (default BENCHMARKS.md; not in --quick)
  --no-md            do not write BENCHMARKS.md
  --keep             keep the scratch directory (data directory, logs)
  --render FILE      only write the report (--md) again from a results/*.json
  --no-build         (run only) do not build and install the extension first`;

function parseArgs(argv) {
  const o = {
    quick: false, rows: null, peerRows: null, liveTxns: null, idleSubs: 50, idleSeconds: null,
    methods: ALL_METHODS, peerMethods: PEER_METHODS, only: [...PHASES], pageDelay: 100,
    latencyTxns: null, latencyRate: 200, groupShapes: null, groupRows: null, groupTxns: null, groupSeconds: null,
    scaleSubs: null, scaleRows: 100, scaleSeconds: null,
    pgliteRows: null, pgliteMethods: PGLITE_METHODS, pgliteOursRows: null,
    profile: false, md: undefined, keep: false, repeat: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    const int = () => {
      const v = Number(val().replace(/_/g, ''));
      if (!Number.isInteger(v) || v < 1) throw new Error(`${a} needs a positive integer`);
      return v;
    };
    if (a === '--quick') o.quick = true;
    else if (a === '--rows') o.rows = int();
    else if (a === '--peer-rows') o.peerRows = int();
    else if (a === '--live-txns') o.liveTxns = int();
    else if (a === '--idle-subs') o.idleSubs = int();
    else if (a === '--idle-seconds') o.idleSeconds = int();
    else if (a === '--repeat') o.repeat = int();
    else if (a === '--page-delay') o.pageDelay = int();
    else if (a === '--latency-txns') o.latencyTxns = int();
    else if (a === '--latency-rate') o.latencyRate = int();
    else if (a === '--group-shapes') o.groupShapes = int();
    else if (a === '--group-rows') o.groupRows = int();
    else if (a === '--group-txns') o.groupTxns = int();
    else if (a === '--group-seconds') o.groupSeconds = int();
    else if (a === '--scale-subs') o.scaleSubs = int();
    else if (a === '--scale-rows') o.scaleRows = int();
    else if (a === '--scale-seconds') o.scaleSeconds = int();
    else if (a === '--methods') o.methods = val().split(',');
    else if (a === '--peer-methods') o.peerMethods = val().split(',');
    else if (a === '--only') o.only = val().split(',');
    else if (a === '--pglite-rows') o.pgliteRows = val().split(',').map((x) => Number(x.replace(/_/g, '')));
    else if (a === '--pglite-methods') o.pgliteMethods = val().split(',');
    else if (a === '--pglite-ours-rows') o.pgliteOursRows = val().split(',').filter((x) => x !== '').map((x) => Number(x.replace(/_/g, '')));
    else if (a === '--profile') o.profile = true;
    else if (a === '--md') o.md = val();
    else if (a === '--no-md') o.md = null;
    else if (a === '--keep') o.keep = true;
    else if (a === '--render') o.render = val();
    else if (a === '--no-build') { /* handled by the run wrapper */ }
    else if (a === '-h' || a === '--help') {
      console.log(USAGE);
      process.exit(0);
    } else throw Object.assign(new Error(`unknown option ${a}\n${USAGE}`), { usage: true });
  }
  for (const m of o.methods) if (!ALL_METHODS.includes(m)) throw new Error(`unknown method ${m}`);
  for (const m of o.peerMethods) if (!PEER_METHODS.includes(m)) throw new Error(`unknown peer method ${m}`);
  for (const p of o.only) if (!PHASES.includes(p)) throw new Error(`unknown phase ${p}`);
  for (const m of o.pgliteMethods) if (!PGLITE_METHODS.includes(m)) throw new Error(`unknown PGlite method ${m}`);
  o.pgliteRows ??= o.quick ? [20_000, 60_000] : [100_000, 300_000];
  for (const n of o.pgliteRows) if (!Number.isInteger(n) || n < 1) throw new Error('--pglite-rows needs positive integers');
  o.pgliteOursRows ??= o.quick ? [] : [1_000_000];
  for (const n of o.pgliteOursRows) if (!Number.isInteger(n) || n < 1) throw new Error('--pglite-ours-rows needs positive integers');
  o.rows ??= o.quick ? 100_000 : 1_000_000;
  o.peerRows ??= o.quick ? 20_000 : 100_000;
  o.liveTxns ??= o.quick ? 10_000 : 100_000;
  o.idleSeconds ??= o.quick ? 10 : 60;
  o.repeat ??= o.quick ? 1 : 3;
  o.latencyTxns ??= o.quick ? 100 : 1000;
  o.groupShapes ??= o.quick ? 10 : 50;
  o.groupRows ??= o.quick ? 100 : 1000;
  o.groupTxns ??= o.quick ? 20 : 200;
  o.groupSeconds ??= o.quick ? 5 : 30;
  o.scaleSubs ??= o.quick ? 20 : 200;
  o.scaleSeconds ??= o.quick ? 10 : 60;
  // Subscription slots and worker processes for the largest phase that runs
  // (plus room for workers still exiting).
  o.maxSubs = Math.max(o.idleSubs, o.only.includes('scale') ? o.scaleSubs : 0, o.only.includes('group') ? o.groupShapes + 1 : 0) + 8;
  if (o.md === undefined) o.md = o.quick ? null : path.join(REPO, 'BENCHMARKS.md');
  return o;
}

// ---- small helpers ---------------------------------------------------------------

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now();
const log = (...a) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}]`, ...a);
const fmtInt = (n) => (n == null || !Number.isFinite(n) ? '–' : Math.round(n).toLocaleString('en-US'));
const fmtS = (s, d = 2) => (s == null || !Number.isFinite(s) ? '–' : s.toFixed(d));
const fmtX = (x) => (x == null || !Number.isFinite(x) ? '–' : `${x >= 10 ? x.toFixed(1) : x.toFixed(2)}×`);
const fmtMB = (kb) => (kb == null ? '–' : (kb / 1024).toFixed(1));

// The round with the median time stands for all; memory is the worst round's.
function aggregate(rounds) {
  const ok = rounds.filter((r) => r.ok);
  const pool = ok.length ? ok : rounds;
  const sorted = [...pool].sort((a, b) => a.seconds - b.seconds);
  const med = sorted[Math.floor((sorted.length - 1) / 2)];
  const peaks = rounds.map((r) => r.peak_rss_anon_kb).filter((x) => x != null);
  return {
    ...med,
    ok: ok.length === rounds.length,
    rounds: rounds.length,
    seconds_all: rounds.map((r) => r.seconds),
    peak_rss_anon_kb: peaks.length ? Math.max(...peaks) : null,
    errors: [...new Set(rounds.flatMap((r) => r.errors ?? []))],
    worker_pids: rounds.flatMap((r) => r.worker_pids ?? []),
    restarts: rounds.reduce((a, r) => a + Math.max(0, (r.worker_pids?.length ?? 1) - 1), 0),
    mem_samples: rounds.reduce((a, r) => a + (r.mem_samples ?? 0), 0),
  };
}

const spread = (r) => (r.seconds_all && r.seconds_all.length > 1 ? `${fmtS(Math.min(...r.seconds_all))}–${fmtS(Math.max(...r.seconds_all))}` : '');

function percentile(values, p) {
  if (!values.length) return null;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

function mdTable(headers, rows) {
  const cells = rows.map((r) => r.map((c) => String(c ?? '–')));
  const width = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i].length)));
  const right = headers.map((_, i) => cells.some((r) => /^[-–+]?[\d,.]+( ?[×%sMBms]*)?$/.test(r[i])));
  const line = (r) => `| ${r.map((c, i) => (right[i] ? c.padStart(width[i]) : c.padEnd(width[i]))).join(' | ')} |`;
  const sep = `|${width.map((w, i) => (right[i] ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  return [line(headers), sep, ...cells.map(line)].join('\n');
}

function cpuTicks(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]); // utime + stime (fields 14, 15)
  } catch {
    return null;
  }
}

// Precise CPU time (ns on a CPU, from the scheduler) and context switches.
function schedNs(pid) {
  try {
    return Number(fs.readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
  } catch {
    return null;
  }
}

function ctxSwitches(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(s.match(/^voluntary_ctxt_switches:\s+(\d+)/m)[1]) + Number(s.match(/^nonvoluntary_ctxt_switches:\s+(\d+)/m)[1]);
  } catch {
    return null;
  }
}

function procStatus(pid, field) {
  try {
    const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

function sh(cmd, args, opts = {}) {
  try {
    return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts }).toString().trim();
  } catch (e) {
    if (opts.soft) return null;
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.stderr?.toString() || e.message}`);
  }
}

const asUser = (cmd, args, opts) => sh('runuser', ['-u', OS_USER, '--', cmd, ...args], opts);

// ---- the environment: PostgreSQL and the test server ---------------------------

class Env {
  constructor(opts) {
    this.opts = opts;
    this.dir = null;
    this.server = null;
    this.clients = [];
    this.pgStarted = false;
  }

  async start() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pglite-sync-bench-'));
    fs.chmodSync(this.dir, 0o755);
    sh('chown', [`${OS_USER}:`, this.dir]);
    this.data = path.join(this.dir, 'data');
    this.logFile = path.join(this.dir, 'postgres.log');
    asUser(`${PGBIN}/initdb`, ['-D', this.data, '-A', 'trust', '-U', 'postgres', '--no-sync']);
    const subs = this.opts.maxSubs;
    this.settings = {
      shared_preload_libraries: "'pglite_sync'",
      'pglite_sync.max_subscriptions': subs,
      max_worker_processes: subs + 16,
      synchronous_commit: 'on',
      max_wal_size: "'8GB'",
      checkpoint_timeout: "'30min'",
      log_line_prefix: "'%m [%p] '",
      log_timezone: "'UTC'",
    };
    const conf = [
      ...Object.entries(this.settings).map(([k, v]) => `${k} = ${v}`),
      "listen_addresses = ''",
      `unix_socket_directories = '${this.dir}'`,
      'port = 5432',
    ].join('\n');
    fs.appendFileSync(path.join(this.data, 'postgresql.conf'), `\n# pglite_sync benchmark\n${conf}\n`);
    asUser(`${PGBIN}/pg_ctl`, ['-D', this.data, '-l', this.logFile, '-w', 'start']);
    this.pgStarted = true;
    this.postmasterPid = Number(fs.readFileSync(path.join(this.data, 'postmaster.pid'), 'utf8').split('\n')[0]);

    // The test server runs in its own process, with Electric's 20 s long-poll.
    const err = fs.openSync(path.join(this.dir, 'server.err'), 'w');
    this.server = spawn(process.execPath, [path.join(REPO, 'test/server/server.js'), '--port', '0', '--long-poll-ms', String(LONG_POLL_MS)], {
      stdio: ['ignore', 'pipe', err],
    });
    const port = await new Promise((resolve, reject) => {
      let buf = '';
      const t = setTimeout(() => reject(new Error('test server did not start')), 15000);
      this.server.stdout.on('data', (d) => {
        buf += d;
        const m = buf.match(/"port":(\d+)/);
        if (m) {
          clearTimeout(t);
          resolve(Number(m[1]));
        }
      });
      this.server.on('exit', (code) => reject(new Error(`test server exited (${code})`)));
    });
    this.serverPid = this.server.pid;
    this.base = `http://127.0.0.1:${port}`;
    this.shapeUrl = `${this.base}/v1/shape`;

    this.ctl = await this.client();
    this.mon = await this.client();
    await this.ctl.query('CREATE EXTENSION pglite_sync');
  }

  async client() {
    const c = new pg.Client({ host: this.dir, port: 5432, user: 'postgres', database: 'postgres' });
    await c.connect();
    c.on('error', () => {});
    this.clients.push(c);
    return c;
  }

  // pg_ctl restart (fast shutdown); the connections are opened again.
  // Returns the seconds pg_ctl took (shutdown, start, accepting connections).
  async restart() {
    for (const c of this.clients) await c.end().catch(() => {});
    this.clients = [];
    const t0 = now();
    asUser(`${PGBIN}/pg_ctl`, ['-D', this.data, '-l', this.logFile, '-m', 'fast', '-w', '-t', '300', 'restart']);
    const seconds = (now() - t0) / 1000;
    this.postmasterPid = Number(fs.readFileSync(path.join(this.data, 'postmaster.pid'), 'utf8').split('\n')[0]);
    this.ctl = await this.client();
    this.mon = await this.client();
    return seconds;
  }

  async control(method, p, body) {
    let r;
    try {
      r = await fetch(`${this.base}/_control${p}`, {
        method,
        headers: { 'content-type': 'application/json' },
        body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      });
    } catch (e) {
      throw new Error(`control ${method} ${p}: ${e.message}${e.cause ? ` (${e.cause.code ?? e.cause.message})` : ''}`);
    }
    const text = await r.text();
    if (!r.ok) throw new Error(`control ${method} ${p}: ${r.status} ${text.slice(0, 300)}`);
    return JSON.parse(text);
  }

  async stop() {
    for (const c of this.clients) await c.end().catch(() => {});
    if (this.server && this.server.exitCode === null) {
      this.server.kill('SIGTERM');
      await new Promise((r) => {
        const t = setTimeout(r, 3000);
        this.server.on('exit', () => {
          clearTimeout(t);
          r();
        });
      });
    }
    if (this.pgStarted) asUser(`${PGBIN}/pg_ctl`, ['-D', this.data, '-m', 'fast', '-w', 'stop'], { soft: true });
    if (this.dir && !this.opts.keep) fs.rmSync(this.dir, { recursive: true, force: true });
    else if (this.dir) log(`kept ${this.dir}`);
  }
}

// ---- following one subscription's worker ------------------------------------------

// Polls the subscription (worker pid, state, activity) over its own connection
// and samples the worker's RssAnon from /proc every 20 ms. A restarted worker
// is followed by its new pid.
class WorkerWatch {
  constructor(env, name) {
    this.env = env;
    this.name = name;
    this.pids = [];
    this.pid = null;
    this.peakKb = 0;
    this.firstKb = null;
    this.samples = 0;
    this.tApply = null;
    this.errors = new Set();
    this.cpuStart = new Map();
    this.running = false;
    this.onPid = null;
  }

  start(t0) {
    this.t0 = t0;
    this.running = true;
    this.memTimer = setInterval(() => this.sampleMem(), 20);
    this.loop = this.poll();
  }

  sampleMem() {
    if (!this.pid) return;
    const kb = procStatus(this.pid, 'RssAnon');
    if (kb == null) return;
    this.samples++;
    if (this.firstKb == null) this.firstKb = kb;
    if (kb > this.peakKb) this.peakKb = kb;
  }

  async poll() {
    while (this.running) {
      const r = await this.env.mon.query(
        `SELECT s.worker_pid, s.state, s.last_error, a.query
           FROM electric.subscriptions s LEFT JOIN pg_stat_activity a ON a.pid = s.worker_pid
          WHERE s.name = $1`,
        [this.name],
      );
      const row = r.rows[0];
      if (row) {
        if (row.worker_pid && row.worker_pid !== this.pid) {
          this.pid = row.worker_pid;
          this.pids.push(this.pid);
          this.cpuStart.set(this.pid, cpuTicks(this.pid));
          this.sampleMem();
          this.onPid?.(this.pid);
        }
        if (row.last_error) this.errors.add(`${row.state}: ${row.last_error}`);
        if (this.tApply == null && /^(applying|loading the snapshot)/.test(row.query ?? '')) this.tApply = now();
      }
      await sleep(this.pid ? 100 : 10);
    }
  }

  async stop() {
    this.running = false;
    clearInterval(this.memTimer);
    await this.loop;
    this.sampleMem();
  }

  // CPU seconds of the current worker since it was first seen.
  cpuSeconds() {
    if (!this.pid) return null;
    const t = cpuTicks(this.pid);
    const s = this.cpuStart.get(this.pid);
    return t == null || s == null ? null : (t - s) / CLK_TCK;
  }
}

const TABLE_DDL = (name) => `CREATE TABLE ${name} (id int8 PRIMARY KEY, title text, done bool, created_at timestamptz, amount numeric)`;

async function checksum(env, table) {
  const r = await env.ctl.query(`SELECT count(*)::int8 AS n, coalesce(sum(hashtext(t::text)::int8), 0)::text AS h FROM ${table} t`);
  return `${r.rows[0].n}:${r.rows[0].h}`;
}

// ---- phase 1: initial sync -----------------------------------------------------------

async function initialSync(env, { n, method, src, local, profile = false }) {
  const { ctl } = env;
  await ctl.query(`DROP TABLE IF EXISTS ${local}`);
  await ctl.query(TABLE_DDL(local));
  await ctl.query('CHECKPOINT');
  const shape = { url: env.shapeUrl, params: { table: src } };
  const watch = new WorkerWatch(env, local);
  let perf = null;
  if (profile) {
    const out = path.join(env.dir, `perf-${method}.data`);
    watch.onPid = (pid) => {
      if (perf) return;
      perf = spawn('perf', ['record', '-F', '999', '-p', String(pid), '-o', out], { stdio: 'ignore' });
      perf.out = out;
    };
  }
  const whole = /_whole(_paced)?$/.test(method);
  const paced = method.endsWith('_paced');
  await ctl.query(`ALTER SYSTEM SET pglite_sync.stream_snapshot = ${whole ? 'off' : 'on'}`);
  await ctl.query('SELECT pg_reload_conf()');
  await sleep(200); // the postmaster has reread it before the worker starts
  await env.control('DELETE', '/faults');
  if (paced) await env.control('POST', '/faults', { kind: 'delay', ms: env.opts.pageDelay, when: 'nonlive', count: -1, table: src });
  const srv0 = cpuTicks(env.serverPid);
  await ctl.query(
    `SELECT electric.sync_shape_to_table(shape => $1::jsonb, table_name => $2, primary_key => '{id}',
                                         shape_key => $2, initial_insert_method => $3)`,
    [JSON.stringify(shape), local, baseMethod(method)],
  );
  const t0 = now();
  watch.start(t0);
  let ok = false;
  let error = null;
  try {
    ok = (await ctl.query('SELECT electric.wait_for_sync($1, $2::interval) AS ok', [local, '1 hour'])).rows[0].ok;
  } catch (e) {
    error = e.message;
  }
  const t1 = now();
  if (paced) await env.control('DELETE', '/faults');
  await watch.stop();
  const srv1 = cpuTicks(env.serverPid);
  const workerCpu = watch.cpuSeconds();
  if (perf) {
    perf.kill('SIGINT');
    await new Promise((r) => perf.on('exit', r));
  }
  const st = (await ctl.query('SELECT state, rows_applied, last_error FROM electric.subscriptions WHERE name = $1', [local])).rows[0];
  const count = Number((await ctl.query(`SELECT count(*) AS n FROM ${local}`)).rows[0].n);
  await ctl.query('SELECT electric.delete_subscription($1)', [local]);
  const seconds = (t1 - t0) / 1000;
  const res = {
    method, n, local, seconds, ok: ok && count === n, count,
    rows_applied: Number(st?.rows_applied ?? 0),
    rows_per_s: n / seconds,
    fetch_s: watch.tApply ? (watch.tApply - t0) / 1000 : null,
    apply_s: watch.tApply ? (t1 - watch.tApply) / 1000 : null,
    peak_rss_anon_kb: watch.peakKb || null,
    start_rss_anon_kb: watch.firstKb,
    mem_samples: watch.samples,
    worker_pids: watch.pids,
    worker_cpu_s: workerCpu,
    server_cpu_s: srv0 != null && srv1 != null ? (srv1 - srv0) / CLK_TCK : null,
    errors: [...watch.errors, ...(error ? [error] : []), ...(st?.last_error && !ok ? [st.last_error] : [])],
  };
  if (perf) res.perf_data = perf.out;
  if (!res.ok) res.errors.push(`wait_for_sync=${ok}, count=${count}, expected ${n}`);
  return res;
}

async function makeCsv(env, n, fromTable) {
  const csv = path.join(env.dir, `rows_${n}.csv`);
  await env.ctl.query(`COPY ${fromTable} TO '${csv}' (FORMAT csv)`);
  return csv;
}

async function nativeCopy(env, n, csv) {
  const { ctl } = env;
  const table = `native_copy_${n}`;
  await ctl.query(`DROP TABLE IF EXISTS ${table}`);
  await ctl.query(TABLE_DDL(table));
  await ctl.query('CHECKPOINT');
  const t0 = now();
  const r = await ctl.query(`COPY ${table} FROM '${csv}' (FORMAT csv)`);
  const seconds = (now() - t0) / 1000;
  return { method: 'native COPY FROM (csv)', n, seconds, rows_per_s: n / seconds, ok: r.rowCount === n, count: r.rowCount, csv_bytes: fs.statSync(csv).size, table };
}

async function runPeer(env, { n, src, methods, repeat }) {
  const child = spawn(process.execPath, [
    path.join(HERE, 'peer.mjs'), '--url', env.shapeUrl, '--table', src, '--rows', String(n), '--methods', methods.join(','),
    '--server-pid', String(env.serverPid), '--repeat', String(repeat),
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = [];
  let stderr = '';
  let buf = '';
  child.stdout.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        const o = JSON.parse(line);
        lines.push(o);
        if (o.method) log(`  peer ${o.method}: ${o.error ? `error: ${o.error}` : `${fmtS(o.seconds)} s, ${fmtInt(o.rows_per_s)} rows/s`}`);
        else if (o.startup_s && !o.done) log(`  peer: PGlite started in ${fmtS(o.startup_s)} s (excluded from timings)`);
      } catch {
        stderr += `${line}\n`;
      }
    }
  });
  child.stderr.on('data', (d) => (stderr += d));
  const code = await new Promise((r) => child.on('exit', r));
  const done = lines.find((l) => l.done) ?? {};
  const perMethod = methods.map((m) => {
    const rs = lines.filter((l) => l.method === m).map((l) => ({ ...l, ok: !l.error && l.ok, errors: l.error ? [l.error] : [] }));
    if (!rs.length) return { method: m, error: `no result (peer exit code ${code})`, errors: [] };
    const a = aggregate(rs);
    if (!a.ok) a.error = a.errors[0] ?? 'row count mismatch';
    return a;
  });
  return {
    n,
    exit_code: code,
    startup_s: done.startup_s ?? lines.find((l) => l.startup_s)?.startup_s ?? null,
    peak_rss_mb: done.peak_rss_mb ?? null,
    methods: perMethod,
    stderr: stderr.slice(-2000),
  };
}

// PGlite, one process per run (see pglite.mjs): the seed's plugin and ours,
// each method, rounds interleaved; a data directory on disk for each run, so
// that memory shows what the sync holds, not the database.
async function runPglite(env, { sizes, oursSizes = [], methods, repeat, profile = false }) {
  const out = { sizes, ours_sizes: oursSizes, runs: [], floor: {} };
  for (const n of [...sizes, ...oursSizes]) {
    // past the compared sizes only ours runs: the peer holds the whole shape
    const oursOnly = !sizes.includes(n);
    const impls = oursOnly ? ['ours'] : ['peer', 'ours'];
    const here = oursOnly ? methods.filter((m) => !isPaced(m)) : methods;
    const src = `pglite_${n}`;
    const g = await env.control('POST', `/tables/${src}/generate`, { rows: n });
    log(`PGlite N = ${fmtInt(n)}: ${g.pages} pages, ${fmtInt(g.bytes)} bytes`);
    const rounds = {};
    for (let round = 1; round <= repeat; round++) {
      for (const impl of impls) {
        for (const method of here) {
          const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pglite-bench-'));
          const floor = impl === 'ours' && round === 1 && method === here[0] && !oursOnly;
          const argv = ['--expose-gc', path.join(HERE, 'pglite.mjs'), '--url', env.shapeUrl, '--table', src, '--rows', String(n),
            '--impl', impl, '--method', baseMethod(method), '--data-dir', dir, ...(floor ? ['--floor', '1'] : [])];
          let r;
          if (isPaced(method)) await env.control('POST', '/faults', { kind: 'delay', ms: env.opts.pageDelay, when: 'nonlive', count: -1, table: src });
          try {
            // not execFileSync: a blocked event loop leaves the control
            // API's pooled connections to go stale on the server's side
            const { stdout: text } = await execFileAsync(process.execPath, argv, { encoding: 'utf8', maxBuffer: 1 << 24, timeout: 1_800_000 });
            r = JSON.parse(text.trim().split('\n').pop());
          } catch (e) {
            r = { impl, method, rows: n, error: String(e.stderr || e.message).slice(-500) };
          } finally {
            fs.rmSync(dir, { recursive: true, force: true });
            if (isPaced(method)) await env.control('DELETE', '/faults');
          }
          r.method = method;
          r.n = n;
          r.errors = r.error ? [r.error] : [];
          if (r.error) r.ok = false;
          if (r.floor_insert_select_s != null) {
            out.floor[n] = Object.fromEntries(Object.entries(r).filter(([k]) => k.startsWith('floor_')).map(([k, v]) => [k.slice('floor_'.length), v]));
          }
          out.versions ??= r.versions;
          (rounds[`${impl} ${method}`] ??= []).push(r);
          log(`  ${impl} ${method}${repeat > 1 ? ` (${round}/${repeat})` : ''}: ${r.error ? `FAILED ${r.error.split('\n')[0]}` : `${fmtS(r.seconds)} s, ${fmtInt(r.rows_per_s)} rows/s, RSS ${r.rss_base_mb} → ${r.rss_sync_peak_mb} MB`}`);
        }
      }
    }
    if (profile && n === sizes[0]) out.profile = await profilePglite(env, { n, src, method: 'csv' });
    for (const [k, rs] of Object.entries(rounds)) {
      const a = aggregate(rs);
      const [impl, method] = k.split(' ');
      const good = rs.filter((x) => !x.error);
      Object.assign(a, {
        impl, method, n,
        rss_base_mb: good.length ? Math.max(...good.map((x) => x.rss_base_mb)) : null,
        rss_sync_peak_mb: good.length ? Math.max(...good.map((x) => x.rss_sync_peak_mb)) : null,
        rss_growth_mb: good.length ? Math.max(...good.map((x) => x.rss_sync_peak_mb - x.rss_base_mb)) : null,
        rss_hwm_mb: good.length ? Math.max(...good.map((x) => x.rss_hwm_mb)) : null,
        live_base_mb: good.length ? Math.max(...good.map((x) => x.live_base_mb)) : null,
        live_peak_mb: good.length ? Math.max(...good.map((x) => x.live_peak_mb)) : null,
      });
      if (!a.ok) a.error = a.errors[0] ?? 'row count mismatch';
      out.runs.push(a);
    }
    await env.control('DELETE', `/tables/${src}`);
  }
  return out;
}

// One more, untimed run of ours under V8's sampling profiler (pglite.mjs
// --profile), its WebAssembly frames named by wasmprof.mjs.
async function profilePglite(env, { n, src, method }) {
  log(`  profiling ours ${method} at N = ${fmtInt(n)} (untimed extra run, V8's sampling profiler)`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pglite-bench-'));
  const file = path.join(dir, 'sync.cpuprofile');
  try {
    const argv = ['--expose-gc', path.join(HERE, 'pglite.mjs'), '--url', env.shapeUrl, '--table', src, '--rows', String(n),
      '--impl', 'ours', '--method', method, '--data-dir', path.join(dir, 'data'), '--profile', file];
    const { stdout } = await execFileAsync(process.execPath, argv, { encoding: 'utf8', maxBuffer: 1 << 24, timeout: 1_800_000 });
    const r = JSON.parse(stdout.trim().split('\n').pop());
    if (r.error) throw new Error(r.error);
    const a = analyzeProfile(JSON.parse(fs.readFileSync(file, 'utf8')),
      pgliteModules(path.join(REPO, 'pglite/node_modules/@electric-sql/pglite/dist/pglite.wasm'), path.join(REPO, 'build/pglite/pglite_sync.so')));
    return { n, method, seconds: r.seconds, report: profileText(a) };
  } catch (e) {
    log(`  profiling failed: ${String(e.message ?? e).split('\n')[0]}`);
    return { n, method, seconds: null, report: null };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function profileReport(file) {
  const run = (sort, limit) => sh('perf', ['report', '-i', file, '--stdio', '--no-children', '--sort', sort, '--percent-limit', limit],
    { soft: true, maxBuffer: 64 << 20 });
  const clean = (out, n) => (out ?? '').split('\n').filter((l) => /%/.test(l) && !l.startsWith('#') && !/^\s+\|/.test(l) && !/--\d/.test(l))
    .map((l) => l.replace(/\s+-\s+-\s*$/, '').trimEnd()).slice(0, n).join('\n');
  const dso = clean(run('dso', '0.5'), 12);
  const sym = clean(run('dso,symbol', '0.7'), 30);
  if (!dso && !sym) return null;
  return `by shared object:\n${dso}\n\ntop symbols:\n${sym}`;
}

// ---- phase 3: live apply ------------------------------------------------------------------

function parseWorkerLog(text, name, sinceMs) {
  const re = /^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) UTC \[(\d+)\] LOG:\s+pglite_sync: subscription "([^"]+)": (.*)$/;
  const events = [];
  for (const line of text.split('\n')) {
    const m = line.match(re);
    if (!m || m[3] !== name) continue;
    const t = Date.parse(`${m[1].replace(' ', 'T')}Z`);
    if (t < sinceMs) continue;
    const msg = m[4];
    let r;
    if ((r = msg.match(/^response: outcome (\d+), status (\d+), (\d+) bytes in ([\d.]+) s, (\d+) changes(, up-to-date)?/))) {
      events.push({ t, pid: Number(m[2]), kind: 'response', status: Number(r[2]), bytes: Number(r[3]), secs: Number(r[4]), changes: Number(r[5]), upToDate: !!r[6] });
    } else if ((r = msg.match(/^committed batch: (\d+) changes(?:.*, up to lsn (\d+))?/))) {
      events.push({ t, pid: Number(m[2]), kind: 'commit', changes: Number(r[1]), lsn: r[2] != null ? BigInt(r[2]) : null });
    }
  }
  return events;
}

function latencies(events) {
  const batches = [];
  const perResponse = [];
  let lastResp = null;
  let pending = [];
  for (const e of events) {
    if (e.kind === 'response' && e.status === 200) {
      lastResp = e;
      if (e.changes > 0) pending.push(e);
    } else if (e.kind === 'commit' && e.changes > 0) {
      if (lastResp && lastResp.pid === e.pid) batches.push({ ms: e.t - lastResp.t, changes: e.changes });
      for (const p of pending) perResponse.push(e.t - p.t);
      pending = [];
    }
  }
  const responses = events.filter((e) => e.kind === 'response' && e.status === 200 && e.changes > 0);
  return {
    batches: batches.length,
    batch_changes: batches.map((b) => b.changes),
    p50_ms: percentile(batches.map((b) => b.ms), 50),
    p99_ms: percentile(batches.map((b) => b.ms), 99),
    max_ms: batches.length ? Math.max(...batches.map((b) => b.ms)) : null,
    responses: responses.length,
    changes_per_response: responses.length ? responses.reduce((a, r) => a + r.changes, 0) / responses.length : null,
    resp_p50_ms: percentile(perResponse, 50),
    resp_p99_ms: percentile(perResponse, 99),
  };
}

// One live-apply run on a freshly synced table: append `txns` single-row
// update transactions in one POST while the worker long-polls, and time until
// the commit that makes the last of them visible.
// A table of `rows` generated rows synced by copy, the worker in its live
// long-poll (debug as asked): its pid.
async function liveTable(env, { src, local, rows, debug, timeout, what }) {
  const { ctl, mon } = env;
  await env.control('POST', `/tables/${src}/generate`, { rows });
  await ctl.query(`DROP TABLE IF EXISTS ${local}`);
  await ctl.query(TABLE_DDL(local));
  await ctl.query(`ALTER SYSTEM SET pglite_sync.debug = ${debug ? 'on' : 'off'}`);
  await ctl.query('SELECT pg_reload_conf()');
  await ctl.query(
    `SELECT electric.sync_shape_to_table(shape => $1::jsonb, table_name => $2, primary_key => '{id}',
                                         shape_key => $2, initial_insert_method => 'copy')`,
    [JSON.stringify({ url: env.shapeUrl, params: { table: src } }), local],
  );
  if (!(await ctl.query('SELECT electric.wait_for_sync($1, $2::interval) AS ok', [local, timeout])).rows[0].ok) {
    throw new Error(`${what}: the initial sync did not finish`);
  }
  await ctl.query(`VACUUM ANALYZE ${local}`);
  await ctl.query('CHECKPOINT');
  await sleep(1500); // the worker is in its live long-poll now
  return (await mon.query('SELECT worker_pid FROM electric.subscriptions WHERE name = $1', [local])).rows[0].worker_pid;
}

async function liveRun(env, { k, txns, debug, perfOut }) {
  const { ctl, mon } = env;
  const src = `live_src_${k}`;
  const local = `live_apply_${k}`;
  const pid = await liveTable(env, { src, local, rows: txns, debug, timeout: '10 minutes', what: 'live apply' });
  let perf = null;
  if (perfOut) {
    perf = spawn('perf', ['record', '-F', '999', '-p', String(pid), '-o', perfOut], { stdio: 'ignore' });
    await sleep(500);
  }
  const lis = await env.client();
  await lis.query('LISTEN electric_sync');
  const cpu0 = cpuTicks(pid);
  const prefix = `run${k} #`;
  const body = JSON.stringify({
    txns: Array.from({ length: txns }, (_, i) => ({
      ops: [{ op: 'update', row: { id: String(i + 1), title: `${prefix}${i + 1}`, amount: `${k}.${String(i % 100).padStart(2, '0')}` } }],
    })),
  });
  const wall0 = Date.now();
  // Each NOTIFY of this subscription is a commit; the run ends with the one
  // after which every changed row is visible.
  const done = new Promise((resolve, reject) => {
    const timeout = setTimeout(() => reject(new Error('live apply: changes not applied within 10 minutes')), 600_000);
    let checking = false;
    lis.on('notification', async (m) => {
      const t = now();
      if (m.payload !== local || checking) return;
      checking = true;
      try {
        const c = Number((await mon.query(`SELECT count(*) AS n FROM ${local} WHERE title LIKE $1`, [`${prefix}%`])).rows[0].n);
        if (c >= txns) {
          clearTimeout(timeout);
          resolve(t);
        }
      } catch (e) {
        reject(e);
      } finally {
        checking = false;
      }
    });
  });
  const tPost0 = now();
  // The server appends all transactions, then answers the waiting long-poll.
  const posted = await env.control('POST', `/tables/${src}/txns`, body);
  const tPost1 = now();
  const srv0 = cpuTicks(env.serverPid); // serving the changes, not appending them
  const tEnd = await done;
  const cpu1 = cpuTicks(pid);
  const srv1 = cpuTicks(env.serverPid);
  if (perf) {
    perf.kill('SIGINT');
    await new Promise((r) => perf.on('exit', r));
  }
  const pid2 = (await mon.query('SELECT worker_pid FROM electric.subscriptions WHERE name = $1', [local])).rows[0].worker_pid;
  const seconds = (tEnd - tPost1) / 1000;
  const run = {
    run: k, debug, txns: posted.count, post_s: (tPost1 - tPost0) / 1000, seconds, ok: true,
    changes_per_s: txns / seconds,
    worker_cpu_s: cpu0 != null && cpu1 != null ? (cpu1 - cpu0) / CLK_TCK : null,
    server_cpu_s: (srv1 - srv0) / CLK_TCK,
    worker_restarted: pid !== pid2,
  };
  if (debug) {
    await sleep(300);
    const events = parseWorkerLog(fs.readFileSync(env.logFile, 'utf8'), local, wall0 - 5);
    Object.assign(run, latencies(events));
  }
  await lis.end();
  env.clients = env.clients.filter((c) => c !== lis);
  await ctl.query('SELECT electric.delete_subscription($1)', [local]);
  await ctl.query('ALTER SYSTEM RESET pglite_sync.debug');
  await ctl.query('SELECT pg_reload_conf()');
  await ctl.query(`DROP TABLE ${local}`);
  await env.control('DELETE', `/tables/${src}`);
  return run;
}

async function liveApply(env, txns, repeat, profile = false) {
  log(`live apply: ${fmtInt(txns)} transactions, ${repeat} run(s) with debug off, 1 with debug on${profile ? ', 1 under perf' : ''}`);
  // The debug-on run comes second, between debug-off runs, so that a drift
  // of the machine's load does not fall on it alone.
  const runs = [];
  const order = Array.from({ length: repeat }, () => false);
  order.splice(1, 0, true);
  let k = 0;
  for (const debug of order) {
    const r = await liveRun(env, { k: ++k, txns, debug });
    if (debug) {
      log(`  live run ${k} (debug on): ${fmtS(r.seconds)} s, ${fmtInt(r.changes_per_s)} changes/s, ${r.batches} batch(es), ` +
          `response→commit p50 ${r.p50_ms} ms, p99 ${r.p99_ms} ms`);
    } else log(`  live run ${k} (debug off): ${fmtS(r.seconds)} s, ${fmtInt(r.changes_per_s)} changes/s`);
    runs.push(r);
  }
  const result = { txns, runs, throughput: aggregate(runs.filter((r) => !r.debug)) };
  if (profile) {
    const out = path.join(env.dir, 'perf-live.data');
    const r = await liveRun(env, { k: ++k, txns, debug: false, perfOut: out });
    log(`  live run ${k} (perf attached, untimed): ${fmtS(r.seconds)} s`);
    result.profile = { seconds: r.seconds, report: await profileReport(out) };
  }
  return result;
}

// ---- phase 4: idle subscriptions -------------------------------------------------------------

async function idle(env, subs, seconds) {
  const { ctl, mon } = env;
  const src = 'idle_src';
  await env.control('POST', '/tables', {
    name: src,
    columns: [{ name: 'id', type: 'int8', not_null: true }, { name: 'title', type: 'text' }],
    primary_key: ['id'],
    rows: Array.from({ length: 10 }, (_, i) => ({ id: String(i + 1), title: `idle row ${i + 1}` })),
  });
  const shape = JSON.stringify({ url: env.shapeUrl, params: { table: src } });
  for (let i = 1; i <= subs; i++) {
    const t = `idle_${i}`;
    await ctl.query(`DROP TABLE IF EXISTS ${t}`);
    await ctl.query(`CREATE TABLE ${t} (id int8 PRIMARY KEY, title text)`);
    await ctl.query(
      `SELECT electric.sync_shape_to_table(shape => $1::jsonb, table_name => $2, primary_key => '{id}', shape_key => $2)`,
      [shape, t],
    );
  }
  const deadline = Date.now() + 120_000;
  let st;
  for (;;) {
    st = (await mon.query(`SELECT count(*) FILTER (WHERE state = 'live' AND worker_pid IS NOT NULL)::int AS live,
                                  count(DISTINCT worker_pid)::int AS pids
                             FROM electric.subscriptions WHERE name LIKE 'idle\\_%'`)).rows[0];
    if (st.live === subs && st.pids === subs) break;
    if (Date.now() > deadline) throw new Error(`idle: only ${st.live} of ${subs} subscriptions live (${st.pids} workers)`);
    await sleep(200);
  }
  await sleep(3000); // every worker is now in its first live long-poll
  const pidsOf = async () => {
    const subsPids = (await mon.query(`SELECT worker_pid FROM electric.subscriptions WHERE name LIKE 'idle\\_%' AND state = 'live'`)).rows.map((r) => r.worker_pid);
    const act = (await mon.query(`SELECT pid, backend_type FROM pg_stat_activity WHERE backend_type LIKE 'pglite_sync%'`)).rows;
    return {
      subsPids: subsPids.sort((a, b) => a - b),
      workers: act.filter((r) => r.backend_type === 'pglite_sync worker').map((r) => r.pid).sort((a, b) => a - b),
      launcher: act.find((r) => r.backend_type === 'pglite_sync launcher')?.pid ?? null,
    };
  };
  const before = await pidsOf();
  const running = before.subsPids.filter((p) => before.workers.includes(p) && fs.existsSync(`/proc/${p}`));
  if (new Set(running).size !== subs) throw new Error(`idle: only ${new Set(running).size} of ${subs} workers really run`);
  const reqs0 = Date.now();
  const t0 = now();
  const snap = () => ({
    workers: new Map(before.subsPids.map((p) => [p, [cpuTicks(p), schedNs(p), ctxSwitches(p)]])),
    launcher: before.launcher ? [cpuTicks(before.launcher), schedNs(before.launcher), ctxSwitches(before.launcher)] : null,
    postmaster: [cpuTicks(env.postmasterPid), schedNs(env.postmasterPid)],
    server: [cpuTicks(env.serverPid), schedNs(env.serverPid)],
  });
  const s0 = snap();
  log(`idle: ${subs} live subscriptions, ${subs} distinct running workers; measuring ${seconds} s`);
  await sleep(seconds * 1000);
  const s1 = snap();
  const elapsed = (now() - t0) / 1000;
  const reqs1 = Date.now();
  const after = await pidsOf();
  const same = JSON.stringify(after.subsPids) === JSON.stringify(before.subsPids);
  let workerTicks = 0;
  let workerNs = 0;
  let perWorkerMaxNs = 0;
  let switches = 0;
  for (const p of before.subsPids) {
    const [t0_, n0, c0] = s0.workers.get(p);
    const [t1_, n1, c1] = s1.workers.get(p);
    workerTicks += (t1_ ?? t0_) - t0_;
    workerNs += (n1 ?? n0) - n0;
    perWorkerMaxNs = Math.max(perWorkerMaxNs, (n1 ?? n0) - n0);
    switches += (c1 ?? c0) - c0;
  }
  const launcherNs = s0.launcher ? s1.launcher[1] - s0.launcher[1] : 0;
  const requests = (await env.control('GET', `/requests?table=${src}`)).filter((r) => r.t + r.ms >= reqs0 && r.t + r.ms <= reqs1);
  for (let i = 1; i <= subs; i++) await ctl.query('SELECT electric.delete_subscription($1)', [`idle_${i}`]);
  return {
    subs, workers_running: running.length, seconds: elapsed, same_workers_after: same,
    worker_cpu_s: workerNs / 1e9,
    worker_cpu_ticks_s: workerTicks / CLK_TCK,
    worker_max_cpu_s: perWorkerMaxNs / 1e9,
    worker_wakeups_per_s: switches / subs / elapsed,
    launcher_cpu_s: s0.launcher ? launcherNs / 1e9 : null,
    launcher_wakeups: s0.launcher ? s1.launcher[2] - s0.launcher[2] : null,
    postmaster_cpu_s: (s1.postmaster[1] - s0.postmaster[1]) / 1e9,
    server_cpu_s: (s1.server[1] - s0.server[1]) / 1e9,
    pct_one_core: ((workerNs + launcherNs) / 1e9 / elapsed) * 100,
    requests: requests.length,
    requests_expected: Math.round((subs * elapsed * 1000) / LONG_POLL_MS),
    request_statuses: [...new Set(requests.map((r) => r.status))],
  };
}

// ---- phases 5-7: latency, group, scale ---------------------------------------------------------

// CPU (scheduler ns and utime+stime ticks) and context switches of some pids.
function cpuSnap(pids) {
  return new Map(pids.map((p) => [p, { ns: schedNs(p), ticks: cpuTicks(p), ctx: ctxSwitches(p) }]));
}

function cpuDiff(a, b) {
  let ns = 0;
  let ticks = 0;
  let ctx = 0;
  let maxNs = 0;
  let gone = 0;
  for (const [p, x] of a) {
    const y = b.get(p);
    if (!y || x.ns == null || y.ns == null || y.ticks == null) {
      gone++;
      continue;
    }
    ns += y.ns - x.ns;
    ticks += y.ticks - x.ticks;
    ctx += y.ctx - x.ctx;
    maxNs = Math.max(maxNs, y.ns - x.ns);
  }
  return { cpu_s: ns / 1e9, ticks_s: ticks / CLK_TCK, ctx, max_s: maxNs / 1e9, gone };
}

// Peak RssAnon per pid over everything sampled.
class MemTrack {
  constructor() {
    this.peak = new Map();
    this.samples = 0;
  }

  sample(pids) {
    const now_ = new Map();
    for (const p of pids) {
      const kb = procStatus(p, 'RssAnon');
      if (kb == null) continue;
      this.samples++;
      now_.set(p, kb);
      if (kb > (this.peak.get(p) ?? 0)) this.peak.set(p, kb);
    }
    return now_;
  }

  maxKb() {
    return this.peak.size ? Math.max(...this.peak.values()) : null;
  }
}

// min / median / max / total of a set of kB values.
function memStats(kbMap) {
  const v = [...kbMap.values()].sort((a, b) => a - b);
  if (!v.length) return null;
  return { n: v.length, min_kb: v[0], median_kb: v[Math.floor((v.length - 1) / 2)], max_kb: v[v.length - 1], total_kb: v.reduce((a, b) => a + b, 0) };
}

async function launcherPid(env) {
  return (await env.mon.query("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pglite_sync launcher'")).rows[0]?.pid ?? null;
}

async function workerPids(env) {
  return (await env.mon.query("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pglite_sync worker'")).rows.map((r) => r.pid);
}

// Polls electric.subscriptions until every named subscription is live, up
// to date and has its own worker, sampling the workers' memory meanwhile.
// Times run from wall0 (Date.now() at the commit, or at the restart): by the
// subscriptions' own last_up_to_date_at (the last and the first to become
// live), else by the poll (every 25 ms).
async function waitAllLive(env, names, { wall0, timeoutMs, mem, what }) {
  const t0 = now() - (Date.now() - wall0);
  let firstLive = null;
  const errors = new Set();
  for (;;) {
    const rows = (await env.mon.query(
      `SELECT name, state, is_up_to_date, worker_pid, last_error, extract(epoch FROM last_up_to_date_at) * 1000 AS utd
         FROM electric.subscriptions WHERE name = ANY($1)`, [names])).rows;
    const pids = rows.map((r) => r.worker_pid).filter(Boolean);
    mem?.sample(pids);
    for (const r of rows) if (r.last_error) errors.add(`${r.state}: ${r.last_error}`);
    const live = rows.filter((r) => r.state === 'live' && r.is_up_to_date && r.worker_pid);
    if (live.length && firstLive == null) firstLive = now();
    if (live.length === names.length && new Set(live.map((r) => r.worker_pid)).size === names.length) {
      const t = now();
      const utd = live.map((r) => Number(r.utd));
      const stamped = utd.every((u) => Number.isFinite(u) && u >= wall0 - 1);
      return {
        seconds: stamped ? (Math.max(...utd) - wall0) / 1000 : (t - t0) / 1000,
        first_s: stamped ? (Math.min(...utd) - wall0) / 1000 : (firstLive - t0) / 1000,
        poll_s: (t - t0) / 1000,
        by: stamped ? 'last_up_to_date_at' : 'poll',
        pids: live.map((r) => r.worker_pid).sort((a, b) => a - b),
        errors: [...errors],
      };
    }
    if (now() - t0 > timeoutMs) {
      const states = {};
      for (const r of rows) {
        const k = `${r.state}${r.is_up_to_date ? '' : ' (not up to date)'}${r.worker_pid ? '' : ' (no worker)'}`;
        states[k] = (states[k] ?? 0) + 1;
      }
      throw new Error(`${what}: only ${live.length} of ${names.length} live after ${fmtS((now() - t0) / 1000, 1)} s (${JSON.stringify(states)}); errors: ${[...errors].slice(0, 3).join('; ')}`);
    }
    await sleep(25);
  }
}

// Waits until no pglite_sync worker runs any more (after delete_subscription).
async function waitNoWorkers(env, timeoutMs = 30_000) {
  const t0 = now();
  for (;;) {
    const p = await workerPids(env);
    if (!p.length) return;
    if (now() - t0 > timeoutMs) {
      log(`note: ${p.length} worker(s) still running ${timeoutMs / 1000} s after their subscriptions were deleted`);
      return;
    }
    await sleep(100);
  }
}

// Asserts that these pids are running pglite_sync workers.
async function assertRunning(env, pids, what) {
  const running = new Set(await workerPids(env));
  const ok = pids.filter((p) => running.has(p) && fs.existsSync(`/proc/${p}`));
  if (new Set(ok).size !== pids.length) throw new Error(`${what}: only ${new Set(ok).size} of ${pids.length} workers really run`);
}

// CPU of the given workers and the launcher over an idle window, and the
// shape requests the test server answered in it.
async function idleWindow(env, pids, seconds) {
  const launcher = await launcherPid(env);
  await env.control('DELETE', '/requests');
  const w0 = Date.now();
  const t0 = now();
  const a = cpuSnap(pids);
  const la = cpuSnap(launcher ? [launcher] : []);
  const pm0 = schedNs(env.postmasterPid);
  await sleep(seconds * 1000);
  const b = cpuSnap(pids);
  const lb = cpuSnap(launcher ? [launcher] : []);
  const pm1 = schedNs(env.postmasterPid);
  const elapsed = (now() - t0) / 1000;
  const w1 = Date.now();
  const reqs = (await env.control('GET', '/requests')).filter((r) => r.t + (r.ms ?? 0) >= w0 && r.t + (r.ms ?? 0) <= w1);
  const W = cpuDiff(a, b);
  const L = cpuDiff(la, lb);
  return {
    seconds: elapsed, workers: pids.length, workers_gone: W.gone,
    worker_cpu_s: W.cpu_s, worker_ticks_s: W.ticks_s, worker_max_cpu_s: W.max_s,
    wakeups_per_worker_s: W.ctx / pids.length / elapsed,
    launcher_cpu_s: launcher ? L.cpu_s : null, launcher_ticks_s: launcher ? L.ticks_s : null,
    postmaster_cpu_s: pm0 != null && pm1 != null ? (pm1 - pm0) / 1e9 : null,
    pct_one_core: ((W.cpu_s + L.cpu_s) / elapsed) * 100,
    pct_one_core_ticks: ((W.ticks_s + L.ticks_s) / elapsed) * 100,
    requests: reqs.length,
    requests_expected: Math.round((pids.length * elapsed * 1000) / LONG_POLL_MS),
    request_statuses: [...new Set(reqs.map((r) => r.status))],
  };
}

async function rowsIn(env, tables) {
  const q = tables.map((t) => `(SELECT count(*) FROM ${t})`).join(' + ');
  return Number((await env.ctl.query(`SELECT ${q} AS n`)).rows[0].n);
}

// ---- phase 5: latency of isolated transactions

// One small table, synced and live; then `txns` single-row UPDATE transactions,
// one POST /_control/tables/:name/txn at a time, started on a timer at `rate`
// per second, so that each long-poll response carries one. Latency from the
// worker's debug log: response received → commit (as in the live phase), and
// the POST's answer (the server has committed) → local commit, by LSN.
async function latency(env, { txns, rate }) {
  const { ctl, mon } = env;
  const src = 'lat_src';
  const local = 'lat_local';
  log(`latency: ${fmtInt(txns)} single-row transactions at ${rate}/s, one POST at a time (debug on)`);
  try {
    const pid = await liveTable(env, { src, local, rows: txns, debug: true, timeout: '5 minutes', what: 'latency' });
    const cpu0 = cpuSnap([pid]);
    const wall0 = Date.now();
    const interval = 1000 / rate;
    const posts = [];
    const t0 = now();
    let prev = -Infinity;
    for (let i = 0; i < txns; i++) {
      // on time, but never closer than one interval to the previous start:
      // after a stall the rest comes late rather than in a burst
      const due = Math.max(t0 + i * interval, prev + interval);
      const wait = due - now();
      if (wait > 0) await sleep(wait);
      const a = now();
      prev = a;
      const r = await env.control('POST', `/tables/${src}/txn`, { ops: [{ op: 'update', row: { id: String(i + 1), title: `lat #${i + 1}` } }] });
      posts.push({ lsn: BigInt(r.lsn), wall: Date.now(), post_ms: now() - a, late_ms: Math.max(0, a - (t0 + i * interval)), gap_ms: i ? a - posts[i - 1].start : null, start: a });
    }
    const tPosted = now();
    const deadline = now() + 120_000;
    for (;;) {
      const c = Number((await mon.query(`SELECT count(*) AS n FROM ${local} WHERE title LIKE 'lat #%'`)).rows[0].n);
      if (c >= txns) break;
      if (now() > deadline) throw new Error(`latency: only ${c} of ${txns} transactions applied 120 s after the last`);
      await sleep(20);
    }
    const tDone = now();
    const cpu = cpuDiff(cpu0, cpuSnap([pid]));
    await sleep(300); // the log is written
    const events = parseWorkerLog(fs.readFileSync(env.logFile, 'utf8'), local, wall0 - 5);
    const { batch_changes: _bc, ...lat } = latencies(events);
    const resps = events.filter((e) => e.kind === 'response' && e.status === 200 && e.changes > 0);
    const commits = events.filter((e) => e.kind === 'commit' && e.changes > 0 && e.lsn != null);
    // POST answered → the first local commit up to (at least) its LSN
    const e2e = [];
    let j = 0;
    for (const p of posts) {
      while (j < commits.length && commits[j].lsn < p.lsn) j++;
      if (j < commits.length) e2e.push(commits[j].t - p.wall);
    }
    const postMs = posts.map((p) => p.post_ms);
    return {
      txns, rate, pid,
      achieved_rate: txns / ((tPosted - t0) / 1000),
      post_p50_ms: percentile(postMs, 50), post_p99_ms: percentile(postMs, 99),
      late_max_ms: Math.max(...posts.map((p) => p.late_ms)),
      post_max_ms: Math.max(...postMs),
      gap_max_ms: Math.max(...posts.slice(1).map((p) => p.gap_ms)),
      seconds: (tDone - t0) / 1000,
      lag_after_last_post_ms: tDone - tPosted,
      ...lat,
      responses_one_change: resps.filter((e) => e.changes === 1).length,
      max_changes_per_response: resps.length ? Math.max(...resps.map((e) => e.changes)) : null,
      commits: commits.length,
      e2e_samples: e2e.length,
      e2e_p50_ms: percentile(e2e, 50), e2e_p99_ms: percentile(e2e, 99), e2e_max_ms: e2e.length ? Math.max(...e2e) : null,
      worker_cpu_s: cpu.cpu_s,
      worker_cpu_ms_per_txn: (cpu.cpu_s * 1000) / txns,
    };
  } finally {
    await ctl.query('SELECT electric.delete_subscription($1)', [local]).catch(() => {});
    await ctl.query('ALTER SYSTEM RESET pglite_sync.debug');
    await ctl.query('SELECT pg_reload_conf()');
    await ctl.query(`DROP TABLE IF EXISTS ${local}`);
    await env.control('DELETE', `/tables/${src}`).catch(() => {});
  }
}

// ---- phase 6: one group of N shapes against N single subscriptions

// N small transactions, each updating one row in every member table
// (POST /_control/txn, one after the other as fast as the server answers).
// stream: the workers see them as they come; timed from the first POST until
// the last transaction is visible in every local table. burst: the first
// transaction has a publish delay that outlasts the POSTs, so that all are
// published to the shapes at once; timed from that moment (the server's
// commit time of the first transaction plus the delay, known within the
// first POST's round trip).
async function groupLive(env, { srcs, locals, rows, txns, pids, mem, tag, delayMs = 0 }) {
  const set = new Set(srcs);
  await env.control('DELETE', '/requests');
  const c0 = cpuSnap(pids);
  const t0 = now();
  let release = null;
  for (let k = 1; k <= txns; k++) {
    const id = String(((k - 1) % rows) + 1);
    const a = now();
    await env.control('POST', '/txn', {
      ops: srcs.map((t) => ({ table: t, op: 'update', row: { id, title: `${tag} txn ${k}` } })),
      ...(k === 1 && delayMs ? { publish_delay_ms: delayMs } : {}),
    });
    if (k === 1 && delayMs) release = { at: (a + now()) / 2 + delayMs, uncertainty_ms: (now() - a) / 2 };
  }
  const tPosted = now();
  const lastId = ((txns - 1) % rows) + 1;
  const q = `SELECT ${locals.map((t) => `(SELECT count(*) FROM ${t} WHERE id = ${lastId} AND title = $1)`).join(' + ')} AS n`;
  const deadline = now() + 300_000 + delayMs;
  if (release) await sleep(Math.max(0, release.at - now() - 50));
  let early = false;
  for (;;) {
    mem.sample(pids);
    const n = Number((await env.mon.query(q, [`${tag} txn ${txns}`])).rows[0].n);
    if (n === locals.length) break;
    if (now() > deadline) throw new Error(`group live (${tag}): the last transaction reached only ${n} of ${locals.length} tables`);
    await sleep(10);
  }
  const t1 = now();
  if (release && tPosted > release.at) early = true;
  const cpu = cpuDiff(c0, cpuSnap(pids));
  const reqs = (await env.control('GET', '/requests')).filter((r) => set.has(r.query?.table) && r.status === 200);
  const from = release ? release.at : t0;
  const seconds = (t1 - from) / 1000;
  return {
    mode: release ? 'burst' : 'stream',
    txns, changes: txns * srcs.length, seconds, post_s: (tPosted - t0) / 1000,
    lag_after_last_post_s: release ? null : (t1 - tPosted) / 1000,
    release_uncertainty_ms: release?.uncertainty_ms ?? null,
    published_before_last_post: early,
    txns_per_s: txns / seconds, changes_per_s: (txns * srcs.length) / seconds,
    worker_cpu_s: cpu.cpu_s, responses: reqs.length, workers_gone: cpu.gone,
  };
}

async function group(env, { shapes, rows, txns, seconds }) {
  const { ctl } = env;
  const out = { shapes, rows, txns, idle_seconds: seconds, variants: [] };
  for (const kind of ['single', 'group']) {
    const pfx = kind === 'group' ? 'grp_g' : 'grp_s';
    const srcs = Array.from({ length: shapes }, (_, i) => `${pfx}_src_${i + 1}`);
    const locals = Array.from({ length: shapes }, (_, i) => `${pfx}_${i + 1}`);
    log(`group: ${kind === 'group' ? `one group of ${shapes} shapes` : `${shapes} single subscriptions`}, ${fmtInt(rows)} rows each`);
    for (const s of srcs) await env.control('POST', `/tables/${s}/generate`, { rows });
    for (const t of locals) {
      await ctl.query(`DROP TABLE IF EXISTS ${t}`);
      await ctl.query(TABLE_DDL(t));
    }
    await ctl.query('CHECKPOINT');
    const shapeOf = (s) => ({ url: env.shapeUrl, params: { table: s } });
    const names = kind === 'group' ? ['grp_group'] : locals;
    const mem = new MemTrack();
    const v = { kind, subscriptions: names.length };
    let open = false;
    try {
      await ctl.query('BEGIN');
      open = true;
      if (kind === 'group') {
        const members = Object.fromEntries(srcs.map((s, i) => [`m${i + 1}`, { shape: shapeOf(s), table_name: locals[i], primary_key: ['id'] }]));
        await ctl.query('SELECT electric.sync_shapes_to_tables(shapes => $1::jsonb, shape_key => $2)', [JSON.stringify(members), names[0]]);
      } else {
        for (let i = 0; i < shapes; i++) {
          await ctl.query(`SELECT electric.sync_shape_to_table(shape => $1::jsonb, table_name => $2, primary_key => '{id}', shape_key => $2)`,
            [JSON.stringify(shapeOf(srcs[i])), locals[i]]);
        }
      }
      await ctl.query('COMMIT');
      open = false;
      const init = await waitAllLive(env, names, { wall0: Date.now(), timeoutMs: 600_000, mem, what: `group (${kind})` });
      v.initial_s = init.seconds;
      v.first_live_s = init.first_s;
      v.errors = init.errors;
      v.rows_ok = (await rowsIn(env, locals)) === shapes * rows;
      log(`  initial sync of all: ${fmtS(init.seconds)} s (rows ${v.rows_ok ? 'ok' : 'WRONG'})`);
      await sleep(3000); // every worker in its first live long-poll
      const pids = init.pids;
      await assertRunning(env, pids, `group (${kind})`);
      v.workers = pids.length;
      v.rss_live = memStats(mem.sample(pids));
      v.idle = await idleWindow(env, pids, seconds);
      v.rss_after_idle = memStats(mem.sample(pids));
      log(`  idle ${fmtS(v.idle.seconds, 1)} s: ${fmtS(v.idle.worker_cpu_s, 3)} CPU s (${fmtS(v.idle.pct_one_core, 3)}% of one core); RssAnon total ${fmtMB(v.rss_after_idle?.total_kb)} MB`);
      v.live = await groupLive(env, { srcs, locals, rows, txns, pids, mem, tag: `${kind} stream` });
      log(`  live, stream: ${fmtInt(txns)} transactions × ${shapes} tables in ${fmtS(v.live.seconds)} s (POSTs ${fmtS(v.live.post_s)} s), ` +
        `${fmtInt(v.live.changes_per_s)} changes/s, worker CPU ${fmtS(v.live.worker_cpu_s, 3)} s, ${v.live.responses} responses`);
      const delayMs = Math.round(Math.max(2000, v.live.post_s * 1500 + 1000));
      v.burst = await groupLive(env, { srcs, locals, rows, txns, pids, mem, tag: `${kind} burst`, delayMs });
      log(`  live, burst: ${fmtInt(txns)} transactions × ${shapes} tables published at once, applied in ${fmtS(v.burst.seconds)} s, ` +
        `${fmtInt(v.burst.changes_per_s)} changes/s, worker CPU ${fmtS(v.burst.worker_cpu_s, 3)} s, ${v.burst.responses} responses` +
        `${v.burst.published_before_last_post ? ' (NOTE: published before the last POST)' : ''}`);
      v.rss_after_live = memStats(mem.sample(pids));
      v.peak_kb = mem.maxKb();
      v.peak_total_kb = [...mem.peak.values()].reduce((a, b) => a + b, 0);
    } finally {
      if (open) await ctl.query('ROLLBACK').catch(() => {});
      for (const n of names) await ctl.query('SELECT electric.delete_subscription($1)', [n]).catch(() => {});
      await waitNoWorkers(env);
      for (const t of locals) await ctl.query(`DROP TABLE IF EXISTS ${t}`);
      for (const s of srcs) await env.control('DELETE', `/tables/${s}`).catch(() => {});
    }
    out.variants.push(v);
  }
  return out;
}

// ---- phase 7: many single-shape subscriptions on one server

async function scale(env, { subs, rows, seconds }) {
  const { ctl } = env;
  const names = Array.from({ length: subs }, (_, i) => `scale_${i + 1}`);
  const srcs = names.map((n) => `${n}_src`);
  log(`scale: ${subs} single-shape subscriptions, ${fmtInt(rows)} rows each`);
  const out = { subs, rows, idle_seconds: seconds };
  const mem = new MemTrack();
  let open = false;
  try {
    for (const s of srcs) await env.control('POST', `/tables/${s}/generate`, { rows });
    for (const t of names) {
      await ctl.query(`DROP TABLE IF EXISTS ${t}`);
      await ctl.query(TABLE_DDL(t));
    }
    await ctl.query('CHECKPOINT');
    await ctl.query('BEGIN');
    open = true;
    for (let i = 0; i < subs; i++) {
      await ctl.query(`SELECT electric.sync_shape_to_table(shape => $1::jsonb, table_name => $2, primary_key => '{id}', shape_key => $2)`,
        [JSON.stringify({ url: env.shapeUrl, params: { table: srcs[i] } }), names[i]]);
    }
    await ctl.query('COMMIT');
    open = false;
    const init = await waitAllLive(env, names, { wall0: Date.now(), timeoutMs: 600_000, mem, what: 'scale' });
    out.initial_s = init.seconds;
    out.first_live_s = init.first_s;
    out.errors = init.errors;
    out.rows_ok = (await rowsIn(env, names)) === subs * rows;
    log(`  all ${subs} live in ${fmtS(init.seconds)} s after the commit (rows ${out.rows_ok ? 'ok' : 'WRONG'})`);
    await sleep(3000); // every worker in its first live long-poll
    let pids = init.pids;
    await assertRunning(env, pids, 'scale');
    out.workers = pids.length;
    const launcher = await launcherPid(env);
    out.rss_live = memStats(mem.sample(pids));
    out.launcher_rss_kb = launcher ? procStatus(launcher, 'RssAnon') : null;
    out.idle = await idleWindow(env, pids, seconds);
    out.rss_after_idle = memStats(mem.sample(pids));
    out.same_workers_after_idle = JSON.stringify((await waitAllLive(env, names, { wall0: Date.now(), timeoutMs: 10_000, what: 'scale' })).pids) === JSON.stringify(pids);
    log(`  idle ${fmtS(out.idle.seconds, 1)} s: workers ${fmtS(out.idle.worker_cpu_s, 3)} + launcher ${fmtS(out.idle.launcher_cpu_s, 3)} CPU s ` +
      `= ${fmtS(out.idle.pct_one_core, 3)}% of one core; RssAnon per worker median ${fmtMB(out.rss_after_idle?.median_kb)} MB, ` +
      `max ${fmtMB(out.rss_after_idle?.max_kb)} MB, total ${fmtMB(out.rss_after_idle?.total_kb)} MB`);

    // pg_ctl restart; then until every subscription is live and up to date again
    const logLen = fs.readFileSync(env.logFile, 'utf8').length;
    const wallR = Date.now();
    out.restart_cmd_s = await env.restart();
    // from the new postmaster's start (its own clock, the same machine's)
    const pmStart = Number((await env.ctl.query('SELECT extract(epoch FROM pg_postmaster_start_time()) * 1000 AS t')).rows[0].t);
    out.restart_shutdown_s = (pmStart - wallR) / 1000;
    const again = await waitAllLive(env, names, { wall0: pmStart, timeoutMs: 600_000, mem, what: 'scale after restart' });
    out.restart_live_s = again.seconds;
    out.restart_first_live_s = again.first_s;
    out.restart_live_by = again.by;
    out.restart_total_s = out.restart_shutdown_s + again.seconds;
    out.restart_errors = again.errors;
    out.rows_ok_after_restart = (await rowsIn(env, names)) === subs * rows;
    pids = again.pids;
    await sleep(3000);
    out.rss_after_restart = memStats(mem.sample(pids));
    out.peak_kb = mem.maxKb();
    out.peak_pid_count = mem.peak.size;
    out.mem_samples = mem.samples;
    const tail = fs.readFileSync(env.logFile, 'utf8').slice(logLen);
    out.restart_log_problems = tail.split('\n').filter((l) => /ERROR|WARNING|FATAL|PANIC/.test(l) &&
      !/terminating background worker|terminating connection due to administrator command|canceling autovacuum/.test(l)).slice(0, 20);
    log(`  restart: pg_ctl ${fmtS(out.restart_cmd_s)} s (new postmaster after ${fmtS(out.restart_shutdown_s)} s), from its start all ${subs} live in ` +
      `${fmtS(again.seconds)} s (first after ${fmtS(again.first_s)} s, by ${again.by}); ` +
      `peak RssAnon of any worker ${fmtMB(out.peak_kb)} MB`);
  } finally {
    if (open) await ctl.query('ROLLBACK').catch(() => {});
    for (const n of names) await env.ctl.query('SELECT electric.delete_subscription($1)', [n]).catch(() => {});
    await waitNoWorkers(env);
    for (const t of names) await env.ctl.query(`DROP TABLE IF EXISTS ${t}`).catch(() => {});
    for (const s of srcs) await env.control('DELETE', `/tables/${s}`).catch(() => {});
  }
  return out;
}

// ---- the machine --------------------------------------------------------------------------

async function machineInfo(env) {
  const cpu = fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.*)$/m)?.[1] ?? os.cpus()[0]?.model;
  const pkgVersion = (p) => {
    try {
      return JSON.parse(fs.readFileSync(p, 'utf8')).version;
    } catch {
      return null;
    }
  };
  const deb = (p) => sh('dpkg-query', ['-W', '-f', '${Version}', p], { soft: true });
  const commit = sh('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD'], { soft: true });
  const dirty = sh('git', ['-C', REPO, 'status', '--porcelain', '--', 'src', 'Makefile', 'pglite_sync.control', '*.sql'], { soft: true });
  const pgv = (await env.ctl.query('SELECT version() AS v')).rows[0].v;
  const ext = (await env.ctl.query("SELECT extversion FROM pg_extension WHERE extname = 'pglite_sync'")).rows[0]?.extversion;
  const curlv = sh('curl-config', ['--version'], { soft: true }) ?? `libcurl ${deb('libcurl4')}`;
  return {
    cpu,
    cores: os.cpus().length,
    ram_gb: +(os.totalmem() / 2 ** 30).toFixed(1),
    kernel: `${os.type()} ${os.release()}`,
    os: fs.existsSync('/etc/debian_version') ? `Debian ${fs.readFileSync('/etc/debian_version', 'utf8').trim()}` : os.platform(),
    postgres: pgv,
    libcurl: curlv,
    jansson: deb('libjansson4'),
    node: process.version,
    pglite: pkgVersion(path.join(REPO, 'test/peer/node_modules/@electric-sql/pglite/package.json')),
    pglite_sync: pkgVersion(path.join(REPO, 'test/peer/node_modules/@electric-sql/pglite-sync/package.json')),
    electric_client_peer: pkgVersion(path.join(REPO, 'test/peer/node_modules/@electric-sql/client/package.json')),
    extension: `${ext ?? '?'} at commit ${commit ?? '?'}${dirty ? ' + uncommitted changes in src/' : ''}`,
    load_at_start: os.loadavg().map((l) => l.toFixed(2)).join(' '),
  };
}

// ---- the report -------------------------------------------------------------------------

function report(R) {
  const o = R.options;
  const out = [];
  const p = (s = '') => out.push(s);
  p('# pglite_sync benchmarks');
  p();
  p(`Generated by \`test/bench/run\` (test/bench/bench.mjs)${o.quick ? '. **Quick mode: small sizes, not the reference numbers.**' : '.'}`);
  p();
  p('```sh');
  p(R.command);
  p('```');
  p();
  const m = R.machine;
  p(`- **Date:** ${R.date} (run took ${fmtS(R.total_s / 60, 1)} min)`);
  p(`- **Machine:** ${m.cpu}, ${m.cores} cores, ${m.ram_gb} GB RAM; ${m.os}, ${m.kernel}; load average at start ${m.load_at_start}`);
  p(`- **Versions:** ${m.postgres}; ${m.libcurl}; jansson ${m.jansson}; Node ${m.node}; pglite_sync ${m.extension}; ` +
    `peer @electric-sql/pglite ${m.pglite}, @electric-sql/pglite-sync ${m.pglite_sync} (client ${m.electric_client_peer})`);
  p(`- **PostgreSQL settings changed from the defaults:** ${Object.entries(R.settings).map(([k, v]) => `\`${k} = ${v}\``).join(', ')}. ` +
    'Everything else is default (shared_buffers 128MB, fsync on, wal_level replica). A CHECKPOINT precedes every timed load.');
  p(`- **Test server:** test/server/server.js in its own Node process, long-poll ${LONG_POLL_MS / 1000} s, Electric's default 10 MiB chunks; ` +
    'the large tables are `POST /_control/tables/:name/generate` tables (id int8 PK, title text, done bool, created_at timestamptz, amount numeric; ' +
    'about 100 bytes per row in the table, about 250 bytes per row of JSON), whose snapshot pages are pre-rendered.');
  p('- **Noise:** the machine is shared (another engineer runs tests on it); compare ratios measured within one run, not absolute numbers across runs. ' +
    (o.repeat > 1 ? `Timed figures are medians of ${o.repeat} runs (min–max shown).` : 'Every figure is a single measurement.'));
  p();

  // initial sync
  if (R.initial) {
    p('## Initial sync');
    p();
    p('Time from the commit of `electric.sync_shape_to_table(...)` until `electric.wait_for_sync(...)` returns true; ' +
      'then `count(*)` and `rows_applied` are checked against N. *fetch* is the part until the worker starts applying ' +
      '(from `pg_stat_activity`), *apply* the rest, in one transaction. By default (`pglite_sync.stream_snapshot` on) the worker ' +
      'loads each page as it arrives while the next downloads, so *fetch* is the first page and *apply* overlaps the download; ' +
      '`copy_whole` is `copy` with the setting off: every page is downloaded and spooled first, then loaded. ' +
      `The \`_paced\` runs have the test server answer each snapshot page after ${R.options.pageDelay ?? 100} ms, as a remote service ` +
      'producing its pages would; they show what the overlap hides and are not counted against the targets. ' +
      'Native COPY is `COPY t FROM \'file.csv\' (FORMAT csv)` of the same rows (written by `COPY <synced table> TO`) into an ' +
      'identical empty table with the same primary key, on the same server. The peer is @electric-sql/pglite (in memory) + ' +
      '@electric-sql/pglite-sync in Node, from the same test server and shape; its time runs from `syncShapeToTable()` to `onInitialSync`; ' +
      `PGlite's start-up (${fmtS(R.peer?.startup_s, 1)} s) is excluded. Worker/server CPU: utime+stime over the sync. ` +
      (o.repeat > 1 ? `Each row is the median of ${o.repeat} runs (methods and native COPY interleaved, each into a fresh table); ` +
        'fetch/apply/CPU are from the median run.' : 'Single runs.'));
    p();
    const rows = [];
    for (const n of R.sizes) {
      const nat = R.initial.native[n];
      const peerBest = R.peer && R.peer.n === n ? R.peer.best : null;
      for (const r of R.initial.runs.filter((x) => x.n === n)) {
        rows.push([
          `pglite_sync ${r.method}`, fmtInt(n), r.ok ? fmtS(r.seconds) : 'FAILED', spread(r), r.ok ? fmtInt(r.rows_per_s) : '–',
          fmtS(r.fetch_s), fmtS(r.apply_s),
          r.ok && nat?.ok ? fmtX(r.rows_per_s / nat.rows_per_s) : '–',
          r.ok && peerBest ? fmtX(r.rows_per_s / peerBest.rows_per_s) : '–',
          fmtS(r.worker_cpu_s), fmtS(r.server_cpu_s),
        ]);
      }
      if (nat) rows.push(['native COPY FROM (csv)', fmtInt(n), fmtS(nat.seconds), spread(nat), fmtInt(nat.rows_per_s), '', '', '1.00×', peerBest ? fmtX(nat.rows_per_s / peerBest.rows_per_s) : '–', '', '']);
      if (R.peer && R.peer.n === n) {
        for (const pm of R.peer.methods) {
          rows.push([`peer pglite-sync ${pm.method}`, fmtInt(n), pm.error ? 'FAILED' : fmtS(pm.seconds), pm.error ? '' : spread(pm), pm.error ? '–' : fmtInt(pm.rows_per_s), '', '',
            !pm.error && nat?.ok ? fmtX(pm.rows_per_s / nat.rows_per_s) : '–', !pm.error && peerBest ? fmtX(pm.rows_per_s / peerBest.rows_per_s) : '–', fmtS(pm.cpu_s), fmtS(pm.server_cpu_s)]);
        }
      }
    }
    p(mdTable(['method', 'N', o.repeat > 1 ? `seconds (median of ${o.repeat})` : 'seconds', o.repeat > 1 ? 'min–max s' : '', 'rows/s', 'fetch s', 'apply s', '× native COPY', '× peer best', 'worker CPU s', 'server CPU s'], rows));
    p();
    if (R.peer) {
      const failed = R.peer.methods.filter((x) => x.error);
      p(`Peer N = ${fmtInt(R.peer.n)}${R.peer.n !== R.options.rows ? ` (smaller than ${fmtInt(R.options.rows)}: PGlite in Node needs about 1 GB and is slow)` : ''}; ` +
        `peer process peak RSS ${R.peer.peak_rss_mb ?? '?'} MB (start-up included). ` +
        (R.peer.best ? `"× peer best" compares with the peer's fastest method (${R.peer.best.method}) at the same N. ` : 'No peer method succeeded. ') +
        (failed.length ? `Peer failures: ${failed.map((x) => `${x.method}: \`${x.error}\``).join('; ')}.` : ''));
      p();
    }
    const errs = R.initial.runs.filter((r) => r.errors.length);
    if (errs.length) {
      p('Errors seen during initial syncs:');
      for (const r of errs) p(`- ${r.method} N=${fmtInt(r.n)}: ${r.errors.map((e) => `\`${e}\``).join('; ')}`);
      p();
    }
    if (R.initial.checksums) {
      p(`Data check: every loaded table at the same N has the same row count and row hash (sum of hashtext(row::text)): ${R.initial.checksums_ok ? 'yes' : '**NO**'}.`);
      p();
    }

    p('## Worker memory');
    p();
    p('Peak `RssAnon` of the subscription\'s worker (from `/proc/<pid>/status`, sampled every 20 ms during the initial sync; ' +
      'anonymous private memory only: shared buffers and page cache do not count). "at start" is the first sample after the ' +
      'worker appeared; the peak is the highest over all runs. The worker is followed by pid through `electric.subscriptions.worker_pid`.');
    p();
    p(mdTable(['method', 'N', 'peak RssAnon MB', 'at start MB', 'samples', 'worker restarts'],
      R.initial.runs.map((r) => [r.method, fmtInt(r.n), fmtMB(r.peak_rss_anon_kb), fmtMB(r.start_rss_anon_kb), r.mem_samples, r.restarts])));
    p();
  }

  if (R.live) {
    p('## Live apply');
    p();
    const T = R.live.throughput;
    const D = R.live.runs.find((r) => r.debug);
    p(`${fmtInt(R.live.txns)} single-row UPDATE transactions (title and amount of every row) appended to the test server in one ` +
      '`POST /_control/tables/:name/txns` while the worker waits in its long-poll, so the responses carry many transactions ' +
      '(synchronous_commit = on). Every run uses a freshly synced table of as many rows (loaded with `copy`, then VACUUM ANALYZE ' +
      'and CHECKPOINT). *seconds* runs from the moment the POST returned (the server has appended everything and answered the ' +
      'long-poll) to the NOTIFY of the commit that made the last change visible (checked with count(*)); the POST itself is not counted. ' +
      `The runs with pglite_sync.debug off give the throughput${T.rounds > 1 ? ` (median of ${T.rounds})` : ''}; the run with debug on gives ` +
      'the latency: per committed batch, the time from the debug log line of the response that completed the batch (logged once ' +
      'the response is fully received) to the "committed batch" log line, p50/p99 over the batches of that run (so as many samples ' +
      'as batches). "resp→commit" is the same for every response that carried changes (earlier responses of a batch also wait for the rest). ' +
      'Worker CPU covers the POST and the apply (the worker idles in its long-poll during the POST); server CPU starts when the POST returned.');
    p();
    p(mdTable(['run', 'debug', 'txns', 'seconds', 'changes/s', 'POST s', 'batches', 'responses', 'changes/response', 'batch p50 ms', 'batch p99 ms', 'resp→commit p50/p99 ms', 'worker CPU s', 'server CPU s'],
      R.live.runs.map((r) => [r.run, r.debug ? 'on' : 'off', fmtInt(r.txns), fmtS(r.seconds), fmtInt(r.changes_per_s), fmtS(r.post_s),
        r.debug ? r.batches : '', r.debug ? r.responses : '', r.debug ? fmtInt(r.changes_per_response) : '',
        r.debug ? r.p50_ms : '', r.debug ? r.p99_ms : '', r.debug ? `${r.resp_p50_ms ?? '–'} / ${r.resp_p99_ms ?? '–'}` : '',
        fmtS(r.worker_cpu_s), fmtS(r.server_cpu_s)])));
    p();
    p(`Live apply: **${fmtInt(T.changes_per_s)} changes/s** (debug off${T.rounds > 1 ? `, median of ${T.rounds}` : ''}); ` +
      `response received → commit: **p50 ${D?.p50_ms ?? '–'} ms, p99 ${D?.p99_ms ?? '–'} ms** over ${D?.batches ?? 0} batch(es) (debug on, ${fmtInt(D?.changes_per_s)} changes/s in that run).`);
    p();
  }

  if (R.idle) {
    const I = R.idle;
    p('## Idle subscriptions');
    p();
    p(`${I.subs} live subscriptions on a 10-row shape (one table each), all in state live with ${I.workers_running} distinct running ` +
      `worker processes (asserted from electric.subscriptions.worker_pid, pg_stat_activity and /proc). CPU is the scheduler's ` +
      `run time from /proc/<pid>/schedstat over ${fmtS(I.seconds, 1)} s (utime+stime from /proc/<pid>/stat, in ${1000 / CLK_TCK} ms ticks, ` +
      `says ${fmtS(I.worker_cpu_ticks_s)} s for the workers); wake-ups are context switches per worker per second. With a ${LONG_POLL_MS / 1000} s long-poll each worker ` +
      `makes about ${(60000 / LONG_POLL_MS).toFixed(0)} requests a minute.`);
    p();
    p(mdTable(['subscriptions', 'seconds', 'workers CPU s', 'busiest worker CPU s', 'wake-ups/s per worker', 'launcher CPU s', '% of one core', 'postmaster CPU s', 'requests served (expected)', 'same workers after'],
      [[I.subs, fmtS(I.seconds, 1), fmtS(I.worker_cpu_s, 3), fmtS(I.worker_max_cpu_s, 4), fmtS(I.worker_wakeups_per_s, 2), fmtS(I.launcher_cpu_s, 3), `${fmtS(I.pct_one_core, 3)}%`, fmtS(I.postmaster_cpu_s, 3),
        `${I.requests} (${I.requests_expected})`, I.same_workers_after ? 'yes' : 'NO']]));
    p();
  }

  if (R.latency) {
    const L = R.latency;
    p('## Latency of isolated transactions');
    p();
    p(`${fmtInt(L.txns)} single-row UPDATE transactions on a ${fmtInt(L.txns)}-row table, one \`POST /_control/tables/:name/txn\` at a time, ` +
      `started on a timer at ${L.rate} per second, never sooner than ${fmtS(1000 / L.rate, 1)} ms after the previous one (so a slow POST delays ` +
      `the rest instead of bunching them; achieved ${fmtS(L.achieved_rate, 1)}/s; a POST took p50 ${fmtS(L.post_p50_ms, 1)} ms, ` +
      `p99 ${fmtS(L.post_p99_ms, 1)} ms, at most ${fmtS(L.post_max_ms, 1)} ms), while the worker long-polls, so that each ` +
      'response carries one transaction (the table shows how many did). pglite_sync.debug is on; latencies come from the worker\'s ' +
      'log lines as in the live phase (millisecond timestamps): *response → commit* from the "response" line (written once the ' +
      'response is fully received) to the "committed batch" line of the batch it completed; *POST answered → commit* from the moment ' +
      'the test server answered the POST (it has committed the transaction) to the first local commit up to its LSN, so it adds ' +
      'the long-poll wake-up and the HTTP round trip. Worker CPU from /proc/<pid>/schedstat over the whole run.');
    p();
    p(mdTable(['txns', 'rate /s', 'responses with changes', 'with one change', 'max changes/response', 'commits',
      'response → commit p50 ms', 'p99 ms', 'max ms', 'POST answered → commit p50 ms', 'p99 ms', 'max ms', 'worker CPU ms/txn'],
    [[fmtInt(L.txns), L.rate, L.responses, L.responses_one_change, L.max_changes_per_response, L.commits,
      L.p50_ms, L.p99_ms, L.max_ms, L.e2e_p50_ms, L.e2e_p99_ms, L.e2e_max_ms, fmtS(L.worker_cpu_ms_per_txn, 2)]]));
    p();
  }

  if (R.group) {
    const G = R.group;
    const name = (v) => (v.kind === 'group' ? `one group of ${G.shapes} shapes` : `${G.shapes} single subscriptions`);
    p('## One group against single subscriptions');
    p();
    p(`${G.shapes} source tables of ${fmtInt(G.rows)} rows (generated), synced once as ${G.shapes} single-shape subscriptions ` +
      `(\`sync_shape_to_table\`, all in one transaction) and once as one group (\`sync_shapes_to_tables\`, one worker), each ` +
      'variant into its own tables from its own source tables, one after the other. *initial sync* runs from the COMMIT until ' +
      'electric.subscriptions shows every subscription live and up to date (polled every 25 ms; the time is the latest `last_up_to_date_at`). *Idle* is the CPU of the workers ' +
      `and the launcher over ${G.idle_seconds} s (/proc/<pid>/schedstat) once all are in their live long-poll. RssAnon is from ` +
      '/proc/<pid>/status after the idle window; *peak* sums each worker\'s highest sample over the variant.');
    p();
    p(mdTable(['variant', 'workers', 'initial sync s', `idle CPU s (${G.idle_seconds} s)`, '% of one core', 'wake-ups/s per worker',
      'RssAnon total MB', 'RssAnon per worker MB', 'peak total MB'],
    G.variants.map((v) => [name(v), v.workers, fmtS(v.initial_s), fmtS(v.idle.worker_cpu_s + (v.idle.launcher_cpu_s ?? 0), 3),
      `${fmtS(v.idle.pct_one_core, 3)}%`, fmtS(v.idle.wakeups_per_worker_s, 2), fmtMB(v.rss_after_idle?.total_kb),
      v.rss_after_idle ? (v.rss_after_idle.n > 1 ? `${fmtMB(v.rss_after_idle.min_kb)}–${fmtMB(v.rss_after_idle.max_kb)}` : fmtMB(v.rss_after_idle.max_kb)) : '–',
      fmtMB(v.peak_total_kb)])));
    p();
    p(`Live apply: ${fmtInt(G.txns)} transactions, each updating one row in every one of the ${G.shapes} source tables ` +
      '(`POST /_control/txn`, one after another as fast as the test server answers). *stream*: the workers see them as they come; ' +
      'seconds from the first POST until the last transaction is visible in every local table (*lag* is the part after the last POST ' +
      'was answered). *burst*: the same once more, but the first transaction carries a publish delay that outlasts the POSTs, so ' +
      'that the test server publishes all of them at once; seconds from that moment. Worker CPU (all workers) covers each run; ' +
      '*responses* are the test server\'s 200 answers to the shape requests of these tables during the run.');
    p();
    p(mdTable(['variant', 'stream s', 'lag after last POST s', 'stream worker CPU s', 'stream responses', 'burst s', 'burst changes/s', 'burst worker CPU s', 'burst responses'],
      G.variants.map((v) => [name(v), fmtS(v.live.seconds), fmtS(v.live.lag_after_last_post_s, 3), fmtS(v.live.worker_cpu_s, 3), v.live.responses,
        fmtS(v.burst.seconds), fmtInt(v.burst.changes_per_s), fmtS(v.burst.worker_cpu_s, 3), v.burst.responses])));
    p();
    const notes = G.variants.filter((v) => !v.rows_ok || v.errors?.length || v.burst.published_before_last_post);
    for (const v of notes) {
      p(`- ${name(v)}: ${!v.rows_ok ? '**row count after the initial sync is wrong**; ' : ''}` +
        `${v.burst.published_before_last_post ? 'the burst was published before the last POST; ' : ''}` +
        `${(v.errors ?? []).map((e) => `\`${e}\``).join('; ')}`);
    }
    if (notes.length) p();
  }

  if (R.scale) {
    const S = R.scale;
    const I = S.idle;
    p('## Scale: many subscriptions on one server');
    p();
    p(`${S.subs} single-shape subscriptions (keyed), each from its own ${fmtInt(S.rows)}-row source table into its own table, ` +
      `subscribed in one transaction; all live and up to date ${fmtS(S.initial_s)} s after the COMMIT (the first after ${fmtS(S.first_live_s)} s). With ${S.workers} distinct running workers ` +
      `(asserted from electric.subscriptions.worker_pid, pg_stat_activity and /proc), CPU of all workers and the launcher over ` +
      `${fmtS(I.seconds, 1)} s from /proc/<pid>/schedstat and, as utime+stime, from /proc/<pid>/stat (${1000 / CLK_TCK} ms ticks). ` +
      `Each worker makes about ${(60000 / LONG_POLL_MS).toFixed(0)} requests a minute (${LONG_POLL_MS / 1000} s long-poll).`);
    p();
    p(mdTable(['subscriptions', 'seconds', 'workers CPU s', 'busiest worker CPU s', 'launcher CPU s', '% of one core', '% of one core (utime+stime)',
      'wake-ups/s per worker', 'postmaster CPU s', 'requests served (expected)', 'same workers after'],
    [[S.subs, fmtS(I.seconds, 1), fmtS(I.worker_cpu_s, 3), fmtS(I.worker_max_cpu_s, 4), fmtS(I.launcher_cpu_s, 4), `${fmtS(I.pct_one_core, 3)}%`,
      `${fmtS(I.pct_one_core_ticks, 3)}%`, fmtS(I.wakeups_per_worker_s, 3), fmtS(I.postmaster_cpu_s, 3), `${I.requests} (${I.requests_expected})`,
      S.same_workers_after_idle ? 'yes' : 'NO']]));
    p();
    p('Private memory (RssAnon from /proc/<pid>/status; shared buffers do not count) per worker and in total: when all are live, ' +
      'after the idle window, and after the restart; *peak* is the highest sample of any worker over the whole phase ' +
      `(${fmtInt(S.mem_samples)} samples of ${S.peak_pid_count} worker processes, taken while waiting for the subscriptions to become live). ` +
      `The launcher's RssAnon: ${fmtMB(S.launcher_rss_kb)} MB.`);
    p();
    const mrow = (label, m) => [label, m?.n, fmtMB(m?.min_kb), fmtMB(m?.median_kb), fmtMB(m?.max_kb), fmtMB(m?.total_kb)];
    p(mdTable(['when', 'workers', 'min MB', 'median MB', 'max MB', 'total MB'],
      [mrow('all live', S.rss_live), mrow('after idle', S.rss_after_idle), mrow('after restart', S.rss_after_restart),
        ['peak of any worker', S.peak_pid_count, '', '', fmtMB(S.peak_kb), '']]));
    p();
    p(`Restart: \`pg_ctl restart -m fast\` (shutdown, start, until it accepts connections) took ${fmtS(S.restart_cmd_s)} s, of which ` +
      `${fmtS(S.restart_shutdown_s)} s until the new postmaster started (\`pg_postmaster_start_time()\`). From that start until the last of the ${S.subs} ` +
      `subscriptions was live and up to date with a new worker (by ${S.restart_live_by === 'poll' ? 'polling electric.subscriptions' : 'their \`last_up_to_date_at\`, once electric.subscriptions showed all live'}): ` +
      `${fmtS(S.restart_live_s)} s (the first after ${fmtS(S.restart_first_live_s)} s); **${fmtS(S.restart_total_s)} s from the restart command**. Rows after the restart: ${S.rows_ok_after_restart ? 'all there' : '**WRONG**'}.` +
      (S.restart_log_problems?.length ? ` Log lines after the restart: ${S.restart_log_problems.map((l) => `\`${l}\``).join('; ')}.` : ''));
    p();
  }

  if (R.pglite) {
    const P = R.pglite;
    p('## PGlite');
    p();
    p(`The same generated shape into PGlite ${P.versions?.pglite ?? '?'} in Node, through the seed's @electric-sql/pglite-sync ` +
      `${P.versions?.pglite_sync_peer ?? '?'} (\`peer\`) and through ours (\`build/pglite/\`, \`make pglite\`: the C engine as a PGlite ` +
      'extension, JavaScript only fetching). Both use the same PGlite build, a data directory on disk, the same test server and shape; ' +
      'one Node process per run (test/bench/pglite.mjs) so that each peak is its own. Time runs from `syncShapeToTable()` to ' +
      '`onInitialSync`, then `count(*)` is checked; PGlite\'s start-up is excluded. *Memory* is V8\'s `heapUsed + external` ' +
      '(JavaScript objects, buffers and PGlite\'s WASM memory), *RSS* the process RSS: *before* just before `syncShapeToTable()` ' +
      '(PGlite started, table created), *peak* the highest value sampled every 20 ms until `onInitialSync`; *VmHWM* is the process ' +
      'peak, start-up included. Memory figures are the worst round\'s. PGlite\'s own start-up memory differs between the two ' +
      '(it is lower when an extension bundle is loaded), so compare peaks, not growth. ' +
      `\`csv_paced\` is csv with the test server answering each snapshot page after ${R.options.pageDelay ?? 100} ms, as a remote service ` +
      'producing its pages would: ours requests the next page while PGlite ingests the current one; it is not counted in "× peer best".' +
      ((P.ours_sizes ?? []).length ? ` At N = ${P.ours_sizes.map(fmtInt).join(', ')} only ours runs (the peer would hold the whole shape in memory): ` +
        'those rows are there for the memory target.' : ''));
    p();
    const rows = [];
    for (const n of [...P.sizes, ...(P.ours_sizes ?? [])]) {
      const here = P.runs.filter((r) => r.n === n);
      const peers = here.filter((r) => r.impl === 'peer' && r.ok && !isPaced(r.method));
      const pb = peers.length ? peers.reduce((a, b) => (b.rows_per_s > a.rows_per_s ? b : a)) : null;
      for (const r of here) {
        rows.push([`${r.impl === 'peer' ? 'peer pglite-sync' : 'pglite_sync'} ${r.method}`, fmtInt(n), r.ok ? fmtS(r.seconds) : 'FAILED', r.ok ? spread(r) : '',
          r.ok ? fmtInt(r.rows_per_s) : '–', r.ok && pb ? fmtX(r.rows_per_s / pb.rows_per_s) : '–',
          r.live_base_mb ?? '–', r.live_peak_mb ?? '–', r.rss_base_mb ?? '–', r.rss_sync_peak_mb ?? '–', r.rss_hwm_mb ?? '–']);
      }
    }
    p(mdTable(['method', 'N', R.options.repeat > 1 ? `seconds (median of ${R.options.repeat})` : 'seconds', R.options.repeat > 1 ? 'min–max s' : '',
      'rows/s', '× peer best', 'memory before MB', 'memory peak MB', 'RSS before MB', 'RSS peak MB', 'VmHWM MB'], rows));
    p();
    const fl = Object.entries(P.floor);
    if (fl.length) {
      const rate = (n, s) => `${fmtS(s)} s (${fmtInt(Number(n) / s)} rows/s)`;
      p('PGlite\'s own floor, in the same process after our sync, with no network and no JSON (and, last, the network alone): ' + fl.map(([n, f]) =>
        `N = ${fmtInt(Number(n))}: \`INSERT INTO t2 SELECT * FROM t\` ${rate(n, f.insert_select_s)}, ` +
        `\`COPY t2 FROM '/dev/blob' (FORMAT csv)\` ${rate(n, f.copy_s)}` +
        (f.copy_index_after_s != null ? `, the same COPY into t2 without its primary key, then \`ADD PRIMARY KEY\` ${rate(n, f.copy_index_after_s)}` : '') +
        (f.fetch_s != null ? `; fetching the shape alone (its ${f.fetch_pages} pages, each body read whole and dropped) ${fmtS(f.fetch_s)} s` : '')).join('; ') +
        '. The COPY without the key is the best a loader from text can do in PGlite (ours builds the indexes the same way past 8,192 rows); ' +
        'a sync also fetches, hands over and parses every page, and spools all but the last.');
      p();
    }
    const failed = P.runs.filter((r) => !r.ok);
    if (failed.length) {
      p('Failures: ' + failed.map((r) => `${r.impl} ${r.method} at N = ${fmtInt(r.n)}: \`${(r.error ?? '').split('\n')[0].slice(0, 200)}\``).join('; ') + '.');
      p();
    }
  }

  if (R.profiles) {
    p('## Profiles (--profile)');
    p();
    p('`perf record -F 999 -p <worker pid>` during an extra, untimed run (the run is slower under perf); flat profile, ' +
      'share of samples by shared object, then the top symbols. Unresolved `postgres` addresses are static functions.');
    p();
    for (const [m, pr] of Object.entries(R.profiles)) {
      p(`### ${m === 'live' ? `live apply (${fmtInt(R.options.liveTxns)} updates)` : `initial sync, ${m}, N = ${fmtInt(R.options.rows)}`} (${fmtS(pr.seconds)} s under perf)`);
      p();
      p('```');
      p(pr.report ?? 'perf report failed');
      p('```');
      p();
    }
  }
  const PP = R.pglite?.profile;
  if (PP) {
    if (!R.profiles) {
      p('## Profiles (--profile)');
      p();
    }
    p(`### PGlite, ours, ${PP.method}, N = ${fmtInt(PP.n)} (${PP.seconds == null ? 'failed' : `${fmtS(PP.seconds)} s under the profiler`})`);
    p();
    p('V8\'s sampling profiler (every 200 µs) in an extra, untimed run of test/bench/pglite.mjs, from `syncShapeToTable()` to ' +
      '`onInitialSync`; test/bench/wasmprof.mjs names the WebAssembly frames: PostgreSQL\'s from the exports of pglite.wasm (which ' +
      'has no name section: a function it does not export counts towards its nearest exported caller), ours from the side ' +
      'module\'s name section. Shares are of the samples of the Node process (the test server runs in its own).');
    p();
    p('```');
    p(PP.report ?? 'profiling failed');
    p('```');
    p();
  }

  p('## Targets');
  p();
  p('Reported, not asserted.');
  p();
  p(mdTable(['target', 'measured', 'verdict'], R.verdicts.map((v) => [v.target, v.measured, v.met == null ? 'not measured' : v.met ? 'met' : '**missed**'])));
  p();
  return out.join('\n');
}

function verdicts(R) {
  const v = [];
  const bestAt = (n) => {
    const ok = (R.initial?.runs ?? []).filter((r) => r.n === n && r.ok && !r.method.endsWith('_paced'));
    return ok.length ? ok.reduce((a, b) => (b.rows_per_s > a.rows_per_s ? b : a)) : null;
  };
  const n = R.options.rows;
  const best = bestAt(n);
  const nat = R.initial?.native[n];
  // issue 12's targets at the large N: the best method, insert and json against native COPY
  const methodAt = (m) => (R.initial?.runs ?? []).find((r) => r.n === n && r.ok && r.method === m) ?? null;
  for (const [label, run, floor] of [['best initial method', best, 0.9], ['`insert`', methodAt('insert'), 0.7], ['`json`', methodAt('json'), 0.5]]) {
    const target = `${label} ≥ ${floor}× native COPY rows/s`;
    if (run && nat?.ok) {
      const x = run.rows_per_s / nat.rows_per_s;
      v.push({ target, measured: `${run.method}: ${fmtInt(run.rows_per_s)} vs ${fmtInt(nat.rows_per_s)} rows/s = ${fmtX(x)} at N = ${fmtInt(n)}`, met: x >= floor });
    } else v.push({ target, measured: '–', met: null });
  }
  const pb = R.peer?.best;
  const ours = R.peer ? bestAt(R.peer.n) : null;
  if (pb && ours) {
    const x = ours.rows_per_s / pb.rows_per_s;
    v.push({ target: '≥ 10× the pglite-sync peer at the same N', measured: `${ours.method}: ${fmtInt(ours.rows_per_s)} vs peer ${pb.method}: ${fmtInt(pb.rows_per_s)} rows/s = ${fmtX(x)} at N = ${fmtInt(R.peer.n)}`, met: x >= 10 });
  } else v.push({ target: '≥ 10× the pglite-sync peer at the same N', measured: '–', met: null });
  const lr = R.live?.throughput;
  if (lr) v.push({ target: 'live apply ≥ 50,000 changes/s', measured: `${fmtInt(lr.changes_per_s)} changes/s (debug off${lr.rounds > 1 ? `, median of ${lr.rounds}` : ''})`, met: lr.changes_per_s >= 50000 });
  else v.push({ target: 'live apply ≥ 50,000 changes/s', measured: '–', met: null });
  if (R.idle) {
    v.push({ target: 'idle subscriptions ≈ 0 CPU (taken as < 1% of one core for all workers + launcher)',
      measured: `${fmtS(R.idle.worker_cpu_s + (R.idle.launcher_cpu_s ?? 0), 3)} CPU s in ${fmtS(R.idle.seconds, 0)} s for ${R.idle.subs} workers = ${fmtS(R.idle.pct_one_core, 3)}% of one core`,
      met: R.idle.pct_one_core < 1 });
  } else v.push({ target: 'idle subscriptions ≈ 0 CPU', measured: '–', met: null });
  if (R.latency) {
    const L = R.latency;
    v.push({ target: 'isolated-transaction latency p99 < 20 ms (response received → commit)',
      measured: `p99 ${L.p99_ms} ms, p50 ${L.p50_ms} ms over ${L.batches} commits (${fmtInt(L.txns)} transactions at ${L.rate}/s, ` +
        `${L.responses_one_change} of ${L.responses} responses with one change)`,
      met: L.p99_ms == null ? null : L.p99_ms < 20 });
  } else v.push({ target: 'isolated-transaction latency p99 < 20 ms', measured: '–', met: null });
  if (R.scale) {
    const S = R.scale;
    v.push({ target: '200 idle subscriptions < 2 % of one core (all workers + launcher)',
      measured: `${fmtS(S.idle.worker_cpu_s + (S.idle.launcher_cpu_s ?? 0), 3)} CPU s in ${fmtS(S.idle.seconds, 0)} s for ${S.subs} workers = ` +
        `${fmtS(S.idle.pct_one_core, 3)}% of one core${S.subs !== 200 ? ` (only ${S.subs} subscriptions)` : ''}`,
      met: S.idle.pct_one_core < 2 });
  } else v.push({ target: '200 idle subscriptions < 2 % of one core', measured: '–', met: null });
  {
    const parts = [];
    let worst = null;
    if (R.scale?.peak_kb) {
      parts.push(`scale: ${fmtMB(R.scale.peak_kb)} MB (highest of ${R.scale.peak_pid_count} workers)`);
      worst = Math.max(worst ?? 0, R.scale.peak_kb);
    }
    const ini = (R.initial?.runs ?? []).filter((r) => r.peak_rss_anon_kb);
    if (ini.length) {
      const top = ini.reduce((a, b) => (b.peak_rss_anon_kb > a.peak_rss_anon_kb ? b : a));
      parts.push(`initial sync: ${fmtMB(top.peak_rss_anon_kb)} MB (${top.method}, N = ${fmtInt(top.n)})`);
      worst = Math.max(worst ?? 0, top.peak_rss_anon_kb);
    }
    if (R.group) {
      const g = R.group.variants.find((x) => x.kind === 'group');
      if (g?.peak_kb) {
        parts.push(`group of ${R.group.shapes}: ${fmtMB(g.peak_kb)} MB`);
        worst = Math.max(worst ?? 0, g.peak_kb);
      }
    }
    v.push({ target: 'worker peak private memory (RssAnon) < 64 MB', measured: parts.length ? parts.join('; ') : '–', met: worst == null ? null : worst < 64 * 1024 });
  }
  if (R.pglite) {
    const P = R.pglite;
    const n = P.sizes[0];
    const best = (impl, at) => {
      const ok = P.runs.filter((r) => r.impl === impl && r.n === at && r.ok && !isPaced(r.method));
      return ok.length ? ok.reduce((a, b) => (b.rows_per_s > a.rows_per_s ? b : a)) : null;
    };
    const o1 = best('ours', n);
    const p1 = best('peer', n);
    v.push({ target: 'PGlite: ≥ 5× the peer\'s best method',
      measured: o1 && p1 ? `${o1.method}: ${fmtInt(o1.rows_per_s)} vs peer ${p1.method}: ${fmtInt(p1.rows_per_s)} rows/s = ${fmtX(o1.rows_per_s / p1.rows_per_s)} at N = ${fmtInt(n)}` +
        pgliteFloor(P.floor[n], n / (5 * p1.rows_per_s)) : '–',
      met: o1 && p1 ? o1.rows_per_s / p1.rows_per_s >= 5 : null });
    const big = Math.max(...P.sizes, ...(P.ours_sizes ?? []));
    const growth = (at) => Math.max(...P.runs.filter((r) => r.impl === 'ours' && r.n === at && r.ok && !isPaced(r.method)).map((r) => r.live_peak_mb));
    if (big !== n) {
      const g1 = growth(n);
      const g2 = growth(big);
      v.push({ target: 'PGlite: memory does not grow with the shape (taken as: our memory peak at the largest N ≤ 1.25× the smallest N\'s + 16 MB; the database is on disk)',
        measured: Number.isFinite(g1) && Number.isFinite(g2) ? `ours: ${g1} MB at N = ${fmtInt(n)}, ${g2} MB at N = ${fmtInt(big)}` : '–',
        met: Number.isFinite(g1) && Number.isFinite(g2) ? g2 <= 1.25 * g1 + 16 : null });
    }
  }
  return v;
}

// What 5x the peer leaves for a sync, against what this process needs for two
// of its parts alone: fetching the pages, and PGlite inserting the rows from
// another table (no text, no spool).  Both measured in the same run.
function pgliteFloor(f, budgetS) {
  if (f?.fetch_s == null || f.insert_select_s == null) return '';
  const sum = f.fetch_s + f.insert_select_s;
  return `; 5× would be ${fmtS(budgetS)} s, and in this run fetching the pages alone took ${fmtS(f.fetch_s)} s and PGlite's ` +
    `\`INSERT … SELECT\` of the rows ${fmtS(f.insert_select_s)} s: ${fmtS(sum)} s${sum > budgetS ? ', more than 5× allows' : ''}`;
}

// ---- main ----------------------------------------------------------------------------------

async function main() {
  if (process.getuid?.() !== 0) throw new Error('run as root (PostgreSQL runs as the unprivileged user "postgres")');
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    throw Object.assign(e, { usage: true });
  }
  if (opts.render) {
    // the report again from a results file (e.g. after the targets changed)
    const R = JSON.parse(fs.readFileSync(opts.render, 'utf8'));
    R.verdicts = verdicts(R);
    const text = report(R);
    if (opts.md) fs.writeFileSync(opts.md, `${text}\n`);
    console.log(text);
    return;
  }
  const started = now();
  const R = {
    command: process.env.BENCH_COMMAND || `node test/bench/bench.mjs ${process.argv.slice(2).join(' ')}`.trim(),
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    options: opts,
  };
  const sizes = [...new Set([opts.peerRows, opts.rows, ...(opts.rows > 100_000 ? [100_000] : [])])].sort((a, b) => a - b);
  R.sizes = sizes;
  const env = new Env(opts);
  const cleanup = async () => {
    await env.stop().catch((e) => log(`cleanup: ${e.message}`));
  };
  process.on('SIGINT', async () => {
    await cleanup();
    process.exit(130);
  });
  try {
    await env.start();
    R.settings = env.settings;
    R.machine = await machineInfo(env);
    log(`PostgreSQL in ${env.dir}; test server at ${env.base} (pid ${env.serverPid})`);

    if (opts.only.includes('initial') || opts.only.includes('peer')) {
      R.initial = { runs: [], native: {} };
      for (const n of sizes) {
        const src = `gen_${n}`;
        const g = await env.control('POST', `/tables/${src}/generate`, { rows: n });
        log(`N = ${fmtInt(n)}: test server generated ${g.pages} pages, ${fmtInt(g.bytes)} bytes in ${g.ms} ms`);
        if (opts.only.includes('initial')) {
          // Rounds interleave the methods (and native COPY) so that noise from
          // a busy machine spreads over all of them.
          const rounds = Object.fromEntries(opts.methods.map((m) => [m, []]));
          const nativeRounds = [];
          let csv = null;
          for (let round = 1; round <= opts.repeat; round++) {
            for (const method of opts.methods) {
              const r = await initialSync(env, { n, method, src, local: `sync_${method}_${n}` });
              rounds[method].push(r);
              log(`  ${method}${opts.repeat > 1 ? ` (${round}/${opts.repeat})` : ''}: ${r.ok ? `${fmtS(r.seconds)} s, ${fmtInt(r.rows_per_s)} rows/s (fetch ${fmtS(r.fetch_s)} s, apply ${fmtS(r.apply_s)} s), peak RssAnon ${fmtMB(r.peak_rss_anon_kb)} MB` : `FAILED ${r.errors.join('; ')}`}`);
            }
            const loaded = opts.methods.map((m) => rounds[m][round - 1]).filter((r) => r.ok);
            if (!csv && loaded.length) csv = await makeCsv(env, n, loaded[0].local);
            if (csv) {
              const nat = await nativeCopy(env, n, csv);
              nativeRounds.push(nat);
              log(`  native COPY FROM${opts.repeat > 1 ? ` (${round}/${opts.repeat})` : ''}: ${fmtS(nat.seconds)} s, ${fmtInt(nat.rows_per_s)} rows/s`);
              if (round === 1) {
                const sums = [];
                for (const r of loaded) sums.push(await checksum(env, r.local));
                sums.push(await checksum(env, nat.table));
                R.initial.checksums ??= {};
                R.initial.checksums[n] = sums;
                R.initial.checksums_ok = (R.initial.checksums_ok ?? true) && new Set(sums).size === 1;
              }
            }
          }
          for (const m of opts.methods) R.initial.runs.push(aggregate(rounds[m]));
          await env.ctl.query('ALTER SYSTEM RESET pglite_sync.stream_snapshot');
          await env.ctl.query('SELECT pg_reload_conf()');
          if (nativeRounds.length) R.initial.native[n] = aggregate(nativeRounds);
          for (const m of opts.methods) await env.ctl.query(`DROP TABLE IF EXISTS sync_${m}_${n}`);
          await env.ctl.query(`DROP TABLE IF EXISTS native_copy_${n}`);
          if (csv) fs.rmSync(csv, { force: true });
        }
        if (opts.only.includes('peer') && n === opts.peerRows) {
          log(`peer: @electric-sql/pglite-sync at N = ${fmtInt(n)} (${opts.peerMethods.join(', ')})`);
          const peer = await runPeer(env, { n, src, methods: opts.peerMethods, repeat: opts.repeat });
          const ok = peer.methods.filter((x) => !x.error && x.ok);
          peer.best = ok.length ? ok.reduce((a, b) => (b.rows_per_s > a.rows_per_s ? b : a)) : null;
          R.peer = peer;
        }
        if (opts.profile && n === opts.rows) {
          R.profiles ??= {};
          for (const method of opts.methods) {
            log(`  profiling ${method} (untimed extra run, perf record -F 999 -p <worker>)`);
            const r = await initialSync(env, { n, method, src, local: `prof_${method}`, profile: true });
            await env.ctl.query(`DROP TABLE IF EXISTS prof_${method}`);
            if (r.perf_data) {
              const rep = await profileReport(r.perf_data);
              R.profiles[method] = { seconds: r.seconds, report: rep };
            }
          }
        }
        await env.control('DELETE', `/tables/${src}`);
      }
      if (R.initial.runs.length === 0) delete R.initial;
    }
    if (opts.only.includes('live')) {
      R.live = await liveApply(env, opts.liveTxns, opts.repeat, opts.profile);
      if (R.live.profile) (R.profiles ??= {}).live = R.live.profile;
    }
    if (opts.only.includes('idle')) R.idle = await idle(env, opts.idleSubs, opts.idleSeconds);
    if (opts.only.includes('latency')) {
      R.latency = await latency(env, { txns: opts.latencyTxns, rate: opts.latencyRate });
      log(`  response received → commit p50 ${R.latency.p50_ms} ms, p99 ${R.latency.p99_ms} ms over ${R.latency.batches} commits; ` +
        `${R.latency.responses_one_change} of ${R.latency.responses} responses carried one change`);
    }
    if (opts.only.includes('group')) R.group = await group(env, { shapes: opts.groupShapes, rows: opts.groupRows, txns: opts.groupTxns, seconds: opts.groupSeconds });
    if (opts.only.includes('scale')) R.scale = await scale(env, { subs: opts.scaleSubs, rows: opts.scaleRows, seconds: opts.scaleSeconds });
    if (opts.only.includes('pglite')) R.pglite = await runPglite(env, { sizes: opts.pgliteRows, oursSizes: opts.pgliteOursRows, methods: opts.pgliteMethods, repeat: opts.repeat, profile: opts.profile });
  } finally {
    R.total_s = (now() - started) / 1000;
    R.postgres_log_tail = env.logFile && fs.existsSync(env.logFile)
      ? fs.readFileSync(env.logFile, 'utf8').split('\n').filter((l) => /ERROR|WARNING|FATAL|PANIC|terminated/.test(l) && !/canceling autovacuum task/.test(l) &&
        !(opts.only.includes('scale') && /terminating background worker "pglite_sync (worker|launcher)" due to administrator command/.test(l))).slice(-30)
      : [];
    await cleanup();
  }
  R.verdicts = verdicts(R);
  const text = report(R);
  const resultsDir = path.join(HERE, 'results');
  fs.mkdirSync(resultsDir, { recursive: true });
  const stamp = R.date.replace(/[:]/g, '').replace(/-/g, '');
  fs.writeFileSync(path.join(resultsDir, `bench-${stamp}.md`), `${text}\n`);
  fs.writeFileSync(path.join(resultsDir, `bench-${stamp}.json`), `${JSON.stringify(R, null, 1)}\n`);
  if (R.profiles) {
    for (const [m, p] of Object.entries(R.profiles)) fs.writeFileSync(path.join(resultsDir, `perf-${m}-${stamp}.txt`), `${p.report ?? 'perf report failed'}\n`);
  }
  console.log(text);
  if (R.postgres_log_tail.length) {
    console.log('\nPostgreSQL log lines with ERROR/WARNING/FATAL (last 30):');
    for (const l of R.postgres_log_tail) console.log(`  ${l}`);
  }
  console.log(`\nresults: ${path.relative(REPO, path.join(resultsDir, `bench-${stamp}.md`))} (and .json)`);
  if (opts.md) {
    fs.writeFileSync(opts.md, `${text}\n`);
    console.log(`wrote ${path.relative(REPO, opts.md) || opts.md}`);
  }
}

main().catch((e) => {
  console.error(`bench: ${e.usage ? e.message : e.stack || e.message}`);
  process.exit(e.usage ? 2 : 1);
});
