-- A run whose records failed is not a plain success: it says so.
ALTER TABLE ferry.runs DROP CONSTRAINT runs_status_check;
ALTER TABLE ferry.runs ADD CONSTRAINT runs_status_check
    CHECK (status IN ('running', 'succeeded', 'succeeded_with_errors', 'failed', 'stopped'));
