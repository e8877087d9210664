// Live changes, must-refetch, unsubscribe and failures of the host-driven
// fetch loop, against the test server.  One PGlite instance for the file;
// each test has its own server and tables.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import {
  newPGlite, startServer, post, get, shapeUrl, requests, sub, waitFor, sleep, localRows, serverRows,
  assertSameRows, waitSameRows, itemsTable, itemRows, ITEMS_DDL, instrument, recordingFetch, shapesOf, waiting, isIngest,
} from './helpers.mjs'

let pg, watch
before(async () => {
  pg = await newPGlite()
  watch = instrument(pg)
})
after(async () => {
  await pg?.close()
})

// subscribes `table` (same name locally and on the server) with a key;
// returns the handle and what its callbacks saw
async function subscribe(srv, table, opts = {}) {
  const seen = { errors: [], initialSyncs: 0 }
  const { shape, ...rest } = opts
  const handle = await pg.electric.syncShapeToTable({
    shape: { url: shapeUrl(srv), params: { table }, ...shape },
    table,
    primaryKey: ['id'],
    shapeKey: table,
    onError: (e) => seen.errors.push(e),
    onInitialSync: () => seen.initialSyncs++,
    ...rest,
  })
  return { handle, seen }
}

const upToDate = (s, what) => waitFor(() => s.handle.isUpToDate, { what: `${what} up to date`, timeout: 30_000 })
const rowsApplied = async (name) => Number((await sub(pg, name)).rows_applied)
const ids = (rows) => rows.map((r) => Number(r.id)).sort((a, b) => a - b).join(',')

test('live inserts, updates, deletes and a key change after the initial sync', { timeout: 60_000 }, async (t) => {
  const srv = await startServer(t)
  await itemsTable(srv, 'live_items', itemRows(20), { page_rows: 5 })
  await pg.exec(ITEMS_DDL('live_items'))
  const s = await subscribe(srv, 'live_items')
  await upToDate(s, 'live_items')
  await assertSameRows(pg, srv, 'live_items')
  assert.equal(await rowsApplied('live_items'), 20)

  const steps = [
    ['two inserts', [{ op: 'insert', row: { id: 21, title: 'new, "one"', done: false, n: '1' } },
      { op: 'insert', row: { id: 22, title: null, done: null, n: null } }], 2],
    // partial updates: the other columns keep their values
    ['two partial updates', [{ op: 'update', row: { id: 5, title: 'only the title' } },
      { op: 'update', row: { id: 6, done: true, n: null } }], 2],
    ['two deletes', [{ op: 'delete', row: { id: 7 } }, { op: 'delete', row: { id: 8 } }], 2],
    // a primary key change: the shape sees a delete and an insert
    ['a key change', [{ op: 'update', row: { id: 9, title: 'moved' }, new_key: { id: 900 } }], 2],
  ]
  let applied = 20
  for (const [what, ops, n] of steps) {
    await post(srv, '/tables/live_items/txn', { ops })
    await waitSameRows(pg, srv, 'live_items')
    applied += n
    assert.equal(await rowsApplied('live_items'), applied, `${what}: rows_applied counts each row written once`)
  }
  const local = await localRows(pg, 'live_items')
  assert.equal(local.find((r) => r.id === '5').done, 'false', 'a partial update leaves the other columns')
  assert.equal(local.find((r) => r.id === '900').title, 'moved')
  assert.ok(!local.some((r) => ['7', '8', '9'].includes(r.id)))

  const v = await sub(pg, 'live_items')
  const [shape] = await shapesOf(srv, 'live_items')
  assert.equal(v.state, 'live')
  assert.equal(v.handle, shape.handle, 'the stored handle is the server\'s')
  assert.equal(v.offset, shape.last_offset, 'the stored offset is the end of the shape\'s log')
  assert.equal(s.seen.initialSyncs, 1)
  assert.deepEqual(s.seen.errors, [])
  await s.handle.unsubscribe()
})

