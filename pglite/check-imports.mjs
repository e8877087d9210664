#!/usr/bin/env node
// node pglite/check-imports.mjs SIDE_MODULE.so [OBJECT.o | ARCHIVE.a ...]
//
// Fails (exit 1) naming every function or data symbol the side module needs
// that PGlite does not provide.  pglite.wasm is built with MAIN_MODULE=2 and
// exports only what its own extensions use (~2,000 functions); a side module
// that calls anything else loads fine and then hangs the instance at the
// first call.  Objects and archives given after the module only say which
// of them needs each missing symbol.
//
// What emscripten's dynamic linker (dist/pglite.js) resolves a side module's
// imports against:
//  - env.* and wasi_snapshot_preview1.* functions: the main module's exports
//    and the JS library functions of pglite.js (its wasmImports object, a
//    superset of what pglite.wasm imports: getTempRet0 for setjmp, say);
//    invoke_* wrappers are made on demand.
//  - GOT.func.X / GOT.mem.X: the address of function / data X: the main
//    module's exports (data as exported globals), else the side module's
//    own exports.  A missing weak one is set to 0; a missing strong one
//    fails the load.
//  - env memory, table, __stack_pointer, __memory_base, __table_base: given
//    by the loader.
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { reader } from './wasm-reader.mjs'

const [soPath, ...objPaths] = process.argv.slice(2)
if (!soPath) {
  console.error('usage: check-imports.mjs SIDE_MODULE.so [OBJECT.o|ARCHIVE.a ...]')
  process.exit(2)
}
const mainPath =
  process.env.PGLITE_WASM ||
  fileURLToPath(new URL('node_modules/@electric-sql/pglite/dist/pglite.wasm', import.meta.url))

if (!existsSync(mainPath)) {
  console.error(`${mainPath} is missing: run npm ci in pglite/`)
  process.exit(2)
}
const main = new WebAssembly.Module(readFileSync(mainPath))
const side = new WebAssembly.Module(readFileSync(soPath))

const mainFuncs = new Set()
const mainData = new Set()
const mainTags = new Set()
for (const e of WebAssembly.Module.exports(main)) {
  if (e.kind === 'function') mainFuncs.add(e.name)
  if (e.kind === 'global') mainData.add(e.name)
  if (e.kind === 'tag') mainTags.add(e.name)
}
for (const name of jsLibraryFunctions(mainPath.replace(/\.wasm$/, '.js'))) mainFuncs.add(name)
const sideFuncs = new Set()
const sideData = new Set()
for (const e of WebAssembly.Module.exports(side)) {
  if (e.kind === 'function') sideFuncs.add(e.name)
  if (e.kind === 'global') sideData.add(e.name)
}
const loaderGlobals = new Set(['__stack_pointer', '__memory_base', '__table_base'])
const hasFunc = (n) => mainFuncs.has(n) || sideFuncs.has(n) || n.startsWith('invoke_')

const { weak, needed } = dylinkInfo(side)
const missing = new Map() // name -> 'function' | 'data'
for (const i of WebAssembly.Module.imports(side)) {
  if (i.module === 'GOT.func') {
    if (!hasFunc(i.name) && !weak.has(i.name)) missing.set(i.name, 'function')
  } else if (i.module === 'GOT.mem') {
    if (!mainData.has(i.name) && !sideData.has(i.name) && !weak.has(i.name)) missing.set(i.name, 'data')
  } else if (i.kind === 'function') {
    if (!hasFunc(i.name)) missing.set(i.name, 'function')
  } else if (i.kind === 'global') {
    if (!loaderGlobals.has(i.name) && !mainData.has(i.name)) missing.set(i.name, 'data')
  } else if (i.kind === 'tag') { // wasm exceptions: PGlite's setjmp is emscripten's, not these
    if (!mainTags.has(i.name)) missing.set(i.name, 'tag')
  } // memory and table: the loader's
}

if (needed.length) console.error(`${soPath}: needs other shared libraries, which PGlite will not find: ${needed.join(' ')}`)
if (!missing.size && !needed.length) {
  console.log(`${soPath}: all ${WebAssembly.Module.imports(side).length} imports are provided by ${mainPath}`)
  process.exit(0)
}

