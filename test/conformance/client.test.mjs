// The official @electric-sql/client consumes the test server and must
// materialise exactly the expected rows. If the client and the server
// disagree, the server is wrong.

import test from 'node:test';
import assert from 'node:assert/strict';
import { startServer, post, control, itemsTable, sync, waitFor, waitRows, sleep } from './helpers.mjs';

const row = (id, title, done = false, n = null) => ({ id, title, done, n });
// What the client's default parser yields for an items row.
const parsed = (id, title, done = false, n = null) => ({ id, title, done, n: n === null ? null : BigInt(n) });

test('multi-page initial snapshot', async (t) => {
  const srv = await startServer(t);
  const rows = Array.from({ length: 7 }, (_, i) => row(i + 1, `t${i + 1}`, i % 2 === 0, i * 10));
  await post(srv, '/tables', itemsTable(rows, { page_rows: 2 }));
  const { shape, errors } = sync(t, srv, { table: 'items' });
  assert.deepStrictEqual(
    (await shape.rows).sort((a, b) => a.id - b.id),
    rows.map((r) => parsed(r.id, r.title, r.done, r.n)),
  );
  assert.deepStrictEqual(errors, []);
  // 7 rows in pages of 2: chunks 0_0..0_3, snapshot-end in the last one.
  const offsets = (await control(srv, 'GET', '/requests')).filter((r) => !r.live).map((r) => [r.query.offset, r.offset_out]);
  assert.deepStrictEqual(offsets.slice(0, 4), [['-1', '0_0'], ['0_0', '0_1'], ['0_1', '0_2'], ['0_2', '0_3']]);
});

test('live insert, update and delete', async (t) => {
  const srv = await startServer(t);
  await post(srv, '/tables', itemsTable([row(1, 'a'), row(2, 'b')]));
  const { shape, messages } = sync(t, srv, { table: 'items' });
  await shape.rows;
  await post(srv, '/tables/items/txn', { ops: [{ op: 'insert', row: row(3, 'c', true, 5) }] });
  await waitRows(shape, [parsed(1, 'a'), parsed(2, 'b'), parsed(3, 'c', true, 5)], assert);
  await post(srv, '/tables/items/txn', { ops: [{ op: 'update', row: { id: 1, title: 'A', done: true } }, { op: 'delete', row: { id: 2 } }] });
  await waitRows(shape, [parsed(1, 'A', true), parsed(3, 'c', true, 5)], assert);
  const changes = messages.filter((m) => m.headers.operation);
  const update = changes.find((m) => m.headers.operation === 'update');
  assert.deepStrictEqual(update.value, { id: 1, title: 'A', done: true }); // PK + changed columns only
  const del = changes.find((m) => m.headers.operation === 'delete');
  assert.deepStrictEqual(del.value, { id: 2 });
  assert.equal(del.headers.last, true);
  assert.equal(update.headers.last, undefined);
  assert.equal(update.headers.lsn, del.headers.lsn);
  assert.deepStrictEqual([update.headers.op_position, del.headers.op_position], [0, 2]);
});

test('long-poll timeouts keep the client live', async (t) => {
  const srv = await startServer(t, { longPollMs: 300 });
  await post(srv, '/tables', itemsTable([row(1, 'a')]));
  const { shape, errors } = sync(t, srv, { table: 'items' });
  await shape.rows;
  await sleep(1000); // several empty long-polls
  const log = await control(srv, 'GET', '/requests');
  const timeouts = log.filter((r) => r.live && r.status === 200 && r.up_to_date);
  assert.ok(timeouts.length >= 2, `expected long-poll timeouts, got ${JSON.stringify(log)}`);
  // Each timeout answers with the same offset it was asked for, and a new cursor.
  for (const r of timeouts) {
    assert.equal(r.offset_out, r.query.offset);
    assert.notEqual(r.cursor_out, r.query.cursor);
  }
  await post(srv, '/tables/items/txn', { ops: [{ op: 'insert', row: row(2, 'b') }] });
  await waitRows(shape, [parsed(1, 'a'), parsed(2, 'b')], assert);
  assert.deepStrictEqual(errors, []);
});

test('handle rotation (409) makes the client refetch', async (t) => {
  const srv = await startServer(t);
  await post(srv, '/tables', itemsTable([row(1, 'a'), row(2, 'b')]));
  const { shape, messages, stream } = sync(t, srv, { table: 'items' });
  await shape.rows;
  const before = stream.shapeHandle;
  await post(srv, '/tables/items/rotate');
  // The table changes while the client holds the old handle; after the 409 it
  // must drop its rows and load the new snapshot.
  await post(srv, '/tables/items/txn', { ops: [{ op: 'delete', row: { id: 1 } }, { op: 'insert', row: row(9, 'z') }] });
  await waitRows(shape, [parsed(2, 'b'), parsed(9, 'z')], assert);
  await waitFor(() => stream.shapeHandle && stream.shapeHandle !== before, { what: 'new handle' });
  assert.ok(messages.some((m) => m.headers.control === 'must-refetch'));
  const log = await control(srv, 'GET', '/requests');
  assert.ok(log.some((r) => r.status === 409));
});

