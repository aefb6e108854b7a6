-- Templates a team writes and shares through the server (the API's
-- /templates): each a template folder's files, by path, as one JSON
-- object ({"template.yaml": "…", "project/syncs/deals.yaml": "…"}).
-- Ferry's own templates are in the binary, not here; a stored template may
-- not take one of their names (the API refuses it).
CREATE TABLE ferry.templates (
    name       text PRIMARY KEY,
    version    integer NOT NULL,        -- the manifest's version, recorded in every file it writes
    files      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL
);
