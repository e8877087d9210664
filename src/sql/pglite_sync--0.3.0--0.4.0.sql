-- pglite_sync 0.3.0 -> 0.4.0: host-driven spools are stored uncompressed.
-- A block of electric.spool_block lives from one response to the up-to-date
-- that applies it, and is read back once: compressing it cost more than it
-- saved (in PGlite, pglz took a sixth of an initial sync's time).  Blocks
-- already spooled stay as they are and read back the same.

\echo Use "ALTER EXTENSION pglite_sync UPDATE TO '0.4.0'" to load this file. \quit

ALTER TABLE electric.spool_block ALTER COLUMN data SET STORAGE EXTERNAL;
