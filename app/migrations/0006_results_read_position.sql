-- Read-your-writes for results (issue #12): results read from a lagging replica right after a
-- run came back empty with HTTP 200. runs.results_lsn is a WAL position at or after the last
-- commit that changed how this run's results read: the run's own results transaction, a
-- review action, an upload into its reconciliation. A replica that has replayed it answers
-- like the primary. NULL means "not known": readers go to the primary and record a new
-- position (app/db/results.py). A transaction cannot know its own commit position, so every
-- writer leaves NULL behind (the triggers below) and the position is taken after the commit.
ALTER TABLE runs ADD COLUMN results_lsn pg_lsn;

-- Everything committed before this migration is at or before the current insert position.
UPDATE runs SET results_lsn = pg_current_wal_insert_lsn() WHERE status = 'succeeded' AND NOT dry_run;

-- A review bumps runs.review_version in the transaction that changes the matches.
CREATE FUNCTION runs_forget_results_lsn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.results_lsn := NULL;
    RETURN NEW;
END
$$;
CREATE TRIGGER runs_review_forgets_results_lsn BEFORE UPDATE OF review_version ON runs
    FOR EACH ROW WHEN (NEW.review_version IS DISTINCT FROM OLD.review_version)
    EXECUTE FUNCTION runs_forget_results_lsn();

-- An upload adds unmatched records to the reconciliation's current run.
CREATE FUNCTION imports_forget_results_lsn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE runs SET results_lsn = NULL
     WHERE id = (SELECT current_run_id FROM reconciliations WHERE id = NEW.reconciliation_id)
       AND results_lsn IS NOT NULL;
    RETURN NULL;
END
$$;
CREATE TRIGGER imports_forget_results_lsn AFTER INSERT ON imports
    FOR EACH ROW EXECUTE FUNCTION imports_forget_results_lsn();
