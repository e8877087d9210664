// A flat profile of a V8 CPU profile (.cpuprofile) taken in a process that
// runs PGlite, with WebAssembly frames named: V8 names a wasm frame only from
// its module's name section, which pglite.wasm lacks.  Its exported functions
// still have names (the export section), and the side module keeps its own
// (pglite/build links it with --profiling-funcs), so a sample is charged to
// the nearest frame that has a name: a PostgreSQL function that is not
// exported counts towards the exported one that called it.
//
//   node test/bench/wasmprof.mjs FILE.cpuprofile pglite.wasm pglite_sync.so
//
// report() returns the text that BENCHMARKS.md shows under Profiles.
import { readFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { fileURLToPath } from 'node:url';
import { reader } from '../../pglite/wasm-reader.mjs';

// function index -> name: the name section where there is one, else the
// exports; functions: how many there are (imported and defined)
export function functionNames(bytes) {
  const mod = new WebAssembly.Module(bytes);
  const imported = WebAssembly.Module.imports(mod).filter((i) => i.kind === 'function').length;
  const named = new Map();
  for (const sec of WebAssembly.Module.customSections(mod, 'name')) {
    const buf = new Uint8Array(sec);
    const r = reader(buf);
    while (r.pos < buf.length) {
      const sub = r.u8();
      const end = r.uleb() + r.pos;
      if (sub === 1) for (let n = r.uleb(); n > 0; n--) named.set(r.uleb(), r.str());
      r.pos = end;
    }
  }
  // the API gives neither export indices nor the count of defined
  // functions: the function (3) and export (7) sections do
  const exported = new Map();
  let defined = 0;
  const r = reader(bytes, 8);
  while (r.pos < bytes.length) {
    const id = r.u8();
    const end = r.uleb() + r.pos;
    if (id === 3) defined = r.uleb();
    if (id === 7) {
      for (let n = r.uleb(); n > 0; n--) {
        const name = r.str();
        const kind = r.u8();
        const index = r.uleb();
        if (kind === 0 && !exported.has(index)) exported.set(index, name);
      }
    }
    r.pos = end;
  }
  return { names: named.size ? named : exported, functions: imported + defined, fromNameSection: named.size > 0 };
}

// The two modules of a PGlite with our extension, as analyze() takes them.
export function pgliteModules(mainWasm, sideSo) {
  return [
    { label: 'postgres', group: 'PostgreSQL (pglite.wasm)', bytes: readFileSync(mainWasm) },
    { label: 'pglite_sync', group: 'pglite_sync engine (side module)', bytes: readFileSync(sideSo) },
  ];
}

// V8's sampling profiler in this process, every intervalUs; the returned
// function stops it and resolves to the profile.
export async function startProfiler(intervalUs) {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: intervalUs });
  await session.post('Profiler.start');
  return async () => {
    const { profile } = await session.post('Profiler.stop');
    session.disconnect();
    return profile;
  };
}

const WASM_INDEX = /^wasm-function\[(\d+)\]$/;

