/* pglite_sync 0.1.0 -> 0.2.0: several shapes per subscription, shared
 * tables, host-driven subscriptions, headers functions, live progress */

\echo Use "ALTER EXTENSION pglite_sync UPDATE" to load this file. \quit

-- The view is rebuilt below; it depends on the columns that move.
DROP VIEW electric.subscriptions;
DROP FUNCTION electric._worker_status();

-- ---- subscriptions ----------------------------------------------------------

-- Owners by role name: pg_dump writes a regrole as the name, so a restore
-- into another cluster finds the same role, never whichever has that OID.
ALTER TABLE electric.subscription
    ALTER COLUMN owner TYPE regrole USING owner::regrole,
    ADD COLUMN worker boolean NOT NULL DEFAULT true,
    ADD COLUMN headers_function regprocedure;

-- One row per shape of a subscription: the member name is the
-- subscription's own name for a single-shape subscription.
CREATE TABLE electric.subscription_shape (
    subid              integer NOT NULL
                       REFERENCES electric.subscription (id) ON DELETE CASCADE,
    shape              text NOT NULL CHECK (shape <> ''),
    position           integer NOT NULL,
    relid              regclass NOT NULL,
    schema_name        text NOT NULL,
    table_name         text NOT NULL,
    primary_key        text[] NOT NULL,
    shape_url          text NOT NULL,
    shape_params       jsonb NOT NULL,
    shape_headers      jsonb,
    -- the shape's other options ("live_sse", "offset"), NULL when none
    shape_options      jsonb,
    map_columns        jsonb,
    map_function       regprocedure,
    on_must_refetch    regprocedure,
    -- identifies the local target, mapping and owner: stored stream state
    -- written under another fingerprint is not resumed
    target_fingerprint text NOT NULL,
    PRIMARY KEY (subid, shape)
);
CREATE INDEX subscription_shape_relid ON electric.subscription_shape (relid);

INSERT INTO electric.subscription_shape
    (subid, shape, position, relid, schema_name, table_name, primary_key,
     shape_url, shape_params, shape_headers, map_columns, map_function,
     on_must_refetch, target_fingerprint)
SELECT id, name, 0, relid, schema_name, table_name, primary_key, shape_url,
       shape_params, shape_headers, map_columns, map_function, on_must_refetch,
       target_fingerprint
  FROM electric.subscription;

-- Stream state of each shape, written in the same transaction as the data.
CREATE TABLE electric.shape_state (
    subid              integer NOT NULL,
    shape              text NOT NULL,
    handle             text,
    "offset"           text,
    target_fingerprint text,
    rows_applied       bigint NOT NULL DEFAULT 0,
    rows_skipped       bigint NOT NULL DEFAULT 0,
    last_commit_at     timestamptz,
    -- where a host-driven stream stands between two calls (workers keep
    -- this in memory): the position after the responses spooled so far
    stream             jsonb,
    PRIMARY KEY (subid, shape),
    FOREIGN KEY (subid, shape) REFERENCES electric.subscription_shape (subid, shape)
        ON DELETE CASCADE
);

INSERT INTO electric.shape_state
    (subid, shape, handle, "offset", target_fingerprint, rows_applied, last_commit_at)
SELECT st.subid, s.name, st.handle, st."offset", st.target_fingerprint,
       st.rows_applied, st.last_commit_at
  FROM electric.subscription_state st
  JOIN electric.subscription s ON s.id = st.subid;

ALTER TABLE electric.subscription
    DROP COLUMN relid,
    DROP COLUMN schema_name,
    DROP COLUMN table_name,
    DROP COLUMN primary_key,
    DROP COLUMN shape_url,
    DROP COLUMN shape_params,
    DROP COLUMN shape_headers,
    DROP COLUMN map_columns,
    DROP COLUMN map_function,
    DROP COLUMN on_must_refetch,
    DROP COLUMN target_fingerprint;

-- Subscription-wide state: errors, and where a host-driven subscription
-- stands between calls.
ALTER TABLE electric.subscription_state
    DROP COLUMN handle,
    DROP COLUMN "offset",
    DROP COLUMN target_fingerprint,
    DROP COLUMN rows_applied,
    ADD COLUMN last_error_detail text,
    ADD COLUMN run jsonb;

-- ---- shared tables: which shapes hold which rows ----------------------------

