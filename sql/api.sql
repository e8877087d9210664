--
-- SQL API of pglite_sync: names, arguments, validation errors and their
-- SQLSTATEs, privileges.  Subscriptions made here point at a closed port,
-- so their workers only back off; states are not shown (they race).
--
CREATE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE sql;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

SELECT e.extname, e.extversion, n.nspname AS schema, d.description FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace LEFT JOIN pg_description d ON d.objoid = e.oid AND d.classoid = 'pg_extension'::regclass WHERE e.extname = 'pglite_sync';
-- host-driven spools are read back once: stored uncompressed (0.4.0)
SELECT attstorage FROM pg_attribute WHERE attrelid = 'electric.spool_block'::regclass AND attname = 'data';
-- ... and unlogged: scratch space, not written to the WAL (0.5.0)
SELECT relpersistence FROM pg_class WHERE oid = 'electric.spool_block'::regclass;
\df electric.*
\d electric.subscriptions

CREATE TABLE todo (id int PRIMARY KEY, task text, done boolean);
CREATE TABLE composite (a int, b text, c text, PRIMARY KEY (a, b));
CREATE TABLE uniq (id int NOT NULL, code text NOT NULL UNIQUE, n int UNIQUE);
CREATE TABLE nokey (x int);
CREATE VIEW todo_view AS SELECT * FROM todo;
CREATE TABLE "Mixed Case" ("Id" int PRIMARY KEY, "Task" text);

-- a shape on a closed port: workers of these subscriptions only back off
CREATE FUNCTION shape(tbl text DEFAULT 'todo') RETURNS jsonb LANGUAGE sql AS $$
  SELECT jsonb_build_object('url', 'http://127.0.0.1:9/v1/shape', 'params', jsonb_build_object('table', tbl))
$$;

-- unknown table, schema, column: 42P01 and 42703
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'nosuch', '{id}')$$);
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'todo', '{id}', schema_name => 'nosuch')$$);
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'TODO', '{id}')$$);
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'todo_view', '{id}')$$);
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'todo', '{nosuch}')$$);

-- primary key must match the table's key or a unique index on NOT NULL columns: 42P16
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'todo', '{task}')$$);
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'composite', '{a}')$$);
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'uniq', '{n}')$$);
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'nokey', '{x}')$$);
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'todo', '{}')$$);
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'todo', '{id,id}')$$);
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'todo', '{id,NULL}')$$);

