// Resume with shapeKey across sessions of a persistent PGlite dataDir: the
// second session starts from the stored handle and offset (never from -1),
// gets the changes made while it was closed, and duplicates nothing.  An
// unkeyed subscription starts afresh instead, replacing its table's rows.
// PGlite 0.5.17 in Node takes a dataDir as a plain path or as file://<path>
// (both are its NodeFS); the two sessions use one form each.  A dataDir left
// by a crash in the middle of a snapshot keeps its spool, and the next
// session continues that snapshot.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { cpSync } from 'node:fs'
import {
  newPGlite, startServer, post, shapeUrl, requests, sub, waitFor, assertSameRows, waitSameRows,
  itemsTable, itemRows, ITEMS_DDL, tempDir, recordingFetch, instrument,
} from './helpers.mjs'

const tmp = tempDir()
after(() => tmp.remove())

test('a keyed subscription resumes in a new session from its stored position', { timeout: 120_000 }, async (t) => {
  const srv = await startServer(t)
  await itemsTable(srv, 'res', itemRows(30), { page_rows: 7 })
  await itemsTable(srv, 'res_unkeyed', itemRows(8))
  const opts = (table, shapeKey, seen) => ({
    shape: { url: shapeUrl(srv), params: { table } },
    table,
    primaryKey: ['id'],
    shapeKey,
    onInitialSync: () => seen.initialSyncs++,
    onError: (e) => seen.errors.push(e.message),
  })

  // ---- session 1
  const seen1 = { initialSyncs: 0, errors: [] }
  let pg = await newPGlite({ dataDir: tmp.dir })
  let stored
  try {
    await pg.exec(`${ITEMS_DDL('res')}; ${ITEMS_DDL('res_unkeyed')}`)
    const h = await pg.electric.syncShapeToTable(opts('res', 'res', seen1))
    const hu = await pg.electric.syncShapeToTable(opts('res_unkeyed', null, { initialSyncs: 0, errors: [] }))
    await waitFor(() => h.isUpToDate && hu.isUpToDate, { what: 'session 1 up to date' })
    await post(srv, '/tables/res/txn', { ops: [{ op: 'insert', row: { id: 31, title: 'session 1' } }] })
    await waitSameRows(pg, srv, 'res')
    await waitSameRows(pg, srv, 'res_unkeyed')
    stored = await sub(pg, 'res')
    assert.equal(Number(stored.rows_applied), 31)
    assert.deepEqual(seen1, { initialSyncs: 1, errors: [] })
    const log1 = (await requests(srv, 'res')).filter((r) => r.status === 200)
    assert.equal(stored.offset, log1[log1.length - 1].offset_out, 'the stored offset is the last response\'s')
  } finally {
    await pg.close() // with a long-poll pending: the loop is aborted, not unsubscribed
  }

  // ---- while closed
  await post(srv, '/tables/res/txn', { ops: [
    { op: 'insert', row: { id: 32, title: 'while closed' } },
    { op: 'update', row: { id: 2, title: 'updated while closed', done: false } },
    { op: 'delete', row: { id: 3 } },
  ] })
  await post(srv, '/tables/res_unkeyed/txn', { ops: [{ op: 'delete', row: { id: 1 } }, { op: 'insert', row: { id: 9, title: 'new' } }] })
  const before = (await requests(srv)).length

  // ---- session 2
  const seen2 = { initialSyncs: 0, errors: [] }
  pg = await newPGlite({ dataDir: `file://${tmp.dir}` })
  try {
    assert.equal((await pg.query('SELECT count(*)::int AS n FROM res')).rows[0].n, 31, 'the rows of session 1 are there')
    await pg.electric.initMetadataTables()
    const v = await sub(pg, 'res')
    assert.equal(v.state, 'stopped', 'nothing drives a subscription of an earlier session')
    assert.deepEqual([v.handle, v.offset, Number(v.rows_applied)], [stored.handle, stored.offset, 31], 'the stored position')

    const h = await pg.electric.syncShapeToTable(opts('res', 'res', seen2))
    await waitSameRows(pg, srv, 'res')
    await waitFor(() => h.isUpToDate, { what: 'session 2 up to date' })
    const session2 = (await requests(srv)).slice(before).filter((r) => r.query.table === 'res')
    assert.ok(session2.length > 0)
    assert.deepEqual([session2[0].query.handle, session2[0].query.offset], [stored.handle, stored.offset],
      'the first request of session 2 is at the stored handle and offset')
    assert.deepEqual(session2.filter((r) => r.query.offset === '-1'), [], 'no request from -1 in session 2')
    const w = await sub(pg, 'res')
    assert.equal(Number(w.rows_applied), 31 + 3, 'the three changes applied once')
    assert.equal(w.state, 'live')
    assert.deepEqual(seen2, { initialSyncs: 1, errors: [] }, 'onInitialSync once, also for a resume')

    // unkeyed: nothing to resume from, so it starts from -1 and replaces the rows
    const hu = await pg.electric.syncShapeToTable(opts('res_unkeyed', null, { initialSyncs: 0, errors: [] }))
    await waitFor(() => hu.isUpToDate, { what: 'unkeyed up to date' })
    await assertSameRows(pg, srv, 'res_unkeyed')
    const unkeyed = (await requests(srv)).slice(before).filter((r) => r.query.table === 'res_unkeyed')
    assert.equal(unkeyed[0].query.offset, '-1', 'the unkeyed subscription starts from -1')
    await h.unsubscribe()
    await hu.unsubscribe()
  } finally {
    await pg.close()
  }
})

