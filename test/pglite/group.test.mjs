// syncShapesToTables: two tables with a foreign key between them, one
// subscription.  The initial snapshots land together, a source transaction
// over both tables lands in one local transaction (a reader never sees half
// of it, even when one shape is behind the other), and a must-refetch of one
// member replaces only that member's rows.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import {
  newPGlite, startServer, post, control, shapeUrl, requests, sub, waitFor, sleep, serverRows, assertSameRows,
  waitSameRows, shapesOf, instrument,
} from './helpers.mjs'

let pg, srv, watch
before(async () => {
  srv = await startServer(null)
  pg = await newPGlite()
  watch = instrument(pg)
})
after(async () => {
  await pg?.close()
  await srv?.close()
})

const projects = (n) => Array.from({ length: n }, (_, i) => ({ id: String(i + 1), name: `project ${i + 1}` }))
const issues = (n, np) => Array.from({ length: n }, (_, i) => ({ id: String(i + 1), project_id: String((i % np) + 1), title: `issue ${i + 1}` }))

// what a reader sees: the ids of both tables
async function state(q = pg) {
  const p = await q.query('SELECT string_agg(id::text, \',\' ORDER BY id) AS s FROM project')
  const i = await q.query('SELECT string_agg(id::text || \':\' || project_id::text, \',\' ORDER BY id) AS s FROM issue')
  return `project[${p.rows[0].s ?? ''}] issue[${i.rows[0].s ?? ''}]`
}
const render = (ps, is) => {
  const num = (a, b) => Number(a.id) - Number(b.id)
  return `project[${[...ps].sort(num).map((r) => r.id).join(',')}] issue[${[...is].sort(num).map((r) => `${r.id}:${r.project_id}`).join(',')}]`
}
const serverState = async () => render(await serverRows(srv, 'project'), await serverRows(srv, 'issue'))

// reads over and over; every read must be one of `allowed` (committed source states)
function watchReads(allowed) {
  let stop = false
  const reads = []
  const loop = (async () => {
    while (!stop) {
      reads.push(await pg.transaction((tx) => state(tx)))
      await sleep(2)
    }
  })()
  return {
    reads,
    async done() {
      stop = true
      await loop
      const bad = [...new Set(reads.filter((r) => !allowed.includes(r)))]
      assert.deepEqual(bad, [], `a reader saw a state that the source never had (${reads.length} reads; allowed:\n${allowed.join('\n')})`)
    },
  }
}

let h
const seen = { initialSyncs: 0, errors: [] }

test('both members of a group land, in one transaction', { timeout: 60_000 }, async () => {
  await post(srv, '/tables', { name: 'project', columns: [{ name: 'id', type: 'int4', not_null: true }, { name: 'name', type: 'text' }],
    primary_key: ['id'], rows: projects(5), page_rows: 2 })
  await post(srv, '/tables', { name: 'issue', columns: [{ name: 'id', type: 'int4', not_null: true }, { name: 'project_id', type: 'int4' }, { name: 'title', type: 'text' }],
    primary_key: ['id'], rows: issues(40, 5), page_rows: 5 })
  await pg.exec(`CREATE TABLE project (id int PRIMARY KEY, name text);
    CREATE TABLE issue (id int PRIMARY KEY, project_id int NOT NULL REFERENCES project (id), title text);`)
  const empty = await state()
  const full = await serverState()
  const reader = watchReads([empty, full])
  h = await pg.electric.syncShapesToTables({
    key: 'grp',
    shapes: {
      project: { shape: { url: shapeUrl(srv), params: { table: 'project' } }, table: 'project', primaryKey: ['id'] },
      issue: { shape: { url: shapeUrl(srv), params: { table: 'issue' } }, table: 'issue', primaryKey: ['id'] },
    },
    onInitialSync: () => seen.initialSyncs++,
    onError: (e) => seen.errors.push(e.message),
  })
  assert.equal(h.name, 'grp')
  await waitFor(() => h.isUpToDate, { what: 'the group up to date' })
  await waitFor(() => reader.reads.includes(full), { what: 'the reader to see the synced tables' })
  await reader.done()
  assert.ok(reader.reads.includes(empty) && reader.reads.includes(full))
  await assertSameRows(pg, srv, 'project')
  await assertSameRows(pg, srv, 'issue')

  const v = await sub(pg, 'grp')
  assert.equal(v.shape_count, 2)
  assert.equal(v.state, 'live')
  assert.equal(Number(v.rows_applied), 45)
  const { rows: members } = await pg.query('SELECT shape, table_name, handle, "offset", rows_applied FROM electric.subscription_shapes WHERE subscription = $1 ORDER BY shape', ['grp'])
  assert.deepEqual(members.map((m) => [m.shape, m.table_name, Number(m.rows_applied)]), [['issue', 'issue', 40], ['project', 'project', 5]])
  for (const m of members) {
    const [s] = await shapesOf(srv, m.table_name)
    assert.equal(m.handle, s.handle, `${m.shape}: the server's handle`)
  }
  assert.equal(seen.initialSyncs, 1)
  const applies = watch.ingests.filter((a) => a.name === 'grp' && a.applied > 0).map((a) => a.applied)
  assert.deepEqual(applies, [45], 'both snapshots applied by one call, in one transaction')
})

