// How a response body reaches electric.ingest_response(): as a bytea
// parameter sent in binary format, the Uint8Array itself (no hex, no text,
// no /dev/blob), for any role: a superuser, a role that may not read server
// files from its first use, and one that became current by a SET ROLE after
// the extension's first use.  Every call is accepted and the table equals the
// server's, every row once.  (live.test.mjs sends invalid UTF-8 the same way:
// the engine refuses it as natively.)
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

const onlyBinary = (watch, table) => {
  const calls = watch.ingests.filter((i) => i.name === table)
  assert.ok(calls.length >= 5, `one call per page at least (${calls.length})`)
  assert.deepEqual([...new Set(calls.map((i) => i.via))], ['binary'], 'every body as its bytes')
  assert.ok(calls.every((i) => !i.failed), 'every call accepted')
}

test('a superuser hands bodies over as binary bytea', { timeout: 60_000 }, async (t) => {
  const srv = await startServer(t)
  const pg = await newPGlite()
  t.after(() => pg.close())
  const watch = instrument(pg)
  await pg.exec(ITEMS_DDL('b_super'))
  assert.deepEqual(await syncItems(t, pg, srv, 'b_super'), [])
  onlyBinary(watch, 'b_super')
})

test('a role without pg_read_server_files, from the first use: the same', { timeout: 60_000 }, async (t) => {
  const srv = await startServer(t)
  const pg = await newPGlite()
  t.after(() => pg.close())
  const watch = instrument(pg)
  await pg.exec(`CREATE EXTENSION pglite_sync; ${APP_ROLE}; ${ITEMS_DDL('b_app')}; ALTER TABLE b_app OWNER TO app; SET ROLE app`)
  assert.deepEqual(await syncItems(t, pg, srv, 'b_app'), [])
  onlyBinary(watch, 'b_app')
  assert.equal((await pg.query("SELECT owner::text AS o FROM electric.subscriptions WHERE name = 'b_app'")).rows[0].o, 'app')
})

test('a SET ROLE after the first use changes nothing: no call refused, nothing lost', { timeout: 60_000 }, async (t) => {
  const srv = await startServer(t)
  const pg = await newPGlite()
  t.after(() => pg.close())
  const watch = instrument(pg)
  await pg.electric.initMetadataTables() // first use as the superuser
  await pg.exec(`${APP_ROLE}; ${ITEMS_DDL('b_role')}; ALTER TABLE b_role OWNER TO app; SET ROLE app`)
  assert.deepEqual(await syncItems(t, pg, srv, 'b_role'), [], 'onError never called')
  onlyBinary(watch, 'b_role')
})
