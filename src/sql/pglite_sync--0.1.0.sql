/* pglite_sync 0.1.0 */

\echo Use "CREATE EXTENSION pglite_sync" to load this file. \quit

-- Subscription definitions.  Written only through the functions below,
-- which run the writes as the extension owner after checking the caller,
-- with search_path pinned so that no caller's object can stand in for a
-- catalog function or operator.
CREATE SEQUENCE electric.subscription_id_seq AS integer;

CREATE TABLE electric.subscription (
    id                    integer PRIMARY KEY
                          DEFAULT nextval('electric.subscription_id_seq'),
    name                  text NOT NULL UNIQUE,
    shape_key             text CHECK (shape_key IS NULL OR shape_key = name),
    owner                 oid NOT NULL,
    enabled               boolean NOT NULL DEFAULT true,
    version               integer NOT NULL DEFAULT 1,
    relid                 regclass NOT NULL,
    schema_name           text NOT NULL,
    table_name            text NOT NULL,
    primary_key           text[] NOT NULL,
    shape_url             text NOT NULL,
    shape_params          jsonb NOT NULL,
    shape_headers         jsonb,
    map_columns           jsonb,
    map_function          regprocedure,
    initial_insert_method text NOT NULL
                          CHECK (initial_insert_method IN ('insert', 'copy', 'json')),
    on_must_refetch       regprocedure,
    -- identifies the local target, mapping and owner: stored stream state
    -- written under another fingerprint is not resumed
    target_fingerprint    text NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now()
);
ALTER SEQUENCE electric.subscription_id_seq OWNED BY electric.subscription.id;

-- Stream state, written by the worker in the same transaction as the data.
CREATE TABLE electric.subscription_state (
    subid              integer PRIMARY KEY
                       REFERENCES electric.subscription (id) ON DELETE CASCADE,
    handle             text,
    "offset"           text,
    target_fingerprint text,
    rows_applied       bigint NOT NULL DEFAULT 0,
    last_commit_at     timestamptz,
    last_error         text,
    last_error_at      timestamptz
);

-- Definitions are user configuration: keep them in dumps.  Stream state is
-- not: a restored database syncs afresh (atomically replacing the rows).
SELECT pg_catalog.pg_extension_config_dump('electric.subscription', '');
SELECT pg_catalog.pg_extension_config_dump('electric.subscription_id_seq', '');

REVOKE ALL ON electric.subscription, electric.subscription_state,
              electric.subscription_id_seq FROM PUBLIC;

CREATE FUNCTION electric.sync_shape_to_table(
    shape                 jsonb,
    table_name            text,
    primary_key           text[],
    schema_name           text DEFAULT 'public',
    map_columns           jsonb DEFAULT NULL,
    map_function          regprocedure DEFAULT NULL,
    shape_key             text DEFAULT NULL,
    initial_insert_method text DEFAULT 'insert',
    use_copy              boolean DEFAULT false,
    on_must_refetch       regprocedure DEFAULT NULL)
RETURNS text
LANGUAGE C CALLED ON NULL INPUT VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'ps_sync_shape_to_table';

COMMENT ON FUNCTION electric.sync_shape_to_table(jsonb, text, text[], text, jsonb, regprocedure, text, text, boolean, regprocedure)
IS 'Start syncing a shape into a table; returns the subscription name';

CREATE FUNCTION electric.unsubscribe(name text)
RETURNS void
LANGUAGE C STRICT VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'ps_unsubscribe';

COMMENT ON FUNCTION electric.unsubscribe(text)
IS 'Stop a subscription; synced rows and stored stream state stay';

CREATE FUNCTION electric.delete_subscription(name text)
RETURNS void
LANGUAGE C STRICT VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'ps_delete_subscription';

COMMENT ON FUNCTION electric.delete_subscription(text)
IS 'Stop a subscription and forget its stored stream state; synced rows stay';

