// A feeding process for host-driven subscriptions (worker => false): the
// loop an application (or PGlite's JavaScript) runs around the engine.
//
//   next_request(name, shape) -> {url, headers, live, timeout_ms} | {wait_ms} | NULL
//   HTTP GET url with those headers, at most timeout_ms
//   ingest_response(name, status, headers, body, shape)
//
// A response that never arrived whole (connection refused or reset, a body
// cut short, a timeout) is reported as status 0 with the headers received
// so far and the error as the body: the engine treats it as a network error
// (backoff) and records that text.
// Redirects are not followed (the engine's URL is the one to ask).  An
// ingest_response that fails (the subscription was stopped during the
// request) is printed, and the loop asks next_request again, which is NULL
// once stopped; a second failure in a row ends the feeder.
//
// Connection: the usual PG* environment variables.  Options:
//   --name NAME         the subscription (required)
//   --shape SHAPE       one shape of a group (default: the first)
//   --calls N           stop after N ingest_response calls
//   --until-up-to-date  stop after the first ingest that is up to date
//   --seconds S         stop after S seconds (checked between calls)
//   --max-wait-ms MS    sleep at most this long for a wait_ms (default: no limit)
// Prints one JSON line per step on stdout: {"step": "request", ...},
// {"step": "wait", ...}, {"step": "ingest", ...}, {"step": "stopped"}, and
// {"step": "exit", "reason": ...} at the end.

import pg from 'pg';

function parseArgs(argv) {
  const o = { name: null, shape: null, calls: Infinity, untilUpToDate: false, seconds: Infinity, maxWaitMs: Infinity };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--name') o.name = next();
    else if (a === '--shape') o.shape = next();
    else if (a === '--calls') o.calls = Number(next());
    else if (a === '--until-up-to-date') o.untilUpToDate = true;
    else if (a === '--seconds') o.seconds = Number(next());
    else if (a === '--max-wait-ms') o.maxWaitMs = Number(next());
    else throw new Error(`unknown option ${a}`);
  }
  if (!o.name) throw new Error('--name is required');
  return o;
}

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// One HTTP exchange: {status, headers, body: Buffer|null, error?}
async function fetchOnce(req) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(new Error(`timeout after ${req.timeout_ms} ms`)), req.timeout_ms ?? 60000);
  let headers = {};
  try {
    const res = await fetch(req.url, { headers: req.headers ?? {}, redirect: 'manual', signal: ctl.signal });
    headers = {};
    res.headers.forEach((v, k) => {
      headers[k] = v;
    });
    const body = Buffer.from(await res.arrayBuffer());
    return { status: res.status, headers, body };
  } catch (e) {
    // status 0 and, as the body, what went wrong: the engine records it as a network error
    const error = String(e?.cause?.code ?? e?.message ?? e);
    return { status: 0, headers, body: Buffer.from(error), error };
  } finally {
    clearTimeout(timer);
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const client = new pg.Client();
  await client.connect();
  const started = Date.now();
  let calls = 0;
  let reason = 'done';
  let ingestFailed = false;
  try {
    for (;;) {
      if (calls >= opts.calls) {
        reason = 'calls';
        break;
      }
      if ((Date.now() - started) / 1000 >= opts.seconds) {
        reason = 'seconds';
        break;
      }
      const { rows } = await client.query('SELECT electric.next_request($1, $2) AS r', [opts.name, opts.shape]);
      const req = rows[0].r;
      if (req === null) {
        emit({ step: 'stopped' });
        reason = 'stopped';
        break;
      }
      if (req.wait_ms !== undefined) {
        const ms = Math.min(Number(req.wait_ms), opts.maxWaitMs);
        emit({ step: 'wait', wait_ms: Number(req.wait_ms), slept_ms: ms, shape: req.shape });
        await sleep(ms);
        continue;
      }
      emit({ step: 'request', url: req.url, live: req.live, timeout_ms: req.timeout_ms, headers: req.headers, shape: req.shape });
      const res = await fetchOnce(req);
      let ing;
      try {
        ing = await client.query(
          'SELECT electric.ingest_response($1, $2, $3::jsonb, $4::bytea, $5) AS r',
          [opts.name, res.status, JSON.stringify(res.headers), res.body, req.shape],
        );
      } catch (e) {
        // stopped meanwhile (unsubscribe during the request): next_request
        // says so; any other error ends the feeder
        emit({ step: 'ingest_error', status: res.status, error: String(e.message ?? e), code: e.code ?? null });
        if (ingestFailed) throw e;
        ingestFailed = true;
        continue;
      }
      ingestFailed = false;
      calls++;
      const out = ing.rows[0].r;
      emit({ step: 'ingest', call: calls, status: res.status, bytes: res.body ? res.body.length : null, fetch_error: res.error ?? null, result: out });
      if (opts.untilUpToDate && out.is_up_to_date) {
        reason = 'up-to-date';
        break;
      }
    }
  } catch (e) {
    emit({ step: 'exit', reason: 'error', error: String(e.message ?? e), code: e.code ?? null });
    await client.end().catch(() => {});
    process.exit(2);
  }
  emit({ step: 'exit', reason, calls });
  await client.end();
}

main().catch((e) => {
  emit({ step: 'exit', reason: 'error', error: String(e.message ?? e) });
  process.exit(2);
});
