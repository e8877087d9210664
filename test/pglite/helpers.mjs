// Shared helpers of the PGlite test layer: the pinned PGlite with the built
// extension (build/pglite/, written by `make pglite`), an in-process test
// server, its control API, and comparisons of local tables with the rows the
// server holds (text values, as Electric renders them).
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer } from '../server/server.js'

export const root = new URL('../../', import.meta.url)
export const out = new URL('build/pglite/', root)
assert.ok(existsSync(new URL('pglite_sync.tar.gz', out)), 'build/pglite/ is missing: run make pglite (or test/pglite/run)')

const { PGlite } = await import(new URL('pglite/node_modules/@electric-sql/pglite/dist/index.js', root))
const { electricSync } = await import(new URL('index.js', out))
export { PGlite, electricSync }

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

// A PGlite instance with the extension registered as pg.electric.
export async function newPGlite(opts = {}) {
  return PGlite.create({ ...opts, extensions: { electric: electricSync() } })
}

export function tempDir(prefix = 'pglite-sync-') {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) }
}

// One test server per test, so that request logs and faults never mix.
export async function startServer(t, opts = {}) {
  const srv = await createServer({ longPollMs: 1000, ...opts })
  t?.after(() => srv.close())
  return srv
}

export async function control(srv, method, p, body) {
  const res = await fetch(srv.url + '/_control' + p, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const json = await res.json()
  if (!res.ok) throw new Error(`${method} ${p} -> ${res.status}: ${JSON.stringify(json)}`)
  return json
}
export const post = (srv, p, body = {}) => control(srv, 'POST', p, body)
export const get = (srv, p) => control(srv, 'GET', p)

export const shapeUrl = (srv) => srv.url + '/v1/shape'
export const requests = (srv, table) => get(srv, `/requests${table ? `?table=${encodeURIComponent(table)}` : ''}`)
export const serverRows = (srv, table) => get(srv, `/tables/${encodeURIComponent(table)}/rows`)
export async function shapesOf(srv, table) {
  return (await get(srv, '/shapes')).filter((s) => s.table === (table.includes('.') ? table : `public.${table}`))
}
// the number of long-polls the server holds open for a table
export async function waiting(srv, table) {
  return (await shapesOf(srv, table)).reduce((n, s) => n + s.waiting, 0)
}

// Polls fn until it returns something truthy; on timeout fails naming what
// was awaited and the last value seen.
export async function waitFor(fn, { timeout = 20_000, interval = 25, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout
  let last
  for (;;) {
    try {
      last = await fn()
      if (last) return last
    } catch (e) {
      last = e
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeout} ms waiting for ${what}; last: ${last instanceof Error ? last.stack : JSON.stringify(last)}`)
    await sleep(interval)
  }
}

export async function sub(pg, name) {
  const { rows } = await pg.query('SELECT * FROM electric.subscriptions WHERE name = $1', [name])
  return rows[0]
}

// Electric's snapshot rendering: text output under pinned display settings,
// bpchar through concat() so that its padding is kept (test/server/pgload.js).
export const DISPLAY = `SET bytea_output = hex; SET DateStyle = 'ISO, DMY'; SET TimeZone = 'UTC';
  SET IntervalStyle = 'iso_8601'; SET extra_float_digits = 1;`
const qi = (s) => `"${s.replace(/"/g, '""')}"`

// The rows of a local table as {column: text|null}, every column, by the
// same rules as the server's values.
export async function localRows(pg, table, schema = 'public') {
  const { rows: cols } = await pg.query(
    `SELECT a.attname AS name, t.typname AS type FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
      WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
    [`${qi(schema)}.${qi(table)}`])
  const select = cols.map(({ name, type }) => type === 'bpchar'
    ? `CASE WHEN ${qi(name)} IS NULL THEN NULL ELSE concat(${qi(name)}, '') END AS ${qi(name)}`
    : `${qi(name)}::text AS ${qi(name)}`).join(', ')
  // in a transaction, so that the display settings stay local to this read
  // (pg may be a transaction already)
  const read = async (tx) => {
    for (const s of DISPLAY.split(';').map((x) => x.trim()).filter(Boolean)) await tx.exec(s.replace(/^SET /, 'SET LOCAL '))
    return (await tx.query(`SELECT ${select} FROM ${qi(schema)}.${qi(table)}`)).rows
  }
  return typeof pg.transaction === 'function' ? pg.transaction(read) : read(pg)
}

const keyOf = (row, pk) => pk.map((c) => row[c]).join('\u0001')

// Differences between local and server rows, value by value (at most `max`
// lines); [] when equal.  Only the columns of `columns` (default: the
// server's) are compared.
export function diffRows(local, server, pk = ['id'], { columns, max = 10 } = {}) {
  const diffs = []
  const lmap = new Map(local.map((r) => [keyOf(r, pk), r]))
  const smap = new Map(server.map((r) => [keyOf(r, pk), r]))
  if (lmap.size !== local.length) diffs.push(`duplicate keys locally: ${local.length} rows, ${lmap.size} keys`)
  for (const [k, s] of smap) {
    const l = lmap.get(k)
    if (!l) {
      diffs.push(`missing locally: ${JSON.stringify(s)}`)
      continue
    }
    for (const c of columns ?? Object.keys(s))
      if (l[c] !== s[c]) diffs.push(`key ${JSON.stringify(k)} column ${c}: local ${JSON.stringify(l[c])}, server ${JSON.stringify(s[c])}`)
  }
  for (const [k, l] of lmap) if (!smap.has(k)) diffs.push(`extra locally: ${JSON.stringify(l)}`)
  return diffs.slice(0, max)
}

export async function tableDiff(pg, srv, table, { local = table, schema, pk, columns } = {}) {
  return diffRows(await localRows(pg, local, schema), await serverRows(srv, table), pk, { columns })
}

// Asserts that the local table equals the server's table, value by value.
export async function assertSameRows(pg, srv, table, opts = {}) {
  const d = await tableDiff(pg, srv, table, opts)
  assert.deepEqual(d, [], `${opts.local ?? table} differs from the server's ${table}:\n${d.join('\n')}`)
}

// Waits until the local table equals the server's (then asserts it).
export async function waitSameRows(pg, srv, table, opts = {}) {
  let d
  try {
    await waitFor(async () => (d = await tableDiff(pg, srv, table, opts)).length === 0,
      { timeout: opts.timeout ?? 20_000, what: `${opts.local ?? table} to equal the server's ${table}` })
  } catch {
    assert.deepEqual(d, [], `${opts.local ?? table} never matched the server's ${table}:\n${d.join('\n')}`)
  }
}

// A fetchClient that records each request's URL before it goes out and may
// run a hook first (to add a fault for exactly that request, say).
export function recordingFetch(hook) {
  const seen = []
  const f = async (url, init) => {
    const u = new URL(url)
    const entry = { url: String(url), offset: u.searchParams.get('offset'), live: u.searchParams.get('live') === 'true', headers: init?.headers }
    seen.push(entry)
    if (hook) await hook(entry, seen)
    return fetch(url, init)
  }
  f.seen = seen
  return f
}

export const ITEMS_COLUMNS = [
  { name: 'id', type: 'int4', not_null: true },
  { name: 'title', type: 'text' },
  { name: 'done', type: 'bool' },
  { name: 'n', type: 'int8' },
]
export const ITEMS_DDL = (name) => `CREATE TABLE ${qi(name)} (id int4 PRIMARY KEY, title text, done bool, n int8)`

export function itemRows(count, start = 1) {
  return Array.from({ length: count }, (_, i) => {
    const id = start + i
    return { id: String(id), title: `item ${id}: "q", comma, \\ \t tab ${id % 7 === 0 ? '\n newline' : ''}`, done: id % 2 === 0, n: id % 5 === 0 ? null : String(id * 1000003) }
  })
}

export async function itemsTable(srv, name, rows, extra = {}) {
  return post(srv, '/tables', { name, columns: ITEMS_COLUMNS, primary_key: ['id'], rows, ...extra })
}

// Whether a query of the extension's fetch loop is its electric.ingest_response() call.
export const isIngest = (sql) => typeof sql === 'string' && sql.includes('electric.ingest_response(')

// Watches every pg.query on this instance, the extension's own calls
// included: `notices` collects the messages (NOTICE, and LOG with
// client_min_messages = log: with SET pglite_sync.debug = on, the engine's
// debug log), `ingests` every call of electric.ingest_response() with the
// subscription's name, how the body went in (`via`: 'binary' for a bytea
// parameter sent as its bytes, 'bytea' for one PGlite serializes as hex,
// 'blob' or 'text'), and its answer ({state, is_up_to_date, applied, wait_ms, error,
// shape}) or the SQLSTATE it failed with (`failed`), in order.
export function instrument(pg) {
  const notices = []
  const ingests = []
  const query = pg.query.bind(pg)
  pg.query = async (sql, params, opts) => {
    const ingest = isIngest(sql)
    const probe = new Uint8Array(1)
    const via = !ingest ? null : opts?.serializers?.[17]?.(probe) === probe ? 'binary'
      : sql.includes("'/dev/blob'") ? 'blob' : sql.includes('convert_to(') ? 'text' : 'bytea'
    let res
    try {
      res = await query(sql, params, {
        ...opts,
        onNotice: (n) => {
          notices.push(n.message)
          opts?.onNotice?.(n)
        },
      })
    } catch (e) {
      if (ingest) ingests.push({ name: params?.[0], via, failed: e?.code ?? String(e) })
      throw e
    }
    if (ingest && res.rows[0]?.r) ingests.push({ name: params?.[0], via, ...res.rows[0].r })
    return res
  }
  return { notices, ingests }
}
export const captureNotices = (pg) => instrument(pg).notices
