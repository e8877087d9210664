// The log side of a subquery shape, following Electric's consumer
// (EventHandler.Subqueries.Steady/Buffering, MoveQueue, ActiveMove,
// SplicePlan, MoveBroadcast, Shape.convert_change with a DNF plan):
//
// For each published transaction, every dependency's view is recomputed from
// the published rows (Electric's materializer) and the differences are
// queued as dependency move-ins/move-outs. Move-outs (of IN; move-ins of NOT
// IN) are logged at once as `move-out` events. A move-in starts a move-in
// query over the committed rows; transactions published meanwhile are
// buffered, and once every transaction that query could see has been
// published, the log gets: those transactions (with the old views), the
// `move-in` event, the queried rows (`is_move_in: true`), `snapshot-end`, and
// the later transactions (with the new views).

const pick = (rec, cols) => Object.fromEntries(cols.filter((c) => c in rec).map((c) => [c, rec[c]]));

// Elixir's `a -- b`: removes one occurrence per element of b.
function listMinus(a, b) {
  const out = [...a];
  for (const x of b) {
    const i = out.indexOf(x);
    if (i >= 0) out.splice(i, 1);
  }
  return out;
}

function applyMove(views, dep, values, kind) {
  const next = views.slice();
  const set = new Set(views[dep]);
  for (const v of values) {
    if (kind === 'move_in') set.add(v);
    else set.delete(v);
  }
  next[dep] = set;
  return next;
}

// Per dependency: pending move-outs and move-ins with their txids; the last
// operation on a value wins and moves the view already reflects are dropped.
class MoveQueue {
  constructor() {
    this.out = new Map();
    this.in = new Map();
  }

  enqueue(dep, moveIn, moveOut, txids, view) {
    const [outs, outTx] = this.out.get(dep) ?? [[], new Set()];
    const [ins, inTx] = this.in.get(dep) ?? [[], new Set()];
    const ops = [...outs.map((v) => ['move_out', v]), ...ins.map((v) => ['move_in', v]),
      ...moveOut.map((v) => ['move_out', v]), ...moveIn.map((v) => ['move_in', v])];
    const last = new Map();
    ops.forEach(([kind, v], i) => last.set(v, { kind, v, i }));
    const terminal = [...last.values()]
      .filter(({ kind, v }) => (kind === 'move_in' ? !view.has(v) : view.has(v)))
      .sort((a, b) => a.i - b.i);
    const put = (map, kind, tx) => {
      const vals = terminal.filter((x) => x.kind === kind).map((x) => x.v);
      if (vals.length) map.set(dep, [vals, new Set([...tx, ...txids])]);
      else map.delete(dep);
    };
    put(this.out, 'move_out', outTx);
    put(this.in, 'move_in', inTx);
  }

  // Move-outs of any dependency before move-ins; lowest dependency first.
  pop() {
    for (const [map, kind] of [[this.out, 'move_out'], [this.in, 'move_in']]) {
      if (map.size === 0) continue;
      const dep = Math.min(...map.keys());
      const [values, txids] = map.get(dep);
      map.delete(dep);
      return { kind, dep, values, txids: [...txids].sort((a, b) => a - b) };
    }
    return null;
  }
}

export class SubqueryLog {
  constructor(shape, plan, store) {
    this.shape = shape;
    this.plan = plan;
    this.materialized = plan.views((t) => store.publishedRows(t));
    this.views = this.materialized.map((s) => new Set(s));
    this.queue = new MoveQueue();
    this.active = null; // the move-in being buffered
  }

  // Returns log items ({off|null, json}) for one published transaction.
  onTransaction(entry, store, skipChanges) {
    const out = [];
    const tables = new Set(entry.changes.map((c) => c.table));
    for (const dep of this.plan.deps) {
      if (![...dep.tables].some((t) => tables.has(t))) continue;
      const next = dep.view((t) => store.publishedRows(t));
      const prev = this.materialized[dep.index];
      const moveIn = [...next].filter((k) => !prev.has(k));
      const moveOut = [...prev].filter((k) => !next.has(k));
      this.materialized[dep.index] = next;
      if (moveIn.length || moveOut.length) {
        const view = (this.active ? this.active.viewsAfter : this.views)[dep.index];
        this.queue.enqueue(dep.index, moveIn, moveOut, [entry.xid], view);
      }
    }
    if (!this.active) this.drain(out, store, null);
    const changes = skipChanges ? [] : entry.changes.filter((c) => c.table === this.shape.table);
    if (this.active) {
      const a = this.active;
      if (a.boundary === null && entry.lsn > a.queryLsn) a.boundary = a.buffered.length;
      a.buffered.push({ entry, changes });
      if (a.boundary !== null) this.splice(out, store);
    } else if (changes.length) {
      out.push(...this.shape.convertTransaction(changes, entry.lsn, entry.xid, this.views));
    }
    return out;
  }

  // Electric's global-LSN subscription while a move-in is buffered.
  onSeenLsn(lsn, store) {
    const a = this.active;
    if (!a) return [];
    if (a.latestSeenLsn === null || lsn > a.latestSeenLsn) a.latestSeenLsn = lsn;
    if (a.boundary === null && a.latestSeenLsn >= a.queryLsn) a.boundary = a.buffered.length;
    if (a.boundary === null) return [];
    const out = [];
    this.splice(out, store);
    return out;
  }

