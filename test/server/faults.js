// Fault injection for /v1/shape. A fault matches a request by table and
// `when`, and each matching request consumes one count (-1 = until cleared).
// Faults either replace the answer (status, repeat_409), wrap it (delay
// before the request is handled, delay_send after),
// rewrite the finished response (headers/body kinds), or change how it is
// written to the socket (reset_mid_body, slow_drip, gzip; see http.js).

import { InputError } from './table.js';
import { parseRelation } from './idents.js';
import { MUST_REFETCH, SERVER_HEADER, parseQuery } from './protocol.js';
import { parseShapeDefinition, newHandle } from './shape.js';

export const FAULT_KINDS = [
  'delay', 'delay_send', 'status', 'reset_mid_body', 'truncate_json', 'malformed_message', 'missing_headers',
  'repeat_409', 'slow_drip', 'bad_utf8', 'wrong_content_type', 'must_refetch_in_body',
  'legacy_204', 'legacy_headers', 'gzip', 'sse_cut_mid_event', 'sse_short',
];
const WHEN = ['any', 'live', 'nonlive', 'initial', 'sse'];
const ELECTRIC_HEADERS = [
  'electric-handle', 'electric-offset', 'electric-schema', 'electric-cursor', 'electric-up-to-date', 'electric-has-data',
];
const LEGACY_NAMES = {
  'electric-handle': 'electric-shape-id',
  'electric-offset': 'electric-chunk-last-offset',
  'electric-cursor': 'electric-next-cursor',
  'electric-up-to-date': 'electric-chunk-up-to-date',
};

export class Faults {
  constructor() {
    this.list = [];
    this.nextId = 1;
  }

  clear() {
    this.list = [];
  }

  add(spec) {
    if (!spec || typeof spec !== 'object') throw new InputError('fault must be an object');
    const { kind } = spec;
    if (!FAULT_KINDS.includes(kind)) throw new InputError(`unknown fault kind ${kind}; one of ${FAULT_KINDS.join(', ')}`);
    const when = spec.when ?? 'any';
    if (!WHEN.includes(when)) throw new InputError(`when must be one of ${WHEN.join(', ')}`);
    const count = spec.count ?? 1;
    if (!Number.isInteger(count) || count === 0 || count < -1) throw new InputError('count must be a positive integer or -1');
    let table = null;
    if (spec.table !== undefined && spec.table !== null) {
      try {
        table = parseRelation(spec.table);
      } catch (e) {
        throw new InputError(`bad table: ${e.message}`);
      }
    }
    if (kind === 'status') {
      if (!Number.isInteger(spec.status) || spec.status < 100 || spec.status > 599) throw new InputError('status fault needs an HTTP status');
    }
    if ((kind === 'delay' || kind === 'delay_send') && !(Number.isInteger(spec.ms) && spec.ms >= 0)) throw new InputError(`${kind} fault needs ms`);
    if (kind === 'sse_cut_mid_event' && spec.after_events !== undefined && !(Number.isInteger(spec.after_events) && spec.after_events >= 0)) {
      throw new InputError('after_events must be a non-negative integer');
    }
    const fault = { ...spec, id: this.nextId++, kind, when, count, table: spec.table ?? null, rel: table };
    this.list.push(fault);
    return this.describe(fault);
  }

  describe(f) {
    const { rel, ...rest } = f;
    return rest;
  }

  all() {
    return this.list.map((f) => this.describe(f));
  }

  matches(f, info) {
    if (f.rel && (!info.rel || f.rel.schema !== info.rel.schema || f.rel.name !== info.rel.name)) return false;
    if (f.when === 'live') return info.live;
    if (f.when === 'nonlive') return !info.live;
    if (f.when === 'initial') return info.offset === '-1';
    if (f.when === 'sse') return info.sse;
    // The SSE kinds only make sense for SSE requests.
    if (f.kind.startsWith('sse_')) return info.sse;
    return true;
  }

  consume(f) {
    if (f.count > 0 && --f.count === 0) this.list = this.list.filter((x) => x !== f);
  }

  // The first matching fault (not legacy_204, which is taken only when a
  // long-poll actually times out), consumed.
  take(info) {
    const f = this.list.find((x) => x.kind !== 'legacy_204' && this.matches(x, info));
    if (f) this.consume(f);
    return f ?? null;
  }

  takeLegacy204(info) {
    const f = this.list.find((x) => x.kind === 'legacy_204' && this.matches(x, info));
    if (f) this.consume(f);
    return f ?? null;
  }
}

