// GET /v1/shape, following Electric's Shapes.Api (validate -> load shape ->
// seek -> serve) and Api.Response (headers). Produces a response description
// {status, headers, body: [string|Buffer]} that the HTTP layer sends, possibly
// after a fault has been applied to it.

import { parseShapeDefinition, ValidationError } from './shape.js';
import { parseOffset, formatOffset, compareOffsets, isBeforeAll, isVirtual, maxOffset } from './offsets.js';
import { sseBody, sseCacheControl } from './sse.js';
import { parseSubset, runSubset, subsetBody, SUBSET_KEYS } from './subset.js';

const SERVER_HEADER = 'ElectricSQL/1.7.12';
const MUST_REFETCH = '[{"headers":{"control":"must-refetch"}}]';
const CURSOR_EPOCH_S = Date.UTC(2024, 9, 9) / 1000;

// ---- request parsing ----

// Query string as Plug parses it (last value wins; params[n] becomes a map;
// subset__x goes to q.subset.x, as ServeShapePlug extracts it).
export function parseQuery(searchParams) {
  const q = {};
  for (const [k, v] of searchParams) {
    const m = /^params\[([^\]]*)\]$/.exec(k);
    if (m) {
      if (typeof q.params !== 'object' || q.params === null) q.params = {};
      q.params[m[1]] = v;
    } else if (k.startsWith('subset__')) (q.subset ??= {})[k.slice(8)] = v;
    else q[k] = v;
  }
  return q;
}

// A POST body's keys join the query: subset keys (top level or under
// "subset") go to the subset, the others are shape parameters.
export function mergeBody(q, body) {
  const out = { ...q };
  const keys = Object.keys(body);
  if (keys.length === 0) return out;
  if (body.subset && typeof body.subset === 'object' && !Array.isArray(body.subset)) {
    Object.assign(out, body);
    out.subset = { ...(q.subset ?? {}), ...body.subset };
    return out;
  }
  const sub = keys.filter((k) => SUBSET_KEYS.includes(k));
  for (const k of keys) if (!sub.includes(k)) out[k] = body[k];
  if (sub.length) out.subset = { ...(q.subset ?? {}), ...Object.fromEntries(sub.map((k) => [k, body[k]])) };
  return out;
}

// Electric's Api.Params.validate; returns {def, since, handle, live} or throws ValidationError.
function validateParams(q, store) {
  const errors = {};
  const add = (k, m) => (errors[k] ??= []).push(m);
  // A bare `live` or any value other than "false" means true.
  const live = q.live !== undefined && q.live !== 'false';
  // live_sse wins over the deprecated experimental_live_sse when both are given.
  const sseParam = q.live_sse !== undefined ? q.live_sse : q.experimental_live_sse;
  const liveSse = sseParam !== undefined && sseParam !== 'false' && sseParam !== false;
  if (q.replica !== undefined && !['default', 'full'].includes(q.replica)) add('replica', 'is invalid');
  if (q.log !== undefined && !['full', 'changes_only'].includes(q.log)) add('log', 'is invalid');
  if (q.params !== undefined && (typeof q.params !== 'object' || q.params === null)) add('params', 'is invalid');
  if (q.offset === undefined || q.offset === '') add('offset', "can't be blank");
  if (Object.keys(errors).length) throw new ValidationError(errors);

  const since = parseOffset(q.offset);
  if (since === null) throw new ValidationError({ offset: ['has invalid format'] });
  let handle = q.handle ?? null;
  if (since === 'now' || isBeforeAll(since)) handle = null; // only a cache buster there
  else if (!handle) throw new ValidationError({ handle: ["can't be blank when offset != -1"] });
  if (live && since !== 'now' && isBeforeAll(since)) throw new ValidationError({ live: ["can't be true when offset == -1"] });
  if (live && since === 'now') throw new ValidationError({ live: ["can't be true when offset is 'now'"] });
  if (liveSse && !live) throw new ValidationError({ live_sse: ["can't be true unless live is also true"] });
  const def = parseShapeDefinition(q, store);
  const subset = q.subset !== undefined ? parseSubset(q.subset, def) : null;
  return { def, since, handle, live, liveSse, subset };
}

// ---- response building ----

// Electric's cursor: seconds since 2024-10-09 rounded up to the long-poll
// timeout; if that is not ahead of the cursor the client sent, jump ahead by
// a random 1..3600 s so CDNs never collapse onto an old long-poll.
// (Electric answers a constant 0 for sub-second timeouts; here they count as
// 1 s so that every live answer still carries a new cursor.)
export function nextCursor(longPollMs, sent) {
  const step = Math.max(1, Math.floor(longPollMs / 1000));
  const now = Math.floor(Date.now() / 1000) - CURSOR_EPOCH_S;
  const next = Math.ceil(now / step) * step;
  const prev = /^\d+$/.test(sent ?? '') ? Number(sent) : null;
  if (prev !== null && next <= prev) return String(prev + 1 + Math.floor(Math.random() * 3600));
  return String(next);
}

function errorBody(message, errors) {
  return JSON.stringify(errors ? { errors, message } : { message });
}

