// The next page of a snapshot is requested while PGlite ingests the current
// one (the fetch loop guesses the engine's next request from the page's
// headers), and that response is ingested only when next_request() then asks
// for exactly it: a guess the engine does not take is aborted, never
// ingested.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  newPGlite, startServer, post, shapeUrl, requests, sub, waitFor, assertSameRows, recordingFetch,
  itemsTable, itemRows, ITEMS_DDL, isIngest,
} from './helpers.mjs'

// The order of requests and ingest calls, and the status of each ingested
// response.
function trace(pg) {
  const events = []
  const ingested = []
  const query = pg.query.bind(pg)
  pg.query = async (sql, params, opts) => {
    if (!isIngest(sql)) return query(sql, params, opts)
    events.push('ingest')
    try {
      return await query(sql, params, opts)
    } finally {
      events.push('ingested')
      ingested.push({ status: params[1] })
    }
  }
  return { events, ingested }
}

async function subscribe(pg, srv, table, fetchClient) {
  await pg.exec(ITEMS_DDL(table))
  const errors = []
  const s = await pg.electric.syncShapeToTable({
    shape: { url: shapeUrl(srv), params: { table }, fetchClient },
    table,
    primaryKey: ['id'],
    shapeKey: table,
    onError: (e) => errors.push(e.message),
  })
  return { s, errors }
}

test('each snapshot page is requested while the previous one is ingested, and only once', { timeout: 60_000 }, async (t) => {
  const srv = await startServer(t)
  const pg = await newPGlite()
  t.after(() => pg.close())
  await itemsTable(srv, 'ahead', itemRows(45), { page_rows: 10 }) // five pages, the last up to date
  const { events } = trace(pg)
  const fetchClient = recordingFetch((r) => events.push(`GET ${r.offset}${r.live ? ' live' : ''}`))
  const { s, errors } = await subscribe(pg, srv, 'ahead', fetchClient)
  await waitFor(() => s.isUpToDate, { what: 'ahead up to date' })
  await assertSameRows(pg, srv, 'ahead')
  assert.equal(Number((await sub(pg, 'ahead')).rows_applied), 45)
  const live = events.findIndex((e) => e.endsWith(' live'))
  assert.deepEqual(events.slice(0, live), [
    'GET -1', 'GET 0_0', 'ingest', 'ingested', 'GET 0_1', 'ingest', 'ingested', 'GET 0_2', 'ingest', 'ingested',
    'GET 0_3', 'ingest', 'ingested', 'ingest', 'ingested',
  ], 'the next page goes out before the current one is ingested; nothing is guessed after the up-to-date')
  const snapshot = (await requests(srv, 'ahead')).filter((r) => r.query.live !== 'true').map((r) => r.query.offset)
  assert.deepEqual(snapshot, ['-1', '0_0', '0_1', '0_2', '0_3'], 'every page asked for once')
  assert.deepEqual(errors, [])
  await s.unsubscribe()
})

test('a guess the engine does not take is aborted and never ingested', { timeout: 60_000 }, async (t) => {
  const srv = await startServer(t)
  const pg = await newPGlite()
  t.after(() => pg.close())
  await itemsTable(srv, 'guess', itemRows(45), { page_rows: 10 })
  const { events, ingested } = trace(pg)
  // the answer to the third page says must-refetch, in a 200 with the page's
  // headers: the loop guesses the fourth page, the engine asks for -1 instead
  let armed = true
  const fetchClient = recordingFetch(async (r) => {
    events.push(`GET ${r.offset}${r.live ? ' live' : ''}`)
    if (armed && r.offset === '0_1') {
      armed = false
      await post(srv, '/faults', { kind: 'must_refetch_in_body', table: 'guess', count: 1 })
    }
  })
  const { s, errors } = await subscribe(pg, srv, 'guess', fetchClient)
  await waitFor(() => s.isUpToDate, { what: 'guess up to date' })
  await assertSameRows(pg, srv, 'guess')
  assert.deepEqual(errors, [])
  const third = events.findIndex((e, i) => e === 'ingested' && events.slice(0, i + 1).filter((x) => x === 'ingested').length === 3)
  assert.deepEqual(events.slice(0, third + 1), [
    'GET -1', 'GET 0_0', 'ingest', 'ingested', 'GET 0_1', 'ingest', 'ingested', 'GET 0_2', 'ingest', 'ingested',
  ], 'the fourth page was guessed while the third, with the must-refetch, was ingested')
  const next = events.indexOf('ingest', third)
  assert.deepEqual(events.slice(third + 1, next), ['GET -1', 'GET 0_0'],
    'the engine asked for the snapshot again, and that, not the guess, was ingested next')
  assert.ok(ingested.every((i) => i.status === 200))
  assert.equal(Number((await sub(pg, 'guess')).rows_applied), 45, 'the snapshot applied once, whole')
  await s.unsubscribe()
})
