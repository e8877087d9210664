// Subquery shapes (`where` with `x [NOT] IN (SELECT ...)`), planned the way
// Electric 1.7 does it (Shapes.DnfPlan, Eval.Decomposer, SubqueryTags,
// Querying.move_in_where_clause):
//
// - each distinct subquery is a *dependency* whose view is the set of values
//   its rows select (identical subqueries share one dependency index);
// - the where clause is put in disjunctive normal form; every literal of
//   every disjunct is a *position* (positions are never shared);
// - a row's `tags` hold one string per disjunct, "/"-joined per position: the
//   md5 hash of the row's value for a subquery position, "1" for any other
//   position of that disjunct, "" for positions of other disjuncts;
// - its `active_conditions` are the per-position truth values, and a row is
//   in the shape when all positions of some disjunct are active.

import crypto from 'node:crypto';
import { compileAst, compilePredicate, viewKey, WhereError } from './where.js';
import { inspectRelation } from './idents.js';

export const STACK_ID = 'single_stack'; // Electric's default stack id; part of every tag hash
const MAX_DISJUNCTS = 100;

const stripPositions = (ast) => JSON.stringify(ast, (k, v) => (k === 'pos' || k === 'dep' || k === 'tagColumns' ? undefined : v));

// One `SELECT cols FROM table WHERE ...`: its table, selected columns, its own
// (possibly nested) dependencies and a filter over its table's rows.
class Dependency {
  constructor(index, select, store, params) {
    this.index = index;
    const table = store.getTable(select.schema, select.name);
    if (!table) {
      throw new WhereError(
        `Table ${inspectRelation(select.schema, select.name)} does not exist. ` +
          'If the table name contains capitals or special characters you must quote it.',
        'table',
      );
    }
    const unknown = select.columns.filter((c) => !table.colByName.has(c));
    if (unknown.length) throw new WhereError(`The following columns are not found on the table: ${unknown.join(', ')}`, 'columns');
    this.table = table;
    this.columnNames = select.columns;
    this.columns = select.columns.map((c) => table.colByName.get(c));
    this.resolver = new Resolver(store, params);
    this.test = select.where
      ? compileAst(select.where, table.columns, params, { subqueries: this.resolver }).test
      : null;
    this.tables = new Set([table, ...this.resolver.deps.flatMap((d) => [...d.tables])]);
  }

  // The set of viewKey values of the rows it selects, in the given row state.
  view(rowsOf) {
    this.resolver.views.current = this.resolver.deps.map((d) => d.view(rowsOf));
    const out = new Set();
    for (const row of rowsOf(this.table)) {
      if (this.test && !this.test(row)) continue;
      const k = viewKey(row, this.columnNames);
      if (k !== null) out.add(k); // NULLs never match IN, so they are left out of views
    }
    return out;
  }
}

// Hands out dependency indexes in order of first occurrence, deduplicated.
class Resolver {
  constructor(store, params) {
    this.store = store;
    this.params = params;
    this.deps = [];
    this.byKey = new Map();
    this.views = { current: [] };
  }

  resolve(select) {
    const key = stripPositions(select);
    let dep = this.byKey.get(key);
    if (!dep) {
      dep = new Dependency(this.deps.length, select, this.store, this.params);
      this.deps.push(dep);
      this.byKey.set(key, dep);
    }
    return dep;
  }
}

// Decomposer.to_dnf: NOT is pushed down (De Morgan), AND distributes over OR.
function toDnf(node, negated) {
  if (node.k === 'not') return toDnf(node.a, !negated);
  if (node.k === 'or' || node.k === 'and') {
    const a = toDnf(node.a, negated);
    const b = toDnf(node.b, negated);
    const union = (node.k === 'or') !== negated;
    if (union) return [...a, ...b];
    const out = [];
    for (const x of a) for (const y of b) out.push([...x, ...y]);
    return out;
  }
  return [[{ ast: node, negated }]];
}

function containsSublink(node) {
  if (!node || typeof node !== 'object') return false;
  if (node.k === 'sublink') return true;
  return Object.values(node).some((v) => (Array.isArray(v) ? v.some(containsSublink) : containsSublink(v)));
}

const md5 = (s) => crypto.createHash('md5').update(s).digest('hex');
const namespaced = (v) => (v === null || v === undefined ? 'NULL' : `v:${v}`);