-- bad URL, scheme and options: 22023
SELECT try($$SELECT electric.sync_shape_to_table('[]', 'todo', '{id}')$$);
SELECT try($$SELECT electric.sync_shape_to_table('{"params": {"table": "todo"}}', 'todo', '{id}')$$);
SELECT try($$SELECT electric.sync_shape_to_table('{"url": "ftp://x/v1/shape", "params": {"table": "todo"}}', 'todo', '{id}')$$);
SELECT try($$SELECT electric.sync_shape_to_table('{"url": "not a url", "params": {"table": "todo"}}', 'todo', '{id}')$$);
SELECT try($$SELECT electric.sync_shape_to_table('{"url": "http:///v1/shape", "params": {"table": "todo"}}', 'todo', '{id}')$$);
SELECT try($$SELECT electric.sync_shape_to_table('{"url": "http://h/v1/shape"}', 'todo', '{id}')$$);
SELECT try($$SELECT electric.sync_shape_to_table('{"url": "http://h/v1/shape", "params": {}}', 'todo', '{id}')$$);
SELECT try($$SELECT electric.sync_shape_to_table('{"url": "http://h/v1/shape", "params": {"table": "todo", "offset": "-1"}}', 'todo', '{id}')$$);
SELECT try($$SELECT electric.sync_shape_to_table('{"url": "http://h/v1/shape", "params": {"table": "todo", "live": true}}', 'todo', '{id}')$$);
SELECT try($$SELECT electric.sync_shape_to_table('{"url": "http://h/v1/shape", "params": {"table": "todo", "handle": "h"}}', 'todo', '{id}')$$);
SELECT try($$SELECT electric.sync_shape_to_table('{"url": "http://h/v1/shape", "params": {"table": "todo", "cursor": "1"}}', 'todo', '{id}')$$);
SELECT try($$SELECT electric.sync_shape_to_table('{"url": "http://h/v1/shape", "params": {"table": "todo", "live_sse": true}}', 'todo', '{id}')$$);
SELECT try($$SELECT electric.sync_shape_to_table('{"url": "http://h/v1/shape", "params": {"table": "todo", "subset__where": "x"}}', 'todo', '{id}')$$);
SELECT try($$SELECT electric.sync_shape_to_table('{"url": "http://h/v1/shape", "params": {"table": "todo", "replica": "partial"}}', 'todo', '{id}')$$);
SELECT try($$SELECT electric.sync_shape_to_table('{"url": "http://h/v1/shape", "params": {"table": "todo"}, "headers": {"Authorization": 1}}', 'todo', '{id}')$$);
SELECT try($$SELECT electric.sync_shape_to_table('{"url": "http://h/v1/shape", "params": {"table": "todo"}, "signal": null}', 'todo', '{id}')$$);
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'todo', '{id}', initial_insert_method => 'bulk')$$);
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'todo', '{id}', initial_insert_method => 'json', use_copy => true)$$);
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'todo', '{id}', shape_key => '')$$);
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'todo', '{id}', map_columns => '{"id": "id"}', map_function => 'try(text)')$$);
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'todo', '{id}', map_columns => '["id"]')$$);
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'todo', '{id}', map_columns => '{"nosuch": "id"}')$$);
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'todo', '{id}', map_columns => '{"task": "task"}')$$);
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'todo', '{id}', map_columns => '{"id": 1}')$$);
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'todo', '{id}', map_function => 'try(text)')$$);
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'todo', '{id}', on_must_refetch => 'try(text)')$$);
SELECT try($$SELECT electric.sync_shape_to_table(NULL, 'todo', '{id}')$$);
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'todo', NULL)$$);

-- a valid subscription; names come back as given, or generated
SELECT electric.sync_shape_to_table(shape(), 'todo', '{id}', shape_key => 'todos');
SELECT electric.sync_shape_to_table('{"url": "http://127.0.0.1:9/v1/shape", "params": {"table": "Mixed Case", "columns": ["Id", "Task"]}}',
                                    'Mixed Case', '{Id}');
SELECT electric.sync_shape_to_table(shape(), 'composite', '{b,a}', map_columns => '{"a": "id", "b": "task"}',
                                    initial_insert_method => 'csv');
SELECT electric.sync_shape_to_table(shape(), 'uniq', '{code}', use_copy => true);
SELECT name, shape_key, schema_name, table_name, shape_url, shape_params, shape_headers, handle, "offset",
       rows_applied, owner, primary_key, initial_insert_method, map_columns
  FROM electric.subscriptions ORDER BY name;

-- one running subscription per shape_key and per table: 42710
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'todo', '{id}', shape_key => 'todos')$$);
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'todo', '{id}', shape_key => 'other')$$);
-- ... but all of them identify rows by the same key
CREATE TABLE twokeys (id int PRIMARY KEY, code text NOT NULL UNIQUE);
SELECT electric.sync_shape_to_table(shape(), 'twokeys', '{id}', shape_key => 'tk1');
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'twokeys', '{code}', shape_key => 'tk2')$$);
SELECT electric.delete_subscription('tk1');

-- several subscriptions may share a table (since 0.2, with or without
-- on_must_refetch: rows are held by the shapes that delivered them)
CREATE TABLE shared (id int PRIMARY KEY, owner text);
CREATE FUNCTION clear_a(sub text) RETURNS void LANGUAGE sql AS $$ DELETE FROM shared WHERE owner = 'a' $$;
CREATE FUNCTION clear_b(sub text) RETURNS void LANGUAGE sql AS $$ DELETE FROM shared WHERE owner = 'b' $$;
CREATE FUNCTION bad_refetch(sub int) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'shared', '{id}', shape_key => 'sa', on_must_refetch => 'bad_refetch(int)')$$);
SELECT electric.sync_shape_to_table(shape(), 'shared', '{id}', shape_key => 'sa', on_must_refetch => 'clear_a(text)');
SELECT electric.sync_shape_to_table(shape(), 'shared', '{id}', shape_key => 'sb', on_must_refetch => 'clear_b(text)');
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'shared', '{id}', shape_key => 'sc')$$);

