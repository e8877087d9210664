// Initial sync of a snapshot of many pages with every initialInsertMethod the
// seed accepts (insert, csv, json, its hidden alias useCopy, and the
// deprecated useCopy: true): the table equals the server's value by value,
// rows_applied counts the snapshot, onInitialSync runs exactly once, and
// isUpToDate turns true.  Then a live change reaches every table.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import {
  newPGlite, startServer, post, shapeUrl, requests, sub, waitFor, assertSameRows, waitSameRows,
  itemsTable, itemRows, ITEMS_DDL, captureNotices,
} from './helpers.mjs'

const ROWS = 95 // page_rows 10: ten snapshot pages
const VARIANTS = [
  { table: 'm_insert', opts: { initialInsertMethod: 'insert' }, method: 'insert', bulk: 0 },
  { table: 'm_default', opts: {}, method: 'insert', bulk: 0 },
  { table: 'm_csv', opts: { initialInsertMethod: 'csv' }, method: 'copy', bulk: ROWS },
  { table: 'm_json', opts: { initialInsertMethod: 'json' }, method: 'json', bulk: ROWS },
  { table: 'm_usecopy_alias', opts: { initialInsertMethod: 'useCopy' }, method: 'copy', bulk: ROWS },
  { table: 'm_usecopy_flag', opts: { useCopy: true }, method: 'copy', bulk: ROWS },
]

// "committed batch: ... rows written (N by <path>, ...)" of the engine's debug log
const committed = (name) => notices.filter((m) => m.includes(`subscription "${name}": committed batch`))
let notices

let pg, srv
const subs = {}
const initialSyncs = {}
const errors = {}
const warnings = []

before(async () => {
  srv = await startServer(null)
  pg = await newPGlite()
  notices = captureNotices(pg)
  await pg.electric.initMetadataTables()
  await pg.exec('SET pglite_sync.debug = on; SET client_min_messages = log')
  for (const v of VARIANTS) {
    await itemsTable(srv, v.table, itemRows(ROWS), { page_rows: 10 })
    await pg.exec(ITEMS_DDL(v.table))
  }
})
after(async () => {
  await pg?.close()
  await srv?.close()
})

test('every method loads a snapshot of ten pages', { timeout: 90_000 }, async (t) => {
  const warn = console.warn
  console.warn = (...a) => warnings.push(a.join(' '))
  try {
    for (const v of VARIANTS) {
      initialSyncs[v.table] = 0
      errors[v.table] = []
      subs[v.table] = await pg.electric.syncShapeToTable({
        shape: { url: shapeUrl(srv), params: { table: v.table } },
        table: v.table,
        primaryKey: ['id'],
        shapeKey: `k_${v.table}`,
        onInitialSync: () => initialSyncs[v.table]++,
        onError: (e) => errors[v.table].push(e.message),
        ...v.opts,
      })
      assert.equal(subs[v.table].name, `k_${v.table}`, 'the handle is named after the shapeKey')
      assert.equal(subs[v.table].isUpToDate, false, 'not up to date before the first response')
    }
  } finally {
    console.warn = warn
  }
  for (const v of VARIANTS) {
    await t.test(v.table, async () => {
      await waitFor(() => subs[v.table].isUpToDate, { what: `${v.table} up to date`, timeout: 60_000 })
      await assertSameRows(pg, srv, v.table)
      const s = await sub(pg, `k_${v.table}`)
      assert.equal(s.state, 'live')
      assert.equal(s.is_up_to_date, true)
      assert.equal(Number(s.rows_applied), ROWS, 'rows_applied counts every snapshot row once')
      assert.equal(s.initial_insert_method, v.method, 'the method the engine was given')
      assert.equal(s.last_error, null)
      assert.equal(initialSyncs[v.table], 1, 'onInitialSync called once')
      assert.deepEqual(errors[v.table], [], 'no onError')
      // the snapshot came in ten pages (offset -1 serves page 0, 0_k page
      // k+1), each asked for once, the last one up to date
      const log = (await requests(srv, v.table)).filter((r) => !r.live)
      const offsets = log.map((r) => r.query.offset)
      assert.deepEqual(offsets, ['-1', ...Array.from({ length: 9 }, (_, i) => `0_${i}`)], 'one request per page')
      assert.deepEqual(log.map((r) => r.up_to_date), [...Array(9).fill(false), true])
      assert.ok(log.every((r) => r.status === 200))
    })
  }
  assert.ok(warnings.some((w) => /useCopy is deprecated/.test(w)), `useCopy: true warns (${JSON.stringify(warnings)})`)
})

// the snapshot is one batch, replacing the table's rows, loaded by the
// method's own path (as the debug log says)
const batchRe = (bulk, method) =>
  new RegExp(`: ${ROWS} changes, ${ROWS} rows written \\(${bulk} by ${method}, 0 deletes already applied\\).*table rows replaced$`)
const firstBatch = (table) => {
  const first = committed(`k_${table}`)[0]
  assert.ok(first, `no committed batch logged for k_${table} (${notices.length} messages)`)
  return first
}
// csv: PGlite has no COPY FROM, the direct loader (src/apply_direct.c) serves it
for (const v of VARIANTS) {
  test(`${v.table}: the debug log shows one snapshot batch loaded by ${v.method}`, () => {
    assert.match(firstBatch(v.table), batchRe(v.bulk, v.method))
  })
}
test('useCopy (alias) and useCopy: true take the path of csv', () => {
  const path = (table) => firstBatch(table).match(/rows written \((\d+ by \w+)/)?.[1]
  assert.ok(path('m_csv'))
  assert.equal(path('m_usecopy_alias'), path('m_csv'))
  assert.equal(path('m_usecopy_flag'), path('m_csv'))
})

test('after the initial sync a live transaction reaches every table, and onInitialSync is not called again', { timeout: 60_000 }, async () => {
  for (const v of VARIANTS) {
    await post(srv, `/tables/${v.table}/txn`, { ops: [
      { op: 'insert', row: { id: 1000, title: 'live, "new"', done: true, n: '-9223372036854775808' } },
      { op: 'update', row: { id: 3, title: 'changed\nline' } },
      { op: 'delete', row: { id: 4 } },
    ] })
  }
  for (const v of VARIANTS) {
    await waitSameRows(pg, srv, v.table)
    const s = await sub(pg, `k_${v.table}`)
    assert.equal(Number(s.rows_applied), ROWS + 3, `${v.table}: three changes applied once each`)
    assert.equal(initialSyncs[v.table], 1, `${v.table}: onInitialSync still called once`)
    assert.equal(subs[v.table].isUpToDate, true)
    assert.deepEqual(errors[v.table], [])
  }
})