// Compiles a shape's where clause; null when it has no subquery.
export function planSubqueries(whereText, ast, table, params, store) {
  if (!containsSublink(ast)) return null;
  const resolver = new Resolver(store, params);
  const where = compileAst(ast, table.columns, params, { subqueries: resolver });
  const literals = toDnf(ast, false);
  if (literals.length > MAX_DISJUNCTS) {
    throw new WhereError(
      `WHERE clause too complex for DNF decomposition (${literals.length} disjuncts exceeds limit of ${MAX_DISJUNCTS})`,
    );
  }
  const positions = [];
  const disjuncts = literals.map((conj) => conj.map(({ ast: leaf, negated }) => {
    if (leaf.k !== 'sublink' && containsSublink(leaf)) {
      throw new WhereError(`At location ${leaf.pos ?? 0}: IN (SELECT ...) can only be combined with AND, OR and NOT`);
    }
    const pos = positions.length;
    positions.push({
      pos,
      negated,
      subquery: leaf.k === 'sublink',
      dep: leaf.k === 'sublink' ? leaf.dep : null,
      tagColumns: leaf.k === 'sublink' ? leaf.tagColumns : null,
      test: compilePredicate(leaf, where.ctx),
    });
    return pos;
  }));
  const polarity = new Map();
  for (const p of positions.filter((x) => x.subquery)) {
    if (polarity.has(p.dep) && polarity.get(p.dep) !== p.negated) {
      throw new WhereError('a subquery dependency cannot be used with both positive and negative polarity in the same filter');
    }
    polarity.set(p.dep, p.negated);
  }
  return new SubqueryPlan({ where, resolver, positions, disjuncts, polarity });
}

export class SubqueryPlan {
  constructor({ where, resolver, positions, disjuncts, polarity }) {
    this.where = where;
    this.deps = resolver.deps;
    this.slot = resolver.views;
    this.positions = positions;
    this.disjuncts = disjuncts; // [[pos, ...], ...]
    this.negatedDeps = polarity; // dep index -> true for NOT IN
    this.depPositions = this.deps.map((d) => positions.filter((p) => p.dep === d.index).map((p) => p.pos));
    this.tables = new Set(this.deps.flatMap((d) => [...d.tables]));
  }

  views(rowsOf) {
    return this.deps.map((d) => d.view(rowsOf));
  }

  // Full where clause, three-valued, as the snapshot query evaluates it.
  includes(row, views) {
    this.slot.current = views;
    return this.where.test(row);
  }

  activeConditions(row, views) {
    this.slot.current = views;
    return this.positions.map((p) => (p.test(row) === true) !== p.negated);
  }

  included(activeConditions) {
    return this.disjuncts.some((conj) => conj.every((pos) => activeConditions[pos]));
  }

  tags(row, handle) {
    return this.disjuncts.map((conj) => this.positions
      .map((p) => {
        if (!conj.includes(p.pos)) return '';
        return p.subquery ? this.hashRow(p, row, handle) : '1';
      })
      .join('/'));
  }

  hashRow(p, row, handle) {
    if (p.tagColumns.length === 1) return md5(`${STACK_ID}${handle}${namespaced(row[p.tagColumns[0]])}`);
    return md5(`${STACK_ID}${handle}${p.tagColumns.map((c) => `${c}:${namespaced(row[c])}`).join('')}`);
  }

  // Move event patterns for view values of a dependency (MoveBroadcast.make).
  patterns(dep, keys, handle) {
    const out = [];
    for (const pos of this.depPositions[dep]) {
      const p = this.positions[pos];
      for (const key of keys) {
        const vals = p.tagColumns.length === 1 ? [key] : JSON.parse(key);
        out.push({ pos, value: this.hashRow(p, Object.fromEntries(p.tagColumns.map((c, i) => [c, vals[i]])), handle) });
      }
    }
    return out;
  }

  // Querying.move_in_where_clause: rows that the moved dependency brings in
  // (its disjuncts with the new views) and that no disjunct held before.
  moveInFilter(dep, before, after) {
    const impacted = [];
    const unaffected = [];
    this.disjuncts.forEach((conj) => {
      (conj.some((pos) => this.positions[pos].dep === dep) ? impacted : unaffected).push(conj);
    });
    const conjValue = (conj, row) => and3(conj.map((pos) => {
      const p = this.positions[pos];
      const v = p.test(row);
      return p.negated ? not3(v) : v;
    }));
    return (row) => {
      this.slot.current = after;
      const candidate = or3(impacted.map((c) => conjValue(c, row)));
      if (candidate !== true) return false;
      this.slot.current = before;
      const excluded = or3([...impacted, ...unaffected].map((c) => conjValue(c, row)));
      return not3(excluded) === true;
    };
  }
}

const not3 = (v) => (v === null ? null : !v);
function and3(vals) {
  if (vals.some((v) => v === false)) return false;
  return vals.some((v) => v === null) ? null : true;
}
function or3(vals) {
  if (vals.some((v) => v === true)) return true;
  return vals.some((v) => v === null) ? null : false;
}
