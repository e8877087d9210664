// Programs written for @electric-sql/pglite-sync keep working: unsubscribe()
// may be left unawaited (also just before close(), or after it) and never
// rejects; the same key may be subscribed again right after it; params may
// be functions; onError gets the failures retrying will not fix, as the
// client's FetchError (status, url, json); electric.syncing reads 'false'
// outside a sync, as the seed sets it.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  newPGlite, startServer, post, shapeUrl, requests, sub, waitFor, assertSameRows,
  itemsTable, itemRows, ITEMS_DDL,
} from './helpers.mjs'

function options(srv, table, extra = {}) {
  const seen = { errors: [] }
  return {
    seen,
    opts: {
      shape: { url: shapeUrl(srv), params: { table } },
      table,
      primaryKey: ['id'],
      onError: (e) => seen.errors.push(e),
      ...extra,
    },
  }
}

// a server table of n items and a fresh PGlite with the same table
async function setup(t, table, n) {
  const srv = await startServer(t)
  await itemsTable(srv, table, itemRows(n))
  const pg = await newPGlite()
  t.after(() => pg.close())
  await pg.exec(ITEMS_DDL(table))
  return { srv, pg }
}

test('unsubscribe() unawaited before close(), and after it: no rejection', { timeout: 60_000 }, async (t) => {
  const srv = await startServer(t)
  await itemsTable(srv, 'u1', itemRows(5))
  const unhandled = []
  const onUnhandled = (e) => unhandled.push(e)
  process.on('unhandledRejection', onUnhandled)
  t.after(() => process.off('unhandledRejection', onUnhandled))
  const pg = await newPGlite()
  await pg.exec(ITEMS_DDL('u1'))
  const { opts, seen } = options(srv, 'u1')
  const h = await pg.electric.syncShapeToTable(opts)
  await waitFor(() => h.isUpToDate, { what: 'up to date' })
  const first = h.unsubscribe() // the seed's unsubscribe() returns nothing to await
  await pg.close()
  const late = h.unsubscribe()
  assert.equal(await first, undefined, 'the unawaited unsubscribe() resolves')
  assert.equal(await late, undefined, 'unsubscribe() after close() resolves')
  await new Promise((r) => setTimeout(r, 200))
  assert.deepEqual(unhandled.map((e) => e?.message ?? e), [], 'no unhandled rejection')
  assert.deepEqual(seen.errors.map((e) => e.message), [], 'and no onError')
})

test('the same shapeKey subscribed again right after an unawaited unsubscribe()', { timeout: 60_000 }, async (t) => {
  const { srv, pg } = await setup(t, 'u2', 6)
  const { opts } = options(srv, 'u2', { shapeKey: 'u2' })
  const h1 = await pg.electric.syncShapeToTable(opts)
  await waitFor(() => h1.isUpToDate, { what: 'first up to date' })
  h1.unsubscribe() // not awaited: a remount subscribes again at once
  const h2 = await pg.electric.syncShapeToTable(opts)
  await waitFor(() => h2.isUpToDate, { what: 'second up to date' })
  assert.equal((await sub(pg, 'u2')).state, 'live')
  await post(srv, '/tables/u2/txn', { ops: [{ op: 'insert', row: { id: 7, title: 'after the remount' } }] })
  await waitFor(async () => (await pg.query('SELECT count(*)::int AS n FROM u2')).rows[0].n === 7, { what: 'the live change' })
  await assertSameRows(pg, srv, 'u2')
  const log = await requests(srv, 'u2')
  assert.equal(log.filter((r) => r.query.offset === '-1').length, 1, 'resumed from the stored position, not from -1')
  await h2.unsubscribe()
})

test('params given as functions, sync or async, define the shape', { timeout: 60_000 }, async (t) => {
  const { srv, pg } = await setup(t, 'u3', 5)
  const { opts } = options(srv, 'u3')
  opts.shape.params.where = () => 'id <= $1'
  opts.shape.params.params = async () => ({ 1: '2' })
  const h = await pg.electric.syncShapeToTable(opts)
  await waitFor(() => h.isUpToDate, { what: 'up to date' })
  assert.deepEqual((await pg.query('SELECT id FROM u3 ORDER BY id')).rows.map((r) => r.id), [1, 2])
  const log = await requests(srv, 'u3')
  assert.equal(log[0].query.where, 'id <= $1', 'the resolved where was sent')
  await h.unsubscribe()
})

