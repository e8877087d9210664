// Shapes: definition parsing/validation (Electric's Shape.new), the frozen
// initial snapshot split into chunks, and the per-shape change log built from
// committed transactions (Electric's Shape.convert_change + LogItems).

import { parseRelation, parseColumnList, inspectRelation, IdentError } from './idents.js';
import { compileAst, parseWhere, WhereError } from './where.js';
import { columnSchema, isBoolColumn, buildKey } from './table.js';
import { compareOffsets, offset, isBeforeAll, isVirtual, LAST_VIRTUAL } from './offsets.js';
import { planSubqueries } from './subquery.js';
import { SubqueryLog } from './subquery_log.js';

// Thrown for 400 "Invalid request" answers; `errors` is Electric's errors map.
export class ValidationError extends Error {
  constructor(errors) {
    super('Invalid request');
    this.errors = errors;
  }
}

const invalid = (field, msg) => new ValidationError({ [field]: [msg] });

// Builds a shape definition from request parameters, or throws ValidationError.
export function parseShapeDefinition(q, store) {
  if (q.table === undefined || q.table === '') throw invalid('table', "can't be blank");
  let rel;
  try {
    rel = parseRelation(q.table);
  } catch (e) {
    if (e instanceof IdentError) throw invalid('table', e.message);
    throw e;
  }
  const table = store.getTable(rel.schema, rel.name);
  if (!table) {
    throw invalid(
      'table',
      `Table ${inspectRelation(rel.schema, rel.name)} does not exist. ` +
        'If the table name contains capitals or special characters you must quote it.',
    );
  }

  let columns = null;
  if (q.columns !== undefined) {
    let list;
    try {
      list = parseColumnList(q.columns);
    } catch (e) {
      if (e instanceof IdentError) throw invalid('columns', e.message);
      throw e;
    }
    const missingPk = table.pk.filter((c) => !list.includes(c));
    const unknown = list.filter((c) => !table.colByName.has(c));
    if (missingPk.length > 0) {
      throw invalid('columns', `The list of columns must include all primary key columns, missing: ${missingPk.join(', ')}`);
    }
    if (unknown.length > 0) throw invalid('columns', `The following columns are not found on the table: ${unknown.join(', ')}`);
    columns = [...new Set(list)].sort();
  }

  const params = q.params ?? {};
  let where = null;
  let whereTest = null;
  let plan = null;
  if (q.where !== undefined && q.where !== null) {
    try {
      const ast = parseWhere(q.where);
      plan = planSubqueries(q.where, ast, table, params, store);
      whereTest = plan ? null : compileAst(ast, table.columns, params).test;
    } catch (e) {
      if (e instanceof WhereError) throw invalid(e.field, e.message);
      throw e;
    }
    where = q.where;
  }

  const selected = table.columns.filter((c) => !columns || columns.includes(c.name));
  const def = {
    table,
    where,
    whereTest,
    plan, // subquery shapes only (see subquery.js)
    params: where === null ? {} : params,
    columns,
    selected,
    selectsAll: columns === null || columns.length === table.columns.length,
    replica: q.replica ?? 'default',
    log: q.log ?? 'full',
  };
  // Two requests name the same shape iff this key matches (Electric compares
  // the parsed definition; the normalised text is close enough here).
  // A subquery shape also depends on the versions of its inner tables.
  const depVersions = plan ? [...plan.tables].map((t) => [t.qualified, t.version]) : [];
  def.key = JSON.stringify([
    table.schema, table.name, table.version, where && where.trim(), def.params, columns, def.replica, def.log, depVersions,
  ]);
  return def;
}

// A 27-bit hash of the definition, like Electric's phash2-based handle prefix.
function hashDef(key) {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h & 0x7ffffff;
}

let lastMicros = 0;
// Handles are "<hash>-<µs timestamp>" and never reused (the µs clock only moves forward).
export function newHandle(defKey) {
  const now = Date.now() * 1000;
  lastMicros = Math.max(now, lastMicros + 1);
  return `${hashDef(defKey)}-${lastMicros}`;
}

