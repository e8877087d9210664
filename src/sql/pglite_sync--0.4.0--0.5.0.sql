-- pglite_sync 0.4.0 -> 0.5.0: on a server, host-driven spools are unlogged.
-- A block of electric.spool_block is scratch space: it lives from one
-- response to the up-to-date that applies it.  Logging it wrote every
-- spooled page to the WAL (and to every standby) before the rows that carry
-- it were written there again; core's apply worker, too, spools a streamed
-- transaction to a file that a crash loses.  After a crash or a failover the
-- table is empty; next_request and ingest_response notice that the blocks a
-- shape's stream counts are gone and fetch the batch again from its
-- committed position.  SET UNLOGGED copies the blocks already spooled.
--
-- PGlite keeps the spool logged: a PGlite that ends without close() (a
-- closed tab, a killed process; in a browser, the usual way) leaves a crash
-- image, and recovery would empty an unlogged spool every time, so a large
-- snapshot could never continue where the last session left it.

\echo Use "ALTER EXTENSION pglite_sync UPDATE TO '0.5.0'" to load this file. \quit

CREATE FUNCTION electric._spool_unlogged() RETURNS boolean
LANGUAGE C AS 'MODULE_PATHNAME', 'ps_spool_unlogged';
DO $$
BEGIN
    IF electric._spool_unlogged() THEN
        ALTER TABLE electric.spool_block SET UNLOGGED;
    END IF;
END
$$;
DROP FUNCTION electric._spool_unlogged();