// What a fault needs to know about a request, from its query string.
export function requestInfo(searchParams) {
  let rel = null;
  try {
    if (searchParams.get('table')) rel = parseRelation(searchParams.get('table'));
  } catch {
    rel = null;
  }
  const live = searchParams.has('live') && searchParams.get('live') !== 'false';
  const sseParam = searchParams.has('live_sse') ? searchParams.get('live_sse') : searchParams.get('experimental_live_sse');
  const sse = live && sseParam !== null && sseParam !== 'false';
  return { rel, live, sse, offset: searchParams.get('offset') };
}

const toBuffer = (parts) => Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p))));

// For the kinds that answer instead of the server: `status` and `repeat_409`.
export function replacementResponse(fault, searchParams, store) {
  if (fault?.kind === 'status') {
    const body = fault.body === undefined ? { message: `injected ${fault.status} fault` } : fault.body;
    const headers = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'electric-server': SERVER_HEADER };
    if (fault.retry_after !== undefined) headers['retry-after'] = String(fault.retry_after);
    for (const [k, v] of Object.entries(fault.headers ?? {})) headers[k.toLowerCase()] = String(v);
    return { status: fault.status, headers, body: [typeof body === 'string' ? body : JSON.stringify(body)] };
  }
  if (fault?.kind === 'repeat_409') {
    // Every request is redirected to a brand-new shape for its definition.
    let handle;
    try {
      const def = parseShapeDefinition(parseQuery(searchParams), store);
      const old = store.shapesByDef.get(def.key);
      if (old) store.killShape(old);
      handle = store.getOrCreateShape(def).handle;
    } catch {
      handle = newHandle('repeat_409');
    }
    const headers = {
      'content-type': 'application/json; charset=utf-8',
      'cache-control': 'public, max-age=60, must-revalidate',
      'electric-server': SERVER_HEADER,
      etag: `"${handle}::"`,
      'electric-handle': handle,
    };
    return { status: 409, headers, body: [MUST_REFETCH] };
  }
  return null;
}

// Rewrites a finished response for the header/body fault kinds.
export function transformResponse(fault, resp) {
  if (!fault) return resp;
  // A streamed (SSE) answer has no body to rewrite; only header faults apply.
  if (resp.stream && !['missing_headers', 'legacy_headers', 'wrong_content_type'].includes(fault.kind)) return resp;
  const h = { ...resp.headers };
  let { body, status } = resp;
  switch (fault.kind) {
    case 'missing_headers':
      for (const name of fault.headers ?? ELECTRIC_HEADERS) delete h[name.toLowerCase()];
      break;
    case 'legacy_headers':
      for (const [now, old] of Object.entries(LEGACY_NAMES)) {
        if (now in h) {
          h[old] = h[now];
          delete h[now];
        }
      }
      break;
    case 'wrong_content_type':
      h['content-type'] = fault.content_type ?? 'text/html; charset=utf-8';
      if (fault.body !== undefined) body = [String(fault.body)];
      break;
    case 'must_refetch_in_body':
      status = 200;
      body = [MUST_REFETCH];
      delete h['electric-up-to-date'];
      break;
    case 'malformed_message': {
      if (status !== 200 || body[0] !== '[') break;
      const bad = fault.variant === 'structure'
        ? '{"headers":{"operation":"upsert","relation":"nope"},"key":42,"value":"not an object"}'
        : '{"headers":{"operation":"insert"},"key":"\\"public\\".\\"x\\"/\\"1\\"","value":{"id":"1",}}';
      const rest = body.slice(1);
      body = ['[', bad, rest.length > 1 ? ',' : '', ...rest];
      break;
    }
    case 'bad_utf8': {
      // Invalid UTF-8 bytes inside the first string value (a row key, or else the up-to-date LSN).
      const buf = toBuffer(body);
      let at = -1;
      for (const marker of ['"key":"', '"global_last_seen_lsn":"']) {
        const i = buf.indexOf(marker);
        if (i >= 0) {
          at = i + marker.length;
          break;
        }
      }
      if (at < 0) at = Math.min(1, buf.length);
      body = [Buffer.concat([buf.subarray(0, at), Buffer.from([0xff, 0xfe]), buf.subarray(at)])];
      break;
    }
    case 'truncate_json': {
      // The body ends cleanly (complete chunked encoding) but mid-JSON.
      const buf = toBuffer(body);
      body = [buf.subarray(0, Math.max(1, Math.min(buf.length - 1, Math.floor(buf.length / 2))))];
      break;
    }
    default:
      break;
  }
  return { ...resp, status, headers: h, body };
}