// Reads the table over and over until `done()`: every read must be the old
// set or the new set of rows, never an empty, partial or doubled table.
function watchReads(table, allowed) {
  let stop = false
  const reads = []
  const loop = (async () => {
    while (!stop) {
      const { rows } = await pg.query(`SELECT id::text AS id FROM ${table}`)
      reads.push(ids(rows))
      await sleep(2)
    }
  })()
  return {
    reads,
    async done() {
      stop = true
      await loop
      const bad = [...new Set(reads.filter((r) => !allowed.includes(r)))]
      assert.deepEqual(bad, [], `a reader saw a table that was neither the old nor the new one (${reads.length} reads)`)
    },
  }
}

test('must-refetch after the shape is rotated replaces the table atomically', { timeout: 60_000 }, async (t) => {
  const srv = await startServer(t)
  await itemsTable(srv, 'rot', itemRows(30), { page_rows: 4 })
  await pg.exec(ITEMS_DDL('rot'))
  const s = await subscribe(srv, 'rot')
  await upToDate(s, 'rot')
  const before = await sub(pg, 'rot')
  const oldIds = ids(await serverRows(srv, 'rot'))

  // a new table of the same name: some rows gone, some new, some changed;
  // replacing a table rotates its shapes (their long-polls get a 409)
  const next = [...itemRows(25, 6).map((r) => ({ ...r, title: `v2 ${r.title}` })), ...itemRows(5, 100)]
  const reader = watchReads('rot', [oldIds, ids(next)])
  await itemsTable(srv, 'rot', next, { page_rows: 4 })
  await waitFor(async () => {
    const v = await sub(pg, 'rot')
    return v.handle !== before.handle && v.state === 'live' && v.is_up_to_date
  }, { what: 'a new handle, live again' })
  await waitSameRows(pg, srv, 'rot')
  await waitFor(() => reader.reads.includes(ids(next)), { what: 'the reader to see the new table' })
  await reader.done()
  assert.ok(reader.reads.includes(oldIds) && reader.reads.includes(ids(next)), 'the reader saw both tables')

  const v = await sub(pg, 'rot')
  const [shape] = await shapesOf(srv, 'rot')
  assert.equal(v.handle, shape.handle, 'the handle of the new shape')
  assert.equal(Number(v.rows_applied), 30 + 30, 'the new snapshot applied once')
  const log = await requests(srv, 'rot')
  const i409 = log.findIndex((r) => r.status === 409)
  assert.ok(i409 > 0, 'the server answered 409')
  assert.equal(log[i409 + 1].query.offset, '-1', 'then the client started over from -1')
  assert.equal(log[i409 + 1].query.handle, undefined)
  assert.deepEqual(s.seen.errors, [], 'a must-refetch is not an error')
  await s.handle.unsubscribe()
})

// PGlite runs no autovacuum: the blocks of each applied batch would stay in
// electric.spool_block as dead rows for good.  Its own instance, so that no
// other test's spool is in the table.
test('the spool gives its space back once a batch is applied, snapshot after snapshot', { timeout: 60_000 }, async (t) => {
  const srv = await startServer(t)
  const rows = (v) => itemRows(24).map((r) => ({ ...r, title: `${v} ${'x'.repeat(3000)} ${r.id}` }))
  await itemsTable(srv, 'space', rows('v1'), { page_rows: 4 })
  const db = await newPGlite()
  t.after(() => db.close())
  await db.exec(ITEMS_DDL('space'))
  const query = db.query.bind(db)
  const size = async () => Number((await query("SELECT pg_total_relation_size('electric.spool_block') AS s")).rows[0].s)
  let largest = 0
  db.query = async (sql, params, opts) => {
    const res = await query(sql, params, opts)
    if (isIngest(sql)) largest = Math.max(largest, await size())
    return res
  }
  const h = await db.electric.syncShapeToTable({
    shape: { url: shapeUrl(srv), params: { table: 'space' } }, table: 'space', primaryKey: ['id'], shapeKey: 'space',
  })
  await waitFor(() => h.isUpToDate, { what: 'up to date' })
  await assertSameRows(db, srv, 'space')
  const sizes = [await size()]
  const grown = [largest]
  for (const v of ['v2', 'v3']) {
    const { handle } = await sub(db, 'space')
    largest = 0
    await itemsTable(srv, 'space', rows(v), { page_rows: 4 }) // a new table rotates the shape: a 409, a new snapshot
    await waitFor(async () => {
      const s = await sub(db, 'space')
      return s.handle !== handle && s.is_up_to_date
    }, { what: `the ${v} snapshot` })
    await waitSameRows(db, srv, 'space')
    sizes.push(await size())
    grown.push(largest)
  }
  assert.ok(grown.every((g) => g > 5 * 4 * 3000), `each snapshot spooled its pages first (largest sizes ${grown})`)
  assert.deepEqual(sizes, [sizes[0], sizes[0], sizes[0]], 'and the table is back to the same size after each one')
  assert.ok(sizes[0] <= 32768, `that of an empty table (${sizes[0]} bytes)`)
  await h.unsubscribe()
})

