// Large deterministic benchmark tables. Rows are a pure function of their id,
// so a million of them cost no memory; snapshot pages are rendered once into
// Buffers so that serving them is a plain socket write. Later writes are kept
// as overrides on top of the generated rows.

import { Table, InputError } from './table.js';

const COLUMNS = [
  { name: 'id', type: 'int8' },
  { name: 'title', type: 'text' },
  { name: 'done', type: 'bool' },
  { name: 'created_at', type: 'timestamptz' },
  { name: 'amount', type: 'numeric' },
];
const BASE_TIME_MS = Date.UTC(2024, 0, 1);
const pad2 = (n) => (n < 10 ? `0${n}` : String(n));

export function generatedRow(id) {
  const d = new Date(BASE_TIME_MS + id * 37000);
  const cents = (id * 7919) % 1000000;
  return {
    id: String(id),
    title: `Item #${id}: lorem ipsum dolor sit`,
    done: id % 3 === 0 ? 'true' : 'false',
    created_at: `${d.getUTCFullYear()}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())} ${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())}+00`,
    amount: `${Math.floor(cents / 100)}.${pad2(cents % 100)}`,
  };
}

export class GeneratedTable extends Table {
  constructor({ schema = 'public', name, rows, pageRows = null, chunkBytes = null }) {
    if (!Number.isInteger(rows) || rows < 1 || rows > 50_000_000) throw new InputError('rows must be an integer in 1..50000000');
    super({ schema, name, columns: COLUMNS, primaryKey: ['id'], pageRows, chunkBytes });
    this.n = rows;
    this.overrides = new Map(); // id string -> row, or null when deleted
    this.deleted = 0;
    this.extras = new Map(); // key -> row, for ids outside 1..n
    this.pageCache = new Map(); // chunk_bytes -> {list, lastClosed}
    const rel = JSON.stringify([schema, name]);
    const keyPrefix = JSON.stringify(this.prefix).slice(0, -1); // opening quote kept, closing dropped
    // Exactly what Shape.renderSnapshotRow produces, built by concatenation.
    this.renderRow = (r) =>
      `{"key":${keyPrefix}/\\"${r.id}\\"","value":{"id":"${r.id}","title":"${r.title}","done":"${r.done}",` +
      `"created_at":"${r.created_at}","amount":"${r.amount}"},"headers":{"operation":"insert","relation":${rel}}}`;
  }

  idOf(key) {
    const id = key.slice(this.prefix.length + 2, -1);
    return /^[1-9]\d*$/.test(id) && Number(id) <= this.n ? id : null;
  }

  get(key) {
    const id = this.idOf(key);
    if (id === null) return this.extras.get(key);
    if (this.overrides.has(id)) return this.overrides.get(id) ?? undefined;
    return generatedRow(Number(id));
  }

  put(key, row) {
    const id = this.idOf(key);
    if (id === null) return void this.extras.set(key, row);
    if (this.overrides.get(id) === null) this.deleted--;
    this.overrides.set(id, row);
  }

  remove(key) {
    const id = this.idOf(key);
    if (id === null) return void this.extras.delete(key);
    if (this.overrides.get(id) !== null) this.deleted++;
    this.overrides.set(id, null);
  }

  *rowsIterator() {
    for (let i = 1; i <= this.n; i++) {
      const o = this.overrides.get(String(i));
      if (o === null) continue;
      yield o ?? generatedRow(i);
    }
    yield* this.extras.values();
  }

  get rowCount() {
    return this.n - this.deleted + this.extras.size;
  }

  loadRows(rows) {
    if (rows.length) throw new InputError('generated tables take no rows');
  }

  // Pages split by Electric's rule (boundary after the row reaching the byte
  // threshold, or page_rows). Only valid while the table is untouched.
  prerenderedPages(chunkBytes) {
    if (this.overrides.size > 0 || this.extras.size > 0) return null;
    let pages = this.pageCache.get(chunkBytes);
    if (!pages) {
      pages = this.renderPages(chunkBytes);
      this.pageCache.clear();
      this.pageCache.set(chunkBytes, pages);
    }
    return pages;
  }

  renderPages(chunkBytes) {
    // Rows are written straight into page buffers: joining millions of
    // strings first is several times slower.
    const list = [];
    let buf = Buffer.allocUnsafe(Math.min(chunkBytes, 1 << 24) + 4096);
    let pos = 0;
    let rows = 0;
    let bytes = 0;
    for (let i = 1; i <= this.n; i++) {
      const json = this.renderRow(generatedRow(i)); // ASCII only
      if (pos + json.length + 1 > buf.length) {
        const bigger = Buffer.allocUnsafe(Math.max(buf.length * 2, pos + json.length + 4096));
        buf.copy(bigger, 0, 0, pos);
        buf = bigger;
      }
      if (rows > 0) buf[pos++] = 0x2c; // ','
      pos += buf.latin1Write(json, pos);
      rows++;
      bytes += json.length;
      if (bytes >= chunkBytes || (this.pageRows && rows >= this.pageRows)) {
        list.push(Buffer.from(buf.subarray(0, pos))); // a right-sized copy; buf is reused
        pos = 0;
        rows = 0;
        bytes = 0;
      }
    }
    const lastClosed = rows === 0;
    if (!lastClosed) list.push(Buffer.from(buf.subarray(0, pos)));
    return { list, lastClosed };
  }

}
