// POST /v1/writes: an application's write API, as Electric's write guides
// describe it ("through the API": the server applies the client's mutations
// in one Postgres transaction and answers with its txid; the client waits
// until a change with that txid in headers.txids syncs back).
//
// Body: {"write_id", "mutations": [{"operation", "relation": [schema, table],
// "key", "value", "old_value"}]}. All mutations of a request are one
// transaction (all or nothing). `Idempotency-Key` makes retries safe: a key
// already answered is answered the same way and not applied again. Every
// request is logged for tests; faults can reject, fail, drop or delay.

import { InputError } from './table.js';
import { parseRelation } from './idents.js';
import { readBody } from './control.js';
import { sendJson } from './http.js';

const KINDS = ['status', 'drop', 'apply_then_drop', 'delay_sync', 'no_txid', 'txid_as_number', 'delay'];
const MAX_LOG = 10_000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
// Answers a retry may change: they are not remembered under the key.
const retryable = (status) => status >= 500 || [408, 425, 429].includes(status);

export class WriteEndpoint {
  constructor(store) {
    this.store = store;
    this.reset();
  }

  reset() {
    this.log = [];
    this.answers = new Map(); // idempotency key -> {status, body, bodyText}
    this.faults = [];
    this.nextFaultId = 1;
  }

