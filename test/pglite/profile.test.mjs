// The side module keeps its function names (pglite/build links it with
// --profiling-funcs), so that a trap's stack and a profile name our code, and
// test/bench/wasmprof.mjs names PostgreSQL's frames from pglite.wasm's
// exports.  A sync under V8's profiler shows both.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fileURLToPath } from 'node:url'
import { newPGlite, out, post, root, shapeUrl, startServer } from './helpers.mjs'

const { analyze, functionNames, pgliteModules, startProfiler } = await import(new URL('test/bench/wasmprof.mjs', root))
const modules = pgliteModules(fileURLToPath(new URL('pglite/node_modules/@electric-sql/pglite/dist/pglite.wasm', root)),
  fileURLToPath(new URL('pglite_sync.so', out)))
const [{ bytes: main }, { bytes: side }] = modules

test('the side module has a name section with the engine\'s functions', () => {
  const f = functionNames(side)
  assert.ok(f.fromNameSection, 'pglite_sync.so has no name section')
  const names = new Set(f.names.values())
  for (const n of ['ps_ingest_response', 'ps_next_request', 'ps_run_commit'])
    assert.ok(names.has(n), `${n} is not named in pglite_sync.so`)
  // two static functions of one name come out as flush and flush_477: in a
  // profile nobody can tell which is which
  const twice = [...names].filter((n) => /_\d+$/.test(n) && names.has(n.replace(/_\d+$/, '')))
  assert.deepEqual(twice, [], 'static functions that share a name')
  // pglite.wasm has none: only its exports are named
  const m = functionNames(main)
  assert.equal(m.fromNameSection, false)
  assert.ok(new Set(m.names.values()).has('heap_insert'))
})

test('a profile of a sync names our functions and PostgreSQL\'s', { timeout: 120_000 }, async (t) => {
  const srv = await startServer(t)
  await post(srv, '/tables/prof/generate', { rows: 20000 })
  const pg = await newPGlite()
  t.after(() => pg.close())
  await pg.exec('CREATE TABLE prof (id int8 PRIMARY KEY, title text, done bool, created_at timestamptz, amount numeric)')
  await pg.electric.initMetadataTables()
  const stopProfiler = await startProfiler(100)
  let sub
  await new Promise((resolve, reject) => {
    pg.electric.syncShapeToTable({
      shape: { url: shapeUrl(srv), params: { table: 'prof' } },
      table: 'prof',
      primaryKey: ['id'],
      shapeKey: null,
      initialInsertMethod: 'csv',
      onInitialSync: resolve,
      onError: reject,
    }).then((s) => { sub = s }, reject)
  })
  const profile = await stopProfiler()
  await sub.unsubscribe()
  assert.equal(Number((await pg.query('SELECT count(*) AS n FROM prof')).rows[0].n), 20000)

  const a = analyze(profile, modules)
  const groups = Object.fromEntries(a.groups)
  assert.ok(groups['PostgreSQL (pglite.wasm)'] > 0, `no samples in pglite.wasm: ${JSON.stringify(a.groups)}`)
  assert.ok(groups['pglite_sync engine (side module)'] > 0, `no samples in the side module: ${JSON.stringify(a.groups)}`)
  const inclusive = Object.fromEntries(a.inclusive)
  // every sample in the engine is under the call that hands it a response
  assert.ok(inclusive['ps_ingest_response (pglite_sync)'] >= groups['pglite_sync engine (side module)'],
    `ps_ingest_response: ${inclusive['ps_ingest_response (pglite_sync)']} ms; ${JSON.stringify(a.inclusive.slice(0, 5))}`)
  const top = a.top.map(([n]) => n)
  assert.ok(top.some((n) => n.endsWith(' (postgres)')), `no PostgreSQL function named: ${top.slice(0, 10).join(', ')}`)
  assert.ok(!top.some((n) => /wasm-function\[/.test(n)), 'an unnamed wasm frame was charged')
})