// A dataDir made with an older bundle: the first use by a superuser updates
// the extension to the bundle's version (ALTER EXTENSION ... UPDATE), and a
// keyed subscription synced on the older version resumes from its stored
// position.  A role that may not update goes on with the older SQL.
test('a dataDir made at 0.3.0 is updated on first use; its subscription resumes', { timeout: 120_000 }, async (t) => {
  const dir = tempDir()
  t.after(() => dir.remove())
  const srv = await startServer(t)
  await itemsTable(srv, 'upd', itemRows(20), { page_rows: 6 })
  const version = async (pg) => (await pg.query("SELECT extversion AS v FROM pg_extension WHERE extname = 'pglite_sync'")).rows[0].v
  const errors = []
  const opts = {
    shape: { url: shapeUrl(srv), params: { table: 'upd' } },
    table: 'upd',
    primaryKey: ['id'],
    shapeKey: 'upd',
    onError: (e) => errors.push(e.message),
  }

  // ---- session 1: the older version, used by a role that may not update it
  let pg = await newPGlite({ dataDir: dir.dir })
  let stored
  try {
    await pg.exec(`CREATE EXTENSION pglite_sync VERSION '0.3.0'; CREATE ROLE app NOLOGIN; GRANT pglite_sync_manager TO app;
      ${ITEMS_DDL('upd')}; ALTER TABLE upd OWNER TO app; SET ROLE app`)
    const h = await pg.electric.syncShapeToTable(opts)
    await waitFor(() => h.isUpToDate, { what: 'session 1 up to date' })
    await assertSameRows(pg, srv, 'upd')
    assert.equal(await version(pg), '0.3.0', 'a role that is not a superuser leaves the version as it is')
    stored = await sub(pg, 'upd')
  } finally {
    await pg.close()
  }
  await post(srv, '/tables/upd/txn', { ops: [{ op: 'insert', row: { id: 21, title: 'while closed' } }, { op: 'delete', row: { id: 1 } }] })
  const before = (await requests(srv, 'upd')).length

  // ---- session 2: the default superuser
  pg = await newPGlite({ dataDir: dir.dir })
  try {
    assert.equal(await version(pg), '0.3.0', 'still 0.3.0 before the first use')
    const h = await pg.electric.syncShapeToTable(opts)
    const { rows: [latest] } = await pg.query("SELECT default_version AS v FROM pg_available_extensions WHERE name = 'pglite_sync'")
    assert.notEqual(latest.v, '0.3.0')
    assert.equal(await version(pg), latest.v, 'updated to the bundle\'s version on first use')
    await waitSameRows(pg, srv, 'upd')
    await waitFor(() => h.isUpToDate, { what: 'session 2 up to date' })
    const session2 = (await requests(srv, 'upd')).slice(before)
    assert.deepEqual([session2[0].query.handle, session2[0].query.offset], [stored.handle, stored.offset],
      'session 2 starts at the position stored on 0.3.0')
    assert.deepEqual(session2.filter((r) => r.query.offset === '-1'), [], 'no resync')
    const s = await sub(pg, 'upd')
    assert.equal(Number(s.rows_applied), 20 + 2, 'the two changes applied once')
    assert.deepEqual(errors, [])
    await h.unsubscribe()
  } finally {
    await pg.close()
  }
})