test('where clause with move-in and move-out', async (t) => {
  const srv = await startServer(t);
  await post(srv, '/tables', itemsTable([row(1, 'a', false, 1), row(2, 'b', false, 10), row(3, 'c', true, 20)]));
  const { shape, messages } = sync(t, srv, { table: 'items', where: 'n > $1 AND title <> $2', params: ['5', 'skip'] });
  assert.deepStrictEqual((await shape.rows).map((r) => r.id).sort(), [2, 3]);
  await post(srv, '/tables/items/txn', {
    ops: [
      { op: 'update', row: { id: 1, n: 6 } }, // moves in
      { op: 'update', row: { id: 3, n: 5 } }, // moves out
      { op: 'insert', row: row(4, 'skip', false, 100) }, // never in
      { op: 'update', row: { id: 2, title: 'B' } }, // stays in
    ],
  });
  await waitRows(shape, [parsed(1, 'a', false, 6), parsed(2, 'B', false, 10)], assert);
  const ops = messages.filter((m) => m.headers.lsn).map((m) => [m.headers.operation, m.value.id]);
  assert.deepStrictEqual(ops, [['insert', 1], ['delete', 3], ['update', 2]]);
  // A move-in carries the whole row, a move-out only the key.
  assert.deepStrictEqual(messages.find((m) => m.headers.lsn && m.headers.operation === 'insert').value, { id: 1, title: 'a', done: false, n: 6n });
  assert.deepStrictEqual(messages.find((m) => m.headers.operation === 'delete').value, { id: 3 });
});

test('columns restrict the rows', async (t) => {
  const srv = await startServer(t);
  await post(srv, '/tables', itemsTable([row(1, 'a', true, 1)]));
  const { shape, messages } = sync(t, srv, { table: 'items', columns: ['id', 'title'] });
  assert.deepStrictEqual(await shape.rows, [{ id: 1, title: 'a' }]);
  // A change to an unselected column is not a change of this shape.
  await post(srv, '/tables/items/txn', { ops: [{ op: 'update', row: { id: 1, n: 2 } }] });
  await post(srv, '/tables/items/txn', { ops: [{ op: 'update', row: { id: 1, title: 'b', done: false } }] });
  await waitRows(shape, [{ id: 1, title: 'b' }], assert);
  const updates = messages.filter((m) => m.headers.operation === 'update');
  assert.deepStrictEqual(updates.map((m) => m.value), [{ id: 1, title: 'b' }]);
});

test('replica=full sends full rows and old values', async (t) => {
  const srv = await startServer(t);
  await post(srv, '/tables', itemsTable([row(1, 'a', false, 1), row(2, 'b')]));
  const { shape, messages } = sync(t, srv, { table: 'items', replica: 'full' });
  await shape.rows;
  await post(srv, '/tables/items/txn', { ops: [{ op: 'update', row: { id: 1, title: 'A' } }, { op: 'delete', row: { id: 2 } }] });
  await waitRows(shape, [parsed(1, 'A', false, 1)], assert);
  const upd = messages.find((m) => m.headers.operation === 'update');
  assert.deepStrictEqual(upd.value, { id: 1, title: 'A', done: false, n: 1n });
  assert.deepStrictEqual(upd.old_value, { title: 'a' });
  const del = messages.find((m) => m.headers.operation === 'delete');
  assert.deepStrictEqual(del.value, { id: 2, title: 'b', done: false, n: null });
});

test('primary key change arrives as delete + insert', async (t) => {
  const srv = await startServer(t);
  await post(srv, '/tables', itemsTable([row(1, 'a'), row(2, 'b')]));
  const { shape, messages } = sync(t, srv, { table: 'items' });
  await shape.rows;
  await post(srv, '/tables/items/txn', { ops: [{ op: 'update', row: { id: 1, title: 'moved' }, new_key: { id: 10 } }] });
  await waitRows(shape, [parsed(10, 'moved'), parsed(2, 'b')], assert);
  const live = messages.filter((m) => m.headers.lsn);
  assert.deepStrictEqual(live.map((m) => [m.headers.operation, m.headers.op_position]), [['delete', 0], ['insert', 1]]);
  assert.equal(live[0].headers.key_change_to, live[1].key);
  assert.equal(live[1].headers.key_change_from, live[0].key);
  assert.equal(live[1].headers.last, true);
});

test('a protocol violation is caught by the official client', async (t) => {
  const srv = await startServer(t);
  await post(srv, '/tables', itemsTable([row(1, 'a')]));
  await post(srv, '/faults', { kind: 'missing_headers', count: -1 });
  const { errors } = sync(t, srv, { table: 'items' }, { onError: undefined });
  await waitFor(() => errors.length > 0, { what: 'client error' });
  // MissingHeadersError is not exported by the package; identify it by class name.
  assert.equal(errors[0].constructor.name, 'MissingHeadersError', `got ${errors[0]}`);
  assert.match(errors[0].message, /electric-offset/);
});
