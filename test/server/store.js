// The server's state: tables, shapes, the global LSN/xid clock and runtime
// config. Transactions are applied atomically to the tables and then fanned
// out to every shape on the affected tables.

import { Table, InputError } from './table.js';
import { Shape } from './shape.js';

export const DEFAULT_CONFIG = Object.freeze({
  long_poll_ms: 20000,
  // Electric's ELECTRIC_SHAPE_CHUNK_BYTES_THRESHOLD default (10 MiB).
  chunk_bytes: 10 * 1024 * 1024,
  max_age: 60,
  stale_age: 300,
  // Electric's keepalive_interval and sse_timeout.
  sse_keepalive_ms: 21000,
  sse_timeout_ms: 60000,
});

const CONFIG_KEYS = Object.keys(DEFAULT_CONFIG);
const LSN_START = 0x1600000n; // first LSN handed out after a reset
const LSN_STEP = 0x100n;
const XID_START = 750;

export class Store {
  constructor(config = {}) {
    this.baseConfig = { ...DEFAULT_CONFIG, ...config };
    this.reset();
  }

  reset() {
    for (const shape of this.shapes?.values() ?? []) this.killShape(shape);
    this.config = { ...this.baseConfig };
    this.tables = new Map(); // "schema.name" -> Table
    this.shapes = new Map(); // handle -> Shape
    this.shapesByDef = new Map(); // definition key -> Shape
    clearTimeout(this.pumpTimer);
    this.globalLsn = LSN_START; // Electric's global_last_seen_lsn: the last published LSN
    this.committedLsn = LSN_START; // the last committed transaction's LSN
    this.nextXid = XID_START;
    this.inProgress = new Set();
    this.unpublished = []; // committed, not yet published: [{lsn, xid, changes, due}]
    this.overlay = null;
    this.tableVersion = 0;
  }

  setConfig(patch) {
    if (!patch || typeof patch !== 'object') throw new InputError('config must be an object');
    for (const [k, v] of Object.entries(patch)) {
      if (!CONFIG_KEYS.includes(k)) throw new InputError(`unknown config key ${k}`);
      if (!Number.isInteger(v) || v < (['chunk_bytes', 'sse_keepalive_ms', 'sse_timeout_ms'].includes(k) ? 1 : 0)) throw new InputError(`${k} must be a non-negative integer`);
      this.config[k] = v;
    }
    return this.config;
  }

  getTable(schema, name) {
    return this.tables.get(`${schema}.${name}`);
  }

  // Finds a table by "name" or "schema.name" as used in control URLs.
  findTable(ref, schema) {
    if (schema) return this.getTable(schema, ref);
    if (this.tables.has(ref)) return this.tables.get(ref);
    return this.getTable('public', ref);
  }

  addTable(table) {
    table.version = ++this.tableVersion;
    const old = this.tables.get(table.qualified);
    if (old) this.rotateTable(old);
    this.tables.set(table.qualified, table);
    return table;
  }

  createTable(spec) {
    const table = new Table({
      schema: spec.schema ?? 'public',
      name: spec.name,
      columns: spec.columns,
      primaryKey: spec.primary_key ?? [],
      pageRows: spec.page_rows ?? null,
      chunkBytes: spec.chunk_bytes ?? null,
    });
    table.loadRows(spec.rows ?? []);
    return this.addTable(table);
  }

  // ---- shapes ----

  getOrCreateShape(def) {
    let shape = this.shapesByDef.get(def.key);
    if (!shape) {
      shape = new Shape(def, this);
      this.shapes.set(shape.handle, shape);
      this.shapesByDef.set(def.key, shape);
    }
    return shape;
  }

  // A request's handle is valid only if it names the live shape for its definition.
  resolveShape(handle, def) {
    const shape = this.shapes.get(handle);
    return shape && shape.def.key === def.key ? shape : null;
  }

  killShape(shape) {
    if (shape.dead) return;
    shape.dead = true;
    this.shapes?.delete(shape.handle);
    if (this.shapesByDef?.get(shape.def.key) === shape) this.shapesByDef.delete(shape.def.key);
    shape.notify('rotated');
  }

