// How a response body reaches electric.ingest_response(): as the query's
// blob (read with pg_read_binary_file('/dev/blob')) when the role may read
// server files, as text otherwise, and as text from the next call on when
// the role lost that right after the check (a SET ROLE): the refused call
// ingested nothing, so the table still equals the server's, every row once.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { newPGlite, startServer, shapeUrl, sub, waitFor, assertSameRows, itemsTable, itemRows, ITEMS_DDL, instrument } from './helpers.mjs'

const ROWS = 45 // page_rows 10: five snapshot pages

async function syncItems(t, pg, srv, table) {
  await itemsTable(srv, table, itemRows(ROWS), { page_rows: 10 })
  const errors = []
  const s = await pg.electric.syncShapeToTable({
    shape: { url: shapeUrl(srv), params: { table } },
    table,
    primaryKey: ['id'],
    shapeKey: table,
    initialInsertMethod: 'csv',
    onError: (e) => errors.push(e.message),
  })
  await waitFor(() => s.isUpToDate, { what: `${table} up to date`, timeout: 30_000 })
  await assertSameRows(pg, srv, table)
  const st = await sub(pg, table)
  assert.equal(Number(st.rows_applied), ROWS, 'every snapshot row once')
  assert.equal(st.last_error, null)
  await s.unsubscribe()
  return errors
}

// the role of an application: manages subscriptions, owns its table, and may
// not read server files
const APP_ROLE = `CREATE ROLE app NOLOGIN; GRANT pglite_sync_manager TO app`

test('a superuser hands bodies over as the query blob', { timeout: 60_000 }, async (t) => {
  const srv = await startServer(t)
  const pg = await newPGlite()
  t.after(() => pg.close())
  const watch = instrument(pg)
  await pg.exec(ITEMS_DDL('b_blob'))
  assert.deepEqual(await syncItems(t, pg, srv, 'b_blob'), [])
  const calls = watch.ingests.filter((i) => i.name === 'b_blob')
  assert.ok(calls.length >= 5, `one call per page at least (${calls.length})`)
  assert.deepEqual([...new Set(calls.map((i) => i.via))], ['blob'], 'every body as the blob')
})

test('a role without pg_read_server_files hands bodies over as text', { timeout: 60_000 }, async (t) => {
  const srv = await startServer(t)
  const pg = await newPGlite()
  t.after(() => pg.close())
  const watch = instrument(pg)
  // the extension exists; the first use (and its check) is as the role
  await pg.exec(`CREATE EXTENSION pglite_sync; ${APP_ROLE}; ${ITEMS_DDL('b_text')}; ALTER TABLE b_text OWNER TO app; SET ROLE app`)
  assert.deepEqual(await syncItems(t, pg, srv, 'b_text'), [])
  const calls = watch.ingests.filter((i) => i.name === 'b_text')
  assert.ok(calls.length >= 5, `one call per page at least (${calls.length})`)
  assert.deepEqual([...new Set(calls.map((i) => i.via))], ['text'], 'every body as text, none tried as the blob')
  assert.equal((await pg.query("SELECT owner::text AS o FROM electric.subscriptions WHERE name = 'b_text'")).rows[0].o, 'app')
})

test('after a SET ROLE that loses the right, the refused blob is sent again as text; nothing lost', { timeout: 60_000 }, async (t) => {
  const srv = await startServer(t)
  const pg = await newPGlite()
  t.after(() => pg.close())
  const watch = instrument(pg)
  await pg.electric.initMetadataTables() // checked as the superuser: blobs
  await pg.exec(`${APP_ROLE}; ${ITEMS_DDL('b_lost')}; ALTER TABLE b_lost OWNER TO app; SET ROLE app`)
  assert.deepEqual(await syncItems(t, pg, srv, 'b_lost'), [], 'onError never called')
  const calls = watch.ingests.filter((i) => i.name === 'b_lost')
  assert.deepEqual(calls[0], { name: 'b_lost', via: 'blob', failed: '42501' }, 'the first body was refused as the blob')
  assert.deepEqual([...new Set(calls.slice(1).map((i) => i.via))], ['text'], 'that body and every later one as text')
  assert.ok(calls.slice(1).every((i) => !i.failed), 'and accepted')
})
