// In-memory tables: column metadata (rendered into electric-schema exactly as
// Electric's Schema module does), row storage keyed by the Electric row key,
// and the value conventions (every non-null value is Postgres text output).

export class InputError extends Error {}

export const NUMERIC_TYPES = new Set(['int2', 'int4', 'int8', 'float4', 'float8', 'numeric', 'oid']);
const SCHEMA_EXTRAS = ['max_length', 'length', 'precision', 'scale', 'fields', 'type_mod'];

// Snapshot rows carry `"col"::text` output, where bool is true/false; logical
// replication output (live changes) uses t/f. Stored values use true/false.
export const isBoolColumn = (col) => col.dims === 0 && (col.type === 'bool' || col.base_type === 'bool');

const TRUE_WORDS = new Set(['t', 'true', 'y', 'yes', 'on', '1']);
const FALSE_WORDS = new Set(['f', 'false', 'n', 'no', 'off', '0']);

export function normalizeColumn(spec, pkIndex) {
  if (!spec || typeof spec.name !== 'string' || spec.name === '') throw new InputError('column needs a name');
  if (typeof spec.type !== 'string' || spec.type === '') throw new InputError(`column ${spec.name} needs a type`);
  const dims = spec.dims ?? 0;
  if (!Number.isInteger(dims) || dims < 0) throw new InputError(`column ${spec.name}: dims must be an integer >= 0`);
  const extras = {};
  for (const k of SCHEMA_EXTRAS) if (spec[k] !== undefined && spec[k] !== null) extras[k] = spec[k];
  return {
    name: spec.name,
    type: spec.type,
    dims,
    not_null: spec.not_null === true || pkIndex !== null,
    pk_index: pkIndex,
    base_type: spec.base_type ?? null,
    extras,
  };
}

// One column's electric-schema entry; Jason sorts small maps, so keys are sorted.
export function columnSchema(col) {
  const s = { type: col.type, ...col.extras };
  if (col.dims > 0) s.dims = col.dims;
  if (col.pk_index !== null) s.pk_index = col.pk_index;
  if (col.not_null) s.not_null = true;
  return Object.fromEntries(Object.keys(s).sort().map((k) => [k, s[k]]));
}

export function normalizeValue(col, v) {
  if (v === null || v === undefined) return null;
  if (isBoolColumn(col)) {
    const w = String(v).trim().toLowerCase();
    if (TRUE_WORDS.has(w)) return 'true';
    if (FALSE_WORDS.has(w)) return 'false';
    throw new InputError(`invalid input syntax for type boolean: "${v}" (column ${col.name})`);
  }
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  if (typeof v === 'object' && (col.type === 'json' || col.type === 'jsonb')) return JSON.stringify(v);
  throw new InputError(`column ${col.name}: values must be strings, numbers, booleans or null`);
}

const escRel = (s) => s.replace(/\//g, '//').replace(/\./g, '..');

export function relationPrefix(schema, name) {
  return `"${escRel(schema)}"."${escRel(name)}"`;
}

// Electric's row key: "schema"."table" then /"value" per PK column ("/" doubled,
// NULL as a bare _). Tables without a PK use every column, sorted by name.
export function buildKey(prefix, row, pkCols) {
  const cols = pkCols.length > 0 ? pkCols : Object.keys(row).sort();
  let key = prefix;
  for (const c of cols) {
    const v = row[c];
    key += v === null || v === undefined ? '/_' : `/"${v.replace(/\//g, '//')}"`;
  }
  return key;
}

export class Table {
  constructor({ schema = 'public', name, columns, primaryKey = [], pageRows = null, chunkBytes = null }) {
    if (typeof name !== 'string' || name === '') throw new InputError('table needs a name');
    if (!Array.isArray(columns) || columns.length === 0) throw new InputError('table needs columns');
    const names = columns.map((c) => c && c.name);
    if (new Set(names).size !== names.length) throw new InputError('duplicate column names');
    for (const pk of primaryKey) {
      if (!names.includes(pk)) throw new InputError(`primary key column ${pk} is not a column`);
    }
    if (pageRows !== null && !(Number.isInteger(pageRows) && pageRows > 0)) {
      throw new InputError('page_rows must be a positive integer');
    }
    if (chunkBytes !== null && !(Number.isInteger(chunkBytes) && chunkBytes > 0)) {
      throw new InputError('chunk_bytes must be a positive integer');
    }
    this.schema = schema;
    this.name = name;
    this.pk = [...primaryKey];
    this.columns = columns.map((c) => normalizeColumn(c, this.pk.includes(c.name) ? this.pk.indexOf(c.name) : null));
    this.colByName = new Map(this.columns.map((c) => [c.name, c]));
    this.pageRows = pageRows;
    this.chunkBytes = chunkBytes; // overrides the global chunk_bytes for this table's shapes
    this.prefix = relationPrefix(schema, name);
    this.rows = new Map(); // key -> row object with every column
  }

  get qualified() {
    return `${this.schema}.${this.name}`;
  }

  keyOf(row) {
    return buildKey(this.prefix, row, this.pk);
  }

  // Full row from user input: every column present, values normalised.
  normalizeRow(input, { partial = false } = {}) {
    if (!input || typeof input !== 'object' || Array.isArray(input)) throw new InputError('row must be an object');
    for (const k of Object.keys(input)) {
      if (!this.colByName.has(k)) throw new InputError(`unknown column ${k} in table ${this.name}`);
    }
    const row = {};
    for (const col of this.columns) {
      if (partial && !(col.name in input)) continue;
      row[col.name] = normalizeValue(col, input[col.name]);
    }
    return row;
  }

  checkNotNull(row) {
    for (const col of this.columns) {
      if (col.not_null && row[col.name] === null) {
        throw new InputError(`null value in column "${col.name}" violates not-null constraint`);
      }
    }
  }

  get(key) {
    return this.rows.get(key);
  }

  put(key, row) {
    this.rows.set(key, row);
  }

  remove(key) {
    this.rows.delete(key);
  }

  rowsIterator() {
    return this.rows.values();
  }

  get rowCount() {
    return this.rows.size;
  }

  loadRows(rows) {
    for (const input of rows) {
      const row = this.normalizeRow(input);
      this.checkNotNull(row);
      const key = this.keyOf(row);
      if (this.rows.has(key)) throw new InputError(`duplicate key ${key}`);
      this.rows.set(key, row);
    }
  }
}