const sortedObject = (obj) => Object.fromEntries(Object.keys(obj).sort().map((k) => [k, obj[k]]));

export class Shape {
  constructor(def, store) {
    this.def = def;
    this.table = def.table;
    this.handle = newHandle(def.key);
    this.relation = [def.table.schema, def.table.name];
    this.schemaJson = JSON.stringify(
      Object.fromEntries(def.selected.map((c) => c.name).sort().map((n) => [n, columnSchema(def.table.colByName.get(n))])),
    );
    this.log = []; // [{off, json}] in offset order
    this.logChunks = []; // closed chunks, by the offset of their last item: [{max}]
    this.bytesInChunk = 0;
    this.lastLogOffset = null; // offset of the last item of the last transaction
    this.waiters = new Set();
    this.dead = false;
    // Transactions committed up to here are in the snapshot; the ones among
    // them that are still to be published must not be logged again.
    this.snapshotLsn = store.committedLsn;
    this.pgSnapshot = store.snapshot();
    this.sub = def.plan ? new SubqueryLog(this, def.plan, store) : null;
    this.buildSnapshot(store);
  }

  dependsOnAny(tables) {
    if (tables.has(this.table)) return true;
    return this.sub !== null && [...this.def.plan.tables].some((t) => tables.has(t));
  }

  // The snapshot is taken once, when the shape is created, and split into
  // chunks the way Electric's LogChunker does: a boundary goes after the row
  // that brings the chunk to the byte threshold (or, here, to `page_rows`).
  // snapshot-end follows the last row and never closes a chunk itself.
  buildSnapshot(store) {
    const { def, table } = this;
    const { xmin, xmax, xip } = this.pgSnapshot;
    const snapshotEnd = JSON.stringify({ headers: { control: 'snapshot-end', xip_list: xip.map(String), xmax: String(xmax), xmin: String(xmin) } });
    const threshold = table.chunkBytes ?? store.config.chunk_bytes;
    const pages = def.log === 'full' && !def.where && def.selectsAll && table.prerenderedPages?.(threshold);
    if (pages) {
      // Pre-rendered benchmark pages (Buffers of comma-joined rows); only
      // snapshot-end differs per shape.
      this.snapshot = pages.list.map((buf) => ({ parts: [buf] }));
      if (pages.lastClosed) this.snapshot.push({ parts: [snapshotEnd] });
      else this.snapshot[this.snapshot.length - 1].parts.push(snapshotEnd);
      return;
    }
    const pageRows = table.pageRows;
    const chunks = [];
    let cur = [];
    let bytes = 0;
    // Subquery shapes are queried with views of the committed rows, as
    // Electric's snapshot query runs the subqueries itself.
    const views = this.sub && def.plan.views((t) => t.rowsIterator());
    if (def.log === 'full') {
      for (const row of table.rowsIterator()) {
        if (def.whereTest && !def.whereTest(row)) continue;
        if (views && !def.plan.includes(row, views)) continue;
        const json = views ? this.sub.renderRow(row, views) : this.renderSnapshotRow(row);
        cur.push(json);
        bytes += Buffer.byteLength(json);
        if (bytes >= threshold || (pageRows && cur.length >= pageRows)) {
          chunks.push(cur);
          cur = [];
          bytes = 0;
        }
      }
    }
    cur.push(snapshotEnd);
    chunks.push(cur);
    this.snapshot = chunks.map((items) => ({ parts: [items.join(',')] }));
  }

  renderSnapshotRow(row, extraHeaders = {}) {
    const value = {};
    for (const c of this.def.selected) value[c.name] = row[c.name];
    return JSON.stringify({
      key: buildKey(this.table.prefix, row, this.table.pk),
      value,
      headers: { operation: 'insert', relation: this.relation, ...extraHeaders },
    });
  }