// modules: [{label, group, bytes}]; returns {window_s, groups: [[label, ms]], top: [[name, ms]], inclusive: [[name, ms]]}
export function analyze(profile, modules) {
  const mods = modules.map((m) => {
    const f = functionNames(m.bytes);
    return { ...m, ...f, nameSet: new Set(f.names.values()) };
  });
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  // which module a wasm script is: the one whose names its named frames
  // carry, else the one whose function count its indices fit
  const wasmUrls = new Map();
  for (const n of profile.nodes) {
    const { url, functionName } = n.callFrame;
    if (!url.startsWith('wasm://')) continue;
    const u = wasmUrls.get(url) ?? { named: new Set(), maxIndex: -1 };
    const m = WASM_INDEX.exec(functionName);
    if (m) u.maxIndex = Math.max(u.maxIndex, Number(m[1]));
    else if (!/^(wasm-to-js|js-to-wasm)/.test(functionName)) u.named.add(functionName.replace(/^\$/, ''));
    wasmUrls.set(url, u);
  }
  const moduleOf = new Map();
  for (const [url, u] of wasmUrls) {
    const withNames = mods.find((m) => m.fromNameSection && [...u.named].some((x) => m.nameSet.has(x)));
    const fits = mods.filter((m) => !m.fromNameSection && u.maxIndex < m.functions);
    moduleOf.set(url, withNames ?? (fits.length === 1 ? fits[0] : null));
  }

  const frameName = (node) => {
    const { url, functionName, lineNumber } = node.callFrame;
    if (url.startsWith('wasm://')) {
      if (functionName.startsWith('wasm-to-js') || functionName.startsWith('js-to-wasm')) return null;
      const mod = moduleOf.get(url);
      const m = WASM_INDEX.exec(functionName);
      const name = m ? mod?.names.get(Number(m[1])) : functionName.replace(/^\$/, '');
      return name ? `${name} (${mod?.label ?? 'wasm'})` : null;
    }
    if (functionName === 'GenericJSToWasmWrapper') return null;
    const file = url.split('/').pop();
    return file ? `${functionName || '(anonymous)'} (${file}:${lineNumber + 1})` : functionName || '(anonymous)';
  };
  // a sample counts where the nearest frame of a known part is: Node's own
  // frames (fs, streams, timers) belong to whoever called them
  const group = (leaf) => {
    const name = leaf.callFrame.functionName;
    if (name === '(garbage collector)') return 'garbage collector';
    if (name.startsWith('(')) return 'idle and other';
    for (let id = leaf.id; id !== undefined; id = parent.get(id)) {
      const { url, functionName } = byId.get(id).callFrame;
      if (url.startsWith('wasm://')) return moduleOf.get(url)?.group ?? 'WebAssembly';
      if (functionName === 'GenericJSToWasmWrapper') return 'calls between JavaScript and WebAssembly';
      if (url.includes('/build/pglite/') || url.includes('/pglite/index.js')) return "pglite_sync's JavaScript (fetch loop)";
      if (url.includes('@electric-sql/pglite/')) return "PGlite's JavaScript (file system, protocol)";
      if (url.includes('undici') || functionName === 'fetch') return 'fetch (undici, loaded on first use)';
    }
    return 'Node (streams, buffers, timers)';
  };

  const ours = `(${mods.find((m) => m.fromNameSection)?.label})`;
  const names = new Map(); // node id -> frameName
  const nameOf = (id) => {
    if (!names.has(id)) names.set(id, frameName(byId.get(id)));
    return names.get(id);
  };
  const self = new Map();
  const incl = new Map();
  const groups = new Map();
  let total = 0;
  const add = (m, k, v) => m.set(k, (m.get(k) ?? 0) + v);
  for (let i = 0; i < profile.samples.length; i++) {
    const next = i + 1 < profile.timeDeltas.length ? profile.timeDeltas[i + 1] : 0;
    const dt = Math.max(0, next) / 1000;
    total += dt;
    const leaf = byId.get(profile.samples[i]);
    add(groups, group(leaf), dt);
    const seen = new Set();
    let charged = false;
    for (let id = leaf.id; id !== undefined; id = parent.get(id)) {
      const name = nameOf(id);
      if (!name) continue;
      if (!charged) {
        add(self, name, dt);
        charged = true;
      }
      if (!seen.has(name) && name.endsWith(ours)) add(incl, name, dt);
      seen.add(name);
    }
  }
  const sorted = (m) => [...m].sort((a, b) => b[1] - a[1]);
  return { window_s: total / 1000, groups: sorted(groups), top: sorted(self), inclusive: sorted(incl) };
}

export function report(a, { top = 30, inclusive = 12 } = {}) {
  const total = a.groups.reduce((s, [, v]) => s + v, 0) || 1;
  const row = ([k, v]) => `${((100 * v) / total).toFixed(2).padStart(8)}%  ${(v).toFixed(0).padStart(6)} ms  ${k}`;
  return [
    'by part (where the nearest frame of a known part is; the file system calls and streams of Node count to their caller):',
    ...a.groups.map(row),
    '',
    'top functions (self; unnamed PostgreSQL internals counted to their nearest exported caller):',
    ...a.top.slice(0, top).map(row),
    '',
    'pglite_sync functions, inclusive:',
    ...a.inclusive.slice(0, inclusive).map(row),
  ].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [file, mainWasm, side] = process.argv.slice(2);
  if (!side) throw new Error('usage: wasmprof.mjs FILE.cpuprofile pglite.wasm pglite_sync.so');
  const a = analyze(JSON.parse(readFileSync(file, 'utf8')), pgliteModules(mainWasm, side));
  console.log(`${a.window_s.toFixed(2)} s profiled\n${report(a)}`);
}
