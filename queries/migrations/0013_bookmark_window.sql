-- An incremental read starts at the bookmark minus the overlap, so that
-- rows committed late are caught; after a bulk re-stamp that window holds
-- every re-stamped row. A run that handled every row of the window notes
-- its fingerprint (the count and hash sum of the rows' ids and stamps) and
-- the bookmark it was taken at; the next run compares the window with it
-- and reads only past the bookmark when nothing in the window moved.
ALTER TABLE ferry.bookmarks ADD COLUMN window_at text;
ALTER TABLE ferry.bookmarks ADD COLUMN window_print text;