// PGlite that ends without close() (a killed process, a closed tab) leaves a
// crash image, and recovery empties unlogged tables.  In PGlite the spool
// is logged, so a snapshot caught in the middle continues in the next
// session.  Should its blocks be gone all the same, the engine notices and
// fetches the snapshot again from -1.
test('after a crash in the middle of a snapshot, the next session continues it', { timeout: 120_000 }, async (t) => {
  const dir = tempDir()
  const image = tempDir()
  const image2 = tempDir()
  t.after(() => { dir.remove(); image.remove(); image2.remove() })
  const srv = await startServer(t)
  await itemsTable(srv, 'crash', itemRows(40), { page_rows: 8 })
  const spooled = async (pg) => (await pg.query(`SELECT count(*)::int AS blocks,
      (SELECT ((st.stream->>'spool_end')::int8 - (st.stream->>'spool_base')::int8)::int4 FROM electric.shape_state st
         JOIN electric.subscription s ON s.id = st.subid WHERE s.name = 'crash') AS counted
    FROM electric.spool_block b JOIN electric.subscription s ON s.id = b.subid WHERE s.name = 'crash'`)).rows[0]
  const opts = (seen) => ({
    shape: { url: shapeUrl(srv), params: { table: 'crash' } },
    table: 'crash', primaryKey: ['id'], shapeKey: 'crash',
    onInitialSync: () => seen.initialSyncs++, onError: (e) => seen.errors.push(e.message),
  })

  // ---- session 1: the third page never arrives; the process "dies" meanwhile
  let release
  const gate = new Promise((r) => { release = r })
  const fetch1 = recordingFetch(async (e, seen) => { if (seen.length === 3) await gate })
  let pg = await newPGlite({ dataDir: dir.dir })
  let stored
  try {
    await pg.exec(ITEMS_DDL('crash'))
    await pg.electric.syncShapeToTable({ ...opts({ initialSyncs: 0, errors: [] }), shape: { url: shapeUrl(srv), params: { table: 'crash' }, fetchClient: fetch1 } })
    await waitFor(async () => fetch1.seen.length === 3 && (await spooled(pg)).blocks > 0, { what: 'pages spooled' })
    assert.equal((await pg.query('SELECT count(*)::int AS n FROM crash')).rows[0].n, 0, 'nothing applied yet')
    stored = await spooled(pg)
    assert.ok(stored.counted > 0, 'the stream counts the spooled blocks')
    assert.equal((await pg.query("SELECT relpersistence AS p FROM pg_class WHERE oid = 'electric.spool_block'::regclass")).rows[0].p,
      'p', 'in PGlite the spool is logged')
    // what a crash would leave on disk
    cpSync(dir.dir, image.dir, { recursive: true })
    cpSync(dir.dir, image2.dir, { recursive: true })
  } finally {
    release()
    await pg.close()
  }
  const spooledOffsets = fetch1.seen.slice(0, 2).map((e) => e.offset)

  // ---- session 2, on the crash image: the spool survived recovery
  let before = (await requests(srv, 'crash')).length
  pg = await newPGlite({ dataDir: image.dir })
  try {
    const { ingests } = instrument(pg)
    assert.deepEqual(await spooled(pg), stored, 'recovery kept the spooled blocks')
    const seen = { initialSyncs: 0, errors: [] }
    const h = await pg.electric.syncShapeToTable(opts(seen))
    await waitFor(() => h.isUpToDate, { what: 'session 2 up to date' })
    await assertSameRows(pg, srv, 'crash')
    const session2 = (await requests(srv, 'crash')).slice(before).filter((r) => r.status === 200)
    assert.deepEqual(session2.filter((r) => r.query.offset === '-1'), [], 'session 2 asks nothing from -1 again')
    assert.ok(!spooledOffsets.includes(session2[0].query.offset), `nor a page it had spooled (${spooledOffsets}): it continues at ${session2[0].query.offset}`)
    assert.deepEqual(ingests.filter((i) => i.applied > 0).map((i) => i.applied), [40], 'the 40 rows applied at once')
    assert.deepEqual(seen, { initialSyncs: 1, errors: [] })
    assert.deepEqual(await spooled(pg), { blocks: 0, counted: 0 }, 'nothing left spooled')
    await h.unsubscribe()
  } finally {
    await pg.close()
  }

  // ---- session 3, on the same image with the blocks gone: fetched again, whole
  before = (await requests(srv, 'crash')).length
  pg = await newPGlite({ dataDir: image2.dir })
  try {
    const { notices, ingests } = instrument(pg)
    await pg.exec('DELETE FROM electric.spool_block; SET client_min_messages = log')
    const seen = { initialSyncs: 0, errors: [] }
    const h = await pg.electric.syncShapeToTable(opts(seen))
    await waitFor(() => h.isUpToDate, { what: 'session 3 up to date' })
    await assertSameRows(pg, srv, 'crash')
    assert.ok(notices.some((n) => n.includes('subscription "crash" lost the responses it had spooled')), 'the engine says what it lost')
    const session3 = (await requests(srv, 'crash')).slice(before).filter((r) => r.status === 200)
    assert.equal(session3[0].query.offset, '-1', 'session 3 fetches the snapshot again from -1')
    assert.equal(session3.filter((r) => r.query.offset === '-1').length, 1, 'once')
    assert.deepEqual(ingests.filter((i) => i.applied > 0).map((i) => i.applied), [40], 'the 40 rows applied at once')
    assert.deepEqual(seen, { initialSyncs: 1, errors: [] })
    await h.unsubscribe()
  } finally {
    await pg.close()
  }
})