  async handle(req, res) {
    const cors = { 'access-control-allow-origin': '*' };
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { ...cors, 'access-control-allow-methods': 'POST, OPTIONS', 'access-control-allow-headers': '*' });
      return res.end();
    }
    if (req.method !== 'POST') return sendJson(res, 405, { message: 'use POST' }, cors);
    const started = Date.now();
    const text = await readBody(req);
    const key = req.headers['idempotency-key'] ?? null;
    const entry = {
      // raw_headers: as sent, repeats included (Node keeps one content-type)
      t: started, method: req.method, path: '/v1/writes', headers: req.headers, raw_headers: req.rawHeaders, idempotency_key: key,
      body: null, status: null, response: null, applied: false, repeat: false, fault: null, txid: null, ms: 0,
    };
    if (this.log.length >= MAX_LOG) this.log.shift();
    this.log.push(entry);
    const answer = (status, body, { remember = true } = {}) => {
      entry.status = status;
      entry.response = body;
      entry.ms = Date.now() - started;
      if (remember && key !== null && !retryable(status)) this.answers.set(key, { status, body, bodyText: text });
      return sendJson(res, status, body, cors);
    };

    if (text === null) return answer(413, { message: 'request body too large' }, { remember: false });
    try {
      entry.body = JSON.parse(text);
    } catch (e) {
      entry.body = text;
      if (key === null || !this.answers.has(key)) return answer(400, { message: `invalid JSON body: ${e.message}` });
    }
    if (key !== null && this.answers.has(key)) {
      const prev = this.answers.get(key);
      entry.repeat = true;
      entry.body_differs = prev.bodyText !== text;
      entry.txid = prev.body?.txid ?? null;
      return answer(prev.status, prev.body, { remember: false });
    }

    let ops;
    try {
      ops = this.toOps(entry.body);
    } catch (e) {
      if (!(e instanceof InputError)) throw e;
      return answer(400, { message: e.message });
    }
    const fault = this.take(ops);
    entry.fault = fault?.kind ?? null;
    if (fault?.kind === 'delay') await sleep(fault.ms);
    if (fault?.kind === 'drop') {
      // A network error before anything happened.
      entry.dropped = true;
      entry.ms = Date.now() - started;
      return res.socket?.destroy();
    }
    if (fault?.kind === 'status') {
      const headers = fault.retry_after !== undefined ? { 'retry-after': String(fault.retry_after) } : {};
      const body = fault.body ?? { message: `injected ${fault.status} fault` };
      entry.status = fault.status;
      entry.response = body;
      entry.ms = Date.now() - started;
      if (key !== null && !retryable(fault.status)) this.answers.set(key, { status: fault.status, body, bodyText: text });
      const out = typeof body === 'string' ? body : JSON.stringify(body);
      res.writeHead(fault.status, { 'content-type': 'application/json; charset=utf-8', ...cors, ...headers });
      return res.end(out);
    }

    let result;
    try {
      result = this.store.applyTransaction(ops, { publishDelayMs: fault?.kind === 'delay_sync' ? fault.ms : 0 });
    } catch (e) {
      if (!(e instanceof InputError)) throw e;
      return answer(400, { message: e.message });
    }
    for (const shape of result.touched) shape.notify('change');
    entry.applied = true;
    entry.txid = String(result.xid);
    entry.lsn = result.lsn.toString();
    if (fault?.kind === 'no_txid') return answer(fault.status ?? 200, fault.body ?? {});
    if (fault?.kind === 'txid_as_number') return answer(200, { txid: result.xid });
    if (fault?.kind === 'apply_then_drop') {
      // Committed, but the client never hears so: a retry gets the answer.
      if (key !== null) this.answers.set(key, { status: 200, body: { txid: entry.txid }, bodyText: text });
      entry.dropped = true;
      entry.ms = Date.now() - started;
      return res.socket?.destroy();
    }
    return answer(200, { txid: entry.txid });
  }

  // The mutations as one store transaction.
  toOps(body) {
    if (!isObject(body)) throw new InputError('body must be a JSON object');
    if (!Array.isArray(body.mutations) || body.mutations.length === 0) throw new InputError('mutations must be a non-empty array');
    return body.mutations.map((m, i) => {
      const where = `mutation ${i}`;
      if (!isObject(m)) throw new InputError(`${where}: must be an object`);
      const rel = m.relation;
      if (!Array.isArray(rel) || rel.length !== 2 || !rel.every((x) => typeof x === 'string')) {
        throw new InputError(`${where}: relation must be ["schema", "table"]`);
      }
      const table = this.store.getTable(rel[0], rel[1]);
      if (!table) throw new InputError(`${where}: unknown table "${rel[0]}"."${rel[1]}"`);
      for (const f of ['key', 'value', 'old_value']) {
        if (m[f] !== undefined && m[f] !== null && !isObject(m[f])) throw new InputError(`${where}: ${f} must be an object`);
      }
      const value = m.value ?? {};
      const key = m.key ?? null;
      if (m.operation === 'insert') {
        if (!isObject(m.value)) throw new InputError(`${where}: insert needs value`);
        return { table, op: 'insert', row: value };
      }
      if (m.operation !== 'update' && m.operation !== 'delete') throw new InputError(`${where}: unknown operation ${m.operation}`);
      if (!key) throw new InputError(`${where}: ${m.operation} needs key`);
      if (m.operation === 'delete') return { table, op: 'delete', row: key };
      if (table.pk.length === 0) return { table, op: 'update', old: key, row: value };
      // A primary key column in value that differs from key is a key change.
      const newKey = {};
      const patch = Object.fromEntries(table.pk.filter((c) => c in key).map((c) => [c, key[c]]));
      for (const [c, v] of Object.entries(value)) {
        if (table.pk.includes(c)) {
          if (String(v) !== String(key[c])) newKey[c] = v;
        } else patch[c] = v;
      }
      return Object.keys(newKey).length ? { table, op: 'update', row: patch, new_key: newKey } : { table, op: 'update', row: patch };
    });
  }

  take(ops) {
    const f = this.faults.find((x) => !x.rel || ops.some((o) => o.table.schema === x.rel.schema && o.table.name === x.rel.name));
    if (f && f.count > 0 && --f.count === 0) this.faults = this.faults.filter((x) => x !== f);
    return f ?? null;
  }

  addFault(spec) {
    if (!isObject(spec)) throw new InputError('fault must be an object');
    if (!KINDS.includes(spec.kind)) throw new InputError(`unknown write fault kind ${spec.kind}; one of ${KINDS.join(', ')}`);
    const count = spec.count ?? 1;
    if (!Number.isInteger(count) || count === 0 || count < -1) throw new InputError('count must be a positive integer or -1');
    if (spec.kind === 'status' && !(Number.isInteger(spec.status) && spec.status >= 100 && spec.status <= 599)) {
      throw new InputError('status fault needs an HTTP status');
    }
    if (spec.kind === 'no_txid' && spec.status !== undefined && !(Number.isInteger(spec.status) && spec.status >= 200 && spec.status <= 299)) {
      throw new InputError('no_txid status must be 2xx');
    }
    if (['delay_sync', 'delay'].includes(spec.kind) && !(Number.isInteger(spec.ms) && spec.ms >= 0)) throw new InputError(`${spec.kind} fault needs ms`);
    let rel = null;
    if (spec.table !== undefined && spec.table !== null) {
      try {
        rel = parseRelation(spec.table);
      } catch (e) {
        throw new InputError(`bad table: ${e.message}`);
      }
    }
    const fault = { ...spec, id: this.nextFaultId++, count, table: spec.table ?? null, rel };
    this.faults.push(fault);
    return this.describe(fault);
  }

  describe({ rel, ...rest }) {
    return rest;
  }

  // /_control/writes (log) and /_control/write_faults.
  control(path, method, body) {
    if (path === '/writes') {
      if (method === 'GET') return [200, this.log];
      if (method === 'DELETE') {
        this.log = [];
        return [200, { ok: true }];
      }
    }
    if (path === '/write_faults') {
      if (method === 'POST') {
        const added = (Array.isArray(body) ? body : [body]).map((f) => this.addFault(f));
        return [200, Array.isArray(body) ? added : added[0]];
      }
      if (method === 'GET') return [200, this.faults.map((f) => this.describe(f))];
      if (method === 'DELETE') {
        this.faults = [];
        return [200, { ok: true }];
      }
    }
    return [404, { message: `no control endpoint ${method} /_control${path}` }];
  }
}