test('onError: a 401 as a FetchError (status, url, json); a 503 retried quietly', { timeout: 60_000 }, async (t) => {
  const srv = await startServer(t)
  await itemsTable(srv, 'u4', itemRows(3))
  await itemsTable(srv, 'u5', itemRows(3))
  const pg = await newPGlite()
  t.after(() => pg.close())
  await pg.exec(`${ITEMS_DDL('u4')}; ${ITEMS_DDL('u5')}`)
  await post(srv, '/faults', { kind: 'status', status: 401, body: { message: 'token expired' }, table: 'u4', count: 1 })
  await post(srv, '/faults', { kind: 'status', status: 503, table: 'u5', count: 2 })
  const a = options(srv, 'u4')
  const b = options(srv, 'u5')
  const ha = await pg.electric.syncShapeToTable(a.opts)
  const hb = await pg.electric.syncShapeToTable(b.opts)
  await waitFor(() => a.seen.errors.length === 1, { what: 'onError for the 401' })
  const e = a.seen.errors[0]
  assert.equal(e.name, 'FetchError')
  assert.equal(e.status, 401)
  assert.match(e.url, /\/v1\/shape\?/)
  assert.deepEqual(e.json, { message: 'token expired' })
  assert.match(e.message, /401/)
  await waitFor(() => hb.isUpToDate, { what: 'u5 up to date after two 503s' })
  assert.deepEqual(b.seen.errors, [], 'the 503s reached no onError')
  assert.match((await sub(pg, hb.name)).last_error ?? '', /503/, 'they are in the view')
  await ha.unsubscribe()
  await hb.unsubscribe()
})

test("electric.syncing reads 'false' outside a sync, 'true' inside", { timeout: 60_000 }, async (t) => {
  const srv = await startServer(t)
  await itemsTable(srv, 'u6', itemRows(2))
  const pg = await newPGlite()
  t.after(() => pg.close())
  await pg.electric.initMetadataTables()
  const outside = async () => (await pg.query("SELECT current_setting('electric.syncing') AS v")).rows[0].v
  assert.equal(await outside(), 'false', 'after initMetadataTables()')
  await pg.exec(`${ITEMS_DDL('u6')}; CREATE TABLE seen (v text);
    CREATE FUNCTION note() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN INSERT INTO seen VALUES (current_setting('electric.syncing')); RETURN NEW; END $$;
    CREATE TRIGGER note AFTER INSERT ON u6 FOR EACH ROW EXECUTE FUNCTION note();`)
  const { opts } = options(srv, 'u6')
  const h = await pg.electric.syncShapeToTable(opts)
  await waitFor(() => h.isUpToDate, { what: 'up to date' })
  await pg.exec("INSERT INTO u6 (id, title) VALUES (100, 'local')")
  assert.deepEqual((await pg.query('SELECT v FROM seen')).rows.map((r) => r.v), ['true', 'true', 'false'],
    'the trigger saw the two synced rows and the local one')
  assert.equal(await outside(), 'false', 'after a sync')
  await h.unsubscribe()
})

test('shape.onError answering {headers}: retried at once with them (a refreshed token)', { timeout: 60_000 }, async (t) => {
  const { srv, pg } = await setup(t, 'u7', 4)
  await post(srv, '/faults', { kind: 'status', status: 401, table: 'u7', count: 1 })
  const { opts, seen } = options(srv, 'u7')
  const hooked = []
  opts.shape.headers = { Authorization: 'Bearer old' }
  opts.shape.onError = (e) => {
    hooked.push(e.status)
    return { headers: { Authorization: 'Bearer new' } }
  }
  const t0 = Date.now()
  const h = await pg.electric.syncShapeToTable(opts)
  await waitFor(() => h.isUpToDate, { what: 'up to date after the refresh', timeout: 10_000 })
  assert.ok(Date.now() - t0 < 10_000, 'well before the backoff cap (32 s)')
  assert.deepEqual(hooked, [401], 'the shape\'s onError saw the 401 once')
  assert.deepEqual(seen.errors, [], 'recovered: the subscription\'s onError was not needed')
  const log = await requests(srv, 'u7')
  const tokens = log.map((r) => r.headers.authorization)
  assert.equal(tokens[0], 'Bearer old')
  assert.ok(tokens.length >= 2 && tokens.slice(1).every((v) => v === 'Bearer new'), `then the new token on every request (${tokens})`)
  await assertSameRows(pg, srv, 'u7')
  await h.unsubscribe()
})