CREATE FUNCTION electric.wait_for_sync(name text, timeout interval DEFAULT '60 seconds')
RETURNS boolean
LANGUAGE C CALLED ON NULL INPUT VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'ps_wait_for_sync';

COMMENT ON FUNCTION electric.wait_for_sync(text, interval)
IS 'Wait until everything the server had at the call is in the table; false on timeout';

CREATE PROCEDURE electric.sync_now(name text, timeout interval DEFAULT '60 seconds')
LANGUAGE C
AS 'MODULE_PATHNAME', 'ps_sync_now';

COMMENT ON PROCEDURE electric.sync_now(text, interval)
IS 'Sync a subscription in this session until it is up to date (for single-user mode and places without workers)';

CREATE FUNCTION electric._worker_status(
    OUT subid integer, OUT worker_pid integer, OUT state text,
    OUT is_up_to_date boolean)
RETURNS SETOF record
LANGUAGE C STRICT VOLATILE
AS 'MODULE_PATHNAME', 'ps_worker_status';

CREATE VIEW electric.subscriptions AS
SELECT s.name,
       s.shape_key,
       coalesce(n.nspname::text, s.schema_name) AS schema_name,
       coalesce(c.relname::text, s.table_name) AS table_name,
       s.shape_url,
       -- headers and Electric's secret parameters may hold tokens: owner only
       CASE WHEN pg_catalog.pg_has_role(s.owner, 'USAGE') THEN s.shape_params
            ELSE s.shape_params - ARRAY['secret', 'api_secret'] END AS shape_params,
       CASE WHEN pg_catalog.pg_has_role(s.owner, 'USAGE')
            THEN s.shape_headers END AS shape_headers,
       st.handle,
       st."offset",
       CASE WHEN NOT s.enabled THEN 'stopped'
            ELSE coalesce(w.state, 'starting') END AS state,
       coalesce(s.enabled AND w.is_up_to_date, false) AS is_up_to_date,
       coalesce(st.rows_applied, 0) AS rows_applied,
       st.last_commit_at,
       st.last_error,
       st.last_error_at,
       CASE WHEN s.enabled THEN w.worker_pid END AS worker_pid,
       coalesce(r.rolname::text, s.owner::text) AS owner,
       s.primary_key,
       s.initial_insert_method,
       s.map_columns,
       s.map_function,
       s.on_must_refetch,
       s.created_at
  FROM electric.subscription s
  LEFT JOIN electric.subscription_state st ON st.subid = s.id
  LEFT JOIN electric._worker_status() w ON w.subid = s.id
  LEFT JOIN pg_catalog.pg_class c ON c.oid = s.relid
  LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.owner;

COMMENT ON VIEW electric.subscriptions IS 'Status of every subscription in this database';

-- Management is for roles the administrator grants it to: directly, or
-- through membership in pglite_sync_manager.  Roles are cluster-wide, so the
-- role may exist already (the extension in another database).
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'pglite_sync_manager') THEN
    CREATE ROLE pglite_sync_manager NOLOGIN;
  END IF;
END $$;
COMMENT ON ROLE pglite_sync_manager IS 'may create and stop pglite_sync subscriptions (electric.sync_shape_to_table and friends)';
REVOKE ALL ON FUNCTION electric.sync_shape_to_table(jsonb, text, text[], text, jsonb, regprocedure, text, text, boolean, regprocedure),
                       electric.unsubscribe(text),
                       electric.delete_subscription(text)
  FROM PUBLIC;
REVOKE ALL ON PROCEDURE electric.sync_now(text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION electric.sync_shape_to_table(jsonb, text, text[], text, jsonb, regprocedure, text, text, boolean, regprocedure),
                          electric.unsubscribe(text),
                          electric.delete_subscription(text)
  TO pglite_sync_manager;
GRANT EXECUTE ON PROCEDURE electric.sync_now(text, interval) TO pglite_sync_manager;
GRANT USAGE ON SCHEMA electric TO PUBLIC;
GRANT SELECT ON electric.subscriptions TO PUBLIC;