// The spool is read back a block at a time: its blocks must not stay in
// memory until the apply ends.  They did, in SPI's procedure context, which
// every SPI call left current: PGlite's WASM memory (which never shrinks,
// so its size is the high-water mark) grew by the whole spool.
test('a snapshot larger than its pages is applied without holding its spool in memory', { timeout: 120_000 }, async (t) => {
  const srv = await startServer(t)
  const count = 12_000
  const width = 8000
  const rows = itemRows(count).map((r) => ({ ...r, title: `${r.id} ${'x'.repeat(width)}` }))
  await itemsTable(srv, 'wide', rows, { page_rows: 500 })
  const db = await newPGlite()
  t.after(() => db.close())
  await db.exec(ITEMS_DDL('wide'))
  await itemsTable(srv, 'warm', itemRows(600), { page_rows: 100 })
  await db.exec(ITEMS_DDL('warm'))
  // a first, small sync: what any sync allocates once is not counted
  const warm = await db.electric.syncShapeToTable({
    shape: { url: shapeUrl(srv), params: { table: 'warm' } }, table: 'warm', primaryKey: ['id'], shapeKey: 'warm',
  })
  await waitFor(() => warm.isUpToDate, { what: 'warm up to date' })
  await warm.unsubscribe()
  const wasm = () => db.Module.HEAPU8.buffer.byteLength
  const before = wasm()
  const h = await db.electric.syncShapeToTable({
    shape: { url: shapeUrl(srv), params: { table: 'wide' } }, table: 'wide', primaryKey: ['id'], shapeKey: 'wide',
  })
  await waitFor(() => h.isUpToDate, { what: 'wide up to date', timeout: 100_000 })
  const grown = wasm() - before
  await h.unsubscribe()
  const spooled = count * width
  const mb = (b) => `${(b / 1048576).toFixed(1)} MB`
  const got = (await db.query('SELECT count(*)::int AS n, sum(length(title))::int8 AS len FROM wide')).rows[0]
  assert.equal(got.n, count, 'every row arrived')
  assert.equal(Number(got.len), rows.reduce((n, r) => n + r.title.length, 0), 'whole')
  t.diagnostic(`WASM memory grew by ${mb(grown)} for a spool of ${mb(spooled)}`)
  assert.ok(grown < spooled / 3, `WASM memory grew by ${mb(grown)} for a spool of ${mb(spooled)}`)
})

test('a 409 (repeat_409 fault) with onMustRefetch: the SQL function clears, in the refetch transaction', { timeout: 60_000 }, async (t) => {
  const srv = await startServer(t)
  await itemsTable(srv, 'r409', itemRows(12), { page_rows: 5 })
  await pg.exec(`${ITEMS_DDL('r409')};
    CREATE TABLE refetch_calls (name text, syncing text, rows_before int);
    CREATE FUNCTION clear_r409(sub text) RETURNS void LANGUAGE sql AS $$
      INSERT INTO public.refetch_calls SELECT sub, current_setting('electric.syncing', true), count(*) FROM public.r409;
      DELETE FROM public.r409 WHERE id <> 0;
    $$;`)
  const s = await subscribe(srv, 'r409', { onMustRefetch: 'clear_r409(text)' })
  await upToDate(s, 'r409')
  const before = await sub(pg, 'r409')
  assert.equal(before.on_must_refetch, 'clear_r409(text)')
  const all = ids(await serverRows(srv, 'r409'))
  const reader = watchReads('r409', [all])
  await waitFor(async () => (await waiting(srv, 'r409')) === 1, { what: 'a pending long-poll' })
  await post(srv, '/faults', { kind: 'repeat_409', table: 'r409', count: 1 })
  // the pending long-poll ends with its timeout; the next request gets the 409
  await waitFor(async () => {
    const v = await sub(pg, 'r409')
    return v.handle !== before.handle && v.state === 'live' && v.is_up_to_date
  }, { what: 'a new handle, live again' })
  await reader.done()
  await assertSameRows(pg, srv, 'r409')
  const { rows: calls } = await pg.query('SELECT * FROM refetch_calls')
  // called for the first load from -1 too (design: every start from -1), then
  // for the refetch: with the subscription's name, inside the apply transaction
  assert.deepEqual(calls, [{ name: 'r409', syncing: 'true', rows_before: 0 }, { name: 'r409', syncing: 'true', rows_before: 12 }])
  const log = await requests(srv, 'r409')
  const f = log.findIndex((r) => r.fault === 'repeat_409')
  assert.equal(log[f].status, 409)
  assert.equal(log[f + 1].query.offset, '-1')
  assert.ok(log[f + 1].query['cache-buster'], 'with a cache buster')
  assert.equal((await sub(pg, 'r409')).handle, log[f].handle_out, 'the handle the 409 named')
  assert.equal(Number((await sub(pg, 'r409')).rows_applied), 24)
  await s.handle.unsubscribe()
})

