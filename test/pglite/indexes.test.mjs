// A large snapshot into a table the sync has just emptied: in PGlite the
// direct loader writes index entries for the first 8,192 rows only, then
// rebuilds every index of the table once the rows are in
// (src/apply_direct.c).  Checked here: the indexes are rebuilt (new
// relfilenodes) only past that many rows; every index (primary key, unique,
// expression, partial) has exactly the table's rows and is what queries
// use; live changes after it find their rows; a must-refetch rebuilds them
// again over the deleted old rows; and a duplicate that only the rebuild
// can see still fails the batch, with nothing applied.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import {
  newPGlite, startServer, post, shapeUrl, sub, waitFor, assertSameRows, waitSameRows, shapesOf,
  itemsTable, itemRows, ITEMS_DDL, captureNotices,
} from './helpers.mjs'

const ROWS = 20_000 // past the 8,192 rows after which the indexes wait
const SMALL = 500

let pg, notices
before(async () => {
  pg = await newPGlite()
  notices = captureNotices(pg)
  await pg.electric.initMetadataTables()
  await pg.exec('SET pglite_sync.debug = on; SET client_min_messages = log')
})
after(async () => {
  await pg?.close()
})

// the items table with a unique, an expression and a partial index besides its key
const DDL = (t) => `${ITEMS_DDL(t)};
  CREATE UNIQUE INDEX ${t}_title ON ${t} (title);
  CREATE INDEX ${t}_lower ON ${t} (lower(title));
  CREATE INDEX ${t}_part ON ${t} (n) WHERE done`
const INDEXES = (t) => [`${t}_pkey`, `${t}_title`, `${t}_lower`, `${t}_part`]

const filenodes = async (t) => {
  const { rows } = await pg.query(
    'SELECT c.relname, pg_relation_filenode(c.oid) AS f FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = $1::regclass ORDER BY 1', [t])
  return Object.fromEntries(rows.map((r) => [r.relname, r.f]))
}

// counts through each index alone (no sequential or bitmap scans), with
// the plan checked to use that index
async function throughIndexes(t) {
  const queries = {
    [`${t}_pkey`]: `SELECT count(*)::int AS n FROM ${t} WHERE id > 0`,
    [`${t}_title`]: `SELECT count(*)::int AS n FROM ${t} WHERE title > ''`,
    [`${t}_lower`]: `SELECT count(*)::int AS n FROM ${t} WHERE lower(title) > ''`,
    [`${t}_part`]: `SELECT count(*)::int AS n FROM ${t} WHERE done AND n > 0`,
  }
  const out = {}
  await pg.transaction(async (tx) => {
    await tx.exec('SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off')
    for (const [index, q] of Object.entries(queries)) {
      const plan = (await tx.query(`EXPLAIN ${q}`)).rows.map((r) => r['QUERY PLAN']).join('\n')
      assert.match(plan, new RegExp(`Index (Only )?Scan using ${index} `), `${index} serves: ${plan}`)
      out[index] = (await tx.query(q)).rows[0].n
    }
  })
  // the same counts from the heap
  const { rows: [h] } = await pg.query(`SELECT count(*) FILTER (WHERE id > 0)::int AS a,
    count(*) FILTER (WHERE title > '')::int AS b, count(*) FILTER (WHERE lower(title) > '')::int AS c,
    count(*) FILTER (WHERE done AND n > 0)::int AS d FROM ${t}`)
  assert.deepEqual(Object.values(out), [h.a, h.b, h.c, h.d], `${t}: every index has the table's rows`)
  return out
}

async function subscribe(srv, table) {
  const errors = []
  const handle = await pg.electric.syncShapeToTable({
    shape: { url: shapeUrl(srv), params: { table } }, table, primaryKey: ['id'], shapeKey: table,
    initialInsertMethod: 'csv', onError: (e) => errors.push(e.message),
  })
  return { handle, errors }
}
const committed = (name) => notices.filter((m) => m.includes(`subscription "${name}": committed batch`))

test('a small snapshot keeps writing index entries: no rebuild', { timeout: 60_000 }, async (t) => {
  const srv = await startServer(t)
  await itemsTable(srv, 'small', itemRows(SMALL), { page_rows: 200 })
  await pg.exec(DDL('small'))
  const before = await filenodes('small')
  const s = await subscribe(srv, 'small')
  await waitFor(() => s.handle.isUpToDate, { what: 'small up to date' })
  await assertSameRows(pg, srv, 'small')
  assert.deepEqual(await filenodes('small'), before, 'the indexes are the ones created with the table')
  await throughIndexes('small')
  await s.handle.unsubscribe()
})

