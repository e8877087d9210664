#!/usr/bin/env node
// Regenerates the seed corpora under corpus/<target>/ from the project's
// Electric-compatible test server (run in-process) plus hand-written cases.
//
//   node test/fuzz/gen_corpus.mjs
//
// Input formats (see README.md):
//   fuzz_bodysplit  4 parameter bytes, then the response body
//   fuzz_message    one message, as is
//   fuzz_protocol   1 flag byte, then segments separated by 0xFF
//   fuzz_shapeopts  the shape option JSON text, as is
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer } from '../server/server.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = (t) => path.join(here, 'corpus', t);

function get(port, pathAndQuery) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: pathAndQuery }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const lines = [];
        for (let i = 0; i < res.rawHeaders.length; i += 2) lines.push(`${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}\r\n`);
        resolve({ status: res.statusCode, headers: res.headers, lines, body: Buffer.concat(chunks) });
      });
      res.on('error', reject);
    }).on('error', reject);
  });
}

async function control(port, method, p, body) {
  const r = await fetch(`http://127.0.0.1:${port}/_control${p}`, {
    method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const j = await r.json();
  if (!r.ok) throw new Error(`${p}: ${JSON.stringify(j)}`);
  return j;
}

// Split a JSON array body into its elements' exact bytes (strings/nesting only).
function splitBody(buf) {
  const s = buf.toString('latin1');
  const msgs = [];
  let depth = 0, inStr = false, esc = false, start = -1;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (depth === 0 && c === '{') { start = i; depth = 1; continue; }
    if (depth === 0) continue;
    if (inStr) { if (esc) esc = false; else if (c === '\\') esc = true; else if (c === '"') inStr = false; continue; }
    if (c === '"') inStr = true;
    else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') { if (--depth === 0) msgs.push(Buffer.from(s.slice(start, i + 1), 'latin1')); }
  }
  return msgs;
}

const files = { fuzz_bodysplit: new Map(), fuzz_message: new Map(), fuzz_protocol: new Map(), fuzz_shapeopts: new Map() };
function add(target, name, data) {
  const b = Buffer.isBuffer(data) ? data : Buffer.from(data, 'utf8');
  for (const v of files[target].values()) if (v.equals(b)) return;
  files[target].set(name, b);
}
const bodyParams = (flags, stop, seed) => Buffer.from([flags, stop, seed & 255, (seed >> 8) & 255]);

const srv = await createServer({ port: 0, longPollMs: 300 });
const port = srv.port;
const responses = [];
try {
  await control(port, 'POST', '/tables', {
    name: 'items',
    columns: [
      { name: 'id', type: 'int4', not_null: true }, { name: 'title', type: 'text' },
      { name: 'tags', type: 'text', dims: 1 }, { name: 'data', type: 'jsonb' },
      { name: 'flag', type: 'bool' }, { name: 'amount', type: 'numeric', precision: 10, scale: 2 },
      { name: 'at', type: 'timestamptz' },
    ],
    primary_key: ['id'],
    rows: [
      { id: 1, title: 'plain', tags: '{a,b,"c d",NULL}', data: { x: [1, 2, { y: null }], s: 'q"\\' }, flag: true, amount: '12.50', at: '2024-01-02 03:04:05+00' },
      { id: 2, title: 'quote " back \\ nl \n tab \t cr \r', tags: null, data: null, flag: false, amount: null, at: null },
      { id: 3, title: 'unicode h\u00e9 \u4e2d\u6587 \u{1F600} \u0001 ctl', tags: '{}', data: [], flag: null, amount: '-0.01', at: null },
      { id: 4, title: '', tags: '{{1,2},{3,4}}', data: 'str', flag: true, amount: '99999999.99', at: null },
    ],
  });
  await control(port, 'POST', '/tables', {
    name: 'nopk', columns: [{ name: 'a', type: 'text' }, { name: 'b', type: 'int8' }],
    rows: [{ a: 'x/y', b: '9223372036854775807' }, { a: null, b: null }],
  });

  const snap = await get(port, '/v1/shape?table=items&offset=-1');
  responses.push(['snapshot', snap]);
  const handle = snap.headers['electric-handle'];
  const snap2 = await get(port, `/v1/shape?table=items&offset=${snap.headers['electric-offset']}&handle=${handle}`);
  responses.push(['uptodate', snap2]);
  let off = snap2.headers['electric-offset'];

  await control(port, 'POST', '/tables/items/txn', { ops: [
    { op: 'insert', row: { id: 10, title: 'new \u00fc', tags: '{x}', data: { k: 'v' }, flag: true, amount: '1.00', at: '2025-05-05 05:05:05+00' } },
    { op: 'update', row: { id: 1, title: 'changed "1"' } },
  ] });
  await control(port, 'POST', '/tables/items/txn', { ops: [{ op: 'delete', row: { id: 2 } }] });
  await control(port, 'POST', '/tables/items/txn', { ops: [{ op: 'update', row: { id: 3 }, new_key: { id: 30 } }] });
  const live = await get(port, `/v1/shape?table=items&offset=${off}&handle=${handle}&live=true&cursor=0`);
  responses.push(['live', live]);
  off = live.headers['electric-offset'];
  const timeout = await get(port, `/v1/shape?table=items&offset=${off}&handle=${handle}&live=true&cursor=${live.headers['electric-cursor']}`);
  responses.push(['live_timeout', timeout]);

  // replica=full, columns, where with params
  const full = await get(port, '/v1/shape?table=items&offset=-1&replica=full&columns=id,title&where=id%20%3E%20%241&params%5B1%5D=0');
  responses.push(['full_snapshot', full]);
  const h2 = full.headers['electric-handle'];
  const full2 = await get(port, `/v1/shape?table=items&offset=${full.headers['electric-offset']}&handle=${h2}&replica=full&columns=id,title&where=id%20%3E%20%241&params%5B1%5D=0`);
  await control(port, 'POST', '/tables/items/txn', { ops: [{ op: 'update', row: { id: 1, title: 'full \\ update' } }] });
  const full3 = await get(port, `/v1/shape?table=items&offset=${full2.headers['electric-offset']}&handle=${h2}&replica=full&columns=id,title&where=id%20%3E%20%241&params%5B1%5D=0&live=true&cursor=1`);
  responses.push(['full_live', full3]);

  const np = await get(port, '/v1/shape?table=nopk&offset=-1');
  responses.push(['nopk', np]);
  const r409 = await get(port, '/v1/shape?table=items&offset=0_0&handle=bogus');
  responses.push(['409', r409]);

  // generated table with several snapshot pages
  await control(port, 'POST', '/tables/gen/generate', { rows: 6, page_rows: 3 });
  const g = await get(port, '/v1/shape?table=gen&offset=-1');
  responses.push(['generated', g]);

  // faults
  const faulty = [
    ['legacy_headers', { kind: 'legacy_headers' }],
    ['must_refetch_in_body', { kind: 'must_refetch_in_body' }],
    ['bad_utf8', { kind: 'bad_utf8' }],
    ['truncate_json', { kind: 'truncate_json' }],
    ['malformed_syntax', { kind: 'malformed_message', variant: 'syntax' }],
    ['malformed_structure', { kind: 'malformed_message', variant: 'structure' }],
    ['status_503', { kind: 'status', status: 503, retry_after: 7 }],
    ['status_429', { kind: 'status', status: 429, retry_after: 'Wed, 21 Oct 2015 07:28:00 GMT' }],
    ['wrong_content_type', { kind: 'wrong_content_type' }],
  ];
  for (const [name, f] of faulty) {
    await control(port, 'POST', '/faults', f);
    responses.push([name, await get(port, '/v1/shape?table=nopk&offset=-1')]);
  }
} finally {
  await srv.close();
}

// ---- fuzz_bodysplit: whole bodies ------------------------------------------------
let seed = 1;
for (const [name, r] of responses) {
  if (r.body.length === 0) continue;
  add('fuzz_bodysplit', `${name}`, Buffer.concat([bodyParams(0, 0, seed * 7919), r.body]));
  seed++;
}
const live = responses.find(([n]) => n === 'live')[1].body;
add('fuzz_bodysplit', 'live_max_message', Buffer.concat([bodyParams(0x80 | 40, 0, 3), live]));
add('fuzz_bodysplit', 'live_stop_after_2', Buffer.concat([bodyParams(0, 2, 0xffff), live]));
add('fuzz_bodysplit', 'empty_body', bodyParams(0, 0, 0));
add('fuzz_bodysplit', 'empty_array', Buffer.concat([bodyParams(0, 0, 5), Buffer.from(' [ ]\n')]));
add('fuzz_bodysplit', 'whitespace_between', Buffer.concat([bodyParams(0, 0, 77), Buffer.from('\r\n[\t{"key":"a]}\\"[","value":{"x":["[{"]},"headers":{"operation":"insert"}} ,\n {"headers":{"control":"up-to-date","global_last_seen_lsn":"1"}}\n]\r\n')]));
add('fuzz_bodysplit', 'trailing_garbage', Buffer.concat([bodyParams(0, 0, 9), Buffer.from('[{"headers":{"control":"up-to-date"}}] x')]));
add('fuzz_bodysplit', 'not_array', Buffer.concat([bodyParams(0, 0, 9), Buffer.from('{"message":"Invalid request","errors":{"offset":["has invalid format"]}}')]));

// ---- fuzz_message: single messages ---------------------------------------------------
let n = 0;
for (const [name, r] of responses) {
  for (const m of splitBody(r.body)) add('fuzz_message', `${name}_${n++}`, m);
}
const handMessages = {
  escapes: '{"key":"\\"public\\".\\"t\\"/\\"1\\"","value":{"s":"\\b\\f\\n\\r\\t\\/\\\\\\"\\u00e9\\u4E2D\\ud83d\\ude00"},"headers":{"operation":"insert"}}',
  raw_utf8: '{"key":"k\u00e9","value":{"\u00fc\u00f1\u00ee":"\u4e2d\u6587 \u{1F600}"},"headers":{"operation":"insert","lsn":"1","op_position":0,"last":true}}',
  whitespace: ' \r\n{ "key" : "k" ,\t"value" : { "a" : null , "b" : "x" } , "headers" : { "operation" : "delete" } }\n',
  numbers_nested: '{"key":"k","value":{"n":-0.5e+10,"o":{"a":[true,false,null,{"b":[]}]},"z":0,"big":123456789012345678901234567890},"headers":{"operation":"update","op_position":-3,"lsn":26800584}}',
  old_value: '{"key":"k","value":{"id":"1","t":"new"},"old_value":{"t":"old"},"headers":{"operation":"update","lsn":"26800584","op_position":4,"last":true,"txids":[750]}}',
  value_null: '{"key":"k","value":null,"old_value":null,"headers":{"operation":"delete"}}',
  legacy_action: '{"offset":"0_0","key":"k","value":{"a":"1"},"headers":{"action":"insert","relation":["public","t"],"txid":"9"}}',
  event: '{"headers":{"event":"move-out","patterns":[{"pos":0,"value":"abc"}],"txids":[1,2]}}',
  snapshot_end: '{"headers":{"control":"snapshot-end","xmin":"750","xmax":"752","xip_list":["751"]}}',
  up_to_date: '{"headers":{"control":"up-to-date","global_last_seen_lsn":"18446744073709551615"}}',
  unknown_control: '{"headers":{"control":"subset-end"}}',
  unknown_op: '{"key":"k","value":{},"headers":{"operation":"upsert"}}',
  empty: '{}',
  deep: '{"x":' + '['.repeat(60) + ']'.repeat(60) + '}',
  op_position_last: '{"headers":{"op_position":12}}',
  surrogate_bad: '{"key":"\\ud800x"}',
  nul_escape: '{"key":"a\\u0000b"}',
};
for (const [k, v] of Object.entries(handMessages)) add('fuzz_message', k, v);

// ---- fuzz_protocol: flag byte + 0xFF-separated segments -------------------------------
const FF = Buffer.from([0xff]);
const proto = (flags, segs) => Buffer.concat([Buffer.from([flags]), ...segs.flatMap((s, i) => (i ? [FF, Buffer.from(s, 'utf8')] : [Buffer.from(s, 'utf8')]))]);
const offsets = ['-1', 'now', '0_0', '0_inf', '0_12', '26800584_4', '26800584_inf', '18446744073709551615_18446744073709551615', '00012_003'];
let i = 0;
for (const [name, r] of responses) {
  for (const line of r.lines) {
    if (i >= 24) break;
    const lname = line.toLowerCase();
    if (!(lname.startsWith('electric-') || lname.startsWith('content-type') || lname.startsWith('retry-after'))) continue;
    add('fuzz_protocol', `hdr_${name}_${i}`, proto(i & 3, [line, offsets[i % offsets.length], offsets[(i + 3) % offsets.length], line.replace(/^[^:]*:\s*/, '').trim()]));
    i++;
  }
}
const hand = {
  legacy_x: [1, ['x-electric-shape-id: 3833821-1721299734314\r\n', 'X-Electric-Chunk-Last-Offset: 0_inf\r\n', 'x-electric-schema: {}\r\n']],
  legacy_names: [0, ['electric-shape-id: h\r\n', 'electric-chunk-last-offset:0_0\r\n', 'electric-next-cursor:\t123\r\n', 'Electric-Chunk-Up-To-Date: \r\n']],
  retry_seconds: [2, ['Retry-After: 120\r\n', '120', '0', '3601', '18446744073709551616']],
  retry_date: [3, ['retry-after: Wed, 21 Oct 2015 07:28:00 GMT\r\n', 'Sun, 06 Nov 1994 08:49:37 GMT', 'Tue, 31 Dec 2099 23:59:59 GMT']],
  content_types: [0, ['Content-Type: application/json\r\n', 'application/json; charset=utf-8', 'APPLICATION/JSON', 'text/html; charset=utf-8', 'application/jsonx', '']],
  hosts: [0, ['localhost, *.example.com ,127.0.0.1', 'api.example.com', '*.example.com', 'example.com', 'LOCALHOST', '', 'evil.com']],
  request_url: [3, ['http://localhost:3000/v1/shape?table=todo', '26800584_4', '126898687-1795928599469000', '1234', 'a b&c=d']],
  request_url_start: [1, ['https://e.example/v1/shape?source_id=abc&', '-1', 'handle', '', 'x']],
  request_url_plain: [0, ['http://h/v1/shape', 'now', 'h', 'c']],
  url_encode: [0, ['\u00e9 /?#[]@!$&\'()*+,;=%', 'params[1]', 'id > $1 AND t = \'x y\'', '-_.~AZaz09']],
  offsets_cmp: [0, ['0_0', '0_inf', '1_0', '-1', 'now', 'x_1', '1_', '_1', '1_2_3', '18446744073709551616_0']],
};
for (const [k, [f, segs]] of Object.entries(hand)) add('fuzz_protocol', k, proto(f, segs));

// ---- fuzz_shapeopts: shape option JSON -------------------------------------------------
const shapes = {
  minimal: { url: 'http://localhost:3000/v1/shape', params: { table: 'todo' } },
  full: {
    url: 'https://e.example/v1/shape?source_id=abc', params: {
      table: 'public.items', where: "id > $1 AND t = 'x y'", columns: ['id', 'Title', 'a"b'], replica: 'full',
      params: { 1: 5, 2: 'z' }, log: 'full', custom: true, n: 1.5,
    }, headers: { Authorization: 'Bearer t0k', 'X-Custom': 'v' },
  },
  params_array: { url: 'http://127.0.0.1:3000/v1/shape', params: { table: 'items', where: 'a = $1 OR b = $2', params: ['x', 2, false] } },
  columns_string: { url: 'http://[::1]:5133/v1/shape', params: { table: '"Quoted"."Table"', columns: 'id,"Name"', log: 'full', replica: 'default' } },
  changes_only: { url: 'http://h/', params: { table: 't', log: 'changes_only' } },
  userinfo: { url: 'http://user:pw@Example.COM:8080/electric/v1/shape?a=1&b', params: { table: 'x' }, headers: null },
  reserved_param: { url: 'http://h/v1/shape', params: { table: 't', offset: '-1' } },
  reserved_in_url: { url: 'http://h/v1/shape?live=true', params: { table: 't' } },
  bad_scheme: { url: 'ftp://h/x', params: { table: 't' } },
  fragment: { url: 'http://h/x#frag', params: { table: 't' } },
  no_host: { url: 'http:///x', params: { table: 't' } },
  unknown_key: { url: 'http://h/', params: { table: 't' }, extra: 1 },
  bad_header: { url: 'http://h/', params: { table: 't' }, headers: { 'Bad Name': 'v' } },
  header_ctl: { url: 'http://h/', params: { table: 't' }, headers: { A: 'x\r\ny' } },
  empty_columns: { url: 'http://h/', params: { table: 't', columns: [] } },
  bad_placeholder: { url: 'http://h/', params: { table: 't', params: { 0: 'x' } } },
  subset: { url: 'http://h/', params: { table: 't', subset__where: 'x' } },
  no_table: { url: 'http://h/', params: {} },
  bad_placeholder_value: { url: 'http://h/', params: { table: 't', params: [{ a: 1 }] } },
  null_placeholder: { url: 'http://h/', params: { table: 't', params: { 1: null } } },
  bad_columns: { url: 'http://h/', params: { table: 't', columns: 5 } },
  bad_replica: { url: 'http://h/', params: { table: 't', replica: 'partial', log: 'full' } },
};
for (const [k, v] of Object.entries(shapes)) add('fuzz_shapeopts', k, JSON.stringify(v));
add('fuzz_shapeopts', 'duplicate_key', '{"url":"http://h/","url":"http://i/","params":{"table":"t"}}');
add('fuzz_shapeopts', 'unicode_escapes', '{"url":"http://h\\u00e9.example/v1/shape","params":{"table":"t\\u00fc","where":"x = \'\\ud83d\\ude00\'"},"headers":{"A":"\\u00e9"}}');
add('fuzz_shapeopts', 'nul_in_table', '{"url":"http://h/","params":{"table":"a\\u0000b"}}');
add('fuzz_shapeopts', 'not_object', '["http://h/"]');
add('fuzz_shapeopts', 'big_numbers', '{"url":"http://h/","params":{"table":"t","params":{"100000":1e308,"2":-9223372036854775808}}}');

for (const [t, m] of Object.entries(files)) {
  const dir = out(t);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, data] of m) fs.writeFileSync(path.join(dir, name.replace(/[^A-Za-z0-9_.-]/g, '_')), data);
  console.log(`${t}: ${m.size} files`);
}