test('unsubscribe() aborts the pending long-poll and stops the loop; the key resumes later', { timeout: 60_000 }, async (t) => {
  const srv = await startServer(t, { longPollMs: 20_000 })
  await itemsTable(srv, 'unsub', itemRows(10))
  await pg.exec(ITEMS_DDL('unsub'))
  const s = await subscribe(srv, 'unsub')
  await upToDate(s, 'unsub')
  await waitFor(async () => (await waiting(srv, 'unsub')) === 1, { what: 'the long-poll held by the server' })
  const stored = await sub(pg, 'unsub')

  const t0 = Date.now()
  await s.handle.unsubscribe()
  assert.ok(Date.now() - t0 < 5000, 'unsubscribe() does not wait for the long-poll (20 s)')
  const v = await sub(pg, 'unsub')
  assert.equal(v.state, 'stopped')
  assert.equal(v.handle, stored.handle, 'the position stays')
  assert.equal(v.offset, stored.offset)
  // the server saw the long-poll go away
  const log = await waitFor(async () => {
    const l = await requests(srv, 'unsub')
    return l.some((r) => r.aborted) && l
  }, { what: 'an aborted request in the log' })
  const last = log[log.length - 1]
  assert.deepEqual([last.live, last.status, last.aborted], [true, null, true], 'the last request: an aborted long-poll')
  assert.equal(await waiting(srv, 'unsub'), 0)

  // a change while stopped: no request brings it
  await post(srv, '/tables/unsub/txn', { ops: [{ op: 'insert', row: { id: 11, title: 'while stopped' } }] })
  await sleep(1500) // time for a loop that did not stop to ask again
  assert.equal((await requests(srv, 'unsub')).length, log.length, 'no request after unsubscribe()')
  assert.equal((await pg.query('SELECT count(*)::int AS n FROM unsub')).rows[0].n, 10, 'the rows stay, nothing new')

  // the same shapeKey resumes from the stored position
  const s2 = await subscribe(srv, 'unsub')
  await waitSameRows(pg, srv, 'unsub')
  const after = await requests(srv, 'unsub')
  const first = after[log.length]
  assert.equal(first.query.handle, stored.handle, 'resumed with the stored handle')
  assert.equal(first.query.offset, stored.offset, 'resumed at the stored offset')
  assert.ok(!after.slice(log.length).some((r) => r.query.offset === '-1'), 'no request from -1')
  assert.equal(await rowsApplied('unsub'), 11)
  await upToDate(s2, 'unsub again')
  assert.equal(s2.seen.initialSyncs, 1, 'onInitialSync of the resumed run')
  await s2.handle.unsubscribe()
})

