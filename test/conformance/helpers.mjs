// Shared helpers for the conformance tests: an in-process test server, the
// control API, the official client, and a throwaway Postgres cluster.

import { createServer } from '../server/server.js';
import { ShapeStream, Shape } from '@electric-sql/client';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export { ShapeStream, Shape };

// The client throttles its (browser-only) localStorage writes with a 60 s
// timer that would keep each test process alive for a minute after the last
// test; long timers must not hold the process open.
const realSetTimeout = globalThis.setTimeout;
globalThis.setTimeout = (fn, ms, ...args) => {
  const timer = realSetTimeout(fn, ms, ...args);
  if (ms >= 30_000) timer.unref?.();
  return timer;
};

// Each test gets its own server (its own port), so the client's per-URL
// caches (expired handles, recent up-to-dates) never leak between tests.
export async function startServer(t, opts = {}) {
  const srv = await createServer({ longPollMs: 1000, ...opts });
  t.after(() => srv.close());
  return srv;
}

export async function control(srv, method, p, body) {
  const res = await fetch(srv.url + '/_control' + p, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`${method} ${p} -> ${res.status}: ${JSON.stringify(json)}`);
  return json;
}

export const post = (srv, p, body = {}) => control(srv, 'POST', p, body);

export const ITEMS_COLUMNS = [
  { name: 'id', type: 'int4', not_null: true },
  { name: 'title', type: 'text' },
  { name: 'done', type: 'bool' },
  { name: 'n', type: 'int8' },
];

export function itemsTable(rows, extra = {}) {
  return { name: 'items', columns: ITEMS_COLUMNS, primary_key: ['id'], rows, ...extra };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function waitFor(fn, { timeout = 8000, interval = 20, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    await sleep(interval);
  }
}

// Runs the official client against the server. Records every message batch
// and error; `shape` materialises rows exactly as applications see them.
export function sync(t, srv, params, opts = {}) {
  const abort = new AbortController();
  const messages = [];
  const errors = [];
  const stream = new ShapeStream({
    url: srv.url + '/v1/shape',
    params,
    signal: abort.signal,
    warnOnHttp: false,
    backoffOptions: { initialDelay: 20, maxDelay: 200, multiplier: 2 },
    onError: (e) => {
      errors.push(e);
    },
    ...opts,
  });
  const shape = new Shape(stream);
  stream.subscribe(
    (batch) => messages.push(...batch),
    (e) => errors.push(e),
  );
  t.after(() => abort.abort());
  return { stream, shape, messages, errors, abort: () => abort.abort() };
}

// Rows by key, comparable regardless of order.
export const byId = (rows) => [...rows].sort((a, b) => (String(a.id) < String(b.id) ? -1 : String(a.id) > String(b.id) ? 1 : 0));

// JSON with BigInts (int8 columns parse to BigInt).
// Object keys are sorted, so column order does not matter.
export const stringify = (v) =>
  JSON.stringify(v, (_, x) => {
    if (typeof x === 'bigint') return `${x}n`;
    if (x && typeof x === 'object' && !Array.isArray(x)) return Object.fromEntries(Object.keys(x).sort().map((k) => [k, x[k]]));
    return x;
  });

// Waits until the shape's materialised rows deep-equal `expected` (by id).
export async function waitRows(shape, expected, assert, what = 'rows') {
  try {
    await waitFor(() => stringify(byId(shape.currentRows)) === stringify(byId(expected)) && shape.isUpToDate, { what });
  } catch {
    assert.deepStrictEqual(byId(shape.currentRows), byId(expected));
  }
}

export async function shapeGet(srv, query, headers = {}) {
  const res = await fetch(`${srv.url}/v1/shape?${new URLSearchParams(query)}`, { headers });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

// ---- throwaway Postgres for from_pg ----

// $PG_BIN, else pg_config's bindir, else Debian's location for Postgres 15.
function pgBin() {
  if (process.env.PG_BIN) return process.env.PG_BIN;
  const r = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' });
  const dir = r.status === 0 ? r.stdout.trim() : '';
  return dir && fs.existsSync(path.join(dir, 'initdb')) ? dir : '/usr/lib/postgresql/15/bin';
}

// Starts a private cluster (as user postgres when running as root, since
// Postgres refuses to run as root). Returns {conninfo, query(sql), stop()} or
// {skip: reason}; with REQUIRE_PG=1 (as in CI) a missing server is an error.
export async function startPostgres() {
  const r = await startPostgresOrSkip();
  if (r.skip && process.env.REQUIRE_PG === '1') throw new Error(r.skip);
  return r;
}

async function startPostgresOrSkip() {
  const PG_BIN = pgBin();
  if (!fs.existsSync(path.join(PG_BIN, 'initdb'))) return { skip: `no Postgres server binaries found (set PG_BIN); looked in ${PG_BIN}` };
  const asRoot = process.getuid?.() === 0;
  const run = (bin, args, opts = {}) => {
    const cmd = path.join(PG_BIN, bin);
    const r = asRoot
      ? spawnSync('runuser', ['-u', 'postgres', '--', cmd, ...args], { encoding: 'utf8', ...opts })
      : spawnSync(cmd, args, { encoding: 'utf8', ...opts });
    if (r.status !== 0) throw new Error(`${bin} failed: ${r.stderr || r.stdout || r.error}`);
    return r.stdout;
  };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgsync-pg-'));
  try {
    if (asRoot) execFileSync('chown', ['postgres:postgres', dir]);
    const data = path.join(dir, 'data');
    const port = 20000 + Math.floor(Math.random() * 20000);
    run('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C']);
    run('pg_ctl', ['-D', data, '-l', path.join(dir, 'log'), '-w', '-t', '30', '-o',
      `-c listen_addresses='' -c unix_socket_directories='${dir}' -p ${port} -c fsync=off`, 'start']);
    const conninfo = `host=${dir} port=${port} dbname=postgres user=postgres`;
    const query = (sql) => run('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', dir, '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-c', sql]);
    const stop = () => {
      try {
        run('pg_ctl', ['-D', data, '-m', 'immediate', 'stop']);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    };
    return { conninfo, query, stop };
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true });
    return { skip: `could not start a temporary Postgres: ${e.message}` };
  }
}
