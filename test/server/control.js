// The /_control JSON API used by tests to drive the server at run time.
// Every handler returns [status, body]; bad input is a 400 {"message": ...}.

import { InputError } from './table.js';
import { GeneratedTable } from './generate.js';
import { loadFromPg } from './pgload.js';
import { formatOffset } from './offsets.js';

const MAX_BODY = 512 * 1024 * 1024;

// The request body as text, or null when it exceeds `max` bytes (Plug's
// read_body default for shape requests is 8 MB).
export async function readBody(req, max = 8_000_000) {
  const chunks = [];
  let size = 0;
  for await (const c of req) {
    size += c.length;
    if (size > max) return null;
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export async function readJson(req) {
  const text = await readBody(req, MAX_BODY);
  if (text === null) throw new InputError('request body too large');
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new InputError(`invalid JSON body: ${e.message}`);
  }
}

function tableInfo(t) {
  return {
    schema: t.schema,
    name: t.name,
    columns: t.columns.map((c) => ({ name: c.name, type: c.type, dims: c.dims, not_null: c.not_null, pk_index: c.pk_index, ...c.extras })),
    primary_key: t.pk,
    page_rows: t.pageRows,
    chunk_bytes: t.chunkBytes,
    row_count: t.rowCount,
    generated: t instanceof GeneratedTable,
  };
}

function shapeInfo(s) {
  return {
    handle: s.handle,
    table: s.table.qualified,
    where: s.def.where,
    params: s.def.params,
    columns: s.def.columns,
    replica: s.def.replica,
    log: s.def.log,
    snapshot_chunks: s.snapshot.length,
    log_items: s.log.length,
    last_offset: formatOffset(s.lastOffset),
    waiting: s.waiters.size,
    subquery: s.sub !== null,
    move_in_pending: Boolean(s.sub?.active),
  };
}

const DEBUG_SWITCHES = ['sse_bad_framing', 'subset_hide_in_progress'];

export class ControlApi {
  constructor(store, faults, requestLog, { debug = {}, writes = null } = {}) {
    this.store = store;
    this.faults = faults;
    this.requestLog = requestLog;
    this.debug = debug;
    this.writes = writes;
  }

  table(ref, query) {
    const t = this.store.findTable(decodeURIComponent(ref), query.get('schema'));
    if (!t) throw Object.assign(new InputError(`no table ${ref}`), { status: 404 });
    return t;
  }

  // Runs a list of transactions; each is atomic. Returns their results.
  applyTxns(txns, defaultTable) {
    const results = [];
    const touched = new Set();
    try {
      for (const txn of txns) {
        if (!txn || !Array.isArray(txn.ops)) throw new InputError('each transaction needs ops');
        const ops = txn.ops.map((op) => {
          if (!op || typeof op !== 'object') throw new InputError('op must be an object');
          const table = op.table !== undefined ? this.table(String(op.table), new URLSearchParams()) : defaultTable;
          if (!table) throw new InputError('op needs a table');
          return { ...op, table };
        });
        const delay = txn.publish_delay_ms ?? 0;
        if (!Number.isInteger(delay) || delay < 0) throw new InputError('publish_delay_ms must be a non-negative integer');
        const r = this.store.applyTransaction(ops, { xid: txn.xid, publishDelayMs: delay });
        r.touched.forEach((s) => touched.add(s));
        results.push({ lsn: r.lsn.toString(), xid: r.xid });
      }
    } catch (e) {
      if (e instanceof InputError) e.applied = results.length;
      throw e;
    } finally {
      // Waiting long-polls answer only after the whole batch is in.
      for (const s of touched) s.notify('change');
    }
    return results;
  }

  async handle(req, url) {
    const path = url.pathname.replace(/^\/_control/, '').replace(/\/+$/, '') || '/';
    const m = req.method;
    const q = url.searchParams;
    const { store } = this;
    let seg = path.split('/').slice(1);

    if (path === '/reset' && m === 'POST') {
      store.reset();
      this.faults.clear();
      this.requestLog.length = 0;
      for (const k of Object.keys(this.debug)) delete this.debug[k];
      this.writes?.reset();
      return [200, { ok: true }];
    }
    if (path === '/debug') {
      if (m === 'POST') {
        const body = await readJson(req);
        for (const [k, v] of Object.entries(body)) {
          if (!DEBUG_SWITCHES.includes(k)) throw new InputError(`unknown debug switch ${k}; one of ${DEBUG_SWITCHES.join(', ')}`);
          if (v) this.debug[k] = true;
          else delete this.debug[k];
        }
      }
      if (m === 'POST' || m === 'GET') return [200, { ...this.debug }];
    }
    if (path === '/snapshot' && m === 'GET') {
      const { xmin, xmax, xip } = store.snapshot();
      return [200, {
        xmin: String(xmin), xmax: String(xmax), xip_list: xip.map(String),
        committed_lsn: store.committedLsn.toString(), published_lsn: store.globalLsn.toString(),
        unpublished: store.unpublished.map((e) => ({ xid: e.xid, lsn: e.lsn.toString() })),
      }];
    }
    if (path === '/txn/begin' && m === 'POST') {
      const body = await readJson(req);
      return [200, { xid: store.begin({ xid: body.xid }) }];
    }
    const txnAction = /^\/txn\/(\d+)\/(commit|rollback)$/.exec(path);
    if (txnAction && m === 'POST') {
      const xid = Number(txnAction[1]);
      if (!store.inProgress.has(xid)) throw Object.assign(new InputError(`no transaction ${xid} in progress`), { status: 404 });
      const body = await readJson(req);
      if (txnAction[2] === 'rollback') {
        store.rollback(xid);
        return [200, { ok: true }];
      }
      return [200, this.applyTxns([{ ...body, xid }], null)[0]];
    }
    if (this.writes && (path === '/writes' || path === '/write_faults')) return this.writes.control(path, m, await readJson(req));
    if (path === '/config') {
      if (m === 'POST') return [200, store.setConfig(await readJson(req))];
      if (m === 'GET') return [200, store.config];
    }
    if (path === '/faults') {
      if (m === 'POST') {
        const body = await readJson(req);
        const list = Array.isArray(body) ? body : [body];
        const added = list.map((f) => this.faults.add(f));
        return [200, Array.isArray(body) ? added : added[0]];
      }
      if (m === 'GET') return [200, this.faults.all()];
      if (m === 'DELETE') {
        this.faults.clear();
        return [200, { ok: true }];
      }
    }
    if (path === '/requests') {
      if (m === 'GET') {
        const table = q.get('table');
        const list = table
          ? this.requestLog.filter((r) => r.query.table === table || r.query.table === `public.${table}` || `public.${r.query.table}` === table)
          : this.requestLog;
        return [200, list];
      }
      if (m === 'DELETE') {
        this.requestLog.length = 0;
        return [200, { ok: true }];
      }
    }
    if (path === '/shapes' && m === 'GET') return [200, [...store.shapes.values()].map(shapeInfo)];
    if (path === '/txn' && m === 'POST') {
      const body = await readJson(req);
      return [200, this.applyTxns([body], null)[0]];
    }
    if (path === '/tables') {
      if (m === 'GET') return [200, [...store.tables.values()].map(tableInfo)];
      if (m === 'POST') {
        const spec = await readJson(req);
        return [200, tableInfo(store.createTable(spec))];
      }
    }
    if (path === '/tables/from_pg' && m === 'POST') {
      const spec = await readJson(req);
      if (typeof spec.name !== 'string') throw new InputError('name is required');
      return [200, tableInfo(store.createTable(await loadFromPg(spec)))];
    }

    if (seg[0] === 'tables' && seg.length >= 2) {
      const ref = seg[1];
      const action = seg.slice(2).join('/');
      if (action === 'generate' && m === 'POST') {
        const body = await readJson(req);
        const started = Date.now();
        const table = new GeneratedTable({
          schema: body.schema ?? q.get('schema') ?? 'public',
          name: decodeURIComponent(ref),
          rows: body.rows,
          pageRows: body.page_rows ?? null,
          chunkBytes: body.chunk_bytes ?? null,
        });
        const pages = table.prerenderedPages(table.chunkBytes ?? store.config.chunk_bytes);
        store.addTable(table);
        return [200, { ...tableInfo(table), pages: pages.list.length, bytes: pages.list.reduce((a, b) => a + b.length, 0), ms: Date.now() - started }];
      }
      const table = this.table(ref, q);
      if (action === '' && m === 'GET') return [200, { ...tableInfo(table), shapes: store.shapesOn(table).map(shapeInfo) }];
      if (action === '' && m === 'DELETE') {
        store.rotateTable(table);
        store.tables.delete(table.qualified);
        return [200, { ok: true }];
      }
      if (action === 'rows' && m === 'GET') return [200, [...table.rowsIterator()]];
      if (action === 'rotate' && m === 'POST') {
        const rotated = store.rotateTable(table);
        return [200, { rotated }];
      }
      if (action === 'txn' && m === 'POST') {
        const body = await readJson(req);
        return [200, this.applyTxns([body], table)[0]];
      }
      if (action === 'txns' && m === 'POST') {
        const body = await readJson(req);
        if (!Array.isArray(body.txns)) throw new InputError('txns must be an array');
        const results = this.applyTxns(body.txns, table);
        return [200, {
          count: results.length,
          first: results[0] ?? null,
          last: results[results.length - 1] ?? null,
        }];
      }
    }
    return [404, { message: `no control endpoint ${m} ${url.pathname}` }];
  }
}