-- lifecycle: unsubscribe keeps a keyed subscription as stopped; unknown names are 42704
SELECT electric.unsubscribe('todos');
SELECT electric.unsubscribe('todos');   -- stopped already: nothing to do
SELECT name, state, worker_pid FROM electric.subscriptions WHERE name = 'todos';
SELECT try($$SELECT electric.unsubscribe('nosuch')$$);
SELECT try($$SELECT electric.delete_subscription('nosuch')$$);
-- a NULL name is 22004, as for every function
SELECT try($$SELECT electric.unsubscribe(NULL)$$);
SELECT try($$SELECT electric.delete_subscription(NULL)$$);
SELECT try($$SELECT electric.wait_for_sync('nosuch')$$);
SELECT electric.wait_for_sync('todos', '1 s');      -- stopped: false at once
SELECT try($$SELECT electric.wait_for_sync('todos', '-1 s')$$);
-- the table is free again; the stopped key can be resumed (and then runs)
SELECT electric.sync_shape_to_table(shape(), 'todo', '{id}', shape_key => 'todos');
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'todo', '{id}', shape_key => 'todos')$$);
-- an unkeyed subscription disappears when unsubscribed
SELECT electric.unsubscribe('Mixed Case_2');
SELECT count(*) FROM electric.subscriptions WHERE name = 'Mixed Case_2';
SELECT electric.delete_subscription('sb');
SELECT name FROM electric.subscriptions ORDER BY name;

-- sync_now runs a stream in the foreground, for places without workers: it
-- needs CALL outside a transaction block (that it leaves running workers
-- alone is tested in TAP, where workers are known to run)
BEGIN;
CALL electric.sync_now('todos');
ROLLBACK;
CALL electric.sync_now('nosuch');
SELECT electric.unsubscribe('todos');
CALL electric.sync_now('todos');
SELECT electric.sync_shape_to_table(shape(), 'todo', '{id}', shape_key => 'todos');

-- changes take effect at commit: a rolled-back subscribe leaves nothing
BEGIN;
SELECT electric.sync_shape_to_table(shape(), 'nokey', '{x}', shape_key => 'never');
ROLLBACK;
BEGIN;
CREATE TABLE later (id int PRIMARY KEY);
SELECT electric.sync_shape_to_table(shape(), 'later', '{id}', shape_key => 'later');
SELECT try($$SELECT electric.wait_for_sync('later', '1 s')$$);   -- not committed yet: 55000
ROLLBACK;
SELECT count(*) FROM electric.subscriptions WHERE name IN ('never', 'later');
-- a subscription change cannot be prepared for two-phase commit
BEGIN;
SELECT electric.unsubscribe('sa');
PREPARE TRANSACTION 'p1';
SELECT name, state <> 'stopped' AS running FROM electric.subscriptions WHERE name = 'sa';
-- subtransactions: a rolled-back savepoint forgets its change
BEGIN;
SAVEPOINT s;
SELECT electric.unsubscribe('sa');
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT name, state <> 'stopped' AS running FROM electric.subscriptions WHERE name = 'sa';

-- privileges: management functions are not for PUBLIC; the view is
CREATE ROLE app NOLOGIN;
CREATE ROLE other NOLOGIN;
SELECT p.oid::regprocedure AS function, p.prokind, has_function_privilege('app', p.oid, 'EXECUTE') AS app_can_execute,
       has_function_privilege('pglite_sync_manager', p.oid, 'EXECUTE') AS manager_can_execute
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'electric' ORDER BY p.oid::regprocedure::text COLLATE "C";
SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = 'pglite_sync_manager';
SELECT has_table_privilege('app', 'electric.subscriptions', 'SELECT') AS view,
       has_table_privilege('app', 'electric.subscription', 'SELECT') AS catalog,
       has_table_privilege('app', 'electric.subscription_state', 'UPDATE') AS state;
SET ROLE app;
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'todo', '{id}', shape_key => 'apps')$$);
SELECT try($$SELECT electric.unsubscribe('todos')$$);
SELECT count(*) > 0 AS sees_subscriptions, bool_and(shape_headers IS NULL) AS headers_hidden
  FROM electric.subscriptions;
