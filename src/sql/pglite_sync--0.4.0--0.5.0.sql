-- pglite_sync 0.4.0 -> 0.5.0: host-driven spools are unlogged.
-- A block of electric.spool_block is scratch space: it lives from one
-- response to the up-to-date that applies it.  Logging it wrote every
-- spooled page to the WAL (and to every standby) before the rows that carry
-- it were written there again.  After a crash or a failover the table is
-- empty; ingest_response and next_request notice that the blocks a shape's
-- stream counts are gone and fetch the batch again from its committed
-- position.  SET UNLOGGED copies the blocks already spooled.

\echo Use "ALTER EXTENSION pglite_sync UPDATE TO '0.5.0'" to load this file. \quit

ALTER TABLE electric.spool_block SET UNLOGGED;