test('aborting the shape\'s signal stops the subscription', { timeout: 30_000 }, async (t) => {
  const srv = await startServer(t, { longPollMs: 20_000 })
  await itemsTable(srv, 'sig', itemRows(3))
  await pg.exec(ITEMS_DDL('sig'))
  const ac = new AbortController()
  const s = await subscribe(srv, 'sig', { shape: { signal: ac.signal } })
  await upToDate(s, 'sig')
  await waitFor(async () => (await waiting(srv, 'sig')) === 1, { what: 'the long-poll held by the server' })
  ac.abort()
  await waitFor(async () => (await sub(pg, 'sig')).state === 'stopped', { what: 'state stopped' })
  await waitFor(async () => (await requests(srv, 'sig')).some((r) => r.aborted), { what: 'the aborted long-poll' })
  assert.equal(await waiting(srv, 'sig'), 0)
  assert.deepEqual(s.seen.errors, [], 'stopping is not an error')
})

test('a 503 with Retry-After: state backoff, retried quietly, then it heals; nothing applied twice', { timeout: 60_000 }, async (t) => {
  const srv = await startServer(t)
  await itemsTable(srv, 'e503', itemRows(10))
  await pg.exec(ITEMS_DDL('e503'))
  const s = await subscribe(srv, 'e503')
  await upToDate(s, 'e503')
  await waitFor(async () => (await waiting(srv, 'e503')) === 1, { what: 'a pending long-poll' })
  // the pending long-poll took no fault: the request after it gets the 503
  await post(srv, '/faults', { kind: 'status', status: 503, retry_after: 2, table: 'e503', count: 1 })
  await post(srv, '/tables/e503/txn', { ops: [{ op: 'insert', row: { id: 11, title: 'before the 503' } }] })
  await waitFor(async () => (await sub(pg, 'e503')).state === 'backoff', { what: 'state backoff' })
  const v = await sub(pg, 'e503')
  assert.match(v.last_error, /503/)
  assert.equal(s.seen.errors.length, 0, 'onError not called: retried quietly, as the official client does')
  // a change during the backoff arrives once it heals
  await post(srv, '/tables/e503/txn', { ops: [{ op: 'update', row: { id: 11, title: 'during the backoff' } }, { op: 'delete', row: { id: 1 } }] })
  await waitFor(async () => (await sub(pg, 'e503')).state === 'live', { what: 'live again' })
  await waitSameRows(pg, srv, 'e503')
  assert.equal(await rowsApplied('e503'), 10 + 1 + 2, 'every change applied once')
  const log = await requests(srv, 'e503')
  const f = log.findIndex((r) => r.fault === 'status')
  assert.equal(log[f].status, 503)
  assert.equal(log[f + 1].query.offset, log[f].query.offset, 'the same request again')
  assert.ok(log[f + 1].t - (log[f].t + log[f].ms) >= 1900, `Retry-After: 2 respected (${log[f + 1].t - log[f].t - log[f].ms} ms)`)
  assert.equal(s.seen.errors.length, 0)
  await s.handle.unsubscribe()
})

// a fetchClient that adds a reset_mid_body fault for exactly the request the
// predicate picks (once)
function resetOnce(srv, table, pick) {
  let armed = true
  const f = recordingFetch(async (req) => {
    if (armed && pick(req)) {
      armed = false
      await post(srv, '/faults', { kind: 'reset_mid_body', table, count: 1 })
      f.fired = req
    }
  })
  return f
}

test('a reset mid-body in the snapshot: backoff, then the snapshot resumes; nothing applied twice', { timeout: 60_000 }, async (t) => {
  const srv = await startServer(t)
  await itemsTable(srv, 'reset_snap', itemRows(40), { page_rows: 10 })
  await pg.exec(ITEMS_DDL('reset_snap'))
  const fetchClient = resetOnce(srv, 'reset_snap', (r) => r.offset === '0_1')
  const n0 = watch.ingests.length
  const s = await subscribe(srv, 'reset_snap', { shape: { fetchClient } })
  await upToDate(s, 'reset_snap')
  await assertSameRows(pg, srv, 'reset_snap')
  assert.equal(await rowsApplied('reset_snap'), 40, 'every snapshot row once')
  const log = await requests(srv, 'reset_snap')
  assert.deepEqual(log.map((r) => [r.query.offset, r.fault]),
    [['-1', null], ['0_0', null], ['0_1', 'reset_mid_body'], ['0_1', null], ['0_2', null], ...log.slice(5).map((r) => [r.query.offset, null])],
    'page 3 cut, then asked for again')
  const answers = watch.ingests.slice(n0).filter((i) => i.name === 'reset_snap')
  assert.deepEqual(answers.slice(0, 4).map((a) => a.state), ['initial_sync', 'initial_sync', 'backoff', 'initial_sync'],
    'the cut response puts the subscription in backoff')
  assert.ok(answers[2].error, 'with an error')
  assert.equal(s.seen.errors.length, 0, 'onError not called for a retryable failure')
  assert.equal(s.seen.initialSyncs, 1)
  assert.ok((await sub(pg, 'reset_snap')).last_error)
  await s.handle.unsubscribe()
})

