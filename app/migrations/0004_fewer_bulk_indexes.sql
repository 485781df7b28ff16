-- Every index on a bulk table is one more b-tree insert per COPYed row; keep the ones queries
-- use. Matches are deleted by run (matches_run_status), records are listed by
-- (reconciliation_id, side, id); nothing looks records up by import any more (migration 0003
-- dropped the foreign key that needed it).
DROP INDEX matches_recon;
DROP INDEX records_import;