  // Invalidates every shape on the table: the next request with an old handle
  // gets a 409 pointing at a freshly created shape.
  rotateTable(table) {
    let n = 0;
    for (const shape of [...this.shapes.values()]) {
      if (shape.dependsOnAny(new Set([table]))) {
        this.killShape(shape);
        n++;
      }
    }
    return n;
  }

  shapesOn(table) {
    return [...this.shapes.values()].filter((s) => s.table === table);
  }

  // ---- transactions ----
  // A transaction is applied to the tables when it commits (so snapshots and
  // subset queries see it at once) and then *published* to the shapes, in
  // commit order, like Electric receiving it from logical replication; with
  // `publishDelayMs` the publication (and everything committed after it)
  // waits, which models replication lag.

  // Takes an xid now; the transaction stays in progress (in every snapshot's
  // xip_list) until commitTransaction or rollback.
  begin({ xid } = {}) {
    const txid = this.claimXid(xid);
    this.inProgress.add(txid);
    return txid;
  }

  rollback(xid) {
    if (!this.inProgress.delete(xid)) throw new InputError(`no transaction ${xid} in progress`);
  }

  claimXid(xid) {
    if (xid !== undefined && !(Number.isInteger(xid) && xid > 0 && xid < 2 ** 32)) {
      throw new InputError('xid must be a 32-bit positive integer');
    }
    if (xid !== undefined && this.inProgress.has(xid)) throw new InputError(`transaction ${xid} is in progress`);
    const txid = xid ?? this.nextXid;
    this.nextXid = Math.max(this.nextXid, txid) + 1;
    return txid;
  }

  // pg_current_snapshot(): xmax is the first unassigned xid, so every
  // transaction in progress is listed in xip (and xmin is the oldest of them).
  snapshot() {
    const xmax = this.nextXid;
    const xip = [...this.inProgress].filter((x) => x < xmax).sort((a, b) => a - b);
    const xmin = Math.min(xmax, ...this.inProgress);
    return { xmin, xmax, xip };
  }

  // ops: [{table, op: insert|update|delete, row, new_key?, old?}]. Applies all
  // or nothing; `xid` may name a transaction from begin(). Returns {lsn, xid,
  // touched: Set<Shape>} (touched: shapes that got items at once).
  applyTransaction(ops, { xid, publishDelayMs = 0 } = {}) {
    if (!Array.isArray(ops) || ops.length === 0) throw new InputError('a transaction needs at least one op');
    const open = xid !== undefined && this.inProgress.has(xid);
    if (!open && xid !== undefined && !(Number.isInteger(xid) && xid > 0 && xid < 2 ** 32)) {
      throw new InputError('xid must be a 32-bit positive integer');
    }
    const undo = [];
    const changes = [];
    try {
      ops.forEach((op, i) => {
        const change = this.applyOp(op, undo);
        change.op = i * 2; // Electric spaces ops by 2 so a key change can split in two
        changes.push(change);
      });
    } catch (e) {
      for (let i = undo.length - 1; i >= 0; i--) {
        const [table, key, row] = undo[i];
        if (row === undefined) table.remove(key);
        else table.put(key, row);
      }
      if (open) this.rollback(xid); // like Postgres, a failed transaction is over
      throw e;
    }
    const txid = open ? xid : this.claimXid(xid);
    this.inProgress.delete(txid);
    this.committedLsn += LSN_STEP;
    const entry = { lsn: this.committedLsn, xid: txid, changes, due: Date.now() + publishDelayMs };
    this.unpublished.push(entry);
    this.overlay = null;
    const touched = this.pump();
    return { lsn: entry.lsn, xid: txid, touched };
  }

  // Publishes every due transaction at the head of the queue; schedules the
  // rest. Returns the shapes that got items (their waiters are not woken here).
  pump() {
    clearTimeout(this.pumpTimer);
    const touched = new Set();
    while (this.unpublished.length && this.unpublished[0].due <= Date.now()) {
      const entry = this.unpublished.shift();
      this.overlay = null;
      this.publish(entry, touched);
    }
    if (this.unpublished.length) {
      this.pumpTimer = setTimeout(() => {
        for (const shape of this.pump()) shape.notify('change');
      }, Math.max(1, this.unpublished[0].due - Date.now()));
      this.pumpTimer.unref?.();
    }
    return touched;
  }

