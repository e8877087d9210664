// GET /v1/shape, following Electric's Shapes.Api (validate -> load shape ->
// seek -> serve) and Api.Response (headers). Produces a response description
// {status, headers, body: [string|Buffer]} that the HTTP layer sends, possibly
// after a fault has been applied to it.

import { parseShapeDefinition, ValidationError } from './shape.js';
import { parseOffset, formatOffset, compareOffsets, isBeforeAll, maxOffset } from './offsets.js';

const SERVER_HEADER = 'ElectricSQL/1.7.12';
const MUST_REFETCH = '[{"headers":{"control":"must-refetch"}}]';
const CURSOR_EPOCH_S = Date.UTC(2024, 9, 9) / 1000;

// ---- request parsing ----

// Query string as Plug parses it (last value wins; params[n] becomes a map).
export function parseQuery(searchParams) {
  const q = {};
  for (const [k, v] of searchParams) {
    const m = /^params\[([^\]]*)\]$/.exec(k);
    if (m) {
      if (typeof q.params !== 'object' || q.params === null) q.params = {};
      q.params[m[1]] = v;
    } else q[k] = v;
  }
  return q;
}

// Electric's Api.Params.validate; returns {def, since, handle, live} or throws ValidationError.
function validateParams(q, store) {
  const errors = {};
  const add = (k, m) => (errors[k] ??= []).push(m);
  // A bare `live` or any value other than "false" means true.
  const live = q.live !== undefined && q.live !== 'false';
  const liveSse = [q.live_sse, q.experimental_live_sse].some((v) => v !== undefined && v !== 'false');
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
  if (liveSse) throw new ValidationError({ live_sse: ['SSE is not supported by this test server; use long polling'] });
  if (Object.keys(q).some((k) => k.startsWith('subset__'))) {
    throw new ValidationError({ subset: ['subset snapshots are not supported by this test server'] });
  }
  const def = parseShapeDefinition(q, store);
  return { def, since, handle, live };
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
  if (r.status === 409) h['cache-control'] = `public, max-age=${r.handle ? 60 : 1}, must-revalidate`;
  else if (r.status >= 400) {
    h['cache-control'] = 'no-store';
    h['surrogate-control'] = 'no-store';
  } else if (r.reqOffset === '-1') {
    h['cache-control'] = 'public, max-age=604800, s-maxage=3600, stale-while-revalidate=2629746';
  } else if (r.live) h['cache-control'] = 'public, max-age=5, stale-while-revalidate=5';
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

// ctx: {signal (request aborted), ifNoneMatch: [etags], liveTimeoutHook(): response-override | null}
export async function handleShapeRequest(searchParams, store, ctx) {
  const q = parseQuery(searchParams);
  let v;
  try {
    v = validateParams(q, store);
  } catch (e) {
    if (!(e instanceof ValidationError)) throw e;
    return finish({ status: 400 }, store, q, [errorBody('Invalid request', e.errors)]);
  }
  const { def, since, live } = v;
  let shape;
  if (v.handle === null) shape = store.getOrCreateShape(def);
  else {
    shape = store.resolveShape(v.handle, def);
    if (!shape) {
      // Rotated, unknown, or belonging to another definition: redirect to the current shape.
      const current = store.getOrCreateShape(def);
      return finish({ status: 409, handle: current.handle }, store, q, [MUST_REFETCH]);
    }
  }
  const handle = shape.handle;
  // The etag names the parsed offset, as Electric prints it.
  const reqOffset = since === 'now' ? 'now' : formatOffset(since);

  if (since === 'now') {
    return finish(
      { status: 200, handle, offset: shape.lastOffset, reqOffset, upToDate: true, schema: shape.schemaJson },
      store, q, [`[${upToDate(store.globalLsn)}]`],
    );
  }

  // An offset beyond the shape's log may be a client slightly ahead of a
  // restarted server: wait up to half a long-poll for it to appear.
  if (compareOffsets(shape.lastOffset, since) < 0) {
    const why = await waitForChange(shape, Math.floor(store.config.long_poll_ms / 2), ctx.signal);
    if (why === 'rotated') return finish({ status: 409 }, store, q, [MUST_REFETCH]);
    if (why === 'aborted') return null;
    if (compareOffsets(shape.lastOffset, since) < 0) {
      return finish({ status: 400 }, store, q, [errorBody('Invalid request', { offset: ['out of bounds for this shape'] })]);
    }
  }

  let checkedEtag = false;
  for (;;) {
    const last = shape.lastOffset;
    const end = shape.chunkEndFor(since) ?? last;
    // Never up-to-date on offset=-1 (that response is cached for a week), nor
    // when the chunk ends before the log does.
    const isUpToDate = !isBeforeAll(since) && compareOffsets(end, maxOffset(last, since)) >= 0;
    const r = { status: 200, handle, offset: end, reqOffset, live, upToDate: isUpToDate, schema: shape.schemaJson };

    if (!checkedEtag) {
      checkedEtag = true;
      const etag = `${handle}:${reqOffset}:${formatOffset(end)}`;
      if (ctx.ifNoneMatch.includes(etag)) return finish({ ...r, status: 304 }, store, q, []);
    }

    const parts = shape.itemsBetween(since, end);
    if (live && parts.length === 0) {
      const why = await waitForChange(shape, store.config.long_poll_ms, ctx.signal);
      if (why === 'change') continue;
      if (why === 'aborted') return null;
      if (why === 'rotated') return finish({ status: 409 }, store, q, [MUST_REFETCH]);
      // Long-poll timeout: 200 with only up-to-date, same offset, has-data false,
      // and an etag that can never revalidate.
      const timeout = { ...r, noChanges: true, etagSuffix: `:${process.hrtime.bigint()}${++monotonic}` };
      const body = [`[${upToDate(store.globalLsn)}]`];
      // Servers before 1.0.4 answered a timeout with 204 No Content.
      if (ctx.liveTimeoutHook?.()) return finish({ ...timeout, status: 204 }, store, q, []);
      return finish(timeout, store, q, body);
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
    return finish(r, store, q, body);
  }
}

export { errorBody, MUST_REFETCH, SERVER_HEADER, upToDate };