test('a reset mid-body of a live transaction: applied once after the retry', { timeout: 60_000 }, async (t) => {
  const srv = await startServer(t)
  await itemsTable(srv, 'reset_live', itemRows(10))
  await pg.exec(ITEMS_DDL('reset_live'))
  let arm = false
  const fetchClient = resetOnce(srv, 'reset_live', (r) => r.live && arm)
  const s = await subscribe(srv, 'reset_live', { shape: { fetchClient } })
  await upToDate(s, 'reset_live')
  arm = true
  // the pending long-poll (no fault) ends with its timeout; the next one is cut
  await waitFor(async () => fetchClient.fired && (await get(srv, '/faults')).length === 0 && (await waiting(srv, 'reset_live')) === 1,
    { what: 'a pending long-poll that took the fault' })
  await post(srv, '/tables/reset_live/txn', { ops: [
    { op: 'insert', row: { id: 11, title: 'x'.repeat(200) } },
    { op: 'update', row: { id: 2, title: 'changed' } },
    { op: 'delete', row: { id: 3 } },
  ] })
  await waitSameRows(pg, srv, 'reset_live')
  assert.equal(await rowsApplied('reset_live'), 13, 'the transaction applied once')
  const log = await requests(srv, 'reset_live')
  const f = log.findIndex((r) => r.fault === 'reset_mid_body')
  assert.ok(f > 0)
  assert.equal(log[f].status, 200, 'the cut response was a 200 with the transaction')
  assert.equal(log[f + 1].query.offset, log[f].query.offset, 'asked for again')
  assert.equal(s.seen.errors.length, 0, 'onError not called for a retryable failure')
  await waitFor(async () => (await sub(pg, 'reset_live')).state === 'live', { what: 'live again' })
  await s.handle.unsubscribe()
})

test('a network error is recorded as one, not as an HTTP status, and retried quietly', {
  timeout: 30_000,
}, async (t) => {
  const srv = await startServer(t)
  await itemsTable(srv, 'neterr', itemRows(5))
  await pg.exec(ITEMS_DDL('neterr'))
  await post(srv, '/faults', { kind: 'reset_mid_body', table: 'neterr', count: 1 })
  const s = await subscribe(srv, 'neterr')
  await upToDate(s, 'neterr')
  try {
    assert.equal(s.seen.errors.length, 0, 'onError not called for a retryable failure')
    const last = (await sub(pg, 'neterr')).last_error
    assert.doesNotMatch(last, /answered 0/, `last_error: ${last}`)
    assert.match(last, /network|reset|terminated|socket|connection|request failed/i, `last_error: ${last}`)
  } finally {
    await s.handle.unsubscribe()
  }
})

test('user code run by the apply (a trigger, onMustRefetch) sees the session\'s search_path', {
  timeout: 30_000,
}, async (t) => {
  const srv = await startServer(t)
  await itemsTable(srv, 'trg', itemRows(3))
  await itemsTable(srv, 'trg_refetch', itemRows(2))
  // unqualified names, as in test/t/001_sync.pl and 009_shared_table.pl, where a worker runs them
  await pg.exec(`${ITEMS_DDL('trg')}; ${ITEMS_DDL('trg_refetch')};
    CREATE TABLE trg_audit (id int, op text, syncing text);
    CREATE FUNCTION trg_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
      INSERT INTO trg_audit VALUES (coalesce(NEW.id, OLD.id), TG_OP, current_setting('electric.syncing', true));
      RETURN NULL;
    END $$;
    CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON trg FOR EACH ROW EXECUTE FUNCTION trg_audit();
    CREATE FUNCTION trg_clear(sub text) RETURNS void LANGUAGE plpgsql AS $$ BEGIN
      INSERT INTO trg_audit VALUES (0, 'refetch ' || sub, current_setting('electric.syncing', true));
      DELETE FROM trg_refetch;
    END $$;`)
  const s = await subscribe(srv, 'trg')
  const s2 = await subscribe(srv, 'trg_refetch', { onMustRefetch: 'trg_clear(text)' })
  try {
    const settled = async (name, h) => h.isUpToDate || (await sub(pg, name)).state === 'error'
    await waitFor(async () => (await settled('trg', s.handle)) && (await settled('trg_refetch', s2.handle)), { what: 'up to date or error' })
    for (const name of ['trg', 'trg_refetch']) {
      const v = await sub(pg, name)
      assert.deepEqual([v.state, v.last_error], ['live', null], name)
    }
    const { rows } = await pg.query('SELECT id, op, syncing FROM trg_audit ORDER BY id')
    assert.deepEqual(rows, [{ id: 0, op: 'refetch trg_refetch', syncing: 'true' }, ...[1, 2, 3].map((id) => ({ id, op: 'INSERT', syncing: 'true' }))])
  } finally {
    await s.handle.unsubscribe()
    await s2.handle.unsubscribe()
  }
})