  get lastSnapshotChunk() {
    return this.snapshot.length - 1;
  }

  // Electric's "latest offset": the last transaction's last item, or the last
  // snapshot chunk while the log is empty.
  get lastOffset() {
    return this.lastLogOffset ?? offset(0, this.lastSnapshotChunk);
  }

  // End offset of the chunk served for a request at `since`, or null when the
  // request falls in the open (last) log chunk (the caller then uses lastOffset).
  chunkEndFor(since) {
    if (isBeforeAll(since)) return offset(0, 0);
    if (isVirtual(since) && since.op !== Infinity && since.op < this.lastSnapshotChunk) {
      return offset(0, since.op + 1);
    }
    const from = isVirtual(since) ? LAST_VIRTUAL : since;
    let lo = 0;
    let hi = this.logChunks.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareOffsets(this.logChunks[mid].max, from) > 0) hi = mid;
      else lo = mid + 1;
    }
    return lo < this.logChunks.length ? this.logChunks[lo].max : null;
  }

  // Segments to join with "," for (since, upTo]: message JSON texts, or for
  // snapshot chunks pre-joined runs of messages (strings or Buffers).
  itemsBetween(since, upTo) {
    if (isBeforeAll(since)) return this.snapshotChunkParts(0);
    if (isVirtual(since) && since.op < this.lastSnapshotChunk) return this.snapshotChunkParts(since.op + 1);
    if (isVirtual(upTo)) return []; // at the end of the snapshot, nothing logged yet
    const from = isVirtual(since) ? LAST_VIRTUAL : since;
    const start = this.firstIndexAfter(from);
    const parts = [];
    for (let i = start; i < this.log.length && compareOffsets(this.log[i].off, upTo) <= 0; i++) parts.push(this.log[i].json);
    return parts;
  }

  snapshotChunkParts(i) {
    return this.snapshot[i]?.parts ?? [];
  }

  firstIndexAfter(off) {
    let lo = 0;
    let hi = this.log.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareOffsets(this.log[mid].off, off) > 0) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  // ---- live changes ----

  keyOf(rec) {
    return buildKey(this.table.prefix, rec, this.table.pk);
  }

  keyOfRow(row) {
    return buildKey(this.table.prefix, row, this.table.pk);
  }

  pkOrAll(rec) {
    return this.def.replica === 'full' || this.table.pk.length === 0 ? rec : pick(rec, this.table.pk);
  }

  // One published transaction; returns true if the log grew.
  onTransaction(entry, store, chunkBytes) {
    const skip = entry.lsn <= this.snapshotLsn;
    if (this.sub) return this.appendItems(this.sub.onTransaction(entry, store, skip), chunkBytes);
    if (skip) return false;
    const changes = entry.changes.filter((c) => c.table === this.table);
    if (changes.length === 0) return false;
    return this.appendItems(this.convertTransaction(changes, entry.lsn, entry.xid), chunkBytes);
  }

  onSeenLsn(lsn, store, chunkBytes) {
    return this.sub ? this.appendItems(this.sub.onSeenLsn(lsn, store), chunkBytes) : false;
  }

  // The shape's view of one transaction as log items {off, json}; `views`
  // (subquery shapes) are the dependency views to evaluate it with.
  convertTransaction(changes, lsn, xid, views = null) {
    const items = [];
    for (const ch of changes) {
      if (views) this.sub.convertChange(ch, lsn, xid, views, items);
      else this.convertChange(ch, lsn, xid, items);
    }
    if (items.length === 0) return [];
    items[items.length - 1].headers.last = true;
    return items.map((it) => {
      const { off } = it;
      delete it.off;
      return { off, json: JSON.stringify(orderItem(it)) };
    });
  }

  // Appends items; those without an offset (control and event messages,
  // move-in rows) take the next one after the last item, as Electric's
  // storage does. Returns true if anything was appended.
  appendItems(items, chunkBytes) {
    for (const { off, json } of items) {
      let at = off;
      if (!at) {
        const last = this.lastLogOffset ?? LAST_VIRTUAL;
        at = last.op === Infinity ? offset(1, 0) : offset(last.tx, last.op + 1);
      }
      this.log.push({ off: at, json });
      this.lastLogOffset = at;
      this.bytesInChunk += Buffer.byteLength(json);
      if (this.bytesInChunk >= chunkBytes) {
        this.logChunks.push({ max: at });
        this.bytesInChunk = 0;
      }
    }
    return items.length > 0;
  }

  convertChange(ch, lsn, xid, out) {
    const { def } = this;
    const test = def.whereTest;
    let kind = ch.kind;
    if (kind === 'insert' && test && !test(ch.new)) return;
    if (kind === 'delete' && test && !test(ch.old)) return;
    if (kind === 'update' && test) {
      const oldIn = test(ch.old);
      const newIn = test(ch.new);
      if (!oldIn && !newIn) return;
      // Updates that move a row into or out of the shape become an insert or a delete.
      if (!oldIn) kind = 'move_in';
      else if (!newIn) kind = 'move_out';
    }
    const oldRec = ch.old && this.liveRecord(ch.old);
    const newRec = ch.new && this.liveRecord(ch.new);
    const pk = this.table.pk;
    const keyOf = (rec) => this.keyOf(rec);
    const base = (op, operation) => ({
      operation, txids: [xid], relation: this.relation, lsn: lsn.toString(), op_position: op,
    });
    const pkOrAll = (rec) => this.pkOrAll(rec);
    const at = (op) => offset(lsn, op);

    if (kind === 'insert' || kind === 'move_in') {
      out.push({ off: at(ch.op), key: keyOf(newRec), value: newRec, headers: base(ch.op, 'insert') });
    } else if (kind === 'delete' || kind === 'move_out') {
      out.push({ off: at(ch.op), key: keyOf(oldRec), value: pkOrAll(oldRec), headers: base(ch.op, 'delete') });
    } else {
      const changed = Object.keys(newRec).filter((c) => newRec[c] !== oldRec[c]);
      if (changed.length === 0) return; // nothing the shape can see changed
      const oldKey = keyOf(oldRec);
      const newKey = keyOf(newRec);
      if (oldKey !== newKey) {
        // A key change is a delete of the old key then an insert of the new one.
        out.push({
          off: at(ch.op), key: oldKey, value: pkOrAll(oldRec),
          headers: { ...base(ch.op, 'delete'), key_change_to: newKey },
        });
        out.push({
          off: at(ch.op + 1), key: newKey, value: newRec,
          headers: { ...base(ch.op + 1, 'insert'), key_change_from: oldKey },
        });
      } else if (def.replica === 'full') {
        out.push({ off: at(ch.op), key: newKey, value: newRec, old_value: pick(oldRec, changed), headers: base(ch.op, 'update') });
      } else {
        out.push({ off: at(ch.op), key: newKey, value: pick(newRec, [...pk, ...changed]), headers: base(ch.op, 'update') });
      }
    }
  }

  // Selected columns as logical replication prints them (bool as t/f).
  liveRecord(row) {
    const rec = {};
    for (const c of this.def.selected) {
      let v = row[c.name];
      if (v !== null && isBoolColumn(c)) v = v === 'true' ? 't' : v === 'false' ? 'f' : v;
      rec[c.name] = v;
    }
    return rec;
  }

  notify(event) {
    for (const w of [...this.waiters]) w(event);
  }
}

function pick(rec, cols) {
  const out = {};
  for (const c of cols) if (c in rec) out[c] = rec[c];
  return out;
}

// Jason encodes small maps with sorted keys; mirror that for log items.
function orderItem(it) {
  const o = { headers: sortedObject(it.headers), key: it.key };
  if (it.old_value) o.old_value = sortedObject(it.old_value);
  o.value = sortedObject(it.value);
  return o;
}