// r: {status, handle, offset, reqOffset, live, upToDate, noChanges, schema, retryAfter, etagSuffix}
function responseHeaders(r, store, q) {
  const h = {
    'content-type': 'application/json; charset=utf-8',
    'electric-server': SERVER_HEADER,
    'access-control-allow-origin': '*',
    'access-control-expose-headers': '*',
    'access-control-allow-methods': 'GET, POST, OPTIONS',
  };
  const { max_age: maxAge, stale_age: staleAge } = store.config;
  if (r.post) h['cache-control'] = 'no-cache'; // Electric sends this for any method but GET
  else if (r.status === 409) h['cache-control'] = `public, max-age=${r.handle ? 60 : 1}, must-revalidate`;
  else if (r.status >= 400) {
    h['cache-control'] = 'no-store';
    h['surrogate-control'] = 'no-store';
  } else if (r.reqOffset === '-1') {
    h['cache-control'] = 'public, max-age=604800, s-maxage=3600, stale-while-revalidate=2629746';
  } else if (r.sse) h['cache-control'] = sseCacheControl(store.config.sse_timeout_ms);
  else if (r.live) h['cache-control'] = 'public, max-age=5, stale-while-revalidate=5';
  else h['cache-control'] = `public, max-age=${maxAge}, stale-while-revalidate=${staleAge}`;
  if (r.live) h['electric-cursor'] = nextCursor(store.config.long_poll_ms, q.cursor);
  if (r.handle) {
    const off = r.offset ? formatOffset(r.offset) : '';
    h.etag = `"${r.handle}:${r.reqOffset ?? ''}:${off}${r.etagSuffix ?? ''}"`;
    h['electric-handle'] = r.handle;
  }
  if (!r.live && r.status === 200 && r.schema) h['electric-schema'] = r.schema;
  if (r.upToDate) h['electric-up-to-date'] = '';
  if (r.status < 400) h['electric-has-data'] = r.noChanges ? 'false' : 'true';
  if (r.offset) h['electric-offset'] = formatOffset(r.offset);
  if (r.retryAfter !== undefined) h['retry-after'] = String(r.retryAfter);
  if (r.sse) {
    h['content-type'] = 'text/event-stream';
    h.connection = 'keep-alive';
  }
  return h;
}

// Subset answers carry only these (Api.Response.put_resp_headers for :subset).
function subsetHeaders(r, store) {
  const h = {
    'content-type': 'application/json; charset=utf-8',
    'electric-server': SERVER_HEADER,
    'access-control-allow-origin': '*',
    'access-control-expose-headers': '*',
    'access-control-allow-methods': 'GET, POST, OPTIONS',
    'cache-control': 'no-cache',
    'electric-snapshot': 'true',
    'electric-handle': r.handle,
    'electric-schema': r.schema,
    'electric-offset': formatOffset(r.offset),
  };
  return h;
}

const upToDate = (lsn) => `{"headers":{"control":"up-to-date","global_last_seen_lsn":"${lsn}"}}`;

function finish(r, store, q, body) {
  return { status: r.status, headers: responseHeaders(r, store, q), body, meta: r };
}

// Resolves to 'change' | 'rotated' | 'timeout' | 'aborted'.
function waitForChange(shape, ms, signal) {
  return new Promise((resolve) => {
    if (shape.dead) return resolve('rotated');
    let timer = null;
    const done = (why) => {
      clearTimeout(timer);
      shape.waiters.delete(waiter);
      signal.removeEventListener('abort', onAbort);
      resolve(why);
    };
    const waiter = (event) => done(event === 'rotated' ? 'rotated' : 'change');
    const onAbort = () => done('aborted');
    shape.waiters.add(waiter);
    signal.addEventListener('abort', onAbort);
    timer = setTimeout(() => done('timeout'), ms);
  });
}

let monotonic = 0;

