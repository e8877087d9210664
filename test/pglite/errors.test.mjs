// Errors of the JavaScript API: bad options are TypeErrors with a message
// naming the option, before anything reaches the database or the network;
// what only the database can tell (an unknown table, a primary key that is
// not the table's, ...) rejects with the Postgres error code and leaves no
// subscription behind; deleteSubscription of an unknown key resolves.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import {
  newPGlite, electricSync, startServer, shapeUrl, requests, sub, waitFor, itemsTable, itemRows, ITEMS_DDL,
  assertSameRows, waiting, sleep,
} from './helpers.mjs'

let pg, srv
before(async () => {
  srv = await startServer(null, { longPollMs: 20_000 })
  pg = await newPGlite()
  await itemsTable(srv, 'things', itemRows(5))
  await pg.exec(`${ITEMS_DDL('things')}; ${ITEMS_DDL('other')}`)
})
after(async () => {
  await pg?.close()
  await srv?.close()
})

const good = () => ({ shape: { url: shapeUrl(srv), params: { table: 'things' } }, table: 'things', primaryKey: ['id'], shapeKey: null })
const subscriptionCount = async () => (await pg.query('SELECT count(*)::int AS n FROM electric.subscriptions')).rows[0].n
const typeError = (re) => (e) => {
  assert.ok(e instanceof TypeError, `a TypeError, not ${e?.constructor?.name}: ${e?.message}`)
  assert.match(e.message, re)
  return true
}

const BAD_OPTIONS = [
  ['mapColumns as a function', { mapColumns: (m) => m.value }, /mapColumns must be an object \{localColumn: shapeColumn\}; a JavaScript function cannot run inside the database/],
  ['mapColumns as an array', { mapColumns: ['id'] }, /mapColumns must be an object/],
  ['no table', { table: undefined }, /syncShapeToTable: table is required/],
  ['an empty table name', { table: '' }, /table is required/],
  ['an unknown initialInsertMethod', { initialInsertMethod: 'bulk' }, /unknown initialInsertMethod "bulk"/],
  ['no shape', { shape: undefined }, /shape\.url is required/],
  ['no shape.url', { shape: { params: { table: 'things' } } }, /shape\.url is required/],
  ['no primaryKey', { primaryKey: undefined }, /primaryKey must be a non-empty array/],
  ['an empty primaryKey', { primaryKey: [] }, /primaryKey must be a non-empty array/],
  ['a primaryKey string', { primaryKey: 'id' }, /primaryKey must be a non-empty array/],
  ['onMustRefetch as a function', { onMustRefetch: async () => {} }, /onMustRefetch must name a SQL function/],
  ['a shapeKey that is not a string', { shapeKey: 42 }, /shapeKey must be a string or null/],
]

test('bad options of syncShapeToTable are TypeErrors naming the option; nothing reaches the server', async (t) => {
  await pg.electric.initMetadataTables()
  const n = await subscriptionCount()
  for (const [what, patch, re] of BAD_OPTIONS) {
    await t.test(what, async () => {
      await assert.rejects(pg.electric.syncShapeToTable({ ...good(), ...patch }), typeError(re))
    })
  }
  await assert.rejects(pg.electric.syncShapeToTable(), typeError(/syncShapeToTable needs an options object/))
  assert.equal(await subscriptionCount(), n, 'no subscription made')
  assert.deepEqual(await requests(srv), [], 'no request made')
})

test('bad options of syncShapesToTables and deleteSubscription are TypeErrors', async () => {
  const member = { shape: { url: shapeUrl(srv), params: { table: 'things' } }, table: 'things', primaryKey: ['id'] }
  await assert.rejects(pg.electric.syncShapesToTables({ key: 'g', shapes: {} }), typeError(/needs shapes: an object of at least one named shape/))
  await assert.rejects(pg.electric.syncShapesToTables({ key: 'g' }), typeError(/needs shapes/))
  await assert.rejects(pg.electric.syncShapesToTables({ key: 'g', shapes: { a: { ...member, mapColumns: () => ({}) } } }),
    typeError(/shape "a": mapColumns must be an object/))
  await assert.rejects(pg.electric.syncShapesToTables({ key: 'g', shapes: { a: { ...member, table: undefined } } }), typeError(/shape "a": table is required/))
  await assert.rejects(pg.electric.syncShapesToTables({ key: 'g', shapes: { a: member }, initialInsertMethod: 'fast' }),
    typeError(/unknown initialInsertMethod "fast"/))
  await assert.rejects(pg.electric.deleteSubscription(''), typeError(/deleteSubscription needs a subscription key/))
  await assert.rejects(pg.electric.deleteSubscription(), typeError(/deleteSubscription needs a subscription key/))
  assert.deepEqual(await requests(srv), [], 'no request made')
})

