-- A run whose process stopped (a replica shut down or died, Ctrl-C) did not
-- fail: it was interrupted, and the run that takes the sync over resumes
-- it. Saying so keeps alerts honest: the next success is no "recovery" of a
-- failure nobody was told about.
ALTER TABLE ferry.runs DROP CONSTRAINT runs_status_check;
ALTER TABLE ferry.runs ADD CONSTRAINT runs_status_check
    CHECK (status IN ('running', 'succeeded', 'succeeded_with_errors', 'failed', 'stopped', 'interrupted'));
