// A reference materialiser for subquery shapes: Electric's client rules
// (packages/elixir-client/lib/electric/client/tag_tracker.ex) on top of the
// TS client's insert/update/delete semantics. The official TS `Shape` ignores
// move events, so the conformance tests feed ShapeStream messages through
// this to see what a tag-aware client (like the extension) ends up with.

export class TagTracker {
  constructor() {
    this.rows = new Map(); // key -> value
    this.entries = new Map(); // key -> Set("pos:hash")
    this.active = new Map(); // key -> active_conditions | null
    this.byEntry = new Map(); // "pos:hash" -> Set(key)
    this.disjuncts = null; // [[pos]] from the first tagged message
    this.syntheticDeletes = [];
  }

  static parse(tags) {
    return (tags ?? []).map((t) => t.split('/').map((h) => (h === '' ? null : h)));
  }

  static entriesOf(tags) {
    const out = new Set();
    for (const d of TagTracker.parse(tags)) d.forEach((h, pos) => h !== null && out.add(`${pos}:${h}`));
    return out;
  }

  index(key, entries) {
    for (const e of this.entries.get(key) ?? []) this.byEntry.get(e)?.delete(key);
    if (entries.size === 0) {
      this.entries.delete(key);
      return;
    }
    this.entries.set(key, entries);
    for (const e of entries) {
      if (!this.byEntry.has(e)) this.byEntry.set(e, new Set());
      this.byEntry.get(e).add(key);
    }
  }

  forget(key) {
    this.index(key, new Set());
    this.active.delete(key);
    this.rows.delete(key);
  }

  visible(ac) {
    return this.disjuncts.some((d) => d.every((pos) => ac[pos] === true));
  }

  apply(messages) {
    for (const m of messages) {
      const h = m.headers ?? {};
      if (h.event === 'move-out' || h.event === 'move-in') this.move(h.event, h.patterns);
      else if (h.operation) this.change(m);
    }
  }

  change(m) {
    const h = m.headers;
    if (!this.disjuncts && h.tags?.length) {
      this.disjuncts = TagTracker.parse(h.tags).map((d) => d.flatMap((x, pos) => (x === null ? [] : [pos])));
    }
    if (h.operation === 'delete') return this.forget(m.key);
    if (h.operation === 'insert') this.rows.set(m.key, { ...m.value });
    else if (this.rows.has(m.key)) this.rows.set(m.key, { ...this.rows.get(m.key), ...m.value });
    const current = new Set(this.entries.get(m.key) ?? []);
    for (const e of TagTracker.entriesOf(h.removed_tags)) current.delete(e);
    for (const e of TagTracker.entriesOf(h.tags)) current.add(e);
    this.index(m.key, current);
    this.active.set(m.key, h.active_conditions?.length ? [...h.active_conditions] : null);
  }

  move(event, patterns) {
    const matched = new Map(); // key -> Set(entry)
    for (const { pos, value } of patterns) {
      const e = `${pos}:${value}`;
      for (const key of this.byEntry.get(e) ?? []) {
        if (!matched.has(key)) matched.set(key, new Set());
        matched.get(key).add(e);
      }
    }
    for (const [key, hit] of matched) {
      const ac = this.active.get(key);
      if (event === 'move-in') {
        if (ac) for (const e of hit) ac[Number(e.split(':')[0])] = true;
        continue;
      }
      if (!ac) {
        const rest = new Set([...this.entries.get(key)].filter((e) => !hit.has(e)));
        if (rest.size === 0) this.syntheticDelete(key);
        else this.index(key, rest);
        continue;
      }
      for (const e of hit) ac[Number(e.split(':')[0])] = false;
      if (!this.visible(ac)) this.syntheticDelete(key);
    }
  }

  syntheticDelete(key) {
    this.syntheticDeletes.push(key);
    this.forget(key);
  }

  // Rows by key with the given value parser (default: as received).
  values() {
    return [...this.rows.values()];
  }
}
