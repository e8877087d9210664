-- pglite_sync 0.2.0 -> 0.3.0: local writes.  A local INSERT, UPDATE or
-- DELETE of a synced table is recorded with the user's transaction and
-- uploaded by the subscription's worker to the application's write API; its
-- values stay visible locally until the server's version of them arrives.

\echo Use "ALTER EXTENSION pglite_sync UPDATE TO '0.3.0'" to load this file. \quit

-- where a subscription's writes go (one row per subscription with writes on)
CREATE TABLE electric.write_target (
    subid      integer PRIMARY KEY REFERENCES electric.subscription (id) ON DELETE CASCADE,
    write_url  text NOT NULL,
    headers    jsonb,
    enabled_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- one write per local transaction and subscription, uploaded in commit order
CREATE TABLE electric.write (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    write_id        uuid NOT NULL UNIQUE,
    subid           integer NOT NULL REFERENCES electric.subscription (id) ON DELETE CASCADE,
    local_xid       xid8 NOT NULL,
    -- its place in commit order, stamped at COMMIT (NULL until then)
    commit_seq      bigint,
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sent', 'acknowledged', 'rejected')),
    txid            text,
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    status          integer,
    response        text,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    sent_at         timestamptz,
    acknowledged_at timestamptz,
    UNIQUE (subid, local_xid)
);
CREATE INDEX write_order ON electric.write (subid, commit_seq) WHERE state <> 'rejected';
CREATE SEQUENCE electric.write_commit_seq;

-- its mutations, in statement order, in the local table's terms
CREATE TABLE electric.write_mutation (
    write       bigint NOT NULL REFERENCES electric.write (id) ON DELETE CASCADE,
    seq         integer NOT NULL,
    relid       regclass NOT NULL,
    shape       text NOT NULL,
    operation   text NOT NULL CHECK (operation IN ('insert', 'update', 'delete')),
    key         jsonb NOT NULL,       -- primary key before the change (local columns)
    pk          text[] NOT NULL,      -- the same, as holds and tags store keys
    value       jsonb,                -- insert: the row; update: the changed columns
    old_value   jsonb,                -- update: their previous values
    PRIMARY KEY (write, seq)
);
CREATE INDEX write_mutation_row ON electric.write_mutation (relid, pk);

-- the server's latest version of a row that writes not yet synced changed:
-- what a rejected write's rows return to
CREATE TABLE electric.write_base (
    relid   regclass NOT NULL,
    pk      text[] NOT NULL,
    row     jsonb,                    -- NULL: the server has no such row
    PRIMARY KEY (relid, pk)
);

-- txids of changes applied while a write was being sent: its answer may
-- come after the change it made (then the write is synced at once)
CREATE TABLE electric.write_seen (
    subid  integer NOT NULL REFERENCES electric.subscription (id) ON DELETE CASCADE,
    txid   text NOT NULL,
    PRIMARY KEY (subid, txid)
);

REVOKE ALL ON electric.write_target, electric.write, electric.write_mutation,
              electric.write_base, electric.write_seen FROM PUBLIC;
REVOKE ALL ON SEQUENCE electric.write_commit_seq FROM PUBLIC;

-- Definitions are configuration (dumped); writes are state and belong to the
-- cluster they were made in.
SELECT pg_catalog.pg_extension_config_dump('electric.write_target', '');

-- ---- functions ----------------------------------------------------------------

CREATE FUNCTION electric.enable_writes(name text, write_url text, headers jsonb DEFAULT NULL)
RETURNS void
LANGUAGE C CALLED ON NULL INPUT VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'ps_enable_writes';

COMMENT ON FUNCTION electric.enable_writes(text, text, jsonb)
IS 'Record local changes of the subscription''s tables and upload them to write_url';

CREATE FUNCTION electric.disable_writes(name text)
RETURNS void
LANGUAGE C CALLED ON NULL INPUT VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'ps_disable_writes';

COMMENT ON FUNCTION electric.disable_writes(text)
IS 'Stop recording local changes (writes already recorded are still uploaded)';

CREATE FUNCTION electric.discard_write(write_id uuid)
RETURNS void
LANGUAGE C CALLED ON NULL INPUT VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'ps_discard_write';

COMMENT ON FUNCTION electric.discard_write(uuid)
IS 'Forget a rejected write';

CREATE FUNCTION electric.wait_for_writes(name text, timeout interval DEFAULT '60 seconds')
RETURNS boolean
LANGUAGE C CALLED ON NULL INPUT VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'ps_wait_for_writes';

COMMENT ON FUNCTION electric.wait_for_writes(text, interval)
IS 'True once every write committed before the call is synced; false on timeout or rejection';

-- the capture trigger on every table of a subscription with writes on
CREATE FUNCTION electric._capture_write() RETURNS trigger
LANGUAGE C AS 'MODULE_PATHNAME', 'ps_capture_write';

-- at COMMIT of a transaction that wrote: its place in commit order
CREATE FUNCTION electric._stamp_write() RETURNS trigger
LANGUAGE C AS 'MODULE_PATHNAME', 'ps_stamp_write';

CREATE CONSTRAINT TRIGGER stamp AFTER INSERT ON electric.write
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION electric._stamp_write();

CREATE VIEW electric.writes AS
SELECT w.write_id,
       s.name AS subscription,
       w.state,
       (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
                'operation', m.operation, 'relation', pg_catalog.jsonb_build_array(
                    ns.nspname, c.relname), 'key', m.key, 'value', m.value, 'old_value', m.old_value))
                ORDER BY m.seq)
          FROM electric.write_mutation m
          JOIN pg_catalog.pg_class c ON c.oid = m.relid
          JOIN pg_catalog.pg_namespace ns ON ns.oid = c.relnamespace
         WHERE m.write = w.id) AS mutations,
       w.txid,
       w.attempts,
       w.last_error,
       w.created_at,
       w.sent_at,
       w.acknowledged_at
  FROM electric.write w
  JOIN electric.subscription s ON s.id = w.subid
 WHERE pg_catalog.pg_has_role(s.owner, 'USAGE') AND w.commit_seq IS NOT NULL;

COMMENT ON VIEW electric.writes IS 'Local writes not synced yet (the owner''s; others see none)';

REVOKE ALL ON FUNCTION electric.enable_writes(text, text, jsonb),
                       electric.disable_writes(text),
                       electric.discard_write(uuid),
                       electric.wait_for_writes(text, interval)
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION electric.enable_writes(text, text, jsonb),
                          electric.disable_writes(text),
                          electric.discard_write(uuid),
                          electric.wait_for_writes(text, interval)
  TO pglite_sync_manager;
GRANT SELECT ON electric.writes TO PUBLIC;