  drain(out, store, carriedLsn) {
    for (;;) {
      const move = this.queue.pop();
      if (!move) return;
      const negated = this.plan.negatedDeps.get(move.dep) === true;
      const outer = negated ? (move.kind === 'move_in' ? 'move_out' : 'move_in') : move.kind;
      if (outer === 'move_out') {
        this.views = applyMove(this.views, move.dep, move.values, move.kind);
        out.push(this.event('move-out', move));
        continue;
      }
      this.startMoveIn(move, store, carriedLsn);
      if (this.active.boundary !== null) this.splice(out, store);
      return;
    }
  }

  // The move-in query runs at once against the committed rows.
  startMoveIn(move, store, carriedLsn) {
    const before = this.views;
    const after = applyMove(before, move.dep, move.values, move.kind);
    const filter = this.plan.moveInFilter(move.dep, before, after);
    const rows = [];
    for (const row of this.shape.table.rowsIterator()) {
      if (filter(row)) rows.push(this.renderRow(row, after, { is_move_in: true }));
    }
    const queryLsn = store.committedLsn;
    this.active = {
      move,
      viewsBefore: before,
      viewsAfter: after,
      rows,
      snapshot: store.snapshot(),
      queryLsn,
      latestSeenLsn: carriedLsn,
      boundary: carriedLsn !== null && carriedLsn >= queryLsn ? 0 : null,
      buffered: [],
    };
  }

  splice(out, store) {
    const a = this.active;
    const convert = ({ entry, changes }, views) => (changes.length ? this.shape.convertTransaction(changes, entry.lsn, entry.xid, views) : []);
    for (const b of a.buffered.slice(0, a.boundary)) out.push(...convert(b, a.viewsBefore));
    out.push(this.event('move-in', a.move));
    out.push(...a.rows.map((json) => ({ off: null, json })));
    if (a.rows.length) {
      const { xmin, xmax, xip } = a.snapshot;
      out.push({ off: null, json: JSON.stringify({ headers: { control: 'snapshot-end', xip_list: xip.map(String), xmax: String(xmax), xmin: String(xmin) } }) });
    }
    for (const b of a.buffered.slice(a.boundary)) out.push(...convert(b, a.viewsAfter));
    this.views = a.viewsAfter;
    this.active = null;
    this.drain(out, store, a.latestSeenLsn);
  }

  event(name, move) {
    const patterns = this.plan.patterns(move.dep, move.values, this.shape.handle);
    return { off: null, json: JSON.stringify({ headers: { event: name, patterns, txids: move.txids } }) };
  }

  // A snapshot-style row (text values) with tags and active_conditions, as
  // Querying.json_like_select renders it; `extra` headers go last.
  renderRow(row, views, extra = {}) {
    const value = {};
    for (const c of this.shape.def.selected) value[c.name] = row[c.name];
    const headers = {
      active_conditions: this.plan.activeConditions(row, views),
      tags: this.plan.tags(row, this.shape.handle),
      operation: 'insert',
      relation: this.shape.relation,
      ...extra,
    };
    return JSON.stringify({ key: this.shape.keyOfRow(row), value, headers });
  }

  // Shape.convert_change with a DNF plan: inclusion comes from the active
  // conditions, and every change carries tags and active_conditions.
  convertChange(ch, lsn, xid, views, out) {
    const { shape, plan } = this;
    const meta = (row) => {
      const ac = plan.activeConditions(row, views);
      return { ac, tags: plan.tags(row, shape.handle), in: plan.included(ac) };
    };
    const mo = ch.old && meta(ch.old);
    const mn = ch.new && meta(ch.new);
    const oldRec = ch.old && shape.liveRecord(ch.old);
    const newRec = ch.new && shape.liveRecord(ch.new);
    const base = (op, operation, m) => ({
      operation, txids: [xid], relation: shape.relation, lsn: lsn.toString(), op_position: op, tags: m.tags, active_conditions: m.ac,
    });
    const at = (op) => ({ tx: BigInt(lsn), op });
    const pushInsert = (m, headers = {}, op = ch.op) => out.push({ off: at(op), key: shape.keyOf(newRec), value: newRec, headers: { ...base(op, 'insert', m), ...headers } });
    const pushDelete = (m, headers = {}) => out.push({ off: at(ch.op), key: shape.keyOf(oldRec), value: shape.pkOrAll(oldRec), headers: { ...base(ch.op, 'delete', m), ...headers } });

    if (ch.kind === 'insert') {
      if (mn.in) pushInsert(mn);
    } else if (ch.kind === 'delete') {
      if (mo.in) pushDelete(mo);
    } else if (mo.in && mn.in) {
      const removed = listMinus(mo.tags, mn.tags);
      const oldKey = shape.keyOf(oldRec);
      const newKey = shape.keyOf(newRec);
      if (oldKey !== newKey) {
        pushDelete({ ...mn, tags: [...mn.tags, ...removed] }, { key_change_to: newKey });
        pushInsert(mn, { key_change_from: oldKey }, ch.op + 1);
        return;
      }
      const changed = Object.keys(newRec).filter((c) => newRec[c] !== oldRec[c]);
      const item = { off: at(ch.op), key: newKey, headers: { ...base(ch.op, 'update', mn), removed_tags: removed } };
      if (shape.def.replica === 'full') {
        item.value = newRec;
        item.old_value = pick(oldRec, changed);
      } else item.value = pick(newRec, [...shape.table.pk, ...changed]);
      out.push(item);
    } else if (mo.in) {
      pushDelete(mo);
    } else if (mn.in) {
      pushInsert(mn);
    }
  }
}
