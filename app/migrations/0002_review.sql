-- Who reviewed a match last (confirm/reject/link/unlink); reviewed confirmed matches are
-- carried over to the next run of the same reconciliation instead of being recomputed.
ALTER TABLE matches ADD COLUMN reviewed_by text, ADD COLUMN reviewed_at timestamptz;
-- Bumped on every review action: part of cache keys for summaries.
ALTER TABLE runs ADD COLUMN review_version integer NOT NULL DEFAULT 0;