RESET ROLE;
-- the documented way: membership in pglite_sync_manager
GRANT pglite_sync_manager TO app, other;
CREATE TABLE app_items (id int PRIMARY KEY, v text);
GRANT SELECT, INSERT, UPDATE ON app_items TO app;
SET ROLE app;
-- the owner needs SELECT, INSERT, UPDATE and DELETE on the table: 42501
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'app_items', '{id}', shape_key => 'apps')$$);
RESET ROLE;
-- ... and USAGE on its schema: 42501, not a subscription that can never apply
CREATE SCHEMA walled;
CREATE TABLE walled.items (id int PRIMARY KEY);
GRANT ALL ON walled.items TO app;
SET ROLE app;
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'items', '{id}', schema_name => 'walled')$$);
SELECT count(*) AS subscriptions_made FROM electric.subscriptions WHERE table_name = 'items';
RESET ROLE;
DROP SCHEMA walled CASCADE;
GRANT DELETE ON app_items TO app;
SET ROLE app;
SELECT electric.sync_shape_to_table('{"url": "http://127.0.0.1:9/v1/shape", "params": {"table": "app_items"}, "headers": {"Authorization": "Bearer secret"}}',
                                    'app_items', '{id}', shape_key => 'apps');
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'app_items', '{id}', shape_key => 'x', map_function => 'try(text)')$$);
SELECT name, owner, shape_headers FROM electric.subscriptions WHERE name = 'apps';
-- a role cannot manage another role's subscription, nor read its headers
SET ROLE other;
SELECT try($$SELECT electric.unsubscribe('apps')$$);
SELECT try($$SELECT electric.delete_subscription('apps')$$);
SELECT name, shape_headers FROM electric.subscriptions WHERE name = 'apps';
SET ROLE app;
SELECT electric.unsubscribe('apps');
-- a stopped subscription can be resumed (and redefined) by its owner only
RESET ROLE;
CREATE TABLE other_items (id int PRIMARY KEY);
GRANT ALL ON other_items TO other;
SET ROLE other;
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'other_items', '{id}', shape_key => 'apps')$$);
RESET ROLE;
DROP TABLE other_items;
SELECT electric.delete_subscription('apps');

-- search_path cannot make the extension owner run someone else's operator
CREATE ROLE mallory NOLOGIN;
CREATE SCHEMA mal AUTHORIZATION mallory;
SET ROLE mallory;
CREATE FUNCTION mal.eq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  ALTER ROLE mallory SUPERUSER;
  RETURN $1 OPERATOR(pg_catalog.=) $2;
