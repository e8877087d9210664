// Live SSE (`live=true&live_sse=true`), following Electric's
// Shapes.Api.stream_sse_events and Encoder.SSE: one `data: <json>\n\n` event
// per message. When the client is behind, the available messages are sent
// and the response ends; otherwise the stream stays open, sends each new
// batch followed by an up-to-date whose global_last_seen_lsn is the batch's
// end LSN, writes `: keep-alive` comments when idle for sse_keepalive_ms, and
// is closed by the server after sse_timeout_ms or when the shape is rotated
// (Electric just ends the stream; the next request gets the 409).

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export const sseCacheControl = (timeoutMs) => `public, max-age=${Math.max(1, Math.floor(timeoutMs / 1000) - 1)}`;

// Resolves to 'change' | 'rotated' | 'aborted' | 'tick' (after ms).
function nextEvent(shape, ms, signal) {
  return new Promise((resolve) => {
    if (shape.dead) return resolve('rotated');
    if (signal.aborted) return resolve('aborted');
    const done = (why) => {
      clearTimeout(timer);
      shape.waiters.delete(waiter);
      signal.removeEventListener('abort', onAbort);
      resolve(why);
    };
    const waiter = (event) => done(event === 'rotated' ? 'rotated' : 'change');
    const onAbort = () => done('aborted');
    const timer = setTimeout(() => done('tick'), Math.max(1, ms));
    shape.waiters.add(waiter);
    signal.addEventListener('abort', onAbort);
  });
}

// opts: {shape, store, since, parts (messages to send first), upToDateLsn
// (null: no up-to-date after them), keepOpen, closeAfterMs?, fault, debug}
// Returns a `stream` function for http.deliver.
export function sseBody(opts) {
  return async (req, res, signal) => {
    const { shape, store, fault } = opts;
    const sep = opts.debug?.sse_bad_framing ? '\n' : '\n\n';
    let events = 0;
    // Writes one event; false once the connection is gone (or cut by a fault).
    const send = async (json) => {
      const frame = `data: ${json}${sep}`;
      if (fault?.kind === 'sse_cut_mid_event' && events >= (fault.after_events ?? 0)) {
        const buf = Buffer.from(frame);
        await new Promise((resolve) => res.write(buf.subarray(0, Math.max(1, Math.floor(buf.length / 2))), resolve));
        await sleep(20);
        res.socket?.destroy();
        return false;
      }
      events++;
      if (!res.write(frame)) {
        await new Promise((resolve) => {
          res.once('drain', resolve);
          res.once('close', resolve);
        });
      }
      return !res.destroyed;
    };
    const upToDate = (lsn) => `{"headers":{"control":"up-to-date","global_last_seen_lsn":"${lsn}"}}`;

    for (const p of opts.parts) if (!(await send(p))) return;
    if (opts.upToDateLsn !== null && !(await send(upToDate(opts.upToDateLsn)))) return;
    if (!opts.keepOpen || fault?.kind === 'sse_short') return res.end();

    const { sse_timeout_ms: timeoutMs, sse_keepalive_ms: keepaliveMs } = store.config;
    const started = Date.now();
    const closeAt = started + Math.min(timeoutMs, opts.closeAfterMs ?? Infinity);
    let since = opts.since;
    let lastMessage = started;
    for (;;) {
      const now = Date.now();
      if (now >= closeAt) return res.end();
      const why = await nextEvent(shape, Math.min(closeAt, lastMessage + keepaliveMs) - now, signal);
      if (why === 'aborted') return;
      if (why === 'rotated') return res.end();
      if (why === 'tick') {
        if (Date.now() - lastMessage >= keepaliveMs && Date.now() < closeAt) {
          res.write(': keep-alive\n\n');
          lastMessage = Date.now();
        }
        continue;
      }
      // The test server sends everything new as one batch; Electric would end
      // a batch at a log chunk boundary (10 MiB by default).
      const end = shape.lastOffset;
      const parts = shape.itemsBetween(since, end);
      if (parts.length === 0) continue;
      for (const p of parts) if (!(await send(p))) return;
      if (!(await send(upToDate(end.tx)))) return;
      since = end;
      lastMessage = Date.now();
    }
  };
}
