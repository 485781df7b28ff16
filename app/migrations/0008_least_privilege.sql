-- Least privilege (issue #13): migrations run as the owner role; the service's runtime role
-- has DML only (granted by the deployment through default privileges).
--
-- 1. audit_log is append-only: no role but its owner may change, delete or truncate a row.
--    Revoked from every grantee the table has now (default privileges granted the runtime
--    role UPDATE and DELETE when 0001 created it), PUBLIC included.
DO $$
DECLARE
    grantee text;
BEGIN
    FOR grantee IN
        SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END
        FROM pg_class c, aclexplode(c.relacl) a
        WHERE c.oid = 'audit_log'::regclass AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM %s', grantee);
    END LOOP;
END
$$;

-- 2. ANALYZE needs the table's owner. The worker refreshes the bulk tables' statistics in the
--    transaction that stores a run's results (app/db/results.py); this function runs that
--    ANALYZE with the owner's rights and can do nothing else (no argument, fixed tables and
--    columns: the join and filter columns; wide text columns cost most and no plan uses them).
CREATE FUNCTION refresh_bulk_statistics() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    ANALYZE public.records (id, reconciliation_id, import_id, side, currency),
            public.matches (id, run_id, status, kind),
            public.match_items (match_id, run_id, record_id, side, active),
            public.discrepancies (id, run_id, match_id, field);
END
$$;
