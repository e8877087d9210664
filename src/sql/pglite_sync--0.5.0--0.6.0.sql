-- pglite_sync 0.5.0 -> 0.6.0: a group is a group even with one member, and
-- electric.writes shows NULL values.
--
-- electric.subscriptions leaves a group's per-shape columns NULL.  It told a
-- group by its number of shapes, so a group of one member looked like a
-- single-shape subscription; the catalog now says which it is.  For the
-- subscriptions already there, a group is one whose shapes are more than one
-- or not named after the subscription (a single shape takes the
-- subscription's name); a group of one member named like the subscription
-- itself cannot be told apart and stays shown as a single shape until it is
-- subscribed again.
--
-- electric.writes built each mutation with jsonb_strip_nulls, which drops
-- every null at every depth: a column set to NULL vanished from "value" and
-- "old_value", although the upload sends it as JSON null.  Only an absent
-- "value" (a delete) or "old_value" (an insert) is left out now.
--
-- unsubscribe(NULL) and delete_subscription(NULL) returned NULL silently
-- (STRICT); like every other function they now refuse a NULL name (22004).

\echo Use "ALTER EXTENSION pglite_sync UPDATE TO '0.6.0'" to load this file. \quit

ALTER FUNCTION electric.unsubscribe(text) CALLED ON NULL INPUT;
ALTER FUNCTION electric.delete_subscription(text) CALLED ON NULL INPUT;

ALTER TABLE electric.subscription ADD COLUMN is_group boolean NOT NULL DEFAULT false;
UPDATE electric.subscription s SET is_group = true
 WHERE EXISTS (SELECT 1 FROM electric.subscription_shape p WHERE p.subid = s.id AND p.shape <> s.name)
    OR (SELECT count(*) FROM electric.subscription_shape p WHERE p.subid = s.id) > 1;

CREATE OR REPLACE VIEW electric.subscriptions AS
SELECT s.name,
       s.shape_key,
       CASE WHEN NOT n.is_group THEN coalesce(ns.nspname::text, sh.schema_name) END AS schema_name,
       CASE WHEN NOT n.is_group THEN coalesce(c.relname::text, sh.table_name) END AS table_name,
       CASE WHEN n.is_group THEN NULL
            WHEN pg_catalog.pg_has_role(s.owner, 'USAGE') THEN sh.shape_url
            ELSE electric._masked_url(sh.shape_url) END AS shape_url,
       -- headers and Electric's secret parameters may hold tokens: owner only
       CASE WHEN n.is_group THEN NULL
            WHEN pg_catalog.pg_has_role(s.owner, 'USAGE') THEN sh.shape_params
            ELSE sh.shape_params - ARRAY['secret', 'api_secret'] END AS shape_params,
       CASE WHEN NOT n.is_group AND pg_catalog.pg_has_role(s.owner, 'USAGE')
            THEN sh.shape_headers END AS shape_headers,
       CASE WHEN NOT n.is_group THEN ss.handle END AS handle,
       CASE WHEN NOT n.is_group THEN ss."offset" END AS "offset",
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
       CASE WHEN NOT n.is_group THEN sh.primary_key END AS primary_key,
       s.initial_insert_method,
       CASE WHEN NOT n.is_group THEN sh.map_columns END AS map_columns,
       CASE WHEN NOT n.is_group THEN sh.map_function END AS map_function,
       CASE WHEN NOT n.is_group THEN sh.on_must_refetch END AS on_must_refetch,
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
       CASE WHEN NOT n.is_group THEN sh.shape_options END AS shape_options
  FROM electric.subscription s
  CROSS JOIN LATERAL (
       SELECT count(*) AS cnt,
              -- a row restored from an older dump has is_group false
              s.is_group OR count(*) <> 1 AS is_group,
              coalesce(sum(x.rows_applied), 0)::bigint AS rows_applied,
              coalesce(sum(x.rows_skipped), 0)::bigint AS rows_skipped
         FROM electric.subscription_shape p
         LEFT JOIN electric.shape_state x ON x.subid = p.subid AND x.shape = p.shape
        WHERE p.subid = s.id) n
  LEFT JOIN electric.subscription_shape sh ON sh.subid = s.id AND NOT n.is_group
  LEFT JOIN electric.shape_state ss ON ss.subid = sh.subid AND ss.shape = sh.shape
  LEFT JOIN electric.subscription_state st ON st.subid = s.id
  LEFT JOIN electric._worker_status_v2() w ON w.subid = s.id
  LEFT JOIN pg_catalog.pg_class c ON c.oid = sh.relid
  LEFT JOIN pg_catalog.pg_namespace ns ON ns.oid = c.relnamespace;

CREATE OR REPLACE VIEW electric.writes AS
SELECT w.write_id,
       s.name AS subscription,
       w.state,
       (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                'operation', m.operation, 'relation', pg_catalog.jsonb_build_array(
                    ns.nspname, c.relname), 'key', m.key)
                || CASE WHEN m.value IS NULL THEN '{}'::jsonb
                        ELSE pg_catalog.jsonb_build_object('value', m.value) END
                || CASE WHEN m.old_value IS NULL THEN '{}'::jsonb
                        ELSE pg_catalog.jsonb_build_object('old_value', m.old_value) END
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
