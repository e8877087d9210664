// The import check of `make pglite` (pglite/check-imports.mjs) against the
// built side module: every function and data symbol it needs is exported by
// the pinned pglite.wasm (a missing one would hang the instance at its first
// call instead of failing).  And the check itself fails on a module that
// imports something PGlite does not have.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { gunzipSync } from 'node:zlib'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { root, out, tempDir } from './helpers.mjs'

const check = fileURLToPath(new URL('pglite/check-imports.mjs', root))
const run = (...args) => spawnSync(process.execPath, [check, ...args], { encoding: 'utf8' })

const tmp = tempDir('pglite-imports-')
after(() => tmp.remove())

// a file of a ustar archive (512-byte headers: name at 0, size in octal at 124)
function tarFile(buf, wanted) {
  for (let pos = 0; pos + 512 <= buf.length && buf[pos];) {
    const name = buf.subarray(pos, pos + 100).toString().replace(/\0.*$/s, '')
    const size = parseInt(buf.subarray(pos + 124, pos + 136).toString(), 8) || 0
    if (name === wanted) return buf.subarray(pos + 512, pos + 512 + size)
    pos += 512 + Math.ceil(size / 512) * 512
  }
  return null
}

test('every import of the bundled pglite_sync.so is provided by pglite.wasm', () => {
  // the module PGlite loads: the one inside the bundle
  const bundled = tarFile(gunzipSync(readFileSync(new URL('pglite_sync.tar.gz', out))), 'lib/postgresql/pglite_sync.so')
  assert.ok(bundled, 'lib/postgresql/pglite_sync.so in the bundle')
  assert.ok(bundled.equals(readFileSync(new URL('pglite_sync.so', out))), 'build/pglite/pglite_sync.so is the bundled module')
  const so = join(tmp.dir, 'pglite_sync.so')
  writeFileSync(so, bundled)
  const r = run(so)
  assert.equal(r.status, 0, `check-imports failed:\n${r.stdout}${r.stderr}`)
  const m = r.stdout.match(/: all (\d+) imports are provided by /)
  assert.ok(m, r.stdout)
  const imports = WebAssembly.Module.imports(new WebAssembly.Module(bundled))
  assert.equal(Number(m[1]), imports.length)
  assert.ok(imports.length > 100, `the module has imports (${imports.length})`)
})

test('the check fails, naming the symbol, for a module importing what PGlite lacks', () => {
  // (module (import "env" "definitely_not_exported" (func)))
  const name = Buffer.from('definitely_not_exported')
  const importSec = Buffer.concat([Buffer.from([0x01, 0x03]), Buffer.from('env'), Buffer.from([name.length]), name, Buffer.from([0x00, 0x00])])
  const wasm = Buffer.concat([
    Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]),
    Buffer.from([0x01, 0x04, 0x01, 0x60, 0x00, 0x00]),
    Buffer.from([0x02, importSec.length]), importSec,
  ])
  const file = join(tmp.dir, 'bad.so')
  writeFileSync(file, wasm)
  const r = run(file)
  assert.equal(r.status, 1, r.stdout + r.stderr)
  assert.match(r.stderr, /1 symbol\(s\) missing from pglite\.wasm's exports/)
  assert.match(r.stderr, /definitely_not_exported \(function\)/)
})