// ctx: {signal (request aborted), ifNoneMatch: [etags], liveTimeoutHook():
// response-override | null, query? (parsed, POST body merged), method, fault, debug}
export async function handleShapeRequest(searchParams, store, ctx) {
  const q = ctx.query ?? parseQuery(searchParams);
  const post = ctx.method === 'POST';
  // Every answer to a POST is `cache-control: no-cache`, as Electric sends for non-GET.
  const done = (r, parts) => finish({ ...r, post }, store, q, parts);
  let v;
  try {
    v = validateParams(q, store);
  } catch (e) {
    if (!(e instanceof ValidationError)) throw e;
    return done({ status: 400 }, [errorBody('Invalid request', e.errors)]);
  }
  const { def, since, live, liveSse } = v;
  let shape;
  if (v.handle === null) shape = store.getOrCreateShape(def);
  else {
    shape = store.resolveShape(v.handle, def);
    if (!shape) {
      // Rotated, unknown, or belonging to another definition: redirect to the current shape.
      const current = store.getOrCreateShape(def);
      return done({ status: 409, handle: current.handle, post }, [MUST_REFETCH]);
    }
  }
  const handle = shape.handle;
  // The etag names the parsed offset, as Electric prints it.
  const reqOffset = since === 'now' ? 'now' : formatOffset(since);

  if (v.subset) {
    // The response offset is where the request's offset seeks to, so a
    // client starting at `now` can continue from the snapshot.
    const outOfBounds = since !== 'now' && compareOffsets(shape.lastOffset, since) < 0;
    const offset = since === 'now' || outOfBounds ? shape.lastOffset : (shape.chunkEndFor(since) ?? shape.lastOffset);
    const result = runSubset(v.subset, shape, store, ctx.debug);
    const r = { status: 200, handle, offset, schema: shape.schemaJson };
    return { status: 200, headers: subsetHeaders(r, store), body: subsetBody(result), meta: r };
  }

  if (since === 'now') {
    return done(
      {
        status: 200, handle, offset: shape.lastOffset, reqOffset, upToDate: true, schema: shape.schemaJson, post,
        noChanges: true, etagSuffix: `:${process.hrtime.bigint()}${++monotonic}`,
      },
      [`[${upToDate(store.globalLsn)}]`],
    );
  }

  const sse = (r, parts, upToDateLsn, keepOpen, closeAfterMs) => ({
    status: 200,
    headers: responseHeaders({ ...r, sse: true }, store, q),
    stream: sseBody({ shape, store, since: r.offset, parts, upToDateLsn, keepOpen, closeAfterMs, fault: ctx.fault, debug: ctx.debug }),
    meta: { ...r, sse: true },
  });

  // An offset beyond the shape's log may be a client slightly ahead of a
  // restarted server: wait up to half a long-poll for it to appear.
  if (compareOffsets(shape.lastOffset, since) < 0) {
    if (live && liveSse) {
      // Electric streams from there and ends the stream at that timeout.
      const r = { status: 200, handle, offset: shape.lastOffset, reqOffset, live, upToDate: false, post };
      return sse({ ...r, offset: since }, [], null, true, Math.floor(store.config.long_poll_ms / 2));
    }
    const why = await waitForChange(shape, Math.floor(store.config.long_poll_ms / 2), ctx.signal);
    if (why === 'rotated') return done({ status: 409, post }, [MUST_REFETCH]);
    if (why === 'aborted') return null;
    if (compareOffsets(shape.lastOffset, since) < 0) {
      return done({ status: 400 }, [errorBody('Invalid request', { offset: ['out of bounds for this shape'] })]);
    }
  }

  let checkedEtag = false;
  for (;;) {
    const last = shape.lastOffset;
    const end = shape.chunkEndFor(since) ?? last;
    // Never up-to-date on offset=-1 (that response is cached for a week), nor
    // when the chunk ends before the log does.
    const isUpToDate = !isBeforeAll(since) && compareOffsets(end, maxOffset(last, since)) >= 0;
    const r = { status: 200, handle, offset: end, reqOffset, live, upToDate: isUpToDate, schema: shape.schemaJson, post };

    if (!checkedEtag) {
      checkedEtag = true;
      const etag = `${handle}:${reqOffset}:${formatOffset(end)}`;
      if (ctx.ifNoneMatch.includes(etag)) return done({ ...r, status: 304 }, []);
    }

    const parts = shape.itemsBetween(since, end);
    if (live && liveSse) {
      // Nothing new: a long-lived stream; otherwise the messages, then the end.
      if (parts.length === 0) return sse(r, [], null, true);
      return sse(r, splitParts(parts, shape, since), isUpToDate ? end.tx : null, false);
    }
    if (live && parts.length === 0) {
      const why = await waitForChange(shape, store.config.long_poll_ms, ctx.signal);
      if (why === 'change') continue;
      if (why === 'aborted') return null;
      if (why === 'rotated') return done({ status: 409, post }, [MUST_REFETCH]);
      // Long-poll timeout: 200 with only up-to-date, same offset, has-data false,
      // and an etag that can never revalidate.
      const timeout = { ...r, noChanges: true, etagSuffix: `:${process.hrtime.bigint()}${++monotonic}` };
      const body = [`[${upToDate(store.globalLsn)}]`];
      // Servers before 1.0.4 answered a timeout with 204 No Content.
      if (ctx.liveTimeoutHook?.()) return done({ ...timeout, status: 204 }, []);
      return done(timeout, body);
    }

    const body = ['['];
    parts.forEach((p, i) => {
      if (i > 0) body.push(',');
      body.push(p);
    });
    if (isUpToDate) {
      const lsn = live ? end.tx : (store.globalLsn > end.tx ? store.globalLsn : end.tx);
      body.push(parts.length ? ',' : '', upToDate(lsn));
    }
    body.push(']');
    return done(r, body);
  }
}

// SSE sends one message per event: snapshot chunk parts (a live request may
// still be inside the snapshot) are runs of messages and get split.
function splitParts(parts, shape, since) {
  const inSnapshot = isBeforeAll(since) || (isVirtual(since) && since.op < shape.lastSnapshotChunk);
  if (!inSnapshot) return parts;
  return parts.flatMap((p) => JSON.parse(`[${p}]`).map((m) => JSON.stringify(m)));
}

export { errorBody, MUST_REFETCH, SERVER_HEADER, upToDate };