END $$;
CREATE OPERATOR mal.= (LEFTARG = text, RIGHTARG = text, FUNCTION = mal.eq);
CREATE FUNCTION mal.eq_int(int, int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  ALTER ROLE mallory SUPERUSER;
  RETURN $1 OPERATOR(pg_catalog.=) $2;
END $$;
CREATE OPERATOR mal.= (LEFTARG = int, RIGHTARG = int, FUNCTION = mal.eq_int);
SET search_path = mal, pg_catalog, public;
SELECT electric.wait_for_sync('todos', '0');
RESET search_path;
RESET ROLE;
SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory';
DROP SCHEMA mal CASCADE;
DROP ROLE mallory;

-- no subscriptions in template databases
ALTER DATABASE contrib_regression IS_TEMPLATE true;
SELECT try($$SELECT electric.sync_shape_to_table(shape(), 'nokey', '{x}')$$);
ALTER DATABASE contrib_regression IS_TEMPLATE false;

-- clean up
SELECT electric.delete_subscription(name) FROM electric.subscriptions ORDER BY name;
DROP TABLE app_items;
DROP ROLE app;
DROP ROLE other;

-- ---- groups: sync_shapes_to_tables -------------------------------------------
CREATE TABLE project (id int PRIMARY KEY, name text);
CREATE TABLE issue (id int PRIMARY KEY, project_id int REFERENCES project, title text);
CREATE FUNCTION gshapes(extra jsonb DEFAULT '{}') RETURNS jsonb LANGUAGE sql AS $$
  SELECT jsonb_build_object(
    'issues', jsonb_build_object('shape', shape('issue'), 'table_name', 'issue', 'primary_key', '["id"]'::jsonb),
    'projects', jsonb_build_object('shape', shape('project'), 'table_name', 'project', 'primary_key', '["id"]'::jsonb)) || extra
$$;
SELECT try($$SELECT electric.sync_shapes_to_tables(NULL)$$);
SELECT try($$SELECT electric.sync_shapes_to_tables('{}')$$);
SELECT try($$SELECT electric.sync_shapes_to_tables('[1]')$$);
SELECT try($$SELECT electric.sync_shapes_to_tables(gshapes('{"bad name": {}}'))$$);
SELECT try($$SELECT electric.sync_shapes_to_tables(gshapes('{"x": 1}'))$$);
SELECT try($$SELECT electric.sync_shapes_to_tables(gshapes('{"x": {"table_name": "issue", "primary_key": ["id"]}}'))$$);
SELECT try($$SELECT electric.sync_shapes_to_tables(gshapes(jsonb_build_object('x', jsonb_build_object('shape', shape('issue'), 'table_name', 'issue', 'primary_key', '["id"]'::jsonb, 'colour', 'red'))))$$);
SELECT try($$SELECT electric.sync_shapes_to_tables(gshapes(jsonb_build_object('x', jsonb_build_object('shape', shape('issue'), 'table_name', 'issue', 'primary_key', '["id"]'::jsonb))))$$);
SELECT try($$SELECT electric.sync_shapes_to_tables(gshapes(jsonb_build_object('x', jsonb_build_object('shape', shape('issue'), 'table_name', 'nosuch', 'primary_key', '["id"]'::jsonb))))$$);
SELECT try($$SELECT electric.sync_shapes_to_tables(gshapes(jsonb_build_object('x', jsonb_build_object('shape', shape('issue'), 'table_name', 'todo', 'primary_key', '"id"'::jsonb))))$$);
SELECT try($$SELECT electric.sync_shapes_to_tables(gshapes(jsonb_build_object('x', jsonb_build_object('shape', shape('issue'), 'table_name', 'todo', 'primary_key', '["task"]'::jsonb))))$$);
SELECT try($$SELECT electric.sync_shapes_to_tables(gshapes(jsonb_build_object('x', jsonb_build_object('shape', shape('issue'), 'table_name', 'todo', 'primary_key', '["id"]'::jsonb, 'map_function', 'nosuch(jsonb)'))))$$);
SELECT try($$SELECT electric.sync_shapes_to_tables(gshapes(), initial_insert_method => 'bulk')$$);
SELECT electric.sync_shapes_to_tables(gshapes(), shape_key => 'tracker');
SELECT try($$SELECT electric.sync_shapes_to_tables(gshapes(), shape_key => 'tracker')$$);
-- one row in the view (shape columns NULL), one per shape in subscription_shapes:
-- parents first, whatever the JSON order
SELECT name, shape_count, table_name, shape_url, handle, primary_key FROM electric.subscriptions WHERE name = 'tracker';
SELECT subscription, shape, table_name, primary_key, position FROM electric.subscription_shapes
 WHERE subscription IN ('tracker', 'todos') ORDER BY subscription, position;
-- a group restored from a dump made on 0.5.0 has is_group false: still one row
UPDATE electric.subscription SET is_group = false WHERE name = 'tracker';
SELECT name, shape_count, table_name, primary_key FROM electric.subscriptions WHERE name = 'tracker';
SELECT electric.delete_subscription('tracker');
-- a group of one member is a group too: its shape columns are NULL; taken up
-- again under its key by sync_shape_to_table it is a single shape
SELECT electric.sync_shapes_to_tables(jsonb_build_object('issues', gshapes()->'issues'), shape_key => 'solo');
SELECT name, shape_count, num_nulls(schema_name, table_name, shape_url, shape_params, shape_headers, handle,
       "offset", primary_key, map_columns, map_function, on_must_refetch) AS null_shape_columns
  FROM electric.subscriptions WHERE name = 'solo';
SELECT electric.unsubscribe('solo');
SELECT electric.sync_shape_to_table(shape('issue'), 'issue', '{id}', shape_key => 'solo');
SELECT name, shape_count, table_name, primary_key FROM electric.subscriptions WHERE name = 'solo';
SELECT electric.delete_subscription('solo');

-- ---- alter_subscription -------------------------------------------------------
CREATE TABLE altered (id int PRIMARY KEY, title text);
SELECT electric.sync_shape_to_table(shape('altered'), 'altered', '{id}', shape_key => 'todos');
SELECT try($$SELECT electric.alter_subscription(NULL)$$);
SELECT try($$SELECT electric.alter_subscription('nosuch', 'http://127.0.0.1:9/v1/shape')$$);
SELECT try($$SELECT electric.alter_subscription('todos')$$);
SELECT try($$SELECT electric.alter_subscription('todos', 'ftp://example.com/')$$);
SELECT try($$SELECT electric.alter_subscription('todos', 'http://127.0.0.1:9/v1/shape?where=1')$$);
SELECT try($$SELECT electric.alter_subscription('todos', headers => '[1]')$$);
SELECT try($$SELECT electric.alter_subscription('todos', headers => '{"bad name": "x"}')$$);
SELECT try($$SELECT electric.alter_subscription('todos', headers_function => 'try(text)')$$);
CREATE FUNCTION token_headers(sub text) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{"Authorization": "Bearer t"}'::jsonb $$;
SELECT electric.alter_subscription('todos', 'http://127.0.0.1:9/v2/shape', '{"X-Tenant": "a"}', 'token_headers(text)');
SELECT shape_url, shape_headers, headers_function, handle IS NOT DISTINCT FROM NULL AS no_handle_yet
  FROM electric.subscriptions WHERE name = 'todos';
SELECT electric.alter_subscription('todos', headers => '{}');
SELECT shape_headers FROM electric.subscriptions WHERE name = 'todos';
SELECT electric.delete_subscription('todos');

-- ---- electric.writes: a NULL is a JSON null, an absent value is left out ---------
CREATE TABLE noted (id int PRIMARY KEY, note text);
SELECT electric.sync_shape_to_table(shape('noted'), 'noted', '{id}', shape_key => 'noted');
SELECT electric.enable_writes('noted', 'http://127.0.0.1:9/v1/writes');
INSERT INTO noted VALUES (1, NULL);
UPDATE noted SET note = 'x' WHERE id = 1;
UPDATE noted SET note = NULL WHERE id = 1;
DELETE FROM noted;
SELECT m.value AS mutation FROM electric.writes w, jsonb_array_elements(w.mutations) m
 ORDER BY w.created_at;
SELECT electric.delete_subscription('noted');
DROP TABLE noted;

-- ---- host-driven subscriptions --------------------------------------------------
CREATE TABLE hosted (id int PRIMARY KEY, title text);
SELECT electric.sync_shape_to_table(shape('hosted'), 'hosted', '{id}', shape_key => 'hosted', worker => false);
SELECT name, state, worker, worker_pid FROM electric.subscriptions WHERE name = 'hosted';
SELECT electric.next_request('hosted') - 'headers' AS request;
SELECT try($$SELECT electric.next_request('todos')$$);
SELECT try($$SELECT electric.next_request('nosuch')$$);
SELECT try($$SELECT electric.next_request('hosted', 'nosuch')$$);
SELECT try($$SELECT electric.ingest_response('hosted', NULL, '{}', '')$$);
SELECT try($$SELECT electric.ingest_response('hosted', 200, '[]', '')$$);
-- a response without electric headers: the failure policy, not an error
SELECT electric.ingest_response('hosted', 200, '{}', '[]') AS failed \gset
SELECT :'failed'::jsonb - 'wait_ms';
SELECT state, last_error FROM electric.subscriptions WHERE name = 'hosted';
-- the host is told to wait, unless the random (full-jitter) wait ran out already
SELECT electric.next_request('hosted') ? 'wait_ms' OR (:'failed'::jsonb->>'wait_ms')::int < 20 AS backing_off;
SELECT try($$CALL electric.sync_now('hosted')$$);
SELECT electric.unsubscribe('hosted');
SELECT electric.next_request('hosted') IS NULL AS stopped;
SELECT electric.delete_subscription('hosted');