test('metadataSchema other than "electric" is refused at once, naming it', () => {
  assert.throws(() => electricSync({ metadataSchema: 'meta' }), /metadataSchema "meta" is not supported; the extension lives in schema "electric"/)
  assert.doesNotThrow(() => electricSync({ metadataSchema: 'electric' }))
  assert.doesNotThrow(() => electricSync())
})

test('metadataSchema other than "electric" is a TypeError, as every other bad option', {
}, () => {
  assert.throws(() => electricSync({ metadataSchema: 'meta' }), typeError(/metadataSchema "meta"/))
})

// [what, options patch, SQLSTATE, message]
const SQL_ERRORS = [
  ['an unknown table', { table: 'nope' }, '42P01', /relation "public\.nope" does not exist/],
  ['an unknown schema', { schema: 'nowhere' }, '42P01', /nowhere/],
  ['a primary key that is not the table\'s', { primaryKey: ['title'] }, '42P16', /title/],
  ['mapColumns naming an unknown column', { mapColumns: { id: 'id', nosuch: 'title' } }, '42703', /nosuch/],
  ['a URL that is not http(s)', { shape: { url: 'ftp://example.com/v1/shape', params: { table: 'things' } } }, '22023', /ftp/],
  ['a protocol parameter in params', { shape: { url: 'http://127.0.0.1:1/v1/shape', params: { table: 'things', offset: '0_0' } } }, '22023', /offset/],
  ['an onMustRefetch function that does not exist', { onMustRefetch: 'no_such_fn(text)' }, '42883', /no_such_fn/],
  // shapeKey '' means no persistence (as in the seed), not an error: only the table is
  ["shapeKey '' with an unknown table", { shapeKey: '', table: 'nope2' }, '42P01', /nope2/],
]

test('SQL-level errors reject with the Postgres error code and leave nothing running', async (t) => {
  const n = await subscriptionCount()
  for (const [what, patch, code, re] of SQL_ERRORS) {
    await t.test(what, async () => {
      await assert.rejects(pg.electric.syncShapeToTable({ ...good(), shapeKey: 'bad', ...patch }), (e) => {
        assert.equal(e.code, code, `${e.code}: ${e.message}`)
        assert.match(e.message, re)
        return true
      })
    })
  }
  assert.equal(await subscriptionCount(), n, 'no subscription left behind')
  assert.equal(await sub(pg, 'bad'), undefined)
  assert.deepEqual(await requests(srv), [], 'no request made')
})

test('a second subscription with a running key is 42710; the running one goes on', async () => {
  const h = await pg.electric.syncShapeToTable({ ...good(), shapeKey: 'things' })
  try {
    await waitFor(() => h.isUpToDate, { what: 'things up to date' })
    await assert.rejects(pg.electric.syncShapeToTable({ ...good(), shapeKey: 'things', table: 'other' }), (e) => {
      assert.equal(e.code, '42710', e.message)
      assert.match(e.message, /things/)
      return true
    })
    const v = await sub(pg, 'things')
    assert.equal(v.state, 'live', 'the running one is untouched')
    assert.equal(v.table_name, 'things')
    assert.equal(h.isUpToDate, true)
  } finally {
    await h.unsubscribe()
  }
})

test('deleteSubscription: an unknown key resolves; a running one stops and is forgotten, its rows stay', { timeout: 30_000 }, async () => {
  assert.equal(await pg.electric.deleteSubscription('never-existed'), undefined)
  await itemsTable(srv, 'dels', itemRows(4))
  await pg.exec(ITEMS_DDL('dels'))
  const h = await pg.electric.syncShapeToTable({ ...good(), shape: { url: shapeUrl(srv), params: { table: 'dels' } }, table: 'dels', shapeKey: 'del' })
  await waitFor(() => h.isUpToDate, { what: 'del up to date' })
  await waitFor(async () => (await waiting(srv, 'dels')) === 1, { what: 'a pending long-poll' })
  await pg.electric.deleteSubscription('del')
  assert.equal(await sub(pg, 'del'), undefined, 'gone from electric.subscriptions')
  await assertSameRows(pg, srv, 'dels')
  await waitFor(async () => (await requests(srv, 'dels')).some((r) => r.aborted), { what: 'the long-poll aborted' })
  const n = (await requests(srv, 'dels')).length
  await sleep(1000) // time for a loop that did not stop to ask again
  assert.equal((await requests(srv, 'dels')).length, n, 'no request after deleteSubscription')
  assert.equal(await pg.electric.deleteSubscription('del'), undefined, 'deleting it again resolves too')
  // unsubscribe() after delete: nothing left to stop, it resolves
  await h.unsubscribe()
})

test('initMetadataTables creates the extension and may be called again', async () => {
  await pg.electric.initMetadataTables()
  await pg.electric.initMetadataTables()
  const { rows } = await pg.query("SELECT extversion FROM pg_extension WHERE extname = 'pglite_sync'")
  assert.equal(rows.length, 1)
  const { rows: rel } = await pg.query("SELECT to_regclass('electric.subscriptions') IS NOT NULL AS ok")
  assert.equal(rel[0].ok, true)
})