  publish(entry, touched) {
    this.globalLsn = entry.lsn;
    const tables = new Set(entry.changes.map((c) => c.table));
    const chunkBytesOf = (t) => t.chunkBytes ?? this.config.chunk_bytes;
    for (const shape of [...this.shapes.values()]) {
      if (!shape.dependsOnAny(tables)) continue;
      if (shape.onTransaction(entry, this, chunkBytesOf(shape.table))) touched.add(shape);
    }
    for (const shape of [...this.shapes.values()]) {
      if (shape.onSeenLsn?.(entry.lsn, this, chunkBytesOf(shape.table))) touched.add(shape);
    }
  }

  // A table's rows as the shapes have seen them so far: the committed rows
  // with the changes of unpublished transactions taken back.
  publishedRows(table) {
    if (this.unpublished.length === 0) return table.rowsIterator();
    if (!this.overlay) {
      this.overlay = new Map();
      for (const e of this.unpublished) {
        for (const ch of e.changes) {
          if (!this.overlay.has(ch.table)) this.overlay.set(ch.table, new Map());
          const before = this.overlay.get(ch.table);
          for (const row of [ch.old, ch.new]) {
            if (!row) continue;
            const key = ch.table.keyOf(row);
            if (!before.has(key)) before.set(key, row === ch.old ? ch.old : null);
          }
        }
      }
    }
    const before = this.overlay.get(table);
    if (!before) return table.rowsIterator();
    return (function* published() {
      for (const row of table.rowsIterator()) if (!before.has(table.keyOf(row))) yield row;
      for (const row of before.values()) if (row) yield row;
    })();
  }

  applyOp({ table, op, row, new_key: newKey, old }, undo) {
    const remember = (key) => undo.push([table, key, table.get(key)]);
    if (op === 'insert') {
      const full = table.normalizeRow(row);
      table.checkNotNull(full);
      const key = table.keyOf(full);
      if (table.get(key)) throw new InputError(`duplicate key ${key}`);
      remember(key);
      table.put(key, full);
      return { table, kind: 'insert', old: null, new: full };
    }
    if (op !== 'update' && op !== 'delete') throw new InputError(`unknown op ${op}`);
    const ident = old ?? row;
    if (!ident) throw new InputError(`${op} needs a row`);
    const identRow = table.normalizeRow(ident, { partial: true });
    const lookup = table.pk.length > 0 ? Object.fromEntries(table.pk.map((c) => [c, identRow[c]])) : identRow;
    if (table.pk.length > 0 && table.pk.some((c) => lookup[c] === undefined)) {
      throw new InputError(`${op} must give the primary key (${table.pk.join(', ')})`);
    }
    if (table.pk.length === 0 && Object.keys(lookup).length !== table.columns.length) {
      throw new InputError(`${op} on a table without primary key must give every column (in "old" for updates)`);
    }
    const key = table.keyOf(lookup);
    const current = table.get(key);
    if (!current) throw new InputError(`no row with key ${key}`);
    if (op === 'delete') {
      remember(key);
      table.remove(key);
      return { table, kind: 'delete', old: current, new: null };
    }
    const patch = old ? table.normalizeRow(row ?? {}, { partial: true }) : identRow;
    const next = { ...current, ...patch };
    if (newKey) {
      const np = table.normalizeRow(newKey, { partial: true });
      for (const c of Object.keys(np)) {
        if (!table.pk.includes(c)) throw new InputError(`new_key column ${c} is not a primary key column`);
      }
      Object.assign(next, np);
    }
    table.checkNotNull(next);
    const nextKey = table.keyOf(next);
    remember(key);
    if (nextKey !== key) {
      if (table.get(nextKey)) throw new InputError(`duplicate key ${nextKey}`);
      remember(nextKey);
      table.remove(key);
    }
    table.put(nextKey, next);
    return { table, kind: 'update', old: current, new: next };
  }
}