const users = new Map() // symbol -> [object names]
for (const p of objPaths)
  for (const [name, bytes] of members(p))
    for (const s of undefinedSymbols(bytes)) users.set(s, [...(users.get(s) || []), name])
console.error(`${soPath}: ${missing.size} symbol(s) missing from pglite.wasm's exports:`)
for (const [name, kind] of [...missing].sort())
  console.error(`  ${name} (${kind})${users.has(name) ? '  <- ' + users.get(name).join(' ') : ''}`)
process.exit(1)

// --- helpers -----------------------------------------------------------------

// The keys of `wasmImports={...}` in the emscripten glue: the functions the
// loader offers every module besides the main module's exports.
function jsLibraryFunctions(jsPath) {
  const js = readFileSync(jsPath, 'utf8')
  const start = js.indexOf('wasmImports={')
  if (start < 0) throw new Error(`${jsPath}: no wasmImports object found`)
  let depth = 0, end = start + 12
  do { if (js[end] === '{') depth++; else if (js[end] === '}') depth--; end++ } while (depth)
  const body = js.slice(start + 13, end - 1)
  return [...body.matchAll(/(?:^|,)([A-Za-z_$][\w$]*):/g)].map((m) => m[1])
}

// The dylink.0 section: weak imports (WASM_DYLINK_IMPORT_INFO, binding weak)
// and needed libraries (WASM_DYLINK_NEEDED).
function dylinkInfo(mod) {
  const weak = new Set(), needed = []
  for (const sec of WebAssembly.Module.customSections(mod, 'dylink.0')) {
    const buf = new Uint8Array(sec), r = reader(buf)
    while (r.pos < buf.length) {
      const type = r.u8(), end = r.uleb() + r.pos
      if (type === 2) for (let n = r.uleb(); n--;) needed.push(r.str())
      if (type === 4) for (let n = r.uleb(); n--;) { r.str(); const field = r.str(); if (r.uleb() & 1) weak.add(field) }
      r.pos = end
    }
  }
  return { weak, needed }
}

// An object file, or each member of an ar archive, as [name, bytes].
function members(path) {
  const buf = readFileSync(path)
  if (buf.subarray(0, 8).toString() !== '!<arch>\n') return [[path.replace(/.*\//, ''), buf]]
  const out = []
  for (let pos = 8; pos + 60 <= buf.length;) {
    const name = buf.subarray(pos, pos + 16).toString().trim().replace(/\/$/, '')
    const size = parseInt(buf.subarray(pos + 48, pos + 58).toString(), 10)
    if (name && name !== '/' && name !== '//') out.push([`${path.replace(/.*\//, '')}(${name})`, buf.subarray(pos + 60, pos + 60 + size)])
    pos += 60 + size + (size & 1)
  }
  return out
}

// Undefined symbols of a wasm object file, from its "linking" symbol table.
function undefinedSymbols(bytes) {
  const mod = new WebAssembly.Module(bytes)
  const funcImports = WebAssembly.Module.imports(mod).filter((i) => i.kind === 'function').map((i) => i.name)
  const globalImports = WebAssembly.Module.imports(mod).filter((i) => i.kind === 'global').map((i) => i.name)
  const out = []
  for (const sec of WebAssembly.Module.customSections(mod, 'linking')) {
    const buf = new Uint8Array(sec), r = reader(buf)
    r.uleb() // version
    while (r.pos < buf.length) {
      const type = r.u8(), end = r.uleb() + r.pos
      if (type === 8) { // WASM_SYMBOL_TABLE
        for (let n = r.uleb(); n--;) {
          const kind = r.u8(), flags = r.uleb(), undef = flags & 0x10, explicit = flags & 0x40
          if (kind === 1) { // data
            const name = r.str()
            if (undef) out.push(name); else { r.uleb(); r.uleb(); r.uleb() }
          } else if (kind === 3) { // section
            r.uleb()
          } else { // function, global, tag, table
            const index = r.uleb()
            const name = !undef || explicit ? r.str() : kind === 0 ? funcImports[index] : kind === 2 ? globalImports[index] : null
            if (undef && name) out.push(name)
          }
        }
      }
      r.pos = end
    }
  }
  return out
}
