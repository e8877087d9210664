// Builds a table from a real Postgres table, rendering values exactly as
// Electric's snapshot query does: columns cast to text under Electric's
// pinned display settings, and column metadata from the catalog the way
// Electric's inspector reads it (attndims, element type for arrays, typmod).

import { InputError } from './table.js';
import { parseRelation } from './idents.js';

const DISPLAY_SETTINGS = [
  'SET bytea_output = hex',
  "SET DateStyle = 'ISO, DMY'",
  "SET TimeZone = 'UTC'",
  "SET IntervalStyle = 'iso_8601'",
  'SET extra_float_digits = 1',
];

// libpq "key=value" strings -> pg client options (URLs are passed through).
export function parseConninfo(conninfo) {
  if (typeof conninfo !== 'string' || conninfo.trim() === '') throw new InputError('conninfo is required');
  if (/^postgres(ql)?:\/\//.test(conninfo)) return { connectionString: conninfo };
  const opts = {};
  const re = /\s*([A-Za-z_]+)\s*=\s*('((?:\\.|[^'])*)'|\S*)/g;
  let m;
  while ((m = re.exec(conninfo))) {
    const value = m[3] !== undefined ? m[3].replace(/\\(.)/g, '$1') : m[2];
    const map = { dbname: 'database', user: 'user', password: 'password', host: 'host', port: 'port' };
    if (map[m[1]]) opts[map[m[1]]] = m[1] === 'port' ? Number(value) : value;
  }
  return opts;
}

const TIME_TYPES = new Set(['time', 'timetz', 'timestamp', 'timestamptz']);
const INTERVAL_UNITS = [['YEAR', 1 << 2], ['MONTH', 1 << 1], ['DAY', 1 << 3], ['HOUR', 1 << 10], ['MINUTE', 1 << 11], ['SECOND', 1 << 12]];

// Electric.Schema's add_modifier: type modifiers as electric-schema fields.
export function modifierFields(type, typmod) {
  if (typmod > 0 && (type === 'varchar' || type === 'text')) return { max_length: typmod - 4 };
  if (typmod > 0 && type === 'bpchar') return { length: typmod - 4 };
  if (type === 'bit' || type === 'varbit') return { length: typmod };
  if (type === 'interval' && typmod > -1) {
    const range = (typmod >> 16) & 0xffff;
    const precision = (typmod << 16) >> 16;
    const out = {};
    if (range !== 0x7fff) {
      const units = INTERVAL_UNITS.filter(([, mask]) => range & mask).map(([u]) => u);
      out.fields = units.length === 1 ? units[0] : `${units[0]} TO ${units[units.length - 1]}`;
    }
    if (precision !== -1) out.precision = precision;
    return out;
  }
  if (typmod > 0 && TIME_TYPES.has(type)) return { precision: typmod };
  if (type === 'numeric' && typmod > -1) {
    const v = typmod - 4;
    return { precision: (v >> 16) & 0xffff, scale: (v << 16) >> 16 };
  }
  if (typmod > -1) return { type_mod: typmod };
  return {};
}

const COLUMNS_SQL = `
SELECT a.attname AS name,
       a.attndims AS dims,
       a.atttypmod AS typmod,
       a.attnotnull AS not_null,
       t.typname AS type,
       et.typname AS elem_type,
       CASE WHEN t.typtype = 'd' THEN bt.typname END AS base_type,
       array_position(i.indkey, a.attnum) AS pk_position
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
  LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
  LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
 ORDER BY a.attnum`;

const quote = (s) => `"${s.replace(/"/g, '""')}"`;

// spec: {name, schema?, conninfo, source, primary_key?, page_rows?}
// Returns a table spec for Store.createTable.
export async function loadFromPg(spec) {
  if (typeof spec.source !== 'string') throw new InputError('source is required');
  let src;
  try {
    src = parseRelation(spec.source);
  } catch (e) {
    throw new InputError(`bad source: ${e.message}`);
  }
  // Loaded on demand so that the server itself needs no npm packages.
  const { default: pg } = await import('pg');
  const client = new pg.Client({ ...parseConninfo(spec.conninfo), connectionTimeoutMillis: 10000 });
  try {
    await client.connect();
  } catch (e) {
    throw new InputError(`cannot connect: ${e.message}`);
  }
  try {
    for (const s of DISPLAY_SETTINGS) await client.query(s);
    const { rows: cols } = await client.query(COLUMNS_SQL, [src.schema, src.name]);
    if (cols.length === 0) throw new InputError(`source table ${src.schema}.${src.name} not found`);
    const catalogPk = cols.filter((c) => c.pk_position !== null).sort((a, b) => a.pk_position - b.pk_position).map((c) => c.name);
    const primaryKey = spec.primary_key ?? catalogPk;
    const columns = cols.map((c) => {
      // Arrays are described by their element type plus dims (attndims).
      const isArray = c.elem_type !== null && c.dims > 0;
      const type = isArray ? c.elem_type : c.type;
      return {
        name: c.name,
        type,
        dims: isArray ? c.dims : 0,
        not_null: c.not_null,
        base_type: c.base_type,
        ...modifierFields(type, c.typmod),
      };
    });
    // ::text, except that casting char(n) to text trims its padding, so (like
    // current Electric) bpchar goes through concat() to keep it.
    const select = cols
      .map((c) => {
        const col = quote(c.name);
        return c.type === 'bpchar' ? `CASE WHEN ${col} IS NULL THEN NULL ELSE concat(${col}, '') END` : `${col}::text`;
      })
      .join(', ');
    const res = await client.query({ text: `SELECT ${select} FROM ${quote(src.schema)}.${quote(src.name)}`, rowMode: 'array' });
    const rows = res.rows.map((r) => Object.fromEntries(cols.map((c, i) => [c.name, r[i]])));
    return {
      name: spec.name,
      schema: spec.schema ?? 'public',
      columns,
      primary_key: primaryKey,
      page_rows: spec.page_rows ?? null,
      chunk_bytes: spec.chunk_bytes ?? null,
      rows,
    };
  } finally {
    await client.end().catch(() => {});
  }
}
