#!/usr/bin/env node
// Electric-compatible test server: GET /v1/shape (Electric's 1.x HTTP shape
// protocol) over in-memory tables, plus a /_control API to create tables,
// commit transactions, rotate shapes and inject faults.
//
//   node server.js [--port 0] [--host 127.0.0.1] [--long-poll-ms 20000]
//                  [--tls-cert FILE --tls-key FILE]   (serve https)
//                  [--exit-with-stdin]   (stop when stdin closes)
//
// Prints {"port":N} once listening; runs until SIGTERM/SIGINT.
// As a library: const srv = await createServer({port: 0}); ... await srv.close()

import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { pathToFileURL } from 'node:url';
import { Store } from './store.js';
import { Faults, requestInfo, replacementResponse, transformResponse } from './faults.js';
import { handleShapeRequest, parseQuery, mergeBody } from './protocol.js';
import { ControlApi, readBody } from './control.js';
import { WriteEndpoint } from './writes.js';
import { deliver, sendJson } from './http.js';
import { InputError } from './table.js';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const MAX_LOG = 100_000; // request log entries kept (oldest dropped first)

function parseIfNoneMatch(header) {
  if (!header) return [];
  return header.split(',').map((s) => s.trim().replace(/^W\//, '').replace(/^"|"$/g, ''));
}

export async function createServer({ port = 0, host = '127.0.0.1', longPollMs, chunkBytes, quiet = true, tlsCert, tlsKey } = {}) {
  const config = {};
  if (longPollMs !== undefined) config.long_poll_ms = longPollMs;
  if (chunkBytes !== undefined) config.chunk_bytes = chunkBytes;
  const store = new Store(config);
  const faults = new Faults();
  const requestLog = [];
  const debug = {}; // switches that break the protocol on purpose (see /_control/debug)
  const writes = new WriteEndpoint(store);
  const control = new ControlApi(store, faults, requestLog, { debug, writes });

  async function serveShape(req, res, url) {
    const started = Date.now();
    let body;
    if (req.method === 'POST') {
      // ServeShapePlug.parse_body: a JSON object, or 400.
      const text = await readBody(req);
      if (text === null) return sendJson(res, 413, { error: 'Request body too large' });
      if (text.trim() === '') body = {};
      else {
        try {
          body = JSON.parse(text);
        } catch (e) {
          return sendJson(res, 400, { error: 'Invalid JSON in request body', details: e.message });
        }
        if (!body || typeof body !== 'object' || Array.isArray(body)) return sendJson(res, 400, { error: 'Request body must be a JSON object' });
      }
    }
    const info = requestInfo(url.searchParams);
    const fault = faults.take(info);
    const abort = new AbortController();
    res.on('close', () => abort.abort());

    let lazyFault = null;
    if (fault?.kind === 'delay') await sleep(fault.ms);
    let resp = replacementResponse(fault, url.searchParams, store);
    if (!resp) {
      resp = await handleShapeRequest(url.searchParams, store, {
        query: body ? mergeBody(parseQuery(url.searchParams), body) : undefined,
        method: req.method,
        fault,
        debug,
        signal: abort.signal,
        ifNoneMatch: parseIfNoneMatch(req.headers['if-none-match']),
        // legacy_204 is consumed only when a long-poll really times out.
        liveTimeoutHook: () => (lazyFault = faults.takeLegacy204(info)),
      });
    }
    // resp is null when the client went away during a long-poll.
    const final = resp && transformResponse(fault, resp);
    const h = final?.headers ?? {};
    if (requestLog.length >= MAX_LOG) requestLog.splice(0, requestLog.length - MAX_LOG + 1);
    requestLog.push({
      t: started,
      method: req.method,
      path: url.pathname,
      query: parseQuery(url.searchParams),
      body: body ?? null,
      headers: req.headers,
      status: final ? final.status : null,
      offset_out: h['electric-offset'] ?? null,
      live: info.live,
      sse: info.sse,
      subset: final?.headers?.['electric-snapshot'] === 'true',
      handle_out: h['electric-handle'] ?? null,
      cursor_out: h['electric-cursor'] ?? null,
      up_to_date: 'electric-up-to-date' in h,
      fault: (lazyFault ?? fault)?.kind ?? null,
      aborted: final === null,
      ms: Date.now() - started,
    });
    // delay_send: the answer as it stood when handled, sent ms later (if still wanted)
    if (final && fault?.kind === 'delay_send') {
      await sleep(fault.ms);
      if (res.destroyed) return;
    }
    if (final) await deliver(req, res, final, fault);
  }

  const handler = async (req, res) => {
    const url = new URL(req.url, 'http://localhost');
    try {
      if (url.pathname.startsWith('/_control')) {
        const [status, body] = await control.handle(req, url);
        return sendJson(res, status, body);
      }
      if (url.pathname === '/v1/writes') return await writes.handle(req, res, url);
      if (url.pathname === '/v1/shape') {
        if (['GET', 'HEAD', 'POST'].includes(req.method)) return await serveShape(req, res, url);
        if (req.method === 'OPTIONS') {
          res.writeHead(204, { 'access-control-allow-origin': '*', 'access-control-allow-methods': 'GET, POST, OPTIONS', 'access-control-allow-headers': '*' });
          return res.end();
        }
        if (req.method === 'DELETE') return sendJson(res, 405, { message: 'Shape deletion is not allowed' });
        return sendJson(res, 405, { message: `${req.method} /v1/shape is not supported by this test server` });
      }
      if (url.pathname === '/v1/health') return sendJson(res, 200, { status: 'active' });
      if (url.pathname === '/' && req.method === 'GET') return res.end();
      res.writeHead(404, { 'content-type': 'text/plain' });
      return res.end('Not found');
    } catch (e) {
      if (res.headersSent) return res.destroy();
      if (e instanceof InputError) {
        const body = { message: e.message };
        if (e.applied !== undefined) body.applied = e.applied;
        return sendJson(res, e.status ?? 400, body);
      }
      if (!quiet) console.error(e);
      return sendJson(res, 500, { message: `internal error: ${e.message}` });
    }
  };
  const server = tlsCert
    ? https.createServer({ cert: fs.readFileSync(tlsCert), key: fs.readFileSync(tlsKey) }, handler)
    : http.createServer(handler);
  server.keepAliveTimeout = 60_000;

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  const actualPort = server.address().port;
  return {
    port: actualPort,
    url: `${tlsCert ? 'https' : 'http'}://${host}:${actualPort}`,
    store,
    faults,
    requestLog,
    writes,
    close: () =>
      new Promise((resolve) => {
        store.reset(); // answers pending long-polls
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function parseArgs(argv) {
  const opts = { port: 0, host: '127.0.0.1' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--port') opts.port = Number(val());
    else if (a === '--host') opts.host = val();
    else if (a === '--long-poll-ms') opts.longPollMs = Number(val());
    else if (a === '--chunk-bytes') opts.chunkBytes = Number(val());
    else if (a === '--verbose') opts.quiet = false;
    else if (a === '--exit-with-stdin') opts.exitWithStdin = true;
    else if (a === '--tls-cert') opts.tlsCert = val();
    else if (a === '--tls-key') opts.tlsKey = val();
    else throw new Error(`unknown argument ${a}`);
  }
  if (!opts.tlsCert !== !opts.tlsKey) throw new Error('--tls-cert and --tls-key go together');
  if (!['127.0.0.1', 'localhost', '::1'].includes(opts.host)) throw new Error('the test server listens on loopback only');
  for (const [k, v] of Object.entries({ port: opts.port, longPollMs: opts.longPollMs, chunkBytes: opts.chunkBytes })) {
    if (v !== undefined && !(Number.isInteger(v) && v >= 0)) throw new Error(`bad value for ${k}`);
  }
  return opts;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(e.message);
    process.exit(2);
  }
  const srv = await createServer(opts);
  process.stdout.write(`${JSON.stringify({ port: srv.port })}\n`);
  const stop = async () => {
    await srv.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // a test harness that dies without stopping us closes our stdin
  if (opts.exitWithStdin) {
    process.stdin.on('end', stop);
    process.stdin.resume();
  }
}
