// Subset snapshots (Electric's Api.Params.SubsetParams, Shape.Subset,
// SnapshotQuery.execute_for_subset, Encoder.JSON.subset): the shape's rows
// that also match `where`, ordered, offset and limited, read from the
// committed rows together with the snapshot they were read in. The answer is
// {"metadata": {database_lsn, snapshot_mark, xip_list, xmax, xmin}, "data": [inserts]}.

import { ValidationError } from './shape.js';
import { compileAst, compileValue, compareTyped, parseWhere, validateParams, WhereError } from './where.js';

export const SUBSET_KEYS = ['where', 'order_by', 'limit', 'offset', 'params', 'where_expr', 'order_by_expr'];

const fail = (field, msg) => new ValidationError({ subset: { [field]: [msg] } });

// Ecto's :integer cast: integers or strings of digits.
function castInt(v, field) {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  if (typeof v === 'string' && /^[+-]?\d+$/.test(v.trim())) return Number(v);
  throw fail(field, 'is invalid');
}

function castParams(v) {
  if (v === undefined || v === null) return {};
  let obj = v;
  if (typeof v === 'string') {
    try {
      obj = JSON.parse(v);
    } catch {
      throw fail('params', 'params must be valid JSON');
    }
    if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw fail('params', 'params must be a JSON object');
  } else if (typeof v !== 'object' || Array.isArray(v)) throw fail('params', 'is invalid');
  return Object.fromEntries(Object.entries(obj).map(([k, x]) => [k, typeof x === 'object' && x !== null ? JSON.stringify(x) : String(x)]));
}

// Splits on commas outside quotes and parentheses.
function splitList(text) {
  const out = [];
  let depth = 0;
  let quote = null;
  let cur = '';
  for (const ch of text) {
    if (quote) {
      if (ch === quote) quote = null;
    } else if (ch === "'" || ch === '"') quote = ch;
    else if (ch === '(') depth++;
    else if (ch === ')') depth--;
    else if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
      continue;
    }
    cur += ch;
  }
  out.push(cur);
  return out;
}

function compileOrderBy(text, columns) {
  return splitList(text).map((item) => {
    const m = /^(.*?)(?:\s+(asc|desc))?(?:\s+nulls\s+(first|last))?\s*$/is.exec(item.trim());
    const desc = (m[2] ?? '').toLowerCase() === 'desc';
    const nullsFirst = m[3] ? m[3].toLowerCase() === 'first' : desc; // Postgres: NULLS LAST for ASC
    if (m[1].trim() === '') throw new WhereError('At location 0: syntax error at end of input', 'order_by');
    const e = compileValue(parseWhere(m[1]), columns);
    return { ...e, desc, nullsFirst };
  });
}

// Validates the subset parameters; returns a runnable subset.
export function parseSubset(raw, def) {
  const limit = castInt(raw.limit, 'limit');
  const offset = castInt(raw.offset, 'offset');
  const params = castParams(raw.params);
  if (limit !== undefined && limit <= 0) throw fail('limit', 'must be greater than 0');
  if (offset !== undefined && offset < 0) throw fail('offset', 'must be greater than or equal to 0');
  if ((limit !== undefined || offset !== undefined) && (raw.order_by === undefined || raw.order_by === null)) {
    throw fail('order_by', 'order_by is required when limit or offset is present');
  }
  const columns = def.table.columns;
  const compiled = (field, fn) => {
    try {
      return fn();
    } catch (e) {
      if (e instanceof WhereError) throw fail(e.field === 'params' ? 'params' : field, e.message);
      throw e;
    }
  };
  const order = raw.order_by === undefined || raw.order_by === null ? null : compiled('order_by', () => compileOrderBy(String(raw.order_by), columns));
  const where = raw.where === undefined || raw.where === null ? null : compiled('where', () => {
    validateParams(params);
    return compileAst(parseWhere(String(raw.where)), columns, params).test;
  });
  return { where, order, limit, offset };
}

// Runs the subset against the committed rows; returns {metadata, rows (JSON texts)}.
export function runSubset(subset, shape, store, debug = {}) {
  const { def } = shape;
  const views = def.plan && def.plan.views((t) => t.rowsIterator());
  let rows = [];
  for (const row of def.table.rowsIterator()) {
    if (def.whereTest && !def.whereTest(row)) continue;
    if (views && !def.plan.includes(row, views)) continue;
    if (subset.where && !subset.where(row)) continue;
    rows.push(row);
  }
  if (subset.order) {
    const keyed = rows.map((row) => ({ row, keys: subset.order.map((o) => safe(() => o.f(row))) }));
    keyed.sort((a, b) => {
      for (let i = 0; i < subset.order.length; i++) {
        const o = subset.order[i];
        const x = a.keys[i];
        const y = b.keys[i];
        if (x === null || y === null) {
          if (x === y) continue;
          return (x === null) === o.nullsFirst ? -1 : 1;
        }
        const c = compareTyped(o.type, x, y);
        if (c !== 0) return o.desc ? -c : c;
      }
      return 0;
    });
    rows = keyed.map((k) => k.row);
  }
  const start = subset.offset ?? 0;
  rows = rows.slice(start, subset.limit !== undefined ? start + subset.limit : undefined);
  const mark = Math.floor(Math.random() * 2 ** 31);
  let { xmin, xmax, xip } = store.snapshot();
  // Debug switch: a broken server that forgets in-progress transactions.
  if (debug.subset_hide_in_progress) [xmin, xip] = [xmax, []];
  const rendered = rows.map((row) => (views
    ? shape.sub.renderRow(row, views, { snapshot_mark: mark })
    : shape.renderSnapshotRow(row, { snapshot_mark: mark })));
  // One past the last commit, like pg_current_wal_lsn(): every transaction
  // in the snapshot has a smaller lsn.
  const databaseLsn = (store.committedLsn + 1n).toString();
  const metadata = { database_lsn: databaseLsn, snapshot_mark: mark, xip_list: xip.map(String), xmax: String(xmax), xmin: String(xmin) };
  return { metadata, rows: rendered };
}

function safe(fn) {
  try {
    return fn();
  } catch {
    return null;
  }
}

// Electric writes `{"metadata":...,` then `"data": [...]}` with that spacing.
export function subsetBody({ metadata, rows }) {
  return [`{"metadata":${JSON.stringify(metadata)}, "data": [`, rows.join(','), ']}'];
}
