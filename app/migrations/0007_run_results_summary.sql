-- The /summary answer computed by the worker in the transaction that stores a run's results,
-- with the review version and last import it reflects ({"review_version", "last_import",
-- "body"}). Right after a run it is served as is: at 100k x 100k the live query takes ~0.4 s,
-- the target is 200 ms. After a review or an upload the API computes the summary live.
ALTER TABLE runs ADD COLUMN results_summary jsonb;