test('transactions over both tables land atomically, even with one shape behind', { timeout: 60_000 }, async () => {
  // the issue shape's long-polls start 600 ms late: its part of each
  // transaction arrives after the project's
  await post(srv, '/faults', { kind: 'delay', ms: 600, table: 'issue', when: 'live', count: -1 })
  const n0 = watch.ingests.length
  const states = [await serverState()]
  const reader = watchReads(states) // states grows as the source commits
  const txns = [
    // a new project with two issues
    [{ table: 'project', op: 'insert', row: { id: 6, name: 'six' } },
      { table: 'issue', op: 'insert', row: { id: 41, project_id: 6, title: 'in six' } },
      { table: 'issue', op: 'insert', row: { id: 42, project_id: 6, title: 'also in six' } }],
    // project 1 goes, with its issues (children first, as the FK needs)
    [...issues(40, 5).filter((i) => i.project_id === '1').map((i) => ({ table: 'issue', op: 'delete', row: { id: i.id } })),
      { table: 'project', op: 'delete', row: { id: 1 } }],
    // an issue moves, its new project renamed
    [{ table: 'issue', op: 'update', row: { id: 2, project_id: 6 } }, { table: 'project', op: 'update', row: { id: 6, name: 'six!' } }],
  ]
  for (const ops of txns) {
    await post(srv, '/txn', { ops })
    states.push(await serverState())
    await waitFor(async () => (await state()) === states[states.length - 1], { what: 'the transaction locally', timeout: 20_000 })
  }
  await reader.done()
  await assertSameRows(pg, srv, 'project')
  await assertSameRows(pg, srv, 'issue')
  const log = await requests(srv, 'issue')
  assert.ok(log.some((r) => r.fault === 'delay'), 'the issue shape was behind')
  const v = await sub(pg, 'grp')
  assert.equal(v.state, 'live')
  assert.equal(v.last_error, null)
  assert.equal(Number(v.rows_applied), 45 + 3 + 9 + 2)
  assert.deepEqual(seen.errors, [])
  // each source transaction was applied by one ingest_response call (one
  // local transaction): the member that got its part first applied nothing
  const applies = watch.ingests.slice(n0).filter((a) => a.name === 'grp' && a.applied > 0)
  assert.deepEqual(applies.map((a) => a.applied), [3, 9, 2], `one local transaction per source transaction (${JSON.stringify(applies)})`)
  await control(srv, 'DELETE', '/faults')
})

test('a must-refetch of one member replaces only its rows', { timeout: 60_000 }, async () => {
  const before = Object.fromEntries((await pg.query('SELECT shape, handle, "offset" FROM electric.subscription_shapes WHERE subscription = $1', ['grp']))
    .rows.map((m) => [m.shape, m]))
  const now = await serverState()
  const reader = watchReads([now])
  await post(srv, '/tables/issue/rotate')
  await waitFor(async () => {
    const { rows } = await pg.query('SELECT handle FROM electric.subscription_shapes WHERE subscription = $1 AND shape = $2', ['grp', 'issue'])
    return rows[0].handle !== before.issue.handle && (await sub(pg, 'grp')).is_up_to_date
  }, { what: 'the issue member refetched' })
  await reader.done()
  await waitSameRows(pg, srv, 'issue')
  await assertSameRows(pg, srv, 'project')
  const after = Object.fromEntries((await pg.query('SELECT shape, handle, "offset" FROM electric.subscription_shapes WHERE subscription = $1', ['grp']))
    .rows.map((m) => [m.shape, m]))
  assert.deepEqual(after.project, before.project, 'the project member kept its position')
  const [s] = await shapesOf(srv, 'issue')
  assert.equal(after.issue.handle, s.handle)
  await h.unsubscribe()
  assert.equal((await sub(pg, 'grp')).state, 'stopped')
})
