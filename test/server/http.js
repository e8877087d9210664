// Writing responses to the socket, including the delivery-level faults:
// reset_mid_body, slow_drip and gzip. Streaming responses (SSE) bring their
// own writer.

import zlib from 'node:zlib';

const toBuffer = (parts) => Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p))));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function sendJson(res, status, obj, extraHeaders = {}) {
  const body = obj === undefined ? '' : JSON.stringify(obj);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...extraHeaders });
  res.end(body);
}

// resp: {status, headers, body: [string|Buffer]}. Shape data is streamed with
// chunked transfer encoding like Electric does; other answers get a length.
export async function deliver(req, res, resp, fault) {
  const headOnly = req.method === 'HEAD';
  const headers = { ...resp.headers };
  if (resp.stream) {
    // A long-lived response (SSE) writes itself; `close` aborts it.
    res.writeHead(resp.status, headers);
    if (headOnly) return res.end();
    res.flushHeaders();
    const abort = new AbortController();
    res.on('close', () => abort.abort());
    await resp.stream(req, res, abort.signal);
    return;
  }
  let parts = resp.body;
  const streamed = resp.status === 200;

  if (fault?.kind === 'gzip' && /\bgzip\b/.test(req.headers['accept-encoding'] ?? '') && !headOnly) {
    parts = [zlib.gzipSync(toBuffer(parts))];
    headers['content-encoding'] = 'gzip';
    headers.vary = 'accept-encoding';
  }

  if (headOnly || resp.status === 204 || resp.status === 304) {
    res.writeHead(resp.status, headers);
    res.end();
    return;
  }

  if (fault?.kind === 'reset_mid_body') {
    // Headers and part of the body, then the connection dies.
    const buf = toBuffer(parts);
    res.writeHead(resp.status, headers);
    res.flushHeaders();
    const cut = Math.max(1, Math.floor(buf.length / 2));
    await new Promise((resolve) => res.write(buf.subarray(0, cut), resolve));
    await sleep(20);
    res.socket?.destroy();
    return;
  }

  if (fault?.kind === 'slow_drip') {
    const step = Math.max(1, fault.bytes ?? 16);
    const interval = Math.max(0, fault.interval_ms ?? 50);
    const buf = toBuffer(parts);
    res.writeHead(resp.status, headers);
    res.flushHeaders();
    for (let i = 0; i < buf.length && !res.destroyed; i += step) {
      res.write(buf.subarray(i, i + step));
      if (i + step < buf.length) await sleep(interval);
    }
    res.end();
    return;
  }

  if (!streamed) {
    const buf = toBuffer(parts);
    res.writeHead(resp.status, { ...headers, 'content-length': buf.length });
    res.end(buf);
    return;
  }
  res.writeHead(resp.status, headers);
  for (const p of coalesce(parts)) {
    // Respect backpressure so a 10 MiB page does not pile up in memory per client.
    if (!res.write(p)) await drained(res);
    if (res.destroyed) return;
  }
  res.end();
}

function drained(res) {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

// Joins runs of small parts into ~64 KiB writes (one HTTP chunk each).
// Buffers may hold arbitrary bytes, so they are never decoded.
function* coalesce(parts) {
  let pending = [];
  let size = 0;
  const flush = () => {
    const out = pending.every((p) => typeof p === 'string') ? pending.join('') : toBuffer(pending);
    pending = [];
    size = 0;
    return out;
  };
  for (const p of parts) {
    if (p.length === 0) continue;
    if (Buffer.isBuffer(p) && p.length >= 65536) {
      if (pending.length) yield flush();
      yield p;
      continue;
    }
    pending.push(p);
    size += p.length;
    if (size >= 65536) yield flush();
  }
  if (pending.length) yield flush();
}