-- Only for tables that more than one shape syncs into: the row stays while
-- any shape holds it.  key is the row's primary key as local text values.
CREATE TABLE electric.row_hold (
    relid  oid NOT NULL,
    key    text[] NOT NULL,
    subid  integer NOT NULL,
    shape  text NOT NULL,
    lsn    bigint NOT NULL DEFAULT 0,   -- source LSN of the version this shape delivered (0: snapshot)
    PRIMARY KEY (relid, key, subid, shape),
    FOREIGN KEY (subid, shape) REFERENCES electric.subscription_shape (subid, shape)
        ON DELETE CASCADE
);
CREATE INDEX row_hold_shape ON electric.row_hold (subid, shape);

-- ---- subquery shapes: the tag state of their rows ----------------------------
-- What a move-out event needs to find the rows it removes (Electric 1.7: a
-- row's tags and active_conditions); "pos:hash" entries, GIN-indexed.

CREATE TABLE electric.row_tags (
    subid    integer NOT NULL,
    shape    text NOT NULL,
    key      text NOT NULL,       -- the row's key in the shape log
    entries  text[] NOT NULL,     -- "pos:hash" of every part of its tags
    active   boolean[],           -- active_conditions, when the shape sends them
    tags     text[] NOT NULL,     -- its tags as sent: the disjuncts' positions
    pk       text[] NOT NULL,     -- its primary key in the local table, as text
    PRIMARY KEY (subid, shape, key),
    FOREIGN KEY (subid, shape) REFERENCES electric.subscription_shape (subid, shape)
        ON DELETE CASCADE
);
CREATE INDEX row_tags_entries ON electric.row_tags USING gin (entries);

-- ---- subset snapshots (request_snapshot) and the keys they loaded -----------
-- A live change of such a key that the snapshot already saw is not applied
-- again; a snapshot is retired once the stream is past it.

CREATE TABLE electric.subset_snapshot (
    subid         integer NOT NULL,
    shape         text NOT NULL,
    id            bigint GENERATED ALWAYS AS IDENTITY,
    snap_xmin     bigint NOT NULL,    -- the source snapshot's xmin, xmax, xip_list
    snap_xmax     bigint NOT NULL,
    snap_xip      bigint[] NOT NULL,
    database_lsn  bigint NOT NULL,
    PRIMARY KEY (subid, shape, id),
    FOREIGN KEY (subid, shape) REFERENCES electric.subscription_shape (subid, shape)
        ON DELETE CASCADE
);

CREATE TABLE electric.subset_key (
    subid    integer NOT NULL,
    shape    text NOT NULL,
    snapshot bigint NOT NULL,
    key      text NOT NULL,
    PRIMARY KEY (subid, shape, key, snapshot),
    FOREIGN KEY (subid, shape, snapshot) REFERENCES electric.subset_snapshot (subid, shape, id)
        ON DELETE CASCADE
);

-- ---- host-driven subscriptions: responses of an incomplete batch -------------

CREATE TABLE electric.spool_block (
    subid  integer NOT NULL,
    shape  text NOT NULL,
    seq    bigint NOT NULL,   -- logical offset of the block
    data   bytea NOT NULL,
    PRIMARY KEY (subid, shape, seq),
    FOREIGN KEY (subid, shape) REFERENCES electric.subscription_shape (subid, shape)
        ON DELETE CASCADE
);

-- Definitions are user configuration: kept in dumps.  Stream state, holds and
-- spools are not: a restored database syncs afresh (atomically).
SELECT pg_catalog.pg_extension_config_dump('electric.subscription_shape', '');

-- Shapes written other than through the functions (pg_restore restores them
-- last of a subscription's rows) make the launcher scan the databases at
-- COMMIT, so restored subscriptions start without a server restart.
CREATE FUNCTION electric._catalog_changed() RETURNS trigger
LANGUAGE C AS 'MODULE_PATHNAME', 'ps_catalog_changed';
CREATE TRIGGER restored AFTER INSERT ON electric.subscription_shape
FOR EACH STATEMENT EXECUTE FUNCTION electric._catalog_changed();

REVOKE ALL ON electric.subscription_shape, electric.shape_state, electric.row_hold, electric.row_tags,
              electric.subset_snapshot, electric.subset_key, electric.spool_block FROM PUBLIC;

-- ---- functions ----------------------------------------------------------------

DROP FUNCTION electric.sync_shape_to_table(jsonb, text, text[], text, jsonb, regprocedure, text, text, boolean, regprocedure);

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
    on_must_refetch       regprocedure DEFAULT NULL,
    headers_function      regprocedure DEFAULT NULL,
    worker                boolean DEFAULT true)
RETURNS text
LANGUAGE C CALLED ON NULL INPUT VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'ps_sync_shape_to_table';

COMMENT ON FUNCTION electric.sync_shape_to_table(jsonb, text, text[], text, jsonb, regprocedure, text, text, boolean, regprocedure, regprocedure, boolean)
IS 'Start syncing a shape into a table; returns the subscription name';

CREATE FUNCTION electric.sync_shapes_to_tables(
    shapes                jsonb,
    shape_key             text DEFAULT NULL,
    initial_insert_method text DEFAULT 'insert',
    headers_function      regprocedure DEFAULT NULL,
    worker                boolean DEFAULT true)
RETURNS text
LANGUAGE C CALLED ON NULL INPUT VOLATILE
-- no SET search_path: the members' map_function and on_must_refetch are found
-- in the caller's search_path; the function pins it for everything else
AS 'MODULE_PATHNAME', 'ps_sync_shapes_to_tables';

COMMENT ON FUNCTION electric.sync_shapes_to_tables(jsonb, text, text, regprocedure, boolean)
IS 'Start syncing several shapes into their tables as one transaction stream; returns the subscription name';

CREATE FUNCTION electric.alter_subscription(
    name             text,
    shape_url        text DEFAULT NULL,
    headers          jsonb DEFAULT NULL,
    headers_function regprocedure DEFAULT NULL)
RETURNS void
LANGUAGE C CALLED ON NULL INPUT VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'ps_alter_subscription';

COMMENT ON FUNCTION electric.alter_subscription(text, text, jsonb, regprocedure)
IS 'Change where and how a subscription asks (URL, headers, headers function), keeping its stream position';

CREATE FUNCTION electric.next_request(name text, shape text DEFAULT NULL)
RETURNS jsonb
LANGUAGE C CALLED ON NULL INPUT VOLATILE
-- no SET search_path: the headers function runs as it would in a worker
AS 'MODULE_PATHNAME', 'ps_next_request';

COMMENT ON FUNCTION electric.next_request(text, text)
IS 'Host-driven subscriptions: the next request to make ({url, headers, live, timeout_ms}), or {wait_ms}, or NULL once stopped';

CREATE FUNCTION electric.ingest_response(name text, status integer, headers jsonb,
                                         body bytea, shape text DEFAULT NULL)
RETURNS jsonb
LANGUAGE C CALLED ON NULL INPUT VOLATILE
-- no SET search_path: triggers run by the apply see the caller's, as in a
-- worker they see the session's; our own statements pin theirs
AS 'MODULE_PATHNAME', 'ps_ingest_response';

COMMENT ON FUNCTION electric.ingest_response(text, integer, jsonb, bytea, text)
IS 'Host-driven subscriptions: feed one whole response; applies a complete batch in the caller''s transaction';

CREATE FUNCTION electric.request_snapshot(name text, "where" text DEFAULT NULL,
                                          params jsonb DEFAULT NULL, order_by text DEFAULT NULL,
                                          "limit" integer DEFAULT NULL)
RETURNS bigint
LANGUAGE C CALLED ON NULL INPUT VOLATILE
-- no SET search_path: the apply's triggers see the caller's, as in ingest_response
AS 'MODULE_PATHNAME', 'ps_request_snapshot';

COMMENT ON FUNCTION electric.request_snapshot(text, text, jsonb, text, integer)
IS 'Load a subset of the shape (Electric''s subset snapshot) into the table, merged with the live stream; returns the rows loaded';

-- Worker status from shared memory (the 0.1.0 _worker_status stays as it was).
CREATE FUNCTION electric._worker_status_v2(
    OUT subid integer, OUT worker_pid integer, OUT state text,
    OUT is_up_to_date boolean, OUT launch_error text, OUT requests bigint,
    OUT bytes_received bigint, OUT errors bigint, OUT last_request_at timestamptz,
    OUT last_up_to_date_at timestamptz, OUT batch_rows bigint, OUT batch_bytes bigint)
RETURNS SETOF record
LANGUAGE C STRICT VOLATILE
AS 'MODULE_PATHNAME', 'ps_worker_status_v2';

-- Shape URLs may carry credentials: others see them masked.
CREATE FUNCTION electric._masked_url(url text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT regexp_replace(
           regexp_replace(url, '^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#@]*@', '\1***@'),
           '([?&](secret|api_secret|token|access_token|auth|authorization|key|api_key|apikey|password|passwd|pwd|signature|sig|jwt|session)=)[^&]*',
           '\1***', 'gi')
$$;

-- A refetch of one shape of a shared table keeps the rows other shapes hold.
-- (Called by the worker as the subscription's owner, in its DELETE.)
CREATE FUNCTION electric._held_elsewhere(relid oid, key text[], subid integer, shape text)
RETURNS boolean
LANGUAGE sql STABLE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT EXISTS (SELECT 1 FROM electric.row_hold h
                  WHERE h.relid = $1 AND h.key = $2 AND (h.subid, h.shape) <> ($3, $4))
$$;
REVOKE ALL ON FUNCTION electric._held_elsewhere(oid, text[], integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION electric._held_elsewhere(oid, text[], integer, text) TO pglite_sync_manager;

-- ---- views ---------------------------------------------------------------------

CREATE VIEW electric.subscriptions AS
SELECT s.name,
       s.shape_key,
       CASE WHEN n.cnt = 1 THEN coalesce(ns.nspname::text, sh.schema_name) END AS schema_name,
       CASE WHEN n.cnt = 1 THEN coalesce(c.relname::text, sh.table_name) END AS table_name,
       CASE WHEN n.cnt <> 1 THEN NULL
            WHEN pg_catalog.pg_has_role(s.owner, 'USAGE') THEN sh.shape_url
            ELSE electric._masked_url(sh.shape_url) END AS shape_url,
       -- headers and Electric's secret parameters may hold tokens: owner only
       CASE WHEN n.cnt <> 1 THEN NULL
            WHEN pg_catalog.pg_has_role(s.owner, 'USAGE') THEN sh.shape_params
            ELSE sh.shape_params - ARRAY['secret', 'api_secret'] END AS shape_params,
       CASE WHEN n.cnt = 1 AND pg_catalog.pg_has_role(s.owner, 'USAGE')
            THEN sh.shape_headers END AS shape_headers,
       CASE WHEN n.cnt = 1 THEN ss.handle END AS handle,
       CASE WHEN n.cnt = 1 THEN ss."offset" END AS "offset",
       CASE WHEN NOT s.enabled THEN 'stopped'
            WHEN w.subid IS NOT NULL AND w.launch_error IS NOT NULL THEN 'error'
            WHEN w.subid IS NOT NULL AND w.worker_pid IS NOT NULL THEN w.state
            WHEN NOT s.worker THEN coalesce(st.run->>'state', 'starting')
            ELSE 'starting' END AS state,
       coalesce(s.enabled AND CASE WHEN s.worker THEN w.is_up_to_date
                                   ELSE (st.run->>'up_to_date')::boolean END, false) AS is_up_to_date,
       n.rows_applied,
       st.last_commit_at,
       -- the whole text (server answers, data in DETAIL) for the owner only
       CASE WHEN s.enabled AND w.launch_error IS NOT NULL THEN w.launch_error
            WHEN pg_catalog.pg_has_role(s.owner, 'USAGE')
            THEN coalesce(st.last_error_detail, st.last_error)
            ELSE st.last_error END AS last_error,
       st.last_error_at,
       CASE WHEN s.enabled THEN w.worker_pid END AS worker_pid,
       s.owner::text AS owner,
       CASE WHEN n.cnt = 1 THEN sh.primary_key END AS primary_key,
       s.initial_insert_method,
       CASE WHEN n.cnt = 1 THEN sh.map_columns END AS map_columns,
       CASE WHEN n.cnt = 1 THEN sh.map_function END AS map_function,
       CASE WHEN n.cnt = 1 THEN sh.on_must_refetch END AS on_must_refetch,
       s.created_at,
       n.cnt::integer AS shape_count,
       s.worker,
       s.headers_function,
       n.rows_skipped,
       coalesce(w.requests, 0) AS requests,
       coalesce(w.bytes_received, 0) AS bytes_received,
       coalesce(w.errors, 0) AS errors,
       w.last_request_at,
       coalesce(w.last_up_to_date_at, (st.run->>'last_up_to_date_at')::timestamptz) AS last_up_to_date_at,
       coalesce(w.batch_rows, 0) AS batch_rows,
       coalesce(w.batch_bytes, 0) AS batch_bytes,
       CASE WHEN n.cnt = 1 THEN sh.shape_options END AS shape_options
  FROM electric.subscription s
  CROSS JOIN LATERAL (
       SELECT count(*) AS cnt,
              coalesce(sum(x.rows_applied), 0)::bigint AS rows_applied,
              coalesce(sum(x.rows_skipped), 0)::bigint AS rows_skipped
         FROM electric.subscription_shape p
         LEFT JOIN electric.shape_state x ON x.subid = p.subid AND x.shape = p.shape
        WHERE p.subid = s.id) n
  LEFT JOIN electric.subscription_shape sh ON sh.subid = s.id AND n.cnt = 1
  LEFT JOIN electric.shape_state ss ON ss.subid = sh.subid AND ss.shape = sh.shape
  LEFT JOIN electric.subscription_state st ON st.subid = s.id
  LEFT JOIN electric._worker_status_v2() w ON w.subid = s.id
  LEFT JOIN pg_catalog.pg_class c ON c.oid = sh.relid
  LEFT JOIN pg_catalog.pg_namespace ns ON ns.oid = c.relnamespace;

COMMENT ON VIEW electric.subscriptions IS 'Status of every subscription in this database';

CREATE VIEW electric.subscription_shapes AS
SELECT s.name AS subscription,
       sh.shape,
       coalesce(ns.nspname::text, sh.schema_name) AS schema_name,
       coalesce(c.relname::text, sh.table_name) AS table_name,
       CASE WHEN pg_catalog.pg_has_role(s.owner, 'USAGE') THEN sh.shape_url
            ELSE electric._masked_url(sh.shape_url) END AS shape_url,
       CASE WHEN pg_catalog.pg_has_role(s.owner, 'USAGE') THEN sh.shape_params
            ELSE sh.shape_params - ARRAY['secret', 'api_secret'] END AS shape_params,
       CASE WHEN pg_catalog.pg_has_role(s.owner, 'USAGE') THEN sh.shape_headers END AS shape_headers,
       ss.handle,
       ss."offset",
       coalesce(s.enabled AND CASE WHEN s.worker THEN w.is_up_to_date
                                   ELSE (st.run->>'up_to_date')::boolean END, false) AS is_up_to_date,
       coalesce(ss.rows_applied, 0) AS rows_applied,
       coalesce(ss.rows_skipped, 0) AS rows_skipped,
       sh.primary_key,
       sh.map_columns,
       sh.map_function,
       sh.on_must_refetch,
       sh.position,
       sh.shape_options
  FROM electric.subscription s
  JOIN electric.subscription_shape sh ON sh.subid = s.id
  LEFT JOIN electric.shape_state ss ON ss.subid = sh.subid AND ss.shape = sh.shape
  LEFT JOIN electric.subscription_state st ON st.subid = s.id
  LEFT JOIN electric._worker_status_v2() w ON w.subid = s.id
  LEFT JOIN pg_catalog.pg_class c ON c.oid = sh.relid
  LEFT JOIN pg_catalog.pg_namespace ns ON ns.oid = c.relnamespace;

COMMENT ON VIEW electric.subscription_shapes IS 'One row per shape of every subscription in this database';

-- ---- privileges ---------------------------------------------------------------

REVOKE ALL ON FUNCTION electric.sync_shape_to_table(jsonb, text, text[], text, jsonb, regprocedure, text, text, boolean, regprocedure, regprocedure, boolean),
                       electric.sync_shapes_to_tables(jsonb, text, text, regprocedure, boolean),
                       electric.alter_subscription(text, text, jsonb, regprocedure),
                       electric.next_request(text, text),
                       electric.ingest_response(text, integer, jsonb, bytea, text),
                       electric.request_snapshot(text, text, jsonb, text, integer)
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION electric.sync_shape_to_table(jsonb, text, text[], text, jsonb, regprocedure, text, text, boolean, regprocedure, regprocedure, boolean),
                          electric.sync_shapes_to_tables(jsonb, text, text, regprocedure, boolean),
                          electric.alter_subscription(text, text, jsonb, regprocedure),
                          electric.next_request(text, text),
                          electric.ingest_response(text, integer, jsonb, bytea, text),
                          electric.request_snapshot(text, text, jsonb, text, integer)
  TO pglite_sync_manager;
GRANT SELECT ON electric.subscriptions, electric.subscription_shapes TO PUBLIC;