test('a large snapshot: indexes rebuilt once the rows are in, and right', { timeout: 120_000 }, async (t) => {
  const srv = await startServer(t)
  await itemsTable(srv, 'big', itemRows(ROWS), { page_rows: 6000 })
  await pg.exec(DDL('big'))
  const before = await filenodes('big')
  assert.deepEqual(Object.keys(before).sort(), INDEXES('big').sort())
  const s = await subscribe(srv, 'big')
  await waitFor(() => s.handle.isUpToDate, { what: 'big up to date', timeout: 90_000 })
  await assertSameRows(pg, srv, 'big')
  assert.match(committed('big')[0] ?? '', new RegExp(`${ROWS} rows written \\(${ROWS} by copy,.*table rows replaced$`),
    'one batch, by the direct loader')
  const after1 = await filenodes('big')
  for (const i of INDEXES('big')) assert.notEqual(after1[i], before[i], `${i} was rebuilt`)
  const counts = await throughIndexes('big')
  assert.equal(counts.big_pkey, ROWS)

  // live changes find their rows through the rebuilt key
  await post(srv, '/tables/big/txn', { ops: [
    { op: 'update', row: { id: 15000, title: 'changed 15000' } },
    { op: 'delete', row: { id: 19999 } },
    { op: 'insert', row: { id: 30000, title: 'new 30000', done: true, n: '7' } },
  ] })
  await waitSameRows(pg, srv, 'big')
  assert.deepEqual(await filenodes('big'), after1, 'live changes do not rebuild')
  assert.equal((await throughIndexes('big')).big_pkey, ROWS)

  // must-refetch: a new table of the same name, most keys and titles the
  // same as the rows the refetch deletes
  const v1 = await sub(pg, 'big')
  await itemsTable(srv, 'big', itemRows(ROWS + 100, 50), { page_rows: 6000 })
  await waitFor(async () => {
    const v = await sub(pg, 'big')
    return v.handle !== v1.handle && v.state === 'live' && v.is_up_to_date
  }, { what: 'big refetched', timeout: 90_000 })
  await waitSameRows(pg, srv, 'big')
  const [shape] = await shapesOf(srv, 'big')
  assert.equal((await sub(pg, 'big')).handle, shape.handle)
  const after2 = await filenodes('big')
  for (const i of INDEXES('big')) assert.notEqual(after2[i], after1[i], `${i} was rebuilt again`)
  assert.equal((await throughIndexes('big')).big_pkey, ROWS + 100)
  assert.deepEqual(s.errors, [])
  await s.handle.unsubscribe()
})

// REINDEX needs MAINTAIN on the table: a subscriber with only the four
// privileges a subscription needs keeps writing index entries, and the
// snapshot still goes in as one batch by the direct loader
test('a role that may not REINDEX the table: no rebuild, the same batch', { timeout: 120_000 }, async (t) => {
  const srv = await startServer(t)
  await itemsTable(srv, 'granted', itemRows(ROWS), { page_rows: 6000 })
  await pg.exec(`${DDL('granted')}; CREATE ROLE app NOLOGIN; GRANT pglite_sync_manager TO app;
    GRANT SELECT, INSERT, UPDATE, DELETE ON granted TO app`)
  const before = await filenodes('granted')
  await pg.exec('SET ROLE app')
  t.after(() => pg.exec('RESET ROLE'))
  const s = await subscribe(srv, 'granted')
  await waitFor(() => s.handle.isUpToDate, { what: 'granted up to date', timeout: 90_000 })
  await pg.exec('RESET ROLE')
  await assertSameRows(pg, srv, 'granted')
  assert.match(committed('granted')[0] ?? '', new RegExp(`${ROWS} rows written \\(${ROWS} by copy,`), 'one batch, by the direct loader')
  assert.equal((await sub(pg, 'granted')).owner, 'app')
  assert.deepEqual(await filenodes('granted'), before, 'the indexes are the ones created with the table')
  assert.equal((await throughIndexes('granted')).granted_pkey, ROWS)
  assert.deepEqual(s.errors, [])
  await s.handle.unsubscribe()
})

// the batch is retried row by row (src/hostdrive.c), which names the key
test('a duplicate only the rebuild can see: the batch fails whole and the error names the key', { timeout: 120_000 }, async (t) => {
  const srv = await startServer(t)
  const rows = itemRows(ROWS)
  rows[ROWS - 5].title = rows[2].title // past row 8,192: only the rebuild sees it
  await itemsTable(srv, 'dup', rows, { page_rows: 6000 })
  await pg.exec(DDL('dup'))
  const s = await subscribe(srv, 'dup')
  await waitFor(async () => (await sub(pg, 'dup'))?.state === 'error', { what: 'dup in error', timeout: 90_000 })
  const v = await sub(pg, 'dup')
  assert.match(v.last_error, new RegExp(`duplicate key value violates unique constraint "dup_title".*"public"\\."dup"/"${ROWS - 4}"`, 's'),
    'the retry row by row names the index and the key')
  assert.equal((await pg.query('SELECT count(*)::int AS n FROM dup')).rows[0].n, 0, 'nothing of it was applied')
  assert.equal(Number(v.rows_applied), 0)
  await s.handle.unsubscribe()
})
