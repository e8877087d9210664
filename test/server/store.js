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
    this.globalLsn = LSN_START; // Electric's global_last_seen_lsn
    this.nextXid = XID_START;
    this.tableVersion = 0;
  }

  setConfig(patch) {
    if (!patch || typeof patch !== 'object') throw new InputError('config must be an object');
    for (const [k, v] of Object.entries(patch)) {
      if (!CONFIG_KEYS.includes(k)) throw new InputError(`unknown config key ${k}`);
      if (!Number.isInteger(v) || v < (k === 'chunk_bytes' ? 1 : 0)) throw new InputError(`${k} must be a non-negative integer`);
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
      if (shape.table === table) {
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

  // ops: [{table, op: insert|update|delete, row, new_key?, old?}]. Applies all
  // or nothing, then appends the transaction to the affected shapes' logs.
  // Returns {lsn, xid, touched: Set<Shape>}.
  applyTransaction(ops, { xid } = {}) {
    if (!Array.isArray(ops) || ops.length === 0) throw new InputError('a transaction needs at least one op');
    if (xid !== undefined && !(Number.isInteger(xid) && xid > 0 && xid < 2 ** 32)) {
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
      throw e;
    }
    const txid = xid ?? this.nextXid;
    this.nextXid = Math.max(this.nextXid, txid) + 1;
    this.globalLsn += LSN_STEP;
    const lsn = this.globalLsn;
    const touched = new Set();
    const byTable = new Map();
    for (const ch of changes) {
      if (!byTable.has(ch.table)) byTable.set(ch.table, []);
      byTable.get(ch.table).push(ch);
    }
    for (const [table, tableChanges] of byTable) {
      for (const shape of this.shapesOn(table)) {
        const chunkBytes = table.chunkBytes ?? this.config.chunk_bytes;
        if (shape.appendTransaction(tableChanges, lsn, txid, chunkBytes)) touched.add(shape);
      }
    }
    return { lsn, xid: txid, touched };
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