// Each bad answer of the fault table, in the middle of a snapshot of four
// pages: the engine refuses it whole (retryable), the loop backs off and asks
// for the same page again, and the table ends equal to the server's.
for (const kind of ['truncate_json', 'malformed_message', 'bad_utf8', 'missing_headers', 'wrong_content_type']) {
  test(`a bad answer (${kind}) mid-snapshot: refused, retried, nothing applied twice`, { timeout: 60_000 }, async (t) => {
    const srv = await startServer(t)
    const table = `bad_${kind}`
    await itemsTable(srv, table, itemRows(16), { page_rows: 4 })
    await pg.exec(ITEMS_DDL(table))
    let armed = true
    const fetchClient = recordingFetch(async (req) => {
      if (armed && req.offset === '0_1') {
        armed = false
        await post(srv, '/faults', { kind, table, count: 1 })
      }
    })
    const n0 = watch.ingests.length
    const s = await subscribe(srv, table, { shape: { fetchClient } })
    await upToDate(s, table)
    await assertSameRows(pg, srv, table)
    assert.equal(await rowsApplied(table), 16)
    const log = await requests(srv, table)
    const f = log.findIndex((r) => r.fault === kind)
    assert.equal(log[f].query.offset, '0_1')
    // a bad answer that still has the page's headers makes the loop guess the
    // next page (aborted, never ingested: ahead.test.mjs); the engine's own
    // next request is the same page again
    const g = log[f + 1].query.offset === '0_2' ? f + 2 : f + 1
    assert.equal(log[g].query.offset, '0_1', 'the same page asked for again')
    const answers = watch.ingests.slice(n0).filter((i) => i.name === table)
    const bad = answers.find((a) => a.error)
    assert.ok(bad, 'the bad answer was refused with an error')
    assert.equal(bad.state, 'backoff', `retryable: ${bad.error}`)
    assert.equal(bad.applied, 0)
    assert.equal(s.seen.errors.length, 0, 'onError not called for a retryable failure')
    await s.handle.unsubscribe()
  })
}

test('static and function headers reach every request; the view keeps only the static ones', { timeout: 30_000 }, async (t) => {
  const srv = await startServer(t)
  await itemsTable(srv, 'hdr', itemRows(6), { page_rows: 2 })
  await pg.exec(ITEMS_DDL('hdr'))
  let n = 0
  const s = await subscribe(srv, 'hdr', { shape: { headers: { authorization: 'Bearer static', 'x-request': () => `r${++n}` } } })
  await upToDate(s, 'hdr')
  await post(srv, '/tables/hdr/txn', { ops: [{ op: 'insert', row: { id: 7 } }] })
  await waitSameRows(pg, srv, 'hdr')
  const log = await requests(srv, 'hdr')
  assert.ok(log.length >= 4)
  assert.ok(log.every((r) => r.headers.authorization === 'Bearer static'), 'the static header on every request')
  assert.deepEqual(log.map((r) => r.headers['x-request']), log.map((_, i) => `r${i + 1}`), 'the function called for each request')
  assert.deepEqual((await sub(pg, 'hdr')).shape_headers, { authorization: 'Bearer static' })
  await s.handle.unsubscribe()
})
