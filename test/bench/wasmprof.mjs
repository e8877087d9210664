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
import { fileURLToPath } from 'node:url';

// function index -> name: the name section where there is one, else exports
export function functionNames(bytes) {
  const b = bytes;
  let p = 8;
  const leb = () => {
    let r = 0;
    let s = 0;
    let x;
    do {
      x = b[p++];
      r += (x & 0x7f) * 2 ** s;
      s += 7;
    } while (x & 0x80);
    return r;
  };
  const str = () => {
    const n = leb();
    p += n;
    return b.toString('utf8', p - n, p);
  };
  const limits = () => {
    const flags = leb();
    leb();
    if (flags & 1) leb();
  };
  const named = new Map();
  const exported = new Map();
  let imported = 0;
  let defined = 0;
  while (p < b.length) {
    const id = b[p++];
    const size = leb();
    const end = p + size;
    if (id === 2) {
      for (let n = leb(); n > 0; n--) {
        str();
        str();
        const kind = b[p++];
        if (kind === 0) {
          leb();
          imported++;
        } else if (kind === 1) {
          p++;
          limits();
        } else if (kind === 2) limits();
        else if (kind === 3) p += 2;
        else if (kind === 4) {
          p++;
          leb();
        }
      }
    } else if (id === 3) defined = leb();
    else if (id === 7) {
      for (let n = leb(); n > 0; n--) {
        const name = str();
        const kind = b[p++];
        const index = leb();
        if (kind === 0 && !exported.has(index)) exported.set(index, name);
      }
    } else if (id === 0 && str() === 'name') {
      while (p < end) {
        const sub = b[p++];
        const len = leb();
        const subEnd = p + len;
        if (sub === 1) for (let n = leb(); n > 0; n--) named.set(leb(), str());
        p = subEnd;
      }
    }
    p = end;
  }
  return { names: named.size ? named : exported, functions: imported + defined, fromNameSection: named.size > 0 };
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
      const name = frameName(byId.get(id));
      if (!name) continue;
      if (!charged) {
        add(self, name, dt);
        charged = true;
      }
      if (!seen.has(name) && name.endsWith(`(${mods.find((m) => m.fromNameSection)?.label})`)) add(incl, name, dt);
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
  const a = analyze(JSON.parse(readFileSync(file, 'utf8')), [
    { label: 'postgres', group: 'PostgreSQL (pglite.wasm)', bytes: readFileSync(mainWasm) },
    { label: 'pglite_sync', group: 'pglite_sync engine (side module)', bytes: readFileSync(side) },
  ]);
  console.log(`${a.window_s.toFixed(2)} s profiled\n${report(a)}`);
}
